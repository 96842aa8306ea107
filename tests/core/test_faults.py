"""Fault plan: every action at its point, selectors, scoping, plain-data round trip."""

from __future__ import annotations

import math
import random
import types
from typing import Any

import pytest

from simamqp.core.broker import Broker
from simamqp.core.channel import Channel
from simamqp.core.errors import ConnectionForced
from simamqp.core.faults import FaultPlan, FaultRule, InvalidFault, parse_rules, topic_matches
from simamqp.core.frames import (
    BasicAck,
    BasicDeliver,
    BasicReturn,
    ChannelClose,
    ConnectionClose,
)


def setup(seed: int = 0, **queue_args: Any) -> tuple[Broker, Channel]:
    broker = Broker(seed=seed)
    channel = broker.connect().channel()
    channel.queue_declare("q", arguments=queue_args or None)
    return broker, channel


def publish(channel: Channel, *bodies: bytes, **props: Any) -> None:
    for body in bodies:
        channel.basic_publish(body, "", "q", properties=props or None)


def delivered(channel: Channel) -> list[BasicDeliver]:
    out = [f for f in channel.connection.outbox if isinstance(f, BasicDeliver)]
    channel.connection.outbox.clear()
    return out


def bodies(broker: Broker) -> list[bytes]:
    return list(broker.queue("q").bodies)


def fault_events(broker: Broker) -> list[str]:
    return [e.attrs["rule"] for e in broker.trace.of_kind("fault")]


@pytest.mark.parametrize(
    ("pattern", "key", "expected"),
    [
        ("a.*", "a.b", True),
        ("a.*", "a.b.c", False),
        ("a.#", "a", True),
        ("#", "", True),
        ("*.b.#", "x.b.c.d", True),
        ("a.b", "a.c", False),
    ],
)
def test_topic_patterns(pattern: str, key: str, expected: bool) -> None:
    assert topic_matches(pattern, key) is expected


@pytest.mark.parametrize(
    ("pattern", "key", "expected"),
    [
        ("*", "", False),
        ("", "", True),
        ("", "a", False),
        ("#", "", True),
        ("#.#", "", True),
        ("*.#", "", False),
        ("a.#.a", "a", False),
        ("#.x", "a", False),
        ("a.b", "a", False),
        ("a.*", "a", False),
        ("#", "a.b", True),
    ],
)
def test_the_routing_key_selector_matches_as_a_topic_binding_does(
    pattern: str, key: str, expected: bool
) -> None:
    """The selector has its own matcher; the topic exchange (pinned against RabbitMQ in
    tests/conformance) is the reference for the edge cases: empty keys and patterns, ``#``
    never re-reading a word, a pattern longer than the key."""
    broker = Broker()
    channel = broker.connect().channel()
    channel.exchange_declare("t", "topic")
    channel.queue_declare("bound")
    channel.queue_bind("bound", "t", pattern)
    channel.basic_publish(b"m", "t", key)
    assert (broker.queue("bound").messages_ready == 1) is expected
    assert topic_matches(pattern, key) is expected


@pytest.mark.parametrize(
    "kwargs",
    [
        {"point": "nowhere", "action": "drop"},
        {"point": "publish", "action": "explode"},
        {"point": "publish", "action": "overflow"},
        {"point": "connection", "action": "drop"},
        {"point": "publish", "action": "drop", "queue": "q"},
        {"point": "deliver", "action": "drop", "probability": 0},
        {"point": "deliver", "action": "drop", "probability": 1.5},
        {"point": "deliver", "action": "drop", "nth": 0},
        {"point": "enqueue", "action": "duplicate", "copies": 0},
        {"point": "enqueue", "action": "reorder", "window": 1},
        {"point": "enqueue", "action": "delay"},
        {"point": "enqueue", "action": "delay", "delay": -1},
        {"point": "enqueue", "action": "drop", "max_count": True},
        {"point": "route", "action": "overflow"},
        {"point": "route", "action": "redeliver"},
        {"point": "route", "action": "close_channel"},
        {"point": "route", "action": "restart"},
        {"point": "route", "action": "delay"},
        {"point": "route", "action": "reorder", "window": 1},
        {"point": "route", "action": "duplicate", "copies": 0},
        {"point": "route", "action": "drop", "queue": 1},
    ],
)
def test_bad_rules_raise_invalid_fault(kwargs: dict[str, Any]) -> None:
    with pytest.raises(InvalidFault):
        FaultRule(**kwargs)
    assert issubclass(InvalidFault, ValueError)


def test_drop_at_publish_confirms_and_loses() -> None:
    broker, channel = setup()
    channel.confirm_select()
    broker.faults.add(point="publish", action="drop", name="lose", nth=2)
    publish(channel, b"1", b"2", b"3")
    assert bodies(broker) == [b"1", b"3"]
    assert fault_events(broker) == ["lose"]
    acks = [f for f in channel.connection.outbox if type(f).__name__ == "BasicAck"]
    assert len(acks) == 3


