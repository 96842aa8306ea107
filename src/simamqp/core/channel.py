"""Channels and consumers: the method surface a client talks to.

Method names and arguments follow py-amqp's ``amqp.Channel`` so the kombu transport maps them
one to one. The order of checks in each method follows rabbit_channel's ``handle_method``
clauses, because the order decides which error a client sees when several things are wrong.

Errors: a synchronous method raises the ``AMQPError``; the channel (soft error) or connection
(hard error) is closed first, as the broker would. Asynchronous methods (basic.publish,
basic.ack, basic.reject, basic.nack) have no reply in AMQP, so their errors close the channel
and arrive later as a ``ChannelClose`` frame in the connection's outbox, exactly when a real
client would read them. So do the errors of a synchronous method the client sent with
``nowait=true`` (``without_reply``): no reply, so nothing else could carry them.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping
from typing import TYPE_CHECKING, Any, TypeVar

from . import alarm as _alarm
from . import methods as M
from . import replies
from . import tx as _tx
from .arguments import (
    EQUIVALENCE_CHECKED_EXCHANGE_ARGS,
    check_consumer_args,
    check_exchange_args,
    erlang_term,
    has_non_finite,
    inequivalent_args,
)
from .errors import (
    AccessRefused,
    AMQPError,
    AMQPNotImplemented,
    CommandInvalid,
    InternalError,
    NotAllowed,
    NotFound,
    PreconditionFailed,
    ResourceLocked,
)
from .exchanges import Binding, Exchange, exchange_class
from .frames import BasicDeliver, ChannelClose, ConnectionClose, GetOk
from .message import QueuedMessage
from .queue_type import (
    QUEUE_TYPES,
    Queue,
    check_argument_keys,
    check_consumer_argument_keys,
    queue_class_for,
)
from .queues import ClassicQueue
from .quorum import QuorumQueue
from .streams import StreamQueue
from .trace import Shape

if TYPE_CHECKING:
    from .broker import Broker, VHost
    from .connection import Connection
    from .tx import Transaction

__all__ = ["DIRECT_REPLY_TO", "Channel", "ChannelClosedError", "Consumer"]

DIRECT_REPLY_TO = "amq.rabbitmq.reply-to"
#: The queue implementations a declare chooses from (each registers its ``x-queue-type``).
QUEUE_IMPLEMENTATIONS: tuple[type[Queue], ...] = (ClassicQueue, QuorumQueue, StreamQueue)
_REPLY_PREFIX = DIRECT_REPLY_TO + "."

#: Trace shapes of the per-message events emitted here (``Trace.record``).
_DELIVER = Shape(
    "deliver",
    connection=1,
    channel=1,
    queue="",
    consumer_tag="",
    delivery_tag=1,
    msg=1,
    redelivered=False,
)
_ACK = Shape("ack", connection=1, channel=1, queue="", msg=1)
_GET = Shape("get", connection=1, channel=1, queue="", delivery_tag=1, msg=1, redelivered=False)

T = TypeVar("T")


def _check_decodable(arguments: Mapping[str, Any] | None) -> None:
    """RabbitMQ cannot decode a NaN or an infinity in a frame's field table.

    It drops the connection (its connection process crashes and resets the socket; simamqp
    closes it with 541 INTERNAL_ERROR instead, docs/differences.md).
    """
    if arguments and any(has_non_finite(value) for value in arguments.values()):
        raise internal_error()


def internal_error() -> InternalError:
    """541 INTERNAL_ERROR as RabbitMQ sends it for a frame it cannot decode (method 0, 0)."""
    err = InternalError("INTERNAL_ERROR")
    err.frame_level = True
    return err


class ChannelClosedError(Exception):
    """A method was called on a channel (or connection) that is closed.

    This is a client-side error (py-amqp raises ``RecoverableConnectionError``), not an AMQP
    reply; ``reason`` is the error that closed the channel, if the broker closed it.
    """

    def __init__(self, message: str, reason: AMQPError | None = None) -> None:
        super().__init__(message)
        self.reason = reason


class Consumer:
    __slots__ = (
        "arguments",
        "channel",
        "exclusive",
        "no_ack",
        "prefetch",
        "queue",
        "tag",
        "unacked",
    )

    def __init__(
        self,
        channel: Channel,
        queue: Queue,
        tag: str,
        *,
        no_ack: bool,
        exclusive: bool,
        prefetch: int,
        arguments: Mapping[str, Any],
    ) -> None:
        self.channel = channel
        self.queue = queue
        self.tag = tag
        self.no_ack = no_ack
        self.exclusive = exclusive
        #: Per-consumer prefetch (basic.qos global=false), fixed when the consumer was created.
        self.prefetch = prefetch
        self.arguments = dict(arguments)
        self.unacked = 0

    def can_take(self) -> bool:
        if self.no_ack:
            return self.channel.flow_active
        channel = self.channel
        if self.prefetch and self.unacked >= self.prefetch:
            return False
        if channel.global_prefetch and channel.global_unacked >= channel.global_prefetch:
            return False
        return channel.flow_active

    def __repr__(self) -> str:
        return f"<Consumer {self.tag!r} on {self.queue.name!r} unacked={self.unacked}>"


class _Unacked:
    __slots__ = ("consumer", "entry", "queue")

    def __init__(self, queue: Queue, entry: QueuedMessage, consumer: Consumer | None) -> None:
        self.queue = queue
        self.entry = entry
        self.consumer = consumer


#: One (queue, consumer) group of a negative settlement: the queue, its entries, the deliveries.
_SettleGroup = tuple[Queue, list[QueuedMessage], list[_Unacked]]


class Channel:
    def __init__(self, connection: Connection, channel_id: int) -> None:
        self.connection = connection
        self.broker: Broker = connection.broker
        self.id = channel_id
        self.is_open = True
        self.close_reason: AMQPError | None = None
        self.consumers: dict[str, Consumer] = {}
        self.unacked: dict[int, _Unacked] = {}
        self.next_delivery_tag = 1
        self.consumer_prefetch = 0
        self.global_prefetch = 0
        self.global_unacked = 0
        self.confirm = False
        self._publish_seq = 0
        self.flow_active = True
        self.last_queue: str | None = None
        #: Direct reply-to: (consumer tag, reply address) while a reply consumer exists.
        self.reply_consumer: tuple[str, str] | None = None
        #: The open transaction after tx.select (core/tx.py), else None.
        self.tx: Transaction | None = None

    def __repr__(self) -> str:
        state = "open" if self.is_open else "closed"
        return f"<Channel {self.id} of {self.connection.name} {state}>"

    @property
    def vhost(self) -> VHost:
        return self.connection.vhost

    # -- plumbing ---------------------------------------------------------------------------

    def _check_open(self) -> None:
        if not self.is_open:
            raise ChannelClosedError("channel is closed", self.close_reason)
        if not self.connection.is_open:
            raise ChannelClosedError("connection is closed", self.connection.close_reason)

    def _sync(self, method: tuple[int, int], fn: Callable[[], T]) -> T:
        """Run a synchronous method; on an AMQP error close what the broker closes, re-raise."""
        self._check_open()
        broker = self.broker
        broker.tick()
        timed = broker.tracing and not broker.clock.virtual and broker.begin_operation()
        try:
            return fn()
        except AMQPError as err:
            if err.method == (0, 0) and not err.frame_level:
                err.method = method
            self._fail(err)
            raise
        finally:
            if timed:
                broker.trace.end_operation()

    def _async(self, method: tuple[int, int], fn: Callable[[], None]) -> None:
        """Run an asynchronous method; an AMQP error closes the channel via the outbox."""
        if not (self.is_open and self.connection.is_open):
            self._check_open()
        broker = self.broker
        if broker.scheduler.pending:  # what Broker._tick checks first (hot path: publish, ack)
            broker.tick()
        timed = broker.tracing and not broker.clock.virtual and broker.begin_operation()
        try:
            fn()
        except AMQPError as err:
            if err.method == (0, 0) and not err.frame_level:
                err.method = method
            self._fail(err, notify=True)
        finally:
            if timed:
                broker.trace.end_operation()

    def without_reply(self, method: Callable[[Channel], object]) -> None:
        """Run a synchronous method the client sent with ``nowait=true``.

        The broker sends no reply, so an error reaches the client the way an asynchronous
        method's does: as the ``channel.close`` (soft) or ``connection.close`` (hard) frame the
        broker sends, which the client reads when it next reads. What the method returns (a
        declare-ok's counts) is dropped with the reply.
        """
        try:
            method(self)
        except AMQPError as err:
            # _sync has closed what the broker closes, without a frame: send the close now.
            connection = self.connection
            if not err.soft:
                connection.push(ConnectionClose(err))
            elif connection.is_open:
                connection.push(ChannelClose(self.id, err))

    def _fail(self, err: AMQPError, *, notify: bool = False) -> None:
        self.broker.emit(
            "error",
            connection=self.connection.id,
            channel=self.id,
            code=err.reply_code,
            text=err.reply_text,
            method=list(err.method),
            scope="channel" if err.soft else "connection",
        )
        if err.soft:
            self.teardown(err, notify=notify)
        else:
            self.connection.teardown(err, notify=notify)

    def teardown(self, reason: AMQPError | None, *, notify: bool) -> None:
        """Close the channel: cancel its consumers, requeue its unacked messages."""
        if not self.is_open:
            return
        self.is_open = False
        self.close_reason = reason
        self.reply_consumer = None
        if self.tx is not None:
            self.tx.restore(self)  # an open transaction is discarded: its acks never happened
        # rabbit_amqqueue_process handle_ch_down: consumers go, unacked messages are requeued,
        # and only then may an auto-delete queue go away (with what was requeued).
        by_queue: dict[int, tuple[Queue, list[QueuedMessage]]] = {}
        for unacked in self.unacked.values():
            bucket = by_queue.setdefault(id(unacked.queue), (unacked.queue, []))
            bucket[1].append(unacked.entry)
        self.unacked.clear()
        consumers = list(self.consumers.values())
        self.consumers.clear()
        for consumer in consumers:
            consumer.queue.remove_consumer(consumer)
        for queue, entries in by_queue.values():
            entries.sort(key=lambda e: e.seq)
            self.broker.emit("requeue", queue=queue.name, msgs=[e.message.id for e in entries])
            queue.requeue(entries, channel_closed=True)
        for consumer in consumers:
            self.broker.maybe_auto_delete_queue(consumer.queue)
        self.connection.channel_closed(self, reason, notify=notify)

    def close(self) -> None:
        """Client-initiated channel.close."""
        if not self.is_open:
            return
        self.broker.tick()
        self.broker.emit("channel-close", connection=self.connection.id, channel=self.id)
        self.teardown(None, notify=False)

    # -- names ------------------------------------------------------------------------------

    def _queue_name(self, name: str) -> str:
        """An empty queue name means the channel's last declared queue (AMQP 0-9-1 1.7.2)."""
        if name:
            return name
        if self.last_queue is None:
            raise NotFound("no previously declared queue")
        return self.last_queue

    def _lookup_queue(self, name: str, *, exclusive_check: bool = True) -> Queue:
        queue = self.vhost.queues.get(name)
        if queue is None:
            raise NotFound(replies.no_queue(name, self.vhost.name))
        if exclusive_check:
            self._check_exclusive(queue)
        return queue

    def _check_exclusive(self, queue: Queue) -> None:
        owner = queue.exclusive_owner
        if owner is not None and owner is not self.connection:
            raise ResourceLocked(replies.exclusive_locked(queue.name, queue.vhost))

    def _lookup_exchange(self, name: str) -> Exchange:
        exchange = self.vhost.exchanges.get(name)
        if exchange is None:
            raise NotFound(replies.no_exchange(name, self.vhost.name))
        return exchange

    # -- exchange class ---------------------------------------------------------------------

    def exchange_declare(
        self,
        exchange: str,
        type: str = "direct",
        passive: bool = False,
        durable: bool = False,
        auto_delete: bool = False,
        internal: bool = False,
        arguments: Mapping[str, Any] | None = None,
    ) -> None:
        def run() -> None:
            _check_decodable(arguments)
            vhost = self.vhost
            if passive:
                if exchange == "":
                    raise AccessRefused(replies.default_exchange_op())
                self._lookup_exchange(exchange)
                return
            cls = exchange_class(type)
            if cls is None:
                raise CommandInvalid(replies.unknown_exchange_type(type))
            if exchange == "":
                raise AccessRefused(replies.default_exchange_op())
            args = dict(arguments or {})
            existing = vhost.exchanges.get(exchange)
            if existing is None:
                if exchange.startswith("amq."):
                    raise AccessRefused(replies.reserved_prefix("exchange", exchange))
                # Only a new exchange's arguments are type-checked; a redeclaration is
                # compared instead (measured on RabbitMQ 3.10).
                check_exchange_args(args, exchange, vhost.name)
                self.broker.declare_exchange(
                    vhost,
                    cls(
                        exchange,
                        vhost.name,
                        durable=durable,
                        auto_delete=auto_delete,
                        internal=internal,
                        arguments=args,
                    ),
                )
                return
            _assert_equivalent(
                "exchange",
                exchange,
                vhost.name,
                (
                    ("type", type, existing.type_name),
                    ("durable", durable, existing.durable),
                    ("auto_delete", auto_delete, existing.auto_delete),
                    ("internal", internal, existing.internal),
                ),
                args,
                existing.arguments,
                EQUIVALENCE_CHECKED_EXCHANGE_ARGS,
            )

        self._sync(M.EXCHANGE_DECLARE, run)

    def exchange_delete(self, exchange: str, if_unused: bool = False) -> None:
        def run() -> None:
            vhost = self.vhost
            if exchange == "":
                raise AccessRefused(replies.default_exchange_op())
            if exchange.startswith("amq."):
                raise AccessRefused(replies.system_exchange_deletion(exchange, vhost.name))
            existing = vhost.exchanges.get(exchange)
            if existing is None:
                return
            if if_unused and existing.bindings:
                raise PreconditionFailed(replies.exchange_in_use(exchange, vhost.name))
            self.broker.delete_exchange(vhost, existing)

        self._sync(M.EXCHANGE_DELETE, run)

    def exchange_bind(
        self,
        destination: str,
        source: str,
        routing_key: str = "",
        arguments: Mapping[str, Any] | None = None,
    ) -> None:
        def run() -> None:
            _check_decodable(arguments)
            if destination == "" or source == "":
                raise AccessRefused(replies.default_exchange_op())
            src = self._lookup_exchange(source)
            dest = self._lookup_exchange(destination)
            self.broker.bind(self.vhost, src, dest, routing_key, arguments or {})

        self._sync(M.EXCHANGE_BIND, run)

    def exchange_unbind(
        self,
        destination: str,
        source: str,
        routing_key: str = "",
        arguments: Mapping[str, Any] | None = None,
    ) -> None:
        def run() -> None:
            _check_decodable(arguments)
            if destination == "" or source == "":
                raise AccessRefused(replies.default_exchange_op())
            src = self.vhost.exchanges.get(source)
            dest = self.vhost.exchanges.get(destination)
            if src is not None and dest is not None:
                self.broker.unbind(self.vhost, src, dest, routing_key, arguments or {})

        self._sync(M.EXCHANGE_UNBIND, run)

    # -- queue class ------------------------------------------------------------------------

    def queue_declare(
        self,
        queue: str = "",
        passive: bool = False,
        durable: bool = False,
        exclusive: bool = False,
        auto_delete: bool = False,
        arguments: Mapping[str, Any] | None = None,
    ) -> tuple[str, int, int]:
        def run() -> tuple[str, int, int]:
            _check_decodable(arguments)
            vhost = self.vhost
            if queue == DIRECT_REPLY_TO or queue.startswith(_REPLY_PREFIX):
                return self._declare_reply_to(queue)
            if passive:
                name = queue
                found = self._lookup_queue(name)
                found.declared(passive=True)
                self.last_queue = name
                return name, found.message_count, found.consumer_count
            if queue == "":
                cls = QUEUE_TYPES.get(erlang_term((arguments or {}).get("x-queue-type", "")))
                if cls is not None and not cls.server_named:
                    raise PreconditionFailed(replies.server_named_unsupported(cls.module))
                name = self.broker.generate_name("amq.gen")
            elif queue.startswith("amq."):
                raise AccessRefused(replies.reserved_prefix("queue", queue))
            else:
                name = queue
            args = dict(arguments or {})
            is_durable = durable and not exclusive
            existing = vhost.queues.get(name)
            if existing is not None:
                owner = self.connection if exclusive else None
                if existing.exclusive_owner is not owner:
                    raise ResourceLocked(replies.exclusive_locked(name, vhost.name))
                _assert_equivalent(
                    "queue",
                    name,
                    vhost.name,
                    (
                        ("durable", is_durable, existing.durable),
                        ("auto_delete", auto_delete, existing.auto_delete),
                    ),
                    args,
                    existing.arguments,
                    existing.equivalence_checked_args,
                )
                existing.declared(passive=False)
                self.last_queue = name
                return name, existing.message_count, existing.consumer_count
            # rabbit_amqqueue:declare: x-queue-type, the type's own argument checks, the
            # arguments only other types accept, then the type's lifecycle limits.
            cls = queue_class_for(args, name, vhost.name)
            qargs = cls.parse_arguments(args, name, vhost.name)
            check_argument_keys(cls, args, name, vhost.name)
            refused = cls.incompatible_property(durable, exclusive, auto_delete)
            if refused is not None:
                raise PreconditionFailed(replies.invalid_queue_property(refused, name, vhost.name))
            cls.check_declare(qargs)
            self.broker.declare_queue(
                vhost,
                cls(
                    self.broker,
                    vhost.name,
                    name,
                    durable=is_durable,
                    exclusive_owner=self.connection if exclusive else None,
                    auto_delete=auto_delete,
                    arguments=args,
                    args=qargs,
                ),
            )
            self.last_queue = name
            return name, 0, 0

        return self._sync(M.QUEUE_DECLARE, run)

    def _declare_reply_to(self, name: str) -> tuple[str, int, int]:
        if name == DIRECT_REPLY_TO:
            return name, 0, 1
        if self.broker.reply_channel(name) is None:
            if self.broker.is_forged_reply_address(name):
                # rabbit_channel decodes X of "amq.rabbitmq.reply-to.X.Y" as the pid of the
                # channel it names; one it cannot decode crashes the channel and the connection
                # closes with a bare 541 (measured on 3.10.8).
                raise internal_error()
            raise NotFound(replies.no_queue(name, self.vhost.name))
        return name, 0, 1

    def queue_bind(
        self,
        queue: str,
        exchange: str = "",
        routing_key: str = "",
        arguments: Mapping[str, Any] | None = None,
    ) -> None:
        def run() -> None:
            _check_decodable(arguments)
            name = self._queue_name(queue)
            if exchange == "":
                raise AccessRefused(replies.default_exchange_op())
            src = self._lookup_exchange(exchange)
            dest = self._lookup_queue(name)
            self.broker.bind(self.vhost, src, dest, routing_key, arguments or {})

        self._sync(M.QUEUE_BIND, run)

    def queue_unbind(
        self,
        queue: str,
        exchange: str = "",
        routing_key: str = "",
        arguments: Mapping[str, Any] | None = None,
    ) -> None:
        def run() -> None:
            _check_decodable(arguments)
            name = self._queue_name(queue)
            if exchange == "":
                raise AccessRefused(replies.default_exchange_op())
            src = self.vhost.exchanges.get(exchange)
            dest = self.vhost.queues.get(name)
            if src is None or dest is None:
                return
            probe = Binding(src, dest, routing_key, arguments or {})
            if probe.key not in src.bindings:
                return
            self._check_exclusive(dest)
            self.broker.unbind(self.vhost, src, dest, routing_key, arguments or {})

        self._sync(M.QUEUE_UNBIND, run)

    def queue_purge(self, queue: str = "") -> int:
        def run() -> int:
            q = self._lookup_queue(self._queue_name(queue))
            count = q.purge()
            self.broker.emit("purge", queue=q.name, vhost=q.vhost, count=count)
            return count

        return self._sync(M.QUEUE_PURGE, run)

    def queue_delete(self, queue: str = "", if_unused: bool = False, if_empty: bool = False) -> int:
        def run() -> int:
            name = self._queue_name(queue)
            q = self.vhost.queues.get(name)
            if q is None:
                return 0
            self._check_exclusive(q)
            if if_unused and q.consumer_count:
                raise PreconditionFailed(replies.queue_in_use(name, q.vhost))
            if if_empty and q.message_count:
                raise PreconditionFailed(replies.queue_not_empty(name, q.vhost))
            count = q.message_count
            self.broker.delete_queue(q, reason="deleted")
            return count

        return self._sync(M.QUEUE_DELETE, run)

    # -- basic class: consuming -------------------------------------------------------------

    def basic_qos(
        self, prefetch_size: int = 0, prefetch_count: int = 0, a_global: bool = False
    ) -> None:
        def run() -> None:
            if prefetch_size:
                raise AMQPNotImplemented(replies.prefetch_size_unsupported(prefetch_size))
            if a_global:
                self.global_prefetch = prefetch_count
                self._dispatch_all()
            else:
                self.consumer_prefetch = prefetch_count

        self._sync(M.BASIC_QOS, run)

    def basic_consume(
        self,
        queue: str = "",
        consumer_tag: str = "",
        no_local: bool = False,
        no_ack: bool = False,
        exclusive: bool = False,
        arguments: Mapping[str, Any] | None = None,
    ) -> str:
        def run() -> str:
            _check_decodable(arguments)
            # Only the queue consumers' tags count (rabbit_channel's consumer_mapping): a queue
            # consumer may take the reply consumer's tag, not the other way round (measured).
            if consumer_tag and consumer_tag in self.consumers:
                raise NotAllowed(replies.reuse_consumer_tag(consumer_tag))
            if queue == DIRECT_REPLY_TO:
                return self._consume_reply_to(consumer_tag, no_ack)
            q = self._lookup_queue(self._queue_name(queue))
            check_consumer_args(arguments or {}, q.name, q.vhost)
            check_consumer_argument_keys(q, arguments or {})
            q.check_consumer(
                no_ack=no_ack, prefetch=self.consumer_prefetch, arguments=arguments or {}
            )
            tag = consumer_tag or self.broker.generate_name("amq.ctag")
            if self.global_prefetch and not q.supports_global_qos:
                # rabbit_quorum_queue:consume with an active limiter (a hard error).
                raise AMQPNotImplemented(replies.global_qos_unsupported(q.name, q.vhost))
            if q.enforces_exclusive_consume and (
                (exclusive and q.consumer_order) or any(c.exclusive for c in q.consumer_order)
            ):
                raise AccessRefused(replies.exclusive_consume(q.name, q.vhost))
            consumer = Consumer(
                self,
                q,
                tag,
                no_ack=no_ack,
                exclusive=exclusive,
                prefetch=self.consumer_prefetch,
                arguments=arguments or {},
            )
            self.consumers[tag] = consumer
            self.broker.emit(
                "consume",
                connection=self.connection.id,
                channel=self.id,
                queue=q.name,
                consumer_tag=tag,
                no_ack=no_ack,
            )
            q.add_consumer(consumer)
            return tag

        return self._sync(M.BASIC_CONSUME, run)

    def _consume_reply_to(self, consumer_tag: str, no_ack: bool) -> str:
        if not no_ack:
            raise PreconditionFailed(replies.direct_reply_consume_ack())
        if self.reply_consumer is not None:
            raise PreconditionFailed(replies.reply_consumer_already_set())
        tag = consumer_tag or self.broker.generate_name("amq.ctag")
        address = self.broker.register_reply_channel(self)
        self.reply_consumer = (tag, address)
        self.broker.emit(
            "consume",
            connection=self.connection.id,
            channel=self.id,
            queue=DIRECT_REPLY_TO,
            consumer_tag=tag,
            no_ack=True,
        )
        return tag

    def basic_cancel(self, consumer_tag: str) -> None:
        def run() -> None:
            if self.reply_consumer is not None and self.reply_consumer[0] == consumer_tag:
                self.broker.unregister_reply_channel(self.reply_consumer[1])
                self.reply_consumer = None
                return
            consumer = self.consumers.pop(consumer_tag, None)
            if consumer is None:
                return  # RabbitMQ answers cancel-ok for an unknown tag
            self.broker.emit(
                "cancel", connection=self.connection.id, channel=self.id, consumer_tag=consumer_tag
            )
            consumer.queue.remove_consumer(consumer)
            self.broker.maybe_auto_delete_queue(consumer.queue)

        self._sync(M.BASIC_CANCEL, run)

    def basic_get(self, queue: str = "", no_ack: bool = False) -> GetOk | None:
        def run() -> GetOk | None:
            q = self._lookup_queue(self._queue_name(queue))
            entry = q.dequeue(None if no_ack else self)
            if entry is None:
                self.broker.emit("get-empty", channel=self.id, queue=q.name)
                return None
            tag = self.next_delivery_tag
            self.next_delivery_tag = tag + 1
            message = q.message_for_get(entry)
            if not no_ack:
                self.unacked[tag] = _Unacked(q, entry, None)
            broker = self.broker
            if broker.tracing:
                broker.trace.record(
                    broker.clock.now(),
                    _GET,
                    (self.connection.id, self.id, q.name, tag, message.id, entry.redelivered),
                )
            return GetOk(
                tag,
                entry.redelivered,
                message.exchange,
                message.routing_key,
                q.message_count,
                message,
            )

        return self._sync(M.BASIC_GET, run)

    def deliver(self, consumer: Consumer, queue: Queue, entry: QueuedMessage) -> None:
        """Called by a queue: push one message to a consumer of this channel (deliver faults
        apply); a delivery that needs an ack is checked out of the queue."""
        faults = self.broker.faults
        if faults.rules and faults.on_deliver(self, consumer, queue, entry):
            return
        tag = self.next_delivery_tag
        self.next_delivery_tag = tag + 1
        if not consumer.no_ack:
            self.unacked[tag] = _Unacked(queue, entry, consumer)
            consumer.unacked += 1
            self.global_unacked += 1
            queue.checkout(entry, consumer)
        message = queue.message_for(entry)
        broker = self.broker
        if broker.tracing:
            broker.trace.record(
                broker.clock.now(),
                _DELIVER,
                (
                    self.connection.id,
                    self.id,
                    queue.name,
                    consumer.tag,
                    tag,
                    message.id,
                    entry.redelivered,
                ),
            )
        self.connection.push(
            BasicDeliver(
                self.id,
                consumer.tag,
                tag,
                entry.redelivered,
                message.exchange,
                message.routing_key,
                message,
            )
        )

    # -- basic class: settling --------------------------------------------------------------

    def collect_unacked(self, delivery_tag: int, multiple: bool) -> list[_Unacked]:
        """The deliveries an ack/nack/reject refers to (rabbit_channel:collect_acks)."""
        unacked = self.unacked
        if multiple:
            if delivery_tag == 0:
                out = list(unacked.values())
                unacked.clear()
                return out
            if delivery_tag not in unacked:
                raise PreconditionFailed(replies.unknown_delivery_tag(delivery_tag))
            tags = [t for t in unacked if t <= delivery_tag]
            return [unacked.pop(t) for t in tags]
        found = unacked.pop(delivery_tag, None)
        if found is None:
            raise PreconditionFailed(replies.unknown_delivery_tag(delivery_tag))
        return [found]

    def _release(self, settled: Iterable[_Unacked]) -> list[Queue]:
        """Account for settled deliveries; the queues that may now deliver more."""
        queues: dict[int, Queue] = {}
        consumers = self.consumers
        for item in settled:
            consumer = item.consumer
            if consumer is not None:
                current = consumers.get(consumer.tag)
                if (
                    current is not consumer
                    and current is not None
                    and current.queue is consumer.queue
                ):
                    # RabbitMQ keeps consumer-prefetch credit per consumer *tag* (rabbit_limiter's
                    # queue-side credits): settling a delivery made under a tag credits whichever
                    # consumer holds that tag now, even a newer one that reused it.
                    consumer = current
                consumer.unacked -= 1
                self.global_unacked -= 1
                queues[id(consumer.queue)] = consumer.queue
        if self.global_prefetch:
            for consumer in self.consumers.values():
                queues[id(consumer.queue)] = consumer.queue
        return list(queues.values())

    def basic_ack(self, delivery_tag: int, multiple: bool = False) -> None:
        def run() -> None:
            broker = self.broker
            if broker.faults.rules and broker.faults.on_ack(self, delivery_tag, multiple):
                return
            if self.tx is not None:
                self.tx.defer_settle(self, "ack", delivery_tag, multiple, False)
                return
            self.ack_settled(self.collect_unacked(delivery_tag, multiple))

        self._async(M.BASIC_ACK, run)

    def ack_settled(self, settled: list[_Unacked]) -> None:
        """Settle acknowledged deliveries (at the ack, or at tx.commit)."""
        broker = self.broker
        for item in settled:
            item.queue.complete(item.entry)
            if broker.tracing:
                broker.trace.record(
                    broker.clock.now(),
                    _ACK,
                    (self.connection.id, self.id, item.queue.name, item.entry.message.id),
                )
        for queue in self._release(settled):
            queue.dispatch()

    def basic_reject(self, delivery_tag: int, requeue: bool = True) -> None:
        self._async(M.BASIC_REJECT, lambda: self._negative(delivery_tag, False, requeue, "reject"))

    def basic_nack(self, delivery_tag: int, multiple: bool = False, requeue: bool = True) -> None:
        self._async(M.BASIC_NACK, lambda: self._negative(delivery_tag, multiple, requeue, "nack"))

    def requeue_deliveries(self, delivery_tag: int, multiple: bool, kind: str) -> None:
        """Requeue deliveries as a basic.nack with requeue would, traced as ``kind`` (the
        ``redeliver`` fault: an ack lost with its channel, so they come back as a closed
        channel's deliveries do)."""
        settled = self.collect_unacked(delivery_tag, multiple)
        self.settle_negative(settled, True, kind, channel_closed=True)

    def _negative(self, delivery_tag: int, multiple: bool, requeue: bool, kind: str) -> None:
        if self.tx is not None:
            self.tx.defer_settle(self, kind, delivery_tag, multiple, requeue)
            return
        settled = self.collect_unacked(delivery_tag, multiple)
        self.settle_negative(settled, requeue, kind)

    def settle_negative(
        self,
        settled: list[_Unacked],
        requeue: bool,
        kind: str,
        *,
        channel_closed: bool = False,
        recovering: bool = False,
    ) -> None:
        """Requeue or discard deliveries the way rabbit_channel's foreach_per_queue does.

        RabbitMQ settles per (queue, consumer tag) group, groups in Erlang term order of
        ``{QPid, CTag}`` (basic.get deliveries have the atom ``none``, which sorts before every
        binary tag), and each group's requeue delivers before the next group is requeued: a
        basic.get message can be redelivered before an older consumer delivery.
        """
        broker = self.broker
        groups: dict[tuple[int, int, bytes], _SettleGroup] = {}
        for item in settled:
            broker.emit(
                kind,
                connection=self.connection.id,
                channel=self.id,
                queue=item.queue.name,
                msg=item.entry.message.id,
                requeue=requeue,
            )
            consumer = item.consumer
            key = (
                item.queue.serial,
                0 if consumer is None else 1,
                b"" if consumer is None else consumer.tag.encode(),
            )
            groups.setdefault(key, (item.queue, [], []))[1].append(item.entry)
            groups[key][2].append(item)
        # A group's consumer gets its prefetch credit back with that group's settlement, not
        # before: an earlier group's requeue cannot be delivered to a consumer whose own
        # deliveries are still out (measured: with x-max-length 2 its requeued message is
        # then dropped at the head instead).
        released: dict[int, Queue] = {}
        for key in sorted(groups):
            queue, entries, items = groups[key]
            for freed in self._release(items):
                released[id(freed)] = freed
            entries.sort(key=_entry_seq)
            if recovering:
                queue.recover_requeue(entries)
                continue
            if requeue:
                queue.requeue(entries, channel_closed=channel_closed)
                continue
            queue.discard(entries, "rejected")
        for queue in released.values():
            queue.dispatch()

    def basic_recover(self, requeue: bool = True) -> None:
        def run() -> None:
            if not requeue:
                raise AMQPNotImplemented(replies.recover_no_requeue())
            settled = list(self.unacked.values())
            self.unacked.clear()
            self.broker.emit("recover", connection=self.connection.id, channel=self.id)
            self.settle_negative(settled, True, "recover-requeue", recovering=True)

        self._sync(M.BASIC_RECOVER, run)

    # -- basic class: publishing ------------------------------------------------------------

    def confirm_select(self) -> None:
        def run() -> None:
            if self.tx is not None:
                raise PreconditionFailed("cannot switch from tx to confirm mode")
            self.confirm = True

        self._sync(M.CONFIRM_SELECT, run)

    # -- tx class (core/tx.py) --------------------------------------------------------------

    def tx_select(self) -> None:
        self._sync(M.TX_SELECT, lambda: _tx.select(self))

    def tx_commit(self) -> None:
        self._sync(M.TX_COMMIT, lambda: _tx.commit(self))

    def tx_rollback(self) -> None:
        self._sync(M.TX_ROLLBACK, lambda: _tx.rollback(self))

    def flow(self, active: bool) -> None:
        def run() -> None:
            if not active:
                raise AMQPNotImplemented(replies.flow_unsupported())

        self._sync(M.CHANNEL_FLOW, run)

    def basic_publish(
        self,
        body: bytes,
        exchange: str = "",
        routing_key: str = "",
        mandatory: bool = False,
        immediate: bool = False,
        properties: Mapping[str, Any] | None = None,
    ) -> int | None:
        """Publish; returns the publisher-confirm sequence number in confirm mode."""
        seq: list[int | None] = [None]

        def run() -> None:
            if immediate:
                raise AMQPNotImplemented(replies.immediate_unsupported())
            if self.confirm:
                self._publish_seq += 1
                seq[0] = self._publish_seq
            args = (body, exchange, routing_key, mandatory, properties or {}, seq[0])
            if self.broker.alarms and _alarm.hold_publish(self, args):
                return  # a resource alarm blocked the connection: handled when it clears
            self.broker.publish(self, *args)

        self._async(M.BASIC_PUBLISH, run)
        return seq[0]

    def publish_now(self, *args: Any) -> None:
        """A publish held by a resource alarm, handled now (core/alarm.py)."""
        self._async(M.BASIC_PUBLISH, lambda: self.broker.publish(self, *args))

    def _dispatch_all(self) -> None:
        seen: dict[int, Queue] = {}
        for consumer in self.consumers.values():
            seen[id(consumer.queue)] = consumer.queue
        for queue in seen.values():
            queue.dispatch()


def _assert_equivalent(
    kind: str,
    name: str,
    vhost: str,
    flags: tuple[tuple[str, object, object], ...],
    declared: Mapping[str, Any],
    current: Mapping[str, Any],
    compared_args: tuple[str, ...],
) -> None:
    """406 for a redeclaration that differs, flags first, in RabbitMQ's order of checks."""
    for flag, new, old in flags:
        if new != old:
            raise PreconditionFailed(
                replies.inequivalent_flag(flag, kind, name, vhost, _flag(new), _flag(old))
            )
    diff = inequivalent_args(declared, current, compared_args)
    if diff is not None:
        raise PreconditionFailed(replies.inequivalent_arg(diff[0], kind, name, vhost, *diff[1:]))


def _flag(value: object) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    return str(value)


def _entry_seq(entry: QueuedMessage) -> int:
    return entry.seq
