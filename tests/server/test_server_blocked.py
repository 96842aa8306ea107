"""connection.blocked / unblocked: a memory alarm raised by the test (broker.set_memory_alarm).

RabbitMQ's behaviour followed (https://www.rabbitmq.com/connection-blocked.html and
rabbit_reader's control_throttle; not re-measured here: raising an alarm on the shared RabbitMQ
would block every other user of it): a connection that publishes while the alarm is on is
blocked, is sent connection.blocked if it announced the capability, and its publishes wait;
a connection that does not publish is left alone; when the alarm clears, blocked connections
get connection.unblocked and their publishes are handled in order.
"""

from __future__ import annotations

import contextlib
import struct
import time

import amqp
import kombu
import pytest
from _raw import expect, frame, frames, method, open_connection, read_frame

import simamqp
from simamqp.server import Server

DECLARE = "BsbbbbbF"


def _wait_for(predicate, timeout: float = 30.0) -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        assert time.monotonic() < deadline, "timed out waiting"
        time.sleep(0.01)


def _publish(channel: int, queue: str, body: bytes) -> bytes:
    return (
        method(channel, (60, 40), "Bssbb", (0, "", queue, False, False))
        + frame(2, channel, struct.pack(">HHQH", 60, 0, len(body), 0))
        + frame(3, channel, body)
    )


def _raw_client(url: str, capable: bool):
    import socket

    from _raw import PROTOCOL_HEADER, address

    sock = socket.create_connection(address(url), timeout=10)
    sock.sendall(PROTOCOL_HEADER)
    expect(sock, (10, 10))
    properties = {"capabilities": {"connection.blocked": True}} if capable else {}
    sock.sendall(method(0, (10, 11), "FsSs", (properties, "PLAIN", b"\x00guest\x00guest", "en_US")))
    expect(sock, (10, 30))
    sock.sendall(method(0, (10, 31), "BlB", (2047, 131072, 0)))
    sock.sendall(method(0, (10, 40), "ssb", ("/", "", False)))
    expect(sock, (10, 41))
    sock.sendall(method(1, (20, 10), "s", ("",)))
    expect(sock, (20, 11))
    return sock


@pytest.mark.parametrize("capable", [True, False])
def test_a_publisher_is_blocked_until_the_alarm_clears(capable):
    broker = simamqp.Broker(clock=simamqp.WallClock())
    with Server(broker) as server:
        sock = _raw_client(server.url, capable)
        sock.sendall(method(1, (50, 10), DECLARE, (0, "q", False, False, False, False, False, {})))
        expect(sock, (50, 11))
        bystander = open_connection(server.url)  # never publishes: never blocked
        broker.set_memory_alarm(True)
        sock.sendall(_publish(1, "q", b"held"))
        if capable:
            blocked = read_frame(sock)
            assert frames(blocked) == [(1, 0, (10, 60))]
            assert blocked[12:25] == b"low on memory"
        else:
            server.settle()
        assert broker.queue("q").messages_ready == 0  # held while blocked
        broker.set_memory_alarm(False)
        if capable:
            assert frames(read_frame(sock)) == [(1, 0, (10, 61))]
        _wait_for(lambda: broker.queue("q").messages_ready == 1)
        # The publisher is read again: a synchronous method is answered.
        sock.sendall(method(1, (60, 10), "lBb", (0, 0, False)))
        expect(sock, (60, 11))
        # The bystander was sent nothing.
        bystander.sendall(method(1, (20, 10), "s", ("",)))
        expect(bystander, (20, 11))
        sock.close()
        bystander.close()


def test_py_amqp_over_the_socket_sees_blocked_and_unblocked():
    broker = simamqp.Broker(clock=simamqp.WallClock())
    events: list[str] = []
    with Server(broker) as server:
        host = server.url.split("@")[1].split("/")[0]
        with amqp.Connection(
            host, on_blocked=events.append, on_unblocked=lambda: events.append("unblocked")
        ) as conn:
            ch = conn.channel()
            ch.queue_declare("q", auto_delete=False)
            broker.set_memory_alarm(True)
            ch.basic_publish(amqp.Message(b"held"), "", "q")
            _drain_until(conn, lambda: bool(events))
            assert events == ["connection blocked, see broker logs"]
            assert broker.queue("q").messages_ready == 0
            broker.set_memory_alarm(False)
            _drain_until(conn, lambda: "unblocked" in events)
            _wait_for(lambda: broker.queue("q").messages_ready == 1)


def _drain_until(conn, predicate, timeout: float = 30.0) -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        assert time.monotonic() < deadline, "timed out waiting"
        with contextlib.suppress(TimeoutError):
            conn.drain_events(timeout=0.05)


def test_the_in_process_transport_sees_blocked_and_unblocked():
    """The same through simamqp:// (kombu/py-amqp surface): the callbacks fire as py-amqp's
    do, the publish waits for the alarm to clear."""
    broker = simamqp.Broker()
    events: list[str] = []
    with broker.connection() as conn:
        conn.connect()
        conn.connection.on_blocked = events.append
        conn.connection.on_unblocked = lambda: events.append("unblocked")
        ch = conn.channel()
        ch.queue_declare("q", auto_delete=False)
        other = broker.connection()
        consumer = other.channel()
        broker.set_memory_alarm(True)
        producer = kombu.Producer(ch)
        producer.publish(b"held", routing_key="q")
        ch.queue_declare("q", passive=True)  # a round trip: frames before it are dispatched
        assert events == ["connection blocked, see broker logs"]
        assert broker.queue("q").messages_ready == 0
        consumer.queue_declare("q", passive=True)  # the consumer's connection is not blocked
        broker.set_memory_alarm(False)
        ch.queue_declare("q", passive=True)
        assert events[-1] == "unblocked"
        assert broker.queue("q").messages_ready == 1
        other.release()


def test_an_unknown_resource_is_a_value_error():
    with pytest.raises(ValueError, match="resource must be one of"):
        simamqp.Broker().set_memory_alarm(True, resource="cpu")


def test_pika_sees_blocked_and_unblocked():
    import pika

    broker = simamqp.Broker(clock=simamqp.WallClock())
    events: list[str] = []
    with Server(broker) as server:
        connection = pika.BlockingConnection(pika.URLParameters(server.url))
        connection.add_on_connection_blocked_callback(
            lambda _conn, frame: events.append(frame.method.reason)
        )
        connection.add_on_connection_unblocked_callback(
            lambda _conn, _frame: events.append("unblocked")
        )
        channel = connection.channel()
        channel.queue_declare("q")
        broker.set_memory_alarm(True)
        channel.basic_publish("", "q", b"held")
        deadline = time.monotonic() + 30
        while not events:
            assert time.monotonic() < deadline
            connection.process_data_events(time_limit=0.05)
        assert events == ["low on memory"]
        assert broker.queue("q").messages_ready == 0
        broker.set_memory_alarm(False)
        while "unblocked" not in events:
            assert time.monotonic() < deadline
            connection.process_data_events(time_limit=0.05)
        _wait_for(lambda: broker.queue("q").messages_ready == 1)
        connection.close()
