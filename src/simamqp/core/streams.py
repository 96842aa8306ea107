"""Stream queues (``x-queue-type: stream``) with RabbitMQ 3.10.8 semantics.

A stream is an append-only log read by offset (``rabbit_stream_queue.erl`` over osiris 1.3.1's
``osiris_log.erl``); docs/queue-types.md ("Streams") describes it for users, and
docs/rabbitmq-facts.md ("Streams") lists what was measured. The model:

- **Log.** Every message routed to the stream gets the next offset. Messages are written in
  *chunks*; a reader attaches at a chunk and reads whole chunks. RabbitMQ's writer batches the
  messages that reach it while it is busy, which depends on timing; simamqp writes one chunk per
  publish, which is what RabbitMQ does for a publisher that waits for each confirm.
- **Segments.** Chunks go into segments of at most ``x-stream-max-segment-size-bytes``
  (default 500 MB): a chunk is written into the current segment unless that segment has already
  reached the maximum, in which case a new segment starts (a chunk may overshoot). A new segment
  begins with a *tracking snapshot* chunk (the publishers' writer ids): it uses one offset and
  is never delivered (osiris ``evaluate_tracking_snapshot``).
- **Retention** runs when a segment rolls over, and only then (osiris
  ``trigger_retention_eval``): ``x-max-length-bytes`` keeps the newest segment and older ones,
  newest first, while they fit; ``x-max-age`` drops the oldest segments whose last chunk is older
  than the age, keeping the newest. Whole segments go, never single messages.
- **Sizes.** A segment's size is estimated the way osiris lays it out (an 8-byte segment header,
  48-byte chunk headers, a 4-byte record header, a tracking trailer) with the record itself
  estimated from its AMQP 1.0 encoding (body, exchange, routing key and a fixed overhead): the
  boundaries agree with RabbitMQ's to within tens of bytes per message (docs/differences.md).
- **Reading** is not destructive. A consumer attaches at ``x-stream-offset`` (``first``,
  ``last`` = the last chunk, ``next``/absent = the end, an integer, an AMQP timestamp = the first
  chunk not older than it, or an interval such as ``"1h"`` back from now). Its consumer
  prefetch is credit: it is sent whole chunks while it has credit left (so a chunk may overshoot
  it), each ack gives one back (``rabbit_stream_queue:settle(complete)``). Deliveries carry an
  ``x-stream-offset`` long header and are never redelivered.
- **Refusals** (reply texts in ``replies.py``): basic.get, purge, nack/reject and no-ack
  consumers are ``540 NOT_IMPLEMENTED``; a consumer without a consumer prefetch is ``406``.

Time comes from the broker's clock (chunk timestamps, intervals, ``x-max-age``), so a virtual
clock makes all of it exact.
"""

from __future__ import annotations

import calendar
import datetime as _dt
import re
from bisect import bisect_left, bisect_right
from collections.abc import Iterator, Mapping
from typing import TYPE_CHECKING, Any

from . import replies
from .arguments import Long, amqp_type
from .errors import AMQPNotImplemented, InternalError, PreconditionFailed
from .message import Message, QueuedMessage
from .queue_type import Queue, register_queue_type
from .trace import Shape

if TYPE_CHECKING:
    from .broker import Broker
    from .channel import Channel, Consumer
    from .connection import Connection

__all__ = ["StreamArgs", "StreamQueue", "parse_max_age"]

_ENQUEUE = Shape("enqueue", queue="", vhost="", msg=1, offset=0)

