"""A raw AMQP 0-9-1 client: exact bytes in, what the server answered out (no client library)."""

from __future__ import annotations

import contextlib
import socket
import struct
import time
from typing import Any
from urllib.parse import urlparse

from amqp.serialization import dumps

PROTOCOL_HEADER = b"AMQP\x00\x00\x09\x01"


def frame(type_: int, channel: int, payload: bytes, end: bytes = b"\xce") -> bytes:
    return struct.pack(">BHI", type_, channel, len(payload)) + payload + end


def method(channel: int, sig: tuple[int, int], fmt: str = "", args: Any = ()) -> bytes:
    return frame(1, channel, struct.pack(">HH", *sig) + (dumps(fmt, args) if fmt else b""))


def address(url: str) -> tuple[str, int]:
    parsed = urlparse(url)
    return parsed.hostname or "127.0.0.1", parsed.port or 5672


def read_until_closed(
    sock: socket.socket, timeout: float, fence: tuple[Any, ...] | None = None
) -> tuple[bytes, str]:
    """What the server sends until connection.close ("close sent"), it drops the socket
    ("closed"), the ``fence`` frame arrives ("open": everything sent before it was answered),
    or ``timeout`` passes ("open")."""
    sock.settimeout(timeout)
    data = b""
    deadline = time.monotonic() + timeout
    try:
        while time.monotonic() < deadline:
            chunk = sock.recv(65536)
            if not chunk:
                return data, "closed"
            data += chunk
            got = frames(data)
            if any(f[0] == "close" for f in got):
                return data, "close sent"  # the server now waits for close-ok
            if fence is not None and fence in got:
                return data, "open"
    except TimeoutError:
        return data, "open"
    except ConnectionResetError:
        return data, "closed"
    return data, "open"


def frames(data: bytes) -> list[tuple[Any, ...]]:
    """Decoded frames: ("close", code, text, class, method) for closes, else (type, ch, sig)."""
    out: list[tuple[Any, ...]] = []
    while len(data) >= 8:
        type_, channel, size = struct.unpack(">BHI", data[:7])
        payload = data[7 : 7 + size]
        data = data[8 + size :]
        if type_ == 1:
            sig = struct.unpack(">HH", payload[:4])
            if sig in ((10, 50), (20, 40)):
                # The text as octets (RabbitMQ sends Latin-1 octets in an Erlang dump).
                code, length = struct.unpack_from(">HB", payload, 4)
                text = payload[7 : 7 + length].decode("utf-8", "surrogateescape")
                class_id, method_id = struct.unpack_from(">HH", payload, 7 + length)
                kind = "close" if sig == (10, 50) else "channel.close"
                out.append((kind, channel, code, text, class_id, method_id))
            else:
                out.append((type_, channel, sig))
        else:
            out.append((type_, channel))
    return out


def send(sock: socket.socket, data: bytes) -> None:
    """sendall, ignoring a socket the server already dropped (its answer is read next)."""
    with contextlib.suppress(OSError):
        sock.sendall(data)


def open_connection(url: str, channel_max: int = 2047, frame_max: int = 131072) -> socket.socket:
    """A socket past connection.open-ok (PLAIN guest/guest, no heartbeats)."""
    sock = socket.create_connection(address(url), timeout=5)
    sock.sendall(PROTOCOL_HEADER)
    expect(sock, (10, 10))
    sock.sendall(method(0, (10, 11), "FsSs", ({}, "PLAIN", b"\x00guest\x00guest", "en_US")))
    expect(sock, (10, 30))
    sock.sendall(method(0, (10, 31), "BlB", (channel_max, frame_max, 0)))
    sock.sendall(method(0, (10, 40), "ssb", ("/", "", False)))
    expect(sock, (10, 41))
    return sock


def expect(sock: socket.socket, sig: tuple[int, int]) -> bytes:
    """Read one frame, check it is method ``sig``; return its payload."""
    header = _read_exact(sock, 7)
    type_, _channel, size = struct.unpack(">BHI", header)
    payload = _read_exact(sock, size + 1)[:-1]
    got = struct.unpack(">HH", payload[:4]) if type_ == 1 else (type_,)
    assert got == sig, f"expected {sig}, got {got}"
    return payload


def read_frame(sock: socket.socket) -> bytes:
    """One whole frame, as sent."""
    header = _read_exact(sock, 7)
    (size,) = struct.unpack(">I", header[3:])
    return header + _read_exact(sock, size + 1)


def _read_exact(sock: socket.socket, n: int) -> bytes:
    data = b""
    while len(data) < n:
        chunk = sock.recv(n - len(data))
        if not chunk:
            raise ConnectionError("closed")
        data += chunk
    return data
