"""``BrokerStateMachine``: a Hypothesis rule-based state machine over the core engine.

Clients publish, consume, get, ack, nack, reject, cancel, close channels, move the clock and
restart the broker, under a drawn seed and fault plan. After every step the machine replays the
broker's trace into a ledger of message *copies* (one per message per queue) and checks:

1. **Conservation.** Every published message has exactly one publish outcome (routed, returned,
   unroutable, dropped by a declared fault at publish or route, or held back by one; a route
   drop must take the engine's unroutable path and never reach a queue), and every copy is in
   exactly one state: ready, unacked, held back by a fault, or gone as acked, rejected,
   dead-lettered, expired, dropped by overflow, dead-lettered at a quorum queue's delivery
   limit, dropped by a declared fault, deleted with its queue, or lost in a restart (only
   non-persistent messages of classic queues may be: a quorum queue keeps every message).
2. **Counts agree with inspection.** For every queue the ledger's ready and unacked copies are
   exactly the engine's (by message id), and ``broker.queue()`` reports the same numbers.
3. **FIFO for undisturbed messages.** Per queue, first deliveries (not redelivered, not touched
   by a deliver fault) happen in enqueue order; a classic queue's ready messages are always in
   enqueue order (requeued ones go back to their place; a quorum queue's go to the back).
4. **``redelivered`` exactly on redeliveries.** A delivery is flagged redelivered iff that copy
   was delivered before or a deliver fault returned it as if its channel died.
5. **A stream is a log.** When the machine draws a stream (``s0``, bound like the queues),
   every message routed to it keeps its place: the engine's retained messages are a suffix of
   the ledger's log (retention drops whole old segments only), each stream consumer gets
   offsets in increasing order, never a redelivery, and holds at most its prefetch unacked.
6. **Faults do what the plan says, counted independently of the engine.** The machine counts
   its own ``basic_publish`` calls and knows the drawn plan: every applied fault names a rule of
   the plan with that rule's point and action, at most ``max_count`` times (once with ``nth``);
   a ``duplicate`` makes exactly the rule's ``copies`` extra messages, so the messages with a
   publish outcome number the client's publishes plus the copies the plan's duplicates made;
   a message dropped at ``publish`` is never routed, and no message is routed twice.

Use it from a test module::

    from simamqp.stateful import BrokerStateMachine
    TestBroker = BrokerStateMachine.TestCase
"""

from __future__ import annotations

import os
import sys
import traceback
from dataclasses import dataclass, field
from typing import Any

from hypothesis import strategies as st
from hypothesis.stateful import (
    RuleBasedStateMachine,
    initialize,
    invariant,
    rule,
)

from . import strategies as sims
from .core.broker import Broker
from .core.channel import Channel

__all__ = ["BrokerStateMachine", "Ledger", "LedgerError"]

QUEUES = ("q0", "q1")
DLQ = "dlq"
#: The stream the machine may draw (``x-queue-type: stream``), bound to ``ex`` like QUEUES.
STREAM = "s0"
WORDS = ("a", "b")
#: Actions that return a delivery to its queue as if the consumer's channel died.
_RETURNING_DELIVER_FAULTS = frozenset({"redeliver", "close_channel", "close_connection", "restart"})


#: Fault actions RabbitMQ itself can cause (docs/faults.md): they never lose a queued message.
_RABBITMQ_POSSIBLE = frozenset(
    {"redeliver", "close_channel", "close_connection", "restart", "overflow"}
)
#: A queue of the machine: its type (a drawn dimension), its arguments, and whether it is
#: durable (a quorum queue always is).
_QUEUE_SPECS = sims.queue_types(types=("classic", "quorum")).flatmap(
    lambda queue_type: st.tuples(
        st.just(queue_type),
        sims.queue_arguments(
            dead_letter_exchange="dlx", queue_type=None if queue_type == "classic" else queue_type
        ),
        st.booleans() if queue_type == "classic" else st.just(True),
    )
)
#: Consumers mostly acknowledge: acks, nacks and ack faults need unacknowledged deliveries.
_MOSTLY_ACKING = st.sampled_from((False, False, False, True))
#: Publish outcomes after which the message must never be routed (again).
_FINAL_OUTCOMES = frozenset({"routed", "unroutable", "fault-dropped"})


class LedgerError(AssertionError):
    """The trace and the engine disagree about a message (an invariant is broken)."""


@dataclass
class _Copy:
    queue: str
    msg: int
    persistent: bool
    position: int
    state: str = "ready"  # ready | unacked | held | gone
    fate: str = ""
    delivered: bool = False
    must_redeliver: bool = False
    disturbed: bool = False


