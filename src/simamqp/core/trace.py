"""The append-only event log of a broker, and its digest.

Every effect a client could observe, and every fault the broker applied, is one event. Two runs
with the same seed and the same calls produce the same events; ``digest()`` hashes a canonical
encoding of them (sorted keys, bodies by their own sha256, no ``repr`` of objects, no ids), so the
digest is the same in any process and under any ``PYTHONHASHSEED``.
"""

from __future__ import annotations

import datetime as _dt
import decimal
import hashlib
import json
from collections.abc import Iterator, Mapping
from typing import Any, NamedTuple

__all__ = ["Event", "Trace", "canonical"]


class Event(NamedTuple):
    seq: int
    time: float
    kind: str
    attrs: Mapping[str, Any]

    def to_dict(self) -> dict[str, Any]:
        return {"seq": self.seq, "time": self.time, "kind": self.kind, **canonical(self.attrs)}

    def __str__(self) -> str:
        fields = " ".join(f"{k}={_short(v)}" for k, v in self.attrs.items())
        return f"#{self.seq} t={self.time:.6f} {self.kind} {fields}".rstrip()


def _short(value: Any) -> str:
    if isinstance(value, bytes | bytearray | memoryview):
        data = bytes(value)
        return repr(data if len(data) <= 32 else data[:29] + b"...")
    return repr(value)


def canonical(value: Any) -> Any:
    """A JSON-able, process-independent rendering of a trace value."""
    if value is None or isinstance(value, bool | int | str):
        return value
    if isinstance(value, float):
        return repr(value)
    if isinstance(value, bytes | bytearray | memoryview):
        return {"sha256": hashlib.sha256(bytes(value)).hexdigest(), "len": len(value)}
    if isinstance(value, Mapping):
        return {str(k): canonical(v) for k, v in sorted(value.items(), key=lambda kv: str(kv[0]))}
    if isinstance(value, list | tuple):
        return [canonical(v) for v in value]
    if isinstance(value, _dt.datetime):
        return value.isoformat()
    if isinstance(value, decimal.Decimal):
        return f"decimal:{value}"
    raise TypeError(f"cannot put {type(value).__name__} in a trace")


_new_event = tuple.__new__


class Trace:
    """Events in the order they happened; ``enabled=False`` records nothing (benchmarks)."""

    def __init__(self, *, enabled: bool = True) -> None:
        self.enabled = enabled
        self._events: list[Event] = []

    def emit(self, time: float, kind: str, attrs: Mapping[str, Any]) -> None:
        if self.enabled:
            events = self._events
            # Event(...) without the NamedTuple's Python-level __new__ (same tuple; hot path).
            events.append(_new_event(Event, (len(events) + 1, time, kind, attrs)))

    def __len__(self) -> int:
        return len(self._events)

    def __iter__(self) -> Iterator[Event]:
        return iter(self._events)

    def __getitem__(self, index: int) -> Event:
        return self._events[index]

    @property
    def events(self) -> list[Event]:
        return list(self._events)

    def of_kind(self, *kinds: str) -> list[Event]:
        return [e for e in self._events if e.kind in kinds]

    def tail(self, n: int = 20) -> list[Event]:
        return self._events[-n:] if n > 0 else []

    def clear(self) -> None:
        self._events.clear()

    def lines(self) -> Iterator[str]:
        """The canonical encoding, one JSON document per event."""
        for event in self._events:
            yield json.dumps(event.to_dict(), sort_keys=True, separators=(",", ":"))

    def digest(self) -> str:
        h = hashlib.sha256()
        for line in self.lines():
            h.update(line.encode())
            h.update(b"\n")
        return h.hexdigest()

    def format(self, last: int | None = None) -> str:
        events = self._events if last is None else self._events[-last:]
        return "\n".join(str(e) for e in events)

    def __repr__(self) -> str:
        return f"<Trace {len(self._events)} events>"
