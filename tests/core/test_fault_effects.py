"""What each fault does at each point, checked from outside the fault plan.

Mutation testing (docs/mutation.md) found these effects unpinned: the fault trace events'
fields, later rules being consulted when an earlier one does not fire, mandatory returns and
publisher confirms of duplicated, delayed and reordered messages, the timing of delays and
reorder windows, CC keys on copies, what happens to a held message whose exchange, queue,
consumer or channel went away meanwhile, and the byte counts and TTLs of messages a fault
dropped, kept or put back.
"""

from __future__ import annotations

from typing import Any

import pytest

from simamqp.core.broker import Broker
from simamqp.core.channel import Channel
from simamqp.core.frames import (
    BasicAck,
    BasicDeliver,
    BasicNack,
    BasicReturn,
    ChannelClose,
    ConnectionClose,
)


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


# -- enqueue, deliver, ack and connection points --------------------------------------------------


def events(broker: Broker, *kinds: str) -> list[tuple[str, dict[str, Any]]]:
    return [(e.kind, dict(e.attrs)) for e in broker.trace.of_kind(*kinds)]


def test_enqueue_fault_events_name_message_queue_and_parameters() -> None:
    broker, ch = setup()
    for name, action, extra in [
        ("lose", "drop", {}),
        ("dup", "duplicate", {"copies": 2}),
        ("late", "delay", {"delay": 0.5}),
        ("shuffle", "reorder", {"window": 3}),
        ("full", "overflow", {}),
    ]:
        broker.faults.add(point="enqueue", action=action, name=name, max_count=1, **extra)
        ch.basic_publish(b"m", "", "q")
        broker.faults.remove(name)
    common = {"point": "enqueue", "queue": "q"}
    assert fault_events(broker) == [
        {**common, "rule": "lose", "action": "drop", "msg": 1},
        {**common, "rule": "dup", "action": "duplicate", "msg": 2, "copies": [3, 4]},
        {**common, "rule": "late", "action": "delay", "msg": 5, "delay": 0.5},
        {**common, "rule": "shuffle", "action": "reorder", "msg": 6, "window": 3},
        {**common, "rule": "full", "action": "overflow", "msg": 7, "overflow": "drop-head"},
    ]
    broker.advance(0.5)
    # Removing "shuffle" released its unfilled window at once; "late" comes back on time.
    assert events(broker, "fault-release") == [
        ("fault-release", {"rule": "shuffle", "msgs": [6]}),
        ("fault-release", {"msg": 5, "queue": "q"}),
    ]
    assert [e.time for e in broker.trace.of_kind("fault-release")] == [0.0, 0.5]


def test_enqueue_delay_holds_for_exactly_its_delay() -> None:
    broker, ch = setup()
    broker.faults.add(point="enqueue", action="delay", delay=0.25)
    ch.basic_publish(b"m", "", "q")
    broker.advance(0.2499)
    assert list(broker.queue("q").bodies) == []
    assert broker.faults.held_messages == 1
    broker.advance(0.0001)
    assert list(broker.queue("q").bodies) == [b"m"]
    assert broker.faults.held_messages == 0


def test_a_message_held_for_a_deleted_queue_is_lost_and_said_so() -> None:
    broker, ch = setup("q", "r")
    broker.faults.add(point="enqueue", action="delay", delay=1.0, queue="q")
    broker.faults.add(point="enqueue", action="reorder", window=2, queue="r", delay=1.0)
    ch.basic_publish(b"m", "", "q")
    ch.basic_publish(b"n", "", "r")
    ch.queue_delete("q")
    ch.queue_delete("r")
    broker.advance(1.0)
    # The delayed message is lost without a release; the reorder window is released (its
    # hold time ran out), and its message lost then.
    assert events(broker, "fault-lost", "fault-release") == [
        ("fault-lost", {"msg": 1, "queue": "q", "reason": "queue-deleted"}),
        ("fault-release", {"rule": "rule-2", "msgs": [2]}),
        ("fault-lost", {"msg": 2, "queue": "r", "reason": "queue-deleted"}),
    ]
    assert broker.faults.held_messages == 0


