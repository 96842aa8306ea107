"""Hypothesis strategies for AMQP data, fault plans and RPC result streams.

Hypothesis style (hypothesis-python/docs/api-style.rst): plural nouns, keyword-only arguments,
and bad arguments raise ``hypothesis.errors.InvalidArgument`` when the strategy is *defined*, not
when it is drawn from. Hypothesis is a test extra: only this module and ``simamqp.stateful``
import it.

Values are valid for RabbitMQ unless a parameter says otherwise, so a test can publish, declare
and bind what it draws without tripping a channel error.
"""

from __future__ import annotations

import datetime as _dt
import math
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Any

from hypothesis import strategies as st
from hypothesis.errors import InvalidArgument

from .core.faults import ACTIONS, ACTIONS_BY_POINT, POINTS, FaultRule

__all__ = [
    "EXCHANGE_TYPES",
    "FINAL_STATES",
    "QUEUE_TYPES",
    "RPCResultStream",
    "binding_keys",
    "exchange_types",
    "fault_plans",
    "fault_rules",
    "headers_tables",
    "message_properties",
    "queue_arguments",
    "queue_types",
    "routing_keys",
    "rpc_result_streams",
    "stream_offsets",
]

EXCHANGE_TYPES = ("direct", "fanout", "topic", "headers")
#: The queue types simamqp simulates (``x-queue-type``), as ``queue_types()`` draws them.
QUEUE_TYPES = ("classic", "quorum", "stream")
#: Celery's READY_STATES: a task reports one of them last.
FINAL_STATES = ("SUCCESS", "FAILURE", "REVOKED")
_DEFAULT_WORDS = ("a", "b", "c", "orders", "eu")
#: AMQP shortstr: a routing key is at most 255 bytes.
_SHORTSTR_MAX = 255


# -- argument checks ---------------------------------------------------------------------------


def _check_int(value: Any, name: str, *, minimum: int = 0, maximum: int | None = None) -> None:
    if isinstance(value, bool) or not isinstance(value, int):
        raise InvalidArgument(f"{name}={value!r} must be an int")
    if value < minimum or (maximum is not None and value > maximum):
        bound = f">= {minimum}" if maximum is None else f"between {minimum} and {maximum}"
        raise InvalidArgument(f"{name}={value!r} must be {bound}")


def _check_bool(value: Any, name: str) -> None:
    if not isinstance(value, bool):
        raise InvalidArgument(f"{name}={value!r} must be a bool")


def _check_strategy(value: Any, name: str) -> None:
    if not isinstance(value, st.SearchStrategy):
        raise InvalidArgument(f"{name}={value!r} must be a strategy")


def _check_range(min_value: int, max_value: int, min_name: str, max_name: str) -> None:
    if min_value > max_value:
        raise InvalidArgument(f"{min_name}={min_value} is greater than {max_name}={max_value}")


def _utf8_size(value: str, what: str) -> int:
    try:
        return len(value.encode("utf-8"))
    except UnicodeEncodeError:
        raise InvalidArgument(f"{what}={value!r} is not encodable as UTF-8") from None


def _check_words(words: Sequence[str] | None) -> tuple[str, ...]:
    if words is None:
        return _DEFAULT_WORDS
    if isinstance(words, str | bytes) or not isinstance(words, Sequence):
        raise InvalidArgument(f"words={words!r} must be a sequence of strings")
    out = tuple(words)
    if not out:
        raise InvalidArgument("words must not be empty")
    for word in out:
        if not isinstance(word, str) or "." in word or word in ("*", "#"):
            raise InvalidArgument(f"word {word!r} must be a str without '.', '*' or '#'")
        if _utf8_size(word, "word") > _SHORTSTR_MAX:
            raise InvalidArgument(f"word {word[:20]!r}... is longer than a routing key may be")
    return out


def _check_key_length(min_words: int, vocabulary: tuple[str, ...]) -> int:
    """Refuse ``min_words`` no key of at most 255 bytes can have; the most words one can have."""
    shortest = min(len(w.encode("utf-8")) for w in vocabulary)
    if min_words and min_words * (shortest + 1) - 1 > _SHORTSTR_MAX:
        raise InvalidArgument(
            f"min_words={min_words}: {min_words} words of these make a key longer than "
            f"{_SHORTSTR_MAX} bytes (an AMQP shortstr), so no key could be drawn"
        )
    return (_SHORTSTR_MAX + 1) // (shortest + 1)


