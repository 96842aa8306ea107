"""Event loops poll a simamqp connection through a real file descriptor.

DESIGN.md: "Event loops get a real file descriptor to poll." Issue 16 item 2: kombu's
``t/integration`` ``test_PyAMQPEventLoop::test_ack_from_another_thread`` (reproduced below
with kombu's hub, unedited in substance) and issue 11: the descriptor is readable exactly while
the connection has frames to read, and is closed with the connection.
"""

from __future__ import annotations

import os
import select
import threading
import uuid
from time import monotonic

import kombu
import pytest
from kombu.asynchronous import Hub

import simamqp


def _readable(fd: int) -> bool:
    return bool(select.select([fd], [], [], 0)[0])


def test_descriptor_is_readable_exactly_while_frames_are_pending(
    sim_broker: simamqp.Broker,
) -> None:
    with sim_broker.connection() as conn:
        conn.connect()
        fd = conn.connection.fileno()
        assert not _readable(fd)
        ch = conn.channel()
        ch.queue_declare("fd-q", auto_delete=False)
        got: list[bytes] = []
        ch.basic_consume("fd-q", no_ack=True, callback=lambda m: got.append(m.body))
        producer = conn.Producer()
        for body in (b"one", b"two"):
            producer.publish(body, routing_key="fd-q")
        assert _readable(fd)
        conn.drain_events(timeout=0)
        assert got == [b"one", b"two"]  # (the second publish read the first delivery)
        with pytest.raises(TimeoutError):
            conn.drain_events(timeout=0)  # what kombu's hub reader does until it times out
        assert not _readable(fd)


def test_descriptor_is_closed_with_the_connection(sim_broker: simamqp.Broker) -> None:
    """No descriptor outlives its connection (as py-amqp's socket)."""
    before = len(os.listdir("/proc/self/fd")) if os.path.isdir("/proc/self/fd") else None
    fds = []
    for _ in range(20):
        with sim_broker.connection() as conn:
            conn.connect()
            fds.append(conn.connection.fileno())
    for fd in set(fds):
        with pytest.raises(OSError):
            os.fstat(fd)  # closed (unless reused by an unrelated open, which 20 closes rule out)
    if before is not None:
        assert len(os.listdir("/proc/self/fd")) == before


def test_descriptor_is_readable_when_the_broker_closes_the_connection(
    sim_broker: simamqp.Broker,
) -> None:
    with sim_broker.connection() as conn:
        conn.connect()
        fd = conn.connection.fileno()
        sim_broker.close_connections()
        assert _readable(fd)
        with pytest.raises(conn.connection_errors):
            conn.drain_events(timeout=0)


def test_ack_from_another_thread_on_kombus_hub() -> None:
    """kombu t/integration/common.py BaseEventLoop::test_ack_from_another_thread, on the
    process-default broker (``simamqp://``): the hub polls the descriptor, a timer thread
    schedules the ack in the hub, the broker then delivers the next message (prefetch 1)."""
    name = f"test_ack_from_another_thread_{uuid.uuid4().hex}"
    test_queue = kombu.Queue(name, routing_key=name)
    acked: list[int] = []
    hub = Hub()

    def ack(message: kombu.Message) -> None:
        message.ack()
        acked.append(message.payload)

    def callback(body: object, message: kombu.Message) -> None:
        threading.Timer(0.1, hub.call_soon, (ack, message)).start()

    with kombu.Connection("simamqp://") as conn:
        with conn.channel() as channel:
            producer = kombu.Producer(channel)
            for body in range(2):
                producer.publish(
                    body,
                    exchange=test_queue.exchange,
                    routing_key=test_queue.routing_key,
                    declare=[test_queue],
                )
        consumer = kombu.Consumer(conn, [test_queue], callbacks=[callback], prefetch_count=1)
        with consumer:
            try:
                conn.register_with_event_loop(hub)
                deadline = monotonic() + 1
                while len(acked) < 2 and monotonic() < deadline:
                    hub.run_once()
                assert acked == [0, 1]
            finally:
                hub.close()
                test_queue(consumer.channel).delete()


def test_descriptor_of_a_connection_dropped_without_close_is_released() -> None:
    import gc

    from simamqp._waiting import ReadyPipe

    pipe = ReadyPipe()
    fd = pipe.fileno()
    del pipe
    gc.collect()
    with pytest.raises(OSError):
        os.fstat(fd)