def test_overflow_drop_head_frees_the_head_bytes_and_dead_letters_it() -> None:
    broker, ch = setup("dlq")
    ch.exchange_declare("dlx", "fanout")
    ch.queue_bind("dlq", "dlx")
    ch.queue_declare("small", arguments={"x-max-length-bytes": 2, "x-dead-letter-exchange": "dlx"})
    ch.basic_publish(b"a", "", "small")
    broker.faults.add(point="enqueue", action="overflow", max_count=1, name="full")
    ch.basic_publish(b"b", "", "small")
    assert events(broker, "drop-head") == [
        ("drop-head", {"queue": "small", "vhost": "/", "msg": 1})
    ]
    assert list(broker.queue("dlq").bodies) == [b"a"]
    (dead,) = broker.vhosts["/"].queues["dlq"].ready
    assert dead.message.headers["x-death"][0]["reason"] == "maxlen"
    # One byte ("b") is left, so "c" fits under the 2-byte limit without dropping "b".
    ch.basic_publish(b"c", "", "small")
    assert list(broker.queue("small").bodies) == [b"b", b"c"]


def test_overflow_drop_head_exposes_an_expired_message_to_its_ttl() -> None:
    broker, ch = setup()
    ch.basic_publish(b"old", "", "q")
    ch.basic_publish(b"short", "", "q", properties={"expiration": "100"})
    broker.advance(0.2)  # "short" expired behind a head without a TTL
    broker.faults.add(point="enqueue", action="overflow", max_count=1)
    ch.basic_publish(b"new", "", "q")
    assert list(broker.queue("q").bodies) == [b"new"]
    assert [e.attrs["msg"] for e in broker.trace.of_kind("expire")] == [2]


def test_overflow_with_a_waiting_consumer_drops_nothing() -> None:
    broker, ch = setup()
    ch.basic_consume("q", consumer_tag="c")
    broker.faults.add(point="enqueue", action="overflow")
    ch.basic_publish(b"m", "", "q")
    assert [f.message.body for f in frames(ch, BasicDeliver)] == [b"m"]
    assert not broker.trace.of_kind("drop-head")


@pytest.mark.parametrize("overflow", ["reject-publish", "reject-publish-dlx"])
def test_overflow_reject_publish_refuses_and_maybe_dead_letters(overflow: str) -> None:
    broker, ch = setup("dlq")
    ch.exchange_declare("dlx", "fanout")
    ch.queue_bind("dlq", "dlx")
    ch.queue_declare("q2", arguments={"x-overflow": overflow, "x-dead-letter-exchange": "dlx"})
    ch.confirm_select()
    broker.faults.add(point="enqueue", action="overflow", max_count=1)
    ch.basic_publish(b"m", "", "q2")
    assert events(broker, "reject-publish") == [
        ("reject-publish", {"queue": "q2", "vhost": "/", "msg": 1})
    ]
    assert [f.delivery_tag for f in frames(ch, BasicNack)] == [1]
    assert list(broker.queue("q2").bodies) == []
    dead = list(broker.queue("dlq").bodies)
    assert dead == ([b"m"] if overflow == "reject-publish-dlx" else [])


def consuming(*queues: str, no_ack: bool = False) -> tuple[Broker, Channel]:
    broker, ch = setup(*queues)
    for name in queues or ("q",):
        ch.basic_consume(name, consumer_tag=f"c-{name}", no_ack=no_ack)
    return broker, ch


def test_deliver_fault_events_name_message_queue_channel_and_parameters() -> None:
    broker, ch = consuming()
    for name, action, extra in [
        ("lose", "drop", {}),
        ("late", "delay", {"delay": 0.5}),
        ("again", "redeliver", {}),
    ]:
        broker.faults.add(point="deliver", action=action, name=name, max_count=1, **extra)
        ch.basic_publish(b"m", "", "q")
        broker.faults.remove(name)
    common = {"point": "deliver", "queue": "q", "channel": 1}
    assert fault_events(broker) == [
        {**common, "rule": "lose", "action": "drop", "msg": 1},
        {**common, "rule": "late", "action": "delay", "msg": 2, "delay": 0.5},
        {**common, "rule": "again", "action": "redeliver", "msg": 3},
    ]
    assert events(broker, "requeue") == [("requeue", {"queue": "q", "msgs": [3]})]
    broker.advance(0.5)
    assert events(broker, "fault-release") == [("fault-release", {"msg": 2, "queue": "q"})]
    delivered = [(f.message.id, f.redelivered) for f in frames(ch, BasicDeliver)]
    assert delivered == [(3, True), (2, False)]


