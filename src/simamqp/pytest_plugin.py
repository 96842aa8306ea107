"""pytest plugin (``pytest11`` entry point ``simamqp``): fixtures, marker, option, failure report.

- ``sim_broker``: a fresh ``simamqp.Broker`` per test, registered under a unique URL, with a
  seed derived from ``--simamqp-seed`` and the test's node id (the same in any process, order or
  pytest-xdist worker). Everything the test does to it is recorded.
- ``@pytest.mark.simamqp(seed=..., clock="virtual"|"wall", faults=...)`` configures it.
- ``sim_broker_factory``: session-scoped, so Hypothesis accepts it in ``@given`` tests;
  ``with sim_broker_factory() as broker:`` gives a fresh broker per example, seeded and
  recorded like ``sim_broker``.
- ``sim_celery_config``: ``broker_url``/``result_backend`` settings for a Celery app under test;
  ``sim_celery_worker(app)``: an in-thread worker for it, stopped at the end of the test.
- When a test using ``sim_broker`` (or the factory) fails, its report gets a ``simamqp``
  section: the seed, the last trace events, the path of a scenario file that replays the test
  (``simamqp run PATH``), written under ``<rootdir>/.simamqp/``, and what reproduces the run
  (the seed only when one thread used the broker; the scenario file always).
"""

from __future__ import annotations

import hashlib
import itertools
import re
from collections.abc import Generator, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

# This module is loaded in every pytest process (``pytest11``) and importing simamqp imports the
# ``kombu`` package. pytester's in-process runs restore ``sys.modules`` afterwards but not the
# attributes a run set on a package that was already there: a kombu submodule first imported
# inside one run stays reachable as ``kombu.messaging`` (``from . import messaging``) or through
# kombu's lazy ``kombu.Connection`` while the next run imports a fresh copy, and kombu's
# ``isinstance(obj, Connection)`` checks fail between the two. So import kombu's public modules,
# and our transport with py-amqp, here: no run imports them for the first time.
import kombu.common
import kombu.connection
import kombu.entity
import kombu.messaging
import kombu.pools
import kombu.simple  # noqa: F401
import pytest

from . import transport as _transport  # noqa: F401
from ._broker import Broker, register, unregister
from .core.clock import Clock

__all__ = ["BrokerFactory", "derive_seed"]

#: Fault exploration (@pytest.mark.simamqp_explore) and failing tests' sequence diagrams.
pytest_plugins = ["simamqp._explore"]

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
#: The test's ``sim_celery_worker`` (its workers' errors go into the failure report).
_WORKERS = pytest.StashKey[Any]()
#: The test item running now (for the session-scoped factory), on the config's stash.
_CURRENT = pytest.StashKey[pytest.Item]()


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
    return _item_marker_options(request.node)


def _item_marker_options(item: pytest.Item) -> dict[str, Any]:
    marker = item.get_closest_marker("simamqp")
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


def _seed_for(item: pytest.Item, options: dict[str, Any]) -> tuple[int, int]:
    """(seed, base seed) for a broker of ``item``: the marker's, or derived from the node id."""
    base_seed: int = item.config.getoption("--simamqp-seed")
    seed = options.get("seed")
    if seed is None:
        seed = derive_seed(base_seed, item.nodeid)
    elif not isinstance(seed, int) or isinstance(seed, bool):
        raise pytest.UsageError(f"@pytest.mark.simamqp: seed must be an int, not {seed!r}")
    return seed, base_seed


@contextmanager
def _test_broker(item: pytest.Item, options: dict[str, Any], name: str) -> Iterator[Broker]:
    """A broker for ``item``, registered as ``name``, recorded, attached to its report."""
    from .scenarios import Recorder

    seed, base_seed = _seed_for(item, options)
    broker = Broker(seed=seed, clock=_clock(options.get("clock", "virtual")))
    recorder = None if item.config.getoption("--simamqp-no-record") else Recorder(broker)
    item.stash[_STATE] = _State(broker, seed, base_seed, recorder)
    faults = options.get("faults")
    if faults is not None:
        broker.faults.load(faults)
    register(name, broker)
    try:
        yield broker
    finally:
        unregister(name)


@pytest.fixture
def sim_broker(request: pytest.FixtureRequest) -> Iterator[Broker]:
    """A fresh in-memory broker for this test, registered under a unique URL."""
    node_id: str = request.node.nodeid
    name = "test-" + hashlib.sha256(node_id.encode()).hexdigest()[:16]
    with _test_broker(request.node, _marker_options(request), name) as broker:
        yield broker


class BrokerFactory:
    """Fresh brokers inside one test: ``with sim_broker_factory() as broker: ...``.

    For Hypothesis (one broker per example; a function-scoped fixture fails its health
    check) and for tests that need several brokers. Each broker gets the test's seed (the
    marker's, or derived from ``--simamqp-seed`` and the node id, as ``sim_broker``), the
    marker's clock and faults unless given here, a unique URL for the ``with`` block, and is
    recorded: when the test fails, the report describes the last broker created.
    """

    def __init__(self, config: pytest.Config) -> None:
        self._config = config
        self._counter = itertools.count(1)

    @contextmanager
    def __call__(
        self, *, seed: int | None = None, clock: str | None = None, faults: Any = None
    ) -> Iterator[Broker]:
        item = self._config.stash.get(_CURRENT, None)
        if item is None:
            raise RuntimeError("sim_broker_factory() is only usable while a test runs")
        options = _item_marker_options(item)
        if seed is not None:
            options["seed"] = seed
        if clock is not None:
            options["clock"] = clock
        if faults is not None:
            options["faults"] = faults
        name = (
            f"factory-{next(self._counter)}-"
            + hashlib.sha256(item.nodeid.encode()).hexdigest()[:12]
        )
        with _test_broker(item, options, name) as broker:
            yield broker


