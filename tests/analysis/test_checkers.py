"""Guarantee checkers: Jepsen's total-queue findings (lost, duplicated, unexpected, recovered)
on ledgers and deliveries, durability across restarts, per-queue FIFO, and RPC results."""

from __future__ import annotations

from typing import Any

import pytest

import simamqp
from simamqp.analysis import (
    RPCLedger,
    build_histories,
    check_delivery,
    check_durability,
    check_fifo,
    check_processing,
    check_rpc,
)
from simamqp.core.trace import Event


def _published(n: int, *, faults: list[dict[str, Any]] = ()) -> simamqp.Broker:
    broker = simamqp.Broker(seed=11, trace="full")
    for rule in faults:
        broker.faults.add(**rule)
    ch = broker.connect().channel()
    ch.queue_declare("q")
    ch.confirm_select()
    for i in range(n):
        ch.basic_publish(b"m%d" % i, "", "q")
    return broker


def _drain(broker: simamqp.Broker) -> list[str]:
    ch = broker.connect().channel()
    out = []
    while (got := ch.basic_get("q")) is not None:
        out.append(got.message.body.decode())
        ch.basic_ack(got.delivery_tag)
    return out


def test_a_ledger_names_lost_duplicated_unexpected_and_recovered_keys() -> None:
    broker = _published(4)
    _drain(broker)
    verdict = check_processing(["m0", "m1", "m1", "m3", "zz"], broker, queue="q")
    assert not verdict.valid
    assert verdict.keys("lost") == {"m2"}
    assert verdict.keys("duplicated") == {"m1"}
    assert verdict.keys("unexpected") == {"zz"}
    [lost] = verdict.lost
    assert lost.msgs == (3,) and "acked" in lost.detail
    report = verdict.report()
    assert "lost (1)" in report and "'m2'" in report
    assert verdict.to_dict()["lost"][0]["key"] == "m2"


@pytest.mark.parametrize(
    ("guarantee", "valid"),
    [("at-least-once", True), ("at-most-once", False), ("exactly-once", False)],
)
def test_duplicates_break_only_at_most_and_exactly_once(guarantee: str, valid: bool) -> None:
    broker = _published(3)
    verdict = check_processing(["m0", "m1", "m1", "m2"], broker, guarantee=guarantee)
    assert verdict.valid is valid and bool(verdict) is valid


def test_a_loss_breaks_at_least_once_but_not_at_most_once() -> None:
    broker = _published(3)
    assert not check_processing(["m0", "m2"], broker, guarantee="at-least-once")
    assert check_processing(["m0", "m2"], broker, guarantee="at-most-once")


def test_a_nacked_or_returned_publish_processed_anyway_is_recovered_not_unexpected() -> None:
    verdict = check_processing(["x"], sent=[], guarantee="exactly-once")
    assert verdict.keys("unexpected") == {"x"}
    broker = simamqp.Broker(seed=1, trace="full")
    ch = broker.connect().channel()
    ch.queue_declare("q")
    ch.basic_publish(b"r", "", "nowhere", mandatory=True)  # returned: the publisher knows
    verdict = check_processing(["r"], broker)
    assert verdict.valid and verdict.keys("recovered") == {"r"}


def test_delivery_checker_sees_fault_drops_and_copies() -> None:
    broker = _published(
        5,
        faults=[
            {"point": "publish", "action": "drop", "nth": 2, "name": "lose"},
            {"point": "enqueue", "action": "duplicate", "nth": 3, "name": "twice"},
        ],
    )
    _drain(broker)
    verdict = check_delivery(broker, "q", guarantee="exactly-once")
    assert verdict.keys("lost") == {"m1"}
    assert "fault rule 'lose'" in verdict.lost[0].detail
    [dup] = verdict.duplicated
    assert dup.count == 2 and "fault rule 'twice'" in dup.detail
    assert not verdict.unexpected
    assert check_delivery(broker, "q", guarantee="at-most-once").keys("duplicated") == {dup.key}


def test_undrained_messages_are_pending_not_lost() -> None:
    broker = _published(2)
    verdict = check_delivery(broker, "q")
    assert verdict.valid and verdict.keys("pending") == {"m0", "m1"}


