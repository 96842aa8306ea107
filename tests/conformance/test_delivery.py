"""Delivery: basic.get, consumers, acks, rejects, nacks, requeue position, redelivered flags,
recover, prefetch and round robin."""

from __future__ import annotations

import pytest
from amqp.exceptions import AccessRefused, NotAllowed, PreconditionFailed

# "Nothing more arrives" is checked against the queue's own ready count (a passive declare on
# the same channel), never with a listening window. The count is taken once the expected
# deliveries have arrived and no publish or ack is still on its way to the queue, so it says
# exactly how many messages went to consumers. (RabbitMQ answers a passive declare ahead of
# publishes still queued for the queue: it is no fence for publishes in flight; basic.get is.)


def fill(env, ch, q, n, prefix=b""):
    for i in range(n):
        env.publish(ch, prefix + b"%d" % i, "", q)
    env.eventually_count(q, n, ch)


def test_basic_get_empty_returns_none(env):
    """rabbitmq.com/amqp-0-9-1-reference.html#basic.get-empty."""
    ch = env.channel()
    q = env.queue(ch)
    assert ch.basic_get(q) is None


def test_basic_get_reports_remaining_message_count(env):
    """rabbitmq.com/amqp-0-9-1-reference.html#basic.get-ok.message-count: messages still ready."""
    ch = env.channel()
    q = env.queue(ch)
    fill(env, ch, q, 3)
    counts = [ch.basic_get(q, no_ack=True).delivery_info["message_count"] for _ in range(3)]
    assert counts == [2, 1, 0]


def test_basic_get_delivery_info(env):
    """rabbitmq.com/amqp-0-9-1-reference.html#basic.get-ok: tag, redelivered, exchange, key."""
    ch = env.channel()
    ex = env.exchange(ch, "direct")
    q = env.queue(ch)
    ch.queue_bind(q, ex, "rk")
    env.publish(ch, b"m", ex, "rk")
    msg = env.get(ch, q, no_ack=False)
    info = msg.delivery_info
    assert (info["delivery_tag"], info["redelivered"], info["exchange"], info["routing_key"]) == (
        1,
        False,
        ex,
        "rk",
    )
    assert info["message_count"] == 0


def test_properties_round_trip(env):
    """rabbitmq.com/publishers.html#message-properties: properties reach consumers unchanged."""
    ch = env.channel()
    q = env.queue(ch)
    props = {
        "content_type": "application/json",
        "content_encoding": "utf-8",
        "application_headers": {"s": "v", "i": 7, "b": True, "f": 1.5, "l": [1, "x"], "n": None},
        "delivery_mode": 2,
        "priority": 3,
        "correlation_id": "corr-1",
        "reply_to": "replies",
        "expiration": "60000",
        "message_id": "mid-1",
        "timestamp": 1700000000,
        "type": "kind",
        "user_id": "guest",
        "app_id": "conformance",
    }
    env.publish(ch, b'{"a": 1}', "", q, **props)
    msg = env.get(ch, q)
    assert msg.body == '{"a": 1}'  # py-amqp decodes bodies that declare content_encoding
    got = dict(msg.properties)
    assert got == props


def test_body_is_bytes_even_when_published_as_str(env):
    """rabbitmq.com/publishers.html: the payload is opaque bytes (py-amqp encodes str as utf-8)."""
    ch = env.channel()
    q = env.queue(ch)
    env.publish(ch, "héllo", "", q)
    msg = env.get(ch, q)
    assert (msg.body, msg.properties.get("content_encoding")) == ("héllo", "utf-8")


def test_user_id_must_match_authenticated_user(env):
    """rabbitmq.com/validated-user-id.html: a foreign user_id is refused with 406."""
    ch = env.channel()
    q = env.queue(ch)
    with pytest.raises(PreconditionFailed) as exc:
        env.publish(ch, b"m", "", q, user_id="mallory")
        ch.queue_declare(q, passive=True)
    assert exc.value.reply_text == (
        "PRECONDITION_FAILED - user_id property set to 'mallory' but authenticated user was 'guest'"
    )


