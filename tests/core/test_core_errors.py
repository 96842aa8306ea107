"""Channel- and connection-level errors: reply code, exact text, failing method, what closes.

Pins AMQP 0-9-1 spec section 1.2 (soft vs hard errors, "Constants") and the reply texts
RabbitMQ 3.10 sends (docs/rabbitmq-facts.md sections 1-8 and 20, measured on the real broker).
"""

from __future__ import annotations

import pytest
from _core_helpers import deliveries, drain, publish

from simamqp.core import (
    AMQPChannelError,
    AMQPConnectionError,
    BasicDeliver,
    Broker,
    Channel,
    ChannelClose,
    ChannelClosedError,
    Connection,
)
from simamqp.core.errors import (
    AccessRefused,
    AMQPNotImplemented,
    ChannelNotOpen,
    CommandInvalid,
    NotAllowed,
    NotFound,
    PreconditionFailed,
    ResourceLocked,
)


def test_passive_declare_of_missing_queue_closes_only_the_channel(
    conn: Connection, ch: Channel
) -> None:
    """AMQP 0-9-1 queue.declare passive (spec 1.7.2.1): 404 NOT_FOUND as a channel error;
    RabbitMQ text `NOT_FOUND - no queue 'q' in vhost '/'`, method (50,10) (facts §1)."""
    with pytest.raises(NotFound) as info:
        ch.queue_declare("q", passive=True)
    err = info.value
    assert isinstance(err, AMQPChannelError)
    assert (err.reply_code, err.reply_text) == (404, "NOT_FOUND - no queue 'q' in vhost '/'")
    assert (err.class_id, err.method_id) == (50, 10)
    assert not ch.is_open and ch.close_reason is err
    assert conn.is_open
    with pytest.raises(ChannelClosedError) as closed:
        ch.queue_declare("q2")
    assert closed.value.reason is err
    # The connection is fine: the freed channel id can be opened again (facts §20).
    again = conn.channel(ch.id)
    assert again.queue_declare("q2") == ("q2", 0, 0)


@pytest.mark.parametrize(
    ("call", "code", "text", "method"),
    [
        (
            lambda ch: ch.exchange_declare("x", passive=True),
            404,
            "NOT_FOUND - no exchange 'x' in vhost '/'",
            (40, 10),
        ),
        (
            lambda ch: ch.queue_bind("q0", "missing-x"),
            404,
            "NOT_FOUND - no exchange 'missing-x' in vhost '/'",
            (50, 20),
        ),
        (
            lambda ch: ch.queue_bind("missing-q", "amq.direct"),
            404,
            "NOT_FOUND - no queue 'missing-q' in vhost '/'",
            (50, 20),
        ),
        (
            lambda ch: ch.queue_bind("missing-q", "missing-x"),
            404,
            "NOT_FOUND - no exchange 'missing-x' in vhost '/'",
            (50, 20),
        ),
        (
            lambda ch: ch.exchange_bind("missing-d", "amq.direct"),
            404,
            "NOT_FOUND - no exchange 'missing-d' in vhost '/'",
            (40, 30),
        ),
        (
            lambda ch: ch.queue_purge("missing-q"),
            404,
            "NOT_FOUND - no queue 'missing-q' in vhost '/'",
            (50, 30),
        ),
        (
            lambda ch: ch.basic_consume("missing-q"),
            404,
            "NOT_FOUND - no queue 'missing-q' in vhost '/'",
            (60, 20),
        ),
        (
            lambda ch: ch.basic_get("missing-q"),
            404,
            "NOT_FOUND - no queue 'missing-q' in vhost '/'",
            (60, 70),
        ),
        (
            lambda ch: ch.queue_declare("amq.foo"),
            403,
            "ACCESS_REFUSED - queue name 'amq.foo' contains reserved prefix 'amq.*'",
            (50, 10),
        ),
        (
            lambda ch: ch.exchange_declare("amq.foo", "direct"),
            403,
            "ACCESS_REFUSED - exchange name 'amq.foo' contains reserved prefix 'amq.*'",
            (40, 10),
        ),
        (
            lambda ch: ch.exchange_delete("amq.direct"),
            403,
            "ACCESS_REFUSED - deletion of system exchange 'amq.direct' in vhost '/' not allowed",
            (40, 20),
        ),
        (
            lambda ch: ch.exchange_delete(""),
            403,
            "ACCESS_REFUSED - operation not permitted on the default exchange",
            (40, 20),
        ),
        (
            lambda ch: ch.queue_bind("q0", ""),
            403,
            "ACCESS_REFUSED - operation not permitted on the default exchange",
            (50, 20),
        ),
        (
            lambda ch: ch.queue_delete("q0", if_empty=True),
            406,
            "PRECONDITION_FAILED - queue 'q0' in vhost '/' not empty",
            (50, 40),
        ),
    ],
)
def test_channel_errors_have_rabbitmq_code_text_and_method(
    conn: Connection, ch: Channel, call, code: int, text: str, method: tuple[int, int]
) -> None:
    """Reply codes and texts measured on RabbitMQ 3.10 (facts §1, §4, §8); all are channel
    errors (AMQP 0-9-1 spec 1.2: soft errors close the channel)."""
    setup = conn.channel()
    setup.queue_declare("q0")
    publish(setup, "m", routing_key="q0")
    with pytest.raises(AMQPChannelError) as info:
        call(ch)
    assert (info.value.reply_code, info.value.reply_text, info.value.method) == (code, text, method)
    assert not ch.is_open and conn.is_open and setup.is_open


