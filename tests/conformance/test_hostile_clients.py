"""Hostile clients: ill-typed and out-of-range arguments through kombu/py-amqp, on both brokers.

A test double is handed buggy code on purpose. Every value below goes through a py-amqp channel
(kombu's ``Connection.channel()``) to simamqp and to RabbitMQ, and what the client observes must
be the same *outcome class*:

- accepted, with the same effect (the declare-ok, the message that arrives and its properties);
- refused in the client with the same exception type and message (py-amqp's encoder refused it:
  nothing reached the broker, the connection is intact);
- refused by the broker with the same reply code, text and method (channel closed);
- the connection closed (RabbitMQ resets the socket for a NaN in an argument table where
  simamqp closes with 541; see docs/differences.md, so only the class is compared).

Meanwhile a second, well-behaved client on the same broker publishes through exchanges the
hostile client binds to and checks that what it observes is unaffected.

The table tests pin one case each (the issue's list); the Hypothesis machine draws sequences of
hostile calls and compares both brokers in lockstep. Budget: SIMAMQP_HOSTILE_EXAMPLES (default
300 examples, each a few hostile calls; ``nox -s conformance`` runs more).
"""

from __future__ import annotations

import contextlib
import datetime
import decimal
import gc
import itertools
import math
import os
import re
import struct
import uuid
from collections.abc import Callable
from typing import Any

import amqp
import kombu
import pytest
from amqp.exceptions import (
    AccessRefused,
    FrameSyntaxError,
    PreconditionFailed,
)
from hypothesis import HealthCheck, settings
from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, invariant, rule, run_state_machine_as_test
from vine import promise

HOSTILE_EXAMPLES = int(os.environ.get("SIMAMQP_HOSTILE_EXAMPLES", "300"))
HOSTILE_STEPS = int(os.environ.get("SIMAMQP_HOSTILE_STEPS", "3"))

_SERVER_NAME = re.compile(r"amq\.(gen|ctag)-[A-Za-z0-9_-]{22}")


# -- outcome classes ------------------------------------------------------------------------------


def classify(exc: BaseException) -> tuple[Any, ...]:
    """The outcome class of an exception a client saw."""
    if isinstance(exc, amqp.exceptions.ChannelError):
        text = _SERVER_NAME.sub("amq.<generated>", exc.reply_text or "")
        return ("channel", exc.reply_code, text, exc.method_sig)
    if isinstance(exc, FrameSyntaxError):
        return ("client", "FrameSyntaxError", str(exc))
    if isinstance(exc, amqp.exceptions.ConnectionError) and exc.reply_code not in (None, 541):
        return ("connection", exc.reply_code, exc.reply_text, exc.method_sig)
    if isinstance(exc, amqp.exceptions.AMQPError | ConnectionError | OSError) and not isinstance(
        exc, struct.error
    ):
        # A reset socket (RabbitMQ, for a NaN in an argument table) or 541 (simamqp).
        return ("connection",)
    return ("client", type(exc).__name__, str(exc))


def observe(value: Any) -> Any:
    """A return value or a message with server-generated names normalised."""
    if isinstance(value, promise):
        return None  # py-amqp's nowait methods return the unsent-reply promise; simamqp None
    if isinstance(value, amqp.Message):
        return ("message", value.body, observe(value.properties))
    if isinstance(value, str):
        return _SERVER_NAME.sub("amq.<generated>", value)
    if isinstance(value, tuple | list):
        return [observe(v) for v in value]
    if isinstance(value, dict):
        return {k: observe(v) for k, v in value.items()}
    return value


# -- table tests: one case each, on both brokers (env fixture) ------------------------------------


def _outcome(env: Any, ch: Any, fn: Callable[[], Any]) -> tuple[Any, ...]:
    """Run ``fn`` then a synchronous round trip on ``ch`` (to read an asynchronous close)."""
    try:
        result = fn()
        env.settle()
        ch.exchange_declare("amq.direct", "direct", passive=True)
    except Exception as exc:
        return classify(exc)
    return ("ok", observe(result))


@pytest.mark.parametrize(("given", "window"), [("5", 5), (2.7, 2)])
def test_qos_prefetch_count_is_coerced_as_the_encoder_does(env, given, window):
    """py-amqp sends int("5") and int(2.7) as the short prefetch-count: 5 and 2 unacked."""
    ch = env.channel()
    q = env.queue(ch)
    for i in range(window + 2):
        env.publish(ch, b"%d" % i, "", q)
    ch.basic_qos(0, given, False)
    _, received = env.consume(ch, q)
    env.drain(until=lambda: len(received) >= window, timeout=1.0)
    assert len(received) == window
    # Another client's publish to the queue still works (simamqp once stored "5").
    other = env.channel(env.connection())
    env.publish(other, b"later", "", q)
    assert env.eventually_count(q, 3, other) == 3


