"""Consuming: consume/cancel, round robin, prefetch, get, ack/reject/nack, recover, cancels.

Pins AMQP 0-9-1 spec 1.8.3 (basic class), https://www.rabbitmq.com/consumers.html,
/confirms.html (consumer acknowledgements, requeue) and /consumer-prefetch.html, with the
behaviours measured on RabbitMQ 3.10 (docs/rabbitmq-facts.md §3, §6, §12, §13, §19).
"""

from __future__ import annotations

import re

import pytest
from _core_helpers import bodies, deliveries, drain, publish

from simamqp.core import BasicCancel, Broker, Channel, Connection
from simamqp.core.errors import AccessRefused


def fill(ch: Channel, queue: str, n: int) -> None:
    for i in range(1, n + 1):
        publish(ch, f"m{i}", routing_key=queue)


def test_consume_generates_a_tag_and_delivers_in_order(conn: Connection, ch: Channel) -> None:
    """basic.consume with an empty tag (spec 1.8.3.3): RabbitMQ generates `amq.ctag-` + 22
    base64url chars (facts §9); messages arrive in queue order with increasing delivery tags."""
    ch.queue_declare("q")
    fill(ch, "q", 3)
    tag = ch.basic_consume("q")
    assert re.fullmatch(r"amq\.ctag-[A-Za-z0-9_-]{22}", tag)
    got = deliveries(conn)
    assert [(d.consumer_tag, d.delivery_tag, d.message.body) for d in got] == [
        (tag, 1, b"m1"),
        (tag, 2, b"m2"),
        (tag, 3, b"m3"),
    ]


def test_round_robin_between_consumers(conn: Connection, ch: Channel) -> None:
    """https://www.rabbitmq.com/consumers.html: messages are spread round-robin."""
    ch.queue_declare("q")
    ch.basic_consume("q", consumer_tag="a", no_ack=True)
    ch.basic_consume("q", consumer_tag="b", no_ack=True)
    conn.channel().basic_consume("q", consumer_tag="c", no_ack=True)
    fill(ch, "q", 6)
    assert [d.consumer_tag for d in deliveries(conn)] == ["a", "b", "c", "a", "b", "c"]


def test_exclusive_consumer_rules(broker: Broker, conn: Connection, ch: Channel) -> None:
    """basic.consume exclusive (spec 1.8.3.3): 403 `in exclusive use` when the queue has a
    consumer, or when an exclusive consumer exists; basic.get is still allowed (facts §3)."""
    ch.queue_declare("q")
    ch.basic_consume("q", consumer_tag="plain")
    with pytest.raises(AccessRefused) as info:
        conn.channel().basic_consume("q", exclusive=True)
    assert info.value.reply_text == "ACCESS_REFUSED - queue 'q' in vhost '/' in exclusive use"
    assert info.value.method == (60, 20)
    ch.basic_cancel("plain")
    ch.basic_consume("q", consumer_tag="ex", exclusive=True)
    with pytest.raises(AccessRefused):
        ch.basic_consume("q")  # even from the same channel (the channel closes)
    assert conn.channel().basic_get("q") is None


def test_no_ack_consumer_needs_no_ack(broker: Broker, conn: Connection, ch: Channel) -> None:
    """no-ack (spec 1.8.3.3): messages are settled on delivery; acking one is 406 (facts §6)."""
    ch.queue_declare("q")
    ch.basic_consume("q", no_ack=True)
    fill(ch, "q", 2)
    assert bodies(conn) == [b"m1", b"m2"]
    assert broker.queue("q").messages == 0
    ch.basic_ack(1)
    assert drain(conn)[0].error.reply_text == (  # type: ignore[union-attr]
        "PRECONDITION_FAILED - unknown delivery tag 1"
    )


def test_per_consumer_prefetch_applies_to_consumers_created_after(
    conn: Connection, ch: Channel
) -> None:
    """https://www.rabbitmq.com/consumer-prefetch.html: global=false limits each consumer,
    and only consumers created after the qos call (facts §19)."""
    ch.queue_declare("q")
    ch.basic_consume("q", consumer_tag="before")
    ch.basic_qos(0, 2, False)
    ch.basic_consume("q", consumer_tag="after1")
    ch.basic_consume("q", consumer_tag="after2")
    ch.basic_cancel("before")
    fill(ch, "q", 10)
    got = deliveries(conn)
    assert sorted(d.consumer_tag for d in got) == ["after1", "after1", "after2", "after2"]
    ch.basic_ack(got[0].delivery_tag)
    assert len(deliveries(conn)) == 1


