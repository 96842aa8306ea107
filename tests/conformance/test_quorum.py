"""Quorum queues (x-queue-type: quorum), as a client of RabbitMQ 3.10 sees them.

Each test runs on simamqp (in-process and over a socket) and on RabbitMQ; the facts are the
ones measured on RabbitMQ 3.10.8 (src/simamqp/core/quorum.py lists them).
"""

from __future__ import annotations

import datetime

import amqp
import pytest
from amqp.exceptions import AMQPNotImplementedError, PreconditionFailed

QUORUM = {"x-queue-type": "quorum"}


def quorum(env, ch, prefix="qq", **arguments):
    """Declare a durable quorum queue with ``arguments``; its name."""
    return env.queue(ch, prefix, durable=True, arguments={**QUORUM, **arguments})


def declare_error(env, name, **kwargs):
    """The reply text of a refused queue.declare (on a channel of its own)."""
    ch = env.channel()
    kwargs.setdefault("auto_delete", False)
    with pytest.raises(PreconditionFailed) as exc:
        ch.queue_declare(name, **kwargs)
    assert exc.value.reply_code == 406
    return exc.value.reply_text


def delivery_counts(env, ch, queue):
    """Empty ``queue`` with basic.get: (body, redelivered, x-delivery-count) per message."""
    env.settle()
    out = []
    while (msg := ch.basic_get(queue, no_ack=True)) is not None:
        headers = msg.properties.get("application_headers") or {}
        out.append((msg.body, msg.delivery_info["redelivered"], headers.get("x-delivery-count")))
    return out


def get_ack(env, ch, queue):
    """basic.get one message that must be settled (retried on RabbitMQ until it arrives)."""
    msg = env.get(ch, queue, no_ack=False)
    assert msg is not None
    return msg


# -- declare rules ----------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("flags", "prop"),
    [
        ({"durable": False}, "non-durable"),
        ({"durable": True, "exclusive": True}, "exclusive-owner"),
        ({"durable": True, "auto_delete": True}, "auto-delete"),
        ({"durable": False, "auto_delete": True}, "auto-delete"),
        ({"durable": False, "exclusive": True}, "exclusive-owner"),
    ],
)
def test_a_quorum_queue_is_durable_and_never_exclusive_or_auto_delete(env, flags, prop):
    """rabbit_quorum_queue:is_compatible/3: durable, not exclusive, not auto-delete."""
    name = env.name("qq")
    text = declare_error(env, name, arguments=QUORUM, **flags)
    assert (
        text == f"PRECONDITION_FAILED - invalid property '{prop}' for queue '{name}' in vhost '/'"
    )


def test_a_quorum_queue_cannot_be_server_named(env):
    text = declare_error(env, "", durable=True, arguments=QUORUM)
    assert text == (
        "PRECONDITION_FAILED - Cannot declare a server-named queue for type rabbit_quorum_queue"
    )


@pytest.mark.parametrize(
    ("key", "value"),
    [
        ("x-max-priority", 5),
        ("x-queue-mode", "lazy"),
        ("x-queue-master-locator", "min-masters"),
        ("x-queue-version", 2),
    ],
)
def test_classic_arguments_are_refused_for_a_quorum_queue(env, key, value):
    name = env.name("qq")
    text = declare_error(env, name, durable=True, arguments={**QUORUM, key: value})
    assert text == (
        f"PRECONDITION_FAILED - invalid arg '{key}' for queue '{name}' in vhost '/' "
        "of queue type rabbit_quorum_queue"
    )


@pytest.mark.parametrize(
    ("key", "value"),
    [
        ("x-delivery-limit", 1),
        ("x-dead-letter-strategy", "at-most-once"),
        ("x-quorum-initial-group-size", 1),
    ],
)
def test_quorum_arguments_are_refused_for_a_classic_queue(env, key, value):
    name = env.name("cq")
    text = declare_error(env, name, durable=True, arguments={key: value})
    assert text == (
        f"PRECONDITION_FAILED - invalid arg '{key}' for queue '{name}' in vhost '/' "
        "of queue type rabbit_classic_queue"
    )


def test_the_first_refused_argument_is_named_in_the_order_sent(env):
    name = env.name("qq")
    arguments = {**QUORUM, "x-queue-mode": "lazy", "x-max-priority": 1}
    assert "'x-queue-mode'" in declare_error(env, name, durable=True, arguments=arguments)


