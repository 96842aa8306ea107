"""Rows 1 and 3: kombu round trips and wake-up latency, simamqp:// vs memory:// vs RabbitMQ."""

from __future__ import annotations

import contextlib
import itertools
import threading
import time
from collections.abc import Callable
from typing import Any

import kombu

import simamqp

from ._null_transport import NullTransport
from ._util import RABBITMQ_URL, Row, fmt_us, percentile

_names = itertools.count(1)


def _unique(prefix: str) -> str:
    return f"bench.{prefix}.{time.monotonic_ns()}.{next(_names)}"


def kombu_round_trip(
    connection: kombu.Connection, n: int, *, lockstep: bool = False
) -> tuple[float, float]:
    """Seconds to move ``n`` messages publish → consume → ack through kombu.

    The same code runs on every transport: ``Producer.publish`` (json), a ``Consumer`` whose
    callback acks, ``drain_events`` until the message(s) arrived. Pipelined (default): publish
    all ``n``, then drain them. Lock-step: publish one, drain it (acked), then the next — what
    a test that publishes and waits for its message does.

    Returns (wall seconds, CPU seconds of this process). For the in-process transports, which
    never wait, the two are equal on an idle machine; CPU time ignores other load on a shared
    one. RabbitMQ's work happens in another process, so only its wall time means anything.
    """
    name = _unique("rt")
    queue = kombu.Queue(
        name, kombu.Exchange(name, "direct", auto_delete=True), name, auto_delete=True
    )
    payload = {"task": "bench", "args": [1, 2], "kwargs": {}}
    received = 0

    def on_message(body: Any, message: kombu.Message) -> None:
        nonlocal received
        received += 1
        message.ack()

    with connection as conn:
        channel = conn.channel()
        producer = kombu.Producer(channel)
        bound = queue(channel)
        bound.declare()
        with kombu.Consumer(channel, [bound], callbacks=[on_message], prefetch_count=None):
            publish = producer.publish
            exchange = queue.exchange
            start, cpu_start = time.perf_counter(), time.process_time()
            if lockstep:
                for i in range(n):
                    publish(
                        payload,
                        exchange=exchange,
                        routing_key=name,
                        serializer="json",
                        declare=None,
                        retry=False,
                    )
                    while received <= i:
                        conn.drain_events(timeout=5)
            else:
                for _ in range(n):
                    publish(
                        payload,
                        exchange=exchange,
                        routing_key=name,
                        serializer="json",
                        declare=None,
                        retry=False,
                    )
                while received < n:
                    conn.drain_events(timeout=5)
            elapsed = time.perf_counter() - start, time.process_time() - cpu_start
        bound.delete()
    return elapsed


def _fresh_simamqp() -> kombu.Connection:
    broker = simamqp.Broker(seed=1, clock=simamqp.WallClock(), trace=False)
    return kombu.Connection(broker.url)


def _fresh_simamqp_full() -> kombu.Connection:
    broker = simamqp.Broker(seed=1, clock=simamqp.WallClock(), trace="full")
    return kombu.Connection(broker.url)


def _default_simamqp() -> kombu.Connection:
    """What a user gets with no settings at all: the process's ``simamqp://`` broker (wall
    clock, the default trace: a bounded window and a running digest)."""
    return kombu.Connection("simamqp://")


def _ratio_row(
    name: str,
    target: float,
    base: tuple[float, float],
    sim: tuple[float, float],
    trace_off: tuple[float, float],
) -> Row:
    pipe, lock = base[0] / sim[0], base[1] / sim[1]
    return Row(
        1,
        name,
        f"{pipe:.2f}x / {lock:.2f}x",
        f">= {target:g}x",
        pipe >= target and lock >= target,
        f"trace off: {base[0] / trace_off[0]:.2f}x / {base[1] / trace_off[1]:.2f}x",
        extra={"pipelined": pipe, "lockstep": lock},
    )


