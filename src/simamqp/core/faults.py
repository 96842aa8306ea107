"""Fault injection: seeded rules the engine consults at named points.

A ``FaultRule`` says *where* (``point``), *to what* (selectors) and *what happens* (``action``).
The broker's ``FaultPlan`` (``broker.faults``) holds the rules; the engine calls it only while it
holds rules (``if broker.faults.rules``), so a broker without faults pays one attribute check.

Points and the actions each one accepts (``ACTIONS_BY_POINT``):

- ``publish``: a message reached an exchange, before routing. ``drop``, ``duplicate``,
  ``delay``, ``reorder``, ``close_channel``, ``close_connection``, ``restart``.
- ``route``: the exchange graph was resolved to a non-empty set of queues, before any of them
  enqueues the message. ``drop`` (the message routes nowhere: unroutable, so a mandatory
  publish is returned 312 NO_ROUTE and a confirm-mode publisher gets an ack), ``duplicate``,
  ``delay``, ``reorder`` (held messages keep the queues they were routed to).
- ``enqueue``: a routed message is about to enter one queue. ``drop``, ``duplicate``,
  ``delay``, ``reorder``, ``overflow``.
- ``deliver``: a queue hands a message to a consumer. ``drop``, ``delay``, ``redeliver``,
  ``close_channel``, ``close_connection``, ``restart``.
- ``ack``: a client acknowledges a delivery. ``drop``, ``delay``, ``redeliver``,
  ``close_channel``, ``close_connection``, ``restart``.
- ``connection``: a client opened a connection. ``close_connection``, ``restart``.

Faults RabbitMQ itself can cause leave a state RabbitMQ could be in: a closed channel or
connection requeues its unacknowledged messages with ``redelivered`` set
(https://www.rabbitmq.com/confirms.html#automatic-requeueing); a forced close is 320
CONNECTION_FORCED; ``restart`` is ``Broker.restart()``; ``overflow`` does what the queue's
``x-overflow`` setting does when ``x-max-length`` is hit (https://www.rabbitmq.com/maxlength.html).
``drop``, ``duplicate``, ``delay`` and ``reorder`` are declared departures from RabbitMQ's
guarantees (what a lossy network, a buggy proxy or at-least-once redelivery would look like to a
client); they exist to test that client code survives them.

Every applied fault is a ``fault`` trace event naming its rule. Probabilities are drawn from the
broker's seeded ``random`` (only for rules whose other selectors matched), so a seed and a plan
replay the same faults.
"""

from __future__ import annotations

import contextlib
import math
from collections.abc import Collection, Iterator, Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from .errors import (
    CHANNEL_REPLY_CODES,
    AMQPError,
    ConnectionForced,
    PreconditionFailed,
    error_for_code,
)
from .message import Message, QueuedMessage

if TYPE_CHECKING:
    from .broker import Broker
    from .channel import Channel, Consumer
    from .connection import Connection
    from .queue_type import Queue

__all__ = [
    "ACTIONS",
    "ACTIONS_BY_POINT",
    "FAULT_PLAN_VERSION",
    "POINTS",
    "FaultPlan",
    "FaultRule",
    "InvalidFault",
    "parse_rules",
    "topic_matches",
]

#: Version of the ``FaultPlan.to_dict()`` format.
FAULT_PLAN_VERSION = 1

POINTS = ("publish", "route", "enqueue", "deliver", "ack", "connection")
ACTIONS = (
    "drop",
    "duplicate",
    "reorder",
    "delay",
    "redeliver",
    "close_channel",
    "close_connection",
    "restart",
    "overflow",
)
ACTIONS_BY_POINT: Mapping[str, frozenset[str]] = {
    "publish": frozenset(
        {"drop", "duplicate", "delay", "reorder", "close_channel", "close_connection", "restart"}
    ),
    "route": frozenset({"drop", "duplicate", "delay", "reorder"}),
    "enqueue": frozenset({"drop", "duplicate", "delay", "reorder", "overflow"}),
    "deliver": frozenset(
        {"drop", "delay", "redeliver", "close_channel", "close_connection", "restart"}
    ),
    "ack": frozenset(
        {"drop", "delay", "redeliver", "close_channel", "close_connection", "restart"}
    ),
    "connection": frozenset({"close_connection", "restart"}),
}
#: Selectors that make sense at each point (a message exists at all but ``connection``).
#: At ``route``, ``queue`` means "the routing result contains this queue".
_QUEUE_POINTS = frozenset({"route", "enqueue", "deliver", "ack"})
_MESSAGE_POINTS = frozenset({"publish", "route", "enqueue", "deliver", "ack"})
#: What a forced close says: ``rabbitmqctl close_connection`` / the management plugin.
FORCED_CLOSE_TEXT = "Closed via management plugin"
#: How long ``reorder`` holds messages back at most when its window does not fill.
DEFAULT_REORDER_HOLD = 1.0