@pytest.mark.parametrize(
    "arguments",
    [
        {"x-delivery-limit": 3},
        {"x-delivery-limit": "not a number"},
        {"x-dead-letter-strategy": "at-least-once", "x-overflow": "reject-publish"},
        {"x-overflow": "reject-publish-dlx"},
        {"x-max-in-memory-length": 5, "x-max-in-memory-bytes": 5},
        {"x-quorum-initial-group-size": 1},
        {"x-single-active-consumer": True, "x-expires": 60000, "x-message-ttl": 60000},
        {"x-some-custom-arg": 1},
    ],
)
def test_quorum_arguments_are_accepted(env, arguments):
    ch = env.channel()
    name = quorum(env, ch, **arguments)
    assert tuple(ch.queue_declare(name, passive=True)) == (name, 0, 0)


@pytest.mark.parametrize(
    ("value", "reason"),
    [("bogus", "invalid_dlx_strategy"), (5, "{unacceptable_type,signedint}")],
)
def test_a_bad_dead_letter_strategy_is_refused(env, value, reason):
    name = env.name("qq")
    arguments = {**QUORUM, "x-dead-letter-strategy": value}
    assert declare_error(env, name, durable=True, arguments=arguments) == (
        f"PRECONDITION_FAILED - invalid arg 'x-dead-letter-strategy' for queue '{name}' "
        f"in vhost '/': {reason}"
    )


def test_redeclaring_with_another_type_is_inequivalent(env):
    ch = env.channel()
    qq = quorum(env, ch)
    cq = env.queue(ch, "cq", durable=True)
    prefix = "PRECONDITION_FAILED - inequivalent arg 'x-queue-type' for queue"
    assert declare_error(env, qq, durable=True) == (
        f"{prefix} '{qq}' in vhost '/': received none but current is the value 'quorum' of "
        "type 'longstr'"
    )
    assert declare_error(env, qq, durable=True, arguments={"x-queue-type": "classic"}) == (
        f"{prefix} '{qq}' in vhost '/': received 'classic' but current is 'quorum'"
    )
    assert declare_error(env, cq, durable=True, arguments=QUORUM) == (
        f"{prefix} '{cq}' in vhost '/': received the value 'quorum' of type 'longstr' but "
        "current is none"
    )
    # the same type, declared again, is fine
    assert ch.queue_declare(qq, durable=True, auto_delete=False, arguments=QUORUM)[0] == qq


@pytest.mark.parametrize(
    ("key", "value", "amqp_type"),
    [("x-delivery-limit", 3, "signedint"), ("x-dead-letter-strategy", "at-least-once", "longstr")],
)
def test_quorum_only_arguments_are_compared_on_redeclaration(env, key, value, amqp_type):
    ch = env.channel()
    qq = quorum(env, ch)
    assert declare_error(env, qq, durable=True, arguments={**QUORUM, key: value}) == (
        f"PRECONDITION_FAILED - inequivalent arg '{key}' for queue '{qq}' in vhost '/': "
        f"received the value '{value}' of type '{amqp_type}' but current is none"
    )


def test_refused_consumer_arguments(env):
    ch = env.channel()
    qq = quorum(env, ch)
    for key, value in (("x-cancel-on-ha-failover", True),):
        consumer_ch = env.channel()
        with pytest.raises(PreconditionFailed) as exc:
            consumer_ch.basic_consume(qq, callback=lambda m: None, arguments={key: value})
        assert exc.value.reply_text == (
            f"PRECONDITION_FAILED - invalid arg '{key}' for queue '{qq}' in vhost '/' "
            "of queue type rabbit_quorum_queue"
        )


# -- counts -----------------------------------------------------------------------------------


