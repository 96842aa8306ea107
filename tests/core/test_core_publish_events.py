"""What publishing, routing and consuming write to the trace, field by field.

The digest hashes every field of every event (tests/core/test_trace_digest.py), so a field
renamed, dropped or given another value changes every digest users have pinned. Mutants that
did so in ``broker.py`` and ``channel.py`` survived issue 15's mutation review: the
differential tests look at frames, not at the trace. Each test names the facts it pins.
"""

from __future__ import annotations

import pytest

from simamqp.core import Broker
from simamqp.core.errors import NotAllowed, NotFound


def test_mandatory_return_and_confirm_nack_are_traced() -> None:
    """A mandatory unroutable publish traces ``return`` with its message id, code and text; a
    publish a reject-publish queue refused traces ``confirm`` with ``ack`` exactly false."""
    broker = Broker(seed=1)
    ch = broker.connect().channel()
    ch.confirm_select()
    ch.queue_declare("full", arguments={"x-max-length": 1, "x-overflow": "reject-publish"})
    ch.basic_publish(b"lost", "", "nowhere", mandatory=True)
    ch.basic_publish(b"1", "", "full")
    ch.basic_publish(b"2", "", "full")
    returns = [dict(e.attrs) for e in broker.trace.of_kind("return")]
    assert returns == [{"msg": 1, "code": 312, "text": "NO_ROUTE"}]
    confirms = [dict(e.attrs) for e in broker.trace.of_kind("confirm")]
    assert confirms == [
        {"channel": 1, "seq": 1, "ack": True},
        {"channel": 1, "seq": 2, "ack": True},
        {"channel": 1, "seq": 3, "ack": False},
    ]
    assert [type(v) for c in confirms for v in c.values()] == [int, int, bool] * 3


def test_consume_events_of_a_queue_consumer_and_the_reply_consumer() -> None:
    """``consume`` names the connection, channel, queue (the pseudo-queue for direct
    reply-to), consumer tag and ack mode; ``cancel`` names the tag it cancelled."""
    broker = Broker(seed=1)
    ch = broker.connect().channel()
    ch.queue_declare("q")
    ch.basic_consume("q", consumer_tag="worker")
    ch.basic_consume("amq.rabbitmq.reply-to", consumer_tag="replies", no_ack=True)
    ch.basic_cancel("worker")
    where = {"connection": 1, "channel": 1}
    assert [(e.kind, dict(e.attrs)) for e in broker.trace.of_kind("consume", "cancel")] == [
        ("consume", {**where, "queue": "q", "consumer_tag": "worker", "no_ack": False}),
        (
            "consume",
            {**where, "queue": "amq.rabbitmq.reply-to", "consumer_tag": "replies", "no_ack": True},
        ),
        ("cancel", {**where, "consumer_tag": "worker"}),
    ]


def test_an_empty_basic_get_is_traced_with_channel_and_queue() -> None:
    """``get-empty`` says which channel found which queue empty."""
    broker = Broker(seed=1)
    conn = broker.connect()
    conn.channel()
    ch = conn.channel()
    ch.queue_declare("q")
    assert ch.basic_get("q") is None
    assert [dict(e.attrs) for e in broker.trace.of_kind("get-empty")] == [
        {"channel": 2, "queue": "q"}
    ]


def test_unbind_exchange_delete_and_restart_events() -> None:
    """``unbind`` names the binding it removed, ``exchange-delete`` the exchange, and queues
    deleted by auto-delete or dropped by a restart are traced as deleted for that reason."""
    broker = Broker(seed=1)
    ch = broker.connect().channel()
    ch.exchange_declare("x", "direct")
    ch.queue_declare("q")
    ch.queue_bind("q", "x", "k")
    ch.queue_unbind("q", "x", "k")
    ch.exchange_delete("x")
    ch.queue_declare("auto", auto_delete=True)
    ch.basic_cancel(ch.basic_consume("auto"))
    broker.restart()
    unbinds = [dict(e.attrs) for e in broker.trace.of_kind("unbind")]
    assert unbinds == [
        {
            "vhost": "/",
            "source": "x",
            "destination": "q",
            "destination_kind": "queue",
            "routing_key": "k",
        }
    ]
    deleted = [dict(e.attrs) for e in broker.trace.of_kind("exchange-delete", "queue-delete")]
    assert deleted == [
        {"vhost": "/", "exchange": "x"},
        {"vhost": "/", "queue": "auto", "reason": "auto-delete"},
        {"vhost": "/", "queue": "q", "reason": "restart"},
    ]


