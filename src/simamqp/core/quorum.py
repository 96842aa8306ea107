"""Quorum queues as a client of RabbitMQ 3.10 sees them (one node: no replication to simulate).

The rules, each from rabbit_quorum_queue / rabbit_fifo (3.10.8) and measured on RabbitMQ 3.10.8:

- Declare: durable only, never exclusive or auto-delete ("invalid property 'auto-delete' |
  'exclusive-owner' | 'non-durable'", checked in that order); no server-generated name. The
  arguments of rabbit_quorum_queue:capabilities() are accepted, an argument only another type
  accepts (``x-max-priority``, ``x-queue-mode``, ``x-max-age``...) is refused "of queue type
  rabbit_quorum_queue". ``x-delivery-limit`` is not validated at all (any value is stored).
  ``x-overflow: reject-publish-dlx`` is accepted but behaves as ``drop-head``.
- Delivery count: every return of a delivered message (nack/reject with requeue,
  basic.recover, the channel or connection closing) increments its delivery count; the
  message carries it as ``x-delivery-count`` on every delivery after the first, and on every
  basic.get-ok (0 included).
- Requeue order: a message returned by nack/reject/recover goes to the back of the queue
  without ``x-delivery-limit`` (rabbit_fifo's ``requeue`` command re-enqueues it), and to the
  "returns" queue, served before every other message, with a limit; a message returned because
  its channel closed always goes to the returns queue. Returns keep delivery order.
- ``x-delivery-limit: N``: a return that takes the count above N dead-letters the message with
  reason ``delivery_limit`` instead (dropped without a dead-letter exchange).
- Length limits count ready messages (not unacknowledged ones) plus dead letters not yet
  confirmed (at-least-once). ``drop-head`` drops from the head after an enqueue;
  ``reject-publish`` accepts the publish that goes over the limit, then refuses publishes
  (publisher nack) until the queue is back at or below 80% of the limit (rabbit_fifo's soft
  limit).
- ``x-dead-letter-strategy: at-least-once`` (needs ``x-overflow: reject-publish`` and a
  dead-letter exchange, else it falls back to at-most-once): a dead letter that reaches no
  queue, or that a target queue refuses, stays with the source queue and is retried every
  180 s (rabbit_fifo_dlx_worker's settle timeout) until every target took it.
- TTL: ``x-message-ttl`` and per-message ``expiration`` (the lower wins); only the head expires
  eagerly. A TTL of 0 gives a message one millisecond to be consumed (rabbit_fifo).
- ``x-expires``: the lease restarts on basic.consume, basic.cancel and basic.get, not on a
  redeclaration (rabbit_fifo's ``last_active``).
- Each unsettled basic.get message is a "once" consumer until it is settled, and a cancelled
  consumer stays until its deliveries are settled: both count in declare-ok's consumer
  count. With ``x-single-active-consumer`` waiting consumers do not count.
- basic.qos with global=true and a non-zero prefetch: consuming is 540 NOT_IMPLEMENTED.
- A restart keeps every message of a quorum queue, persistent or not.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Iterator, Mapping
from typing import TYPE_CHECKING, Any

from . import replies
from .arguments import QueueArgs, amqp_type, erlang_term
from .errors import PreconditionFailed
from .message import Message, QueuedMessage
from .queue_type import register_queue_type
from .queues import ClassicQueue

if TYPE_CHECKING:
    from .broker import Broker
    from .channel import Channel, Consumer
    from .connection import Connection
    from .scheduler import Timer

__all__ = ["QuorumArgs", "QuorumQueue"]

#: rabbit_fifo's ?LOW_LIMIT: a reject-publish queue takes publishes again at or below it.
SOFT_LIMIT_RATIO = 0.8
#: rabbit_fifo_dlx_worker retries unconfirmed at-least-once dead letters this often (ms:
#: dead_letter_worker_publisher_confirm_timeout, 3.10's default).
DEAD_LETTER_RETRY_MS = 180_000
DEAD_LETTER_STRATEGIES = ("at-most-once", "at-least-once")
_INF = float("inf")


class QuorumArgs(QueueArgs):
    """The ``x-`` arguments of a quorum queue, validated as rabbit_amqqueue does for it."""

    __slots__ = ("at_least_once", "delivery_limit", "effective_overflow", "has_delivery_limit")

    def __init__(self, args: Mapping[str, Any], queue: str, vhost: str) -> None:
        # Only the validators of the arguments this type accepts run (check_declare_arguments).
        own = {k: v for k, v in args.items() if k in QuorumQueue.queue_arguments}
        super().__init__(own, queue, vhost)
        strategy = "at-most-once"
        if "x-dead-letter-strategy" in args:
            value = args["x-dead-letter-strategy"]
            if not isinstance(value, str | bytes):
                reason = f"{{unacceptable_type,{amqp_type(value)}}}"
                raise PreconditionFailed(
                    replies.invalid_queue_arg("x-dead-letter-strategy", queue, vhost, reason)
                )
            strategy = erlang_term(value)
            if strategy not in DEAD_LETTER_STRATEGIES:
                raise PreconditionFailed(
                    replies.invalid_queue_arg(
                        "x-dead-letter-strategy", queue, vhost, "invalid_dlx_strategy"
                    )
                )
        for key, positive in (
            ("x-max-in-memory-length", False),
            ("x-max-in-memory-bytes", False),
            ("x-quorum-initial-group-size", True),
        ):
            _check_non_negative(args, key, queue, vhost, positive=positive)
        # reject-publish-dlx is "an invalid overflow strategy for quorum queues": drop-head.
        self.effective_overflow = (
            "reject-publish" if self.overflow == "reject-publish" else "drop-head"
        )
        self.at_least_once = (
            strategy == "at-least-once"
            and self.effective_overflow == "reject-publish"
            and self.dead_letter_exchange is not None
        )
        # x-delivery-limit is not validated: an Erlang term comparison against the count
        # decides. A number compares as a number; anything else is larger than any count.
        self.has_delivery_limit = "x-delivery-limit" in args
        limit = args.get("x-delivery-limit")
        self.delivery_limit: float = (
            limit if isinstance(limit, int | float) and not isinstance(limit, bool) else _INF
        )


def _check_non_negative(
    args: Mapping[str, Any], key: str, queue: str, vhost: str, *, positive: bool
) -> None:
    if key not in args:
        return
    value = args[key]
    if isinstance(value, bool) or not isinstance(value, int):
        reason = f'"expected integer, got {amqp_type(value)}"'
        raise PreconditionFailed(replies.invalid_queue_arg(key, queue, vhost, reason))
    if value < 0:
        raise PreconditionFailed(
            replies.invalid_queue_arg(key, queue, vhost, f"{{value_negative,{value}}}")
        )
    if positive and value == 0:
        raise PreconditionFailed(replies.invalid_queue_arg(key, queue, vhost, "{value_zero,0}"))


class _QuorumReady:
    """Ready messages: rabbit_fifo's ``returns`` queue first, then ``messages``."""

    __slots__ = ("messages", "returns")

    def __init__(self) -> None:
        self.returns: deque[QueuedMessage] = deque()
        self.messages: deque[QueuedMessage] = deque()

    def __len__(self) -> int:
        return len(self.returns) + len(self.messages)

    def __iter__(self) -> Iterator[QueuedMessage]:
        yield from self.returns
        yield from self.messages

    def append(self, entry: QueuedMessage) -> None:
        self.messages.append(entry)

    def append_return(self, entry: QueuedMessage) -> None:
        self.returns.append(entry)

    def head(self) -> QueuedMessage | None:
        if self.returns:
            return self.returns[0]
        return self.messages[0] if self.messages else None

    def popleft(self) -> QueuedMessage:
        return self.returns.popleft() if self.returns else self.messages.popleft()

    def pop(self) -> QueuedMessage:
        return self.messages.pop() if self.messages else self.returns.pop()

    def insert_sorted(self, entry: QueuedMessage) -> None:
        # A delivery that never reached its consumer (a fault) is served first again.
        self.returns.appendleft(entry)

    def clear(self) -> list[QueuedMessage]:
        out = list(self)
        self.returns.clear()
        self.messages.clear()
        return out