def test_declare_ok_and_get_ok_counts_and_the_basic_get_consumer(env):
    """An unsettled basic.get message counts as a consumer of a quorum queue."""
    ch = env.channel()
    qq = quorum(env, ch)
    for body in (b"a", b"b", b"c"):
        env.publish(ch, body, "", qq)
    env.eventually_count(qq, 3)
    msg = get_ack(env, ch, qq)
    assert msg.delivery_info["message_count"] == 2
    assert tuple(ch.queue_declare(qq, passive=True)) == (qq, 2, 1)
    second = get_ack(env, ch, qq)
    # each unsettled basic.get message is one "once" consumer
    assert tuple(ch.queue_declare(qq, passive=True)) == (qq, 1, 2)
    ch.basic_ack(msg.delivery_tag)
    ch.basic_ack(second.delivery_tag)
    env.fence(ch)
    assert env.eventually(lambda: tuple(ch.queue_declare(qq, passive=True)), (qq, 1, 0)) == (
        qq,
        1,
        0,
    )
    assert env.get(ch, qq, no_ack=True).body == b"c"
    assert tuple(ch.queue_declare(qq, passive=True)) == (qq, 0, 0)


def test_a_cancelled_consumer_counts_until_its_deliveries_are_settled(env):
    ch = env.channel()
    qq = quorum(env, ch)
    env.publish(ch, b"m", "", qq)
    consumer_ch = env.channel()
    tag, got = env.consume(consumer_ch, qq)
    env.drain(until=lambda: len(got) == 1)
    consumer_ch.basic_cancel(tag)
    assert tuple(ch.queue_declare(qq, passive=True)) == (qq, 0, 1)
    consumer_ch.basic_ack(got[0].delivery_tag)
    env.fence(consumer_ch)
    assert env.eventually(lambda: tuple(ch.queue_declare(qq, passive=True)), (qq, 0, 0)) == (
        qq,
        0,
        0,
    )


def test_a_consumer_is_its_tag_and_channel(env):
    """Re-consuming under a cancelled consumer's tag is the same rabbit_fifo consumer: settling
    the old delivery settles it, and after the second cancel nothing is left to count."""
    ch = env.channel()
    qq = quorum(env, ch)
    env.publish(ch, b"m", "", qq)
    consumer_ch = env.channel()
    got: list[amqp.Message] = []
    consumer_ch.basic_consume(qq, consumer_tag="c", callback=got.append)
    env.drain(until=lambda: len(got) == 1)
    consumer_ch.basic_cancel("c")
    consumer_ch.basic_consume(qq, consumer_tag="c", callback=got.append)
    consumer_ch.basic_ack(got[0].delivery_tag)
    consumer_ch.basic_cancel("c")
    assert env.eventually(lambda: tuple(ch.queue_declare(qq, passive=True)), (qq, 0, 0)) == (
        qq,
        0,
        0,
    )


def test_single_active_consumer_counts_only_the_active_consumer(env):
    ch = env.channel()
    qq = quorum(env, ch, **{"x-single-active-consumer": True})
    consumer_ch = env.channel()
    _, first = env.consume(consumer_ch, qq, no_ack=True)
    _, second = env.consume(consumer_ch, qq, no_ack=True)
    for body in (b"1", b"2", b"3"):
        env.publish(ch, body, "", qq)
    env.drain(until=lambda: len(first) == 3)
    assert ([m.body for m in first], second) == ([b"1", b"2", b"3"], [])
    assert tuple(ch.queue_declare(qq, passive=True)) == (qq, 0, 1)


# -- delivery counts and requeue order ----------------------------------------------------------


def test_a_requeued_message_goes_to_the_back_with_a_delivery_count(env):
    ch = env.channel()
    qq = quorum(env, ch)
    for body in (b"a", b"b", b"c"):
        env.publish(ch, body, "", qq)
    env.eventually_count(qq, 3)
    msg = get_ack(env, ch, qq)
    assert (msg.body, msg.properties["application_headers"]) == (b"a", {"x-delivery-count": 0})
    ch.basic_reject(msg.delivery_tag, requeue=True)
    env.eventually_count(qq, 3)
    assert delivery_counts(env, ch, qq) == [
        (b"b", False, 0),
        (b"c", False, 0),
        (b"a", True, 1),
    ]


def test_with_a_delivery_limit_a_requeued_message_comes_first(env):
    """rabbit_fifo's returns queue is served first when x-delivery-limit is set."""
    ch = env.channel()
    qq = quorum(env, ch, **{"x-delivery-limit": 5})
    for body in (b"a", b"b", b"c"):
        env.publish(ch, body, "", qq)
    env.eventually_count(qq, 3)
    ch.basic_reject(get_ack(env, ch, qq).delivery_tag, requeue=True)
    env.eventually_count(qq, 3)
    assert delivery_counts(env, ch, qq) == [(b"a", True, 1), (b"b", False, 0), (b"c", False, 0)]


