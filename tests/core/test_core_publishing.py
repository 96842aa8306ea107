"""Publishing: properties round trip, delivery modes, mandatory returns, confirms, direct reply-to.

Pins AMQP 0-9-1 spec 1.8 (basic class, properties), https://www.rabbitmq.com/publishers.html,
/confirms.html#publisher-confirms and /direct-reply-to.html, with what RabbitMQ 3.10 was
measured to do (docs/rabbitmq-facts.md §9, §11).
"""

from __future__ import annotations

import datetime as dt
import decimal
import re

import pytest
from _core_helpers import deliveries, drain, publish

from simamqp.core import BasicAck, BasicReturn, Broker, Channel, ChannelClose, Connection
from simamqp.core.errors import NotFound

ALL_PROPERTIES = {
    "content_type": "application/json",
    "content_encoding": "utf-8",
    "application_headers": {
        "str": "s",
        "int": 7,
        "neg": -3,
        "float": 1.5,
        "bool": True,
        "none": None,
        "bytes": b"\x00\xff",
        "list": [1, "a", [2]],
        "table": {"k": {"n": 1}},
        "dec": decimal.Decimal("1.25"),
        "ts": dt.datetime(2020, 1, 2, 3, 4, 5),
    },
    "delivery_mode": 2,
    "priority": 3,
    "correlation_id": "corr",
    "reply_to": "replies",
    "expiration": "60000",
    "message_id": "mid",
    "timestamp": dt.datetime(2021, 5, 6, 7, 8, 9),
    "type": "kind",
    "user_id": "guest",
    "app_id": "app",
    "cluster_id": "cl",
}


def test_properties_and_headers_round_trip_unchanged(conn: Connection, ch: Channel) -> None:
    """AMQP 0-9-1 spec 1.8 (basic properties) and 4.2.5.5 (field tables): every property and
    header value arrives as published, through basic.get and basic.deliver."""
    ch.queue_declare("q")
    ch.basic_publish(b"\x00body", "", "q", properties=ALL_PROPERTIES)
    ok = ch.basic_get("q", no_ack=True)
    assert ok is not None
    assert ok.message.body == b"\x00body"
    assert dict(ok.message.properties) == ALL_PROPERTIES
    ch.basic_consume("q", no_ack=True)
    ch.basic_publish(b"again", "", "q", properties=ALL_PROPERTIES)
    [delivery] = deliveries(conn)
    assert dict(delivery.message.properties) == ALL_PROPERTIES
    assert (delivery.exchange, delivery.routing_key, delivery.redelivered) == ("", "q", False)


def test_user_id_must_match_the_connection_user(conn: Connection, ch: Channel) -> None:
    """https://www.rabbitmq.com/validated-user-id.html: a user_id other than the connection's
    user is 406 on basic.publish."""
    ch.basic_publish(b"m", "", "q", properties={"user_id": "mallory"})
    [close] = drain(conn)
    assert isinstance(close, ChannelClose)
    assert close.error.reply_code == 406 and close.error.method == (60, 40)
    assert "mallory" in close.error.reply_text


def test_mandatory_unroutable_is_returned_with_312(conn: Connection, ch: Channel) -> None:
    """AMQP 0-9-1 spec 1.8.3.7 (mandatory) and https://www.rabbitmq.com/publishers.html#
    unroutable: basic.return 312 NO_ROUTE with the exchange and key as published; non-mandatory
    unroutable is dropped silently."""
    ch.exchange_declare("x", "direct")
    ch.basic_publish(b"dropped", "x", "k")
    assert drain(conn) == []
    ch.basic_publish(b"back", "x", "k", mandatory=True, properties={"message_id": "m1"})
    [ret] = drain(conn)
    assert isinstance(ret, BasicReturn)
    assert (ret.channel_id, ret.reply_code, ret.reply_text, ret.exchange, ret.routing_key) == (
        ch.id,
        312,
        "NO_ROUTE",
        "x",
        "k",
    )
    assert ret.message.body == b"back" and ret.message.properties["message_id"] == "m1"
    assert ch.is_open


def test_confirms_ack_in_order_and_return_precedes_ack(conn: Connection, ch: Channel) -> None:
    """https://www.rabbitmq.com/confirms.html#publisher-confirms: sequence numbers from 1; an
    unroutable mandatory message is returned and then acked (facts §11)."""
    ch.queue_declare("q")
    ch.confirm_select()
    assert ch.basic_publish(b"a", "", "nowhere", mandatory=True) == 1
    assert ch.basic_publish(b"b", "", "q") == 2
    assert ch.basic_publish(b"c", "", "nowhere") == 3
    frames = drain(conn)
    assert [type(f).__name__ for f in frames] == ["BasicReturn", "BasicAck", "BasicAck", "BasicAck"]
    assert [f.delivery_tag for f in frames if isinstance(f, BasicAck)] == [1, 2, 3]


def test_publish_without_confirm_mode_has_no_sequence(ch: Channel) -> None:
    """Confirms are opt-in (confirm.select, https://www.rabbitmq.com/confirms.html)."""
    ch.queue_declare("q")
    assert ch.basic_publish(b"m", "", "q") is None


