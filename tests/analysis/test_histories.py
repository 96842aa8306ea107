"""Message histories read off the trace: each step of a message's life, on a live broker, a
recorded trace (JSON lines) and a windowed trace."""

from __future__ import annotations

import pytest

import simamqp
from simamqp.analysis import build_histories, check_delivery, events_from_lines


def _channel(broker: simamqp.Broker) -> object:
    return broker.connect().channel()


def test_publish_route_deliver_ack_and_confirms_only_after_confirm_select() -> None:
    broker = simamqp.Broker(seed=1, trace="full")
    ch = _channel(broker)
    ch.queue_declare("q")
    ch.basic_publish(b"before", "", "q")
    ch.confirm_select()
    ch.basic_publish(b"after", "", "q")
    ch.basic_publish(b"nowhere", "", "missing", mandatory=True)
    got = ch.basic_get("q")
    ch.basic_ack(got.delivery_tag)
    hs = build_histories(broker)
    before, after, nowhere = (hs[m] for m in (1, 2, 3))
    assert before.confirm is None and after.confirm == "ack" and after.confirm_seq == 1
    assert nowhere.confirm == "ack" and nowhere.returned and nowhere.routed == []
    assert not nowhere.ok
    assert before.routed == ["q"] and before.publisher == (1, 1)
    [delivery] = before.deliveries
    assert delivery.settled == "ack" and delivery.accepted and delivery.consumer_tag is None
    assert hs.pending == {("q", 2)}


def test_fault_copies_dead_letters_expiry_and_requeue() -> None:
    broker = simamqp.Broker(seed=2, trace="full")
    broker.faults.add(point="enqueue", action="duplicate", queue="work", nth=1, name="twice")
    ch = _channel(broker)
    ch.exchange_declare("dlx", "fanout")
    ch.queue_declare("dead")
    ch.queue_bind("dead", "dlx", "")
    ch.queue_declare("work", arguments={"x-dead-letter-exchange": "dlx"})
    ch.queue_declare("short", arguments={"x-message-ttl": 10})
    ch.basic_publish(b"a", "", "work")
    ch.basic_publish(b"t", "", "short")
    first = ch.basic_get("work")
    ch.basic_reject(first.delivery_tag, requeue=False)
    second = ch.basic_get("work")
    ch.basic_nack(second.delivery_tag, requeue=True)
    broker.clock.advance(20)
    broker.run_until_idle()
    hs = build_histories(broker)
    original = hs[1]
    [copy_id] = original.copies
    assert hs[copy_id].copy_of == 1 and hs[copy_id].copy_rule == "twice"
    assert hs[copy_id].body == b"a" and hs[copy_id].original == 1
    assert [f.rule for f in original.faults] == ["twice"]
    [dead] = original.dead_lettered
    assert dead["reason"] == "rejected" and dead["queues"] == ["dead"]
    assert hs[dead["new_msg"]].dead_letter_of == 1
    assert hs[copy_id].deliveries[0].settled == "nack"
    assert hs[copy_id].deliveries[0].requeue is True
    assert ("work", copy_id) in hs.pending
    ttl = next(h for h in hs if h.body == b"t")
    assert ttl.expired == ["short"] and ("short", ttl.msg) not in hs.pending


def test_a_closed_channel_requeues_its_deliveries_and_they_come_back_redelivered() -> None:
    broker = simamqp.Broker(seed=3, trace="full")
    conn = broker.connect()
    ch = conn.channel()
    ch.queue_declare("q")
    ch.basic_publish(b"m", "", "q")
    ch.basic_get("q")
    ch.close()
    ch2 = conn.channel()
    again = ch2.basic_get("q")
    assert again.redelivered
    h = build_histories(broker)[1]
    assert [d.settled for d in h.deliveries] == ["requeue", None]
    assert [d.count for d in h.deliveries] == [1, 2]
    assert h.deliveries[1].redelivered


def test_restart_keeps_persistent_messages_of_durable_queues_and_drops_the_rest() -> None:
    broker = simamqp.Broker(seed=4, trace="full")
    ch = _channel(broker)
    ch.queue_declare("durable", durable=True)
    ch.queue_declare("transient")
    ch.basic_publish(b"kept", "", "durable", properties={"delivery_mode": 2})
    ch.basic_publish(b"gone", "", "durable", properties={"delivery_mode": 1})
    ch.basic_publish(b"with-queue", "", "transient", properties={"delivery_mode": 2})
    broker.restart()
    ch = _channel(broker)
    got = ch.basic_get("durable")
    assert got.message.body == b"kept"
    hs = build_histories(broker)
    assert hs[1].restarts == [("durable", "survived")]
    assert hs[2].restarts == [("durable", "unseen")]
    assert hs[3].restarts == [("transient", "dropped")]
    assert hs[3].lost == [("transient", "queue deleted (restart)")]
    assert hs.restarts == 1


def test_recorded_json_lines_give_the_same_histories() -> None:
    broker = simamqp.Broker(seed=5, trace="full")
    broker.faults.add(point="deliver", action="redeliver", nth=2)
    ch = _channel(broker)
    ch.queue_declare("q")
    ch.confirm_select()
    ch.basic_consume("q", consumer_tag="c1")
    for n in range(3):
        ch.basic_publish(b"%d" % n, "", "q")
    broker.run_until_idle()
    live = build_histories(broker)
    recorded = build_histories(events_from_lines(broker.trace.lines()))
    assert recorded.complete
    assert set(recorded.messages) == set(live.messages)
    for msg, h in live.messages.items():
        r = recorded[msg]
        assert (r.confirm, r.routed, len(r.deliveries), r.faults) == (
            h.confirm,
            h.routed,
            len(h.deliveries),
            h.faults,
        )
        assert r.body["len"] == len(h.body)  # a recorded trace keeps bodies by their sha256


def test_bad_json_lines_are_a_clear_error() -> None:
    with pytest.raises(ValueError, match="line 2: not a JSON trace event"):
        events_from_lines(['{"seq": 1, "kind": "restart", "time": "0.0"}', "{nope"])


def test_a_windowed_trace_marks_what_it_cannot_see_as_unknown_not_lost() -> None:
    broker = simamqp.Broker(seed=6)  # the default window
    ch = _channel(broker)
    ch.queue_declare("q")
    for n in range(1_500):
        ch.basic_publish(b"%d" % n, "", "q")
    for _ in range(1_500):
        ch.basic_ack(ch.basic_get("q").delivery_tag)
    hs = build_histories(broker)
    assert not hs.complete
    assert all(h.published is None for h in hs)  # the publishes left the window
    verdict = check_delivery(hs, "q")
    assert verdict.valid and not verdict.lost and not verdict.unexpected
    assert "windowed" in verdict.report()
