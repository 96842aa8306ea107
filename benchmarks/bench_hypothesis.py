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


_TEST = re.compile(r"^(tests/\S+::\S+):\s*$", re.M)
_PHASE = re.compile(r"during (\w+) phase \(([\d.]+) seconds\):(.*?)(?=- during|\Z)", re.S)
_COUNTS = re.compile(
    r"(\d+) passing(?: examples?)?, (\d+) failing(?: examples?)?,(?: and)? (\d+) invalid"
)


def property_suite(paths: list[Path]) -> dict[str, tuple[int, float]]:
    """Test id -> (examples, seconds) of every Hypothesis test in ``paths`` (its statistics)."""
    proc = subprocess.run(
        [
            sys.executable,
            "-m",
            "pytest",
            "-q",
            "-p",
            "no:cacheprovider",
            "--hypothesis-show-statistics",
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
    stats: dict[str, tuple[int, float]] = {}
    heads = list(_TEST.finditer(proc.stdout))
    for i, head in enumerate(heads):
        end = heads[i + 1].start() if i + 1 < len(heads) else len(proc.stdout)
        examples, seconds = 0, 0.0
        for _phase, secs, body in _PHASE.findall(proc.stdout[head.end() : end]):
            match = _COUNTS.search(body)
            if match:
                examples += sum(int(g) for g in match.groups())
                seconds += float(secs)
        stats[head.group(1)] = (examples, seconds)
    return stats


def _rate(stats: dict[str, tuple[int, float]]) -> tuple[int, float, float]:
    examples = sum(e for e, _ in stats.values())
    seconds = sum(t for _, t in stats.values())
    return examples, seconds, examples / seconds if seconds else 0.0


def row_hypothesis(quick: bool) -> list[Row]:
    rate = representative_property(30 if quick else 200)
    rows = [
        Row(
            8,
            "Hypothesis examples/s, rpcbackend over simamqp (representative)",
            f"{rate:,.0f}/s",
            "",
            None,
            "benchmarks' own property: fresh broker + 2 backends + 1-5 results per example",
            extra={"rate": rate},
        ),
    ]
    suite = sorted((ROOT / "tests" / "property").glob("test_*.py"))
    if not suite:
        rows.append(Row(8, "  tests/property", "", "", None, skipped="not there yet"))
        return rows
    if quick:
        return rows
    stats = property_suite(suite)
    rpc = {k: v for k, v in stats.items() if "rpc" in k.lower()}
    if rpc:
        examples, seconds, rpc_rate = _rate(rpc)
        rows.append(
            Row(
                8,
                "  tests/property, RPC tests",
                f"{rpc_rate:,.0f}/s",
                "",
                None,
                f"{examples} examples in {seconds:.2f} s: "
                + ", ".join(k.split("::")[-1] for k in rpc),
                extra={"rate": rpc_rate},
            )
        )
    else:
        rows.append(
            Row(
                8,
                "  tests/property, RPC tests",
                "",
                "",
                None,
                skipped="none yet (no test id with 'rpc')",
            )
        )
    examples, seconds, all_rate = _rate(stats)
    rows.append(
        Row(
            8,
            "  tests/property, all Hypothesis tests",
            f"{all_rate:,.0f}/s",
            "",
            None,
            f"{examples} examples in {seconds:.2f} s over {len(stats)} tests",
            extra={"rate": all_rate},
        )
    )
    return rows
