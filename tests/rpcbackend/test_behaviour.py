"""The numbered behaviours of issue 5, each next to Celery's own backend getting it wrong.

Celery-side tests assert Celery's wrong behaviour explicitly (so they fail, visibly, the day
Celery fixes it and the docs' "Differences" list needs updating).
"""

from __future__ import annotations

import os
import threading
import time
from typing import Any

import kombu
import pytest
from _rpc_helpers import (
    BrokerUnderTest,
    celery_app,
    declare_celery_reply_queue,
    new_id,
    publish_raw,
    request_for,
)

from rpcbackend import BacklogLimitExceeded, ResultEvicted, ResultTimeout

# -- 1. state precedence ----------------------------------------------------------------------


def test_late_started_after_success_still_reads_success(broker: BrokerUnderTest) -> None:
    client, conn = broker.backend(), broker.connection()
    task_id = new_id()
    client.on_task_call(kombu.Producer(conn), task_id)
    publish_raw(conn, client.oid, task_id, "SUCCESS", 1)
    publish_raw(conn, client.oid, task_id, "STARTED")  # reordered delivery
    publish_raw(conn, client.oid, task_id, "SUCCESS", 1)  # duplicate
    broker.settle()
    assert client.get_task_meta(task_id)["status"] == "SUCCESS"
    assert client.get_task_meta(task_id)["status"] == "SUCCESS"
    assert client.wait_for(task_id, timeout=0)["result"] == 1
    assert broker.message_count(client.oid) == 0


def test_two_final_states_resolve_by_precedence(broker: BrokerUnderTest) -> None:
    client, conn = broker.backend(), broker.connection()
    task_id = new_id()
    client.on_task_call(kombu.Producer(conn), task_id)
    publish_raw(conn, client.oid, task_id, "FAILURE", {"exc_type": "KeyError",
                                                       "exc_message": [], "exc_module": "builtins"})
    publish_raw(conn, client.oid, task_id, "SUCCESS", 7)
    broker.settle()
    assert client.get_task_meta(task_id)["status"] == "SUCCESS"


@pytest.mark.celery
def test_celery_poll_moves_a_finished_task_back_to_started(broker: BrokerUnderTest) -> None:
    app = celery_app(broker, "rpc://")
    conn = broker.connection()
    task_id = new_id()
    queue = declare_celery_reply_queue(app, conn, task_id)
    publish_raw(conn, queue, task_id, "SUCCESS", 1)
    publish_raw(conn, queue, task_id, "STARTED")
    broker.settle()
    assert app.backend.get_task_meta(task_id)["status"] == "STARTED"  # Celery's bug
    broker.delete_queue(queue)


# -- 2. polling is never stale and never loses another task's result ----------------------


def test_poll_buffers_other_ids_for_later_without_broker_traffic(
    broker: BrokerUnderTest, monkeypatch: pytest.MonkeyPatch,
) -> None:
    client, conn = broker.backend(), broker.connection()
    a, b = new_id(), new_id()
    client.on_task_call(kombu.Producer(conn), a)
    publish_raw(conn, client.oid, b, "SUCCESS", "b")
    publish_raw(conn, client.oid, a, "STARTED")
    broker.settle()
    assert client.get_task_meta(a)["status"] == "STARTED"
    assert broker.message_count(client.oid) == 0  # everything read was acked, none requeued

    def no_io(*args: Any, **kwargs: Any) -> None:
        raise AssertionError("b's result must come from the buffer")

    monkeypatch.setattr(client.result_consumer, "poll", no_io)
    assert client.get_task_meta(b)["result"] == "b"
    assert client.wait_for(b, timeout=0)["result"] == "b"


def test_state_is_visible_while_a_consumer_is_active(broker: BrokerUnderTest) -> None:
    client, conn = broker.backend(), broker.connection()
    task_id = new_id()
    client.on_task_call(kombu.Producer(conn), task_id)
    with pytest.raises(ResultTimeout):
        # Leaves the consumer running. Generous: on a loaded machine connecting to RabbitMQ
        # alone can outlast a short wait.
        client.wait_for(task_id, timeout=1)
    assert client.result_consumer.consuming
    publish_raw(conn, client.oid, task_id, "STARTED")
    broker.settle(rabbitmq_seconds=0.2)  # let RabbitMQ push it to the consumer
    assert client.get_task_meta(task_id)["status"] == "STARTED"