@pytest.mark.parametrize("via", ["get", "consume"])
@pytest.mark.parametrize("close", ["client", "error"])
def test_a_closed_channels_deliveries_come_back_first_counted(env, via, close):
    """rabbit_fifo returns a dead channel's checked-out messages to its returns queue."""
    ch = env.channel()
    qq = quorum(env, ch)
    env.publish(ch, b"m0", "", qq)
    env.eventually_count(qq, 1)
    other = env.channel()
    if via == "get":
        get_ack(env, other, qq)
    else:
        other.basic_qos(0, 1, False)  # m1 stays ready
        _, got = env.consume(other, qq)
        env.drain(until=lambda: len(got) == 1)
    env.publish(ch, b"m1", "", qq)
    env.eventually_count(qq, 1)
    if close == "client":
        other.close()
    else:
        other.basic_ack(1000)  # an unknown delivery tag: 406, the channel closes
        with pytest.raises(PreconditionFailed):
            env.fence(other)
    env.eventually_count(qq, 2)
    assert delivery_counts(env, ch, qq) == [(b"m0", True, 1), (b"m1", False, 0)]


@pytest.mark.parametrize("queue_type", ["classic", "quorum"])
def test_recover_credits_a_consumer_with_its_own_deliveries(env, queue_type):
    """basic.recover settles per (queue, consumer): the basic.get delivery is requeued before
    the consumer's prefetch credit comes back, so with x-max-length 2 the order decides what
    the head drop takes (found by the differential machine)."""
    ch = env.channel()
    arguments = {"x-max-length": 2}
    if queue_type == "quorum":
        queue = quorum(env, ch, **arguments)
    else:
        queue = env.queue(ch, arguments=arguments)
    env.publish(ch, b"m0", "", queue)
    env.eventually_count(queue, 1)
    other = env.channel()
    get_ack(env, other, queue)
    other.basic_qos(0, 1, False)
    _, got = env.consume(other, queue)
    env.publish(ch, b"m1", "", queue)
    env.drain(until=lambda: len(got) == 1)
    env.publish(ch, b"m2", "", queue)
    env.eventually_count(queue, 1)
    other.basic_recover(requeue=True)
    env.drain(until=lambda: len(got) == 2)
    assert [(m.body, m.delivery_info["redelivered"]) for m in got] == [
        (b"m1", False),
        # classic: m0's requeue drops it at the head, then m1 comes back; quorum: the
        # consumer takes the head (m2) before the length limit is evaluated
        (b"m1", True) if queue_type == "classic" else (b"m2", False),
    ]


def test_recover_returns_to_the_back(env):
    ch = env.channel()
    qq = quorum(env, ch)
    for body in (b"m0", b"m1"):
        env.publish(ch, body, "", qq)
    env.eventually_count(qq, 2)
    other = env.channel()
    get_ack(env, other, qq)
    other.basic_recover(requeue=True)
    env.eventually_count(qq, 2)
    assert delivery_counts(env, ch, qq) == [(b"m1", False, 0), (b"m0", True, 1)]


def test_closing_a_channel_counts_towards_the_delivery_limit(env):
    ch = env.channel()
    qq = quorum(env, ch, **{"x-delivery-limit": 1})
    env.publish(ch, b"m0", "", qq)
    counts = []
    for _ in range(2):
        other = env.channel()
        msg = get_ack(env, other, qq)
        counts.append(msg.properties["application_headers"]["x-delivery-count"])
        other.close()
    assert counts == [0, 1]
    env.eventually_count(qq, 0)
    assert env.get_none(ch, qq) is None


def test_nack_multiple_returns_in_delivery_order(env):
    ch = env.channel()
    qq = quorum(env, ch)
    for body in (b"a", b"b", b"c", b"d"):
        env.publish(ch, body, "", qq)
    env.eventually_count(qq, 4)
    get_ack(env, ch, qq)
    second = get_ack(env, ch, qq)
    env.nack(ch, second.delivery_tag, multiple=True, requeue=True)
    env.eventually_count(qq, 4)
    assert delivery_counts(env, ch, qq) == [
        (b"c", False, 0),
        (b"d", False, 0),
        (b"a", True, 1),
        (b"b", True, 1),
    ]


