"""Direct reply-to mode (``amq.rabbitmq.reply-to``): standalone and with a real Celery worker."""

from __future__ import annotations

import random
from collections.abc import Iterator
from typing import Any

import kombu
import pytest
from _rpc_helpers import BrokerUnderTest, celery_app, new_id

from rpcbackend import ResultTimeout, RPCBackend

RT = "amq.rabbitmq.reply-to"


class _Worker:
    """Reads requests from a work queue and replies to whatever reply_to they carry."""

    def __init__(self, broker: BrokerUnderTest) -> None:
        self.broker = broker
        self.queue_name = f"rpcbackend-drt-work-{new_id()}"
        self.conn = broker.connection()
        self.queue = kombu.Queue(self.queue_name, auto_delete=False)(self.conn.default_channel)
        self.queue.declare()
        self.backend = broker.backend()

    def take(self) -> dict[str, Any]:
        """The next request's properties, as the worker receives them."""
        self.broker.settle()
        message = self.queue.get(no_ack=True)
        assert message is not None, "no request arrived"
        return dict(message.properties)

    def reply(self, request: dict[str, Any], result: Any, state: str = "SUCCESS") -> None:
        self.backend.store_result(request["correlation_id"], result, state, request=request)
        self.broker.settle()

    def close(self) -> None:
        self.conn.default_channel.queue_delete(self.queue_name)


@pytest.fixture
def worker(broker: BrokerUnderTest) -> Iterator[_Worker]:
    w = _Worker(broker)
    yield w
    w.close()


def _send(client: RPCBackend, producer: kombu.Producer, queue_name: str, task_id: str) -> None:
    client.on_task_call(producer, task_id)
    producer.publish(
        {"task": task_id}, exchange="", routing_key=queue_name, **client.reply_properties(task_id)
    )


def test_off_by_default_and_setting_turns_it_on(broker: BrokerUnderTest) -> None:
    assert broker.backend().direct_reply_to is False
    on = broker.backend(rpcbackend_direct_reply_to=True)
    assert on.direct_reply_to is True
    assert on.reply_queue_names() == []
    assert on.reply_properties("t")["reply_to"] == RT
    assert broker.backend(direct_reply_to=True).direct_reply_to is True


def test_round_trip(broker: BrokerUnderTest, worker: _Worker) -> None:
    client = broker.backend(direct_reply_to=True)
    producer = client.task_producer()
    task_id = new_id()
    _send(client, producer, worker.queue_name, task_id)
    request = worker.take()
    # The broker rewrote reply_to to this channel's address.
    assert request["reply_to"].startswith(RT + ".")
    worker.reply(request, None, "STARTED")
    worker.reply(request, 5)
    seen: list[str] = []
    meta = client.wait_for(task_id, timeout=5, on_message=lambda m: seen.append(m["status"]))
    assert (meta["status"], meta["result"]) == ("SUCCESS", 5)
    assert seen[-1] == "SUCCESS"


def test_round_trip_with_the_callers_own_producer(broker: BrokerUnderTest, worker: _Worker) -> None:
    client = broker.backend(direct_reply_to=True)
    conn = broker.connection()
    producer = kombu.Producer(conn)
    task_id = new_id()
    _send(client, producer, worker.queue_name, task_id)
    worker.reply(worker.take(), "ok")
    assert client.wait_for(task_id, timeout=5)["result"] == "ok"


def test_many_tasks_in_any_order_with_state_precedence(
    broker: BrokerUnderTest, worker: _Worker
) -> None:
    client = broker.backend(direct_reply_to=True)
    producer = client.task_producer()
    ids = [new_id() for _ in range(20)]
    for task_id in ids:
        _send(client, producer, worker.queue_name, task_id)
    requests = [worker.take() for _ in ids]
    assert len({r["reply_to"] for r in requests}) == 1  # one channel, one address
    random.Random(5).shuffle(requests)
    for request in requests:
        worker.reply(request, request["correlation_id"])
        worker.reply(request, None, "STARTED")  # a late STARTED never moves it back
    got = dict(client.iter_results(ids, timeout=10))
    assert set(got) == set(ids)
    assert all(meta["status"] == "SUCCESS" and meta["result"] == tid for tid, meta in got.items())
    assert client.get_task_meta(ids[0])["status"] == "SUCCESS"


