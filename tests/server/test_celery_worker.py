"""A Celery worker in its own process (prefork pool) on the simamqp server and on RabbitMQ.

The worker stores results with Celery's own ``rpc://`` backend; the client in the test process
reads them with ``rpc://`` and with ``rpcbackend.RPCBackend`` (the two are wire-compatible).
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import textwrap
import uuid

import pytest

celery = pytest.importorskip("celery")

TASKS = textwrap.dedent(
    """
    import os
    from celery import Celery

    app = Celery("srvtasks", broker=os.environ["SRV_BROKER"], backend="rpc://")
    app.conf.task_default_queue = os.environ["SRV_QUEUE"]

    @app.task
    def add(x, y):
        return x + y

    @app.task
    def pid():
        return os.getpid()
    """
)


@pytest.fixture(
    scope="module", params=["simamqp", pytest.param("rabbitmq", marks=pytest.mark.rabbitmq)]
)
def broker_url(request):
    """One broker per module: a worker process takes seconds to start, so it serves all tests."""
    if request.param == "rabbitmq":
        from _rabbitmq import RABBITMQ_URL, require_rabbitmq

        require_rabbitmq()
        yield RABBITMQ_URL.rstrip("/") + "/%2F"
        return
    import simamqp
    from simamqp.server import Server

    with Server(simamqp.Broker(clock=simamqp.WallClock())) as server:
        yield server.url


@pytest.fixture(scope="module")
def worker(broker_url, tmp_path_factory):
    amqp_url = broker_url
    tmp_path = tmp_path_factory.mktemp("celery")
    queue = f"srv.celery.{uuid.uuid4().hex[:8]}"
    (tmp_path / "srvtasks.py").write_text(TASKS)
    env = {**os.environ, "SRV_BROKER": amqp_url, "SRV_QUEUE": queue, "PYTHONPATH": str(tmp_path)}
    proc = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "celery",
            "-A",
            "srvtasks",
            "worker",
            "--pool",
            "prefork",
            "--concurrency",
            "2",
            "--loglevel",
            "WARNING",
            "--without-heartbeat",
            "--without-mingle",
            "--without-gossip",
        ],
        cwd=tmp_path,
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
    )
    yield amqp_url, queue
    # Cold shutdown (SIGQUIT): the tests are done with the worker; a warm shutdown (SIGTERM)
    # spends seconds joining the prefork pool on either broker, which is Celery's to test.
    proc.send_signal(signal.SIGQUIT)
    try:
        proc.wait(timeout=20)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait()


@pytest.mark.celery
@pytest.mark.parametrize("backend", ["rpc://", "rpcbackend:RPCBackend"])
def test_prefork_worker_process_runs_tasks(worker, backend):
    url, queue = worker
    app = celery.Celery("client", broker=url, backend=backend)
    app.conf.task_default_queue = queue
    add = app.signature("srvtasks.add")
    pid = app.signature("srvtasks.pid")
    try:
        results = [add.delay(i, 1) for i in range(10)]
        assert [r.get(timeout=60) for r in results] == [i + 1 for i in range(10)]
        worker_pid = pid.delay().get(timeout=30)
        assert worker_pid != os.getpid()  # ran in a pool process, not here
    finally:
        app.close()
