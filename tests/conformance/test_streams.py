"""Stream queues (``x-queue-type: stream``): declare rules, refusals, offsets, credit, retention.

Every fact here was measured on RabbitMQ 3.10.8 (docs/rabbitmq-facts.md, "Streams") and is read
from ``deps/rabbit/src/rabbit_stream_queue.erl`` and osiris 1.3.1's ``osiris_log.erl``.

What makes a stream test predictable on RabbitMQ: its writer batches the messages that reach it
while it is busy into one chunk, so a burst of publishes shares chunks in a timing-dependent way.
A publisher that waits for each publisher confirm makes every message a chunk of its own, which
is what these tests do unless they say otherwise.
"""

from __future__ import annotations

import datetime
import time
from typing import Any

import amqp
import pytest
from amqp.exceptions import (
    AMQPNotImplementedError,
    ConnectionError,
    InternalError,
    PreconditionFailed,
)

STREAM = {"x-queue-type": "stream"}


# -- helpers ----------------------------------------------------------------------------------


def declare_stream(env: Any, ch: amqp.Channel, **arguments: Any) -> str:
    name = env.name("stream")
    ch.queue_declare(name, durable=True, auto_delete=False, arguments={**STREAM, **arguments})
    return name


def publish_each_confirmed(env: Any, q: str, bodies: list[bytes]) -> None:
    """Publish on a confirm channel, waiting for each confirm: one chunk per message."""
    ch = env.channel()
    confirms = env.confirms(ch)
    for n, body in enumerate(bodies, start=1):
        env.publish(ch, body, "", q)
        assert env.drain(until=confirms.settled(n)), f"publish {n} was never confirmed"
    assert confirms.results(len(bodies)) == ["ack"] * len(bodies)


def stream_consumer(
    env: Any, q: str, offset: Any = None, prefetch: int = 100, ch: amqp.Channel | None = None
) -> tuple[amqp.Channel, str, list[amqp.Message]]:
    ch = ch or env.channel()
    ch.basic_qos(0, prefetch, False)
    arguments = {} if offset is None else {"x-stream-offset": offset}
    tag, got = env.consume(ch, q, arguments=arguments)
    return ch, tag, got


def read(env: Any, q: str, offset: Any, expect: int, prefetch: int = 100) -> list[tuple[Any, ...]]:
    """Attach a consumer at ``offset``; what it receives as (body, x-stream-offset, redelivered).

    Waits until ``expect`` deliveries arrived (and briefly for any extra ones)."""
    ch, tag, got = stream_consumer(env, q, offset, prefetch)
    if expect:
        env.drain(until=lambda: len(got) >= expect)
    env.drain(timeout=0.3)
    ch.basic_cancel(tag)
    return [
        (m.body, (m.headers or {}).get("x-stream-offset"), m.delivery_info["redelivered"])
        for m in got
    ]


def bodies_and_offsets(rows: list[tuple[Any, ...]]) -> list[tuple[bytes, int]]:
    return [(row[0] if isinstance(row[0], bytes) else row[0].encode(), row[1]) for row in rows]


def broker_now(env: Any) -> float:
    """The broker's clock: the virtual clock on simamqp, wall time on RabbitMQ."""
    broker = getattr(env, "broker", None)
    return broker.clock.now() if broker is not None else time.time()


# -- declare rules ------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("flags", "refused"),
    [
        ({"durable": False}, "non-durable"),
        ({"exclusive": True}, "exclusive-owner"),
        ({"auto_delete": True}, "auto-delete"),
        ({"durable": False, "exclusive": True, "auto_delete": True}, "auto-delete"),
        ({"durable": False, "exclusive": True}, "exclusive-owner"),
    ],
)
def test_stream_must_be_durable_not_exclusive_not_auto_delete(env, flags, refused):
    """rabbit_stream_queue:is_compatible(true, false, false); the checks run auto-delete,
    exclusive, non-durable (rabbit_queue_type_util)."""
    ch = env.channel()
    q = env.name("stream")
    kwargs = {"durable": True, "exclusive": False, "auto_delete": False, **flags}
    with pytest.raises(PreconditionFailed) as exc:
        ch.queue_declare(q, arguments=STREAM, **kwargs)
    assert (exc.value.reply_text, exc.value.method_sig) == (
        f"PRECONDITION_FAILED - invalid property '{refused}' for queue '{q}' in vhost '/'",
        (50, 10),
    )


