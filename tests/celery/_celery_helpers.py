"""Shared by the Celery tests (named uniquely: test directories are not packages)."""

from __future__ import annotations

import contextlib
import uuid
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any
from unittest import mock

import kombu


@dataclass
class CeleryEnv:
    kind: str
    url: str
    sim: Any
    run: str
    app: Any
    names: dict[str, str] = field(default_factory=dict)
    hostname: str = ""
    #: Shared with the tasks: what they saw, keyed by a per-test token.
    seen: dict[str, Any] = field(default_factory=dict)

    def token(self) -> str:
        return uuid.uuid4().hex

    def ready_count(self, queue: str) -> int:
        with kombu.Connection(self.url) as conn:
            return int(conn.default_channel.queue_declare(queue, passive=True)[1])


def fresh_event_loop_for_old_celery() -> None:
    """Before Celery 5.7, a worker started after another in the same process never fires its
    countdown, ETA and retry timers (measured on RabbitMQ and on simamqp alike, Celery 5.3.6 and
    5.5.3): it takes over kombu's process-wide event loop, which the first worker left set.
    Unset it, so each worker makes its own (Celery 5.7 workers need no help)."""
    import celery
    from kombu.asynchronous import set_event_loop

    if tuple(celery.VERSION[:2]) < (5, 7):
        set_event_loop(None)


@contextlib.contextmanager
def start_named_worker(app: Any, hostname: str, **kwargs: Any) -> Iterator[Any]:
    """``celery.contrib.testing.worker.start_worker`` with the node name ``hostname``.

    Celery 5.5 added the ``hostname`` argument; before it, ``start_worker`` names the node
    ``anon_nodename()`` and refuses a second ``hostname``: name the node through that.
    """
    import celery
    from celery.contrib.testing import worker as testing

    fresh_event_loop_for_old_celery()
    if tuple(celery.VERSION[:2]) >= (5, 5):
        with testing.start_worker(app, hostname=hostname, **kwargs) as worker:
            yield worker
        return
    with contextlib.ExitStack() as stack:
        with mock.patch.object(testing, "anon_nodename", lambda *args, **kw: hostname):
            worker = stack.enter_context(testing.start_worker(app, **kwargs))
        yield worker
