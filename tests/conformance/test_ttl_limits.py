"""Message TTL, queue length limits, priority queues and single active consumer."""

from __future__ import annotations

import pytest
from amqp.exceptions import PreconditionFailed

TTL = 60  # ms: short message TTLs used below
MARGIN = 0.35  # s: how long to wait for a TTL of TTL ms to have certainly passed


def _bodies_one_at_a_time(env, ch, q, count):
    """Consume ``count`` messages with prefetch 1, acking each before the next is delivered."""
    ch.basic_qos(0, 1, False)
    _, got = env.consume(ch, q)
    for n in range(1, count + 1):
        assert env.drain(until=lambda n=n: len(got) == n)
        ch.basic_ack(got[-1].delivery_tag)
    env.fence(ch)
    return [m.body for m in got]


def test_queue_message_ttl_expires_messages(env):
    """rabbitmq.com/ttl.html#per-queue-message-ttl: x-message-ttl drops old messages."""
    ch = env.channel()
    q = env.queue(ch, arguments={"x-message-ttl": TTL})
    env.publish(ch, b"old", "", q)
    env.wait(MARGIN)
    env.publish(ch, b"new", "", q)
    assert env.bodies(ch, q) == [b"new"]


def test_per_message_expiration(env):
    """rabbitmq.com/ttl.html#per-message-ttl-in-publishers: the expiration property."""
    ch = env.channel()
    q = env.queue(ch)
    env.publish(ch, b"short", "", q, expiration=str(TTL))
    env.publish(ch, b"forever", "", q)
    env.wait(MARGIN)
    assert env.bodies(ch, q) == [b"forever"]


def test_lower_of_queue_and_message_ttl_applies(env):
    """rabbitmq.com/ttl.html#per-message-ttl-in-publishers: the lower of the two TTLs applies."""
    ch = env.channel()
    q = env.queue(ch, arguments={"x-message-ttl": 60_000})
    env.publish(ch, b"msg-ttl-lower", "", q, expiration=str(TTL))
    env.publish(ch, b"queue-ttl-lower", "", q, expiration="600000")
    env.wait(MARGIN)
    assert env.bodies(ch, q) == [b"queue-ttl-lower"]


def test_only_head_expires_per_message_ttl(env):
    """rabbitmq.com/ttl.html#per-message-ttl-caveats: expired messages behind the head stay."""
    ch = env.channel()
    q = env.queue(ch)
    env.publish(ch, b"long", "", q, expiration="60000")
    env.publish(ch, b"short", "", q, expiration=str(TTL))
    env.wait(MARGIN)
    assert env.count(q, ch) == 2
    first = ch.basic_get(q, no_ack=True)
    # the get exposes the expired message at the head, which is dropped before counting
    assert (first.body, first.delivery_info["message_count"]) == (b"long", 0)
    assert ch.basic_get(q, no_ack=True) is None


def test_zero_ttl_expires_unless_consumer_ready(env):
    """rabbitmq.com/ttl.html#per-queue-message-ttl: TTL 0 delivers only to a waiting consumer."""
    ch = env.channel()
    q = env.queue(ch, arguments={"x-message-ttl": 0})
    env.publish(ch, b"nobody-waiting", "", q)
    assert env.get_none(ch, q) is None
    _, got = env.consume(ch, q, no_ack=True)
    env.publish(ch, b"consumer-waiting", "", q)
    assert env.drain(until=lambda: len(got) == 1)
    assert got[0].body == b"consumer-waiting"


def test_requeued_message_keeps_its_expiry(env):
    """rabbitmq.com/ttl.html#per-queue-message-ttl: requeue keeps the original expiry time."""
    ch = env.channel()
    q = env.queue(ch, arguments={"x-message-ttl": TTL})
    env.publish(ch, b"held", "", q)
    held = env.get(ch, q, no_ack=False)
    env.wait(MARGIN)
    ch.basic_reject(held.delivery_tag, requeue=True)
    assert env.get_none(ch, q) is None


def test_unacked_message_does_not_expire(env):
    """rabbitmq.com/ttl.html#per-queue-message-ttl: delivered messages are not expired."""
    ch = env.channel()
    q = env.queue(ch, arguments={"x-message-ttl": TTL})
    env.publish(ch, b"held", "", q)
    held = env.get(ch, q, no_ack=False)
    env.wait(MARGIN)
    ch.basic_ack(held.delivery_tag)  # still a valid delivery tag...
    env.fence(ch)  # ...which a synchronous call on the same channel proves (no 406)
    assert env.count(q, ch) == 0


