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

from amqp.serialization import dumps, loads

from .._wire import decode_properties
from .._wire import encode_properties as _encode_properties

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
    """Split a byte stream into frames; a frame arrives whole or not at all.

    A malformed frame does not cost the frames before it: ``feed`` returns those, and the
    error is raised by the next ``feed`` (RabbitMQ's reader handles frames one by one).
    """

    def __init__(self, frame_max: int) -> None:
        self.frame_max = frame_max
        self._buffer = bytearray()
        self._error: MalformedFrame | None = None
        #: After a frame too large to wait for, the stream cannot be split any more.
        self._discard = False

    def feed(self, data: bytes, max_frames: int = 0) -> list[RawFrame]:
        """Buffer ``data``; return the complete frames buffered (at most ``max_frames``, if set).

        Raises ``MalformedFrame`` at the first frame RabbitMQ would refuse.
        """
        if self._error is not None:
            error, self._error = self._error, None
            raise error
        buf = self._buffer
        if self._discard:
            return []
        buf += data
        frames: list[RawFrame] = []
        offset = 0
        size = len(buf)
        try:
            while size - offset >= 7:
                type_, channel, length = _FRAME_HEADER.unpack_from(buf, offset)
                if self.frame_max and length > self.frame_max:
                    # rabbit_reader checks the header, before the payload arrives, and allows
                    # ?FRAME_SIZE_FUDGE (8 octets) over the limit it reports, for old clients.
                    self._discard = True
                    buf.clear()
                    offset = size = 0
                    raise MalformedFrame(
                        501,
                        f"FRAME_ERROR - type {type_}, all octets = <<>>: "
                        f"{{frame_too_large,{length},{self.frame_max - 8}}}",
                    )
                end = offset + 7 + length
                if size < end + 1:
                    break
                payload = bytes(buf[offset + 7 : end])
                marker = buf[end]
                offset = end + 1  # a malformed frame is consumed too: what follows is read
                if marker != FRAME_END:
                    raise MalformedFrame(
                        501,
                        frame_error_text(type_, payload, ["invalid_frame_end_marker", str(marker)]),
                    )
                if not _well_formed(type_, payload):
                    # rabbit_command_assembler:analyze_frame: an unknown type, a method frame
                    # without its ids, a content header shorter than 12 octets, a heartbeat
                    # with a payload.
                    raise MalformedFrame(501, frame_error_text(type_, payload, "unknown_frame"))
                frames.append(RawFrame(type_, channel, payload))
                if len(frames) == max_frames:
                    break
        except MalformedFrame as error:
            if offset:
                del buf[:offset]
            if not frames:
                raise
            self._error = error
            return frames
        if offset:
            del buf[:offset]
        return frames

    def append(self, data: bytes) -> None:
        """Buffer ``data`` for a later ``feed``."""
        self._buffer += data

    @property
    def error_pending(self) -> bool:
        """A malformed frame follows the frames ``feed`` returned; the next ``feed`` raises."""
        return self._error is not None

    @property
    def buffered(self) -> int:
        """Octets received and not yet returned as frames."""
        return len(self._buffer)


def _well_formed(type_: int, payload: bytes) -> bool:
    if type_ == FRAME_METHOD:
        return len(payload) >= 4
    if type_ == FRAME_HEADER:
        return len(payload) >= 12
    if type_ == FRAME_BODY:
        return True
    if type_ == FRAME_HEARTBEAT:
        return not payload
    return False


def frame_error_text(type_: int, payload: bytes, error: str | list[str]) -> str:
    """rabbit_reader's frame error: ``"type ~p, ~s octets = ~p: ~p"`` with the payload's first
    16 octets (all of them when there are no more), as io_lib formats it."""
    prefix = f"type {type_}, {'all' if len(payload) <= 16 else 'first 16'} octets = "
    text = prefix + erlang_binary(payload[:16], len(prefix)) + ": "
    column = len(text) - text.rfind("\n") - 1 if "\n" in text else len(text)
    if isinstance(error, str):
        return "FRAME_ERROR - " + text + error
    return (
        "FRAME_ERROR - "
        + text[: len(text) - column]
        + erlang_tail(text[len(text) - column :], error)
    )


