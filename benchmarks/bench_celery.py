"""Row 7: a Celery task round trip with the in-thread worker (pool solo), result via rpc://."""

from __future__ import annotations

import logging
import time
import uuid

import simamqp

from ._util import RABBITMQ_URL, Row, fmt_us, median, percentile


def celery_round_trips(broker_url: str, n: int) -> list[float]:
    """Seconds per ``add.delay(…).get()`` with a worker thread running the task."""
    from celery import Celery
    from celery.contrib.testing.worker import start_worker

    queue = f"bench.celery.{uuid.uuid4().hex[:12]}"
    app = Celery("bench", set_as_current=False)
    app.conf.update(
        broker_url=broker_url,
        result_backend="rpc://",
        task_default_queue=queue,
        task_queues=None,
        worker_hijack_root_logger=False,
        broker_connection_retry_on_startup=False,
        task_create_missing_queues=True,
        result_expires=60,
        # The in-thread worker's event loop only notices it should stop on its next wake-up;
        # a heartbeat makes that within a second on RabbitMQ (simamqp's loop is not affected).
        broker_heartbeat=1,
    )

    @app.task(name="bench.add", shared=False)
    def add(x: int, y: int) -> int:
        return x + y

    samples: list[float] = []
    logging.getLogger("celery").setLevel(logging.ERROR)
    with start_worker(
        app, pool="solo", perform_ping_check=False, loglevel="ERROR", shutdown_timeout=10
    ):
        assert add.delay(1, 1).get(timeout=10) == 2  # warm: declarations, reply queue
        for i in range(n):
            start = time.perf_counter()
            assert add.delay(i, 1).get(timeout=10) == i + 1
            samples.append(time.perf_counter() - start)
    if not broker_url.startswith("simamqp"):
        with app.connection_for_write() as conn:
            conn.default_channel.queue_delete(queue)
    return samples


def row_celery(quick: bool, rabbit: bool) -> list[Row]:
    n = 30 if quick else 200
    broker = simamqp.Broker(seed=1, clock=simamqp.WallClock(), trace=False)
    sim = celery_round_trips(broker.url, n)
    sim_p50 = median(sim)
    rows = [
        Row(
            7,
            f"Celery add.delay().get() simamqp:// (n={n})",
            f"{fmt_us(sim_p50)} p50",
            "",
            None,
            f"p99 {fmt_us(percentile(sim, 99))}",
            extra={"p50": sim_p50},
        )
    ]
    if rabbit:
        rmq = celery_round_trips(RABBITMQ_URL, n)
        rmq_p50 = median(rmq)
        rows.append(
            Row(
                7,
                "  RabbitMQ",
                f"{fmt_us(rmq_p50)} p50",
                "",
                None,
                f"p99 {fmt_us(percentile(rmq, 99))}",
                extra={"p50": rmq_p50},
            )
        )
        rows.append(
            Row(
                7,
                "  simamqp vs RabbitMQ",
                f"{rmq_p50 / sim_p50:.1f}x",
                "faster",
                rmq_p50 > sim_p50,
                "",
                extra={"ratio": rmq_p50 / sim_p50},
            )
        )
    else:
        rows.append(
            Row(
                7,
                "  simamqp vs RabbitMQ",
                "",
                "faster",
                None,
                skipped="skipped: RabbitMQ unreachable",
            )
        )
    return rows


def worker_stop_times(broker_url: str, n: int, **settings: object) -> list[float]:
    """Seconds to leave ``start_worker`` (idle worker, after one task), ``n`` times."""
    from celery import Celery
    from celery.contrib.testing.worker import start_worker

    queue = f"bench.stop.{uuid.uuid4().hex[:12]}"
    samples: list[float] = []
    logging.getLogger("celery").setLevel(logging.ERROR)
    for _ in range(n):
        app = Celery("bench-stop", set_as_current=False)
        app.conf.update(
            broker_url=broker_url,
            result_backend="rpc://",
            task_default_queue=queue,
            worker_hijack_root_logger=False,
            broker_connection_retry_on_startup=False,
            **settings,
        )

        @app.task(name="bench.add", shared=False)
        def add(x: int, y: int) -> int:
            return x + y

        worker = start_worker(
            app, pool="solo", perform_ping_check=False, loglevel="ERROR", shutdown_timeout=30
        )
        worker.__enter__()
        try:
            assert add.delay(1, 1).get(timeout=10) == 2
        finally:
            start = time.perf_counter()
            worker.__exit__(None, None, None)
            samples.append(time.perf_counter() - start)
        if not broker_url.startswith("simamqp"):
            with app.connection_for_write() as conn:
                conn.default_channel.queue_delete(queue)
        app.close()
    return samples


def row_worker_stop(quick: bool, rabbit: bool) -> list[Row]:
    """Row 9: leaving ``start_worker`` (what a function-scoped worker fixture pays per test)."""
    n = 3 if quick else 10
    broker = simamqp.Broker(seed=1, trace=False)  # what sim_broker gives: a virtual clock
    sim = worker_stop_times(broker.url, n)
    rows = [
        Row(
            9,
            f"Celery start_worker exit, idle worker, simamqp:// (n={n})",
            f"{median(sim) * 1000:.0f} ms median",
            "≤ 100 ms",
            max(sim) <= 0.1,
            f"max {max(sim) * 1000:.0f} ms",
            extra={"median": median(sim), "max": max(sim)},
        )
    ]
    if not rabbit:
        rows.append(Row(9, "  RabbitMQ", "", "", None, skipped="skipped: RabbitMQ unreachable"))
        return rows
    m = 1 if quick else 3
    for label, settings in (("defaults", {}), ("broker_heartbeat=1", {"broker_heartbeat": 1})):
        rmq = worker_stop_times(RABBITMQ_URL, m, **settings)
        rows.append(
            Row(
                9,
                f"  RabbitMQ, {label} (n={m})",
                f"{median(rmq) * 1000:.0f} ms median",
                "",
                None,
                f"max {max(rmq) * 1000:.0f} ms",
                extra={"median": median(rmq), "max": max(rmq)},
            )
        )
    return rows