def test_ack_removes_message(env):
    """rabbitmq.com/confirms.html#consumer-acknowledgements: acked messages are gone."""
    ch = env.channel()
    q = env.queue(ch)
    fill(env, ch, q, 1)
    msg = ch.basic_get(q, no_ack=False)
    ch.basic_ack(msg.delivery_tag)
    ch.close()
    assert env.get_none(env.channel(), q) is None


def test_reject_requeue_goes_back_to_head_redelivered(env):
    """rabbitmq.com/confirms.html#consumer-nacks-requeue: requeued to its original position."""
    ch = env.channel()
    q = env.queue(ch)
    fill(env, ch, q, 3)
    first = ch.basic_get(q, no_ack=False)
    ch.basic_reject(first.delivery_tag, requeue=True)
    got = [env.get(ch, q) for _ in range(3)]
    assert [(m.body, m.delivery_info["redelivered"]) for m in got] == [
        (b"0", True),
        (b"1", False),
        (b"2", False),
    ]


def test_requeue_restores_original_order(env):
    """rabbitmq.com/confirms.html#consumer-nacks-requeue: position, not rejection order."""
    ch = env.channel()
    q = env.queue(ch)
    fill(env, ch, q, 5)
    held = [ch.basic_get(q, no_ack=False) for _ in range(4)]
    ch.basic_reject(held[3].delivery_tag, requeue=True)
    ch.basic_reject(held[0].delivery_tag, requeue=True)
    ch.basic_reject(held[2].delivery_tag, requeue=True)
    ch.basic_ack(held[1].delivery_tag)
    got = [(m.body, m.delivery_info["redelivered"]) for m in (env.get(ch, q) for _ in range(4))]
    assert got == [(b"0", True), (b"2", True), (b"3", True), (b"4", False)]


def test_reject_without_requeue_discards(env):
    """rabbitmq.com/confirms.html#consumer-nacks-requeue: requeue=false drops (no DLX)."""
    ch = env.channel()
    q = env.queue(ch)
    fill(env, ch, q, 2)
    ch.basic_reject(ch.basic_get(q, no_ack=False).delivery_tag, requeue=False)
    assert env.bodies(ch, q) == [b"1"]


def test_nack_multiple_requeues_all_up_to_tag(env):
    """rabbitmq.com/nack.html: multiple=true covers every unacked tag up to and including it."""
    ch = env.channel()
    q = env.queue(ch)
    fill(env, ch, q, 4)
    held = [ch.basic_get(q, no_ack=False) for _ in range(4)]
    env.nack(ch, held[2].delivery_tag, multiple=True, requeue=True)
    ch.basic_ack(held[3].delivery_tag)
    got = [(m.body, m.delivery_info["redelivered"]) for m in (env.get(ch, q) for _ in range(3))]
    assert got == [(b"0", True), (b"1", True), (b"2", True)]
    assert env.get_none(ch, q) is None


def test_nack_multiple_zero_means_all_outstanding(env):
    """rabbitmq.com/amqp-0-9-1-reference.html#basic.nack.multiple: tag 0 means all unacked."""
    ch = env.channel()
    q = env.queue(ch)
    fill(env, ch, q, 3)
    for _ in range(3):
        ch.basic_get(q, no_ack=False)
    env.nack(ch, 0, multiple=True, requeue=False)
    ch.close()
    assert env.get_none(env.channel(), q) is None


def test_nack_single_without_requeue(env):
    """rabbitmq.com/nack.html: basic.nack with multiple=false is basic.reject."""
    ch = env.channel()
    q = env.queue(ch)
    fill(env, ch, q, 2)
    a = ch.basic_get(q, no_ack=False)
    b = ch.basic_get(q, no_ack=False)
    env.nack(ch, b.delivery_tag, multiple=False, requeue=False)
    env.nack(ch, a.delivery_tag, multiple=False, requeue=True)
    assert [(m.body, m.delivery_info["redelivered"]) for m in [env.get(ch, q)]] == [(b"0", True)]
    assert env.get_none(ch, q) is None


