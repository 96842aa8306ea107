"""Golden trace digests, and every field of an event reaching the digest.

Two digest versions are defined byte for byte in docs/design.md ("The trace"):

- v2 (``trace.digest()``, written ``"v2:<hex>"``): sha256 over each event's bytes, the event
  being ``(time, head, values)`` with ``head`` the bytes of ``(kind, *sorted names)`` and
  ``values`` the canonical values in that order, written as marshal format 2 writes them.
- v1 (``trace.digest(version=1)``, bare hex): sha256 over one sorted-key JSON document per
  event (``seq``, ``time``, ``kind`` and the attributes; bytes as ``{"len", "sha256"}``, floats
  as their ``repr`` text), each followed by a newline. Files recorded before v2 hold it.

The expected events and lines below are written by hand from those definitions, and hashed by
tests/core/_digest_reference.py (struct and json, no marshal, no ``Trace``), so a change to what
is hashed fails here even when every run still agrees with itself. The pinned hex values must
not change: a file recorded with them must keep verifying.
"""

from __future__ import annotations

import datetime as dt
import decimal
import enum
import hashlib
import marshal
import struct
from pathlib import Path
from typing import Any

import pytest
from _digest_reference import (
    HandEvent,
    is_canonical,
    v1_digest,
    v2_bytes,
    v2_digest,
    v2_event,
)
from hypothesis import given, settings
from hypothesis import strategies as st

from simamqp.core import Broker, Trace
from simamqp.core.trace import Shape, encode_v2, parse_digest
from simamqp.scenarios import collect, load, run_scenario

ROOT = Path(__file__).resolve().parents[2]