class InvalidFault(ValueError):
    """A fault rule was given bad arguments (raised when the rule is created)."""


def topic_matches(pattern: str, routing_key: str) -> bool:
    """Topic-exchange matching: ``*`` is one word, ``#`` zero or more (words split on ``.``)."""
    words = routing_key.split(".") if routing_key else []
    parts = pattern.split(".") if pattern else []
    return _topic_match(parts, 0, words, 0)


def _topic_match(parts: list[str], i: int, words: list[str], j: int) -> bool:
    if i == len(parts):
        return j == len(words)
    part = parts[i]
    if part == "#":
        return any(_topic_match(parts, i + 1, words, k) for k in range(j, len(words) + 1))
    if j == len(words):
        return False
    return (part == "*" or part == words[j]) and _topic_match(parts, i + 1, words, j + 1)


@dataclass(frozen=True)
class FaultRule:
    """One fault: at ``point``, for messages the selectors match, do ``action``.

    Selectors (all optional, all must match): ``queue`` and ``exchange`` (exact names; at
    ``route``, ``queue`` matches when the routing result contains that queue),
    ``routing_key`` (a topic pattern with ``*`` and ``#``), ``properties`` and ``headers``
    (each listed key must be present with an equal value), ``nth`` (only the nth matching
    occurrence, counted from 1), ``probability`` (drawn from the broker's seeded random),
    ``max_count`` (at most this many applications).

    Action parameters: ``copies`` (``duplicate``: extra copies), ``window`` (``reorder``: how
    many messages are held back and released out of order), ``delay`` (``delay``: seconds on the
    broker clock; ``reorder``: the longest a message is held when the window does not fill),
    ``reply_code``/``reply_text`` (``close_channel``: the channel error sent).
    """

    point: str
    action: str
    name: str = ""
    queue: str | None = None
    exchange: str | None = None
    routing_key: str | None = None
    properties: Mapping[str, Any] | None = None
    headers: Mapping[str, Any] | None = None
    nth: int | None = None
    probability: float = 1.0
    max_count: int | None = None
    copies: int = 1
    window: int = 2
    delay: float | None = None
    reply_code: int = 406
    reply_text: str = ""

    def __post_init__(self) -> None:
        if self.point not in POINTS:
            raise InvalidFault(f"unknown fault point {self.point!r}; one of {POINTS}")
        if self.action not in ACTIONS:
            raise InvalidFault(f"unknown fault action {self.action!r}; one of {ACTIONS}")
        if self.action not in ACTIONS_BY_POINT[self.point]:
            allowed = sorted(ACTIONS_BY_POINT[self.point])
            raise InvalidFault(
                f"action {self.action!r} is not possible at point {self.point!r}; one of {allowed}"
            )
        if not isinstance(self.name, str):
            raise InvalidFault(f"name must be a str, got {self.name!r}")
        for attr in ("queue", "exchange", "routing_key"):
            value = getattr(self, attr)
            if value is not None and not isinstance(value, str):
                raise InvalidFault(f"{attr} must be a str or None, got {value!r}")
        if self.queue is not None and self.point not in _QUEUE_POINTS:
            raise InvalidFault(
                f"a queue selector needs point route, enqueue, deliver or ack, not {self.point!r}"
            )
        if self.point not in _MESSAGE_POINTS and (
            self.exchange is not None
            or self.routing_key is not None
            or self.properties
            or self.headers
        ):
            raise InvalidFault(f"message selectors are meaningless at point {self.point!r}")
        for attr in ("properties", "headers"):
            value = getattr(self, attr)
            if value is not None and not isinstance(value, Mapping):
                raise InvalidFault(f"{attr} must be a mapping, got {value!r}")
        _check_int(self.nth, "nth", minimum=1, optional=True)
        _check_int(self.max_count, "max_count", minimum=1, optional=True)
        _check_int(self.copies, "copies", minimum=1)
        _check_int(self.window, "window", minimum=2)
        _check_int(self.reply_code, "reply_code", minimum=300)
        if self.reply_code not in CHANNEL_REPLY_CODES:
            # A connection-level code (320, 5xx...) or an unknown one cannot close a channel.
            raise InvalidFault(
                f"reply_code must be a channel error code, one of {sorted(CHANNEL_REPLY_CODES)}, "
                f"got {self.reply_code!r}"
            )
        if (
            isinstance(self.probability, bool)
            or not isinstance(self.probability, int | float)
            or not 0.0 < self.probability <= 1.0
        ):
            raise InvalidFault(f"probability must be in (0, 1], got {self.probability!r}")
        if self.delay is not None and (
            isinstance(self.delay, bool)
            or not isinstance(self.delay, int | float)
            or not math.isfinite(self.delay)
            or self.delay < 0
        ):
            raise InvalidFault(f"delay must be a finite number of seconds >= 0, got {self.delay!r}")
        if self.action == "delay" and self.delay is None:
            raise InvalidFault("action 'delay' needs delay=SECONDS")
        if not isinstance(self.reply_text, str):
            raise InvalidFault(f"reply_text must be a str, got {self.reply_text!r}")
        # The close carries "CODE_NAME - text" as an AMQP shortstr: at most 255 UTF-8 bytes.
        if self.action == "close_channel":
            text = self.reply_text or f"fault injected by rule '{self.name}'"
            error_class = error_for_code(self.reply_code)
            sent = error_class(text).reply_text
            if len(sent.encode("utf-8", "surrogatepass")) > 255:
                raise InvalidFault(
                    "the reply text is longer than an AMQP shortstr (255 bytes, with the "
                    f"{error_class.reply_name} prefix): {sent[:60]!r}..."
                )

    # -- selectors ---------------------------------------------------------------------------

    def selects(
        self,
        message: Message | None,
        queue_name: str | None,
        queue_names: Collection[str] | None = None,
    ) -> bool:
        """The static selectors (not nth, probability or max_count) match.

        ``queue_names`` (point ``route``): the routing result; ``queue`` must be among them.
        """
        if self.queue is not None:
            if queue_names is not None:
                if self.queue not in queue_names:
                    return False
            elif self.queue != queue_name:
                return False
        if message is None:
            return True
        if self.exchange is not None and self.exchange != message.exchange:
            return False
        if self.routing_key is not None and not topic_matches(
            self.routing_key, message.routing_key
        ):
            return False
        if self.properties:
            props = message.properties
            for key, value in self.properties.items():
                if key not in props or props[key] != value:
                    return False
        if self.headers:
            headers = message.headers or {}
            for key, value in self.headers.items():
                if key not in headers or headers[key] != value:
                    return False
        return True

    # -- serialisation -----------------------------------------------------------------------

    def to_dict(self) -> dict[str, Any]:
        """Plain data: only the fields that differ from their defaults."""
        out: dict[str, Any] = {"point": self.point, "action": self.action}
        for key, default in _DEFAULTS.items():
            value = getattr(self, key)
            if value != default:
                out[key] = dict(value) if isinstance(value, Mapping) else value
        return out

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> FaultRule:
        if not isinstance(data, Mapping):
            raise InvalidFault(f"a fault rule must be a mapping, got {data!r}")
        unknown = set(data) - set(_DEFAULTS) - {"point", "action"}
        if unknown:
            raise InvalidFault(f"unknown fault rule keys: {sorted(unknown)}")
        if "point" not in data or "action" not in data:
            raise InvalidFault(f"a fault rule needs 'point' and 'action': {dict(data)!r}")
        return cls(**dict(data))