def test_delivery_mode_persistent_flag(broker: Broker, ch: Channel) -> None:
    """AMQP 0-9-1 spec 1.8 delivery-mode: 1 transient, 2 persistent (Message.persistent)."""
    ch.queue_declare("q")
    publish(ch, "t", routing_key="q", delivery_mode=1)
    publish(ch, "p", routing_key="q", delivery_mode=2)
    a, b = ch.basic_get("q"), ch.basic_get("q")
    assert a is not None and b is not None
    assert (a.message.persistent, b.message.persistent) == (False, True)


def test_direct_reply_to_round_trip(broker: Broker, conn: Connection) -> None:
    """https://www.rabbitmq.com/direct-reply-to.html: consume amq.rabbitmq.reply-to with
    no_ack; the request's reply_to is rewritten to a per-channel address; a reply published to
    it via the default exchange reaches the consumer (facts §9)."""
    client = conn.channel()
    tag = client.basic_consume("amq.rabbitmq.reply-to", no_ack=True)
    assert re.fullmatch(r"amq\.ctag-[A-Za-z0-9_-]{22}", tag)
    assert client.queue_declare("amq.rabbitmq.reply-to") == ("amq.rabbitmq.reply-to", 0, 1)
    server_conn = broker.connect()
    server = server_conn.channel()
    server.queue_declare("rpc")
    client.basic_publish(b"req", "", "rpc", properties={"reply_to": "amq.rabbitmq.reply-to"})
    client.basic_publish(b"req2", "", "rpc", properties={"reply_to": "amq.rabbitmq.reply-to"})
    req = server.basic_get("rpc", no_ack=True)
    req2 = server.basic_get("rpc", no_ack=True)
    assert req is not None and req2 is not None
    address = req.message.properties["reply_to"]
    assert address.startswith("amq.rabbitmq.reply-to.") and address != "amq.rabbitmq.reply-to"
    assert req2.message.properties["reply_to"] == address  # same for every publish
    assert server.queue_declare(address, passive=True) == (address, 0, 1)
    server.basic_publish(b"resp", "", address)
    [delivery] = deliveries(conn)
    assert (delivery.consumer_tag, delivery.message.body) == (tag, b"resp")
    assert (delivery.exchange, delivery.routing_key) == ("", address)


@pytest.mark.parametrize(
    ("action", "text", "method"),
    [
        (
            lambda ch: ch.basic_consume("amq.rabbitmq.reply-to", no_ack=False),
            "PRECONDITION_FAILED - reply consumer cannot acknowledge",
            (60, 20),
        ),
        (
            lambda ch: (
                ch.basic_consume("amq.rabbitmq.reply-to", no_ack=True),
                ch.basic_consume("amq.rabbitmq.reply-to", no_ack=True),
            ),
            "PRECONDITION_FAILED - reply consumer already set",
            (60, 20),
        ),
    ],
)
def test_direct_reply_to_consume_rules(
    ch: Channel, action, text: str, method: tuple[int, int]
) -> None:
    """https://www.rabbitmq.com/direct-reply-to.html#limitations (facts §9)."""
    with pytest.raises(Exception) as info:
        action(ch)
    assert (info.value.reply_code, info.value.reply_text, info.value.method) == (406, text, method)


def test_direct_reply_to_publish_needs_a_reply_consumer(conn: Connection, ch: Channel) -> None:
    """https://www.rabbitmq.com/direct-reply-to.html: publishing with reply_to
    amq.rabbitmq.reply-to without consuming it first is 406 (60,40) (facts §9)."""
    ch.queue_declare("rpc")
    ch.basic_publish(b"m", "", "rpc", properties={"reply_to": "amq.rabbitmq.reply-to"})
    [close] = drain(conn)
    assert isinstance(close, ChannelClose)
    assert close.error.reply_text == "PRECONDITION_FAILED - fast reply consumer does not exist"


def test_direct_reply_to_get_and_bogus_address(conn: Connection, ch: Channel) -> None:
    """basic.get on the pseudo-queue is 404; a mandatory publish to a bogus reply address is
    returned 312 without a channel error (facts §9)."""
    ch.basic_publish(b"m", "", "amq.rabbitmq.reply-to.bogus", mandatory=True)
    [ret] = drain(conn)
    assert isinstance(ret, BasicReturn) and ret.reply_code == 312
    with pytest.raises(NotFound) as info:
        ch.basic_get("amq.rabbitmq.reply-to")
    assert info.value.reply_text == "NOT_FOUND - no queue 'amq.rabbitmq.reply-to' in vhost '/'"


def test_basic_publish_defaults_to_the_default_exchange_and_an_empty_key(
    conn: Connection, ch: Channel
) -> None:
    """``basic_publish(body)`` publishes to the default exchange with routing key "" (the
    AMQP field defaults, spec 1.8.3.7): unroutable, so a mandatory one comes back as such."""
    ch.basic_publish(b"m", mandatory=True)
    [ret] = drain(conn)
    assert isinstance(ret, BasicReturn)
    assert (ret.reply_code, ret.exchange, ret.routing_key) == (312, "", "")