def sha(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def digest_of(lines: list[str]) -> str:
    """The documented v1 digest: sha256 over each canonical line plus a newline."""
    return sha(b"".join(line.encode() + b"\n" for line in lines))


HELLO = sha(b"hello")
X = sha(b"x")

#: declare q1, publish "hello" to it, basic.get without no_ack, ack.
PUBLISH_GET_ACK_LINES = [
    '{"connection":1,"kind":"connection-open","seq":1,"time":0.0,"vhost":"/"}',
    '{"channel":1,"connection":1,"kind":"channel-open","seq":2,"time":0.0}',
    '{"auto_delete":false,"durable":false,"exclusive":false,"kind":"queue-declare",'
    '"queue":"q1","seq":3,"time":0.0,"vhost":"/"}',
    '{"body":{"len":5,"sha256":"' + HELLO + '"},"channel":1,"connection":1,"exchange":"",'
    '"kind":"publish","mandatory":false,"msg":1,"routing_key":"q1","seq":4,"time":0.0}',
    '{"kind":"route","msg":1,"queues":["q1"],"seq":5,"time":0.0}',
    '{"kind":"enqueue","msg":1,"queue":"q1","seq":6,"time":0.0,"vhost":"/"}',
    '{"channel":1,"connection":1,"delivery_tag":1,"kind":"get","msg":1,"queue":"q1",'
    '"redelivered":false,"seq":7,"time":0.0}',
    '{"channel":1,"connection":1,"kind":"ack","msg":1,"queue":"q1","seq":8,"time":0.0}',
]
PUBLISH_GET_ACK_DIGEST = "4172ee3ce0c56636439c5936794ddf9339995b844c0610ef10df9ef724efac73"
#: the same events, as v2 hashes them
PUBLISH_GET_ACK_EVENTS: list[HandEvent] = [
    (0.0, "connection-open", {"connection": 1, "vhost": "/"}),
    (0.0, "channel-open", {"channel": 1, "connection": 1}),
    (
        0.0,
        "queue-declare",
        {"auto_delete": False, "durable": False, "exclusive": False, "queue": "q1", "vhost": "/"},
    ),
    (
        0.0,
        "publish",
        {
            "body": b"hello",
            "channel": 1,
            "connection": 1,
            "exchange": "",
            "mandatory": False,
            "msg": 1,
            "routing_key": "q1",
        },
    ),
    (0.0, "route", {"msg": 1, "queues": ["q1"]}),
    (0.0, "enqueue", {"msg": 1, "queue": "q1", "vhost": "/"}),
    (
        0.0,
        "get",
        {
            "channel": 1,
            "connection": 1,
            "delivery_tag": 1,
            "msg": 1,
            "queue": "q1",
            "redelivered": False,
        },
    ),
    (0.0, "ack", {"channel": 1, "connection": 1, "msg": 1, "queue": "q1"}),
]
PUBLISH_GET_ACK_V2 = "v2:92cef4c1507b87c4b1abe47a0545094d3ca14a61074e721b52d8cb4b4caa6145"

#: a message with a 1.5 s TTL expires at t=1.5 and is dead-lettered through a fanout DLX.
TTL_DEAD_LETTER_LINES = [
    '{"connection":1,"kind":"connection-open","seq":1,"time":0.0,"vhost":"/"}',
    '{"channel":1,"connection":1,"kind":"channel-open","seq":2,"time":0.0}',
    '{"auto_delete":false,"durable":false,"exchange":"dlx","kind":"exchange-declare",'
    '"seq":3,"time":0.0,"type":"fanout","vhost":"/"}',
    '{"auto_delete":false,"durable":false,"exclusive":false,"kind":"queue-declare",'
    '"queue":"dead","seq":4,"time":0.0,"vhost":"/"}',
    '{"destination":"dead","destination_kind":"queue","kind":"bind","routing_key":"",'
    '"seq":5,"source":"dlx","time":0.0,"vhost":"/"}',
    '{"auto_delete":false,"durable":false,"exclusive":false,"kind":"queue-declare",'
    '"queue":"q","seq":6,"time":0.0,"vhost":"/"}',
    '{"body":{"len":1,"sha256":"' + X + '"},"channel":1,"connection":1,"exchange":"",'
    '"kind":"publish","mandatory":false,"msg":1,"routing_key":"q","seq":7,"time":0.0}',
    '{"kind":"route","msg":1,"queues":["q"],"seq":8,"time":0.0}',
    '{"kind":"enqueue","msg":1,"queue":"q","seq":9,"time":0.0,"vhost":"/"}',
    '{"kind":"expire","msg":1,"queue":"q","seq":10,"time":1.5,"vhost":"/"}',
    '{"exchange":"dlx","kind":"dead-letter","msg":1,"new_msg":2,"queue":"q",'
    '"queues":["dead"],"reason":"expired","seq":11,"time":1.5}',
    '{"kind":"enqueue","msg":2,"queue":"dead","seq":12,"time":1.5,"vhost":"/"}',
]
TTL_DEAD_LETTER_DIGEST = "b7422480cb95771f0720c94b8e3336f0aa3fb8c3db2357519de677c0221f8ae6"
_DECLARED = {"auto_delete": False, "durable": False}
TTL_DEAD_LETTER_EVENTS: list[HandEvent] = [
    (0.0, "connection-open", {"connection": 1, "vhost": "/"}),
    (0.0, "channel-open", {"channel": 1, "connection": 1}),
    (0.0, "exchange-declare", {**_DECLARED, "exchange": "dlx", "type": "fanout", "vhost": "/"}),
    (0.0, "queue-declare", {**_DECLARED, "exclusive": False, "queue": "dead", "vhost": "/"}),
    (
        0.0,
        "bind",
        {
            "destination": "dead",
            "destination_kind": "queue",
            "routing_key": "",
            "source": "dlx",
            "vhost": "/",
        },
    ),
    (0.0, "queue-declare", {**_DECLARED, "exclusive": False, "queue": "q", "vhost": "/"}),
    (
        0.0,
        "publish",
        {
            "body": b"x",
            "channel": 1,
            "connection": 1,
            "exchange": "",
            "mandatory": False,
            "msg": 1,
            "routing_key": "q",
        },
    ),
    (0.0, "route", {"msg": 1, "queues": ["q"]}),
    (0.0, "enqueue", {"msg": 1, "queue": "q", "vhost": "/"}),
    (1.5, "expire", {"msg": 1, "queue": "q", "vhost": "/"}),
    (
        1.5,
        "dead-letter",
        {
            "exchange": "dlx",
            "msg": 1,
            "new_msg": 2,
            "queue": "q",
            "queues": ["dead"],
            "reason": "expired",
        },
    ),
    (1.5, "enqueue", {"msg": 2, "queue": "dead", "vhost": "/"}),
]
TTL_DEAD_LETTER_V2 = "v2:b3150499a38b61ef8513575735ec8a535818a1bd0aec21fafac19d7137436792"

#: events emitted by hand, one of every value type the canonical encodings know.
HAND_EVENTS: list[HandEvent] = [
    (0.0, "first", {}),
    (
        2.5,
        "values",
        {
            "zeta": None,
            "alpha": True,
            "num": 7,
            "ratio": 0.25,
            "body": b"hello",
            "nested": {"b": (1, "two"), "a": [False, 3.0]},
            "when": dt.datetime(2024, 1, 2, 3, 4, 5),
            "price": decimal.Decimal("1.50"),
        },
    ),
]
HAND_LINES = [
    '{"kind":"first","seq":1,"time":0.0}',
    '{"alpha":true,"body":{"len":5,"sha256":"' + HELLO + '"},"kind":"values",'
    '"nested":{"a":[false,"3.0"],"b":[1,"two"]},"num":7,"price":"decimal:1.50",'
    '"ratio":"0.25","seq":2,"time":2.5,"when":"2024-01-02T03:04:05","zeta":null}',
]
HAND_DIGEST = "86f961e41e8e106f7ea7cc108111cbe03901ff2bf2813da926e9e93e8bf5ed7a"
HAND_V2 = "v2:215f88b8a98e240c47b2e597ca1d15237ad6903721e056a10a22b5ce61a4ba8b"


def run_publish_get_ack() -> Broker:
    broker = Broker(seed=1)
    ch = broker.connect().channel()
    ch.queue_declare("q1")
    ch.basic_publish(b"hello", "", "q1")
    ok = ch.basic_get("q1", no_ack=False)
    assert ok is not None
    ch.basic_ack(ok.delivery_tag)
    return broker


def run_ttl_dead_letter() -> Broker:
    broker = Broker(seed=1)
    ch = broker.connect().channel()
    ch.exchange_declare("dlx", "fanout")
    ch.queue_declare("dead")
    ch.queue_bind("dead", "dlx")
    ch.queue_declare("q", arguments={"x-message-ttl": 1500, "x-dead-letter-exchange": "dlx"})
    ch.basic_publish(b"x", "", "q")
    broker.advance(2)
    broker.run_until_idle()
    return broker


def hand_trace(events: list[HandEvent], **kwargs: Any) -> Trace:
    trace = Trace(**kwargs)
    for time, kind, attrs in events:
        trace.emit(time, kind, attrs)
    return trace


GOLDEN = [
    pytest.param(
        run_publish_get_ack,
        PUBLISH_GET_ACK_EVENTS,
        PUBLISH_GET_ACK_LINES,
        PUBLISH_GET_ACK_DIGEST,
        PUBLISH_GET_ACK_V2,
        id="publish-get-ack",
    ),
    pytest.param(
        run_ttl_dead_letter,
        TTL_DEAD_LETTER_EVENTS,
        TTL_DEAD_LETTER_LINES,
        TTL_DEAD_LETTER_DIGEST,
        TTL_DEAD_LETTER_V2,
        id="ttl-dead-letter",
    ),
    pytest.param(None, HAND_EVENTS, HAND_LINES, HAND_DIGEST, HAND_V2, id="hand-events"),
]


@pytest.mark.parametrize(("workload", "events", "lines", "golden_v1", "golden_v2"), GOLDEN)
def test_golden_digests_are_the_sha256_of_the_documented_encodings(
    workload: Any, events: list[HandEvent], lines: list[str], golden_v1: str, golden_v2: str
) -> None:
    """A fixed workload's digests equal the sha256 of its hand-written events (v2) and lines
    (v1), and both values are pinned: files recorded with them keep verifying."""
    assert digest_of(lines) == v1_digest(events) == golden_v1
    assert v2_digest(events) == golden_v2
    trace = workload().trace if workload is not None else hand_trace(events)
    assert trace.digest() == golden_v2
    assert trace.digest(version=1) == golden_v1
    assert hand_trace(events).digest() == golden_v2  # the same events, emitted as dicts


def test_one_event_byte_for_byte() -> None:
    """The layout of one event, spelled out (docs/design.md): a 3-tuple of the time, the head
    (as bytes) and the values, each item tagged with its marshal type code."""
    head = b"(" + struct.pack("<i", 3) + b"u\x05\x00\x00\x00route" + b"u\x03\x00\x00\x00msg"
    head += b"u\x06\x00\x00\x00queues"
    event = b"(\x03\x00\x00\x00" + b"g" + struct.pack("<d", 1.5)
    event += b"s" + struct.pack("<i", len(head)) + head
    event += b"(\x02\x00\x00\x00" + b"i\x01\x00\x00\x00" + b"(\x01\x00\x00\x00u\x02\x00\x00\x00q1"
    assert v2_event(1.5, "route", {"queues": ["q1"], "msg": 1}) == event
    assert encode_v2(1.5, "route", {"queues": ["q1"], "msg": 1}) == event
    trace = Trace()
    trace.record(1.5, Shape("route", msg=1, queues=("",)), (1, ("q1",)))
    assert trace.digest() == "v2:" + sha(event)


_canonical_values = st.recursive(
    st.none()
    | st.booleans()
    | st.integers()
    | st.integers(min_value=-(2**200), max_value=2**200)
    | st.floats()
    | st.text()
    | st.binary(max_size=40),
    lambda inner: (
        st.lists(inner, max_size=3).map(tuple)
        | st.dictionaries(st.text(max_size=4), inner, max_size=3).map(
            lambda d: dict(sorted(d.items()))
        )
    ),
    max_leaves=8,
)


@settings(max_examples=300, deadline=None)
@given(_canonical_values)
def test_the_documented_layout_is_what_marshal_format_2_writes(value: Any) -> None:
    """The definition is the byte layout in the docs; marshal (format 2) is how CPython writes
    it at C speed. Any canonical value, nested or not, gives the same bytes both ways (NaN
    payloads, lone surrogates, ints of any size, the same object twice included)."""
    assert marshal.dumps(value, 2) == v2_bytes(value)
    assert marshal.dumps((value, value), 2) == v2_bytes((value, value))


BASE_EVENT: HandEvent = (
    1.25,
    "publish",
    {
        "exchange": "ex",
        "routing_key": "rk",
        "body": b"payload",
        "mandatory": False,
        "msg": 3,
        "ratio": 0.5,
        "queues": ["a", "b"],
        "headers": {"k": 1, "z": "v"},
        "reason": None,
    },
)

#: one change per field of the event: its time, its kind, and every attribute.
FIELD_CHANGES: dict[str, HandEvent] = {
    "time": (1.5, BASE_EVENT[1], BASE_EVENT[2]),
    "time-int": (1, BASE_EVENT[1], BASE_EVENT[2]),
    "kind": (BASE_EVENT[0], "deliver", BASE_EVENT[2]),
    **{
        f"attr:{name}": (BASE_EVENT[0], BASE_EVENT[1], {**BASE_EVENT[2], name: new})
        for name, new in {
            "exchange": "ex2",
            "routing_key": "rk2",
            "body": b"payloaD",
            "mandatory": True,
            "msg": 4,
            "ratio": 0.75,
            "queues": ["b", "a"],
            "headers": {"k": 2, "z": "v"},
            "reason": "expired",
        }.items()
    },
    "attr:renamed": (
        BASE_EVENT[0],
        BASE_EVENT[1],
        {("exchange2" if k == "exchange" else k): v for k, v in BASE_EVENT[2].items()},
    ),
    "attr:added": (BASE_EVENT[0], BASE_EVENT[1], {**BASE_EVENT[2], "extra": 0}),
    "attr:removed": (
        BASE_EVENT[0],
        BASE_EVENT[1],
        {k: v for k, v in BASE_EVENT[2].items() if k != "reason"},
    ),
}


def test_every_base_attribute_has_a_change() -> None:
    assert {f"attr:{name}" for name in BASE_EVENT[2]} <= set(FIELD_CHANGES)


@pytest.mark.parametrize("version", [2, 1])
@pytest.mark.parametrize("field", sorted(FIELD_CHANGES))
def test_changing_any_field_of_an_event_changes_the_digest(field: str, version: int) -> None:
    """Each field (time, kind, every attribute's value, the attribute names) is hashed: one
    event between two fixed neighbours, changed in one field, gives another digest."""
    before, after = (0.0, "first", {"n": 1}), (9.0, "last", {"n": 2})
    base = hand_trace([before, BASE_EVENT, after]).digest(version)
    if field == "time-int" and version == 1:
        return  # v1 wrote 1.25 vs 1: also different, but "time" covers it
    assert hand_trace([before, FIELD_CHANGES[field], after]).digest(version) != base


@pytest.mark.parametrize("version", [2, 1])
def test_event_order_and_count_change_the_digest(version: int) -> None:
    a, b = (0.0, "one", {"n": 1}), (0.0, "two", {"n": 2})
    digests = {
        hand_trace([a, b]).digest(version),
        hand_trace([b, a]).digest(version),
        hand_trace([a]).digest(version),
        hand_trace([a, b, b]).digest(version),
        hand_trace([]).digest(version),
    }
    assert len(digests) == 5
    empty = sha(b"")
    assert hand_trace([]).digest(version) == (empty if version == 1 else "v2:" + empty)


@pytest.mark.parametrize("version", [2, 1])
def test_attribute_order_does_not_change_the_digest(version: int) -> None:
    """Names are sorted: the same attributes given in another order hash the same (so a
    refactoring that reorders keyword arguments keeps every golden digest)."""
    attrs = BASE_EVENT[2]
    reordered = dict(reversed(list(attrs.items())))
    assert list(reordered) != list(attrs)
    first = hand_trace([(1.0, "k", attrs)]).digest(version)
    assert first == hand_trace([(1.0, "k", reordered)]).digest(version)


@pytest.mark.parametrize("version", [2, 1])
def test_a_value_the_encoding_does_not_know_is_refused_by_name(version: int) -> None:
    """No ``repr`` of objects in the digest: an unknown type is a TypeError naming the type."""
    trace = Trace(mode="full")
    # (at emit or at digest: a streaming digest may encode events as they happen)
    with pytest.raises(TypeError, match=r"^cannot put set in a trace$"):
        trace.emit(0.0, "bad", {"value": {1, 2}})
        trace.digest(version)


class Colour(enum.IntEnum):
    RED = 1


class Name(str):
    def __str__(self) -> str:  # what the trace must not use
        return "not the value"


def test_subclass_values_hash_as_their_base_value() -> None:
    """A client may hand in a ``str`` or ``int`` subclass (an IntEnum, a str subclass with its
    own ``__str__``): it hashes as the plain value, however it is recorded."""
    shape = Shape("sub", n=1, s="")
    plain, subclassed, as_dict = Trace(), Trace(), Trace()
    plain.record(0.5, shape, (1, "q"))
    subclassed.record(0.5, shape, (Colour.RED, Name("q")))
    as_dict.emit(0.5, "sub", {"s": Name("q"), "n": Colour.RED})
    assert plain.digest() == subclassed.digest() == as_dict.digest()
    assert plain.digest() == v2_digest([(0.5, "sub", {"n": 1, "s": "q"})])


def _engine_records() -> list[Any]:
    """Every record the engine stores through a Shape, over the scenario library and the
    golden workloads."""
    records: list[Any] = []
    brokers = [run_publish_get_ack(), run_ttl_dead_letter()]
    for path in collect([ROOT / "scenarios"]):
        brokers.extend(run_scenario(load(path)).run.brokers.values())
    for broker in brokers:
        assert broker.trace.complete
        records.extend(r for r in broker.trace._events if type(r[2]) is tuple)
    return records


def test_the_engine_records_canonical_values_through_shapes() -> None:
    """The fast fold trusts Shape records to hold only exact atomic values and tuples of them
    (marshal would write a list or a dict differently from their canonical form). Every record
    the engine makes on the scenario library holds to that."""
    records = _engine_records()
    kinds = {bytes(r[1]) for r in records}
    assert len(kinds) >= 5  # publish, route, enqueue, deliver, ack, get, confirm...
    assert all(type(r[0]) is float and is_canonical(r[2]) for r in records)
    assert not is_canonical((["a list"],)) and not is_canonical((("nested", {"a": 1}),))
    assert not is_canonical((Colour.RED,)) and not is_canonical((Name("q"),))


def test_digest_versions_and_their_written_form() -> None:
    trace = hand_trace(HAND_EVENTS)
    assert parse_digest(trace.digest()) == 2
    assert parse_digest(trace.digest(version=1)) == 1
    for bad in ["v3:" + "0" * 64, "V2:" + "0" * 64, "0" * 63, "v2:" + "A" * 64, "", 5]:
        with pytest.raises(ValueError, match="a trace digest is 'v2:' and 64"):
            parse_digest(bad)  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="version must be one of"):
        trace.digest(version=3)


