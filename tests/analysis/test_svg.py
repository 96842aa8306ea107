"""Sequence diagrams: valid, self-contained SVG; faults marked; written for failing tests."""

from __future__ import annotations

import re
import xml.etree.ElementTree as ET
from pathlib import Path

import pytest

import simamqp
from simamqp.analysis import sequence_diagram

SVG = "{http://www.w3.org/2000/svg}"


def _texts(root: ET.Element) -> list[str]:
    return [t.text or "" for t in root.iter(f"{SVG}text")]


def test_lanes_arrows_and_the_fault_are_drawn() -> None:
    broker = simamqp.Broker(seed=1, trace="full")
    broker.faults.add(point="deliver", action="close_connection", nth=2, name="cut")
    publisher = broker.connect().channel()
    publisher.queue_declare("jobs")
    consumer = broker.connect().channel()
    consumer.basic_consume("jobs", consumer_tag="worker")
    for n in range(3):
        publisher.basic_publish(b"job-%d" % n, "", "jobs")
    broker.run_until_idle()
    root = ET.fromstring(sequence_diagram(broker, title="cut"))
    assert root.tag == f"{SVG}svg"
    texts = _texts(root)
    assert "jobs" in texts and "exchange (default)" in texts
    assert any(t.startswith("c2/ch1 worker") for t in texts)
    assert "publisher c1/ch1" in texts
    assert any("FAULT cut: deliver close_connection" in t for t in texts)
    assert any(t.startswith("connection-closed conn 2: 320") for t in texts)
    kinds = [g.get("class") for g in root.iter(f"{SVG}g")]
    assert "event publish" in kinds and "event deliver" in kinds and "event fault" in kinds
    # Arrows are lines with an arrow head.
    assert any(line.get("marker-end") for line in root.iter(f"{SVG}line"))


def test_names_are_escaped() -> None:
    broker = simamqp.Broker(seed=2, trace="full")
    ch = broker.connect().channel()
    name = 'a<b>&"c"'
    ch.queue_declare(name)
    ch.basic_publish(b"<x>&", "", name)
    root = ET.fromstring(sequence_diagram(broker, title="t<&>"))
    assert name in _texts(root)
    assert root.find(f"{SVG}title").text == "t<&>"


def test_a_long_trace_keeps_its_faults_and_latest_events() -> None:
    broker = simamqp.Broker(seed=3, trace="full")
    broker.faults.add(point="enqueue", action="duplicate", nth=5, name="early")
    ch = broker.connect().channel()
    ch.queue_declare("q")
    for n in range(300):
        ch.basic_publish(b"%d" % n, "", "q")
    root = ET.fromstring(sequence_diagram(broker, max_events=50))
    texts = _texts(root)
    assert any("FAULT early" in t for t in texts)
    assert "left out" in texts[0]
    assert len(list(root.iter(f"{SVG}g"))) == 50


def test_a_failing_test_gets_its_diagram_written_and_named_in_the_report(
    pytester: pytest.Pytester,
) -> None:
    pytester.makepyfile(
        """
        import pytest

        @pytest.mark.simamqp(faults=[{"point": "enqueue", "action": "drop", "nth": 2,
                                      "name": "lose-second"}])
        def test_fails(sim_broker):
            q = sim_broker.connection().SimpleQueue("jobs")
            q.put("one")
            q.put("two")
            assert sim_broker.queue("jobs").messages_ready == 2
        """
    )
    result = pytester.runpytest("-p", "no:cacheprovider")
    result.assert_outcomes(failed=1)
    found = re.search(r"sequence diagram: (\S+\.svg)", result.stdout.str())
    assert found, result.stdout.str()
    root = ET.parse(Path(found.group(1))).getroot()
    assert root.tag == f"{SVG}svg"
    assert any("FAULT lose-second: enqueue drop" in t for t in _texts(root))
