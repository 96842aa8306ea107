"""Row 11: the socket server under abusive clients (issue 22), next to RabbitMQ.

- A stalled auto-ack consumer: 20,000 x 1 KiB in a queue, a consumer (raw socket, no-ack)
  that never reads. How many messages the queue keeps after the consumer disconnects, and how
  much the server process's RSS grew over its baseline compared with the bodies it holds.
- Idle sockets: 1,000 sockets that connect and send nothing. How long until the server drops
  them (its handshake timeout, RabbitMQ's ``handshake_timeout``: 10 s), and whether a new
  client connects meanwhile and afterwards.

The server runs as its own process (``python -m simamqp.cli serve --port 0``).
"""

from __future__ import annotations

import contextlib
import socket
import struct
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator

import amqp

from ._util import RABBITMQ_URL, Row

_HEADER = b"AMQP\x00\x00\x09\x01"


@contextlib.contextmanager
def _served() -> Iterator[tuple[str, int]]:
    proc = subprocess.Popen(
        [sys.executable, "-m", "simamqp.cli", "serve", "--port", "0"],
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        assert proc.stdout is not None
        yield proc.stdout.readline().strip(), proc.pid
    finally:
        proc.terminate()
        proc.wait(10)


def _rss(pid: int) -> int:
    with open(f"/proc/{pid}/status") as status:
        for line in status:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) * 1024
    raise RuntimeError("no VmRSS")


def _address(url: str) -> tuple[str, int]:
    host, port = url.split("@")[1].split("/")[0].split(":")
    return host, int(port)


def _frame(type_: int, channel: int, payload: bytes) -> bytes:
    return struct.pack(">BHI", type_, channel, len(payload)) + payload + b"\xce"


def _raw_consumer(url: str, queue: str) -> socket.socket:
    """A raw socket consuming ``queue`` with no-ack, that will never read again."""
    from amqp.serialization import dumps

    def method(channel: int, sig: tuple[int, int], fmt: str = "", args: tuple = ()) -> bytes:
        return _frame(1, channel, struct.pack(">HH", *sig) + (dumps(fmt, args) if fmt else b""))

    sock = socket.create_connection(_address(url))
    sock.sendall(_HEADER)
    time.sleep(0.2)
    sock.recv(65536)
    sock.sendall(method(0, (10, 11), "FsSs", ({}, "PLAIN", b"\x00guest\x00guest", "en_US")))
    time.sleep(0.2)
    sock.recv(65536)
    sock.sendall(method(0, (10, 31), "BlB", (2047, 131072, 0)))
    sock.sendall(method(0, (10, 40), "ssb", ("/", "", False)))
    sock.sendall(method(1, (20, 10), "s", ("",)))
    time.sleep(0.2)
    sock.recv(65536)
    sock.sendall(method(1, (60, 20), "BssbbbbF", (0, queue, "", False, True, False, False, {})))
    return sock


def stalled_consumer(url: str, pid: int | None, count: int) -> dict[str, float]:
    """Queue depth while stalled and after the consumer left; RSS growth (server only)."""
    host = url.split("@")[1].split("/")[0]
    body = b"x" * 1024
    out: dict[str, float] = {}
    baseline = _rss(pid) if pid else 0
    with amqp.Connection(host) as conn:
        ch = conn.channel()
        queue = ch.queue_declare(f"bench.stalled.{uuid.uuid4().hex}", auto_delete=False).queue
        try:
            for _ in range(count):
                ch.basic_publish(amqp.Message(body), "", queue)
            ch.queue_declare(queue, passive=True)
            if pid:
                out["rss_queued"] = _rss(pid) - baseline
            sock = _raw_consumer(url, queue)
            last = -1
            for _ in range(60):  # until the queue stops shrinking (bounded: 30 s)
                time.sleep(0.5)
                depth = ch.queue_declare(queue, passive=True).message_count
                if depth == last:
                    break
                last = depth
            out["held"] = depth
            if pid:
                out["rss_growth"] = _rss(pid) - baseline
            sock.close()
            time.sleep(2)
            out["left"] = ch.queue_declare(queue, passive=True).message_count
        finally:
            ch.queue_delete(queue)
    return out


def idle_sockets(url: str, n: int) -> dict[str, float]:
    """Open ``n`` silent sockets; seconds until the server dropped all of them; whether a new
    client connected while they were open and after."""
    address = _address(url)
    socks = [socket.create_connection(address) for _ in range(n)]
    start = time.monotonic()
    out: dict[str, float] = {}
    host = url.split("@")[1].split("/")[0]
    try:
        with amqp.Connection(host, connect_timeout=5):
            out["connect_during"] = 1
    except Exception:
        out["connect_during"] = 0
    for sock in socks:
        sock.settimeout(60)
        with contextlib.suppress(OSError):
            while sock.recv(1024):
                pass
    out["dropped_after"] = time.monotonic() - start
    try:
        with amqp.Connection(host, connect_timeout=5):
            out["connect_after"] = 1
    except Exception:
        out["connect_after"] = 0
    for sock in socks:
        sock.close()
    return out


def row_abuse(quick: bool, rabbit: bool) -> list[Row]:
    count = 5_000 if quick else 20_000
    idle = 200 if quick else 1_000
    rows = []
    with _served() as (url, pid):
        sim = stalled_consumer(url, pid, count)
        # The server held every body once (before the consumer came): RSS over the idle
        # baseline against those bodies, and what the stalled consumer added on top.
        queued_bytes = count * 1024
        detail = (
            f"server RSS +{sim['rss_queued'] / 2**20:.1f} MiB with {queued_bytes / 2**20:.1f} "
            f"MiB of bodies queued, +{(sim['rss_growth'] - sim['rss_queued']) / 2**20:.1f} MiB "
            f"more while the consumer stalled ({sim['held']:.0f} left in the queue then)"
        )
        met = sim["rss_growth"] < 2 * queued_bytes
        if rabbit:
            rmq = stalled_consumer(RABBITMQ_URL, None, count)
            detail += f"; RabbitMQ kept {rmq['left']:.0f}"
            met = met and sim["left"] >= rmq["left"]
        rows.append(
            Row(
                11,
                f"stalled auto-ack consumer, {count:,} x 1 KiB: messages left in the queue",
                f"{sim['left']:.0f}",
                ">= RabbitMQ; RSS < 2x bodies",
                met,
                detail,
                extra=sim,
            )
        )
        idle_out = idle_sockets(url, idle)
        rows.append(
            Row(
                11,
                f"{idle:,} idle sockets: dropped after (s); a new client connects",
                f"{idle_out['dropped_after']:.1f} s",
                "~10 s; connects",
                bool(idle_out["connect_during"] and idle_out["connect_after"]),
                f"connect while open: {bool(idle_out['connect_during'])}, after: "
                f"{bool(idle_out['connect_after'])}",
                extra=idle_out,
            )
        )
    return rows


if __name__ == "__main__":  # pragma: no cover - manual runs
    for row in row_abuse("--quick" in sys.argv, "--no-rabbitmq" not in sys.argv):
        print(row)