def test_ack_multiple(env):
    """rabbitmq.com/confirms.html#consumer-acks-multiple-parameter."""
    ch = env.channel()
    q = env.queue(ch)
    fill(env, ch, q, 3)
    held = [ch.basic_get(q, no_ack=False) for _ in range(3)]
    ch.basic_ack(held[1].delivery_tag, multiple=True)
    ch.close()
    msg = env.get(env.channel(), q)
    assert (msg.body, msg.delivery_info["redelivered"]) == (b"2", True)


def test_ack_multiple_zero_acks_everything(env):
    """rabbitmq.com/amqp-0-9-1-reference.html#basic.ack.multiple: tag 0 with multiple acks all."""
    ch = env.channel()
    q = env.queue(ch)
    fill(env, ch, q, 3)
    for _ in range(3):
        ch.basic_get(q, no_ack=False)
    ch.basic_ack(0, multiple=True)
    ch.close()
    assert env.get_none(env.channel(), q) is None


@pytest.mark.parametrize("multiple", [False, True])
def test_ack_unknown_delivery_tag_is_406(env, multiple):
    """rabbitmq.com/confirms.html#consumer-acks-double-acking: unknown tag closes the channel
    (with multiple=true too)."""
    ch = env.channel()
    q = env.queue(ch)
    ch.basic_ack(42, multiple=multiple)
    with pytest.raises(PreconditionFailed) as exc:
        ch.queue_declare(q, passive=True)
    assert (exc.value.reply_code, exc.value.reply_text) == (
        406,
        "PRECONDITION_FAILED - unknown delivery tag 42",
    )
    assert exc.value.method_sig == (60, 80)


def test_double_ack_is_406_and_requeues_other_unacked(env):
    """rabbitmq.com/confirms.html#consumer-acks-double-acking: the channel error requeues."""
    ch = env.channel()
    q = env.queue(ch)
    fill(env, ch, q, 2)
    a = ch.basic_get(q, no_ack=False)
    ch.basic_get(q, no_ack=False)
    ch.basic_ack(a.delivery_tag)
    ch.basic_ack(a.delivery_tag)
    with pytest.raises(PreconditionFailed) as exc:
        ch.queue_declare(q, passive=True)
    assert exc.value.reply_text == "PRECONDITION_FAILED - unknown delivery tag 1"
    msg = env.get(env.channel(), q)
    assert (msg.body, msg.delivery_info["redelivered"]) == (b"1", True)


def test_reject_of_no_ack_delivery_is_406(env):
    """rabbitmq.com/confirms.html#acknowledgement-modes: automatic-ack deliveries have no tag."""
    ch = env.channel()
    q = env.queue(ch)
    fill(env, ch, q, 1)
    msg = ch.basic_get(q, no_ack=True)
    ch.basic_reject(msg.delivery_tag, requeue=True)
    with pytest.raises(PreconditionFailed) as exc:
        ch.queue_declare(q, passive=True)
    assert exc.value.reply_text == "PRECONDITION_FAILED - unknown delivery tag 1"


def test_delivery_tags_are_per_channel(env):
    """rabbitmq.com/confirms.html#consumer-acks-delivery-tags: channel-scoped, from 1."""
    ch1, ch2 = env.channel(), env.channel()
    q = env.queue(ch1)
    fill(env, ch1, q, 3)
    tags = [
        ch1.basic_get(q, no_ack=False).delivery_tag,
        ch2.basic_get(q, no_ack=False).delivery_tag,
        ch1.basic_get(q, no_ack=False).delivery_tag,
    ]
    assert tags == [1, 1, 2]


def test_closing_channel_requeues_unacked_in_order(env):
    """rabbitmq.com/confirms.html#automatic-requeueing: unacked messages return on close."""
    ch = env.channel()
    q = env.queue(ch)
    fill(env, ch, q, 3)
    ch.basic_get(q, no_ack=False)
    ch.basic_get(q, no_ack=False)
    ch.close()
    ch = env.channel()
    got = [(m.body, m.delivery_info["redelivered"]) for m in (env.get(ch, q) for _ in range(3))]
    assert got == [(b"0", True), (b"1", True), (b"2", False)]


