"""Abusive clients (issue 22), as every client sees it: long reply texts, deep headers, x-death.

Each test runs on simamqp in-process, simamqp over a socket and RabbitMQ (the ``env`` fixture).
The wire-level details a py-amqp client cannot see (field types, octets) are pinned with raw
sockets in ``tests/server/test_server_abusive.py``.
"""

from __future__ import annotations

import math

import amqp
import pytest


def test_a_reply_text_longer_than_255_octets_is_cut_as_rabbitmq_cuts_it(env):
    """rabbit_binary_generator: the first 252 octets and "..." (a channel error, not 541)."""
    ch = env.channel()
    name = "q" * 250
    with pytest.raises(amqp.exceptions.NotFound) as info:
        ch.queue_declare(name, passive=True)
    full = f"NOT_FOUND - no queue '{name}' in vhost '/'"
    assert info.value.reply_text == full[:252] + "..."
    # The connection is intact: a new channel works.
    assert env.channel().queue_declare("", exclusive=True).queue.startswith("amq.gen-")


def _nested(depth: int, leaf: object) -> dict[str, object]:
    table: dict[str, object] = {"leaf": leaf}
    for _ in range(depth):
        table = {"k": table}
    return table


def _depth(table: object) -> int:
    depth = 0
    while isinstance(table, dict) and "k" in table:
        table = table["k"]
        depth += 1
    return depth


def test_headers_nested_as_deep_as_py_amqp_encodes_are_delivered(env):
    """300 levels (py-amqp's recursive encoder stops near 490): delivered whole; RabbitMQ
    delivers any depth a frame holds (tests/server/test_server_abusive.py)."""
    ch = env.channel()
    queue = env.queue(ch)
    env.publish(ch, b"deep", "", queue, application_headers={"h": _nested(300, 1)})
    msg = env.get(ch, queue)
    assert msg is not None and msg.body == b"deep"
    assert _depth(msg.headers["h"]) == 300


def test_a_nan_deep_in_the_headers_still_closes_the_connection(env):
    """The non-finite check walks any depth (without recursion) and still finds it."""
    conn = env.connection()
    ch = env.channel(conn)
    queue = env.queue(env.channel())
    ch.basic_publish(
        amqp.Message(b"x", application_headers={"h": _nested(200, math.nan)}), "", queue
    )
    with pytest.raises(amqp.exceptions.ConnectionError):
        env.fence(ch)


def test_x_death_keys_are_in_rabbitmqs_order(env):
    """The first x-death entry: count, reason, queue, time, exchange, routing-keys,
    original-expiration (rabbit_dead_letter); once counted again, sorted."""
    ch = env.channel()
    dead = env.queue(ch, "dead")
    src = env.queue(
        ch,
        "src",
        arguments={"x-dead-letter-exchange": "", "x-dead-letter-routing-key": dead},
    )
    env.publish(ch, b"m", "", src, expiration="60000")
    ch.basic_reject(env.get(ch, src, no_ack=False).delivery_tag, requeue=False)
    msg = env.get(ch, dead)
    (death,) = msg.headers["x-death"]
    assert list(death) == [
        "count",
        "reason",
        "queue",
        "time",
        "exchange",
        "routing-keys",
        "original-expiration",
    ]
    assert death["count"] == 1
    # Dead-lettered from the same queue for the same reason again: counted, keys sorted.
    env.publish(ch, b"m", "", src, application_headers=msg.headers)
    ch.basic_reject(env.get(ch, src, no_ack=False).delivery_tag, requeue=False)
    (death,) = env.get(ch, dead).headers["x-death"]
    assert list(death) == sorted(death)
    assert death["count"] == 2


@pytest.mark.parametrize("where", ["routing_key", "exchange", "content_type", "header key"])
def test_64_four_octet_characters_are_256_octets_and_refused_in_the_client(env, where):
    """py-amqp packs a shortstr's length in one octet: 64 characters of 4 UTF-8 octets each
    (256) are refused before anything is sent (``struct.error``), as short as they look."""
    ch = env.channel()
    queue = env.queue(ch)
    text = "\U0001f600" * 64
    exchange, routing_key, properties = "", queue, {}
    if where == "routing_key":
        routing_key = text
    elif where == "exchange":
        exchange = text
    elif where == "content_type":
        properties = {"content_type": text}
    else:
        properties = {"application_headers": {text: 1}}
    with pytest.raises(Exception) as info:
        ch.basic_publish(amqp.Message(b"m", **properties), exchange, routing_key)
    assert (type(info.value).__name__, str(info.value)) in {
        ("error", "ubyte format requires 0 <= number <= 255"),
        ("error", "'B' format requires 0 <= number <= 255"),
    }
    # Nothing was sent: the queue is empty and the channel works.
    env.fence(ch)
    assert env.get_none(ch, queue) is None
    # 63 such characters (252 octets) go through.
    ch.basic_publish(amqp.Message(b"ok", application_headers={"\U0001f600" * 63: 1}), "", queue)
    assert env.get(ch, queue).body == b"ok"