@pytest.mark.parametrize(
    ("prefetch_size", "prefetch_count", "error"),
    [
        (0, -1, "argument out of range"),
        (0, 65536, "'H' format requires 0 <= number <= 65535"),
        ("5", 0, "required argument is not an integer"),
    ],
)
def test_qos_out_of_range_is_refused_in_the_client(env, prefetch_size, prefetch_count, error):
    ch = env.channel()
    with pytest.raises(struct.error, match=re.escape(error)):
        ch.basic_qos(prefetch_size, prefetch_count, False)
    assert _outcome(env, ch, lambda: None) == ("ok", None)


def test_headers_binding_with_int_key_is_refused_and_breaks_nothing(env):
    ch = env.channel()
    x = env.exchange(ch, "headers")
    q = env.queue(ch)
    with pytest.raises(TypeError, match="object of type 'int' has no len"):
        ch.queue_bind(q, x, "", arguments={1: "a"})
    ch.queue_bind(q, x, "", arguments={"x-match": "any", "k": "v"})
    env.publish(env.channel(env.connection()), b"m", x, "", application_headers={"k": "v"})
    assert env.get(ch, q).body == b"m"


@pytest.mark.parametrize(
    ("body", "exc", "text"),
    [
        (5, TypeError, "object of type 'int' has no len()"),
        (None, TypeError, "object of type 'NoneType' has no len()"),
        ([104, 105], struct.error, "argument for 's' must be a bytes object"),
        (memoryview(b"hi"), struct.error, "argument for 's' must be a bytes object"),
    ],
)
def test_bodies_py_amqp_cannot_send_are_refused(env, body, exc, text):
    ch = env.channel()
    q = env.queue(ch)
    with pytest.raises(exc, match=re.escape(text)):
        env.publish(ch, body, "", q)
    assert env.get_none(ch, q) is None


@pytest.mark.parametrize(
    ("body", "delivered"),
    # py-amqp leaves an empty body at Message's default, "" (a str).
    [(bytearray(b"hi"), b"hi"), ([], ""), (b"", ""), ("hé", "hé")],
)
def test_bodies_py_amqp_sends(env, body, delivered):
    ch = env.channel()
    q = env.queue(ch)
    env.publish(ch, body, "", q)
    assert env.get(ch, q).body == delivered


@pytest.mark.parametrize(
    ("properties", "error"),
    [
        ({"priority": -1}, "ubyte format requires 0 <= number <= 255"),
        ({"priority": -100}, "ubyte format requires 0 <= number <= 255"),
        ({"priority": 300}, "ubyte format requires 0 <= number <= 255"),
        ({"priority": "hi"}, "required argument is not an integer"),
        ({"delivery_mode": "2"}, "required argument is not an integer"),
        ({"timestamp": datetime.datetime(2020, 1, 1)}, "required argument is not an integer"),
    ],
)
def test_ill_typed_properties_are_refused_before_any_queue_sees_them(env, properties, error):
    """simamqp once enqueued to one queue of a fanout, then crashed on a priority queue."""
    ch = env.channel()
    x = env.exchange(ch, "fanout")
    plain = env.queue(ch)
    prio = env.queue(ch, arguments={"x-max-priority": 5})
    for q in (plain, prio):
        ch.queue_bind(q, x)
    with pytest.raises(struct.error, match=re.escape(error)):
        env.publish(ch, b"m", x, "", **properties)
    assert (env.count(plain), env.count(prio)) == (0, 0)


def test_unknown_properties_are_not_sent(env):
    ch = env.channel()
    q = env.queue(ch)
    env.publish(ch, b"m", "", q, foo="bar", content_type="text/plain")
    assert env.get(ch, q).properties == {"content_type": "text/plain"}


