"""The event log of a broker, and its digest.

Every effect a client could observe, and every fault the broker applied, is one event. Two runs
with the same seed and the same calls produce the same events; ``digest()`` hashes a canonical
encoding of them (sorted keys, bodies by their own sha256, no ``repr`` of objects, no ids), so the
digest is the same in any process and under any ``PYTHONHASHSEED``.

Retention (``mode``):

- ``"window"`` (the default): the digest covers every event, but only the most recent
  ``window`` events are kept (``tail()``, failure reports). Events are folded into a running
  sha256 in batches as they leave the window, so memory stays flat however many messages move.
- ``"full"``: every event is kept (recording, replay files, tests that inspect the whole log).
- ``"off"``: nothing is recorded (benchmarks); the digest is that of no events.

Asking for the whole log (``events``, ``of_kind``, iteration, ``lines``) after events have left
the window raises ``TraceNotRetained`` rather than answering from part of it.
"""

from __future__ import annotations

import datetime as _dt
import decimal
import hashlib
import json
import json.encoder
import sys
from collections.abc import Iterable, Iterator, Mapping
from contextlib import AbstractContextManager, nullcontext
from typing import Any, Literal, NamedTuple, overload

__all__ = [
    "DEFAULT_WINDOW",
    "Event",
    "Shape",
    "Trace",
    "TraceMode",
    "TraceNotRetained",
    "canonical",
]

TraceMode = Literal["full", "window", "off"]
TRACE_MODES: tuple[TraceMode, ...] = ("full", "window", "off")
#: Events a windowed trace keeps (it holds at most twice as many between two folds).
DEFAULT_WINDOW = 1000


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


class TraceNotRetained(LookupError):
    """The trace no longer keeps the events asked for (window mode dropped them)."""


_new_event = tuple.__new__
_PLAIN = frozenset({int, str, bool, type(None)})
#: json.dumps(..., sort_keys=True, separators=(",", ":")) without building an encoder per call:
#: the C encoder json.dumps itself uses, with the same arguments (check_circular only adds a
#: cycle check; trace values have no cycles).
_c_make_encoder: Any = getattr(json.encoder, "c_make_encoder", None)  # not in typeshed
_c_encode: Any = (
    _c_make_encoder(
        None, None, json.encoder.encode_basestring_ascii, None, ":", ",", True, False, True
    )
    if _c_make_encoder is not None
    else None
)
_py_encoder = json.JSONEncoder(sort_keys=True, separators=(",", ":"))


def _canonical_event(event: Event) -> dict[str, Any]:
    """``event.to_dict()``, without ``canonical``'s walk when the values are already plain."""
    seq, time, kind, attrs = event
    out: dict[str, Any] = {"seq": seq, "time": time, "kind": kind}
    for key, value in attrs.items():
        if type(key) is not str:
            out.update(canonical(attrs))
            return out
        kind_of = type(value)
        if kind_of in _PLAIN or (kind_of is list and all(type(v) is str for v in value)):
            out[key] = value
        else:
            out[key] = canonical(value)
    return out


def _generic_line(event: Event) -> str:
    encode = _c_encode
    if encode is not None:
        return "".join(encode(_canonical_event(event), 0))
    return _py_encoder.encode(_canonical_event(event))  # pragma: no cover - no C json


# -- compiled line encoders ------------------------------------------------------------------
#
# Folding is the trace's main cost, so each event shape (kind + attribute names, in the order a
# call site passes them) gets a line encoder compiled on first sight: one f-string with the
# keys already sorted and quoted, and a type check per value that sends anything unexpected to
# the generic encoder above. The output is byte for byte what the generic encoder produces;
# tests/core/test_trace_retention.py checks both against json.dumps on whole workloads.

_esc = json.encoder.encode_basestring_ascii
_sha256 = hashlib.sha256


def _str_list(values: list[Any] | tuple[Any, ...]) -> str | None:
    for value in values:
        if type(value) is not str:
            return None
    return "[" + ",".join(map(_esc, values)) + "]"


#: tuple of str -> its JSON array (``_str_tuple``), bounded.
_list_lines: dict[tuple[Any, ...], str] = {}
_LIST_LINES_MAX = 4096


def _str_tuple(values: tuple[Any, ...]) -> str | None:
    """``_str_list`` for a tuple, remembered (a queue list is seen once per message)."""
    line = _str_list(values)
    if line is not None:
        if len(_list_lines) >= _LIST_LINES_MAX:
            _list_lines.clear()
        _list_lines[values] = line
    return line


#: type -> (check expression, value expression) for a value ``v``; the value expression is
#: what json.dumps(canonical(v)) writes. Floats are canonical()ised to their repr string.
_RENDER: dict[type, tuple[str, str]] = {
    int: ("type({v}) is int", "{{{v}}}"),
    bool: ("type({v}) is bool", '{{"true" if {v} else "false"}}'),
    type(None): ("{v} is None", "null"),
    str: ("type({v}) is str", "{{_esc({v})}}"),
    float: ("type({v}) is float", '"{{{v}!r}}"'),
    bytes: (
        "type({v}) is bytes",
        '{{{{"len":{{len({v})}},"sha256":"{{_sha256({v}).hexdigest()}}"}}}}',
    ),
}
_RESERVED = frozenset({"seq", "time", "kind"})
_compiled: dict[tuple[str, tuple[str, ...]], Any] = {}
_COMPILED_MAX = 1024


