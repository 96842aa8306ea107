"""Rows 2, 4, 5, 6: the sans-IO engine alone (no kombu, no threads, no lock), and memory over
many brokers and messages (rows 5 and 6 also through kombu).

These rows are single-threaded and CPU-bound, so they are timed with ``time.process_time()``
(CPU time of this process): other load on a shared machine does not count against them.
"""

from __future__ import annotations

import gc
import time
import tracemalloc
from collections.abc import Callable

import amqp
import kombu

import simamqp
from simamqp.core import Broker
from simamqp.core.trace import DEFAULT_WINDOW, Shape, Trace, TraceMode

from ._util import Row, best_of, fmt_rate, fmt_us

_clock = time.process_time


def _consumer_setup(
    trace: bool | TraceMode, queue_type: str = "classic"
) -> tuple[Broker, object, object]:
    broker = Broker(seed=1, trace=trace)
    conn = broker.connect()
    ch = conn.channel()
    if queue_type == "classic":
        ch.queue_declare("bench")
    else:
        ch.queue_declare("bench", durable=True, arguments={"x-queue-type": queue_type})
    ch.basic_consume("bench")
    return broker, conn, ch


def core_round_trips(n: int, trace: bool | TraceMode, queue_type: str = "classic") -> float:
    """Seconds for ``n`` x (publish → deliver into the outbox → pop the frame → ack)."""
    broker, conn, ch = _consumer_setup(trace, queue_type)
    outbox = conn.outbox  # type: ignore[attr-defined]
    publish = ch.basic_publish  # type: ignore[attr-defined]
    ack = ch.basic_ack  # type: ignore[attr-defined]
    popleft = outbox.popleft
    body = b"x" * 64
    props = {"content_type": "application/json", "delivery_mode": 2}
    gc.collect()
    start = _clock()
    for _ in range(n):
        publish(body, "", "bench", False, False, props)
        ack(popleft().delivery_tag)
    elapsed = _clock() - start
    assert not outbox and broker.queue("bench").messages == 0
    return elapsed


def row_core(quick: bool) -> list[Row]:
    n = 20_000 if quick else 100_000
    repeat = 2 if quick else 3
    off = best_of(lambda: core_round_trips(n, trace=False), repeat)
    window = best_of(lambda: core_round_trips(n, trace="window"), repeat)
    on = best_of(lambda: core_round_trips(n, trace="full"), repeat)
    quorum = best_of(lambda: core_round_trips(n, trace="window", queue_type="quorum"), repeat)
    rate_off, rate_window, rate_on = n / off, n / window, n / on
    rate_quorum = n / quorum
    return [
        Row(
            2,
            "core publish+deliver+ack, default trace",
            fmt_rate(rate_window),
            "≥ 250k/s",
            rate_window >= 250_000,
            f"{fmt_us(window / n)} per message; window of {DEFAULT_WINDOW} events + running "
            f"digest; costs {window / off:.2f}x trace off",
            extra={"rate": rate_window},
        ),
        Row(
            2,
            "core publish+deliver+ack, trace off",
            fmt_rate(rate_off),
            "≥ 300k/s",
            rate_off >= 300_000,
            f"{fmt_us(off / n)} per message",
            extra={"rate": rate_off},
        ),
        Row(
            2,
            "core publish+deliver+ack, trace='full'",
            fmt_rate(rate_on),
            "(reported)",
            None,
            f"{fmt_us(on / n)} per message; every event kept, {on / off:.2f}x trace off",
            extra={"rate": rate_on},
        ),
        Row(
            2,
            "core publish+deliver+ack, quorum queue",
            fmt_rate(rate_quorum),
            "(reported)",
            None,
            f"{fmt_us(quorum / n)} per message, default trace; {quorum / window:.2f}x a classic "
            "queue's",
            extra={"rate": rate_quorum},
        ),
    ]


# -- 2, the trace alone: digest v2 (running) vs v1 (on request) -----------------------------

#: The five events a message causes, declared as the engine declares them (call-site order).
_SHAPES = (
    Shape(
        "publish",
        connection=1,
        channel=1,
        exchange="",
        routing_key="",
        msg=1,
        body=b"",
        mandatory=False,
    ),
    Shape("route", msg=1, queues=("",)),
    Shape("enqueue", queue="", vhost="", msg=1),
    Shape(
        "deliver",
        connection=1,
        channel=1,
        queue="",
        consumer_tag="",
        delivery_tag=1,
        msg=1,
        redelivered=False,
    ),
    Shape("ack", connection=1, channel=1, queue="", msg=1),
)