def test_stream_cannot_be_server_named(env):
    ch = env.channel()
    with pytest.raises(PreconditionFailed) as exc:
        ch.queue_declare("", durable=True, auto_delete=False, arguments=STREAM)
    assert exc.value.reply_text == (
        "PRECONDITION_FAILED - Cannot declare a server-named queue for type rabbit_stream_queue"
    )


def test_stream_declare_ok_reports_no_messages_and_no_consumers(env):
    """A stream's queue.declare-ok counts are 0 whatever it holds and whoever reads it."""
    ch = env.channel()
    q = declare_stream(env, ch)
    publish_each_confirmed(env, q, [b"a", b"b"])
    reader, tag, got = stream_consumer(env, q, "first")
    assert env.drain(until=lambda: len(got) == 2)
    ok = ch.queue_declare(q, passive=True)
    assert (ok.message_count, ok.consumer_count) == (0, 0)
    again = ch.queue_declare(q, durable=True, auto_delete=False, arguments=STREAM)
    assert (again.message_count, again.consumer_count) == (0, 0)
    reader.basic_cancel(tag)
    assert ch.queue_delete(q, if_unused=True, if_empty=True) == 0


@pytest.mark.parametrize("age", ["1Y", "7D", "1M", "1h", "10m", "30s", "100000Y"])
def test_stream_max_age_accepts_positive_integer_and_unit(env, age):
    ch = env.channel()
    q = declare_stream(env, ch, **{"x-max-age": age})
    assert ch.queue_declare(q, passive=True).queue == q


@pytest.mark.parametrize("age", ["0s", "1", "1x", "1H", "1.5h"])
def test_stream_max_age_refuses_bad_unit_or_zero(env, age):
    """rabbit_amqqueue:check_max_age: digits, then one of Y M D h m s, and more than 0."""
    ch = env.channel()
    q = env.name("stream")
    with pytest.raises(PreconditionFailed) as exc:
        ch.queue_declare(q, durable=True, auto_delete=False, arguments={**STREAM, "x-max-age": age})
    assert exc.value.reply_text == (
        f"PRECONDITION_FAILED - invalid arg 'x-max-age' for queue '{q}' in vhost '/': "
        "invalid_max_age"
    )


def test_stream_max_age_must_be_a_string(env):
    ch = env.channel()
    q = env.name("stream")
    with pytest.raises(PreconditionFailed) as exc:
        ch.queue_declare(q, durable=True, auto_delete=False, arguments={**STREAM, "x-max-age": 1})
    assert exc.value.reply_text == (
        f"PRECONDITION_FAILED - invalid arg 'x-max-age' for queue '{q}' in vhost '/': "
        "{unacceptable_type,signedint}"
    )


@pytest.mark.parametrize("age", ["h", "-1h", " 1h"])
def test_stream_max_age_without_leading_digits_crashes_the_connection(env, age):
    """check_max_age calls list_to_integer on an empty digit run: the channel process
    crashes and the connection closes with a bare 541 INTERNAL_ERROR."""
    conn = env.connection()
    ch = env.channel(conn)
    with pytest.raises(InternalError) as exc:
        ch.queue_declare(
            env.name("stream"),
            durable=True,
            auto_delete=False,
            arguments={**STREAM, "x-max-age": age},
        )
    assert (exc.value.reply_code, exc.value.reply_text) == (541, "INTERNAL_ERROR")
    assert not conn.connected


@pytest.mark.parametrize(
    ("key", "value", "reason"),
    [
        ("x-max-length-bytes", "1000", '"expected integer, got longstr"'),
        ("x-max-length-bytes", -1, "{value_negative,-1}"),
        ("x-stream-max-segment-size-bytes", "100", '"expected integer, got longstr"'),
        ("x-stream-max-segment-size-bytes", -1, "{value_negative,-1}"),
    ],
)
def test_stream_retention_arguments_are_non_negative_integers(env, key, value, reason):
    ch = env.channel()
    q = env.name("stream")
    with pytest.raises(PreconditionFailed) as exc:
        ch.queue_declare(q, durable=True, auto_delete=False, arguments={**STREAM, key: value})
    assert exc.value.reply_text == (
        f"PRECONDITION_FAILED - invalid arg '{key}' for queue '{q}' in vhost '/': {reason}"
    )