def _compile(
    kind: str, keys: tuple[str, ...], attrs: Mapping[str, Any], *, values: bool = False
) -> Any:
    """A function (seq, time, kind, attrs) -> line, or None when an event of this ``kind`` has
    other attributes or value types than this one. Only called for events of ``kind``.

    ``values=True`` compiles for a ``Shape``: ``attrs`` is then the tuple of values in the
    order of ``keys`` (lists stored as tuples), and the length is the shape's by construction.
    """
    if _RESERVED.intersection(keys) or not all(type(k) is str for k in keys):
        return None
    checks = [
        "type(time) is float",
        "time - time == 0.0",  # finite: json writes inf as Infinity
    ]
    loads = []
    if values:
        loads.append(f"        {''.join(f'v{i}, ' for i in range(len(keys)))}= a")
    else:
        checks.insert(0, f"len(a) == {len(keys)}")
    fields: dict[str, str] = {"seq": "{seq}", "time": "{time!r}"}
    for i, key in enumerate(keys):
        var = f"v{i}"
        value = attrs[key]
        if not values:
            loads.append(f"        {var} = a[{key!r}]")
        if values and type(value) is tuple:
            # Tuples are immutable: their line fragment is cached (queue lists repeat).
            loads.append(
                f"        {var} = (_list_lines.get({var}) or _str_tuple({var}))"
                f" if type({var}) is tuple else None"
            )
            checks.append(f"{var} is not None")
            fields[key] = "{" + var + "}"
        elif type(value) is list:
            loads.append(f"        {var} = _str_list({var}) if type({var}) is list else None")
            checks.append(f"{var} is not None")
            fields[key] = "{" + var + "}"
        elif type(value) in _RENDER:
            check, render = _RENDER[type(value)]
            checks.append(check.format(v=var))
            fields[key] = render.format(v=var)
        else:
            return None
    parts = []
    for key in sorted([*fields, "kind"]):
        literal = _esc(key) + ":"
        if key == "kind":
            literal += _esc(kind)
        parts.append(literal.replace("{", "{{").replace("}", "}}") + fields.get(key, ""))
    source = "\n".join(
        [
            "def encode(seq, time, kind, a):",
            "    try:",
            *loads,
            "        pass",
            "    except (KeyError, ValueError):",
            "        return None",
            f"    if not ({' and '.join(checks)}):",
            "        return None",
            "    return f" + repr("{{" + ",".join(parts) + "}}"),
        ]
    )
    namespace: dict[str, Any] = {
        "_esc": _esc,
        "_sha256": _sha256,
        "_str_list": _str_list,
        "_str_tuple": _str_tuple,
        "_list_lines": _list_lines,
    }
    # Generated from attribute names (quoted with repr/_esc) and the fixed templates above.
    exec(source, namespace)
    return namespace["encode"]


#: kind -> the encoder compiled for the first shape seen of that kind (the common case: one
#: call site per kind); other shapes go through ``_line``'s (kind, attribute names) cache.
_by_kind: dict[str, Any] = {}


def _line(event: Event) -> str:
    """The canonical line of one event (``json.dumps(event.to_dict(), sort_keys=True, ...)``)."""
    kind, attrs = event[2], event[3]
    shape = (kind, tuple(attrs))
    encode = _compiled.get(shape, _compile)
    if encode is _compile:
        encode = _compile(kind, shape[1], attrs) if len(_compiled) < _COMPILED_MAX else None
        _compiled[shape] = encode
        if encode is not None:
            _by_kind.setdefault(kind, encode)
    if encode is not None:
        line: str | None = encode(*event)
        if line is not None:
            return line
    return _generic_line(event)


#: Shape token -> Shape (records of a shape carry its token as their kind).
_shapes: dict[str, Shape] = {}


class Shape:
    """The shape of the events one hot call site emits: kind and attribute names, in the order
    the site passes its values to ``Trace.record``.

    Such an event is stored as ``(time, token, values)``: a tuple of values instead of a dict
    per event, encoded by a line encoder compiled once for the shape (no lookups by name), and,
    holding only atomic values, untracked by the cyclic GC after its first pass. Readers see an
    ordinary ``Event`` (attributes rebuilt; tuple values of ``lists`` keys as lists). The line
    is exactly the one ``emit(time, kind, attrs)`` would give, so the digest does not depend on
    which way an event was recorded.

    ``Shape("ack", connection=1, queue="q")``: the sample values give the types the compiled
    encoder expects; a value of another type takes the generic encoder, as with ``emit``.
    """

    __slots__ = ("keys", "kind", "lists", "token")

    def __init__(self, kind: str, **samples: Any) -> None:
        self.kind = kind
        self.keys = tuple(samples)
        self.lists = tuple(k for k, v in samples.items() if type(v) is tuple)
        token = f"\x00{kind}\x00{len(_shapes)}"
        self.token = sys.intern(token)
        _shapes[self.token] = self
        encode = _compile(kind, self.keys, samples, values=True)
        if encode is not None:
            _by_kind[self.token] = encode

    def attrs(self, values: tuple[Any, ...]) -> dict[str, Any]:
        attrs = dict(zip(self.keys, values, strict=True))
        for key in self.lists:
            if type(attrs[key]) is tuple:
                attrs[key] = list(attrs[key])
        return attrs

    def __repr__(self) -> str:
        return f"Shape({self.kind!r}, {', '.join(self.keys)})"