def test_poll_and_zero_timeout_never_touch_a_broker_queue(
    broker: BrokerUnderTest, worker: _Worker
) -> None:
    client = broker.backend(direct_reply_to=True)
    producer = client.task_producer()
    task_id = new_id()
    _send(client, producer, worker.queue_name, task_id)
    assert client.get_task_meta(task_id)["status"] == "PENDING"
    with pytest.raises(ResultTimeout, match="direct reply-to"):
        client.wait_for(task_id, timeout=0)
    worker.reply(worker.take(), 1)
    broker.settle(rabbitmq_seconds=0.2)
    assert client.wait_for(task_id, timeout=5)["result"] == 1


def test_reply_after_the_clients_channel_closed_is_dropped(
    broker: BrokerUnderTest, worker: _Worker
) -> None:
    client = broker.backend(direct_reply_to=True)
    producer = client.task_producer()
    task_id = new_id()
    _send(client, producer, worker.queue_name, task_id)
    request = worker.take()
    client.close()  # the channel the reply is addressed to is gone
    worker.reply(request, 1)  # the broker drops it; the worker sees no error
    with pytest.raises(ResultTimeout, match=r"closed 1 time.*drops a direct reply-to reply"):
        client.wait_for(task_id, timeout=0.3)


def test_a_second_live_channel_is_refused(broker: BrokerUnderTest) -> None:
    client = broker.backend(direct_reply_to=True)
    client.on_task_call(kombu.Producer(broker.connection()), new_id())
    with pytest.raises(RuntimeError, match="one channel"):
        client.on_task_call(kombu.Producer(broker.connection()), new_id())


# -- with a real Celery worker (rpcbackend on both sides) ----------------------------------


@pytest.fixture
def sim_clock() -> object:
    simamqp = pytest.importorskip("simamqp")
    return simamqp.WallClock()


@pytest.fixture
def apps(broker: BrokerUnderTest) -> Iterator[tuple[Any, Any]]:
    pytest.importorskip("celery")
    from celery.contrib.testing.worker import start_worker

    worker_app = celery_app(broker, "rpcbackend:RPCBackend")
    client_app = celery_app(
        broker,
        "rpcbackend:RPCBackend",
        task_default_queue=worker_app.conf.task_default_queue,
        rpcbackend_direct_reply_to=True,
    )
    for app in (worker_app, client_app):

        @app.task(name="drt.add", shared=False)
        def add(x: int, y: int) -> int:
            return x + y

        @app.task(name="drt.fail", shared=False)
        def fail() -> None:
            raise KeyError("nope")

    with start_worker(worker_app, pool="solo", perform_ping_check=False, loglevel="WARNING"):
        yield worker_app, client_app


@pytest.mark.celery
def test_celery_worker_round_trip(apps: tuple[Any, Any], broker: BrokerUnderTest) -> None:
    from celery import group

    _, client = apps
    assert isinstance(client.backend, RPCBackend) and client.backend.direct_reply_to
    result = client.send_task("drt.add", (2, 3))
    assert result.get(timeout=10) == 5
    assert result.state == "SUCCESS"
    with pytest.raises(KeyError, match="nope"):
        client.send_task("drt.fail").get(timeout=10)
    job = group(client.signature("drt.add", (i, i)) for i in range(8)).apply_async()
    assert job.join_native(timeout=10) == [2 * i for i in range(8)]
    assert client.backend.reply_queue_names() == []
    # No classic reply queue was ever declared: the results came by direct reply-to.
    with pytest.raises(Exception, match=r"(?i)not.found|no queue"):
        broker.message_count(client.thread_oid)
