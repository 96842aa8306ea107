"""What both adapters put on (or take off) the wire, defined once.

The kombu transport (``simamqp://``) and the socket server (``simamqp serve``) reach the same
engine by two routes; a value must mean the same thing whichever way it arrived and leave the
same way. This module holds what both need:

- ``SERVER_PROPERTIES`` and the heartbeat RabbitMQ 3.10 offers;
- ``reply_text``: a close or return reply text as RabbitMQ sends it, truncated to the shortstr
  limit (``rabbit_binary_generator``: 252 octets and ``...`` when longer than 255);
- ``close_args`` and ``to_amqp_error``: an engine error as the close method the server sends
  and as the py-amqp exception the in-process client raises (the same code, text, method);
- field tables (``encode_table``/``decode_table``) and basic content properties
  (``encode_properties``/``decode_properties``) with py-amqp's type letters, written without
  recursion: RabbitMQ accepts headers nested as deep as a frame can hold (measured: 18,000
  levels in a 131,072-octet header frame), so no depth a client can send may exhaust the
  interpreter's stack in the broker.

``Long`` marks an integer RabbitMQ sends as a signed 64-bit ``l`` field whatever its value
(the ``count`` of an ``x-death`` entry); py-amqp reads it back as a plain ``int``.
"""

from __future__ import annotations

import calendar
import datetime
import struct
from collections.abc import Mapping
from decimal import Decimal
from typing import Any

import amqp.exceptions as amqp_exc

from . import __version__
from .core.arguments import Long
from .core.errors import AMQPError

__all__ = [
    "SERVER_HEARTBEAT",
    "SERVER_PROPERTIES",
    "Long",
    "close_args",
    "decode_properties",
    "decode_table",
    "encode_properties",
    "encode_table",
    "reply_text",
    "reply_text_str",
    "to_amqp_error",
]

SERVER_PROPERTIES: dict[str, Any] = {
    # kombu and Celery adapt QoS handling to the product and version; simamqp implements
    # RabbitMQ 3.10's semantics, so it presents itself as that (docs/differences.md).
    "product": "RabbitMQ",
    "version": "3.10.8",
    "platform": f"simamqp {__version__} (in-memory simulator)",
    "capabilities": {
        "publisher_confirms": True,
        "exchange_exchange_bindings": True,
        "basic.nack": True,
        "consumer_cancel_notify": True,
        "connection.blocked": True,
        "consumer_priorities": True,
        "authentication_failure_close": True,
        "per_consumer_qos": True,
        "direct_reply_to": True,
    },
    "cluster_name": "simamqp",
}

#: RabbitMQ's default heartbeat timeout (s), offered in connection.tune.
SERVER_HEARTBEAT = 60

#: rabbit_binary_generator:amqp_exception_explanation: a reply text longer than a shortstr
#: is cut to its first 252 octets followed by "...".
_SHORTSTR_MAX = 255
_TRUNCATED_TO = 252


def reply_text(text: str | bytes) -> bytes:
    """A reply text's octets as RabbitMQ sends them (at most 255).

    Text built from client input (a name in a 404, an Erlang dump of octets) may hold raw
    octets as surrogate escapes (``\\udc80``-``\\udcff``): they go out as those octets.
    """
    data = text if isinstance(text, bytes) else text.encode("utf-8", "surrogateescape")
    if len(data) > _SHORTSTR_MAX:
        data = data[:_TRUNCATED_TO] + b"..."
    return data


def reply_text_str(text: str) -> str:
    """``reply_text`` as the text a py-amqp client decodes (octets that are not UTF-8 kept as
    surrogate escapes, where py-amqp itself would fail to decode the frame)."""
    data = reply_text(text)
    return data.decode("utf-8", "surrogateescape")


def close_args(error: AMQPError) -> tuple[int, bytes, int, int]:
    """channel.close / connection.close arguments for ``error``, as RabbitMQ sends them."""
    class_id, method_id = error.method
    return error.reply_code, reply_text(error.reply_text), class_id, method_id


def to_amqp_error(err: AMQPError) -> amqp_exc.AMQPError:
    """The exception py-amqp raises when the broker closes with ``err``."""
    default = amqp_exc.ChannelError if err.soft else amqp_exc.ConnectionError
    error: amqp_exc.AMQPError = amqp_exc.error_for_code(
        err.reply_code, reply_text_str(err.reply_text), err.method, default
    )
    return error


# -- field tables, without recursion -----------------------------------------------------------