def _event(seq: int, time: float, kind: str, attrs: Any) -> Event:
    """The ``Event`` of a stored record."""
    if type(attrs) is tuple:
        shape = _shapes[kind]
        return _new_event(Event, (seq, time, shape.kind, shape.attrs(attrs)))
    return _new_event(Event, (seq, time, kind, attrs))


def _encode_lines(records: Iterable[_Record], first_seq: int) -> bytes:
    """The canonical lines of events stored as ``(time, kind, attrs)`` records numbered from
    ``first_seq``, each line ending in a newline (what ``digest`` hashes)."""
    lines: list[str] = []
    append = lines.append
    by_kind = _by_kind
    for seq, (time, kind, attrs) in enumerate(records, first_seq):
        encode = by_kind.get(kind)
        line = encode(seq, time, kind, attrs) if encode is not None else None
        append(line if line is not None else _line(_event(seq, time, kind, attrs)))
    if not lines:
        return b""
    append("")
    return "\n".join(lines).encode()


#: How an event is stored: (time, kind, attrs), or (time, shape token, values) for a ``Shape``;
#: its seq is its position (cheaper to emit).
_Record = tuple[float, str, Any]


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
        #: Held while reading or folding. The engine emits under its owner's lock, so a
        #: threaded owner (``simamqp.Broker``) sets its lock here; readers on other threads
        #: then never see a fold half done. The sans-IO default guards nothing.
        self.guard: AbstractContextManager[Any] = nullcontext()

    # -- recording ------------------------------------------------------------------------

    def emit(self, time: float, kind: str, attrs: Mapping[str, Any]) -> None:
        if self.enabled:
            events = self._events
            # A plain tuple, no seq: the hot path. Readers get Event objects (``_as_events``).
            events.append((time, kind, attrs))
            if len(events) >= self._limit:
                self._drop_old()

    def record(self, time: float, shape: Shape, values: tuple[Any, ...]) -> None:
        """``emit(time, shape.kind, dict(zip(shape.keys, values)))``, cheaper (see ``Shape``);
        ``values`` holds a tuple where the event has a list."""
        if self.enabled:
            events = self._events
            events.append((time, shape.token, values))
            if len(events) >= self._limit:
                self._drop_old()

    def _drop_old(self) -> None:
        """Fold the events older than the window into the digest and let them go."""
        cut = len(self._events) - self._window
        self._fold(self._dropped + cut)
        del self._events[:cut]
        self._dropped += cut

    def _fold(self, upto: int) -> None:
        """Hash the events with index < ``upto`` that are not hashed yet."""
        if upto > self._folded:
            base = self._dropped
            records = self._events[self._folded - base : upto - base]
            self._hash.update(_encode_lines(records, self._folded + 1))
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
        the window stay gone: ``complete`` says whether the log is whole)."""
        if mode not in TRACE_MODES:
            raise ValueError(f"trace mode must be one of {list(TRACE_MODES)}, not {mode!r}")
        self.enabled = mode != "off"
        if mode != "off":
            self._full = mode == "full"
            self._limit = sys.maxsize if self._full else 2 * self._window
            if len(self._events) >= self._limit:
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
        """The events from ``index`` (as in ``trace[index]``) on."""
        if index < self._dropped:
            self._whole(f"since({index})")
        return self._as_events(max(index - self._dropped, 0))

    def of_kind(self, *kinds: str) -> list[Event]:
        return [e for e in self._whole("of_kind()") if e.kind in kinds]

    def tail(self, n: int = 20) -> list[Event]:
        """The last ``n`` events (fewer when the trace keeps fewer)."""
        return self._as_events(max(len(self._events) - n, 0)) if n > 0 else []

    def clear(self) -> None:
        self._events.clear()
        self._dropped = self._folded = 0
        self._hash = hashlib.sha256()

    def lines(self) -> Iterator[str]:
        """The canonical encoding, one JSON document per event."""
        for event in self._whole("lines()"):
            yield json.dumps(event.to_dict(), sort_keys=True, separators=(",", ":"))

    def digest(self) -> str:
        """sha256 of the canonical lines of every event, each followed by a newline."""
        with self.guard:
            self._fold(len(self))
            return self._hash.hexdigest()

    def format(self, last: int | None = None) -> str:
        events = self._whole("format()") if last is None else self.tail(last)
        return "\n".join(str(e) for e in events)

    def __repr__(self) -> str:
        return f"<Trace {len(self)} events, mode={self.mode!r}, {len(self._events)} kept>"