@register_queue_type
class QuorumQueue(ClassicQueue):
    """A quorum queue: the rules in this module's docstring."""

    type_name = "quorum"
    module = "rabbit_quorum_queue"
    #: rabbit_quorum_queue:capabilities() in 3.10.8.
    queue_arguments = (
        "x-dead-letter-exchange",
        "x-dead-letter-routing-key",
        "x-dead-letter-strategy",
        "x-expires",
        "x-max-length",
        "x-max-length-bytes",
        "x-max-in-memory-length",
        "x-max-in-memory-bytes",
        "x-overflow",
        "x-single-active-consumer",
        "x-queue-type",
        "x-quorum-initial-group-size",
        "x-delivery-limit",
        "x-message-ttl",
        "x-queue-leader-locator",
    )
    consumer_arguments = ("x-priority", "x-credit")
    equivalence_checked_args = queue_arguments
    server_named = False
    supports_global_qos = False

    def __init__(
        self,
        broker: Broker,
        vhost: str,
        name: str,
        *,
        durable: bool,
        exclusive_owner: Connection | None,
        auto_delete: bool,
        arguments: Mapping[str, Any],
        args: QueueArgs,
    ) -> None:
        assert isinstance(args, QuorumArgs)
        self.qargs = args
        #: Unsettled basic.get deliveries (by id(); the entry keeps its id from being reused).
        self._getters: dict[int, QueuedMessage] = {}
        #: Checkouts so far: the order unsettled deliveries are returned in (rabbit_fifo's
        #: per-consumer message ids).
        self._checkouts = 0
        #: Unsettled consumer deliveries (by id(): the entry, and its consumer's identity,
        #: rabbit_fifo's consumer id {tag, channel}) and how many each identity holds: a
        #: cancelled consumer stays (and counts) until its deliveries are settled.
        self._holders: dict[int, tuple[QueuedMessage, tuple[int, str]]] = {}
        self._held: dict[tuple[int, str], int] = {}
        #: reject-publish: refusing publishes until back under the soft limit.
        self.blocked = False
        #: at-least-once dead letters not yet taken by every target: (message, reason).
        self.dead_letters: deque[tuple[Message, str]] = deque()
        self._dead_letter_timer: Timer | None = None
        super().__init__(
            broker,
            vhost,
            name,
            durable=durable,
            exclusive_owner=exclusive_owner,
            auto_delete=auto_delete,
            arguments=arguments,
            args=args,
        )
        self._returns_and_messages = _QuorumReady()
        self.ready = self._returns_and_messages

    @classmethod
    def is_compatible(cls, durable: bool, exclusive: bool, auto_delete: bool) -> bool:
        return durable and not exclusive and not auto_delete

    @classmethod
    def parse_arguments(cls, arguments: Mapping[str, Any], name: str, vhost: str) -> QuorumArgs:
        return QuorumArgs(arguments, name, vhost)

    # -- inspection -------------------------------------------------------------------------

    @property
    def consumer_count(self) -> int:
        """Consumers as rabbit_fifo counts them: active ones, plus one "once" consumer per
        unsettled basic.get message (measured: two gets on one channel count two)."""
        if self.args.single_active_consumer:
            consumers = 1 if self.active_consumer is not None else 0
        else:
            consumers = len(self.consumer_order)
        if self._held:
            live = {(id(c.channel), c.tag) for c in self.consumer_order}
            consumers += sum(1 for key in self._held if key not in live)
        return consumers + len(self._getters)

    def delivery_count(self, entry: QueuedMessage) -> int:
        return entry.delivery_count

    def message_for(self, entry: QueuedMessage) -> Message:
        count = entry.delivery_count
        return entry.message if count == 0 else _with_delivery_count(entry.message, count)

    def message_for_get(self, entry: QueuedMessage) -> Message:
        return _with_delivery_count(entry.message, entry.delivery_count)

    # -- publishing -------------------------------------------------------------------------

    def _expiry_for(self, message: Message, now: float) -> float | None:
        ttl_ms = self.args.message_ttl_ms
        expiration = message.properties.get("expiration")
        if expiration is not None:
            per_message = int(expiration)
            ttl_ms = per_message if ttl_ms is None else min(ttl_ms, per_message)
        if ttl_ms is None:
            return None
        # rabbit_fifo:update_expiry_header: a TTL of 0 is one millisecond to be consumed.
        return now + max(ttl_ms, 1) / 1000.0

    def enqueue(self, message: Message, now: float) -> bool:
        broker = self.broker
        if self.blocked:
            broker.emit("reject-publish", queue=self.name, vhost=self.vhost, msg=message.id)
            return False
        self._seq += 1
        entry = QueuedMessage(message, self._seq, self._expiry_for(message, now), 0)
        if broker.tracing:
            broker.emit("enqueue", queue=self.name, vhost=self.vhost, msg=message.id)
        if not len(self.ready) and self.consumers:
            consumer = self._next_consumer()
            if consumer is not None:
                consumer.channel.deliver(consumer, self, entry)
                return True
        self.ready.append(entry)
        self.ready_bytes += len(message.body)
        # rabbit_fifo apply_enqueue: checkout to consumers, then evaluate the length limit.
        self.drop_expired()
        self.dispatch()
        self._evaluate_limit()
        return True

    def overflow(self, message: Message, now: float) -> bool:
        if self.qargs.effective_overflow == "reject-publish":
            self.broker.emit("reject-publish", queue=self.name, vhost=self.vhost, msg=message.id)
            return False
        if not self.enqueue(message, now):
            return False
        if len(self.ready) and not self.deleted:
            entry = self.ready.popleft()
            self.ready_bytes -= len(entry.message.body)
            self.broker.emit("drop-head", queue=self.name, vhost=self.vhost, msg=entry.message.id)
            self._dead_letter(entry.message, "maxlen")
            self.drop_expired()
        return True

    # -- length limits ----------------------------------------------------------------------

    def _over_limit(self) -> bool:
        """rabbit_fifo:is_over_limit: ready messages plus pending dead letters."""
        args = self.args
        if args.max_length is None and args.max_length_bytes is None:
            return False
        dead = len(self.dead_letters)
        if args.max_length is not None and len(self.ready) + dead > args.max_length:
            return True
        dead_bytes = sum(len(m.body) for m, _ in self.dead_letters) if dead else 0
        return (
            args.max_length_bytes is not None
            and self.ready_bytes + dead_bytes > args.max_length_bytes
        )

    def _below_soft_limit(self) -> bool:
        args = self.args
        dead = len(self.dead_letters)
        if args.max_length is not None and len(self.ready) + dead > int(
            args.max_length * SOFT_LIMIT_RATIO
        ):
            return False
        dead_bytes = sum(len(m.body) for m, _ in self.dead_letters) if dead else 0
        return args.max_length_bytes is None or self.ready_bytes + dead_bytes <= int(
            args.max_length_bytes * SOFT_LIMIT_RATIO
        )

    def _evaluate_limit(self) -> None:
        """rabbit_fifo:evaluate_limit, run after every change of the ready count."""
        args = self.args
        if args.max_length is None and args.max_length_bytes is None:
            return
        if self.qargs.effective_overflow == "drop-head":
            while len(self.ready) and self._over_limit():
                entry = self.ready.popleft()
                self.ready_bytes -= len(entry.message.body)
                self.broker.emit(
                    "drop-head", queue=self.name, vhost=self.vhost, msg=entry.message.id
                )
                self._dead_letter(entry.message, "maxlen")
        elif self._over_limit():
            self.blocked = True
        elif self.blocked and self._below_soft_limit():
            self.blocked = False

    def _drop_head_over_limit(self) -> bool:
        before = len(self.ready)
        self._evaluate_limit()
        return len(self.ready) != before

    # -- delivery and settlement ------------------------------------------------------------

    def checkout(self, entry: QueuedMessage, consumer: Consumer) -> None:
        self.unacked += 1
        self._checkouts += 1
        entry.checkout = self._checkouts
        key = (id(consumer.channel), consumer.tag)
        self._holders[id(entry)] = (entry, key)
        self._held[key] = self._held.get(key, 0) + 1

    def dequeue(self, getter: Channel | None) -> QueuedMessage | None:
        entry = super().dequeue(getter)
        if entry is not None:
            if getter is not None:
                self._getters[id(entry)] = entry
                self._checkouts += 1
                entry.checkout = self._checkouts
            self._evaluate_limit()
        return entry

    def declared(self, passive: bool) -> None:
        """rabbit_fifo's ``last_active`` (the x-expires lease) restarts on basic.consume,
        basic.cancel, basic.get and a redeclaration, not on a passive declare (measured)."""
        if not passive:
            self.touch()

    def dispatch(self) -> None:
        super().dispatch()
        if self.blocked:
            self._evaluate_limit()

    def _settled(self, entry: QueuedMessage) -> None:
        self.unacked -= 1
        self._getters.pop(id(entry), None)
        holder = self._holders.pop(id(entry), None)
        if holder is not None:
            key = holder[1]
            left = self._held[key] - 1
            if left:
                self._held[key] = left
            else:
                del self._held[key]

    def complete(self, entry: QueuedMessage) -> None:
        self._settled(entry)

    def put_back(self, entry: QueuedMessage, *, returned: bool) -> None:
        if not returned:
            self._returns_and_messages.insert_sorted(entry)
            self.ready_bytes += len(entry.message.body)
            return
        # Never checked out: count the return, as its channel's death would, settling nothing.
        self.unacked += 1
        self.requeue([entry], channel_closed=True)

    def requeue(self, entries: list[QueuedMessage], *, channel_closed: bool = False) -> None:
        """Return deliveries (rabbit_fifo return_one): count, then dead-letter over the
        delivery limit; else to the returns queue, served first (the channel closed, or a
        delivery limit is set), or to the back of the queue (a nack, reject or recover without
        a delivery limit: rabbit_fifo's ``requeue`` command re-enqueues it)."""
        entries = sorted(entries, key=_checkout_order)
        if self.deleted:
            for entry in entries:
                self._settled(entry)
            return
        args = self.qargs
        for entry in entries:
            self._settled(entry)
            entry.delivery_count += 1
            entry.redelivered = True
            if not args.has_delivery_limit and not channel_closed:
                self._returns_and_messages.append(entry)
            elif args.has_delivery_limit and entry.delivery_count > args.delivery_limit:
                self.broker.emit(
                    "delivery-limit", queue=self.name, vhost=self.vhost, msg=entry.message.id
                )
                self._dead_letter(entry.message, "delivery_limit")
                continue
            else:
                self._returns_and_messages.append_return(entry)
            self.ready_bytes += len(entry.message.body)
        # rabbit_fifo checks out to consumers first, then evaluates the length limit.
        self.drop_expired()
        self.dispatch()
        self._evaluate_limit()

    def discard(self, entries: list[QueuedMessage], reason: str) -> None:
        for entry in sorted(entries, key=_checkout_order):
            self._settled(entry)
            if not self.deleted:
                self._dead_letter(entry.message, reason)
        self._evaluate_limit()

    def purge(self) -> int:
        count = super().purge()
        self._evaluate_limit()
        return count

    def clear(self) -> None:
        super().clear()
        self._getters.clear()
        self._holders.clear()
        self._held.clear()
        self.dead_letters.clear()

    # -- expiry -----------------------------------------------------------------------------

    def drop_expired(self) -> None:
        before = len(self.ready)
        super().drop_expired()
        if self.blocked and len(self.ready) != before:
            self._evaluate_limit()

    # -- dead-lettering ---------------------------------------------------------------------

    def _dead_letter(self, message: Message, reason: str) -> None:
        if not self.qargs.at_least_once:
            self.broker.dead_letter(self, message, reason)
            return
        if not self.broker.dead_letter(self, message, reason):
            # Unconfirmed: kept (and counted against the length limit) until a retry lands.
            self.dead_letters.append((message, reason))
            self._arm_dead_letter_timer()

    def _arm_dead_letter_timer(self) -> None:
        if self._dead_letter_timer is None and self.dead_letters:
            self._dead_letter_timer = self.broker.scheduler.call_at(
                self.broker.clock.now() + DEAD_LETTER_RETRY_MS / 1000.0,
                self._retry_dead_letters,
                label=f"dlx-retry:{self.name}",
            )

    def _retry_dead_letters(self) -> None:
        self._dead_letter_timer = None
        if self.deleted:
            return
        pending = list(self.dead_letters)
        self.dead_letters.clear()
        for message, reason in pending:
            if not self.broker.dead_letter(self, message, reason):
                self.dead_letters.append((message, reason))
        self._arm_dead_letter_timer()
        self._evaluate_limit()

    def cancel_timers(self) -> None:
        super().cancel_timers()
        if self._dead_letter_timer is not None:
            self._dead_letter_timer.cancel()
            self._dead_letter_timer = None

    # -- restart ----------------------------------------------------------------------------

    def recover(self) -> None:
        """A quorum queue keeps every message across a restart (its Raft log holds them all,
        persistent or not); returned deliveries were counted when their channels closed."""
        self._getters.clear()
        self.cancel_timers()
        self.touch()
        self.drop_expired()
        self._arm_dead_letter_timer()


def _checkout_order(entry: QueuedMessage) -> int:
    return entry.checkout


def _with_delivery_count(message: Message, count: int) -> Message:
    """The message with ``x-delivery-count`` set (rabbit_basic:add_header: replaced in place
    when present, else added after the other headers)."""
    headers = dict(message.headers or {})
    headers["x-delivery-count"] = count
    properties = dict(message.properties)
    properties["application_headers"] = headers
    return Message(
        message.id,
        message.body,
        properties,
        message.exchange,
        message.routing_key,
        message.routing_keys,
    )
