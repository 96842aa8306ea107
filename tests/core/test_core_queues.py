"""Queues: lifecycles, TTLs, length limits, dead-lettering, priority, SAC, purge/delete, counts.

Pins https://www.rabbitmq.com/queues.html, /ttl.html, /maxlength.html, /dlx.html,
/priority.html, /consumers.html#single-active-consumer and AMQP 0-9-1 spec 1.7.2, with the
behaviours measured on RabbitMQ 3.10 (docs/rabbitmq-facts.md §2, §3, §8-10, §12, §14, §17, §18).
"""

from __future__ import annotations

import datetime as dt
import re

import pytest
from _core_helpers import bodies, deliveries, drain, get_bodies, publish

from simamqp.core import BasicAck, BasicCancel, BasicNack, Broker, Channel, Connection
from simamqp.core.errors import AccessRefused, NotFound, PreconditionFailed

# -- lifecycles -----------------------------------------------------------------------------


def test_server_named_queue(broker: Broker, ch: Channel) -> None:
    """queue.declare with an empty name (AMQP 0-9-1 spec 1.7.2.1): RabbitMQ answers
    `amq.gen-` + 22 base64url characters (facts §9); the name is the channel's last queue,
    so an empty name means it in later methods (spec 1.7.2)."""
    name, messages, consumers = ch.queue_declare("", exclusive=True)
    assert re.fullmatch(r"amq\.gen-[A-Za-z0-9_-]{22}", name)
    assert (messages, consumers) == (0, 0)
    publish(ch, "m", routing_key=name)
    assert ch.basic_get("").message.body == b"m"  # type: ignore[union-attr]
    assert broker.queue(name).exclusive
    with pytest.raises(NotFound) as info:
        ch.queue_declare("", passive=True)
    assert info.value.reply_text == "NOT_FOUND - no queue '' in vhost '/'"


def test_passive_declare_reports_counts_and_does_not_create(
    broker: Broker, conn: Connection, ch: Channel
) -> None:
    """queue.declare passive (spec 1.7.2.1): message_count counts ready messages only,
    consumer_count every consumer (facts §12)."""
    ch.queue_declare("q")
    for i in range(3):
        publish(ch, str(i), routing_key="q")
    ch.basic_get("q")  # one unacked: not counted
    assert ch.queue_declare("q", passive=True) == ("q", 2, 0)
    conn.channel().basic_consume("q", consumer_tag="c1", no_ack=False)
    assert ch.queue_declare("q", passive=True) == ("q", 0, 1)
    assert broker.queue("q").messages_unacknowledged == 3


def test_exclusive_queue_survives_its_channel_and_dies_with_its_connection(
    broker: Broker,
) -> None:
    """https://www.rabbitmq.com/queues.html#exclusive-queues: deleted when the declaring
    connection closes, not its channel; other channels of that connection may use it (§3)."""
    conn = broker.connect()
    ch = conn.channel()
    ch.queue_declare("ex", exclusive=True)
    assert not broker.queue("ex").durable
    ch.close()
    other = conn.channel()
    assert other.queue_declare("ex", passive=True) == ("ex", 0, 0)
    assert other.queue_declare("ex", exclusive=True) == ("ex", 0, 0)
    conn.close()
    assert "ex" not in broker.queue_names()


def test_auto_delete_queue_needs_a_first_consumer(
    broker: Broker, conn: Connection, ch: Channel
) -> None:
    """https://www.rabbitmq.com/queues.html#temporary-queues: an auto-delete queue is deleted
    when its last consumer goes; one that never had a consumer survives; basic.get is not a
    consumer; cancelling one of two consumers keeps it (facts §14)."""
    ch.queue_declare("ad", auto_delete=True)
    publish(ch, "m", routing_key="ad")
    ch.basic_get("ad", no_ack=True)
    assert "ad" in broker.queue_names()
    ch.basic_consume("ad", consumer_tag="a")
    ch.basic_consume("ad", consumer_tag="b")
    ch.basic_cancel("a")
    assert "ad" in broker.queue_names()
    ch.basic_cancel("b")
    assert "ad" not in broker.queue_names()