def trace_costs(n: int) -> tuple[float, float]:
    """Seconds per message for the trace alone, on wall-clock times and kombu-like names and
    bodies: (record + running v2 digest in the default window; v1 computed on request from a
    full trace of the same events)."""
    publish, route, enqueue, deliver, ack = _SHAPES
    name = "bench.rt.1733540000123456.1"
    body = b'{"task": "bench", "args": [1, 2], "kwargs": {}}'
    costs = []
    for mode in ("window", "full"):
        trace = Trace(mode=mode)
        record = trace.record
        now = time.time
        for i in range(n):
            if i == 1:  # the first message compiles nothing, but warms the caches
                gc.collect()
                start = _clock()
            record(now(), publish, (1, 1, name, name, i, body, False))
            record(now(), route, (i, (name,)))
            record(now(), enqueue, (name, "/", i))
            record(now(), deliver, (1, 1, name, "amq.ctag-Y2xpZW50LXRhZy0xMjM0NTY", i, i, False))
            record(now(), ack, (1, 1, name, i))
        if mode == "window":
            trace.digest()
            costs.append((_clock() - start) / (n - 1))
    start = _clock()
    trace.digest(version=1)
    costs.append((_clock() - start) / n)
    return costs[0], costs[1]


def row_trace(quick: bool) -> list[Row]:
    n = 10_000 if quick else 50_000
    runs = [trace_costs(n) for _ in range(2 if quick else 3)]
    v2, v1 = (min(r[i] for r in runs) for i in range(2))
    return [
        Row(
            2,
            "trace alone, per message (5 events), default",
            fmt_us(v2),
            "(reported)",
            None,
            "record 5 events + running digest v2 (marshal format 2 + sha256), window of "
            f"{DEFAULT_WINDOW}; wall-clock times, kombu-sized names and body",
            extra={"v2": v2},
        ),
        Row(
            2,
            "  digest v1 on request (a v1 file), per message",
            fmt_us(v1),
            "(reported)",
            None,
            f"JSON lines from a full trace, computed only for a file that holds a v1 digest: "
            f"{v1 / v2:.0f}x the v2 trace's whole cost",
            extra={"v1": v1, "ratio": v1 / v2},
        ),
    ]


# -- 4. topic routing -----------------------------------------------------------------------


def topic_publish_cost(bindings: int, n: int) -> float:
    """Seconds per publish through a topic exchange with ``bindings`` bindings (one matches).

    The bindings look like a real event bus: ``region<r>.svc<i>.*`` and, for one in ten,
    ``region<r>.#``-style wildcards on other regions, so the trie has both literal and
    wildcard branches. The published key matches exactly one binding.
    """
    broker = Broker(seed=1, trace=False)
    conn = broker.connect()
    ch = conn.channel()
    ch.exchange_declare("events", "topic")
    ch.queue_declare("hit")
    ch.queue_bind("hit", "events", "region0.svc0.*")
    ch.basic_consume("hit", no_ack=True)
    for i in range(1, bindings):
        name = f"q{i}"
        ch.queue_declare(name)
        pattern = f"region{i % 97 + 1}.#" if i % 10 == 0 else f"region{i % 97}.svc{i}.*"
        ch.queue_bind(name, "events", pattern)
    outbox = conn.outbox
    publish = ch.basic_publish
    body = b"x"
    gc.collect()
    start = _clock()
    for _ in range(n):
        publish(body, "events", "region0.svc0.created", False, False, None)
    elapsed = _clock() - start
    assert len(outbox) == n
    return elapsed / n


def row_topic(quick: bool) -> list[Row]:
    n = 5_000 if quick else 30_000
    repeat = 2 if quick else 3
    sizes = (10, 1_000, 10_000)
    costs = {k: best_of(lambda k=k: topic_publish_cost(k, n), repeat) for k in sizes}
    ratio = costs[10_000] / costs[10]
    return [
        Row(
            4,
            "topic publish, 10 / 1k / 10k bindings",
            " / ".join(fmt_us(costs[k]) for k in sizes),
            "10k ≤ 2x 10",
            ratio <= 2.0,
            f"10k/10 = {ratio:.2f}x",
            extra={f"cost_{k}": costs[k] for k in sizes} | {"ratio": ratio},
        )
    ]