@pytest.fixture(scope="session")
def sim_broker_factory(pytestconfig: pytest.Config) -> BrokerFactory:
    """Make fresh brokers inside a test (one per Hypothesis example): see ``BrokerFactory``."""
    return BrokerFactory(pytestconfig)


@pytest.hookimpl(wrapper=True)
def pytest_runtest_protocol(item: pytest.Item, nextitem: pytest.Item | None) -> Iterator[None]:
    item.config.stash[_CURRENT] = item
    try:
        return (yield)
    finally:
        del item.config.stash[_CURRENT]


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
    ``task_always_eager`` off, run a worker thread (``sim_celery_worker``, or
    ``celery.contrib.testing.worker``) against it. On the default virtual clock the worker's
    countdowns, ETAs and retries run on the broker's clock (``advance`` makes them due; a test
    that waits gets them at once), see docs/threads.md.
    """
    return {
        "broker_url": sim_broker.url,
        "result_backend": "rpcbackend.RPCBackend",
        "broker_connection_retry_on_startup": False,
        "worker_hijack_root_logger": False,
    }


@pytest.fixture
def sim_celery_worker(request: pytest.FixtureRequest, sim_broker: Broker) -> Iterator[Any]:
    """Start in-thread Celery workers for this test: ``sim_celery_worker(app, pool="solo")``.

    Returns the running worker; every worker is stopped when the test ends. What a worker logs
    at ERROR or above goes into the test's failure report, not into a passing run's output.
    See ``simamqp._celery_worker.CeleryWorkers`` and docs/pytest-plugin.md.
    """
    from ._celery_worker import CeleryWorkers

    workers = CeleryWorkers()
    request.node.stash[_WORKERS] = workers
    try:
        yield workers
    finally:
        workers.close()


def _reproduction(item: pytest.Item, state: _State, threads: int, path: Path | None) -> list[str]:
    """What reproduces this run, honestly: the seed only pins a single-threaded run."""
    replay = f"the replay scenario reproduces the broker side: simamqp run {path}"
    if path is None:
        replay = "record it (drop --simamqp-no-record) to get a replay scenario"
    examples = _hypothesis_note(item)
    if threads <= 1:
        return [
            f"reproduce: pytest '{item.nodeid}' --simamqp-seed={state.base_seed} "
            "(one thread used the broker: same seed and calls give the same trace"
            + examples
            + "); "
            + replay
        ]
    return [
        f"reproduce: {threads} threads used the broker, so their interleaving (not the seed) "
        "decided the order of calls and a re-run may differ" + examples + "; " + replay
    ]


def _hypothesis_note(item: pytest.Item) -> str:
    """For a Hypothesis test: what makes a re-run reach the same example (not the seed)."""
    test = getattr(item, "obj", None)
    if not getattr(test, "is_hypothesis_test", False):
        return ""
    import hypothesis

    chosen = getattr(test, "_hypothesis_internal_use_settings", None)
    database = getattr(chosen or hypothesis.settings.default, "database", None)
    if database is None:
        return (
            "; Hypothesis chooses the examples and its example database is off "
            "(database=None): the failing example is replayed with the @reproduce_failure "
            "decorator Hypothesis prints under settings(print_blob=True)"
        )
    where = getattr(database, "path", None)
    place = f" ({where})" if where is not None else f" ({database!r})"
    return (
        "; Hypothesis chooses the examples: a re-run replays the failing one from its "
        f"example database{place}, so keep that database"
    )


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
    workers = item.stash.get(_WORKERS, None)
    if workers is not None and report.failed:
        said = workers.report()
        if said:
            report.sections.append(("simamqp: Celery worker errors", said))
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
    threads = broker.threads_seen()
    lines = [
        f"seed: {state.seed} (--simamqp-seed={state.base_seed}, node id {item.nodeid})",
        f"broker: {broker.url if broker.name else '(unregistered)'}  clock: {broker.clock!r}",
        f"trace digest: {broker.trace.digest()} ({len(broker.trace)} events)",
    ]
    path = None
    if state.recorder is not None:
        data = state.recorder.scenario(
            name=item.nodeid,
            description=f"recorded from {item.nodeid} (seed {state.seed})",
        )
        path = write(data, _scenario_path(item.config, item.nodeid))
        lines += [f"replay scenario: {path}", f"  simamqp run {path}"]
    else:
        lines.append("replay scenario: not recorded (--simamqp-no-record)")
    lines += _reproduction(item, state, threads, path)
    events = broker.trace.tail(TRACE_TAIL)
    lines += [f"last {len(events)} trace events:", *(f"  {e}" for e in events)]
    return "\n".join(lines)
