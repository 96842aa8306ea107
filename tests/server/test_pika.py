"""pika (BlockingConnection and the asyncio adapter) on the simamqp server and on RabbitMQ.

Every test body runs against both brokers (``amqp_url``) and asserts what the client sees.
"""

from __future__ import annotations

import asyncio
import time
import uuid

import pika
import pika.exceptions
import pytest
from pika.adapters.asyncio_connection import AsyncioConnection


def _name(prefix: str) -> str:
    return f"srv.{prefix}.{uuid.uuid4().hex[:10]}"


@pytest.fixture
def conn(amqp_url):
    connection = pika.BlockingConnection(pika.URLParameters(amqp_url))
    yield connection
    if connection.is_open:
        connection.close()


def _queue(ch, **arguments):
    name = _name("q")
    ch.queue_declare(name, auto_delete=True, arguments=arguments or None)
    return name


def test_topic_routing(conn):
    ch = conn.channel()
    exchange = _name("x")
    ch.exchange_declare(exchange, "topic", auto_delete=True)
    q1, q2 = _queue(ch), _queue(ch)
    ch.queue_bind(q1, exchange, "a.*")
    ch.queue_bind(q2, exchange, "#.c")
    for key in ("a.b", "a.c", "b.c", "x"):
        ch.basic_publish(exchange, key, key.encode())
    got1 = [ch.basic_get(q1, auto_ack=True)[2] for _ in range(3)]
    got2 = [ch.basic_get(q2, auto_ack=True)[2] for _ in range(3)]
    assert got1 == [b"a.b", b"a.c", None]
    assert got2 == [b"a.c", b"b.c", None]
    ch.exchange_delete(exchange)


def test_ack_requeue_and_redelivered(conn):
    ch = conn.channel()
    q = _queue(ch)
    ch.basic_publish("", q, b"m1", pika.BasicProperties(headers={"k": 1}, content_type="text/x"))
    method, props, body = ch.basic_get(q)
    assert (body, method.redelivered, props.headers, props.content_type) == (
        b"m1",
        False,
        {"k": 1},
        "text/x",
    )
    ch.basic_nack(method.delivery_tag, requeue=True)
    method, _, body = ch.basic_get(q)
    assert (body, method.redelivered) == (b"m1", True)
    ch.basic_reject(method.delivery_tag, requeue=False)
    assert ch.basic_get(q) == (None, None, None)


def test_consume_with_qos_and_cancel_notification(conn):
    ch = conn.channel()
    q = _queue(ch)
    for i in range(5):
        ch.basic_publish("", q, str(i).encode())
    ch.basic_qos(prefetch_count=2)
    seen = []
    ch.basic_consume(q, lambda c, m, p, b: seen.append((m.delivery_tag, b)))
    conn.process_data_events(time_limit=0.3)
    assert [b for _, b in seen] == [b"0", b"1"]  # qos 2: the rest waits for acks
    ch.basic_ack(seen[-1][0], multiple=True)
    conn.process_data_events(time_limit=0.3)
    assert [b for _, b in seen] == [b"0", b"1", b"2", b"3"]

    cancelled = []
    ch2 = conn.channel()
    ch2.add_on_cancel_callback(lambda frame: cancelled.append(frame.method.consumer_tag))
    tag = ch2.basic_consume(q, lambda *a: None)
    conn.channel().queue_delete(q)
    deadline = time.monotonic() + 3  # RabbitMQ sends the cancel asynchronously
    while not cancelled and time.monotonic() < deadline:
        conn.process_data_events(time_limit=0.05)
    assert cancelled == [tag]


def test_confirms_and_mandatory_returns(conn):
    ch = conn.channel()
    ch.confirm_delivery()
    q = _queue(ch)
    ch.basic_publish("", q, b"ok", mandatory=True)  # confirmed: returns normally
    with pytest.raises(pika.exceptions.UnroutableError) as info:
        ch.basic_publish("", _name("nowhere"), b"lost", mandatory=True)
    returned = info.value.messages[0]
    assert (returned.method.reply_code, returned.method.reply_text, returned.body) == (
        312,
        "NO_ROUTE",
        b"lost",
    )


