"""Stream queues in the engine: the model simamqp chooses where RabbitMQ is timing-dependent
(one chunk per publish, retention when the stream is next read after a segment roll), virtual
time, inspection, restart, faults and determinism. What a client sees is pinned against
RabbitMQ in tests/conformance/test_streams.py."""

from __future__ import annotations

import datetime

import pytest
from _core_helpers import deliveries, drain, publish

from simamqp.core import Broker, Channel, Connection
from simamqp.core.arguments import Long
from simamqp.core.errors import AMQPNotImplemented, InternalError, PreconditionFailed
from simamqp.core.streams import StreamQueue, parse_max_age

STREAM = {"x-queue-type": "stream"}


def declare(ch: Channel, name: str = "s", **arguments: object) -> str:
    ch.queue_declare(name, durable=True, arguments={**STREAM, **arguments})
    return name


def consume(ch: Channel, queue: str, offset: object = None, prefetch: int = 100) -> str:
    ch.basic_qos(0, prefetch, False)
    arguments = {} if offset is None else {"x-stream-offset": offset}
    return ch.basic_consume(queue, arguments=arguments)


def offsets(conn: Connection) -> list[int]:
    return [d.message.headers["x-stream-offset"] for d in deliveries(conn)]


def test_parse_max_age_units_and_refusals() -> None:
    assert parse_max_age("1Y") == 365 * 86_400_000
    assert parse_max_age("2M") == 60 * 86_400_000
    assert parse_max_age("7D") == 7 * 86_400_000
    assert parse_max_age("1h") == 3_600_000
    assert parse_max_age("10m") == 600_000
    assert parse_max_age("30s") == 30_000
    for bad in ("0s", "1", "1H", "1x", "1.5h", "5ms"):
        assert parse_max_age(bad) is None
    for crash in ("h", "-1h", " 1h", ""):
        with pytest.raises(InternalError):
            parse_max_age(crash)


def test_every_publish_is_a_chunk_so_last_is_the_last_message(
    conn: Connection, ch: Channel
) -> None:
    """simamqp's chunk model: one chunk per publish, even in a burst (RabbitMQ batches a burst
    in a timing-dependent way; docs/differences.md)."""
    declare(ch)
    for n in range(5):
        publish(ch, f"m{n}", routing_key="s")
    consume(conn.channel(), "s", "last")
    assert offsets(conn) == [4]


def test_a_consumer_gets_whole_chunks_and_credit_back_per_ack(
    conn: Connection, ch: Channel
) -> None:
    declare(ch)
    for n in range(4):
        publish(ch, f"m{n}", routing_key="s")
    reader = conn.channel()
    consume(reader, "s", "first", prefetch=1)
    got = deliveries(conn)
    assert [d.message.body for d in got] == [b"m0"]
    reader.basic_ack(got[0].delivery_tag)
    assert [d.message.body for d in deliveries(conn)] == [b"m1"]


def test_deliveries_carry_the_offset_header_and_keep_the_message_id(
    broker: Broker, conn: Connection, ch: Channel
) -> None:
    declare(ch)
    publish(ch, "m0", routing_key="s", application_headers={"k": 1})
    consume(conn.channel(), "s", "first")
    (delivery,) = deliveries(conn)
    assert delivery.message.headers == {"k": 1, "x-stream-offset": 0}
    # RabbitMQ sends the offset as a long ('l'); Long is what the wire codecs encode so.
    assert type(delivery.message.headers["x-stream-offset"]) is Long
    assert delivery.redelivered is False
    assert broker.queue("s").bodies == (b"m0",)


def test_inspection_shows_offsets_and_consumer_positions(
    broker: Broker, conn: Connection, ch: Channel
) -> None:
    declare(ch)
    for n in range(3):
        publish(ch, f"m{n}", routing_key="s")
    tag = consume(conn.channel(), "s", 1, prefetch=1)
    drain(conn)
    info = broker.queue("s")
    assert (info.messages_ready, info.consumers) == (0, 0)  # as declare-ok reports a stream
    assert info.bodies == (b"m0", b"m1", b"m2")
    assert info.details == {
        "first_offset": 0,
        "next_offset": 3,
        "chunks": 3,
        "segments": 1,
        "consumer_offsets": {tag: 2},
    }