def test_expiration_property_is_kept_on_delivery(env):
    """rabbitmq.com/ttl.html#per-message-ttl-in-publishers: expiration reaches the consumer."""
    ch = env.channel()
    q = env.queue(ch)
    env.publish(ch, b"m", "", q, expiration="60000")
    assert env.get(ch, q).properties["expiration"] == "60000"


def test_invalid_expiration_is_406(env):
    """rabbitmq.com/ttl.html#per-message-ttl-in-publishers: expiration must be an integer."""
    ch = env.channel()
    q = env.queue(ch)
    with pytest.raises(PreconditionFailed) as exc:
        env.publish(ch, b"m", "", q, expiration="soon")
        ch.queue_declare(q, passive=True)
    assert exc.value.reply_text == "PRECONDITION_FAILED - invalid expiration 'soon': no_integer"


def test_negative_queue_ttl_is_406(env):
    """rabbitmq.com/ttl.html#per-queue-message-ttl: x-message-ttl must be non-negative."""
    ch = env.channel()
    q = env.name("q")
    with pytest.raises(PreconditionFailed) as exc:
        ch.queue_declare(q, arguments={"x-message-ttl": -1})
    assert exc.value.reply_text == (
        f"PRECONDITION_FAILED - invalid arg 'x-message-ttl' for queue '{q}' in vhost '/': "
        "{value_negative,-1}"
    )


def test_max_length_drop_head(env):
    """rabbitmq.com/maxlength.html#overflow-behaviour: drop-head is the default."""
    ch = env.channel()
    q = env.queue(ch, arguments={"x-max-length": 2})
    for i in range(4):
        env.publish(ch, b"%d" % i, "", q)
    assert env.bodies(ch, q) == [b"2", b"3"]


def test_max_length_bytes_drop_head(env):
    """rabbitmq.com/maxlength.html#definition-using-x-args: x-max-length-bytes counts bodies."""
    ch = env.channel()
    q = env.queue(ch, arguments={"x-max-length-bytes": 25})
    for i in range(4):
        env.publish(ch, b"%010d" % i, "", q)
    assert env.bodies(ch, q) == [b"%010d" % 2, b"%010d" % 3]


def test_max_length_bytes_reject_publish_counts_ready_bytes_exactly(env):
    """rabbitmq.com/maxlength.html: x-max-length-bytes counts the bodies of ready messages; a
    queue exactly at the limit accepts nothing more, and basic.get, a requeue and a purge move
    the count by exactly their bodies (mutation testing found each of these unpinned)."""
    ch = env.channel()
    confirms = env.confirms(ch)
    q = env.queue(ch, arguments={"x-max-length-bytes": 10, "x-overflow": "reject-publish"})
    for body in (b"123", b"1234567", b"1"):  # 10 bytes: the third would make 11
        env.publish(ch, body, "", q)
    assert env.get(ch, q).body == b"123"  # 7 bytes left
    for body in (b"abc", b"1"):
        env.publish(ch, body, "", q)
    held = env.get(ch, q, no_ack=False)
    assert held.body == b"1234567"
    ch.basic_reject(held.delivery_tag, requeue=True)  # back to 10 bytes
    env.publish(ch, b"1", "", q)
    assert ch.queue_purge(q) == 2
    for body in (b"0123456789", b"1"):
        env.publish(ch, body, "", q)
    assert env.drain(until=confirms.settled(8))
    assert confirms.results(8) == ["ack", "ack", "nack", "ack", "nack", "nack", "ack", "nack"]


def test_expired_messages_free_their_bytes(env):
    """rabbitmq.com/maxlength.html + ttl.html: an expired message no longer counts against
    x-max-length-bytes."""
    ch = env.channel()
    confirms = env.confirms(ch)
    q = env.queue(
        ch,
        arguments={
            "x-max-length-bytes": 10,
            "x-overflow": "reject-publish",
            "x-message-ttl": 100,
        },
    )
    env.publish(ch, b"0123456789", "", q)
    env.wait(0.3)
    assert env.get_none(ch, q) is None
    for body in (b"123", b"1234567", b"1"):
        env.publish(ch, body, "", q)
    assert env.drain(until=confirms.settled(4))
    assert confirms.results(4) == ["ack", "ack", "ack", "nack"]


