"""The event log of a broker, and its digest.

Every effect a client could observe, and every fault the broker applied, is one event. Two runs
with the same seed and the same calls produce the same events; ``digest()`` hashes a canonical
encoding of every field of every event (time included), so the digest is the same in any
process and under any ``PYTHONHASHSEED``.

Digest versions (docs/design.md, "The trace", defines both byte for byte):

- **v2** (``digest()``, written ``"v2:<hex>"``): sha256 over each event's canonical tuple
  ``(time, (kind, *names), values)`` written by ``marshal.dumps(..., 2)`` (C speed; format
  version 2 has no back-references and no interning flags, so equal values give equal bytes),
  names sorted, values canonicalised (lists as tuples, mappings as dicts in key order, bodies as
  their bytes).
- **v1** (``digest(version=1)``, a bare hex string): sha256 over one sorted-key JSON line per
  event. Computed only when asked (a file recorded before v2), from a complete trace.

Retention (``mode``):

- ``"window"`` (the default): the digest covers every event, but only the most recent
  ``window`` events are kept (``tail()``, failure reports). Events are folded into the running
  v2 sha256 in batches as they leave the window, so memory stays flat however many messages move.
- ``"full"``: every event is kept (recording, replay files, tests that inspect the whole log).
- ``"off"``: nothing is recorded (benchmarks); the digest is that of no events.

Asking for the whole log (``events``, ``of_kind``, iteration, ``lines``, a v1 digest) after
events have left the window raises ``TraceNotRetained`` rather than answering from part of it.

One timestamp per operation: between ``begin_operation(time)`` and ``end_operation()`` (the
broker calls them around each channel method on a clock that moves by itself), every event is
stamped with the operation's time, so the events one operation causes share it.
"""

from __future__ import annotations

import datetime as _dt
import decimal
import hashlib
import json
import marshal
import re
import sys
from collections.abc import Iterable, Iterator, Mapping
from contextlib import AbstractContextManager, nullcontext
from operator import itemgetter
from typing import Any, Literal, NamedTuple, overload

__all__ = [
    "DEFAULT_WINDOW",
    "DIGEST_VERSION",
    "DIGEST_VERSIONS",
    "Event",
    "Shape",
    "Trace",
    "TraceMode",
    "TraceNotRetained",
    "canonical",
    "canonical_v2",
    "encode_v2",
    "parse_digest",
]

TraceMode = Literal["full", "window", "off"]
TRACE_MODES: tuple[TraceMode, ...] = ("full", "window", "off")
#: Events a windowed trace keeps (it holds at most twice as many between two folds).
DEFAULT_WINDOW = 1000
#: The digest ``digest()`` computes, and every version ``digest(version=...)`` knows.
DIGEST_VERSION = 2
DIGEST_VERSIONS = (1, 2)


class Event(NamedTuple):
    seq: int
    time: float
    kind: str
    attrs: Mapping[str, Any]

    def to_dict(self) -> dict[str, Any]:
        """The event as digest v1 encodes it (one JSON document, keys sorted)."""
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
    """A JSON-able, process-independent rendering of a trace value (digest v1)."""
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


def canonical_v2(value: Any) -> Any:
    """The value as digest v2 encodes it: exact ``None``/``bool``/``int``/``float``/``str``/
    ``bytes``, tuples of those (lists and tuples alike), dicts with ``str`` keys inserted in
    sorted order (mappings), a datetime's ISO text, ``"decimal:TEXT"``. Subclasses become their
    base type's value (an ``IntEnum`` its int); anything else is a ``TypeError``."""
    kind = type(value)
    if kind in _ATOMIC:
        return value
    if isinstance(value, bool):  # pragma: no cover - bool cannot be subclassed
        return bool(value)
    if isinstance(value, int):
        return int.__int__(value)  # the int value, even if __int__ is overridden
    if isinstance(value, float):
        return float.__float__(value)
    if isinstance(value, str):
        return str.__str__(value)
    if isinstance(value, bytes | bytearray | memoryview):
        return bytes(value)
    if isinstance(value, Mapping):
        return {
            str(k): canonical_v2(v) for k, v in sorted(value.items(), key=lambda kv: str(kv[0]))
        }
    if isinstance(value, list | tuple):
        return tuple(map(canonical_v2, value))
    if isinstance(value, _dt.datetime):
        return value.isoformat()
    if isinstance(value, decimal.Decimal):
        return f"decimal:{value}"
    raise TypeError(f"cannot put {type(value).__name__} in a trace")


