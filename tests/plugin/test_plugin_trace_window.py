"""The failure report and replay files with more events than the default trace window keeps
(issue 13): recording asks for full retention, so the replay still matches the digest; without
recording the report still has the digest and the last events."""

from __future__ import annotations

import re

import pytest

from simamqp.core.trace import DEFAULT_WINDOW
from simamqp.scenarios import load, run_scenario

MESSAGES = 500  # 5 events each (publish, route, enqueue, get, ack): past 2 x the window

BUSY_FAILING = f"""
def test_busy(sim_broker):
    ch = sim_broker.connect().channel()
    ch.queue_declare("jobs")
    for n in range({MESSAGES}):
        ch.basic_publish(b"%d" % n, "", "jobs")
        ch.basic_ack(ch.basic_get("jobs").delivery_tag)
    assert sim_broker.trace.mode == MODE
    assert False, "fail on purpose"
"""


def test_replay_of_a_trace_longer_than_the_window_has_the_same_digest(
    pytester: pytest.Pytester,
) -> None:
    assert MESSAGES * 5 > 2 * DEFAULT_WINDOW
    pytester.makepyfile(test_busy=BUSY_FAILING.replace("MODE", "'full'"))
    result = pytester.runpytest("-p", "no:cacheprovider")
    result.assert_outcomes(failed=1)
    out = result.stdout.str()
    digest = re.search(r"trace digest: (v2:[0-9a-f]{64}) \((\d+) events\)", out)
    path = re.search(r"replay scenario: (\S+)", out)
    assert digest and path, out
    assert int(digest.group(2)) > 2 * DEFAULT_WINDOW
    replay = run_scenario(load(path.group(1)))
    assert replay.passed, replay.failures
    assert replay.digests["default"] == digest.group(1)


def test_without_recording_the_report_uses_the_window(pytester: pytest.Pytester) -> None:
    pytester.makepyfile(test_busy=BUSY_FAILING.replace("MODE", "'window'"))
    result = pytester.runpytest("-p", "no:cacheprovider", "--simamqp-no-record")
    result.assert_outcomes(failed=1)
    result.stdout.fnmatch_lines(
        [
            "trace digest: * (2503 events)",
            "replay scenario: not recorded (--simamqp-no-record)",
            "last 15 trace events:",
            "*#2503 * ack *",
        ]
    )
