"""Classic queues with RabbitMQ 3.10 semantics.

The rules, each from rabbit_amqqueue_process / the RabbitMQ docs:
- Messages are kept in publish order; a requeued message goes back to its original position
  (https://www.rabbitmq.com/confirms.html#consumer-nacks-requeue) with ``redelivered`` set.
- Consumers are served round-robin, skipping those at their prefetch limit
  (rabbit_queue_consumers); with ``x-single-active-consumer`` only the oldest consumer is served
  until it goes away (https://www.rabbitmq.com/consumers.html#single-active-consumer).
- ``x-message-ttl`` and per-message ``expiration``: the earlier one wins; only the head of the
  queue expires eagerly, a message behind a live one expires when it reaches the head
  (https://www.rabbitmq.com/ttl.html#per-message-ttl-caveats). A queue TTL of 0 discards (or
  dead-letters) a message that cannot be delivered at once.
- ``x-max-length``/``x-max-length-bytes`` count ready messages only; ``drop-head`` drops (and
  dead-letters) from the head after enqueueing, ``reject-publish`` refuses the new message
  (publisher nack), ``reject-publish-dlx`` also dead-letters it
  (https://www.rabbitmq.com/maxlength.html).
- ``x-max-priority``: higher priority first, FIFO within a priority; priorities above the
  maximum count as the maximum (https://www.rabbitmq.com/priority.html).
- ``x-expires``: the queue is deleted after being unused (no consumers, no basic.get, no
  redeclare) for that long (https://www.rabbitmq.com/ttl.html#queue-ttl).
"""

from __future__ import annotations

from bisect import bisect_left
from collections import deque
from collections.abc import Iterator, Mapping
from typing import TYPE_CHECKING, Any, ClassVar, Protocol

from .arguments import EQUIVALENCE_CHECKED_QUEUE_ARGS, QueueArgs
from .message import Message, QueuedMessage
from .queue_type import Queue, register_queue_type
from .trace import Shape

if TYPE_CHECKING:
    from .broker import Broker
    from .channel import Channel, Consumer
    from .connection import Connection
    from .scheduler import Timer

__all__ = ["ClassicQueue", "ReadyMessages"]

#: Trace shape of the enqueue event (``Trace.record``).
_ENQUEUE = Shape("enqueue", queue="", vhost="", msg=1)


class ReadyMessages(Protocol):
    """The ready messages of a queue, in delivery order (each queue type has its own)."""

    def __len__(self) -> int: ...
    def __iter__(self) -> Iterator[QueuedMessage]: ...
    def append(self, entry: QueuedMessage) -> None: ...
    def head(self) -> QueuedMessage | None: ...
    def popleft(self) -> QueuedMessage: ...
    def pop(self) -> QueuedMessage: ...
    def insert_sorted(self, entry: QueuedMessage) -> None: ...
    def clear(self) -> list[QueuedMessage]: ...


class _Ready:
    """Ready messages, kept sorted by ``seq`` (FIFO)."""

    __slots__ = ("_items",)

    def __init__(self) -> None:
        self._items: deque[QueuedMessage] = deque()

    def __len__(self) -> int:
        return len(self._items)

    def __iter__(self) -> Iterator[QueuedMessage]:
        return iter(self._items)

    def append(self, entry: QueuedMessage) -> None:
        self._items.append(entry)

    def head(self) -> QueuedMessage | None:
        return self._items[0] if self._items else None

    def popleft(self) -> QueuedMessage:
        return self._items.popleft()

    def pop(self) -> QueuedMessage:
        return self._items.pop()

    def insert_sorted(self, entry: QueuedMessage) -> None:
        items = self._items
        if not items or entry.seq > items[-1].seq:
            items.append(entry)
        elif entry.seq < items[0].seq:
            items.appendleft(entry)
        else:
            items.insert(bisect_left(items, entry.seq, key=_seq), entry)

    def clear(self) -> list[QueuedMessage]:
        out = list(self._items)
        self._items.clear()
        return out


def _seq(entry: QueuedMessage) -> int:
    return entry.seq


class _PriorityReady:
    """Ready messages of a priority queue: one FIFO per priority, highest first."""

    __slots__ = ("_count", "_levels")

    def __init__(self, max_priority: int) -> None:
        self._levels = [_Ready() for _ in range(max_priority + 1)]
        self._count = 0

    def __len__(self) -> int:
        return self._count

    def __iter__(self) -> Iterator[QueuedMessage]:
        for level in reversed(self._levels):
            yield from level

    def append(self, entry: QueuedMessage) -> None:
        self._levels[entry.priority].append(entry)
        self._count += 1

    def head(self) -> QueuedMessage | None:
        for level in reversed(self._levels):
            if len(level):
                return level.head()
        return None

    def popleft(self) -> QueuedMessage:
        for level in reversed(self._levels):
            if len(level):
                self._count -= 1
                return level.popleft()
        raise IndexError("pop from an empty queue")

    def pop(self) -> QueuedMessage:
        for level in self._levels:
            if len(level):
                self._count -= 1
                return level.pop()
        raise IndexError("pop from an empty queue")

    def insert_sorted(self, entry: QueuedMessage) -> None:
        self._levels[entry.priority].insert_sorted(entry)
        self._count += 1

    def clear(self) -> list[QueuedMessage]:
        out = list(self)
        for level in self._levels:
            level.clear()
        self._count = 0
        return out


