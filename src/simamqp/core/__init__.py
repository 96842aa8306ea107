"""The sans-IO broker engine: no kombu, threads, sockets, sleeps or wall-clock reads."""

from .broker import Broker, ExchangeInfo, QueueInfo, VHost
from .channel import Channel, ChannelClosedError, Consumer
from .clock import Clock, VirtualClock
from .connection import Connection
from .errors import AMQPChannelError, AMQPConnectionError, AMQPError
from .frames import (
    BasicAck,
    BasicCancel,
    BasicDeliver,
    BasicNack,
    BasicReturn,
    ChannelClose,
    ConnectionClose,
    Frame,
    GetOk,
)
from .message import Message
from .trace import Event, Trace, TraceNotRetained

__all__ = [
    "AMQPChannelError",
    "AMQPConnectionError",
    "AMQPError",
    "BasicAck",
    "BasicCancel",
    "BasicDeliver",
    "BasicNack",
    "BasicReturn",
    "Broker",
    "Channel",
    "ChannelClose",
    "ChannelClosedError",
    "Clock",
    "Connection",
    "ConnectionClose",
    "Consumer",
    "Event",
    "ExchangeInfo",
    "Frame",
    "GetOk",
    "Message",
    "QueueInfo",
    "Trace",
    "TraceNotRetained",
    "VHost",
    "VirtualClock",
]
