"""One session per concern, each runnable alone (`nox -s NAME`), as urllib3 does."""

from __future__ import annotations

import datetime
import os
import re
import shutil
import subprocess
import tempfile
import xml.etree.ElementTree as ET
from collections import Counter
from pathlib import Path

import nox

# The matrix cells are parametrised sessions with ids (``matrix-3.11(oldest)``): older nox
# versions name and select them differently, so `nox -s matrix` would not list the cells.
nox.needs_version = ">=2024.3.2"
nox.options.sessions = ["lint", "typing", "tests"]
nox.options.reuse_existing_virtualenvs = True

PYTHON = ["3.11", "3.12", "3.13"]
RABBITMQ_URL = os.environ.get("SIMAMQP_RABBITMQ_URL", "amqp://guest:guest@127.0.0.1:5672//")
ROOT = Path(__file__).resolve().parent


def _let_pyenv_shims_find_every_python() -> None:
    """pyenv installs 3.12 and 3.13 next to the selected 3.11, but its ``python3.12`` shim only
    answers for the selected versions: select them all (the selected one first, so ``python3``
    is unchanged) for this process and the sessions it starts."""
    if "PYENV_VERSION" in os.environ or shutil.which("pyenv") is None:
        return
    pyenv = ["pyenv", "versions", "--bare"]
    installed = subprocess.run(pyenv, capture_output=True, text=True, check=False).stdout.split()
    current = subprocess.run(
        ["pyenv", "version-name"], capture_output=True, text=True, check=False
    ).stdout.strip()
    chosen = [name for name in current.split(":") if name]
    for wanted in PYTHON:
        matches = [v for v in installed if re.fullmatch(re.escape(wanted) + r"\.\d+", v)]
        if matches and not any(c.startswith(wanted) for c in chosen):
            chosen.append(max(matches, key=lambda v: [int(p) for p in v.split(".")]))
    if chosen:
        os.environ["PYENV_VERSION"] = ":".join(chosen)


_let_pyenv_shims_find_every_python()


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


# -- The version matrix (docs/matrix.md) ------------------------------------------------------

#: What the matrix varies, by distribution name. The "oldest" stack is read from the lower bounds
#: in pyproject.toml, so the declared ranges and the tested versions cannot drift apart.
MATRIX_PACKAGES = ["kombu", "amqp", "celery", "pika", "aio-pika"]
#: A middle stack: Celery 5.5 (quorum-queue support) with its kombu and py-amqp.
MIDDLE = {"kombu": "5.5.4", "amqp": "5.3.1", "celery": "5.5.3"}
#: The parts of the suite that depend on those versions: the transport and its boundary with
#: py-amqp and kombu, the pytest plugin (Celery fixtures), Celery apps and in-thread workers,
#: rpcbackend (Celery's rpc:// protocol), and the server's clients (pika, aio-pika, a Celery
#: worker process). Each runs against RabbitMQ too, where the test compares with it.
MATRIX_TESTS = [
    "tests/kombu",
    "tests/plugin",
    "tests/celery",
    "tests/rpcbackend",
    "tests/server/test_pika.py",
    "tests/server/test_aio_pika.py",
    "tests/server/test_celery_worker.py",
]
MATRIX_DOC = ROOT / "docs" / "matrix.md"
_BEGIN, _END = "<!-- matrix:begin -->", "<!-- matrix:end -->"


def lower_bounds() -> dict[str, str]:
    """The ``>=`` bound of each matrix package in pyproject.toml (dependencies and test extra)."""
    import tomllib

    project = tomllib.loads((ROOT / "pyproject.toml").read_text(encoding="utf-8"))["project"]
    specs = [*project["dependencies"], *project["optional-dependencies"]["test"]]
    bounds = {}
    for spec in specs:
        found = re.fullmatch(r"([A-Za-z0-9_.-]+)\s*>=\s*([0-9][0-9.]*)\s*(,.*)?", spec.strip())
        if found and found[1].lower() in MATRIX_PACKAGES:
            bounds[found[1].lower()] = found[2]
    missing = set(MATRIX_PACKAGES) - set(bounds)
    if missing:
        raise RuntimeError(f"pyproject.toml declares no >= bound for {sorted(missing)}")
    return bounds


def stack_requirements(stack: str) -> list[str]:
    """pip arguments that install ``stack``: exact pins, or the newest releases."""
    if stack == "oldest":
        return [f"{name}=={version}" for name, version in lower_bounds().items()]
    if stack == "middle":
        # pika and aio-pika: the oldest supported and the newest are what the server tests need;
        # the middle cell takes the newest, as a user upgrading Celery would.
        return [f"{n}=={v}" for n, v in MIDDLE.items()] + ["--upgrade", "pika", "aio-pika"]
    return ["--upgrade", *MATRIX_PACKAGES]