_I32 = 2147483647
_pack_I = struct.Struct(">I").pack
_unpack_I = struct.Struct(">I").unpack_from
_FIXED: dict[str, tuple[struct.Struct, int]] = {
    "s": (struct.Struct(">h"), 2),
    "b": (struct.Struct(">b"), 1),
    "B": (struct.Struct(">B"), 1),
    "U": (struct.Struct(">h"), 2),
    "u": (struct.Struct(">H"), 2),
    "I": (struct.Struct(">i"), 4),
    "i": (struct.Struct(">I"), 4),
    "L": (struct.Struct(">q"), 8),
    "l": (struct.Struct(">q"), 8),
    "f": (struct.Struct(">f"), 4),
    "d": (struct.Struct(">d"), 8),
}


def _text(data: bytes) -> str | bytes:
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError:
        return data  # as py-amqp: octets that are not UTF-8 stay bytes


def decode_table(buf: bytes, offset: int) -> tuple[dict[Any, Any], int]:
    """A field table at ``offset`` (its 4-octet length first), as py-amqp's ``loads('F')``.

    Raises ``amqp.exceptions.FrameSyntaxError`` for an unknown field type and ``struct.error``
    or ``IndexError`` for a truncated table.
    """
    (size,) = _unpack_I(buf, offset)
    offset += 4
    root: dict[Any, Any] = {}
    # (container, end offset); a dict is being filled when its key is read first.
    stack: list[tuple[Any, int]] = [(root, offset + size)]
    while stack:
        container, end = stack[-1]
        if offset >= end:
            if offset > end:
                raise struct.error("field table overruns its length")
            stack.pop()
            continue
        key: Any = None
        if type(container) is dict:
            length = buf[offset]
            key = _text(bytes(buf[offset + 1 : offset + 1 + length]))
            offset += 1 + length
        kind = chr(buf[offset])
        offset += 1
        value: Any
        if kind == "F" or kind == "A":
            (size,) = _unpack_I(buf, offset)
            offset += 4
            value = {} if kind == "F" else []
            if offset + size > len(buf):
                raise struct.error("field table truncated")
            stack.append((value, offset + size))
        elif kind == "S":
            (size,) = _unpack_I(buf, offset)
            offset += 4
            if offset + size > len(buf):
                raise struct.error("longstr truncated")
            value = _text(bytes(buf[offset : offset + size]))
            offset += size
        elif kind == "x":
            (size,) = _unpack_I(buf, offset)
            offset += 4
            value = bytes(buf[offset : offset + size])
            offset += size
        elif kind in _FIXED:
            codec, width = _FIXED[kind]
            (value,) = codec.unpack_from(buf, offset)
            offset += width
        elif kind == "D":
            digits = buf[offset]
            (number,) = struct.unpack_from(">i", buf, offset + 1)
            offset += 5
            value = Decimal(number) / Decimal(10**digits)
        elif kind == "t":
            value = bool(buf[offset])
            offset += 1
        elif kind == "T":
            (seconds,) = struct.unpack_from(">Q", buf, offset)
            offset += 8
            value = datetime.datetime.fromtimestamp(seconds, tz=datetime.UTC).replace(tzinfo=None)
        elif kind == "V":
            value = None
        else:
            raise amqp_exc.FrameSyntaxError(f"Unknown value in table: {kind!r} ({type(kind)!r})")
        if type(container) is dict:
            container[key] = value
        else:
            container.append(value)
    return root, offset


def _scalar(value: Any) -> bytes | None:
    """The encoding of a non-container field value (py-amqp's letters); None if unsupported."""
    if isinstance(value, str | bytes):
        data = value.encode("utf-8", "surrogatepass") if isinstance(value, str) else value
        return b"S" + _pack_I(len(data)) + data
    if isinstance(value, bool):
        return struct.pack(">cB", b"t", int(value))
    if isinstance(value, float):
        return struct.pack(">cd", b"d", value)
    if isinstance(value, Long):
        return struct.pack(">cq", b"l", value)
    if isinstance(value, int):
        if value > _I32 or value < -_I32:
            return struct.pack(">cq", b"L", value)
        return struct.pack(">ci", b"I", value)
    if isinstance(value, Decimal):
        sign, digits, exponent = value.as_tuple()
        number = 0
        for digit in digits:
            number = number * 10 + digit
        if sign:
            number = -number
        assert isinstance(exponent, int)
        return struct.pack(">cBi", b"D", -exponent, number)
    if isinstance(value, datetime.datetime):
        return struct.pack(">cQ", b"T", int(calendar.timegm(value.utctimetuple())))
    if value is None:
        return b"V"
    return None


