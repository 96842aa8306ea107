"""kombu's own high-level API on simamqp, unchanged: ensure, Producer/Consumer, SimpleQueue,
ConsumerMixin, kombu.pools (https://docs.celeryq.dev/projects/kombu/en/stable/userguide/).

The differential suite (tests/conformance/test_kombu_api.py) already compares JSON round trips,
SimpleQueue put/get and requeue with RabbitMQ; these tests cover what needs threads, reconnects
or connection pools on the simulator.
"""

from __future__ import annotations

import socket
import threading
from typing import Any

import kombu
import kombu.pools
import pytest
from kombu import Consumer, Exchange, Producer, Queue
from kombu.mixins import ConsumerMixin

import simamqp


@pytest.fixture
def broker() -> Any:
    broker = simamqp.Broker(seed=11, clock=simamqp.WallClock())
    name = f"kombu-surfaces-{id(broker)}"
    simamqp.register(name, broker)
    yield broker
    simamqp.unregister(name)


def test_connection_ensure_republishes_after_a_forced_close(broker: Any) -> None:
    """Connection.ensure (userguide/connections.html): when the broker force-closes the
    connection (320 CONNECTION_FORCED, as rabbitmqctl close_connection), ensure reconnects and
    retries the publish."""
    queue = Queue("ensured", Exchange("ensured-x", "direct"), "k", auto_delete=False)
    errors: list[Exception] = []
    with broker.connection() as conn:
        producer = Producer(conn)
        queue(conn.default_channel).declare()
        publish = conn.ensure(
            producer,
            producer.publish,
            max_retries=3,
            errback=lambda exc, interval: errors.append(exc),
            interval_start=0,
            interval_step=0,
        )
        publish({"n": 1}, exchange=queue.exchange, routing_key="k", declare=[queue])
        broker.close_connections()
        publish({"n": 2}, exchange=queue.exchange, routing_key="k", declare=[queue])
    assert broker.queue("ensured").messages_ready == 2
    assert len(errors) == 1
    assert getattr(errors[0], "reply_code", None) == 320 or "closed" in str(errors[0])


def test_producer_and_consumer_with_declarations(broker: Any) -> None:
    """Producer(declare=...) and Consumer(queues, callbacks) (userguide/producers.html,
    consumers.html): declared entities, headers, ack, and drain_events."""
    exchange = Exchange("news", "topic", durable=False)
    queue = Queue("sport", exchange, "sport.#", durable=False)
    got: list[tuple[Any, Any]] = []
    with broker.connection() as conn:
        Producer(conn).publish(
            {"goal": 1},
            exchange=exchange,
            routing_key="sport.football",
            declare=[queue],
            headers={"h": "v"},
            serializer="json",
        )

        def on_message(body: Any, message: Any) -> None:
            got.append((body, message.headers))
            message.ack()

        with Consumer(conn, [queue], callbacks=[on_message], accept=["json"]):
            conn.drain_events(timeout=5)
    assert got == [({"goal": 1}, {"h": "v"})]
    assert broker.queue("sport").messages == 0


def test_simple_queue_blocking_get_is_woken_by_another_thread(broker: Any) -> None:
    """SimpleQueue.get(block=True, timeout) (userguide/simple.html) returns when another thread
    puts; get_nowait on an empty queue raises Empty."""
    with broker.connection() as conn:
        q = conn.SimpleQueue("simple")
        with pytest.raises(q.Empty):
            q.get_nowait()

        def put_later() -> None:
            with broker.connection() as other:
                other.SimpleQueue("simple").put({"from": "thread"})

        thread = threading.Thread(target=put_later)
        thread.start()
        message = q.get(block=True, timeout=10)
        thread.join(10)
        assert message.payload == {"from": "thread"}
        message.ack()
        q.close()


def test_consumer_mixin_runs_until_told_to_stop(broker: Any) -> None:
    """kombu.mixins.ConsumerMixin (userguide/consumers.html#consumer-mixin-classes) runs its
    consume loop in a thread and stops on should_stop."""
    queue = Queue("mixin", Exchange("mixin-x", "fanout"), auto_delete=False)
    received: list[int] = []

    class Worker(ConsumerMixin):
        def __init__(self, connection: kombu.Connection) -> None:
            self.connection = connection

        def get_consumers(self, consumer_cls: Any, channel: Any) -> list[Any]:
            return [consumer_cls(queues=[queue], callbacks=[self.on_message], accept=["json"])]

        def on_message(self, body: Any, message: Any) -> None:
            received.append(body["n"])
            message.ack()
            if len(received) == 5:
                self.should_stop = True

    conn = broker.connection()
    worker = Worker(conn)
    thread = threading.Thread(target=worker.run, daemon=True)
    thread.start()
    with broker.connection() as pub:
        producer = Producer(pub)
        for n in range(5):
            producer.publish({"n": n}, exchange=queue.exchange, declare=[queue], serializer="json")
    thread.join(20)
    conn.release()
    assert not thread.is_alive()
    assert received == [0, 1, 2, 3, 4]


def test_kombu_pools_connections_and_producers(broker: Any) -> None:
    """kombu.pools (userguide/pools.html): pooled connections and producers are reused and
    publish to the simulator."""
    conn = broker.connection()
    try:
        with kombu.pools.connections[conn].acquire(block=True, timeout=5) as pooled:
            pooled.default_channel.queue_declare("pooled", durable=True, auto_delete=False)
        for n in range(3):
            with kombu.pools.producers[conn].acquire(block=True, timeout=5) as producer:
                producer.publish({"n": n}, routing_key="pooled", serializer="json")
        assert broker.queue("pooled").messages_ready == 3
        with kombu.pools.connections[conn].acquire(block=True, timeout=5) as pooled:
            simple = pooled.SimpleQueue("pooled")
            assert [simple.get(timeout=5).payload["n"] for _ in range(3)] == [0, 1, 2]
    finally:
        kombu.pools.reset()
        conn.release()


def test_drain_events_timeout_is_socket_timeout(broker: Any) -> None:
    """py-amqp's contract kombu relies on: drain_events(timeout) raises socket.timeout."""
    with (
        broker.connection() as conn,
        Consumer(conn, [Queue("quiet", auto_delete=False)], callbacks=[]),
        pytest.raises(socket.timeout),
    ):
        conn.drain_events(timeout=0.05)
