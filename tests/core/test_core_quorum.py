"""Quorum queues in the engine: what the differential tests cannot reach on a shared RabbitMQ
(restart, virtual-time retries, faults, inspection, determinism)."""

from __future__ import annotations

from typing import Any

import pytest
from _core_helpers import deliveries, drain, get_bodies, publish

from simamqp.core.broker import Broker
from simamqp.core.channel import Channel
from simamqp.core.errors import AMQPNotImplemented
from simamqp.core.frames import BasicAck, BasicNack

QUORUM = {"x-queue-type": "quorum"}


def setup(**arguments: Any) -> tuple[Broker, Channel]:
    broker = Broker(seed=0)
    channel = broker.connect().channel()
    channel.queue_declare("q", durable=True, arguments={**QUORUM, **arguments})
    return broker, channel


def test_a_restart_keeps_every_message_of_a_quorum_queue() -> None:
    """Quorum queues log every message, persistent or not (rabbitmq.com/quorum-queues.html);
    a classic durable queue keeps only the persistent ones."""
    broker, ch = setup()
    ch.queue_declare("classic", durable=True)
    for queue in ("q", "classic"):
        publish(ch, b"transient", "", queue)
        publish(ch, b"persistent", "", queue, delivery_mode=2)
    broker.restart()
    ch = broker.connect().channel()
    assert get_bodies(ch, "q") == [b"transient", b"persistent"]
    assert get_bodies(ch, "classic") == [b"persistent"]


def test_unacked_messages_come_back_after_a_restart_counted() -> None:
    broker, ch = setup()
    publish(ch, b"a", "", "q")
    publish(ch, b"b", "", "q")
    ch.basic_consume("q")
    assert [d.message.body for d in deliveries(ch.connection)] == [b"a", b"b"]
    broker.restart()
    info = broker.queue("q")
    assert (info.bodies, info.delivery_counts, info.type) == ((b"a", b"b"), (1, 1), "quorum")
    ch = broker.connect().channel()
    ok = ch.basic_get("q")
    assert ok is not None and ok.redelivered
    assert ok.message.headers == {"x-delivery-count": 1}


def test_inspection_reports_delivery_counts_in_delivery_order() -> None:
    broker, ch = setup()
    for body in (b"a", b"b"):
        publish(ch, body, "", "q")
    ok = ch.basic_get("q", no_ack=False)
    assert ok is not None
    ch.basic_reject(ok.delivery_tag, requeue=True)
    info = broker.queue("q")
    assert (info.bodies, info.delivery_counts) == ((b"b", b"a"), (0, 1))
    assert (info.messages_ready, info.messages_unacknowledged, info.consumers) == (2, 0, 0)
    classic = Broker(seed=0)
    cch = classic.connect().channel()
    cch.queue_declare("c")
    publish(cch, b"x", "", "c")
    assert (classic.queue("c").type, classic.queue("c").delivery_counts) == ("classic", (0,))


def test_a_redeliver_fault_counts_as_a_return() -> None:
    """The delivery was on its way when the channel died: RabbitMQ counts the return."""
    broker, ch = setup()
    broker.faults.add(point="deliver", action="redeliver", queue="q", max_count=1)
    publish(ch, b"m", "", "q")
    ch.basic_consume("q")
    (delivery,) = deliveries(ch.connection)
    assert delivery.redelivered
    assert delivery.message.headers == {"x-delivery-count": 1}


def test_a_redeliver_fault_at_the_delivery_limit_dead_letters() -> None:
    broker, ch = setup(
        **{"x-delivery-limit": 0, "x-dead-letter-exchange": "", "x-dead-letter-routing-key": "d"}
    )
    ch.queue_declare("d")
    broker.faults.add(point="deliver", action="redeliver", queue="q", max_count=1)
    publish(ch, b"m", "", "q")
    ch.basic_consume("q")
    assert deliveries(ch.connection) == []
    ok = ch.basic_get("d")
    assert ok is not None and ok.message.headers["x-first-death-reason"] == "delivery_limit"