def test_duplicate_at_enqueue_makes_copies() -> None:
    broker, channel = setup()
    broker.faults.add(point="enqueue", action="duplicate", copies=2, queue="q")
    publish(channel, b"a")
    assert bodies(broker) == [b"a", b"a", b"a"]


@pytest.mark.parametrize("copies", [1, 2, 3])
def test_duplicate_at_publish_makes_exactly_the_copies_asked_for(copies: int) -> None:
    """Issue 15: a publish-point duplicate making one copy fewer survived the suite. The queue
    holds the original and ``copies`` extra messages; the publisher gets one confirm."""
    broker, channel = setup()
    channel.confirm_select()
    broker.faults.add(point="publish", action="duplicate", copies=copies, max_count=1)
    publish(channel, b"a")
    publish(channel, b"b")
    assert bodies(broker) == [b"a"] * (1 + copies) + [b"b"]
    acks = [f for f in channel.connection.outbox if isinstance(f, BasicAck)]
    assert [a.delivery_tag for a in acks] == [1, 2]


def test_selectors_properties_headers_routing_key() -> None:
    broker, channel = setup()
    broker.faults.add(point="publish", action="drop", properties={"correlation_id": "x"})
    broker.faults.add(point="publish", action="drop", headers={"kill": 1})
    broker.faults.add(point="publish", action="drop", routing_key="nope.#")
    publish(channel, b"keep")
    publish(channel, b"drop1", correlation_id="x")
    publish(channel, b"drop2", application_headers={"kill": 1})
    publish(channel, b"keep2", application_headers={"kill": 2})
    assert bodies(broker) == [b"keep", b"keep2"]


def test_max_count_and_probability_are_seeded() -> None:
    def run(seed: int) -> list[bytes]:
        broker, channel = setup(seed)
        broker.faults.add(point="enqueue", action="drop", probability=0.5, max_count=3)
        publish(channel, *[str(i).encode() for i in range(20)])
        assert len(bodies(broker)) == 17
        return bodies(broker)

    assert run(1) == run(1)
    assert run(1) != run(2) or run(1) != run(3)


def test_delay_at_enqueue_uses_the_broker_clock() -> None:
    broker, channel = setup()
    broker.faults.add(point="enqueue", action="delay", delay=5.0, nth=1)
    publish(channel, b"late", b"early")
    assert bodies(broker) == [b"early"]
    assert broker.faults.held_messages == 1
    broker.advance(5.0)
    assert bodies(broker) == [b"early", b"late"]
    assert broker.faults.held_messages == 0


def test_reorder_releases_out_of_order() -> None:
    broker, channel = setup(seed=3)
    broker.faults.add(point="enqueue", action="reorder", window=3, max_count=3)
    publish(channel, b"1", b"2", b"3", b"4")
    got = bodies(broker)
    assert sorted(got[:3]) == [b"1", b"2", b"3"] and got[:3] != [b"1", b"2", b"3"]
    assert got[3] == b"4"


def test_reorder_flushes_an_unfilled_window_after_its_hold_time() -> None:
    broker, channel = setup()
    broker.faults.add(point="publish", action="reorder", window=5, delay=2.0)
    publish(channel, b"1", b"2")
    assert bodies(broker) == []
    broker.advance(2.0)
    assert bodies(broker) == [b"2", b"1"]


def test_overflow_drop_head_and_reject_publish() -> None:
    broker, channel = setup()
    publish(channel, b"old")
    broker.faults.add(point="enqueue", action="overflow", max_count=1)
    publish(channel, b"new")
    assert bodies(broker) == [b"new"]
    assert broker.trace.of_kind("drop-head")

    broker2, channel2 = setup(**{"x-overflow": "reject-publish"})
    channel2.confirm_select()
    broker2.faults.add(point="enqueue", action="overflow")
    publish(channel2, b"refused")
    assert bodies(broker2) == []
    assert [type(f).__name__ for f in channel2.connection.outbox] == ["BasicNack"]


def test_redeliver_at_deliver_sets_redelivered() -> None:
    broker, channel = setup()
    channel.basic_consume("q", consumer_tag="c")
    broker.faults.add(point="deliver", action="redeliver", nth=1)
    publish(channel, b"x")
    frames = delivered(channel)
    assert [(f.body if hasattr(f, "body") else f.message.body, f.redelivered) for f in frames] == [
        (b"x", True)
    ]