def test_max_age_retention_follows_the_virtual_clock(
    broker: Broker, conn: Connection, ch: Channel
) -> None:
    declare(ch, **{"x-stream-max-segment-size-bytes": 100, "x-max-age": "10s"})
    publish(ch, b"a" * 200, routing_key="s")
    broker.advance(9)
    publish(ch, b"b" * 200, routing_key="s")
    assert broker.queue("s").details["first_offset"] == 0  # nothing older than 10 s yet
    broker.advance(2)
    publish(ch, b"c" * 200, routing_key="s")
    info = broker.queue("s")
    assert info.bodies == (b"b" * 200, b"c" * 200)
    broker.advance(3600)
    assert broker.queue("s").bodies == (b"b" * 200, b"c" * 200)  # only a roll runs retention


def test_timestamp_and_interval_offsets_use_the_broker_clock(
    broker: Broker, conn: Connection, ch: Channel
) -> None:
    declare(ch)
    publish(ch, "a", routing_key="s")
    broker.advance(100)
    publish(ch, "b", routing_key="s")
    reader = conn.channel()
    consume(reader, "s", datetime.datetime.fromtimestamp(50, datetime.UTC))
    consume(reader, "s", "60s")
    consume(reader, "s", "1h")
    assert [d.message.body for d in deliveries(conn)] == [b"b", b"b", b"a", b"b"]


def test_closing_a_channel_forgets_its_unacked_stream_deliveries(
    broker: Broker, conn: Connection, ch: Channel
) -> None:
    declare(ch)
    publish(ch, "m", routing_key="s")
    reader = conn.channel()
    consume(reader, "s", "first")
    drain(conn)
    assert broker.queue("s").messages_unacknowledged == 1
    reader.close()
    info = broker.queue("s")
    assert (info.messages_unacknowledged, info.bodies) == (0, (b"m",))


def test_a_lost_ack_fault_on_a_stream_returns_no_credit_and_redelivers_nothing(
    broker: Broker, conn: Connection, ch: Channel
) -> None:
    declare(ch)
    publish(ch, "m0", routing_key="s")
    publish(ch, "m1", routing_key="s")
    broker.faults.add(point="ack", action="redeliver", queue="s", max_count=1)
    reader = conn.channel()
    consume(reader, "s", "first", prefetch=1)
    (first,) = deliveries(conn)
    reader.basic_ack(first.delivery_tag)
    assert conn.is_open and reader.is_open
    # The stream keeps the message; the consumer reads on (its credit came back with the
    # forgotten delivery, as when a channel closes).
    assert [d.message.body for d in deliveries(conn)] == [b"m1"]
    assert broker.queue("s").bodies == (b"m0", b"m1")


def test_restart_keeps_every_message_of_a_stream(broker: Broker, ch: Channel) -> None:
    declare(ch)
    publish(ch, "transient", routing_key="s")
    publish(ch, "persistent", routing_key="s", delivery_mode=2)
    broker.restart()
    assert broker.queue("s").bodies == (b"transient", b"persistent")
    conn = broker.connect()
    consume(conn.channel(), "s", "first")
    assert offsets(conn) == [0, 1]


def test_refusals_raise_the_engine_errors(conn: Connection, ch: Channel) -> None:
    declare(ch)
    with pytest.raises(AMQPNotImplemented):
        ch.basic_get("s")
    ch2 = conn.broker.connect().channel()
    with pytest.raises(PreconditionFailed):
        ch2.basic_consume("s")


def test_a_segment_below_its_header_size_still_takes_one_chunk(ch: Channel) -> None:
    """RabbitMQ 3.10.8 never confirms a publish to such a stream (osiris loops opening
    segments); simamqp writes one chunk per segment instead (docs/differences.md)."""
    declare(ch, **{"x-stream-max-segment-size-bytes": 1})
    for n in range(3):
        publish(ch, f"m{n}", routing_key="s")
    queue = ch.broker.vhosts["/"].queues["s"]
    assert isinstance(queue, StreamQueue)
    assert (queue.segment_count, queue.next_offset) == (5, 5)  # m0 | snap | m1 | snap | m2