@pytest.mark.celery
def test_celery_state_is_stale_while_its_consumer_is_active(broker: BrokerUnderTest) -> None:
    celery_exceptions = pytest.importorskip("celery.exceptions")
    app = celery_app(broker, "rpc://")
    conn = broker.connection()
    task_id = new_id()
    queue = declare_celery_reply_queue(app, conn, task_id)
    result = app.AsyncResult(task_id)
    with pytest.raises(celery_exceptions.TimeoutError):
        result.get(timeout=0.05)
    publish_raw(conn, queue, task_id, "STARTED")
    broker.settle(rabbitmq_seconds=0.2)
    assert result.state == "PENDING"  # Celery's bug: the STARTED message sits in its consumer
    broker.delete_queue(queue)


def test_on_message_sees_every_accepted_state_in_order(broker: BrokerUnderTest) -> None:
    client, worker, conn = broker.backend(), broker.backend(), broker.connection()
    task_id = new_id()
    client.on_task_call(kombu.Producer(conn), task_id)
    for state in ("STARTED", "RETRY", "STARTED"):
        worker.store_result(task_id, None, state, request=request_for(client, task_id))
    worker.store_result(task_id, 3, "SUCCESS", request=request_for(client, task_id))
    seen: list[str] = []
    meta = client.wait_for(task_id, timeout=5, on_message=lambda m: seen.append(m["status"]))
    assert meta["result"] == 3
    assert seen == ["STARTED", "RETRY", "STARTED", "SUCCESS"]


def test_forget_drops_a_buffered_result(broker: BrokerUnderTest) -> None:
    client, worker, conn = broker.backend(), broker.backend(), broker.connection()
    task_id = new_id()
    client.on_task_call(kombu.Producer(conn), task_id)
    worker.store_result(task_id, 1, "SUCCESS", request=request_for(client, task_id))
    broker.settle()
    assert client.get_task_meta(task_id)["status"] == "SUCCESS"
    client.forget(task_id)
    assert client.get_task_meta(task_id) == {"status": "PENDING", "result": None}


# -- 3. backlog limit -------------------------------------------------------------------------


def _fill(broker: BrokerUnderTest, conn: kombu.Connection, queue: str, count: int) -> list[str]:
    ids = [new_id() for _ in range(count)]
    for task_id in ids:
        publish_raw(conn, queue, task_id, "SUCCESS", task_id)
    broker.settle()
    return ids


def test_exactly_backlog_limit_messages_is_not_an_overflow(broker: BrokerUnderTest) -> None:
    client, conn = broker.backend(), broker.connection()
    client.on_task_call(kombu.Producer(conn), "x")
    ids = _fill(broker, conn, client.oid, 3)
    assert client.get_task_meta(ids[-1], backlog_limit=3)["status"] == "SUCCESS"


def test_overflow_raises_after_buffering_and_a_later_call_progresses(
    broker: BrokerUnderTest,
) -> None:
    client, conn = broker.backend(), broker.connection()
    client.on_task_call(kombu.Producer(conn), "x")
    ids = _fill(broker, conn, client.oid, 7)
    with pytest.raises(BacklogLimitExceeded, match="more than 3 messages"):
        client.get_task_meta(ids[-1], backlog_limit=3)
    assert broker.message_count(client.oid) == 3  # 4 read, acked, buffered; none left unacked
    assert client.get_task_meta(ids[0], backlog_limit=3)["result"] == ids[0]  # from the buffer
    assert client.get_task_meta(ids[-1], backlog_limit=3)["result"] == ids[-1]
    assert broker.message_count(client.oid) == 0


