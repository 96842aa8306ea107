"""Row 11: histories and guarantee checkers over a 100k-message trace.

Single-threaded and CPU-bound: timed in CPU time of the process (``time.process_time``), as
the engine rows are, so other load on a shared machine does not count.
"""

from __future__ import annotations

import gc
import time
from collections.abc import Callable

import simamqp
from simamqp.analysis import (
    Histories,
    build_histories,
    check_delivery,
    check_fifo,
    check_processing,
)

from ._util import Row, best_of


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


def timed(fn: Callable[[], object]) -> float:
    """CPU seconds ``fn`` takes."""
    gc.collect()
    start = time.process_time()
    fn()
    return time.process_time() - start


def check_all(histories: Histories, ledger: list[str]) -> None:
    assert check_delivery(histories, "q", guarantee="exactly-once").valid
    assert check_processing(ledger, histories, queue="q").valid
    assert check_fifo(histories, "q").valid


def row_analysis(quick: bool) -> list[Row]:
    n = 20_000 if quick else 100_000
    broker = recorded_broker(n)
    count = len(broker.trace)
    events = broker.trace.events
    read = timed(lambda: broker.trace.events)
    built: list[Histories] = []
    build = timed(lambda: built.append(build_histories(events)))
    ledger = [f"m{i}" for i in range(n)]
    check = best_of(lambda: timed(lambda: check_all(built[0], ledger)), 2)
    size = f"{n // 1000}k messages"
    return [
        Row(
            11,
            f"check a {size} history (3 checkers)",
            f"{check:.2f} s",
            "< 1 s" if n == 100_000 else "(quick)",
            check < 1.0 if n == 100_000 else None,
            "check_delivery (exactly-once) + check_processing (a ledger of every message) + "
            "check_fifo on built histories; one pass each",
            extra={"seconds": check},
        ),
        Row(
            11,
            f"build the histories of {size}",
            f"{build:.2f} s",
            "(reported)",
            None,
            f"build_histories over {count} events (one pass); reading them from a full "
            f"trace (trace.events) took {read:.2f} s more",
            extra={"seconds": build, "read": read, "events": count},
        ),
    ]
