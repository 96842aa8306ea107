"""Stream queues through the socket server: pika and aio-pika replaying an event log with
``x-stream-offset``, the same body on simamqp (``simamqp serve``) and on RabbitMQ."""

from __future__ import annotations

import asyncio
import uuid

import aio_pika
import pika
import pika.exceptions
import pytest

STREAM = {"x-queue-type": "stream"}


def _name() -> str:
    return f"srv.stream.{uuid.uuid4().hex[:10]}"


@pytest.fixture
def conn(amqp_url):
    connection = pika.BlockingConnection(pika.URLParameters(amqp_url))
    yield connection
    if connection.is_open:
        connection.close()


def _consume(conn, q: str, offset, expect: int) -> list[tuple[bytes, int]]:
    ch = conn.channel()
    ch.basic_qos(prefetch_count=10)
    got: list[tuple[bytes, int]] = []

    def on_message(channel, method, properties, body):
        got.append((body, properties.headers["x-stream-offset"]))
        channel.basic_ack(method.delivery_tag)

    ch.basic_consume(q, on_message, arguments={"x-stream-offset": offset})
    deadline = 50
    while len(got) < expect and deadline:
        conn.process_data_events(time_limit=0.1)
        deadline -= 1
    conn.process_data_events(time_limit=0.1)
    ch.close()
    return got


def test_pika_replays_a_stream_from_any_offset(conn):
    ch = conn.channel()
    ch.confirm_delivery()
    q = _name()
    ch.queue_declare(q, durable=True, arguments=STREAM)
    try:
        for n in range(3):
            ch.basic_publish("", q, f"e{n}".encode())  # confirmed one by one
        assert _consume(conn, q, "first", 3) == [(b"e0", 0), (b"e1", 1), (b"e2", 2)]
        assert _consume(conn, q, 1, 2) == [(b"e1", 1), (b"e2", 2)]
        assert _consume(conn, q, "last", 1) == [(b"e2", 2)]
        # reading took nothing away
        assert _consume(conn, q, "first", 3) == [(b"e0", 0), (b"e1", 1), (b"e2", 2)]
    finally:
        conn.channel().queue_delete(q)


def test_pika_basic_get_on_a_stream_closes_the_connection(conn, amqp_url):
    ch = conn.channel()
    q = _name()
    ch.queue_declare(q, durable=True, arguments=STREAM)
    try:
        with pytest.raises(pika.exceptions.ConnectionClosedByBroker) as exc:
            ch.basic_get(q)
        assert exc.value.reply_code == 540
        assert exc.value.reply_text == (
            f"NOT_IMPLEMENTED - basic.get not supported by stream queues queue '{q}' in vhost '/'"
        )
    finally:
        cleanup = pika.BlockingConnection(pika.URLParameters(amqp_url))
        cleanup.channel().queue_delete(q)
        cleanup.close()


def test_aio_pika_consumes_a_stream_with_an_offset(amqp_url):
    async def body():
        async with await aio_pika.connect(amqp_url) as conn:
            ch = await conn.channel(publisher_confirms=True)
            await ch.set_qos(prefetch_count=2)
            q = await ch.declare_queue(_name(), durable=True, arguments=STREAM)
            try:
                for n in range(4):
                    await ch.default_exchange.publish(aio_pika.Message(f"e{n}".encode()), q.name)
                seen = []
                async with q.iterator(arguments={"x-stream-offset": 2}) as it:
                    async for msg in it:
                        seen.append((msg.body, msg.headers["x-stream-offset"], msg.redelivered))
                        await msg.ack()
                        if len(seen) == 2:
                            break
                return seen
            finally:
                await q.delete()

    seen = asyncio.run(asyncio.wait_for(body(), 10))
    assert seen == [(b"e2", 2, False), (b"e3", 3, False)]
