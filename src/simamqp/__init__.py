"""simamqp: a deterministic, in-memory AMQP 0-9-1 broker with RabbitMQ semantics.

Importing this package registers the kombu transport alias ``simamqp``:
``kombu.Connection("simamqp://")`` talks to the process-default broker,
``simamqp://NAME`` to a named in-process broker, and the URL path is the vhost.
"""

from __future__ import annotations

__version__ = "0.1.0"

from kombu.transport import TRANSPORT_ALIASES as _ALIASES

from ._broker import Broker, get_broker, register, registered, unregister
from ._waiting import DeadlockError
from .core.broker import ExchangeInfo, QueueInfo
from .core.channel import ChannelClosedError
from .core.clock import Clock, VirtualClock
from .core.errors import (
    AccessRefused,
    AMQPChannelError,
    AMQPConnectionError,
    AMQPError,
    AMQPNotImplemented,
    CommandInvalid,
    ConnectionForced,
    NotAllowed,
    NotFound,
    PreconditionFailed,
    ResourceLocked,
)
from .core.faults import FaultPlan, FaultRule, InvalidFault
from .core.trace import Event, Trace, TraceNotRetained
from .wallclock import WallClock

_ALIASES.setdefault("simamqp", "simamqp.transport:Transport")

__all__ = [
    "AMQPChannelError",
    "AMQPConnectionError",
    "AMQPError",
    "AMQPNotImplemented",
    "AccessRefused",
    "Broker",
    "ChannelClosedError",
    "Clock",
    "CommandInvalid",
    "ConnectionForced",
    "DeadlockError",
    "Event",
    "ExchangeInfo",
    "FaultPlan",
    "FaultRule",
    "InvalidFault",
    "NotAllowed",
    "NotFound",
    "PreconditionFailed",
    "QueueInfo",
    "ResourceLocked",
    "Trace",
    "TraceNotRetained",
    "VirtualClock",
    "WallClock",
    "__version__",
    "get_broker",
    "register",
    "registered",
    "unregister",
]