def test_auto_delete_queue_goes_when_consumer_channel_closes(
    broker: Broker, conn: Connection
) -> None:
    """https://www.rabbitmq.com/queues.html#temporary-queues: closing the consumer's channel
    counts as the consumer going away (facts §14)."""
    ch = conn.channel()
    ch.queue_declare("ad", auto_delete=True)
    ch.basic_consume("ad")
    ch.close()
    assert "ad" not in broker.queue_names()


def test_x_expires_deletes_an_unused_queue(broker: Broker, ch: Channel) -> None:
    """https://www.rabbitmq.com/ttl.html#queue-ttl: x-expires deletes a queue unused (no
    consumers, no basic.get, no redeclare) for that long; use restarts the lease."""
    ch.queue_declare("exp", arguments={"x-expires": 1000})
    broker.advance(0.9)
    ch.basic_get("exp")  # use: lease restarts
    broker.advance(0.9)
    assert "exp" in broker.queue_names()
    ch.basic_consume("exp", consumer_tag="c")
    broker.advance(5)
    assert "exp" in broker.queue_names()  # a consumer keeps it
    ch.basic_cancel("c")
    broker.advance(0.999)
    assert "exp" in broker.queue_names()
    broker.advance(0.001)
    assert "exp" not in broker.queue_names()
    assert broker.trace.of_kind("queue-delete")[-1].attrs["reason"] == "expired"


def test_queue_delete_if_unused_if_empty_and_count(broker: Broker, conn: Connection) -> None:
    """queue.delete (spec 1.7.2.9): if-unused 406 `in use` with a consumer, if-empty 406 `not
    empty` with ready messages (unacked ones do not count); delete-ok counts ready messages;
    deleting a missing queue is OK (facts §1, §8)."""
    ch = conn.channel()
    assert ch.queue_delete("missing", if_unused=True, if_empty=True) == 0
    ch.queue_declare("q")
    for i in range(3):
        publish(ch, str(i), routing_key="q")
    ch.basic_get("q")
    ch.basic_consume("q", consumer_tag="c", no_ack=False)
    with pytest.raises(PreconditionFailed) as info:
        ch.queue_delete("q", if_unused=True)
    assert info.value.reply_text == "PRECONDITION_FAILED - queue 'q' in vhost '/' in use"
    ch = conn.channel()
    ch.queue_declare("e")
    publish(ch, "m", routing_key="e")
    assert ch.basic_get("e") is not None
    assert ch.queue_delete("e", if_empty=True) == 0  # only an unacked message
    ch.queue_declare("f")
    for i in range(3):
        publish(ch, str(i), routing_key="f")
    assert ch.queue_delete("f") == 3


def test_purge_counts_ready_only(broker: Broker, ch: Channel) -> None:
    """queue.purge (spec 1.7.2.7): returns the ready messages purged; unacked ones stay
    (facts §12)."""
    ch.queue_declare("q")
    for i in range(4):
        publish(ch, str(i), routing_key="q")
    ok = ch.basic_get("q")
    assert ok is not None and ok.message_count == 3
    assert ch.queue_purge("q") == 3
    info = broker.queue("q")
    assert (info.messages_ready, info.messages_unacknowledged) == (0, 1)
    ch.basic_reject(ok.delivery_tag, requeue=True)
    assert broker.queue("q").messages_ready == 1


def test_deleting_a_queue_cancels_its_consumers(conn: Connection, ch: Channel) -> None:
    """https://www.rabbitmq.com/consumer-cancel.html: when a queue is deleted, its consumers
    get a server-sent basic.cancel."""
    ch.queue_declare("q")
    ch.basic_consume("q", consumer_tag="c1")
    conn.channel().queue_delete("q")
    frames = drain(conn)
    assert frames == [BasicCancel(ch.id, "c1")]
    assert ch.consumers == {}


# -- TTL -------------------------------------------------------------------------------------


