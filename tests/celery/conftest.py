"""A Celery 5 app with an in-thread worker, on simamqp and on RabbitMQ.

``celery_env`` is module-scoped and parametrised over both brokers: one app and one solo worker
per broker serve every test in the module (starting a worker per test would dominate the run
time). Names carry a per-run suffix so runs never share queues on the real RabbitMQ, and every
entity is deleted at teardown.

The simamqp broker is a default ``Broker()`` (virtual clock): the worker thread runs Celery's
event loop, and virtual time never jumps under a thread that is busy outside the broker
(docs/threads.md), so countdown/ETA and retries paced by Celery's real-time timers work.
"""

from __future__ import annotations

import contextlib
import uuid
from collections.abc import Iterator
from typing import Any

import amqp
import kombu
import pytest
from _celery_helpers import CeleryEnv, fresh_event_loop_for_old_celery, start_named_worker
from _rabbitmq import RABBITMQ_URL, require_rabbitmq


def broker_url(kind: str, request: pytest.FixtureRequest) -> tuple[str, Any]:
    """The broker URL for ``kind`` (and the simamqp broker, or None for RabbitMQ)."""
    if kind == "simamqp":
        import simamqp

        sim = simamqp.Broker()
        name = f"celery-{uuid.uuid4().hex}"
        simamqp.register(name, sim)
        request.addfinalizer(lambda: simamqp.unregister(name))
        return sim.url, sim
    require_rabbitmq()
    return RABBITMQ_URL, None


@pytest.fixture(autouse=True)
def _fresh_event_loop_for_old_celery() -> None:
    """Every test that starts a worker of its own gets a working timer on Celery < 5.7."""
    pytest.importorskip("celery")
    fresh_event_loop_for_old_celery()


BROKERS = [
    pytest.param("simamqp", id="simamqp"),
    pytest.param("rabbitmq", id="rabbitmq", marks=pytest.mark.rabbitmq),
]


@pytest.fixture(scope="module", params=BROKERS)
def celery_env(request: pytest.FixtureRequest) -> Iterator[CeleryEnv]:
    celery = pytest.importorskip("celery")
    from kombu import Exchange, Queue

    url, sim = broker_url(request.param, request)
    run = uuid.uuid4().hex[:10]
    names = {
        "default": f"celery-default-{run}",
        "direct_x": f"celery-direct-{run}",
        "direct_q": f"celery-direct-q-{run}",
        "topic_x": f"celery-topic-{run}",
        "topic_q": f"celery-topic-reports-{run}",
        "topic_other_q": f"celery-topic-other-{run}",
    }
    direct_x = Exchange(names["direct_x"], type="direct", auto_delete=True)
    topic_x = Exchange(names["topic_x"], type="topic", auto_delete=True)
    app = celery.Celery(f"simamqp-celery-{run}", broker=url, backend="rpc://", set_as_current=False)
    app.conf.update(
        broker_connection_retry_on_startup=True,
        broker_heartbeat=1,  # wakes the worker's loop often: fast shutdown on RabbitMQ
        task_default_queue=names["default"],
        task_queues=[
            Queue(names["default"], routing_key=names["default"], auto_delete=True),
            Queue(names["direct_q"], direct_x, routing_key="billing", auto_delete=True),
            Queue(names["topic_q"], topic_x, routing_key="reports.#", auto_delete=True),
            Queue(names["topic_other_q"], topic_x, routing_key="*.urgent", auto_delete=True),
        ],
        task_routes={
            "t.billing": {"exchange": names["direct_x"], "routing_key": "billing"},
            "t.report": {"exchange": names["topic_x"]},
        },
        result_expires=60,
        worker_prefetch_multiplier=1,
        task_acks_late=False,
    )
    env = CeleryEnv(request.param, url, sim, run, app, names)
    _register_tasks(app, env)
    # A unique node name: revoke() is a broadcast on RabbitMQ's shared celery.pidbox exchange,
    # so the tests address their own worker only (other Celery workers may share RabbitMQ).
    env.hostname = f"simamqp-tests-{run}@localhost"
    with start_named_worker(
        app,
        env.hostname,
        pool="solo",
        perform_ping_check=False,
        loglevel="WARNING",
        shutdown_timeout=15,
    ):
        yield env
    with contextlib.suppress(Exception):
        app.close()
    with contextlib.suppress(Exception), kombu.Connection(url) as conn:
        ch = conn.default_channel
        for key in ("default", "direct_q", "topic_q", "topic_other_q"):
            ch.queue_delete(names[key])
        for key in ("direct_x", "topic_x"):
            ch.exchange_delete(names[key])


def _register_tasks(app: Any, env: CeleryEnv) -> None:
    from celery.exceptions import Reject

    seen = env.seen

    @app.task(name="t.add", shared=False)
    def add(x: int, y: int) -> int:
        return x + y

    @app.task(name="t.where", bind=True, shared=False)
    def where(self: Any) -> dict[str, Any]:
        info = self.request.delivery_info or {}
        return {
            "exchange": info.get("exchange"),
            "routing_key": info.get("routing_key"),
            "eta": self.request.eta,
        }

    @app.task(name="t.billing", bind=True, shared=False)
    def billing(self: Any) -> list[Any]:
        info = self.request.delivery_info or {}
        return [info.get("exchange"), info.get("routing_key")]

    @app.task(name="t.report", bind=True, shared=False)
    def report(self: Any) -> list[Any]:
        info = self.request.delivery_info or {}
        return [info.get("exchange"), info.get("routing_key")]

    @app.task(name="t.flaky", bind=True, shared=False, max_retries=5, default_retry_delay=0.05)
    def flaky(self: Any, token: str, fail_times: int) -> int:
        seen.setdefault(token, []).append(self.request.retries)
        if self.request.retries < fail_times:
            raise self.retry(exc=RuntimeError("transient"), countdown=0.05)
        return int(self.request.retries)

    @app.task(name="t.always_fails", bind=True, shared=False, max_retries=2)
    def always_fails(self: Any) -> None:
        raise self.retry(exc=ValueError("permanent"), countdown=0.01)

    @app.task(name="t.requeue_once", bind=True, shared=False, acks_late=True)
    def requeue_once(self: Any, token: str) -> list[Any]:
        redelivered = bool((self.request.delivery_info or {}).get("redelivered"))
        seen.setdefault(token, []).append(redelivered)
        if len(seen[token]) == 1:
            raise Reject("try again", requeue=True)
        return list(seen[token])

    @app.task(name="t.reject_drop", bind=True, shared=False, acks_late=True)
    def reject_drop(self: Any, token: str) -> None:
        seen.setdefault(token, []).append(self.request.id)
        seen[token + ":done"].set()
        raise Reject("drop it", requeue=False)

    @app.task(name="t.late", bind=True, shared=False, acks_late=True)
    def late(self: Any, token: str) -> str:
        # acks_late: while the task runs its message is still unacknowledged, so the solo
        # worker's prefetch window (1) is full and a message published now stays ready in the
        # queue. Measured the same way on both brokers, from another connection: publish a
        # probe and take it back with basic.get (which the queue handles after the publish;
        # had the worker's window been free, the probe would have gone to the worker).
        queue = env.names["default"]
        with kombu.Connection(env.url) as conn:
            ch = conn.default_channel
            ch.basic_publish(amqp.Message(b"probe"), "", queue)
            probe = ch.basic_get(queue, no_ack=True)
        seen[token] = 0 if probe is None else 1
        seen[token + ":probe"] = None if probe is None else probe.body
        return token
