"""A worker whose socket is cut the moment it has started comes back (issue 21), on both brokers.

Measured on RabbitMQ 3.10.8 first: cutting the worker's socket right after the worker started,
it reconnected and ran the next task every time. On simamqp the cut makes the connection's
descriptor readable, as a socket at end of file, so the worker's event loop reads it and
reconnects. No sleeping: the test waits for the task's result.
"""

from __future__ import annotations

import socket
import uuid
from collections.abc import Iterator
from typing import Any

import kombu
import pytest
from _rabbitmq import RABBITMQ_URL, require_rabbitmq

pytest.importorskip("celery")

pytestmark = pytest.mark.celery

BROKERS = [
    pytest.param("simamqp", id="simamqp"),
    pytest.param("rabbitmq", id="rabbitmq", marks=pytest.mark.rabbitmq),
]


@pytest.fixture(params=BROKERS)
def app(request: pytest.FixtureRequest) -> Iterator[Any]:
    from celery import Celery

    import simamqp

    queue = f"reconnect-{uuid.uuid4().hex[:10]}"
    if request.param == "simamqp":
        broker = simamqp.Broker()
        name = f"reconnect-{uuid.uuid4().hex}"
        simamqp.register(name, broker)
        request.addfinalizer(lambda: simamqp.unregister(name))
        url = broker.url
    else:
        require_rabbitmq()
        url = RABBITMQ_URL
    app = Celery("reconnect", set_as_current=False)
    app.conf.update(
        broker_url=url,
        result_backend="rpcbackend.RPCBackend",
        task_default_queue=queue,
        broker_heartbeat=1,  # wakes the worker's loop on RabbitMQ: it stops in time
        worker_hijack_root_logger=False,
    )

    @app.task(name="r.add", shared=False)
    def add(x: int, y: int) -> int:
        return x + y

    yield app
    app.close()
    with kombu.Connection(url) as conn:
        conn.default_channel.queue_delete(queue)


@pytest.mark.parametrize("attempt", range(3))
def test_worker_comes_back_after_its_socket_is_cut_at_start(app: Any, attempt: int) -> None:
    from simamqp._celery_worker import CeleryWorkers

    workers = CeleryWorkers()
    try:
        worker = workers(app, without_heartbeat=False)
        worker.consumer.connection.connection.sock.shutdown(socket.SHUT_RDWR)
        assert app.tasks["r.add"].delay(attempt, 1).get(timeout=15) == attempt + 1
    finally:
        workers.close()