def test_queue_message_ttl(broker: Broker, ch: Channel) -> None:
    """https://www.rabbitmq.com/ttl.html#per-queue-message-ttl: messages older than
    x-message-ttl are discarded."""
    ch.queue_declare("q", arguments={"x-message-ttl": 1000})
    publish(ch, "old", routing_key="q")
    broker.advance(0.5)
    publish(ch, "new", routing_key="q")
    broker.advance(0.5)
    assert broker.queue("q").bodies == (b"new",)
    broker.advance(0.5)
    assert broker.queue("q").messages == 0


def test_per_message_expiration_only_expires_at_the_head(broker: Broker, ch: Channel) -> None:
    """https://www.rabbitmq.com/ttl.html#per-message-ttl-caveats: only the head expires
    eagerly; a short-lived message behind a long-lived one stays until it reaches the head,
    and then is discarded before delivery."""
    ch.queue_declare("q")
    publish(ch, "long", routing_key="q", expiration="10000")
    publish(ch, "short", routing_key="q", expiration="100")
    broker.advance(1)
    assert broker.queue("q").bodies == (b"long", b"short")  # still counted
    assert get_bodies(ch, "q") == [b"long"]  # the expired one is dropped when it is the head
    assert broker.queue("q").messages == 0


def test_smaller_of_queue_ttl_and_expiration_applies(broker: Broker, ch: Channel) -> None:
    """https://www.rabbitmq.com/ttl.html: with both set, the lower value applies."""
    ch.queue_declare("q", arguments={"x-message-ttl": 5000})
    publish(ch, "a", routing_key="q", expiration="100")
    broker.advance(0.2)
    assert broker.queue("q").messages == 0
    ch.queue_declare("r", arguments={"x-message-ttl": 100})
    publish(ch, "b", routing_key="r", expiration="5000")
    broker.advance(0.2)
    assert broker.queue("r").messages == 0


def test_zero_ttl_drops_what_cannot_be_delivered_at_once(
    broker: Broker, conn: Connection, ch: Channel
) -> None:
    """https://www.rabbitmq.com/ttl.html: a TTL of 0 expires a message unless it can be
    delivered to a consumer straight away (facts §7, expiration '0')."""
    ch.queue_declare("q", arguments={"x-message-ttl": 0})
    publish(ch, "gone", routing_key="q")
    assert broker.queue("q").messages == 0
    ch.basic_consume("q", no_ack=True)
    publish(ch, "kept", routing_key="q")
    assert bodies(conn) == [b"kept"]


# -- length limits ---------------------------------------------------------------------------


def test_max_length_drop_head(broker: Broker, ch: Channel) -> None:
    """https://www.rabbitmq.com/maxlength.html: the default overflow drops from the head."""
    ch.queue_declare("q", arguments={"x-max-length": 2})
    for i in range(4):
        publish(ch, str(i), routing_key="q")
    assert broker.queue("q").bodies == (b"2", b"3")


def test_max_length_bytes(broker: Broker, ch: Channel) -> None:
    """https://www.rabbitmq.com/maxlength.html: x-max-length-bytes counts body bytes of ready
    messages."""
    ch.queue_declare("q", arguments={"x-max-length-bytes": 5})
    for body in ("aa", "bb", "cc"):
        publish(ch, body, routing_key="q")
    assert broker.queue("q").bodies == (b"bb", b"cc")


def test_max_length_reject_publish_nacks(broker: Broker, conn: Connection, ch: Channel) -> None:
    """https://www.rabbitmq.com/maxlength.html#overflow-behaviour: reject-publish refuses new
    messages; a confirming publisher gets basic.nack (facts §11); mandatory gives no return."""
    ch.queue_declare("q", arguments={"x-max-length": 1, "x-overflow": "reject-publish"})
    ch.confirm_select()
    for i in range(3):
        ch.basic_publish(str(i).encode(), "", "q", mandatory=True)
    frames = drain(conn)
    assert [(type(f), f.delivery_tag) for f in frames] == [
        (BasicAck, 1),
        (BasicNack, 2),
        (BasicNack, 3),
    ]
    assert broker.queue("q").bodies == (b"0",)