@dataclass
class Ledger:
    """Replays trace events into per-copy states (see the module docstring)."""

    persistent: dict[int, bool] = field(default_factory=dict)
    copies: dict[tuple[str, int], _Copy] = field(default_factory=dict)
    publish_outcome: dict[int, str] = field(default_factory=dict)
    no_ack_tags: set[str] = field(default_factory=set)
    no_ack_gets: set[int] = field(default_factory=set)
    last_first_delivery: dict[str, int] = field(default_factory=dict)
    positions: dict[str, int] = field(default_factory=dict)
    fates: dict[str, int] = field(default_factory=dict)
    restarted: bool = False
    seen: int = 0
    #: Queues declared with ``x-queue-type: quorum`` (the queue type is a drawn dimension).
    quorum_queues: set[str] = field(default_factory=set)
    #: Per stream, the message ids routed to it in offset order (the log as the ledger saw it).
    stream_logs: dict[str, list[int]] = field(default_factory=dict)
    #: Per stream consumer tag, the offset of its last delivery.
    stream_positions: dict[str, int] = field(default_factory=dict)
    stream_offsets: dict[tuple[str, int], int] = field(default_factory=dict)
    #: The drawn fault plan's rules by name: what each applied fault must do (independent of
    #: the engine's own account in the trace).
    rules: dict[str, dict[str, Any]] = field(default_factory=dict)
    #: basic_publish calls the machine made (counted by the client, not read from the trace).
    client_publishes: int = 0
    publish_events: int = 0
    #: Extra messages the plan's publish/route ``duplicate`` rules must have made so far.
    expected_copies: int = 0
    applications: dict[str, int] = field(default_factory=dict)

    # -- helpers -----------------------------------------------------------------------------

    def _copy(self, queue: str, msg: int, event: Any) -> _Copy:
        copy = self.copies.get((queue, msg))
        if copy is None:
            raise LedgerError(f"{event}: no copy of message {msg} in queue {queue!r}")
        return copy

    def _gone(self, copy: _Copy, fate: str) -> None:
        copy.state = "gone"
        copy.fate = fate
        self.fates[fate] = self.fates.get(fate, 0) + 1
        del self.copies[(copy.queue, copy.msg)]

    def _delivered(self, queue: str, msg: int, redelivered: bool, no_ack: bool, event: Any) -> None:
        if queue == "amq.rabbitmq.reply-to":
            return
        copy = self._copy(queue, msg, event)
        if copy.state != "ready":
            raise LedgerError(f"{event}: delivered a copy that is {copy.state}")
        expected = copy.delivered or copy.must_redeliver
        if redelivered != expected:
            raise LedgerError(f"{event}: redelivered={redelivered}, expected {expected}")
        if not redelivered and not copy.disturbed:
            last = self.last_first_delivery.get(queue, 0)
            if copy.position < last:
                raise LedgerError(f"{event}: FIFO broken in {queue!r} ({copy.position} < {last})")
            self.last_first_delivery[queue] = copy.position
        copy.delivered = True
        if no_ack:
            self._gone(copy, "consumed-no-ack")
        else:
            copy.state = "unacked"

    def _back(self, queue: str, msg: int, event: Any) -> None:
        copy = self.copies.get((queue, msg))
        if copy is None:
            return  # already gone with its deleted queue
        copy.state = "ready"

    # -- replay ------------------------------------------------------------------------------

    def feed(self, broker: Broker) -> None:
        trace = broker.trace
        for event in trace.since(self.seen):
            self._apply(event.kind, event.attrs, event)
        self.seen = len(trace)

    def _apply(self, kind: str, a: Any, event: Any) -> None:
        if kind == "publish":
            self.publish_events += 1
            self.publish_outcome[a["msg"]] = "pending"
        elif kind == "route":
            msg = a["msg"]
            if msg in self.publish_outcome:
                if self.publish_outcome[msg] in _FINAL_OUTCOMES:
                    raise LedgerError(
                        f"{event}: message {msg} routed after it was {self.publish_outcome[msg]}"
                    )
                if self.publish_outcome[msg] == "route-dropped":
                    # A route drop is followed by the engine's unroutable path.
                    if a["queues"]:
                        raise LedgerError(f"{event}: a route-dropped message was routed")
                    self.publish_outcome[msg] = "fault-dropped"
                else:
                    self.publish_outcome[msg] = "routed" if a["queues"] else "unroutable"
        elif kind == "enqueue":
            queue = a["queue"]
            if self.publish_outcome.get(a["msg"]) in ("fault-dropped", "route-dropped"):
                raise LedgerError(f"{event}: message {a['msg']} was dropped by a fault")
            if queue in self.stream_logs:
                self._appended(queue, a, event)
                return
            position = self.positions.get(queue, 0) + 1
            self.positions[queue] = position
            key = (queue, a["msg"])
            if key in self.copies:
                raise LedgerError(f"{event}: message {a['msg']} enqueued twice in {queue!r}")
            self.copies[key] = _Copy(queue, a["msg"], self._is_persistent(a["msg"]), position)
        elif kind == "dead-letter":
            self.persistent[a["new_msg"]] = self._is_persistent(a["msg"])
        elif kind == "deliver" and a["queue"] in self.stream_logs:
            self._read(a, event)
        elif kind == "deliver":
            no_ack = a["consumer_tag"] in self.no_ack_tags
            self._delivered(a["queue"], a["msg"], a["redelivered"], no_ack, event)
        elif kind == "get":
            no_ack = a["msg"] in self.no_ack_gets
            self.no_ack_gets.discard(a["msg"])
            self._delivered(a["queue"], a["msg"], a["redelivered"], no_ack, event)
        elif kind == "ack":
            copy = self.copies.get((a["queue"], a["msg"]))
            if copy is not None:
                self._gone(copy, "acked")
        elif kind in ("nack", "reject", "recover-requeue", "fault-requeue"):
            copy = self.copies.get((a["queue"], a["msg"]))
            if copy is not None:
                if a["requeue"]:
                    copy.state = "ready"
                else:
                    self._gone(copy, "rejected")
        elif kind == "requeue":
            for msg in a["msgs"]:
                self._back(a["queue"], msg, event)
        elif kind == "delivery-limit":
            copy = self.copies.get((a["queue"], a["msg"]))
            if copy is None:
                raise LedgerError(f"{event}: no copy at its delivery limit")
            if a["queue"] not in self.quorum_queues:
                raise LedgerError(f"{event}: a delivery limit on a {a['queue']!r} (not quorum)")
            self._gone(copy, kind)
        elif kind in ("expire", "drop-head"):
            copy = self.copies.get((a["queue"], a["msg"]))
            if copy is None:
                raise LedgerError(f"{event}: no copy to {kind}")
            self._gone(copy, kind)
        elif kind == "queue-delete":
            for key, copy in list(self.copies.items()):
                if key[0] == a["queue"] and copy.state != "held":
                    self._gone(copy, "queue-deleted")
            self.last_first_delivery.pop(a["queue"], None)
        elif kind == "restart":
            self.restarted = True
        elif kind == "fault":
            self._apply_fault(a, event)
        elif kind == "fault-release":
            if "queue" in a and "msg" in a:
                copy = self.copies.get((a["queue"], a["msg"]))
                if copy is not None and copy.state == "held":
                    copy.state = "ready"
        elif kind == "fault-lost" and "msg" in a:
            copy = self.copies.get((a.get("queue", ""), a["msg"]))
            if copy is not None:
                self._gone(copy, "fault-dropped")
            elif self.publish_outcome.get(a["msg"]) == "held":
                # Lost from one queue (deleted while the route was held): the release goes on
                # to route the message to the queues that still exist, if any (check() settles
                # a message that no route followed). Without a queue, the exchange is gone.
                lost_some = "queue" in a
                self.publish_outcome[a["msg"]] = (
                    "lost-some-queues" if lost_some else "fault-dropped"
                )

    def _expect_rule(self, a: Any, event: Any) -> dict[str, Any] | None:
        """The plan's rule this fault event names, checked against what the plan says."""
        if not self.rules:
            return None  # a machine used without a plan (the ledger alone)
        rule = self.rules.get(a["rule"])
        if rule is None:
            raise LedgerError(f"{event}: no rule {a['rule']!r} in the plan")
        if (rule["point"], rule["action"]) != (a["point"], a["action"]):
            raise LedgerError(f"{event}: the plan says {rule['point']}/{rule['action']}")
        count = self.applications[a["rule"]] = self.applications.get(a["rule"], 0) + 1
        limit = 1 if rule.get("nth") is not None else rule.get("max_count")
        if limit is not None and count > limit:
            raise LedgerError(f"{event}: rule applied {count} times, the plan allows {limit}")
        if rule["action"] == "duplicate" and len(a["copies"]) != rule.get("copies", 1):
            raise LedgerError(
                f"{event}: {len(a['copies'])} copies, the plan says {rule.get('copies', 1)}"
            )
        return rule

    def _apply_fault(self, a: Any, event: Any) -> None:
        point, action = a["point"], a["action"]
        rule = self._expect_rule(a, event)
        if action == "duplicate" and point in ("publish", "route") and rule is not None:
            self.expected_copies += rule.get("copies", 1)
        if point == "publish":
            msg = a["msg"]
            if action == "duplicate":
                self.publish_outcome[msg] = "routed-or-unroutable"
                for copy in a["copies"]:
                    self.persistent[copy] = self._is_persistent(msg)
                    self.publish_outcome[copy] = "pending"
            elif action in ("delay", "reorder"):
                self.publish_outcome[msg] = "held"
            else:
                self.publish_outcome[msg] = "fault-dropped"
        elif point == "route":
            msg = a["msg"]
            if action == "drop":
                self.publish_outcome[msg] = "route-dropped"
            elif action == "duplicate":
                self.publish_outcome[msg] = "pending"
                for copy in a["copies"]:
                    self.persistent[copy] = self._is_persistent(msg)
                    self.publish_outcome[copy] = "pending"
            else:
                self.publish_outcome[msg] = "held"
        elif point == "enqueue":
            if action == "duplicate":
                for copy in a["copies"]:
                    self.persistent[copy] = self._is_persistent(a["msg"])
        elif point == "deliver" and a["queue"] in self.stream_logs:
            return  # the reader moved on; the log keeps the message
        elif point == "deliver":
            copy = self._copy(a["queue"], a["msg"], event)
            if copy.state != "ready":
                raise LedgerError(f"{event}: a deliver fault on a copy that is {copy.state}")
            if action == "drop":
                self._gone(copy, "fault-dropped")
            elif action == "delay":
                copy.state = "held"
                copy.disturbed = True
            elif action in _RETURNING_DELIVER_FAULTS:
                copy.must_redeliver = True

    def _appended(self, queue: str, a: Any, event: Any) -> None:
        log = self.stream_logs[queue]
        if a["msg"] in log:
            raise LedgerError(f"{event}: message {a['msg']} appended twice to {queue!r}")
        if a["offset"] < len(log):
            raise LedgerError(f"{event}: offset {a['offset']} again in {queue!r}")
        log.append(a["msg"])
        self.stream_offsets[(queue, a["msg"])] = a["offset"]

    def _read(self, a: Any, event: Any) -> None:
        offset = self.stream_offsets.get((a["queue"], a["msg"]))
        if offset is None:
            raise LedgerError(f"{event}: message {a['msg']} is not in stream {a['queue']!r}")
        if a["redelivered"]:
            raise LedgerError(f"{event}: a stream delivery flagged redelivered")
        last = self.stream_positions.get(a["consumer_tag"], -2)
        if offset <= last:
            raise LedgerError(f"{event}: offset {offset} after {last} for {a['consumer_tag']}")
        self.stream_positions[a["consumer_tag"]] = offset

    def _check_stream(self, broker: Broker, name: str, queue: Any, unacked: list[int]) -> None:
        log = self.stream_logs[name]
        retained = [e.message.id for e in queue.ready_entries()]
        if retained != log[len(log) - len(retained) :]:
            raise LedgerError(f"{name}: the stream holds {retained}, not a suffix of {log}")
        if queue.unacked != len(unacked):
            raise LedgerError(f"{name}: unacked counter {queue.unacked} != {unacked}")
        info = broker.queue(name)
        if (info.messages_ready, info.consumers) != (0, 0):
            raise LedgerError(f"{name}: a stream reports {info}")
        for consumer in queue.consumer_order:
            if consumer.unacked > consumer.prefetch:
                raise LedgerError(f"{name}: {consumer} holds more than its prefetch")

    def _is_persistent(self, msg: int) -> bool:
        return self.persistent.get(msg, False)

    # -- checks ------------------------------------------------------------------------------

    def check(self, broker: Broker) -> None:
        # Publish outcomes: a routed message's route event replaces "pending" at once, so
        # "pending" left over after a step means a message vanished without an outcome.
        for msg, outcome in self.publish_outcome.items():
            if outcome == "lost-some-queues":
                # No route event followed the held route's release: every queue was gone.
                self.publish_outcome[msg] = "fault-dropped"
            elif outcome in ("pending", "route-dropped"):
                raise LedgerError(f"message {msg} was published but has no outcome")
        if self.rules:
            if self.publish_events != self.client_publishes:
                raise LedgerError(
                    f"{self.client_publishes} basic_publish calls but "
                    f"{self.publish_events} publish events"
                )
            expected = self.client_publishes + self.expected_copies
            if len(self.publish_outcome) != expected:
                raise LedgerError(
                    f"{len(self.publish_outcome)} messages have a publish outcome; the client "
                    f"published {self.client_publishes} and the plan's duplicates made "
                    f"{self.expected_copies} copies"
                )
        vhost = broker.vhosts["/"]
        if self.restarted:
            self._reconcile_restart(broker)
        for key, copy in list(self.copies.items()):
            if key[0] not in vhost.queues and copy.state != "held":
                # Enqueued into a queue object that was deleted in the same step.
                self._gone(copy, "queue-deleted")
        unacked_by_queue: dict[str, list[int]] = {}
        for conn in broker.connections.values():
            for channel in conn.channels.values():
                for item in channel.unacked.values():
                    if not item.queue.deleted:
                        unacked_by_queue.setdefault(item.queue.name, []).append(
                            item.entry.message.id
                        )
        for name, queue in vhost.queues.items():
            if name in self.stream_logs:
                self._check_stream(broker, name, queue, unacked_by_queue.get(name, []))
                continue
            ready_engine = sorted(e.message.id for e in queue.ready_entries())
            ready_ledger = sorted(
                c.msg for k, c in self.copies.items() if k[0] == name and c.state == "ready"
            )
            if ready_engine != ready_ledger:
                raise LedgerError(f"{name}: ready {ready_engine} but ledger says {ready_ledger}")
            # Requeued messages go back to their original position (classic queues):
            # the ready list is always in enqueue order.
            order = [self.copies[(name, e.message.id)].position for e in queue.ready_entries()]
            if name not in self.quorum_queues and order != sorted(order):
                raise LedgerError(f"{name}: ready messages out of enqueue order {order}")
            unacked_engine = sorted(unacked_by_queue.get(name, []))
            unacked_ledger = sorted(
                c.msg for k, c in self.copies.items() if k[0] == name and c.state == "unacked"
            )
            if unacked_engine != unacked_ledger:
                raise LedgerError(
                    f"{name}: unacked {unacked_engine} but ledger says {unacked_ledger}"
                )
            info = broker.queue(name)
            if (info.messages_ready, info.messages_unacknowledged) != (
                len(ready_ledger),
                len(unacked_ledger),
            ):
                raise LedgerError(f"{name}: inspection {info} disagrees with the ledger")
            if queue.unacked != len(unacked_engine):
                raise LedgerError(f"{name}: unacked counter {queue.unacked} != {unacked_engine}")
            for consumer in queue.consumer_order:
                if consumer.prefetch and consumer.unacked > consumer.prefetch:
                    raise LedgerError(f"{name}: {consumer} holds more than its prefetch")
        held = sum(1 for c in self.copies.values() if c.state == "held")
        held += sum(1 for o in self.publish_outcome.values() if o == "held")
        held_engine = broker.faults.held_messages
        if held > held_engine:
            raise LedgerError(f"ledger holds {held} messages, the fault plan {held_engine}")

    def _reconcile_restart(self, broker: Broker) -> None:
        """A restart drops transient messages of durable queues without an event each."""
        self.restarted = False
        vhost = broker.vhosts["/"]
        for key, copy in list(self.copies.items()):
            queue = vhost.queues.get(key[0])
            if queue is None or copy.state != "ready":
                continue
            if not any(e.message.id == copy.msg for e in queue.ready_entries()):
                if key[0] in self.quorum_queues:
                    raise LedgerError(f"message {copy.msg} of quorum queue lost in a restart")
                if copy.persistent:
                    raise LedgerError(f"persistent message {copy.msg} lost in a restart")
                self._gone(copy, "restart-lost")


