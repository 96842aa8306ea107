"""Row 8: Hypothesis examples per second for properties of rpcbackend over simamqp.

Runs the RPC property tests in tests/property/ when they exist (their Hypothesis statistics
give examples and seconds per phase); otherwise, and always as a reference, a representative
property: a fresh broker per example, a client and a worker backend, a random batch of
results (states and values) sent and collected in arrival order.
"""

from __future__ import annotations

import re
import subprocess
import sys
import time
import uuid
from pathlib import Path

from ._util import Row

ROOT = Path(__file__).resolve().parent.parent


def representative_property(examples: int) -> float:
    """Examples per second of one small rpcbackend property (fresh broker per example).

    Imports and Hypothesis's one-off work (its scan of local constants) happen in a warm-up
    run first; the timed run is Hypothesis generating examples and running the test body.
    """
    import kombu
    from hypothesis import HealthCheck, given, settings
    from hypothesis import strategies as st

    import simamqp
    from rpcbackend import Config, RPCBackend

    values = st.one_of(st.integers(), st.text(max_size=20), st.lists(st.integers(), max_size=4))
    batches = st.lists(
        st.tuples(values, st.sampled_from(["SUCCESS", "FAILURE"]), st.booleans()),
        min_size=1,
        max_size=5,
    )

    def results_arrive_in_order(batch: list[tuple[object, str, bool]]) -> None:
        broker = simamqp.Broker(seed=0, trace=False)
        config = Config(broker_url=broker.url)
        client, worker = RPCBackend(config), RPCBackend(config)
        try:
            ids = [uuid.uuid4().hex for _ in batch]
            with kombu.Connection(config.broker_url) as conn:
                producer = kombu.Producer(conn)
                for task_id in ids:
                    client.on_task_call(producer, task_id)
            reply_to = client.oid
            for task_id, (value, state, started) in zip(ids, batch, strict=True):
                request = {"reply_to": reply_to, "correlation_id": task_id}
                if started:
                    worker.store_result(task_id, None, "STARTED", request=request)
                result = value if state == "SUCCESS" else ValueError(str(value))
                worker.store_result(task_id, result, state, request=request)
            got = dict(client.iter_results(ids, timeout=5))
            for task_id, (value, state, _) in zip(ids, batch, strict=True):
                assert got[task_id]["status"] == state
                if state == "SUCCESS":
                    assert got[task_id]["result"] == value
        finally:
            client.close()
            worker.close()
            simamqp.unregister(broker.name or "")

    def run(n: int) -> float:
        test = settings(
            max_examples=n,
            deadline=None,
            database=None,
            derandomize=True,
            suppress_health_check=list(HealthCheck),
        )(given(batch=batches)(results_arrive_in_order))
        start = time.perf_counter()
        test()
        return time.perf_counter() - start

    run(5)
    return examples / run(examples)


_PHASE = re.compile(r"during (\w+) phase \(([\d.]+) seconds\):(.*?)(?=- during|\Z)", re.S)
_PASSING = re.compile(r"(\d+) passing examples?, (\d+) failing examples?, (\d+) invalid")


def property_suite(paths: list[Path]) -> tuple[int, float]:
    """(examples, seconds) over every Hypothesis test in ``paths``, from its statistics."""
    proc = subprocess.run(
        [
            sys.executable,
            "-m",
            "pytest",
            "-q",
            "-p",
            "no:cacheprovider",
            "--hypothesis-show-statistics",
            "-x",
            *map(str, paths),
        ],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=240,
        check=False,
    )
    if proc.returncode not in (0, 5):
        tail = (proc.stdout + proc.stderr)[-600:]
        raise RuntimeError(f"tests/property failed (exit {proc.returncode}):\n{tail}")
    examples, seconds = 0, 0.0
    for _phase, secs, body in _PHASE.findall(proc.stdout):
        match = _PASSING.search(body)
        if match:
            examples += sum(int(g) for g in match.groups())
            seconds += float(secs)
    return examples, seconds


def row_hypothesis(quick: bool) -> list[Row]:
    rate = representative_property(30 if quick else 200)
    rows = [
        Row(
            8,
            "Hypothesis examples/s, rpcbackend property (representative)",
            f"{rate:,.0f}/s",
            "",
            None,
            "fresh broker + 2 backends + 1-5 results per example",
            extra={"rate": rate},
        )
    ]
    suite = sorted(p for p in (ROOT / "tests" / "property").glob("test_*.py") if "rpc" in p.name)
    if not suite:
        rows.append(
            Row(
                8,
                "  tests/property RPC tests",
                "",
                "",
                None,
                skipped="not there yet (tests/property/test_*rpc*.py)",
            )
        )
    elif not quick:
        examples, seconds = property_suite(suite)
        rate = examples / seconds if seconds else 0.0
        names = ", ".join(p.name for p in suite)
        rows.append(
            Row(
                8,
                "  tests/property RPC tests",
                f"{rate:,.0f}/s",
                "",
                None,
                f"{examples} examples in {seconds:.2f} s ({names})",
                extra={"rate": rate},
            )
        )
    return rows
