"""Row 10: the socket server (``simamqp serve``) vs RabbitMQ, both over real sockets.

The server runs as its own process (``python -m simamqp.cli serve --port 0``), as it does for
the clients it exists for; the client (kombu / py-amqp) runs here.
"""

from __future__ import annotations

import contextlib
import subprocess
import sys
import time
from collections.abc import Iterator

import amqp
import kombu

from ._util import RABBITMQ_URL, Row, fmt_us
from .bench_kombu import kombu_round_trip


@contextlib.contextmanager
def served() -> Iterator[str]:
    proc = subprocess.Popen(
        [sys.executable, "-m", "simamqp.cli", "serve", "--port", "0"],
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        assert proc.stdout is not None
        yield proc.stdout.readline().strip()
    finally:
        proc.terminate()
        proc.wait(10)


def _host(url: str) -> str:
    return url.split("@")[1].split("/")[0]


def setup_time(url: str, n: int) -> float:
    """Mean seconds for connect (handshake + channel) and close with py-amqp."""
    host = _host(url)
    start = time.perf_counter()
    for _ in range(n):
        conn = amqp.Connection(host)
        conn.connect()
        conn.channel()
        conn.close()
    return (time.perf_counter() - start) / n


def held_open(url: str, n: int) -> tuple[int, float]:
    """Open ``n`` connections and keep them; (how many work at the end, seconds to open)."""
    host = _host(url)
    conns: list[amqp.Connection] = []
    start = time.perf_counter()
    try:
        for _ in range(n):
            conn = amqp.Connection(host)
            conn.connect()
            conns.append(conn)
        elapsed = time.perf_counter() - start
        working = 0
        for conn in conns:
            ch = conn.channel()
            ch.queue_declare("", exclusive=True)
            working += 1
        return working, elapsed
    finally:
        for conn in conns:
            with contextlib.suppress(Exception):
                conn.close()


def row_server(quick: bool, rabbit: bool) -> list[Row]:
    n = 2_000 if quick else 10_000
    repeat = 1 if quick else 2
    rows = []
    with served() as url:
        targets = {"simamqp serve": url}
        if rabbit:
            targets["RabbitMQ"] = RABBITMQ_URL
        per_msg: dict[str, tuple[float, float]] = {}
        for name, target in targets.items():
            pipe = min(kombu_round_trip(kombu.Connection(target), n)[0] for _ in range(repeat))
            lock = min(
                kombu_round_trip(kombu.Connection(target), n, lockstep=True)[0]
                for _ in range(repeat)
            )
            per_msg[name] = (pipe / n, lock / n)
        sim = per_msg["simamqp serve"]
        value = f"{fmt_us(sim[0])} / {fmt_us(sim[1])}"
        detail = ""
        met = None
        if "RabbitMQ" in per_msg:
            rmq = per_msg["RabbitMQ"]
            detail = f"RabbitMQ {fmt_us(rmq[0])} / {fmt_us(rmq[1])}"
            met = sim[0] <= rmq[0] and sim[1] <= rmq[1]
        rows.append(
            Row(
                10,
                "kombu round trip over a socket, pipelined / lock-step",
                value,
                "<= RabbitMQ",
                met,
                detail,
            )
        )
        setup_n = 50 if quick else 200
        sim_setup = setup_time(url, setup_n)
        detail = ""
        if rabbit:
            detail = f"RabbitMQ {fmt_us(setup_time(RABBITMQ_URL, setup_n))}"
        rows.append(
            Row(
                10,
                "connection setup (connect, channel, close)",
                fmt_us(sim_setup),
                "",
                None,
                detail,
            )
        )
        want = 100 if quick else 500
        working, elapsed = held_open(url, want)
        rows.append(
            Row(
                10,
                f"connections held open at once ({want} asked)",
                str(working),
                f">= {want}",
                working >= want,
                f"opened in {elapsed:.2f} s",
            )
        )
    return rows