@pytest.mark.parametrize(
    ("headers", "reply_text"),
    [
        ({"CC": "abc"}, 'invalid message: {unacceptable_type_in_header,"CC",longstr}'),
        ({"BCC": 5}, 'invalid message: {unacceptable_type_in_header,"BCC",signedint}'),
        ({"CC": None}, 'invalid message: {unacceptable_type_in_header,"CC",void}'),
    ],
)
def test_cc_headers_must_be_arrays(env, headers, reply_text):
    ch = env.channel()
    q = env.queue(ch)
    env.publish(ch, b"m", "", q, application_headers=headers)
    with pytest.raises(PreconditionFailed) as info:
        ch.queue_declare(q, passive=True)
    assert (info.value.reply_text, info.value.method_sig) == (
        f"PRECONDITION_FAILED - {reply_text}",
        (60, 40),
    )


@pytest.mark.parametrize("value", [math.nan, math.inf, -math.inf, [math.nan], {"b": math.inf}])
def test_non_finite_header_closes_the_connection(env, value):
    conn = env.connection()
    ch = env.channel(conn)
    q = env.queue(env.channel())
    env.publish(ch, b"m", "", q, application_headers={"a": value})
    with pytest.raises(amqp.exceptions.InternalError) as info:
        ch.queue_declare(q, passive=True)
    assert (info.value.reply_code, info.value.reply_text) == (541, "INTERNAL_ERROR")
    assert info.value.method_sig == (0, 0)  # a frame it could not decode: no method named
    assert env.count(q) == 0


@pytest.mark.parametrize(
    "where",
    [
        "queue_declare",
        "queue_bind",
        "queue_unbind",
        "exchange_declare",
        "exchange_bind",
        "exchange_unbind",
        "basic_consume",
    ],
)
def test_non_finite_argument_closes_the_connection(env, where):
    conn = env.connection()
    ch = env.channel(conn)
    q = env.queue(env.channel())
    call = {
        "queue_declare": lambda: ch.queue_declare(env.name(), arguments={"x-a": math.nan}),
        "queue_bind": lambda: ch.queue_bind(q, "amq.headers", "", arguments={"a": math.inf}),
        "queue_unbind": lambda: ch.queue_unbind(q, "amq.headers", "", arguments={"a": math.inf}),
        "exchange_declare": lambda: ch.exchange_declare(
            env.name(), "direct", arguments={"a": math.nan}
        ),
        "exchange_bind": lambda: ch.exchange_bind(
            "amq.fanout", "amq.headers", "", arguments={"a": -math.inf}
        ),
        "exchange_unbind": lambda: ch.exchange_unbind(
            "amq.fanout", "amq.headers", "", arguments={"a": math.nan}
        ),
        "basic_consume": lambda: ch.basic_consume(
            q, arguments={"a": math.nan}, callback=lambda m: None
        ),
    }[where]
    assert _outcome(env, ch, call) == ("connection",)
    assert env.channel().queue_declare(q, passive=True).consumer_count == 0


def test_none_and_bytes_names_are_sent_as_py_amqp_sends_them(env):
    ch = env.channel()
    declared = ch.queue_declare(None, exclusive=True).queue  # shortstr: None -> ""
    assert declared.startswith("amq.gen-")
    name = env.name("bx")
    ch.exchange_declare(name.encode(), "direct", auto_delete=False)
    ch.exchange_declare(name, "direct", passive=True)
    env.publish(ch, b"to-default", None, declared)  # exchange None: the default exchange
    assert env.get(ch, declared).body == b"to-default"
    ch.queue_bind(declared, name, None)  # routing key None: ""
    env.publish(ch, b"empty-key", name, None)
    assert env.get(ch, declared).body == b"empty-key"
    with pytest.raises(AccessRefused) as info:
        ch.exchange_declare(None, "direct")
    assert info.value.reply_text == (
        "ACCESS_REFUSED - operation not permitted on the default exchange"
    )


def test_invalid_utf8_name_is_a_frame_error(env):
    ch = env.channel(env.connection())
    assert _outcome(env, ch, lambda: ch.queue_declare(b"conf.\xff", exclusive=True)) == (
        "connection",
        501,
        "FRAME_ERROR - Malformed UTF-8 in shortstr",
        (0, 0),
    )


@pytest.mark.parametrize(
    ("arguments", "error"),
    [
        ({1, 2}, "'set' object has no attribute 'items'"),
        ([("a", 1)], "'list' object has no attribute 'items'"),
    ],
)
def test_set_and_list_arguments_are_refused_in_the_client(env, arguments, error):
    ch = env.channel()
    with pytest.raises(AttributeError, match=re.escape(error)):
        ch.queue_declare(env.name(), arguments=arguments)
    with pytest.raises(FrameSyntaxError):
        ch.queue_declare(env.name(), arguments={"x-a": {1}})
    assert ch.queue_declare(env.name(), exclusive=True, arguments=[]).message_count == 0