def test_consumer_deliveries_carry_the_count_from_the_first_return_on(env):
    ch = env.channel()
    qq = quorum(env, ch)
    env.publish(ch, b"a", "", qq, application_headers={"h": 1})
    env.publish(ch, b"b", "", qq)
    consumer_ch = env.channel()
    _, got = env.consume(consumer_ch, qq)
    env.drain(until=lambda: len(got) == 2)
    env.nack(consumer_ch, got[0].delivery_tag, multiple=False, requeue=True)
    env.drain(until=lambda: len(got) == 3)
    consumer_ch.basic_recover(requeue=True)
    env.drain(until=lambda: len(got) == 5)
    seen = [
        (m.body, m.delivery_info["redelivered"], m.properties.get("application_headers"))
        for m in got
    ]
    assert seen == [
        (b"a", False, {"h": 1}),
        (b"b", False, None),
        (b"a", True, {"h": 1, "x-delivery-count": 1}),
        # recover returns in delivery order: b (delivered second) before a (delivered third)
        (b"b", True, {"x-delivery-count": 1}),
        (b"a", True, {"h": 1, "x-delivery-count": 2}),
    ]
    consumer_ch.close()
    env.eventually_count(qq, 2)
    # closing the channel returned both once more
    assert delivery_counts(env, ch, qq) == [(b"b", True, 2), (b"a", True, 3)]


def test_the_delivery_limit_dead_letters_a_poison_message(env):
    ch = env.channel()
    dead = env.queue(ch, "dead", durable=True)
    qq = quorum(
        env,
        ch,
        **{
            "x-delivery-limit": 2,
            "x-dead-letter-exchange": "",
            "x-dead-letter-routing-key": dead,
        },
    )
    env.publish(ch, b"poison", "", qq, application_headers={"h": 1})
    counts = []
    for _ in range(3):
        msg = get_ack(env, ch, qq)
        counts.append(msg.properties["application_headers"]["x-delivery-count"])
        ch.basic_reject(msg.delivery_tag, requeue=True)
    assert counts == [0, 1, 2]
    msg = env.get(ch, dead)
    assert msg is not None and msg.body == b"poison"
    headers = dict(msg.properties["application_headers"])
    (death,) = headers.pop("x-death")
    assert isinstance(death.pop("time"), datetime.datetime)
    assert death == {
        "count": 1,
        "reason": "delivery_limit",
        "queue": qq,
        "exchange": "",
        "routing-keys": [qq],
    }
    assert headers == {
        "h": 1,
        "x-first-death-exchange": "",
        "x-first-death-queue": qq,
        "x-first-death-reason": "delivery_limit",
    }
    assert env.get_none(ch, qq) is None


def test_a_delivery_limit_without_a_dead_letter_exchange_drops(env):
    ch = env.channel()
    qq = quorum(env, ch, **{"x-delivery-limit": 0})
    env.publish(ch, b"once", "", qq)
    ch.basic_reject(get_ack(env, ch, qq).delivery_tag, requeue=True)
    env.eventually_count(qq, 0)
    assert env.get_none(ch, qq) is None


def test_a_rejected_message_is_dead_lettered_without_a_delivery_count(env):
    ch = env.channel()
    dead = env.queue(ch, "dead", durable=True)
    qq = quorum(env, ch, **{"x-dead-letter-exchange": "", "x-dead-letter-routing-key": dead})
    env.publish(ch, b"r", "", qq)
    ch.basic_reject(get_ack(env, ch, qq).delivery_tag, requeue=True)
    msg = get_ack(env, ch, qq)
    assert msg.properties["application_headers"] == {"x-delivery-count": 1}
    ch.basic_reject(msg.delivery_tag, requeue=False)
    msg = env.get(ch, dead)
    assert msg is not None
    headers = msg.properties["application_headers"]
    assert "x-delivery-count" not in headers
    assert headers["x-first-death-reason"] == "rejected"


# -- global qos -------------------------------------------------------------------------------


