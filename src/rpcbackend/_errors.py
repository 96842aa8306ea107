"""Exceptions raised by :mod:`rpcbackend`. Every one is exported from the package."""

from __future__ import annotations


class BacklogLimitExceeded(Exception):
    """Too much state history to fast-forward.

    Raised by ``get_task_meta`` when the reply queue holds more than ``backlog_limit`` messages.
    Everything read before raising is already acknowledged and buffered, so calling again
    continues where this call stopped.
    """


class ResultTimeout(TimeoutError):
    """A wait for a result ran out of time.

    A subclass of the builtin :class:`TimeoutError`. When the backend serves a Celery app, the
    raised object is also an instance of ``celery.exceptions.TimeoutError`` so existing
    ``except`` clauses keep working.
    """


class ResultEvicted(LookupError):
    """A final result arrived but was dropped from the bounded buffer before anyone claimed it.

    Raised by a wait or poll for that task id instead of reporting it as pending forever.
    """


class ChordsNotSupported(NotImplementedError):
    """The RPC protocol cannot synchronise chords: results go to one client only."""