@nox.session(python=PYTHON)
@nox.parametrize("stack", [nox.param(s, id=s) for s in ("oldest", "middle", "newest")])
def matrix(session: nox.Session, stack: str) -> None:
    """A version-matrix cell: the version-dependent tests on one Python and dependency stack.

    The stacks: the oldest supported (pyproject.toml's lower bounds), a middle and the newest
    releases of kombu, py-amqp, Celery, pika and aio-pika.

    `nox -s matrix` runs every cell (one at a time); `nox -s "matrix-3.11(oldest)"` one. Each
    cell rewrites its row of the table in docs/matrix.md with the versions it installed and its
    result. RabbitMQ must answer (``CI`` is set): the Celery and client tests compare with it.
    Posargs replace the test selection.
    """
    session.install(".[test]", "pytest-timeout", *stack_requirements(stack))
    versions = session.run(
        "python",
        "-c",
        "import platform, importlib.metadata as m, sys; "
        f"names = {MATRIX_PACKAGES!r}; "
        "print(platform.python_version(), *[m.version(n) for n in names])",
        silent=True,
    )
    installed = dict(zip(["python", *MATRIX_PACKAGES], str(versions).split(), strict=True))
    session.env.setdefault("CI", os.environ.get("CI", "true"))
    report = Path(tempfile.mkdtemp()) / "junit.xml"
    selection = session.posargs or MATRIX_TESTS
    session.run(
        "pytest",
        "-p",
        "no:cacheprovider",
        "--timeout=600",
        f"--junitxml={report}",
        *selection,
        success_codes=range(6),  # recorded below, then the session fails on any failure
    )
    counts, failed = _junit_results(report)
    # A developer's run records the cell in docs/matrix.md; CI (which runs two cells) leaves the
    # checkout as it found it.
    if not session.posargs and not _truthy(os.environ.get("CI")):
        cell = f"matrix-{session.python}({stack})"
        _record_cell(cell, installed, _summary(counts, failed))
    session.log(f"{installed}: {_summary(counts, failed)}")
    if failed or not counts["passed"]:
        session.error(f"{len(failed)} tests failed on {installed}")


def _truthy(value: str | None) -> bool:
    return (value or "").strip().lower() in {"1", "true", "yes", "on"}


def _junit_results(report: Path) -> tuple[Counter[str], list[str]]:
    """Outcome counts and the failed tests' ids, from pytest's JUnit XML report."""
    counts: Counter[str] = Counter()
    failed: list[str] = []
    for case in ET.parse(report).getroot().iter("testcase"):
        outcome = "passed"
        for child in case:
            if child.tag in ("failure", "error"):
                outcome = child.tag
            elif child.tag == "skipped":
                outcome = "xfailed" if child.get("type") == "pytest.xfail" else "skipped"
        counts[outcome] += 1
        if outcome in ("failure", "error"):
            module, name = case.get("classname", ""), case.get("name", "")
            failed.append(f"{module.replace('.', '/')}.py::{name}" if module else name)
    return counts, failed


def _summary(counts: Counter[str], failed: list[str]) -> str:
    words = {"passed": "passed", "failure": "failed", "error": "errors", "skipped": "skipped"}
    text = ", ".join(f"{counts[k]} {w}" for k, w in words.items() if counts[k])
    if counts["xfailed"]:
        text += f", {counts['xfailed']} xfailed"
    if failed:
        shown = ", ".join(f"`{name}`" for name in failed[:8])
        more = f" and {len(failed) - 8} more" if len(failed) > 8 else ""
        text += f": {shown}{more}"
    return text


def _record_cell(cell: str, installed: dict[str, str], result: str) -> None:
    """Rewrite ``cell``'s row of the table between the markers in docs/matrix.md."""
    text = MATRIX_DOC.read_text(encoding="utf-8")
    head, rest = text.split(_BEGIN, 1)
    table, tail = rest.split(_END, 1)
    rows = {}
    for line in table.strip().splitlines()[2:]:
        rows[line.split("|")[1].strip().strip("`")] = line
    when = datetime.datetime.now(datetime.UTC).strftime("%Y-%m-%d")
    versions = " | ".join(installed[k] for k in ["python", *MATRIX_PACKAGES])
    rows[cell] = f"| `{cell}` | {versions} | {result} | {when} |"
    order = [f"matrix-{py}({stack})" for py in PYTHON for stack in ("oldest", "middle", "newest")]
    ordered = [rows[c] for c in order if c in rows]
    header = (
        "| cell | Python | kombu | py-amqp | Celery | pika | aio-pika | result | run on |\n"
        "|---|---|---|---|---|---|---|---|---|"
    )
    body = "\n".join([header, *ordered])
    MATRIX_DOC.write_text(f"{head}{_BEGIN}\n{body}\n{_END}{tail}", encoding="utf-8")


@nox.session(python=PYTHON[0])
def package(session: nox.Session) -> None:
    """Build the sdist and the wheel, `twine check` them, install the wheel (not the source tree)
    in a fresh virtualenv and run the Quick start's first command with it."""
    session.install("build", "twine")
    dist = Path(tempfile.mkdtemp(prefix="simamqp-dist-"))
    session.run("python", "-m", "build", "--outdir", str(dist), str(ROOT), silent=True)
    built = sorted(dist.iterdir())
    session.run("twine", "check", "--strict", *map(str, built))
    (wheel,) = [path for path in built if path.suffix == ".whl"]
    version = wheel.name.split("-")[1]
    venv = Path(tempfile.mkdtemp(prefix="simamqp-wheel-")) / "venv"
    session.run("python", "-m", "venv", str(venv))
    python, simamqp = str(venv / "bin" / "python"), str(venv / "bin" / "simamqp")
    session.run(python, "-m", "pip", "install", "--quiet", str(wheel), external=True)
    shown = session.run(simamqp, "--version", silent=True, external=True)
    if str(shown).strip() != f"simamqp {version}":
        session.error(f"`simamqp --version` says {shown!r}, the wheel is {version}")
    where = "import simamqp, sys; assert simamqp.__file__.startswith(sys.prefix), simamqp.__file__"
    session.run(python, "-c", where, external=True)
    with session.chdir(ROOT):
        session.run(simamqp, "run", "scenarios/", external=True)


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