def _check_names(
    value: Iterable[str] | None, name: str, *, allow_none: bool = True
) -> tuple[str, ...] | None:
    if value is None:
        if allow_none:
            return None
        raise InvalidArgument(f"{name}=None must be a collection of names")
    if isinstance(value, str | bytes) or not isinstance(value, Iterable):
        raise InvalidArgument(f"{name}={value!r} must be a collection of names (strings)")
    out = tuple(value)
    if not all(isinstance(v, str) for v in out):
        raise InvalidArgument(f"{name}={value!r} must contain only strings")
    for item in out:
        if _utf8_size(item, name) > _SHORTSTR_MAX:
            raise InvalidArgument(f"{name}: {item[:20]!r}... is longer than 255 bytes")
    return out


def _check_positive_finite(value: Any, name: str) -> float:
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise InvalidArgument(f"{name}={value!r} must be a positive finite number")
    try:
        number = float(value)
    except OverflowError:
        raise InvalidArgument(f"{name}={value!r} is too large to be a float") from None
    if not math.isfinite(number) or number <= 0:
        raise InvalidArgument(f"{name}={value!r} must be a positive finite number")
    return number


# -- exchanges and keys ------------------------------------------------------------------------


def exchange_types(*, builtin_only: bool = True) -> st.SearchStrategy[str]:
    """The exchange types RabbitMQ knows (``builtin_only=False`` adds an unknown one)."""
    _check_bool(builtin_only, "builtin_only")
    if builtin_only:
        return st.sampled_from(EXCHANGE_TYPES)
    return st.sampled_from((*EXCHANGE_TYPES, "x-unknown"))


def routing_keys(
    *, min_words: int = 0, max_words: int = 4, words: Sequence[str] | None = None
) -> st.SearchStrategy[str]:
    """Dot-separated routing keys over a small vocabulary (so keys collide with bindings)."""
    _check_int(min_words, "min_words")
    _check_int(max_words, "max_words")
    _check_range(min_words, max_words, "min_words", "max_words")
    vocabulary = _check_words(words)
    most = _check_key_length(min_words, vocabulary)
    return (
        st.lists(st.sampled_from(vocabulary), min_size=min_words, max_size=min(max_words, most))
        .map(".".join)
        .filter(lambda key: len(key.encode()) <= _SHORTSTR_MAX)
    )


def binding_keys(
    *,
    exchange_type: str = "topic",
    min_words: int = 0,
    max_words: int = 4,
    words: Sequence[str] | None = None,
) -> st.SearchStrategy[str]:
    """Binding keys; for ``topic`` exchanges they contain ``*`` and ``#`` wildcards."""
    if not isinstance(exchange_type, str) or exchange_type not in EXCHANGE_TYPES:
        raise InvalidArgument(f"exchange_type={exchange_type!r} must be one of {EXCHANGE_TYPES}")
    _check_int(min_words, "min_words")
    _check_int(max_words, "max_words")
    _check_range(min_words, max_words, "min_words", "max_words")
    vocabulary = _check_words(words)
    if exchange_type != "topic":
        return routing_keys(min_words=min_words, max_words=max_words, words=vocabulary)
    most = _check_key_length(min_words, (*vocabulary, "*"))
    word = st.one_of(st.sampled_from(vocabulary), st.sampled_from(("*", "#")))
    return (
        st.lists(word, min_size=min_words, max_size=min(max_words, most))
        .map(".".join)
        .filter(lambda key: len(key.encode()) <= _SHORTSTR_MAX)
    )


# -- tables and properties ---------------------------------------------------------------------

_INT64 = st.integers(min_value=-(2**63), max_value=2**63 - 1)
#: Hypothesis text never contains surrogates, so it always encodes as UTF-8 longstr.
_SHORT_TEXT = st.text(max_size=16)


def _field_values(max_depth: int) -> st.SearchStrategy[Any]:
    scalars: st.SearchStrategy[Any] = st.one_of(
        st.none(),
        st.booleans(),
        _INT64,
        _SHORT_TEXT,
        st.binary(max_size=16),
        st.floats(allow_nan=False, allow_infinity=False),
    )
    if max_depth <= 0:
        return scalars
    return st.recursive(
        scalars,
        lambda inner: st.one_of(
            st.lists(inner, max_size=3),
            st.dictionaries(st.text(max_size=8), inner, max_size=3),
        ),
        max_leaves=6,
    )


