"""Fault exploration for pytest (swarm testing): run a ``sim_broker`` test across N seeds where
each seed also draws the fault mix, within limits the test declares.

``@pytest.mark.simamqp_explore(seeds=50, points=..., actions=..., max_rules=3, ...)`` turns a
test that uses ``sim_broker`` into N test items ``test[explore-0]`` ... ``test[explore-N-1]``
(parametrised, so pytest-xdist spreads them over processes and machines like any test). Item
``explore-i`` gets the broker seed the plugin derives from its node id (``--simamqp-seed`` and
the id), and the fault plan ``swarm_plan(seed, limits)`` draws from that same seed: a random
subset of the allowed (point, action) kinds, each with a random rate and parameters.

When an item fails, its report gets what FoundationDB's and TigerBeetle's simulators report:
the fault plan; the plan shrunk to the fewest rules that still fail (each rule dropped in turn,
kept out when the test still fails without it); whether the failure is deterministic (the seed
run twice more, madsim's check, and the trace digests compared); and one command line that
reproduces it. The run ends with one summary per explored test naming its first failing seed
(the lowest index: the same serially and under ``pytest -n``).

Failures are shared through Hypothesis's example database (``--simamqp-explore-db``: a folder,
``redis://host:port/db`` for Hypothesis's ``RedisExampleDatabase``, or ``none``; by default
the database of Hypothesis's current settings profile): every failing seed is saved there,
and the next run (on any machine sharing the database) runs the known failing seeds of a test
first.

Reruns call the test function again with a fresh broker registered under the same URL name, so
a test's other fixtures that reach the broker by URL (``sim_broker.url``, ``sim_celery_config``)
still work; fixtures holding the first broker's objects (a kombu connection made in a fixture)
see the first broker, so an explored test should make its connections itself.
"""

from __future__ import annotations

import inspect
import json
import random
from collections.abc import Generator, Sequence
from dataclasses import asdict, dataclass
from typing import Any

import pytest

from ._broker import Broker, register, unregister
from .core.faults import ACTIONS, ACTIONS_BY_POINT, POINTS, FaultRule

__all__ = ["ExploreCase", "Limits", "shrink", "swarm_plan"]

MARKER = "simamqp_explore"
MARKER_HELP = (
    "simamqp_explore(seeds=50, points=ALL, actions=ALL, queues=(), min_rules=1, max_rules=3, "
    "max_probability=0.5, max_delay=2.0, max_copies=2): run this sim_broker test across seeds, "
    "each drawing a fault plan within these limits (swarm testing)"
)
#: The database key under which failing (test, seed index) pairs are saved.
DB_KEY = b"simamqp-explore:failures"
_CLOSING = frozenset({"close_channel", "close_connection", "restart"})
_QUEUE_POINTS = frozenset({"route", "enqueue", "deliver", "ack"})
_RATES = (0.02, 0.05, 0.1, 0.2, 0.3, 0.5, 0.75, 1.0)


@dataclass(frozen=True)
class Limits:
    """What fault plans a test allows exploration to draw."""

    points: tuple[str, ...] = POINTS
    actions: tuple[str, ...] = ACTIONS
    queues: tuple[str, ...] = ()
    min_rules: int = 1
    max_rules: int = 3
    max_probability: float = 0.5
    max_delay: float = 2.0
    max_copies: int = 2

    def __post_init__(self) -> None:
        for point in self.points:
            if point not in POINTS:
                raise ValueError(f"{MARKER}: unknown point {point!r} (one of {list(POINTS)})")
        for action in self.actions:
            if action not in ACTIONS:
                raise ValueError(f"{MARKER}: unknown action {action!r} (one of {list(ACTIONS)})")
        if not self.kinds():
            raise ValueError(
                f"{MARKER}: no action of {list(self.actions)} is possible at {list(self.points)}"
            )
        if not 0 <= self.min_rules <= self.max_rules:
            raise ValueError(f"{MARKER}: need 0 <= min_rules <= max_rules")
        if not 0 < self.max_probability <= 1:
            raise ValueError(f"{MARKER}: max_probability must be in (0, 1]")

    def kinds(self) -> list[tuple[str, str]]:
        return [
            (p, a)
            for p in self.points
            for a in ACTIONS
            if a in self.actions and a in ACTIONS_BY_POINT[p]
        ]