def test_drop_at_deliver_loses_the_message() -> None:
    broker, channel = setup()
    channel.basic_consume("q", consumer_tag="c", no_ack=True)
    broker.faults.add(point="deliver", action="drop", nth=1)
    publish(channel, b"1", b"2")
    assert [f.message.body for f in delivered(channel)] == [b"2"]


def test_delay_at_deliver_and_consumer_gone_puts_it_back() -> None:
    broker, channel = setup()
    channel.basic_consume("q", consumer_tag="c")
    broker.faults.add(point="deliver", action="delay", delay=1.0, nth=1)
    publish(channel, b"1", b"2")
    assert [f.message.body for f in delivered(channel)] == [b"2"]
    channel.basic_cancel("c")
    broker.advance(1.0)
    info = broker.queue("q")
    assert info.bodies == (b"1",) and info.messages_unacknowledged == 1


def test_close_connection_at_deliver_is_connection_forced_and_requeues() -> None:
    broker, channel = setup()
    other = broker.connect().channel()
    other.basic_consume("q", consumer_tag="c")
    broker.faults.add(point="deliver", action="close_connection", nth=2)
    publish(channel, b"1", b"2")
    closes = [f for f in other.connection.outbox if isinstance(f, ConnectionClose)]
    assert len(closes) == 1 and isinstance(closes[0].error, ConnectionForced)
    assert closes[0].error.reply_code == 320
    info = broker.queue("q")
    assert info.bodies == (b"1", b"2") and info.messages_unacknowledged == 0
    assert not other.connection.is_open


def test_close_channel_at_publish() -> None:
    broker, channel = setup()
    broker.faults.add(point="publish", action="close_channel", reply_code=406)
    publish(channel, b"1")
    assert not channel.is_open
    closes = [f for f in channel.connection.outbox if isinstance(f, ChannelClose)]
    assert closes and closes[0].error.reply_code == 406


def test_ack_faults_drop_redeliver_delay() -> None:
    broker, channel = setup()
    channel.basic_consume("q", consumer_tag="c")
    publish(channel, b"1", b"2", b"3")
    tags = [f.delivery_tag for f in delivered(channel)]
    with broker.faults.scoped({"point": "ack", "action": "drop", "nth": 1}):
        channel.basic_ack(tags[0])
    assert broker.queue("q").messages_unacknowledged == 3
    with broker.faults.scoped(FaultRule(point="ack", action="redeliver")):
        channel.basic_ack(tags[1])
    assert not broker.faults.rules
    redelivered = delivered(channel)
    assert [(f.message.body, f.redelivered) for f in redelivered] == [(b"2", True)]
    with broker.faults.scoped(FaultRule(point="ack", action="delay", delay=1.0)):
        channel.basic_ack(tags[2])
        assert broker.queue("q").messages_unacknowledged == 3
        broker.advance(1.0)
    assert broker.queue("q").messages_unacknowledged == 2


def test_restart_and_connection_point() -> None:
    broker, channel = setup()
    broker.faults.add(point="connection", action="close_connection", nth=1)
    conn = broker.connect()
    assert not conn.is_open
    assert isinstance(conn.outbox[-1], ConnectionClose)
    broker.faults.clear()
    broker.faults.add(point="publish", action="restart")
    publish(channel, b"x")
    assert broker.trace.of_kind("restart")
    assert "q" not in broker.queue_names()


def test_add_remove_and_duplicate_names() -> None:
    broker = Broker()
    rule = broker.faults.add(point="enqueue", action="drop")
    assert rule.name == "rule-1"
    with pytest.raises(InvalidFault):
        broker.faults.add(point="enqueue", action="drop", name="rule-1")
    broker.faults.remove(rule)
    assert not broker.faults.rules
    with pytest.raises(KeyError):
        broker.faults.remove("rule-1")


def test_plan_round_trips_as_plain_data() -> None:
    broker = Broker(seed=42)
    broker.faults.add(point="enqueue", action="duplicate", copies=2, queue="q", nth=3)
    broker.faults.add(point="deliver", action="delay", delay=0.5, headers={"a": 1})
    data = broker.faults.to_dict()
    assert data["version"] == 1 and data["seed"] == 42
    other = Broker(seed=data["seed"])
    plan = FaultPlan.from_dict(data, other)
    assert other.faults is plan
    assert plan.to_dict() == data
    with pytest.raises(InvalidFault):
        FaultPlan.from_dict({"version": 2, "rules": []}, other)
    with pytest.raises(InvalidFault):
        FaultPlan.from_dict({"rules": [{"point": "enqueue", "action": "drop", "bogus": 1}]}, other)


def test_no_rules_no_fault_events() -> None:
    broker, channel = setup()
    publish(channel, b"x")
    assert not broker.trace.of_kind("fault")


# -- route point -------------------------------------------------------------------------------