@pytest.mark.celery
def test_celery_calls_exactly_backlog_limit_messages_an_overflow(broker: BrokerUnderTest) -> None:
    app = celery_app(broker, "rpc://")
    conn = broker.connection()
    queue = declare_celery_reply_queue(app, conn, "x")
    ids = _fill(broker, conn, queue, 3)
    with pytest.raises(app.backend.BacklogLimitExceeded):  # Celery's bug
        app.backend.get_task_meta(ids[-1], backlog_limit=3)
    broker.delete_queue(queue)


# -- 4. accurate timeouts ---------------------------------------------------------------------


def test_timeout_is_accurate(broker: BrokerUnderTest) -> None:
    client = broker.backend()
    task_id = new_id()
    started = time.monotonic()
    with pytest.raises(ResultTimeout, match=task_id):
        client.wait_for(task_id, timeout=0.05)
    # Generous (a loaded 2-core machine must not fail it): the wait ended with its timeout,
    # not with some later event.
    assert time.monotonic() - started < 10


def test_timeout_zero_polls_once(broker: BrokerUnderTest) -> None:
    client, worker, conn = broker.backend(), broker.backend(), broker.connection()
    task_id = new_id()
    client.on_task_call(kombu.Producer(conn), task_id)
    with pytest.raises(ResultTimeout):
        client.wait_for(task_id, timeout=0)
    assert not client.result_consumer.consuming  # a poll, not a subscription
    worker.store_result(task_id, 5, "SUCCESS", request=request_for(client, task_id))
    broker.settle()
    assert client.wait_for(task_id, timeout=0)["result"] == 5


@pytest.mark.rabbitmq
@pytest.mark.celery
def test_celery_timeout_overshoots_to_a_second() -> None:
    # Wall-clock behaviour of Celery's drainer, so it is shown on RabbitMQ only.
    from _rabbitmq import RABBITMQ_URL, require_rabbitmq

    require_rabbitmq()  # skip outside CI when RabbitMQ is down, like every rabbitmq test
    celery_exceptions = pytest.importorskip("celery.exceptions")
    broker = BrokerUnderTest("rabbitmq", RABBITMQ_URL)
    app = celery_app(broker, "rpc://")
    try:
        started = time.monotonic()
        with pytest.raises(celery_exceptions.TimeoutError):
            app.AsyncResult(new_id()).get(timeout=0.05)
        assert time.monotonic() - started >= 0.9  # Celery's bug: waits a whole interval
    finally:
        broker.close()


# -- 5. threads and fork ----------------------------------------------------------------------


def test_two_threads_wait_on_one_backend(broker: BrokerUnderTest) -> None:
    client, worker, conn = broker.backend(), broker.backend(), broker.connection()
    ids = [new_id(), new_id()]
    for task_id in ids:
        client.on_task_call(kombu.Producer(conn), task_id)
    results: dict[str, Any] = {}
    waiting = threading.Barrier(3)

    def wait(task_id: str) -> None:
        waiting.wait()
        results[task_id] = client.wait_for(task_id, timeout=10)["result"]

    threads = [threading.Thread(target=wait, args=(task_id,)) for task_id in ids]
    for thread in threads:
        thread.start()
    waiting.wait()
    for task_id in reversed(ids):
        worker.store_result(task_id, task_id, "SUCCESS", request=request_for(client, task_id))
    broker.settle()
    for thread in threads:
        thread.join(10)
    assert results == {task_id: task_id for task_id in ids}


@pytest.mark.skipif(not hasattr(os, "fork"), reason="needs os.fork")
def test_forked_child_gets_its_own_reply_queue(broker: BrokerUnderTest) -> None:
    if broker.is_sim:
        pytest.skip("an in-process simulated broker is not shared with a forked child")
    client, conn = broker.backend(), broker.connection()
    parent_oid = client.oid
    client.on_task_call(kombu.Producer(conn), new_id())
    read_end, write_end = os.pipe()
    pid = os.fork()
    if pid == 0:  # child: report its oid and whether it receives its own result
        try:
            task_id = new_id()
            child_conn = kombu.Connection(broker.url)
            client.on_task_call(kombu.Producer(child_conn), task_id)
            worker = broker.backend()
            worker.store_result(task_id, "child", "SUCCESS", request=request_for(client, task_id))
            status = client.wait_for(task_id, timeout=5)["result"]
            broker.delete_queue(client.oid)  # os._exit skips the fixture's cleanup
            os.write(write_end, f"{client.oid} {status}".encode())
        except BaseException as exc:
            os.write(write_end, f"child failed: {exc!r}".encode())
        finally:
            os._exit(0)
    os.close(write_end)
    os.waitpid(pid, 0)
    report = os.read(read_end, 1000).decode()
    assert not report.startswith("child failed"), report
    child_oid, child_result = report.split()
    os.close(read_end)
    assert child_oid != parent_oid
    assert child_result == "child"
    assert client.oid == parent_oid