def swarm_plan(seed: int, limits: Limits = Limits()) -> dict[str, Any]:
    """The fault plan (plain data) seed ``seed`` draws: a random subset of the allowed fault
    kinds (swarm testing: most runs leave most kinds out), each with a random rate."""
    rng = random.Random(f"simamqp-swarm:{seed}")
    kinds = limits.kinds()
    count = rng.randint(min(limits.min_rules, len(kinds)), min(limits.max_rules, len(kinds)))
    rules = []
    for index, (point, action) in enumerate(rng.sample(kinds, count), 1):
        rule: dict[str, Any] = {"name": f"s{index}", "point": point, "action": action}
        rates = [r for r in _RATES if r <= limits.max_probability] or [limits.max_probability]
        probability = rng.choice(rates)
        if probability < 1.0:
            rule["probability"] = probability
        if action in _CLOSING:
            rule["max_count"] = rng.randint(1, 2)
        if action == "delay":
            rule["delay"] = round(rng.uniform(0.01, limits.max_delay), 3)
        if action == "reorder":
            rule["window"] = rng.randint(2, 4)
        if action == "duplicate":
            rule["copies"] = rng.randint(1, limits.max_copies)
        if limits.queues and point in _QUEUE_POINTS and rng.random() < 0.5:
            rule["queue"] = rng.choice(limits.queues)
        FaultRule(**rule)  # a drawn rule is always valid: fail here, not in the broker
        rules.append(rule)
    return {"version": 1, "rules": rules}


@dataclass(frozen=True)
class ExploreCase:
    """The parameter of one exploration item (``request.param`` of ``sim_broker``)."""

    index: int
    limits: Limits

    def __repr__(self) -> str:
        return f"explore-{self.index}"


def _limits(marker: pytest.Mark) -> tuple[int, Limits]:
    """The marker's seeds and limits; a mistake fails collection with one line (no
    traceback: it is the test author's mistake, not simamqp's)."""
    kwargs = dict(marker.kwargs)
    if marker.args:
        pytest.fail(f"@pytest.mark.{MARKER} takes keyword arguments only", pytrace=False)
    seeds = kwargs.pop("seeds", 50)
    for key in ("points", "actions", "queues"):
        if key in kwargs:
            value = kwargs[key]
            kwargs[key] = (value,) if isinstance(value, str) else tuple(value)
    try:
        return int(seeds), Limits(**kwargs)
    except TypeError as err:
        pytest.fail(f"@pytest.mark.{MARKER}: {err}", pytrace=False)
    except ValueError as err:
        pytest.fail(str(err), pytrace=False)


# -- the shared database --------------------------------------------------------------------


def _database(config: pytest.Config) -> Any:
    """Hypothesis's example database chosen by ``--simamqp-explore-db`` (None: none)."""
    choice = config.getoption("--simamqp-explore-db")
    if choice == "none":
        return None
    try:
        from hypothesis import settings
        from hypothesis.database import DirectoryBasedExampleDatabase
    except ImportError:  # pragma: no cover - hypothesis is a test extra
        return None
    if not choice:
        return getattr(settings.default, "database", None)
    if choice.startswith("redis://"):
        try:
            import redis
            from hypothesis.extra.redis import RedisExampleDatabase
        except ImportError:
            raise pytest.UsageError(
                "--simamqp-explore-db redis://... needs the redis package "
                "(pip install 'simamqp[explore]')"
            ) from None
        from urllib.parse import parse_qsl, urlencode, urlsplit, urlunsplit

        # key_prefix=NAME in the query keeps one campaign's keys apart on a shared server.
        parts = urlsplit(choice)
        query = dict(parse_qsl(parts.query))
        prefix = query.pop("key_prefix", "hypothesis-example:")
        url = urlunsplit(parts._replace(query=urlencode(query)))
        return RedisExampleDatabase(redis.Redis.from_url(url), key_prefix=prefix.encode())
    return DirectoryBasedExampleDatabase(choice)