def headers_tables(
    *,
    keys: st.SearchStrategy[str] | None = None,
    max_size: int = 4,
    max_depth: int = 1,
    exclude_x_keys: bool = True,
) -> st.SearchStrategy[dict[str, Any]]:
    """AMQP field tables (``application_headers``): str keys, typed values, optional nesting.

    ``exclude_x_keys`` leaves out keys starting with ``x-`` (those mean something to
    headers exchanges and RabbitMQ features).
    """
    _check_int(max_size, "max_size")
    _check_int(max_depth, "max_depth", maximum=3)
    _check_bool(exclude_x_keys, "exclude_x_keys")
    if keys is not None:
        _check_strategy(keys, "keys")
        # What a strategy draws is only known when it draws: refused then, as st.text does
        # for an alphabet strategy that draws something other than characters.
        key_strategy = keys.map(_table_key)
    else:
        key_strategy = st.text(min_size=1, max_size=12)
    if exclude_x_keys:
        key_strategy = key_strategy.filter(lambda k: not k.startswith("x-"))
    return st.dictionaries(key_strategy, _field_values(max_depth), max_size=max_size)


def _table_key(key: Any) -> str:
    if not isinstance(key, str):
        raise InvalidArgument(f"keys must draw strings (field table keys), drew {key!r}")
    if _utf8_size(key, "key") > _SHORTSTR_MAX:
        raise InvalidArgument(f"keys drew {key[:20]!r}..., longer than 255 bytes (a shortstr)")
    return key


def message_properties(
    *,
    expiration: bool = False,
    priority: bool = True,
    headers: bool = True,
    persistent: bool | None = None,
) -> st.SearchStrategy[dict[str, Any]]:
    """Basic-class properties by py-amqp name (``application_headers``, ``delivery_mode``...).

    ``expiration`` adds per-message TTLs (off by default: they make messages vanish with time);
    ``persistent`` fixes ``delivery_mode`` (None: 1, 2 or absent).
    """
    for name, value in (("expiration", expiration), ("priority", priority), ("headers", headers)):
        _check_bool(value, name)
    if persistent is not None and not isinstance(persistent, bool):
        raise InvalidArgument(f"persistent={persistent!r} must be a bool or None")
    optional: dict[str, st.SearchStrategy[Any]] = {
        "content_type": st.sampled_from(("application/json", "text/plain", "application/x-yaml")),
        "content_encoding": st.sampled_from(("utf-8", "binary")),
        "correlation_id": st.uuids().map(str),
        "message_id": st.uuids().map(str),
        "type": st.sampled_from(("task", "event")),
        "app_id": st.sampled_from(("simamqp", "celery")),
    }
    if persistent is None:
        optional["delivery_mode"] = st.sampled_from((1, 2))
    if priority:
        optional["priority"] = st.integers(min_value=0, max_value=9)
    if expiration:
        optional["expiration"] = st.integers(min_value=0, max_value=60_000).map(str)
    if headers:
        optional["application_headers"] = headers_tables(max_size=3, max_depth=0)
    required: dict[str, st.SearchStrategy[Any]] = {}
    if persistent is not None:
        required["delivery_mode"] = st.just(2 if persistent else 1)
    return st.fixed_dictionaries(required, optional=optional)


def queue_types(*, types: Sequence[str] = QUEUE_TYPES) -> st.SearchStrategy[str]:
    """Queue types (``x-queue-type`` values) simamqp simulates, from ``types``.

    Quorum queues and streams must be declared durable and not exclusive or auto-delete:
    ``queue_arguments(queue_type=...)`` draws arguments that fit the type.
    """
    if isinstance(types, str) or not isinstance(types, Sequence) or not types:
        raise InvalidArgument(f"types={types!r} must be a non-empty sequence of queue types")
    unknown = [t for t in types if t not in QUEUE_TYPES]
    if unknown:
        raise InvalidArgument(f"unknown queue types {unknown!r}; simamqp has {QUEUE_TYPES}")
    return st.sampled_from(tuple(types))


