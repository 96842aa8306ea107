"""Cutting the client's socket: ``conn.transport.sock.shutdown()`` / ``.close()``.

This is how code simulates a network failure (kombu's own integration suite does it): the
client's next read or write raises the ``OSError`` py-amqp raises on a dead TCP connection, and
the broker closes the connection as if the client had (unacked messages requeued, consumers
gone, exclusive queues deleted).
"""

from __future__ import annotations

import contextlib
import errno
import socket
from typing import Any

import amqp
import kombu
import pytest

SERVER_GONE = "Server unexpectedly closed connection"


def consuming(env: Any) -> tuple[Any, Any, str, list[Any]]:
    """A connection with a consumer holding one unacked delivery."""
    conn = env.connection()
    ch = env.channel(conn)
    q = env.queue(ch)
    _, received = env.consume(ch, q)
    env.publish(ch, b"held", "", q)
    assert env.drain(conn, until=lambda: len(received) == 1)
    return conn, ch, q, received


def cut(conn: Any, *, close: bool) -> None:
    sock = conn.connection.transport.sock
    sock.shutdown(socket.SHUT_RDWR)
    if close:
        sock.close()


def read_after_shutdown(exc: OSError) -> bool:
    """What py-amqp raises reading a shut-down socket: end of file (what simamqp raises), or
    ECONNRESET on RabbitMQ when the broker's reset arrives first (the two race)."""
    return (type(exc) is OSError and str(exc) == SERVER_GONE) or isinstance(
        exc, ConnectionResetError
    )


def test_after_shutdown_a_read_raises_server_closed(env):
    conn, _, _, _ = consuming(env)
    cut(conn, close=False)
    with pytest.raises(OSError) as info:
        conn.drain_events(timeout=1)
    assert read_after_shutdown(info.value)
    assert not conn.connected  # (conn.connection would reconnect)


@pytest.mark.parametrize(
    "write",
    [
        lambda ch, q: ch.queue_declare(q, passive=True),
        lambda ch, q: ch.basic_ack(1),
        lambda ch, q: ch.close(),
        lambda ch, q: ch.connection.channel(),
    ],
    ids=["queue_declare", "basic_ack", "channel_close", "channel_open"],
)
def test_after_shutdown_a_write_raises_broken_pipe(env, write):
    """EPIPE; on RabbitMQ ECONNRESET when the peer's reset has arrived first (both race)."""
    conn, ch, q, _ = consuming(env)
    cut(conn, close=False)
    with pytest.raises((BrokenPipeError, ConnectionResetError)):
        write(ch, q)
    assert not conn.connected  # (conn.connection would reconnect)


def test_after_shutdown_publish_reads_first(env):
    """py-amqp reads pending frames before a publish (connection.blocked), so it sees EOF."""
    conn, ch, q, _ = consuming(env)
    cut(conn, close=False)
    with pytest.raises(OSError) as info:
        ch.basic_publish(amqp.Message(b"x"), "", q)
    assert read_after_shutdown(info.value)


@pytest.mark.parametrize(
    "use",
    [
        lambda conn, ch, q: conn.drain_events(timeout=1),
        lambda conn, ch, q: ch.queue_declare(q, passive=True),
        lambda conn, ch, q: ch.basic_publish(amqp.Message(b"x"), "", q),
        lambda conn, ch, q: ch.basic_ack(1),
    ],
    ids=["drain_events", "queue_declare", "basic_publish", "basic_ack"],
)
def test_after_close_everything_raises_bad_file_descriptor(env, use):
    conn, ch, q, _ = consuming(env)
    cut(conn, close=True)
    with pytest.raises(OSError) as info:
        use(conn, ch, q)
    assert info.value.errno == errno.EBADF


def test_connection_close_after_shutdown_raises_and_kombu_swallows_it(env):
    conn, _, _, _ = consuming(env)
    cut(conn, close=False)
    with pytest.raises((BrokenPipeError, ConnectionResetError)):
        conn.connection.close()
    conn.close()  # kombu: a connection error while closing is not an error


@pytest.mark.parametrize("close", [False, True], ids=["shutdown", "shutdown+close"])
def test_the_broker_closes_the_connection_and_requeues_unacked(env, close):
    conn, ch, q, _ = consuming(env)
    exclusive = env.queue(ch, exclusive=True)
    cut(conn, close=close)
    other = env.channel(env.connection())

    def state() -> tuple[int, int]:
        ok = other.queue_declare(q, passive=True)
        return ok.message_count, ok.consumer_count

    assert env.eventually(state, (1, 0)) == (1, 0)
    redelivered = env.get(other, q)
    assert (redelivered.body, redelivered.delivery_info["redelivered"]) == (b"held", True)
    probing = env.connection()

    def exclusive_queue() -> str:
        try:
            env.channel(probing).queue_declare(exclusive, passive=True)
        except amqp.exceptions.NotFound:
            return "deleted"
        except amqp.exceptions.ResourceLocked:
            return "still owned"
        return "declared"

    assert env.eventually(exclusive_queue, "deleted") == "deleted"


def test_kombu_ensure_revives_a_consumer_after_a_cut(env):
    """kombu's own recovery path (its test_PyAMQPConsumerRevive does the same)."""
    q = env.name("revive")
    queue = kombu.Queue(q, routing_key=q, auto_delete=False)
    received: list[Any] = []

    def on_message(body: Any, message: Any) -> None:
        received.append(body)
        message.ack()

    def drain(conn: Any, timeout: float) -> None:
        with contextlib.suppress(TimeoutError):
            conn.drain_events(timeout=timeout)

    conn = kombu.Connection(env.url)
    with conn:
        consumer = kombu.Consumer(conn, [queue], callbacks=[on_message], accept=["json"])
        with consumer:
            cut(conn, close=True)
            ensured = conn.ensure(consumer, drain, max_retries=3)
            ensured(conn, 0.2)
            kombu.Producer(conn).publish(
                {"after": "cut"}, routing_key=q, declare=[queue], retry=True
            )
            env.settle()
            deadline = 20
            while not received and deadline:
                ensured(conn, 0.2)
                deadline -= 1
    assert received == [{"after": "cut"}]
