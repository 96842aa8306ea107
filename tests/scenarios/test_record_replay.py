"""Record mode: what a program did to a broker replays, as a scenario, to the same digest."""

from __future__ import annotations

import simamqp
from simamqp.scenarios import Recorder, dump, load_text, run_scenario


def _replay(recorder: Recorder) -> tuple[str, list[str]]:
    scenario = load_text(dump(recorder.scenario("recorded")), "recorded.yaml")
    result = run_scenario(scenario)
    return result.digests["default"], result.failures


def test_kombu_session_with_timers_and_faults_replays_to_the_same_digest() -> None:
    broker = simamqp.Broker(seed=99)
    recorder = Recorder(broker)
    broker.faults.add(point="enqueue", action="duplicate", queue="work", nth=2)
    with simamqp._broker.temporary(broker), broker.connection() as conn:
        channel = conn.channel()
        channel.queue_declare(
            "work",
            durable=True,
            auto_delete=False,
            arguments={"x-message-ttl": 3000, "x-dead-letter-exchange": "dead"},
        )
        producer = conn.Producer(channel)
        for n in range(4):
            producer.publish({"n": n}, routing_key="work", headers={"attempt": n})
        queue = conn.SimpleQueue(
            "work",
            channel=channel,
            queue_args={"x-message-ttl": 3000, "x-dead-letter-exchange": "dead"},
        )
        first = queue.get(timeout=1)
        first.reject(requeue=True)
        queue.get(timeout=1).ack()
        broker.advance(5)  # the rest expire
        producer.publish(b"\xff\x00binary", routing_key="work", content_type="application/x-raw")
        channel.basic_get("work", no_ack=True)
    assert recorder.steps
    digest, failures = _replay(recorder)
    assert failures == []
    assert digest == broker.trace.digest()


def test_direct_core_calls_replay() -> None:
    broker = simamqp.Broker(seed=5)
    recorder = Recorder(broker)
    conn = broker.connect()
    ch = conn.channel()
    ch.queue_declare("", exclusive=True)  # a generated name: comes from the seed
    ch.exchange_declare("x", "topic")
    ch.basic_publish(b"m", "missing-exchange")  # closes the channel: 404
    ch2 = conn.channel()
    ch2.basic_qos(0, 5, False)
    broker.restart()
    digest, failures = _replay(recorder)
    assert failures == []
    assert digest == broker.trace.digest()
    errors = [s for s in recorder.steps if "error" in (next(iter(s.values())) or {})]
    assert len(errors) == 1


def test_mismatch_shows_a_readable_trace_diff() -> None:
    broker = simamqp.Broker(seed=1)
    recorder = Recorder(broker)
    ch = broker.connect().channel()
    ch.queue_declare("q")
    ch.basic_publish(b"one", "", "q")
    data = recorder.scenario("edited")
    data["steps"][-1]["publish"]["body"] = "two"  # the file no longer matches the recording
    result = run_scenario(load_text(dump(data), "edited.yaml"))
    assert not result.passed
    text = "\n".join(result.failures)
    assert "trace differs:" in text
    assert "--- expected trace" in text and "+++ actual trace" in text
    assert "trace digest: expected" in text
