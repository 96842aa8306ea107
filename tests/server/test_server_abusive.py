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


def _wait_for(predicate: Any, timeout: float = 60.0) -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        assert time.monotonic() < deadline, "timed out waiting"
        time.sleep(0.01)


def test_a_stalled_auto_ack_consumer_holds_no_more_than_rabbitmqs_would(sim_server):
    """RabbitMQ 3.10, 20,000 x 1 KiB, an auto-ack consumer that never reads: it handed the
    consumer ~3,700 (credit flow and the TCP window) and kept 16,250 in the queue after the
    consumer disconnected. The server used to encode the whole queue into the socket's
    buffer (0 left). Now it stops taking deliveries for a connection whose socket is above
    its high-water mark."""
    import amqp

    count, body = 20_000, b"x" * 1024
    host = sim_server.url.split("@")[1].split("/")[0]
    with amqp.Connection(host) as conn:
        ch = conn.channel()
        queue = ch.queue_declare(f"stalled.{uuid.uuid4().hex}", auto_delete=False).queue
        for _ in range(count):
            ch.basic_publish(amqp.Message(body), "", queue)
        ch.queue_declare(queue, passive=True)  # a round trip: every publish is in
    broker = sim_server.broker
    sock = open_connection(sim_server.url)
    sock.sendall(method(1, (20, 10), "s", ("",)))
    expect(sock, (20, 11))
    sock.sendall(method(1, (60, 20), "BssbbbbF", (0, queue, "", False, True, False, False, {})))

    # The consumer reads nothing more: wait until the server stops writing to it.
    def stalled() -> bool:
        transports = [c.transport for c in list(sim_server._connections)]
        return any(t is not None and t.get_write_buffer_size() >= 64 * 1024 for t in transports)

    _wait_for(stalled)  # the socket's buffer passed the high-water mark: the server paused
    sim_server.settle()
    held = broker.queue(queue).messages_ready
    sock.close()
    _wait_for(lambda: sim_server.connection_count == 0)
    sim_server.settle()
    left = broker.queue(queue).messages_ready
    assert left == held  # the auto-acked deliveries in flight are lost, the rest stays
    assert left >= 16_250, f"only {left} of {count} left in the queue"


def _dropped(sock: Any, timeout: float = 30.0) -> str:
    """Read until the server drops the socket: "reset" or "eof" (bytes sent are ignored)."""
    sock.settimeout(timeout)
    try:
        while sock.recv(65536):
            pass
    except ConnectionResetError:
        return "reset"
    return "eof"


@pytest.mark.parametrize("stage", ["silent", "after connection.start", "half a header"])
def test_handshake_timeout_drops_the_socket_with_a_reset(stage):
    """rabbit's handshake_timeout (10 s, measured on RabbitMQ 3.10): a socket that has not
    opened a connection in time is reset without a word, at any stage of the handshake."""
    import socket

    from _raw import PROTOCOL_HEADER, address

    import simamqp
    from simamqp.server import Server

    broker = simamqp.Broker(clock=simamqp.WallClock())
    with Server(broker, handshake_timeout=0.5) as server:
        sock = socket.create_connection(address(server.url), timeout=5)
        if stage == "after connection.start":
            sock.sendall(PROTOCOL_HEADER)
            expect(sock, (10, 10))
        elif stage == "half a header":
            sock.sendall(PROTOCOL_HEADER[:3])
        assert _dropped(sock) == "reset"
        sock.close()
        _wait_for(lambda: server.connection_count == 0)


@pytest.mark.rabbitmq
def test_rabbitmq_resets_a_silent_socket_after_its_handshake_timeout():
    """The fact the server follows, re-measured (takes RabbitMQ's 10 s)."""
    import socket

    from _rabbitmq import RABBITMQ_URL, require_rabbitmq
    from _raw import address

    require_rabbitmq()
    sock = socket.create_connection(address(RABBITMQ_URL), timeout=5)
    start = time.monotonic()
    assert _dropped(sock) == "reset"
    assert time.monotonic() - start >= 9  # RabbitMQ's own handshake_timeout, not ours
    sock.close()