def fanout_setup(seed: int = 0) -> tuple[Broker, Channel]:
    """Exchange "fx" (fanout) bound to queues "a" and "b"."""
    broker = Broker(seed=seed)
    channel = broker.connect().channel()
    channel.exchange_declare("fx", "fanout")
    for name in ("a", "b"):
        channel.queue_declare(name)
        channel.queue_bind(name, "fx")
    return broker, channel


def fx_publish(channel: Channel, *bodies: bytes, mandatory: bool = False) -> None:
    for body in bodies:
        channel.basic_publish(body, "fx", "k", mandatory=mandatory)


def queue_bodies(broker: Broker, name: str) -> list[bytes]:
    return list(broker.queue(name).bodies)


def test_route_point_accepts_its_actions_and_queue_selector() -> None:
    for action in ("drop", "duplicate", "reorder"):
        FaultRule(point="route", action=action, queue="q", exchange="x", routing_key="a.#")
    FaultRule(point="route", action="delay", delay=1.0, nth=2, probability=0.5, max_count=1)
    rules = [{"point": "route", "action": "drop", "name": "r", "queue": "q", "headers": {"h": 1}}]
    assert FaultPlan.from_dict({"rules": rules}, Broker()).to_dict()["rules"] == rules


def test_drop_at_route_reaches_no_queue() -> None:
    broker, channel = fanout_setup()
    broker.faults.add(point="route", action="drop", name="lose", nth=2)
    fx_publish(channel, b"1", b"2", b"3")
    assert queue_bodies(broker, "a") == queue_bodies(broker, "b") == [b"1", b"3"]
    (event,) = broker.trace.of_kind("fault")
    assert event.attrs == {
        "rule": "lose",
        "point": "route",
        "action": "drop",
        "msg": event.attrs["msg"],
        "queues": ["a", "b"],
    }
    routes = [e.attrs["queues"] for e in broker.trace.of_kind("route")]
    assert routes == [["a", "b"], [], ["a", "b"]]


def test_drop_at_route_returns_a_mandatory_publish_and_confirms_it() -> None:
    broker, channel = fanout_setup()
    channel.confirm_select()
    broker.faults.add(point="route", action="drop", name="lose", max_count=1)
    fx_publish(channel, b"back", b"kept", mandatory=True)
    outbox = list(channel.connection.outbox)
    returns = [f for f in outbox if isinstance(f, BasicReturn)]
    acks = [f for f in outbox if isinstance(f, BasicAck)]
    assert [(r.reply_code, r.reply_text, r.message.body) for r in returns] == [
        (312, "NO_ROUTE", b"back")
    ]
    assert [a.delivery_tag for a in acks] == [1, 2]
    # basic.return comes before the confirm's basic.ack, as in RabbitMQ.
    assert outbox.index(returns[0]) < outbox.index(acks[0])
    assert queue_bodies(broker, "a") == [b"kept"]
    assert [e.attrs["code"] for e in broker.trace.of_kind("return")] == [312]


def test_duplicate_at_route_copies_to_every_routed_queue() -> None:
    broker, channel = fanout_setup()
    channel.confirm_select()
    broker.faults.add(point="route", action="duplicate", copies=2, max_count=1)
    fx_publish(channel, b"x", b"y")
    assert queue_bodies(broker, "a") == queue_bodies(broker, "b") == [b"x", b"x", b"x", b"y"]
    (event,) = broker.trace.of_kind("fault")
    assert len(event.attrs["copies"]) == 2 and event.attrs["queues"] == ["a", "b"]
    ids = [e.message.id for e in broker.vhosts["/"].queues["a"].ready]
    assert len(set(ids)) == 4  # each copy is a new message
    acks = [f for f in channel.connection.outbox if isinstance(f, BasicAck)]
    assert [a.delivery_tag for a in acks] == [1, 2]  # one confirm per publish


def test_delay_at_route_keeps_the_routing_result() -> None:
    broker, channel = fanout_setup()
    channel.confirm_select()
    broker.faults.add(point="route", action="delay", delay=2.0, nth=1)
    fx_publish(channel, b"late", b"early")
    assert queue_bodies(broker, "a") == [b"early"]
    assert broker.faults.held_messages == 1
    # Unbinding meanwhile does not matter: the message was routed before it was held.
    channel.queue_unbind("b", "fx")
    broker.advance(2.0)
    assert queue_bodies(broker, "a") == queue_bodies(broker, "b") == [b"early", b"late"]
    assert broker.faults.held_messages == 0
    acks = [f for f in channel.connection.outbox if isinstance(f, BasicAck)]
    assert sorted(a.delivery_tag for a in acks) == [1, 2]