def test_closing_channel_requeues_each_unacked_message_to_its_own_queue(env):
    """rabbitmq.com/confirms.html#automatic-requeueing: a channel holding deliveries from
    several queues gives each back to the queue it came from."""
    ch = env.channel()
    q1, q2 = env.queue(ch), env.queue(ch)
    fill(env, ch, q1, 1, b"one-")
    fill(env, ch, q2, 1, b"two-")
    ch.basic_get(q1, no_ack=False)
    ch.basic_get(q2, no_ack=False)
    ch.close()
    ch = env.channel()
    assert env.eventually_count(q1, 1, ch) == 1
    assert env.bodies(ch, q1) == [b"one-0"]
    assert env.bodies(ch, q2) == [b"two-0"]


def test_basic_recover_requeue(env):
    """rabbitmq.com/amqp-0-9-1-reference.html#basic.recover: unacked are redelivered."""
    ch = env.channel()
    q = env.queue(ch)
    fill(env, ch, q, 2)
    ch.basic_get(q, no_ack=False)
    ch.basic_get(q, no_ack=False)
    ch.basic_recover(requeue=True)
    got = [(m.body, m.delivery_info["redelivered"]) for m in (env.get(ch, q) for _ in range(2))]
    assert got == [(b"0", True), (b"1", True)]


def test_recover_requeues_per_consumer_tag_basic_get_group_first(env):
    """rabbit_channel foreach_per_queue: recover settles per (queue, consumer tag), basic.get
    deliveries (tag ``none``) first, and each group is redelivered before the next is requeued.
    Found by the differential state machine."""
    ch = env.channel()
    q = env.queue(ch)
    env.publish(ch, b"m0", "", q)
    ch.basic_qos(0, 1, False)
    first, got = env.consume(ch, q, consumer_tag="ctag-a")
    assert env.drain(until=lambda: len(got) == 1)
    env.publish(ch, b"m1", "", q)  # held back: the consumer's prefetch is full
    ch.basic_cancel(first)  # m0 stays unacked on the channel, under ctag-a
    assert env.get(ch, q, no_ack=False).body == b"m1"
    ch.basic_qos(0, 0, False)
    _, again = env.consume(ch, q, consumer_tag="ctag-b")
    ch.basic_recover(requeue=True)
    assert env.drain(until=lambda: len(again) == 2)
    assert [(m.body, m.delivery_info["redelivered"]) for m in again] == [
        (b"m1", True),
        (b"m0", True),
    ]


def test_prefetch_credit_follows_a_reused_consumer_tag(env):
    """rabbit_limiter keeps consumer-prefetch credit per consumer tag: settling deliveries of a
    cancelled consumer credits a new consumer that reuses its tag (found by the differential
    state machine)."""
    ch = env.channel()
    q = env.queue(ch)
    env.publish(ch, b"m0", "", q)
    env.publish(ch, b"m1", "", q)
    tag, got = env.consume(ch, q, consumer_tag="same-tag")
    assert env.drain(until=lambda: len(got) == 2)
    ch.basic_cancel(tag)  # m0 and m1 stay unacked on the channel, under "same-tag"
    ch.basic_qos(0, 1, False)
    _, again = env.consume(ch, q, consumer_tag="same-tag")
    ch.basic_recover(requeue=True)  # two settlements under "same-tag": two credits
    assert env.drain(until=lambda: len(again) == 2)
    assert env.count(q, ch) == 0  # fence: both are with the consumer, no third delivery
    assert [(m.body, m.delivery_info["redelivered"]) for m in again] == [
        (b"m0", True),
        (b"m1", True),
    ]


