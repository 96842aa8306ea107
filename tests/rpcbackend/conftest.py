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
from typing import Any

import kombu
import pytest

from rpcbackend import Config, RPCBackend

RABBITMQ_URL = os.environ.get("SIMAMQP_RABBITMQ_URL", "amqp://guest:guest@127.0.0.1:5672//")

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


class BrokerUnderTest:
    """One broker (simulated or real) plus the backends a test created on it."""

    def __init__(self, kind: str, url: str, sim: Any = None) -> None:
        self.kind = kind
        self.url = url
        self.sim = sim
        self._closables: list[Any] = []

    @property
    def is_sim(self) -> bool:
        return self.kind == "simamqp"

    def config(self, **settings: Any) -> Config:
        options = settings.pop("broker_transport_options", {})
        options.setdefault("confirm_publish", True)
        return Config(broker_url=self.url, broker_transport_options=options, **settings)

    def backend(self, **kwargs: Any) -> RPCBackend:
        settings = {k: kwargs.pop(k) for k in list(kwargs) if k.startswith(("result_", "rpc"))}
        backend = RPCBackend(self.config(**settings), **kwargs)
        self._closables.append(backend)
        return backend

    def connection(self) -> kombu.Connection:
        conn = kombu.Connection(self.url, transport_options={"confirm_publish": True})
        self._closables.append(conn)
        return conn

    def settle(self) -> None:
        """Let the broker deliver what is due: run the simulator until idle; RabbitMQ needs no
        help because every publish in these tests waits for its confirm."""
        if self.sim is not None:
            self.sim.run_until_idle()

    def close(self) -> None:
        for item in reversed(self._closables):
            with contextlib.suppress(Exception):
                item.close() if hasattr(item, "close") else item.release()


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
        sim = simamqp.Broker(seed=seed)
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


def request_for(client: RPCBackend, task_id: str, **extra: Any) -> dict[str, Any]:
    """The worker-side request context of a task sent by ``client``."""
    return {"reply_to": client.oid, "correlation_id": task_id, **extra}


def new_id() -> str:
    return str(uuid.uuid4())


def publish_raw(conn: kombu.Connection, client: RPCBackend, task_id: str, meta: dict[str, Any],
                **properties: Any) -> None:
    """Publish a result message exactly as a worker would, without going through a backend."""
    body = {"traceback": None, "children": [], "date_done": None, "task_id": task_id, **meta}
    kombu.Producer(conn).publish(
        body, exchange="", routing_key=client.oid, correlation_id=task_id,
        serializer="json", delivery_mode=1, **properties,
    )