def test_max_length_bytes_counts_only_ready_not_delivered(env):
    """rabbitmq.com/maxlength.html: messages handed to a consumer no longer count against
    x-max-length-bytes."""
    ch = env.channel()
    confirms = env.confirms(ch)
    q = env.queue(ch, arguments={"x-max-length-bytes": 10, "x-overflow": "reject-publish"})
    env.publish(ch, b"0123456789", "", q)
    assert env.eventually_count(q, 1, ch) == 1
    _, got = env.consume(ch, q, no_ack=True)
    assert env.drain(until=lambda: len(got) == 1)
    env.publish(ch, b"abcdefghij", "", q)
    assert env.drain(until=lambda: len(got) == 2)
    assert env.drain(until=confirms.settled(2))
    assert confirms.results(2) == ["ack", "ack"]


def test_consumer_with_prefetch_gets_the_backlog_of_a_ttl_queue(env):
    """rabbitmq.com/ttl.html + consumer-prefetch.html: acking frees room for the next message of
    a queue with a message TTL (the head's expiry check must not stop delivery)."""
    ch = env.channel()
    q = env.queue(ch, arguments={"x-message-ttl": 60000})
    for i in range(3):
        env.publish(ch, b"%d" % i, "", q)
    assert env.eventually_count(q, 3, ch) == 3
    assert _bodies_one_at_a_time(env, ch, q, 3) == [b"0", b"1", b"2"]


def test_queue_ttl_zero_discards_but_confirms(env):
    """rabbitmq.com/ttl.html#per-queue-message-ttl: x-message-ttl 0 drops what cannot be
    delivered at once; the publisher still gets an ack (the broker took the message)."""
    ch = env.channel()
    confirms = env.confirms(ch)
    q = env.queue(ch, arguments={"x-message-ttl": 0})
    env.publish(ch, b"gone", "", q)
    assert env.drain(until=confirms.settled(1))
    assert confirms.results(1) == ["ack"]
    assert env.get_none(ch, q) is None


def test_drop_head_exposes_an_expiring_head_to_its_ttl(env):
    """rabbit_amqqueue_process:deliver_or_enqueue: after a drop-head the new head's expiry is
    checked at once, so a message with a short per-message TTL that becomes the head expires on
    time (not when the dropped head would have)."""
    ch = env.channel()
    q = env.queue(ch, arguments={"x-max-length": 2})
    env.publish(ch, b"long", "", q, expiration="60000")
    env.publish(ch, b"short", "", q, expiration="100")
    env.publish(ch, b"none", "", q)  # drops "long": "short" is the head now
    env.wait(0.3)
    assert env.eventually_count(q, 1, ch) == 1
    assert env.bodies(ch, q) == [b"none"]


def test_per_message_expiry_after_a_head_without_one(env):
    """rabbitmq.com/ttl.html#per-message-ttl-in-publishers: expiry still works after the head
    was a message without expiration (simamqp re-arms its head timer then)."""
    ch = env.channel()
    q = env.queue(ch)
    env.publish(ch, b"a", "", q, expiration="60000")
    env.publish(ch, b"b", "", q)
    assert [env.get(ch, q).body, env.get(ch, q).body] == [b"a", b"b"]
    env.publish(ch, b"c", "", q, expiration="100")
    env.wait(0.3)
    assert env.get_none(ch, q) is None


def test_max_length_bytes_drop_head_keeps_a_queue_exactly_at_the_limit(env):
    """rabbitmq.com/maxlength.html: drop-head drops only when the bytes go over the limit."""
    ch = env.channel()
    q = env.queue(ch, arguments={"x-max-length-bytes": 10})
    env.publish(ch, b"aaaaa", "", q)
    env.publish(ch, b"bbbbb", "", q)
    assert env.eventually_count(q, 2, ch) == 2  # (a declare can overtake queued publishes)
    env.publish(ch, b"c", "", q)
    assert env.bodies(ch, q) == [b"bbbbb", b"c"]


def test_per_message_expiration_in_a_priority_queue(env):
    """rabbitmq.com/ttl.html#per-message-ttl-in-publishers: expiration works in a queue with
    x-max-priority and no queue TTL (its own code path in simamqp)."""
    ch = env.channel()
    q = env.queue(ch, arguments={"x-max-priority": 5})
    env.publish(ch, b"short", "", q, expiration="100", priority=1)
    env.wait(0.3)
    assert env.get_none(ch, q) is None
    env.publish(ch, b"long", "", q, expiration="60000", priority=1)
    assert env.get(ch, q).body == b"long"


def test_max_length_reject_publish(env):
    """rabbitmq.com/maxlength.html#overflow-behaviour: reject-publish drops new messages."""
    ch = env.channel()
    q = env.queue(ch, arguments={"x-max-length": 2, "x-overflow": "reject-publish"})
    for i in range(4):
        env.publish(ch, b"%d" % i, "", q)
    assert env.bodies(ch, q) == [b"0", b"1"]


