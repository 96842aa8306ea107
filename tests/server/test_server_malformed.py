"""Malformed input gets RabbitMQ's answer and never wedges the server for anyone else.

Each case sends exact bytes on an opened connection (channel 1 open) and compares what comes
back (the connection.close code, text and method, or a dropped socket) with RabbitMQ 3.10's
answer. RabbitMQ's answers are stored in ``rabbitmq_malformed.json``, so the server's checks run
without RabbitMQ; the RabbitMQ run re-measures them and fails when the stored file is stale
(``SIMAMQP_REMEASURE=1`` rewrites it).

After the bytes, the client closes the connection as a fence: the broker answers close-ok only
once every frame before it was handled ("open": nothing else was answered), where a fixed wait
could only guess.
"""

from __future__ import annotations

import json
import os
import pathlib
import struct

import amqp
import pytest
from _raw import expect, frame, frames, method, open_connection, read_until_closed, send

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
    # issue 22, item 3: reply texts longer than a shortstr are cut as RabbitMQ cuts them
    "passive declare of a 250-character name": method(
        1, (50, 10), DECLARE, (0, "q" * 250, True, False, False, False, False, {})
    ),
    "passive declare of a long name cut inside a character": method(
        1, (50, 10), DECLARE, (0, "x" + "é" * 120, True, False, False, False, False, {})
    ),
    "wrong frame-end octet after a long payload": method(
        1, (50, 10), DECLARE, (0, "x" * 200, False, False, False, True, False, {})
    )[:-1]
    + b"\x00",
    "wrong frame-end octet, payload wrapped over two lines": frame(
        1,
        1,
        bytes([255, 120, 27, 255, 9, 200, 200, 0, 27, 120, 100, 11, 99, 160, 160, 65, 1]),
        b"\x00",
    ),
    "wrong frame-end octet, Latin-1 printable payload": frame(1, 1, b"\xc8\xa0d\x1b\x1b", b"\x00"),
    # item 7: frames RabbitMQ's assembler cannot parse
    "content header of 8 octets": _publish + frame(2, 1, struct.pack(">HHI", 60, 0, 5)),
    "content header of 11 octets": _publish + frame(2, 1, struct.pack(">HHQ", 60, 0, 5)[:11]),
    "content header of 11 octets on a channel with no publish": frame(2, 1, b"\x00" * 11),
    "method frame of 3 octets": frame(1, 1, b"\x00\x32\x00"),
    "heartbeat with a payload": frame(8, 0, b"abc"),
    "content properties cut short": _publish
    + frame(2, 1, struct.pack(">HHQH", 60, 0, 1, 0x8000) + b"\x09ab")
    + frame(3, 1, b"m"),
    "unknown field type in the headers": _publish
    + frame(2, 1, struct.pack(">HHQHI", 60, 0, 1, 0x2000, 5) + b"\x01kX\x00\x00")
    + frame(3, 1, b"m"),
    "content_type that is not UTF-8": _publish
    + frame(2, 1, struct.pack(">HHQHB", 60, 0, 1, 0x8000, 2) + b"\xff\xfe")
    + frame(3, 1, b"m"),
    "content body larger than declared": _publish
    + frame(2, 1, struct.pack(">HHQH", 60, 0, 1, 0))
    + frame(3, 1, b"hello"),
    "content body split, the second part overrunning the declared size": _publish
    + frame(2, 1, struct.pack(">HHQH", 60, 0, 4, 0))
    + frame(3, 1, b"abc")
    + frame(3, 1, b"de"),
    "content body larger than declared, then a method on the channel": _publish
    + frame(2, 1, struct.pack(">HHQH", 60, 0, 1, 0))
    + frame(3, 1, b"hello")
    + method(1, (60, 10), "lBb", (0, 0, False)),
    "content body larger than declared, then another body frame": _publish
    + frame(2, 1, struct.pack(">HHQH", 60, 0, 1, 0))
    + frame(3, 1, b"hello")
    + frame(3, 1, b"more"),
    "frames before a malformed one in the same write are handled": method(
        1, (50, 10), DECLARE, (0, "", False, False, True, True, False, {})
    )
    + frame(1, 1, b"\x00\x32", b"\x00"),
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


STORED = pathlib.Path(__file__).with_name("rabbitmq_malformed.json")
_FENCE = (1, 0, (10, 51))


def _outcome(url: str, data: bytes) -> list[object]:
    """[frames answered, state], JSON-shaped (as stored)."""
    sock = open_connection(url)
    try:
        sock.sendall(method(1, (20, 10), "s", ("",)))
        expect(sock, (20, 11))
        send(sock, data + method(0, (10, 50), "BsBB", (200, "fence", 0, 0)))
        reply, state = read_until_closed(sock, 10, fence=_FENCE)
        answered = [f for f in frames(reply) if f != _FENCE]
        shaped: list[object] = json.loads(json.dumps([answered, state]))
        return shaped
    finally:
        sock.close()


def _stored() -> dict[str, list[object]]:
    stored: dict[str, list[object]] = json.loads(STORED.read_text(encoding="utf-8"))
    return stored


@pytest.mark.parametrize("case", list(CASES))
def test_same_outcome_as_rabbitmq(case, sim_server):
    """The server answers as RabbitMQ answered (stored), and serves everybody else after."""
    assert _outcome(sim_server.url, CASES[case]) == _stored()[case]
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


def test_frame_max_is_the_negotiated_one(amqp_url):
    sock = open_connection(amqp_url, frame_max=4096)
    sock.sendall(frame(1, 1, struct.pack(">HH", 50, 10) + b"\x00" * 5000))
    reply, _ = read_until_closed(sock, 30)
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


def test_channel_max_is_enforced(amqp_url):
    sock = open_connection(amqp_url, channel_max=2)
    for channel in (1, 2, 3):
        sock.sendall(method(channel, (20, 10), "s", ("",)))
    reply, _ = read_until_closed(sock, 30)
    sock.close()
    text = "NOT_ALLOWED - number of channels opened (2) has reached the negotiated channel_max (2)"
    assert frames(reply) == [(1, 1, (20, 11)), (1, 2, (20, 11)), ("close", 0, 530, text, 0, 0)]


@pytest.mark.rabbitmq
def test_stored_answers_are_rabbitmqs():
    """Re-measure RabbitMQ: the stored expectations are still its answers."""
    from _rabbitmq import RABBITMQ_URL, require_rabbitmq

    require_rabbitmq()
    measured = {name: _outcome(RABBITMQ_URL, data) for name, data in CASES.items()}
    if os.environ.get("SIMAMQP_REMEASURE"):
        lines = [f" {json.dumps(name)}: {json.dumps(answer)}" for name, answer in measured.items()]
        STORED.write_text("{\n" + ",\n".join(lines) + "\n}\n", encoding="utf-8")
    assert measured == _stored()
