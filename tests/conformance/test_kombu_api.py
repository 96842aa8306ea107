"""kombu's own API on top of the transport: Producer, Consumer, SimpleQueue, declarations made by
kombu entities. These run kombu's pyamqp code path unchanged on both brokers."""

from __future__ import annotations

import kombu
import pytest
from kombu.simple import SimpleQueue


def test_producer_consumer_json_round_trip(env):
    """docs.celeryq.dev/projects/kombu/en/stable/userguide/producers.html: serialised payloads."""
    conn = env.connection()
    exchange = kombu.Exchange(env.name("kx"), "topic", durable=False)
    queue = kombu.Queue(env.name("kq"), exchange, "jobs.#", durable=False, auto_delete=False)
    env.track(exchange.name)
    received = []
    with kombu.Consumer(conn, [queue], callbacks=[lambda body, msg: received.append((body, msg))]):
        producer = kombu.Producer(conn)
        producer.publish(
            {"n": 1, "tags": ["a"]},
            exchange=exchange,
            routing_key="jobs.build",
            serializer="json",
            headers={"trace": "t-1"},
            correlation_id="c-1",
        )
        assert env.drain(conn, until=lambda: len(received) == 1)
        body, msg = received[0]
        msg.ack()
    assert body == {"n": 1, "tags": ["a"]}
    assert (msg.content_type, msg.headers, msg.properties["correlation_id"]) == (
        "application/json",
        {"trace": "t-1"},
        "c-1",
    )
    assert msg.delivery_info["routing_key"] == "jobs.build"


def test_simple_queue_put_get(env):
    """docs.celeryq.dev/projects/kombu/en/stable/userguide/simple.html: SimpleQueue."""
    conn = env.connection()
    name = env.name("simple")
    queue = SimpleQueue(conn, kombu.Queue(name, kombu.Exchange(name), name, auto_delete=False))
    queue.put({"hello": "world"})
    queue.put("second")
    first = queue.get(timeout=3)
    first.ack()
    second = queue.get(timeout=3)
    second.ack()
    assert (first.payload, second.payload) == ({"hello": "world"}, "second")
    with pytest.raises(queue.Empty):
        queue.get(block=False)
    queue.close()


def test_kombu_requeue_sets_redelivered(env):
    """rabbitmq.com/confirms.html#consumer-nacks-requeue: through kombu's Message.requeue()."""
    conn = env.connection()
    name = env.name("requeue")
    queue = kombu.Queue(name, kombu.Exchange(""), name, auto_delete=False)
    env.track(name)
    kombu.Producer(conn).publish("again", routing_key=name, declare=[queue])
    seen = []

    def on_message(body, message):
        seen.append((body, message.delivery_info["redelivered"]))
        if len(seen) == 1:
            message.requeue()
        else:
            message.ack()

    with kombu.Consumer(conn, [queue], callbacks=[on_message]):
        assert env.drain(conn, until=lambda: len(seen) == 2)
    assert seen == [("again", False), ("again", True)]


def test_kombu_queue_declare_mismatch_is_406(env):
    """rabbitmq.com/queues.html#property-equivalence: through kombu.Queue.declare()."""
    conn = env.connection()
    name = env.name("kq")
    kombu.Queue(name, durable=False, auto_delete=False, channel=conn.default_channel).declare()
    with pytest.raises(conn.channel_errors) as exc:
        kombu.Queue(name, durable=True, auto_delete=False, channel=conn.default_channel).declare()
    assert exc.value.reply_code == 406


def test_qos_change_applies_to_new_consumers_only(env):
    """rabbitmq.com/consumer-prefetch.html: per-consumer prefetch is fixed at basic.consume."""
    ch = env.channel()
    q1, q2 = env.queue(ch), env.queue(ch)
    for q in (q1, q2):
        for i in range(3):
            env.publish(ch, b"%d" % i, "", q)
    env.eventually_count(q2, 3, ch)
    ch.basic_qos(0, 1, False)
    _, first = env.consume(ch, q1)
    ch.basic_qos(0, 2, False)
    _, second = env.consume(ch, q2)
    assert env.drain(until=lambda: len(first) + len(second) == 3)
    assert (env.count(q1, ch), env.count(q2, ch)) == (2, 1)  # fence: nothing more went out
    assert (len(first), len(second)) == (1, 2)