class TraceNotRetained(LookupError):
    """The trace no longer keeps the events asked for (window mode dropped them)."""


_new_event = tuple.__new__

# -- digest v2 --------------------------------------------------------------------------------
#
# An event is stored as a record ``(time, head, values)``: ``head`` is the v2 bytes of
# ``(kind, *names)`` with the attribute names sorted, ``values`` their values in that order.
# Events recorded through a ``Shape`` are stored that way from the start (the hot path: no
# dict, no per-event encoding; the head is bytes, which marshal copies instead of encoding each
# name again); ``emit``'s dict events are stored as ``(time, kind, attrs)`` and put in that
# form when folded. A batch of canonical records is encoded by one ``marshal.dumps`` call:
# marshal writes a list as ``b"[" + count + items``, the items being each event's bytes.

_ATOMIC = frozenset({type(None), bool, int, float, str, bytes})
_TUPLE_ONLY = frozenset({tuple})
_values = itemgetter(2)
_MARSHAL_VERSION = 2
_LIST_HEADER = 5  # b"[" and a 4-byte count, before the items
#: Records encoded per ``marshal.dumps`` call: bounds the memory an encoding takes (bodies are
#: copied into it) to a fraction of what the window already holds.
_CHUNK = 256


def _head(kind: Any, names: Iterable[str]) -> bytes:
    """An event's head: the v2 bytes of ``(kind, *names)``, names sorted."""
    return marshal.dumps((canonical_v2(kind), *sorted(names)), _MARSHAL_VERSION)


def _canonical_record(record: tuple[Any, Any, Any]) -> tuple[Any, bytes, tuple[Any, ...]]:
    """Any stored record in canonical form ``(time, head, values)``."""
    time, head, attrs = record
    time = canonical_v2(time)
    if type(attrs) is tuple:  # a Shape record: head and order are canonical, values may not be
        return time, head, tuple(map(canonical_v2, attrs))
    fields = canonical_v2(attrs)  # a dict with str keys, in sorted order
    return time, _head(head, fields), tuple(fields.values())


def _encode_records(records: list[Any]) -> bytes:
    """The v2 bytes of stored records, in order (a batch of at most ``_CHUNK``).

    ``Shape`` records are trusted to be canonical already (``Trace.record``'s contract: values
    of atomic types, tuples of them; tests/core/test_trace_digest.py checks the engine's). A
    value of a subclass (a ``str`` or ``int`` subclass from a client, an ``IntEnum``) makes
    marshal refuse the batch, which is then put in canonical form value by value; ``emit``'s
    dict records are always put in canonical form.
    """
    if set(map(type, map(_values, records))) - _TUPLE_ONLY:
        records = [r if type(r[2]) is tuple else _canonical_record(r) for r in records]
    try:
        data = marshal.dumps(records, _MARSHAL_VERSION)
    except ValueError:  # an exact-type check failed: a subclass or an unknown object
        data = marshal.dumps(list(map(_canonical_record, records)), _MARSHAL_VERSION)
    return data[_LIST_HEADER:]


def encode_v2(time: Any, kind: str, attrs: Mapping[str, Any]) -> bytes:
    """The v2 bytes of one event (what the running digest hashes for it)."""
    return marshal.dumps(_canonical_record((time, kind, attrs)), _MARSHAL_VERSION)


_DIGEST_V2 = re.compile(r"v2:[0-9a-f]{64}")
_DIGEST_V1 = re.compile(r"[0-9a-f]{64}")


