"""Fixtures for the socket server tests: one simamqp server per test, RabbitMQ to compare."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from _rabbitmq import RABBITMQ_URL, require_rabbitmq

import simamqp
from simamqp.server import Server


@pytest.fixture
def sim_server() -> Iterator[Server]:
    """A wall-clock broker served on a free port (handshake errors answered at once)."""
    broker = simamqp.Broker(seed=7, clock=simamqp.WallClock())
    with Server(broker, handshake_error_delay=0.05) as server:
        yield server


@pytest.fixture(params=["simamqp", pytest.param("rabbitmq", marks=pytest.mark.rabbitmq)])
def amqp_url(request: pytest.FixtureRequest, sim_server: Server) -> str:
    """The same test against the simamqp server and against RabbitMQ."""
    if request.param == "rabbitmq":
        require_rabbitmq()
        return RABBITMQ_URL.rstrip("/") + "/%2F"  # pika reads "//" as the vhost ""
    return sim_server.url
