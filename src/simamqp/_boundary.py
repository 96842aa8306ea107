"""The input boundary: every value a kombu/py-amqp client hands to simamqp passes through here.

On a real connection each method argument is encoded by py-amqp's ``dumps`` following the
method's ``argsig`` and each message by ``GenericContent._serialize_properties`` and the frame
writer; RabbitMQ then receives what those bytes decode to. A value the encoder refuses never
leaves the client (``TypeError``, ``struct.error``, ``ValueError``, ``AttributeError`` or
``FrameSyntaxError``, with the connection intact); a value it coerces arrives coerced
(``int("5")`` for a short, ``2.7`` -> ``2``, ``None`` -> ``""`` for a shortstr, bytes names
become text, tuples in tables become lists, unknown properties are dropped).

This module reproduces exactly that by running py-amqp's own codec: ``method_arguments`` is
``loads(argsig, dumps(argsig, values))``, ``message_properties`` is
``decode_properties_basic(_serialize_properties())`` and ``message_content`` follows the frame
writer. Reusing the codec instead of re-implementing its rules keeps simamqp faithful to the
py-amqp version installed, quirks included. The engine (``simamqp.core``) then applies
RabbitMQ's own checks (argument types and ranges, header types, reply codes and texts).

The codec costs microseconds, which matters on the per-message path (publish, ack), so the
functions there first try a *fast path*: plain types whose round trip through the codec is the
identity (a ``str`` of at most 63 characters is at most 252 UTF-8 bytes, an ``int`` in range, a
``bool``...). ``tests/kombu/test_boundary.py`` checks over generated inputs that the fast path
and the codec agree, so the fast path never accepts what the encoder would refuse or change.
"""

from __future__ import annotations

import array
import struct
from collections.abc import Mapping
from typing import Any

import amqp
from amqp.serialization import decode_properties_basic, dumps, loads

from .core.errors import FrameError

__all__ = [
    "PROPERTY_TYPES",
    "channel_id",
    "delivery_tag",
    "heartbeat",
    "malformed_shortstr",
    "message_content",
    "message_properties",
    "method_arguments",
    "publish_arguments",
]

#: The basic class content properties py-amqp encodes, with their wire types; anything else
#: in ``Message.properties`` is not sent.
PROPERTY_TYPES: dict[str, str] = dict(amqp.Message.PROPERTIES)
_SHORTSTR_PROPERTIES = frozenset(key for key, kind in PROPERTY_TYPES.items() if kind == "s")
_OCTET_PROPERTIES = frozenset(key for key, kind in PROPERTY_TYPES.items() if kind == "o")
if [(k, kind) for k, kind in PROPERTY_TYPES.items() if kind not in ("s", "o")] != [
    ("application_headers", "F"),
    ("timestamp", "L"),
]:  # message_properties' fast path knows exactly these property types
    raise ImportError(f"unsupported py-amqp basic properties: {PROPERTY_TYPES}")

#: Longest str whose UTF-8 form (<= 4 bytes per character, 3 for a surrogate) fits a shortstr.
_SAFE_SHORTSTR_CHARS = 255 // 4
_U64 = 2**64
_I64 = 2**63


def method_arguments(argsig: str, *values: Any) -> list[Any]:
    """``values`` as RabbitMQ receives them once py-amqp has encoded them by ``argsig``.

    Raises what py-amqp's ``dumps`` raises for a value it cannot encode, and the engine's
    ``FrameError`` (501) for a shortstr RabbitMQ cannot decode as UTF-8. The leading
    reserved ``ticket`` (``B``) of most methods is included in ``argsig`` and ``values``.
    """
    encoded = dumps(argsig, values)
    try:
        decoded: list[Any] = loads(argsig, encoded, 0)[0]
    except UnicodeDecodeError:
        # bytes that are not UTF-8 in a shortstr (a name): RabbitMQ refuses the frame.
        raise malformed_shortstr() from None
    return decoded


def malformed_shortstr() -> FrameError:
    """RabbitMQ's 501 for a shortstr that is not UTF-8 (a connection error, method 0, 0)."""
    error = FrameError("Malformed UTF-8 in shortstr")
    error.frame_level = True
    return error


def _shortstr_is_identity(value: Any) -> bool:
    return type(value) is str and len(value) <= _SAFE_SHORTSTR_CHARS


def channel_id(value: Any) -> int:
    """An explicit channel id as py-amqp claims it (an ``array('H')`` item: 0..65535)."""
    claimed = array.array("H")
    claimed.append(value)  # TypeError / OverflowError, as in Connection._claim_channel_id
    return claimed[0]


def publish_arguments(
    exchange: Any, routing_key: Any, mandatory: Any, immediate: Any
) -> tuple[str, str, bool, bool]:
    """basic.publish's arguments after the ticket (argsig ``Bssbb``)."""
    if (
        type(mandatory) is bool
        and type(immediate) is bool
        and _shortstr_is_identity(exchange)
        and _shortstr_is_identity(routing_key)
    ):
        return exchange, routing_key, mandatory, immediate
    _, exchange, routing_key, mandatory, immediate = method_arguments(
        "Bssbb", 0, exchange, routing_key, mandatory, immediate
    )
    return exchange, routing_key, mandatory, immediate


