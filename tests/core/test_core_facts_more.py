"""More measured RabbitMQ 3.10 facts (docs/rabbitmq-facts.md) pinned at the engine level:
exclusivity on redeclare, unbind locking, argument rendering in 406 texts, zero-length queues,
single-active-consumer re-registration, expiration 0.
"""

from __future__ import annotations

import pytest
from _core_helpers import bodies, drain, publish

from simamqp.core import BasicAck, Broker, Channel, Connection
from simamqp.core.errors import PreconditionFailed, ResourceLocked


def test_exclusive_flag_mismatch_on_redeclare_is_405(broker: Broker, conn: Connection) -> None:
    """Facts §2: exclusive differs → 405 RESOURCE_LOCKED, also on the owning connection, and
    for a non-exclusive queue redeclared exclusive (https://www.rabbitmq.com/queues.html)."""
    ch = conn.channel()
    ch.queue_declare("ex", exclusive=True)
    with pytest.raises(ResourceLocked):
        ch.queue_declare("ex", exclusive=False)
    ch = conn.channel()
    ch.queue_declare("plain")
    with pytest.raises(ResourceLocked) as info:
        ch.queue_declare("plain", exclusive=True)
    assert info.value.method == (50, 10)


def test_unbind_from_another_connection(broker: Broker) -> None:
    """Facts §3: queue.unbind of an existing binding on someone else's exclusive queue is 405
    (50,50); unbinding a binding that does not exist is OK."""
    owner = broker.connect().channel()
    owner.queue_declare("ex", exclusive=True)
    owner.queue_bind("ex", "amq.direct", "k")
    other = broker.connect().channel()
    other.queue_unbind("ex", "amq.direct", "not-bound")
    with pytest.raises(ResourceLocked) as info:
        other.queue_unbind("ex", "amq.direct", "k")
    assert info.value.method == (50, 50)


@pytest.mark.parametrize(
    ("old", "new", "text"),
    [
        (None, 1000, "received the value '1000' of type 'signedint' but current is none"),
        (1000, 1000.0, "received '1.0e3' but current is '1000'"),
        (1000, "1000", "received '1000' but current is '1000'"),
        (1000, 2**40, "received '1099511627776' but current is '1000'"),
    ],
)
def test_argument_rendering_in_inequivalent_arg(
    ch: Channel, conn: Connection, old, new, text: str
) -> None:
    """Facts §2: how RabbitMQ renders values and types in `inequivalent arg` texts."""
    ch.queue_declare("q", arguments={} if old is None else {"x-message-ttl": old})
    with pytest.raises(PreconditionFailed) as info:
        conn.channel().queue_declare("q", arguments={"x-message-ttl": new})
    assert info.value.reply_text == (
        "PRECONDITION_FAILED - inequivalent arg 'x-message-ttl' for queue 'q' in vhost '/': " + text
    )


def test_queue_type_classic_equals_absent(ch: Channel) -> None:
    """Facts §2: x-queue-type 'classic' is the same as no x-queue-type on redeclare."""
    ch.queue_declare("q")
    assert ch.queue_declare("q", arguments={"x-queue-type": "classic"}) == ("q", 0, 0)


def test_zero_max_length_drop_head_acks_and_drops(
    broker: Broker, conn: Connection, ch: Channel
) -> None:
    """Facts §11: x-max-length=0 (drop-head) acks the publish and drops the message."""
    ch.queue_declare("z", arguments={"x-max-length": 0})
    ch.confirm_select()
    ch.basic_publish(b"m", "", "z")
    assert drain(conn) == [BasicAck(ch.id, 1)]
    assert broker.queue("z").messages == 0


def test_expiration_zero_expires_unless_delivered_at_once(
    broker: Broker, conn: Connection, ch: Channel
) -> None:
    """Facts §7: expiration '0' is valid; the message expires at once unless a consumer can
    take it straight away (https://www.rabbitmq.com/ttl.html)."""
    ch.queue_declare("q")
    publish(ch, "gone", routing_key="q", expiration="0")
    assert broker.queue("q").messages == 0
    ch.basic_consume("q", no_ack=True)
    publish(ch, "kept", routing_key="q", expiration="0")
    assert bodies(conn) == [b"kept"]


def test_single_active_consumer_reregistration_stays_idle(conn: Connection, ch: Channel) -> None:
    """Facts §18: when the old active consumer registers again while B is active, B stays
    active and A waits (https://www.rabbitmq.com/consumers.html#single-active-consumer)."""
    ch.queue_declare("sac", arguments={"x-single-active-consumer": True})
    ch.basic_consume("sac", consumer_tag="A", no_ack=True)
    ch.basic_consume("sac", consumer_tag="B", no_ack=True)
    ch.basic_cancel("A")
    ch.basic_consume("sac", consumer_tag="A", no_ack=True)
    publish(ch, "1", routing_key="sac")
    publish(ch, "2", routing_key="sac")
    assert [f.consumer_tag for f in drain(conn)] == ["B", "B"]  # type: ignore[union-attr]


def test_prefetch_65535_and_zero_are_fine(ch: Channel) -> None:
    """Facts §6: basic.qos(0, 65535) is OK; prefetch 0 means unlimited."""
    ch.basic_qos(0, 65535, False)
    ch.basic_qos(0, 0, True)
    assert ch.is_open