def test_alternate_exchange_must_be_a_string(env):
    ch = env.channel()
    name = env.name()
    with pytest.raises(PreconditionFailed) as info:
        ch.exchange_declare(name, "direct", arguments={"alternate-exchange": 5})
    assert info.value.reply_text == (
        f"PRECONDITION_FAILED - invalid type 'signedint' for arg 'alternate-exchange' in "
        f"exchange '{name}' in vhost '/'"
    )
    existing = env.exchange(env.channel(), "direct")
    with pytest.raises(PreconditionFailed) as info:
        env.channel().exchange_declare(
            existing, "direct", auto_delete=False, arguments={"alternate-exchange": 5}
        )
    assert info.value.reply_text == (
        f"PRECONDITION_FAILED - inequivalent arg 'alternate-exchange' for exchange '{existing}' "
        "in vhost '/': received the value '5' of type 'signedint' but current is none"
    )


@pytest.mark.parametrize("key", ["x-message-ttl", "x-expires"])
def test_ttl_above_ten_years_is_too_large(env, key):
    ch = env.channel()
    name = env.name()
    ch.queue_declare(env.name(), exclusive=True, arguments={key: 315_360_000_000})
    with pytest.raises(PreconditionFailed) as info:
        ch.queue_declare(name, exclusive=True, arguments={key: 8_639_913_600_001})
    assert info.value.reply_text == (
        f"PRECONDITION_FAILED - invalid arg '{key}' for queue '{name}' in vhost '/': "
        "{value_too_large,8639913600001}"
    )


def test_message_expiration_above_ten_years_is_too_large(env):
    ch = env.channel()
    q = env.queue(ch)
    env.publish(ch, b"m", "", q, expiration="315360000001")
    with pytest.raises(PreconditionFailed) as info:
        ch.queue_declare(q, passive=True)
    assert info.value.reply_text == (
        "PRECONDITION_FAILED - invalid expiration '315360000001': {value_too_large,315360000001}"
    )


@pytest.mark.parametrize(
    ("value", "type_name"), [("high", "longstr"), (1.5, "double"), (True, "bool")]
)
def test_consumer_priority_must_be_an_integer(env, value, type_name):
    ch = env.channel()
    q = env.queue(ch)
    with pytest.raises(PreconditionFailed) as info:
        ch.basic_consume(q, arguments={"x-priority": value}, callback=lambda m: None)
    assert info.value.reply_text == (
        f"PRECONDITION_FAILED - invalid arg 'x-priority' for queue '{q}' in vhost '/': "
        f'"expected integer, got {type_name}"'
    )
    assert ch.basic_consume(q, arguments={"x-priority": 2**40}, callback=lambda m: None)


def test_names_longer_than_255_bytes_are_refused_in_the_client(env):
    ch = env.channel()
    with pytest.raises(struct.error, match="ubyte format requires"):
        ch.queue_declare("q" * 256)
    with pytest.raises(struct.error, match="ubyte format requires"):
        env.publish(ch, b"m", "", "é" * 128)
    assert ch.queue_declare("q" * 255, exclusive=True).queue == "q" * 255


@pytest.mark.parametrize(
    ("tag", "exc", "text"),
    [
        (1.0, struct.error, "required argument is not an integer"),
        ("1", struct.error, "required argument is not an integer"),
        (-1, struct.error, "int too large to convert"),
        (2**64, struct.error, "int too large to convert"),
    ],
)
def test_ill_typed_delivery_tags_are_refused_and_the_message_stays_unacked(env, tag, exc, text):
    ch = env.channel()
    q = env.queue(ch)
    env.publish(ch, b"m", "", q)
    msg = env.get(ch, q, no_ack=False)
    with pytest.raises(exc, match=re.escape(text)):
        ch.basic_ack(tag)
    ch.basic_ack(msg.delivery_tag)
    assert env.count(q) == 0


@pytest.mark.parametrize(
    ("channel_id", "exc", "text"),
    [
        ("5", TypeError, "'str' object cannot be interpreted as an integer"),
        (1.5, TypeError, "'float' object cannot be interpreted as an integer"),
        (70000, OverflowError, "unsigned short is greater than maximum"),
        (-1, OverflowError, "unsigned short is less than minimum"),
    ],
)
def test_ill_typed_channel_ids_are_refused_as_py_amqp_claims_them(env, channel_id, exc, text):
    conn = env.connection()
    with pytest.raises(exc, match=re.escape(text)):
        conn.connection.channel(channel_id)
    assert conn.connection.channel(None).queue_declare("", exclusive=True)


