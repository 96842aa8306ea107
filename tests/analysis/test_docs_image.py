"""docs/images/ack-before-processing.svg is this test's picture: regenerate it with
``SIMAMQP_REGENERATE_DOCS=1 pytest tests/analysis/test_docs_image.py``."""

from __future__ import annotations

import os
import xml.etree.ElementTree as ET
from pathlib import Path

import simamqp
from simamqp.analysis import check_processing, sequence_diagram

IMAGE = Path(__file__).parents[2] / "docs" / "images" / "ack-before-processing.svg"


def ack_before_processing() -> tuple[simamqp.Broker, list[str]]:
    """Three jobs; a worker acks each on arrival and works once it holds two; the broker
    closes its connection at the third delivery (fault rule ``cut``), so the two jobs it held
    are gone; the restarted worker gets the third. Engine API with explicit consumer tags,
    so the picture is reproducible."""
    broker = simamqp.Broker(seed=1, trace="full")
    broker.faults.add(point="deliver", action="close_connection", nth=3, name="cut")
    publisher = broker.connect().channel()
    publisher.queue_declare("jobs", durable=True)
    publisher.confirm_select()
    for n in range(3):
        publisher.basic_publish(b"job-%d" % n, "", "jobs", properties={"delivery_mode": 2})
    processed: list[str] = []
    for worker in ("worker-1", "worker-2"):
        connection = broker.connect()
        channel = connection.channel()
        channel.basic_qos(0, 1, False)
        channel.basic_consume("jobs", consumer_tag=worker)
        held: list[str] = []
        while connection.is_open and connection.outbox:
            frame = connection.outbox.popleft()
            if type(frame).__name__ != "BasicDeliver":
                continue
            channel.basic_ack(frame.delivery_tag)  # acked on arrival...
            held.append(frame.message.body.decode())
            if len(held) == 2 and connection.is_open:
                processed += held  # ...worked on two at a time
                held.clear()
        if connection.is_open:
            processed += held  # idle: finish the batch (a closed worker forgot it)
    return broker, processed


def test_the_docs_image_is_the_current_picture() -> None:
    broker, processed = ack_before_processing()
    verdict = check_processing(processed, broker, queue="jobs", guarantee="at-least-once")
    assert verdict.keys("lost") == {"job-0", "job-1"}, verdict.report()
    lost_msgs = [m for f in verdict.lost for m in f.msgs]
    svg = sequence_diagram(
        broker, title="ack before processing: job-0 and job-1 lost", highlight=lost_msgs
    )
    root = ET.fromstring(svg)
    assert any("FAULT cut" in (t.text or "") for t in root.iter("{http://www.w3.org/2000/svg}text"))
    if os.environ.get("SIMAMQP_REGENERATE_DOCS"):
        IMAGE.parent.mkdir(exist_ok=True)
        IMAGE.write_text(svg + "\n", encoding="utf-8")
    assert IMAGE.read_text(encoding="utf-8") == svg + "\n", (
        "docs/images/ack-before-processing.svg is stale: SIMAMQP_REGENERATE_DOCS=1 pytest "
        + __file__
    )
