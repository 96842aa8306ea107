"""A real Celery worker and client on either side, one of them using Celery's rpc://."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest
from _rpc_helpers import BrokerUnderTest, celery_app, new_id

from rpcbackend import ChordsNotSupported, ResultTimeout, RPCBackend

pytestmark = pytest.mark.celery

OURS = "rpcbackend:RPCBackend"


@pytest.fixture
def sim_clock() -> object:
    # The in-thread Celery worker blocks in real time; a virtual clock would jump past it.
    simamqp = pytest.importorskip("simamqp")
    return simamqp.WallClock()


def _register(app: Any) -> None:
    @app.task(name="interop.add", shared=False)
    def add(x: int, y: int) -> int:
        return x + y

    @app.task(name="interop.fail", shared=False)
    def fail() -> None:
        raise KeyError("nope")


@pytest.fixture(params=[("rpc://", OURS), (OURS, "rpc://"), (OURS, OURS)],
                ids=["celery-worker-to-rpcbackend-client", "rpcbackend-worker-to-celery-client",
                     "rpcbackend-both"])
def apps(request: pytest.FixtureRequest, broker: BrokerUnderTest) -> Iterator[tuple[Any, Any]]:
    from celery.contrib.testing.worker import start_worker

    worker_backend, client_backend = request.param
    worker_app = celery_app(broker, worker_backend)
    client_app = celery_app(broker, client_backend,
                            task_default_queue=worker_app.conf.task_default_queue)
    _register(worker_app)
    _register(client_app)
    with start_worker(worker_app, pool="solo", perform_ping_check=False, loglevel="WARNING"):
        yield worker_app, client_app


def test_get_returns_the_value(apps: tuple[Any, Any]) -> None:
    _, client = apps
    result = client.send_task("interop.add", (2, 3))
    assert result.get(timeout=10) == 5
    assert result.state == "SUCCESS" and result.ready()


def test_failure_propagates_as_the_original_exception(apps: tuple[Any, Any]) -> None:
    _, client = apps
    result = client.send_task("interop.fail")
    with pytest.raises(KeyError, match="nope"):
        result.get(timeout=10)
    assert result.state == "FAILURE"
    assert "KeyError" in result.traceback


def test_group_join_native(apps: tuple[Any, Any]) -> None:
    from celery import group

    _, client = apps
    job = group(client.signature("interop.add", (i, i)) for i in range(6)).apply_async()
    assert job.join_native(timeout=10) == [2 * i for i in range(6)]
    assert job.get(timeout=10) == [2 * i for i in range(6)]


def test_failure_fails_the_rest_of_the_chain(apps: tuple[Any, Any]) -> None:
    from celery import chain

    _, client = apps
    result = chain(client.signature("interop.fail"),
                   client.signature("interop.add", (1,))).apply_async()
    with pytest.raises(KeyError, match="nope"):
        result.get(timeout=10)


def test_client_timeout_is_celerys_timeout_error(apps: tuple[Any, Any]) -> None:
    from celery.exceptions import TimeoutError as CeleryTimeoutError

    _, client = apps
    # A task nobody runs (countdown far away keeps the worker holding it).
    result = client.send_task("interop.add", (1, 1), countdown=3600)
    with pytest.raises(CeleryTimeoutError):
        result.get(timeout=0.1)
    result.revoke()


def test_celery_app_resolves_the_backend_by_class_path(broker: BrokerUnderTest) -> None:
    app = celery_app(broker, OURS)
    assert isinstance(app.backend, RPCBackend)
    app_dotted = celery_app(broker, "rpcbackend.RPCBackend")
    assert isinstance(app_dotted.backend, RPCBackend)


def test_chords_are_refused_before_anything_is_sent(broker: BrokerUnderTest) -> None:
    from celery import chord

    app = celery_app(broker, OURS)
    _register(app)
    with pytest.raises(ChordsNotSupported, match="does not support chords"):
        chord([app.signature("interop.add", (1, 1))], app.signature("interop.add", (0,))).delay()


@pytest.mark.parametrize("apps", [("rpc://", OURS), (OURS, OURS)], indirect=True,
                         ids=["celery-worker", "rpcbackend-worker"])
def test_then_callbacks_fire_when_the_result_arrives(apps: tuple[Any, Any]) -> None:
    _, client = apps
    assert isinstance(client.backend, RPCBackend)
    seen: list[Any] = []
    first = client.send_task("interop.add", (1, 2))
    first.then(lambda r: seen.append(r.result))
    second = client.send_task("interop.add", (3, 4))
    assert second.get(timeout=10) == 7  # draining for the second also fulfils the first
    assert first.get(timeout=10) == 3
    assert seen == [3]


def test_state_of_an_unknown_task_is_pending(broker: BrokerUnderTest) -> None:
    app = celery_app(broker, OURS)
    assert app.AsyncResult(new_id()).state == "PENDING"
    with pytest.raises(ResultTimeout):
        app.AsyncResult(new_id()).get(timeout=0)
