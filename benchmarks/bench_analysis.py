"""Row 11: histories and guarantee checkers over a 100k-message trace."""

from __future__ import annotations

import simamqp
from simamqp.analysis import build_histories, check_delivery, check_fifo, check_processing

from ._util import Row, best_of, timed


def recorded_broker(n: int) -> simamqp.Broker:
    """``n`` messages published in confirm mode, delivered to a consumer and acked, with the
    whole trace kept (what a test or a replay file hands the checkers)."""
    broker = simamqp.Broker(seed=1, trace="full")
    conn = broker.connect()
    publisher = conn.channel()
    publisher.queue_declare("q")
    publisher.confirm_select()
    consumer = conn.channel()
    consumer.basic_qos(0, 100, False)
    consumer.basic_consume("q", consumer_tag="c")
    for tag in range(1, n + 1):
        publisher.basic_publish(b"m%d" % (tag - 1), "", "q")
        consumer.basic_ack(tag)
    conn.outbox.clear()
    return broker


def check_all(broker: simamqp.Broker, ledger: list[str]) -> None:
    histories = build_histories(broker)
    assert check_delivery(histories, "q", guarantee="exactly-once").valid
    assert check_processing(ledger, histories, queue="q").valid
    assert check_fifo(histories, "q").valid


def row_analysis(quick: bool) -> list[Row]:
    n = 20_000 if quick else 100_000
    broker = recorded_broker(n)
    events = len(broker.trace)
    ledger = [f"m{i}" for i in range(n)]
    build = best_of(lambda: timed(lambda: build_histories(broker)), 3)
    total = best_of(lambda: timed(lambda: check_all(broker, ledger)), 3)
    return [
        Row(
            11,
            f"histories + 3 checkers, {n // 1000}k messages",
            f"{total:.2f} s",
            "< 1 s" if n == 100_000 else "(quick)",
            total < 1.0 if n == 100_000 else None,
            f"{events} events; build_histories {build:.2f} s, then delivery (exactly-once), "
            f"ledger and FIFO checks; O(events)",
            extra={"seconds": total, "build": build, "events": events},
        )
    ]
