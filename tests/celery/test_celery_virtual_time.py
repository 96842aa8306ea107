"""A Celery user's suite on the default ``sim_broker`` (virtual clock), both result backends.

Issue 21: countdowns, ETAs and retries run on the broker's clock (``advance`` makes them due,
and a far ETA is reached by the autojump rule), the ``sim_celery_worker`` fixture, and a worker
that comes back after any broker-side close. Nothing here sleeps to wait for a worker: results
are awaited with ``get(timeout=...)``, and ``advance`` lets the worker's event loop settle
first. How long each test takes in real time is measured (``--durations``), never asserted.
"""

from __future__ import annotations

import threading
import uuid
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

import simamqp

celery = pytest.importorskip("celery")

pytestmark = pytest.mark.celery

BACKENDS = ["rpc://", "rpcbackend.RPCBackend"]
TIMEOUT = 15


def make_app(settings: dict[str, Any]) -> Any:
    app = celery.Celery(f"vt-{uuid.uuid4().hex[:8]}", set_as_current=False)
    app.conf.update(task_default_queue="tasks", worker_prefetch_multiplier=1)
    app.conf.update(settings)
    ran: list[tuple[str, float, bool]] = []
    app.ran = ran  # type: ignore[attr-defined]
    clock = simamqp.get_broker(settings["broker_url"].split("/")[2]).clock

    @app.task(name="t.stamp", bind=True, shared=False)
    def stamp(self: Any, tag: str) -> float:
        redelivered = bool((self.request.delivery_info or {}).get("redelivered"))
        ran.append((tag, clock.now(), redelivered))
        return clock.now()

    @app.task(name="t.flaky", bind=True, shared=False, max_retries=3)
    def flaky(self: Any, tag: str) -> int:
        ran.append((tag, clock.now(), False))
        if self.request.retries < 2:
            raise self.retry(exc=RuntimeError("transient"), countdown=5)
        return int(self.request.retries)

    @app.task(name="t.late", bind=True, shared=False, acks_late=True)
    def late(self: Any, tag: str) -> bool:
        redelivered = bool((self.request.delivery_info or {}).get("redelivered"))
        ran.append((tag, clock.now(), redelivered))
        return redelivered

    return app


@pytest.fixture(params=BACKENDS)
def celery_app(request: pytest.FixtureRequest, sim_celery_config: dict[str, Any]) -> Iterator[Any]:
    app = make_app({**sim_celery_config, "result_backend": request.param})
    yield app
    app.close()


@pytest.fixture
def worker(celery_app: Any, sim_celery_worker: Any) -> Any:
    return sim_celery_worker(celery_app)


def tags(app: Any, tag: str) -> list[tuple[str, float, bool]]:
    return [entry for entry in app.ran if entry[0] == tag]


def test_retry_countdown_twice_runs_on_the_broker_clock(
    celery_app: Any, worker: Any, sim_broker: simamqp.Broker
) -> None:
    """``retry(countdown=5)`` twice: the retries run 5 and 10 virtual seconds later."""
    assert celery_app.tasks["t.flaky"].delay("f").get(timeout=TIMEOUT) == 2
    times = [when for _, when, _ in tags(celery_app, "f")]
    assert len(times) == 3
    assert times[1] - times[0] == pytest.approx(5, abs=0.5)
    assert times[2] - times[1] == pytest.approx(5, abs=0.5)


def test_countdown_runs_when_advance_reaches_it(
    celery_app: Any, worker: Any, sim_broker: simamqp.Broker
) -> None:
    result = celery_app.tasks["t.stamp"].apply_async(("c",), countdown=30)
    sim_broker.advance(29)
    assert tags(celery_app, "c") == []
    sim_broker.advance(2)
    assert result.get(timeout=TIMEOUT) >= 29.5
    assert len(tags(celery_app, "c")) == 1


def test_eta_written_the_natural_way(
    celery_app: Any, worker: Any, sim_broker: simamqp.Broker
) -> None:
    """``eta=datetime.now(UTC) + 20 s`` then ``advance(21)``: due, and not before."""
    eta = datetime.now(UTC) + timedelta(seconds=20)
    result = celery_app.tasks["t.stamp"].apply_async(("e",), eta=eta)
    sim_broker.advance(19)
    assert tags(celery_app, "e") == []
    sim_broker.advance(2)
    assert result.get(timeout=TIMEOUT) >= 19.5


def test_a_day_long_countdown_is_simply_awaited(
    celery_app: Any, worker: Any, sim_broker: simamqp.Broker
) -> None:
    """No ``advance``: every thread waits, so virtual time jumps to the worker's ETA."""
    result = celery_app.tasks["t.stamp"].apply_async(("d",), countdown=86400)
    assert result.get(timeout=TIMEOUT) >= 86399
    assert sim_broker.clock.now() >= 86399


def test_revoked_countdown_task_never_runs(
    celery_app: Any, worker: Any, sim_broker: simamqp.Broker
) -> None:
    from celery.exceptions import TaskRevokedError

    result = celery_app.tasks["t.stamp"].apply_async(("r",), countdown=30)
    sim_broker.advance(1)  # the worker holds it in its timer now
    result.revoke()
    sim_broker.advance(30)
    with pytest.raises(TaskRevokedError):
        result.get(timeout=TIMEOUT)
    assert tags(celery_app, "r") == []


