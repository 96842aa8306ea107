"""Error codes and exact texts, channel vs connection errors, recovery after them, and server-sent
consumer cancellation."""

from __future__ import annotations

import amqp
import kombu
import pytest
from amqp.exceptions import (
    AccessRefused,
    AMQPNotImplementedError,
    ConsumerCancelled,
    InvalidCommand,
    NotAllowed,
    NotFound,
    PreconditionFailed,
)


def test_channel_error_revives_channel_and_keeps_connection(env):
    """AMQP 0-9-1 spec 1.5.2.5 (channel.close): a soft error closes only the channel."""
    conn = env.connection()
    ch = env.channel(conn)
    q = env.queue(ch)
    with pytest.raises(NotFound):
        ch.queue_declare(env.name("missing"), passive=True)
    # py-amqp reopens the channel object after a channel error; the connection is untouched
    assert ch.is_open
    env.publish(ch, b"after-error", "", q)
    assert env.get(ch, q).body == b"after-error"
    fresh = env.channel(conn)
    assert fresh.queue_declare(q, passive=True).queue == q
    assert conn.connected


def test_channel_error_loses_that_channels_consumers(env):
    """AMQP 0-9-1 spec 1.8.3.3 (basic.consume): consumers live as long as their channel."""
    ch = env.channel()
    q = env.queue(ch)
    env.consume(ch, q)
    assert ch.queue_declare(q, passive=True).consumer_count == 1
    with pytest.raises(NotFound):
        ch.queue_declare(env.name("missing"), passive=True)
    assert (
        env.eventually(lambda: env.channel().queue_declare(q, passive=True).consumer_count, 0) == 0
    )


def test_channel_error_requeues_unacked(env):
    """rabbitmq.com/confirms.html#automatic-requeueing: a channel error requeues unacked."""
    ch = env.channel()
    q = env.queue(ch)
    env.publish(ch, b"m", "", q)
    env.get(ch, q, no_ack=False)
    with pytest.raises(NotFound):
        ch.queue_declare(env.name("missing"), passive=True)
    msg = env.get(env.channel(), q)
    assert (msg.body, msg.delivery_info["redelivered"]) == (b"m", True)


def test_channel_error_does_not_affect_other_channels(env):
    """AMQP 0-9-1 spec 2.3.5 (exceptions): channel exceptions are isolated to the channel."""
    ch_ok, ch_bad = env.channel(), env.channel()
    q = env.queue(ch_ok)
    _, got = env.consume(ch_ok, q, no_ack=True)
    with pytest.raises(NotFound):
        ch_bad.queue_declare(env.name("missing"), passive=True)
    env.publish(ch_ok, b"alive", "", q)
    assert env.drain(until=lambda: len(got) == 1)


def test_basic_get_missing_queue_is_404(env):
    """rabbitmq.com/amqp-0-9-1-reference.html#basic.get: the queue must exist."""
    ch = env.channel()
    q = env.name("missing")
    with pytest.raises(NotFound) as exc:
        ch.basic_get(q)
    assert (exc.value.reply_text, exc.value.method_sig) == (
        f"NOT_FOUND - no queue '{q}' in vhost '/'",
        (60, 70),
    )


def test_basic_consume_missing_queue_is_404(env):
    """rabbitmq.com/amqp-0-9-1-reference.html#basic.consume: the queue must exist."""
    ch = env.channel()
    q = env.name("missing")
    with pytest.raises(NotFound) as exc:
        env.consume(ch, q)
    assert (exc.value.reply_text, exc.value.method_sig) == (
        f"NOT_FOUND - no queue '{q}' in vhost '/'",
        (60, 20),
    )


def test_exchange_bind_to_default_exchange_is_403(env):
    """rabbitmq.com/amqp-0-9-1-reference.html#exchange.bind: not on the default exchange."""
    ch = env.channel()
    with pytest.raises(AccessRefused) as exc:
        ch.exchange_bind("amq.direct", "", "k")
    assert exc.value.reply_text == (
        "ACCESS_REFUSED - operation not permitted on the default exchange"
    )


def test_delete_system_exchange_is_403(env):
    """rabbitmq.com/amqp-0-9-1-reference.html#exchange.delete: amq.* cannot be deleted."""
    ch = env.channel()
    with pytest.raises(AccessRefused) as exc:
        ch.exchange_delete("amq.direct")
    assert exc.value.reply_text == (
        "ACCESS_REFUSED - deletion of system exchange 'amq.direct' in vhost '/' not allowed"
    )


@pytest.mark.parametrize(
    ("argument", "value", "detail"),
    [
        ("x-expires", 0, "{value_zero,0}"),
        ("x-max-priority", 300, "{max_value_exceeded,300}"),
        ("x-max-length", -1, "{value_negative,-1}"),
        ("x-queue-type", "bogus", "\"unsupported queue type 'bogus'\""),
    ],
)
def test_invalid_queue_argument_is_406(env, argument, value, detail):
    """rabbitmq.com/queues.html#optional-arguments: x-arguments are validated on declare."""
    ch = env.channel()
    q = env.name("q")
    with pytest.raises(PreconditionFailed) as exc:
        ch.queue_declare(q, arguments={argument: value})
    assert exc.value.reply_text == (
        f"PRECONDITION_FAILED - invalid arg '{argument}' for queue '{q}' in vhost '/': {detail}"
    )


