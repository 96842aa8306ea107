"""The queue protocol: what routing, channels and faults may ask of any queue.

Classic, quorum and stream queues are implementations of this one protocol, chosen at declare
time from ``x-queue-type`` (``Channel.queue_declare`` looks the class up in ``QUEUE_TYPES``,
``channel.py``). Nothing outside a queue module branches on a type name: a type states its
lifecycle limits (``is_compatible``), the arguments it accepts (``queue_arguments``,
``consumer_arguments``) and what it supports (``supports_global_qos``...), and behaves through
the methods below.

The model is RabbitMQ's ``rabbit_queue_type`` behaviour (``deps/rabbit/src/rabbit_queue_type.erl``):
``is_compatible(Durable, Exclusive, AutoDelete)``, ``capabilities()`` listing the queue and
consumer arguments of a type, and a channel that only speaks ``consume``/``cancel``/``deliver``/
``settle(complete | requeue | discard)``/``dequeue``/``stat``. Here:

=====================  ================================================================
rabbit_queue_type      ``Queue``
=====================  ================================================================
is_compatible/3        ``is_compatible(durable, exclusive, auto_delete)``
capabilities()         ``queue_arguments``, ``consumer_arguments``, ``server_named``
declare (arg checks)   ``parse_arguments(arguments, name, vhost)``
consume / cancel       ``check_consumer(...)``, ``add_consumer(consumer)`` / ``remove_consumer``
deliver                the queue calls ``Channel.deliver(consumer, queue, entry)``
settle complete        ``complete(entry)``
settle requeue         ``requeue(entries, channel_closed=...)``
settle discard         ``discard(entries, reason)``
(channel down)         ``requeue(entries, channel_closed=True)`` (a stream only forgets them)
dequeue                ``dequeue(getter)`` (basic.get)
stat                   ``message_count``, ``consumer_count``, ``unacked``
=====================  ================================================================

``getter`` is the channel that must acknowledge a basic.get delivery (None for no_ack): a
quorum queue counts each unsettled basic.get message as a consumer (rabbit_fifo's "once"
consumers), a classic queue only counts it as unacknowledged.

Queues call the rest of the engine only through ``Broker``'s public methods (``emit``,
``dead_letter``, ``delete_queue``, ``next_queue_serial``...) and ``Channel.deliver``.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Iterator, Mapping
from typing import TYPE_CHECKING, Any, ClassVar, TypeVar

from . import replies
from .arguments import amqp_type, erlang_term
from .errors import PreconditionFailed
from .message import Message, QueuedMessage

if TYPE_CHECKING:
    from .broker import Broker
    from .channel import Channel, Consumer
    from .connection import Connection

__all__ = [
    "DEFAULT_QUEUE_TYPE",
    "QUEUE_TYPES",
    "Queue",
    "check_argument_keys",
    "check_consumer_argument_keys",
    "queue_class_for",
    "register_queue_type",
]


class Queue(ABC):
    """One queue of some type: the protocol the rest of the engine speaks to.

    Subclasses set ``type_name`` (the ``x-queue-type`` value), ``module`` (RabbitMQ's module
    name, as error texts print it), ``queue_arguments``, ``consumer_arguments`` and
    ``equivalence_checked_args``, and implement the abstract methods.
    """

    kind = "queue"
    #: The ``x-queue-type`` value that selects this implementation.
    type_name: ClassVar[str]
    #: RabbitMQ's module for the type ("rabbit_classic_queue"), as reply texts name it.
    module: ClassVar[str]
    #: ``x-`` arguments a declare may carry (capabilities() queue_arguments). An argument
    #: another type accepts but this one does not is refused with "... of queue type M".
    queue_arguments: ClassVar[tuple[str, ...]]
    #: Consumer arguments accepted by basic.consume (capabilities() consumer_arguments).
    consumer_arguments: ClassVar[tuple[str, ...]]
    #: Arguments compared on redeclaration (rabbit_amqqueue:assert_args_equivalence uses the
    #: type's queue_arguments).
    equivalence_checked_args: ClassVar[tuple[str, ...]]
    #: Whether ``queue.declare`` with an empty name may generate one (capabilities()).
    server_named: ClassVar[bool] = True
    #: Whether a channel with a global prefetch (basic.qos global=true) may consume.
    supports_global_qos: ClassVar[bool] = True
    #: Whether an exclusive basic.consume locks other consumers out (a stream does not enforce
    #: it: measured on 3.10.8, a second consumer is accepted).
    enforces_exclusive_consume: ClassVar[bool] = True

    #: The consumers, oldest first (what a deleted queue cancels, what auto-delete counts).
    consumer_order: list[Consumer]

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
        args: Any,
    ) -> None:
        self.broker = broker
        self.vhost = vhost
        self.name = name
        self.durable = durable
        self.exclusive_owner = exclusive_owner
        self.auto_delete = auto_delete
        self.arguments: dict[str, Any] = dict(arguments)
        #: The validated arguments (``parse_arguments``' result).
        self.args = args
        #: Deliveries waiting for an ack (consumer deliveries and basic.get alike).
        self.unacked = 0
        self.had_consumer = False
        self.deleted = False
        #: Creation order (stands in for Erlang pid order when RabbitMQ sorts by queue).
        self.serial = broker.next_queue_serial()

    # -- type description (rabbit_queue_type callbacks) -------------------------------------

    @classmethod
    def is_compatible(cls, durable: bool, exclusive: bool, auto_delete: bool) -> bool:
        """Whether this type can have these lifecycle flags (rabbit_queue_type:is_compatible)."""
        return True

    @classmethod
    def incompatible_property(cls, durable: bool, exclusive: bool, auto_delete: bool) -> str | None:
        """The lifecycle flag this type refuses, named as RabbitMQ names it, in its order of
        checks (rabbit_queue_type_util: auto-delete, exclusive, non-durable); None if none."""
        if cls.is_compatible(durable, exclusive, auto_delete):
            return None
        if auto_delete and not cls.is_compatible(True, False, True):
            return "auto-delete"
        if exclusive and not cls.is_compatible(True, True, False):
            return "exclusive-owner"
        return "non-durable"

    @classmethod
    @abstractmethod
    def parse_arguments(cls, arguments: Mapping[str, Any], name: str, vhost: str) -> Any:
        """Validate a new queue's arguments (406 PRECONDITION_FAILED as RabbitMQ words it)."""

    @classmethod
    def check_declare(cls, args: Any) -> None:
        """The type's own declare checks, after the lifecycle ones (rabbit_stream_queue:declare
        checks the segment size there); ``args`` is ``parse_arguments``' result."""
        return None

    def check_consumer(self, *, no_ack: bool, prefetch: int, arguments: Mapping[str, Any]) -> None:
        """Refuse a consumer this type cannot serve, before it exists (the errors of
        rabbit_queue_type:consume: a stream needs a consumer prefetch and acks)."""
        return None

    # -- inspection -------------------------------------------------------------------------

    @property
    def exclusive(self) -> bool:
        return self.exclusive_owner is not None

    @property
    @abstractmethod
    def message_count(self) -> int:
        """Ready messages, as queue.declare-ok and basic.get-ok report them."""

    @property
    @abstractmethod
    def consumer_count(self) -> int:
        """Consumers, as queue.declare-ok reports them."""

    @property
    @abstractmethod
    def consumer_channels(self) -> list[Channel]:
        """The channels of this queue's consumers, oldest consumer first."""

    @abstractmethod
    def ready_entries(self) -> Iterator[QueuedMessage]:
        """The ready messages in delivery order (inspection: ``broker.queue(name)``)."""

    def details(self) -> dict[str, Any]:
        """Type-specific inspection for ``broker.queue(name).details`` (a stream's offsets)."""
        return {}

    def delivery_count(self, entry: QueuedMessage) -> int:
        """How often ``entry`` was returned to the queue (quorum queues count it)."""
        return 0

    def __repr__(self) -> str:
        return (
            f"<{type(self).__name__} {self.name!r} vhost={self.vhost!r} "
            f"ready={self.message_count} unacked={self.unacked}>"
        )

    # -- publishing -------------------------------------------------------------------------

    @abstractmethod
    def enqueue(self, message: Message, now: float) -> bool:
        """Accept a routed message; False when the queue refused it (a publisher nack)."""

    @property
    def overflow_mode(self) -> str | None:
        """The ``x-overflow`` setting the ``overflow`` fault applies, as its trace event names
        it; None for a type without one (a stream never refuses a publish for length)."""
        return None

    @abstractmethod
    def overflow(self, message: Message, now: float) -> bool:
        """Enqueue ``message`` as if the queue were at its length limit (the ``overflow``
        fault): what the type's overflow setting does then. False when it refused it."""

    # -- delivery ---------------------------------------------------------------------------

    @abstractmethod
    def dispatch(self) -> None:
        """Deliver ready messages to consumers with capacity (via ``Channel.deliver``)."""

    @property
    @abstractmethod
    def dispatching(self) -> bool:
        """True while ``dispatch`` is running (a nested dispatch is a no-op)."""

    @abstractmethod
    def message_for(self, entry: QueuedMessage) -> Message:
        """The message as this queue delivers ``entry`` (a quorum queue adds
        ``x-delivery-count``)."""

    @abstractmethod
    def message_for_get(self, entry: QueuedMessage) -> Message:
        """The message as basic.get-ok carries ``entry``."""

    @abstractmethod
    def dequeue(self, getter: Channel | None) -> QueuedMessage | None:
        """Take the head for basic.get; ``getter`` is the channel when the message must be
        acknowledged (None for no_ack)."""

    @abstractmethod
    def checkout(self, entry: QueuedMessage, consumer: Consumer) -> None:
        """A delivery to a consumer now waits for its acknowledgement."""

    @abstractmethod
    def put_back(self, entry: QueuedMessage, *, returned: bool) -> None:
        """A delivery a fault took over comes back. ``returned``: as if the consumer's channel
        died with it (a return, as ``requeue`` counts it); otherwise it never left (a delayed
        delivery whose consumer went away): back to its place, not counted."""

    # -- settlement -------------------------------------------------------------------------

    @abstractmethod
    def complete(self, entry: QueuedMessage) -> None:
        """An acknowledged delivery leaves the queue."""

    @abstractmethod
    def requeue(self, entries: list[QueuedMessage], *, channel_closed: bool = False) -> None:
        """Unacknowledged deliveries come back: settled with requeue (nack, reject, recover),
        or ``channel_closed`` (their channel or connection went away, a restart)."""

    def recover_requeue(self, entries: list[QueuedMessage]) -> None:
        """basic.recover returns these deliveries (a stream's channel crashes instead)."""
        self.requeue(entries)

    @abstractmethod
    def discard(self, entries: list[QueuedMessage], reason: str) -> None:
        """Deliveries settled without requeue: dead-lettered with ``reason`` if configured."""

    @abstractmethod
    def purge(self) -> int:
        """Drop the ready messages; how many."""

    # -- consumers --------------------------------------------------------------------------

    @abstractmethod
    def add_consumer(self, consumer: Consumer) -> None: ...

    @abstractmethod
    def remove_consumer(self, consumer: Consumer) -> None: ...

    # -- lifecycle --------------------------------------------------------------------------

    @abstractmethod
    def declared(self, passive: bool) -> None:
        """A queue.declare-ok named this queue (``passive``: a passive declare): restart the
        x-expires lease if the type does so."""

    @abstractmethod
    def touch(self) -> None:
        """The queue was used: restart its ``x-expires`` lease."""

    @abstractmethod
    def drop_expired(self) -> None:
        """Expire (dead-letter) due messages at the head; arm the timer for the next one."""

    @abstractmethod
    def cancel_timers(self) -> None: ...

    @abstractmethod
    def clear(self) -> None:
        """The queue was deleted: forget every ready message."""

    @abstractmethod
    def recover(self) -> None:
        """After a broker restart: keep what RabbitMQ keeps for this type (durable queues
        only reach this), re-arm timers."""