@pytest.mark.parametrize(
    ("call", "cls", "code", "text", "method"),
    [
        (
            lambda ch: ch.exchange_declare("x", "x-nope"),
            CommandInvalid,
            503,
            "COMMAND_INVALID - unknown exchange type 'x-nope'",
            (40, 10),
        ),
        (
            lambda ch: ch.basic_qos(1, 0, False),
            AMQPNotImplemented,
            540,
            "NOT_IMPLEMENTED - prefetch_size!=0 (1)",
            (60, 10),
        ),
        (
            lambda ch: ch.basic_recover(requeue=False),
            AMQPNotImplemented,
            540,
            "NOT_IMPLEMENTED - requeue=false",
            (60, 110),
        ),
    ],
)
def test_connection_errors_close_the_connection(
    conn: Connection, ch: Channel, call, cls, code: int, text: str, method: tuple[int, int]
) -> None:
    """Hard errors (AMQP 0-9-1 spec 1.2) RabbitMQ 3.10 sends as connection.close (facts §5, §6):
    the connection and every channel on it close."""
    other = conn.channel()
    with pytest.raises(cls) as info:
        call(ch)
    err = info.value
    assert isinstance(err, AMQPConnectionError)
    assert (err.reply_code, err.reply_text, err.method) == (code, text, method)
    assert not conn.is_open and conn.close_reason is err
    assert not ch.is_open and not other.is_open
    with pytest.raises(ChannelClosedError):
        conn.channel()


def test_consumer_tag_reuse_is_530_connection_error(conn: Connection, ch: Channel) -> None:
    """https://www.rabbitmq.com/consumers.html#consumer-tags: reusing a tag on one channel is
    `NOT_ALLOWED - attempt to reuse consumer tag 'dup'` (60,20) and closes the connection
    (facts §6); the same tag on another channel is fine."""
    ch.queue_declare("q")
    ch.basic_consume("q", consumer_tag="dup")
    conn.channel().basic_consume("q", consumer_tag="dup")
    with pytest.raises(NotAllowed) as info:
        ch.basic_consume("q", consumer_tag="dup")
    assert info.value.reply_code == 530
    assert info.value.reply_text == "NOT_ALLOWED - attempt to reuse consumer tag 'dup'"
    assert info.value.method == (60, 20)
    assert not conn.is_open