def test_delay_at_route_loses_the_copy_of_a_queue_deleted_meanwhile() -> None:
    broker, channel = fanout_setup()
    broker.faults.add(point="route", action="delay", delay=1.0, max_count=1)
    fx_publish(channel, b"m")
    channel.queue_delete("b")
    broker.advance(1.0)
    assert queue_bodies(broker, "a") == [b"m"]
    lost = broker.trace.of_kind("fault-lost")
    assert [(e.attrs["queue"], e.attrs["reason"]) for e in lost] == [("b", "queue-deleted")]


def test_reorder_at_route_releases_out_of_order() -> None:
    broker, channel = fanout_setup(seed=5)
    broker.faults.add(point="route", action="reorder", window=3, max_count=3)
    fx_publish(channel, b"1", b"2", b"3")
    got = queue_bodies(broker, "a")
    assert sorted(got) == [b"1", b"2", b"3"] and got != [b"1", b"2", b"3"]
    assert queue_bodies(broker, "b") == got


def test_reorder_at_route_flushes_an_unfilled_window() -> None:
    broker, channel = fanout_setup()
    broker.faults.add(point="route", action="reorder", window=4, delay=0.5, max_count=2)
    fx_publish(channel, b"1", b"2")
    assert queue_bodies(broker, "a") == []
    broker.advance(0.5)
    assert queue_bodies(broker, "a") == [b"2", b"1"]


def test_route_queue_selector_means_the_result_contains_the_queue() -> None:
    broker = Broker()
    channel = broker.connect().channel()
    channel.exchange_declare("tx", "topic")
    channel.queue_declare("a")
    channel.queue_declare("b")
    channel.queue_bind("a", "tx", "#")
    channel.queue_bind("b", "tx", "only.b")
    broker.faults.add(point="route", action="drop", queue="b", name="no-b")
    channel.basic_publish(b"to-a", "tx", "x")
    channel.basic_publish(b"to-both", "tx", "only.b")
    # The whole message routes nowhere, not just its copy for "b".
    assert queue_bodies(broker, "a") == [b"to-a"]
    assert queue_bodies(broker, "b") == []
    assert fault_events(broker) == ["no-b"]


def test_route_selectors_exchange_routing_key_headers() -> None:
    broker, channel = fanout_setup()
    channel.queue_declare("q")
    broker.faults.add(point="route", action="drop", exchange="fx", routing_key="k")
    broker.faults.add(point="route", action="drop", headers={"kill": 1})
    fx_publish(channel, b"dropped")
    channel.basic_publish(b"kept", "", "q")
    channel.basic_publish(b"killed", "", "q", properties={"application_headers": {"kill": 1}})
    assert queue_bodies(broker, "a") == []
    assert queue_bodies(broker, "q") == [b"kept"]


def test_route_faults_skip_unroutable_messages() -> None:
    broker, channel = setup()
    broker.faults.add(point="route", action="duplicate", name="dup")
    channel.basic_publish(b"x", "", "nowhere")
    assert not broker.trace.of_kind("fault")
    assert broker.faults._states["dup"].matched == 0


def test_held_publish_meets_route_faults_on_release() -> None:
    broker, channel = fanout_setup()
    broker.faults.add(point="publish", action="delay", delay=1.0, max_count=1)
    broker.faults.add(point="route", action="duplicate", max_count=1)
    fx_publish(channel, b"m")
    broker.advance(1.0)
    assert queue_bodies(broker, "a") == [b"m", b"m"]


def _route_fault_digest(seed: int) -> str:
    broker, channel = fanout_setup(seed)
    broker.faults.load(
        [
            {"point": "route", "action": "drop", "probability": 0.3},
            {"point": "route", "action": "reorder", "window": 3, "probability": 0.5},
            {"point": "route", "action": "duplicate", "queue": "a", "probability": 0.5},
            {"point": "route", "action": "delay", "delay": 0.25, "probability": 0.5},
        ]
    )
    channel.confirm_select()
    fx_publish(channel, *[str(i).encode() for i in range(30)], mandatory=True)
    broker.advance(5.0)
    return broker.trace.digest()


def test_route_faults_are_deterministic() -> None:
    assert _route_fault_digest(9) == _route_fault_digest(9)
    assert _route_fault_digest(9) != _route_fault_digest(10)


# -- what a bad rule says ------------------------------------------------------------------------
# A user who writes a bad rule (in Python or a scenario file) sees only this one line, so it must
# name the field, the bound and the value given. Mutation testing found the texts unpinned.