@pytest.mark.parametrize("channel_id", [2047, 2048, 65535])
def test_explicit_channel_ids_up_to_65535_open(env, channel_id):
    """RabbitMQ 3.10 opens an explicit id above the channel_max (2047) it offered."""
    ch = env.connection().connection.channel(channel_id)
    assert ch.channel_id == channel_id
    assert ch.queue_declare("", exclusive=True).message_count == 0


def test_channel_zero_is_the_connection_itself(env):
    """py-amqp keeps the connection as channel 0 and hands it out."""
    conn = env.connection().connection
    assert conn.channel(0) is conn


def test_negative_heartbeat_fails_to_connect(env):
    """py-amqp encodes the negotiated heartbeat in tune-ok; simamqp's drain loop used to spin."""
    with pytest.raises(struct.error, match="argument out of range"):
        env.connection(heartbeat=-5)
    with pytest.raises(struct.error, match="argument out of range"):
        kombu.Connection(env.url + "?heartbeat=-5").connect()


def test_dropped_connection_object_is_closed_like_its_socket(env):
    """A py-amqp Connection collected without close(): its socket closes, RabbitMQ requeues."""
    ch = env.channel()
    q = env.queue(ch)
    env.publish(ch, b"m", "", q)
    conn = kombu.Connection(env.url)
    owner = conn.channel()
    exclusive = owner.queue_declare("", exclusive=True).queue
    assert env.get(owner, q, no_ack=False).body == b"m"
    del owner, conn
    gc.collect()
    probe = env.channel()
    assert env.eventually(lambda: env.count(q, probe), 1) == 1
    msg = env.get(probe, q)
    assert (msg.body, msg.delivery_info["redelivered"]) == (b"m", True)

    def exclusive_gone() -> bool:
        try:
            env.channel().queue_declare(exclusive, passive=True)
        except amqp.exceptions.NotFound:
            return True
        return False

    assert env.eventually(exclusive_gone, True) is True


# -- the Hypothesis machine: both brokers in lockstep ---------------------------------------------

#: Name kinds: "valid" and "bytes" become a fresh unique name (as str or bytes); the others are
#: sent as they are (none of them can create an entity another run could collide with).
NAMES = st.sampled_from(
    ["valid", "bytes", None, "", "n" * 256, 5, 2.7, "é" * 128, b"\xff", "amq.reserved"]
)
BITS = st.sampled_from([True, False, 0, 1, "", "yes", None, [], 2.5])
TABLES = st.sampled_from(
    [
        None,
        {},
        [],
        {1, 2},
        [("a", 1)],
        {1: "a"},
        {"x-message-ttl": "5"},
        {"x-message-ttl": 315_360_000_001},
        {"x-message-ttl": -1},
        {"x-message-ttl": 2.5},
        {"x-expires": 0},
        {"x-max-length": 2**63},
        {"x-max-priority": 300},
        {"x-max-priority": "hi"},
        {"x-dead-letter-exchange": 5},
        {"x-overflow": "bogus"},
        {"x-single-active-consumer": "yes"},
        {"x-priority": "high"},
        {"x-priority": 2**40},
        {"alternate-exchange": 5},
        {"x-match": "any", "k": "v"},
        {"x-match": "nope", "k": "v"},
        {"a": math.nan},
        {"a": {1}},
        {"a": decimal.Decimal("1.5")},
        {"a": datetime.datetime(2020, 1, 1, 12, 0, 0, 123)},
        {"a": (1, "b", None, [True])},
        {"k" * 256: 1},
    ]
)
SHORTS = st.sampled_from([0, 1, 5, "5", 2.7, -1, 65535, 65536, None, "x", True])
LONGS = st.sampled_from([0, 5, "5", -1, 2**32, None])
TAGS = st.sampled_from([0, 1, 2, 99, 1.0, "1", -1, 2**64, None, True])
PROPERTIES = st.fixed_dictionaries(
    {},
    optional={
        "priority": st.sampled_from([-1, 0, 5, 9, 300, "hi", 2.5, True, None]),
        "delivery_mode": st.sampled_from([1, 2, 3, "2", None, True]),
        "expiration": st.sampled_from(["1000", "abc", "-5", "315360000001", 5, b"100", ""]),
        "application_headers": TABLES
        | st.sampled_from(
            [
                {"CC": "abc"},
                {"CC": ["k"]},
                {"BCC": ["k"]},
                {"BCC": 5},
                {"a": math.inf},
                {"k": "v"},
            ]
        ),
        "timestamp": st.sampled_from([5, "5", -1, 2**64, datetime.datetime(2020, 1, 1)]),
        "user_id": st.sampled_from(["guest", "other", 5]),
        "content_type": st.sampled_from(["text/plain", 5, b"bytes", "c" * 256]),
        "correlation_id": st.sampled_from(["id", None, "i" * 300]),
        "foo": st.sampled_from(["bar", 5]),
    },
)
BODIES = st.sampled_from([b"x", "text", "é", 5, [104, 105], [], None, bytearray(b"ba")])
EXCHANGE_TYPES = st.sampled_from(["direct", "fanout", "headers", "topic", "bogus", None, b"direct"])