def test_global_prefetch_is_shared_by_the_channel(conn: Connection, ch: Channel) -> None:
    """https://www.rabbitmq.com/consumer-prefetch.html: RabbitMQ reads global=true as a limit
    shared by the channel's consumers; both limits can apply at once (facts §19)."""
    ch.queue_declare("q")
    ch.basic_qos(0, 3, True)
    ch.basic_qos(0, 1, False)
    ch.basic_consume("q", consumer_tag="a")
    ch.basic_consume("q", consumer_tag="b")
    other = conn.channel()
    fill(ch, "q", 10)
    got = deliveries(conn)
    assert sorted(d.consumer_tag for d in got) == ["a", "b"]
    ch.basic_qos(0, 1, True)  # lowering the channel limit delivers nothing more
    ch.basic_ack(got[0].delivery_tag)
    assert deliveries(conn) == []
    other.basic_consume("q", consumer_tag="c", no_ack=True)  # other channels are unaffected
    assert len(deliveries(conn)) == 8


def test_basic_get_counts_and_ignores_prefetch(conn: Connection, ch: Channel) -> None:
    """basic.get-ok message-count is what is left after this get (spec 1.8.3.11, facts §12);
    prefetch does not limit basic.get (facts §19); an empty queue gives get-empty (None)."""
    ch.queue_declare("q")
    ch.basic_qos(0, 1, False)
    fill(ch, "q", 3)
    counts = []
    while (ok := ch.basic_get("q")) is not None:
        counts.append(ok.message_count)
    assert counts == [2, 1, 0]
    assert ch.basic_get("q") is None


def test_ack_multiple(broker: Broker, ch: Channel) -> None:
    """basic.ack multiple (spec 1.8.3.13): acks every outstanding tag up to and including it."""
    ch.queue_declare("q")
    fill(ch, "q", 4)
    tags = [ch.basic_get("q").delivery_tag for _ in range(4)]  # type: ignore[union-attr]
    ch.basic_ack(tags[2], multiple=True)
    assert broker.queue("q").messages_unacknowledged == 1
    ch.basic_ack(tags[3])
    assert broker.queue("q").messages == 0


def test_nack_requeue_returns_to_original_position(ch: Channel) -> None:
    """https://www.rabbitmq.com/confirms.html#consumer-nacks-requeue: requeued messages go back
    to their original position, redelivered, ahead of newer ones (facts §13)."""
    ch.queue_declare("q")
    fill(ch, "q", 5)
    tags = {}
    for _ in range(5):
        ok = ch.basic_get("q")
        assert ok is not None
        tags[ok.message.body] = ok.delivery_tag
    ch.basic_nack(tags[b"m4"], requeue=True)
    ch.basic_nack(tags[b"m2"], requeue=True)
    publish(ch, "m6", routing_key="q")
    got = [ch.basic_get("q", no_ack=True) for _ in range(3)]
    assert [(g.message.body, g.redelivered) for g in got if g] == [
        (b"m2", True),
        (b"m4", True),
        (b"m6", False),
    ]


def test_nack_multiple_requeue(ch: Channel) -> None:
    """basic.nack multiple (https://www.rabbitmq.com/nack.html): requeues tags up to it only."""
    ch.queue_declare("q")
    fill(ch, "q", 4)
    tags = [ch.basic_get("q").delivery_tag for _ in range(4)]  # type: ignore[union-attr]
    ch.basic_nack(tags[2], multiple=True, requeue=True)
    got = [ch.basic_get("q", no_ack=True) for _ in range(4)]
    assert [g.message.body for g in got if g] == [b"m1", b"m2", b"m3"]


def test_reject_requeue_to_consumer_redelivers(conn: Connection, ch: Channel) -> None:
    """A consumer that rejects m2 with requeue gets m1, m2, m3 and then m2 again with
    redelivered=True and a new delivery tag (facts §13)."""
    ch.queue_declare("q")
    fill(ch, "q", 3)
    ch.basic_consume("q", consumer_tag="c")
    first = deliveries(conn)
    ch.basic_reject(first[1].delivery_tag, requeue=True)
    again = deliveries(conn)
    assert [(d.message.body, d.redelivered) for d in first] == [
        (b"m1", False),
        (b"m2", False),
        (b"m3", False),
    ]
    assert [(d.message.body, d.redelivered, d.delivery_tag) for d in again] == [(b"m2", True, 4)]


def test_reject_without_requeue_discards(broker: Broker, ch: Channel) -> None:
    """basic.reject requeue=false (spec 1.8.3.14) drops a message without a DLX."""
    ch.queue_declare("q")
    fill(ch, "q", 1)
    ok = ch.basic_get("q")
    assert ok is not None
    ch.basic_reject(ok.delivery_tag, requeue=False)
    assert broker.queue("q").messages == 0