def test_stream_segment_size_has_a_maximum(env):
    ch = env.channel()
    ok = declare_stream(env, ch, **{"x-stream-max-segment-size-bytes": 3_000_000_000})
    assert ch.queue_declare(ok, passive=True).queue == ok
    with pytest.raises(PreconditionFailed) as exc:
        declare_stream(env, ch, **{"x-stream-max-segment-size-bytes": 3_000_000_001})
    assert exc.value.reply_text == (
        "PRECONDITION_FAILED - Exceeded max value for x-stream-max-segment-size-bytes"
    )


@pytest.mark.parametrize(
    ("key", "value"),
    [
        ("x-max-length", 10),
        ("x-message-ttl", 1000),
        ("x-expires", 1000),
        ("x-overflow", "drop-head"),
        ("x-dead-letter-exchange", "dlx"),
        ("x-max-priority", 5),
        ("x-single-active-consumer", True),
        ("x-queue-mode", "lazy"),
        ("x-delivery-limit", 3),
    ],
)
def test_stream_refuses_other_types_arguments(env, key, value):
    """capabilities() queue_arguments: what a stream accepts; another type's argument is
    refused naming the stream's module."""
    ch = env.channel()
    q = env.name("stream")
    with pytest.raises(PreconditionFailed) as exc:
        ch.queue_declare(q, durable=True, auto_delete=False, arguments={**STREAM, key: value})
    assert exc.value.reply_text == (
        f"PRECONDITION_FAILED - invalid arg '{key}' for queue '{q}' in vhost '/' "
        "of queue type rabbit_stream_queue"
    )


def test_stream_accepts_its_own_and_unknown_arguments(env):
    ch = env.channel()
    q = declare_stream(
        env,
        ch,
        **{
            "x-max-length-bytes": 0,
            "x-stream-max-segment-size-bytes": 0,
            "x-initial-cluster-size": 1,
            "x-queue-leader-locator": "client-local",
            "x-foo": 1,
        },
    )
    assert ch.queue_declare(q, passive=True).queue == q


def test_stream_argument_errors_come_before_lifecycle_errors(env):
    ch = env.channel()
    q = env.name("stream")
    with pytest.raises(PreconditionFailed) as exc:
        ch.queue_declare(
            q, durable=False, auto_delete=False, arguments={**STREAM, "x-max-length": 1}
        )
    assert "invalid arg 'x-max-length'" in exc.value.reply_text


def test_stream_redeclared_as_classic_is_inequivalent(env):
    ch = env.channel()
    q = declare_stream(env, ch)
    with pytest.raises(PreconditionFailed) as exc:
        ch.queue_declare(q, durable=True, auto_delete=False)
    assert exc.value.reply_text == (
        f"PRECONDITION_FAILED - inequivalent arg 'x-queue-type' for queue '{q}' in vhost '/': "
        "received none but current is the value 'stream' of type 'longstr'"
    )


def test_stream_redeclared_with_another_max_age_is_inequivalent(env):
    ch = env.channel()
    q = declare_stream(env, ch)
    with pytest.raises(PreconditionFailed) as exc:
        ch.queue_declare(
            q, durable=True, auto_delete=False, arguments={**STREAM, "x-max-age": "1h"}
        )
    assert exc.value.reply_text == (
        f"PRECONDITION_FAILED - inequivalent arg 'x-max-age' for queue '{q}' in vhost '/': "
        "received the value '1h' of type 'longstr' but current is none"
    )


# -- refusals -----------------------------------------------------------------------------------


@pytest.mark.parametrize("no_ack", [False, True])
def test_stream_refuses_basic_get_with_540(env, no_ack):
    conn = env.connection()
    ch = env.channel(conn)
    q = declare_stream(env, ch)
    with pytest.raises(AMQPNotImplementedError) as exc:
        ch.basic_get(q, no_ack=no_ack)
    assert (exc.value.reply_text, exc.value.method_sig) == (
        f"NOT_IMPLEMENTED - basic.get not supported by stream queues queue '{q}' in vhost '/'",
        (60, 70),
    )
    assert not conn.connected


