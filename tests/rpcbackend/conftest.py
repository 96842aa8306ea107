"""Fixtures for rpcbackend: every broker-facing test runs on simamqp and on RabbitMQ.

``broker`` is parametrised over ``simamqp`` (a fresh ``simamqp.Broker`` per test, seeded from
the test id, registered under a unique URL name, as DESIGN.md's contract says) and ``rabbitmq``
(the real broker, marked ``rabbitmq``). Tests talk to the broker only through it.

Results are published with publisher confirms, so once ``store_result`` returns the message
is in the reply queue on RabbitMQ too and a poll sees it without sleeping.
"""

from __future__ import annotations

import uuid
import zlib
from collections.abc import Iterator

import pytest
from _rabbitmq import RABBITMQ_URL, require_rabbitmq
from _rpc_helpers import BrokerUnderTest


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
        import simamqp

        seed = zlib.crc32(request.node.nodeid.encode())
        clock = request.getfixturevalue("sim_clock")
        sim = simamqp.Broker(seed=seed) if clock is None else simamqp.Broker(seed=seed, clock=clock)
        simamqp.register(f"rpcbackend-{uuid.uuid4().hex}", sim)
        under_test = BrokerUnderTest("simamqp", sim.url, sim)
    else:
        require_rabbitmq()
        under_test = BrokerUnderTest("rabbitmq", RABBITMQ_URL)
    try:
        yield under_test
    finally:
        under_test.close()