# -- 5. broker lifecycle --------------------------------------------------------------------


def _one_broker() -> None:
    """The engine: a broker, a connection, a channel, a queue; then drop it all."""
    broker = Broker(seed=7)
    conn = broker.connect()
    ch = conn.channel()
    ch.queue_declare("tasks")
    conn.close()


def _one_registered_broker() -> None:
    """What the pytest fixture does: ``simamqp.Broker`` (lock, registry) under a URL name."""
    broker = simamqp.Broker(seed=7)
    simamqp.register("bench-lifecycle", broker)
    conn = broker.connect()
    ch = conn.channel()
    ch.queue_declare("tasks")
    conn.close()
    simamqp.unregister("bench-lifecycle")


def broker_lifecycle(n: int, make: Callable[[], None] = _one_broker) -> float:
    gc.collect()
    start = _clock()
    for _ in range(n):
        make()
    return (_clock() - start) / n


def broker_memory_growth(n: int) -> tuple[int, int]:
    """Traced bytes still allocated after 100 brokers and after ``n`` brokers."""
    for _ in range(50):
        _one_broker()  # warm caches (interned strings, method caches) before measuring
    gc.collect()
    tracemalloc.start()
    try:
        base = tracemalloc.get_traced_memory()[0]
        for i in range(n):
            _one_broker()
            if i == 99:
                gc.collect()
                after_100 = tracemalloc.get_traced_memory()[0] - base
        gc.collect()
        after_n = tracemalloc.get_traced_memory()[0] - base
    finally:
        tracemalloc.stop()
    return after_100, after_n


def _one_url_broker() -> None:
    """A broker that hands out its URL (an implicit registration), used through kombu."""
    broker = simamqp.Broker(seed=7)
    connection = broker.connection()
    connection.connect()
    connection.default_channel.queue_declare("tasks", auto_delete=False)
    connection.release()


def url_broker_memory_growth(n: int) -> tuple[int, int]:
    """Traced bytes still allocated after 200 and after ``n`` brokers created with a URL."""
    for _ in range(50):
        _one_url_broker()
    gc.collect()
    tracemalloc.start()
    try:
        base = tracemalloc.get_traced_memory()[0]
        for i in range(n):
            _one_url_broker()
            if i == 199:
                gc.collect()
                after_200 = tracemalloc.get_traced_memory()[0] - base
        gc.collect()
        after_n = tracemalloc.get_traced_memory()[0] - base
    finally:
        tracemalloc.stop()
    return after_200, after_n


def row_lifecycle(quick: bool) -> list[Row]:
    n = 2_000 if quick else 10_000
    per = best_of(lambda: broker_lifecycle(n), 3)
    registered = best_of(lambda: broker_lifecycle(n, _one_registered_broker), 3)
    after_100, after_1000 = broker_memory_growth(1_000)
    flat = after_1000 - after_100 < 16 * 1024
    url_200, url_2000 = url_broker_memory_growth(2_000)
    url_flat = url_2000 - url_200 < 64 * 1024
    return [
        Row(
            5,
            "create + connect + channel + queue + discard",
            fmt_us(per),
            "≤ 50 µs",
            per <= 50e-6,
            f"engine Broker, trace on; simamqp.Broker + register/unregister: {fmt_us(registered)}",
            extra={"seconds": per, "registered": registered},
        ),
        Row(
            5,
            "memory retained over 1,000 brokers",
            f"{after_1000 - after_100:+,} B",
            "flat",
            flat,
            f"after 100: {after_100:+,} B, after 1,000: {after_1000:+,} B",
            extra={"after_100": after_100, "after_1000": after_1000},
        ),
        Row(
            5,
            "memory retained over 2,000 brokers given a URL",
            f"{url_2000 - url_200:+,} B",
            "flat",
            url_flat,
            f"broker.connection() + connect + declare + release, then dropped; after 200: "
            f"{url_200:+,} B, after 2,000: {url_2000:+,} B",
            extra={"after_200": url_200, "after_2000": url_2000},
        ),
    ]