def test_stream_refuses_no_ack_consumers_with_540(env):
    conn = env.connection()
    ch = env.channel(conn)
    q = declare_stream(env, ch)
    ch.basic_qos(0, 10, False)
    with pytest.raises(AMQPNotImplementedError) as exc:
        ch.basic_consume(q, no_ack=True, callback=lambda m: None)
    assert (exc.value.reply_text, exc.value.method_sig) == (
        "NOT_IMPLEMENTED - automatic acknowledgement not supported by stream queues "
        f"queue '{q}' in vhost '/'",
        (60, 20),
    )
    assert not conn.connected


@pytest.mark.parametrize(
    ("qos", "no_ack"),
    [(None, False), ((0, 0, False), False), ((0, 10, True), False), (None, True)],
    ids=["no-qos", "prefetch-0", "global-only", "no-ack-without-prefetch"],
)
def test_stream_consumer_needs_a_consumer_prefetch(env, qos, no_ack):
    """Checked before no_ack; a global prefetch does not count."""
    conn = env.connection()
    ch = env.channel(conn)
    q = declare_stream(env, ch)
    if qos is not None:
        ch.basic_qos(*qos)
    with pytest.raises(PreconditionFailed) as exc:
        ch.basic_consume(q, no_ack=no_ack, callback=lambda m: None)
    assert (exc.value.reply_text, exc.value.method_sig) == (
        f"PRECONDITION_FAILED - consumer prefetch count is not set for 'queue '{q}' in vhost '/''",
        (60, 20),
    )
    assert conn.connected


def test_stream_consumer_may_have_a_global_prefetch_too(env):
    ch = env.channel()
    q = declare_stream(env, ch)
    publish_each_confirmed(env, q, [b"m"])
    ch.basic_qos(0, 5, True)
    ch.basic_qos(0, 5, False)
    _, got = env.consume(ch, q, arguments={"x-stream-offset": "first"})
    assert env.drain(until=lambda: len(got) == 1)


def test_stream_refuses_purge_with_540(env):
    conn = env.connection()
    ch = env.channel(conn)
    q = declare_stream(env, ch)
    with pytest.raises(AMQPNotImplementedError) as exc:
        ch.queue_purge(q)
    assert (exc.value.reply_text, exc.value.method_sig) == (
        f"NOT_IMPLEMENTED - queue.purge not supported by stream queues queue '{q}' in vhost '/'",
        (50, 30),
    )
    assert not conn.connected


@pytest.mark.parametrize(
    ("how", "method"),
    [
        ("reject-requeue", (60, 90)),
        ("reject", (60, 90)),
        ("nack-requeue", (60, 120)),
        ("nack", (60, 120)),
    ],
)
def test_stream_refuses_nack_and_reject_with_540(env, how, method):
    """settle(requeue | discard) is not supported: there is nothing to put back."""
    conn = env.connection()
    ch = env.channel(conn)
    q = declare_stream(env, ch)
    publish_each_confirmed(env, q, [b"m"])
    _, _, got = stream_consumer(env, q, "first", ch=ch)
    assert env.drain(conn, until=lambda: len(got) == 1)
    tag = got[0].delivery_tag
    requeue = how.endswith("requeue")
    with pytest.raises(AMQPNotImplementedError) as exc:
        if how.startswith("reject"):
            ch.basic_reject(tag, requeue)
        else:
            env.nack(ch, tag, False, requeue)
        env.fence(ch)
    assert (exc.value.reply_text, exc.value.method_sig) == (
        "NOT_IMPLEMENTED - basic.nack and basic.reject not supported by stream queues "
        f"queue '{q}' in vhost '/'",
        method,
    )
    assert not conn.connected


