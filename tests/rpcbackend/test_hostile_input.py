"""rpcbackend under bad arguments (issue 12): a named error before any I/O, nothing lost."""

from __future__ import annotations

import math
from typing import Any

import kombu
import pytest
from _rpc_helpers import BrokerUnderTest, new_id, publish_raw, request_for

from rpcbackend import ResultTimeout


@pytest.mark.parametrize("task_id", [None, 5, b"id"])
def test_wait_for_a_task_id_that_is_not_a_str_is_a_type_error(
    broker: BrokerUnderTest, task_id: Any
) -> None:
    client = broker.backend()
    with pytest.raises(TypeError, match="a task id is a str"):
        client.wait_for(task_id, timeout=0)


@pytest.mark.parametrize("timeout", [math.nan, "5", True])
def test_wait_for_with_a_timeout_that_never_expires_is_refused(
    broker: BrokerUnderTest, timeout: Any
) -> None:
    with pytest.raises(TypeError, match="timeout"):
        broker.backend().wait_for(new_id(), timeout=timeout)


@pytest.mark.parametrize(
    ("backlog_limit", "error"), [(None, TypeError), ("5", TypeError), (-1, ValueError)]
)
def test_bad_backlog_limit_is_refused_before_any_message_is_acked(
    broker: BrokerUnderTest, backlog_limit: Any, error: type[Exception]
) -> None:
    client, conn = broker.backend(), broker.connection()
    task_id = new_id()
    client.on_task_call(kombu.Producer(conn), task_id)
    publish_raw(conn, client.oid, task_id, "SUCCESS", 42)
    broker.settle()
    with pytest.raises(error, match="backlog_limit"):
        client.get_task_meta(task_id, backlog_limit=backlog_limit)
    assert broker.message_count(client.oid) == 1  # still queued: nothing was read or acked
    assert client.get_task_meta(task_id)["result"] == 42


def test_timeout_says_the_reply_queue_was_lost_before_the_wait(
    broker: BrokerUnderTest,
) -> None:
    client, worker, conn = broker.backend(), broker.backend(), broker.connection()
    task_id = new_id()
    client.on_task_call(kombu.Producer(conn), task_id)
    with pytest.raises(ResultTimeout):
        client.wait_for(new_id(), timeout=0.05)  # start the consumer
    broker.delete_queue(client.oid)
    # Published while the queue is gone: the default exchange drops it.
    worker.store_result(task_id, "lost", "SUCCESS", request=request_for(client, task_id))
    broker.settle(rabbitmq_seconds=0.2)
    # Another wait notices the loss (and redeclares the queue) before this task's wait.
    # Generous: RabbitMQ's basic.cancel for the deleted queue can be slow on a loaded machine.
    with pytest.raises(ResultTimeout):
        client.wait_for(new_id(), timeout=5)
    assert client.result_consumer.losses == 1
    with pytest.raises(ResultTimeout, match="reply queue was lost 1 time"):
        client.wait_for(task_id, timeout=0.2)
