"""Celery 5 on simamqp and on RabbitMQ: the same tests, an in-thread solo worker, rpc:// results.

Issue 4 acceptance: tasks, retries, countdown/ETA, revoke, acks_late, reject/requeue, chains,
groups and task routing by direct and topic exchanges behave the same on both brokers
(https://docs.celeryq.dev/en/stable/userguide/ calling.html, tasks.html, routing.html,
canvas.html, workers.html#revoking-tasks).
"""

from __future__ import annotations

import time

import pytest
from _celery_helpers import CeleryEnv

pytestmark = pytest.mark.celery

TIMEOUT = 15


def test_task_runs_and_returns(celery_env: CeleryEnv) -> None:
    """calling.html: delay() sends to the default queue; the rpc backend brings the result."""
    result = celery_env.app.tasks["t.add"].delay(2, 3)
    assert result.get(timeout=TIMEOUT) == 5
    assert result.state == "SUCCESS"


def test_many_tasks(celery_env: CeleryEnv) -> None:
    """Results of many tasks sent at once all come back to the one rpc reply queue
    (https://docs.celeryq.dev/en/stable/userguide/tasks.html#rpc-result-backend-rabbitmq-qpid)."""
    add = celery_env.app.tasks["t.add"]
    results = [add.delay(i, i) for i in range(20)]
    assert [r.get(timeout=TIMEOUT) for r in results] == [2 * i for i in range(20)]


def test_retries_until_success(celery_env: CeleryEnv) -> None:
    """tasks.html#retrying: self.retry republishes the task with retries+1 and a countdown."""
    token = celery_env.token()
    result = celery_env.app.tasks["t.flaky"].delay(token, 2)
    assert result.get(timeout=TIMEOUT) == 2
    assert celery_env.seen[token] == [0, 1, 2]


def test_retries_exhausted_raise_the_original_error(celery_env: CeleryEnv) -> None:
    """tasks.html#retrying: after max_retries the exc passed to retry() is raised."""
    result = celery_env.app.tasks["t.always_fails"].delay()
    with pytest.raises(ValueError, match="permanent"):
        result.get(timeout=TIMEOUT)
    assert result.state == "FAILURE"


def test_countdown_and_eta(celery_env: CeleryEnv) -> None:
    """calling.html#eta-and-countdown: the worker receives the task with its ETA and runs it
    no earlier than that: in real time on RabbitMQ, on the broker's (virtual) clock on
    simamqp (docs/threads.md, "Celery's timers")."""
    where = celery_env.app.tasks["t.where"]
    clock = time.time if celery_env.sim is None else celery_env.sim.clock.now
    start = clock()
    result = where.apply_async(countdown=0.5)
    info = result.get(timeout=TIMEOUT)
    assert info["eta"] is not None
    assert clock() - start >= 0.45


def test_revoke_before_execution(celery_env: CeleryEnv) -> None:
    """workers.html#revoking-tasks: a revoke broadcast (pidbox fanout + reply queue) reaches the
    worker; the task is then discarded and its result is REVOKED."""
    from celery.exceptions import TaskRevokedError

    app = celery_env.app
    task_id = f"revoked-{celery_env.token()}"
    replies = app.control.revoke(
        task_id, reply=True, timeout=5, limit=1, destination=[celery_env.hostname]
    )
    assert len(replies) == 1
    [(node, reply)] = replies[0].items()
    assert node == celery_env.hostname
    assert "revoked" in reply["ok"]
    result = app.tasks["t.add"].apply_async((1, 1), task_id=task_id)
    with pytest.raises(TaskRevokedError):
        result.get(timeout=TIMEOUT)
    assert result.state == "REVOKED"


def test_revoke_a_task_waiting_for_its_eta(celery_env: CeleryEnv) -> None:
    """workers.html#revoking-tasks: a task the worker already holds for its ETA is discarded
    when revoked before the ETA."""
    from celery.exceptions import TaskRevokedError

    app = celery_env.app
    result = app.tasks["t.add"].apply_async((1, 1), countdown=1)
    replies = app.control.revoke(
        result.id, reply=True, timeout=5, limit=1, destination=[celery_env.hostname]
    )
    assert len(replies) == 1
    with pytest.raises(TaskRevokedError):
        result.get(timeout=TIMEOUT)