def test_stream_ack_of_an_unknown_tag_is_the_usual_406(env):
    ch = env.channel()
    q = declare_stream(env, ch)
    publish_each_confirmed(env, q, [b"m"])
    _, _, got = stream_consumer(env, q, "first", ch=ch)
    assert env.drain(until=lambda: len(got) == 1)
    ch.basic_ack(got[0].delivery_tag)
    ch.basic_ack(got[0].delivery_tag)
    with pytest.raises(PreconditionFailed) as exc:
        env.fence(ch)
    assert exc.value.reply_text == "PRECONDITION_FAILED - unknown delivery tag 1"


# -- offsets ------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("offset", "expected"),
    [
        ("first", [0, 1, 2]),
        (0, [0, 1, 2]),
        (1, [1, 2]),
        (2, [2]),
        (-1, [0, 1, 2]),
        ("next", []),
        (None, []),
        (3, []),
        (100, []),
    ],
)
def test_stream_offset_picks_where_a_consumer_starts(env, offset, expected):
    ch = env.channel()
    q = declare_stream(env, ch)
    publish_each_confirmed(env, q, [b"m0", b"m1", b"m2"])
    rows = read(env, q, offset, len(expected))
    assert rows == [(f"m{n}".encode(), n, False) for n in expected]


def test_stream_offset_header_is_a_long_and_redelivered_is_false(env):
    ch = env.channel()
    q = declare_stream(env, ch)
    publish_each_confirmed(env, q, [b"m0"])
    _, _, got = stream_consumer(env, q, "first")
    assert env.drain(until=lambda: len(got) == 1)
    msg = got[0]
    assert msg.headers == {"x-stream-offset": 0}
    assert type(msg.headers["x-stream-offset"]) is int
    assert msg.delivery_info["redelivered"] is False


def test_stream_offset_header_joins_the_publishers_headers(env):
    ch = env.channel()
    q = declare_stream(env, ch)
    pub = env.channel()
    confirms = env.confirms(pub)
    env.publish(pub, b"m0", "", q, application_headers={"k": "v"}, content_type="text/plain")
    assert env.drain(until=confirms.settled(1))
    _, _, got = stream_consumer(env, q, "first")
    assert env.drain(until=lambda: len(got) == 1)
    assert got[0].headers == {"k": "v", "x-stream-offset": 0}
    assert got[0].properties["content_type"] == "text/plain"
    assert got[0].delivery_info["routing_key"] == q


def test_stream_next_and_integer_offsets_wait_for_new_messages(env):
    """A consumer past the end waits: it gets every later message at or after its offset; an
    offset far past the end filters out every message before it."""
    ch = env.channel()
    q = declare_stream(env, ch)
    publish_each_confirmed(env, q, [b"f0", b"f1"])
    _, _, at_next = stream_consumer(env, q, "next")
    _, _, at_3 = stream_consumer(env, q, 3)
    _, _, at_100 = stream_consumer(env, q, 100)
    _, _, at_last = stream_consumer(env, q, "last")
    publish_each_confirmed(env, q, [b"f2", b"f3", b"f4"])
    env.drain(until=lambda: len(at_next) == 3 and len(at_3) == 2 and len(at_last) == 4)
    env.drain(timeout=0.3)

    def offsets(got: list[amqp.Message]) -> list[int]:
        return [m.headers["x-stream-offset"] for m in got]

    assert offsets(at_next) == [2, 3, 4]
    assert offsets(at_3) == [3, 4]
    assert offsets(at_100) == []
    assert offsets(at_last) == [1, 2, 3, 4]


def test_stream_last_after_confirmed_publishes_is_the_last_message(env):
    """'last' is the start of the last chunk; a publisher that waits for each confirm writes
    one chunk per message."""
    ch = env.channel()
    q = declare_stream(env, ch)
    publish_each_confirmed(env, q, [f"a{n}".encode() for n in range(5)])
    assert read(env, q, "last", 1) == [(b"a4", 4, False)]


def test_stream_last_after_a_burst_is_a_suffix_ending_with_the_last_message(env):
    """A burst without waiting may share chunks (RabbitMQ: timing-dependent): 'last' yields
    the last message, and possibly the ones before it in the same chunk."""
    ch = env.channel()
    q = declare_stream(env, ch)
    pub = env.channel()
    confirms = env.confirms(pub)
    for n in range(5):
        env.publish(pub, f"b{n}".encode(), "", q)
    assert env.drain(until=confirms.settled(5))
    rows = read(env, q, "last", 1)
    offsets = [row[1] for row in rows]
    assert offsets and offsets[-1] == 4
    assert offsets == list(range(offsets[0], 5))


