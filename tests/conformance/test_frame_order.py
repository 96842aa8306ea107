"""Frame order around synchronous methods.

py-amqp sends a synchronous method and then reads frames in arrival order until the method's
reply comes: every delivery (return, confirm...) the broker wrote before the reply reaches its
callback before the method returns, on whatever channel of the connection it is for; frames the
broker writes after the reply (the deliveries a ``basic.consume`` or a larger ``basic.qos``
starts) wait for the next read.

Every test here first makes sure the broker has handed three messages to a consumer (the queue
has none ready left, seen from another connection), then makes one synchronous call on the
consumer's connection and looks at what the callback got, without draining.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import amqp
import pytest
from amqp.exceptions import NotFound

BODIES = [b"m0", b"m1", b"m2"]


def delivered_then(
    env: Any,
    call: Callable[[Any], Any],
    *,
    prepare: Callable[[Any, Any, str], Any] | None = None,
    no_ack: bool = True,
    **connection_options: Any,
) -> tuple[Any, str, list[Any], Any]:
    """Consume from a fresh queue, have three messages delivered, then make one call.

    ``prepare(env, ch, q)`` runs before the publishes (what the call needs declared); the call
    gets what it returned. Returns (channel, queue, received messages, what the call returned).
    """
    conn = env.connection(**connection_options) if connection_options else env.conn
    ch = env.channel(conn)
    q = env.queue(ch)
    _, received = env.consume(ch, q, no_ack=no_ack)
    context = prepare(env, ch, q) if prepare is not None else (env, ch, q)
    other = env.channel(env.connection())
    for body in BODIES:
        env.publish(other, body, "", q)
    # Nothing ready any more: the broker has sent all three to the consumer.
    assert env.eventually_count(q, 0, other) == 0
    result = call(context)
    return ch, q, received, result


def _with_queue(env: Any, ch: Any, q: str) -> Any:
    return env, ch, q, env.queue(ch)


def _with_spare_channel(env: Any, ch: Any, q: str) -> Any:
    return env.channel(), q


def _with_exchange_name(env: Any, ch: Any, q: str) -> Any:
    return ch, env.name("x")


#: name -> (prepare, call): each call is one synchronous method on the consumer's connection.
SYNC_CALLS: dict[str, tuple[Any, Callable[[Any], Any]]] = {
    "queue_declare": (None, lambda c: c[1].queue_declare(c[2], passive=True)),
    "queue_declare_new": (_with_queue, lambda c: c[1].queue_declare(c[3], auto_delete=False)),
    "exchange_declare": (
        _with_exchange_name,
        lambda c: c[0].exchange_declare(c[1], "direct", auto_delete=False),
    ),
    "queue_bind": (None, lambda c: c[1].queue_bind(c[2], "amq.direct", routing_key=c[2])),
    "queue_unbind": (None, lambda c: c[1].queue_unbind(c[2], "amq.direct", routing_key="none")),
    "queue_purge": (None, lambda c: c[1].queue_purge(c[2])),
    "basic_qos": (None, lambda c: c[1].basic_qos(0, 10, False)),
    "basic_get": (None, lambda c: c[1].basic_get(c[2], no_ack=True)),
    "confirm_select": (None, lambda c: c[1].confirm_select()),
    "basic_consume": (_with_queue, lambda c: c[1].basic_consume(c[3], callback=len)),
    "channel_open": (None, lambda c: c[0].channel()),
    "channel_close_other": (_with_spare_channel, lambda c: c[0].close()),
    "other_channel": (
        _with_spare_channel,
        lambda c: c[0].queue_declare(c[1], passive=True),
    ),
}


@pytest.mark.parametrize("prepare, call", SYNC_CALLS.values(), ids=SYNC_CALLS.keys())
def test_deliveries_sent_before_the_reply_reach_the_callback_first(env, prepare, call):
    _, _, received, _ = delivered_then(env, call, prepare=prepare)
    assert [m.body for m in received] == BODIES


#: Methods py-amqp sends without waiting for a reply: they read nothing.
ASYNC_CALLS: dict[str, tuple[Any, Callable[[Any], Any]]] = {
    "basic_recover": (None, lambda c: c[1].basic_recover(requeue=True)),
    "queue_declare_nowait": (
        _with_queue,
        lambda c: c[1].queue_declare(c[3], auto_delete=False, nowait=True),
    ),
    "queue_bind_nowait": (
        None,
        lambda c: c[1].queue_bind(c[2], "amq.direct", routing_key=c[2], nowait=True),
    ),
    "basic_publish_to_nowhere": (
        None,
        lambda c: c[1].basic_publish(amqp.Message(b"x"), "", "no-such-queue-anywhere"),
    ),
}


@pytest.mark.parametrize("prepare, call", ASYNC_CALLS.values(), ids=ASYNC_CALLS.keys())
def test_methods_without_a_reply_read_no_deliveries(env, prepare, call):
    _, _, received, _ = delivered_then(env, call, prepare=prepare)
    assert len(received) <= 1  # basic_publish reads at most one pending frame (blocked check)
    env.drain(until=lambda: len(received) == 3)
    assert [m.body for m in received] == BODIES


def test_deliveries_before_basic_cancel_reach_the_consumer_before_cancel_ok(env):
    """A consumer gets what was delivered before its cancel-ok, never after it."""

    def cancel(context: Any) -> Any:
        _, ch, _ = context
        return ch.basic_cancel(next(iter(ch.callbacks)))

    ch, q, received, tag = delivered_then(env, cancel, no_ack=False)
    assert [m.body for m in received] == BODIES
    assert [m.delivery_info["redelivered"] for m in received] == [False] * 3
    assert tag not in ch.callbacks
    for message in received:
        ch.basic_ack(message.delivery_tag)
    assert env.eventually_count(q, 0) == 0
    env.fence(ch)  # a round trip: anything sent before its reply was dispatched first
    assert [m.body for m in received] == BODIES  # nothing more, nothing redelivered


def test_deliveries_before_a_failing_method_reach_the_callback_first(env):
    """The channel error is the method's reply: what came before it is dispatched first."""

    def missing_queue(context: Any) -> Any:
        env, ch, _ = context
        with pytest.raises(NotFound):
            ch.queue_declare(env.name("missing"), passive=True)

    _, _, received, _ = delivered_then(env, missing_queue)
    assert [m.body for m in received] == BODIES


