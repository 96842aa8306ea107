"""Helpers shared by the rpcbackend tests (imported by conftest.py and the test modules).

Named uniquely because test directories are not packages: a plain ``helpers`` or ``conftest``
import would collide with other test layers' modules.
"""

from __future__ import annotations

import contextlib
import time
import uuid
from typing import Any

import kombu
import pytest

from rpcbackend import Config, RPCBackend


class BrokerUnderTest:
    """One broker (simulated or real) plus the backends a test created on it."""

    def __init__(self, kind: str, url: str, sim: Any = None) -> None:
        self.kind = kind
        self.url = url
        self.sim = sim
        self._closables: list[Any] = []
        self.celery_apps: list[Any] = []

    @property
    def is_sim(self) -> bool:
        return self.kind == "simamqp"

    def config(self, **settings: Any) -> Config:
        options = settings.pop("broker_transport_options", {})
        options.setdefault("confirm_publish", True)
        return Config(broker_url=self.url, broker_transport_options=options, **settings)

    def backend(self, **kwargs: Any) -> RPCBackend:
        settings = {k: kwargs.pop(k) for k in list(kwargs) if k.startswith(("result_", "rpc"))}
        backend = RPCBackend(self.config(**settings), **kwargs)
        self._closables.append(backend)
        return backend

    def connection(self) -> kombu.Connection:
        conn = kombu.Connection(self.url, transport_options={"confirm_publish": True})
        self._closables.append(conn)
        return conn

    def settle(self, rabbitmq_seconds: float = 0.0) -> None:
        """Let the broker deliver what is due: run the simulator until idle (no sleeping).

        A publish in these tests waits for its confirm, so RabbitMQ has *queued* it already;
        ``rabbitmq_seconds`` is only for the few tests that need RabbitMQ to have *pushed* a
        message to a consumer's socket, which it does asynchronously.
        """
        if self.sim is not None:
            self.sim.run_until_idle()
        elif rabbitmq_seconds:
            time.sleep(rabbitmq_seconds)

    def message_count(self, queue_name: str) -> int:
        """Ready messages in ``queue_name`` (passive declare on a fresh connection)."""
        with kombu.Connection(self.url) as conn:
            _, count, _ = conn.default_channel.queue_declare(queue_name, passive=True)
            return int(count)

    def delete_queue(self, queue_name: str) -> None:
        with kombu.Connection(self.url) as conn:
            conn.default_channel.queue_delete(queue_name)

    def close(self) -> None:
        queues = [name for item in self._closables if isinstance(item, RPCBackend)
                  for name in item.reply_queue_names()]
        for app in self.celery_apps:
            queues.append(app.conf.task_default_queue)
            backend = app._backend  # None unless this thread created it
            if backend is not None:
                queues.append(backend.oid)
                if not isinstance(backend, RPCBackend):
                    with contextlib.suppress(Exception):
                        backend.result_consumer.stop()
            with contextlib.suppress(Exception):
                app.close()
        for item in reversed(self._closables):
            with contextlib.suppress(Exception):
                item.close() if hasattr(item, "close") else item.release()
        # A reply queue that was only polled, never consumed, is not auto-deleted; do not
        # leave it on the shared RabbitMQ for a day (x-expires).
        with contextlib.suppress(Exception), kombu.Connection(self.url) as conn:
            for name in queues:
                conn.default_channel.queue_delete(name)


def request_for(client: RPCBackend, task_id: str, **extra: Any) -> dict[str, Any]:
    """The worker-side request context of a task sent by ``client``."""
    return {"reply_to": client.oid, "correlation_id": task_id, **extra}


def new_id() -> str:
    return str(uuid.uuid4())


def publish_raw(conn: kombu.Connection, queue_name: str, task_id: str, status: str,
                result: Any = None) -> None:
    """Publish a result message as a Celery worker would, in any order a test needs."""
    body = {"status": status, "result": result, "traceback": None, "children": [],
            "date_done": None, "task_id": task_id}
    kombu.Producer(conn).publish(
        body, exchange="", routing_key=queue_name, correlation_id=task_id,
        serializer="json", delivery_mode=1,
    )


def celery_app(broker: BrokerUnderTest, result_backend: str, **settings: Any) -> Any:
    """A Celery app on ``broker`` with its own task queue (Celery is a test-only dependency)."""
    celery = pytest.importorskip("celery")
    app = celery.Celery(f"rpcbackend-test-{uuid.uuid4().hex[:8]}", broker=broker.url,
                        backend=result_backend, set_as_current=False)
    settings.setdefault("task_default_queue", f"rpcbackend-tasks-{uuid.uuid4().hex}")
    app.conf.update(
        broker_transport_options={"confirm_publish": True},
        broker_connection_retry_on_startup=True,
        # A heartbeat makes the in-thread worker's event loop wake often enough to stop within
        # a fraction of a second instead of ~10 s when the test ends.
        broker_heartbeat=1,
        **settings,
    )
    broker.celery_apps.append(app)
    return app


def declare_celery_reply_queue(app: Any, conn: kombu.Connection, task_id: str) -> str:
    """What a Celery client does before sending a task; returns the reply queue name."""
    app.backend.on_task_call(kombu.Producer(conn), task_id)
    return str(app.backend.oid)