class BrokerStateMachine(RuleBasedStateMachine):
    """Random clients against one core ``Broker`` under a drawn seed and fault plan."""

    def __init__(self) -> None:
        super().__init__()
        self.broker = Broker()
        self.ledger = Ledger()
        self.publisher: Channel | None = None
        self.consumers: list[tuple[Channel, str]] = []
        self.consumer_count = 0
        self.queue_args: dict[str, dict[str, Any]] = {}
        self.queue_types: dict[str, str] = {}
        #: The stream's arguments when the run drew one (None: no stream).
        self.stream_args: dict[str, Any] | None = None
        self.durable: dict[str, bool] = {}
        self.bindings: dict[str, str] = {}
        self.plan: dict[str, Any] = {"version": 1, "rules": []}
        self.scenario_path: str | None = None
        self.recorder: Any = None

    # -- setup -------------------------------------------------------------------------------

    @initialize(
        seed=st.integers(min_value=0, max_value=2**32 - 1),
        queues=st.tuples(*(_QUEUE_SPECS for _ in QUEUES)),
        bindings=st.tuples(*(sims.binding_keys(words=WORDS, max_words=3) for _ in QUEUES)),
        plan=st.one_of(
            # Half the plans aim at consumers: deliver and ack faults need deliveries to act on,
            # and connection faults would otherwise keep tearing consumers down first.
            sims.fault_plans(points=("deliver", "ack"), queues=QUEUES, min_rules=1, max_delay=2.0),
            sims.fault_plans(queues=QUEUES, min_rules=1, max_rules=3, max_delay=2.0),
        ),
        consumers=st.lists(
            st.tuples(st.sampled_from((*QUEUES, DLQ)), _MOSTLY_ACKING, st.integers(0, 3)),
            min_size=1,
            max_size=3,
        ),
        stream=st.none() | sims.queue_arguments(queue_type="stream"),
    )
    def setup(
        self,
        seed: int,
        bindings: tuple[str, ...],
        plan: dict[str, Any],
        consumers: list[tuple[str, bool, int]],
        queues: tuple[tuple[str, dict[str, Any], bool], ...] | None = None,
        args: tuple[dict[str, Any], ...] | None = None,
        durable: tuple[bool, ...] | None = None,
        stream: dict[str, Any] | None = None,
    ) -> None:
        """``queues``: (type, arguments, durable) per queue; or, as before queue types were
        drawn, ``args`` and ``durable`` (the type is then the arguments' ``x-queue-type``).
        ``stream``: the arguments of stream ``s0``, bound to ``ex`` with the first queue's key
        (None: no stream)."""
        if queues is None:
            if args is None or durable is None:
                raise TypeError("setup() needs queues=, or args= and durable=")
            queues = tuple(
                (str(a.get("x-queue-type", "classic")), a, d)
                for a, d in zip(args, durable, strict=True)
            )
        self.broker = Broker(seed=seed)
        self._start_recording()
        for name, (queue_type, arguments, is_durable), key in zip(
            QUEUES, queues, bindings, strict=True
        ):
            self.queue_types[name] = queue_type
            self.queue_args[name] = arguments
            self.durable[name] = is_durable
            self.bindings[name] = key
            if queue_type == "quorum":
                self.ledger.quorum_queues.add(name)
        self.stream_args = stream
        if stream is not None:
            self.ledger.stream_logs[STREAM] = []
        self._declare_all()
        self.plan = plan
        self.ledger.rules = {rule["name"]: dict(rule) for rule in plan["rules"]}
        self.broker.faults.load(plan)
        for queue, no_ack, prefetch in consumers:
            self.consume(queue, no_ack, prefetch)

    def _start_recording(self) -> None:
        """With ``SIMAMQP_SCENARIO_OUT=PATH``, record every run as a scenario file.

        Each run overwrites PATH; Hypothesis replays the minimal failing example last, so after
        a failure PATH holds it: ``simamqp run PATH`` replays the same trace digest.
        """
        self.scenario_path = os.environ.get("SIMAMQP_SCENARIO_OUT") or None
        self.recorder = None
        if self.scenario_path is not None:
            from .scenarios import Recorder  # imports yaml: only when asked to record

            self.recorder = Recorder(self.broker)

    def _write_scenario(self) -> None:
        if self.recorder is None or self.scenario_path is None:
            return
        from .scenarios import write

        description = (
            "BrokerStateMachine run recorded by simamqp.stateful (seed and fault plan: "
            f"{self.replay_data()})"
        )
        write(
            self.recorder.scenario("broker-state-machine", description=description),
            self.scenario_path,
        )

    def replay_data(self) -> dict[str, Any]:
        """The seed and fault plan of this run as plain data (``seed`` + ``faults:`` of a
        scenario file; ``FaultPlan.from_dict`` reads it back)."""
        return {**self.plan, "seed": self.broker.seed}

    def _channel(self) -> Channel:
        if self.publisher is None or not self.publisher.is_open:
            self.publisher = self._new_channel()
        return self.publisher

    def _new_channel(self) -> Channel:
        # A connection-point fault may close a new connection at once (as a client would see
        # it, with 320 CONNECTION_FORCED); such rules are bounded, so reconnecting gets through.
        for _ in range(20):
            connection = self.broker.connect()
            if connection.is_open:
                return connection.channel()
        raise AssertionError("could not open a connection through the fault plan")

    def _declare_all(self) -> None:
        channel = self._channel()
        channel.exchange_declare("ex", "topic", durable=True)
        channel.exchange_declare("dlx", "fanout", durable=True)
        channel.queue_declare(DLQ, durable=True)
        channel.queue_bind(DLQ, "dlx")
        for name in QUEUES:
            channel.queue_declare(name, durable=self.durable[name], arguments=self.queue_args[name])
            channel.queue_bind(name, "ex", self.bindings[name])
        if self.stream_args is not None:
            channel.queue_declare(STREAM, durable=True, arguments=self.stream_args)
            channel.queue_bind(STREAM, "ex", self.bindings[QUEUES[0]])

    def _record_publish_persistence(self, persistent: bool) -> None:
        self.ledger.persistent[self.broker._next_message_id] = persistent

    # -- rules -------------------------------------------------------------------------------

    @rule(
        key=sims.routing_keys(words=WORDS, max_words=3),
        direct=st.sampled_from((None, *QUEUES, DLQ, "consumed", "consumed")),
        persistent=st.booleans(),
        mandatory=st.booleans(),
        body=st.binary(max_size=8),
        count=st.integers(1, 6),
    )
    def publish(
        self,
        key: str,
        direct: str | None,
        persistent: bool,
        mandatory: bool,
        body: bytes,
        count: int,
    ) -> None:
        props = {"delivery_mode": 2 if persistent else 1}
        if direct == "consumed":
            # Aim at a queue someone consumes from: deliveries, acks and their faults need it.
            consumed = sorted(
                {c.queue.name for ch, _ in self.consumers for c in ch.consumers.values()}
            )
            direct = consumed[0] if consumed else None
        for _ in range(count):
            # Due timers fire first, as basic_publish would fire them: a fault timer that fails
            # then fails this rule before the publish is counted (the ledger counts only
            # basic_publish calls that reached the broker).
            self.broker.tick()
            channel = self._channel()
            self._record_publish_persistence(persistent)
            self.ledger.client_publishes += 1
            if direct is None:
                channel.basic_publish(body, "ex", key, mandatory=mandatory, properties=props)
            else:
                channel.basic_publish(body, "", direct, mandatory=mandatory, properties=props)

    @rule(queue=st.sampled_from((*QUEUES, DLQ)), no_ack=_MOSTLY_ACKING, prefetch=st.integers(0, 3))
    def consume(self, queue: str, no_ack: bool, prefetch: int) -> None:
        if len(self.consumers) >= 4:
            return
        channel = self._new_channel()
        if queue not in self.broker.vhosts["/"].queues:  # a connect fault may have restarted
            channel.connection.close()
            return
        channel.basic_qos(0, prefetch, False)
        self.consumer_count += 1
        tag = f"c{self.consumer_count}-{queue}"
        if no_ack:
            self.ledger.no_ack_tags.add(tag)
        channel.basic_consume(queue, consumer_tag=tag, no_ack=no_ack)
        self.consumers.append((channel, tag))

    @rule(offset=sims.stream_offsets(max_offset=10), prefetch=st.integers(1, 3))
    def read_stream(self, offset: Any, prefetch: int) -> None:
        """A consumer of the stream from a drawn ``x-stream-offset`` (no-op without one)."""
        if self.stream_args is None or len(self.consumers) >= 4:
            return
        channel = self._new_channel()
        if STREAM not in self.broker.vhosts["/"].queues:
            channel.connection.close()
            return
        channel.basic_qos(0, prefetch, False)
        self.consumer_count += 1
        tag = f"c{self.consumer_count}-{STREAM}"
        channel.basic_consume(STREAM, consumer_tag=tag, arguments={"x-stream-offset": offset})
        self.consumers.append((channel, tag))

    @rule(index=st.integers(0, 3))
    def cancel(self, index: int) -> None:
        if not self.consumers:
            return
        channel, tag = self.consumers.pop(index % len(self.consumers))
        if channel.is_open:
            channel.basic_cancel(tag)
            channel.connection.close()

    @rule(queue=st.sampled_from((*QUEUES, DLQ)), no_ack=st.booleans())
    def get(self, queue: str, no_ack: bool) -> None:
        channel = self._channel()
        if queue not in self.broker.vhosts["/"].queues:
            return
        ok = channel.basic_get(queue, no_ack=no_ack)
        if no_ack and ok is not None:
            # The trace's get event does not say no_ack: the ledger learns it here (the
            # invariant replays the trace after this rule returns).
            self.ledger.no_ack_gets.add(ok.message.id)

    def _open_channels(self) -> list[Channel]:
        return [
            ch
            for conn in self.broker.connections.values()
            for ch in conn.channels.values()
            if ch.unacked
        ]

    @rule(index=st.integers(0, 50), how=st.sampled_from(("ack", "ack-multiple", "nack", "reject")))
    def settle(self, index: int, how: str) -> None:
        channels = self._open_channels()
        if not channels:
            return
        channel = channels[index % len(channels)]
        tags = sorted(channel.unacked)
        tag = tags[index % len(tags)]
        requeue = index % 2 == 0
        if how == "ack":
            channel.basic_ack(tag)
        elif how == "ack-multiple":
            channel.basic_ack(tag, multiple=True)
        elif how == "nack":
            channel.basic_nack(tag, multiple=index % 3 == 0, requeue=requeue)
        else:
            channel.basic_reject(tag, requeue=requeue)

    @rule(
        policy=st.lists(
            st.sampled_from(("ack", "ack", "nack-requeue", "reject-drop", "leave")),
            min_size=1,
            max_size=8,
        )
    )
    def work(self, policy: list[str]) -> None:
        """Every consumer channel settles its oldest deliveries, one policy entry each."""
        for channel in self._open_channels():
            for how in policy:
                if not channel.is_open or not channel.unacked:
                    break
                tag = min(channel.unacked)
                if how == "ack":
                    channel.basic_ack(tag)
                elif how == "nack-requeue":
                    channel.basic_nack(tag, requeue=True)
                elif how == "reject-drop":
                    channel.basic_reject(tag, requeue=False)

    @rule(index=st.integers(0, 50))
    def recover(self, index: int) -> None:
        # (basic.recover over stream deliveries is a 540 the rule would raise: not drawn.)
        channels = [
            ch
            for ch in self._open_channels()
            if not any(u.queue.name == STREAM for u in ch.unacked.values())
        ]
        if channels:
            channels[index % len(channels)].basic_recover(True)

    @rule(index=st.integers(0, 50))
    def close_channel(self, index: int) -> None:
        channels = self._open_channels()
        if channels:
            channels[index % len(channels)].close()

    @rule(seconds=st.sampled_from((0.0, 0.5, 1.0, 5.0, 30.0)))
    def advance(self, seconds: float) -> None:
        self.broker.advance(seconds)

    @rule(
        kind=st.sampled_from(("restart", "redeclare", "remove_faults", "delete_queue")),
        queue=st.sampled_from(QUEUES),
    )
    def disrupt(self, kind: str, queue: str) -> None:
        """One rule for the rare, disruptive operations, so they stay rare."""
        if kind == "restart":
            self.broker.restart()
            self.consumers.clear()
        elif kind == "remove_faults":
            self.broker.faults.clear()
        elif kind == "delete_queue":
            channel = self._channel()
            if queue in self.broker.vhosts["/"].queues:
                channel.queue_delete(queue)
        self._declare_all()

    # -- invariants --------------------------------------------------------------------------

    @invariant()
    def ledger_agrees_with_engine(self) -> None:
        self.broker.run_until_idle()
        for conn in list(self.broker.connections.values()):
            conn.outbox.clear()
        self.ledger.feed(self.broker)
        self.ledger.check(self.broker)

    @invariant()
    def rabbitmq_possible_faults_lose_nothing(self) -> None:
        """Under faults RabbitMQ itself can cause, no queued message is lost to a fault."""
        actions = {rule["action"] for rule in self.plan.get("rules", [])}
        if actions <= _RABBITMQ_POSSIBLE and self.ledger.fates.get("fault-dropped", 0):
            raise LedgerError(
                f"a RabbitMQ-possible fault plan lost {self.ledger.fates['fault-dropped']} "
                f"queued message(s): {self.plan}"
            )

    def _failing(self) -> bool:
        """Whether an exception raised in this machine's run is propagating now."""
        error = sys.exc_info()[1]
        if error is None:
            return False
        return any(
            frame.f_locals.get("self") is self or frame.f_locals.get("machine") is self
            for frame, _ in traceback.walk_tb(error.__traceback__)
        )

    def teardown(self) -> None:
        if self._failing():
            # A rule or invariant of this run already failed (Hypothesis tears down in a
            # ``finally``): a ledger check now would replace that error with a consequence.
            return
        # Let every held message come back, then everything must still add up.
        self.broker.faults.clear()
        self.broker.advance(60.0)
        self._write_scenario()
        self.ledger.feed(self.broker)
        self.ledger.check(self.broker)
