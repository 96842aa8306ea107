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


class _CountingLock:
    """The broker's lock, counting how often it is taken."""

    def __init__(self, lock: object) -> None:
        self.lock = lock
        self.entered = 0

    def __enter__(self) -> object:
        self.entered += 1
        return self.lock.__enter__()  # type: ignore[attr-defined]

    def __exit__(self, *exc: object) -> object:
        return self.lock.__exit__(*exc)  # type: ignore[attr-defined]


def test_changing_or_reading_the_fault_plan_holds_the_broker_lock(broker: simamqp.Broker) -> None:
    """Threads share a broker (a worker thread consumes while the test changes the plan), so the
    plan's own methods take the broker's lock like every other entry point."""
    counting = _CountingLock(broker.lock)
    broker.lock = counting  # type: ignore[assignment]
    broker.faults.add(point="publish", action="drop", name="a")
    assert counting.entered == 1
    broker.faults.to_dict()
    assert counting.entered == 2
    broker.faults.remove("a")
    assert counting.entered == 3
    broker.faults.clear()
    assert counting.entered == 4

def test_a_connection_closed_at_connect_fails_its_first_channel_as_py_amqp_would(
    broker: simamqp.Broker,
) -> None:
    """A ``connection``-point close comes before the client opens a channel: py-amqp reads the
    connection.close while it waits for channel.open-ok (ConnectionForced, 320); later uses of
    the closed connection are RecoverableConnectionError. Never an engine exception."""
    broker.faults.add(point="connection", action="close_connection", name="cut")
    with broker.connection() as conn:
        with pytest.raises(amqp.exceptions.ConnectionForced) as info:
            conn.channel()
        assert info.value.reply_code == 320
        with pytest.raises(amqp.exceptions.RecoverableConnectionError):
            conn.connection.channel()