def _nothing(result: Any) -> None:
    """Drop a return value that is not an observation (py-amqp's promise objects)."""


class Side:
    """One broker: a hostile connection (recreated when the broker closes it) and a bystander."""

    def __init__(self, label: str, url: str, settle: Callable[[], None]) -> None:
        self.label = label
        self.url = url
        self.settle = settle
        self.conn: kombu.Connection | None = None
        self.ch: Any = None
        self.bystander = kombu.Connection(url)
        self.bystander.connect()
        self.bch = self.bystander.channel()
        self.bch.confirm_select()

    def channel(self) -> Any:
        if self.conn is None or not self.conn.connected:
            with contextlib.suppress(Exception):
                if self.conn is not None:
                    self.conn.release()
            self.conn = kombu.Connection(self.url)
            self.conn.connect()
            self.ch = None
        if self.ch is None or not self.ch.is_open:
            self.ch = self.conn.channel()
        return self.ch

    def run(self, op: Callable[[Any], Any]) -> tuple[Any, ...]:
        ch = self.channel()
        try:
            result = op(ch)
            self.settle()
            ch.exchange_declare("amq.direct", "direct", passive=True)
        except Exception as exc:
            outcome = classify(exc)
            if outcome[0] == "connection":
                self.conn = None
            return outcome
        return ("ok", observe(result))

    def close(self) -> None:
        for conn in (self.conn, self.bystander):
            with contextlib.suppress(Exception):
                if conn is not None:
                    conn.release()