def test_max_length_reject_publish_nacks_with_confirms(env):
    """rabbitmq.com/maxlength.html#overflow-behaviour: rejected publishes are basic.nack'ed."""
    ch = env.channel()
    confirms = env.confirms(ch)
    q = env.queue(ch, arguments={"x-max-length": 1, "x-overflow": "reject-publish"})
    for i in range(3):
        env.publish(ch, b"%d" % i, "", q)
    assert env.drain(until=confirms.settled(3))
    assert confirms.results(3) == ["ack", "nack", "nack"]


def test_max_length_drop_head_acks_with_confirms(env):
    """rabbitmq.com/maxlength.html#overflow-behaviour: drop-head confirms every publish."""
    ch = env.channel()
    confirms = env.confirms(ch)
    q = env.queue(ch, arguments={"x-max-length": 1})
    for i in range(3):
        env.publish(ch, b"%d" % i, "", q)
    assert env.drain(until=confirms.settled(3))
    assert confirms.results(3) == ["ack", "ack", "ack"]
    assert env.bodies(ch, q) == [b"2"]


def test_max_length_counts_ready_messages_only(env):
    """rabbitmq.com/maxlength.html: only ready (not unacknowledged) messages count."""
    ch = env.channel()
    q = env.queue(ch, arguments={"x-max-length": 1, "x-overflow": "reject-publish"})
    env.publish(ch, b"a", "", q)
    held = env.get(ch, q, no_ack=False)
    env.publish(ch, b"b", "", q)
    env.publish(ch, b"c", "", q)
    assert env.bodies(ch, q) == [b"b"]
    ch.basic_reject(held.delivery_tag, requeue=True)
    assert env.bodies(ch, q) == [b"a"]


def test_requeue_may_take_a_reject_publish_queue_over_its_limit(env):
    """rabbitmq.com/maxlength.html: reject-publish refuses publishes only; a requeue puts the
    message back even when that takes the queue over x-max-length (only drop-head trims)."""
    ch = env.channel()
    q = env.queue(ch, arguments={"x-max-length": 1, "x-overflow": "reject-publish"})
    env.publish(ch, b"a", "", q)
    held = env.get(ch, q, no_ack=False)
    env.publish(ch, b"b", "", q)
    assert env.eventually_count(q, 1, ch) == 1
    ch.basic_reject(held.delivery_tag, requeue=True)
    assert env.eventually_count(q, 2, ch) == 2
    assert env.bodies(ch, q) == [b"a", b"b"]


def test_max_length_zero_reject_publish_accepts_nothing(env):
    """rabbitmq.com/maxlength.html: a limit of 0 with reject-publish refuses every message."""
    ch = env.channel()
    confirms = env.confirms(ch)
    q = env.queue(ch, arguments={"x-max-length": 0, "x-overflow": "reject-publish"})
    env.publish(ch, b"a", "", q)
    assert env.drain(until=confirms.settled(1))
    assert confirms.results(1) == ["nack"]
    assert env.count(q, ch) == 0


def test_invalid_overflow_is_406(env):
    """rabbitmq.com/maxlength.html#overflow-behaviour: only the three documented values."""
    ch = env.channel()
    q = env.name("q")
    with pytest.raises(PreconditionFailed) as exc:
        ch.queue_declare(q, arguments={"x-overflow": "drop-tail"})
    assert exc.value.reply_text == (
        f"PRECONDITION_FAILED - invalid arg 'x-overflow' for queue '{q}' in vhost '/': "
        "invalid_overflow"
    )


def test_priority_queue_orders_by_priority(env):
    """rabbitmq.com/priority.html: higher priority first, FIFO within a priority."""
    ch = env.channel()
    q = env.queue(ch, arguments={"x-max-priority": 10})
    for body, prio in [(b"p1", 1), (b"p5a", 5), (b"none", None), (b"p3", 3), (b"p5b", 5)]:
        env.publish(ch, body, "", q, priority=prio)
    assert env.bodies(ch, q) == [b"p5a", b"p5b", b"p3", b"p1", b"none"]


def test_priority_above_max_is_capped(env):
    """rabbitmq.com/priority.html#behaviour: priorities above the maximum count as the maximum."""
    ch = env.channel()
    q = env.queue(ch, arguments={"x-max-priority": 5})
    for body, prio in [(b"p9", 9), (b"p5", 5), (b"p7", 7), (b"p4", 4)]:
        env.publish(ch, body, "", q, priority=prio)
    msgs = [env.get(ch, q) for _ in range(4)]
    assert [m.body for m in msgs] == [b"p9", b"p5", b"p7", b"p4"]
    assert [m.properties["priority"] for m in msgs] == [9, 5, 7, 4]


