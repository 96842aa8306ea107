"""What the broker sends to a client without being asked: the connection's outbox.

Synchronous replies (declare-ok, get-ok...) are return values of the channel methods; everything
asynchronous (deliveries, returns, publisher confirms, server-sent cancels, channel and
connection closes) is appended to ``Connection.outbox`` as one of these, in the order a real
broker would write them to the socket.
"""

from __future__ import annotations

from dataclasses import dataclass

from .errors import AMQPError
from .message import Message

__all__ = [
    "BasicAck",
    "BasicCancel",
    "BasicDeliver",
    "BasicNack",
    "BasicReturn",
    "ChannelClose",
    "ConnectionClose",
    "Frame",
    "GetOk",
]


@dataclass(slots=True)
class BasicDeliver:
    channel_id: int
    consumer_tag: str
    delivery_tag: int
    redelivered: bool
    exchange: str
    routing_key: str
    message: Message


@dataclass(slots=True)
class BasicReturn:
    channel_id: int
    reply_code: int
    reply_text: str
    exchange: str
    routing_key: str
    message: Message


@dataclass(slots=True)
class BasicAck:
    """Publisher confirm: the broker took responsibility for the message."""

    channel_id: int
    delivery_tag: int
    multiple: bool = False


@dataclass(slots=True)
class BasicNack:
    """Publisher confirm: the broker refused the message (e.g. reject-publish overflow)."""

    channel_id: int
    delivery_tag: int
    multiple: bool = False


@dataclass(slots=True)
class BasicCancel:
    """Server-sent consumer cancellation (the queue went away)."""

    channel_id: int
    consumer_tag: str


@dataclass(slots=True)
class ChannelClose:
    channel_id: int
    error: AMQPError


@dataclass(slots=True)
class ConnectionClose:
    error: AMQPError


@dataclass(slots=True)
class ConnectionBlocked:
    """A resource alarm blocked this publishing connection (core/alarm.py)."""

    reason: str
    channel_id: int = 0


@dataclass(slots=True)
class ConnectionUnblocked:
    """The resource alarms cleared: the connection is served again."""

    channel_id: int = 0


Frame = (
    BasicDeliver
    | BasicReturn
    | BasicAck
    | BasicNack
    | BasicCancel
    | ChannelClose
    | ConnectionClose
    | ConnectionBlocked
    | ConnectionUnblocked
)


@dataclass(slots=True)
class GetOk:
    """Reply to basic.get when a message was available."""

    delivery_tag: int
    redelivered: bool
    exchange: str
    routing_key: str
    message_count: int
    message: Message