_POINTS = "('publish', 'route', 'enqueue', 'deliver', 'ack', 'connection')"
_ACTIONS = (
    "('drop', 'duplicate', 'reorder', 'delay', 'redeliver', 'close_channel', "
    "'close_connection', 'restart', 'overflow')"
)
_CODES = "[311, 312, 313, 403, 404, 405, 406]"
_PUB = {"point": "publish", "action": "drop"}
_NO_MESSAGE = "message selectors are meaningless at point 'connection'"
_TOO_LONG = (
    "the reply text is longer than an AMQP shortstr (255 bytes, with the {} prefix): {!r}..."
)


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        (
            {"point": "nowhere", "action": "drop"},
            f"unknown fault point 'nowhere'; one of {_POINTS}",
        ),
        (
            {"point": "publish", "action": "explode"},
            f"unknown fault action 'explode'; one of {_ACTIONS}",
        ),
        (
            {"point": "publish", "action": "overflow"},
            "action 'overflow' is not possible at point 'publish'; one of ['close_channel', "
            "'close_connection', 'delay', 'drop', 'duplicate', 'reorder', 'restart']",
        ),
        ({**_PUB, "name": 1}, "name must be a str, got 1"),
        ({"point": "enqueue", "action": "drop", "queue": 1}, "queue must be a str or None, got 1"),
        ({**_PUB, "exchange": b"x"}, "exchange must be a str or None, got b'x'"),
        ({**_PUB, "routing_key": 1}, "routing_key must be a str or None, got 1"),
        (
            {**_PUB, "queue": "q"},
            "a queue selector needs point route, enqueue, deliver or ack, not 'publish'",
        ),
        ({"point": "connection", "action": "restart", "exchange": "x"}, _NO_MESSAGE),
        ({"point": "connection", "action": "restart", "routing_key": "#"}, _NO_MESSAGE),
        ({"point": "connection", "action": "restart", "properties": {"a": 1}}, _NO_MESSAGE),
        ({"point": "connection", "action": "restart", "headers": {"a": 1}}, _NO_MESSAGE),
        ({**_PUB, "properties": [1]}, "properties must be a mapping, got [1]"),
        ({**_PUB, "headers": "h"}, "headers must be a mapping, got 'h'"),
        ({**_PUB, "nth": 0}, "nth must be an int >= 1, got 0"),
        ({**_PUB, "nth": 1.0}, "nth must be an int >= 1, got 1.0"),
        ({**_PUB, "max_count": True}, "max_count must be an int >= 1, got True"),
        ({**_PUB, "max_count": 0}, "max_count must be an int >= 1, got 0"),
        (
            {"point": "publish", "action": "duplicate", "copies": 0},
            "copies must be an int >= 1, got 0",
        ),
        (
            {"point": "publish", "action": "reorder", "window": 1},
            "window must be an int >= 2, got 1",
        ),
        ({**_PUB, "reply_code": 299}, "reply_code must be an int >= 300, got 299"),
        ({**_PUB, "reply_code": "406"}, "reply_code must be an int >= 300, got '406'"),
        (
            {**_PUB, "reply_code": 300},
            f"reply_code must be a channel error code, one of {_CODES}, got 300",
        ),
        (
            {**_PUB, "reply_code": 320},
            f"reply_code must be a channel error code, one of {_CODES}, got 320",
        ),
        ({**_PUB, "probability": True}, "probability must be in (0, 1], got True"),
        ({**_PUB, "probability": "1"}, "probability must be in (0, 1], got '1'"),
        ({**_PUB, "probability": 0}, "probability must be in (0, 1], got 0"),
        ({**_PUB, "probability": 1.01}, "probability must be in (0, 1], got 1.01"),
        ({**_PUB, "delay": True}, "delay must be a finite number of seconds >= 0, got True"),
        ({**_PUB, "delay": "1"}, "delay must be a finite number of seconds >= 0, got '1'"),
        ({**_PUB, "delay": math.inf}, "delay must be a finite number of seconds >= 0, got inf"),
        ({**_PUB, "delay": math.nan}, "delay must be a finite number of seconds >= 0, got nan"),
        ({**_PUB, "delay": -0.001}, "delay must be a finite number of seconds >= 0, got -0.001"),
        ({"point": "publish", "action": "delay"}, "action 'delay' needs delay=SECONDS"),
        ({**_PUB, "reply_text": 1}, "reply_text must be a str, got 1"),
        # "PRECONDITION_FAILED - " (22 bytes) + 117 two-byte characters: 256 bytes.
        (
            {"point": "ack", "action": "close_channel", "reply_text": "é" * 117},
            _TOO_LONG.format("PRECONDITION_FAILED", "PRECONDITION_FAILED - " + "é" * 38),
        ),
        # "NOT_FOUND - " (12 bytes) + 244: 256 bytes.
        (
            {"point": "ack", "action": "close_channel", "reply_code": 404, "reply_text": "x" * 244},
            _TOO_LONG.format("NOT_FOUND", "NOT_FOUND - " + "x" * 48),
        ),
        # Without reply_text the close says "fault injected by rule 'NAME'": 47 bytes + name.
        (
            {"point": "ack", "action": "close_channel", "name": "n" * 209},
            _TOO_LONG.format(
                "PRECONDITION_FAILED",
                "PRECONDITION_FAILED - fault injected by rule 'nnnnnnnnnnnnnn",
            ),
        ),
    ],
)
def test_a_bad_rule_is_refused_with_one_line_naming_the_mistake(
    kwargs: dict[str, Any], message: str
) -> None:
    with pytest.raises(InvalidFault) as raised:
        FaultRule(**kwargs)
    assert str(raised.value) == message