def test_v1_needs_the_whole_trace() -> None:
    """v1 is computed from the kept events, only when asked: a trace that dropped some says so."""
    from simamqp.core import TraceNotRetained

    trace = hand_trace([(float(i), "e", {"i": i}) for i in range(10)], window=2)
    with pytest.raises(TraceNotRetained, match=r"digest\(version=1\)"):
        trace.digest(version=1)
    assert trace.digest() == v2_digest([(float(i), "e", {"i": i}) for i in range(10)])


def test_limit_and_single_active_consumer_events_name_queue_and_message() -> None:
    """The trace says which queue dropped or refused which message, and which consumer became
    the single active one (mutants renaming these events or their fields survived)."""
    broker = Broker(seed=1)
    ch = broker.connect().channel()
    ch.queue_declare("dh", arguments={"x-max-length": 1})
    ch.queue_declare("rp", arguments={"x-max-length": 1, "x-overflow": "reject-publish"})
    for queue in ("dh", "rp"):
        ch.basic_publish(b"1", "", queue)
        ch.basic_publish(b"2", "", queue)
    ch.queue_declare("sac", arguments={"x-single-active-consumer": True})
    ch.basic_consume("sac", consumer_tag="c1")
    ch.basic_consume("sac", consumer_tag="c2")
    ch.basic_cancel("c1")
    kinds = ("drop-head", "reject-publish", "single-active-consumer")
    assert [(e.kind, dict(e.attrs)) for e in broker.trace if e.kind in kinds] == [
        ("drop-head", {"queue": "dh", "vhost": "/", "msg": 1}),
        ("reject-publish", {"queue": "rp", "vhost": "/", "msg": 4}),
        ("single-active-consumer", {"queue": "sac", "vhost": "/", "consumer_tag": "c2"}),
    ]


