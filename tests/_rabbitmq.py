"""The real RabbitMQ the differential tests compare against: its URL and one reachability check."""

from __future__ import annotations

import contextlib
import functools
import os

import kombu
import pytest

RABBITMQ_URL = os.environ.get("SIMAMQP_RABBITMQ_URL", "amqp://guest:guest@127.0.0.1:5672//")


@functools.cache
def unreachable_reason() -> str | None:
    """None when RabbitMQ answers at RABBITMQ_URL, else why not (checked once per process)."""
    conn = kombu.Connection(RABBITMQ_URL, connect_timeout=2)
    try:
        conn.connect()
    except Exception as exc:
        return f"RabbitMQ not reachable at {RABBITMQ_URL}: {exc!r}"
    finally:
        with contextlib.suppress(Exception):
            conn.release()
    return None


def require_rabbitmq() -> None:
    """Skip (visibly) when RabbitMQ is down; in CI a missing RabbitMQ is a failure."""
    reason = unreachable_reason()
    if reason is not None:
        if os.environ.get("CI"):
            pytest.fail(f"{reason} (CI is set: the RabbitMQ side must run)")
        pytest.skip(reason)