@pytest.mark.parametrize(
    "kwargs",
    [
        {**_PUB, "nth": 1, "max_count": 1, "probability": 1},
        {"point": "publish", "action": "duplicate", "copies": 1},
        {"point": "publish", "action": "reorder", "window": 2},
        {"point": "publish", "action": "delay", "delay": 0},
        {"point": "publish", "action": "delay", "delay": 0.0},
        {"point": "connection", "action": "restart", "properties": {}, "headers": {}},
        {"point": "ack", "action": "close_channel", "reply_code": 311},
        # Exactly 255 bytes on the wire, with two-byte characters: accepted.
        {"point": "ack", "action": "close_channel", "reply_text": "é" * 116 + "x"},
        {"point": "ack", "action": "close_channel", "reply_code": 404, "reply_text": "x" * 243},
        {"point": "ack", "action": "close_channel", "name": "n" * 208},
    ],
)
def test_rules_at_the_edge_of_each_bound_are_accepted(kwargs: dict[str, Any]) -> None:
    assert FaultRule(**kwargs).point == kwargs["point"]


@pytest.mark.parametrize(
    ("make", "message"),
    [
        (lambda: FaultRule.from_dict([1]), "a fault rule must be a mapping, got [1]"),  # type: ignore[arg-type]
        (
            lambda: FaultRule.from_dict({**_PUB, "zz": 1, "bogus": 2}),
            "unknown fault rule keys: ['bogus', 'zz']",
        ),
        (
            lambda: FaultRule.from_dict({"point": "publish"}),
            "a fault rule needs 'point' and 'action': {'point': 'publish'}",
        ),
        (
            lambda: FaultRule.from_dict({"action": "drop"}),
            "a fault rule needs 'point' and 'action': {'action': 'drop'}",
        ),
        (lambda: parse_rules({"version": 2}), "unsupported fault plan version 2"),
        (
            lambda: parse_rules({"rules": [], "extra": 1, "another": 2}),
            "unknown fault plan keys: ['another', 'extra']",
        ),
        (lambda: parse_rules({"rules": "x"}), "fault plan rules must be a list, got 'x'"),
        (lambda: parse_rules("x"), "fault plan rules must be a list, got 'x'"),  # type: ignore[arg-type]
        (
            lambda: Broker().faults.add(FaultRule(**_PUB), name="x"),
            "pass a FaultRule or keyword arguments, not both",
        ),
        (
            lambda: Broker().faults.add({"point": "publish"}),  # type: ignore[arg-type]
            "add() needs a FaultRule, got {'point': 'publish'}",
        ),
    ],
)
def test_a_bad_plan_is_refused_with_one_line_naming_the_mistake(make: Any, message: str) -> None:
    with pytest.raises(InvalidFault) as raised:
        make()
    assert str(raised.value) == message


def test_plain_data_plans_default_their_version_and_rules() -> None:
    (rule,) = parse_rules({"seed": 3, "rules": [_PUB]})
    assert (rule.point, rule.action) == ("publish", "drop")
    assert parse_rules({}) == [] and parse_rules([]) == []
    assert parse_rules((FaultRule(**_PUB),)) == [FaultRule(**_PUB)]


def test_adding_a_taken_name_or_removing_an_unknown_one_says_which() -> None:
    plan = Broker().faults
    plan.add(name="a", **_PUB)
    with pytest.raises(InvalidFault) as raised:
        plan.add(name="a", **_PUB)
    assert str(raised.value) == "a fault rule named 'a' is already active"
    with pytest.raises(KeyError) as missing:
        plan.remove("zz")
    assert missing.value.args == ("no active fault rule 'zz'",)


# -- managing rules --------------------------------------------------------------------------------


