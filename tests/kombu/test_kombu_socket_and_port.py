"""``conn.transport.sock`` (cutting the network from user code) and what ``conn.port`` means.

tests/conformance/test_network_cut.py compares what the client sees with RabbitMQ; these tests
cover what only the simulator shows (the trace, a thread blocked in drain_events, reconnects)
and kombu's failover between ``amqp://`` and ``simamqp://`` URLs.
"""

from __future__ import annotations

import errno
import socket
import threading
from typing import Any

import amqp
import kombu
import pytest

import simamqp
from simamqp.transport import SimSocket


@pytest.fixture
def broker() -> Any:
    broker = simamqp.Broker(seed=16, clock=simamqp.WallClock())
    name = f"socket-and-port-{id(broker)}"
    simamqp.register(name, broker)
    yield broker
    simamqp.unregister(name)


def test_sock_is_a_socket_like_object_per_connection(broker: Any) -> None:
    with broker.connection() as conn:
        sock = conn.connection.transport.sock
        assert isinstance(sock, SimSocket)
        assert conn.connection.sock is sock
        sock.shutdown(socket.SHUT_RDWR)
        sock.close()
        sock.close()  # closing twice is harmless, as for a socket
        with pytest.raises(OSError) as info:
            sock.shutdown(socket.SHUT_RDWR)
        assert info.value.errno == errno.EBADF
        conn.collect()
        conn.connect()
        assert conn.connection.transport.sock is not sock  # a new connection, a new socket
        assert conn.connection.transport.sock.__class__ is SimSocket


def test_a_cut_is_a_traced_connection_loss_and_requeues_unacked(broker: Any) -> None:
    with broker.connection() as conn:
        ch = conn.channel()
        ch.queue_declare("held", auto_delete=False)
        received: list[Any] = []
        ch.basic_consume("held", callback=received.append)
        ch.basic_publish(amqp.Message(b"m"), "", "held")
        conn.drain_events(timeout=1)
        assert broker.queue("held").messages_unacknowledged == 1
        conn.connection.transport.sock.shutdown(socket.SHUT_RDWR)
        info = broker.queue("held")
        assert (info.messages_ready, info.messages_unacknowledged, info.consumers) == (1, 0, 0)
        assert len(broker.trace.of_kind("connection-lost")) == 1
        assert conn.connected  # the client has not noticed yet, as with a real socket
        with pytest.raises(OSError, match="Server unexpectedly closed connection"):
            conn.drain_events(timeout=1)
        assert not conn.connected


def test_a_cut_wakes_a_thread_blocked_in_drain_events(broker: Any) -> None:
    with broker.connection() as conn:
        ch = conn.channel()
        ch.queue_declare("idle", auto_delete=False)
        ch.basic_consume("idle", callback=print)
        raised: list[BaseException] = []
        waiting = threading.Event()

        def consume() -> None:
            waiting.set()
            try:
                conn.drain_events(timeout=30)
            except BaseException as exc:
                raised.append(exc)

        worker = threading.Thread(target=consume)
        worker.start()
        waiting.wait(5)
        conn.connection.transport.sock.shutdown(socket.SHUT_RDWR)
        worker.join(10)
        assert not worker.is_alive()
        assert [type(exc) for exc in raised] == [OSError]


def _closed_port() -> int:
    with socket.socket() as reserved:
        reserved.bind(("127.0.0.1", 0))
        return int(reserved.getsockname()[1])


@pytest.mark.parametrize("url", ["simamqp://", "simamqp://localhost"])
def test_a_simamqp_url_without_a_port_reports_the_amqp_default_once_connected(url: str) -> None:
    """As ``pyamqp://localhost``: no port until connected, then the transport's default."""
    conn = kombu.Connection(url)
    assert conn.port is None
    with conn:
        conn.connect()
        assert conn.port == 5672
        assert conn.as_uri() == "simamqp://guest:**@localhost:5672//"


def test_failover_from_a_dead_amqp_url_to_a_simamqp_url_takes_its_port() -> None:
    dead = _closed_port()
    conn = kombu.Connection(f"pyamqp://127.0.0.1:{dead};simamqp://localhost:5672")
    assert conn.port == dead
    with conn:
        conn.connect()
        assert (conn.transport_cls, conn.port) == ("simamqp", 5672)
        with conn.SimpleQueue("failed-over") as queue:
            queue.put({"ok": True})
            assert queue.get(timeout=1).payload == {"ok": True}


def test_failover_to_a_simamqp_url_without_a_port_keeps_the_previous_port() -> None:
    """kombu's ``switch()`` keeps the previous port when the next URL has none, for every
    transport (``pyamqp://host`` would even be dialled on the dead port): give alternates a
    port. simamqp never uses it, so the connection works either way (docs/peers.md)."""
    dead = _closed_port()
    conn = kombu.Connection(f"pyamqp://127.0.0.1:{dead};simamqp://")
    with conn:
        conn.connect()
        assert (conn.transport_cls, conn.port) == ("simamqp", dead)
        assert conn.connected
