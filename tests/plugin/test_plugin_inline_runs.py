"""A user's own pytester tests: several in-process (inline) runs in one pytest process.

pytester's ``runpytest()`` snapshots ``sys.modules`` and restores it after each run, but a package
that was in the snapshot keeps the attributes the run set on it (``kombu.messaging``, the lazily
loaded ``kombu.Connection``). With simamqp installed its plugin is loaded in every pytest process,
and it imports ``kombu``: if kombu's submodules were then first imported inside a run, the next
run would mix fresh kombu classes with the previous run's (``isinstance(conn, Connection)`` false:
"'Connection' object has no attribute 'exchange_declare'"). The outer run is a subprocess so that
what this suite imported before cannot hide it: there, only pytest and its plugins ran first.
"""

from __future__ import annotations

import pytest

USER_TESTS = '''
INNER_SIM = """
def test_sim(sim_broker):
    with sim_broker.connection() as conn:
        queue = conn.SimpleQueue("q")
        queue.put("x")
        assert queue.get(timeout=1).payload == "x"
"""

INNER_KOMBU = """
from kombu.connection import Connection

def test_memory():
    with Connection("memory://") as conn:
        queue = conn.SimpleQueue("q")
        queue.put("x")
        assert queue.get(timeout=1).payload == "x"
"""

INNER_URL = """
import kombu
import simamqp

def test_url():
    simamqp.register("inline", simamqp.Broker(seed=1))
    try:
        with kombu.Connection("simamqp://inline") as conn:
            producer = conn.Producer()
            producer.publish("x", routing_key="q", declare=[kombu.Queue("q")])
            assert simamqp.get_broker("inline").queue("q").messages_ready == 1
    finally:
        simamqp.unregister("inline")
"""


def test_first_inline_runs(pytester):
    pytester.makepyfile(test_inner_sim=INNER_SIM, test_inner_kombu=INNER_KOMBU,
                        test_inner_url=INNER_URL)
    pytester.runpytest("-p", "no:cacheprovider").assert_outcomes(passed=3)


def test_later_inline_runs(pytester):
    pytester.makepyfile(test_inner_sim=INNER_SIM, test_inner_kombu=INNER_KOMBU,
                        test_inner_url=INNER_URL)
    for _ in range(2):
        pytester.runpytest("-p", "no:cacheprovider").assert_outcomes(passed=3)
'''


def test_repeated_inline_runs_share_one_set_of_kombu_classes(pytester: pytest.Pytester) -> None:
    pytester.makepyfile(test_user=USER_TESTS)
    result = pytester.runpytest_subprocess("-p", "pytester", "-p", "no:cacheprovider")
    result.assert_outcomes(passed=2)