def unexpected_frame_text(type_: int, payload: bytes) -> str:
    """rabbit_reader's unexpected_frame: ``"type ~p, ~s octets = ~p"``."""
    prefix = f"type {type_}, {'all' if len(payload) <= 16 else 'first 16'} octets = "
    return "UNEXPECTED_FRAME - " + prefix + erlang_binary(payload[:16], len(prefix))


def decode_method(payload: bytes) -> tuple[tuple[int, int], list[Any]]:
    """(class id, method id) and the decoded arguments of a method frame (>= 4 octets)."""
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
            501, f"FRAME_ERROR - cannot decode {erlang_binary(payload[4:], 26)}", sig
        ) from None
    return sig, args


def decode_content_header(payload: bytes) -> tuple[int, int, dict[str, Any]]:
    """(class id, body size, properties) of a content header frame (>= 12 octets).

    Properties RabbitMQ cannot parse (truncated, an unknown field type) close the connection
    with 541 INTERNAL_ERROR, as RabbitMQ's channel does (measured); a shortstr property that is
    not UTF-8 is accepted and delivered as it came (measured).
    """
    class_id, _weight, body_size = _CONTENT_HEADER.unpack_from(payload, 0)
    try:
        properties, _ = decode_properties(payload, 12)
    except Exception:
        raise MalformedFrame(541, "INTERNAL_ERROR") from None
    return class_id, body_size, properties


def method_frame(channel: int, sig: tuple[int, int], fmt: str = "", args: Any = ()) -> bytes:
    payload = _SIG.pack(*sig) + (dumps(fmt, args) if fmt else b"")
    return _FRAME_HEADER.pack(FRAME_METHOD, channel, len(payload)) + payload + _END


def heartbeat_frame() -> bytes:
    return _FRAME_HEADER.pack(FRAME_HEARTBEAT, 0, 0) + _END


def encode_properties(properties: Mapping[str, Any]) -> bytes:
    """The ``basic`` content properties as py-amqp encodes them (None means absent)."""
    return _encode_properties(properties)


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

#: io_lib:printable_latin1_list: what ``~p`` prints as a string, and the escapes it uses.
_ESCAPES = {8: "\\b", 9: "\\t", 10: "\\n", 11: "\\v", 12: "\\f", 13: "\\r", 27: "\\e"}
_ESCAPES |= {34: '\\"', 92: "\\\\"}
_PRINTABLE = frozenset(range(32, 127)) | frozenset(range(160, 256)) | frozenset(_ESCAPES)


def erlang_binary(data: bytes, column: int = 0) -> str:
    """A binary as Erlang's ``~p`` prints it starting at ``column``: ``<<"text">>`` when it is
    printable Latin-1 (octets above 127 as surrogate escapes, sent as the raw octets), else
    its octets, wrapped at column 80 with continuation lines under the first octet (fitted to
    RabbitMQ 3.10's answers for random payloads)."""
    if data and all(b in _PRINTABLE for b in data):
        chars = [_ESCAPES.get(b) or (chr(b) if b < 128 else chr(0xDC00 + b)) for b in data]
        return '<<"' + "".join(chars) + '">>'
    items = [str(b) for b in data]
    flat = "<<" + ",".join(items) + ">>"
    if column + len(flat) <= 80:
        return flat
    out = "<<"
    start = col = column + 2
    for index, item in enumerate(items):
        piece = item + (">>" if index == len(items) - 1 else ",")
        if col + len(piece) > 79 and col != start:
            out += "\n" + " " * start
            col = start
        out += piece
        col += len(piece)
    return out


def erlang_tail(prefix: str, elements: list[str]) -> str:
    """``prefix`` followed by a tuple printed with ``~p``: wrapped one element a line when
    it would pass column 80, continuation lines aligned after the ``{``."""
    flat = "{" + ",".join(elements) + "}"
    column = len(prefix)
    if column + len(flat) < 80:
        return prefix + flat
    indent = "\n" + " " * (column + 1)
    return prefix + "{" + ("," + indent).join(elements) + "}"
