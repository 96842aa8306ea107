"""One session per concern, each runnable alone (`nox -s NAME`), as urllib3 does."""

from __future__ import annotations

import os
import re
from collections import Counter

import nox

nox.options.sessions = ["lint", "typing", "tests"]
nox.options.reuse_existing_virtualenvs = True

PYTHON = ["3.11", "3.12", "3.13"]
RABBITMQ_URL = os.environ.get("SIMAMQP_RABBITMQ_URL", "amqp://guest:guest@127.0.0.1:5672//")


@nox.session(python=PYTHON[0])
def tests(session: nox.Session) -> None:
    """The whole test suite (simamqp and RabbitMQ sides), as the README runs it."""
    session.install(".[test]")
    session.run("pytest", *session.posargs)


@nox.session(python=PYTHON[0])
def conformance(session: nox.Session) -> None:
    """The differential suite against RabbitMQ, with a deep state-machine run."""
    session.install(".[test]")
    session.env["SIMAMQP_DIFF_EXAMPLES"] = session.env.get("SIMAMQP_DIFF_EXAMPLES", "3000")
    session.env["SIMAMQP_DIFF_SELFCHECK_EXAMPLES"] = session.env.get(
        "SIMAMQP_DIFF_SELFCHECK_EXAMPLES", "200"
    )
    session.env["SIMAMQP_HOSTILE_EXAMPLES"] = session.env.get("SIMAMQP_HOSTILE_EXAMPLES", "3000")
    session.run("pytest", "tests/conformance", *session.posargs)


@nox.session(python=PYTHON[0])
def properties(session: nox.Session) -> None:
    """Property tests with a large budget (>= 2,000 state-machine examples)."""
    session.install(".[test]")
    session.env["SIMAMQP_PROPERTY_EXAMPLES"] = session.env.get("SIMAMQP_PROPERTY_EXAMPLES", "2000")
    session.run("pytest", "tests/property", *session.posargs)


@nox.session(python=PYTHON[0])
def scenarios(session: nox.Session) -> None:
    """Replay the bundled scenario library with the CLI."""
    session.install(".")
    session.run("simamqp", "run", "scenarios/", *session.posargs)


@nox.session(python=PYTHON[0])
def fuzz(session: nox.Session) -> None:
    """Fuzz the scenario loader and CLI with >= 2,000 generated malformed files."""
    session.install(".[test]")
    session.env["SIMAMQP_FUZZ_FILES"] = session.env.get("SIMAMQP_FUZZ_FILES", "2500")
    session.run("pytest", "tests/scenarios/test_fuzz_loader.py", *session.posargs)


@nox.session(python=PYTHON[0])
def bench(session: nox.Session) -> None:
    """Benchmarks: ratios measured side by side in one run (simamqp, memory://, RabbitMQ)."""
    session.install(".[test]")
    session.run("python", "-m", "benchmarks", *session.posargs)


@nox.session(python=PYTHON[0])
def peers(session: nox.Session) -> None:
    """kombu's and Celery's own integration suites, unedited, on RabbitMQ and on simamqp.

    Downloads the installed versions' sdists through pip, prints the per-test differences and
    fails on a test that passes on RabbitMQ only (docs/peers.md). kombu's suite runs on RabbitMQ,
    simamqp:// and simamqp serve; Celery's on simamqp serve and RabbitMQ with its own prefork
    pool (about 16 minutes per broker and backend). Extra arguments replace the default
    selection, e.g. ``nox -s peers -- celery --broker both`` (simamqp:// with a threads pool).
    """
    session.install(".[test]", "pydantic", "pytest-timeout", "redis", "cryptography")
    if session.posargs:
        session.run("python", "tests/peers/run.py", *session.posargs)
        return
    session.run("python", "tests/peers/run.py", "kombu", "--broker", "all")
    # Celery's suite as Celery's CI runs it (prefork pool): on simamqp serve and on RabbitMQ.
    backends = ["--celery-backend", "rpc://", "--celery-backend", "rpcbackend.RPCBackend"]
    session.run("python", "tests/peers/run.py", "celery", "--broker", "served", *backends)


@nox.session(python=PYTHON[0])
def lint(session: nox.Session) -> None:
    session.install("ruff")
    session.run("ruff", "check", "src", "tests", "benchmarks", "examples", "noxfile.py")
    session.run("ruff", "format", "--check", "src")


@nox.session(python=PYTHON[0])
def typing(session: nox.Session) -> None:
    """mypy --strict on the shipped packages."""
    session.install(".[test]", "mypy", "types-PyYAML")
    session.run("mypy", "--strict", "src")


@nox.session(python=PYTHON[0])
def mutants(session: nox.Session) -> None:
    """Mutation testing (docs/mutation.md): mutmut 3 over the core, the kombu transport and
    rpcbackend, against the tests that need no RabbitMQ ([tool.mutmut] in pyproject.toml).

    Posargs are mutant-name globs to run only some modules, e.g.
    ``nox -s mutants -- "simamqp.core.exchanges*"``. Ends with the score per module.
    """
    session.install(".[test]", "mutmut>=3.8,<4")
    session.env["CI"] = ""  # RabbitMQ tests are deselected here, not required
    session.run("mutmut", "run", *session.posargs)
    out = session.run("mutmut", "results", "--all", "true", silent=True) or ""
    tally: dict[str, Counter[str]] = {}
    for line in out.splitlines():
        found = re.match(r"\s*(\S+?)\.x[_\u01c1]\S*: (.+)$", line)
        if found:
            tally.setdefault(found[1], Counter())[found[2]] += 1
    rows = ["module  killed  survived  no-tests  other  score(killed/checked)"]
    for module, counts in sorted(tally.items()):
        killed, survived = counts["killed"], counts["survived"]
        other = sum(counts.values()) - killed - survived - counts["no tests"]
        checked = killed + survived
        score = f"{killed / checked:.1%}" if checked else "-"
        rows.append(f"{module}  {killed}  {survived}  {counts['no tests']}  {other}  {score}")
    session.log("\n".join(rows))