def encode_table(table: Mapping[Any, Any]) -> bytes:
    """``table`` as py-amqp's ``dumps('F')`` encodes it (``Long`` as ``l``), iteratively.

    Raises ``amqp.exceptions.FrameSyntaxError`` for a value py-amqp cannot encode.
    """
    out = bytearray(b"\x00\x00\x00\x00")
    # (iterator over items, offset of the container's length field, is a table)
    stack: list[tuple[Any, int, bool]] = [(iter(table.items()), 0, True)]
    while stack:
        items, start, is_table = stack[-1]
        entry = next(items, _END)
        if entry is _END:
            stack.pop()
            out[start : start + 4] = _pack_I(len(out) - start - 4)
            continue
        if is_table:
            key, value = entry
            raw_key = key.encode("utf-8", "surrogatepass") if isinstance(key, str) else key
            out += struct.pack("B", len(raw_key))
            out += raw_key
        else:
            value = entry
        if isinstance(value, dict):
            out += b"F"
            stack.append((iter(value.items()), len(out), True))
            out += b"\x00\x00\x00\x00"
        elif isinstance(value, list | tuple):
            out += b"A"
            stack.append((iter(value), len(out), False))
            out += b"\x00\x00\x00\x00"
        else:
            encoded = _scalar(value)
            if encoded is None:
                raise amqp_exc.FrameSyntaxError(f"Table type {type(value)!r} not handled by amqp.")
            out += encoded
    return bytes(out)


_END: Any = object()

# -- basic content properties -------------------------------------------------------------------

#: (name, type letter, flag bit) of the basic class properties, in wire order.
_PROPERTIES: tuple[tuple[str, str, int], ...] = tuple(
    (name, kind, 1 << (15 - index))
    for index, (name, kind) in enumerate(
        [
            ("content_type", "s"),
            ("content_encoding", "s"),
            ("application_headers", "F"),
            ("delivery_mode", "o"),
            ("priority", "o"),
            ("correlation_id", "s"),
            ("reply_to", "s"),
            ("expiration", "s"),
            ("message_id", "s"),
            ("timestamp", "L"),
            ("type", "s"),
            ("user_id", "s"),
            ("app_id", "s"),
            ("cluster_id", "s"),
        ]
    )
)


def decode_properties(buf: bytes, offset: int) -> tuple[dict[str, Any], int]:
    """Basic content properties at ``offset``, as py-amqp's ``decode_properties_basic``, except
    that a shortstr property that is not UTF-8 is kept as its octets (RabbitMQ stores and
    delivers it unchanged; measured)."""
    (flags,) = struct.unpack_from(">H", buf, offset)
    offset += 2
    properties: dict[str, Any] = {}
    for name, kind, bit in _PROPERTIES:
        if not flags & bit:
            continue
        if kind == "s":
            length = buf[offset]
            if offset + 1 + length > len(buf):
                raise struct.error("shortstr truncated")
            properties[name] = _text(bytes(buf[offset + 1 : offset + 1 + length]))
            offset += 1 + length
        elif kind == "F":
            properties[name], offset = decode_table(buf, offset)
        elif kind == "o":
            properties[name] = buf[offset]
            offset += 1
        else:
            (properties[name],) = struct.unpack_from(">Q", buf, offset)
            offset += 8
    return properties, offset


def encode_properties(properties: Mapping[str, Any]) -> bytes:
    """Basic content properties (``None`` means absent) as py-amqp's ``_serialize_properties``
    encodes them, tables without recursion and ``Long`` as ``l``."""
    flags = 0
    parts: list[bytes] = []
    for name, kind, bit in _PROPERTIES:
        value = properties.get(name)
        if value is None:
            continue
        flags |= bit
        if kind == "s":
            data = value.encode("utf-8", "surrogatepass") if isinstance(value, str) else value
            parts.append(struct.pack("B", len(data)) + data)
        elif kind == "F":
            parts.append(encode_table(value))
        elif kind == "o":
            parts.append(struct.pack("B", value))
        else:
            if isinstance(value, datetime.datetime):
                value = int(calendar.timegm(value.utctimetuple()))
            parts.append(struct.pack(">Q", value))
    return struct.pack(">H", flags) + b"".join(parts)