def test_expiry_times_are_exact_on_the_virtual_clock() -> None:
    """Per-message expiration, queue TTL and x-expires fire at exactly their milliseconds
    (mutants stretching them by 0.1% survived the wall-clock-tolerant differential tests)."""
    broker = Broker(seed=1)
    ch = broker.connect().channel()
    ch.queue_declare("per-message")
    ch.queue_declare("queue-ttl", arguments={"x-message-ttl": 1})
    ch.queue_declare("lease", arguments={"x-expires": 1000})
    ch.basic_publish(b"m", "", "per-message", properties={"expiration": "1000"})
    ch.basic_publish(b"q", "", "queue-ttl")
    ok = ch.basic_get("queue-ttl")  # a 1 ms TTL has not passed: still there
    assert ok is not None and ok.message.body == b"q"
    broker.advance(0.9999)
    assert broker.queue("per-message").messages_ready == 1
    assert "lease" in broker.vhosts["/"].queues
    broker.advance(0.0001)
    assert broker.queue("per-message").messages_ready == 0
    assert "lease" not in broker.vhosts["/"].queues


def test_ttl_zero_discard_and_requeue_order_are_traced() -> None:
    """A queue TTL of 0 traces the discarded message as expired; a nack of deliveries from two
    queues requeues (and so redelivers) them queue by queue in declaration order, whatever the
    delivery order (a deterministic choice where RabbitMQ's order is not defined)."""
    broker = Broker(seed=1)
    ch = broker.connect().channel()
    ch.queue_declare("zero", arguments={"x-message-ttl": 0})
    ch.basic_publish(b"z", "", "zero")
    expired = [dict(e.attrs) for e in broker.trace.of_kind("expire")]
    assert expired == [{"queue": "zero", "vhost": "/", "msg": 1}]
    ch.queue_declare("first")
    ch.queue_declare("second")
    # consumer tags sorting against declaration order: the queue order must decide
    ch.basic_consume("second", consumer_tag="a-second")
    ch.basic_consume("first", consumer_tag="z-first")
    ch.basic_publish(b"2", "", "second")
    ch.basic_publish(b"1", "", "first")
    broker.run_until_idle()
    ch.basic_nack(2, multiple=True, requeue=True)
    broker.run_until_idle()
    redelivered = [
        e.attrs["queue"] for e in broker.trace.of_kind("deliver") if e.attrs["redelivered"]
    ]
    assert redelivered == ["first", "second"]


