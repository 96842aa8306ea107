"""The core engine under random clients and fault plans keeps BrokerStateMachine's invariants."""

from __future__ import annotations

import pathlib

import pytest
from _property_budget import property_settings

from simamqp.stateful import BrokerStateMachine, LedgerError

TestBrokerStateMachine = BrokerStateMachine.TestCase
TestBrokerStateMachine.settings = property_settings(stateful_step_count=30)


def _run_steps(seed: int, plan: dict[str, object]) -> BrokerStateMachine:
    machine = BrokerStateMachine()
    machine.setup(
        seed=seed,
        args=({"x-max-length": 3}, {"x-message-ttl": 500, "x-dead-letter-exchange": "dlx"}),
        durable=(True, False),
        bindings=("a.#", "*.b"),
        plan=plan,
        consumers=[("q1", False, 2), ("dlq", True, 0)],
    )
    machine.publish(key="a.b", direct=None, persistent=True, mandatory=True, body=b"x", count=6)
    machine.settle(index=1, how="nack")
    machine.advance(1.0)
    machine.get(queue="q0", no_ack=False)
    machine.ledger_agrees_with_engine()
    machine.teardown()
    return machine


def test_replay_data_replays_the_same_trace() -> None:
    plan = {
        "version": 1,
        "rules": [
            {"point": "publish", "action": "duplicate", "probability": 0.5, "name": "r1"},
            {"point": "deliver", "action": "redeliver", "nth": 2, "name": "r2"},
        ],
    }
    first = _run_steps(99, plan)
    data = first.replay_data()
    assert data["seed"] == 99 and data["rules"] == plan["rules"]
    again = _run_steps(int(data["seed"]), {k: v for k, v in data.items() if k != "seed"})
    assert again.broker.trace.digest() == first.broker.trace.digest()
    assert first.broker.trace.of_kind("fault")


def test_a_recorded_run_replays_as_a_scenario_with_the_same_digest(
    tmp_path: pathlib.Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    scenarios = pytest.importorskip("simamqp.scenarios")
    out = tmp_path / "machine.yaml"
    monkeypatch.setenv("SIMAMQP_SCENARIO_OUT", str(out))
    plan = {
        "version": 1,
        "rules": [
            {"point": "enqueue", "action": "reorder", "window": 3, "name": "r1"},
            {"point": "ack", "action": "drop", "nth": 1, "name": "r2"},
        ],
    }
    machine = _run_steps(5, plan)
    result = scenarios.run_scenario(scenarios.load(out))
    assert result.passed, result.failures
    assert result.digests == {"default": machine.broker.trace.digest()}


def test_a_held_route_that_loses_one_queue_to_a_restart_still_routes_to_the_others() -> None:
    """Found in CI: a route delayed by a fault, one of its two queues (transient) gone with a
    restart; the release loses that copy (``fault-lost``) and routes to the durable queue. The
    ledger took the first loss for the whole message and refused the route that followed."""
    state = BrokerStateMachine()
    plan = {
        "version": 1,
        "rules": [
            {"point": "publish", "action": "close_channel", "max_count": 1, "name": "r1"},
            {"point": "route", "action": "delay", "delay": 1.0, "name": "r2"},
        ],
    }
    state.setup(
        seed=0,
        args=({}, {}),
        durable=(False, True),
        bindings=("a.a.a", "a.a.a"),
        plan=plan,
        consumers=[("q0", False, 0)],
    )
    state.publish(body=b"", count=2, direct=None, key="a.a.a", mandatory=False, persistent=False)
    state.ledger_agrees_with_engine()
    state.disrupt(kind="restart", queue="q0")
    state.ledger_agrees_with_engine()
    state.advance(seconds=1.0)
    state.ledger_agrees_with_engine()
    state.rabbitmq_possible_faults_lose_nothing()
    assert state.broker.queue("q1").messages_ready == 1
    state.teardown()


def _stream_machine(plan_rules: list[dict[str, object]]) -> BrokerStateMachine:
    state = BrokerStateMachine()
    state.setup(
        seed=0,
        queues=(("classic", {}, False), ("classic", {"x-message-ttl": 0}, False)),
        bindings=("a", ""),
        plan={"version": 1, "rules": plan_rules},
        consumers=[("q0", False, 0)],
        stream={"x-queue-type": "stream"},
    )
    state.ledger_agrees_with_engine()
    return state


def test_a_delayed_stream_delivery_keeps_the_reader_within_its_prefetch() -> None:
    """Found by the machine: deliveries held by a deliver ``delay`` did not take credit, so
    the stream sent every chunk and its consumer held more than its prefetch."""
    state = _stream_machine([{"point": "deliver", "action": "delay", "delay": 0.0, "name": "r1"}])
    state.read_stream(offset="47s", prefetch=2)
    state.publish(body=b"", count=6, direct="s0", key="", mandatory=False, persistent=False)
    state.ledger_agrees_with_engine()
    state.settle(how="ack", index=18)
    state.ledger_agrees_with_engine()
    state.teardown()
    (consumer,) = [
        c for ch, _ in state.consumers for c in ch.consumers.values() if c.queue.name == "s0"
    ]
    assert consumer.unacked == 2


def test_an_overflow_fault_on_the_stream_after_a_delayed_publish() -> None:
    """Found by the machine: the overflow fault crashed on a stream inside the delayed
    publish's timer."""
    state = _stream_machine(
        [
            {"point": "publish", "action": "delay", "delay": 0.0, "name": "r1"},
            {"point": "enqueue", "action": "overflow", "name": "r2"},
        ]
    )
    state.publish(body=b"", count=2, direct=None, key="a", mandatory=False, persistent=False)
    state.ledger_agrees_with_engine()
    state.teardown()
    assert state.broker.queue("s0").messages_ready == 0  # a stream reports 0 ready
    assert len(state.ledger.stream_logs["s0"]) == 2


def test_a_failing_timer_fails_the_rule_before_its_publish_is_counted() -> None:
    """A timer that raises fires at the start of the next publish: the ledger must not count
    that publish (it never reached the broker), and teardown must not replace the error."""
    state = _stream_machine([{"point": "publish", "action": "delay", "delay": 5.0, "name": "r1"}])

    def boom() -> None:
        raise RuntimeError("timer failed")

    broker = state.broker
    broker.scheduler.call_at(broker.clock.now(), boom, label="test")
    with pytest.raises(RuntimeError, match="timer failed"):
        try:
            state.publish(body=b"", count=2, direct=None, key="", mandatory=False, persistent=False)
        finally:
            state.teardown()  # as Hypothesis calls it: skipped, the RuntimeError stands
    assert state.ledger.client_publishes == 0
    state.ledger_agrees_with_engine()
    state.publish(body=b"", count=1, direct=None, key="", mandatory=False, persistent=False)
    state.ledger.client_publishes += 1  # a miscount: teardown outside a failure must see it
    with pytest.raises(LedgerError, match="2 basic_publish calls but 1 publish events"):
        state.teardown()
