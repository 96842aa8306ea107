"""Issue 11 cases 4 and 5: a fresh broker per Hypothesis example, and a failure report that
says honestly what reproduces the run (the seed only pins a single-threaded run).
"""

from __future__ import annotations

import re

import pytest

from simamqp.pytest_plugin import derive_seed
from simamqp.scenarios import load, run_scenario

HYPOTHESIS_TEST = """
from hypothesis import given, settings, strategies as st

BROKERS = []

@settings(max_examples=25, database=None, deadline=None)
@given(bodies=st.lists(st.binary(max_size=8), max_size=5))
def test_round_trip(sim_broker_factory, bodies):
    with sim_broker_factory() as broker:
        BROKERS.append(broker)
        with broker.connection() as conn:
            queue = conn.SimpleQueue("q")
            for body in bodies:
                queue.put(body, serializer="pickle")
        assert broker.queue("q").messages == len(bodies)

def test_every_example_had_its_own_broker():
    assert len(BROKERS) >= 2
    assert len({id(b) for b in BROKERS}) == len(BROKERS)
    assert len({b.seed for b in BROKERS}) == 1  # the test's seed, as sim_broker's
"""


def test_factory_gives_a_fresh_broker_per_hypothesis_example(pytester: pytest.Pytester) -> None:
    """Case 4: @given with sim_broker fails Hypothesis' function-scoped-fixture health check;
    the session-scoped factory passes it and gives every example a fresh broker."""
    pytester.makepyfile(test_hyp=HYPOTHESIS_TEST)
    result = pytester.runpytest("-p", "no:randomly")
    result.assert_outcomes(passed=2)


def test_hypothesis_failure_report_describes_the_failing_examples_broker(
    pytester: pytest.Pytester,
) -> None:
    pytester.makepyfile(
        test_hyp="""
        from hypothesis import given, settings, strategies as st

        @settings(max_examples=50, database=None, deadline=None)
        @given(n=st.integers(min_value=0, max_value=10))
        def test_small(sim_broker_factory, n):
            with sim_broker_factory() as broker:
                with broker.connection() as conn:
                    queue = conn.SimpleQueue("q")
                    for i in range(n):
                        queue.put(i)
                assert broker.queue("q").messages < 3
        """
    )
    result = pytester.runpytest("--simamqp-seed=5")
    result.assert_outcomes(failed=1)
    node = "test_hyp.py::test_small"
    result.stdout.fnmatch_lines(
        [
            "*- simamqp -*",
            f"seed: {derive_seed(5, node)} (--simamqp-seed=5, node id {node})",
            "replay scenario: *.yaml",
            "reproduce: pytest *--simamqp-seed=5 (one thread used the broker*",
        ]
    )
    path = re.search(r"replay scenario: (\S+)", result.stdout.str())
    assert path
    scenario = load(path.group(1))
    replay = run_scenario(scenario)
    assert replay.passed, replay.failures


def test_report_says_the_seed_reproduces_a_single_threaded_run(pytester: pytest.Pytester) -> None:
    pytester.makepyfile(
        """
        def test_one_thread(sim_broker):
            with sim_broker.connection() as conn:
                conn.SimpleQueue("q").put("x")
            assert False
        """
    )
    result = pytester.runpytest("--simamqp-seed=2")
    result.assert_outcomes(failed=1)
    result.stdout.fnmatch_lines(
        ["reproduce: pytest 'test_*.py::test_one_thread' --simamqp-seed=2 (one thread*"]
    )


def test_report_says_only_the_replay_file_reproduces_a_threaded_run(
    pytester: pytest.Pytester,
) -> None:
    """Case 5: threaded runs are not reproducible from the seed (the OS schedules the
    threads); the report must not claim they are, and points at the replay file."""
    pytester.makepyfile(
        """
        import threading

        def test_two_threads(sim_broker):
            def publish():
                with sim_broker.connection() as conn:
                    conn.SimpleQueue("q").put("from a thread")
            thread = threading.Thread(target=publish)
            thread.start()
            thread.join(10)
            with sim_broker.connection() as conn:
                conn.SimpleQueue("q").put("from the test")
            assert False
        """
    )
    # In a subprocess: pytester's in-process runs re-import kombu, which a second thread
    # then sees half-forgotten (see tests/plugin/conftest.py).
    result = pytester.runpytest_subprocess()
    result.assert_outcomes(failed=1)
    out = result.stdout.str()
    result.stdout.fnmatch_lines(
        ["reproduce: 2 threads used the broker, *a re-run may differ; the replay scenario*"]
    )
    assert "--simamqp-seed=0 (one thread" not in out
    path = re.search(r"replay scenario: (\S+)", out)
    assert path
    assert run_scenario(load(path.group(1))).passed


HYPOTHESIS_FAILING = """
from hypothesis import given, settings, strategies as st
from hypothesis.database import DirectoryBasedExampleDatabase

@settings(max_examples=50, deadline=None{database})
@given(n=st.integers(min_value=0, max_value=10))
def test_small(sim_broker_factory, n):
    with sim_broker_factory() as broker:
        with broker.connection() as conn:
            queue = conn.SimpleQueue("q")
            for i in range(n):
                queue.put(i)
        assert broker.queue("q").messages < 3
"""


def test_hypothesis_report_names_the_example_database(pytester: pytest.Pytester) -> None:
    """The seed does not choose Hypothesis' examples: a re-run replays the failing one from
    Hypothesis' example database, and the reproduce line says so (and where it is)."""
    # An explicit database: Hypothesis' "ci" profile (CI=true) turns the default one off.
    database = ', database=DirectoryBasedExampleDatabase(".hypothesis/examples")'
    pytester.makepyfile(test_hyp=HYPOTHESIS_FAILING.format(database=database))
    result = pytester.runpytest("--simamqp-seed=5")
    result.assert_outcomes(failed=1)
    result.stdout.fnmatch_lines(
        ["reproduce: pytest *--simamqp-seed=5 *Hypothesis*example database*.hypothesis*"]
    )


def test_hypothesis_report_without_a_database_says_what_replays(
    pytester: pytest.Pytester,
) -> None:
    pytester.makepyfile(test_hyp=HYPOTHESIS_FAILING.format(database=", database=None"))
    result = pytester.runpytest("--simamqp-seed=5")
    result.assert_outcomes(failed=1)
    result.stdout.fnmatch_lines(
        ["reproduce: *Hypothesis*example database is off*@reproduce_failure*"]
    )
