"""pytest plugin (``pytest11`` entry point ``simamqp``): fixtures, marker, option, failure report.

- ``sim_broker``: a fresh ``simamqp.Broker`` per test, registered under a unique URL, with a
  seed derived from ``--simamqp-seed`` and the test's node id (the same in any process, order or
  pytest-xdist worker). Everything the test does to it is recorded.
- ``@pytest.mark.simamqp(seed=..., clock="virtual"|"wall", faults=...)`` configures it.
- ``sim_celery_config``: ``broker_url``/``result_backend`` settings for a Celery app under test.
- When a test using ``sim_broker`` fails, its report gets a ``simamqp`` section: the seed, the
  last trace events and the path of a scenario file that replays the test
  (``simamqp run PATH``), written under ``<rootdir>/.simamqp/``.
"""

from __future__ import annotations

import hashlib
import re
from collections.abc import Generator, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from ._broker import Broker, register, unregister
from .core.clock import Clock

__all__ = ["derive_seed"]

#: How many trace events the failure report shows.
TRACE_TAIL = 15
MARKER_HELP = (
    "simamqp(seed=None, clock='virtual', faults=None): configure the sim_broker fixture: "
    "a fixed seed, a 'virtual' or 'wall' clock, fault rules (FaultPlan.to_dict() or a list)"
)


@dataclass
class _State:
    broker: Broker
    seed: int
    base_seed: int
    recorder: Any


_STATE = pytest.StashKey[_State]()


def pytest_addoption(parser: pytest.Parser) -> None:
    group = parser.getgroup("simamqp")
    group.addoption(
        "--simamqp-seed",
        type=int,
        default=0,
        help="base seed; each test's broker seed is derived from it and the test id",
    )
    group.addoption(
        "--simamqp-no-record",
        action="store_true",
        default=False,
        help="do not record what tests do to sim_broker (no replay scenario on failure)",
    )
    group.addoption(
        "--simamqp-scenario-dir",
        default=None,
        help="where failing tests' replay scenarios are written (default: <rootdir>/.simamqp)",
    )


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line("markers", MARKER_HELP)


def derive_seed(base_seed: int, node_id: str) -> int:
    """A stable per-test seed: the same for a test in any process, order or xdist worker."""
    digest = hashlib.sha256(f"{base_seed}:{node_id}".encode()).digest()
    return int.from_bytes(digest[:8], "big")


def _marker_options(request: pytest.FixtureRequest) -> dict[str, Any]:
    marker = request.node.get_closest_marker("simamqp")
    if marker is None:
        return {}
    if marker.args:
        raise pytest.UsageError("@pytest.mark.simamqp takes keyword arguments only")
    unknown = set(marker.kwargs) - {"seed", "clock", "faults"}
    if unknown:
        raise pytest.UsageError(
            f"@pytest.mark.simamqp: unknown argument(s) {sorted(unknown)}; "
            "expected seed, clock, faults"
        )
    return dict(marker.kwargs)


def _clock(kind: str) -> Clock | None:
    if kind == "virtual":
        return None  # the Broker default: a VirtualClock with autojump
    if kind == "wall":
        from .wallclock import WallClock

        return WallClock()
    raise pytest.UsageError(
        f"@pytest.mark.simamqp: clock must be 'virtual' or 'wall', not {kind!r}"
    )


@pytest.fixture
def sim_broker(request: pytest.FixtureRequest) -> Iterator[Broker]:
    """A fresh in-memory broker for this test, registered under a unique URL."""
    from .scenarios import Recorder

    options = _marker_options(request)
    base_seed: int = request.config.getoption("--simamqp-seed")
    node_id: str = request.node.nodeid
    seed = options.get("seed")
    if seed is None:
        seed = derive_seed(base_seed, node_id)
    elif not isinstance(seed, int) or isinstance(seed, bool):
        raise pytest.UsageError(f"@pytest.mark.simamqp: seed must be an int, not {seed!r}")
    broker = Broker(seed=seed, clock=_clock(options.get("clock", "virtual")))
    recorder = None if request.config.getoption("--simamqp-no-record") else Recorder(broker)
    request.node.stash[_STATE] = _State(broker, seed, base_seed, recorder)
    faults = options.get("faults")
    if faults is not None:
        broker.faults.load(faults)
    name = "test-" + hashlib.sha256(node_id.encode()).hexdigest()[:16]
    register(name, broker)
    try:
        yield broker
    finally:
        unregister(name)


@pytest.fixture
def sim_amqp_server(sim_broker: Broker) -> Iterator[Any]:
    """``sim_broker`` served over AMQP 0-9-1 on a free local port (``simamqp.server.Server``).

    Hand ``sim_amqp_server.url`` (``amqp://...``) to pika, aio-pika, a Celery worker process or
    any other client; faults, clock, trace and ``queue()`` stay on ``sim_broker``.
    """
    from .server import Server

    with Server(sim_broker) as server:
        yield server


@pytest.fixture
def sim_celery_config(sim_broker: Broker) -> dict[str, Any]:
    """Celery settings pointing an app under test at ``sim_broker``.

    ``result_backend`` is ``rpcbackend.RPCBackend`` (Celery's ``rpc://`` protocol); with
    ``task_always_eager`` off, run a worker thread (``celery.contrib.testing.worker``) against it.
    """
    return {
        "broker_url": sim_broker.url,
        "result_backend": "rpcbackend.RPCBackend",
        "broker_connection_retry_on_startup": False,
        "worker_hijack_root_logger": False,
    }


def _scenario_path(config: pytest.Config, node_id: str) -> Path:
    option = config.getoption("--simamqp-scenario-dir")
    folder = Path(option) if option else config.rootpath / ".simamqp"
    slug = re.sub(r"[^A-Za-z0-9_.-]+", "_", node_id).strip("_")[:120]
    tag = hashlib.sha256(node_id.encode()).hexdigest()[:8]
    return folder / f"{slug}-{tag}.yaml"


@pytest.hookimpl(wrapper=True)
def pytest_runtest_makereport(
    item: pytest.Item, call: pytest.CallInfo[None]
) -> Generator[None, pytest.TestReport, pytest.TestReport]:
    report: pytest.TestReport = yield
    state = item.stash.get(_STATE, None)
    if state is None or not report.failed or report.when == "teardown":
        return report
    try:
        section = _failure_section(item, state)
    except Exception as err:  # the report must not hide the test's own failure
        section = f"simamqp: could not write the replay scenario: {type(err).__name__}: {err}"
    report.sections.append(("simamqp", section))
    return report


def _failure_section(item: pytest.Item, state: _State) -> str:
    from .scenarios import write

    broker = state.broker
    lines = [
        f"seed: {state.seed} (--simamqp-seed={state.base_seed}, node id {item.nodeid})",
        f"broker: {broker.url if broker.name else '(unregistered)'}  clock: {broker.clock!r}",
        f"trace digest: {broker.trace.digest()} ({len(broker.trace)} events)",
    ]
    if state.recorder is not None:
        data = state.recorder.scenario(
            name=item.nodeid,
            description=f"recorded from {item.nodeid} (seed {state.seed})",
        )
        path = write(data, _scenario_path(item.config, item.nodeid))
        lines += [f"replay scenario: {path}", f"  simamqp run {path}"]
    else:
        lines.append("replay scenario: not recorded (--simamqp-no-record)")
    events = broker.trace.tail(TRACE_TAIL)
    lines += [f"last {len(events)} trace events:", *(f"  {e}" for e in events)]
    return "\n".join(lines)