#: osiris.hrl ?LOG_HEADER_SIZE, ?HEADER_SIZE_B (a chunk header), and the simple entry header.
LOG_HEADER_BYTES = 8
CHUNK_HEADER_BYTES = 48
RECORD_HEADER_BYTES = 4
#: A chunk's tracking trailer: the publisher's writer id (``rabbit_guid:binary``, ~40 bytes)
#: with its type, size and 64-bit sequence.
TRACKING_ENTRY_BYTES = 50
#: What AMQP 1.0 encoding adds to a body (section descriptors, properties, the x-exchange and
#: x-routing-key message annotations besides their values): an estimate.
RECORD_OVERHEAD_BYTES = 50
#: osiris_log ?DEFAULT_MAX_SEGMENT_SIZE_B.
DEFAULT_MAX_SEGMENT_BYTES = 500_000_000
#: rabbit_stream_queue ?MAX_STREAM_MAX_SEGMENT_SIZE.
MAX_SEGMENT_BYTES = 3_000_000_000

#: rabbit_amqqueue:unit_value_in_ms.
_UNIT_MS = {
    "Y": 365 * 86_400_000,
    "M": 30 * 86_400_000,
    "D": 86_400_000,
    "h": 3_600_000,
    "m": 60_000,
    "s": 1000,
}
_AGE = re.compile(r"([0-9]*)(.*)", re.DOTALL)


def parse_max_age(value: str) -> int | None:
    """rabbit_amqqueue:check_max_age: milliseconds, or None when invalid (``invalid_max_age``).

    Raises ``InternalError`` (541) when the value does not start with a digit: RabbitMQ calls
    ``list_to_integer`` on the empty digit run and its channel process crashes.
    """
    match = _AGE.fullmatch(value)
    assert match is not None  # the pattern matches any string
    digits, unit = match.groups()
    if not digits:
        raise _crash()
    number = int(digits)
    if number <= 0 or unit not in _UNIT_MS:
        return None
    return number * _UNIT_MS[unit]


def _crash() -> InternalError:
    """541 INTERNAL_ERROR with method (0, 0): what RabbitMQ sends when a channel crashes."""
    err = InternalError("INTERNAL_ERROR")
    err.frame_level = True
    return err


def _text(value: str | bytes) -> str:
    return value.decode("utf-8", "replace") if isinstance(value, bytes) else value


def _non_neg_int(args: Mapping[str, Any], key: str, queue: str, vhost: str) -> int | None:
    """rabbit_amqqueue:check_non_neg_int_arg."""
    if key not in args:
        return None
    value = args[key]
    if isinstance(value, bool) or not isinstance(value, int):
        reason = f'"expected integer, got {amqp_type(value)}"'
        raise PreconditionFailed(replies.invalid_queue_arg(key, queue, vhost, reason))
    if value < 0:
        reason = f"{{value_negative,{value}}}"
        raise PreconditionFailed(replies.invalid_queue_arg(key, queue, vhost, reason))
    return value


class StreamArgs:
    """The ``x-`` arguments of a stream, validated as rabbit_amqqueue:check_arguments does."""

    __slots__ = ("max_age_ms", "max_length_bytes", "max_segment_bytes")

    def __init__(self, args: Mapping[str, Any], queue: str, vhost: str) -> None:
        self.max_length_bytes = _non_neg_int(args, "x-max-length-bytes", queue, vhost)
        self.max_age_ms: int | None = None
        if "x-max-age" in args:
            value = args["x-max-age"]
            if not isinstance(value, str | bytes):
                reason = f"{{unacceptable_type,{amqp_type(value)}}}"
                raise PreconditionFailed(
                    replies.invalid_queue_arg("x-max-age", queue, vhost, reason)
                )
            self.max_age_ms = parse_max_age(_text(value))
            if self.max_age_ms is None:
                raise PreconditionFailed(
                    replies.invalid_queue_arg("x-max-age", queue, vhost, "invalid_max_age")
                )
        segment = _non_neg_int(args, "x-stream-max-segment-size-bytes", queue, vhost)
        self.max_segment_bytes = DEFAULT_MAX_SEGMENT_BYTES if segment is None else segment

    def check_segment_size(self) -> None:
        """rabbit_stream_queue:declare's check, after the lifecycle checks."""
        if self.max_segment_bytes > MAX_SEGMENT_BYTES:
            raise PreconditionFailed(replies.stream_segment_size_too_large())