def test_unknown_exchange_type_is_connection_error_503(env):
    """rabbitmq.com/amqp-0-9-1-reference.html#exchange.declare.type: unknown type is 503."""
    conn = env.connection()
    ch = env.channel(conn)
    with pytest.raises(InvalidCommand) as exc:
        ch.exchange_declare(env.name("x"), "no-such-type")
    assert (exc.value.reply_code, exc.value.reply_text, exc.value.method_sig) == (
        503,
        # RabbitMQ says "invalid exchange type" only for names that happen to be Erlang atoms
        # (e.g. 'foo', 'ok'); any other unknown name is "unknown exchange type"
        "COMMAND_INVALID - unknown exchange type 'no-such-type'",
        (40, 10),
    )
    assert not conn.connected
    assert not ch.is_open


def test_connection_error_leaves_other_connections_alone(env):
    """AMQP 0-9-1 spec 2.3.5 (exceptions): a connection exception closes only that connection."""
    survivor = env.channel()
    q = env.queue(survivor)
    doomed = env.connection()
    with pytest.raises(InvalidCommand):
        env.channel(doomed).exchange_declare(env.name("x"), "bogus")
    env.publish(survivor, b"alive", "", q)
    assert env.get(survivor, q).body == b"alive"
    ch = env.channel(env.connection())
    assert ch.queue_declare(q, passive=True).queue == q


def test_prefetch_size_is_not_implemented_540(env):
    """rabbitmq.com/specification.html#method-status-basic.qos: prefetch-size is unsupported."""
    conn = env.connection()
    ch = env.channel(conn)
    with pytest.raises(AMQPNotImplementedError) as exc:
        ch.basic_qos(1024, 0, False)
    assert (exc.value.reply_code, exc.value.reply_text) == (
        540,
        "NOT_IMPLEMENTED - prefetch_size!=0 (1024)",
    )
    assert not conn.connected


def test_immediate_flag_is_not_implemented_540(env):
    """rabbitmq.com/specification.html#method-status-basic.publish: immediate is unsupported."""
    conn = env.connection()
    ch = env.channel(conn)
    q = env.queue(ch)
    ch.basic_publish(amqp.Message(b"x"), "", q, False, True)
    with pytest.raises(AMQPNotImplementedError) as exc:
        ch.queue_declare(q, passive=True)
    assert (exc.value.reply_text, exc.value.method_sig) == (
        "NOT_IMPLEMENTED - immediate=true",
        (60, 40),
    )
    assert not conn.connected


def test_channel_flow_off_is_not_implemented_540(env):
    """rabbitmq.com/specification.html#method-status-channel.flow: active=false unsupported."""
    conn = env.connection()
    ch = env.channel(conn)
    with pytest.raises(AMQPNotImplementedError) as exc:
        ch.flow(False)
    assert exc.value.reply_text == "NOT_IMPLEMENTED - active=false"
    assert not conn.connected


def test_unknown_vhost_is_530(env):
    """rabbitmq.com/vhosts.html: connecting to a missing virtual host is refused (530)."""
    vhost = env.name("vhost")
    scheme, rest = env.url.split("://", 1)
    conn = kombu.Connection(f"{scheme}://{rest.split('/', 1)[0]}/{vhost}")
    try:
        with pytest.raises(NotAllowed) as exc:
            conn.connect()
    finally:
        conn.release()
    assert (exc.value.reply_code, exc.value.reply_text) == (
        530,
        f"NOT_ALLOWED - vhost {vhost} not found",
    )


def test_server_cancel_on_queue_delete_calls_on_cancel(env):
    """rabbitmq.com/consumer-cancel.html: deleting the queue sends basic.cancel to consumers."""
    conn = env.connection()
    ch = env.channel(conn)
    q = env.queue(ch)
    cancelled = []
    ch.basic_consume(q, consumer_tag="watcher", callback=lambda m: None, on_cancel=cancelled.append)
    env.channel(conn).queue_delete(q)
    assert env.drain(conn, until=lambda: cancelled == ["watcher"])
    assert ch.is_open


def test_server_cancel_without_handler_raises_consumer_cancelled(env):
    """rabbitmq.com/consumer-cancel.html: py-amqp raises ConsumerCancelled without on_cancel."""
    conn = env.connection()
    ch = env.channel(conn)
    q = env.queue(ch)
    ch.basic_consume(q, consumer_tag="watcher", callback=lambda m: None)
    env.channel().queue_delete(q)  # another connection: the cancel must not interrupt this call
    with pytest.raises(ConsumerCancelled) as exc:
        env.drain(conn)
    assert exc.value.reply_text == "watcher"
    assert ch.is_open


def test_server_cancel_reaches_every_consumer_of_the_queue(env):
    """rabbitmq.com/consumer-cancel.html: other channels' consumers are cancelled too."""
    conn = env.connection()
    ch1, ch2 = env.channel(conn), env.channel(conn)
    q = env.queue(ch1)
    cancelled = []
    for i, ch in enumerate((ch1, ch2)):
        ch.basic_consume(
            q, consumer_tag=f"c{i}", callback=lambda m: None, on_cancel=cancelled.append
        )
    env.channel(conn).queue_delete(q)
    assert env.drain(conn, until=lambda: sorted(cancelled) == ["c0", "c1"])
