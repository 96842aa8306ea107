"""Faults seen through kombu: what a client observes is what py-amqp reports for RabbitMQ."""

from __future__ import annotations

import threading

import amqp
import kombu
import pytest

import simamqp


@pytest.fixture
def broker() -> simamqp.Broker:
    sim = simamqp.Broker(seed=5)
    yield sim
    if sim.name is not None:
        simamqp.unregister(sim.name)


def test_forced_close_reaches_kombu_as_connection_forced(broker: simamqp.Broker) -> None:
    broker.faults.add(point="deliver", action="close_connection", queue="q", nth=1)
    with broker.connection() as conn, broker.connection() as producer_conn:
        queue = kombu.Queue("q", routing_key="q")
        got: list[bytes] = []
        with conn.Consumer(queue, callbacks=[lambda body, m: got.append(body)], accept=["json"]):
            kombu.Producer(producer_conn).publish({"n": 1}, routing_key="q", declare=[queue])
            with pytest.raises(amqp.exceptions.ConnectionForced) as info:
                conn.drain_events(timeout=1)
    assert got == []
    assert info.value.reply_code == 320
    assert broker.queue("q").messages_ready == 1  # requeued, as RabbitMQ does


def test_redelivered_flag_reaches_kombu(broker: simamqp.Broker) -> None:
    broker.faults.add(point="deliver", action="redeliver", nth=1)
    with broker.connection() as conn:
        queue = kombu.Queue("q", routing_key="q")
        seen: list[bool] = []

        def on_message(body: object, message: kombu.Message) -> None:
            seen.append(message.delivery_info["redelivered"])
            message.ack()

        with conn.Consumer(queue, callbacks=[on_message], accept=["json"]):
            kombu.Producer(conn).publish({"n": 1}, routing_key="q", declare=[queue])
            conn.drain_events(timeout=1)
    assert seen == [True]


def test_rules_can_be_added_from_another_thread(broker: simamqp.Broker) -> None:
    def add() -> None:
        broker.faults.add(point="enqueue", action="drop", name="from-thread")

    thread = threading.Thread(target=add)
    thread.start()
    thread.join(5)
    with broker.connection() as conn:
        queue = kombu.Queue("q", routing_key="q")
        kombu.Producer(conn).publish({"n": 1}, routing_key="q", declare=[queue])
    assert broker.queue("q").messages_ready == 0
    assert broker.faults.applied("from-thread") == 1
