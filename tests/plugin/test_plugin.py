"""The pytest plugin, exercised the way users meet it: through pytester runs."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from simamqp.pytest_plugin import derive_seed
from simamqp.scenarios import load, run_scenario

SEED_LINE = re.compile(r"SEED (\S+) (\d+)")


def _seeds(result: pytest.RunResult) -> dict[str, int]:
    return {m.group(1): int(m.group(2)) for m in SEED_LINE.finditer(result.stdout.str())}


SEED_PRINTER = """
import pytest

@pytest.mark.parametrize("n", range(4))
def test_seed(sim_broker, n, request):
    print(f"SEED {request.node.nodeid} {sim_broker.seed}")
"""


def test_fixture_gives_a_fresh_registered_broker_per_test(pytester: pytest.Pytester) -> None:
    pytester.makepyfile(
        """
        import simamqp

        urls = []

        def test_one(sim_broker):
            sim_broker.connection().SimpleQueue("q").put("x")
            assert sim_broker.queue("q").messages_ready == 1
            assert simamqp.get_broker(sim_broker.name, create=False) is sim_broker
            urls.append(sim_broker.url)

        def test_two(sim_broker):
            assert "q" not in sim_broker.queue_names()
            assert sim_broker.url not in urls
            assert sim_broker.clock.now() == 0.0
            assert len(sim_broker.trace) == 0
            assert sim_broker.faults.rules == []
        """
    )
    pytester.runpytest("-p", "no:cacheprovider").assert_outcomes(passed=2)


def test_broker_is_unregistered_after_the_test(pytester: pytest.Pytester) -> None:
    pytester.makepyfile(
        """
        import simamqp
        names = []

        def test_a(sim_broker):
            names.append(sim_broker.name)

        def test_b():
            assert names and names[0] not in simamqp.registered()
        """
    )
    pytester.runpytest().assert_outcomes(passed=2)


def test_seed_is_derived_from_base_seed_and_node_id(pytester: pytest.Pytester) -> None:
    pytester.makepyfile(test_seeds=SEED_PRINTER)
    first = _seeds(pytester.runpytest("-s"))
    again = _seeds(pytester.runpytest("-s", "-p", "no:randomly", "-k", "3 or 1"))
    other = _seeds(pytester.runpytest("-s", "--simamqp-seed=7"))
    assert len(first) == 4 and len(set(first.values())) == 4
    for node, seed in first.items():
        assert seed == derive_seed(0, node)
        assert other[node] == derive_seed(7, node) != seed
    for node, seed in again.items():
        assert first[node] == seed  # independent of which other tests ran


def test_xdist_workers_derive_the_same_seeds(pytester: pytest.Pytester) -> None:
    pytester.makepyfile(test_seeds=SEED_PRINTER)
    serial = _seeds(pytester.runpytest_subprocess("-s", "-p", "no:cacheprovider"))
    result = pytester.runpytest_subprocess(
        "-p", "xdist", "-n", "2", "-rA", "-p", "no:cacheprovider"
    )
    result.assert_outcomes(passed=4)
    # with -rA the captured stdout of passing tests is in the report sections
    parallel = _seeds(result)
    assert parallel == serial and len(serial) == 4


def test_marker_sets_seed_clock_and_faults(pytester: pytest.Pytester) -> None:
    pytester.makepyfile(
        """
        import pytest, simamqp

        @pytest.mark.simamqp(seed=1234)
        def test_seed(sim_broker):
            assert sim_broker.seed == 1234

        @pytest.mark.simamqp(clock="wall")
        def test_wall(sim_broker):
            assert isinstance(sim_broker.clock, simamqp.WallClock)

        @pytest.mark.simamqp(faults=[{"point": "enqueue", "action": "drop", "queue": "q"}])
        def test_faults(sim_broker):
            with sim_broker.connection() as conn:
                conn.SimpleQueue("q").put("lost")
            assert sim_broker.queue("q").messages_ready == 0
            assert sim_broker.trace.of_kind("fault")

        @pytest.mark.simamqp(colour="blue")
        def test_bad(sim_broker):
            pass
        """
    )
    result = pytester.runpytest("--strict-markers")
    result.assert_outcomes(passed=3, errors=1)
    result.stdout.fnmatch_lines(["*unknown argument(s)*colour*"])


def test_marker_is_registered(pytester: pytest.Pytester) -> None:
    result = pytester.runpytest("--markers")
    result.stdout.fnmatch_lines(["@pytest.mark.simamqp(seed=None, clock='virtual', faults=None)*"])


def test_celery_config_points_at_the_test_broker(pytester: pytest.Pytester) -> None:
    pytester.makepyfile(
        """
        def test_config(sim_celery_config, sim_broker):
            assert sim_celery_config["broker_url"] == sim_broker.url
            assert sim_celery_config["result_backend"] == "rpcbackend.RPCBackend"
        """
    )
    pytester.runpytest().assert_outcomes(passed=1)


FAILING = """
import pytest