def _entry(test: str, index: int) -> bytes:
    return json.dumps([test, index]).encode()


def known_failures(config: pytest.Config) -> dict[str, list[int]]:
    """test (node id without the parameter) -> failing seed indexes saved in the database.

    Read once per session, by the controller under xdist (workers get it through their
    ``workerinput``, so every worker collects the same items in the same order)."""
    cached: dict[str, list[int]] | None = config.stash.get(_KNOWN, None)
    if cached is not None:
        return cached
    workerinput = getattr(config, "workerinput", None)
    if workerinput is not None and "simamqp_explore_known" in workerinput:
        found: dict[str, list[int]] = json.loads(workerinput["simamqp_explore_known"])
    else:
        found = {}
        db = _database(config)
        if db is not None:
            for value in db.fetch(DB_KEY):
                try:
                    test, index = json.loads(value)
                except (ValueError, TypeError):
                    continue
                found.setdefault(str(test), []).append(int(index))
        found = {k: sorted(set(v)) for k, v in found.items()}
    config.stash[_KNOWN] = found
    return found


_KNOWN = pytest.StashKey[dict[str, list[int]]]()
_FOUND = pytest.StashKey[dict[str, Any]]()
_RESULTS = pytest.StashKey[list[dict[str, Any]]]()


# -- hooks ----------------------------------------------------------------------------------


def pytest_addoption(parser: pytest.Parser) -> None:
    group = parser.getgroup("simamqp")
    group.addoption(
        "--simamqp-explore",
        type=int,
        default=None,
        metavar="N",
        help=f"run each @pytest.mark.{MARKER} test across N seeds (default: the marker's)",
    )
    group.addoption(
        "--simamqp-explore-db",
        default=None,
        metavar="PATH|redis://HOST:PORT/DB|none",
        help="Hypothesis example database that shares failing exploration seeds "
        "(default: Hypothesis's default database)",
    )
    group.addoption(
        "--simamqp-svg-dir",
        default=None,
        help="where failing tests' sequence diagrams are written (default: the replay "
        "scenario's folder, <rootdir>/.simamqp)",
    )


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line("markers", MARKER_HELP)
    config.stash[_RESULTS] = []


@pytest.hookimpl(optionalhook=True)
def pytest_configure_node(node: Any) -> None:
    """pytest-xdist: hand the database's known failures to each worker."""
    node.workerinput["simamqp_explore_known"] = json.dumps(known_failures(node.config))


def _base_id(metafunc: pytest.Metafunc) -> str:
    return metafunc.definition.nodeid


def pytest_generate_tests(metafunc: pytest.Metafunc) -> None:
    marker = metafunc.definition.get_closest_marker(MARKER)
    if marker is None:
        return
    if "sim_broker" not in metafunc.fixturenames:
        pytest.fail(
            f"@pytest.mark.{MARKER} explores tests that use the sim_broker fixture: "
            f"{metafunc.definition.nodeid} uses no sim_broker",
            pytrace=False,
        )
    seeds, limits = _limits(marker)
    override = metafunc.config.getoption("--simamqp-explore")
    if override is not None:
        seeds = override
    known = known_failures(metafunc.config).get(_base_id(metafunc), [])
    order = [i for i in known] + [i for i in range(seeds) if i not in known]
    cases = [ExploreCase(i, limits) for i in order]
    metafunc.parametrize("sim_broker", cases, indirect=True, ids=[repr(c) for c in cases])


def _case(item: pytest.Item) -> ExploreCase | None:
    callspec = getattr(item, "callspec", None)
    param = callspec.params.get("sim_broker") if callspec is not None else None
    return param if isinstance(param, ExploreCase) else None


@pytest.hookimpl(wrapper=True)
def pytest_fixture_setup(
    fixturedef: Any, request: pytest.FixtureRequest
) -> Generator[None, Any, Any]:
    broker = yield
    if fixturedef.argname == "sim_broker":
        case = _case(request.node)
        if case is not None:
            request.node.stash[_PLAN] = plan = swarm_plan(broker.seed, case.limits)
            with broker.lock:
                broker.faults.load(plan)
    return broker