def test_closing_the_consumer_channel_discards_its_deliveries_and_requeues_them(env):
    """py-amqp ignores deliveries for a channel it is closing; the broker requeues them."""
    _, q, received, _ = delivered_then(env, lambda c: c[1].close(), no_ack=False)
    assert received == []
    assert env.eventually_count(q, 3) == 3
    other = env.channel()
    got = [env.get(other, q) for _ in BODIES]
    assert [(m.body, m.delivery_info["redelivered"]) for m in got] == [
        (body, True) for body in BODIES
    ]


def test_deliveries_a_basic_consume_starts_come_after_its_reply(env):
    """consume-ok precedes the consumer's first delivery: basic_consume dispatches none."""
    ch = env.channel()
    q = env.queue(ch)
    for body in BODIES:
        env.publish(ch, body, "", q)
    assert env.eventually_count(q, 3, ch) == 3
    _, received = env.consume(ch, q, no_ack=True)
    assert received == []
    assert env.drain(until=lambda: len(received) == 3)
    assert [m.body for m in received] == BODIES


def test_publisher_confirm_wait_dispatches_earlier_deliveries(env):
    """kombu's confirm_publish waits for the ack the way a synchronous method waits."""

    def publish_confirmed(context: Any) -> Any:
        _, ch, _, elsewhere = context
        ch.basic_publish(amqp.Message(b"confirmed"), "", elsewhere)

    _, _, received, _ = delivered_then(
        env, publish_confirmed, prepare=_with_queue, transport_options={"confirm_publish": True}
    )
    assert [m.body for m in received] == BODIES


def test_connection_close_dispatches_deliveries_sent_before_close_ok(env):
    """connection.close waits for close-ok like any synchronous method: py-amqp discards only
    channel 0's other methods, so deliveries on a consumer's channel still reach it."""

    def close(context: Any) -> Any:
        _, ch, _ = context
        ch.connection.close()

    _, _, received, _ = delivered_then(env, close, transport_options={})
    assert [m.body for m in received] == BODIES


def test_acks_sent_from_callbacks_during_connection_close_are_discarded(env):
    """The callbacks run after the client sent connection.close: the broker discards their
    acks, and every delivery goes back to the queue, redelivered."""
    conn = env.connection()
    ch = env.channel(conn)
    q = env.queue(ch, auto_delete=False)
    received: list[Any] = []

    in_process = env.kind == "simamqp" and not hasattr(env, "server")

    def ack(message: Any) -> None:
        received.append(message.body)
        try:
            ch.basic_ack(message.delivery_tag)
        except (OSError, amqp.exceptions.ConnectionError):
            # Over a real socket the broker may already have sent close-ok and closed it: the
            # ack then fails to write, which changes nothing the broker does.
            if in_process:
                raise

    ch.basic_consume(q, callback=ack)
    other = env.channel(env.connection())
    for body in BODIES:
        env.publish(other, body, "", q)
    assert env.eventually_count(q, 0, other) == 0
    try:
        ch.connection.close()
    except (OSError, amqp.exceptions.ConnectionError):
        assert not in_process  # only a real socket can be gone before close-ok is read
    if in_process:
        assert received == BODIES
    else:  # the rest were read unless a failed ack write ended the connection first
        assert received == BODIES[: len(received)] and received
    assert env.eventually_count(q, 3, other) == 3
    got = [env.get(other, q) for _ in BODIES]
    assert [(m.body, m.delivery_info["redelivered"]) for m in got] == [
        (body, True) for body in BODIES
    ]