def test_second_channel_open_is_504_connection_error(conn: Connection) -> None:
    """AMQP 0-9-1 spec 1.5.2.1 channel.open on an open id: RabbitMQ closes the connection with
    `CHANNEL_ERROR - second 'channel.open' seen` (20,10) (facts §20)."""
    conn.channel(3)
    with pytest.raises(ChannelNotOpen) as info:
        conn.channel(3)
    assert (info.value.reply_code, info.value.reply_text, info.value.method) == (
        504,
        "CHANNEL_ERROR - second 'channel.open' seen",
        (20, 10),
    )
    assert not conn.is_open


def test_unknown_vhost_is_refused(broker: Broker) -> None:
    """connection.open to a missing vhost: 530 NOT_ALLOWED (AMQP 0-9-1 spec 1.4.2.7;
    https://www.rabbitmq.com/vhosts.html)."""
    with pytest.raises(NotAllowed) as info:
        broker.connect("nope")
    assert info.value.reply_code == 530
    assert info.value.method == (10, 40)
    assert "nope" in info.value.reply_text


def test_publish_to_missing_exchange_closes_channel_asynchronously(
    conn: Connection, ch: Channel
) -> None:
    """basic.publish has no reply (AMQP 0-9-1 spec 1.8.3.7): the 404 `no exchange` (60,40)
    arrives as channel.close; in confirm mode no ack/nack is sent (facts §1, §11)."""
    ch.confirm_select()
    ch.basic_publish(b"m", "missing", "rk")
    frames = drain(conn)
    assert len(frames) == 1 and isinstance(frames[0], ChannelClose)
    err = frames[0].error
    assert (err.reply_code, err.reply_text, err.method) == (
        404,
        "NOT_FOUND - no exchange 'missing' in vhost '/'",
        (60, 40),
    )
    assert frames[0].channel_id == ch.id
    assert not ch.is_open and conn.is_open


@pytest.mark.parametrize(
    ("settle", "method"),
    [
        (lambda ch, tag: ch.basic_ack(tag), (60, 80)),
        (lambda ch, tag: ch.basic_reject(tag), (60, 90)),
        (lambda ch, tag: ch.basic_nack(tag), (60, 120)),
    ],
)
def test_unknown_delivery_tag_is_406_on_the_settling_method(
    conn: Connection, ch: Channel, settle, method: tuple[int, int]
) -> None:
    """https://www.rabbitmq.com/confirms.html#consumer-acks-double-acking: an unknown tag is a
    channel error `PRECONDITION_FAILED - unknown delivery tag 99`, method of the ack/reject/
    nack (facts §6)."""
    settle(ch, 99)
    [close] = drain(conn)
    assert isinstance(close, ChannelClose)
    assert (close.error.reply_code, close.error.reply_text, close.error.method) == (
        406,
        "PRECONDITION_FAILED - unknown delivery tag 99",
        method,
    )
    assert isinstance(close.error, PreconditionFailed)
    assert not ch.is_open and conn.is_open


def test_double_ack_is_406(conn: Connection, ch: Channel) -> None:
    """Acking twice is `PRECONDITION_FAILED - unknown delivery tag 1` (facts §6)."""
    ch.queue_declare("q")
    publish(ch, "m", routing_key="q")
    ok = ch.basic_get("q")
    assert ok is not None
    ch.basic_ack(ok.delivery_tag)
    assert drain(conn) == []
    ch.basic_ack(ok.delivery_tag)
    [close] = drain(conn)
    assert isinstance(close, ChannelClose)
    assert close.error.reply_text == "PRECONDITION_FAILED - unknown delivery tag 1"


def test_ack_zero_multiple_acks_everything_and_zero_single_is_406(
    conn: Connection, ch: Channel
) -> None:
    """basic.ack with delivery-tag 0 and multiple=1 means "all outstanding" (AMQP 0-9-1 spec
    1.8.3.13); tag 0 without multiple is an unknown tag (facts §6)."""
    ch.queue_declare("q")
    ch.basic_ack(0, multiple=True)  # nothing outstanding: fine
    for i in range(3):
        publish(ch, str(i), routing_key="q")
    for _ in range(3):
        ch.basic_get("q")
    ch.basic_ack(0, multiple=True)
    assert drain(conn) == []
    assert conn.broker.queue("q").messages == 0
    ch.basic_ack(0)
    [close] = drain(conn)
    assert isinstance(close, ChannelClose)
    assert close.error.reply_text == "PRECONDITION_FAILED - unknown delivery tag 0"