def test_dead_lettering_by_ttl(conn):
    ch = conn.channel()
    dead = _queue(ch)
    source = _queue(
        ch, **{"x-message-ttl": 50, "x-dead-letter-exchange": "", "x-dead-letter-routing-key": dead}
    )
    ch.basic_publish("", source, b"expiring")
    body = None
    for _ in range(100):
        conn.process_data_events(time_limit=0.02)
        _method, props, body = ch.basic_get(dead, auto_ack=True)
        if body is not None:
            break
    assert body == b"expiring"
    death = props.headers["x-death"][0]
    assert (death["reason"], death["queue"], death["count"]) == ("expired", source, 1)


def test_channel_error_closes_channel_not_connection(conn):
    ch = conn.channel()
    with pytest.raises(pika.exceptions.ChannelClosedByBroker) as info:
        ch.queue_declare(_name("missing"), passive=True)
    assert info.value.reply_code == 404
    assert info.value.reply_text.startswith("NOT_FOUND - no queue 'srv.missing.")
    assert conn.is_open
    ch = conn.channel()
    with pytest.raises(pika.exceptions.ChannelClosedByBroker) as info:
        ch.basic_ack(12345)
        ch.queue_declare(_name("after"))  # the async error surfaces at the next sync call
    assert (info.value.reply_code, info.value.reply_text) == (
        406,
        "PRECONDITION_FAILED - unknown delivery tag 12345",
    )


def test_connection_error(conn):
    ch = conn.channel()
    with pytest.raises(pika.exceptions.ConnectionClosedByBroker) as info:
        ch.exchange_declare(_name("x"), "no-such-type")
    assert info.value.reply_code == 503
    assert info.value.reply_text == "COMMAND_INVALID - unknown exchange type 'no-such-type'"


def test_direct_reply_to(conn):
    ch = conn.channel()
    server_q = _queue(ch)
    replies = []
    ch.basic_consume("amq.rabbitmq.reply-to", lambda c, m, p, b: replies.append(b), auto_ack=True)
    ch.basic_publish("", server_q, b"ping", pika.BasicProperties(reply_to="amq.rabbitmq.reply-to"))
    server = conn.channel()
    _method, props, body = server.basic_get(server_q, auto_ack=True)
    assert props.reply_to.startswith("amq.rabbitmq.reply-to.")
    server.basic_publish("", props.reply_to, b"pong:" + body)
    conn.process_data_events(time_limit=0.3)
    assert replies == [b"pong:ping"]


def test_asyncio_adapter_round_trip(amqp_url):
    """pika's asyncio adapter: publish with confirms, consume, ack, close."""
    loop = asyncio.new_event_loop()
    outcome: dict[str, object] = {}
    q = _name("aio")

    def on_open(connection):
        connection.channel(on_open_callback=on_channel)

    def on_channel(ch):
        outcome["channel"] = ch
        ch.confirm_delivery(
            lambda frame: outcome.setdefault("confirm", type(frame.method).__name__)
        )
        ch.queue_declare(q, auto_delete=True, callback=lambda _f: on_declared(ch))

    def on_declared(ch):
        ch.basic_consume(q, on_message)
        ch.basic_publish("", q, b"via asyncio")

    def on_message(ch, method, props, body):
        outcome["body"] = body
        ch.basic_ack(method.delivery_tag)
        ch.connection.close()

    connection = AsyncioConnection(
        pika.URLParameters(amqp_url),
        on_open_callback=on_open,
        on_close_callback=lambda *_: loop.stop(),
        custom_ioloop=loop,
    )
    loop.call_later(5, loop.stop)
    loop.run_forever()
    loop.close()
    assert connection.is_closed
    assert outcome["body"] == b"via asyncio"
    assert outcome["confirm"] == "Ack"


def test_large_message_split_over_small_frames(amqp_url):
    """frame_max 4096: a 300 kB body crosses as ~75 body frames each way and comes back whole."""
    connection = pika.BlockingConnection(pika.URLParameters(amqp_url + "?frame_max=4096"))
    try:
        ch = connection.channel()
        q = _queue(ch)
        body = bytes(range(256)) * 1200
        ch.basic_publish("", q, body, pika.BasicProperties(headers={"big": True}))
        _method, props, got = ch.basic_get(q, auto_ack=True)
        assert (got, props.headers) == (body, {"big": True})
    finally:
        connection.close()