def row_round_trip(quick: bool, rabbit: bool) -> list[Row]:
    """Time per message, best of ``repeat`` runs, transports interleaved.

    In-process transports are compared on CPU time (robust on a loaded machine); RabbitMQ on
    wall time against simamqp's wall time from the same runs.
    """
    n = 2_000 if quick else 10_000
    repeat = 2 if quick else 3
    makers: dict[str, Callable[[], kombu.Connection]] = {
        "default": _default_simamqp,
        "sim": _fresh_simamqp,
        "full": _fresh_simamqp_full,
        "memory": lambda: kombu.Connection("memory://"),
        "floor": lambda: kombu.Connection(transport=NullTransport),
    }
    if rabbit:
        makers["rabbitmq"] = lambda: kombu.Connection(RABBITMQ_URL)
    best: dict[tuple[str, bool], float] = {}
    best_wall: dict[tuple[str, bool], float] = {}
    for attempt in range(repeat):
        for key, make in makers.items():
            if key == "rabbitmq" and attempt >= max(1, repeat - 1):
                continue  # RabbitMQ is slow and steady: one run fewer
            for lockstep in (False, True):
                conn = make()
                try:
                    wall, cpu = kombu_round_trip(conn, n, lockstep=lockstep)
                finally:
                    conn.release()
                seconds = (wall if key == "rabbitmq" else cpu) / n
                best[key, lockstep] = min(best.get((key, lockstep), seconds), seconds)
                wall /= n
                best_wall[key, lockstep] = min(best_wall.get((key, lockstep), wall), wall)

    def pair(key: str) -> tuple[float, float]:
        return best[key, False], best[key, True]

    def wall_pair(key: str) -> tuple[float, float]:
        return best_wall[key, False], best_wall[key, True]

    def timing(number_name: str, key: str, detail: str = "") -> Row:
        pipe, lock = pair(key)
        return Row(
            1,
            number_name,
            f"{fmt_us(pipe)} / {fmt_us(lock)}",
            "",
            None,
            detail or f"{1 / pipe:,.0f} / {1 / lock:,.0f} msg/s",
            extra={"pipelined": pipe, "lockstep": lock},
        )

    default, sim, memory, floor = pair("default"), pair("sim"), pair("memory"), pair("floor")
    rows = [
        timing(
            f"kombu x{n:,} per msg, pipelined / lock-step: simamqp://",
            "default",
            "CPU time, default settings (trace window); wall: "
            f"{fmt_us(wall_pair('default')[0])} / {fmt_us(wall_pair('default')[1])}",
        ),
        timing("  simamqp:// with the trace off", "sim", "CPU time"),
        timing("  simamqp:// with trace='full' (recording)", "full", "CPU time"),
        timing("  memory://", "memory", "CPU time"),
        timing(
            "  floor: kombu over a do-nothing transport",
            "floor",
            f"CPU time; simamqp adds {fmt_us(default[0] - floor[0])} / "
            f"{fmt_us(default[1] - floor[1])} (trace off: {fmt_us(sim[0] - floor[0])} / "
            f"{fmt_us(sim[1] - floor[1])})",
        ),
    ]
    if rabbit:
        rows.append(timing("  RabbitMQ (py-amqp, localhost)", "rabbitmq", "wall time"))
    rows.append(
        _ratio_row("  simamqp:// (default settings) vs memory://", 1.1, memory, default, sim)
    )
    rows.append(
        Row(
            1,
            "  best possible vs memory:// (floor)",
            f"{memory[0] / floor[0]:.2f}x / {memory[1] / floor[1]:.2f}x",
            "",
            None,
            "kombu's own cost caps any transport here",
        )
    )
    if rabbit:
        rmq = pair("rabbitmq")
        ratio = _ratio_row(
            "  simamqp vs RabbitMQ (wall/wall)", 10, rmq, wall_pair("default"), wall_pair("sim")
        )
        ratio.detail += f"; RabbitMQ wall / simamqp CPU: {rmq[0] / default[0]:.2f}x / " + (
            f"{rmq[1] / default[1]:.2f}x"
        )
        rows.append(ratio)
    else:
        rows.append(
            Row(
                1,
                "  simamqp vs RabbitMQ",
                "",
                ">= 10x",
                None,
                skipped="skipped: RabbitMQ unreachable",
            )
        )
    return rows


