"""The tx class (select, commit, rollback), on simamqp in-process, over the socket and on
RabbitMQ 3.10: what a py-amqp client observes of publishes and acks inside a transaction."""

from __future__ import annotations

import amqp
import pytest


def _outcome(fn):
    try:
        return ("ok", fn())
    except amqp.exceptions.AMQPError as exc:
        return (type(exc).__name__, exc.reply_code, exc.reply_text, exc.method_sig)


@pytest.mark.parametrize(
    ("calls", "expected"),
    [
        (["tx_commit"], (406, "PRECONDITION_FAILED - channel is not transactional", (90, 20))),
        (["tx_rollback"], (406, "PRECONDITION_FAILED - channel is not transactional", (90, 30))),
        (
            ["tx_select", "confirm_select"],
            (406, "PRECONDITION_FAILED - cannot switch from tx to confirm mode", (85, 10)),
        ),
        (
            ["confirm_select", "tx_select"],
            (406, "PRECONDITION_FAILED - cannot switch from confirm to tx mode", (90, 10)),
        ),
    ],
)
def test_tx_errors(env, calls, expected):
    ch = env.channel()

    def run():
        for name in calls:
            getattr(ch, name)()

    assert _outcome(run)[1:] == expected


def test_select_twice_and_empty_commit_and_rollback_are_fine(env):
    ch = env.channel()
    results = [ch.tx_select(), ch.tx_select(), ch.tx_commit(), ch.tx_rollback(), ch.tx_commit()]
    assert results == [None] * 5 or len(set(map(repr, results))) == 1


def test_publishes_reach_the_queue_at_commit_and_rollback_discards_them(env):
    ch, other = env.channel(), env.channel()
    queue = env.queue(other)
    ch.tx_select()
    ch.basic_publish(amqp.Message(b"one"), "", queue)
    ch.basic_publish(amqp.Message(b"two"), "", queue)
    env.fence(ch)
    assert env.get_none(other, queue) is None  # not before the commit
    ch.tx_commit()
    assert env.bodies(other, queue) == [b"one", b"two"]
    ch.basic_publish(amqp.Message(b"three"), "", queue)
    ch.tx_rollback()
    ch.basic_publish(amqp.Message(b"four"), "", queue)
    ch.tx_commit()
    assert env.bodies(other, queue) == [b"four"]


def test_a_publish_is_checked_when_it_arrives(env):
    ch = env.channel()
    ch.tx_select()
    ch.basic_publish(amqp.Message(b"x", expiration="bad"), "", "anything")
    outcome = _outcome(ch.tx_commit)
    assert outcome[1:] == (
        406,
        "PRECONDITION_FAILED - invalid expiration 'bad': no_integer",
        (60, 40),
    )


def test_acks_settle_at_commit_and_rollback_makes_them_unacked_again(env):
    ch, other = env.channel(), env.channel()
    queue = env.queue(other)
    for body in (b"a", b"b"):
        env.publish(other, body, "", queue)
    env.fence(other)
    ch.tx_select()
    first = env.get(ch, queue, no_ack=False)
    ch.basic_ack(first.delivery_tag)
    ch.tx_rollback()  # the ack never happened: "a" is unacked again, not requeued
    assert env.get(other, queue).body == b"b"
    assert env.get_none(other, queue) is None
    ch.basic_ack(first.delivery_tag)  # acked again: no 406, it was unacked
    ch.tx_commit()
    env.fence(ch)
    ch.close()
    assert env.get_none(other, queue) is None  # settled by the commit: nothing requeued


def test_an_uncommitted_ack_is_undone_when_the_channel_closes(env):
    ch, other = env.channel(), env.channel()
    queue = env.queue(other)
    env.publish(other, b"a", "", queue)
    env.fence(other)
    ch.tx_select()
    ch.basic_ack(env.get(ch, queue, no_ack=False).delivery_tag)
    env.fence(ch)
    ch.close()
    msg = env.get(other, queue)
    assert (msg.body, msg.delivery_info["redelivered"]) == (b"a", True)


def test_an_ack_inside_a_transaction_is_checked_when_it_arrives(env):
    ch, other = env.channel(), env.channel()
    queue = env.queue(other)
    env.publish(other, b"a", "", queue)
    env.fence(other)
    ch.tx_select()
    tag = env.get(ch, queue, no_ack=False).delivery_tag
    ch.basic_ack(tag)
    ch.basic_ack(tag)  # taken by the first ack already
    outcome = _outcome(ch.tx_commit)
    assert outcome[1:] == (406, f"PRECONDITION_FAILED - unknown delivery tag {tag}", (60, 80))


def test_nack_and_reject_inside_a_transaction_requeue_at_commit(env):
    ch, other = env.channel(), env.channel()
    queue = env.queue(other)
    for body in (b"a", b"b"):
        env.publish(other, body, "", queue)
    env.fence(other)
    ch.tx_select()
    first = env.get(ch, queue, no_ack=False)
    second = env.get(ch, queue, no_ack=False)
    ch.basic_reject(first.delivery_tag, requeue=True)
    env.nack(ch, second.delivery_tag, multiple=False, requeue=True)
    env.fence(ch)
    assert env.get_none(other, queue) is None  # still held until the commit
    ch.tx_commit()
    got = [env.get(other, queue) for _ in range(2)]
    assert sorted(m.body for m in got) == [b"a", b"b"]
    assert all(m.delivery_info["redelivered"] for m in got)


def test_an_unroutable_mandatory_publish_is_returned_at_commit(env):
    ch = env.channel()
    returned = []
    ch.events["basic_return"].add(lambda exc, exchange, key, msg: returned.append(msg.body))
    ch.tx_select()
    ch.basic_publish(amqp.Message(b"lost"), "", env.name("nowhere"), mandatory=True)
    env.fence(ch)
    assert returned == []
    ch.tx_commit()
    env.drain(until=lambda: bool(returned))
    assert returned == [b"lost"]