def delivery_tag(tag: Any) -> int:
    """A delivery tag (``L``, unsigned 64-bit) as the encoder takes it."""
    if type(tag) is int and 0 <= tag < _U64:
        return tag
    value: int = method_arguments("L", tag)[0]
    return value


def heartbeat(client_heartbeat: Any, server_heartbeat: int) -> int:
    """The heartbeat py-amqp negotiates and sends in tune-ok (``Connection._on_tune``)."""
    if not client_heartbeat:
        return 0
    negotiated = client_heartbeat
    if server_heartbeat:
        negotiated = min(server_heartbeat, client_heartbeat)
    value: int = method_arguments("B", negotiated)[0]
    return value


#: Returned by the fast-path copiers for a value only the codec can settle.
_CODEC: Any = object()


#: Nesting the fast path copies; deeper tables go through py-amqp's own (recursive) encoder,
#: which then fails exactly where a real py-amqp client fails (RecursionError near 490 levels).
_FAST_DEPTH = 32


def _field(value: Any, depth: int = 0) -> Any:
    """A table or array item, copied, if the codec's round trip is the identity; else _CODEC."""
    kind = type(value)
    if kind is str or kind is bool or kind is float or value is None:
        # str: longstr, UTF-8 with surrogatepass both ways, so any str comes back equal.
        return value
    if kind is int:
        return value if -_I64 <= value < _I64 else _CODEC
    if depth > _FAST_DEPTH:
        return _CODEC
    if kind is dict:
        return _table(value, depth + 1)
    if kind is list:
        items = []
        for item in value:
            item = _field(item, depth + 1)
            if item is _CODEC:
                return _CODEC
            items.append(item)
        return items
    return _CODEC  # tuples become lists, datetimes lose precision, Decimal, bytes...


def _table(value: dict[Any, Any], depth: int = 0) -> Any:
    table = {}
    for key, item in value.items():
        if type(key) is not str or len(key) > _SAFE_SHORTSTR_CHARS:
            return _CODEC
        item = _field(item, depth)
        if item is _CODEC:
            return _CODEC
        table[key] = item
    return table


def message_properties(properties: Mapping[str, Any]) -> dict[str, Any]:
    """Message properties as RabbitMQ receives them (``None`` means absent), as fresh objects.

    Raises what ``GenericContent._serialize_properties`` raises for a value it cannot encode.
    """
    out: dict[str, Any] = {}
    for key, value in properties.items():
        if value is None:
            continue
        kind = type(value)
        # Dispatch on the value's type first: once per property of every published message.
        if kind is str:
            if key not in _SHORTSTR_PROPERTIES or len(value) > _SAFE_SHORTSTR_CHARS:
                return _wire_properties(properties)
        elif kind is int:
            if key in _OCTET_PROPERTIES:
                if not 0 <= value <= 255:
                    return _wire_properties(properties)
            elif key != "timestamp" or not 0 <= value < _U64:
                return _wire_properties(properties)
        elif kind is dict and key == "application_headers":
            value = _table(value) if value else {}  # a copy: the client may reuse its dict
            if value is _CODEC:
                return _wire_properties(properties)
        else:
            return _wire_properties(properties)  # other types, and unknown properties
        out[key] = value
    return out


def _wire_properties(properties: Mapping[str, Any]) -> dict[str, Any]:
    message = amqp.Message(b"")
    message.properties = dict(properties)
    encoded = message._serialize_properties()
    try:
        decoded: dict[str, Any] = decode_properties_basic(encoded, 0)[0]
    except UnicodeDecodeError:
        # A shortstr property that is not UTF-8: RabbitMQ accepts it and py-amqp fails to
        # decode it at the consumer. Keep what was sent; delivery decodes it the same way.
        return {k: v for k, v in properties.items() if v is not None and k in PROPERTY_TYPES}
    return decoded


def message_content(body: Any, properties: Mapping[str, Any]) -> tuple[bytes, dict[str, Any]]:
    """The body bytes and properties py-amqp's frame writer sends for ``amqp.Message``.

    In the frame writer's order: a ``str`` body is encoded with the message's
    ``content_encoding`` (``utf-8`` by default, then recorded in the properties), the
    properties are encoded, then the body's length is taken (``TypeError`` for
    ``amqp.Message(5)``) and it is packed (``struct.error`` for a non-empty body other than
    ``bytes``/``bytearray``, e.g. ``amqp.Message([104, 105])``; an empty one is sent empty).
    """
    if isinstance(body, str):
        if "content_encoding" in properties:
            encoding = properties["content_encoding"]
        else:
            encoding = "utf-8"
            properties = {**properties, "content_encoding": encoding}
        body = body.encode(encoding)
    wire_properties = message_properties(properties)
    if type(body) is bytes:
        return body, wire_properties
    if len(body) == 0:
        return b"", wire_properties
    if isinstance(body, bytes | bytearray):
        return bytes(body), wire_properties
    # What the frame writer's pack_into(">BHI%dsB", ...) raises for this body.
    struct.pack(f"{len(body)}s", body)
    raise AssertionError("unreachable: struct.pack took a body py-amqp refuses")
