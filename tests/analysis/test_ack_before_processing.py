"""Acceptance: a consumer that acks before processing loses acked work when its connection is
closed; the ledger checker names the lost job, and fault exploration finds it within 50 seeds
without the test naming a fault, serially and under pytest-xdist, replaying a failure found in
one run first in the next through Hypothesis's example database."""

from __future__ import annotations

import re
import socket
import uuid
from pathlib import Path

import pytest
from _workers import publish_jobs, run_worker

import simamqp
from simamqp.analysis import check_processing

WORKERS = Path(__file__).with_name("_workers.py").read_text()
EXPLORED = """
import pytest
from simamqp.analysis import check_processing
from _workers import publish_jobs, run_worker

# Faults a real RabbitMQ can produce (no drops, no duplicates), at any point a consumer meets.
@pytest.mark.simamqp_explore(
    seeds=50,
    points=("enqueue", "deliver", "ack"),
    actions=("redeliver", "close_channel", "close_connection", "restart", "delay", "reorder"),
)
def test_every_job_is_processed(sim_broker):
    processed = []
    publish_jobs(sim_broker, 10)
    run_worker(sim_broker, processed, ack_first=ACK_FIRST)
    verdict = check_processing(processed, sim_broker, queue="jobs", guarantee="at-least-once")
    assert verdict.valid, verdict.report()
"""
FIRST = re.compile(r"first failing seed:\n\s+failing seed: explore-(\d+)")


@pytest.mark.parametrize("ack_first", [True, False])
def test_the_ledger_names_the_job_lost_by_acking_before_the_work(ack_first: bool) -> None:
    broker = simamqp.Broker(seed=5, trace="full")
    # The 7th delivery closes the worker's connection (320, as `rabbitmqctl close_connection`).
    broker.faults.add(point="deliver", action="close_connection", nth=7, name="cut")
    processed: list[str] = []
    publish_jobs(broker, 10)
    run_worker(broker, processed, ack_first=ack_first)
    verdict = check_processing(processed, broker, queue="jobs", guarantee="at-least-once")
    if not ack_first:
        assert verdict.valid, verdict.report()  # acked after the work: redelivered, not lost
        return
    assert not verdict.valid
    assert verdict.keys("lost") == {"job-0", "job-1"}
    detail = verdict.lost[0].detail
    assert "acked" in detail and "fault rule 'cut'" in detail, detail


def _explored(pytester: pytest.Pytester, *, ack_first: bool) -> None:
    pytester.makepyfile(_workers=WORKERS)
    pytester.makepyfile(test_explored=EXPLORED.replace("ACK_FIRST", str(ack_first)))


def _first_failing_seed(result: pytest.RunResult) -> int:
    found = FIRST.search(result.stdout.str())
    assert found, result.stdout.str()[-3000:]
    return int(found.group(1))


def test_exploration_finds_the_lost_job_within_50_seeds(pytester: pytest.Pytester) -> None:
    _explored(pytester, ack_first=True)
    result = pytester.runpytest("-p", "no:cacheprovider", "--simamqp-explore-db=none")
    outcomes = result.parseoutcomes()
    assert outcomes.get("failed", 0) >= 1 and outcomes["failed"] + outcomes["passed"] == 50
    first = _first_failing_seed(result)
    assert first < 50
    out = result.stdout.str()
    assert re.search(
        r"lost \(\d+\):\n\S*\s+'job-\d+' \(msg \d+\): delivered .* acked", out
    )  # the checker names the lost job
    assert "shrunk to" in out and "deterministic: yes" in out
    assert (
        f"reproduce: pytest 'test_explored.py::test_every_job_is_processed[explore-{first}]'" in out
    )
    # The reproduction line reproduces: that one seed fails again on its own.
    again = pytester.runpytest(
        "-p",
        "no:cacheprovider",
        "--simamqp-explore-db=none",
        f"test_explored.py::test_every_job_is_processed[explore-{first}]",
    )
    again.assert_outcomes(failed=1)


def test_exploration_passes_a_worker_that_acks_after_its_work(pytester: pytest.Pytester) -> None:
    _explored(pytester, ack_first=False)
    result = pytester.runpytest("-p", "no:cacheprovider", "--simamqp-explore-db=none")
    result.assert_outcomes(passed=50)


def test_xdist_finds_the_same_first_failing_seed(pytester: pytest.Pytester) -> None:
    _explored(pytester, ack_first=True)
    serial = pytester.runpytest_subprocess("-p", "no:cacheprovider", "--simamqp-explore-db=none")
    spread = pytester.runpytest_subprocess(
        "-p", "no:cacheprovider", "--simamqp-explore-db=none", "-n", "2"
    )
    assert "gw0" in spread.stdout.str() or "2 workers" in spread.stdout.str()
    assert _first_failing_seed(serial) == _first_failing_seed(spread)
    assert serial.parseoutcomes() == spread.parseoutcomes()


def _collected_order(result: pytest.RunResult) -> list[str]:
    return re.findall(r"\[(explore-\d+)\]", result.stdout.str())


def test_a_failure_found_in_one_run_is_replayed_first_by_the_next(
    pytester: pytest.Pytester,
) -> None:
    _explored(pytester, ack_first=True)
    db = f"--simamqp-explore-db={pytester.path / 'examples'}"
    before = pytester.runpytest("-p", "no:cacheprovider", db, "--collect-only", "-q")
    assert _collected_order(before)[0] == "explore-0"
    first = pytester.runpytest("-p", "no:cacheprovider", db, "--simamqp-explore=50")
    failing = _first_failing_seed(first)
    failed_ids = set(re.findall(r"FAILED \S+\[(explore-\d+)\]", first.stdout.str()))
    after = pytester.runpytest("-p", "no:cacheprovider", db, "--collect-only", "-q")
    order = _collected_order(after)
    assert set(order[: len(failed_ids)]) == failed_ids
    assert order[0] == f"explore-{failing}"
    # Under xdist the controller reads the database once and hands it to the workers.
    spread = pytester.runpytest_subprocess("-p", "no:cacheprovider", db, "-n", "2", "-x")
    assert spread.parseoutcomes().get("failed", 0) >= 1


def _redis_reachable() -> bool:
    try:
        with socket.create_connection(("127.0.0.1", 6379), timeout=1) as sock:
            sock.sendall(b"PING\r\n")
            return sock.recv(7).startswith(b"+PONG")
    except OSError:
        return False


@pytest.mark.skipif(not _redis_reachable(), reason="no Redis server on 127.0.0.1:6379")
def test_the_shared_database_can_be_a_redis_server(pytester: pytest.Pytester) -> None:
    redis = pytest.importorskip("redis")
    prefix = f"simamqp-test-{uuid.uuid4().hex}:"
    url = f"redis://127.0.0.1:6379/0?key_prefix={prefix}"
    _explored(pytester, ack_first=True)
    try:
        first = pytester.runpytest("-p", "no:cacheprovider", f"--simamqp-explore-db={url}")
        failing = _first_failing_seed(first)
        # Another "machine": a fresh folder, the same Redis database.
        after = pytester.runpytest(
            "-p", "no:cacheprovider", f"--simamqp-explore-db={url}", "--collect-only", "-q"
        )
        assert _collected_order(after)[0] == f"explore-{failing}"
    finally:
        client = redis.Redis.from_url("redis://127.0.0.1:6379/0")
        for key in client.scan_iter(match=prefix + "*"):
            client.delete(key)