def test_an_ack_redeliver_fault_counts_as_a_return() -> None:
    broker, ch = setup()
    broker.faults.add(point="ack", action="redeliver", queue="q", max_count=1)
    publish(ch, b"m", "", "q")
    ch.basic_consume("q")
    (first,) = deliveries(ch.connection)
    ch.basic_ack(first.delivery_tag)
    (again,) = deliveries(ch.connection)
    assert again.message.headers == {"x-delivery-count": 1}


def test_global_qos_refusal_is_a_connection_error() -> None:
    _broker, ch = setup()
    ch.basic_qos(0, 5, True)
    with pytest.raises(AMQPNotImplemented) as exc:
        ch.basic_consume("q")
    assert exc.value.reply_text == (
        "NOT_IMPLEMENTED - queue 'q' in vhost '/' does not support global qos"
    )
    assert not ch.connection.is_open


def test_at_least_once_dead_letters_are_retried_every_180_seconds() -> None:
    """rabbit_fifo_dlx_worker: unconfirmed dead letters are redelivered on its settle timeout."""
    broker, ch = setup(
        **{
            "x-overflow": "reject-publish",
            "x-dead-letter-strategy": "at-least-once",
            "x-dead-letter-exchange": "dlx",
        }
    )
    publish(ch, b"m", "", "q")
    ok = ch.basic_get("q", no_ack=False)
    assert ok is not None
    ch.basic_reject(ok.delivery_tag, requeue=False)
    ch.exchange_declare("dlx", "fanout")
    ch.queue_declare("dead")
    ch.queue_bind("dead", "dlx")
    broker.advance(179)
    assert broker.queue("dead").messages_ready == 0
    broker.advance(1)
    assert get_bodies(ch, "dead") == [b"m"]
    broker.advance(600)
    assert get_bodies(ch, "dead") == []  # taken once: no further retries


def test_at_least_once_needs_reject_publish_else_at_most_once() -> None:
    broker, ch = setup(
        **{"x-dead-letter-strategy": "at-least-once", "x-dead-letter-exchange": "dlx"}
    )
    publish(ch, b"m", "", "q")
    ok = ch.basic_get("q", no_ack=False)
    assert ok is not None
    ch.basic_reject(ok.delivery_tag, requeue=False)
    ch.exchange_declare("dlx", "fanout")
    ch.queue_declare("dead")
    ch.queue_bind("dead", "dlx")
    broker.advance(200)
    assert get_bodies(ch, "dead") == []  # dropped at once: nothing kept to retry


def test_reject_publish_confirms_a_nack() -> None:
    _broker, ch = setup(**{"x-max-length": 1, "x-overflow": "reject-publish"})
    ch.confirm_select()
    for body in (b"1", b"2", b"3"):
        publish(ch, body, "", "q")
    frames = [f for f in drain(ch.connection) if isinstance(f, BasicAck | BasicNack)]
    assert [type(f).__name__ for f in frames] == ["BasicAck", "BasicAck", "BasicNack"]


def test_x_expires_counts_from_the_last_consumer_leaving() -> None:
    broker, ch = setup(**{"x-expires": 1000})
    tag = ch.basic_consume("q")
    broker.advance(5)
    assert "q" in broker.queue_names()
    ch.basic_cancel(tag)
    broker.advance(0.999)
    assert "q" in broker.queue_names()
    broker.advance(0.001)
    assert "q" not in broker.queue_names()


def test_the_same_seed_and_calls_give_the_same_trace() -> None:
    def run() -> str:
        broker, ch = setup(**{"x-delivery-limit": 1, "x-message-ttl": 500})
        for i in range(5):
            publish(ch, f"m{i}", "", "q")
        ch.basic_consume("q")
        for delivery in deliveries(ch.connection):
            ch.basic_reject(delivery.delivery_tag, requeue=True)
        broker.advance(1)
        return broker.trace.digest()

    assert run() == run()