def test_consuming_with_a_global_prefetch_is_not_implemented(env):
    ch = env.channel()
    qq = quorum(env, ch)
    conn = env.connection()
    qos_ch = env.channel(conn)
    qos_ch.basic_qos(0, 10, True)
    with pytest.raises(AMQPNotImplementedError) as exc:
        qos_ch.basic_consume(qq, callback=lambda m: None)
    assert (exc.value.reply_code, exc.value.reply_text) == (
        540,
        f"NOT_IMPLEMENTED - queue '{qq}' in vhost '/' does not support global qos",
    )
    assert not conn.connected


def test_a_global_prefetch_of_zero_may_consume(env):
    ch = env.channel()
    qq = quorum(env, ch)
    qos_ch = env.channel()
    qos_ch.basic_qos(0, 0, True)
    qos_ch.basic_consume(qq, callback=lambda m: None)
    env.fence(qos_ch)


# -- overflow ---------------------------------------------------------------------------------


def publish_one_by_one(env, ch, queue, bodies):
    """Publish in confirm mode, each after the previous one's confirm; the outcomes."""
    confirms = env.confirms(ch)
    for n, body in enumerate(bodies, start=1):
        env.publish(ch, body, "", queue)
        env.drain(until=confirms.settled(n))
    return confirms.results(len(bodies))


def test_reject_publish_accepts_the_message_over_the_limit_then_refuses(env):
    ch = env.channel()
    qq = quorum(env, ch, **{"x-max-length": 2, "x-overflow": "reject-publish"})
    pub = env.channel()
    outcomes = publish_one_by_one(env, pub, qq, [b"0", b"1", b"2", b"3", b"4"])
    assert outcomes == ["ack", "ack", "ack", "nack", "nack"]
    assert env.bodies(ch, qq) == [b"0", b"1", b"2"]


def test_reject_publish_takes_publishes_again_below_the_soft_limit(env):
    """rabbit_fifo unblocks publishers at or below 80% of x-max-length."""
    ch = env.channel()
    qq = quorum(env, ch, **{"x-max-length": 5, "x-overflow": "reject-publish"})
    pub = env.channel()
    confirms = env.confirms(pub)
    outcomes = []
    for n, body in enumerate([b"0", b"1", b"2", b"3", b"4", b"5", b"6"], start=1):
        env.publish(pub, body, "", qq)
        env.drain(until=confirms.settled(n))
    outcomes = confirms.results(7)
    assert outcomes == ["ack"] * 6 + ["nack"]
    assert env.get(ch, qq).body == b"0"  # 5 left: not over the limit, still refusing
    env.publish(pub, b"x1", "", qq)
    env.drain(until=confirms.settled(8))
    for _ in range(3):
        assert env.get(ch, qq) is not None  # 2 left: at or below 4
    env.publish(pub, b"x2", "", qq)
    env.drain(until=confirms.settled(9))
    assert confirms.results(9)[7:] == ["nack", "ack"]
    assert env.bodies(ch, qq) == [b"4", b"5", b"x2"]


def test_reject_publish_dlx_drops_the_head_on_a_quorum_queue(env):
    ch = env.channel()
    dead = env.queue(ch, "dead", durable=True)
    qq = quorum(
        env,
        ch,
        **{
            "x-max-length": 2,
            "x-overflow": "reject-publish-dlx",
            "x-dead-letter-exchange": "",
            "x-dead-letter-routing-key": dead,
        },
    )
    pub = env.channel()
    assert publish_one_by_one(env, pub, qq, [b"0", b"1", b"2", b"3"]) == ["ack"] * 4
    assert env.bodies(ch, qq) == [b"2", b"3"]
    env.eventually_count(dead, 2)
    assert env.bodies(ch, dead) == [b"0", b"1"]


def test_drop_head_counts_ready_messages_only(env):
    ch = env.channel()
    qq = quorum(env, ch, **{"x-max-length": 2})
    for body in (b"0", b"1"):
        env.publish(ch, body, "", qq)
    env.eventually_count(qq, 2)
    held = get_ack(env, ch, qq)
    for body in (b"2", b"3"):
        env.publish(ch, body, "", qq)
    env.eventually_count(qq, 2)
    assert env.bodies(ch, qq) == [b"2", b"3"]
    ch.basic_ack(held.delivery_tag)