class _Chunk:
    """One osiris chunk: its first offset (the chunk id), timestamp (ms) and records."""

    __slots__ = ("first", "messages", "size", "timestamp")

    def __init__(self, first: int, timestamp: int, messages: list[Message], size: int) -> None:
        self.first = first
        self.timestamp = timestamp
        #: Empty for a tracking snapshot (it takes one offset, and nobody is sent it).
        self.messages = messages
        self.size = size

    @property
    def count(self) -> int:
        """Offsets the chunk uses."""
        return len(self.messages) or 1


class _Segment:
    __slots__ = ("chunks", "size")

    def __init__(self) -> None:
        self.chunks: list[_Chunk] = []
        self.size = LOG_HEADER_BYTES


class _Reader:
    """Where one consumer is: the next chunk to read and the first offset it wants."""

    __slots__ = ("next_chunk", "start_offset")

    def __init__(self, next_chunk: int, start_offset: int) -> None:
        self.next_chunk = next_chunk
        self.start_offset = start_offset


def _record_size(message: Message) -> int:
    return (
        RECORD_HEADER_BYTES
        + len(message.body)
        + len(message.exchange)
        + len(message.routing_key)
        + RECORD_OVERHEAD_BYTES
    )


@register_queue_type
class StreamQueue(Queue):
    """A stream: the model in this module's docstring."""

    type_name = "stream"
    module = "rabbit_stream_queue"
    #: rabbit_stream_queue:capabilities() in 3.10.8.
    queue_arguments = (
        "x-max-length-bytes",
        "x-queue-type",
        "x-max-age",
        "x-stream-max-segment-size-bytes",
        "x-initial-cluster-size",
        "x-queue-leader-locator",
    )
    consumer_arguments = ("x-stream-offset", "x-credit")
    equivalence_checked_args = queue_arguments
    server_named = False
    enforces_exclusive_consume = False

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
        args: StreamArgs,
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
        self.args: StreamArgs = args
        self.consumer_order: list[Consumer] = []
        self._segments: list[_Segment] = [_Segment()]
        #: Retained chunks in offset order, and their first offsets (for bisecting).
        self._chunks: list[_Chunk] = []
        self._firsts: list[int] = []
        self._next_offset = 0
        self._readers: dict[int, _Reader] = {}
        self._dispatching = False
        self._retention_pending = False

    # -- type description -------------------------------------------------------------------

    @classmethod
    def is_compatible(cls, durable: bool, exclusive: bool, auto_delete: bool) -> bool:
        """rabbit_stream_queue:is_compatible(true, false, false)."""
        return durable and not exclusive and not auto_delete

    @classmethod
    def parse_arguments(cls, arguments: Mapping[str, Any], name: str, vhost: str) -> StreamArgs:
        return StreamArgs(arguments, name, vhost)

    @classmethod
    def check_declare(cls, args: Any) -> None:
        """rabbit_stream_queue:declare's own check, after the lifecycle ones."""
        if isinstance(args, StreamArgs):
            args.check_segment_size()

    def check_consumer(self, *, no_ack: bool, prefetch: int, arguments: Mapping[str, Any]) -> None:
        """rabbit_stream_queue:consume's refusals, in its order; then the offset must parse."""
        if prefetch == 0:
            raise PreconditionFailed(replies.stream_prefetch_not_set(self.name, self.vhost))
        if no_ack:
            raise AMQPNotImplemented(replies.stream_no_ack(self.name, self.vhost))
        self._offset_spec(arguments)

    # -- inspection -------------------------------------------------------------------------

    @property
    def message_count(self) -> int:
        """A stream's queue.declare-ok reports 0 messages (measured on 3.10.8)."""
        return 0

    @property
    def consumer_count(self) -> int:
        """...and 0 consumers, however many read it (measured on 3.10.8)."""
        return 0

    @property
    def consumer_channels(self) -> list[Channel]:
        return [c.channel for c in self.consumer_order]

    def ready_entries(self) -> Iterator[QueuedMessage]:
        """Every retained message, in offset order (reading a stream takes nothing away)."""
        self.apply_retention()
        for chunk in self._chunks:
            for n, message in enumerate(chunk.messages):
                yield QueuedMessage(message, chunk.first + n, None, 0)

    @property
    def first_offset(self) -> int:
        """The offset of the oldest retained chunk (the next offset when the log is empty)."""
        return self._chunks[0].first if self._chunks else self._next_offset

    @property
    def next_offset(self) -> int:
        """The offset the next message will get."""
        return self._next_offset

    @property
    def segment_count(self) -> int:
        return len(self._segments)

    def consumer_offsets(self) -> dict[str, int]:
        """Each consumer's position: the first offset of the next chunk it will be sent."""
        out: dict[str, int] = {}
        for consumer in self.consumer_order:
            reader = self._readers.get(id(consumer))
            if reader is not None:
                out[consumer.tag] = reader.next_chunk
        return out

    def details(self) -> dict[str, Any]:
        """Type-specific inspection (``broker.queue(name).details``)."""
        self.apply_retention()
        return {
            "first_offset": self.first_offset,
            "next_offset": self.next_offset,
            "chunks": len(self._chunks),
            "segments": self.segment_count,
            "consumer_offsets": self.consumer_offsets(),
        }

    @property
    def dispatching(self) -> bool:
        return self._dispatching

    def message_for(self, entry: QueuedMessage) -> Message:
        """The message with its offset as the ``x-stream-offset`` header (a long)."""
        message = entry.message
        properties = dict(message.properties)
        headers = dict(properties.get("application_headers") or {})
        headers["x-stream-offset"] = Long(entry.seq)
        properties["application_headers"] = headers
        return Message(
            message.id,
            message.body,
            properties,
            message.exchange,
            message.routing_key,
            message.routing_keys,
        )

    def message_for_get(self, entry: QueuedMessage) -> Message:
        raise AMQPNotImplemented(replies.stream_get(self.name, self.vhost))

    # -- publishing -------------------------------------------------------------------------

    def enqueue(self, message: Message, now: float) -> bool:
        """Append ``message`` as a chunk of its own; roll segments and apply retention."""
        broker = self.broker
        offset = self._write([message], now)
        if broker.tracing:
            broker.trace.record(now, _ENQUEUE, (self.name, self.vhost, message.id, offset))
        self.dispatch()
        return True

    def overflow(self, message: Message, now: float) -> bool:
        """A stream has no length limit to overflow and never refuses a publish for length
        (retention alone trims it, a segment at a time): the message is appended."""
        return self.enqueue(message, now)

    def _write(self, messages: list[Message], now: float) -> int:
        """osiris_log:write_chunk for a user chunk (the tracking snapshot first, if due)."""
        timestamp = int(now * 1000)
        size = CHUNK_HEADER_BYTES + TRACKING_ENTRY_BYTES + sum(_record_size(m) for m in messages)
        if self._segment_full() and self._next_offset > 0:
            # evaluate_tracking_snapshot: the publishers' ids open the next segment.
            snapshot_size = CHUNK_HEADER_BYTES + TRACKING_ENTRY_BYTES
            self._write_chunk(_Chunk(self._next_offset, timestamp, [], snapshot_size), now)
        first = self._next_offset
        self._write_chunk(_Chunk(first, timestamp, messages, size), now)
        return first

    def _segment_full(self) -> bool:
        segment = self._segments[-1]
        return segment.size >= self.args.max_segment_bytes and bool(segment.chunks)

    def _write_chunk(self, chunk: _Chunk, now: float) -> None:
        rolled = self._segment_full()
        if rolled:
            self.apply_retention()  # a run still pending from the previous roll goes first
            # osiris loops for ever on a maximum below the segment header; a segment here
            # always takes at least one chunk (docs/differences.md).
            self._segments.append(_Segment())
        segment = self._segments[-1]
        segment.chunks.append(chunk)
        segment.size += chunk.size
        self._chunks.append(chunk)
        self._firsts.append(chunk.first)
        self._next_offset = chunk.first + chunk.count
        if rolled and (self.args.max_length_bytes is not None or self.args.max_age_ms is not None):
            # osiris casts the evaluation to its retention process, which runs it a little
            # later, seeing the newest segment as it is then; here it runs when the stream is
            # next read, inspected or rolls again.
            self._retention_pending = True

    def apply_retention(self) -> None:
        """Run a retention evaluation a segment roll left pending (osiris_log:
        evaluate_retention: max_bytes, then max_age; the newest segment always stays)."""
        if not self._retention_pending:
            return
        self._retention_pending = False
        now = self.broker.clock.now()
        segments = self._segments
        keep_from = 0
        max_bytes = self.args.max_length_bytes
        if max_bytes is not None:
            budget = max_bytes - segments[-1].size
            keep_from = len(segments) - 1
            for index in range(len(segments) - 2, -1, -1):
                if segments[index].size > budget:
                    break
                budget -= segments[index].size
                keep_from = index
        max_age = self.args.max_age_ms
        if max_age is not None:
            cutoff = int(now * 1000) - max_age
            while (
                keep_from < len(segments) - 1 and segments[keep_from].chunks[-1].timestamp < cutoff
            ):
                keep_from += 1
        if not keep_from:
            return
        dropped = sum(len(s.chunks) for s in segments[:keep_from])
        del segments[:keep_from]
        del self._chunks[:dropped]
        del self._firsts[:dropped]
        self.broker.emit(
            "retention", queue=self.name, vhost=self.vhost, first_offset=self.first_offset
        )

    # -- offsets ----------------------------------------------------------------------------

    def _offset_spec(self, arguments: Mapping[str, Any]) -> tuple[str, int]:
        """rabbit_stream_queue:parse_offset_arg: ("first"|"last"|"next", 0), ("offset", n) or
        ("timestamp", ms); a bad value raises as RabbitMQ answers it."""
        if "x-stream-offset" not in arguments:
            return "next", 0
        value = arguments["x-stream-offset"]
        if isinstance(value, str | bytes):
            text = _text(value)
            if text in ("first", "last", "next"):
                return text, 0
            age = parse_max_age(text)
            if age is None:
                reason = f'{{invalid_stream_offset_arg,{{longstr,<<"{text}">>}}}}'
                raise PreconditionFailed(
                    replies.invalid_queue_arg("x-stream-offset", self.name, self.vhost, reason)
                )
            return "timestamp", int(self.broker.clock.now() * 1000) - age
        if isinstance(value, _dt.datetime):
            return "timestamp", calendar.timegm(value.utctimetuple()) * 1000
        if isinstance(value, int) and not isinstance(value, bool):
            return "offset", value
        # osiris:init_reader crashes on anything else (a bool, a float...).
        raise _crash()

    def _attach(self, spec: tuple[str, int]) -> _Reader:
        """osiris:init_reader + rabbit_stream_queue:begin_stream."""
        kind, value = spec
        chunks = self._chunks
        end = self._next_offset
        if kind == "first":
            return _Reader(self.first_offset, -1)
        if kind == "last":
            return _Reader(chunks[-1].first if chunks else end, -1)
        if kind == "next":
            return _Reader(end, -1)
        if kind == "timestamp":
            for chunk in chunks:
                if chunk.timestamp >= value:
                    return _Reader(chunk.first, -1)
            return _Reader(end, -1)
        # An integer: the chunk holding it, then only offsets from it on.
        if value < self.first_offset:
            return _Reader(self.first_offset, value)
        if value >= end:
            return _Reader(end, value)
        index = bisect_right(self._firsts, value) - 1
        return _Reader(chunks[index].first, value)

    # -- delivery ---------------------------------------------------------------------------

    def dispatch(self) -> None:
        """Send each consumer whole chunks while it has credit (prefetch minus unacked)."""
        if self._dispatching or not self.consumer_order or self.deleted:
            return
        self._dispatching = True
        try:
            for consumer in list(self.consumer_order):
                reader = self._readers.get(id(consumer))
                if reader is not None:
                    self._send(consumer, reader)
        finally:
            self._dispatching = False

    def _send(self, consumer: Consumer, reader: _Reader) -> None:
        chunks = self._chunks
        index = bisect_left(self._firsts, reader.next_chunk)
        while index < len(chunks) and consumer.prefetch - consumer.unacked > 0:
            if not consumer.channel.is_open or id(consumer) not in self._readers:
                return
            chunk = chunks[index]
            index += 1
            reader.next_chunk = chunk.first + chunk.count
            for n, message in enumerate(chunk.messages):
                offset = chunk.first + n
                if offset >= reader.start_offset:
                    consumer.channel.deliver(
                        consumer, self, QueuedMessage(message, offset, None, 0)
                    )

    def dequeue(self, getter: Channel | None) -> QueuedMessage | None:
        raise AMQPNotImplemented(replies.stream_get(self.name, self.vhost))

    def checkout(self, entry: QueuedMessage, consumer: Consumer) -> None:
        self.unacked += 1

    def put_back(self, entry: QueuedMessage, *, returned: bool) -> None:
        """A delivery a fault took over: the reader has moved on, the log still holds it
        (nothing to put back; a new consumer at that offset reads it)."""

    # -- settlement -------------------------------------------------------------------------

    def complete(self, entry: QueuedMessage) -> None:
        """An ack: one credit back to the consumer (the channel's accounting gives it)."""
        self.unacked -= 1

    def requeue(self, entries: list[QueuedMessage], *, channel_closed: bool = False) -> None:
        """basic.nack/reject with requeue: refused, and the connection closes (the channel has
        already let go of these deliveries). ``channel_closed`` (the channel went away, or a
        lost-ack fault): nothing goes back, nothing is lost; the log keeps the messages."""
        self.unacked -= len(entries)
        if not channel_closed:
            raise AMQPNotImplemented(replies.stream_settle(self.name, self.vhost))

    def discard(self, entries: list[QueuedMessage], reason: str) -> None:
        self.unacked -= len(entries)
        raise AMQPNotImplemented(replies.stream_settle(self.name, self.vhost))

    def recover_requeue(self, entries: list[QueuedMessage]) -> None:
        """basic.recover over stream deliveries: rabbit_channel's requeue path does not expect
        the stream's error and the channel crashes (541, measured on 3.10.8)."""
        self.unacked -= len(entries)
        raise _crash()

    def purge(self) -> int:
        raise AMQPNotImplemented(replies.stream_purge(self.name, self.vhost))

    # -- consumers --------------------------------------------------------------------------

    def add_consumer(self, consumer: Consumer) -> None:
        self.apply_retention()
        reader = self._attach(self._offset_spec(consumer.arguments))
        self.consumer_order.append(consumer)
        self._readers[id(consumer)] = reader
        self.had_consumer = True
        self.dispatch()

    def remove_consumer(self, consumer: Consumer) -> None:
        if self._readers.pop(id(consumer), None) is None:
            return
        self.consumer_order.remove(consumer)

    # -- lifecycle --------------------------------------------------------------------------

    def declared(self, passive: bool) -> None:
        """Streams have no ``x-expires`` lease to restart."""

    def touch(self) -> None:
        """Streams have no ``x-expires``."""

    def drop_expired(self) -> None:
        """Streams have no message TTL (retention is per segment, at a roll)."""

    def cancel_timers(self) -> None:
        """No timers: retention runs when a segment rolls."""

    def clear(self) -> None:
        self._segments = [_Segment()]
        self._chunks.clear()
        self._firsts.clear()
        self._readers.clear()

    def recover(self) -> None:
        """A stream keeps every message across a restart (it is a log on disk, whatever the
        delivery mode); readers went with their connections."""
        self._readers.clear()
        self.consumer_order.clear()
        self.unacked = 0
