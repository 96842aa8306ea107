"""Tasks through a real Celery worker thread, with results over the RPC backend."""

from __future__ import annotations

import pytest


def test_add(celery_app, worker) -> None:  # type: ignore[no-untyped-def]
    assert celery_app.tasks["shop.add"].delay(2, 3).get(timeout=10) == 5


def test_charge_failure_propagates(celery_app, worker) -> None:  # type: ignore[no-untyped-def]
    result = celery_app.tasks["shop.charge"].delay("o-9", -5)
    with pytest.raises(ValueError, match="amount must be positive"):
        result.get(timeout=10)
    assert result.state == "FAILURE"


def test_progress_then_success(celery_app, worker, sim_broker) -> None:  # type: ignore[no-untyped-def]
    result = celery_app.tasks["shop.pack"].delay(["a", "b", "c"])
    assert result.get(timeout=10) == 3
    # the task message went to the worker: nothing is left ready on the task queue (its ack
    # may still be on its way: Celery's worker acks from its event loop, as on RabbitMQ)
    assert sim_broker.queue("shop").messages_ready == 0


def test_task_message_waits_without_a_worker(celery_app, sim_broker) -> None:  # type: ignore[no-untyped-def]
    celery_app.tasks["shop.add"].delay(1, 1)
    info = sim_broker.queue("shop")
    assert info.messages_ready == 1 and info.consumers == 0
