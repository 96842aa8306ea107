"""A clock that reads the system time at every call (so freezegun and time-machine move it)."""

from __future__ import annotations

import time

__all__ = ["WallClock"]


class WallClock:
    """Real time. Use it when other threads or processes pace the test in real time."""

    virtual = False

    def now(self) -> float:
        return time.time()

    def __repr__(self) -> str:
        return "WallClock()"