def test_channel_error_cancels_consumers_and_requeues_unacked(
    broker: Broker, conn: Connection, ch: Channel
) -> None:
    """A closed channel's consumers go away and its unacked messages are requeued in their
    original order with redelivered=True (https://www.rabbitmq.com/confirms.html#automatic-
    requeueing; facts §13)."""
    ch.queue_declare("q")
    for i in range(3):
        publish(ch, f"m{i}", routing_key="q")
    ch.basic_consume("q", consumer_tag="c")
    assert [d.message.body for d in deliveries(conn)] == [b"m0", b"m1", b"m2"]
    assert broker.queue("q").messages_unacknowledged == 3
    with pytest.raises(NotFound):
        ch.queue_declare("missing", passive=True)
    info = broker.queue("q")
    assert (info.consumers, info.messages_ready, info.messages_unacknowledged) == (0, 3, 0)
    other = conn.channel()
    got = [other.basic_get("q", no_ack=True) for _ in range(3)]
    assert [(g.message.body, g.redelivered) for g in got if g] == [
        (b"m0", True),
        (b"m1", True),
        (b"m2", True),
    ]


def test_connection_error_requeues_and_deletes_exclusive_queues(broker: Broker) -> None:
    """A connection error closes every channel (requeueing unacked messages) and deletes the
    exclusive queues the connection owned (https://www.rabbitmq.com/queues.html#exclusive-queues)."""
    a = broker.connect()
    cha = a.channel()
    cha.queue_declare("shared")
    cha.queue_declare("mine", exclusive=True)
    publish(cha, "m", routing_key="shared")
    assert cha.basic_get("shared") is not None
    with pytest.raises(CommandInvalid):
        a.channel().exchange_declare("x", "bogus-type")
    assert not a.is_open
    assert broker.queue_names() == ["shared"]
    info = broker.queue("shared")
    assert (info.messages_ready, info.messages_unacknowledged) == (1, 0)


@pytest.mark.parametrize(
    ("call", "method"),
    [
        (lambda ch: ch.queue_declare("excl"), (50, 10)),
        (lambda ch: ch.queue_declare("excl", passive=True), (50, 10)),
        (lambda ch: ch.basic_consume("excl"), (60, 20)),
        (lambda ch: ch.basic_get("excl"), (60, 70)),
        (lambda ch: ch.queue_delete("excl"), (50, 40)),
        (lambda ch: ch.queue_bind("excl", "amq.direct", "k"), (50, 20)),
        (lambda ch: ch.queue_purge("excl"), (50, 30)),
    ],
)
def test_exclusive_queue_is_locked_for_other_connections(
    broker: Broker, call, method: tuple[int, int]
) -> None:
    """https://www.rabbitmq.com/queues.html#exclusive-queues: other connections get 405
    RESOURCE_LOCKED with RabbitMQ's full text (facts §3)."""
    owner = broker.connect().channel()
    owner.queue_declare("excl", exclusive=True)
    ch = broker.connect().channel()
    with pytest.raises(ResourceLocked) as info:
        call(ch)
    assert info.value.reply_text == (
        "RESOURCE_LOCKED - cannot obtain exclusive access to locked queue 'excl' in vhost '/'. "
        "It could be originally declared on another connection or the exclusive property value "
        "does not match that of the original declaration."
    )
    assert info.value.method == method


def test_publishing_to_an_exclusive_queue_from_another_connection_is_allowed(
    broker: Broker,
) -> None:
    """Exclusivity restricts access to the queue, not publishing to it (facts §3)."""
    owner = broker.connect().channel()
    owner.queue_declare("excl", exclusive=True)
    other = broker.connect()
    publish(other.channel(), "m", routing_key="excl")
    assert drain(other) == []
    assert broker.queue("excl").messages_ready == 1


