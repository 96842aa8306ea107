"""Malformed input gets RabbitMQ's answer and never wedges the server for anyone else.

Each case sends exact bytes on an opened connection (channel 1 open) and compares what comes
back (the connection.close code, text and method, or a dropped socket) between the simamqp
server and RabbitMQ 3.10.
"""

from __future__ import annotations

import struct

import amqp
import pytest
from _raw import expect, frame, frames, method, open_connection, read_until_closed

DECLARE = "BsbbbbbF"
_declare_args = (0, "", False, False, False, True, False, {})
_publish = method(1, (60, 40), "Bssbb", (0, "", "nowhere", False, False))

CASES = {
    "wrong frame-end octet": method(1, (50, 10), DECLARE, _declare_args)[:-1] + b"\x00",
    "oversized frame": frame(1, 1, b"\x00" * 200_000),
    "oversized by one octet": frame(1, 1, struct.pack(">HH", 50, 10) + b"\x00" * 131_069),
    "truncated method arguments": frame(1, 1, struct.pack(">HH", 50, 10) + b"\x00"),
    "unknown class": method(1, (99, 10)),
    "unknown method": method(1, (50, 99)),
    "unknown frame type": frame(7, 1, b"abc"),
    "body without header": frame(3, 1, b"hello"),
    "header without method": frame(2, 1, struct.pack(">HHQH", 60, 0, 5, 0)),
    "method instead of content header": _publish + method(1, (50, 10), DECLARE, _declare_args),
    "content header of another class": _publish + frame(2, 1, struct.pack(">HHQH", 50, 0, 5, 0)),
    "method on an unopened channel": method(5, (50, 10), DECLARE, _declare_args),
    "channel.close on an unopened channel": method(9, (20, 40), "BsBB", (200, "", 0, 0)),
    "second channel.open": method(1, (20, 10), "s", ("",)),
    "channel method on channel 0": method(0, (50, 10), DECLARE, _declare_args),
    "body frame on channel 0": frame(3, 0, b"x"),
    "heartbeat on a channel": frame(8, 1, b""),
    # not malformed, but the same race in one write: an asynchronous error, then a method
    "publish refused, then a method in the same write": _publish
    + frame(
        2,
        1,
        struct.pack(">HHQ", 60, 0, 1) + amqp.Message(expiration="soon")._serialize_properties(),
    )
    + frame(3, 1, b"m")
    + method(1, (50, 10), DECLARE, (0, "", True, False, False, False, False, {})),
}


def _outcome(url: str, data: bytes) -> tuple[list[tuple[object, ...]], str]:
    sock = open_connection(url)
    try:
        sock.sendall(method(1, (20, 10), "s", ("",)))
        expect(sock, (20, 11))
        sock.sendall(data)
        reply, state = read_until_closed(sock, 0.5)
        return frames(reply), state
    finally:
        sock.close()


@pytest.fixture(scope="module")
def rabbitmq_outcomes() -> dict[str, tuple[list[tuple[object, ...]], str]]:
    """RabbitMQ's answers, measured once per test session (each case costs ~0.5 s)."""
    from _rabbitmq import RABBITMQ_URL, require_rabbitmq

    require_rabbitmq()
    return {name: _outcome(RABBITMQ_URL, data) for name, data in CASES.items()}


@pytest.mark.rabbitmq
@pytest.mark.parametrize("case", list(CASES))
def test_same_outcome_as_rabbitmq(case, sim_server, rabbitmq_outcomes):
    expected = rabbitmq_outcomes[case]
    assert _outcome(sim_server.url, CASES[case]) == expected
    # ... and the server still serves everybody else.
    with amqp.Connection(sim_server.url.split("@")[1].split("/")[0]) as conn:
        ch = conn.channel()
        name, _, _ = ch.queue_declare("", exclusive=True)
        ch.basic_publish(amqp.Message(b"still here"), "", name)
        assert ch.basic_get(name, no_ack=True).body == b"still here"


def test_truncated_frame_then_disconnect_frees_the_connection(sim_server):
    """Half a frame then a closed socket: nothing answered, the engine connection is gone."""
    sock = open_connection(sim_server.url)
    sock.sendall(method(1, (20, 10), "s", ("",))[:5])
    sock.close()
    sim_server.settle()
    assert sim_server.broker.connections == {}


def test_frame_max_is_the_negotiated_one(sim_server):
    sock = open_connection(sim_server.url, frame_max=4096)
    sock.sendall(frame(1, 1, struct.pack(">HH", 50, 10) + b"\x00" * 5000))
    reply, _ = read_until_closed(sock, 0.5)
    sock.close()
    assert frames(reply) == [
        (
            "close",
            0,
            501,
            "FRAME_ERROR - type 1, all octets = <<>>: {frame_too_large,5004,4088}",
            0,
            0,
        )
    ]


def test_channel_max_is_enforced(sim_server):
    sock = open_connection(sim_server.url, channel_max=2)
    for channel in (1, 2, 3):
        sock.sendall(method(channel, (20, 10), "s", ("",)))
    reply, _ = read_until_closed(sock, 0.5)
    sock.close()
    text = "NOT_ALLOWED - number of channels opened (2) has reached the negotiated channel_max (2)"
    assert frames(reply) == [(1, 1, (20, 11)), (1, 2, (20, 11)), ("close", 0, 530, text, 0, 0)]