def test_recover_requeues_and_redelivers_with_new_tags(
    broker: Broker, conn: Connection, ch: Channel
) -> None:
    """basic.recover requeue=true (spec 1.8.3.16): unacked messages are requeued and
    redelivered (new tags) to consumers; basic.get messages go back to the queue (facts §6)."""
    ch.queue_declare("q")
    fill(ch, "q", 2)
    ch.basic_consume("q", consumer_tag="c")
    first = deliveries(conn)
    assert [d.delivery_tag for d in first] == [1, 2]
    ch.basic_recover(requeue=True)
    again = deliveries(conn)
    assert [(d.message.body, d.redelivered, d.delivery_tag) for d in again] == [
        (b"m1", True, 3),
        (b"m2", True, 4),
    ]
    ch.basic_cancel("c")
    g = conn.channel()
    g.queue_declare("r")
    fill(g, "r", 1)
    assert g.basic_get("r") is not None
    g.basic_recover()
    assert broker.queue("r").messages_ready == 1


def test_cancel_stops_deliveries_and_unknown_cancel_is_ok(conn: Connection, ch: Channel) -> None:
    """basic.cancel (spec 1.8.3.5): no more deliveries; cancelling an unknown or already
    cancelled tag is OK (facts §6)."""
    ch.queue_declare("q")
    ch.basic_consume("q", consumer_tag="c", no_ack=True)
    ch.basic_cancel("c")
    ch.basic_cancel("c")
    ch.basic_cancel("never")
    fill(ch, "q", 1)
    assert deliveries(conn) == [] and ch.is_open


def test_server_sent_cancel_when_queue_deleted(conn: Connection, ch: Channel) -> None:
    """https://www.rabbitmq.com/consumer-cancel.html: deleting a queue sends basic.cancel to
    every consumer on it, on their own channels."""
    ch.queue_declare("q")
    other = conn.channel()
    ch.basic_consume("q", consumer_tag="a")
    other.basic_consume("q", consumer_tag="b")
    conn.channel().queue_delete("q")
    assert sorted(drain(conn), key=lambda f: f.consumer_tag) == [  # type: ignore[union-attr]
        BasicCancel(ch.id, "a"),
        BasicCancel(other.id, "b"),
    ]


def test_core_api_defaults_follow_the_amqp_field_defaults(conn: Connection, ch: Channel) -> None:
    """The core's keyword defaults are AMQP's field defaults (spec 1.8.3): ``basic_qos()`` sets
    no limit, ``basic_qos(prefetch_count=N)`` limits each new consumer (global=false), and
    ``basic_consume()`` and ``basic_get()`` use the channel's last declared queue (spec 1.7.2),
    and ``basic_get()`` leaves the message unacknowledged (no_ack=false)."""
    ch.queue_declare("q")
    fill(ch, "q", 5)
    got = ch.basic_get()
    assert got is not None and got.message.body == b"m1"
    assert ch.broker.queue("q").messages_unacknowledged == 1
    ch.basic_qos()
    ch.basic_consume(consumer_tag="unlimited")
    assert len(deliveries(conn)) == 4
    ch.queue_declare("limited")
    fill(ch, "limited", 4)
    ch.basic_qos(prefetch_count=1)
    ch.basic_consume("limited", consumer_tag="a")
    ch.basic_consume("limited", consumer_tag="b")
    assert sorted(d.consumer_tag for d in deliveries(conn)) == ["a", "b"]


def test_core_declare_api_defaults_follow_the_amqp_field_defaults(
    broker: Broker, ch: Channel
) -> None:
    """Keyword defaults of the queue and exchange methods are AMQP's field defaults (spec
    1.8.2, 1.8.3): routing key "", the channel's last declared queue, ``if_unused`` false."""
    ch.exchange_declare("src", "fanout")
    ch.exchange_declare("dst")
    assert broker.exchange("dst").type == "direct"
    ch.exchange_bind("dst", "src")
    ch.queue_declare("q")
    ch.queue_bind("q", "dst")
    publish(ch, "m", "src")
    assert ch.queue_purge() == 1
    ch.exchange_unbind("dst", "src")
    ch.queue_unbind("q", "dst")
    assert broker.exchange("dst").bindings == ()
    assert broker.exchange("src").bindings == ()
    ch.queue_bind("q", "dst", "k")
    ch.exchange_delete("dst")  # bindings do not stop it
    assert "dst" not in broker.exchange_names()
    ch.queue_declare("last")
    assert ch.queue_delete() == 0
    assert "last" not in broker.queue_names() and "q" in broker.queue_names()
    # the exchange defaults to "", the default exchange, which takes no bindings (403)
    with pytest.raises(AccessRefused):
        ch.queue_bind("q")
    with pytest.raises(AccessRefused):
        broker.connect().channel().queue_unbind("q")
