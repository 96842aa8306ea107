"""The broker: vhosts, routing, dead-lettering, lifecycles, restart, time and trace.

``Broker`` is sans-IO: it never blocks, sleeps, reads the wall clock or starts threads. Clients
call channel methods; timers (TTL, x-expires, delayed faults) fire when the injected clock says
they are due, on the next call or on ``run_until_idle()``/``advance()``. Every choice that is
not dictated by the calls (generated names, fault probabilities) comes from one
``random.Random(seed)``, so the same seed and the same calls give the same trace.
"""

from __future__ import annotations

import base64
import datetime as _dt
import random
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from . import replies
from .arguments import MAX_EXPIRY_MS, Long, amqp_type, has_non_finite
from .channel import _DELIVER, _REPLY_PREFIX, DIRECT_REPLY_TO, Channel, internal_error
from .clock import Clock, VirtualClock
from .connection import Connection
from .errors import AccessRefused, NotAllowed, NotFound, PreconditionFailed
from .exchanges import (
    Binding,
    Destination,
    DirectExchange,
    Exchange,
    FanoutExchange,
    HeadersExchange,
    TopicExchange,
)
from .faults import FaultPlan
from .frames import BasicAck, BasicDeliver, BasicNack, BasicReturn
from .message import Message
from .queue_type import Queue
from .scheduler import Scheduler
from .trace import Shape, Trace, TraceMode

__all__ = ["Broker", "ExchangeInfo", "QueueInfo", "VHost"]

_EPOCH = _dt.datetime(1970, 1, 1)
_CONTAINER_OR_FLOAT = (float, dict, list, tuple)
_INF = float("inf")
_INTEGER_PREFIX = re.compile(r"[+-]?[0-9]+")
#: Trace shapes of the per-message events emitted here (``Trace.record``: no dict per event).
_PUBLISH = Shape(
    "publish",
    connection=1,
    channel=1,
    exchange="",
    routing_key="",
    msg=1,
    body=b"",
    mandatory=False,
)
_ROUTE = Shape("route", msg=1, queues=("",))
_CONFIRM = Shape("confirm", channel=1, seq=1, ack=True)


class VHost:
    """A virtual host: its exchanges (with the predeclared ones), queues and bindings."""

    def __init__(self, name: str) -> None:
        self.name = name
        self.exchanges: dict[str, Exchange] = {}
        self.queues: dict[str, Queue] = {}
        #: Reverse index: destination (kind, name) -> bindings pointing at it.
        self.bindings_to: dict[tuple[str, str], dict[tuple[str, tuple[Any, ...]], Binding]] = {}
        self._predeclare()

    def _predeclare(self) -> None:
        # The default exchange and the amq.* exchanges every RabbitMQ vhost has
        # (AMQP 0-9-1 spec 3.1.3.1 and RabbitMQ's rabbit_vhost:declare_default_exchanges).
        builtins: list[tuple[str, type[Exchange], bool]] = [
            ("", DirectExchange, False),
            ("amq.direct", DirectExchange, False),
            ("amq.fanout", FanoutExchange, False),
            ("amq.topic", TopicExchange, False),
            ("amq.headers", HeadersExchange, False),
            ("amq.match", HeadersExchange, False),
            ("amq.rabbitmq.trace", TopicExchange, True),
        ]
        for name, cls, internal in builtins:
            self.exchanges[name] = cls(
                name, self.name, durable=True, auto_delete=False, internal=internal, builtin=True
            )

    def __repr__(self) -> str:
        return f"<VHost {self.name!r} queues={len(self.queues)} exchanges={len(self.exchanges)}>"


@dataclass(frozen=True)
class QueueInfo:
    """A snapshot of a queue, for assertions in tests."""

    name: str
    vhost: str
    durable: bool
    exclusive: bool
    auto_delete: bool
    arguments: Mapping[str, Any]
    messages_ready: int
    messages_unacknowledged: int
    consumers: int
    bodies: tuple[bytes, ...] = field(repr=False)
    #: The queue type ("classic", "quorum"...): its ``x-queue-type``.
    type: str = "classic"
    #: Per ready message, in delivery order: how often it was returned to the queue (what a
    #: quorum queue's ``x-delivery-count`` says; always 0 for a classic queue).
    delivery_counts: tuple[int, ...] = field(default=(), repr=False)
    #: What only this queue's type has (a stream: ``first_offset``, ``next_offset``,
    #: ``chunks``, ``segments``, ``consumer_offsets``); empty for the other types.
    details: Mapping[str, Any] = field(default_factory=dict, repr=False)

    @property
    def messages(self) -> int:
        return self.messages_ready + self.messages_unacknowledged


