"""Both trace digests, written from their documented definitions (docs/design.md, "The
trace") without the code that computes them: no marshal, no ``Trace``, no ``canonical*``.

A change to what is hashed, or a CPython whose ``marshal`` format 2 wrote other bytes, makes
these disagree with ``Trace.digest()``.
"""

from __future__ import annotations

import datetime as dt
import decimal
import hashlib
import json
import struct
from collections.abc import Iterable, Mapping
from typing import Any

#: One event as the tests write it: (time, kind, attributes).
HandEvent = tuple[Any, str, Mapping[str, Any]]


def _le32(n: int) -> bytes:
    return struct.pack("<i", n)


def v2_value(value: Any) -> Any:
    """A value as v2 sees it (the canonicalisation rules of the definition)."""
    if value is None or type(value) in (bool, int, float, str, bytes):
        return value
    if isinstance(value, bool):  # pragma: no cover - bool cannot be subclassed
        return bool(value)
    if isinstance(value, int):
        return int.__int__(value)
    if isinstance(value, float):
        return float.__float__(value)
    if isinstance(value, str):
        return str.__str__(value)
    if isinstance(value, bytes | bytearray | memoryview):
        return bytes(value)
    if isinstance(value, Mapping):
        pairs = sorted(((str(k), v) for k, v in value.items()), key=lambda kv: kv[0])
        return {k: v2_value(v) for k, v in pairs}
    if isinstance(value, list | tuple):
        return tuple(v2_value(v) for v in value)
    if isinstance(value, dt.datetime):
        return value.isoformat()
    if isinstance(value, decimal.Decimal):
        return f"decimal:{value}"
    raise TypeError(f"cannot put {type(value).__name__} in a trace")


def is_canonical(value: Any) -> bool:
    """Already in canonical form, exactly: atomic values of the exact types, tuples of them."""
    if type(value) is tuple:
        return all(is_canonical(v) for v in value)
    return value is None or type(value) in (bool, int, float, str, bytes)


def v2_bytes(value: Any) -> bytes:
    """The bytes of a canonical value, byte for byte as documented."""
    if value is None:
        return b"N"
    if value is True:
        return b"T"
    if value is False:
        return b"F"
    if type(value) is int:
        if -(2**31) <= value < 2**31:
            return b"i" + _le32(value)
        digits = []
        rest = abs(value)
        while rest:
            digits.append(rest & 0x7FFF)
            rest >>= 15
        count = len(digits) if value > 0 else -len(digits)
        return b"l" + _le32(count) + b"".join(struct.pack("<H", d) for d in digits)
    if type(value) is float:
        return b"g" + struct.pack("<d", value)
    if type(value) is str:
        data = value.encode("utf-8", "surrogatepass")
        return b"u" + _le32(len(data)) + data
    if type(value) is bytes:
        return b"s" + _le32(len(value)) + value
    if type(value) is tuple:
        return b"(" + _le32(len(value)) + b"".join(v2_bytes(v) for v in value)
    if type(value) is dict:
        return b"{" + b"".join(v2_bytes(k) + v2_bytes(v) for k, v in value.items()) + b"0"
    raise AssertionError(f"not canonical: {value!r}")


def v2_event(time: Any, kind: str, attrs: Mapping[str, Any]) -> bytes:
    """(time, head, values): head = the bytes of (kind, *sorted names), values in that order."""
    fields = v2_value(dict(attrs))
    head = v2_bytes((v2_value(kind), *fields))
    return v2_bytes((v2_value(time), head, tuple(fields.values())))


def v2_digest(events: Iterable[HandEvent]) -> str:
    h = hashlib.sha256()
    for time, kind, attrs in events:
        h.update(v2_event(time, kind, attrs))
    return "v2:" + h.hexdigest()


def _v1_value(value: Any) -> Any:
    if value is None or isinstance(value, bool | int | str):
        return value
    if isinstance(value, float):
        return repr(value)
    if isinstance(value, bytes | bytearray | memoryview):
        data = bytes(value)
        return {"sha256": hashlib.sha256(data).hexdigest(), "len": len(data)}
    if isinstance(value, Mapping):
        return {str(k): _v1_value(v) for k, v in sorted(value.items(), key=lambda kv: str(kv[0]))}
    if isinstance(value, list | tuple):
        return [_v1_value(v) for v in value]
    if isinstance(value, dt.datetime):
        return value.isoformat()
    if isinstance(value, decimal.Decimal):
        return f"decimal:{value}"
    raise TypeError(f"cannot put {type(value).__name__} in a trace")


def v1_digest(events: Iterable[HandEvent]) -> str:
    """sha256 over one sorted-key JSON line per event (seq from 1, then time, kind, attributes;
    an attribute named seq/time/kind overrides the field), each followed by a newline."""
    h = hashlib.sha256()
    for seq, (time, kind, attrs) in enumerate(events, 1):
        doc = {"seq": seq, "time": time, "kind": kind, **_v1_value(dict(attrs))}
        h.update(json.dumps(doc, sort_keys=True, separators=(",", ":")).encode() + b"\n")
    return h.hexdigest()