def test_deliver_delay_holds_for_exactly_its_delay() -> None:
    broker, ch = consuming()
    broker.faults.add(point="deliver", action="delay", delay=0.25, max_count=1)
    ch.basic_publish(b"m", "", "q")
    broker.advance(0.2499)
    assert frames(ch, BasicDeliver) == []
    assert broker.faults.held_messages == 1
    broker.advance(0.0001)
    assert [f.message.body for f in frames(ch, BasicDeliver)] == [b"m"]
    assert broker.faults.held_messages == 0


def test_a_released_delivery_is_not_faulted_again() -> None:
    """A delayed delivery meets the deliver rules once: on release it goes straight out."""
    broker, ch = consuming()
    broker.faults.add(point="deliver", action="delay", delay=1.0)
    ch.basic_publish(b"m", "", "q")
    broker.advance(1.0)
    assert [f.message.body for f in frames(ch, BasicDeliver)] == [b"m"]
    assert len(broker.trace.of_kind("fault")) == 1


def test_a_redelivered_message_is_not_faulted_again_on_its_way_back() -> None:
    broker, ch = consuming()
    broker.faults.add(point="deliver", action="redeliver")
    ch.basic_publish(b"m", "", "q")
    assert [(f.message.body, f.redelivered) for f in frames(ch, BasicDeliver)] == [(b"m", True)]
    assert len(broker.trace.of_kind("fault")) == 1


@pytest.mark.parametrize("gone", ["cancel", "close", "other-queue"])
def test_a_delayed_delivery_whose_consumer_went_away_goes_back_unredelivered(gone: str) -> None:
    broker, ch = consuming()
    broker.faults.add(point="deliver", action="delay", delay=1.0, max_count=1)
    ch.basic_publish(b"m", "", "q")
    other = broker.connect().channel()
    if gone == "cancel":
        ch.basic_cancel("c-q")
    elif gone == "close":
        ch.close()
    else:
        # Same tag, same channel, another queue: not the consumer the delivery was for.
        ch.basic_cancel("c-q")
        other.queue_declare("q2")
        ch.basic_consume("q2", consumer_tag="c-q")
    other.basic_consume("q", consumer_tag="late")
    before = len(frames(other, BasicDeliver))
    broker.advance(1.0)
    got = frames(other, BasicDeliver)[before:]
    # Put back and dispatched at once to the consumer that is there, never marked redelivered.
    assert [(f.message.body, f.redelivered, f.consumer_tag) for f in got] == [(b"m", False, "late")]
    assert events(broker, "requeue") == [("requeue", {"queue": "q", "msgs": [1]})]


def test_a_delayed_delivery_to_a_deleted_queue_is_lost() -> None:
    broker, ch = consuming()
    broker.faults.add(point="deliver", action="delay", delay=1.0, max_count=1)
    ch.basic_publish(b"m", "", "q")
    ch.basic_cancel("c-q")
    ch.queue_delete("q")
    broker.advance(1.0)
    assert events(broker, "fault-lost") == [
        ("fault-lost", {"msg": 1, "queue": "q", "reason": "queue-deleted"})
    ]
    assert broker.faults.held_messages == 0


def test_a_delayed_delivery_that_expired_meanwhile_is_not_delivered_when_put_back() -> None:
    broker, ch = setup()
    ch.queue_declare("t", arguments={"x-message-ttl": 500})
    ch.basic_consume("t", consumer_tag="c")
    broker.faults.add(point="deliver", action="delay", delay=1.0, max_count=1)
    ch.basic_publish(b"m", "", "t")
    ch.basic_cancel("c")
    other = broker.connect().channel()
    other.basic_consume("t", consumer_tag="late")
    broker.advance(1.0)
    assert frames(other, BasicDeliver) == []
    assert [e.attrs["msg"] for e in broker.trace.of_kind("expire")] == [1]