@dataclass(frozen=True)
class ExchangeInfo:
    name: str
    vhost: str
    type: str
    durable: bool
    auto_delete: bool
    internal: bool
    arguments: Mapping[str, Any]
    bindings: tuple[tuple[str, str, str], ...]


class Broker:
    """One in-memory RabbitMQ: vhosts, entities, messages, connections, clock and trace."""

    def __init__(
        self,
        seed: int = 0,
        clock: Clock | None = None,
        *,
        trace: bool | TraceMode = True,
        user: str = "guest",
    ) -> None:
        if not isinstance(seed, int) or isinstance(seed, bool):
            raise TypeError(f"seed must be an int, got {seed!r}")
        self.seed = seed
        self.random = random.Random(seed)
        self.clock: Clock = clock if clock is not None else VirtualClock()
        self.scheduler = Scheduler()
        #: ``trace``: "window" (the default, also ``True``), "full" or "off" (also ``False``).
        if isinstance(trace, bool):
            self.trace = Trace(enabled=trace)
        else:
            self.trace = Trace(mode=trace)
        #: Whether events are recorded (hot paths check it before building an event).
        self.tracing = self.trace.enabled
        self.user = user
        self.vhosts: dict[str, VHost] = {"/": VHost("/")}
        self.connections: dict[int, Connection] = {}
        #: Resource alarms in effect ("memory", "disk"), oldest first (core/alarm.py).
        self.alarms: list[str] = []
        self.faults = FaultPlan(self)
        self._next_connection_id = 1
        self._next_message_id = 1
        #: Creation order of queues (stands in for Erlang pid order when RabbitMQ sorts by queue).
        self._queue_serial = 0
        self._reply_channels: dict[str, Channel] = {}
        self._restarting = False

    def __repr__(self) -> str:
        conns = len(self.connections)
        return f"<Broker seed={self.seed} connections={conns} vhosts={list(self.vhosts)}>"

    # -- time and trace ---------------------------------------------------------------------

    def _emit(self, kind: str, **attrs: Any) -> None:
        if self.tracing:
            self.trace.emit(self.clock.now(), kind, attrs)

    def begin_operation(self) -> bool:
        """One timestamp per operation, on a clock that moves by itself: every event the
        operation under way causes carries the time it started (``Trace.begin_operation``).
        True when this call began it: the caller then calls ``trace.end_operation()``.
        Channel methods call it (when tracing, on such a clock) before doing anything else."""
        return self.trace.begin_operation(self.clock.now())

    #: Record a trace event ``kind`` with ``attrs`` now (nothing while tracing is off): what
    #: queues, channels, connections and faults call to report what happened.
    emit = _emit

    def set_tracing(self, enabled: bool) -> None:
        self.tracing = self.trace.enabled = enabled

    def set_trace_mode(self, mode: TraceMode) -> None:
        """Trace retention: "window" (the default), "full" or "off" (see ``Trace``)."""
        self.trace.set_mode(mode)
        self.tracing = self.trace.enabled

    def tick(self) -> int:
        """Fire every timer that is due; the number fired (every client call starts here)."""
        scheduler = self.scheduler
        if not scheduler.pending:
            return 0
        fired = 0
        now = self.clock.now()
        while (timer := scheduler.pop_due(now)) is not None:
            timer.callback(*timer.args)
            fired += 1
            now = self.clock.now()
        return fired

    #: The old private name, still used by the adapters (transport, server).
    _tick = tick

    def run_until_idle(self) -> int:
        """Deliver everything due and fire due timers; the number of timers fired."""
        return self.tick()

    def next_timer(self) -> float | None:
        """When the next timer is due (TTL, x-expires, a delayed fault), or None."""
        return self.scheduler.next_time()

    def advance(self, seconds: float) -> int:
        """Move a virtual clock forward, firing each timer at its own due time."""
        clock = self.clock
        if not isinstance(clock, VirtualClock):
            raise TypeError("advance() needs a VirtualClock; a wall clock moves by itself")
        if isinstance(seconds, bool) or not isinstance(seconds, int | float):
            raise TypeError(f"advance() takes a number of seconds, got {seconds!r}")
        if seconds < 0:
            raise ValueError(f"time never goes backwards: advance({seconds!r})")
        if not seconds < _INF:
            # NaN (or infinity) would poison the clock for good.
            raise ValueError(f"advance() needs a finite number of seconds, got {seconds!r}")
        target = clock.now() + seconds
        if target > VirtualClock.MAX_TIME:
            clock.jump_to(target)  # raises, naming the limit, before any timer fires
        fired = self.tick()
        while (when := self.scheduler.next_time()) is not None and when <= target:
            clock.jump_to(max(when, clock.now()))
            fired += self.tick()
        clock.jump_to(max(target, clock.now()))
        return fired + self.tick()

    def _timestamp(self) -> _dt.datetime:
        """Now as an AMQP timestamp (whole seconds, naive UTC as py-amqp decodes it)."""
        return _EPOCH + _dt.timedelta(seconds=int(self.clock.now()))

    def next_queue_serial(self) -> int:
        """A number for a new queue, increasing in creation order."""
        self._queue_serial += 1
        return self._queue_serial

    def new_message_id(self) -> int:
        """The id of a message the broker creates (a publish, a dead letter, a fault's copy)."""
        message_id = self._next_message_id
        self._next_message_id = message_id + 1
        return message_id

    def generate_name(self, prefix: str) -> str:
        """``amq.gen-``/``amq.ctag-`` + 22 base64url characters, like rabbit_guid:binary."""
        raw = self.random.getrandbits(128).to_bytes(16, "big")
        return f"{prefix}-{base64.urlsafe_b64encode(raw).decode().rstrip('=')}"

    # -- vhosts and connections -------------------------------------------------------------

    def add_vhost(self, name: str) -> VHost:
        vhost = self.vhosts.get(name)
        if vhost is None:
            vhost = self.vhosts[name] = VHost(name)
            self._emit("vhost-add", vhost=name)
        return vhost

    def delete_vhost(self, name: str) -> None:
        if name not in self.vhosts:
            raise KeyError(name)
        for conn in [c for c in self.connections.values() if c.vhost.name == name]:
            from .errors import ConnectionForced

            conn.teardown(ConnectionForced("vhost '" + name + "' is deleted"), notify=True)
        vhost = self.vhosts.pop(name)
        for queue in list(vhost.queues.values()):
            queue.deleted = True
            queue.cancel_timers()
        self._emit("vhost-delete", vhost=name)

    def connect(
        self,
        vhost: str = "/",
        *,
        user: str | None = None,
        client_properties: Mapping[str, Any] | None = None,
    ) -> Connection:
        """Open a connection to a vhost (530 NOT_ALLOWED for an unknown vhost, as RabbitMQ)."""
        self.tick()
        user = user if user is not None else self.user
        target = self.vhosts.get(vhost)
        if target is None:
            raise NotAllowed(replies.vhost_not_found(vhost), (10, 40))
        conn = Connection(self, self._next_connection_id, target, user, client_properties)
        self._next_connection_id += 1
        self.connections[conn.id] = conn
        self._emit("connection-open", connection=conn.id, vhost=vhost)
        if self.faults.rules:
            self.faults.on_connect(conn)
        return conn

    def connection_closed(self, conn: Connection) -> None:
        self.connections.pop(conn.id, None)
        for queue in [q for q in conn.vhost.queues.values() if q.exclusive_owner is conn]:
            self.delete_queue(queue, reason="owner-closed")

    def close_connections(self, reason: str = "closed via management plugin") -> None:
        """Force-close every connection with 320 CONNECTION_FORCED.

        This is what `rabbitmqctl close_all_connections` does to clients.
        """
        from .errors import ConnectionForced

        for conn in list(self.connections.values()):
            conn.teardown(ConnectionForced(reason), notify=True)

    # -- declarations -----------------------------------------------------------------------

    def declare_exchange(self, vhost: VHost, exchange: Exchange) -> None:
        vhost.exchanges[exchange.name] = exchange
        self._emit(
            "exchange-declare",
            vhost=vhost.name,
            exchange=exchange.name,
            type=exchange.type_name,
            durable=exchange.durable,
            auto_delete=exchange.auto_delete,
        )

    def declare_queue(self, vhost: VHost, queue: Queue) -> None:
        """Add a new queue to ``vhost`` (its event names the type unless it is classic, so
        classic-only traces keep their digests)."""
        vhost.queues[queue.name] = queue
        extra = {} if queue.type_name == "classic" else {"type": queue.type_name}
        self._emit(
            "queue-declare",
            vhost=vhost.name,
            queue=queue.name,
            durable=queue.durable,
            exclusive=queue.exclusive,
            auto_delete=queue.auto_delete,
            **extra,
        )

    def bind(
        self,
        vhost: VHost,
        source: Exchange,
        destination: Destination,
        routing_key: str,
        arguments: Mapping[str, Any],
    ) -> None:
        source.validate_binding(arguments)
        binding = Binding(source, destination, routing_key, arguments)
        if source.add_binding(binding):
            slot = vhost.bindings_to.setdefault((destination.kind, destination.name), {})
            slot[(source.name, binding.key)] = binding
            self._emit(
                "bind",
                vhost=vhost.name,
                source=source.name,
                destination=destination.name,
                destination_kind=destination.kind,
                routing_key=routing_key,
            )

    def unbind(
        self,
        vhost: VHost,
        source: Exchange,
        destination: Destination,
        routing_key: str,
        arguments: Mapping[str, Any],
    ) -> None:
        key = Binding(source, destination, routing_key, arguments).key
        if source.remove_binding(key) is None:
            return
        self._forget_binding(vhost, source.name, destination, key)
        self._emit(
            "unbind",
            vhost=vhost.name,
            source=source.name,
            destination=destination.name,
            destination_kind=destination.kind,
            routing_key=routing_key,
        )
        self._maybe_auto_delete_exchange(vhost, source)

    def _forget_binding(
        self, vhost: VHost, source: str, destination: Destination, key: tuple[Any, ...]
    ) -> None:
        slot = vhost.bindings_to.get((destination.kind, destination.name))
        if slot is not None:
            slot.pop((source, key), None)
            if not slot:
                del vhost.bindings_to[(destination.kind, destination.name)]

    # -- deletions and lifecycles -----------------------------------------------------------

    def delete_queue(self, queue: Queue, *, reason: str) -> None:
        if queue.deleted:
            return
        vhost = self.vhosts.get(queue.vhost)
        queue.deleted = True
        queue.cancel_timers()
        self._emit("queue-delete", vhost=queue.vhost, queue=queue.name, reason=reason)
        if vhost is None:
            return
        if vhost.queues.get(queue.name) is queue:
            del vhost.queues[queue.name]
        self._drop_bindings_to(vhost, queue)
        # Consumers of a deleted queue get a server-sent basic.cancel
        # (https://www.rabbitmq.com/consumer-cancel.html).
        for consumer in list(queue.consumer_order):
            channel = consumer.channel
            channel.consumers.pop(consumer.tag, None)
            queue.remove_consumer(consumer)
            if channel.is_open and not self._restarting:
                from .frames import BasicCancel

                channel.connection.push(BasicCancel(channel.id, consumer.tag))
        queue.clear()

    def _drop_bindings_to(self, vhost: VHost, destination: Destination) -> None:
        slot = vhost.bindings_to.pop((destination.kind, destination.name), None)
        if not slot:
            return
        sources: list[Exchange] = []
        for (source_name, key), _binding in slot.items():
            source = vhost.exchanges.get(source_name)
            if source is not None and source.remove_binding(key) is not None:
                sources.append(source)
        for source in sources:
            self._maybe_auto_delete_exchange(vhost, source)

    def delete_exchange(self, vhost: VHost, exchange: Exchange) -> None:
        if vhost.exchanges.get(exchange.name) is not exchange:
            return
        del vhost.exchanges[exchange.name]
        self._emit("exchange-delete", vhost=vhost.name, exchange=exchange.name)
        for key, binding in list(exchange.bindings.items()):
            exchange.remove_binding(key)
            self._forget_binding(vhost, exchange.name, binding.destination, key)
        self._drop_bindings_to(vhost, exchange)

    def _maybe_auto_delete_exchange(self, vhost: VHost, exchange: Exchange) -> None:
        # An auto-delete exchange goes when its last binding *as source* goes
        # (https://www.rabbitmq.com/exchanges.html, rabbit_exchange:maybe_auto_delete).
        if exchange.auto_delete and not exchange.bindings and not exchange.builtin:
            self.delete_exchange(vhost, exchange)

    def maybe_auto_delete_queue(self, queue: Queue) -> None:
        # Only after it had a consumer, and only when the last one went
        # (https://www.rabbitmq.com/queues.html#temporary-queues).
        if (
            queue.auto_delete
            and queue.had_consumer
            and not queue.consumer_order
            and not queue.deleted
            and not self._restarting
        ):
            self.delete_queue(queue, reason="auto-delete")

    # -- publishing and routing -------------------------------------------------------------

    def _check_expiration(self, expiration: Any) -> None:
        text = expiration.decode() if isinstance(expiration, bytes) else str(expiration)
        match = _INTEGER_PREFIX.match(text)
        if match is None:
            raise PreconditionFailed(replies.invalid_expiration(text, "no_integer"))
        leftover = text[match.end() :]
        if leftover:
            raise PreconditionFailed(
                replies.invalid_expiration(text, f'{{leftover_string,"{leftover}"}}')
            )
        value = int(match.group())
        if value < 0:
            raise PreconditionFailed(
                replies.invalid_expiration(text, f"{{value_negative,{value}}}")
            )
        if value > MAX_EXPIRY_MS:
            raise PreconditionFailed(
                replies.invalid_expiration(text, f"{{value_too_large,{value}}}")
            )

    def publish(
        self,
        channel: Channel,
        body: bytes,
        exchange_name: str,
        routing_key: str,
        mandatory: bool,
        properties: Mapping[str, Any],
        confirm_seq: int | None,
    ) -> None:
        vhost = channel.vhost
        exchange = vhost.exchanges.get(exchange_name)
        if exchange is None:
            raise NotFound(replies.no_exchange(exchange_name, vhost.name))
        if exchange.internal:
            raise AccessRefused(replies.internal_exchange(exchange_name, vhost.name))
        props = dict(properties)
        headers = props.get("application_headers")
        if headers:
            # Decoding the content header comes first: RabbitMQ drops the connection for a
            # NaN or infinity it cannot decode, before looking at the message.
            for value in headers.values():
                if type(value) in _CONTAINER_OR_FLOAT and has_non_finite(value):
                    raise internal_error()
        user_id = props.get("user_id")
        if user_id is not None and user_id != channel.connection.user:
            raise PreconditionFailed(
                replies.user_id_mismatch(str(user_id), channel.connection.user)
            )
        # The order of the checks below is RabbitMQ's (measured: the first failing one wins).
        if props.get("reply_to") == DIRECT_REPLY_TO:
            if channel.reply_consumer is None:
                raise PreconditionFailed(replies.direct_reply_not_consuming())
            props["reply_to"] = channel.reply_consumer[1]
        if props.get("expiration") is not None:
            self._check_expiration(props["expiration"])
        routing_keys: tuple[str, ...] = (routing_key,)
        if headers:
            for key in ("CC", "BCC"):
                # Sender-selected distribution keys must be arrays (rabbit_basic's check).
                if key in headers and not isinstance(headers[key], list | tuple):
                    raise PreconditionFailed(
                        replies.unacceptable_header_type(key, amqp_type(headers[key]))
                    )
        delivery_mode = props.get("delivery_mode")
        if delivery_mode is not None and delivery_mode not in (1, 2):
            raise PreconditionFailed(replies.delivery_mode_unknown(delivery_mode))
        if headers:
            cc, bcc = headers.get("CC"), headers.get("BCC")
            if cc or bcc:
                # Sender-selected distribution (https://www.rabbitmq.com/sender-selected.html):
                # CC and BCC add routing keys; BCC is removed from the message.
                extra = [k for k in (cc or []) if isinstance(k, str | bytes)]
                extra += [k for k in (bcc or []) if isinstance(k, str | bytes)]
                routing_keys += tuple(k.decode() if isinstance(k, bytes) else k for k in extra)
                if bcc is not None:
                    props["application_headers"] = {k: v for k, v in headers.items() if k != "BCC"}
        message = Message(
            self._next_message_id, bytes(body), props, exchange_name, routing_key, routing_keys
        )
        self._next_message_id += 1
        if self.tracing:
            self.trace.record(
                self.clock.now(),
                _PUBLISH,
                (
                    channel.connection.id,
                    channel.id,
                    exchange_name,
                    routing_key,
                    message.id,
                    message.body,
                    mandatory,
                ),
            )
        if self.faults.rules and self.faults.on_publish(channel, message, mandatory, confirm_seq):
            return
        if channel.tx is not None:  # core/tx.py: checked now, routed at tx.commit
            channel.tx.defer_publish(exchange, message, mandatory)
            return
        self.route_and_enqueue(channel, exchange, message, mandatory, confirm_seq)

    def route_and_enqueue(
        self,
        channel: Channel,
        exchange: Exchange,
        message: Message,
        mandatory: bool,
        confirm_seq: int | None,
    ) -> None:
        """Route a published message and enqueue it; then return and/or confirm it."""
        vhost = channel.vhost
        conn = channel.connection
        routing_key = message.routing_key
        if exchange.name == "" and routing_key.startswith(_REPLY_PREFIX):
            # A reply goes straight to the reply consumer, outside queue routing: for the
            # mandatory flag it reached no queue, so RabbitMQ 3.10 returns it 312 NO_ROUTE
            # even when it was delivered (measured; rabbit_channel's deliver_to_queues with
            # no queues), and acks it in confirm mode either way.
            self._deliver_reply(routing_key, message)
            queues: list[Queue] = []
            routed = False
        else:
            queues = self._route(vhost, exchange, message.routing_keys, message.headers)
            if self.faults.rules and self.faults.has_point("route") and queues:
                after = self.faults.on_route(channel, message, mandatory, confirm_seq, queues)
                if after is None:
                    return  # a route fault took the message over (held, or duplicated)
                queues = after
            routed = bool(queues)
        if self.tracing:
            names = (queues[0].name,) if len(queues) == 1 else tuple([q.name for q in queues])
            self.trace.record(self.clock.now(), _ROUTE, (message.id, names))
        if not routed:
            if mandatory:
                self._emit("return", msg=message.id, code=312, text=replies.no_route())
                conn.push(
                    BasicReturn(
                        channel.id, 312, replies.no_route(), message.exchange, routing_key, message
                    )
                )
            if confirm_seq is not None:
                self.confirm(channel, confirm_seq, True)
            return
        self.enqueue_and_confirm(channel, message, queues, confirm_seq)

    def enqueue_and_confirm(
        self, channel: Channel, message: Message, queues: list[Queue], confirm_seq: int | None
    ) -> None:
        """Enqueue a routed message in each queue (enqueue faults apply), then confirm it:
        an ack unless a queue refused it (reject-publish), as RabbitMQ confirms."""
        accepted = True
        now = self.clock.now()
        enqueue_faults = self.faults.rules and self.faults.has_point("enqueue")
        for queue in queues:
            if enqueue_faults:
                accepted = self.faults.on_enqueue(queue, message, now) and accepted
            elif not queue.enqueue(message, now):
                accepted = False
        if confirm_seq is not None:
            self.confirm(channel, confirm_seq, accepted)

    def confirm(self, channel: Channel, seq: int, ack: bool) -> None:
        if not channel.is_open:
            return
        if self.tracing:
            self.trace.record(self.clock.now(), _CONFIRM, (channel.id, seq, ack))
        frame = BasicAck(channel.id, seq) if ack else BasicNack(channel.id, seq)
        channel.connection.push(frame)

    def _route(
        self,
        vhost: VHost,
        exchange: Exchange,
        routing_keys: tuple[str, ...],
        headers: Mapping[str, Any] | None,
    ) -> list[Queue]:
        """Queues a message reaches from an exchange (rabbit_exchange:route/2).

        Exchange-to-exchange bindings are followed once per exchange (diamonds and cycles
        deliver once); an exchange that routes nowhere hands the message to its
        ``alternate-exchange`` (https://www.rabbitmq.com/ae.html).
        """
        if exchange.name == "":
            found = []
            for key in routing_keys:
                queue = vhost.queues.get(key)
                if queue is not None and queue not in found:
                    found.append(queue)
            return found
        first = exchange.route(routing_keys, headers)
        if len(first) == 1 and first[0].kind == "queue":
            return [first[0]]  # type: ignore[list-item]  # one queue, no hop: the common case
        queues: dict[str, Queue] = {}
        seen = {exchange.name}
        work = [exchange]
        while work:
            current = work.pop(0)
            dests = first if current is exchange else current.route(routing_keys, headers)
            if not dests and current.alternate_exchange is not None:
                alternate = vhost.exchanges.get(current.alternate_exchange)
                if alternate is not None:
                    dests = [alternate]
            for dest in dests:
                if dest.kind == "queue":
                    queues[dest.name] = dest  # type: ignore[assignment]
                elif dest.name not in seen:
                    seen.add(dest.name)
                    work.append(dest)  # type: ignore[arg-type]
        return list(queues.values())

    # -- direct reply-to ---------------------------------------------------------------------

    def register_reply_channel(self, channel: Channel) -> str:
        ref = base64.b64encode(
            f"conn-{channel.connection.id}.ch-{channel.id}".encode()
            + self.random.getrandbits(64).to_bytes(8, "big")
        ).decode()
        key = base64.b64encode(self.random.getrandbits(128).to_bytes(16, "big")).decode()
        address = f"{_REPLY_PREFIX}{ref}.{key}"
        self._reply_channels[address] = channel
        return address

    @staticmethod
    def is_forged_reply_address(address: str) -> bool:
        """An "X.Y" reply address whose X names no channel of ours (``_register_reply_channel``
        makes every X): RabbitMQ fails to decode such an X as a channel pid. A name without a
        dot after the prefix is not an address at all, just a queue name."""
        ref, dot, _ = address[len(_REPLY_PREFIX) :].partition(".")
        if not dot:
            return False
        try:
            return not base64.b64decode(ref, validate=True).startswith(b"conn-")
        except ValueError:
            return True

    def unregister_reply_channel(self, address: str) -> None:
        self._reply_channels.pop(address, None)

    def reply_channel(self, address: str) -> Channel | None:
        channel = self._reply_channels.get(address)
        if channel is None or not channel.is_open or channel.reply_consumer is None:
            self._reply_channels.pop(address, None)
            return None
        return channel

    def _deliver_reply(self, address: str, message: Message) -> bool:
        channel = self.reply_channel(address)
        if channel is None or channel.reply_consumer is None:
            return False
        # The channel's next delivery tag, not taken: RabbitMQ 3.10's deliver_reply
        # (rabbit_channel) sends it without advancing next_tag, so replies and the next
        # ordinary delivery share it (measured). Replies are never acked, so no clash.
        tag = channel.next_delivery_tag
        if self.tracing:
            self.trace.record(
                self.clock.now(),
                _DELIVER,
                (
                    channel.connection.id,
                    channel.id,
                    DIRECT_REPLY_TO,
                    channel.reply_consumer[0],
                    tag,
                    message.id,
                    False,
                ),
            )
        channel.connection.push(
            BasicDeliver(
                channel.id,
                channel.reply_consumer[0],
                tag,
                False,
                message.exchange,
                message.routing_key,
                message,
            )
        )
        return True

    # -- dead-lettering ----------------------------------------------------------------------

    def dead_letter(self, queue: Queue, message: Message, reason: str) -> bool:
        """Republish a message to its queue's DLX (https://www.rabbitmq.com/dlx.html).

        True when the dead letter reached at least one queue and every one took it (what an
        at-least-once quorum queue waits for before it forgets the message).
        """
        dlx_name = queue.args.dead_letter_exchange
        if dlx_name is None:
            return False
        vhost = self.vhosts.get(queue.vhost)
        dlx = vhost.exchanges.get(dlx_name) if vhost is not None else None
        if vhost is None or dlx is None:
            self._emit("dead-letter-dropped", queue=queue.name, msg=message.id, reason=reason)
            return False
        dlrk = queue.args.dead_letter_routing_key
        props = dict(message.properties)
        original_expiration = props.pop("expiration", None)
        # x-death lists the routing key and the CC keys; BCC keys still route the dead letter
        # but are never listed (measured on RabbitMQ 3.10.8).
        cc = (message.headers or {}).get("CC")
        cc_keys = [
            k.decode() if isinstance(k, bytes) else k
            for k in (cc if isinstance(cc, list) else [])
            if isinstance(k, str | bytes)
        ]
        death_keys = (message.routing_key, *cc_keys)
        headers = _x_death(
            message.headers,
            queue.name,
            reason,
            message.exchange,
            death_keys,
            self._timestamp(),
            original_expiration,
        )
        if dlrk is not None:
            headers.pop("CC", None)
            keys: tuple[str, ...] = (dlrk,)
        else:
            keys = message.routing_keys
        props["application_headers"] = headers
        dead = Message(self.new_message_id(), message.body, props, dlx_name, keys[0], keys)
        targets = self._route(vhost, dlx, keys, headers)
        if reason != "rejected":
            targets = [q for q in targets if not _is_cycle(q.name, headers["x-death"])]
        self._emit(
            "dead-letter",
            queue=queue.name,
            msg=message.id,
            reason=reason,
            new_msg=dead.id,
            exchange=dlx_name,
            queues=[q.name for q in targets],
        )
        now = self.clock.now()
        accepted = bool(targets)
        for target in targets:
            accepted = target.enqueue(dead, now) and accepted
        return accepted

    # -- restart -----------------------------------------------------------------------------

    def restart(self) -> None:
        """Simulate a broker restart (https://www.rabbitmq.com/queues.html#durability).

        Connections are closed with 320 CONNECTION_FORCED; transient queues, exchanges and
        their bindings vanish; each durable queue keeps what its type keeps (``Queue.recover``:
        a classic queue its persistent messages, a quorum queue all of them), unacknowledged
        ones included, which come back redelivered.
        """
        from .errors import ConnectionForced

        self._emit("restart")
        self._restarting = True
        try:
            for conn in list(self.connections.values()):
                conn.teardown(ConnectionForced(replies.connection_forced_shutdown()), notify=True)
            self._reply_channels.clear()
            for vhost in self.vhosts.values():
                for queue in list(vhost.queues.values()):
                    if not queue.durable:
                        self.delete_queue(queue, reason="restart")
                        continue
                    queue.recover()
                for exchange in list(vhost.exchanges.values()):
                    if not exchange.durable:
                        self.delete_exchange(vhost, exchange)
        finally:
            self._restarting = False

    # -- inspection --------------------------------------------------------------------------

    def _vhost(self, vhost: str) -> VHost:
        try:
            return self.vhosts[vhost]
        except KeyError:
            raise KeyError(f"no vhost {vhost!r}") from None

    def queue(self, name: str, vhost: str = "/") -> QueueInfo:
        """A snapshot of a queue (KeyError when it does not exist)."""
        self.tick()
        queue = self._vhost(vhost).queues.get(name)
        if queue is None:
            raise KeyError(f"no queue {name!r} in vhost {vhost!r}")
        return QueueInfo(
            name=queue.name,
            vhost=vhost,
            durable=queue.durable,
            exclusive=queue.exclusive,
            auto_delete=queue.auto_delete,
            arguments=dict(queue.arguments),
            messages_ready=queue.message_count,
            messages_unacknowledged=queue.unacked,
            consumers=queue.consumer_count,
            bodies=tuple(e.message.body for e in queue.ready_entries()),
            type=queue.type_name,
            delivery_counts=tuple(queue.delivery_count(e) for e in queue.ready_entries()),
            details=queue.details(),
        )

    def exchange(self, name: str, vhost: str = "/") -> ExchangeInfo:
        self.tick()
        exchange = self._vhost(vhost).exchanges.get(name)
        if exchange is None:
            raise KeyError(f"no exchange {name!r} in vhost {vhost!r}")
        return ExchangeInfo(
            name=exchange.name,
            vhost=vhost,
            type=exchange.type_name,
            durable=exchange.durable,
            auto_delete=exchange.auto_delete,
            internal=exchange.internal,
            arguments=dict(exchange.arguments),
            bindings=tuple(
                (b.destination.kind, b.destination.name, b.routing_key)
                for b in exchange.bindings.values()
            ),
        )

    def queue_names(self, vhost: str = "/") -> list[str]:
        self.tick()
        return sorted(self._vhost(vhost).queues)

    def exchange_names(self, vhost: str = "/") -> list[str]:
        return sorted(self._vhost(vhost).exchanges)