def test_reject_publish_dlx_dead_letters_the_refused_message(
    broker: Broker, conn: Connection, ch: Channel
) -> None:
    """https://www.rabbitmq.com/maxlength.html#overflow-behaviour: reject-publish-dlx also
    dead-letters the refused message (reason maxlen)."""
    ch.queue_declare("dlq")
    ch.queue_declare(
        "q",
        arguments={
            "x-max-length": 1,
            "x-overflow": "reject-publish-dlx",
            "x-dead-letter-exchange": "",
            "x-dead-letter-routing-key": "dlq",
        },
    )
    ch.confirm_select()
    ch.basic_publish(b"a", "", "q")
    ch.basic_publish(b"b", "", "q")
    assert [type(f) for f in drain(conn)] == [BasicAck, BasicNack]
    ok = ch.basic_get("dlq")
    assert ok is not None and ok.message.body == b"b"
    assert ok.message.headers["x-death"][0]["reason"] == "maxlen"  # type: ignore[index]


def test_reject_publish_on_one_fanout_queue_nacks_the_publish(
    broker: Broker, conn: Connection, ch: Channel
) -> None:
    """Facts §11: a fanout to a full reject-publish queue and a normal queue is nacked, though
    the normal queue got the message."""
    ch.exchange_declare("f", "fanout")
    ch.queue_declare("full", arguments={"x-max-length": 0, "x-overflow": "reject-publish"})
    ch.queue_declare("ok")
    ch.queue_bind("full", "f")
    ch.queue_bind("ok", "f")
    ch.confirm_select()
    ch.basic_publish(b"m", "f", "")
    assert [type(f) for f in drain(conn)] == [BasicNack]
    assert broker.queue("ok").bodies == (b"m",)


# -- dead-lettering --------------------------------------------------------------------------


def _dlx_setup(ch: Channel, **queue_args: object) -> None:
    ch.exchange_declare("dlx", "topic")
    ch.queue_declare("dlq")
    ch.queue_bind("dlq", "dlx", "#")
    ch.exchange_declare("src", "direct")
    ch.queue_declare("q", arguments={"x-dead-letter-exchange": "dlx", **queue_args})
    ch.queue_bind("q", "src", "rk")


def test_rejected_message_is_dead_lettered_with_x_death(broker: Broker, ch: Channel) -> None:
    """https://www.rabbitmq.com/dlx.html: reject/nack requeue=false dead-letters with reason
    `rejected`; x-death as RabbitMQ 3.10 builds it; routing key kept; redelivered False;
    other properties kept (facts §10)."""
    _dlx_setup(ch)
    broker.advance(1234)
    ch.basic_publish(
        b"m", "src", "rk", properties={"message_id": "id1", "application_headers": {"h": 1}}
    )
    first = ch.basic_get("q")
    assert first is not None
    ch.basic_reject(first.delivery_tag, requeue=False)
    ok = ch.basic_get("dlq")
    assert ok is not None
    assert (ok.exchange, ok.routing_key, ok.redelivered) == ("dlx", "rk", False)
    assert ok.message.properties["message_id"] == "id1"
    assert ok.message.headers == {
        "h": 1,
        "x-death": [
            {
                "count": 1,
                "exchange": "src",
                "queue": "q",
                "reason": "rejected",
                "routing-keys": ["rk"],
                "time": dt.datetime(1970, 1, 1, 0, 20, 34),
            }
        ],
        "x-first-death-exchange": "src",
        "x-first-death-queue": "q",
        "x-first-death-reason": "rejected",
    }


def test_expired_message_dead_letter_has_original_expiration(broker: Broker, ch: Channel) -> None:
    """https://www.rabbitmq.com/dlx.html: per-message expiry dead-letters with reason `expired`,
    removes the expiration property and records `original-expiration` (facts §10c)."""
    _dlx_setup(ch)
    ch.basic_publish(b"m", "src", "rk", properties={"expiration": "100"})
    broker.advance(0.1)
    ok = ch.basic_get("dlq")
    assert ok is not None
    assert "expiration" not in ok.message.properties
    [death] = ok.message.headers["x-death"]  # type: ignore[index]
    assert (death["reason"], death["original-expiration"]) == ("expired", "100")


