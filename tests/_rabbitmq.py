"""The real RabbitMQ the differential tests compare against: its URL and one reachability check."""

from __future__ import annotations

import contextlib
import functools
import os

import amqp
import kombu
import pytest

RABBITMQ_URL = os.environ.get("SIMAMQP_RABBITMQ_URL", "amqp://guest:guest@127.0.0.1:5672//")

#: Values of ``CI`` that mean "this is a CI run" (CI services set ``CI=true``; ``CI=false`` or
#: ``CI=0`` is how a developer says it is not).
_TRUTHY = frozenset({"1", "true", "yes", "on"})


def in_ci() -> bool:
    return os.environ.get("CI", "").strip().lower() in _TRUTHY


@functools.cache
def _probe() -> tuple[str, str] | None:
    """None when RabbitMQ answers at RABBITMQ_URL, else ("unreachable"|"refused", why)."""
    conn = kombu.Connection(RABBITMQ_URL, connect_timeout=2)
    try:
        conn.connect()
    except amqp.exceptions.AccessRefused as exc:
        # It answered, and refused these credentials (or the vhost): a setup mistake to fix,
        # not a missing broker to skip over.
        return "refused", f"RabbitMQ at {RABBITMQ_URL} refused the login: {exc!r}"
    except Exception as exc:
        return "unreachable", f"RabbitMQ not reachable at {RABBITMQ_URL}: {exc!r}"
    finally:
        with contextlib.suppress(Exception):
            conn.release()
    return None


def unreachable_reason() -> str | None:
    """None when RabbitMQ answers at RABBITMQ_URL, else why not (checked once per process)."""
    probe = _probe()
    return None if probe is None else probe[1]


def require_rabbitmq() -> None:
    """Skip (visibly) when RabbitMQ is down; fail when it refuses the credentials, or when it
    is down in CI (``CI`` set to a true value: the RabbitMQ side must run there)."""
    probe = _probe()
    if probe is None:
        return
    kind, reason = probe
    if kind == "refused":
        pytest.fail(f"{reason} (check SIMAMQP_RABBITMQ_URL)", pytrace=False)
    if in_ci():
        pytest.fail(f"{reason} (CI is set: the RabbitMQ side must run)", pytrace=False)
    pytest.skip(reason)
