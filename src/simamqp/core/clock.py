"""Clocks the engine reads time from.

The engine never reads the wall clock itself: it asks the injected clock (trio's MockClock habit).
``VirtualClock`` is the default: time moves only when told to (``advance``) or, when ``autojump``
is on, when a caller would otherwise block (the kombu transport jumps it to the next timer).
The wall clock lives outside the core (``simamqp.WallClock``) and reads ``time.time`` at call
time, so freezegun and time-machine move it.
"""

from __future__ import annotations

from typing import Protocol, runtime_checkable

__all__ = ["Clock", "VirtualClock"]


@runtime_checkable
class Clock(Protocol):
    """What the engine needs of a clock: the current time in seconds (POSIX epoch based)."""

    #: True when time only moves when told to (the transport may then jump it to a timer).
    virtual: bool

    def now(self) -> float: ...


class VirtualClock:
    """Time that moves only when told to, and never backwards.

    ``autojump=True`` lets a caller that would block (``drain_events`` with nothing to deliver)
    jump straight to the next timer instead of waiting for it.
    """

    virtual = True

    #: 9999-12-31T23:59:59 UTC: the last second an AMQP timestamp (x-death ``time``) can carry
    #: to py-amqp, which reads timestamps as ``datetime``. Virtual time stops there.
    MAX_TIME = 253402300799.0

    def __init__(self, start: float = 0.0, *, autojump: bool = True) -> None:
        if start < 0:
            raise ValueError(f"start must be >= 0, got {start!r}")
        self._now = _checked(float(start))
        self.autojump = autojump

    def now(self) -> float:
        return self._now

    def advance(self, seconds: float) -> None:
        """Move time forward by ``seconds`` (>= 0)."""
        if seconds < 0:
            raise ValueError(f"time never goes backwards: advance({seconds!r})")
        self._now = _checked(self._now + seconds)

    def jump_to(self, when: float) -> None:
        """Move time forward to ``when``; a time in the past is an error."""
        if when < self._now:
            raise ValueError(f"time never goes backwards: jump_to({when!r}) at {self._now!r}")
        self._now = _checked(float(when))

    def __repr__(self) -> str:
        return f"VirtualClock(now={self._now!r}, autojump={self.autojump!r})"


def _checked(when: float) -> float:
    if not when <= VirtualClock.MAX_TIME:
        raise ValueError(
            f"virtual time {when!r} is past 9999-12-31T23:59:59 UTC ({VirtualClock.MAX_TIME!r}),"
            " the last AMQP timestamp a client can read"
        )
    return when
