"""Timing helpers, RabbitMQ reachability and the result row."""

from __future__ import annotations

import gc
import os
import socket
import statistics
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from urllib.parse import urlparse

RABBITMQ_URL = os.environ.get("SIMAMQP_RABBITMQ_URL", "amqp://guest:guest@127.0.0.1:5672//")


def rabbitmq_reachable(url: str = RABBITMQ_URL, timeout: float = 1.0) -> bool:
    parsed = urlparse(url)
    try:
        with socket.create_connection(
            (parsed.hostname or "127.0.0.1", parsed.port or 5672), timeout
        ):
            return True
    except OSError:
        return False


class RabbitMQUnreachable(Exception):
    """A row needs the real broker and it is not there."""


@dataclass
class Row:
    """One line of the results table."""

    number: int
    name: str
    value: str
    target: str = ""
    met: bool | None = None  # None: informational, no target
    detail: str = ""
    skipped: str = ""
    extra: dict[str, float] = field(default_factory=dict)


def best_of(fn: Callable[[], float], repeat: int) -> float:
    """The smallest of ``repeat`` measurements (seconds); noise only ever adds time."""
    return min(fn() for _ in range(repeat))


def timed(fn: Callable[[], object]) -> float:
    gc.collect()
    start = time.perf_counter()
    fn()
    return time.perf_counter() - start


def percentile(samples: list[float], pct: float) -> float:
    ordered = sorted(samples)
    if not ordered:
        return float("nan")
    index = min(len(ordered) - 1, max(0, round(pct / 100 * (len(ordered) - 1))))
    return ordered[index]


def median(samples: list[float]) -> float:
    return statistics.median(samples)


def fmt_rate(per_second: float) -> str:
    if per_second >= 1e6:
        return f"{per_second / 1e6:.2f}M/s"
    if per_second >= 1e3:
        return f"{per_second / 1e3:.1f}k/s"
    return f"{per_second:.1f}/s"


def fmt_us(seconds: float) -> str:
    us = seconds * 1e6
    if us >= 10_000:
        return f"{us / 1000:.0f} ms"
    if us >= 1000:
        return f"{us / 1000:.2f} ms"
    return f"{us:.1f} µs"
