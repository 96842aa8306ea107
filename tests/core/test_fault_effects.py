"""What each publish- and route-point fault does, checked from outside the fault plan.

Mutation testing (docs/mutation.md) found these effects unpinned: the fault trace events'
fields, later rules being consulted when an earlier one does not fire, mandatory returns and
publisher confirms of duplicated or delayed messages, the delay's timing, and CC keys on copies.
"""

from __future__ import annotations

from typing import Any

from simamqp.core.broker import Broker
from simamqp.core.channel import Channel
from simamqp.core.frames import BasicAck, BasicReturn, ConnectionClose


def setup(*queues: str) -> tuple[Broker, Channel]:
    broker = Broker(seed=0)
    channel = broker.connect().channel()
    for name in queues or ("q",):
        channel.queue_declare(name)
    return broker, channel


def fault_events(broker: Broker) -> list[dict[str, Any]]:
    return [dict(e.attrs) for e in broker.trace.of_kind("fault")]


def frames(channel: Channel, kind: type) -> list[Any]:
    return [f for f in channel.connection.outbox if isinstance(f, kind)]


def test_publish_fault_events_name_message_and_parameters() -> None:
    broker, ch = setup()
    for name, action, extra in [
        ("dup", "duplicate", {"copies": 2}),
        ("late", "delay", {"delay": 0.5}),
        ("shuffle", "reorder", {"window": 3}),
        ("lose", "drop", {}),
    ]:
        broker.faults.add(point="publish", action=action, name=name, max_count=1, **extra)
        ch.basic_publish(b"m", "", "q")
        broker.faults.remove(name)
    common = {"point": "publish"}
    assert fault_events(broker) == [
        {**common, "rule": "dup", "action": "duplicate", "msg": 1, "copies": [2, 3]},
        {**common, "rule": "late", "action": "delay", "msg": 4, "delay": 0.5},
        {**common, "rule": "shuffle", "action": "reorder", "msg": 5, "window": 3},
        {**common, "rule": "lose", "action": "drop", "msg": 6},
    ]


def test_route_fault_events_name_message_queues_and_parameters() -> None:
    broker, ch = setup()
    for name, action, extra in [
        ("lose", "drop", {}),
        ("dup", "duplicate", {"copies": 1}),
        ("late", "delay", {"delay": 0.5}),
        ("shuffle", "reorder", {"window": 2}),
    ]:
        broker.faults.add(point="route", action=action, name=name, max_count=1, **extra)
        ch.basic_publish(b"m", "", "q")
        broker.faults.remove(name)
    common = {"point": "route", "queues": ["q"]}
    assert fault_events(broker) == [
        {**common, "rule": "lose", "action": "drop", "msg": 1},
        {**common, "rule": "dup", "action": "duplicate", "msg": 2, "copies": [3]},
        {**common, "rule": "late", "action": "delay", "msg": 4, "delay": 0.5},
        {**common, "rule": "shuffle", "action": "reorder", "msg": 5, "window": 2},
    ]


def test_a_rule_that_does_not_fire_lets_the_next_one_try() -> None:
    """Rules are consulted in order; one whose point, selectors, nth or probability do not
    match is skipped, not the end of the search."""
    broker, ch = setup()
    broker.faults.add(point="enqueue", action="drop", name="elsewhere", queue="other")
    broker.faults.add(point="publish", action="drop", name="third-only", nth=3)
    broker.faults.add(point="publish", action="drop", name="rarely", probability=1e-9)
    broker.faults.add(point="publish", action="duplicate", name="dup", max_count=1)
    ch.basic_publish(b"m", "", "q")
    assert [e["rule"] for e in fault_events(broker)] == ["dup"]
    assert list(broker.queue("q").bodies) == [b"m", b"m"]


def test_a_route_rule_for_another_queue_does_not_fire() -> None:
    broker, ch = setup("q", "other")
    broker.faults.add(point="route", action="drop", queue="other")
    ch.basic_publish(b"m", "", "q")
    assert list(broker.queue("q").bodies) == [b"m"]


def test_duplicated_and_delayed_mandatory_publishes_are_returned_and_confirmed() -> None:
    """A copy of an unroutable mandatory message is returned like the original; a delayed
    publish is confirmed (and returned when unroutable) when it is released."""
    broker, ch = setup()
    ch.confirm_select()
    broker.faults.add(point="publish", action="duplicate", copies=2, name="dup", max_count=1)
    ch.basic_publish(b"m", "", "nowhere", mandatory=True)
    assert len(frames(ch, BasicReturn)) == 3
    assert [f.delivery_tag for f in frames(ch, BasicAck)] == [1]
    broker.faults.add(point="publish", action="delay", delay=1.0, name="late")
    ch.basic_publish(b"d", "", "nowhere", mandatory=True)
    ch.basic_publish(b"e", "", "q")
    broker.advance(0.999)
    assert len(frames(ch, BasicReturn)) == 3
    assert list(broker.queue("q").bodies) == []
    broker.advance(0.001)
    assert len(frames(ch, BasicReturn)) == 4
    assert [f.delivery_tag for f in frames(ch, BasicAck)] == [1, 2, 3]
    assert list(broker.queue("q").bodies) == [b"e"]


def test_a_dropped_confirmed_publish_is_acked_with_its_sequence_number() -> None:
    broker, ch = setup()
    ch.confirm_select()
    ch.basic_publish(b"kept", "", "q")
    broker.faults.add(point="publish", action="drop")
    ch.basic_publish(b"lost", "", "q")
    assert [f.delivery_tag for f in frames(ch, BasicAck)] == [1, 2]


def test_close_connection_at_publish_closes_it_320() -> None:
    broker, ch = setup()
    broker.faults.add(point="publish", action="close_connection")
    ch.basic_publish(b"m", "", "q")
    closes = frames(ch, ConnectionClose)
    assert [c.error.reply_code for c in closes] == [320]
    assert not ch.connection.is_open


def test_copies_keep_the_cc_routing_keys() -> None:
    broker, ch = setup("q", "cc")
    broker.faults.add(point="publish", action="duplicate", copies=1)
    ch.basic_publish(b"m", "", "q", properties={"application_headers": {"CC": ["cc"]}})
    assert (len(broker.queue("q").bodies), len(broker.queue("cc").bodies)) == (2, 2)


def test_route_delay_holds_for_exactly_its_delay() -> None:
    broker, ch = setup()
    broker.faults.add(point="route", action="delay", delay=0.25)
    ch.basic_publish(b"m", "", "q")
    broker.advance(0.2499)
    assert list(broker.queue("q").bodies) == []
    broker.advance(0.0001)
    assert list(broker.queue("q").bodies) == [b"m"]