@pytest.mark.parametrize(
    ("point", "method"), [("publish", (60, 40)), ("ack", (60, 80)), ("deliver", (0, 0))]
)
def test_close_channel_names_the_rule_code_and_method(point: str, method: tuple[int, int]) -> None:
    broker, ch = consuming()
    ch.basic_publish(b"m", "", "q")
    tag = frames(ch, BasicDeliver)[0].delivery_tag
    broker.faults.add(point=point, action="close_channel", name="shut", reply_code=404)
    if point == "publish":
        ch.basic_publish(b"n", "", "q")
    elif point == "ack":
        ch.basic_ack(tag)
    else:
        broker.connect().channel().basic_publish(b"n", "", "q")
    (close,) = frames(ch, ChannelClose)
    text = "NOT_FOUND - fault injected by rule 'shut'"
    assert (close.error.reply_code, close.error.reply_text, close.error.method) == (
        404,
        text,
        method,
    )
    assert events(broker, "error") == [
        (
            "error",
            {
                "connection": 1,
                "channel": 1,
                "code": 404,
                "text": text,
                "method": list(method),
                "scope": "channel",
            },
        )
    ]
    assert not ch.is_open and ch.connection.is_open


def test_close_channel_sends_the_rules_reply_text() -> None:
    broker, ch = setup()
    broker.faults.add(point="publish", action="close_channel", reply_text="gone away")
    ch.basic_publish(b"m", "", "q")
    (close,) = frames(ch, ChannelClose)
    assert close.error.reply_text == "PRECONDITION_FAILED - gone away"


@pytest.mark.parametrize("action", ["close_connection", "restart"])
def test_deliver_faults_that_end_the_connection_requeue_the_delivery(action: str) -> None:
    broker, ch = setup()
    ch.queue_declare("d", durable=True)
    ch.basic_consume("d", consumer_tag="c-d")
    broker.faults.add(point="deliver", action=action, max_count=1)
    ch.basic_publish(b"m", "", "d", properties={"delivery_mode": 2})
    assert not ch.connection.is_open
    info = broker.queue("d")
    assert (info.bodies, info.messages_unacknowledged) == ((b"m",), 0)
    assert [e.redelivered for e in broker.vhosts["/"].queues["d"].ready] == [True]
    assert len(broker.trace.of_kind("restart")) == (action == "restart")


def test_ack_fault_events_name_delivery_and_multiple() -> None:
    broker, ch = consuming()
    for body in (b"1", b"2", b"3"):
        ch.basic_publish(body, "", "q")
    broker.faults.add(point="ack", action="drop", name="lose", max_count=1)
    ch.basic_ack(2, multiple=True)
    broker.faults.add(point="ack", action="delay", name="late", delay=0.5, max_count=1)
    ch.basic_ack(3)
    common = {"point": "ack", "queue": "q", "channel": 1}
    assert fault_events(broker) == [
        {**common, "rule": "lose", "action": "drop", "msg": 2, "delivery_tag": 2, "multiple": True},
        {
            **common,
            "rule": "late",
            "action": "delay",
            "msg": 3,
            "delivery_tag": 3,
            "multiple": False,
        },
    ]
    assert broker.queue("q").messages_unacknowledged == 3


def test_ack_delay_settles_exactly_after_its_delay_with_its_multiple_flag() -> None:
    broker, ch = consuming()
    for body in (b"1", b"2", b"3"):
        ch.basic_publish(body, "", "q")
    broker.faults.add(point="ack", action="delay", delay=0.25, max_count=1)
    ch.basic_ack(2, multiple=True)
    broker.advance(0.2499)
    assert broker.queue("q").messages_unacknowledged == 3
    broker.advance(0.0001)
    assert broker.queue("q").messages_unacknowledged == 1
    # The released ack is not faulted again, nor counted as a match.
    assert broker.faults.applied("rule-1") == 1
    assert broker.faults._states["rule-1"].matched == 1


def test_a_delayed_ack_for_a_closed_channel_is_lost_as_stale() -> None:
    broker, ch = consuming()
    ch.basic_publish(b"m", "", "q")
    broker.faults.add(point="ack", action="delay", delay=0.5)
    ch.basic_ack(1)
    ch.close()
    broker.advance(0.5)
    assert events(broker, "fault-lost") == [
        ("fault-lost", {"channel": 1, "delivery_tag": 1, "reason": "stale-ack"})
    ]


