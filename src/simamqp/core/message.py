"""Messages as the broker holds them.

A ``Message`` is immutable once published and shared by every queue it was routed to; a queue
holds a ``QueuedMessage`` per copy (its own position, expiry and redelivered flag). Property
names are py-amqp's (``application_headers``, ``delivery_mode``...), i.e. the AMQP 0-9-1
``basic`` class properties (spec section 1.8).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

__all__ = ["PROPERTY_NAMES", "Message", "QueuedMessage"]

PROPERTY_NAMES = (
    "content_type",
    "content_encoding",
    "application_headers",
    "delivery_mode",
    "priority",
    "correlation_id",
    "reply_to",
    "expiration",
    "message_id",
    "timestamp",
    "type",
    "user_id",
    "app_id",
    "cluster_id",
)


class Message:
    """A published message: body, properties, and where it was published to."""

    __slots__ = ("body", "exchange", "id", "properties", "routing_key", "routing_keys")

    def __init__(
        self,
        id: int,
        body: bytes,
        properties: Mapping[str, Any],
        exchange: str,
        routing_key: str,
        routing_keys: tuple[str, ...] | None = None,
    ) -> None:
        self.id = id
        self.body = body
        self.properties: Mapping[str, Any] = properties
        self.exchange = exchange
        self.routing_key = routing_key
        #: Every key the message was routed with (the routing key plus CC/BCC headers).
        self.routing_keys = routing_keys if routing_keys is not None else (routing_key,)

    @property
    def headers(self) -> Mapping[str, Any] | None:
        headers: Mapping[str, Any] | None = self.properties.get("application_headers")
        return headers

    @property
    def persistent(self) -> bool:
        return self.properties.get("delivery_mode") == 2

    @property
    def size(self) -> int:
        return len(self.body)

    def __repr__(self) -> str:
        return f"<Message #{self.id} {self.exchange!r}/{self.routing_key!r} {len(self.body)}B>"


class QueuedMessage:
    """One copy of a message in one queue."""

    __slots__ = (
        "checkout",
        "delivery_count",
        "expires_at",
        "message",
        "priority",
        "redelivered",
        "seq",
    )

    def __init__(self, message: Message, seq: int, expires_at: float | None, priority: int) -> None:
        self.message = message
        #: Position in the queue; requeued messages go back to it (classic queue semantics).
        self.seq = seq
        self.expires_at = expires_at
        self.priority = priority
        self.redelivered = False
        #: Returns to the queue so far (quorum queues count them: ``x-delivery-count``).
        self.delivery_count = 0
        #: Checkout order while unacknowledged (quorum queues return in this order).
        self.checkout = 0

    def __repr__(self) -> str:
        return f"<QueuedMessage seq={self.seq} {self.message!r}>"
