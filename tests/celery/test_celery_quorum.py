"""Celery's quorum-queue topology (Celery >= 5.5): ``task_default_queue_type = "quorum"``, a
topic default exchange and native delayed delivery, on simamqp as on RabbitMQ.

With quorum queues the worker declares the 28 ``celery_delayed_N`` quorum queues (``x-message-ttl``
2**N s, ``x-dead-letter-strategy: at-least-once``, ``x-overflow: reject-publish``) chained by
dead-lettering through topic exchanges, and a task with a countdown is published into that chain
instead of waiting in the worker. On ``sim_broker`` (virtual clock) a ``countdown=3600`` task is
an hour of broker time, spent in the TTL chain, and no real waiting.

Both result backends run: Celery's ``rpc://`` and ``rpcbackend.RPCBackend``.
"""

from __future__ import annotations

import contextlib
import uuid
from collections.abc import Iterator
from typing import Any

import kombu
import pytest
from _rabbitmq import RABBITMQ_URL, require_rabbitmq

import simamqp

celery = pytest.importorskip("celery")

pytestmark = [
    pytest.mark.celery,
    # Quorum queues (task_default_queue_type) and native delayed delivery came with Celery 5.5:
    # before it the settings do not exist, so there is no topology to compare.
    pytest.mark.skipif(
        tuple(int(part) for part in celery.__version__.split(".")[:2]) < (5, 5),
        reason=f"Celery {celery.__version__} has no quorum queues (Celery >= 5.5)",
    ),
]

BACKENDS = ["rpc://", "rpcbackend.RPCBackend"]
#: kombu.transport.native_delayed_delivery's levels: celery_delayed_0 .. celery_delayed_27.
LEVELS = 28


def quorum_settings(name: str) -> dict[str, Any]:
    """What a Celery 5.5+ user sets for quorum queues and native delayed delivery."""
    return {
        "task_default_queue": name,
        "task_default_exchange": name,
        "task_default_exchange_type": "topic",
        "task_default_routing_key": name,
        "task_default_queue_type": "quorum",
        "worker_detect_quorum_queues": True,
        "broker_transport_options": {"confirm_publish": True},
        "worker_prefetch_multiplier": 1,
    }


def make_app(settings: dict[str, Any]) -> Any:
    app = celery.Celery(f"quorum-{uuid.uuid4().hex[:8]}", set_as_current=False)
    app.conf.update(settings)

    @app.task(name="q.add", shared=False)
    def add(x: int, y: int) -> int:
        return x + y

    @app.task(name="q.where", bind=True, shared=False)
    def where(self: Any) -> dict[str, Any]:
        info = self.request.delivery_info or {}
        return {"exchange": info.get("exchange"), "routing_key": info.get("routing_key")}

    return app


def _delayed_topology_exists(url: str) -> bool:
    with kombu.Connection(url) as conn:
        try:
            conn.default_channel.queue_declare("celery_delayed_0", passive=True)
        except Exception:
            return False
        return True


@pytest.fixture(
    params=[
        pytest.param("simamqp", id="simamqp"),
        pytest.param("rabbitmq", id="rabbitmq", marks=pytest.mark.rabbitmq),
    ]
)
def broker_kind(request: pytest.FixtureRequest) -> str:
    return str(request.param)


@pytest.fixture(params=BACKENDS)
def quorum_app(
    request: pytest.FixtureRequest, broker_kind: str
) -> Iterator[tuple[Any, simamqp.Broker | None]]:
    name = f"tasks-{uuid.uuid4().hex[:8]}"
    sim: simamqp.Broker | None = None
    if broker_kind == "simamqp":
        sim = request.getfixturevalue("sim_broker")
        settings = dict(request.getfixturevalue("sim_celery_config"))
    else:
        require_rabbitmq()
        settings = {
            "broker_url": RABBITMQ_URL,
            "broker_connection_retry_on_startup": False,
            "broker_heartbeat": 1,  # wakes the worker's loop often: a prompt shutdown
        }
    settings.update(quorum_settings(name), result_backend=request.param)
    app = make_app(settings)
    try:
        yield app, sim
    finally:
        app.close()
        if broker_kind == "rabbitmq":
            with contextlib.suppress(Exception), kombu.Connection(RABBITMQ_URL) as conn:
                conn.default_channel.queue_delete(name)
                conn.default_channel.exchange_delete(name)
            # The celery_delayed_* topology stays: it is Celery's shared, per-vhost
            # infrastructure (every quorum-queue worker declares the same), and deleting it
            # would pull it from under another suite running on the same RabbitMQ.


