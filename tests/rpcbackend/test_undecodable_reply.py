"""A reply the backend cannot decode is acknowledged and dropped, not left unacked.

Kills the hand-written bug "rpcbackend not acking an undecodable reply" (docs/mutation.md):
an unacked message stays pinned on the consumer's channel until the connection closes.
"""

from __future__ import annotations

import logging

import kombu
import pytest
from _rpc_helpers import BrokerUnderTest, new_id, request_for


def test_an_undecodable_reply_is_acked_and_the_next_one_arrives(
    broker: BrokerUnderTest, caplog: pytest.LogCaptureFixture
) -> None:
    if not broker.is_sim:
        pytest.skip("unacked counts are read from the simulator (not visible over AMQP)")
    client, worker, conn = broker.backend(), broker.backend(), broker.connection()
    task_id = new_id()
    client.on_task_call(kombu.Producer(conn), task_id)
    kombu.Producer(conn).publish(
        b"\xff{not json",
        exchange="",
        routing_key=client.oid,
        correlation_id=task_id,
        content_type="application/json",
        content_encoding="binary",
    )
    worker.store_result(task_id, 42, "SUCCESS", request=request_for(client, task_id))
    with caplog.at_level(logging.ERROR, logger="rpcbackend"):
        assert client.wait_for(task_id, timeout=10)["result"] == 42
    broker.settle()
    info = broker.sim.queue(client.oid)
    assert (info.messages_ready, info.messages_unacknowledged) == (0, 0)
    assert any("undecodable" in r.getMessage() for r in caplog.records)