_PLAN = pytest.StashKey[dict[str, Any]]()


@pytest.hookimpl(wrapper=True)
def pytest_pyfunc_call(pyfuncitem: pytest.Function) -> Generator[None, Any, Any]:
    try:
        return (yield)
    except Exception:
        case = _case(pyfuncitem)
        if case is not None and _PLAN in pyfuncitem.stash:
            try:
                pyfuncitem.stash[_FOUND] = _investigate(pyfuncitem, case)
            except Exception as err:  # the report must not hide the test's own failure
                pyfuncitem.stash[_FOUND] = {"error": f"{type(err).__name__}: {err}"}
        raise


def _original(item: pytest.Function) -> Any:
    from .pytest_plugin import _STATE

    return item.stash[_STATE]


def _attempt(item: pytest.Function, rules: Sequence[dict[str, Any]]) -> tuple[bool, str]:
    """Run the test function again on a fresh broker (same seed, these rules): (failed,
    trace digest)."""
    state = _original(item)
    first = state.broker
    broker = Broker(seed=state.seed, clock=_clock_like(first), trace="full")
    broker.faults.load({"version": 1, "rules": list(rules)})
    name = first.name
    if name is not None:
        unregister(name)
        register(name, broker)
    wanted = inspect.signature(item.obj).parameters
    kwargs = {arg: value for arg, value in item.funcargs.items() if arg in wanted}
    kwargs["sim_broker"] = broker
    try:
        item.obj(**kwargs)
    except Exception:
        return True, shape_digest(broker)
    finally:
        if name is not None:
            unregister(name)
            register(name, first)
    return False, shape_digest(broker)


def shape_digest(broker: Broker) -> str:
    """The trace digest with consumer tags renamed in order of first appearance.

    Client libraries name consumers from process-wide counters (kombu's ``None1``, ``None2``
    ...), so the same seed and calls give another tag in a second run in the same process:
    renamed, two runs of the same calls compare equal."""
    import hashlib

    tags: dict[Any, str] = {}
    digest = hashlib.sha256()
    for event in broker.trace.events:
        data = event.to_dict()
        if "consumer_tag" in data:
            data["consumer_tag"] = tags.setdefault(data["consumer_tag"], f"ctag{len(tags) + 1}")
        digest.update(json.dumps(data, sort_keys=True, separators=(",", ":")).encode() + b"\n")
    return digest.hexdigest()


def _clock_like(broker: Broker) -> Any:
    from .wallclock import WallClock

    return WallClock() if isinstance(broker.clock, WallClock) else None


def shrink(rules: Sequence[dict[str, Any]], fails: Any) -> list[dict[str, Any]]:
    """Drop each rule in turn, keeping it out when ``fails(rules)`` still holds: at most
    ``len(rules)`` runs, ending with a plan from which no single rule can be removed."""
    kept = list(rules)
    index = 0
    while index < len(kept) and len(kept) > 0:
        trial = kept[:index] + kept[index + 1 :]
        if fails(trial):
            kept = trial
        else:
            index += 1
    return kept


def _investigate(item: pytest.Function, case: ExploreCase) -> dict[str, Any]:
    state = _original(item)
    plan = item.stash[_PLAN]
    digest = shape_digest(state.broker) if state.broker.trace.complete else ""
    again = [_attempt(item, plan["rules"]) for _ in range(2)]
    if not all(failed for failed, _ in again):
        deterministic = "NO: a rerun passed (flaky: something outside the seed decides)"
    elif all(d == digest for _, d in again):
        deterministic = "yes: failed both times with the same trace"
    elif again[0][1] == again[1][1]:
        deterministic = (
            "yes: failed both times with the same trace (the first run's trace differs: "
            "state left over in the process before it, such as an earlier test's)"
        )
    else:
        deterministic = "same failure, different traces (client state outside the seed)"
    shrunk = shrink(plan["rules"], lambda rules: _attempt(item, rules)[0])
    test = item.nodeid.rsplit("[", 1)[0]
    found = {
        "test": test,
        "index": case.index,
        "nodeid": item.nodeid,
        "seed": state.seed,
        "base_seed": state.base_seed,
        "plan": plan,
        "shrunk": shrunk,
        "deterministic": deterministic,
        "digest": digest,
        "reruns": [{"failed": f, "digest": d} for f, d in again],
        "reproduce": f"pytest '{item.nodeid}' --simamqp-seed={state.base_seed}",
    }
    db = _database(item.config)
    if db is not None:
        db.save(DB_KEY, _entry(test, case.index))
    return found


