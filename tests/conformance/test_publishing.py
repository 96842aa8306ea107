"""Publishing: mandatory returns, publisher confirms, sender-visible errors, direct reply-to."""

from __future__ import annotations

import re

import amqp
import pytest
from amqp.exceptions import ChannelError, NotFound, PreconditionFailed

REPLY_TO = "amq.rabbitmq.reply-to"


def test_unroutable_without_mandatory_is_dropped(env):
    """rabbitmq.com/publishers.html#unroutable: without mandatory the message is discarded."""
    ch = env.channel()
    confirms = env.confirms(ch)
    ex = env.exchange(ch, "direct")
    env.publish(ch, b"lost", ex, "nowhere")
    assert env.drain(until=confirms.settled(1))
    assert (confirms.results(1), confirms.returned) == (["ack"], [])


def test_mandatory_unroutable_is_returned(env):
    """rabbitmq.com/publishers.html#unroutable: basic.return 312 NO_ROUTE with the message."""
    ch = env.channel()
    confirms = env.confirms(ch)
    ex = env.exchange(ch, "topic")
    env.publish(ch, b"back", ex, "no.such.key", mandatory=True, correlation_id="c-9")
    assert env.drain(until=confirms.settled(1))
    [(code, text, exchange, routing_key, msg)] = confirms.returned
    assert (code, text, exchange, routing_key) == (312, "NO_ROUTE", ex, "no.such.key")
    assert confirms.order == ["return", "ack:1"]
    assert (msg.body, msg.properties["correlation_id"]) == (b"back", "c-9")


def test_mandatory_return_precedes_ack(env):
    """rabbitmq.com/confirms.html#when-publishes-are-confirmed: basic.return before basic.ack."""
    ch = env.channel()
    confirms = env.confirms(ch)
    q = env.queue(ch)
    env.publish(ch, b"routed", "", q, mandatory=True)
    env.publish(ch, b"unroutable", "", env.name("missing"), mandatory=True)
    assert env.drain(until=confirms.settled(2))
    assert confirms.results(2) == ["ack", "ack"]
    # the unroutable publish is returned before it is acked; the routed one may be acked later
    assert confirms.order.index("return") < confirms.order.index("ack:2")
    assert [r[4].body for r in confirms.returned] == [b"unroutable"]


def test_mandatory_routed_message_not_returned(env):
    """rabbitmq.com/amqp-0-9-1-reference.html#basic.publish.mandatory: routed means no return."""
    ch = env.channel()
    confirms = env.confirms(ch)
    q = env.queue(ch)
    env.publish(ch, b"fine", "", q, mandatory=True)
    assert env.drain(until=confirms.settled(1))
    assert confirms.returned == []
    assert env.get(ch, q).body == b"fine"


def test_mandatory_return_without_handler_raises_from_next_call(env):
    """rabbitmq.com/publishers.html#unroutable: py-amqp raises 312 when nobody listens."""
    ch = env.channel()
    q = env.queue(ch)
    env.publish(ch, b"x", "amq.direct", env.name("nowhere"), mandatory=True)
    with pytest.raises(ChannelError) as exc:
        ch.queue_declare(q, passive=True)
    assert (exc.value.reply_code, exc.value.reply_text) == (312, "NO_ROUTE")
    assert ch.is_open
    env.publish(ch, b"still-open", "", q)
    assert env.get(ch, q).body == b"still-open"


def test_confirms_ack_every_publish_in_sequence(env):
    """rabbitmq.com/confirms.html#publisher-confirms: sequence numbers start at 1."""
    ch = env.channel()
    confirms = env.confirms(ch)
    q = env.queue(ch)
    for i in range(5):
        env.publish(ch, b"%d" % i, "", q)
    assert env.drain(until=confirms.settled(5))
    assert confirms.results(5) == ["ack"] * 5
    assert sorted(confirms.outcomes) == [1, 2, 3, 4, 5]


