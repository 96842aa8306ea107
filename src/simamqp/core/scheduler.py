"""Timers ordered by (time, sequence): the engine's only notion of "later".

Ties are broken by insertion order, never by object identity or hashing, so the order in which
timers fire is the same in every process (determinism contract, DESIGN.md).
"""

from __future__ import annotations

import heapq
from collections.abc import Callable

__all__ = ["Scheduler", "Timer"]


class Timer:
    """A scheduled callback; ``cancel()`` makes it a no-op (lazy deletion from the heap)."""

    __slots__ = ("args", "callback", "cancelled", "label", "when")

    def __init__(
        self, when: float, callback: Callable[..., None], args: tuple[object, ...], label: str
    ) -> None:
        self.when = when
        self.callback = callback
        self.args = args
        self.label = label
        self.cancelled = False

    def cancel(self) -> None:
        self.cancelled = True

    def __repr__(self) -> str:
        state = " cancelled" if self.cancelled else ""
        return f"<Timer {self.label} at {self.when!r}{state}>"


class Scheduler:
    def __init__(self) -> None:
        self._heap: list[tuple[float, int, Timer]] = []
        #: The same list, public: truthy while any timer (cancelled ones included) is pending,
        #: the one-attribute check the hot paths make before ``Broker.tick``.
        self.pending = self._heap
        self._seq = 0

    def call_at(
        self, when: float, callback: Callable[..., None], *args: object, label: str = ""
    ) -> Timer:
        timer = Timer(when, callback, args, label)
        self._seq += 1
        heapq.heappush(self._heap, (when, self._seq, timer))
        return timer

    def next_time(self) -> float | None:
        """When the earliest live timer is due, or None when nothing is scheduled."""
        heap = self._heap
        while heap and heap[0][2].cancelled:
            heapq.heappop(heap)
        return heap[0][0] if heap else None

    def pop_due(self, now: float) -> Timer | None:
        """Remove and return the earliest live timer due at or before ``now``."""
        heap = self._heap
        while heap:
            when, _, timer = heap[0]
            if timer.cancelled:
                heapq.heappop(heap)
                continue
            if when > now:
                return None
            heapq.heappop(heap)
            return timer
        return None

    def clear(self) -> None:
        for _, _, timer in self._heap:
            timer.cancelled = True
        self._heap.clear()

    def __len__(self) -> int:
        return sum(1 for _, _, t in self._heap if not t.cancelled)