@pytest.mark.celery
@pytest.mark.skipif(not hasattr(os, "fork"), reason="needs os.fork")
def test_celery_forked_child_shares_the_parents_reply_queue(broker: BrokerUnderTest) -> None:
    if broker.is_sim:
        pytest.skip("an in-process simulated broker is not shared with a forked child")
    app = celery_app(broker, "rpc://")
    parent_oid = app.backend.oid
    read_end, write_end = os.pipe()
    pid = os.fork()
    if pid == 0:
        try:
            os.write(write_end, str(app.backend.oid).encode())
        finally:
            os._exit(0)
    os.close(write_end)
    os.waitpid(pid, 0)
    child_oid = os.read(read_end, 1000).decode()
    os.close(read_end)
    assert child_oid == parent_oid  # Celery's bug: the child consumes the parent's results


# -- 6. bounded buffer with visible eviction --------------------------------------------------


def test_evicted_result_fails_fast_with_a_clear_error(
    broker: BrokerUnderTest, caplog: pytest.LogCaptureFixture,
) -> None:
    client, conn = broker.backend(buffer_max=2), broker.connection()
    client.on_task_call(kombu.Producer(conn), "x")
    ids = _fill(broker, conn, client.oid, 3)
    assert client.get_task_meta(ids[-1])["status"] == "SUCCESS"
    assert "dropped the unclaimed SUCCESS result" in caplog.text
    started = time.monotonic()
    with pytest.raises(ResultEvicted, match=ids[0]):
        client.wait_for(ids[0], timeout=60)
    assert time.monotonic() - started < 30  # failed fast: did not wait out its 60 s timeout
    with pytest.raises(ResultEvicted):
        client.get_task_meta(ids[0])


@pytest.mark.celery
def test_celery_evicts_buffered_results_silently(
    broker: BrokerUnderTest, monkeypatch: pytest.MonkeyPatch,
) -> None:
    import celery
    import celery.backends.base

    monkeypatch.setattr(celery.backends.base, "MESSAGE_BUFFER_MAX", 2)
    app = celery_app(broker, "rpc://")
    conn = broker.connection()
    queue = declare_celery_reply_queue(app, conn, "x")
    ids = _fill(broker, conn, queue, 3)
    app.backend.get_task_meta(ids[-1])
    if celery.VERSION >= (5, 7):
        assert app.backend.get_task_meta(ids[0])["status"] == "PENDING"  # Celery's bug: lost
    else:
        # Before 5.7, get_task_meta keeps what it polls past in its out-of-band dict, which
        # MESSAGE_BUFFER_MAX does not bound: nothing is lost (the bug came with 5.7's buffer).
        assert app.backend.get_task_meta(ids[0])["status"] == "SUCCESS"
    broker.delete_queue(queue)


# -- 7. lost reply queue, dropped connection --------------------------------------------------


def _wait_in_thread(client: Any, task_id: str, timeout: float) -> tuple[threading.Thread,
                                                                         dict[str, Any]]:
    outcome: dict[str, Any] = {}

    def run() -> None:
        try:
            outcome["meta"] = client.wait_for(task_id, timeout=timeout)
        except Exception as exc:
            outcome["error"] = exc

    thread = threading.Thread(target=run)
    thread.start()
    return thread, outcome


def _reconnected_event(client: Any, monkeypatch: pytest.MonkeyPatch) -> threading.Event:
    event = threading.Event()
    original = client._on_reconnected

    def hook() -> None:
        original()
        if client.result_consumer.losses:
            event.set()

    monkeypatch.setattr(client, "_on_reconnected", hook)
    return event


