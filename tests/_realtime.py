"""A real-time bound for tests of blocking calls: a regression fails the test, never hangs the run.

SIGALRM interrupts the main thread's blocking call with ``Hang``; elsewhere (another thread, no
``setitimer``) the block runs unbounded, so callers keep their own coarse wall-clock check.
"""

from __future__ import annotations

import contextlib
import signal
import threading
from collections.abc import Iterator
from typing import Any


class Hang(Exception):
    """The guarded block was still running after its real-time bound."""


@contextlib.contextmanager
def fails_instead_of_hanging(seconds: float) -> Iterator[None]:
    """Raise ``Hang`` in the main thread if the block takes longer than ``seconds``."""
    if (
        not hasattr(signal, "setitimer")
        or threading.current_thread() is not threading.main_thread()
    ):
        yield
        return

    def expire(signum: int, frame: Any) -> None:
        raise Hang(f"still blocked after {seconds} s of real time")

    previous = signal.signal(signal.SIGALRM, expire)
    signal.setitimer(signal.ITIMER_REAL, seconds)
    try:
        yield
    finally:
        signal.setitimer(signal.ITIMER_REAL, 0)
        signal.signal(signal.SIGALRM, previous)