# -- 6. memory per queued message -----------------------------------------------------------


def memory_per_message(n: int, size: int = 1024, *, trace: bool | TraceMode = False) -> float:
    """Traced bytes per queued ``size``-byte message, the body included.

    Each body is made inside the traced section and the publisher keeps no reference, as
    when a client publishes and moves on: what stays allocated is what the queue holds
    (the body object itself, ``size`` + 33 bytes, plus the broker's bookkeeping).
    """
    broker = Broker(seed=1, trace=trace)
    conn = broker.connect()
    ch = conn.channel()
    ch.queue_declare("backlog")
    props = {"content_type": "application/octet-stream", "delivery_mode": 2}
    publish = ch.basic_publish
    gc.collect()
    tracemalloc.start()
    try:
        base = tracemalloc.get_traced_memory()[0]
        for i in range(n):
            publish(i.to_bytes(4, "big") * (size // 4), "", "backlog", False, False, props)
        gc.collect()
        used = tracemalloc.get_traced_memory()[0] - base
    finally:
        tracemalloc.stop()
    assert broker.queue("backlog").messages == n
    return used / n


def consumed_memory_growth(warm: int, total: int) -> tuple[int, int]:
    """Traced bytes still allocated after ``warm`` and ``total`` messages published, delivered
    and acked through kombu's transport on the process's default ``simamqp://`` broker
    (default trace), after 1,000 untraced to warm caches."""
    name = f"bench.consumed.{time.monotonic_ns()}"
    connection = kombu.Connection("simamqp://")
    connection.connect()
    raw = connection.connection
    channel = raw.channel()
    channel.queue_declare(name, auto_delete=False)
    received = 0

    def on_message(message: amqp.Message) -> None:
        nonlocal received
        received += 1
        channel.basic_ack(message.delivery_tag)

    channel.basic_consume(name, callback=on_message)
    sent = 0

    def move(count: int) -> None:
        nonlocal sent
        for _ in range(count):
            channel.basic_publish(
                amqp.Message(b'{"n": 1}', content_type="application/json"), "", name
            )
        sent += count
        while received < sent:
            raw.drain_events(timeout=5)

    try:
        move(1_000)
        gc.collect()
        tracemalloc.start()
        try:
            base = tracemalloc.get_traced_memory()[0]
            for _ in range(warm // 1_000):
                move(1_000)
            gc.collect()
            after_warm = tracemalloc.get_traced_memory()[0] - base
            for _ in range((total - warm) // 1_000):
                move(1_000)
            gc.collect()
            after_total = tracemalloc.get_traced_memory()[0] - base
        finally:
            tracemalloc.stop()
    finally:
        channel.queue_delete(name)
        connection.release()
    return after_warm, after_total


def row_memory(quick: bool) -> list[Row]:
    n = 2_000 if quick else 20_000
    per = memory_per_message(n)
    traced = memory_per_message(n, trace=True)
    full = memory_per_message(n, trace="full")
    warm, total = (2_000, 20_000) if quick else (10_000, 100_000)
    after_warm, after_total = consumed_memory_growth(warm, total)
    per_consumed = (after_total - after_warm) / (total - warm)
    return [
        Row(
            6,
            "memory per queued 1 KiB message (body included)",
            f"{per:,.0f} B ({per / 1024:.2f}x payload)",
            "≤ 2x payload",
            per <= 2048,
            f"overhead {per - 1024:,.0f} B; default trace: {traced:,.0f} B "
            f"({traced / 1024:.2f}x); trace='full': {full:,.0f} B ({full / 1024:.2f}x, it keeps "
            "3 events per queued message)",
            extra={"bytes": per, "traced": traced, "full": full},
        ),
        Row(
            6,
            f"memory retained per consumed message, default broker, {warm // 1000}k -> "
            f"{total // 1000}k",
            f"{per_consumed:+,.2f} B",
            "flat (0 B)",
            abs(per_consumed) < 1.0,
            f"simamqp:// (default trace), transport channel publish/deliver/ack; after "
            f"{warm:,}: {after_warm:+,} B, after {total:,}: {after_total:+,} B",
            extra={"after_warm": after_warm, "after_total": after_total, "per": per_consumed},
        ),
    ]