def test_dead_letter_routing_key_overrides(broker: Broker, ch: Channel) -> None:
    """https://www.rabbitmq.com/dlx.html#routing: x-dead-letter-routing-key replaces the key;
    x-death keeps the original keys."""
    _dlx_setup(ch, **{"x-dead-letter-routing-key": "other", "x-message-ttl": 0})
    ch.basic_publish(b"m", "src", "rk")
    ok = ch.basic_get("dlq")
    assert ok is not None and ok.routing_key == "other"
    assert ok.message.headers["x-death"][0]["routing-keys"] == ["rk"]  # type: ignore[index]
    assert ok.message.headers["x-death"][0]["reason"] == "expired"  # type: ignore[index]


def test_maxlen_dead_letters_the_oldest(broker: Broker, ch: Channel) -> None:
    """https://www.rabbitmq.com/maxlength.html: drop-head dead-letters the oldest message with
    reason `maxlen` (facts §10d)."""
    _dlx_setup(ch, **{"x-max-length": 1})
    ch.basic_publish(b"old", "src", "rk")
    ch.basic_publish(b"new", "src", "rk")
    ok = ch.basic_get("dlq")
    assert ok is not None and ok.message.body == b"old"
    assert ok.message.headers["x-death"][0]["reason"] == "maxlen"  # type: ignore[index]


def test_x_death_counts_per_queue_and_reason_newest_first(broker: Broker, ch: Channel) -> None:
    """https://www.rabbitmq.com/dlx.html#effects: the same queue+reason increments `count` and
    moves the entry to the front; a new pair is prepended; x-first-death-* never change.
    Bouncing between two queues by rejection is not a cycle (reason rejected)."""
    ch.queue_declare(
        "a", arguments={"x-dead-letter-exchange": "", "x-dead-letter-routing-key": "b"}
    )
    ch.queue_declare(
        "b", arguments={"x-dead-letter-exchange": "", "x-dead-letter-routing-key": "a"}
    )
    publish(ch, "m", routing_key="a")
    path = ["a", "b", "a", "b", "a"]
    for queue in path:
        ok = ch.basic_get(queue)
        assert ok is not None, queue
        ch.basic_reject(ok.delivery_tag, requeue=False)
    ok = ch.basic_get("b")
    assert ok is not None
    headers = ok.message.headers
    assert headers is not None
    assert [(d["queue"], d["count"]) for d in headers["x-death"]] == [("a", 3), ("b", 2)]
    assert headers["x-first-death-queue"] == "a"
    assert headers["x-first-death-reason"] == "rejected"


def test_expiry_dead_letter_cycle_is_dropped(broker: Broker, ch: Channel) -> None:
    """https://www.rabbitmq.com/dlx.html#effects: a message that would return to a queue it
    already died in without a rejection on the way (a fully automatic cycle) is dropped."""
    ch.queue_declare(
        "loop",
        arguments={
            "x-dead-letter-exchange": "",
            "x-dead-letter-routing-key": "loop",
            "x-message-ttl": 10,
        },
    )
    publish(ch, "m", routing_key="loop")
    broker.advance(1)
    assert broker.queue("loop").messages == 0
    assert broker.trace.of_kind("dead-letter")[-1].attrs["queues"] == []


def test_missing_dlx_drops_silently(broker: Broker, conn: Connection, ch: Channel) -> None:
    """https://www.rabbitmq.com/dlx.html: a DLX that does not exist: the message is dropped
    without an error (facts §10)."""
    ch.queue_declare("q", arguments={"x-dead-letter-exchange": "nope"})
    publish(ch, "m", routing_key="q")
    ok = ch.basic_get("q")
    assert ok is not None
    ch.basic_reject(ok.delivery_tag, requeue=False)
    assert drain(conn) == [] and ch.is_open