class HostileMachine(RuleBasedStateMachine):
    """Hostile calls on every side; outcomes and the bystander's view must agree."""

    sides: list[Side]
    run_token: str
    example_counter: Any
    fanout: str
    headers: str
    bystander_queue: str
    hostile_calls: list[int]
    outcome_classes: set[str]

    def __init__(self) -> None:
        super().__init__()
        self.example = next(self.example_counter)
        self.counter = itertools.count()
        self.names: list[str] = []
        self.queue = self.fresh()
        self.both(lambda ch: ch.queue_declare(self.queue, auto_delete=False))

    def fresh(self) -> str:
        name = f"hostile.{self.run_token}.{self.example}.{next(self.counter)}"
        self.names.append(name)
        return name

    def name(self, drawn: Any) -> Any:
        if drawn == "valid":
            return self.fresh()
        if drawn == "bytes":
            return self.fresh().encode()
        return drawn

    def both(self, op: Callable[[Any], Any], description: str = "") -> tuple[Any, ...]:
        outcomes = [side.run(op) for side in self.sides]
        assert outcomes[0] == outcomes[1], (description, outcomes)
        return outcomes[0]

    def hostile(self, description: str, op: Callable[[Any], Any]) -> None:
        self.hostile_calls[0] += 1
        outcome = self.both(op, description)
        self.outcome_classes.add(outcome[0])
        if outcome[0] == "connection" and len(outcome) > 1:
            self.outcome_classes.add(f"connection {outcome[1]}")
        # The effect: what reached this example's queue, in order.
        self.both(lambda ch: self._drain(ch, self.queue), f"after {description}")

    @staticmethod
    def _drain(ch: Any, queue: str) -> list[Any]:
        out = []
        while (msg := ch.basic_get(queue, no_ack=True)) is not None:
            out.append(observe(msg))
        return out

    # -- rules ----------------------------------------------------------------------------------

    @rule(name=NAMES, flags=st.tuples(BITS, BITS, BITS, BITS), arguments=TABLES)
    def declare_queue(self, name: Any, flags: tuple[Any, ...], arguments: Any) -> None:
        name = self.name(name)
        passive, durable, _, _ = flags

        def op(ch: Any) -> Any:
            # exclusive: whatever is declared goes when the hostile connection goes.
            return ch.queue_declare(name, passive, durable, True, False, arguments=arguments)

        self.hostile(f"queue_declare({name!r}, {flags}, {arguments!r})", op)

    @rule(name=NAMES, type_=EXCHANGE_TYPES, arguments=TABLES)
    def declare_exchange(self, name: Any, type_: Any, arguments: Any) -> None:
        name = self.name(name)
        self.hostile(
            f"exchange_declare({name!r}, {type_!r}, {arguments!r})",
            lambda ch: ch.exchange_declare(name, type_, auto_delete=False, arguments=arguments),
        )

    @rule(
        exchange=st.sampled_from(["fanout", "headers", "amq.direct", None, 5, "missing"]),
        routing_key=NAMES,
        arguments=TABLES,
    )
    def bind(self, exchange: Any, routing_key: Any, arguments: Any) -> None:
        exchange = {"fanout": self.fanout, "headers": self.headers, "missing": self.fresh()}.get(
            exchange, exchange
        )
        key = self.queue if routing_key in ("valid", "bytes") else routing_key
        self.hostile(
            f"queue_bind({exchange!r}, {key!r}, {arguments!r})",
            lambda ch: ch.queue_bind(self.queue, exchange, key, arguments=arguments),
        )

    @rule(tag=NAMES, no_ack=BITS, arguments=TABLES)
    def consume(self, tag: Any, no_ack: Any, arguments: Any) -> None:
        tag = self.name(tag)
        # An empty queue of its own: no delivery is in flight when the consumer is cancelled
        # (RabbitMQ's timing of those is not an observation).
        empty = self.fresh()

        def op(ch: Any) -> Any:
            queue = ch.queue_declare(empty, exclusive=True).queue
            got = ch.basic_consume(
                queue, tag, no_ack=no_ack, arguments=arguments, callback=lambda m: None
            )
            ch.basic_cancel(got)
            return got

        self.hostile(f"basic_consume({tag!r}, {no_ack!r}, {arguments!r})", op)

    @rule(
        name=NAMES,
        what=st.sampled_from(["queue_delete", "queue_purge", "exchange_delete", "basic_cancel"]),
        flags=st.tuples(BITS, BITS),
    )
    def delete_purge_or_cancel(self, name: Any, what: str, flags: tuple[Any, Any]) -> None:
        name = self.name(name)
        first, second = flags
        call: Callable[[Any], Any] = {
            "queue_delete": lambda ch: ch.queue_delete(name, first, second),
            "queue_purge": lambda ch: ch.queue_purge(name, first),
            "exchange_delete": lambda ch: ch.exchange_delete(name, first, second),
            "basic_cancel": lambda ch: ch.basic_cancel(name, first),
        }[what]
        self.hostile(f"{what}({name!r}, {flags})", call)

    @rule(
        destination=st.sampled_from(["headers", "fanout", "missing", None, "", b"fanout"]),
        routing_key=NAMES,
        arguments=TABLES,
        bind=st.booleans(),
    )
    def exchange_bind_or_unbind(
        self, destination: Any, routing_key: Any, arguments: Any, bind: bool
    ) -> None:
        # The hostile client binds its own exchange to the shared ones (never the reverse, so
        # the bystander's messages are not multiplied).
        source = self.fresh()
        self.both(lambda ch: ch.exchange_declare(source, "fanout", auto_delete=False))
        mapped = {"headers": self.headers, "fanout": self.fanout, "missing": self.fresh()}
        target = mapped.get(destination, destination)
        if target == b"fanout":
            target = self.fanout.encode()
        method = "exchange_bind" if bind else "exchange_unbind"
        self.hostile(
            f"{method}({target!r}, {routing_key!r}, {arguments!r})",
            lambda ch: getattr(ch, method)(target, source, routing_key, arguments=arguments),
        )

    @rule(size=LONGS, count=SHORTS, a_global=BITS)
    def qos(self, size: Any, count: Any, a_global: Any) -> None:
        self.hostile(
            f"basic_qos({size!r}, {count!r}, {a_global!r})",
            lambda ch: _nothing(ch.basic_qos(size, count, a_global)),
        )

    @rule(
        body=BODIES,
        exchange=st.sampled_from(["", "fanout", "headers", None, b"", 5, "missing"]),
        properties=PROPERTIES,
        mandatory=BITS,
    )
    def publish(self, body: Any, exchange: Any, properties: Any, mandatory: Any) -> None:
        exchange = {"fanout": self.fanout, "headers": self.headers, "missing": self.fresh()}.get(
            exchange, exchange
        )
        self.hostile(
            f"basic_publish({body!r}, {exchange!r}, {properties!r}, {mandatory!r})",
            # py-amqp returns a promise, simamqp None: not an observation.
            lambda ch: _nothing(
                ch.basic_publish(amqp.Message(body, **properties), exchange, self.queue, mandatory)
            ),
        )

    @rule(tag=TAGS, multiple=BITS, settle=st.sampled_from(["ack", "reject", "nack"]))
    def settle(self, tag: Any, multiple: Any, settle: str) -> None:
        def op(ch: Any) -> Any:
            ch.basic_publish(amqp.Message(b"to-settle"), "", self.queue)
            msg = ch.basic_get(self.queue, no_ack=False)
            if settle == "ack":
                ch.basic_ack(tag, multiple)
            elif settle == "reject":
                ch.basic_reject(tag, multiple)
            else:
                ch.send_method((60, 120), "Lbb", (tag, multiple, True))
            return msg.delivery_tag

        self.hostile(f"{settle}({tag!r}, {multiple!r})", op)

    # -- the bystander ----------------------------------------------------------------------------

    @invariant()
    def bystander_is_unaffected(self) -> None:
        """A well-behaved client publishing through the shared exchanges sees its own messages.

        Hostile messages routed to the bystander's queue are compared too (same on both sides).
        """
        views = []
        for side in self.sides:
            ch = side.bch
            before = self._drain(ch, self.bystander_queue)
            ch.basic_publish(amqp.Message(b"fan", priority=1), self.fanout, "")
            ch.basic_publish(amqp.Message(b"hdr", application_headers={"k": "v"}), self.headers, "")
            side.settle()
            after = self._drain(ch, self.bystander_queue)
            assert [m[1] for m in after] == [b"fan", b"hdr"], (side.label, after)
            views.append(before)
        assert views[0] == views[1], views

    def teardown(self) -> None:
        for side in self.sides:
            if side.conn is not None:
                with contextlib.suppress(Exception):
                    side.conn.release()
                side.conn = None
            ch = side.bystander.channel()
            for name in self.names:
                for delete in (ch.queue_delete, ch.exchange_delete):
                    try:
                        delete(name)
                    except amqp.exceptions.ChannelError:
                        ch = side.bystander.channel()
            ch.close()