def test_stream_reads_are_not_destructive(env):
    ch = env.channel()
    q = declare_stream(env, ch)
    publish_each_confirmed(env, q, [b"m0", b"m1"])
    one_ch, one_tag, one = stream_consumer(env, q, "first")
    _, _, two = stream_consumer(env, q, "first")
    assert env.drain(until=lambda: len(one) == 2 and len(two) == 2)
    for msg in one:
        one_ch.basic_ack(msg.delivery_tag)
    one_ch.basic_cancel(one_tag)
    assert [m.body for m in two] == [b"m0", b"m1"]
    # acked, cancelled: the messages are still there for the next reader
    assert read(env, q, "first", 2) == [(b"m0", 0, False), (b"m1", 1, False)]


def test_stream_closing_a_channel_with_unacked_deliveries_loses_nothing(env):
    ch = env.channel()
    q = declare_stream(env, ch)
    publish_each_confirmed(env, q, [b"m0", b"m1"])
    reader = env.channel()
    _, _, got = stream_consumer(env, q, "first", ch=reader)
    assert env.drain(until=lambda: len(got) == 2)
    reader.close()
    assert read(env, q, "first", 2) == [(b"m0", 0, False), (b"m1", 1, False)]


def test_stream_prefetch_is_credit_that_acks_give_back(env):
    ch = env.channel()
    q = declare_stream(env, ch)
    publish_each_confirmed(env, q, [f"e{n}".encode() for n in range(5)])
    reader, _, got = stream_consumer(env, q, "first", prefetch=2)
    env.drain(until=lambda: len(got) >= 2)
    env.drain(timeout=0.3)
    assert [m.body for m in got] == [b"e0", b"e1"]
    reader.basic_ack(got[0].delivery_tag)
    env.drain(until=lambda: len(got) >= 3)
    env.drain(timeout=0.3)
    assert [m.body for m in got] == [b"e0", b"e1", b"e2"]
    reader.basic_ack(got[-1].delivery_tag, multiple=True)
    env.drain(until=lambda: len(got) >= 5)
    assert [m.body for m in got] == [b"e0", b"e1", b"e2", b"e3", b"e4"]
    assert [m.delivery_tag for m in got] == [1, 2, 3, 4, 5]


# -- timestamps and intervals -------------------------------------------------------------------


def test_stream_timestamp_offset_starts_at_the_first_chunk_not_older_than_it(env):
    """{timestamp, Seconds}: the first chunk whose timestamp (ms) is >= Seconds * 1000."""
    ch = env.channel()
    q = declare_stream(env, ch)
    publish_each_confirmed(env, q, [b"A0", b"A1"])
    after_a = broker_now(env)
    env.wait(2)
    boundary = int(after_a) + 1  # a whole second after A's chunks, before B's
    publish_each_confirmed(env, q, [b"B0", b"B1"])

    def at(seconds: int) -> datetime.datetime:
        return datetime.datetime.fromtimestamp(seconds, datetime.UTC)

    assert bodies_and_offsets(read(env, q, at(boundary), 2)) == [(b"B0", 2), (b"B1", 3)]
    before_a = max(boundary - 2, 0)  # (simamqp's virtual clock starts at the epoch)
    assert [row[0] for row in read(env, q, at(before_a), 4)] == [b"A0", b"A1", b"B0", b"B1"]
    assert read(env, q, at(boundary + 3600), 0) == []


def test_stream_interval_offset_reads_back_that_far(env):
    ch = env.channel()
    q = declare_stream(env, ch)
    publish_each_confirmed(env, q, [b"A0"])
    env.wait(2)
    publish_each_confirmed(env, q, [b"B0"])
    assert [row[0] for row in read(env, q, "1s", 1)] == [b"B0"]
    assert [row[0] for row in read(env, q, "1h", 2)] == [b"A0", b"B0"]


