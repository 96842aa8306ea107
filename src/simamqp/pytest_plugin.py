"""pytest plugin: the ``sim_broker`` fixture (registered through the ``pytest11`` entry point)."""

from __future__ import annotations

import hashlib
from collections.abc import Iterator

import pytest

from ._broker import Broker, register, unregister


def pytest_addoption(parser: pytest.Parser) -> None:
    group = parser.getgroup("simamqp")
    group.addoption(
        "--simamqp-seed",
        type=int,
        default=0,
        help="base seed; each test's broker seed is derived from it and the test id",
    )


def derive_seed(base_seed: int, node_id: str) -> int:
    """A stable per-test seed: the same for a test in any process, order or xdist worker."""
    digest = hashlib.sha256(f"{base_seed}:{node_id}".encode()).digest()
    return int.from_bytes(digest[:8], "big")


@pytest.fixture
def sim_broker(request: pytest.FixtureRequest) -> Iterator[Broker]:
    """A fresh in-memory broker for this test, registered under a unique URL."""
    seed = derive_seed(request.config.getoption("--simamqp-seed"), request.node.nodeid)
    broker = Broker(seed=seed)
    name = f"test-{seed:016x}"
    register(name, broker)
    try:
        yield broker
    finally:
        unregister(name)