def test_priority_ignored_without_max_priority(env):
    """rabbitmq.com/priority.html: a queue without x-max-priority is FIFO."""
    ch = env.channel()
    q = env.queue(ch)
    for body, prio in [(b"low", 1), (b"high", 9)]:
        env.publish(ch, body, "", q, priority=prio)
    assert env.bodies(ch, q) == [b"low", b"high"]


def test_priority_queue_requeue_keeps_priority_order(env):
    """rabbitmq.com/priority.html: requeued messages go back among their priority."""
    ch = env.channel()
    q = env.queue(ch, arguments={"x-max-priority": 10})
    env.publish(ch, b"high", "", q, priority=8)
    env.publish(ch, b"low", "", q, priority=1)
    held = env.get(ch, q, no_ack=False)
    assert held.body == b"high"
    env.publish(ch, b"mid", "", q, priority=4)
    ch.basic_reject(held.delivery_tag, requeue=True)
    assert env.bodies(ch, q) == [b"high", b"mid", b"low"]


def test_priority_queue_consumer_with_prefetch(env):
    """rabbitmq.com/priority.html#interaction-with-consumers: prefetch lets priority matter."""
    ch = env.channel()
    q = env.queue(ch, arguments={"x-max-priority": 10})
    for body, prio in [(b"a1", 1), (b"b9", 9), (b"c5", 5)]:
        env.publish(ch, body, "", q, priority=prio)
    env.eventually_count(q, 3, ch)
    assert _bodies_one_at_a_time(env, ch, q, 3) == [b"b9", b"c5", b"a1"]


def test_single_active_consumer_gets_everything(env):
    """rabbitmq.com/consumers.html#single-active-consumer: only the first consumer receives."""
    ch = env.channel()
    q = env.queue(ch, arguments={"x-single-active-consumer": True})
    _, first = env.consume(ch, q)
    _, second = env.consume(ch, q)
    for i in range(4):
        env.publish(ch, b"%d" % i, "", q)
    assert env.drain(until=lambda: len(first) == 4)
    assert env.count(q, ch) == 0  # fence: all four went out, to the first consumer
    assert (len(first), len(second)) == (4, 0)
    assert ch.queue_declare(q, passive=True).consumer_count == 2


def test_single_active_consumer_respects_its_prefetch(env):
    """rabbitmq.com/consumers.html#single-active-consumer + consumer-prefetch.html: the active
    consumer gets no more than its prefetch; the rest stays ready."""
    ch = env.channel()
    q = env.queue(ch, arguments={"x-single-active-consumer": True})
    ch.basic_qos(0, 1, False)
    _, got = env.consume(ch, q)
    for i in range(3):
        env.publish(ch, b"%d" % i, "", q)
    # RabbitMQ answers a passive declare ahead of publishes still queued: poll the count.
    assert env.eventually_count(q, 2, ch) == 2
    assert env.drain(until=lambda: len(got) == 1)
    assert env.count(q, ch) == 2
    assert [m.body for m in got] == [b"0"]


def test_single_active_consumer_fails_over_with_unacked(env):
    """rabbitmq.com/consumers.html#single-active-consumer: next consumer takes over."""
    ch_a, ch_b = env.channel(), env.channel()
    q = env.queue(ch_a, arguments={"x-single-active-consumer": True})
    _, first = env.consume(ch_a, q)
    _, second = env.consume(ch_b, q)
    for i in range(3):
        env.publish(ch_a, b"%d" % i, "", q)
    assert env.drain(until=lambda: len(first) == 3)
    ch_a.basic_ack(first[0].delivery_tag)
    ch_a.close()
    assert env.drain(until=lambda: len(second) == 2)
    assert [(m.body, m.delivery_info["redelivered"]) for m in second] == [
        (b"1", True),
        (b"2", True),
    ]


def test_purging_a_priority_queue_empties_every_level(env):
    """rabbitmq.com/priority.html: queue.purge counts and removes the messages of all levels."""
    ch = env.channel()
    q = env.queue(ch, arguments={"x-max-priority": 3})
    for prio in (0, 3, 1):
        env.publish(ch, b"%d" % prio, "", q, priority=prio)
    assert env.eventually_count(q, 3, ch) == 3
    assert ch.queue_purge(q) == 3
    assert env.get_none(ch, q) is None
    env.publish(ch, b"after", "", q, priority=2)
    assert env.get(ch, q).body == b"after"