@pytest.fixture
def worker(quorum_app: tuple[Any, Any]) -> Iterator[Any]:
    from celery.contrib.testing.worker import start_worker

    app, _ = quorum_app
    with start_worker(
        app, pool="solo", perform_ping_check=False, loglevel="WARNING", shutdown_timeout=15
    ) as w:
        yield w


def test_tasks_and_a_chain_run_on_quorum_queues(quorum_app: tuple[Any, Any], worker: Any) -> None:
    app, sim = quorum_app
    add = app.tasks["q.add"]
    assert add.delay(2, 3).get(timeout=20) == 5
    chain = celery.chain(add.s(1, 2), add.s(10), add.s(100))
    assert chain.apply_async().get(timeout=20) == 113
    where = app.tasks["q.where"].delay().get(timeout=20)
    queue = app.conf.task_default_queue
    assert where == {"exchange": queue, "routing_key": queue}
    if sim is not None:
        info = sim.queue(queue)
        assert (info.type, info.durable, info.arguments) == (
            "quorum",
            True,
            {"x-queue-type": "quorum"},
        )


def test_the_worker_declares_the_native_delayed_delivery_chain(
    quorum_app: tuple[Any, Any], worker: Any
) -> None:
    app, sim = quorum_app
    assert app.tasks["q.add"].delay(1, 1).get(timeout=20) == 2
    if sim is None:
        assert _delayed_topology_exists(RABBITMQ_URL)
        return
    assert [n for n in sim.queue_names() if n.startswith("celery_delayed_")] == sorted(
        f"celery_delayed_{level}" for level in range(LEVELS)
    )
    level_5 = sim.queue("celery_delayed_5")
    assert (level_5.type, dict(level_5.arguments)) == (
        "quorum",
        {
            "x-queue-type": "quorum",
            "x-overflow": "reject-publish",
            "x-message-ttl": 32_000,
            "x-dead-letter-exchange": "celery_delayed_4",
            "x-dead-letter-strategy": "at-least-once",
        },
    )


def test_a_countdown_is_the_brokers_ttl_chain(quorum_app: tuple[Any, Any], worker: Any) -> None:
    """An hour's countdown on the virtual clock: the message rides the celery_delayed_N chain
    (levels 11, 10, 9 and 4 hold it: 3600 = 2048 + 1024 + 512 + 16) and reaches the worker at
    broker time 3600, through celery_delayed_delivery and the app's topic exchange."""
    app, sim = quorum_app
    if sim is None:
        pytest.skip("an hour on RabbitMQ: test_a_countdown_task_completes uses two seconds")
    queue = app.conf.task_default_queue
    start = sim.clock.now()
    app.tasks["q.where"].apply_async(countdown=3600)
    sim.advance(3600)
    held = [
        (round(e.time - start), e.attrs["queue"])
        for e in sim.trace.of_kind("expire")
        if e.attrs["queue"].startswith("celery_delayed_")
    ]
    assert held == [
        (2048, "celery_delayed_11"),
        (3072, "celery_delayed_10"),
        (3584, "celery_delayed_9"),
        (3600, "celery_delayed_4"),
    ]
    (delivery,) = [e for e in sim.trace.of_kind("deliver") if e.attrs["queue"] == queue]
    assert round(delivery.time - start) == 3600
    assert all(sim.queue(f"celery_delayed_{level}").messages == 0 for level in range(LEVELS))


@pytest.mark.parametrize("countdown", [2])
def test_a_countdown_task_completes(
    quorum_app: tuple[Any, Any], worker: Any, countdown: int
) -> None:
    app, sim = quorum_app
    if sim is not None:
        # The delay is the broker's TTL chain, and the worker's ETA timer counts the broker's
        # clock (simamqp._celery_timer): an hour of virtual time costs no real hour.
        countdown = 3600
    result = app.tasks["q.where"].apply_async(countdown=countdown)
    if sim is not None:
        sim.advance(countdown)
    where = result.get(timeout=5 if sim is not None else 30)
    queue = app.conf.task_default_queue
    # A dead letter is published to its DLX: the message comes from the exchange behind the
    # last level that held it (the lowest set bit of the delay), through exchange-to-exchange
    # bindings down to celery_delayed_delivery and the app's topic exchange, with the delay's
    # bits still in front of the routing key.
    lowest = (countdown & -countdown).bit_length() - 1
    last_dlx = f"celery_delayed_{lowest - 1}" if lowest else "celery_delayed_delivery"
    assert where == {
        "exchange": last_dlx,
        "routing_key": ".".join(f"{countdown:028b}") + f".{queue}",
    }
