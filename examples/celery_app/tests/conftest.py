"""What a downstream project writes: an app fixture and a worker fixture on top of simamqp's
``sim_celery_config`` (the ``sim_broker`` plugin is loaded by the pytest11 entry point)."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest
from celery.contrib.testing.worker import start_worker
from shop import make_app


@pytest.fixture
def celery_app(sim_celery_config: dict[str, Any]) -> Iterator[Any]:
    app = make_app(**sim_celery_config)
    yield app
    app.close()


@pytest.fixture
def worker(celery_app: Any) -> Iterator[Any]:
    with start_worker(
        celery_app, pool="solo", perform_ping_check=False, loglevel="WARNING", shutdown_timeout=10
    ) as w:
        yield w