#: The implementations by ``x-queue-type`` value, filled by ``register_queue_type`` when each
#: implementation's module is imported (``channel.py`` imports them all).
QUEUE_TYPES: dict[str, type[Queue]] = {}
#: The type of a queue declared without ``x-queue-type`` (rabbit_queue_type:default()).
DEFAULT_QUEUE_TYPE = "classic"

_Q = TypeVar("_Q", bound=type[Queue])


def register_queue_type(cls: _Q) -> _Q:
    """Class decorator: make ``cls`` the implementation of ``x-queue-type: cls.type_name``."""
    QUEUE_TYPES[cls.type_name] = cls
    return cls


def queue_class_for(arguments: Mapping[str, Any], name: str, vhost: str) -> type[Queue]:
    """The implementation a declare's ``x-queue-type`` selects (406 for a bad one, as
    rabbit_amqqueue:check_queue_type words it)."""
    if "x-queue-type" not in arguments:
        return QUEUE_TYPES[DEFAULT_QUEUE_TYPE]
    value = arguments["x-queue-type"]
    if not isinstance(value, str | bytes):
        reason = f"{{unacceptable_type,{amqp_type(value)}}}"
        raise PreconditionFailed(replies.invalid_queue_arg("x-queue-type", name, vhost, reason))
    text = erlang_term(value)
    cls = QUEUE_TYPES.get(text)
    if cls is None:
        reason = f"\"unsupported queue type '{text}'\""
        raise PreconditionFailed(replies.invalid_queue_arg("x-queue-type", name, vhost, reason))
    return cls


def check_argument_keys(
    cls: type[Queue], arguments: Mapping[str, Any], name: str, vhost: str
) -> None:
    """Refuse an argument that another type accepts but ``cls`` does not, in the order the
    client sent them (rabbit_amqqueue:check_arguments_key); unknown arguments are kept."""
    others = {key for other in QUEUE_TYPES.values() for key in other.queue_arguments}
    for key in arguments:
        if key in others and key not in cls.queue_arguments:
            raise PreconditionFailed(replies.arg_not_for_queue_type(key, name, vhost, cls.module))


def check_consumer_argument_keys(queue: Queue, arguments: Mapping[str, Any]) -> None:
    """The same for basic.consume arguments (rabbit_amqqueue:check_consume_arguments)."""
    others = {key for other in QUEUE_TYPES.values() for key in other.consumer_arguments}
    for key in arguments:
        if key in others and key not in queue.consumer_arguments:
            raise PreconditionFailed(
                replies.arg_not_for_queue_type(key, queue.name, queue.vhost, queue.module)
            )