def test_dead_letter_bookkeeping_in_the_trace() -> None:
    """A dead letter to a missing DLX is traced as dropped; a dead letter takes the next
    message id (the publish after it gets the one after); an expiration given as bytes is read
    as its text; the largest expiration RabbitMQ accepts is accepted."""
    broker = Broker(seed=1)
    ch = broker.connect().channel()
    ch.queue_declare("src", arguments={"x-dead-letter-exchange": "missing"})
    ch.basic_publish(b"m", "", "src")
    ok = ch.basic_get("src")
    assert ok is not None
    ch.basic_reject(ok.delivery_tag, requeue=False)
    dropped = [dict(e.attrs) for e in broker.trace.of_kind("dead-letter-dropped")]
    assert dropped == [{"queue": "src", "msg": 1, "reason": "rejected"}]
    ch.exchange_declare("dlx", "fanout")
    ch.queue_declare("dead")
    ch.queue_bind("dead", "dlx")
    ch.queue_declare("src2", arguments={"x-dead-letter-exchange": "dlx"})
    ch.basic_publish(b"m", "", "src2", properties={"expiration": b"5"})
    broker.advance(0.005)
    ch.basic_publish(b"after", "", "dead", properties={"expiration": "315360000000"})
    ids = [(e.kind, e.attrs.get("msg"), e.attrs.get("new_msg")) for e in broker.trace]
    assert ("dead-letter", 2, 3) in ids and ("publish", 4, None) in ids