@pytest.mark.parametrize(
    ("kwargs", "text"),
    [
        (
            {"durable": True},
            "PRECONDITION_FAILED - inequivalent arg 'durable' for queue 'q' in vhost '/': "
            "received 'true' but current is 'false'",
        ),
        (
            {"auto_delete": True},
            "PRECONDITION_FAILED - inequivalent arg 'auto_delete' for queue 'q' in vhost '/': "
            "received 'true' but current is 'false'",
        ),
        (
            {"arguments": {"x-message-ttl": 2000}},
            "PRECONDITION_FAILED - inequivalent arg 'x-message-ttl' for queue 'q' in vhost '/': "
            "received '2000' but current is '1000'",
        ),
        (
            {"arguments": {}},
            "PRECONDITION_FAILED - inequivalent arg 'x-message-ttl' for queue 'q' in vhost '/': "
            "received none but current is the value '1000' of type 'signedint'",
        ),
    ],
)
def test_queue_redeclare_mismatch_is_406(ch: Channel, conn: Connection, kwargs, text) -> None:
    """AMQP 0-9-1 spec 1.7.2.1 (declare must match an existing queue); RabbitMQ's texts and
    check order (facts §2)."""
    ch.queue_declare("q", arguments={"x-message-ttl": 1000})
    kwargs.setdefault("arguments", {"x-message-ttl": 1000})
    with pytest.raises(PreconditionFailed) as info:
        conn.channel().queue_declare("q", **kwargs)
    assert info.value.reply_text == text
    assert info.value.method == (50, 10)


def test_queue_redeclare_ignores_unchecked_args_and_passive_ignores_everything(
    ch: Channel,
) -> None:
    """Only some x-arguments are compared on redeclare; passive declare ignores flags and
    arguments (facts §2)."""
    ch.queue_declare("q", arguments={"x-message-ttl": 1000, "foo": 1})
    assert ch.queue_declare("q", arguments={"x-message-ttl": 1000, "foo": 2}) == ("q", 0, 0)
    assert ch.queue_declare("q", passive=True, durable=True, arguments={"x-expires": 5}) == (
        "q",
        0,
        0,
    )


def test_exchange_redeclare_mismatch_and_alternate_exchange_arg(
    ch: Channel, conn: Connection
) -> None:
    """Exchange redeclare compares type, durable, auto_delete, internal and alternate-exchange
    (facts §2; AMQP 0-9-1 spec 1.6.2.1)."""
    ch.exchange_declare("x", "direct", arguments={"alternate-exchange": "ae1"})
    ch.exchange_declare("x", "direct", arguments={"alternate-exchange": "ae1", "foo": 1})
    with pytest.raises(PreconditionFailed) as info:
        ch.exchange_declare("x", "fanout")
    assert info.value.reply_text == (
        "PRECONDITION_FAILED - inequivalent arg 'type' for exchange 'x' in vhost '/': "
        "received 'fanout' but current is 'direct'"
    )
    ch2 = conn.channel()
    with pytest.raises(PreconditionFailed) as info:
        ch2.exchange_declare("x", "direct", arguments={"alternate-exchange": "ae2"})
    assert info.value.reply_text == (
        "PRECONDITION_FAILED - inequivalent arg 'alternate-exchange' for exchange 'x' in "
        "vhost '/': received 'ae2' but current is 'ae1'"
    )
    assert info.value.method == (40, 10)
    # Passive declare with a wrong type is fine.
    conn.channel().exchange_declare("x", "topic", passive=True)


@pytest.mark.parametrize(
    ("arguments", "text"),
    [
        (
            {"x-message-ttl": -1},
            "invalid arg 'x-message-ttl' for queue 'q' in vhost '/': {value_negative,-1}",
        ),
        (
            {"x-message-ttl": "abc"},
            "invalid arg 'x-message-ttl' for queue 'q' in vhost '/': "
            '"expected integer, got longstr"',
        ),
        (
            {"x-dead-letter-routing-key": "rk"},
            "invalid arg 'x-dead-letter-routing-key' for queue 'q' in vhost '/': "
            "routing_key_but_no_dlx_defined",
        ),
        (
            {"x-dead-letter-exchange": 5},
            "invalid type 'signedint' for arg 'x-dead-letter-exchange' in queue 'q' in vhost '/'",
        ),
    ],
)
def test_invalid_queue_arguments(ch: Channel, arguments, text) -> None:
    """https://www.rabbitmq.com/queues.html#optional-arguments: invalid x-arguments are 406 at
    declare with RabbitMQ's texts (facts §7)."""
    with pytest.raises(PreconditionFailed) as info:
        ch.queue_declare("q", arguments=arguments)
    assert info.value.reply_text == "PRECONDITION_FAILED - " + text


