"""Helpers for engine-level tests: a broker, a connection and a channel, and frame drains.

These tests talk to ``simamqp.core`` directly (no kombu). Expectations are the facts measured
on RabbitMQ 3.10.8 in docs/rabbitmq-facts.md; each test's docstring names the page or spec
section it pins.
"""

from __future__ import annotations

from typing import Any

from simamqp.core import (
    BasicDeliver,
    Channel,
    Connection,
    Frame,
)


def drain(conn: Connection) -> list[Frame]:
    """Every frame the broker has sent to this connection so far (and forget them)."""
    conn.broker.run_until_idle()
    frames = list(conn.outbox)
    conn.outbox.clear()
    return frames


def deliveries(conn: Connection) -> list[BasicDeliver]:
    return [f for f in drain(conn) if isinstance(f, BasicDeliver)]


def bodies(conn: Connection) -> list[bytes]:
    return [d.message.body for d in deliveries(conn)]


def get_bodies(ch: Channel, queue: str, *, no_ack: bool = True) -> list[bytes]:
    """basic.get until the queue is empty."""
    out = []
    while (ok := ch.basic_get(queue, no_ack=no_ack)) is not None:
        out.append(ok.message.body)
    return out


def publish(
    ch: Channel, body: bytes | str, exchange: str = "", routing_key: str = "", **props: Any
) -> None:
    data = body.encode() if isinstance(body, str) else body
    ch.basic_publish(data, exchange, routing_key, properties=props or None)