def test_consumer_receives_in_order_with_delivery_info(env):
    """rabbitmq.com/consumers.html#message-properties: basic.deliver fields."""
    ch = env.channel()
    q = env.queue(ch)
    tag, got = env.consume(ch, q, consumer_tag="ctag-1")
    assert tag == "ctag-1"
    for i in range(3):
        env.publish(ch, b"%d" % i, "", q)
    assert env.drain(until=lambda: len(got) == 3)
    assert [m.body for m in got] == [b"0", b"1", b"2"]
    info = [
        (
            m.delivery_info["consumer_tag"],
            m.delivery_info["delivery_tag"],
            m.delivery_info["redelivered"],
            m.delivery_info["exchange"],
            m.delivery_info["routing_key"],
        )
        for m in got
    ]
    assert info == [("ctag-1", i, False, "", q) for i in (1, 2, 3)]


def test_server_generated_consumer_tag(env):
    """rabbitmq.com/consumers.html#consumer-tags: server-generated tags start with amq.ctag-."""
    ch = env.channel()
    q = env.queue(ch)
    tag, _ = env.consume(ch, q)
    assert tag.startswith("amq.ctag-")
    assert len(tag) == len("amq.ctag-") + 22


def test_consumer_count(env):
    """rabbitmq.com/amqp-0-9-1-reference.html#queue.declare-ok.consumer-count."""
    ch = env.channel()
    q = env.queue(ch)
    tags = [env.consume(ch, q)[0] for _ in range(3)]
    assert ch.queue_declare(q, passive=True).consumer_count == 3
    ch.basic_cancel(tags[0])
    assert ch.queue_declare(q, passive=True).consumer_count == 2


def test_cancelled_consumer_gets_nothing_more(env):
    """rabbitmq.com/consumers.html#unsubscribing: after basic.cancel-ok, no more deliveries."""
    ch = env.channel()
    q = env.queue(ch)
    tag, got = env.consume(ch, q, no_ack=True)
    env.publish(ch, b"before", "", q)
    assert env.drain(until=lambda: len(got) == 1)
    ch.basic_cancel(tag)
    env.publish(ch, b"after", "", q)
    assert env.get(ch, q).body == b"after"  # still in the queue: not delivered to the consumer
    assert [m.body for m in got] == [b"before"]


def test_cancelled_consumer_keeps_unacked_until_channel_closes(env):
    """rabbitmq.com/consumers.html#unsubscribing: unacked deliveries stay with the channel."""
    ch = env.channel()
    q = env.queue(ch)
    tag, got = env.consume(ch, q)
    env.publish(ch, b"held", "", q)
    assert env.drain(until=lambda: len(got) == 1)
    ch.basic_cancel(tag)
    other = env.channel()
    assert env.get_none(other, q) is None
    ch.basic_ack(got[0].delivery_tag)  # still ackable after cancel
    ch.close()
    assert env.get_none(other, q) is None


def test_round_robin_between_consumers(env):
    """rabbitmq.com/consumers.html#message-distribution: round robin among consumers."""
    ch = env.channel()
    q = env.queue(ch)
    _, first = env.consume(ch, q, no_ack=True)
    _, second = env.consume(ch, q, no_ack=True)
    for i in range(6):
        env.publish(ch, b"%d" % i, "", q)
    assert env.drain(until=lambda: len(first) + len(second) == 6)
    assert [m.body for m in first] == [b"0", b"2", b"4"]
    assert [m.body for m in second] == [b"1", b"3", b"5"]


def test_requeued_message_redelivered_to_consumer(env):
    """rabbitmq.com/confirms.html#consumer-nacks-requeue: redelivered=true on the next delivery."""
    ch = env.channel()
    q = env.queue(ch)
    _, got = env.consume(ch, q)
    env.publish(ch, b"again", "", q)
    assert env.drain(until=lambda: len(got) == 1)
    ch.basic_reject(got[0].delivery_tag, requeue=True)
    assert env.drain(until=lambda: len(got) == 2)
    assert [(m.body, m.delivery_info["redelivered"], m.delivery_tag) for m in got] == [
        (b"again", False, 1),
        (b"again", True, 2),
    ]


