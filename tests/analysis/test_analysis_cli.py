"""simamqp history / check / diagram / explore."""

from __future__ import annotations

import json
import xml.etree.ElementTree as ET
from pathlib import Path

import pytest

import simamqp
from simamqp.cli import main

ROOT = Path(__file__).parents[2]
RESTART = str(ROOT / "scenarios" / "restart" / "durable-vs-transient.yaml")


def test_history_of_a_replay_file(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["history", RESTART]) == 0
    out = capsys.readouterr().out
    assert "msg 4 body='gone'" in out and "lost in lose: queue deleted (restart)" in out
    assert "restart: survived in keep" in out


def test_history_as_json_for_one_message(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["history", "--json", "--msg", "1", RESTART]) == 0
    doc = json.loads(capsys.readouterr().out)
    assert [m["msg"] for m in doc["messages"]] == [1]
    assert doc["messages"][0]["body"] == "persistent" and doc["complete"]


def _recorded(tmp_path: Path, *, lose: bool) -> Path:
    broker = simamqp.Broker(seed=1, trace="full")
    if lose:
        broker.faults.add(point="enqueue", action="drop", nth=2, name="lose")
    ch = broker.connect().channel()
    ch.queue_declare("q")
    for n in range(3):
        ch.basic_publish(b"m%d" % n, "", "q")
    while (got := ch.basic_get("q")) is not None:
        ch.basic_ack(got.delivery_tag)
    path = tmp_path / f"trace-{lose}.jsonl"
    path.write_text("\n".join(broker.trace.lines()) + "\n")
    return path


def test_check_exits_1_and_names_the_lost_message(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(["check", str(_recorded(tmp_path, lose=False)), "--queue", "q", "--fifo"]) == 0
    assert main(["check", str(_recorded(tmp_path, lose=True)), "--queue", "q"]) == 1
    out = capsys.readouterr().out
    # A recorded trace keeps bodies by their sha256: the lost message is named by id and hash.
    assert "INVALID" in out and "(msg 2): fault rule 'lose' (enqueue drop)" in out


def test_check_with_a_ledger(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    ledger = tmp_path / "ledger.txt"
    ledger.write_text("m0\nm2\nm2\n")
    trace = _recorded(tmp_path, lose=False)
    assert main(["check", str(trace), "--queue", "q", "--ledger", str(ledger)]) == 1
    out = capsys.readouterr().out
    assert "processing ledger of 'q' (at-least-once): INVALID" in out
    assert "lost (1):" in out and "(msg 2)" in out and "unexpected" not in out


def test_diagram_writes_svg_for_each_file(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    trace = _recorded(tmp_path, lose=True)
    assert main(["diagram", str(trace), RESTART, "-o", str(tmp_path / "out")]) == 0
    written = sorted((tmp_path / "out").glob("*.svg"))
    assert [p.name for p in written] == ["durable-vs-transient.svg", "trace-True.svg"]
    for path in written:
        assert ET.parse(path).getroot().tag == "{http://www.w3.org/2000/svg}svg"
    assert main(["diagram", str(trace), "-o", str(tmp_path / "one.svg")]) == 0
    assert "FAULT lose" in (tmp_path / "one.svg").read_text()


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["history", "nope.yaml"], "nope.yaml: no such file or folder"),
        (["diagram", "README.md"], "expected a scenario (.yaml) or a recorded trace (.jsonl)"),
        (["check", "README.md"], "the following arguments are required: --queue"),
    ],
)
def test_mistakes_are_one_line(
    argv: list[str], message: str, capsys: pytest.CaptureFixture[str]
) -> None:
    try:
        code = main(argv)
    except SystemExit as exit_:  # argparse's own usage errors
        code = int(exit_.code or 0)
    err = capsys.readouterr().err
    assert code == 2 and message in err and "Traceback" not in err


def test_a_broken_trace_file_is_a_one_line_error(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    bad = tmp_path / "bad.jsonl"
    bad.write_text('{"seq": 1, "kind": "restart"}\nnot json\n')
    assert main(["history", str(bad)]) == 2
    assert "bad.jsonl: line 2: not a JSON trace event" in capsys.readouterr().err


def test_explore_runs_pytest_with_exploration_on(pytester: pytest.Pytester) -> None:
    pytester.makepyfile(
        test_it="""
        import pytest

        @pytest.mark.simamqp_explore(seeds=50, points=("enqueue",), actions=("delay",))
        def test_it(sim_broker):
            pass
        """
    )
    result = pytester.run("simamqp", "explore", "test_it.py", "--seeds", "3", "--db", "none")
    assert result.ret == 0
    result.stdout.fnmatch_lines(["*3 passed*"])
