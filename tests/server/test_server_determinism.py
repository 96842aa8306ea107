"""One client connection over the socket leaves the same trace as the in-process transport."""

from __future__ import annotations

import amqp

import simamqp
from simamqp.server import Server
from simamqp.transport import SimConnection


def _session(conn) -> list[bytes]:
    """The same calls, whatever the connection: declare, bind, publish, consume, ack, get."""
    ch = conn.channel()
    ch.exchange_declare("events", "topic", auto_delete=False)
    queue = ch.queue_declare(
        "", exclusive=True, auto_delete=False
    ).queue  # name drawn from the broker's seed
    ch.queue_bind(queue, "events", "order.*")
    for n in range(5):
        ch.basic_publish(amqp.Message(f"m{n}".encode(), priority=n), "events", f"order.{n}")
    received: list[amqp.Message] = []
    ch.basic_qos(0, 2, False)
    tag = ch.basic_consume(queue, callback=received.append)
    while len(received) < 2:
        conn.drain_events(timeout=5)
    ch.basic_ack(received[1].delivery_tag, multiple=True)
    while len(received) < 4:
        conn.drain_events(timeout=5)
    ch.basic_cancel(tag)
    ch.basic_reject(received[2].delivery_tag, requeue=True)
    ch.basic_recover(requeue=True)
    last = ch.basic_get(queue, no_ack=True)
    ch.close()
    return [m.body for m in received] + [last.body]


def test_one_connection_same_trace_digest_as_in_process():
    in_process = simamqp.Broker(seed=42, clock=simamqp.VirtualClock(autojump=False))
    with SimConnection(broker=in_process) as conn:
        expected = _session(conn)

    served = simamqp.Broker(seed=42, clock=simamqp.VirtualClock(autojump=False))
    with Server(served) as server:
        with amqp.Connection(server.url.split("@")[1].split("/")[0]) as conn:
            got = _session(conn)
        server.settle()

    assert got == expected
    assert served.trace.lines() and list(served.trace.lines()) == list(in_process.trace.lines())
    assert served.trace.digest() == in_process.trace.digest()