def test_a_reply_delivery_is_traced_with_the_reply_consumers_tag() -> None:
    """A direct reply-to delivery is traced like any delivery: at the current time, to the
    pseudo-queue, with the reply consumer's tag, never as redelivered."""
    broker = Broker(seed=1)
    client = broker.connect().channel()
    server = broker.connect().channel()
    client.basic_consume("amq.rabbitmq.reply-to", consumer_tag="replies", no_ack=True)
    client.queue_declare("requests")
    client.basic_publish(
        b"request", "", "requests", properties={"reply_to": "amq.rabbitmq.reply-to"}
    )
    broker.advance(2.5)
    request = server.basic_get("requests", no_ack=True)
    assert request is not None
    server.basic_publish(b"reply", "", request.message.properties["reply_to"])
    [event] = [e for e in broker.trace.of_kind("deliver") if e.attrs["queue"] != "requests"]
    assert event.time == 2.5
    assert dict(event.attrs) == {
        "connection": 1,
        "channel": 1,
        "queue": "amq.rabbitmq.reply-to",
        "consumer_tag": "replies",
        "delivery_tag": 1,
        "msg": 2,
        "redelivered": False,
    }


def test_purge_delete_error_and_channel_close_events() -> None:
    """``purge`` counts what it removed; a queue.delete is traced with reason "deleted"; a
    channel or connection error names where it happened and its scope; a client's
    channel.close is traced, requeues what it held (traced too) and sends no server-initiated
    channel.close."""
    broker = Broker(seed=1)
    conn = broker.connect()
    ch = conn.channel()
    ch.queue_declare("q")
    ch.basic_publish(b"1", "", "q")
    ch.basic_publish(b"2", "", "q")
    assert ch.queue_purge("q") == 2
    ch.queue_delete("q")
    with pytest.raises(NotFound):
        ch.queue_declare("missing", passive=True)
    ch2 = conn.channel()  # takes the closed channel's number, 1
    ch2.queue_declare("held")
    ch2.basic_publish(b"h", "", "held")
    assert ch2.basic_get("held") is not None
    conn.outbox.clear()
    ch2.close()
    assert list(conn.outbox) == []
    ch3 = conn.channel()
    with pytest.raises(NotAllowed):
        ch3.basic_consume("amq.rabbitmq.reply-to", no_ack=True, consumer_tag="t")
        ch3.queue_declare("dup")
        ch3.basic_consume("dup", consumer_tag="t2")
        ch3.basic_consume("dup", consumer_tag="t2")
    kinds = ("purge", "queue-delete", "error", "channel-close", "requeue")
    assert [(e.kind, dict(e.attrs)) for e in broker.trace if e.kind in kinds] == [
        ("purge", {"queue": "q", "vhost": "/", "count": 2}),
        ("queue-delete", {"vhost": "/", "queue": "q", "reason": "deleted"}),
        (
            "error",
            {
                "connection": 1,
                "channel": 1,
                "code": 404,
                "text": "NOT_FOUND - no queue 'missing' in vhost '/'",
                "method": [50, 10],
                "scope": "channel",
            },
        ),
        ("channel-close", {"connection": 1, "channel": 1}),
        ("requeue", {"queue": "held", "msgs": [3]}),
        (
            "error",
            {
                "connection": 1,
                "channel": ch3.id,
                "code": 530,
                "text": "NOT_ALLOWED - attempt to reuse consumer tag 't2'",
                "method": [60, 20],
                "scope": "connection",
            },
        ),
    ]