@pytest.mark.rabbitmq
def test_hostile_clients_see_the_same_on_both_brokers(make_sim_broker, rabbitmq_url):
    sim = make_sim_broker()
    sides = [
        Side("simamqp", sim.url, sim.run_until_idle),
        Side("rabbitmq", rabbitmq_url, lambda: None),
    ]
    token = uuid.uuid4().hex[:10]
    fanout, headers, queue = (f"hostile.{token}.{what}" for what in ("fanout", "headers", "by"))
    for side in sides:
        ch = side.bch
        ch.exchange_declare(fanout, "fanout", auto_delete=False)
        ch.exchange_declare(headers, "headers", auto_delete=False)
        ch.queue_declare(queue, auto_delete=False)
        ch.queue_bind(queue, fanout, "")
        ch.queue_bind(queue, headers, "", arguments={"x-match": "any", "k": "v"})
    calls = [0]
    classes: set[str] = set()
    machine = type(
        "HostileMachine",
        (HostileMachine,),
        {
            "sides": sides,
            "run_token": token,
            "example_counter": itertools.count(),
            "fanout": fanout,
            "headers": headers,
            "bystander_queue": queue,
            "hostile_calls": calls,
            "outcome_classes": classes,
        },
    )
    try:
        run_state_machine_as_test(
            machine,
            settings=settings(
                max_examples=HOSTILE_EXAMPLES,
                stateful_step_count=HOSTILE_STEPS,
                deadline=None,
                suppress_health_check=list(HealthCheck),
                database=None,
            ),
        )
    finally:
        for side in sides:
            ch = side.bystander.channel()
            for name in (queue, fanout, headers):
                with contextlib.suppress(amqp.exceptions.ChannelError):
                    (ch.queue_delete if name == queue else ch.exchange_delete)(name)
            side.close()
    assert calls[0] >= HOSTILE_EXAMPLES
    # Not vacuous: calls were accepted, refused by the encoder, by the broker, and fatal.
    assert classes >= {"ok", "client", "channel", "connection"}, classes