def parse_digest(text: str) -> int:
    """The version of a digest as files write it: ``"v2:<64 hex>"`` or a bare 64-hex v1 digest.
    Anything else is a ``ValueError`` that says what a digest looks like."""
    if isinstance(text, str):
        if _DIGEST_V2.fullmatch(text):
            return 2
        if _DIGEST_V1.fullmatch(text):
            return 1
    raise ValueError(
        f"a trace digest is 'v2:' and 64 lowercase hex digits (or 64 hex digits for a v1 "
        f"digest), not {text!r}"
    )


#: Shape head -> Shape (records of a shape carry its head).
_shapes: dict[bytes, Shape] = {}


class Shape:
    """The shape of the events one hot call site emits: kind and attribute names, in the order
    the site passes its values to ``Trace.record``.

    Such an event is stored as ``(time, head, values)`` with ``head`` the v2 bytes of
    ``(kind, *sorted names)`` and the values in the sorted names' order: already digest v2's
    canonical form, so folding it costs no Python code per event, and holding only atomic
    values it is untracked by the cyclic GC.
    Readers see an ordinary ``Event`` (attributes in the call site's order; tuple values of
    ``lists`` keys as lists). The digest is exactly the one ``emit(time, kind, attrs)`` gives.

    ``Shape("ack", connection=1, queue="q")``: a tuple sample marks a key whose value is a list
    (passed as a tuple). Declaring the names in sorted order saves reordering each record.
    """

    __slots__ = ("head", "keys", "kind", "lists", "names", "order")

    def __init__(self, kind: str, **samples: Any) -> None:
        self.kind = kind
        self.keys = tuple(samples)
        self.lists = tuple(k for k, v in samples.items() if type(v) is tuple)
        names = self.names = tuple(sorted(self.keys))
        #: The event's head (``_head``): bytes, so marshal copies it instead of encoding names.
        self.head = _head(kind, names)
        positions = [self.keys.index(name) for name in names]
        #: values in call-site order -> values in sorted-name order (None: already sorted).
        self.order: Any = itemgetter(*positions) if positions != sorted(positions) else None
        _shapes.setdefault(self.head, self)

    def attrs(self, values: tuple[Any, ...]) -> dict[str, Any]:
        """The attributes of a record's (sorted) values, in the call site's order."""
        by_name = dict(zip(self.names, values, strict=True))
        attrs = {key: by_name[key] for key in self.keys}
        for key in self.lists:
            if type(attrs[key]) is tuple:
                attrs[key] = list(attrs[key])
        return attrs

    def __repr__(self) -> str:
        return f"Shape({self.kind!r}, {', '.join(self.keys)})"


def _event(seq: int, time: float, kind: Any, attrs: Any) -> Event:
    """The ``Event`` of a stored record."""
    if type(attrs) is tuple:
        shape = _shapes[kind]
        return _new_event(Event, (seq, time, shape.kind, shape.attrs(attrs)))
    return _new_event(Event, (seq, time, kind, attrs))


def _v1_line(event: Event) -> str:
    return json.dumps(event.to_dict(), sort_keys=True, separators=(",", ":"))


#: How an event is stored: (time, kind, attrs), or (time, shape head, values) for a ``Shape``;
#: its seq is its position (cheaper to emit).
_Record = tuple[float, Any, Any]


