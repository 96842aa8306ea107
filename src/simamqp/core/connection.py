"""Client connections: a vhost, numbered channels, and an outbox of server-sent frames."""

from __future__ import annotations

from collections import deque
from collections.abc import Callable, Mapping
from typing import TYPE_CHECKING, Any

from . import replies
from .channel import Channel, ChannelClosedError
from .errors import AMQPError, ChannelNotOpen
from .frames import ChannelClose, ConnectionClose, Frame
from .methods import CHANNEL_OPEN

if TYPE_CHECKING:
    from .broker import Broker, VHost

__all__ = ["CHANNEL_MAX", "Connection"]

#: RabbitMQ 3.10's default channel_max (what connection.tune offers).
CHANNEL_MAX = 2047
#: The largest explicit channel id: RabbitMQ 3.10 opens any id a short carries, even above the
#: channel_max it offered (measured with 65535).
MAX_CHANNEL_ID = 65535


class Connection:
    def __init__(
        self,
        broker: Broker,
        connection_id: int,
        vhost: VHost,
        user: str,
        client_properties: Mapping[str, Any] | None = None,
    ) -> None:
        self.broker = broker
        self.id = connection_id
        self.name = f"conn-{connection_id}"
        self.vhost = vhost
        self.user = user
        self.client_properties = dict(client_properties or {})
        self.channels: dict[int, Channel] = {}
        self.outbox: deque[Frame] = deque()
        self.is_open = True
        self.close_reason: AMQPError | None = None
        #: Called after a frame is appended to the outbox (the transport wakes its waiters).
        self.listener: Callable[[], None] | None = None
        #: Blocked by a resource alarm, and the publishes held meanwhile (core/alarm.py).
        self.blocked = False
        self.held_publishes: list[tuple[Channel, tuple[Any, ...]]] = []

    def __repr__(self) -> str:
        state = "open" if self.is_open else "closed"
        return f"<Connection {self.name} vhost={self.vhost.name!r} {state}>"

    def channel(self, channel_id: int | None = None) -> Channel:
        """Open a channel (the lowest free id unless one is given)."""
        if not self.is_open:
            raise ChannelClosedError("connection is closed", self.close_reason)
        self.broker.tick()
        if channel_id is None:
            channel_id = 1
            while channel_id in self.channels:
                channel_id += 1
            if channel_id > CHANNEL_MAX:
                raise ValueError(f"no free channel id up to channel_max {CHANNEL_MAX}")
        elif channel_id in self.channels:
            err = ChannelNotOpen(replies.second_channel_open(), CHANNEL_OPEN)
            self.teardown(err, notify=False)
            raise err
        if not 0 < channel_id <= MAX_CHANNEL_ID:
            raise ValueError(f"channel id must be between 1 and {MAX_CHANNEL_ID}, got {channel_id}")
        channel = Channel(self, channel_id)
        self.channels[channel_id] = channel
        self.broker.emit("channel-open", connection=self.id, channel=channel_id)
        return channel

    def close(self) -> None:
        """Client-initiated connection.close."""
        if not self.is_open:
            return
        self.broker.tick()
        self.broker.emit("connection-close", connection=self.id)
        self.teardown(None, notify=False)

    def fail(self, error: AMQPError) -> None:
        """Close the connection for a frame error found before any method ran (e.g. 501)."""
        if not self.is_open:
            return
        self.broker.emit(
            "error",
            connection=self.id,
            code=error.reply_code,
            text=error.reply_text,
            method=list(error.method),
            scope="connection",
        )
        self.teardown(error, notify=False)

    def drop(self) -> None:
        """The client's TCP connection died: no close handshake, nobody left to read frames.

        RabbitMQ closes such a connection as if the client had closed it: its channels close
        (consumers cancelled, unacked messages requeued), its exclusive queues are deleted.
        """
        if not self.is_open:
            return
        self.broker.tick()
        self.broker.emit("connection-lost", connection=self.id)
        self.teardown(None, notify=False)
        self.outbox.clear()

    def push(self, frame: Frame) -> None:
        """Queue a server-sent frame for the client (deliveries, returns, confirms, closes)."""
        self.outbox.append(frame)
        listener = self.listener
        if listener is not None:
            listener()

    def channel_closed(self, channel: Channel, reason: AMQPError | None, *, notify: bool) -> None:
        """Called by a channel that closed: forget it; send its channel.close if ``notify``."""
        if self.channels.get(channel.id) is channel:
            del self.channels[channel.id]
        if notify and reason is not None and self.is_open:
            self.push(ChannelClose(channel.id, reason))

    def teardown(self, reason: AMQPError | None, *, notify: bool) -> None:
        """Close the connection: every channel, then the exclusive queues it owns."""
        if not self.is_open:
            return
        if reason is not None:
            self.broker.emit(
                "connection-closed",
                connection=self.id,
                code=reason.reply_code,
                text=reason.reply_text,
            )
        for channel in list(self.channels.values()):
            channel.teardown(None, notify=False)
        self.is_open = False
        self.close_reason = reason
        self.broker.connection_closed(self)
        if notify and reason is not None:
            self.push(ConnectionClose(reason))

    #: The old private name, still used by the socket server.
    _teardown = teardown
