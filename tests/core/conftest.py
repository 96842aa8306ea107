"""Fixtures for engine-level tests: a broker, a connection and a channel (no kombu)."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from simamqp.core import Broker, Channel, Connection


@pytest.fixture
def broker() -> Broker:
    return Broker(seed=1)


@pytest.fixture
def conn(broker: Broker) -> Iterator[Connection]:
    c = broker.connect()
    yield c
    c.close()


@pytest.fixture
def ch(conn: Connection) -> Channel:
    return conn.channel()