@pytest.mark.parametrize("offset", ["0s", "1x", "1H"])
def test_stream_offset_string_must_be_first_last_next_or_an_interval(env, offset):
    ch = env.channel()
    q = declare_stream(env, ch)
    ch.basic_qos(0, 10, False)
    with pytest.raises(PreconditionFailed) as exc:
        ch.basic_consume(q, callback=lambda m: None, arguments={"x-stream-offset": offset})
    assert (exc.value.reply_text, exc.value.method_sig) == (
        f"PRECONDITION_FAILED - invalid arg 'x-stream-offset' for queue '{q}' in vhost '/': "
        f'{{invalid_stream_offset_arg,{{longstr,<<"{offset}">>}}}}',
        (60, 20),
    )


@pytest.mark.parametrize("offset", ["foo", "", True, 1.5])
def test_stream_offset_of_another_shape_crashes_the_connection(env, offset):
    """check_max_age on a string without leading digits, or osiris on a bool/float: the
    channel crashes, 541 INTERNAL_ERROR."""
    conn = env.connection()
    ch = env.channel(conn)
    q = declare_stream(env, ch)
    ch.basic_qos(0, 10, False)
    with pytest.raises(ConnectionError) as exc:
        ch.basic_consume(q, callback=lambda m: None, arguments={"x-stream-offset": offset})
        env.fence(ch)
    assert (exc.value.reply_code, exc.value.reply_text) == (541, "INTERNAL_ERROR")
    assert not conn.connected


# -- segments and retention ---------------------------------------------------------------------


def test_stream_a_new_segment_starts_with_a_tracking_chunk_that_takes_an_offset(env):
    """osiris writes a tracking snapshot at the start of every segment after the first (the
    channel's writer id is tracked): consumers never see it, but it uses an offset."""
    ch = env.channel()
    q = declare_stream(env, ch, **{"x-stream-max-segment-size-bytes": 100})
    publish_each_confirmed(env, q, [b"s" * 200 for _ in range(4)])
    assert [row[1] for row in read(env, q, "first", 4)] == [0, 2, 4, 6]
    assert [row[1] for row in read(env, q, "last", 1)] == [6]


def test_stream_segments_roll_when_full(env):
    """A segment takes chunks until its size reaches the maximum (a chunk may overshoot)."""
    ch = env.channel()
    q = declare_stream(env, ch, **{"x-stream-max-segment-size-bytes": 3000})
    publish_each_confirmed(env, q, [b"r" * 1000 for _ in range(6)])
    assert [row[1] for row in read(env, q, "first", 6)] == [0, 1, 2, 4, 5, 6]


@pytest.mark.parametrize(("max_bytes", "first"), [(5000, 8), (9000, 4)])
def test_stream_retention_by_bytes_drops_whole_old_segments(env, max_bytes, first):
    """Retention runs when a segment rolls: it keeps the newest segment and older ones while
    they fit in x-max-length-bytes. Segments of 3000 bytes hold three 1 kB messages (offsets
    0-2, then a tracking chunk and 4-6, then 8-10); 5000 bytes keep the newest segment only,
    9000 the newest two."""
    ch = env.channel()
    q = declare_stream(
        env, ch, **{"x-stream-max-segment-size-bytes": 3000, "x-max-length-bytes": max_bytes}
    )
    publish_each_confirmed(env, q, [f"{n}".encode() + b"r" * 1000 for n in range(9)])

    def first_offset() -> int | None:
        rows = read(env, q, "first", 1)
        return rows[0][1] if rows else None

    assert env.eventually(first_offset, first) == first
    expected = [8, 9, 10] if first == 8 else [4, 5, 6, 8, 9, 10]
    assert [row[1] for row in read(env, q, "first", len(expected))] == expected


def test_stream_without_a_segment_roll_keeps_everything(env):
    ch = env.channel()
    q = declare_stream(env, ch, **{"x-max-length-bytes": 0, "x-max-age": "1s"})
    publish_each_confirmed(env, q, [b"r" * 1000 for _ in range(3)])
    env.wait(1.5)
    assert [row[1] for row in read(env, q, "first", 3)] == [0, 1, 2]