def _describe(found: dict[str, Any]) -> str:
    if "error" in found:
        return f"exploration could not investigate the failure: {found['error']}"
    runs = ", ".join(
        f"{'failed' if r['failed'] else 'passed'} (digest {r['digest'][:12]})"
        for r in found["reruns"]
    )
    return "\n".join(
        [
            f"failing seed: explore-{found['index']} (broker seed {found['seed']})",
            f"fault plan: {json.dumps(found['plan']['rules'])}",
            f"shrunk to {len(found['shrunk'])} rule(s): {json.dumps(found['shrunk'])}",
            f"deterministic: {found['deterministic']} (first run {found['digest'][:12]}; ran twice "
            f"more: {runs})",
            f"reproduce: {found['reproduce']}",
        ]
    )


@pytest.hookimpl(wrapper=True)
def pytest_runtest_makereport(
    item: pytest.Item, call: pytest.CallInfo[None]
) -> Generator[None, pytest.TestReport, pytest.TestReport]:
    report: pytest.TestReport = yield
    if report.when != "call" or not report.failed:
        return report
    found = item.stash.get(_FOUND, None)
    if found is not None:
        report.sections.append(("simamqp exploration", _describe(found)))
        report.user_properties.append(("simamqp_explore", json.dumps(found)))
    diagram = _write_diagram(item)
    if diagram:
        report.sections.append(("simamqp diagram", diagram))
    return report


def _write_diagram(item: pytest.Item) -> str | None:
    """Write the failing test's sequence diagram next to its replay scenario: the line for
    the report (or None when the test had no sim_broker)."""
    from .pytest_plugin import _STATE, _scenario_path

    state = item.stash.get(_STATE, None)
    if state is None:
        return None
    try:
        from .analysis.svg import sequence_diagram

        option = item.config.getoption("--simamqp-svg-dir")
        if not option and item.config.getoption("--simamqp-no-record"):
            return "sequence diagram: not written (--simamqp-no-record; --simamqp-svg-dir=DIR)"
        path = _scenario_path(item.config, item.nodeid).with_suffix(".svg")
        if option:
            from pathlib import Path

            path = Path(option) / path.name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(sequence_diagram(state.broker, title=item.nodeid), encoding="utf-8")
    except Exception as err:  # the report must not hide the test's own failure
        return f"sequence diagram: not written ({type(err).__name__}: {err})"
    return f"sequence diagram: {path}"


def pytest_runtest_logreport(report: pytest.TestReport) -> None:
    for key, value in report.user_properties:
        if key == "simamqp_explore":
            _session_results.append(json.loads(str(value)))


#: Results seen by this process (the controller, under xdist): module state, as the terminal
#: summary hook has no report of its own; cleared at session start.
_session_results: list[dict[str, Any]] = []


def pytest_sessionstart(session: pytest.Session) -> None:
    _session_results.clear()


def pytest_terminal_summary(terminalreporter: Any) -> None:
    if not _session_results:
        return
    by_test: dict[str, list[dict[str, Any]]] = {}
    for found in _session_results:
        if "test" in found:
            by_test.setdefault(found["test"], []).append(found)
    write = terminalreporter.write_line
    terminalreporter.section("simamqp exploration")
    for test, failures in sorted(by_test.items()):
        first = min(failures, key=lambda f: f["index"])
        indexes = sorted(f["index"] for f in failures)
        write(f"{test}: {len(failures)} failing seed(s) {indexes}; first failing seed:")
        for line in _describe(first).splitlines():
            write("  " + line)


def limits_dict(limits: Limits) -> dict[str, Any]:
    return asdict(limits)
