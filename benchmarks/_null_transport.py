"""A do-nothing kombu transport: the floor under any AMQP transport kombu can drive.

Declarations go to a private simamqp broker (they are not per-message); ``basic_publish``
appends the ``amqp.Message`` kombu built to a list, ``drain_events`` hands that same object
to the consumer callback, ``basic_ack`` does nothing. What remains is kombu's own work per
message: ``Producer.publish`` (serialise, ``prepare_message``), ``Consumer`` dispatch
(``message_to_python``, decode, callbacks) and ``Message.ack`` bookkeeping.
"""

from __future__ import annotations

from collections import deque
from typing import Any

import amqp

from simamqp import transport as sim_transport
from simamqp._broker import Broker


class NullChannel(sim_transport.SimChannel):
    def basic_publish(
        self,
        msg: amqp.Message,
        exchange: str = "",
        routing_key: str = "",
        *args: Any,
        **kwargs: Any,
    ) -> None:
        conn = self.connection
        assert isinstance(conn, NullConnection)
        conn.inbox.append((self, msg, exchange, routing_key))

    def basic_ack(self, delivery_tag: int, multiple: bool = False, argsig: str = "Lb") -> None:
        pass


class NullConnection(sim_transport.SimConnection):
    Channel = NullChannel

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        kwargs["broker"] = Broker(trace=False)
        super().__init__(*args, **kwargs)
        self.inbox: deque[tuple[NullChannel, amqp.Message, str, str]] = deque()
        self._tag = 0

    def channel(self, channel_id: int | None = None, callback: Any = None) -> NullChannel:
        if channel_id is not None and channel_id in self.channels:
            channel = self.channels[channel_id]
            assert isinstance(channel, NullChannel)
            return channel
        return NullChannel(self, channel_id)

    def drain_events(self, timeout: float | None = None) -> None:
        if not self.inbox:
            raise TimeoutError("timed out")
        channel, msg, exchange, routing_key = self.inbox.popleft()
        self._tag += 1
        tag, callback = next(iter(channel.callbacks.items()))
        msg.channel = channel
        msg.delivery_info = {
            "consumer_tag": tag,
            "delivery_tag": self._tag,
            "redelivered": False,
            "exchange": exchange,
            "routing_key": routing_key,
        }
        callback(msg)


class NullTransport(sim_transport.Transport):
    Connection = NullConnection
    driver_name = "null"

    def establish_connection(self) -> NullConnection:
        conn = NullConnection()
        conn.client = self.client
        conn.connect()
        return conn
