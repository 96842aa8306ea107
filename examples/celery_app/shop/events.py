"""Domain events, published with plain kombu to a fanout exchange."""

from __future__ import annotations

from typing import Any

from kombu import Connection, Exchange, Producer

EVENTS_EXCHANGE = Exchange("shop.events", type="fanout", durable=True)


def publish_order_placed(connection: Connection, order: dict[str, Any]) -> None:
    with connection.channel() as channel:
        producer = Producer(channel, exchange=EVENTS_EXCHANGE)
        producer.publish(
            {"event": "order-placed", **order},
            declare=[EVENTS_EXCHANGE],
            delivery_mode=2,
            headers={"type": "order-placed"},
        )
