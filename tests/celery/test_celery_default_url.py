"""Celery with ``broker_url="simamqp://"``: the process-default broker, as issue 4 shows it.

DESIGN.md contract: ``simamqp://`` is the process-default broker (created on first use with a
wall clock); Celery accepts it as broker_url. Names carry a per-run suffix because the default
broker is shared by the whole process.
"""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from typing import Any

import pytest

pytestmark = pytest.mark.celery


@pytest.fixture(scope="module")
def default_url_app() -> Iterator[Any]:
    celery = pytest.importorskip("celery")
    from celery.contrib.testing.worker import start_worker

    import simamqp

    queue = f"celery-default-url-{uuid.uuid4().hex[:10]}"
    app = celery.Celery(
        "simamqp-default-url", broker="simamqp://", backend="rpc://", set_as_current=False
    )
    app.conf.update(
        task_default_queue=queue, broker_connection_retry_on_startup=True, broker_heartbeat=1
    )

    @app.task(name="d.mul", shared=False)
    def mul(x: int, y: int) -> int:
        return x * y

    with start_worker(app, pool="solo", perform_ping_check=False, loglevel="WARNING"):
        yield app
    app.close()
    broker = simamqp.get_broker()
    with broker.connection() as conn:
        conn.default_channel.queue_delete(queue)


def test_task_on_the_default_broker(default_url_app: Any) -> None:
    """calling.html: a task and its rpc:// result through simamqp://."""
    assert default_url_app.tasks["d.mul"].delay(6, 7).get(timeout=15) == 42


def test_countdown_and_chain_on_the_default_broker(default_url_app: Any) -> None:
    """calling.html#eta-and-countdown and canvas.html#chains on simamqp://."""
    mul = default_url_app.tasks["d.mul"]
    assert mul.apply_async((2, 3), countdown=0.2).get(timeout=15) == 6
    assert (mul.s(2, 3) | mul.s(4)).apply_async().get(timeout=15) == 24