def test_order(sim_broker):
    with sim_broker.connection() as conn:
        queue = conn.SimpleQueue("jobs")
        for n in range(3):
            queue.put({"n": n})
        got = []
        for _ in range(3):
            message = queue.get(timeout=1)
            got.append(message.payload["n"])
            message.ack()
        sim_broker.advance(2.5)
        assert got == [0, 2, 1]
"""


def test_failure_report_has_seed_trace_and_a_replayable_scenario(
    pytester: pytest.Pytester,
) -> None:
    pytester.makepyfile(test_fail=FAILING)
    result = pytester.runpytest("--simamqp-seed=3")
    result.assert_outcomes(failed=1)
    node = "test_fail.py::test_order"
    result.stdout.fnmatch_lines(
        [
            "*- simamqp -*",
            f"seed: {derive_seed(3, node)} (--simamqp-seed=3, node id {node})",
            "trace digest: * events)",
            "replay scenario: *.simamqp*test_fail.py_test_order-*.yaml",
            "  simamqp run *",
            "last * trace events:",
            "*ack connection=1*",
        ]
    )
    digest = re.search(r"trace digest: (v2:[0-9a-f]{64})", result.stdout.str())
    path = re.search(r"replay scenario: (\S+)", result.stdout.str())
    assert digest and path
    scenario = load(path.group(1))
    assert Path(path.group(1)).parent == pytester.path / ".simamqp"
    replay = run_scenario(scenario)
    assert replay.passed, replay.failures
    assert replay.digests["default"] == digest.group(1)


def test_passing_tests_write_nothing(pytester: pytest.Pytester) -> None:
    pytester.makepyfile("def test_ok(sim_broker):\n    sim_broker.run_until_idle()\n")
    pytester.runpytest().assert_outcomes(passed=1)
    assert not (pytester.path / ".simamqp").exists()


def test_scenario_dir_option(pytester: pytest.Pytester) -> None:
    pytester.makepyfile(test_fail=FAILING)
    target = pytester.path / "replays"
    pytester.runpytest(f"--simamqp-scenario-dir={target}").assert_outcomes(failed=1)
    assert len(list(target.glob("*.yaml"))) == 1


def test_tests_without_sim_broker_get_no_section(pytester: pytest.Pytester) -> None:
    pytester.makepyfile("def test_plain():\n    assert False\n")
    result = pytester.runpytest()
    result.assert_outcomes(failed=1)
    assert "- simamqp -" not in result.stdout.str()


def test_wall_clock_failure_replays_the_same_events(pytester: pytest.Pytester) -> None:
    pytester.makepyfile(
        """
        import pytest

        @pytest.mark.simamqp(clock="wall")
        def test_wall(sim_broker):
            with sim_broker.connection() as conn:
                conn.SimpleQueue("q").put("x")
            assert False
        """
    )
    result = pytester.runpytest()
    result.assert_outcomes(failed=1)
    path = re.search(r"replay scenario: (\S+)", result.stdout.str())
    assert path
    scenario = load(path.group(1))
    assert "events" in scenario.expect and "trace_digest" not in scenario.expect
    assert run_scenario(scenario).passed


def test_no_record_option(pytester: pytest.Pytester) -> None:
    pytester.makepyfile(test_fail=FAILING)
    result = pytester.runpytest("--simamqp-no-record")
    result.assert_outcomes(failed=1)
    result.stdout.fnmatch_lines(["replay scenario: not recorded (--simamqp-no-record)"])
    assert not (pytester.path / ".simamqp").exists()
