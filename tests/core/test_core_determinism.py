"""Determinism and layering.

DESIGN.md: "Same seed + same calls = the same trace, byte for byte", in any process and under
any PYTHONHASHSEED; and the core is sans-IO (no kombu, pytest, yaml, threading imports, no
time.sleep/time.time calls).
"""

from __future__ import annotations

import ast
import itertools
import os
import subprocess
import sys
from pathlib import Path

from simamqp.core import Broker

CORE = Path(__file__).resolve().parents[2] / "src" / "simamqp" / "core"

WORKLOAD = r"""
import sys
from simamqp.core import Broker

def run(seed):
    b = Broker(seed=seed)
    c = b.connect()
    ch = c.channel()
    ch.exchange_declare("t", "topic")
    ch.exchange_declare("h", "headers")
    ch.exchange_declare("dlx", "fanout")
    names = [ch.queue_declare("", arguments={"x-dead-letter-exchange": "dlx",
                                             "x-message-ttl": 500 + 100 * i})[0]
             for i in range(4)]
    ch.queue_declare("dead")
    ch.queue_bind("dead", "dlx")
    for i, n in enumerate(names):
        ch.queue_bind(n, "t", ["a.#", "*.b", "#", "a.b"][i])
        ch.queue_bind(n, "h", "", {"x-match": "any", "k": i, "set": {"x": i}})
    ch.confirm_select()
    tags = [ch.basic_consume(n) for n in names[:2]]
    for i in range(40):
        ch.basic_publish(str(i).encode(), "t", ["a.b", "a", "x.b", "q"][i % 4],
                         mandatory=True, properties={"priority": i % 3,
                         "application_headers": {"k": i % 4, "set": {"x": i % 4}, "f": 0.5}})
        ch.basic_publish(b"h", "h", "", properties={"application_headers": {"k": i % 5}})
    for frame in list(c.outbox):
        tag = getattr(frame, "delivery_tag", None)
        if type(frame).__name__ == "BasicDeliver":
            if tag % 3 == 0:
                ch.basic_reject(tag, requeue=False)
            elif tag % 3 == 1:
                ch.basic_nack(tag, requeue=True)
            else:
                ch.basic_ack(tag)
    b.advance(2)
    ch.basic_cancel(tags[0])
    while ch.basic_get("dead") is not None:
        pass
    ch.basic_recover()
    b.restart()
    return b.trace.digest(), len(b.trace)

print(*run(int(sys.argv[1])))
"""


def _workload_digest(seed: int, hashseed: str) -> str:
    env = dict(os.environ, PYTHONHASHSEED=hashseed)
    out = subprocess.run(
        [sys.executable, "-c", WORKLOAD, str(seed)],
        env=env,
        capture_output=True,
        text=True,
        check=True,
        timeout=60,
    )
    return out.stdout.strip()


def test_same_seed_same_calls_same_trace_digest() -> None:
    """DESIGN.md determinism: two brokers with the same seed and calls have identical traces;
    a different seed changes the generated names and so the digest."""
    namespace: dict[str, object] = {}
    exec(
        compile(WORKLOAD.replace("print(*run(int(sys.argv[1])))", ""), "<workload>", "exec"),
        namespace,
    )
    run = namespace["run"]
    first = run(7)  # type: ignore[operator]
    assert first == run(7)  # type: ignore[operator]
    assert first[1] > 200
    assert run(8)[0] != first[0]  # type: ignore[operator]


def test_digest_is_the_same_under_different_pythonhashseed() -> None:
    """Issue 3 acceptance: the same seeded workload in two subprocesses with different
    PYTHONHASHSEED gives the same digest (no set/dict-hash order leaks into the trace)."""
    a = _workload_digest(7, "0")
    b = _workload_digest(7, "12345")
    c = _workload_digest(7, "random")
    assert a == b == c
    assert a.startswith("v2:") and len(a.split()[0]) == 3 + 64  # digest v2 (core/trace.py)


def test_server_named_entities_come_from_the_seed() -> None:
    """Generated queue names and consumer tags are drawn from the seeded random (DESIGN.md)."""

    def names(seed: int) -> tuple[str, str]:
        ch = Broker(seed=seed).connect().channel()
        q = ch.queue_declare("")[0]
        return q, ch.basic_consume(q)

    assert names(3) == names(3)
    assert names(3) != names(4)


# -- layering ---------------------------------------------------------------------------------

FORBIDDEN_MODULES = {
    "kombu",
    "amqp",
    "pytest",
    "yaml",
    "threading",
    "socket",
    "select",
    "asyncio",
    "_thread",
    "hypothesis",
    "celery",
}
FORBIDDEN_CALLS = {
    ("time", "sleep"),
    ("time", "time"),
    ("time", "monotonic"),
    ("time", "perf_counter"),
}


def _core_files() -> list[Path]:
    files = sorted(CORE.glob("*.py"))
    assert files, CORE
    return files