def test_per_consumer_prefetch(env):
    """rabbitmq.com/consumer-prefetch.html: global=false limits each new consumer."""
    ch = env.channel()
    q = env.queue(ch)
    fill(env, ch, q, 5)
    ch.basic_qos(0, 2, False)
    _, got = env.consume(ch, q)
    assert env.drain(until=lambda: len(got) == 2)
    assert env.count(q, ch) == 3  # fence: exactly two went to the consumer
    assert [m.body for m in got] == [b"0", b"1"]
    ch.basic_ack(got[0].delivery_tag)
    assert env.drain(until=lambda: len(got) == 3)
    assert env.count(q, ch) == 2
    assert [m.body for m in got] == [b"0", b"1", b"2"]


def test_per_consumer_prefetch_applies_to_each_consumer(env):
    """rabbitmq.com/consumer-prefetch.html: each consumer has its own limit."""
    ch = env.channel()
    q1, q2 = env.queue(ch), env.queue(ch)
    fill(env, ch, q1, 3)
    fill(env, ch, q2, 3)
    ch.basic_qos(0, 1, False)
    _, got1 = env.consume(ch, q1)
    _, got2 = env.consume(ch, q2)
    assert env.drain(until=lambda: len(got1) + len(got2) == 2)
    assert (env.count(q1, ch), env.count(q2, ch)) == (2, 2)  # fence: one from each queue
    assert (len(got1), len(got2)) == (1, 1)


def test_global_prefetch_shared_by_channel(env):
    """rabbitmq.com/consumer-prefetch.html: global=true limits the channel as a whole."""
    ch = env.channel()
    q1, q2 = env.queue(ch), env.queue(ch)
    fill(env, ch, q1, 3)
    fill(env, ch, q2, 3)
    ch.basic_qos(0, 3, True)
    _, got1 = env.consume(ch, q1)
    assert env.drain(until=lambda: len(got1) == 3)
    _, got2 = env.consume(ch, q2)
    assert env.count(q2, ch) == 3  # fence: the channel-wide limit let nothing out of q2
    assert (len(got1), len(got2)) == (3, 0)
    ch.basic_ack(got1[2].delivery_tag, multiple=True)
    assert env.drain(until=lambda: len(got2) == 3)
    assert [m.body for m in got2] == [b"0", b"1", b"2"]


def test_raising_the_global_prefetch_resumes_every_consumed_queue(env):
    """rabbitmq.com/consumer-prefetch.html: a larger channel-wide limit lets each queue the
    channel consumes from deliver again, not only one of them."""
    ch = env.channel()
    q1, q2 = env.queue(ch), env.queue(ch)
    fill(env, ch, q1, 2)
    fill(env, ch, q2, 2)
    ch.basic_qos(0, 1, True)
    _, got1 = env.consume(ch, q1)
    assert env.drain(until=lambda: len(got1) == 1)
    _, got2 = env.consume(ch, q2)
    assert (env.count(q1, ch), env.count(q2, ch)) == (1, 2)  # fence: the limit holds the rest
    ch.basic_qos(0, 10, True)
    assert env.drain(until=lambda: len(got1) == 2 and len(got2) == 2)
    assert [m.body for m in got1] == [b"0", b"1"]
    assert [m.body for m in got2] == [b"0", b"1"]


def test_prefetch_zero_is_unlimited(env):
    """rabbitmq.com/consumer-prefetch.html: a prefetch count of 0 means no limit."""
    ch = env.channel()
    q = env.queue(ch)
    fill(env, ch, q, 20)
    ch.basic_qos(0, 0, False)
    _, got = env.consume(ch, q)
    assert env.drain(until=lambda: len(got) == 20)


def test_prefetch_does_not_limit_basic_get(env):
    """rabbitmq.com/consumer-prefetch.html: prefetch applies to consumers, not basic.get."""
    ch = env.channel()
    q = env.queue(ch)
    fill(env, ch, q, 3)
    ch.basic_qos(0, 1, True)
    got = [ch.basic_get(q, no_ack=False) for _ in range(3)]
    assert [m.body for m in got] == [b"0", b"1", b"2"]