def test_confirm_select_is_idempotent(env):
    """rabbitmq.com/confirms.html#publisher-confirms: confirm.select twice is fine."""
    ch = env.channel()
    confirms = env.confirms(ch)
    ch.confirm_select()
    q = env.queue(ch)
    env.publish(ch, b"a", "", q)
    assert env.drain(until=confirms.settled(1))
    assert confirms.results(1) == ["ack"]


def test_confirms_for_publish_to_several_queues(env):
    """rabbitmq.com/confirms.html#when-publishes-are-confirmed: acked once all queues have it."""
    ch = env.channel()
    confirms = env.confirms(ch)
    ex = env.exchange(ch, "fanout")
    queues = [env.queue(ch) for _ in range(3)]
    for q in queues:
        ch.queue_bind(q, ex, "")
    env.publish(ch, b"fan", ex, "")
    assert env.drain(until=confirms.settled(1))
    other = env.channel()  # once confirmed, every queue has it, whichever channel looks
    assert [env.get_none(other, q).body for q in queues] == [b"fan"] * 3


def test_basic_publish_confirm_blocks_until_ack(env):
    """rabbitmq.com/confirms.html#publisher-confirms: py-amqp basic_publish_confirm."""
    ch = env.channel()
    q = env.queue(ch)
    ch.basic_publish_confirm(amqp.Message(b"confirmed"), "", q)
    assert env.get_none(env.channel(), q).body == b"confirmed"


def test_publish_to_missing_exchange_closes_channel(env):
    """rabbitmq.com/amqp-0-9-1-reference.html#basic.publish.exchange: 404, asynchronously."""
    ch = env.channel()
    q = env.queue(ch)
    ex = env.name("missing")
    env.publish(ch, b"x", ex, "k")
    with pytest.raises(NotFound) as exc:
        ch.queue_declare(q, passive=True)
    assert (exc.value.reply_text, exc.value.method_sig) == (
        f"NOT_FOUND - no exchange '{ex}' in vhost '/'",
        (60, 40),
    )


@pytest.mark.parametrize("mode", [0, 3])
def test_unknown_delivery_mode_closes_the_channel_406(env, mode):
    """rabbit_basic checks the delivery mode: only 1 (transient) and 2 (persistent) are
    accepted; anything else closes the channel 406, asynchronously, and nothing is routed."""
    ch = env.channel()
    q = env.queue(ch)
    env.publish(ch, b"x", "", q, delivery_mode=mode)
    with pytest.raises(PreconditionFailed) as exc:
        env.fence(ch)
    assert (exc.value.reply_text, exc.value.method_sig) == (
        f"PRECONDITION_FAILED - invalid message: {{delivery_mode_unknown,{mode}}}",
        (60, 40),
    )
    assert env.count(q, env.channel()) == 0


def test_direct_reply_to_round_trip(env):
    """rabbitmq.com/direct-reply-to.html: replies reach the pseudo-queue's consumer."""
    client = env.channel()
    server = env.channel()
    requests = env.queue(server)
    _, replies = env.consume(client, REPLY_TO, no_ack=True)
    env.publish(client, b"request", "", requests, reply_to=REPLY_TO, correlation_id="r1")
    request = env.get(server, requests)
    reply_to = request.properties["reply_to"]
    assert reply_to.startswith(REPLY_TO + ".")
    assert reply_to != REPLY_TO + "."
    env.publish(server, b"reply", "", reply_to, correlation_id="r1")
    assert env.drain(until=lambda: len(replies) == 1)
    msg = replies[0]
    assert (msg.body, msg.properties["correlation_id"]) == (b"reply", "r1")
    assert (msg.delivery_info["exchange"], msg.delivery_info["routing_key"]) == ("", reply_to)