def test_durability_across_a_restart() -> None:
    broker = simamqp.Broker(seed=3, trace="full")
    ch = broker.connect().channel()
    ch.queue_declare("jobs", durable=True)
    ch.confirm_select()
    ch.basic_publish(b"p", "", "jobs", properties={"delivery_mode": 2})
    ch.basic_publish(b"t", "", "jobs", properties={"delivery_mode": 1})
    broker.restart()
    ch = broker.connect().channel()
    while (got := ch.basic_get("jobs")) is not None:
        ch.basic_ack(got.delivery_tag)
    assert check_durability(broker, persistent={"p"}).valid
    # A test that wrongly believes "t" was persistent is told it did not survive the restart.
    verdict = check_durability(broker, persistent={"p", "t"})
    assert verdict.keys("lost") == {"t"}
    assert "dropped by the restart" in verdict.lost[0].detail


def test_fifo_holds_on_a_plain_queue_and_excuses_reordering_faults() -> None:
    broker = _published(6, faults=[{"point": "enqueue", "action": "reorder", "window": 3}])
    _drain(broker)
    assert check_fifo(broker, "q").valid


def _ev(seq: int, kind: str, **attrs: Any) -> Event:
    return Event(seq, 0.0, kind, attrs)


def test_fifo_names_a_message_delivered_after_one_enqueued_later() -> None:
    events = [
        _ev(1, "consume", connection=1, channel=1, queue="q", consumer_tag="c", no_ack=True),
        _ev(
            2,
            "publish",
            connection=1,
            channel=1,
            exchange="",
            routing_key="q",
            msg=1,
            body=b"a",
            mandatory=False,
        ),
        _ev(3, "enqueue", queue="q", vhost="/", msg=1),
        _ev(
            4,
            "publish",
            connection=1,
            channel=1,
            exchange="",
            routing_key="q",
            msg=2,
            body=b"b",
            mandatory=False,
        ),
        _ev(5, "enqueue", queue="q", vhost="/", msg=2),
        _ev(
            6,
            "deliver",
            connection=1,
            channel=1,
            queue="q",
            consumer_tag="c",
            delivery_tag=1,
            msg=2,
            redelivered=False,
        ),
        _ev(
            7,
            "deliver",
            connection=1,
            channel=1,
            queue="q",
            consumer_tag="c",
            delivery_tag=2,
            msg=1,
            redelivered=False,
        ),
    ]
    verdict = check_fifo(events, "q")
    assert not verdict.valid
    [finding] = verdict.other["out_of_order"]
    assert finding.msgs == (1,) and "msg 2" in finding.detail
    assert check_fifo(events, "q", priorities=True).valid
    assert check_delivery(events, "q", guarantee="exactly-once").valid  # no-ack: accepted


def test_rpc_checker_findings() -> None:
    ledger = RPCLedger()
    for call in ("a", "b", "c", "d", "e"):
        ledger.call(call, reply_to="me")
        ledger.expect(call, "SUCCESS")
    ledger.result("a", "STARTED", reply_to="me")
    ledger.result("a", "SUCCESS", reply_to="me")
    ledger.result("b", "SUCCESS", reply_to="me")
    ledger.result("b", "SUCCESS", reply_to="me")  # duplicated
    ledger.result("c", "SUCCESS", reply_to="someone-else")  # misdelivered: c is lost too
    ledger.result("d", "FAILURE", reply_to="me")  # wrong
    ledger.result("d", "STARTED", reply_to="me")  # after the final
    ledger.result("zzz", "SUCCESS", reply_to="me")  # nobody asked
    verdict = check_rpc(ledger)
    assert not verdict.valid
    assert verdict.keys("lost") == {"c", "e"}
    assert verdict.keys("duplicated") == {"b"}
    assert verdict.keys("unexpected") == {"c", "zzz"}
    assert verdict.keys("wrong") == {"d"}
    assert verdict.keys("after_final") == {"d"}
    good = RPCLedger()
    good.call("x")
    good.result("x", "PENDING")
    good.result("x", "SUCCESS")
    assert check_rpc(good).valid


def test_bad_guarantee_is_a_clear_error() -> None:
    with pytest.raises(ValueError, match="guarantee must be one of"):
        check_processing([], sent=[], guarantee="twice")  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="needs the histories"):
        check_processing([])


def test_histories_are_reusable_across_checkers() -> None:
    broker = _published(3)
    _drain(broker)
    hs = build_histories(broker)
    assert check_delivery(hs, "q", guarantee="exactly-once")
    assert check_processing(["m0", "m1", "m2"], hs)
    assert check_fifo(hs, "q")