@pytest.mark.parametrize(
    ("strategy", "expected"),
    [("at-least-once", ["ack", "ack", "ack", "nack", "nack"]), ("at-most-once", ["ack"] * 5)],
)
def test_unconfirmed_at_least_once_dead_letters_count_against_the_limit(env, strategy, expected):
    """Dead letters that reach no queue stay with an at-least-once queue (and count)."""
    ch = env.channel()
    qq = quorum(
        env,
        ch,
        **{
            "x-max-length": 2,
            "x-overflow": "reject-publish",
            "x-dead-letter-strategy": strategy,
            "x-dead-letter-exchange": env.name("missing-dlx"),
        },
    )
    pub = env.channel()
    confirms = env.confirms(pub)
    for body in (b"1", b"2"):
        env.publish(pub, body, "", qq)
    env.drain(until=confirms.settled(2))
    env.eventually_count(qq, 2)
    for _ in range(2):
        ch.basic_reject(get_ack(env, ch, qq).delivery_tag, requeue=False)
    env.eventually_count(qq, 0)
    for n, body in enumerate((b"n0", b"n1", b"n2"), start=3):
        env.publish(pub, body, "", qq)
        env.drain(until=confirms.settled(n))
    assert confirms.results(5) == expected


# -- TTL and expiry ---------------------------------------------------------------------------


def test_per_message_ttl_expires_at_the_head_only(env):
    ch = env.channel()
    qq = quorum(env, ch)
    env.publish(ch, b"short", "", qq, expiration="200")
    env.publish(ch, b"long", "", qq)
    env.wait(0.6)
    assert env.bodies(ch, qq) == [b"long"]
    env.publish(ch, b"long", "", qq)
    env.publish(ch, b"short", "", qq, expiration="200")
    env.wait(0.6)
    assert ch.queue_declare(qq, passive=True).message_count == 2


def test_a_message_ttl_of_zero_expires_what_nobody_consumes(env):
    ch = env.channel()
    qq = quorum(env, ch, **{"x-message-ttl": 0})
    env.publish(ch, b"z", "", qq)
    env.wait(0.3)
    assert env.get_none(ch, qq) is None


def test_an_expired_message_is_dead_lettered_with_its_original_expiration(env):
    ch = env.channel()
    dead = env.queue(ch, "dead", durable=True)
    qq = quorum(
        env,
        ch,
        **{
            "x-message-ttl": 100,
            "x-dead-letter-exchange": "",
            "x-dead-letter-routing-key": dead,
        },
    )
    env.publish(ch, b"e", "", qq, expiration="50")
    env.wait(0.4)
    msg = env.get(ch, dead)
    assert msg is not None
    (death,) = msg.properties["application_headers"]["x-death"]
    assert (death["reason"], death["original-expiration"]) == ("expired", "50")
    assert "expiration" not in msg.properties


def exists(env, name):
    probe = env.channel()
    try:
        probe.queue_declare(name, passive=True)
    except amqp.exceptions.NotFound:
        return False
    probe.close()
    return True


def test_a_passive_declare_does_not_keep_a_quorum_queue_alive(env):
    """x-expires: rabbit_fifo's last_active moves on consume, cancel, get and redeclare, not on
    a passive declare. RabbitMQ deletes on its next tick (every 5 s), simamqp on time."""
    ch = env.channel()
    qq = quorum(env, ch, **{"x-expires": 1000})
    env.wait(0.6)
    ch.queue_declare(qq, passive=True)
    env.wait(0.6)
    assert env.eventually(lambda: exists(env, qq), False, timeout=8) is False


def test_a_redeclaration_keeps_a_quorum_queue_alive(env):
    ch = env.channel()
    qq = quorum(env, ch, **{"x-expires": 1000})
    env.wait(0.6)
    ch.queue_declare(qq, durable=True, auto_delete=False, arguments={**QUORUM, "x-expires": 1000})
    env.wait(0.6)
    assert exists(env, qq)


# -- lifecycle --------------------------------------------------------------------------------


def test_deleting_a_quorum_queue_cancels_its_consumers(env):
    ch = env.channel()
    qq = quorum(env, ch)
    consumer_ch = env.channel()
    cancelled = []
    tag = consumer_ch.basic_consume(qq, callback=lambda m: None, on_cancel=cancelled.append)
    ch.queue_delete(qq)
    env.drain(until=lambda: cancelled == [tag])
    assert cancelled == [tag]
