"""AMQP 0-9-1 frames <-> Python values, with no sockets and no broker logic.

Field encoding is py-amqp's own (``amqp.serialization.loads``/``dumps`` and its ``basic``
content-properties codec), so the values the server hands the core are exactly what py-amqp
would decode off the wire. This module adds what py-amqp has no server side for: the argument
signatures of the methods a client sends, a frame splitter that reports malformed input the way
RabbitMQ's reader does (``rabbit_reader``/``rabbit_command_assembler``), and the writer for the
methods and content a server sends.
"""

from __future__ import annotations

import struct
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import amqp
from amqp.serialization import decode_properties_basic, dumps, loads

__all__ = [
    "CLIENT_METHODS",
    "FRAME_BODY",
    "FRAME_END",
    "FRAME_HEADER",
    "FRAME_HEARTBEAT",
    "FRAME_METHOD",
    "FrameReader",
    "MalformedFrame",
    "RawFrame",
    "content_frames",
    "decode_content_header",
    "decode_method",
    "erlang_binary",
    "heartbeat_frame",
    "method_frame",
]

FRAME_METHOD, FRAME_HEADER, FRAME_BODY, FRAME_HEARTBEAT = 1, 2, 3, 8
FRAME_END = 0xCE
_FRAME_HEADER = struct.Struct(">BHI")
_SIG = struct.Struct(">HH")
_CONTENT_HEADER = struct.Struct(">HHQ")
_END = bytes([FRAME_END])

#: Argument signatures (py-amqp's format letters) of every method a client may send,
#: AMQP 0-9-1 spec section 1 (the ``reserved-1`` ticket shorts included).
CLIENT_METHODS: dict[tuple[int, int], str] = {
    (10, 11): "FsSs",  # connection.start-ok: client-properties, mechanism, response, locale
    (10, 21): "S",  # connection.secure-ok
    (10, 31): "BlB",  # connection.tune-ok: channel-max, frame-max, heartbeat
    (10, 40): "ssb",  # connection.open: virtual-host, reserved, reserved
    (10, 50): "BsBB",  # connection.close
    (10, 51): "",  # connection.close-ok
    (10, 60): "s",  # connection.blocked (RabbitMQ extension; clients may echo it)
    (10, 61): "",  # connection.unblocked
    (20, 10): "s",  # channel.open
    (20, 20): "b",  # channel.flow
    (20, 21): "b",  # channel.flow-ok
    (20, 40): "BsBB",  # channel.close
    (20, 41): "",  # channel.close-ok
    (40, 10): "BssbbbbbF",  # exchange.declare
    (40, 20): "Bsbb",  # exchange.delete
    (40, 30): "BsssbF",  # exchange.bind
    (40, 40): "BsssbF",  # exchange.unbind
    (50, 10): "BsbbbbbF",  # queue.declare
    (50, 20): "BsssbF",  # queue.bind
    (50, 30): "Bsb",  # queue.purge
    (50, 40): "Bsbbb",  # queue.delete
    (50, 50): "BsssF",  # queue.unbind
    (60, 10): "lBb",  # basic.qos
    (60, 20): "BssbbbbF",  # basic.consume
    (60, 30): "sb",  # basic.cancel
    (60, 40): "Bssbb",  # basic.publish
    (60, 70): "Bsb",  # basic.get
    (60, 80): "Lb",  # basic.ack
    (60, 90): "Lb",  # basic.reject
    (60, 100): "b",  # basic.recover-async
    (60, 110): "b",  # basic.recover
    (60, 120): "Lbb",  # basic.nack
    (85, 10): "b",  # confirm.select
    (90, 10): "",  # tx.select
    (90, 20): "",  # tx.commit
    (90, 30): "",  # tx.rollback
}


@dataclass(slots=True)
class RawFrame:
    type: int
    channel: int
    payload: bytes


class MalformedFrame(Exception):
    """Input RabbitMQ's reader refuses: ``reply_code``/``reply_text`` close the connection.

    ``abort`` means RabbitMQ drops the socket without a connection.close (its reader process
    crashes on, e.g., an unknown class or method id).
    """

    def __init__(
        self,
        reply_code: int,
        reply_text: str,
        method: tuple[int, int] = (0, 0),
        *,
        abort: bool = False,
    ) -> None:
        super().__init__(reply_text)
        self.reply_code = reply_code
        self.reply_text = reply_text
        self.method = method
        self.abort = abort