def _x_death(
    headers: Mapping[str, Any] | None,
    queue: str,
    reason: str,
    exchange: str,
    routing_keys: tuple[str, ...],
    time: _dt.datetime,
    original_expiration: Any,
) -> dict[str, Any]:
    """Headers with the ``x-death`` entry RabbitMQ 3.10 adds (rabbit_dead_letter:make_msg).

    Entries are most recent first; a repeat of the same queue and reason increments ``count``
    and moves that entry to the front; ``x-first-death-*`` are set once. ``count`` is a
    64-bit ``long`` on the wire (``Long``). A new entry's keys are in RabbitMQ's order
    (count, reason, queue, time, exchange, routing-keys, original-expiration) when it is the
    first; once the header holds entries, the new front entry has its keys sorted, as
    rabbit_misc:sort_field_table leaves it (both measured on RabbitMQ 3.10, raw socket).
    """
    out = dict(headers or {})
    info: dict[str, Any] = {
        "count": Long(1),
        "reason": reason,
        "queue": queue,
        "time": time,
        "exchange": exchange,
        "routing-keys": list(routing_keys),
    }
    if original_expiration is not None:
        info["original-expiration"] = original_expiration
    deaths = out.get("x-death")
    if not isinstance(deaths, list) or not deaths:
        out["x-death"] = [info]
        out.setdefault("x-first-death-exchange", exchange)
        out.setdefault("x-first-death-queue", queue)
        out.setdefault("x-first-death-reason", reason)
        return out
    match_index = next(
        (
            i
            for i, d in enumerate(deaths)
            if isinstance(d, Mapping) and d.get("queue") == queue and d.get("reason") == reason
        ),
        None,
    )
    if match_index is None:
        newest = info
        rest = list(deaths)
    else:
        newest = dict(deaths[match_index])
        newest["count"] = Long(int(newest.get("count", 0)) + 1)
        rest = [d for i, d in enumerate(deaths) if i != match_index]
    out["x-death"] = [dict(sorted(newest.items())), *rest]
    return out


def _is_cycle(queue: str, deaths: list[Any]) -> bool:
    """rabbit_dead_letter:is_cycle: the queue is in x-death with no rejection on the way."""
    for index, death in enumerate(deaths):
        if isinstance(death, Mapping) and death.get("queue") == queue:
            return all(
                isinstance(d, Mapping) and d.get("reason") != "rejected"
                for d in deaths[: index + 1]
            )
    return False