def queue_arguments(
    *,
    ttl: bool = True,
    max_length: bool = True,
    priority: bool = False,
    dead_letter_exchange: str | None = None,
    expires: bool = False,
    single_active_consumer: bool = False,
    queue_type: str | None = None,
    delivery_limit: bool = True,
) -> st.SearchStrategy[dict[str, Any]]:
    """``queue.declare`` arguments RabbitMQ accepts; each feature is opt-in or opt-out.

    ``dead_letter_exchange`` names the DLX to use when dead-lettering is drawn.
    ``queue_type`` ("classic", "quorum", "stream"; None: no ``x-queue-type`` key, a classic
    queue) draws only what that type accepts: a quorum queue adds ``x-delivery-limit``
    (``delivery_limit``) and ``x-dead-letter-strategy`` (with a dead-letter exchange), never
    ``x-max-priority``. A stream takes only its retention arguments: ``ttl`` draws
    ``x-max-age``, ``max_length`` draws ``x-max-length-bytes`` and
    ``x-stream-max-segment-size-bytes``; the other features do not apply to it.
    """
    for name, value in (
        ("ttl", ttl),
        ("max_length", max_length),
        ("priority", priority),
        ("expires", expires),
        ("single_active_consumer", single_active_consumer),
        ("delivery_limit", delivery_limit),
    ):
        _check_bool(value, name)
    if queue_type is not None and queue_type not in QUEUE_TYPES:
        raise InvalidArgument(f"queue_type={queue_type!r} must be None or one of {QUEUE_TYPES}")
    quorum = queue_type == "quorum"
    if quorum and priority:
        raise InvalidArgument("priority=True: quorum queues refuse x-max-priority")
    if queue_type == "stream":
        if priority:
            raise InvalidArgument("priority=True: streams refuse x-max-priority")
        return _stream_arguments(ttl=ttl, max_length=max_length)
    if dead_letter_exchange is not None and (
        not isinstance(dead_letter_exchange, str)
        or _utf8_size(dead_letter_exchange, "dead_letter_exchange") > _SHORTSTR_MAX
    ):
        raise InvalidArgument(
            f"dead_letter_exchange={dead_letter_exchange!r} must be an exchange name (a str "
            "of at most 255 bytes)"
        )
    optional: dict[str, st.SearchStrategy[Any]] = {}
    if ttl:
        optional["x-message-ttl"] = st.integers(min_value=0, max_value=10_000)
    if max_length:
        optional["x-max-length"] = st.integers(min_value=0, max_value=10)
        optional["x-max-length-bytes"] = st.integers(min_value=0, max_value=1_000)
        optional["x-overflow"] = st.sampled_from(
            ("drop-head", "reject-publish", "reject-publish-dlx")
        )
    if priority:
        optional["x-max-priority"] = st.integers(min_value=1, max_value=10)
    if dead_letter_exchange is not None:
        optional["x-dead-letter-exchange"] = st.just(dead_letter_exchange)
        optional["x-dead-letter-routing-key"] = routing_keys(max_words=2)
    if expires:
        optional["x-expires"] = st.integers(min_value=1, max_value=60_000)
    if single_active_consumer:
        optional["x-single-active-consumer"] = st.booleans()
    required: dict[str, st.SearchStrategy[Any]] = {}
    if queue_type is not None:
        required["x-queue-type"] = st.just(queue_type)
    if quorum and delivery_limit:
        optional["x-delivery-limit"] = st.integers(min_value=0, max_value=3)
    if quorum and dead_letter_exchange is not None:
        optional["x-dead-letter-strategy"] = st.sampled_from(("at-most-once", "at-least-once"))
    return st.fixed_dictionaries(required, optional=optional).map(_consistent_queue_arguments)


def _stream_arguments(*, ttl: bool, max_length: bool) -> st.SearchStrategy[dict[str, Any]]:
    optional: dict[str, st.SearchStrategy[Any]] = {}
    if ttl:
        optional["x-max-age"] = st.builds(
            "{}{}".format, st.integers(min_value=1, max_value=90), st.sampled_from("YMDhms")
        )
    if max_length:
        optional["x-max-length-bytes"] = st.integers(min_value=0, max_value=10_000)
        optional["x-stream-max-segment-size-bytes"] = st.integers(min_value=100, max_value=5_000)
    return st.fixed_dictionaries({"x-queue-type": st.just("stream")}, optional=optional)


