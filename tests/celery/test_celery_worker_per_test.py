"""A function-scoped in-thread Celery worker per test, on the default ``sim_broker``.

Issue 11 acceptance: what a Celery user writes first (``sim_celery_config`` + a worker fixture
built with ``celery.contrib.testing.worker.start_worker``, no marker, the default virtual
clock) works, with ``rpc://`` and ``rpcbackend`` results, and the worker runs Celery's event
loop (``asynloop``, as with py-amqp on RabbitMQ). How long stopping the worker takes is a
benchmark (``python -m benchmarks``, row "Celery worker stop"), not an assertion here.
"""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from typing import Any

import pytest

import simamqp

celery = pytest.importorskip("celery")

pytestmark = pytest.mark.celery

BACKENDS = ["rpc://", "rpcbackend.RPCBackend"]


def make_app(settings: dict[str, Any]) -> Any:
    from celery.exceptions import Reject

    app = celery.Celery(f"per-test-{uuid.uuid4().hex[:8]}", set_as_current=False)
    app.conf.update(task_default_queue="tasks", worker_prefetch_multiplier=1)
    app.conf.update(settings)
    seen: dict[str, list[Any]] = {}
    app.seen = seen  # type: ignore[attr-defined]

    @app.task(name="t.add", shared=False)
    def add(x: int, y: int) -> int:
        return x + y

    @app.task(name="t.fail", shared=False)
    def fail(message: str) -> None:
        raise ValueError(message)

    @app.task(name="t.progress", bind=True, shared=False)
    def progress(self: Any, n: int) -> int:
        for i in range(n):
            self.update_state(state="PROGRESS", meta={"done": i + 1})
        return n

    @app.task(name="t.flaky", bind=True, shared=False, max_retries=3)
    def flaky(self: Any, token: str) -> int:
        tries = seen.setdefault(token, [])
        tries.append(self.request.retries)
        if self.request.retries < 2:
            raise self.retry(exc=RuntimeError("transient"), countdown=0.01)
        return int(self.request.retries)

    @app.task(name="t.requeue_once", bind=True, shared=False, acks_late=True)
    def requeue_once(self: Any, token: str) -> bool:
        redelivered = bool((self.request.delivery_info or {}).get("redelivered"))
        seen.setdefault(token, []).append(redelivered)
        if len(seen[token]) == 1:
            raise Reject("again", requeue=True)
        return redelivered

    @app.task(name="t.echo_headers", bind=True, shared=False)
    def echo_headers(self: Any) -> Any:
        return (self.request.headers or {}).get("x-tenant")

    return app


@pytest.fixture(params=BACKENDS)
def celery_app(request: pytest.FixtureRequest, sim_celery_config: dict[str, Any]) -> Iterator[Any]:
    app = make_app({**sim_celery_config, "result_backend": request.param})
    yield app
    app.close()


@pytest.fixture
def worker(celery_app: Any) -> Iterator[Any]:
    from celery.contrib.testing.worker import start_worker

    with start_worker(
        celery_app, pool="solo", perform_ping_check=False, loglevel="WARNING", shutdown_timeout=10
    ) as w:
        yield w


def test_worker_runs_celerys_event_loop(celery_app: Any, worker: Any) -> None:
    """The same consumer loop as with py-amqp on RabbitMQ (not the synloop fallback)."""
    assert celery_app.tasks["t.add"].delay(1, 1).get(timeout=10) == 2
    assert worker.consumer.loop.__name__ == "asynloop"


def test_add(celery_app: Any, worker: Any) -> None:
    assert celery_app.tasks["t.add"].delay(2, 3).get(timeout=10) == 5


def test_many_results_in_order_of_asking(celery_app: Any, worker: Any) -> None:
    results = [celery_app.tasks["t.add"].delay(i, i) for i in range(20)]
    assert [r.get(timeout=10) for r in results] == [2 * i for i in range(20)]


def test_failure_propagates(celery_app: Any, worker: Any) -> None:
    result = celery_app.tasks["t.fail"].delay("boom")
    with pytest.raises(ValueError, match="boom"):
        result.get(timeout=10)
    assert result.state == "FAILURE"


def test_progress_states_then_success(celery_app: Any, worker: Any) -> None:
    result = celery_app.tasks["t.progress"].delay(3)
    assert result.get(timeout=10) == 3
    assert result.state == "SUCCESS"


def test_retry_with_countdown(celery_app: Any, worker: Any) -> None:
    token = uuid.uuid4().hex
    assert celery_app.tasks["t.flaky"].delay(token).get(timeout=10) == 2
    assert celery_app.seen[token] == [0, 1, 2]


def test_reject_requeue_redelivers(celery_app: Any, worker: Any) -> None:
    token = uuid.uuid4().hex
    assert celery_app.tasks["t.requeue_once"].delay(token).get(timeout=10) is True
    assert celery_app.seen[token] == [False, True]


def test_headers_reach_the_task_and_nothing_is_left_ready(
    celery_app: Any, worker: Any, sim_broker: simamqp.Broker
) -> None:
    result = celery_app.tasks["t.echo_headers"].apply_async(headers={"x-tenant": "acme"})
    assert result.get(timeout=10) == "acme"
    # Delivered to the worker (its ack may still be on the way: Celery's event loop sends it
    # with call_soon, after the task ran, as with py-amqp on RabbitMQ).
    assert sim_broker.queue("tasks").messages_ready == 0


@pytest.mark.parametrize("backend", BACKENDS)
def test_synloop_still_works_when_an_app_forces_it(
    backend: str, sim_celery_config: dict[str, Any]
) -> None:
    """Apps that turn the event loop off (``use_eventloop=False``, as green pools do) get
    Celery's blocking ``synloop`` over ``drain_events``; it keeps working."""
    from celery.contrib.testing.worker import start_worker

    app = make_app({**sim_celery_config, "result_backend": backend})
    try:
        with start_worker(
            app,
            pool="solo",
            perform_ping_check=False,
            loglevel="WARNING",
            shutdown_timeout=10,
            use_eventloop=False,
        ) as w:
            assert app.tasks["t.add"].delay(20, 22).get(timeout=10) == 42
            assert w.consumer.loop.__name__ == "synloop"
    finally:
        app.close()