def test_a_delayed_ack_for_a_tag_settled_meanwhile_is_lost_as_stale() -> None:
    broker, ch = consuming()
    ch.basic_publish(b"m", "", "q")
    broker.faults.add(point="ack", action="delay", delay=0.5, max_count=1)
    ch.basic_ack(1)
    ch.basic_nack(1, requeue=False)
    broker.advance(0.5)
    assert ch.is_open  # not a 406 for an unknown tag: the ack was lost
    assert [e.attrs["reason"] for e in broker.trace.of_kind("fault-lost")] == ["stale-ack"]


def test_ack_redeliver_requeues_every_delivery_the_ack_covers() -> None:
    broker, ch = consuming()
    for body in (b"1", b"2", b"3"):
        ch.basic_publish(body, "", "q")
    ch.basic_cancel("c-q")
    broker.faults.add(point="ack", action="redeliver", max_count=1)
    ch.basic_ack(2, multiple=True)
    info = broker.queue("q")
    assert (info.bodies, info.messages_unacknowledged) == ((b"1", b"2"), 1)
    assert [e.attrs["msg"] for e in broker.trace.of_kind("fault-requeue")] == [1, 2]


def test_an_ack_with_an_unknown_tag_meets_no_ack_fault() -> None:
    broker, ch = consuming()
    broker.faults.add(point="ack", action="drop", name="lose")
    ch.basic_ack(7)
    assert not ch.is_open
    assert broker.faults._states["lose"].matched == 0


@pytest.mark.parametrize("action", ["close_channel", "close_connection", "restart"])
def test_ack_faults_that_end_the_channel_requeue_the_delivery(action: str) -> None:
    broker, ch = setup()
    ch.queue_declare("d", durable=True)
    ch.basic_consume("d", consumer_tag="c-d")
    ch.basic_publish(b"m", "", "d", properties={"delivery_mode": 2})
    broker.faults.add(point="ack", action=action)
    ch.basic_ack(1)
    assert not ch.is_open
    assert ch.connection.is_open is (action == "close_channel")
    info = broker.queue("d")
    assert (info.bodies, info.messages_unacknowledged) == ((b"m",), 0)
    assert len(broker.trace.of_kind("restart")) == (action == "restart")


@pytest.mark.parametrize("action", ["close_connection", "restart"])
def test_connection_faults_name_the_connection(action: str) -> None:
    broker, ch = setup()
    broker.faults.add(point="connection", action=action, name="conn")
    conn = broker.connect()
    assert fault_events(broker) == [
        {"rule": "conn", "point": "connection", "action": action, "connection": 2}
    ]
    assert not conn.is_open
    assert ch.connection.is_open is (action == "close_connection")
    closes = [f for f in conn.outbox if isinstance(f, ConnectionClose)]
    assert [c.error.reply_code for c in closes] == [320]


# -- reorder -------------------------------------------------------------------------------------


def test_reorder_without_a_delay_holds_an_unfilled_window_for_one_second() -> None:
    broker, ch = setup()
    broker.faults.add(point="enqueue", action="reorder", window=5)
    ch.basic_publish(b"1", "", "q")
    broker.advance(0.9999)
    assert list(broker.queue("q").bodies) == []
    broker.advance(0.0001)
    assert list(broker.queue("q").bodies) == [b"1"]
    assert broker.faults.held_messages == 0


def test_reorder_hold_time_counts_from_the_first_message_of_a_window() -> None:
    broker, ch = setup()
    broker.faults.add(point="publish", action="reorder", window=5, delay=1.0)
    ch.basic_publish(b"1", "", "q")
    broker.advance(0.5)
    ch.basic_publish(b"2", "", "q")
    broker.advance(0.4999)
    assert list(broker.queue("q").bodies) == []
    broker.advance(0.0001)
    assert sorted(broker.queue("q").bodies) == [b"1", b"2"]