@register_queue_type
class ClassicQueue(Queue):
    """A classic queue (the default type): the rules in this module's docstring."""

    type_name = "classic"
    module = "rabbit_classic_queue"
    #: rabbit_classic_queue:capabilities() in 3.10.8.
    queue_arguments: ClassVar[tuple[str, ...]] = (
        "x-expires",
        "x-message-ttl",
        "x-dead-letter-exchange",
        "x-dead-letter-routing-key",
        "x-max-length",
        "x-max-length-bytes",
        "x-max-priority",
        "x-overflow",
        "x-queue-mode",
        "x-queue-version",
        "x-single-active-consumer",
        "x-queue-type",
        "x-queue-master-locator",
    )
    consumer_arguments: ClassVar[tuple[str, ...]] = (
        "x-cancel-on-ha-failover",
        "x-priority",
        "x-credit",
    )
    equivalence_checked_args: ClassVar[tuple[str, ...]] = EQUIVALENCE_CHECKED_QUEUE_ARGS

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
        self.args: QueueArgs = args
        self.ready: ReadyMessages = (
            _PriorityReady(args.max_priority) if args.max_priority else _Ready()
        )
        self.ready_bytes = 0
        self.consumers: deque[Consumer] = deque()
        #: Consumers in subscription order (single-active-consumer picks the oldest).
        self.consumer_order: list[Consumer] = []
        self.active_consumer: Consumer | None = None
        self._seq = 0
        self._head_timer: Timer | None = None
        self._head_timer_at: float | None = None
        self._expires_timer: Timer | None = None
        self._dispatching = False
        self.touch()

    @classmethod
    def parse_arguments(cls, arguments: Mapping[str, Any], name: str, vhost: str) -> QueueArgs:
        return QueueArgs(arguments, name, vhost)

    def declared(self, passive: bool) -> None:
        """A declare-ok named this queue: any declaration restarts the x-expires lease."""
        self.touch()

    def _dead_letter(self, message: Message, reason: str) -> None:
        """Dead-letter ``message`` (to the DLX, if the queue has one)."""
        self.broker.dead_letter(self, message, reason)

    # -- inspection -------------------------------------------------------------------------

    @property
    def message_count(self) -> int:
        """Ready messages, as queue.declare-ok and basic.get-ok report them."""
        return len(self.ready)

    @property
    def consumer_count(self) -> int:
        return len(self.consumer_order)

    def ready_entries(self) -> Iterator[QueuedMessage]:
        return iter(self.ready)

    @property
    def dispatching(self) -> bool:
        return self._dispatching

    def message_for(self, entry: QueuedMessage) -> Message:
        return entry.message

    def message_for_get(self, entry: QueuedMessage) -> Message:
        return entry.message

    # -- publishing -------------------------------------------------------------------------

    def will_overflow(self, message: Message) -> bool:
        args = self.args
        if args.max_length is not None and len(self.ready) + 1 > args.max_length:
            return True
        return (
            args.max_length_bytes is not None
            and self.ready_bytes + len(message.body) > args.max_length_bytes
        )

    def _expiry_for(self, message: Message, now: float) -> float | None:
        ttl_ms = self.args.message_ttl_ms
        expiration = message.properties.get("expiration")
        if expiration is not None:
            per_message = int(expiration)
            ttl_ms = per_message if ttl_ms is None else min(ttl_ms, per_message)
        return None if ttl_ms is None else now + ttl_ms / 1000.0

    def _priority_for(self, message: Message) -> int:
        max_priority = self.args.max_priority
        if not max_priority:
            return 0
        priority = message.properties.get("priority") or 0
        return min(int(priority), max_priority)

    def enqueue(self, message: Message, now: float) -> bool:
        """Accept a routed message; False when the queue refused it (reject-publish)."""
        broker = self.broker
        args = self.args
        if (args.max_length is not None or args.max_length_bytes is not None) and (
            args.overflow != "drop-head" and self.will_overflow(message)
        ):
            broker.emit("reject-publish", queue=self.name, vhost=self.vhost, msg=message.id)
            if args.overflow == "reject-publish-dlx":
                self._dead_letter(message, "maxlen")
            return False
        self._seq += 1
        if args.message_ttl_ms is None and not args.max_priority:
            # Hot path (benchmarks/): no queue TTL or priority to look up.
            expiration = message.properties.get("expiration")
            expires_at = None if expiration is None else now + int(expiration) / 1000.0
            entry = QueuedMessage(message, self._seq, expires_at, 0)
        else:
            entry = QueuedMessage(
                message, self._seq, self._expiry_for(message, now), self._priority_for(message)
            )
        if broker.tracing:
            broker.trace.record(broker.clock.now(), _ENQUEUE, (self.name, self.vhost, message.id))
        # Try to hand the message straight to a consumer, as rabbit_amqqueue_process's
        # attempt_delivery does, before it counts against length limits or TTL.
        if not len(self.ready) and self.consumers:
            consumer = self._next_consumer()
            if consumer is not None:
                consumer.channel.deliver(consumer, self, entry)
                return True
        if self.args.message_ttl_ms == 0:
            # A queue TTL of 0 discards what cannot be delivered at once (dead-lettered when
            # the queue has a DLX, like an expiry).
            broker.emit("expire", queue=self.name, vhost=self.vhost, msg=message.id)
            if self.args.dead_letter_exchange is not None:
                self._dead_letter(message, "expired")
            return True
        self.ready.append(entry)
        self.ready_bytes += len(message.body)
        dropped = self._drop_head_over_limit()
        if dropped or len(self.ready) == 1:
            self.drop_expired()
        self.dispatch()
        return True

    def _drop_head_over_limit(self) -> bool:
        args = self.args
        if (args.max_length is None and args.max_length_bytes is None) or (
            args.overflow != "drop-head"
        ):
            return False
        dropped = False
        ready = self.ready
        while len(ready) and (
            (args.max_length is not None and len(ready) > args.max_length)
            or (args.max_length_bytes is not None and self.ready_bytes > args.max_length_bytes)
        ):
            entry = ready.popleft()
            self.ready_bytes -= len(entry.message.body)
            self.broker.emit("drop-head", queue=self.name, vhost=self.vhost, msg=entry.message.id)
            self._dead_letter(entry.message, "maxlen")
            dropped = True
        return dropped

    # -- expiry -----------------------------------------------------------------------------

    def drop_expired(self) -> None:
        """Drop (dead-letter) expired messages at the head; arm a timer for the next head."""
        now = self.broker.clock.now()
        ready = self.ready
        while True:
            head = ready.head()
            if head is None or head.expires_at is None:
                self._arm_head_timer(None)
                return
            if head.expires_at > now:
                self._arm_head_timer(head.expires_at)
                return
            ready.popleft()
            self.ready_bytes -= len(head.message.body)
            self.broker.emit("expire", queue=self.name, vhost=self.vhost, msg=head.message.id)
            self._dead_letter(head.message, "expired")

    def _arm_head_timer(self, when: float | None) -> None:
        if when == self._head_timer_at:
            return
        if self._head_timer is not None:
            self._head_timer.cancel()
            self._head_timer = None
        self._head_timer_at = when
        if when is not None:
            self._head_timer = self.broker.scheduler.call_at(
                when, self._on_head_timer, label=f"ttl:{self.name}"
            )

    def _on_head_timer(self) -> None:
        self._head_timer = None
        self._head_timer_at = None
        if not self.deleted:
            self.drop_expired()
            self.dispatch()

    def touch(self) -> None:
        """The queue was used: restart its ``x-expires`` lease."""
        expires_ms = self.args.expires_ms
        if expires_ms is None or self.deleted:
            return
        if self._expires_timer is not None:
            self._expires_timer.cancel()
            self._expires_timer = None
        if not self.consumer_order:
            self._expires_timer = self.broker.scheduler.call_at(
                self.broker.clock.now() + expires_ms / 1000.0,
                self._on_expires_timer,
                label=f"expires:{self.name}",
            )

    def _on_expires_timer(self) -> None:
        self._expires_timer = None
        if not self.deleted and not self.consumer_order:
            self.broker.delete_queue(self, reason="expired")

    def cancel_timers(self) -> None:
        for timer in (self._head_timer, self._expires_timer):
            if timer is not None:
                timer.cancel()
        self._head_timer = self._expires_timer = None
        self._head_timer_at = None

    # -- delivery ---------------------------------------------------------------------------

    def _next_consumer(self) -> Consumer | None:
        if self.args.single_active_consumer:
            active = self.active_consumer
            return active if active is not None and active.can_take() else None
        consumers = self.consumers
        for _ in range(len(consumers)):
            consumer = consumers[0]
            consumers.rotate(-1)  # served (or skipped) consumers go to the back: round robin
            if consumer.can_take():
                return consumer
        return None

    def dispatch(self) -> None:
        """Deliver ready messages to consumers with capacity."""
        if self._dispatching or not self.consumers or self.deleted or not len(self.ready):
            return  # (an empty queue: the common case after an ack)
        self._dispatching = True
        try:
            ready = self.ready
            while len(ready):
                head = ready.head()
                if head is not None and head.expires_at is not None:
                    self.drop_expired()
                    if not len(ready):
                        break
                consumer = self._next_consumer()
                if consumer is None:
                    break
                entry = ready.popleft()
                self.ready_bytes -= len(entry.message.body)
                consumer.channel.deliver(consumer, self, entry)
        finally:
            self._dispatching = False
        if len(self.ready):
            self.drop_expired()

    def dequeue(self, getter: Channel | None) -> QueuedMessage | None:
        """Take the head for basic.get (expired heads are dropped first)."""
        self.touch()
        head = self.ready.head()
        if head is not None and head.expires_at is not None:
            self.drop_expired()
        if not len(self.ready):
            return None
        entry = self.ready.popleft()
        self.ready_bytes -= len(entry.message.body)
        if getter is not None:
            self.unacked += 1
        if len(self.ready):
            self.drop_expired()
        return entry

    def checkout(self, entry: QueuedMessage, consumer: Consumer) -> None:
        self.unacked += 1

    def put_back(self, entry: QueuedMessage, *, returned: bool) -> None:
        self.ready.insert_sorted(entry)
        self.ready_bytes += len(entry.message.body)

    def requeue(self, entries: list[QueuedMessage], *, channel_closed: bool = False) -> None:
        """Put unacknowledged messages back at their original positions, redelivered."""
        if self.deleted:
            return
        for entry in entries:
            entry.redelivered = True
            self.unacked -= 1
            self.ready.insert_sorted(entry)
            self.ready_bytes += len(entry.message.body)
        # requeue_and_run enforces drop-head limits too (rabbit_amqqueue_process).
        self._drop_head_over_limit()
        self.drop_expired()
        self.dispatch()

    def complete(self, entry: QueuedMessage) -> None:
        self.unacked -= 1

    def discard(self, entries: list[QueuedMessage], reason: str) -> None:
        for entry in entries:
            self.unacked -= 1
            if not self.deleted:
                self._dead_letter(entry.message, reason)

    def purge(self) -> int:
        entries = self.ready.clear()
        self.ready_bytes = 0
        self._arm_head_timer(None)
        return len(entries)

    def clear(self) -> None:
        self.ready.clear()
        self.ready_bytes = 0

    def recover(self) -> None:
        """Durable classic queues keep their persistent messages across a restart
        (https://www.rabbitmq.com/queues.html#durability); unacked ones come back too."""
        kept = [e for e in self.ready.clear() if e.message.persistent]
        self.ready_bytes = 0
        for entry in kept:
            self.ready.append(entry)
            self.ready_bytes += len(entry.message.body)
        self.cancel_timers()
        self.touch()
        self.drop_expired()

    @property
    def overflow_mode(self) -> str | None:
        return self.args.overflow

    def overflow(self, message: Message, now: float) -> bool:
        overflow = self.args.overflow
        if overflow in ("reject-publish", "reject-publish-dlx"):
            self.broker.emit("reject-publish", queue=self.name, vhost=self.vhost, msg=message.id)
            if overflow == "reject-publish-dlx":
                self._dead_letter(message, "maxlen")
            return False
        self.enqueue(message, now)
        if len(self.ready) and not self.deleted:
            entry = self.ready.popleft()
            self.ready_bytes -= len(entry.message.body)
            self.broker.emit("drop-head", queue=self.name, vhost=self.vhost, msg=entry.message.id)
            self._dead_letter(entry.message, "maxlen")
            self.drop_expired()
        return True

    # -- consumers --------------------------------------------------------------------------

    def add_consumer(self, consumer: Consumer) -> None:
        self.consumers.append(consumer)
        self.consumer_order.append(consumer)
        self.had_consumer = True
        if self.args.single_active_consumer and self.active_consumer is None:
            self.active_consumer = consumer
        if self._expires_timer is not None:
            self._expires_timer.cancel()
            self._expires_timer = None
        self.dispatch()

    def remove_consumer(self, consumer: Consumer) -> None:
        try:
            self.consumers.remove(consumer)
            self.consumer_order.remove(consumer)
        except ValueError:
            return
        if self.active_consumer is consumer:
            self.active_consumer = self.consumer_order[0] if self.consumer_order else None
            if self.active_consumer is not None:
                self.broker.emit(
                    "single-active-consumer",
                    queue=self.name,
                    vhost=self.vhost,
                    consumer_tag=self.active_consumer.tag,
                )
        if not self.consumer_order:
            self.touch()
        self.dispatch()

    @property
    def consumer_channels(self) -> list[Channel]:
        return [c.channel for c in self.consumer_order]