def stream_offsets(*, max_offset: int = 20) -> st.SearchStrategy[Any]:
    """``x-stream-offset`` consumer arguments a stream accepts: ``first``, ``last``, ``next``,
    offsets from -1 to ``max_offset``, intervals (``"30s"``, ``"2h"``) and AMQP timestamps.
    """
    if isinstance(max_offset, bool) or not isinstance(max_offset, int) or max_offset < 0:
        raise InvalidArgument(f"max_offset={max_offset!r} must be a non-negative integer")
    return st.one_of(
        st.sampled_from(("first", "last", "next")),
        st.integers(min_value=-1, max_value=max_offset),
        st.builds("{}{}".format, st.integers(min_value=1, max_value=90), st.sampled_from("hms")),
        st.integers(min_value=0, max_value=4_000_000_000).map(
            lambda seconds: _dt.datetime.fromtimestamp(seconds, _dt.UTC)
        ),
    )


def _consistent_queue_arguments(arguments: dict[str, Any]) -> dict[str, Any]:
    # A dead-letter routing key without a DLX is a PRECONDITION_FAILED in RabbitMQ.
    if "x-dead-letter-exchange" not in arguments:
        arguments.pop("x-dead-letter-routing-key", None)
    return arguments


# -- fault plans -------------------------------------------------------------------------------


def fault_rules(
    *,
    points: Iterable[str] = POINTS,
    actions: Iterable[str] | None = None,
    queues: Iterable[str] | None = None,
    max_delay: float = 5.0,
    max_count: int | None = 3,
) -> st.SearchStrategy[FaultRule]:
    """Single ``FaultRule``s at the given points, with the given actions.

    ``queues`` are names a ``queue`` selector may use (None: no queue selectors). Rules that
    close connections or restart the broker are always bounded by ``max_count`` (default 3)
    so a plan cannot keep a client from ever getting through.
    """
    point_list = _check_names(points, "points", allow_none=False) or ()
    if not point_list:
        raise InvalidArgument("points must not be empty")
    for point in point_list:
        if point not in POINTS:
            raise InvalidArgument(f"unknown point {point!r}; one of {POINTS}")
    action_set = set(ACTIONS) if actions is None else set(_check_names(actions, "actions") or ())
    for action in action_set:
        if action not in ACTIONS:
            raise InvalidArgument(f"unknown action {action!r}; one of {ACTIONS}")
    pairs = [(p, a) for p in point_list for a in sorted(ACTIONS_BY_POINT[p]) if a in action_set]
    if not pairs:
        raise InvalidArgument(f"no action in {sorted(action_set)} is possible at {point_list}")
    queue_names = _check_names(queues, "queues")
    delay_bound = _check_positive_finite(max_delay, "max_delay")
    if max_count is not None:
        _check_int(max_count, "max_count", minimum=1)

    @st.composite
    def rule(draw: st.DrawFn) -> FaultRule:
        # Point first, then action: every point is equally likely whatever its action count.
        point = draw(st.sampled_from(sorted({p for p, _ in pairs}, key=POINTS.index)))
        action = draw(st.sampled_from([a for p, a in pairs if p == point]))
        kwargs: dict[str, Any] = {"point": point, "action": action}
        if queue_names and point in ("route", "enqueue", "deliver", "ack") and draw(st.booleans()):
            kwargs["queue"] = draw(st.sampled_from(queue_names))
        if draw(st.booleans()):
            kwargs["nth"] = draw(st.integers(min_value=1, max_value=5))
        if draw(st.booleans()):
            kwargs["probability"] = draw(st.sampled_from((0.1, 0.25, 0.5, 0.9)))
        disruptive = action in ("close_channel", "close_connection", "restart")
        if max_count is not None and (disruptive or draw(st.booleans())):
            kwargs["max_count"] = draw(st.integers(min_value=1, max_value=max_count))
        if action == "duplicate":
            kwargs["copies"] = draw(st.integers(min_value=1, max_value=3))
        if action == "reorder":
            kwargs["window"] = draw(st.integers(min_value=2, max_value=4))
        if action in ("delay", "reorder"):
            kwargs["delay"] = draw(
                st.floats(min_value=0.0, max_value=delay_bound, allow_nan=False).map(
                    lambda d: round(d, 3)
                )
            )
        return FaultRule(**kwargs)

    return rule()