@pytest.mark.parametrize(
    ("expiration", "reason"),
    [
        ("abc", "no_integer"),
        ("-1", "{value_negative,-1}"),
        ("1.5", '{leftover_string,".5"}'),
        ("99999999999999", "{value_too_large,99999999999999}"),
    ],
)
def test_invalid_per_message_expiration(
    conn: Connection, ch: Channel, expiration: str, reason: str
) -> None:
    """https://www.rabbitmq.com/ttl.html#per-message-ttl-in-publishers: a malformed expiration
    is 406 on basic.publish (60,40), checked even when unroutable (facts §7)."""
    publish(ch, "m", routing_key="nowhere", expiration=expiration)
    [close] = drain(conn)
    assert isinstance(close, ChannelClose)
    assert close.error.reply_text == (
        f"PRECONDITION_FAILED - invalid expiration '{expiration}': {reason}"
    )
    assert close.error.method == (60, 40)


def test_immediate_publish_is_540_connection_error(conn: Connection, ch: Channel) -> None:
    """RabbitMQ does not implement basic.publish immediate (https://www.rabbitmq.com/
    specification.html): 540 `NOT_IMPLEMENTED - immediate=true` closes the connection."""
    ch.basic_publish(b"m", "", "q", immediate=True)
    assert not conn.is_open
    assert isinstance(conn.close_reason, AMQPNotImplemented)
    assert conn.close_reason.reply_text == "NOT_IMPLEMENTED - immediate=true"


def test_internal_exchange_refuses_publish(conn: Connection, ch: Channel) -> None:
    """https://www.rabbitmq.com/exchanges.html: publishing to an internal exchange is 403
    `cannot publish to internal exchange` (60,40) (facts §4)."""
    ch.basic_publish(b"m", "amq.rabbitmq.trace", "k")
    [close] = drain(conn)
    assert isinstance(close, ChannelClose)
    assert isinstance(close.error, AccessRefused)
    assert close.error.reply_text == (
        "ACCESS_REFUSED - cannot publish to internal exchange 'amq.rabbitmq.trace' in vhost '/'"
    )


def test_frames_are_not_delivered_to_a_closed_channel(conn: Connection, ch: Channel) -> None:
    """After channel.close, nothing more is sent on that channel (AMQP 0-9-1 spec 1.5.2.5)."""
    ch.queue_declare("q")
    ch.basic_consume("q", no_ack=True)
    ch.close()
    publish(conn.channel(), "m", routing_key="q")
    assert not any(isinstance(f, BasicDeliver) for f in drain(conn))


@pytest.mark.parametrize("closed", ["channel", "connection"])
def test_asynchronous_methods_on_a_closed_channel_raise_channel_closed(closed: str) -> None:
    """An asynchronous method (publish, ack) on a closed channel, or on a channel of a closed
    connection, is refused before it does anything: nothing is published or settled."""
    broker = Broker(seed=1)
    conn = broker.connect()
    ch = conn.channel()
    ch.queue_declare("q")
    other = broker.connect().channel()
    if closed == "channel":
        ch.close()
    else:
        conn.close()
    with pytest.raises(ChannelClosedError) as exc:
        publish(ch, "m", routing_key="q")
    # Closing a connection closes its channels first: the channel check is the one that fires.
    assert (str(exc.value), exc.value.reason) == ("channel is closed", None)
    with pytest.raises(ChannelClosedError):
        ch.basic_ack(1)
    assert other.queue_declare("q", passive=True)[1] == 0