def test_the_hold_timer_of_a_released_window_leaves_the_next_window_alone() -> None:
    broker, ch = setup()
    broker.faults.add(point="enqueue", action="reorder", window=2, delay=1.0)
    ch.basic_publish(b"1", "", "q")
    ch.basic_publish(b"2", "", "q")  # fills the window: released at once
    assert sorted(broker.queue("q").bodies) == [b"1", b"2"]
    broker.advance(0.5)
    ch.basic_publish(b"3", "", "q")  # a new window, held until 1.5
    broker.advance(0.5)  # the first window's timer fires now
    assert b"3" not in broker.queue("q").bodies
    broker.advance(0.5)
    assert list(broker.queue("q").bodies) == [b"2", b"1", b"3"]


@pytest.mark.parametrize("seed", range(8))
def test_a_reordered_window_is_never_released_in_arrival_order(seed: int) -> None:
    """A shuffle may give back the arrival order; the fault reverses it then."""
    broker = Broker(seed=seed)
    ch = broker.connect().channel()
    ch.queue_declare("q")
    broker.faults.add(point="enqueue", action="reorder", window=2, name="shuffle")
    ch.basic_publish(b"1", "", "q")
    ch.basic_publish(b"2", "", "q")
    assert list(broker.queue("q").bodies) == [b"2", b"1"]
    assert events(broker, "fault-release") == [
        ("fault-release", {"rule": "shuffle", "msgs": [2, 1]})
    ]


def test_a_message_held_for_two_queues_counts_twice_until_both_are_released() -> None:
    broker, ch = setup("a", "b")
    ch.exchange_declare("fx", "fanout")
    ch.queue_bind("a", "fx")
    ch.queue_bind("b", "fx")
    broker.faults.add(point="enqueue", action="delay", delay=1.0, queue="a")
    broker.faults.add(point="enqueue", action="delay", delay=2.0, queue="b")
    ch.basic_publish(b"m", "fx", "")
    assert broker.faults.held_messages == 2
    broker.advance(1.0)
    assert broker.faults.held_messages == 1
    broker.advance(1.0)
    assert broker.faults.held_messages == 0
    assert broker.faults._held == {}


# -- held publishes and routes whose destination went away ---------------------------------------


def test_a_held_publish_whose_exchange_was_deleted_is_lost_and_still_confirmed() -> None:
    broker, ch = setup()
    ch.exchange_declare("x", "direct")
    ch.queue_bind("q", "x", "k")
    ch.confirm_select()
    broker.faults.add(point="publish", action="delay", delay=1.0)
    ch.basic_publish(b"m", "x", "k", mandatory=True)
    ch.exchange_delete("x")
    broker.advance(1.0)
    assert events(broker, "fault-release", "fault-lost", "confirm", "return") == [
        ("fault-release", {"msg": 1}),
        ("fault-lost", {"msg": 1, "reason": "exchange-deleted"}),
        ("confirm", {"channel": 1, "seq": 1, "ack": True}),
    ]
    assert [f.delivery_tag for f in frames(ch, BasicAck)] == [1]


def test_a_held_route_whose_queues_were_all_deleted_routes_nowhere_and_is_confirmed() -> None:
    broker, ch = setup("a", "b")
    ch.exchange_declare("fx", "fanout")
    ch.queue_bind("a", "fx")
    ch.queue_bind("b", "fx")
    ch.confirm_select()
    broker.faults.add(point="route", action="delay", delay=1.0)
    ch.basic_publish(b"m", "fx", "")
    routes_before = len(broker.trace.of_kind("route"))
    ch.queue_delete("a")
    broker.advance(1.0)
    # The release routes to the queue that is left, and says so.
    routes = [dict(e.attrs) for e in broker.trace.of_kind("route")][routes_before:]
    assert routes == [{"msg": 1, "queues": ["b"]}]
    ch.basic_publish(b"n", "fx", "")
    routes_before = len(broker.trace.of_kind("route"))
    ch.queue_delete("b")
    broker.advance(1.0)
    assert len(broker.trace.of_kind("route")) == routes_before  # no queue left: no route event
    assert [f.delivery_tag for f in frames(ch, BasicAck)] == [1, 2]