def test_settlement_defaults_and_events() -> None:
    """basic.reject and basic.nack requeue by default (AMQP 0-9-1 spec 1.8.3.14, RabbitMQ's
    basic.nack); rejects, nacks and recover are traced with what they settled."""
    broker = Broker(seed=1)
    ch = broker.connect().channel()
    ch.queue_declare("q")
    ch.basic_publish(b"a", "", "q")
    ch.basic_publish(b"b", "", "q")
    first, second = ch.basic_get("q"), ch.basic_get("q")
    assert first is not None and second is not None
    ch.basic_reject(first.delivery_tag)
    ch.basic_nack(second.delivery_tag)
    assert broker.queue("q").messages_ready == 2
    third = ch.basic_get("q")
    assert third is not None
    ch.basic_recover(True)
    kinds = ("reject", "nack", "recover", "recover-requeue")
    where = {"connection": 1, "channel": 1}
    assert [(e.kind, dict(e.attrs)) for e in broker.trace if e.kind in kinds] == [
        ("reject", {**where, "queue": "q", "msg": 1, "requeue": True}),
        ("nack", {**where, "queue": "q", "msg": 2, "requeue": True}),
        ("recover", where),
        ("recover-requeue", {**where, "queue": "q", "msg": 1, "requeue": True}),
    ]


def test_inspecting_a_priority_queue_lists_it_in_delivery_order() -> None:
    broker = Broker(seed=1)
    ch = broker.connect().channel()
    ch.queue_declare("p", arguments={"x-max-priority": 3})
    for prio in (0, 3, 1, 3):
        ch.basic_publish(b"%d" % prio, "", "p", properties={"priority": prio})
    assert list(broker.queue("p").bodies) == [b"3", b"3", b"1", b"0"]
