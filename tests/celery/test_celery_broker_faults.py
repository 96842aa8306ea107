"""A Celery worker on simamqp survives what a real broker does rarely: a forced close of every
connection (rabbitmqctl close_all_connections) and a broker restart.

Pins https://docs.celeryq.dev/en/stable/userguide/workers.html (the consumer re-establishes
its connection) and https://www.rabbitmq.com/queues.html#durability (a durable queue keeps
persistent messages across a restart). simamqp only: RabbitMQ cannot be restarted per test.
"""

from __future__ import annotations

import threading
import uuid
from collections.abc import Iterator
from typing import Any

import pytest

pytestmark = pytest.mark.celery


@pytest.fixture(scope="module")
def worker_env() -> Iterator[tuple[Any, Any, dict[int, threading.Event]]]:
    celery = pytest.importorskip("celery")
    from celery.contrib.testing.worker import start_worker
    from kombu import Queue

    import simamqp

    broker = simamqp.Broker(clock=simamqp.WallClock())
    name = f"celery-faults-{uuid.uuid4().hex}"
    simamqp.register(name, broker)
    queue = f"celery-faults-{uuid.uuid4().hex[:8]}"
    app = celery.Celery("simamqp-faults", broker=broker.url, set_as_current=False)
    app.conf.update(
        task_default_queue=queue,
        task_queues=[Queue(queue, durable=True, auto_delete=False)],
        task_default_delivery_mode="persistent",
        broker_connection_retry_on_startup=True,
        broker_heartbeat=1,
        worker_cancel_long_running_tasks_on_connection_loss=False,
    )
    ran: dict[int, threading.Event] = {}

    @app.task(name="f.mark", shared=False, ignore_result=True)
    def mark(n: int) -> None:
        ran[n].set()

    @app.task(name="f.in_progress", bind=True, shared=False, ignore_result=True, acks_late=True)
    def in_progress(self: Any, n: int) -> None:
        # First run: signal, then wait until the test restarted the broker under us.
        flags.setdefault(n, []).append(bool(self.request.delivery_info.get("redelivered")))
        if len(flags[n]) == 1:
            ran[n].set()
            release[n].wait(30)
        else:
            ran[-n].set()

    app.flags = flags = {}  # type: ignore[attr-defined]
    app.release = release = {}  # type: ignore[attr-defined]

    try:
        with start_worker(app, pool="solo", perform_ping_check=False, loglevel="ERROR"):
            yield app, broker, ran
    finally:
        app.close()
        simamqp.unregister(name)


def _run(app: Any, ran: dict[int, threading.Event], n: int) -> bool:
    ran[n] = threading.Event()
    app.tasks["f.mark"].delay(n)
    return ran[n].wait(30)


def test_worker_reconnects_after_forced_close(worker_env: Any) -> None:
    """320 CONNECTION_FORCED on every connection: the worker reconnects and consumes again."""
    app, broker, ran = worker_env
    assert _run(app, ran, 1)
    broker.close_connections()
    assert _run(app, ran, 2)


def test_task_running_during_a_restart_is_redelivered(worker_env: Any) -> None:
    """An acks_late task still running when the broker restarts was not acknowledged; its
    persistent message in a durable queue survives and comes back redelivered=True
    (https://www.rabbitmq.com/confirms.html#automatic-requeueing), and the reconnected worker
    runs it again."""
    app, broker, ran = worker_env
    ran[7], ran[-7] = threading.Event(), threading.Event()
    app.release[7] = threading.Event()
    app.tasks["f.in_progress"].delay(7)
    assert ran[7].wait(30)
    broker.restart()
    app.release[7].set()
    assert ran[-7].wait(30)
    assert app.flags[7] == [False, True]
    assert broker.queue(app.conf.task_default_queue).durable
    assert _run(app, ran, 8)