class FrameReader:
    """Split a byte stream into frames; a frame arrives whole or not at all."""

    def __init__(self, frame_max: int) -> None:
        self.frame_max = frame_max
        self._buffer = bytearray()

    def feed(self, data: bytes, max_frames: int = 0) -> list[RawFrame]:
        """Buffer ``data``; return the complete frames buffered (at most ``max_frames``, if set).

        Raises ``MalformedFrame`` at the first frame RabbitMQ would refuse.
        """
        buf = self._buffer
        buf += data
        frames: list[RawFrame] = []
        offset = 0
        size = len(buf)
        while size - offset >= 7:
            type_, channel, length = _FRAME_HEADER.unpack_from(buf, offset)
            if self.frame_max and length > self.frame_max:
                # rabbit_reader checks the header, before the payload arrives, and allows
                # ?FRAME_SIZE_FUDGE (8 octets) over the limit it reports, for old clients.
                raise MalformedFrame(
                    501,
                    f"FRAME_ERROR - type {type_}, all octets = <<>>: "
                    f"{{frame_too_large,{length},{self.frame_max - 8}}}",
                )
            end = offset + 7 + length
            if size < end + 1:
                break
            payload = bytes(buf[offset + 7 : end])
            if buf[end] != FRAME_END:
                raise MalformedFrame(
                    501,
                    "FRAME_ERROR - "
                    + erlang_tail(
                        f"type {type_}, all octets = {erlang_binary(payload)}: ",
                        ["invalid_frame_end_marker", str(buf[end])],
                    ),
                )
            if type_ not in (FRAME_METHOD, FRAME_HEADER, FRAME_BODY, FRAME_HEARTBEAT):
                raise MalformedFrame(
                    501,
                    f"FRAME_ERROR - type {type_}, all octets = {erlang_binary(payload)}: "
                    "unknown_frame",
                )
            frames.append(RawFrame(type_, channel, payload))
            offset = end + 1
            if len(frames) == max_frames:
                break
        if offset:
            del buf[:offset]
        return frames

    def append(self, data: bytes) -> None:
        """Buffer ``data`` for a later ``feed``."""
        self._buffer += data

    @property
    def buffered(self) -> int:
        """Octets received and not yet returned as frames."""
        return len(self._buffer)


def decode_method(payload: bytes) -> tuple[tuple[int, int], list[Any]]:
    """(class id, method id) and the decoded arguments of a method frame."""
    if len(payload) < 4:
        raise MalformedFrame(501, f"FRAME_ERROR - cannot decode {erlang_binary(payload)}")
    sig: tuple[int, int] = _SIG.unpack_from(payload, 0)
    fmt = CLIENT_METHODS.get(sig)
    if fmt is None:
        raise MalformedFrame(540, f"NOT_IMPLEMENTED - unknown method {sig}", sig, abort=True)
    try:
        args, _ = loads(fmt, payload, 4)
    except UnicodeDecodeError:
        # A shortstr (a name) that is not UTF-8: RabbitMQ's reader parses the frame, then
        # refuses the string with method (0, 0), as the in-process boundary does.
        raise MalformedFrame(501, "FRAME_ERROR - Malformed UTF-8 in shortstr") from None
    except Exception:
        raise MalformedFrame(
            501, f"FRAME_ERROR - cannot decode {erlang_binary(payload[4:])}", sig
        ) from None
    return sig, args


def decode_content_header(payload: bytes) -> tuple[int, int, dict[str, Any]]:
    """(class id, body size, properties) of a content header frame."""
    class_id, _weight, body_size = _CONTENT_HEADER.unpack_from(payload, 0)
    properties, _ = decode_properties_basic(payload, 12)
    return class_id, body_size, properties


def method_frame(channel: int, sig: tuple[int, int], fmt: str = "", args: Any = ()) -> bytes:
    payload = _SIG.pack(*sig) + (dumps(fmt, args) if fmt else b"")
    return _FRAME_HEADER.pack(FRAME_METHOD, channel, len(payload)) + payload + _END


def heartbeat_frame() -> bytes:
    return _FRAME_HEADER.pack(FRAME_HEARTBEAT, 0, 0) + _END


def encode_properties(properties: Mapping[str, Any]) -> bytes:
    """The ``basic`` content properties as py-amqp encodes them (None means absent)."""
    present = {k: v for k, v in properties.items() if v is not None}
    encoded: bytes = amqp.Message(b"", **present)._serialize_properties()
    return encoded


def content_frames(
    channel: int,
    sig: tuple[int, int],
    fmt: str,
    args: Any,
    body: bytes,
    properties: Mapping[str, Any],
    frame_max: int,
) -> bytes:
    """A content-bearing method: method frame, header frame, body frames of <= frame_max."""
    parts = [method_frame(channel, sig, fmt, args)]
    header = _CONTENT_HEADER.pack(sig[0], 0, len(body)) + encode_properties(properties)
    parts.append(_FRAME_HEADER.pack(FRAME_HEADER, channel, len(header)) + header + _END)
    chunk = frame_max - 8
    for start in range(0, len(body), chunk):
        piece = body[start : start + chunk]
        parts.append(_FRAME_HEADER.pack(FRAME_BODY, channel, len(piece)) + piece + _END)
    return b"".join(parts)


# -- Erlang term formatting (RabbitMQ's reply texts embed io_lib:format("~p") output) ----------

_PRINTABLE = frozenset(range(32, 127)) | {9, 10, 13}


def erlang_binary(data: bytes) -> str:
    """A binary as Erlang's ``~p`` prints it: ``<<"text">>`` when printable, else bytes."""
    if data and all(b in _PRINTABLE for b in data):
        text = data.decode("latin-1")
        text = text.replace("\\", "\\\\").replace('"', '\\"')
        text = text.replace("\n", "\\n").replace("\r", "\\r").replace("\t", "\\t")
        return f'<<"{text}">>'
    return "<<" + ",".join(str(b) for b in data) + ">>"


def erlang_tail(prefix: str, elements: list[str]) -> str:
    """``prefix`` followed by a tuple printed with ``~p``: wrapped one element a line when
    it would pass column 80, continuation lines aligned after the ``{``."""
    flat = "{" + ",".join(elements) + "}"
    column = len(prefix)
    if column + len(flat) < 80:
        return prefix + flat
    indent = "\n" + " " * (column + 1)
    return prefix + "{" + ("," + indent).join(elements) + "}"