def test_expired_countdown_task_never_runs(
    celery_app: Any, worker: Any, sim_broker: simamqp.Broker
) -> None:
    """``expires`` counts the broker's clock too: due at 30 s, expired at 10 s."""
    from celery.exceptions import TaskRevokedError

    result = celery_app.tasks["t.stamp"].apply_async(("x",), countdown=30, expires=10)
    sim_broker.advance(31)
    with pytest.raises(TaskRevokedError):
        result.get(timeout=TIMEOUT)
    assert tags(celery_app, "x") == []


def test_acks_late_task_whose_ack_closes_the_connection(
    celery_app: Any, worker: Any, sim_broker: simamqp.Broker
) -> None:
    """The ack closes the worker's connection (320): the message was not acknowledged, so it
    comes back redelivered to the reconnected worker, which runs it again."""
    with sim_broker.lock:
        sim_broker.faults.add(point="ack", action="close_connection", queue="tasks", max_count=1)
    first = celery_app.tasks["t.late"].delay("a")
    first.get(timeout=TIMEOUT)
    second = celery_app.tasks["t.stamp"].delay("after")
    second.get(timeout=TIMEOUT)
    runs = tags(celery_app, "a")
    assert [redelivered for _, _, redelivered in runs] == [False, True]
    assert sim_broker.trace.of_kind("fault")


@pytest.mark.simamqp(
    faults=[{"point": "deliver", "action": "close_connection", "queue": "tasks", "max_count": 1}]
)
def test_deliver_point_close_connection_from_the_marker(
    celery_app: Any, worker: Any, sim_broker: simamqp.Broker
) -> None:
    """The documented marker: the first delivery closes the worker's connection; the message
    is requeued and the reconnected worker runs it."""
    assert celery_app.tasks["t.stamp"].delay("m").get(timeout=TIMEOUT) >= 0
    assert [redelivered for _, _, redelivered in tags(celery_app, "m")] == [True]
    assert sim_broker.trace.of_kind("fault")


@pytest.mark.parametrize("attempt", range(20))
def test_worker_reconnects_after_a_close_right_after_start(
    attempt: int, sim_celery_config: dict[str, Any], sim_celery_worker: Any, sim_broker: Any
) -> None:
    """Closing the worker's connection the moment the worker has started (Celery's first
    ``_quick_drain`` reads the close and swallows the error): the descriptor stays readable,
    as a socket at end of file, so the worker's loop learns of it and reconnects."""
    app = make_app({**sim_celery_config, "result_backend": BACKENDS[attempt % 2]})
    try:
        sim_celery_worker(app)
        sim_broker.close_connections()
        assert app.tasks["t.stamp"].delay("early").get(timeout=TIMEOUT) >= 0
    finally:
        app.close()


@pytest.mark.parametrize("how", ["close_connections", "restart"])
def test_worker_reconnects_after_a_broker_side_close(
    how: str, sim_celery_config: dict[str, Any], sim_celery_worker: Any, sim_broker: Any
) -> None:
    """Every connection is closed, the test's own result consumer's too: rpcbackend reconnects
    it (Celery 5.3's rpc:// raises ConnectionForced to the caller instead)."""
    app = make_app({**sim_celery_config, "result_backend": "rpcbackend.RPCBackend"})
    try:
        sim_celery_worker(app)
        assert app.tasks["t.stamp"].delay("before").get(timeout=TIMEOUT) >= 0
        getattr(sim_broker, how)()
        assert app.tasks["t.stamp"].delay("after").get(timeout=TIMEOUT) >= 0
    finally:
        app.close()


def test_threads_pool_countdown_and_reconnect(
    sim_celery_config: dict[str, Any], sim_celery_worker: Any, sim_broker: simamqp.Broker
) -> None:
    """``pool="threads"``: ETAs count the broker's clock with ``advance`` (its idle task
    threads hold virtual time still, so nothing jumps on its own), and it reconnects."""
    app = make_app({**sim_celery_config, "result_backend": BACKENDS[1]})
    try:
        sim_celery_worker(app, pool="threads", concurrency=2)
        sim_broker.close_connections()
        result = app.tasks["t.stamp"].apply_async(("t",), countdown=30)
        sim_broker.advance(29)
        assert tags(app, "t") == []
        sim_broker.advance(2)
        assert result.get(timeout=TIMEOUT) >= 29.5
    finally:
        app.close()


def test_worker_fixture_stops_its_thread(
    sim_celery_config: dict[str, Any], sim_broker: Any
) -> None:
    from simamqp._celery_worker import CeleryWorkers

    app = make_app({**sim_celery_config, "result_backend": BACKENDS[1]})
    workers = CeleryWorkers()
    try:
        worker = workers(app)
        assert app.tasks["t.stamp"].delay("s").get(timeout=TIMEOUT) >= 0
        names = {t.name for t in threading.enumerate()}
        assert f"celery-worker-{worker.hostname}" in names
    finally:
        workers.close()
        app.close()
    names = {t.name for t in threading.enumerate()}
    assert f"celery-worker-{worker.hostname}" not in names