class Trace:
    """Events in the order they happened, and their running digest.

    ``Trace(mode="window", window=DEFAULT_WINDOW)``; ``enabled=False`` is ``mode="off"``.
    """

    def __init__(
        self,
        *,
        enabled: bool = True,
        mode: TraceMode | None = None,
        window: int = DEFAULT_WINDOW,
    ) -> None:
        if mode is None:
            mode = "window" if enabled else "off"
        if mode not in TRACE_MODES:
            raise ValueError(f"trace mode must be one of {list(TRACE_MODES)}, not {mode!r}")
        if not isinstance(window, int) or isinstance(window, bool) or window < 1:
            raise ValueError(f"trace window must be a positive int, not {window!r}")
        #: Whether ``emit`` records; ``Broker.set_tracing`` flips it.
        self.enabled = mode != "off"
        self._full = mode == "full"
        self._window = window
        self._events: list[_Record] = []
        self._dropped = 0  # events no longer kept: self._events[0] has index _dropped
        self._folded = 0  # events already in self._hash
        self._hash = hashlib.sha256()
        self._limit = sys.maxsize if self._full else 2 * window
        #: The time of the operation under way (``begin_operation``), or None.
        self._op_time: float | None = None
        #: Held while reading or folding. The engine emits under its owner's lock, so a
        #: threaded owner (``simamqp.Broker``) sets its lock here; readers on other threads
        #: then never see a fold half done. The sans-IO default guards nothing.
        self.guard: AbstractContextManager[Any] = nullcontext()

    # -- recording ------------------------------------------------------------------------

    def emit(self, time: float, kind: str, attrs: Mapping[str, Any]) -> None:
        if self.enabled:
            if self._op_time is not None:
                time = self._op_time
            events = self._events
            events.append((time, kind, attrs))
            if len(events) >= self._limit:
                self._drop_old()

    def record(self, time: float, shape: Shape, values: tuple[Any, ...]) -> None:
        """``emit(time, shape.kind, dict(zip(shape.keys, values)))``, cheaper (see ``Shape``).

        The values must be ``None``, ``bool``, ``int``, ``float``, ``str`` or ``bytes`` (or a
        subclass of one), or tuples of those where the event has a list: the digest encodes
        them as they are (no dict, list or set; ``emit`` takes those)."""
        if self.enabled:
            if shape.order is not None:
                values = shape.order(values)
            if self._op_time is not None:
                time = self._op_time
            events = self._events
            events.append((time, shape.head, values))
            if len(events) >= self._limit:
                self._drop_old()

    def begin_operation(self, time: float) -> bool:
        """Stamp every event with ``time`` until ``end_operation()``: the events one broker
        operation causes share its time. False (and nothing changes) inside an operation."""
        if self._op_time is not None:
            return False
        self._op_time = time
        return True

    def end_operation(self) -> None:
        self._op_time = None

    def _drop_old(self) -> None:
        """Fold the events older than the window into the digest and let them go."""
        cut = len(self._events) - self._window
        if cut > 0:
            self._fold(self._dropped + cut)
            del self._events[:cut]
            self._dropped += cut

    def _fold(self, upto: int) -> None:
        """Hash the events with index < ``upto`` that are not hashed yet."""
        if upto > self._folded:
            base = self._dropped
            update = self._hash.update
            for start in range(self._folded - base, upto - base, _CHUNK):
                update(_encode_records(self._events[start : min(start + _CHUNK, upto - base)]))
            self._folded = upto

    def _as_events(self, start: int = 0) -> list[Event]:
        """The kept events from position ``start`` of ``self._events`` on, as ``Event``s."""
        with self.guard:
            first = self._dropped + start + 1
            records = self._events[start:]
        # Event(...) without the NamedTuple's Python-level __new__ (same tuple).
        return [_event(seq, *record) for seq, record in enumerate(records, first)]

    @property
    def mode(self) -> TraceMode:
        if not self.enabled:
            return "off"
        return "full" if self._full else "window"

    @property
    def window(self) -> int:
        return self._window

    def set_mode(self, mode: TraceMode) -> None:
        """Switch retention. ``"full"`` keeps every event from now on (events that already left
        the window stay gone: ``complete`` says whether the log is whole); ``"window"`` lets
        go of all but the last ``window`` events at once."""
        if mode not in TRACE_MODES:
            raise ValueError(f"trace mode must be one of {list(TRACE_MODES)}, not {mode!r}")
        with self.guard:
            self.enabled = mode != "off"
            if mode != "off":
                self._full = mode == "full"
                self._limit = sys.maxsize if self._full else 2 * self._window
                if not self._full:
                    self._drop_old()

    @property
    def complete(self) -> bool:
        """Every event emitted is still kept (nothing has left the window)."""
        return self._dropped == 0

    @property
    def retained(self) -> int:
        """How many events are kept."""
        return len(self._events)

    def _whole(self, what: str) -> list[Event]:
        if self._dropped:
            raise TraceNotRetained(
                f"trace.{what} needs every event, but this trace keeps only the last "
                f"{len(self._events)} of {len(self)} (mode={self.mode!r}, "
                f"window={self._window}); create the broker with trace='full' (through "
                "kombu: transport_options={'trace': 'full'}), or use trace.tail() / digest()"
            )
        return self._as_events()

    # -- reading --------------------------------------------------------------------------

    def __len__(self) -> int:
        """Events emitted since the start (or ``clear()``), kept or not."""
        return self._dropped + len(self._events)

    def __iter__(self) -> Iterator[Event]:
        return iter(self._whole("__iter__"))

    @overload
    def __getitem__(self, index: int) -> Event: ...

    @overload
    def __getitem__(self, index: slice) -> list[Event]: ...

    def __getitem__(self, index: int | slice) -> Event | list[Event]:
        """The event at ``index`` counted from the first event ever emitted."""
        count = len(self)
        if isinstance(index, slice):
            return [self[i] for i in range(*index.indices(count))]
        if index < 0:
            index += count
        if not 0 <= index < count:
            raise IndexError("trace index out of range")
        if index < self._dropped:
            raise TraceNotRetained(
                f"trace event #{index + 1} has left the window (the last {self._window} "
                f"events are kept; trace='full' keeps all)"
            )
        with self.guard:
            return _event(index + 1, *self._events[index - self._dropped])

    @property
    def events(self) -> list[Event]:
        return self._whole("events")

    def since(self, index: int) -> list[Event]:
        """The events from ``index`` on, counted as ``trace[index]`` counts (negative: from
        the end); ``since(len(trace))`` is empty."""
        if index < 0:
            index = max(index + len(self), 0)
        if index < self._dropped:
            self._whole(f"since({index})")
        return self._as_events(index - self._dropped)

    def of_kind(self, *kinds: str) -> list[Event]:
        return [e for e in self._whole("of_kind()") if e.kind in kinds]

    def tail(self, n: int = 20) -> list[Event]:
        """The last ``n`` events (fewer when the trace keeps fewer)."""
        return self._as_events(max(len(self._events) - n, 0)) if n > 0 else []

    def clear(self) -> None:
        """Forget every event and start the digest again (mode and window stay)."""
        with self.guard:
            self._events.clear()
            self._dropped = self._folded = 0
            self._hash = hashlib.sha256()

    def lines(self) -> Iterator[str]:
        """Digest v1's canonical encoding, one JSON document per event."""
        for event in self._whole("lines()"):
            yield _v1_line(event)

    def digest(self, version: int = DIGEST_VERSION) -> str:
        """The digest of every event: ``"v2:<sha256 hex>"`` (see the module docstring), or
        with ``version=1`` the v1 digest as a bare hex string (needs a complete trace)."""
        if version == 2:
            with self.guard:
                self._fold(len(self))
                return "v2:" + self._hash.hexdigest()
        if version == 1:
            v1 = hashlib.sha256()
            for event in self._whole("digest(version=1)"):
                v1.update(_v1_line(event).encode() + b"\n")
            return v1.hexdigest()
        raise ValueError(
            f"trace digest version must be one of {list(DIGEST_VERSIONS)}, not {version!r}"
        )

    def format(self, last: int | None = None) -> str:
        events = self._whole("format()") if last is None else self.tail(last)
        return "\n".join(str(e) for e in events)

    def __repr__(self) -> str:
        return f"<Trace {len(self)} events, mode={self.mode!r}, {len(self._events)} kept>"
