"""aio-pika on the simamqp server and on RabbitMQ: the same body, the same observations."""

from __future__ import annotations

import asyncio
import uuid

import aio_pika
import pytest


def _run(coro):
    return asyncio.run(asyncio.wait_for(coro, 10))


def test_publish_consume_ack_and_requeue(amqp_url):
    async def body():
        async with await aio_pika.connect(amqp_url) as conn:
            ch = await conn.channel(publisher_confirms=True)
            await ch.set_qos(prefetch_count=1)
            q = await ch.declare_queue(f"srv.aio.{uuid.uuid4().hex[:8]}", auto_delete=True)
            for i in range(3):
                await ch.default_exchange.publish(
                    aio_pika.Message(f"m{i}".encode(), headers={"n": i}), q.name
                )
            first = await q.get()
            await first.reject(requeue=True)
            seen = []
            async with q.iterator() as it:
                async for msg in it:
                    seen.append((msg.body, msg.redelivered, msg.headers["n"]))
                    await msg.ack()
                    if len(seen) == 3:
                        break
            return seen

    assert _run(body()) == [(b"m0", True, 0), (b"m1", False, 1), (b"m2", False, 2)]


def test_mandatory_return_and_channel_error(amqp_url):
    async def body():
        async with await aio_pika.connect(amqp_url) as conn:
            ch = await conn.channel(publisher_confirms=True, on_return_raises=True)
            with pytest.raises(aio_pika.exceptions.DeliveryError) as info:
                await ch.default_exchange.publish(
                    aio_pika.Message(b"x"), f"srv.none.{uuid.uuid4().hex}", mandatory=True
                )
            returned = info.value.message
            bad = await conn.channel()
            with pytest.raises(aio_pika.exceptions.ChannelClosed) as closed:
                await bad.declare_queue("amq.reserved", auto_delete=True)
            return returned.body, closed.value.args

    body, error = _run(body())
    assert body == b"x"
    assert error == ("ACCESS_REFUSED - queue name 'amq.reserved' contains reserved prefix 'amq.*'",)
