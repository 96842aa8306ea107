"""Fixtures for rpcbackend: every broker-facing test runs on simamqp and on RabbitMQ.

``broker`` is parametrised over ``simamqp`` (a fresh ``simamqp.Broker`` per test, seeded from
the test id, registered under a unique URL name, as DESIGN.md's contract says) and ``rabbitmq``
(the real broker, marked ``rabbitmq``). Tests talk to the broker only through it.

Results are published with publisher confirms, so once ``store_result`` returns the message
is in the reply queue on RabbitMQ too and a poll sees it without sleeping.
"""

from __future__ import annotations

import contextlib
import os
import uuid
import zlib
from collections.abc import Iterator

import kombu
import pytest
from _rpc_helpers import RABBITMQ_URL, BrokerUnderTest

_rabbitmq_reason: list[str | None] = []


def _rabbitmq_unreachable() -> str | None:
    if not _rabbitmq_reason:
        conn = kombu.Connection(RABBITMQ_URL, connect_timeout=2)
        try:
            conn.connect()
        except Exception as exc:
            _rabbitmq_reason.append(f"RabbitMQ not reachable at {RABBITMQ_URL}: {exc!r}")
        else:
            _rabbitmq_reason.append(None)
        finally:
            with contextlib.suppress(Exception):
                conn.release()
    return _rabbitmq_reason[0]


@pytest.fixture
def sim_clock() -> object:
    """The simulator's clock: None for its default. Modules that run a Celery worker in a
    thread override this with a wall clock, since that worker paces itself in real time."""
    return None


@pytest.fixture(
    params=[
        pytest.param("simamqp", id="simamqp"),
        pytest.param("rabbitmq", id="rabbitmq", marks=pytest.mark.rabbitmq),
    ]
)
def broker(request: pytest.FixtureRequest) -> Iterator[BrokerUnderTest]:
    if request.param == "simamqp":
        simamqp = pytest.importorskip("simamqp")
        if not hasattr(simamqp, "Broker"):
            pytest.skip("simamqp.Broker / its kombu transport is not implemented yet")
        seed = zlib.crc32(request.node.nodeid.encode())
        clock = request.getfixturevalue("sim_clock")
        sim = simamqp.Broker(seed=seed) if clock is None else simamqp.Broker(seed=seed, clock=clock)
        simamqp.register(f"rpcbackend-{uuid.uuid4().hex}", sim)
        under_test = BrokerUnderTest("simamqp", sim.url, sim)
    else:
        reason = _rabbitmq_unreachable()
        if reason is not None:
            if os.environ.get("CI"):
                pytest.fail(f"{reason} (CI is set: the RabbitMQ side must run)")
            pytest.skip(reason)
        under_test = BrokerUnderTest("rabbitmq", RABBITMQ_URL)
    try:
        yield under_test
    finally:
        under_test.close()