def fault_plans(
    *,
    points: Iterable[str] = POINTS,
    actions: Iterable[str] | None = None,
    queues: Iterable[str] | None = None,
    min_rules: int = 0,
    max_rules: int = 3,
    max_delay: float = 5.0,
    max_count: int | None = 3,
) -> st.SearchStrategy[dict[str, Any]]:
    """Fault plans as plain data: ``{"version": 1, "rules": [...]}``.

    Plain data prints as a falsifying example that can be pasted into a scenario's ``faults:``
    and loaded with ``broker.faults.load(plan)`` (see docs/faults.md).
    """
    _check_int(min_rules, "min_rules")
    _check_int(max_rules, "max_rules")
    _check_range(min_rules, max_rules, "min_rules", "max_rules")
    rules = fault_rules(
        points=points, actions=actions, queues=queues, max_delay=max_delay, max_count=max_count
    )

    # A composite (not ``.map``) so a falsifying example prints the plan itself, as plain data
    # ready to paste into a scenario's ``faults:``.
    @st.composite
    def plan(draw: st.DrawFn) -> dict[str, Any]:
        items = draw(st.lists(rules, min_size=min_rules, max_size=max_rules))
        named = []
        for index, item in enumerate(items, 1):
            data = item.to_dict()
            data["name"] = f"r{index}"
            named.append(data)
        return {"version": 1, "rules": named}

    return plan()


# -- RPC result streams ------------------------------------------------------------------------


def _task_id(value: Any) -> str:
    if not isinstance(value, str):
        raise InvalidArgument(f"task_ids must draw strings, drew {value!r}")
    return value


@dataclass(frozen=True)
class RPCResultStream:
    """One task's state reports: ``states`` in the order the worker sent them, ``arrivals`` in
    the order a client receives them (reordered, with duplicates)."""

    task_id: str
    states: tuple[str, ...]
    arrivals: tuple[str, ...]

    @property
    def final_state(self) -> str:
        return self.states[-1]


def rpc_result_streams(
    *,
    task_ids: st.SearchStrategy[str] | None = None,
    final_states: Sequence[str] = FINAL_STATES,
    max_progress: int = 3,
    max_retries: int = 1,
    max_duplicates: int = 3,
    reorder: bool = True,
    include_received: bool = True,
) -> st.SearchStrategy[RPCResultStream]:
    """A Celery task's state sequence (RECEIVED? STARTED PROGRESS* (RETRY STARTED PROGRESS*)*
    FINAL) and an arrival order with up to ``max_duplicates`` duplicates and, when ``reorder``,
    any permutation (shrinking towards the sent order)."""
    final = _check_names(final_states, "final_states", allow_none=False)
    if not final:
        raise InvalidArgument("final_states must not be empty")
    for state in final:
        if state not in FINAL_STATES:
            raise InvalidArgument(
                f"final_states: {state!r} is not a state a task ends in; one of {FINAL_STATES}"
            )
    _check_int(max_progress, "max_progress", maximum=20)
    _check_int(max_retries, "max_retries", maximum=5)
    _check_int(max_duplicates, "max_duplicates", maximum=20)
    for name, value in (("reorder", reorder), ("include_received", include_received)):
        _check_bool(value, name)
    if task_ids is not None:
        _check_strategy(task_ids, "task_ids")
        ids = task_ids.map(_task_id)
    else:
        ids = st.uuids().map(str)

    @st.composite
    def stream(draw: st.DrawFn) -> RPCResultStream:
        states: list[str] = []
        if include_received and draw(st.booleans()):
            states.append("RECEIVED")
        states.append("STARTED")
        states += ["PROGRESS"] * draw(st.integers(min_value=0, max_value=max_progress))
        for _ in range(draw(st.integers(min_value=0, max_value=max_retries))):
            states += ["RETRY", "STARTED"]
            states += ["PROGRESS"] * draw(st.integers(min_value=0, max_value=max_progress))
        states.append(draw(st.sampled_from(final)))
        arrivals = list(states)
        for _ in range(draw(st.integers(min_value=0, max_value=max_duplicates))):
            index = draw(st.integers(min_value=0, max_value=len(states) - 1))
            # Without reordering a duplicate follows its original (a redelivery does).
            lowest = 0 if reorder else arrivals.index(states[index]) + 1
            position = draw(st.integers(min_value=lowest, max_value=len(arrivals)))
            arrivals.insert(position, states[index])
        if reorder:
            arrivals = draw(st.permutations(arrivals))
        return RPCResultStream(draw(ids), tuple(states), tuple(arrivals))

    return stream()