def test_stream_retention_by_age_drops_segments_older_than_max_age(env):
    ch = env.channel()
    q = declare_stream(env, ch, **{"x-stream-max-segment-size-bytes": 100, "x-max-age": "1s"})
    publish_each_confirmed(env, q, [b"A" * 200, b"B" * 200])
    env.wait(2)
    publish_each_confirmed(env, q, [b"C" * 200])
    first = env.eventually(lambda: read(env, q, "first", 1)[0][0][:1], b"C")
    assert first == b"C"


# -- what other types see -----------------------------------------------------------------------


@pytest.mark.parametrize(
    ("key", "value"), [("x-max-age", "1h"), ("x-stream-max-segment-size-bytes", 100)]
)
def test_classic_queue_refuses_stream_arguments(env, key, value):
    ch = env.channel()
    q = env.name("classic")
    with pytest.raises(PreconditionFailed) as exc:
        ch.queue_declare(q, durable=True, auto_delete=False, arguments={key: value})
    assert exc.value.reply_text == (
        f"PRECONDITION_FAILED - invalid arg '{key}' for queue '{q}' in vhost '/' "
        "of queue type rabbit_classic_queue"
    )


@pytest.mark.parametrize("offset", ["first", "0s"])
def test_classic_queue_refuses_the_stream_offset_consumer_argument(env, offset):
    """The argument is checked against the type before its value is parsed."""
    ch = env.channel()
    q = env.queue(ch)
    with pytest.raises(PreconditionFailed) as exc:
        ch.basic_consume(q, callback=lambda m: None, arguments={"x-stream-offset": offset})
    assert (exc.value.reply_text, exc.value.method_sig) == (
        f"PRECONDITION_FAILED - invalid arg 'x-stream-offset' for queue '{q}' in vhost '/' "
        "of queue type rabbit_classic_queue",
        (60, 20),
    )


def test_stream_refuses_the_priority_consumer_argument_but_takes_credit(env):
    ch = env.channel()
    q = declare_stream(env, ch)
    ch.basic_qos(0, 1, False)
    ch.basic_consume(
        q, callback=lambda m: None, arguments={"x-credit": {"credit": 1, "drain": False}}
    )
    with pytest.raises(PreconditionFailed) as exc:
        ch.basic_consume(q, callback=lambda m: None, arguments={"x-priority": 1})
    assert exc.value.reply_text == (
        f"PRECONDITION_FAILED - invalid arg 'x-priority' for queue '{q}' in vhost '/' "
        "of queue type rabbit_stream_queue"
    )


def test_stream_does_not_enforce_exclusive_consumers(env):
    ch = env.channel()
    q = declare_stream(env, ch)
    publish_each_confirmed(env, q, [b"m"])
    ch.basic_qos(0, 10, False)
    _, first = env.consume(ch, q, exclusive=True, arguments={"x-stream-offset": "first"})
    _, second = env.consume(ch, q, arguments={"x-stream-offset": "first"})
    _, third = env.consume(ch, q, exclusive=True, arguments={"x-stream-offset": "first"})
    assert env.drain(until=lambda: len(first) == len(second) == len(third) == 1)


def test_stream_redeclared_as_quorum_names_both_types(env):
    ch = env.channel()
    q = declare_stream(env, ch)
    with pytest.raises(PreconditionFailed) as exc:
        ch.queue_declare(q, durable=True, auto_delete=False, arguments={"x-queue-type": "quorum"})
    assert exc.value.reply_text == (
        f"PRECONDITION_FAILED - inequivalent arg 'x-queue-type' for queue '{q}' in vhost '/': "
        "received 'quorum' but current is 'stream'"
    )


def test_stream_recover_with_unacked_deliveries_crashes_the_channel(env):
    conn = env.connection()
    ch = env.channel(conn)
    q = declare_stream(env, ch)
    publish_each_confirmed(env, q, [b"m"])
    _, _, got = stream_consumer(env, q, "first", ch=ch)
    assert env.drain(conn, until=lambda: len(got) == 1)
    with pytest.raises(ConnectionError) as exc:
        ch.basic_recover(True)
        env.fence(ch)
    assert (exc.value.reply_code, exc.value.reply_text) == (541, "INTERNAL_ERROR")
    assert not conn.connected