def test_deleted_reply_queue_is_redeclared_and_the_wait_goes_on(
    broker: BrokerUnderTest, monkeypatch: pytest.MonkeyPatch,
) -> None:
    client, worker, conn = broker.backend(), broker.backend(), broker.connection()
    task_id = new_id()
    client.on_task_call(kombu.Producer(conn), task_id)
    with pytest.raises(ResultTimeout):
        client.wait_for(new_id(), timeout=0.05)  # start the consumer
    reconnected = _reconnected_event(client, monkeypatch)
    thread, outcome = _wait_in_thread(client, task_id, 10)
    broker.delete_queue(client.oid)
    broker.settle()
    assert reconnected.wait(10)
    worker.store_result(task_id, "ok", "SUCCESS", request=request_for(client, task_id))
    broker.settle()
    thread.join(10)
    assert outcome.get("meta", {}).get("result") == "ok", outcome


def test_result_lost_with_the_queue_times_out_saying_so(
    broker: BrokerUnderTest, monkeypatch: pytest.MonkeyPatch,
) -> None:
    client, worker, conn = broker.backend(), broker.backend(), broker.connection()
    task_id = new_id()
    client.on_task_call(kombu.Producer(conn), task_id)
    with pytest.raises(ResultTimeout):
        client.wait_for(new_id(), timeout=0.05)
    broker.delete_queue(client.oid)
    # Published while the queue is gone: the default exchange drops it.
    worker.store_result(task_id, "lost", "SUCCESS", request=request_for(client, task_id))
    broker.settle()
    # Generous: RabbitMQ's basic.cancel for the deleted queue must arrive within the wait, and
    # on a loaded machine it can take a while (the timeout is what the test waits, not a bound).
    with pytest.raises(ResultTimeout, match="reply queue was lost 1 time"):
        client.wait_for(task_id, timeout=5)


def test_dropped_connection_reconnects_and_the_wait_goes_on(
    broker: BrokerUnderTest, monkeypatch: pytest.MonkeyPatch,
) -> None:
    client, worker, conn = broker.backend(), broker.backend(), broker.connection()
    task_id = new_id()
    client.on_task_call(kombu.Producer(conn), task_id)
    with pytest.raises(ResultTimeout):
        client.wait_for(new_id(), timeout=0.05)
    reconnected = _reconnected_event(client, monkeypatch)
    thread, outcome = _wait_in_thread(client, task_id, 10)
    if broker.is_sim:
        broker.sim.restart()
    else:
        import socket

        client.result_consumer._connection.connection.sock.shutdown(socket.SHUT_RDWR)
    assert reconnected.wait(10)
    worker.store_result(task_id, "ok", "SUCCESS", request=request_for(client, task_id))
    broker.settle()
    thread.join(10)
    assert outcome.get("meta", {}).get("result") == "ok", outcome


# -- 8. groups: native join in any arrival order ----------------------------------------------


def test_iter_results_yields_in_arrival_order(broker: BrokerUnderTest) -> None:
    client, worker, conn = broker.backend(), broker.backend(), broker.connection()
    ids = [new_id() for _ in range(5)]
    client.on_task_call(kombu.Producer(conn), ids[0])
    for task_id in reversed(ids):
        worker.store_result(task_id, task_id, "SUCCESS", request=request_for(client, task_id))
    broker.settle()
    got = [task_id for task_id, _ in client.iter_results(ids, timeout=5)]
    assert got == list(reversed(ids))


def test_iter_results_timeout_names_the_missing_ids(broker: BrokerUnderTest) -> None:
    client, worker, conn = broker.backend(), broker.backend(), broker.connection()
    done, missing = new_id(), new_id()
    client.on_task_call(kombu.Producer(conn), done)
    worker.store_result(done, 1, "SUCCESS", request=request_for(client, done))
    broker.settle()
    got = []
    with pytest.raises(ResultTimeout, match=missing):
        for task_id, _ in client.iter_results([done, missing], timeout=0.1):
            got.append(task_id)
    assert got == [done]