def test_direct_reply_to_mandatory_reply_is_delivered_and_returned(env):
    """A mandatory reply to a live reply consumer is delivered, and yet returned 312 NO_ROUTE
    before its confirm ack: RabbitMQ 3.10 (rabbit_channel) delivers replies outside queue
    routing, so for the mandatory flag the reply routed to no queue (measured)."""
    client = env.channel()
    server = env.channel()
    confirms = env.confirms(server)
    requests = env.queue(server)
    _, replies = env.consume(client, REPLY_TO, no_ack=True)
    env.publish(client, b"request", "", requests, reply_to=REPLY_TO)
    reply_to = env.get(server, requests).properties["reply_to"]
    env.publish(server, b"reply", "", reply_to, mandatory=True)
    assert env.drain(until=confirms.settled(1))
    assert env.drain(until=lambda: len(replies) == 1)
    assert [m.body for m in replies] == [b"reply"]
    assert confirms.order == ["return", "ack:1"]
    [(code, text, exchange, routing_key, msg)] = confirms.returned
    assert (code, text, exchange, routing_key, msg.body) == (
        312,
        "NO_ROUTE",
        "",
        reply_to,
        b"reply",
    )


def test_direct_reply_to_cancelled_consumer_frees_the_channel_and_its_address(env):
    """rabbitmq.com/direct-reply-to.html: cancelling the reply consumer lets the channel
    consume from the pseudo-queue again; a reply to the address handed out before the cancel
    no longer reaches the channel, one to the new address does."""
    client = env.channel()
    server = env.channel()
    requests = env.queue(server)
    tag, before = env.consume(client, REPLY_TO, no_ack=True)
    env.publish(client, b"request 1", "", requests, reply_to=REPLY_TO)
    old_address = env.get(server, requests).properties["reply_to"]
    client.basic_cancel(tag)
    _, after = env.consume(client, REPLY_TO, no_ack=True)
    env.publish(client, b"request 2", "", requests, reply_to=REPLY_TO)
    new_address = env.get(server, requests).properties["reply_to"]
    env.publish(server, b"to the old address", "", old_address)
    env.publish(server, b"to the new address", "", new_address)
    assert env.drain(until=lambda: len(after) == 1)
    env.fence(client)
    env.fence(server)
    assert [m.body for m in after] == [b"to the new address"]
    assert before == []


def test_direct_reply_to_addresses_are_per_channel_and_replies_share_the_next_tag(env):
    """rabbitmq.com/direct-reply-to.html: each channel's reply consumer has its own address
    (``amq.rabbitmq.reply-to.<ref>.<base64 of 16 bytes>``, facts §9) and gets only the
    replies sent to it, not redelivered. A reply carries the channel's next delivery tag
    without taking it (RabbitMQ 3.10's rabbit_channel deliver_reply leaves next_tag alone):
    replies and the next ordinary delivery share one tag (measured)."""
    server = env.channel()
    requests = env.queue(server)
    clients = [env.channel(), env.channel()]
    addresses, received = [], []
    for client in clients:
        _, replies = env.consume(client, REPLY_TO, no_ack=True)
        received.append(replies)
        env.publish(client, b"request", "", requests, reply_to=REPLY_TO)
        addresses.append(env.get(server, requests).properties["reply_to"])
    assert addresses[0] != addresses[1]
    for address in addresses:
        assert re.fullmatch(
            r"amq\.rabbitmq\.reply-to\.[A-Za-z0-9+/]+=*\.[A-Za-z0-9+/]{22}==", address
        )
    env.publish(server, b"to 1", "", addresses[1])
    env.publish(server, b"to 0", "", addresses[0])
    env.publish(server, b"to 0 again", "", addresses[0])
    assert env.drain(until=lambda: len(received[0]) == 2 and len(received[1]) == 1)
    assert [m.body for m in received[0]] == [b"to 0", b"to 0 again"]
    assert [m.body for m in received[1]] == [b"to 1"]
    assert [m.delivery_info["redelivered"] for m in received[0]] == [False, False]
    assert [m.delivery_tag for m in received[0]] == [1, 1]
    env.publish(server, b"plain", "", requests)
    plain = env.get(clients[0], requests, no_ack=False)
    assert (plain.body, plain.delivery_tag) == (b"plain", 1)
    clients[0].basic_ack(plain.delivery_tag)
    env.publish(server, b"to 0 after", "", addresses[0])
    assert env.drain(until=lambda: len(received[0]) == 3)
    assert received[0][2].delivery_tag == 2


