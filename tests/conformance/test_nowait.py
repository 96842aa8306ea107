"""Methods sent with ``nowait=True``: the client reads no reply, so an error comes later.

py-amqp sends the method and returns at once, without reading. When the method fails, the broker
closes the channel (or the connection), and the client learns it when it next reads: the next
synchronous method raises the error the method caused, and py-amqp then reopens the channel
under the same id. (An asynchronous method sent in between may or may not see the close first
on RabbitMQ: ``basic_publish`` reads one pending frame, and whether the close has arrived by then
is a race; these tests do not send one.)
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest
from amqp import exceptions as amqp_exc


def _missing(env: Any, ch: Any) -> str:
    return env.name("missing")


def _full_queue(env: Any, ch: Any) -> str:
    q = env.queue(ch)
    env.publish(ch, b"x", "", q)
    return q


def _direct_exchange(env: Any, ch: Any) -> str:
    return env.exchange(ch, "direct")


#: name -> (prepare(env, ch) -> name, nowait call(ch, name), error class, reply code)
FAILING: dict[str, tuple[Callable[[Any, Any], str], Callable[[Any, str], Any], type, int]] = {
    "queue_declare_passive": (
        _missing,
        lambda ch, q: ch.queue_declare(q, passive=True, nowait=True),
        amqp_exc.NotFound,
        404,
    ),
    "queue_bind_missing_exchange": (
        lambda env, ch: env.queue(ch),
        lambda ch, q: ch.queue_bind(q, q, routing_key="k", nowait=True),  # no exchange named q
        amqp_exc.NotFound,
        404,
    ),
    "queue_purge_missing": (
        _missing,
        lambda ch, q: ch.queue_purge(q, nowait=True),
        amqp_exc.NotFound,
        404,
    ),
    "queue_delete_if_empty": (
        _full_queue,
        lambda ch, q: ch.queue_delete(q, if_empty=True, nowait=True),
        amqp_exc.PreconditionFailed,
        406,
    ),
    "exchange_declare_passive": (
        _missing,
        lambda ch, x: ch.exchange_declare(x, "direct", passive=True, nowait=True),
        amqp_exc.NotFound,
        404,
    ),
    "exchange_declare_inequivalent": (
        _direct_exchange,
        lambda ch, x: ch.exchange_declare(x, "fanout", auto_delete=False, nowait=True),
        amqp_exc.PreconditionFailed,
        406,
    ),
    "basic_consume_missing_queue": (
        _missing,
        lambda ch, q: ch.basic_consume(q, consumer_tag="ctag-nowait", callback=len, nowait=True),
        amqp_exc.NotFound,
        404,
    ),
}


@pytest.mark.parametrize("prepare, call, error, code", FAILING.values(), ids=FAILING.keys())
def test_a_failing_nowait_method_returns_and_the_next_call_raises(env, prepare, call, error, code):
    ch = env.channel(env.connection())
    name = prepare(env, ch)
    call(ch, name)  # returns what py-amqp returns (None, a promise, the consumer tag)
    with pytest.raises(error) as raised:
        ch.queue_declare(env.name("probe"), auto_delete=True)
    assert raised.value.reply_code == code
    assert name in raised.value.reply_text
    # py-amqp reopened the channel: it works again.
    assert ch.is_open
    probe = env.queue(ch)
    env.publish(ch, b"after", "", probe)
    assert env.get(ch, probe).body == b"after"


def test_a_nowait_connection_error_closes_the_connection_at_the_next_call(env):
    conn = env.connection()
    ch = env.channel(conn)
    name = env.name("x")
    ch.exchange_declare(name, "no-such-type", nowait=True)
    with pytest.raises(amqp_exc.InvalidCommand) as raised:
        ch.queue_declare(env.name("probe"), auto_delete=True)
    assert raised.value.reply_code == 503
    assert "no-such-type" in raised.value.reply_text
    assert not ch.is_open
    with pytest.raises(amqp_exc.RecoverableConnectionError):
        ch.queue_declare(env.name("probe"), auto_delete=True)


def test_a_successful_nowait_method_returns_none_and_takes_effect(env):
    ch = env.channel()
    q = env.name("q")
    env.track(q)
    ch.queue_declare(q, auto_delete=False, nowait=True)
    assert ch.queue_declare(q, passive=True).queue == q
