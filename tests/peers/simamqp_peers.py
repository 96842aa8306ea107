"""pytest plugin that points a peer's integration suite at simamqp, by swapping the broker URL.

Loaded with ``-p simamqp_peers`` by ``tests/peers/run.py`` into kombu's and Celery's own
``t/integration`` suites, which run unedited. ``SIMAMQP_PEERS_BROKER`` picks the broker:

- ``simamqp`` (default): the URL of the RabbitMQ under test becomes a ``simamqp://`` URL with the
  same host and port. kombu's ``test_py_amqp.py`` builds ``pyamqp://{RABBITMQ_HOST}:
  {RABBITMQ_5672_TCP}`` in module-level fixtures, which a plugin cannot override, so
  ``kombu.Connection`` rewrites exactly that URL (alone, in a ``;`` failover list or in
  ``alternates``); any other URL, such as the deliberately dead ``pyamqp://localhost:12345``,
  is left alone. Celery's suite reads ``TEST_BROKER``/``TEST_BACKEND``, set here unless given.
- ``server``: the suite talks to ``simamqp serve`` (the socket server) in another process, through
  its own settings: ``tests/peers/run.py`` starts the server and sets ``RABBITMQ_HOST``/
  ``RABBITMQ_5672_TCP`` (kombu) and ``TEST_BROKER`` (Celery). Nothing is rewritten and Celery's
  worker keeps the suite's own ``prefork`` pool.
- ``rabbitmq``: nothing is rewritten (the comparison run).

The one adaptation that is not a URL: Celery's ``t/integration/conftest.py`` asks for a
``prefork`` worker pool, whose child processes publish results through their own copy of an
in-process broker; in the ``simamqp`` and ``rabbitmq`` runs the worker's pool becomes ``threads``
(docs/peers.md). The ``server`` run keeps ``prefork``.
"""

from __future__ import annotations

import os
from typing import Any

import pytest

BROKER = os.environ.get("SIMAMQP_PEERS_BROKER", "simamqp")
RABBITMQ_HOST = os.environ.get("RABBITMQ_HOST", "localhost")
RABBITMQ_PORT = os.environ.get("RABBITMQ_5672_TCP", "5672")
#: The URL kombu's suite builds for the RabbitMQ under test, and what it becomes.
RABBITMQ_URL = f"pyamqp://{RABBITMQ_HOST}:{RABBITMQ_PORT}"
SIMAMQP_URL = f"simamqp://{RABBITMQ_HOST}:{RABBITMQ_PORT}"
#: Celery's worker pool in the in-process and RabbitMQ runs (the suite's own choice is
#: ``prefork``, kept in the ``server`` run).
CELERY_POOL = os.environ.get("SIMAMQP_PEERS_CELERY_POOL", "threads")


def _swap(url: Any) -> Any:
    if not isinstance(url, str):
        return url
    return ";".join(SIMAMQP_URL if part == RABBITMQ_URL else part for part in url.split(";"))


def _install_url_swap() -> None:
    import kombu.connection

    original_init = kombu.connection.Connection.__init__

    def __init__(self: Any, hostname: Any = "localhost", *args: Any, **kwargs: Any) -> None:
        if isinstance(hostname, list | tuple):
            hostname = [_swap(url) for url in hostname]
        else:
            hostname = _swap(hostname)
        if kwargs.get("alternates"):
            kwargs["alternates"] = [_swap(url) for url in kwargs["alternates"]]
        original_init(self, hostname, *args, **kwargs)

    kombu.connection.Connection.__init__ = __init__  # type: ignore[method-assign]


# At import, not in pytest_configure: ``-p`` imports this module before pytest loads the
# conftest files named on the command line, and Celery's reads these when it is imported.
if BROKER != "server":  # run.py sets TEST_BROKER to the server's URL
    os.environ.setdefault("TEST_BROKER", "simamqp://" if BROKER == "simamqp" else "pyamqp://")
os.environ.setdefault("TEST_BACKEND", "rpc://")


def pytest_configure(config: pytest.Config) -> None:
    # kombu's suite marks tests for its own tox environments and for pytest-rerunfailures.
    config.addinivalue_line("markers", "env(name): the kombu tox environment a test is for")
    config.addinivalue_line("markers", "flaky: rerun by pytest-rerunfailures when installed")
    if BROKER == "simamqp":
        import simamqp  # noqa: F401  (registers the simamqp:// transport)

        _install_url_swap()


@pytest.hookimpl(tryfirst=True)
def pytest_fixture_setup(fixturedef: Any, request: pytest.FixtureRequest) -> None:
    if fixturedef.argname == "celery_worker_pool" and BROKER != "server":
        fixturedef.func = _celery_worker_pool


def _celery_worker_pool() -> str:
    return CELERY_POOL