def test_cc_keys_are_dead_letter_routing_keys(broker: Broker, ch: Channel) -> None:
    """https://www.rabbitmq.com/sender-selected.html + dlx.html: CC keys route the message and
    appear in x-death routing-keys; BCC is stripped at publish (facts §10)."""
    _dlx_setup(ch)
    ch.queue_bind("q", "src", "cc-key")
    ch.basic_publish(
        b"m",
        "src",
        "rk",
        properties={"application_headers": {"CC": ["cc-key"], "BCC": ["bcc-key"]}},
    )
    ok = ch.basic_get("q")
    assert ok is not None and "BCC" not in ok.message.headers  # type: ignore[operator]
    assert ch.basic_get("q") is None  # one copy although two keys matched
    ch.basic_reject(ok.delivery_tag, requeue=False)
    dead = ch.basic_get("dlq")
    assert dead is not None
    death = dead.message.headers["x-death"][0]  # type: ignore[index]
    assert death["routing-keys"] == ["rk", "cc-key"]  # BCC is never present
    assert ch.basic_get("dlq") is None


# -- priority and single active consumer -----------------------------------------------------


def test_priority_queue_order(broker: Broker, ch: Channel) -> None:
    """https://www.rabbitmq.com/priority.html: highest first, FIFO within a priority; above the
    maximum counts as the maximum; no priority = 0 (measured order, facts §17)."""
    ch.queue_declare("p", arguments={"x-max-priority": 5})
    sent = [
        ("p0", 0),
        ("None", None),
        ("p3", 3),
        ("p5", 5),
        ("p9", 9),
        ("p255", 255),
        ("p3b", 3),
        ("p1", 1),
        ("p5b", 5),
        ("p7", 7),
    ]
    for body, priority in sent:
        props = {"priority": priority} if priority is not None else {}
        publish(ch, body, routing_key="p", **props)
    assert [b.decode() for b in get_bodies(ch, "p")] == [
        "p5",
        "p9",
        "p255",
        "p5b",
        "p7",
        "p3",
        "p3b",
        "p1",
        "p0",
        "None",
    ]


def test_priority_requeue_goes_back_into_its_band(broker: Broker, ch: Channel) -> None:
    """Facts §17: b(5),a(1),c(1) fetched; publish d(5); requeue c and a → d, a, c."""
    ch.queue_declare("p", arguments={"x-max-priority": 5})
    for body, prio in (("a", 1), ("b", 5), ("c", 1)):
        publish(ch, body, routing_key="p", priority=prio)
    got = {}
    for _ in range(3):
        ok = ch.basic_get("p")
        assert ok is not None
        got[ok.message.body] = ok.delivery_tag
    publish(ch, "d", routing_key="p", priority=5)
    ch.basic_nack(got[b"c"], requeue=True)
    ch.basic_nack(got[b"a"], requeue=True)
    assert get_bodies(ch, "p") == [b"d", b"a", b"c"]


def test_single_active_consumer(broker: Broker, conn: Connection, ch: Channel) -> None:
    """https://www.rabbitmq.com/consumers.html#single-active-consumer: the first consumer is
    active, the others idle; on cancel the next in registration order takes over and the old
    one's unacked messages come back redelivered once its channel closes (facts §18)."""
    ch.queue_declare("sac", arguments={"x-single-active-consumer": True})
    a = conn.channel()
    b = conn.channel()
    a.basic_consume("sac", consumer_tag="A")
    b.basic_consume("sac", consumer_tag="B")
    assert ch.queue_declare("sac", passive=True)[2] == 2
    publish(ch, "1", routing_key="sac")
    publish(ch, "2", routing_key="sac")
    assert [(d.consumer_tag, d.message.body) for d in deliveries(conn)] == [
        ("A", b"1"),
        ("A", b"2"),
    ]
    a.basic_cancel("A")
    publish(ch, "3", routing_key="sac")
    assert [(d.consumer_tag, d.message.body) for d in deliveries(conn)] == [("B", b"3")]
    a.close()
    assert [(d.consumer_tag, d.message.body, d.redelivered) for d in deliveries(conn)] == [
        ("B", b"1", True),
        ("B", b"2", True),
    ]
    with pytest.raises(AccessRefused) as info:
        conn.channel().basic_consume("sac", exclusive=True)
    assert info.value.reply_text == "ACCESS_REFUSED - queue 'sac' in vhost '/' in exclusive use"