def test_idle_sockets_are_dropped_and_a_new_client_connects():
    """200 silent sockets do not lock anyone out: dropped after the timeout, then a py-amqp
    client connects (benchmarks row 11 does 1,000 against `simamqp serve`)."""
    import socket

    import amqp
    from _raw import address

    import simamqp
    from simamqp.server import Server

    broker = simamqp.Broker(clock=simamqp.WallClock())
    with Server(broker, handshake_timeout=1.0) as server:
        socks = [socket.create_connection(address(server.url), timeout=5) for _ in range(200)]
        for sock in socks:
            assert _dropped(sock) == "reset"
            sock.close()
        _wait_for(lambda: server.connection_count == 0)
        host = server.url.split("@")[1].split("/")[0]
        with amqp.Connection(host) as conn:
            assert conn.channel().queue_declare("", exclusive=True).queue


def test_heartbeat_timers_do_not_pile_up():
    """One timer handle per kind for the life of a connection: the count of live timer
    handles is the same after 4 beats and after 10 (it grew by one per beat)."""
    import asyncio
    import gc
    import socket

    from _raw import PROTOCOL_HEADER, address

    import simamqp
    from simamqp.server import Server

    def handles() -> int:
        gc.collect()
        return sum(isinstance(o, asyncio.TimerHandle) for o in gc.get_objects())

    broker = simamqp.Broker(clock=simamqp.WallClock())
    with Server(broker, heartbeat=1) as server:
        sock = socket.create_connection(address(server.url), timeout=10)
        sock.sendall(PROTOCOL_HEADER)
        expect(sock, (10, 10))
        sock.sendall(method(0, (10, 11), "FsSs", ({}, "PLAIN", b"\x00guest\x00guest", "en_US")))
        expect(sock, (10, 30))
        sock.sendall(method(0, (10, 31), "BlB", (2047, 131072, 1)))
        sock.sendall(method(0, (10, 40), "ssb", ("/", "", False)))
        expect(sock, (10, 41))
        heartbeat = frame(8, 0, b"")

        def beats(n: int) -> None:
            for _ in range(n):
                assert _read_frame(sock)[0] == 8
                sock.sendall(heartbeat)  # keep the server's peer check happy

        beats(4)
        after_four = handles()
        beats(6)
        assert handles() <= after_four
        sock.close()


def test_an_internal_error_costs_one_connection_and_one_log_line(sim_server, monkeypatch, caplog):
    """A bug in a handler closes that connection with 541 (as a crashed RabbitMQ channel
    does) and logs one line, no traceback: no client can flood the log."""
    from _raw import frames

    from simamqp.server import _connection

    def broken(ch: Any, args: Any) -> Any:
        raise RuntimeError("handler bug " + "x" * 50)

    monkeypatch.setitem(_connection._HANDLERS, (60, 10), broken)
    with caplog.at_level(logging.INFO, logger="simamqp.server"):
        for _ in range(3):
            sock, _queue = _channel(sim_server.url)
            sock.sendall(method(1, (60, 10), "lBb", (0, 0, False)))
            data, _ = read_until_closed(sock, 30)
            sock.close()
            assert frames(data)[-1][:3] == ("close", 0, 541)
    records = [r for r in caplog.records if r.name == "simamqp.server"]
    assert len(records) == 3
    assert all(r.exc_info is None and "\n" not in r.getMessage() for r in records)


def test_a_message_above_the_max_size_is_refused_once_received_and_not_kept(amqp_url):
    """RabbitMQ 3.10 (max_message_size 128 MiB): the whole body is read, then the channel is
    closed with 406 (measured). The server counts the octets instead of keeping them."""
    from _raw import frames as decode

    size = 128 * 1024 * 1024 + 1
    sock, _queue = _channel(amqp_url)
    sock.sendall(
        method(1, (60, 40), "Bssbb", (0, "", "nowhere", False, False))
        + frame(2, 1, struct.pack(">HHQH", 60, 0, size, 0))
    )
    chunk = frame(3, 1, b"x" * 131_064)
    sent = 0
    while sent + 131_064 <= size:
        sock.sendall(chunk)
        sent += 131_064
    sock.sendall(frame(3, 1, b"x" * (size - sent)))
    sock.sendall(method(0, (10, 50), "BsBB", (200, "fence", 0, 0)))
    data, _state = read_until_closed(sock, 60, fence=(1, 0, (10, 51)))
    sock.close()
    text = (
        "PRECONDITION_FAILED - message size 134217729 is larger than configured max size 134217728"
    )
    assert decode(data)[0] == ("channel.close", 1, 406, text, 60, 40)