def test_a_delayed_route_is_released_and_traced_with_its_queues() -> None:
    broker, ch = setup("a", "b")
    ch.exchange_declare("fx", "fanout")
    ch.queue_bind("a", "fx")
    ch.queue_bind("b", "fx")
    broker.faults.add(point="route", action="delay", delay=1.0)
    ch.basic_publish(b"m", "fx", "")
    ch.queue_delete("b")
    broker.advance(1.0)
    assert events(broker, "fault-release", "fault-lost") == [
        ("fault-release", {"msg": 1, "queues": ["a", "b"]}),
        ("fault-lost", {"msg": 1, "queue": "b", "reason": "queue-deleted"}),
    ]


def test_a_delayed_enqueue_counts_its_ttl_from_its_release() -> None:
    broker, ch = setup()
    ch.queue_declare("t", arguments={"x-message-ttl": 1000})
    broker.faults.add(point="enqueue", action="delay", delay=1.0)
    ch.basic_publish(b"m", "", "t")
    broker.advance(1.9999)
    assert list(broker.queue("t").bodies) == [b"m"]
    broker.advance(0.0001)
    assert list(broker.queue("t").bodies) == []


def test_a_delivery_put_back_after_its_consumer_left_meets_deliver_faults_again() -> None:
    broker, ch = consuming()
    broker.faults.add(point="deliver", action="delay", delay=1.0, name="late")
    ch.basic_publish(b"m", "", "q")
    ch.basic_cancel("c-q")
    other = broker.connect().channel()
    other.basic_consume("q", consumer_tag="next")
    broker.advance(1.0)
    # Put back, then dispatched to "next": delayed again, not delivered at once.
    assert frames(other, BasicDeliver) == []
    assert broker.faults.applied("late") == 2
    broker.advance(1.0)
    assert [f.consumer_tag for f in frames(other, BasicDeliver)] == ["next"]


def test_ack_faults_still_apply_after_a_delayed_ack_was_released() -> None:
    broker, ch = consuming()
    ch.basic_publish(b"1", "", "q")
    ch.basic_publish(b"2", "", "q")
    broker.faults.add(point="ack", action="delay", delay=1.0, name="late")
    ch.basic_ack(1)
    broker.advance(1.0)
    assert broker.queue("q").messages_unacknowledged == 1
    ch.basic_ack(2)
    assert broker.queue("q").messages_unacknowledged == 1
    assert broker.faults.applied("late") == 2


@pytest.mark.parametrize(
    ("action", "extra"),
    [("drop", {}), ("delay", {"delay": 1.0}), ("reorder", {"window": 2}), ("overflow", {})],
)
def test_enqueue_faults_that_take_the_message_confirm_it_with_an_ack(
    action: str, extra: dict[str, Any]
) -> None:
    """Only a queue that refuses a message (reject-publish) makes its confirm a nack."""
    broker, ch = setup()
    ch.confirm_select()
    broker.faults.add(point="enqueue", action=action, max_count=1, **extra)
    ch.basic_publish(b"m", "", "q")
    assert [f.delivery_tag for f in frames(ch, BasicAck)] == [1]
    assert frames(ch, BasicNack) == []


@pytest.mark.parametrize("point", ["enqueue", "ack"])
def test_enqueue_and_ack_rules_select_by_message_and_queue(point: str) -> None:
    broker, ch = consuming("q", "other")
    broker.faults.add(point=point, action="drop", headers={"kill": 1}, queue="q", name="k")
    ch.basic_publish(b"keep", "", "q")
    ch.basic_publish(b"kill", "", "q", properties={"application_headers": {"kill": 1}})
    ch.basic_publish(b"elsewhere", "", "other", properties={"application_headers": {"kill": 1}})
    for frame in frames(ch, BasicDeliver):
        ch.basic_ack(frame.delivery_tag)
    assert broker.faults.applied("k") == 1
    if point == "enqueue":
        got = sorted(f.message.body for f in frames(ch, BasicDeliver))
        assert got == [b"elsewhere", b"keep"]
    else:
        # The dropped ack leaves exactly that delivery unacknowledged.
        assert broker.queue("q").messages_unacknowledged == 1
        assert broker.queue("other").messages_unacknowledged == 0


def test_an_ack_rule_that_does_not_fire_lets_the_ack_through() -> None:
    broker, ch = consuming()
    ch.basic_publish(b"1", "", "q")
    ch.basic_publish(b"2", "", "q")
    broker.faults.add(point="ack", action="drop", nth=2)
    ch.basic_ack(1)
    assert broker.queue("q").messages_unacknowledged == 1
    ch.basic_ack(2)
    assert broker.queue("q").messages_unacknowledged == 1


