"""simamqp's own API under hostile input (issue 12): named errors, nothing corrupted or hung.

These have no RabbitMQ counterpart (the clock, fault plans, vhost deletion and connection
objects are simamqp's), so they run on simamqp only; what a client sees over the wire is
compared with RabbitMQ in tests/conformance/test_hostile_clients.py.
"""

from __future__ import annotations

import gc
import math
import threading
from typing import Any

import amqp
import kombu
import pytest

import simamqp


@pytest.mark.parametrize("seconds", [math.nan, math.inf, -math.inf, -1])
def test_advance_refuses_what_would_poison_the_clock(seconds: float) -> None:
    broker = simamqp.Broker()
    broker.advance(1.5)
    with pytest.raises(ValueError, match="advance"):
        broker.advance(seconds)
    assert broker.clock.now() == 1.5
    broker.advance(1)
    assert broker.clock.now() == 2.5


@pytest.mark.parametrize("seconds", ["5", None, True])
def test_advance_refuses_what_is_not_a_number(seconds: Any) -> None:
    with pytest.raises(TypeError, match="advance"):
        simamqp.Broker().advance(seconds)


@pytest.mark.parametrize("code", [999, 320, 501, 530, 541, 200])
def test_close_channel_fault_needs_a_channel_error_code(code: int) -> None:
    broker = simamqp.Broker()
    with pytest.raises(simamqp.InvalidFault, match="reply_code"):
        broker.faults.add(point="publish", action="close_channel", reply_code=code)
    assert not broker.faults.rules


@pytest.mark.parametrize("code", [403, 404, 405, 406])
def test_close_channel_fault_with_a_channel_code_closes_the_channel(code: int) -> None:
    broker = simamqp.Broker()
    broker.faults.add(point="publish", action="close_channel", reply_code=code, reply_text="x")
    with broker.connection() as conn:
        ch = conn.channel()
        ch.basic_publish(amqp.Message(b"m"), "", "q")
        with pytest.raises(amqp.exceptions.ChannelError) as info:
            ch.queue_declare("", exclusive=True)
        assert info.value.reply_code == code
        assert conn.connected


def test_close_channel_fault_reply_text_fits_a_shortstr() -> None:
    broker = simamqp.Broker()
    prefix = len("PRECONDITION_FAILED - ")
    broker.faults.add(point="publish", action="close_channel", reply_text="t" * (255 - prefix))
    with pytest.raises(simamqp.InvalidFault, match="255 bytes"):
        broker.faults.add(point="publish", action="close_channel", reply_text="t" * 256)
    with pytest.raises(simamqp.InvalidFault, match="255 bytes"):
        broker.faults.add(point="publish", action="close_channel", reply_text="é" * 120)


def test_delete_vhost_takes_the_lock_and_wakes_a_blocked_consumer() -> None:
    """A wall-clock consumer blocked in drain_events sees its vhost deleted at once."""
    broker = simamqp.Broker(clock=simamqp.WallClock())
    broker.add_vhost("doomed")
    outcome: dict[str, Any] = {}
    with broker.connection("doomed") as conn:
        conn.default_channel.basic_consume(
            conn.default_channel.queue_declare("", exclusive=True).queue,
            callback=lambda m: None,
        )
        started = threading.Event()

        def consume() -> None:
            started.set()
            try:
                conn.drain_events(timeout=30)
            except Exception as exc:
                outcome["error"] = exc

        thread = threading.Thread(target=consume)
        thread.start()
        started.wait(5)
        broker.delete_vhost("doomed")
        thread.join(10)
        assert not thread.is_alive()
    assert isinstance(outcome.get("error"), amqp.exceptions.ConnectionForced), outcome
    assert "doomed" not in broker.vhosts


def test_connection_collected_without_close_requeues_and_drops_exclusive_queues() -> None:
    broker = simamqp.Broker()
    with broker.connection() as setup:
        ch = setup.default_channel
        ch.queue_declare("work", auto_delete=False)
        ch.basic_publish(amqp.Message(b"m"), "", "work")
    conn = kombu.Connection(broker.url)
    owner = conn.channel()
    owner.queue_declare("mine", exclusive=True)
    assert owner.basic_get("work", no_ack=False).body == b"m"
    assert broker.queue("work").messages_unacknowledged == 1
    del owner, conn
    gc.collect()
    broker.run_until_idle()
    assert broker.queue("work").messages_ready == 1
    assert "mine" not in broker.vhosts["/"].queues
    assert not broker.connections


def test_connection_collected_inside_a_broker_call_closes_on_the_next_run() -> None:
    """The collector may run while this thread holds the broker lock: the close waits."""
    broker = simamqp.Broker()
    conn = kombu.Connection(broker.url)
    conn.channel().queue_declare("mine", exclusive=True)
    with broker.lock:
        del conn
        gc.collect()
        assert "mine" in broker.vhosts["/"].queues  # not torn down under a caller's feet
    broker.run_until_idle()
    assert "mine" not in broker.vhosts["/"].queues


def test_closed_connection_is_not_closed_again_when_collected() -> None:
    broker = simamqp.Broker()
    conn = kombu.Connection(broker.url)
    conn.connect()
    conn.release()
    other = broker.connection()
    other.connect()
    del conn
    gc.collect()
    broker.run_until_idle()
    assert other.connected and len(broker.connections) == 1
    other.release()


def test_connection_collected_while_another_thread_holds_the_lock_does_not_wait() -> None:
    """The finalizer never blocks on the broker lock (a collector waiting could deadlock)."""
    broker = simamqp.Broker()
    conn = kombu.Connection(broker.url)
    conn.channel().queue_declare("mine", exclusive=True)
    holding, release = threading.Event(), threading.Event()

    def hold() -> None:
        with broker.lock:
            holding.set()
            release.wait(10)

    holder = threading.Thread(target=hold)
    holder.start()
    assert holding.wait(10)
    del conn
    gc.collect()  # returns at once although another thread holds the lock
    release.set()
    holder.join(10)
    assert "mine" in broker.vhosts["/"].queues
    broker.run_until_idle()
    assert "mine" not in broker.vhosts["/"].queues