# -- 3. wake-up latency ---------------------------------------------------------------------


def wakeup_latencies(url_or_transport: Any, samples: int, gap: float = 0.002) -> list[float]:
    """Seconds from ``publish`` returning in one thread to the callback in a thread blocked
    in ``drain_events``. Each sample waits ``gap`` first so the consumer is really blocked."""
    name = _unique("wake")
    queue = kombu.Queue(
        name, kombu.Exchange(name, "direct", auto_delete=True), name, auto_delete=True
    )
    sent_at: list[float] = []
    latencies: list[float] = []
    got = threading.Event()
    ready = threading.Event()
    stop = threading.Event()
    errors: list[BaseException] = []

    def on_message(body: Any, message: kombu.Message) -> None:
        latencies.append(time.perf_counter() - sent_at[-1])
        message.ack()
        got.set()

    consumer_conn = kombu.Connection(url_or_transport)
    producer_conn = kombu.Connection(url_or_transport)

    def consume() -> None:
        try:
            channel = consumer_conn.channel()
            with kombu.Consumer(channel, [queue(channel)], callbacks=[on_message]):
                ready.set()
                while not stop.is_set():
                    with contextlib.suppress(TimeoutError):
                        consumer_conn.drain_events(timeout=0.5)
        except BaseException as err:  # reported by the caller
            errors.append(err)
            ready.set()

    # memory:// queues live in the transport's class-level state, so both connections see it.
    thread = threading.Thread(target=consume, daemon=True)
    thread.start()
    ready.wait(10)
    try:
        producer = kombu.Producer(producer_conn.channel())
        for _ in range(samples):
            time.sleep(gap)
            got.clear()
            sent_at.append(time.perf_counter())
            producer.publish(
                {"n": 1}, exchange=queue.exchange, routing_key=name, declare=[queue], retry=False
            )
            sent_at[-1] = time.perf_counter()
            if not got.wait(5):
                raise RuntimeError(f"no delivery within 5 s on {url_or_transport!r}")
    finally:
        stop.set()
        thread.join(5)
        producer_conn.release()
        consumer_conn.release()
    if errors:
        raise errors[0]
    return latencies


def row_wakeup(quick: bool, rabbit: bool) -> list[Row]:
    samples = 100 if quick else 500
    broker = simamqp.Broker(seed=1, clock=simamqp.WallClock())
    sim = wakeup_latencies(broker.url, samples)
    sim_p50, sim_p99 = percentile(sim, 50), percentile(sim, 99)
    mem = wakeup_latencies("memory://", 2 if quick else 4, gap=0.05)
    rows = [
        Row(
            3,
            f"wake-up latency simamqp:// p50 / p99 (n={samples})",
            f"{fmt_us(sim_p50)} / {fmt_us(sim_p99)}",
            "p99 < 1 ms",
            sim_p99 < 1e-3,
            f"max {fmt_us(max(sim))}",
            extra={"p50": sim_p50, "p99": sim_p99},
        ),
        Row(
            3,
            f"  memory:// (polls every 1 s; n={len(mem)})",
            f"{fmt_us(percentile(mem, 50))} / max {fmt_us(max(mem))}",
            "",
            None,
            "kombu virtual transport: polling_interval = 1.0 s",
            extra={"p50": percentile(mem, 50)},
        ),
    ]
    if rabbit:
        rmq = wakeup_latencies(RABBITMQ_URL, 50 if quick else 200)
        rows.append(
            Row(
                3,
                "  RabbitMQ p50 / p99",
                f"{fmt_us(percentile(rmq, 50))} / {fmt_us(percentile(rmq, 99))}",
                "",
                None,
                "",
                extra={"p50": percentile(rmq, 50), "p99": percentile(rmq, 99)},
            )
        )
    else:
        rows.append(
            Row(3, "  RabbitMQ p50 / p99", "", "", None, skipped="skipped: RabbitMQ unreachable")
        )
    return rows
