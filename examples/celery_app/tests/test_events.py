"""Event publishing: no worker needed, just the broker and its inspection API."""

from __future__ import annotations

import json

import pytest
from kombu import Queue
from shop import EVENTS_EXCHANGE, publish_order_placed


def _bind_audit_queue(conn) -> None:  # type: ignore[no-untyped-def]
    Queue("audit", EVENTS_EXCHANGE, durable=True)(conn.default_channel).declare()


def test_order_placed_reaches_every_subscriber(sim_broker) -> None:  # type: ignore[no-untyped-def]
    with sim_broker.connection() as conn:
        _bind_audit_queue(conn)
        Queue("mailer", EVENTS_EXCHANGE)(conn.default_channel).declare()
        publish_order_placed(conn, {"id": "o-1", "total": 30})
    audit = sim_broker.queue("audit")
    assert audit.messages_ready == 1
    assert json.loads(audit.bodies[0]) == {"event": "order-placed", "id": "o-1", "total": 30}
    assert sim_broker.queue("mailer").messages_ready == 1


def test_events_are_persistent_and_survive_a_restart(sim_broker) -> None:  # type: ignore[no-untyped-def]
    with sim_broker.connection() as conn:
        _bind_audit_queue(conn)
        publish_order_placed(conn, {"id": "o-2"})
    sim_broker.restart()
    assert sim_broker.queue("audit").messages_ready == 1


@pytest.mark.simamqp(faults=[{"point": "enqueue", "action": "duplicate", "queue": "audit"}])
def test_a_duplicated_event_is_seen_twice(sim_broker) -> None:  # type: ignore[no-untyped-def]
    # At-least-once delivery: consumers of shop.events must be idempotent.
    with sim_broker.connection() as conn:
        _bind_audit_queue(conn)
        publish_order_placed(conn, {"id": "o-3"})
        queue = conn.SimpleQueue("audit", queue_opts={"durable": True})
        first, second = queue.get(timeout=1), queue.get(timeout=1)
        assert first.payload == second.payload
        first.ack()
        second.ack()
    assert sim_broker.trace.of_kind("fault")
