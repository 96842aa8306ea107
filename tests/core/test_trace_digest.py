"""Golden trace digests, and every field of an event reaching the digest.

The digest is documented (src/simamqp/core/trace.py) as the sha256 of the canonical encoding:
one JSON document per event, keys sorted, no spaces (``","`` and ``":"``), each line followed by
``"\\n"``; the document holds ``seq``, ``time`` (a JSON number), ``kind`` and the attributes,
where bytes become ``{"len": N, "sha256": HEX}``, floats their ``repr`` as a string, mappings
are sorted by key, tuples become lists, datetimes their ISO text and decimals ``"decimal:TEXT"``.

The expected lines below are written by hand from that definition (nothing here calls
``Trace.lines`` or ``Event.to_dict``), so a change to what is hashed fails here even when every
run still agrees with itself. The pinned hex values are the sha256 of those hand-written lines
(the tests check that too): a new digest implementation must keep them.
"""

from __future__ import annotations

import datetime as dt
import decimal
import hashlib
from typing import Any

import pytest

from simamqp.core import Broker, Trace


def sha(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def digest_of(lines: list[str]) -> str:
    """The documented digest: sha256 over each canonical line plus a newline."""
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

#: events emitted by hand, one of every value type the canonical encoding knows.
HAND_EVENTS: list[tuple[float, str, dict[str, Any]]] = [
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


def hand_trace(events: list[tuple[float, str, dict[str, Any]]]) -> Trace:
    trace = Trace()
    for time, kind, attrs in events:
        trace.emit(time, kind, attrs)
    return trace


@pytest.mark.parametrize(
    ("make_trace", "lines", "golden"),
    [
        pytest.param(
            lambda: run_publish_get_ack().trace,
            PUBLISH_GET_ACK_LINES,
            PUBLISH_GET_ACK_DIGEST,
            id="publish-get-ack",
        ),
        pytest.param(
            lambda: run_ttl_dead_letter().trace,
            TTL_DEAD_LETTER_LINES,
            TTL_DEAD_LETTER_DIGEST,
            id="ttl-dead-letter",
        ),
        pytest.param(lambda: hand_trace(HAND_EVENTS), HAND_LINES, HAND_DIGEST, id="hand-events"),
    ],
)
def test_golden_digest_is_the_sha256_of_the_canonical_lines(
    make_trace: Any, lines: list[str], golden: str
) -> None:
    """A fixed workload's digest equals the sha256 of its hand-written canonical lines, and that
    value is pinned (a streaming or faster digest must give the same bytes)."""
    assert digest_of(lines) == golden
    assert make_trace().digest() == golden


BASE_EVENT: tuple[float, str, dict[str, Any]] = (
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
FIELD_CHANGES: dict[str, tuple[float, str, dict[str, Any]]] = {
    "time": (1.5, BASE_EVENT[1], BASE_EVENT[2]),
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


@pytest.mark.parametrize("field", sorted(FIELD_CHANGES))
def test_changing_any_field_of_an_event_changes_the_digest(field: str) -> None:
    """Each field (time, kind, every attribute's value, the attribute names) is hashed: one
    event between two fixed neighbours, changed in one field, gives another digest."""
    before, after = (0.0, "first", {"n": 1}), (9.0, "last", {"n": 2})
    base = hand_trace([before, BASE_EVENT, after]).digest()
    assert hand_trace([before, FIELD_CHANGES[field], after]).digest() != base


def test_event_order_and_count_change_the_digest() -> None:
    a, b = (0.0, "one", {"n": 1}), (0.0, "two", {"n": 2})
    digests = {
        hand_trace([a, b]).digest(),
        hand_trace([b, a]).digest(),
        hand_trace([a]).digest(),
        hand_trace([a, b, b]).digest(),
        hand_trace([]).digest(),
    }
    assert len(digests) == 5
    assert hand_trace([]).digest() == sha(b"")


def test_attribute_order_does_not_change_the_digest() -> None:
    """Keys are sorted: the same attributes given in another order hash the same."""
    attrs = BASE_EVENT[2]
    reordered = dict(reversed(list(attrs.items())))
    assert list(reordered) != list(attrs)
    assert hand_trace([(1.0, "k", attrs)]).digest() == hand_trace([(1.0, "k", reordered)]).digest()


def test_a_value_the_encoding_does_not_know_is_refused_by_name() -> None:
    """No ``repr`` of objects in the digest: an unknown type is a TypeError naming the type."""
    trace = Trace()
    # (at emit or at digest: a streaming digest may encode events as they happen)
    with pytest.raises(TypeError, match=r"^cannot put set in a trace$"):
        trace.emit(0.0, "bad", {"value": {1, 2}})
        trace.digest()


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