_DEFAULTS: dict[str, Any] = {
    "name": "",
    "queue": None,
    "exchange": None,
    "routing_key": None,
    "properties": None,
    "headers": None,
    "nth": None,
    "probability": 1.0,
    "max_count": None,
    "copies": 1,
    "window": 2,
    "delay": None,
    "reply_code": 406,
    "reply_text": "",
}


def _check_int(value: Any, name: str, *, minimum: int, optional: bool = False) -> None:
    if value is None and optional:
        return
    if isinstance(value, bool) or not isinstance(value, int) or value < minimum:
        raise InvalidFault(f"{name} must be an int >= {minimum}, got {value!r}")


class _RuleState:
    """Counters and held messages of one active rule."""

    __slots__ = ("applied", "held", "matched", "rule", "timer")

    def __init__(self, rule: FaultRule) -> None:
        self.rule = rule
        self.matched = 0
        self.applied = 0
        #: ``reorder``: what is held back, per target (an exchange publish or a queue).
        self.held: dict[Any, list[tuple[Any, ...]]] = {}
        self.timer: Any = None


class FaultPlan:
    """The active fault rules of one broker (``broker.faults``)."""

    def __init__(self, broker: Broker) -> None:
        self.broker = broker
        #: Active rules in the order they were added (the engine checks this list first).
        self.rules: list[FaultRule] = []
        self._states: dict[str, _RuleState] = {}
        self._points: frozenset[str] = frozenset()
        self._next_rule = 1
        #: Deliveries a fault put back or released, exempt from deliver faults once.
        #: Keyed by id() with the entry as value: the entry stays alive, so its id is not reused.
        self._exempt: dict[int, QueuedMessage] = {}
        #: Messages currently held back by ``delay`` or ``reorder`` (by message id).
        self._held: dict[int, int] = {}
        #: A held publish (or ack) being released is not subject to faults at its point again;
        #: it still meets the faults of later points (enqueue, deliver).
        self._releasing = False
        self._releasing_ack = False

    def __repr__(self) -> str:
        return f"<FaultPlan {[r.name for r in self.rules]}>"

    # -- managing rules ------------------------------------------------------------------------

    def _lock(self) -> contextlib.AbstractContextManager[Any]:
        lock = getattr(self.broker, "lock", None)
        return lock if lock is not None else contextlib.nullcontext()

    def add(self, rule: FaultRule | None = None, /, **kwargs: Any) -> FaultRule:
        """Activate a rule: ``add(FaultRule(...))`` or ``add(point=..., action=..., ...)``."""
        if rule is None:
            rule = FaultRule(**kwargs)
        elif kwargs:
            raise InvalidFault("pass a FaultRule or keyword arguments, not both")
        elif not isinstance(rule, FaultRule):
            raise InvalidFault(f"add() needs a FaultRule, got {rule!r}")
        with self._lock():
            if not rule.name:
                while f"rule-{self._next_rule}" in self._states:
                    self._next_rule += 1
                rule = _replace_name(rule, f"rule-{self._next_rule}")
                self._next_rule += 1
            if rule.name in self._states:
                raise InvalidFault(f"a fault rule named {rule.name!r} is already active")
            self.rules.append(rule)
            self._states[rule.name] = _RuleState(rule)
            self._points = frozenset(r.point for r in self.rules)
            self.broker.emit("fault-rule-add", rule=rule.name, **_trace_safe(rule.to_dict()))
        return rule

    def remove(self, rule: FaultRule | str) -> None:
        """Deactivate a rule; messages it holds back are released at once."""
        name = rule if isinstance(rule, str) else rule.name
        with self._lock():
            state = self._states.pop(name, None)
            if state is None:
                raise KeyError(f"no active fault rule {name!r}")
            self.rules = [r for r in self.rules if r.name != name]
            self._points = frozenset(r.point for r in self.rules)
            self.broker.emit("fault-rule-remove", rule=name)
            self._release_all(state)

    def clear(self) -> None:
        """Remove every rule (held messages are released)."""
        with self._lock():
            for rule in list(self.rules):
                self.remove(rule.name)

    @contextlib.contextmanager
    def scoped(self, *rules: FaultRule | Mapping[str, Any]) -> Iterator[list[FaultRule]]:
        """Activate rules for a ``with`` block; they are removed when it ends."""
        added: list[FaultRule] = []
        try:
            for rule in rules:
                added.append(
                    self.add(rule if isinstance(rule, FaultRule) else FaultRule.from_dict(rule))
                )
            yield added
        finally:
            for rule in added:
                if rule.name in self._states:
                    self.remove(rule.name)

    def applied(self, name: str) -> int:
        """How many times the active rule ``name`` was applied."""
        return self._states[name].applied

    def has_point(self, point: str) -> bool:
        return point in self._points

    @property
    def held_messages(self) -> int:
        """Messages held back right now by ``delay``/``reorder`` (they come back later)."""
        return sum(self._held.values())

    # -- plain data ----------------------------------------------------------------------------

    def to_dict(self) -> dict[str, Any]:
        """``{"version": 1, "seed": SEED, "rules": [...]}``: replay with ``from_dict``."""
        with self._lock():
            return {
                "version": FAULT_PLAN_VERSION,
                "seed": self.broker.seed,
                "rules": [r.to_dict() for r in self.rules],
            }

    def load(self, data: Mapping[str, Any] | list[Any]) -> list[FaultRule]:
        """Add the rules of a ``to_dict()`` document (or a bare list of rule dicts)."""
        rules = parse_rules(data)
        return [self.add(rule) for rule in rules]

    @classmethod
    def from_dict(cls, data: Mapping[str, Any], broker: Broker) -> FaultPlan:
        """Replace ``broker.faults`` with the plan ``data`` describes; returns it.

        The seed in ``data`` is not applied (a broker's seed is fixed at creation): build the
        broker with ``Broker(seed=data["seed"])`` to replay a recorded run.
        """
        plan = cls(broker)
        plan.load(data)
        broker.faults = plan
        return plan

    # -- matching ------------------------------------------------------------------------------

    def _select(
        self,
        point: str,
        message: Message | None,
        queue_name: str | None,
        queue_names: Collection[str] | None = None,
    ) -> FaultRule | None:
        """The first rule at ``point`` that matches and fires; counts matches and draws."""
        for rule in self.rules:
            if rule.point != point or not rule.selects(message, queue_name, queue_names):
                continue
            state = self._states[rule.name]
            if rule.max_count is not None and state.applied >= rule.max_count:
                continue
            state.matched += 1
            if rule.nth is not None and state.matched != rule.nth:
                continue
            if rule.probability < 1.0 and self.broker.random.random() >= rule.probability:
                continue
            state.applied += 1
            return rule
        return None

    def _emit(self, rule: FaultRule, **attrs: Any) -> None:
        self.broker.emit("fault", rule=rule.name, point=rule.point, action=rule.action, **attrs)

    # -- publish -------------------------------------------------------------------------------

    def on_publish(
        self, channel: Channel, message: Message, mandatory: bool, confirm_seq: int | None
    ) -> bool:
        """True when a fault consumed the publish (the engine must not route it)."""
        if self._releasing or "publish" not in self._points:
            return False
        rule = self._select("publish", message, None)
        if rule is None:
            return False
        broker = self.broker
        action = rule.action
        if action == "duplicate":
            copies = [self._copy(message) for _ in range(rule.copies)]
            self._emit(rule, msg=message.id, copies=[c.id for c in copies])
            self._route(channel, message, mandatory, confirm_seq)
            for copy in copies:
                self._route(channel, copy, mandatory, None)
            return True
        if action == "delay":
            assert rule.delay is not None
            self._emit(rule, msg=message.id, delay=rule.delay)
            self._hold(message)
            broker.scheduler.call_at(
                broker.clock.now() + rule.delay,
                self._release_publish,
                channel,
                message,
                mandatory,
                confirm_seq,
                label=f"fault:{rule.name}",
            )
            return True
        if action == "reorder":
            self._emit(rule, msg=message.id, window=rule.window)
            self._hold(message)
            self._hold_for_reorder(rule, ("publish",), (channel, message, mandatory, confirm_seq))
            return True
        self._emit(rule, msg=message.id)
        if action == "drop":
            # The message is lost after the broker took it: the publisher still gets its ack.
            if confirm_seq is not None:
                broker.confirm(channel, confirm_seq, True)
        elif action == "close_channel":
            self._close_channel(channel, rule)
        elif action == "close_connection":
            self._close_connection(channel.connection)
        elif action == "restart":
            broker.restart()
        return True

    def _route(
        self, channel: Channel, message: Message, mandatory: bool, confirm_seq: int | None
    ) -> None:
        exchange = channel.vhost.exchanges.get(message.exchange)
        if exchange is None:
            # The exchange went away while the message was held: nothing can route it.
            self.broker.emit("fault-lost", msg=message.id, reason="exchange-deleted")
            if confirm_seq is not None:
                self.broker.confirm(channel, confirm_seq, True)
            return
        self._releasing = True
        try:
            self.broker.route_and_enqueue(channel, exchange, message, mandatory, confirm_seq)
        finally:
            self._releasing = False

    def _release_publish(
        self, channel: Channel, message: Message, mandatory: bool, confirm_seq: int | None
    ) -> None:
        self._unhold(message)
        self.broker.emit("fault-release", msg=message.id)
        self._route(channel, message, mandatory, confirm_seq)

    def _copy(self, message: Message) -> Message:
        return Message(
            self.broker.new_message_id(),
            message.body,
            message.properties,
            message.exchange,
            message.routing_key,
            message.routing_keys,
        )

    # -- route ---------------------------------------------------------------------------------

    def on_route(
        self,
        channel: Channel,
        message: Message,
        mandatory: bool,
        confirm_seq: int | None,
        queues: list[Queue],
    ) -> list[Queue] | None:
        """Route faults on a resolved, non-empty routing result.

        Returns the queues the engine goes on with (``[]``: the message is unroutable), or
        None when a fault took the message over (held back, or routed here with its copies).
        """
        names = [q.name for q in queues]
        rule = self._select("route", message, None, names)
        if rule is None:
            return queues
        action = rule.action
        if action == "drop":
            # Routes nowhere: the engine treats it as unroutable (312 NO_ROUTE if mandatory,
            # a confirm ack), as RabbitMQ does for a message no binding matched.
            self._emit(rule, msg=message.id, queues=names)
            return []
        if action == "duplicate":
            copies = [self._copy(message) for _ in range(rule.copies)]
            self._emit(rule, msg=message.id, queues=names, copies=[c.id for c in copies])
            self._enqueue_routed(channel, message, queues, confirm_seq)
            for copy in copies:
                self._enqueue_routed(channel, copy, queues, None)
            return None
        self._hold(message)
        if action == "delay":
            assert rule.delay is not None
            self._emit(rule, msg=message.id, queues=names, delay=rule.delay)
            self.broker.scheduler.call_at(
                self.broker.clock.now() + rule.delay,
                self._release_route,
                channel,
                message,
                confirm_seq,
                queues,
                label=f"fault:{rule.name}",
            )
            return None
        # reorder: held per exchange, released in a shuffled order to the same queues.
        self._emit(rule, msg=message.id, queues=names, window=rule.window)
        target = ("route", channel.vhost.name, message.exchange)
        self._hold_for_reorder(rule, target, (channel, message, mandatory, confirm_seq, queues))
        return None

    def _release_route(
        self, channel: Channel, message: Message, confirm_seq: int | None, queues: list[Queue]
    ) -> None:
        self._unhold(message)
        self.broker.emit("fault-release", msg=message.id, queues=[q.name for q in queues])
        self._enqueue_routed(channel, message, queues, confirm_seq)

    def _enqueue_routed(
        self, channel: Channel, message: Message, queues: list[Queue], confirm_seq: int | None
    ) -> None:
        """Enqueue a routed message (enqueue faults apply), then confirm it.

        Queues deleted while the message was held lose it (``fault-lost``); the publisher's
        confirm is an ack all the same (the broker had taken the message).
        """
        broker = self.broker
        live = []
        for queue in queues:
            if queue.deleted:
                broker.emit("fault-lost", msg=message.id, queue=queue.name, reason="queue-deleted")
            else:
                live.append(queue)
        if live and broker.tracing:
            broker.emit("route", msg=message.id, queues=[q.name for q in live])
        broker.enqueue_and_confirm(channel, message, live, confirm_seq)

    # -- enqueue -------------------------------------------------------------------------------

    def on_enqueue(self, queue: Queue, message: Message, now: float) -> bool:
        """Enqueue ``message`` subject to enqueue faults; False when the queue refused it."""
        rule = self._select("enqueue", message, queue.name)
        if rule is None:
            return queue.enqueue(message, now)
        broker = self.broker
        action = rule.action
        if action == "drop":
            self._emit(rule, msg=message.id, queue=queue.name)
            return True
        if action == "duplicate":
            copies = [self._copy(message) for _ in range(rule.copies)]
            self._emit(rule, msg=message.id, queue=queue.name, copies=[c.id for c in copies])
            accepted = queue.enqueue(message, now)
            for copy in copies:
                queue.enqueue(copy, now)
            return accepted
        if action == "delay":
            assert rule.delay is not None
            self._emit(rule, msg=message.id, queue=queue.name, delay=rule.delay)
            self._hold(message)
            broker.scheduler.call_at(
                now + rule.delay, self._release_enqueue, queue, message, label=f"fault:{rule.name}"
            )
            return True
        if action == "reorder":
            self._emit(rule, msg=message.id, queue=queue.name, window=rule.window)
            self._hold(message)
            self._hold_for_reorder(rule, ("enqueue", queue.vhost, queue.name), (queue, message))
            return True
        # overflow: what the queue's overflow setting does when its length limit is hit.
        self._emit(rule, msg=message.id, queue=queue.name, overflow=queue.overflow_mode)
        return queue.overflow(message, now)

    def _release_enqueue(self, queue: Queue, message: Message) -> None:
        self._unhold(message)
        if queue.deleted:
            self.broker.emit("fault-lost", msg=message.id, queue=queue.name, reason="queue-deleted")
            return
        self.broker.emit("fault-release", msg=message.id, queue=queue.name)
        queue.enqueue(message, self.broker.clock.now())

    # -- reorder -------------------------------------------------------------------------------

    def _hold_for_reorder(
        self, rule: FaultRule, target: tuple[Any, ...], item: tuple[Any, ...]
    ) -> None:
        state = self._states[rule.name]
        bucket = state.held.setdefault(target, [])
        bucket.append(item)
        if len(bucket) >= rule.window:
            self._release_reorder(state, target)
        elif len(bucket) == 1:
            hold = rule.delay if rule.delay is not None else DEFAULT_REORDER_HOLD
            self.broker.scheduler.call_at(
                self.broker.clock.now() + hold,
                self._release_reorder_timer,
                state,
                target,
                bucket,
                label=f"fault:{rule.name}",
            )

    def _release_reorder_timer(
        self, state: _RuleState, target: tuple[Any, ...], bucket: list[tuple[Any, ...]]
    ) -> None:
        if state.held.get(target) is bucket:
            self._release_reorder(state, target)

    def _release_reorder(self, state: _RuleState, target: tuple[Any, ...]) -> None:
        bucket = state.held.pop(target, [])
        if not bucket:
            return
        order = list(range(len(bucket)))
        if len(order) > 1:
            self.broker.random.shuffle(order)
            if order == sorted(order):
                order.reverse()  # "out of order" means it: never release in arrival order
        items = [bucket[i] for i in order]
        self.broker.emit(
            "fault-release", rule=state.rule.name, msgs=[_item_message(i).id for i in items]
        )
        for item in items:
            if target[0] == "publish":
                channel, message, mandatory, confirm_seq = item
                self._unhold(message)
                self._route(channel, message, mandatory, confirm_seq)
            elif target[0] == "route":
                channel, message, _mandatory, confirm_seq, queues = item
                self._unhold(message)
                self._enqueue_routed(channel, message, queues, confirm_seq)
            else:
                queue, message = item
                self._unhold(message)
                if queue.deleted:
                    self.broker.emit(
                        "fault-lost", msg=message.id, queue=queue.name, reason="queue-deleted"
                    )
                else:
                    queue.enqueue(message, self.broker.clock.now())

    def _release_all(self, state: _RuleState) -> None:
        for target in list(state.held):
            self._release_reorder(state, target)

    def _hold(self, message: Message) -> None:
        self._held[message.id] = self._held.get(message.id, 0) + 1

    def _unhold(self, message: Message) -> None:
        count = self._held.get(message.id, 0) - 1
        if count > 0:
            self._held[message.id] = count
        else:
            self._held.pop(message.id, None)

    # -- deliver -------------------------------------------------------------------------------

    def on_deliver(
        self, channel: Channel, consumer: Consumer, queue: Queue, entry: QueuedMessage
    ) -> bool:
        """True when a fault took the delivery over (the channel must not push it)."""
        if self._exempt.pop(id(entry), None) is entry:
            return False
        if "deliver" not in self._points:
            return False
        rule = self._select("deliver", entry.message, queue.name)
        if rule is None:
            return False
        broker = self.broker
        message = entry.message
        action = rule.action
        attrs = {"msg": message.id, "queue": queue.name, "channel": channel.id}
        if action == "drop":
            self._emit(rule, **attrs)
            return True
        if action == "delay":
            assert rule.delay is not None
            self._emit(rule, delay=rule.delay, **attrs)
            self._hold(message)
            if not consumer.no_ack:
                # In flight: the queue sent it, so it takes the consumer's credit now (a
                # prefetch limit holds however slow the way to the client is; rabbit_limiter
                # and a stream's credit count at send). _release_delivery gives it back.
                consumer.unacked += 1
                channel.global_unacked += 1
            broker.scheduler.call_at(
                broker.clock.now() + rule.delay,
                self._release_delivery,
                consumer,
                queue,
                entry,
                label=f"fault:{rule.name}",
            )
            return True
        self._emit(rule, **attrs)
        # The delivery was on its way when the channel "died": it goes back, redelivered.
        self._put_back(queue, entry, redelivered=True)
        if action == "close_channel":
            self._close_channel(channel, rule)
        elif action == "close_connection":
            self._close_connection(channel.connection)
        elif action == "restart":
            broker.restart()
        if not queue.dispatching:
            queue.dispatch()
        return True

    def _put_back(self, queue: Queue, entry: QueuedMessage, *, redelivered: bool) -> None:
        if queue.deleted:
            self.broker.emit(
                "fault-lost", msg=entry.message.id, queue=queue.name, reason="queue-deleted"
            )
            return
        if redelivered:
            entry.redelivered = True
        self.broker.emit("requeue", queue=queue.name, msgs=[entry.message.id])
        self._exempt[id(entry)] = entry
        # redelivered: as if the consumer's channel died with it (a quorum queue counts it).
        queue.put_back(entry, returned=redelivered)

    def _release_delivery(self, consumer: Consumer, queue: Queue, entry: QueuedMessage) -> None:
        self._unhold(entry.message)
        channel = consumer.channel
        if not consumer.no_ack:
            consumer.unacked -= 1  # the in-flight credit on_deliver took; deliver retakes it
            channel.global_unacked -= 1
        self.broker.emit("fault-release", msg=entry.message.id, queue=queue.name)
        if (
            channel.is_open
            and consumer.queue is queue
            and channel.consumers.get(consumer.tag) is consumer
        ):
            self._exempt[id(entry)] = entry
            channel.deliver(consumer, queue, entry)
            return
        # The consumer went away meanwhile: the message was never delivered, back it goes.
        self._put_back(queue, entry, redelivered=False)
        self._exempt.pop(id(entry), None)
        if not queue.deleted:
            queue.drop_expired()
            queue.dispatch()

    # -- ack -----------------------------------------------------------------------------------

    def on_ack(self, channel: Channel, delivery_tag: int, multiple: bool) -> bool:
        """True when a fault took the basic.ack over (the channel must not settle it)."""
        if self._releasing_ack or "ack" not in self._points:
            return False
        target = channel.unacked.get(delivery_tag)
        if target is None:
            return False  # an unknown tag: let the channel raise PRECONDITION_FAILED
        rule = self._select("ack", target.entry.message, target.queue.name)
        if rule is None:
            return False
        broker = self.broker
        action = rule.action
        attrs = {
            "msg": target.entry.message.id,
            "queue": target.queue.name,
            "channel": channel.id,
            "delivery_tag": delivery_tag,
            "multiple": multiple,
        }
        self._emit(rule, **attrs)
        if action == "drop":
            return True  # the ack never arrived: the message stays unacknowledged
        if action == "delay":
            assert rule.delay is not None
            broker.scheduler.call_at(
                broker.clock.now() + rule.delay,
                self._release_ack,
                channel,
                delivery_tag,
                multiple,
                label=f"fault:{rule.name}",
            )
            return True
        if action == "redeliver":
            # The ack was lost with the channel that carried it: back in the queue, redelivered.
            channel.requeue_deliveries(delivery_tag, multiple, "fault-requeue")
        elif action == "close_channel":
            self._close_channel(channel, rule)
        elif action == "close_connection":
            self._close_connection(channel.connection)
        elif action == "restart":
            broker.restart()
        return True

    def _release_ack(self, channel: Channel, delivery_tag: int, multiple: bool) -> None:
        if not channel.is_open or delivery_tag not in channel.unacked:
            self.broker.emit(
                "fault-lost", channel=channel.id, delivery_tag=delivery_tag, reason="stale-ack"
            )
            return
        self._releasing_ack = True
        try:
            channel.basic_ack(delivery_tag, multiple)
        finally:
            self._releasing_ack = False

    # -- connection ----------------------------------------------------------------------------

    def on_connect(self, connection: Connection) -> None:
        if "connection" not in self._points:
            return
        rule = self._select("connection", None, None)
        if rule is None:
            return
        self._emit(rule, connection=connection.id)
        if rule.action == "close_connection":
            self._close_connection(connection)
        else:
            self.broker.restart()

    # -- closing -------------------------------------------------------------------------------

    def _close_channel(self, channel: Channel, rule: FaultRule) -> None:
        from .errors import channel_level, error_for_code

        text = rule.reply_text or f"fault injected by rule '{rule.name}'"
        cls = error_for_code(rule.reply_code)
        # The method the close names: what the client was doing when the fault hit.
        method = {"publish": (60, 40), "ack": (60, 80)}.get(rule.point, (0, 0))
        err: AMQPError = channel_level(
            cls if cls is not AMQPError else PreconditionFailed, text, method
        )
        if not channel.is_open:
            return
        self.broker.emit(
            "error",
            connection=channel.connection.id,
            channel=channel.id,
            code=err.reply_code,
            text=err.reply_text,
            method=list(err.method),
            scope="channel",
        )
        channel.teardown(err, notify=True)

    def _close_connection(self, connection: Connection) -> None:
        # What `rabbitmqctl close_connection` sends: 320 CONNECTION_FORCED.
        connection.teardown(ConnectionForced(FORCED_CLOSE_TEXT), notify=True)