def test_reject_without_requeue_drops_the_message(celery_env: CeleryEnv) -> None:
    """tasks.html#reject: Reject(requeue=False) settles the message without running it again
    (basic.reject requeue=false, AMQP 0-9-1 spec 1.8.3.14)."""
    import threading

    token = celery_env.token()
    celery_env.seen[token + ":done"] = threading.Event()
    celery_env.app.tasks["t.reject_drop"].delay(token)
    assert celery_env.seen[token + ":done"].wait(TIMEOUT)
    # A ping through the same queue proves the worker moved on and nothing was redelivered.
    assert celery_env.app.tasks["t.add"].delay(0, 0).get(timeout=TIMEOUT) == 0
    assert len(celery_env.seen[token]) == 1
    assert celery_env.ready_count(celery_env.names["default"]) == 0


def test_acks_late_keeps_the_message_unacked_while_running(celery_env: CeleryEnv) -> None:
    """tasks.html#Task.acks_late: the message is acknowledged after the task ran."""
    token = celery_env.token()
    assert celery_env.app.tasks["t.late"].delay(token).get(timeout=TIMEOUT) == token
    # A probe published while it ran stayed ready: the worker's prefetch window was full.
    assert celery_env.seen[token] == 1
    assert celery_env.seen[token + ":probe"] == b"probe"
    assert celery_env.ready_count(celery_env.names["default"]) == 0


def test_reject_requeue_redelivers(celery_env: CeleryEnv) -> None:
    """tasks.html#reject: Reject(requeue=True) in an acks_late task requeues the message; it
    comes back with redelivered=True (https://www.rabbitmq.com/confirms.html)."""
    token = celery_env.token()
    result = celery_env.app.tasks["t.requeue_once"].delay(token)
    assert result.get(timeout=TIMEOUT) == [False, True]


def test_chain(celery_env: CeleryEnv) -> None:
    """canvas.html#chains: each result is passed to the next task."""
    add = celery_env.app.tasks["t.add"]
    workflow = add.s(1, 2) | add.s(3) | add.s(4)
    assert workflow.apply_async().get(timeout=TIMEOUT) == 10


def test_group(celery_env: CeleryEnv) -> None:
    """canvas.html#groups: the tasks run and their results are joined in order."""
    from celery import group

    add = celery_env.app.tasks["t.add"]
    result = group(add.s(i, 10) for i in range(6)).apply_async()
    assert result.get(timeout=TIMEOUT) == [10, 11, 12, 13, 14, 15]


def test_chain_of_group_results(celery_env: CeleryEnv) -> None:
    """canvas.html: a chain whose first step is a group feeds the list to the next task."""
    from celery import group

    add = celery_env.app.tasks["t.add"]
    where = celery_env.app.tasks["t.where"]
    first = group(add.s(1, 1), add.s(2, 2)).apply_async()
    assert first.get(timeout=TIMEOUT) == [2, 4]
    assert where.delay().get(timeout=TIMEOUT)["routing_key"] == celery_env.names["default"]


def test_routing_by_direct_exchange(celery_env: CeleryEnv) -> None:
    """routing.html#exchanges-queues-and-routing-keys: task_routes sends t.billing to a direct
    exchange; the queue bound with that key gets it."""
    result = celery_env.app.tasks["t.billing"].delay()
    assert result.get(timeout=TIMEOUT) == [celery_env.names["direct_x"], "billing"]


@pytest.mark.parametrize("routing_key", ["reports.daily", "reports", "eu.urgent"])
def test_routing_by_topic_exchange(celery_env: CeleryEnv, routing_key: str) -> None:
    """routing.html#topic-exchanges: a topic exchange routes by pattern (reports.# matches
    `reports`; *.urgent matches `eu.urgent`)."""
    result = celery_env.app.tasks["t.report"].apply_async(routing_key=routing_key)
    assert result.get(timeout=TIMEOUT) == [celery_env.names["topic_x"], routing_key]


def test_unroutable_topic_key_is_not_delivered(celery_env: CeleryEnv) -> None:
    """A key no binding matches is dropped by the exchange: the task never runs (AMQP 0-9-1
    spec 3.1.3.3, https://www.rabbitmq.com/tutorials/tutorial-five-python.html)."""
    from celery.exceptions import TimeoutError as CeleryTimeout

    result = celery_env.app.tasks["t.report"].apply_async(routing_key="nobody.listens.here")
    with pytest.raises(CeleryTimeout):
        result.get(timeout=0.5)