def test_same_seed_same_stream_trace() -> None:
    def run() -> str:
        broker = Broker(seed=7)
        conn = broker.connect()
        ch = conn.channel()
        declare(ch, **{"x-stream-max-segment-size-bytes": 300, "x-max-length-bytes": 600})
        for n in range(20):
            publish(ch, f"m{n}" * 20, routing_key="s")
            broker.advance(0.5)
        reader = conn.channel()
        consume(reader, "s", "first", prefetch=3)
        while got := deliveries(conn):
            reader.basic_ack(got[-1].delivery_tag, multiple=True)
        return broker.trace.digest()

    assert run() == run()


@pytest.mark.parametrize("how", ["nack", "reject", "recover"])
def test_a_refused_settlement_leaves_no_unacked_count_behind(
    broker: Broker, conn: Connection, ch: Channel, how: str
) -> None:
    """Found by BrokerStateMachine: the refused nack closed the connection but the stream
    still counted the delivery as unacked."""
    declare(ch)
    publish(ch, "m", routing_key="s")
    other = broker.connect()
    reader = other.channel()
    consume(reader, "s", "first")
    (delivery,) = deliveries(other)
    if how == "nack":
        reader.basic_nack(delivery.delivery_tag, requeue=True)
    elif how == "reject":
        reader.basic_reject(delivery.delivery_tag, requeue=False)
    else:
        with pytest.raises(InternalError):
            reader.basic_recover(True)
    assert not other.is_open
    assert broker.queue("s").messages_unacknowledged == 0


@pytest.mark.parametrize("kind", ["stream", "classic"])
def test_a_delayed_delivery_takes_the_consumers_credit_while_held(
    broker: Broker, conn: Connection, ch: Channel, kind: str
) -> None:
    """Found by BrokerStateMachine: deliveries held by a deliver-point ``delay`` did not count
    against the prefetch, so a stream sent every chunk and the consumer held more unacked
    deliveries than its prefetch. Measured on 3.10.8: a stream consumer with prefetch 2 and six
    one-message chunks gets 2, then one more per ack."""
    arguments = STREAM if kind == "stream" else {}
    ch.queue_declare("q", durable=True, arguments=arguments)
    broker.faults.add(point="deliver", action="delay", delay=1.0, queue="q")
    reader = conn.channel()
    reader.basic_qos(0, 2, False)
    reader.basic_consume("q", arguments={"x-stream-offset": "first"} if kind == "stream" else {})
    for n in range(6):
        publish(ch, f"m{n}", routing_key="q")
    assert deliveries(conn) == []
    broker.advance(1.0)
    got = deliveries(conn)
    assert [d.message.body for d in got] == [b"m0", b"m1"]
    reader.basic_ack(got[0].delivery_tag)
    broker.advance(1.0)
    assert [d.message.body for d in deliveries(conn)] == [b"m2"]
    (consumer,) = reader.consumers.values()
    assert consumer.unacked == 2


def test_an_overflow_fault_on_a_stream_appends_the_message(
    broker: Broker, conn: Connection, ch: Channel
) -> None:
    """Found by BrokerStateMachine (the fault read a classic queue's x-overflow). A stream has
    no overflow setting and never refuses a publish for length: the message is appended, the
    publisher's confirm is an ack, nothing is dropped or dead-lettered (docs/faults.md)."""
    declare(ch)
    publish(ch, "m0", routing_key="s")
    broker.faults.add(point="enqueue", action="overflow", queue="s")
    ch.confirm_select()
    publish(ch, "m1", routing_key="s")
    frames = drain(conn)
    assert [type(f).__name__ for f in frames] == ["BasicAck"]
    assert broker.queue("s").bodies == (b"m0", b"m1")
    fault = [e for e in broker.trace if e.kind == "fault"][-1]
    assert (fault.attrs["action"], fault.attrs["overflow"]) == ("overflow", None)