def test_exclusive_consumer_blocks_others(env):
    """rabbitmq.com/consumers.html#exclusivity: a second consumer gets 403."""
    ch = env.channel()
    q = env.queue(ch)
    env.consume(ch, q, exclusive=True)
    other = env.channel()
    with pytest.raises(AccessRefused) as exc:
        env.consume(other, q)
    assert exc.value.reply_text == (f"ACCESS_REFUSED - queue '{q}' in vhost '/' in exclusive use")


def test_exclusive_consume_refused_when_queue_has_consumers(env):
    """rabbitmq.com/consumers.html#exclusivity: exclusive only if no other consumers."""
    ch = env.channel()
    q = env.queue(ch)
    env.consume(ch, q)
    other = env.channel()
    with pytest.raises(AccessRefused) as exc:
        env.consume(other, q, exclusive=True)
    assert exc.value.reply_text == (f"ACCESS_REFUSED - queue '{q}' in vhost '/' in exclusive use")


def test_consumer_tag_reuse_is_connection_error_530(env):
    """rabbitmq.com/amqp-0-9-1-reference.html#basic.consume.consumer-tag: tags are unique."""
    conn = env.connection()
    ch = env.channel(conn)
    q = env.queue(ch)
    env.consume(ch, q, consumer_tag="dup")
    with pytest.raises(NotAllowed) as exc:
        env.consume(ch, q, consumer_tag="dup")
    assert (exc.value.reply_code, exc.value.reply_text) == (
        530,
        "NOT_ALLOWED - attempt to reuse consumer tag 'dup'",
    )


def test_reply_consumer_tag_is_checked_for_reuse_one_way_only(env):
    """The reply consumer keeps the tag the client chose. RabbitMQ 3.10 (rabbit_channel)
    checks a new consumer's tag against the channel's queue consumers only: a queue consumer
    may take the reply consumer's tag, while the reply consumer may not take a queue
    consumer's tag (530), measured."""
    ch = env.channel(env.connection())
    q = env.queue(ch)
    tag, _ = env.consume(ch, "amq.rabbitmq.reply-to", consumer_tag="replies", no_ack=True)
    assert tag == "replies"
    assert env.consume(ch, q, consumer_tag="replies")[0] == "replies"
    env.fence(ch)
    other = env.channel(env.connection())
    env.consume(other, q, consumer_tag="worker")
    with pytest.raises(NotAllowed) as exc:
        env.consume(other, "amq.rabbitmq.reply-to", consumer_tag="worker", no_ack=True)
    assert (exc.value.reply_code, exc.value.reply_text) == (
        530,
        "NOT_ALLOWED - attempt to reuse consumer tag 'worker'",
    )


def test_no_ack_consumer_messages_not_redelivered(env):
    """rabbitmq.com/confirms.html#acknowledgement-modes: automatic ack on delivery."""
    ch = env.channel()
    q = env.queue(ch)
    _, got = env.consume(ch, q, no_ack=True)
    env.publish(ch, b"fire-and-forget", "", q)
    assert env.drain(until=lambda: len(got) == 1)
    ch.close()
    assert env.get_none(env.channel(), q) is None


def test_ack_multiple_frees_room_on_every_queue_it_settles(env):
    """rabbitmq.com/consumer-prefetch.html: one ack with multiple=true settling deliveries from
    two queues lets each consumer get its next message."""
    ch = env.channel()
    q1, q2 = env.queue(ch), env.queue(ch)
    fill(env, ch, q1, 2)
    fill(env, ch, q2, 2)
    ch.basic_qos(0, 1, False)
    _, got1 = env.consume(ch, q1)
    _, got2 = env.consume(ch, q2)
    assert env.drain(until=lambda: len(got1) + len(got2) == 2)
    last = max(m.delivery_tag for m in got1 + got2)
    ch.basic_ack(last, multiple=True)
    assert env.drain(until=lambda: len(got1) + len(got2) == 4)
    assert (len(got1), len(got2)) == (2, 2)
