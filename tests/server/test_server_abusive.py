"""Abusive input over a raw socket, on the simamqp server and on RabbitMQ (same bytes).

Wire-level details a client library hides: the octets of headers nested thousands of levels
deep, the field types of ``x-death``. Issue 22, items 4 and 6.
"""

from __future__ import annotations

import logging
import struct
import time
import uuid
from typing import Any

import pytest
from _raw import expect, frame, method, open_connection, read_until_closed

DECLARE = "BsbbbbbF"


def _read_frame(sock: Any) -> tuple[int, int, bytes]:
    data = b""
    while len(data) < 7:
        chunk = sock.recv(7 - len(data))
        assert chunk, "socket closed"
        data += chunk
    type_, channel, size = struct.unpack(">BHI", data)
    payload = b""
    while len(payload) < size + 1:
        chunk = sock.recv(size + 1 - len(payload))
        assert chunk, "socket closed"
        payload += chunk
    return type_, channel, payload[:-1]


def _channel(url: str) -> tuple[Any, str]:
    """A raw socket with channel 1 open and a fresh auto-delete queue declared on it."""
    sock = open_connection(url)
    sock.sendall(method(1, (20, 10), "s", ("",)))
    expect(sock, (20, 11))
    queue = f"abusive.{uuid.uuid4().hex}"
    sock.sendall(method(1, (50, 10), DECLARE, (0, queue, False, False, False, True, False, {})))
    expect(sock, (50, 11))
    return sock, queue


def _get_header(sock: Any, queue: str, timeout: float = 10.0) -> bytes:
    """basic.get (no-ack) until a message comes; the payload of its content header frame."""
    deadline = time.monotonic() + timeout
    while True:
        sock.sendall(method(1, (60, 70), "Bsb", (0, queue, True)))
        _type, _channel_id, payload = _read_frame(sock)
        if struct.unpack(">HH", payload[:4]) == (60, 71):
            return _read_frame(sock)[2]
        assert time.monotonic() < deadline, "no message arrived"


def _nested_table(depth: int) -> bytes:
    table = b""
    for _ in range(depth):
        table = b"\x01kF" + struct.pack(">I", len(table)) + table
    return struct.pack(">I", len(table)) + table


@pytest.mark.parametrize("depth", [700, 18_000])
def test_deeply_nested_headers_are_delivered_octet_for_octet(amqp_url, depth, caplog):
    """RabbitMQ stores and delivers headers nested as deep as a 131,072-octet frame holds
    (18,000 levels measured); the server did 541 from ~325 levels, with a traceback each."""
    sock, queue = _channel(amqp_url)
    header = struct.pack(">HHQH", 60, 0, 1, 0x2000) + _nested_table(depth)
    with caplog.at_level(logging.DEBUG, logger="simamqp.server"):
        sock.sendall(
            method(1, (60, 40), "Bssbb", (0, "", queue, False, False))
            + frame(2, 1, header)
            + frame(3, 1, b"m")
        )
        assert _get_header(sock, queue) == header
    sock.close()
    assert caplog.records == []


def _typed(buf: bytes, offset: int) -> tuple[Any, int]:
    """A field value with its type letter: (letter, value) pairs, tables as key lists."""
    kind = chr(buf[offset])
    offset += 1
    if kind in "FA":
        (size,) = struct.unpack_from(">I", buf, offset)
        offset += 4
        end = offset + size
        items: list[Any] = []
        while offset < end:
            key = None
            if kind == "F":
                key = buf[offset + 1 : offset + 1 + buf[offset]].decode()
                offset += 1 + buf[offset]
            value, offset = _typed(buf, offset)
            items.append((key, value) if kind == "F" else value)
        return (kind, items), offset
    if kind == "S":
        (size,) = struct.unpack_from(">I", buf, offset)
        return (kind, buf[offset + 4 : offset + 4 + size].decode()), offset + 4 + size
    width = {"l": 8, "L": 8, "I": 4, "T": 8, "t": 1}[kind]
    return (kind, buf[offset : offset + width]), offset + width


def test_x_death_count_is_a_64_bit_long_and_keys_are_in_rabbitmqs_order(amqp_url):
    sock, dead = _channel(amqp_url)
    src = f"abusive.src.{uuid.uuid4().hex}"
    arguments = {"x-dead-letter-exchange": "", "x-dead-letter-routing-key": dead}
    sock.sendall(
        method(1, (50, 10), DECLARE, (0, src, False, False, False, True, False, arguments))
    )
    expect(sock, (50, 11))
    header = struct.pack(">HHQH", 60, 0, 1, 0x0100) + b"\x0560000"  # expiration "60000"
    sock.sendall(
        method(1, (60, 40), "Bssbb", (0, "", src, False, False))
        + frame(2, 1, header)
        + frame(3, 1, b"m")
    )
    # basic.get without no-ack, then basic.reject(requeue=false): dead-lettered as "rejected".
    deadline = time.monotonic() + 10
    while True:
        sock.sendall(method(1, (60, 70), "Bsb", (0, src, False)))
        _t, _c, payload = _read_frame(sock)
        if struct.unpack(">HH", payload[:4]) == (60, 71):
            tag = struct.unpack_from(">Q", payload, 4)[0]
            _read_frame(sock), _read_frame(sock)  # header, body
            break
        assert time.monotonic() < deadline
    sock.sendall(method(1, (60, 90), "Lb", (tag, False)))
    dead_header = _get_header(sock, dead)
    sock.sendall(method(0, (10, 50), "BsBB", (200, "", 0, 0)))
    read_until_closed(sock, 10, fence=(1, 0, (10, 51)))
    sock.close()
    flags = struct.unpack_from(">H", dead_header, 12)[0]
    assert flags == 0x2000  # headers only: the expiration moved to original-expiration
    (_, headers), _ = _typed(b"F" + dead_header[14:], 0)
    table = dict(headers)
    (_, deaths) = table["x-death"]
    ((_, entry),) = deaths
    assert [(key, value[0]) for key, value in entry] == [
        ("count", "l"),
        ("reason", "S"),
        ("queue", "S"),
        ("time", "T"),
        ("exchange", "S"),
        ("routing-keys", "A"),
        ("original-expiration", "S"),
    ]
    assert dict(entry)["count"] == ("l", struct.pack(">q", 1))