def test_unnamed_rules_get_the_next_free_rule_number_and_are_traced_without_defaults() -> None:
    broker = Broker()
    broker.faults.add(point="enqueue", action="drop", name="rule-1")
    second = broker.faults.add(
        point="enqueue", action="duplicate", copies=2, queue="q", headers={"h": 1}
    )
    third = broker.faults.add(point="publish", action="drop")
    assert (second.name, third.name) == ("rule-2", "rule-3")
    broker.faults.remove("rule-2")
    assert [
        (e.kind, dict(e.attrs)) for e in broker.trace.of_kind("fault-rule-add", "fault-rule-remove")
    ] == [
        ("fault-rule-add", {"rule": "rule-1", "point": "enqueue", "action": "drop"}),
        (
            "fault-rule-add",
            {
                "rule": "rule-2",
                "point": "enqueue",
                "action": "duplicate",
                "queue": "q",
                "headers": {"h": 1},
                "copies": 2,
            },
        ),
        ("fault-rule-add", {"rule": "rule-3", "point": "publish", "action": "drop"}),
        ("fault-rule-remove", {"rule": "rule-2"}),
    ]
    assert [r.name for r in broker.faults.rules] == ["rule-1", "rule-3"]
    assert repr(broker.faults) == "<FaultPlan ['rule-1', 'rule-3']>"


def test_removing_the_last_rule_at_a_point_stops_faults_there() -> None:
    broker, channel = setup()
    broker.faults.add(point="publish", action="drop", name="a")
    broker.faults.add(point="enqueue", action="drop", name="b")
    assert broker.faults.has_point("publish") and broker.faults.has_point("enqueue")
    broker.faults.remove("a")
    assert not broker.faults.has_point("publish") and broker.faults.has_point("enqueue")
    broker.faults.clear()
    assert broker.faults.rules == [] and not broker.faults.has_point("enqueue")
    publish(channel, b"kept")
    assert bodies(broker) == [b"kept"]


def test_scoped_rules_are_removed_even_when_the_block_removed_one_itself() -> None:
    broker = Broker()
    with broker.faults.scoped(
        FaultRule(point="publish", action="drop", name="a"),
        {"point": "enqueue", "action": "drop", "name": "b"},
    ) as added:
        assert [r.name for r in added] == ["a", "b"]
        broker.faults.remove("a")
    assert broker.faults.rules == []


def test_a_rule_to_dict_lists_only_what_differs_from_the_defaults() -> None:
    rule = FaultRule(
        point="deliver",
        action="close_channel",
        name="n",
        properties={"priority": 1},
        reply_code=404,
        reply_text="t",
        probability=0.5,
    )
    data = rule.to_dict()
    assert data == {
        "point": "deliver",
        "action": "close_channel",
        "name": "n",
        "properties": {"priority": 1},
        "probability": 0.5,
        "reply_code": 404,
        "reply_text": "t",
    }
    assert type(data["properties"]) is dict
    assert FaultRule.from_dict(data) == rule


def test_a_rule_to_dict_is_plain_data_whatever_mappings_it_was_given() -> None:
    """Scenario files and replay data dump it as YAML/JSON: read-only mappings become dicts."""
    frozen = types.MappingProxyType({"kill": 1})
    data = FaultRule(point="publish", action="drop", headers=frozen, properties=frozen).to_dict()
    assert type(data["headers"]) is dict and type(data["properties"]) is dict
    assert data["headers"] == {"kill": 1}


def test_only_rules_with_a_probability_below_one_draw_from_the_seeded_random() -> None:
    """A rule that always fires must not draw: adding one to a plan would otherwise change which
    messages a probabilistic rule picks for the same seed. The probabilistic rule fires when its
    draw is below its probability; its draws are the broker's stream, one per matching message."""
    broker, channel = setup(seed=7)
    channel.basic_consume("q", consumer_tag="c")
    broker.faults.add(point="enqueue", action="drop", probability=0.5, name="coin")
    broker.faults.add(point="ack", action="drop", name="always")
    stream = random.Random()
    stream.setstate(broker.random.getstate())
    expected = [i for i in range(24) if stream.random() >= 0.5]  # kept: the coin did not fire
    kept = []
    for i in range(24):
        publish(channel, str(i).encode())
        for frame in delivered(channel):
            kept.append(int(frame.message.body))
            channel.basic_ack(frame.delivery_tag)  # "always" fires, and must not draw
    assert kept == expected
    assert broker.faults.applied("always") == len(expected) > 0


def test_rule_numbers_are_not_reused_after_a_remove() -> None:
    """Trace events name rules: two unnamed rules of one plan never share a name."""
    plan = Broker().faults
    assert not plan.has_point("publish")
    first = plan.add(**_PUB)
    plan.remove(first)
    assert (first.name, plan.add(**_PUB).name) == ("rule-1", "rule-2")


@pytest.mark.parametrize("field", ["copies", "window", "reply_code"])
def test_parameters_with_a_default_cannot_be_none(field: str) -> None:
    with pytest.raises(InvalidFault) as raised:
        FaultRule(**{**_PUB, field: None})
    minimum = {"copies": 1, "window": 2, "reply_code": 300}[field]
    assert str(raised.value) == f"{field} must be an int >= {minimum}, got None"