def _item_message(item: tuple[Any, ...]) -> Message:
    message = item[1]
    assert isinstance(message, Message)
    return message


def _replace_name(rule: FaultRule, name: str) -> FaultRule:
    data = rule.to_dict()
    data["name"] = name
    return FaultRule.from_dict(data)


def _trace_safe(data: Mapping[str, Any]) -> dict[str, Any]:
    return {k: v for k, v in data.items() if k not in ("name",)}


def parse_rules(data: Mapping[str, Any] | list[Any]) -> list[FaultRule]:
    """Rules from a ``FaultPlan.to_dict()`` document or a bare list of rule dicts."""
    if isinstance(data, Mapping):
        version = data.get("version", FAULT_PLAN_VERSION)
        if version != FAULT_PLAN_VERSION:
            raise InvalidFault(f"unsupported fault plan version {version!r}")
        unknown = set(data) - {"version", "seed", "rules"}
        if unknown:
            raise InvalidFault(f"unknown fault plan keys: {sorted(unknown)}")
        rules = data.get("rules", [])
    else:
        rules = data
    if not isinstance(rules, list | tuple):
        raise InvalidFault(f"fault plan rules must be a list, got {rules!r}")
    return [r if isinstance(r, FaultRule) else FaultRule.from_dict(r) for r in rules]