def test_direct_reply_to_requires_consumer(env):
    """rabbitmq.com/direct-reply-to.html#usage: publish with reply_to needs a consumer first."""
    ch = env.channel()
    q = env.queue(ch)
    env.publish(ch, b"request", "", q, reply_to=REPLY_TO)
    with pytest.raises(PreconditionFailed) as exc:
        ch.queue_declare(q, passive=True)
    assert exc.value.reply_text == "PRECONDITION_FAILED - fast reply consumer does not exist"


def test_direct_reply_to_consumer_must_be_no_ack(env):
    """rabbitmq.com/direct-reply-to.html#usage: the reply consumer must use automatic acks."""
    ch = env.channel()
    with pytest.raises(PreconditionFailed) as exc:
        env.consume(ch, REPLY_TO, no_ack=False)
    assert exc.value.reply_text == "PRECONDITION_FAILED - reply consumer cannot acknowledge"


def test_direct_reply_to_passive_declare_of_a_cancelled_address_is_404(env):
    """A passive declare of a reply address whose consumer was cancelled: 404, naming the
    address (while it is consumed it succeeds, facts §9)."""
    client = env.channel()
    server = env.channel()
    requests = env.queue(server)
    tag, _ = env.consume(client, REPLY_TO, no_ack=True)
    env.publish(client, b"request", "", requests, reply_to=REPLY_TO)
    address = env.get(server, requests).properties["reply_to"]
    assert tuple(server.queue_declare(address, passive=True))[1:] == (0, 1)
    client.basic_cancel(tag)
    with pytest.raises(NotFound) as exc:
        server.queue_declare(address, passive=True)
    assert (exc.value.reply_text, exc.value.method_sig) == (
        f"NOT_FOUND - no queue '{address}' in vhost '/'",
        (50, 10),
    )


@pytest.mark.parametrize(
    "suffix, code",
    [
        ("abc", 404),  # no dot: not an address, just a queue that does not exist
        ("", 404),
        ("bogus.address==", 541),  # "X.Y" whose X is no channel: RabbitMQ cannot decode it
        ("g1h2AA5yZXBseUAxMjcuMC4wLjEAAAC1QAAAAAXqjYhQ==.Gp6b8gyPNsJGBKZjrDAiSw==", 541),
    ],
    ids=["no-dot", "empty", "undecodable", "foreign"],
)
def test_direct_reply_to_passive_declare_of_a_forged_address(env, suffix, code):
    """A passive declare of an address no channel of this broker handed out: a name without a
    dot is a missing queue (404 on the channel); one shaped "X.Y" makes RabbitMQ 3.10 decode X
    as a channel pid, and it fails, closing the connection with a bare 541 (measured)."""
    conn = env.connection()
    ch = env.channel(conn)
    address = f"{REPLY_TO}.{suffix}"
    with pytest.raises(amqp.exceptions.AMQPError) as exc:
        ch.queue_declare(address, passive=True)
    assert exc.value.reply_code == code
    if code == 404:
        assert exc.value.reply_text == f"NOT_FOUND - no queue '{address}' in vhost '/'"
        assert ch.queue_declare(REPLY_TO, passive=True)  # the channel was reopened
    else:
        assert (exc.value.reply_text, exc.value.method_sig) == ("INTERNAL_ERROR", (0, 0))
        assert not ch.is_open


def test_direct_reply_to_passive_declare(env):
    """rabbitmq.com/direct-reply-to.html: the pseudo-queue can be declared passively."""
    ch = env.channel()
    assert tuple(ch.queue_declare(REPLY_TO, passive=True)) == (REPLY_TO, 0, 1)