def test_overflow_reject_publish_dlx_dead_letters_with_reason_maxlen() -> None:
    broker, ch = setup("dlq")
    ch.exchange_declare("dlx", "fanout")
    ch.queue_bind("dlq", "dlx")
    ch.queue_declare(
        "q2", arguments={"x-overflow": "reject-publish-dlx", "x-dead-letter-exchange": "dlx"}
    )
    broker.faults.add(point="enqueue", action="overflow", max_count=1)
    ch.basic_publish(b"m", "", "q2")
    (dead,) = broker.vhosts["/"].queues["dlq"].ready
    assert dead.message.headers["x-death"][0]["reason"] == "maxlen"


def test_overflow_drop_head_frees_exactly_the_dropped_heads_bytes() -> None:
    broker, ch = setup()
    ch.queue_declare("small", arguments={"x-max-length-bytes": 3})
    ch.basic_publish(b"aa", "", "small")
    broker.faults.add(point="enqueue", action="overflow", max_count=1)
    ch.basic_publish(b"b", "", "small")  # 3 bytes, then "aa" dropped: 1 byte left
    ch.basic_publish(b"cc", "", "small")  # 3 bytes: fits
    assert list(broker.queue("small").bodies) == [b"b", b"cc"]


def test_a_message_kept_by_an_overflow_fault_counts_its_ttl_from_now() -> None:
    broker, ch = setup()
    ch.queue_declare("t", arguments={"x-message-ttl": 1000})
    ch.basic_publish(b"old", "", "t")
    broker.advance(0.5)
    broker.faults.add(point="enqueue", action="overflow", max_count=1)
    ch.basic_publish(b"new", "", "t")
    assert list(broker.queue("t").bodies) == [b"new"]
    broker.advance(0.9999)
    assert list(broker.queue("t").bodies) == [b"new"]
    broker.advance(0.0001)
    assert list(broker.queue("t").bodies) == []


@pytest.mark.parametrize("point", ["publish", "route"])
def test_reordered_publishes_are_confirmed_when_released(point: str) -> None:
    broker, ch = setup()
    ch.confirm_select()
    broker.faults.add(point=point, action="reorder", window=2, delay=1.0, max_count=2)
    ch.basic_publish(b"1", "", "q")
    assert frames(ch, BasicAck) == []
    ch.basic_publish(b"2", "", "q")
    assert sorted(f.delivery_tag for f in frames(ch, BasicAck)) == [1, 2]


def test_a_reordered_unroutable_mandatory_publish_is_returned_when_released() -> None:
    broker, ch = setup()
    broker.faults.add(point="publish", action="reorder", window=2, max_count=2)
    ch.basic_publish(b"1", "", "nowhere", mandatory=True)
    ch.basic_publish(b"2", "", "q", mandatory=True)
    assert [(f.reply_code, f.message.body) for f in frames(ch, BasicReturn)] == [(312, b"1")]


def test_a_delivery_put_back_by_a_fault_counts_its_bytes_again() -> None:
    broker, ch = setup()
    ch.queue_declare("b", arguments={"x-max-length-bytes": 4})
    ch.basic_publish(b"x", "", "b")
    ch.basic_publish(b"yy", "", "b")
    broker.faults.add(point="deliver", action="close_channel", max_count=1)
    ch.basic_consume("b", consumer_tag="c")  # "x" goes out, and comes back: 3 bytes ready
    assert not ch.is_open
    other = broker.connect().channel()
    other.basic_publish(b"zz", "", "b")  # 5 bytes: the head "x" is dropped
    assert list(broker.queue("b").bodies) == [b"yy", b"zz"]


def test_deliver_rules_select_by_message() -> None:
    broker, ch = consuming()
    broker.faults.add(point="deliver", action="drop", headers={"kill": 1}, name="k")
    ch.basic_publish(b"keep", "", "q")
    ch.basic_publish(b"kill", "", "q", properties={"application_headers": {"kill": 1}})
    assert [f.message.body for f in frames(ch, BasicDeliver)] == [b"keep"]
    assert broker.faults.applied("k") == 1