def import_offences(source: str, name: str) -> list[str]:
    """Imports of forbidden modules, of simamqp's upper layers, or relative ones above core."""
    offences = []
    for node in ast.walk(ast.parse(source, name)):
        if isinstance(node, ast.Import):
            mods = [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                if node.level > 1:
                    offences.append(f"{name}:{node.lineno} relative import above core")
                continue
            mods = [node.module or ""]
        else:
            continue
        for mod in mods:
            top = mod.split(".")[0]
            if top in FORBIDDEN_MODULES or (
                top == "simamqp" and not mod.startswith("simamqp.core")
            ):
                offences.append(f"{name}:{node.lineno} imports {mod}")
    return offences


def clock_offences(source: str, name: str) -> list[str]:
    """Uses of time.sleep/time.time/... however time or its functions were imported."""
    tree = ast.parse(source, name)
    time_aliases = {"time"}
    from_time: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            for alias in node.names:
                if alias.name == "time":
                    time_aliases.add(alias.asname or "time")
        elif isinstance(node, ast.ImportFrom) and node.module == "time":
            for alias in node.names:
                if ("time", alias.name) in FORBIDDEN_CALLS:
                    from_time.add(alias.asname or alias.name)
    offences = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Attribute) and isinstance(node.value, ast.Name):
            if node.value.id in time_aliases and ("time", node.attr) in FORBIDDEN_CALLS:
                offences.append(f"{name}:{node.lineno} time.{node.attr}")
        elif isinstance(node, ast.Name) and node.id in from_time:
            offences.append(f"{name}:{node.lineno} {node.id}")
    return offences


def test_core_imports_nothing_from_upper_layers() -> None:
    """DESIGN.md layers / issue 3 acceptance: the core imports nothing from kombu, pytest, yaml,
    threading (or sockets), and nothing from simamqp's upper layers."""
    offences = [o for p in _core_files() for o in import_offences(p.read_text(), p.name)]
    assert offences == []


def test_core_never_sleeps_or_reads_the_wall_clock() -> None:
    """DESIGN.md: the core never calls time.sleep/time.time (it reads the injected clock)."""
    offences = [o for p in _core_files() for o in clock_offences(p.read_text(), p.name)]
    assert offences == []


def test_the_layering_checks_catch_offences() -> None:
    """The AST checks above are not vacuous (DESIGN.md layers: the checks must catch aliases)."""
    bad = (
        "import time as t\nimport kombu.transport\nfrom threading import Lock\n"
        "from time import sleep as nap\nfrom simamqp import transport\nfrom .. import x\n"
        "t.sleep(1)\nnap(1)\nt.time()\n"
    )
    assert len(import_offences(bad, "bad.py")) == 4
    assert clock_offences(bad, "bad.py") == [
        "bad.py:7 time.sleep",
        "bad.py:8 nap",
        "bad.py:9 time.time",
    ]


def test_trace_records_every_kind_of_event() -> None:
    """Issue 3: the trace has every publish, route, enqueue, deliver, ack, nack, reject,
    expire, dead-letter, return, confirm and restart event; events are numbered and timed."""
    broker = Broker(seed=2)
    conn = broker.connect()
    ch = conn.channel()
    ch.queue_declare("dlq")
    ch.queue_declare(
        "q",
        arguments={
            "x-dead-letter-exchange": "",
            "x-message-ttl": 1000,
            "x-dead-letter-routing-key": "dlq",
        },
    )
    ch.confirm_select()
    for body in (b"a", b"b", b"c", b"d"):
        ch.basic_publish(body, "", "q")
    ch.basic_publish(b"lost", "amq.direct", "nowhere", mandatory=True)
    tags = [ch.basic_get("q").delivery_tag for _ in range(3)]  # type: ignore[union-attr]
    ch.basic_ack(tags[0])
    ch.basic_nack(tags[1], requeue=True)
    ch.basic_reject(tags[2], requeue=False)
    ch.basic_consume("dlq", no_ack=True)
    broker.advance(2)
    broker.restart()
    kinds = {event.kind for event in broker.trace}
    wanted = {
        "publish",
        "route",
        "enqueue",
        "deliver",
        "get",
        "ack",
        "nack",
        "reject",
        "expire",
        "dead-letter",
        "return",
        "confirm",
        "restart",
    }
    assert wanted <= kinds, wanted - kinds
    events = broker.trace.events
    assert [e.seq for e in events] == list(range(1, len(events) + 1))
    assert all(a.time <= b.time for a, b in itertools.pairwise(events))


def private_reach_offences(source: str, name: str) -> list[str]:
    """``something._name`` where ``something`` is not ``self``/``cls``: a reach into another
    object's private names (core files call each other through public, documented methods)."""
    offences = []
    for node in ast.walk(ast.parse(source, name)):
        if (
            isinstance(node, ast.Attribute)
            and node.attr.startswith("_")
            and not node.attr.startswith("__")
            and not (isinstance(node.value, ast.Name) and node.value.id in ("self", "cls"))
        ):
            offences.append(f"{name}:{node.lineno} {ast.unparse(node)}")
    return offences


def test_the_private_reach_check_finds_a_reach() -> None:
    source = "def f(broker):\n    broker._emit('x')\n    self._ok = 1\n    self.broker._tick()\n"
    assert private_reach_offences(source, "m.py") == [
        "m.py:2 broker._emit",
        "m.py:4 self.broker._tick",
    ]


def test_no_core_module_reaches_into_another_objects_private_names() -> None:
    """Issue 20: each core file calls the others only through named methods meant for it."""
    offences = [o for p in _core_files() for o in private_reach_offences(p.read_text(), p.name)]
    assert offences == []
