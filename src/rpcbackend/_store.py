"""What the client knows about each task: a bounded, sans-IO buffer of metas.

The reply queue is only a transport. Every message read from it (by the consumer or by a
poll) is merged here and then acknowledged, never requeued, so the state of a task is whatever
this store says. Callers hold the backend's lock around every method.
"""

from __future__ import annotations

import dataclasses
import logging
from collections import Counter, OrderedDict

from rpcbackend._states import Meta, is_ready, supersedes

logger = logging.getLogger("rpcbackend")


@dataclasses.dataclass
class _Entry:
    meta: Meta
    #: A waiter or a poll has seen this final state; evicting it loses nothing.
    claimed: bool = False
    #: Order in which entries became final, so results already buffered are still handed out
    #: in arrival order.
    ready_seq: int = 0


@dataclasses.dataclass(frozen=True)
class Merge:
    """What merging one message changed."""

    accepted: bool
    became_ready: bool


class ResultStore:
    """Latest meta per task id, LRU-bounded, with tombstones for unclaimed evictions."""

    def __init__(self, limit: int) -> None:
        if limit < 1:
            raise ValueError(f"buffer limit must be at least 1, got {limit}")
        self.limit = limit
        self._entries: OrderedDict[str, _Entry] = OrderedDict()
        # Ids whose unclaimed final result was evicted, kept so a later wait fails fast
        # instead of hanging; bounded too, at a few times the entry limit (ids are small).
        self._evicted: OrderedDict[str, None] = OrderedDict()
        self._pinned: Counter[str] = Counter()
        self._ready_counter = 0

    def __len__(self) -> int:
        return len(self._entries)

    def merge(self, task_id: str, meta: Meta) -> Merge:
        entry = self._entries.get(task_id)
        current = entry.meta if entry is not None else None
        if not supersedes(meta, current):
            if (
                current is not None
                and is_ready(current["status"])
                and (is_ready(meta["status"]) and meta["status"] != current["status"])
            ):
                logger.warning(
                    "task %s reported both %s and %s; keeping %s (rpcbackend state precedence)",
                    task_id,
                    current["status"],
                    meta["status"],
                    current["status"],
                )
            return Merge(accepted=False, became_ready=False)
        was_ready = current is not None and is_ready(current["status"])
        if was_ready and current is not None:
            logger.warning(
                "task %s reported both %s and %s; keeping %s (rpcbackend state precedence)",
                task_id,
                current["status"],
                meta["status"],
                meta["status"],
            )
        self._evicted.pop(task_id, None)
        new_entry = _Entry(
            meta,
            claimed=entry.claimed if entry else False,
            ready_seq=entry.ready_seq if entry else 0,
        )
        if is_ready(meta["status"]) and not was_ready:
            self._ready_counter += 1
            new_entry.ready_seq = self._ready_counter
        self._entries[task_id] = new_entry
        self._entries.move_to_end(task_id)
        self._evict_over_limit()
        return Merge(accepted=True, became_ready=is_ready(meta["status"]) and not was_ready)

    def get(self, task_id: str) -> Meta | None:
        entry = self._entries.get(task_id)
        return entry.meta if entry is not None else None

    def claim(self, task_id: str) -> Meta | None:
        """Return the final meta of ``task_id`` if there is one, marking it delivered."""
        entry = self._entries.get(task_id)
        if entry is None or not is_ready(entry.meta["status"]):
            return None
        entry.claimed = True
        return entry.meta

    def ready_order(self, task_id: str) -> int:
        """When ``task_id`` became final relative to the others (0 if it has not)."""
        entry = self._entries.get(task_id)
        return entry.ready_seq if entry is not None else 0

    def was_evicted(self, task_id: str) -> bool:
        return task_id in self._evicted

    def pin(self, task_id: str) -> None:
        """Protect ``task_id`` from eviction while someone waits for it."""
        self._pinned[task_id] += 1

    def unpin(self, task_id: str) -> None:
        self._pinned[task_id] -= 1
        if self._pinned[task_id] <= 0:
            del self._pinned[task_id]

    def forget(self, task_id: str) -> None:
        self._entries.pop(task_id, None)
        self._evicted.pop(task_id, None)

    def clear(self) -> None:
        self._entries.clear()
        self._evicted.clear()
        self._pinned.clear()

    def _evict_over_limit(self) -> None:
        while len(self._entries) > self.limit:
            victim = next((tid for tid in self._entries if tid not in self._pinned), None)
            if victim is None:
                # Everything buffered has a waiter; those entries are claimed on arrival, so
                # the overshoot is bounded by the number of waiters.
                return
            entry = self._entries.pop(victim)
            if is_ready(entry.meta["status"]) and not entry.claimed:
                logger.warning(
                    "rpcbackend buffer full (%d results): dropped the unclaimed %s result of "
                    "task %s; waiting for it now raises ResultEvicted",
                    self.limit,
                    entry.meta["status"],
                    victim,
                )
                self._evicted[victim] = None
                while len(self._evicted) > 4 * self.limit:
                    self._evicted.popitem(last=False)
