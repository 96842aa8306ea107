"""Resource alarms: ``connection.blocked`` / ``connection.unblocked`` as RabbitMQ 3.10 sends them.

RabbitMQ raises a memory (or disk) alarm when the node is low on the resource
(https://www.rabbitmq.com/connection-blocked.html, rabbit_reader's ``control_throttle``): a
connection that publishes while the alarm is on is blocked after that publish's content header:
its reader stops reading the socket, so that publish and everything after it wait, and a client
that announced the ``connection.blocked`` capability is sent ``connection.blocked`` with the
reason (``low on memory``, ``low on disk``). Connections that do not publish are not blocked
(consumers keep receiving). When the alarm clears, blocked connections are sent
``connection.unblocked`` and what they published is handled, in order.

A test raises the alarm with ``broker.set_memory_alarm(True)`` (a fault: RabbitMQ itself decides
when it is low on memory). The engine holds the publishes of a blocked connection (the
in-process transport has no socket to stop reading); the socket server also stops reading the
blocked client's socket, as RabbitMQ does.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from .frames import ConnectionBlocked, ConnectionUnblocked

if TYPE_CHECKING:
    from .broker import Broker
    from .channel import Channel

__all__ = ["REASONS", "hold_publish", "set_alarm"]

#: The reason RabbitMQ sends in connection.blocked for each resource.
REASONS = {"memory": "low on memory", "disk": "low on disk"}


def set_alarm(broker: Broker, resource: str, on: bool) -> None:
    """Raise or clear the alarm for ``resource``; clearing the last one unblocks."""
    if resource not in REASONS:
        raise ValueError(f"resource must be one of {sorted(REASONS)}, not {resource!r}")
    alarms = broker.alarms
    if on == (resource in alarms):
        return
    if on:
        alarms.append(resource)
    else:
        alarms.remove(resource)
    broker.emit("alarm", resource=resource, on=on)
    if alarms:
        return
    for connection in list(broker.connections.values()):
        held = connection.held_publishes
        if connection.blocked and connection.is_open:
            connection.blocked = False
            connection.push(ConnectionUnblocked())
        connection.held_publishes = []
        for channel, args in held:
            if channel.is_open and connection.is_open:
                channel.publish_now(*args)


def hold_publish(channel: Channel, args: tuple[Any, ...]) -> bool:
    """With an alarm on, block the publishing connection and hold the publish (True)."""
    broker = channel.broker
    if not broker.alarms:
        return False
    connection = channel.connection
    if not connection.blocked:
        connection.blocked = True
        connection.push(ConnectionBlocked(REASONS[broker.alarms[0]]))
    connection.held_publishes.append((channel, args))
    return True
