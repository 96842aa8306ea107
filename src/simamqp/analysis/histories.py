"""Message histories: the life of every message, as the broker saw it, read off the trace.

A pure function over trace events (``build_histories``): it never touches a broker, so it gives
the same answer on a live broker, on a recorded trace (JSON lines, ``Trace.lines()``) and on
the trace of a replayed scenario file.

What names a message: the engine gives every message it accepts an id (``msg``), carried by
each per-message event: ``publish``, ``route``, ``enqueue``, ``deliver``/``get``, ``ack``,
``nack``/``reject``, ``requeue``, ``expire``, ``drop-head``, ``reject-publish``,
``dead-letter`` (which names the new message it republishes as ``new_msg``), ``fault`` (and
its ``copies``, each a new id), ``fault-release`` and ``fault-lost``. Two events need more
than their own attributes:

- ``confirm`` carries the publishing channel and the confirm sequence number, not the message.
  The engine emits it synchronously right after it routed (or dropped, or released) the
  message it confirms, so it belongs to the message of the most recent publish-side event
  (``publish``, ``route``, a ``fault`` at ``publish``/``route``/``enqueue``, ``fault-release``,
  ``fault-lost``) of a publisher on that channel number.
- ``requeue`` (a channel closed with unacked messages, or a fault put a delivery back) names
  the queue and messages but not the channel: it settles the open delivery of each message
  from that queue.

What the trace cannot say: whether a message was persistent. ``restart`` drops transient
messages from durable queues without an event per message, so a message in a queue at a
restart is ``restart: "survived"`` once it is seen again (delivered, expired...), ``"dropped"``
when its queue was transient (deleted by the restart) or when the queue later showed it was gone
(``get-empty`` on it, or a message enqueued after the restart delivered first: FIFO, so priority
queues can mislead here), and ``"unseen"`` otherwise (nobody looked).

Cost: one pass, O(events) time and O(messages) memory, a dict lookup or two per event.
With the default windowed trace only the kept events (the last 1,000 to 2,000) can be read;
``histories.complete`` is then False and messages whose publish left the window have
``published is None`` (Jepsen's "unknown" outcome: the checkers never call them lost).
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass, field
from typing import Any

from ..core.trace import Event, Trace

__all__ = [
    "DIRECT_REPLY_TO",
    "Delivery",
    "FaultHit",
    "Histories",
    "MessageHistory",
    "build_histories",
    "events_from_lines",
    "events_of",
]

DIRECT_REPLY_TO = "amq.rabbitmq.reply-to"
#: Fault points that act on a message on its way in (their ``fault`` event sets the context a
#: following ``confirm`` belongs to).
_PUBLISH_SIDE_POINTS = frozenset({"publish", "route", "enqueue"})


@dataclass(slots=True)
class Delivery:
    """One delivery of a message from a queue (``basic.deliver`` or ``basic.get``)."""

    seq: int
    time: float
    queue: str
    connection: int | None
    channel: int | None
    #: None for ``basic.get``.
    consumer_tag: str | None
    delivery_tag: int | None
    redelivered: bool
    #: 1 for the first delivery of this message from this queue, 2 for the next...
    count: int
    #: True: the consumer is in no-ack mode (accepted on delivery); None: unknown (basic.get).
    no_ack: bool | None
    #: How it was settled: "ack", "nack", "reject", "recover-requeue", "fault-requeue",
    #: "requeue" (its channel closed), or None (still unacknowledged, or no-ack).
    settled: str | None = None
    requeue: bool | None = None
    settled_seq: int | None = None

    @property
    def accepted(self) -> bool:
        """The client took it for good: acked, or delivered in no-ack mode."""
        return self.settled == "ack" or self.no_ack is True

    @property
    def consumer(self) -> str:
        if self.consumer_tag is None:
            return f"conn {self.connection}/ch {self.channel} (basic.get)"
        return f"conn {self.connection}/ch {self.channel}/{self.consumer_tag}"


@dataclass(frozen=True)
class FaultHit:
    """A fault rule that acted on a message."""

    seq: int
    time: float
    rule: str
    point: str
    action: str
    queue: str | None = None

    def __str__(self) -> str:
        where = f" on {self.queue}" if self.queue else ""
        return f"fault rule {self.rule!r} ({self.point} {self.action}{where}) at #{self.seq}"


@dataclass(slots=True)
class MessageHistory:
    """Everything the trace says happened to one message (``msg`` id)."""

    msg: int
    #: The body (bytes), or ``{"sha256", "len"}`` from a recorded trace; None if not seen.
    body: Any = None
    #: seq of the ``publish`` event (None: published before the trace's window, or never:
    #: a fault copy or a dead letter, see ``copy_of`` / ``dead_letter_of``).
    published: int | None = None
    publish_time: float | None = None
    publisher: tuple[int, int] | None = None  # (connection, channel)
    exchange: str | None = None
    routing_key: str | None = None
    mandatory: bool | None = None
    #: "ack" or "nack" from a publisher confirm, None when none came.
    confirm: str | None = None
    confirm_seq: int | None = None
    #: Queues a route event sent it to (in order, each once), and those a route fault saw.
    routed: list[str] = field(default_factory=list)
    route_events: int = 0
    returned: bool = False
    enqueued: list[str] = field(default_factory=list)
    #: queue -> seq of the first ``enqueue`` event into it (FIFO rank).
    enqueue_seqs: dict[str, int] = field(default_factory=dict)
    #: Queues that refused it (overflow reject-publish).
    refused: list[str] = field(default_factory=list)
    deliveries: list[Delivery] = field(default_factory=list)
    expired: list[str] = field(default_factory=list)
    #: Dead-lettering from a queue: {"queue", "reason", "new_msg", "exchange", "queues"}.
    dead_lettered: list[dict[str, Any]] = field(default_factory=list)
    dead_letter_of: int | None = None
    dead_letter_reason: str | None = None
    copy_of: int | None = None
    copy_rule: str | None = None
    copies: list[int] = field(default_factory=list)
    faults: list[FaultHit] = field(default_factory=list)
    #: (queue or "", why): how the broker lost it (fault drop, overflow, purge, queue deleted).
    lost: list[tuple[str, str]] = field(default_factory=list)
    #: (queue, "survived" | "dropped" | "unseen") per restart it was in a queue for.
    restarts: list[tuple[str, str]] = field(default_factory=list)
    #: seqs of every event about this message, in order.
    events: list[int] = field(default_factory=list)

    @property
    def original(self) -> int:
        """The id of the message a client published (following fault copies)."""
        return self.copy_of if self.copy_of is not None else self.msg

    @property
    def ok(self) -> bool:
        """The publisher was told it was taken: not nacked, not returned, and confirmed when
        its channel was in confirm mode (a publish without confirms counts as taken)."""
        return self.confirm != "nack" and not self.returned

    def accepted(self, queue: str | None = None) -> list[Delivery]:
        """Deliveries the client took for good (acked or no-ack), from ``queue`` or any."""
        return [d for d in self.deliveries if d.accepted and (queue is None or d.queue == queue)]

    def text(self) -> str:
        """The body as text when it is UTF-8 (what ledgers usually hold), else as bytes."""
        body = self.body
        if type(body) is bytes or isinstance(body, bytearray):
            try:
                return body.decode()
            except UnicodeDecodeError:
                return repr(bytes(body))
        if isinstance(body, Mapping):
            return f"sha256:{body.get('sha256', '?')}"
        return f"msg {self.msg}"

    def describe(self) -> str:
        """One line per step of its life."""
        lines = [f"msg {self.msg} body={self.text()!r}"]
        if self.published is not None:
            conn, channel = self.publisher or ("?", "?")
            lines.append(
                f"  #{self.published} published by conn {conn}/ch {channel} to exchange "
                f"{self.exchange!r} key {self.routing_key!r}"
                + (" mandatory" if self.mandatory else "")
                + (f", confirm {self.confirm}" if self.confirm else "")
            )
        if self.copy_of is not None:
            lines.append(f"  a copy of msg {self.copy_of} made by fault rule {self.copy_rule!r}")
        if self.dead_letter_of is not None:
            lines.append(f"  dead letter of msg {self.dead_letter_of} ({self.dead_letter_reason})")
        if self.route_events or self.routed:
            lines.append(f"  routed to {self.routed or 'no queue'}")
        if self.returned:
            lines.append("  returned to the publisher (312 NO_ROUTE)")
        lines.extend(f"  refused by {q} (overflow)" for q in self.refused)
        lines.extend(f"  {hit}" for hit in self.faults)
        for d in self.deliveries:
            settled = d.settled or ("no-ack" if d.no_ack else "unsettled")
            if d.requeue is not None and d.settled in ("nack", "reject"):
                settled += f" requeue={d.requeue}"
            lines.append(
                f"  #{d.seq} delivery {d.count} from {d.queue} to {d.consumer}"
                f"{' redelivered' if d.redelivered else ''}: {settled}"
            )
        lines.extend(f"  expired in {q}" for q in self.expired)
        lines.extend(
            f"  dead-lettered from {d['queue']} ({d['reason']}) as msg {d['new_msg']} to "
            f"{d['exchange']!r} -> {d['queues']}"
            for d in self.dead_lettered
        )
        lines.extend(f"  lost{' in ' + q if q else ''}: {why}" for q, why in self.lost)
        lines.extend(f"  restart: {outcome} in {q}" for q, outcome in self.restarts)
        return "\n".join(lines)


@dataclass
class Histories:
    """The histories of every message in a trace (``build_histories``)."""

    messages: dict[int, MessageHistory]
    #: False when the events did not start at the trace's first (a windowed trace).
    complete: bool
    events: int
    #: (queue, msg) pairs still in a queue (ready or unacked) after the last event.
    pending: set[tuple[str, int]]
    restarts: int = 0
    #: connection -> [(seq, what closed it)]: forced closes, lost connections, restarts.
    closures: dict[Any, list[tuple[int, str]]] = field(default_factory=dict)

    def closed_after(self, connection: Any, seq: int) -> tuple[int, str] | None:
        """The first forced close of ``connection`` after event ``seq``."""
        for when, what in self.closures.get(connection, ()):
            if when > seq:
                return when, what
        return None

    def __iter__(self) -> Iterator[MessageHistory]:
        return iter(self.messages.values())

    def __len__(self) -> int:
        return len(self.messages)

    def __getitem__(self, msg: int) -> MessageHistory:
        return self.messages[msg]

    def published(self) -> list[MessageHistory]:
        """Messages a client published (not fault copies, not dead letters)."""
        return [h for h in self.messages.values() if h.published is not None]

    def in_queue(self, queue: str, msg: int) -> bool:
        return (queue, msg) in self.pending


def events_of(source: Any) -> tuple[list[Event], bool]:
    """(events, complete) from a ``Broker`` (anything with a ``trace``), a ``Trace``, or an
    iterable of ``Event``s or event dicts (``Event.to_dict()``, a JSON line)."""
    trace = getattr(source, "trace", source)
    if isinstance(trace, Trace):
        if trace.complete:
            return trace.events, True
        return trace.tail(trace.retained), False
    events: list[Event] = []
    for item in trace:
        if isinstance(item, Event):
            events.append(item)
        elif isinstance(item, Mapping):
            attrs = {k: v for k, v in item.items() if k not in ("seq", "time", "kind")}
            time = item.get("time", 0.0)
            events.append(Event(int(item["seq"]), float(time), str(item["kind"]), attrs))
        else:
            raise TypeError(f"not a trace event: {item!r}")
    complete = not events or events[0].seq == 1
    return events, complete


def events_from_lines(lines: Iterable[str]) -> list[Event]:
    """Events from canonical JSON lines (``Trace.lines()``, a ``.jsonl`` recording)."""
    out: list[Event] = []
    for number, line in enumerate(lines, 1):
        line = line.strip()
        if not line:
            continue
        try:
            item = json.loads(line)
        except json.JSONDecodeError as err:
            raise ValueError(f"line {number}: not a JSON trace event: {err.msg}") from None
        if not isinstance(item, dict) or "kind" not in item or "seq" not in item:
            raise ValueError(f"line {number}: a trace event needs 'seq' and 'kind'")
        out.extend(events_of([item])[0])
    return out


class _Builder:
    """The one pass of ``build_histories`` (state kept between events)."""

    def __init__(self) -> None:
        self.messages: dict[int, MessageHistory] = {}
        #: (queue, msg) -> "ready" | "unacked"
        self.where: dict[tuple[str, int], str] = {}
        #: (queue, msg) -> the open (unsettled) delivery
        self.open: dict[tuple[str, int], Delivery] = {}
        #: (queue, msg) -> index in that message's ``restarts`` awaiting an outcome
        self.after_restart: dict[tuple[str, int], int] = {}
        #: queue -> msgs awaiting a restart outcome there
        self.restart_queues: dict[str, set[int]] = {}
        #: (connection, channel, consumer_tag) -> no_ack
        self.no_ack: dict[tuple[Any, Any, Any], bool] = {}
        #: msg of the latest publish-side event (the message a ``confirm`` is for)
        self.context: int | None = None
        self.restarts = 0
        self.closures: dict[Any, list[tuple[int, str]]] = {}
        #: the latest fault that closes things: (seq, rule, action)
        self.closing_fault: tuple[int, str, str] | None = None

    def history(self, msg: int) -> MessageHistory:
        found = self.messages.get(msg)
        if found is None:
            found = self.messages[msg] = MessageHistory(msg)
        return found

    def seen_in(self, queue: str, msg: int) -> None:
        """The message shows up in ``queue`` again: it survived a restart it was waiting on."""
        index = self.after_restart.pop((queue, msg), None)
        if index is not None:
            h = self.messages[msg]
            h.restarts[index] = (queue, "survived")
            self.restart_queues[queue].discard(msg)

    def restart_dropped(self, queue: str, seq: int, why: str) -> None:
        """Messages of ``queue`` not seen since a restart are gone: the queue was seen empty,
        or a message enqueued after them was handed out first."""
        for m in self.restart_queues.pop(queue, ()):
            index = self.after_restart.pop((queue, m))
            h = self.messages[m]
            h.restarts[index] = (queue, "dropped")
            h.lost.append((queue, f"dropped by the restart (transient): {why}"))
            h.events.append(seq)
            self.leave(queue, m)

    def leave(self, queue: str, msg: int) -> None:
        self.where.pop((queue, msg), None)
        self.open.pop((queue, msg), None)

    def settle(self, queue: str, msg: int, how: str, seq: int, requeue: bool | None) -> None:
        key = (queue, msg)
        delivery = self.open.pop(key, None)
        if delivery is not None:
            delivery.settled = how
            delivery.requeue = requeue
            delivery.settled_seq = seq
        if requeue:
            self.where[key] = "ready"
        elif how != "requeue":
            self.where.pop(key, None)

    def run(self, events: Iterable[Event]) -> None:
        """Fold every event in (the hot loop: one dict lookup per event and kind)."""
        handlers = _HANDLERS
        messages = self.messages
        for seq, time, kind, a in events:
            handler = handlers.get(kind)
            msg = a.get("msg")
            if type(msg) is int:
                h = messages.get(msg)
                if h is None:
                    h = messages[msg] = MessageHistory(msg)
                h.events.append(seq)
            else:
                h = None
            if handler is not None:
                handler(self, seq, time, a, h)
            elif "msgs" in a:
                for m in a["msgs"]:
                    if type(m) is int:
                        self.history(m).events.append(seq)

    def finish(self, events: int, complete: bool) -> Histories:
        for (queue, msg), index in self.after_restart.items():
            self.messages[msg].restarts[index] = (queue, "unseen")
        return Histories(
            self.messages,
            complete,
            events,
            set(self.where),
            restarts=self.restarts,
            closures=self.closures,
        )


def _publish(b: _Builder, seq: int, time: float, a: Mapping[str, Any], h: Any) -> None:
    h.published, h.publish_time = seq, time
    h.publisher = (a.get("connection"), a.get("channel"))
    h.exchange, h.routing_key = a.get("exchange"), a.get("routing_key")
    h.mandatory, h.body = a.get("mandatory"), a.get("body")
    b.context = h.msg


def _route(b: _Builder, seq: int, time: float, a: Mapping[str, Any], h: Any) -> None:
    h.route_events += 1
    for queue in a.get("queues") or ():
        if queue not in h.routed:
            h.routed.append(queue)
    b.context = h.msg


def _return(b: _Builder, seq: int, time: float, a: Mapping[str, Any], h: Any) -> None:
    h.returned = True


def _confirm(b: _Builder, seq: int, time: float, a: Mapping[str, Any], h: Any) -> None:
    target = b.messages.get(b.context) if b.context is not None else None
    if target is not None:
        root = b.messages.get(target.original, target)
        if root.publisher is None or root.publisher[1] == a.get("channel"):
            root.confirm = "ack" if a.get("ack") else "nack"
            root.confirm_seq = a.get("seq")
            root.events.append(seq)


def _enqueue(b: _Builder, seq: int, time: float, a: Mapping[str, Any], h: Any) -> None:
    queue = a["queue"]
    h.enqueued.append(queue)
    h.enqueue_seqs.setdefault(queue, seq)
    b.where[(queue, h.msg)] = "ready"
    if b.after_restart:
        b.seen_in(queue, h.msg)


def _reject_publish(b: _Builder, seq: int, time: float, a: Mapping[str, Any], h: Any) -> None:
    h.refused.append(a["queue"])
    b.leave(a["queue"], h.msg)


def _drop_head(b: _Builder, seq: int, time: float, a: Mapping[str, Any], h: Any) -> None:
    b.seen_in(a["queue"], h.msg)
    h.lost.append((a["queue"], "dropped from the head (x-max-length overflow)"))
    b.leave(a["queue"], h.msg)


def _expire(b: _Builder, seq: int, time: float, a: Mapping[str, Any], h: Any) -> None:
    b.seen_in(a["queue"], h.msg)
    h.expired.append(a["queue"])
    b.leave(a["queue"], h.msg)


def _dead_letter(b: _Builder, seq: int, time: float, a: Mapping[str, Any], h: Any) -> None:
    new = a.get("new_msg")
    h.dead_lettered.append(
        {
            "queue": a.get("queue"),
            "reason": a.get("reason"),
            "new_msg": new,
            "exchange": a.get("exchange"),
            "queues": list(a.get("queues") or ()),
        }
    )
    if type(new) is int:
        dead = b.history(new)
        dead.dead_letter_of, dead.dead_letter_reason = h.msg, a.get("reason")
        dead.body = h.body
        dead.exchange = a.get("exchange")
        dead.routed = list(a.get("queues") or ())
        dead.events.append(seq)


def _dead_letter_dropped(b: _Builder, seq: int, time: float, a: Mapping[str, Any], h: Any) -> None:
    h.lost.append((a.get("queue", ""), f"dead-lettering found no exchange ({a.get('reason')})"))


def _deliver(b: _Builder, seq: int, time: float, a: Mapping[str, Any], h: Any) -> None:
    queue = a["queue"]
    conn, ch, tag = a.get("connection"), a.get("channel"), a.get("consumer_tag")
    msg = h.msg
    deliveries = h.deliveries
    count = 1 + sum(1 for d in deliveries if d.queue == queue) if deliveries else 1
    if queue == DIRECT_REPLY_TO:
        no_ack: bool | None = True
    elif tag is None:
        no_ack = None
    else:
        no_ack = b.no_ack.get((conn, ch, tag))
    delivery = Delivery(
        seq,
        time,
        queue,
        conn,
        ch,
        tag,
        a.get("delivery_tag"),
        bool(a.get("redelivered")),
        count,
        no_ack,
    )
    deliveries.append(delivery)
    key = (queue, msg)
    if b.after_restart or b.restart_queues:
        if queue in b.restart_queues and key not in b.after_restart:
            b.restart_dropped(queue, seq, f"msg {msg}, enqueued after the restart, came first")
        b.seen_in(queue, msg)
    if no_ack:
        b.leave(queue, msg)
    else:
        b.where[key] = "unacked"
        b.open[key] = delivery


def _consume(b: _Builder, seq: int, time: float, a: Mapping[str, Any], h: Any) -> None:
    b.no_ack[(a.get("connection"), a.get("channel"), a.get("consumer_tag"))] = bool(a.get("no_ack"))


def _ack(b: _Builder, seq: int, time: float, a: Mapping[str, Any], h: Any) -> None:
    b.settle(a["queue"], h.msg, "ack", seq, None)


def _negative(kind: str) -> Any:
    def handle(b: _Builder, seq: int, time: float, a: Mapping[str, Any], h: Any) -> None:
        b.settle(a["queue"], h.msg, kind, seq, bool(a.get("requeue")))

    return handle


def _requeue(b: _Builder, seq: int, time: float, a: Mapping[str, Any], h: Any) -> None:
    queue = a["queue"]
    for m in a.get("msgs") or ():
        b.history(m).events.append(seq)
        b.settle(queue, m, "requeue", seq, True)


def _purge(b: _Builder, seq: int, time: float, a: Mapping[str, Any], h: Any) -> None:
    queue = a["queue"]
    for (q, m), state in list(b.where.items()):
        if q == queue and state == "ready":
            b.messages[m].lost.append((queue, "purged"))
            b.messages[m].events.append(seq)
            b.leave(queue, m)


def _queue_delete(b: _Builder, seq: int, time: float, a: Mapping[str, Any], h: Any) -> None:
    queue, reason = a["queue"], a.get("reason")
    for q, m in [key for key in b.where if key[0] == queue]:
        hist = b.messages[m]
        index = b.after_restart.pop((q, m), None)
        if index is not None:
            hist.restarts[index] = (q, "dropped")
            b.restart_queues.get(q, set()).discard(m)
        hist.lost.append((queue, f"queue deleted ({reason})" if reason else "queue deleted"))
        hist.events.append(seq)
        b.leave(q, m)


def _closed(b: _Builder, seq: int, time: float, a: Mapping[str, Any], h: Any) -> None:
    """A connection closed by the broker (``connection-closed``) or lost (``connection-lost``)."""
    what = "lost" if a.get("code") is None else f"closed {a.get('code')} {a.get('text', '')}"
    fault = b.closing_fault
    if fault is not None and fault[0] >= seq - 3:
        what += f" by fault rule {fault[1]!r} ({fault[2]})"
    b.closures.setdefault(a.get("connection"), []).append((seq, what.strip()))


def _restart(b: _Builder, seq: int, time: float, a: Mapping[str, Any], h: Any) -> None:
    b.restarts += 1
    for (queue, m), index in b.after_restart.items():
        b.messages[m].restarts[index] = (queue, "unseen")
    b.after_restart = {}
    b.restart_queues = {}
    for queue, m in b.where:
        hist = b.messages[m]
        hist.restarts.append((queue, "unseen"))
        b.after_restart[(queue, m)] = len(hist.restarts) - 1
        b.restart_queues.setdefault(queue, set()).add(m)
        hist.events.append(seq)


def _get_empty(b: _Builder, seq: int, time: float, a: Mapping[str, Any], h: Any) -> None:
    if a.get("queue") in b.restart_queues:
        b.restart_dropped(a["queue"], seq, "the queue was seen empty")


def _fault(b: _Builder, seq: int, time: float, a: Mapping[str, Any], h: Any) -> None:
    if a.get("action") in ("close_connection", "restart"):
        b.closing_fault = (seq, str(a.get("rule")), str(a.get("action")))
    if h is None:
        return
    point, action, rule = a.get("point", ""), a.get("action", ""), str(a.get("rule"))
    queue = a.get("queue")
    h.faults.append(FaultHit(seq, time, rule, point, action, queue))
    for queue_name in a.get("queues") or ():
        if queue_name not in h.routed and action == "drop":
            h.routed.append(queue_name)
    for copy in a.get("copies") or ():
        c = b.history(copy)
        c.copy_of, c.copy_rule, c.body = h.original, rule, h.body
        c.exchange, c.routing_key = h.exchange, h.routing_key
        c.events.append(seq)
        h.copies.append(copy)
    where = f"fault rule {rule!r} ({point} {action})"
    if action == "drop" and point in ("publish", "enqueue", "route"):
        h.lost.append((queue or "", where))
    elif action == "drop" and point == "deliver" and queue is not None:
        h.lost.append((queue, where))
        b.leave(queue, h.msg)
    elif action == "overflow" and queue is not None:
        pass  # the reject-publish / drop-head event that follows says who went
    if point in _PUBLISH_SIDE_POINTS:
        b.context = h.msg


def _fault_release(b: _Builder, seq: int, time: float, a: Mapping[str, Any], h: Any) -> None:
    if h is not None:
        b.context = h.msg
    for m in a.get("msgs") or ():
        b.history(m).events.append(seq)


def _fault_lost(b: _Builder, seq: int, time: float, a: Mapping[str, Any], h: Any) -> None:
    if h is None:
        return
    queue = a.get("queue") or ""
    h.lost.append((queue, f"held by a fault and then lost ({a.get('reason')})"))
    b.context = h.msg


_HANDLERS: dict[str, Any] = {
    "publish": _publish,
    "route": _route,
    "return": _return,
    "confirm": _confirm,
    "enqueue": _enqueue,
    "reject-publish": _reject_publish,
    "drop-head": _drop_head,
    "expire": _expire,
    "dead-letter": _dead_letter,
    "dead-letter-dropped": _dead_letter_dropped,
    "deliver": _deliver,
    "get": _deliver,
    "consume": _consume,
    "ack": _ack,
    "nack": _negative("nack"),
    "reject": _negative("reject"),
    "recover-requeue": _negative("recover-requeue"),
    "fault-requeue": _negative("fault-requeue"),
    "requeue": _requeue,
    "purge": _purge,
    "queue-delete": _queue_delete,
    "restart": _restart,
    "get-empty": _get_empty,
    "fault": _fault,
    "fault-release": _fault_release,
    "fault-lost": _fault_lost,
    "connection-closed": _closed,
    "connection-lost": _closed,
}


def build_histories(source: Any) -> Histories:
    """The history of every message in ``source``: a ``Broker`` (its trace), a ``Trace``, or
    trace events (``Event``s, or dicts as ``Event.to_dict()`` / a JSON line gives them).

    One pass over the events: O(events) time, O(messages) memory.
    """
    events, complete = events_of(source)
    builder = _Builder()
    builder.run(events)
    return builder.finish(len(events), complete)
