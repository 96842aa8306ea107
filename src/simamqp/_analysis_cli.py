"""``simamqp history | check | diagram | explore``: the analysis verbs of the CLI.

Each reads replay files (scenario YAML, replayed with the whole trace kept) or recorded traces
(``.jsonl``: one canonical event per line, ``Trace.lines()``), given as files or folders, and
follows ``simamqp``'s conventions: a user's mistake is one ``simamqp: ...`` line and exit 2;
``check`` exits 1 when a guarantee does not hold; a live counter on standard error when many
files are read and it is a terminal.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import sys
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any, TextIO

from .analysis import (
    GUARANTEES,
    build_histories,
    check_delivery,
    check_fifo,
    check_processing,
    events_from_lines,
    sequence_diagram,
)
from .core.trace import Event

__all__ = ["COMMANDS", "add_parsers", "dispatch"]

COMMANDS = frozenset({"history", "check", "diagram", "explore"})
_TRACE_SUFFIXES = (".jsonl", ".ndjson")
_SCENARIO_SUFFIXES = (".yaml", ".yml")


class SourceError(Exception):
    """A path that is not a replay file or a recorded trace (printed as ``simamqp: ...``)."""


def add_parsers(sub: Any) -> None:
    paths_help = "replay files (scenario YAML), recorded traces (.jsonl), or folders of them"
    history = sub.add_parser(
        "history", help="print the life of every message in a replay file or recorded trace"
    )
    history.add_argument("paths", nargs="+", metavar="PATH", help=paths_help)
    history.add_argument("--msg", type=int, action="append", help="only this message id")
    history.add_argument("--json", action="store_true", help="JSON, one document per file")
    _common(history)

    check = sub.add_parser(
        "check", help="check delivery guarantees (and a consumer's ledger) on a history"
    )
    check.add_argument("paths", nargs="+", metavar="PATH", help=paths_help)
    check.add_argument("--queue", required=True, help="the queue whose deliveries are checked")
    check.add_argument("--guarantee", choices=GUARANTEES, default="at-least-once")
    check.add_argument("--fifo", action="store_true", help="also check per-queue FIFO order")
    check.add_argument(
        "--ledger", help="file of the keys (bodies) a consumer processed, one per line"
    )
    _common(check)

    diagram = sub.add_parser("diagram", help="write an SVG sequence diagram of each file")
    diagram.add_argument("paths", nargs="+", metavar="PATH", help=paths_help)
    diagram.add_argument(
        "-o", "--output", help="SVG file (one input) or folder (default: next to each input)"
    )
    diagram.add_argument("--max-events", type=int, default=400, help="rows at most (400)")
    _common(diagram)

    explore = sub.add_parser(
        "explore",
        help="run @pytest.mark.simamqp_explore tests across seeds (pytest, pytest-xdist)",
    )
    explore.add_argument("tests", nargs="+", metavar="TEST", help="pytest paths or node ids")
    explore.add_argument("--seeds", type=int, default=50, help="seeds per test (50)")
    explore.add_argument("-n", "--workers", help="pytest-xdist workers (a number or 'auto')")
    explore.add_argument("--db", help="example database: a folder, redis://HOST:PORT/DB, or 'none'")
    explore.add_argument("--simamqp-seed", type=int, default=0, help="base seed (0)")


def _common(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--seed", type=int, help="replay scenario files with this seed instead")
    parser.add_argument(
        "--broker", help="which broker of a multi-broker scenario (default: its default broker)"
    )


def _files(paths: Sequence[str]) -> list[Path]:
    found: list[Path] = []
    for raw in paths:
        path = Path(raw)
        if path.is_dir():
            found += sorted(
                p
                for p in path.rglob("*")
                if p.is_file() and p.suffix in _TRACE_SUFFIXES + _SCENARIO_SUFFIXES
            )
        elif path.is_file():
            found.append(path)
        else:
            raise SourceError(f"{raw}: no such file or folder")
    if not found:
        raise SourceError(f"no replay files or traces in {' '.join(paths)}")
    return found


def _events(path: Path, args: argparse.Namespace) -> tuple[list[Event], str]:
    """The events of one file, and a note (a replay that did not pass, say)."""
    if path.suffix in _TRACE_SUFFIXES:
        try:
            with path.open(encoding="utf-8") as lines:
                return events_from_lines(lines), ""
        except ValueError as err:
            raise SourceError(f"{path}: {err}") from None
    if path.suffix not in _SCENARIO_SUFFIXES:
        raise SourceError(f"{path}: expected a scenario (.yaml) or a recorded trace (.jsonl)")
    from .scenarios import ScenarioError, load, run_scenario

    try:
        scenario = load(str(path))
    except ScenarioError as err:
        raise SourceError(str(err)) from None
    result = run_scenario(scenario, seed=args.seed)
    name = args.broker or scenario.default_broker
    broker = result.run.brokers.get(name)
    if broker is None:
        raise SourceError(f"{path}: no broker {name!r} (has {sorted(result.run.brokers)})")
    note = "" if result.passed else f" (the replay did not pass: {len(result.failures)} failure(s))"
    return broker.trace.events, note


def _each(
    paths: Sequence[str], args: argparse.Namespace, err: TextIO
) -> Iterator[tuple[Path, list[Event], str]]:
    files = _files(paths)
    live = len(files) > 1 and err.isatty()
    for index, path in enumerate(files, 1):
        if live:
            err.write(f"\r\x1b[K[{index}/{len(files)}] {path}")
            err.flush()
        events, note = _events(path, args)
        yield path, events, note
    if live:
        err.write("\r\x1b[K")
        err.flush()


def _plain(value: Any) -> Any:
    if isinstance(value, bytes | bytearray):
        try:
            return bytes(value).decode()
        except UnicodeDecodeError:
            return {"hex": bytes(value).hex()}
    raise TypeError(f"not JSON-able: {type(value).__name__}")


def _cmd_history(args: argparse.Namespace, out: TextIO, err: TextIO) -> int:
    for path, events, note in _each(args.paths, args, err):
        histories = build_histories(events)
        chosen = [h for h in histories if not args.msg or h.msg in args.msg]
        if args.json:
            doc = {
                "path": str(path),
                "complete": histories.complete,
                "messages": [dataclasses.asdict(h) for h in chosen],
            }
            out.write(json.dumps(doc, default=_plain, sort_keys=True) + "\n")
            continue
        print(f"== {path}: {len(histories)} messages, {histories.events} events{note}", file=out)
        for h in chosen:
            print(h.describe(), file=out)
    return 0


def _cmd_check(args: argparse.Namespace, out: TextIO, err: TextIO) -> int:
    ledger: list[str] | None = None
    if args.ledger:
        try:
            ledger = Path(args.ledger).read_text(encoding="utf-8").splitlines()
        except OSError as error:
            raise SourceError(f"{args.ledger}: {error.strerror}") from None
    invalid = 0
    for path, events, note in _each(args.paths, args, err):
        histories = build_histories(events)
        print(f"== {path}{note}", file=out)
        verdicts = [check_delivery(histories, args.queue, guarantee=args.guarantee)]
        if ledger is not None:
            verdicts.append(
                check_processing(ledger, histories, queue=args.queue, guarantee=args.guarantee)
            )
        if args.fifo:
            verdicts.append(check_fifo(histories, args.queue))
        for verdict in verdicts:
            print(verdict.report(), file=out)
            invalid += not verdict.valid
    return 1 if invalid else 0


def _cmd_diagram(args: argparse.Namespace, out: TextIO, err: TextIO) -> int:
    if args.max_events < 1:
        raise SourceError("--max-events must be at least 1")
    files = _files(args.paths)
    target = Path(args.output) if args.output else None
    for path, events, _note in _each(args.paths, args, err):
        if target is None:
            dest = path.with_suffix(".svg")
        elif len(files) == 1 and target.suffix == ".svg":
            dest = target
        else:
            dest = target / (path.stem + ".svg")
        try:
            dest.parent.mkdir(parents=True, exist_ok=True)
            dest.write_text(
                sequence_diagram(events, title=str(path), max_events=args.max_events),
                encoding="utf-8",
            )
        except OSError as error:
            raise SourceError(f"cannot write {dest}: {error.strerror}") from None
        print(f"wrote {dest}", file=out)
    return 0


def _cmd_explore(args: argparse.Namespace, out: TextIO, err: TextIO) -> int:
    import importlib.util
    import subprocess

    if importlib.util.find_spec("pytest") is None:
        raise SourceError("explore runs pytest: pip install pytest (and pytest-xdist)")
    argv = [*args.tests, f"--simamqp-explore={args.seeds}", f"--simamqp-seed={args.simamqp_seed}"]
    if args.workers:
        argv += ["-n", args.workers]
    if args.db:
        argv.append(f"--simamqp-explore-db={args.db}")
    # A child process: pytest must import simamqp itself to rewrite its assertions.
    out.flush()
    return subprocess.call([sys.executable, "-m", "pytest", *argv])


def dispatch(args: argparse.Namespace, out: TextIO, err: TextIO) -> int:
    """Run one analysis verb; ``SourceError`` becomes the CLI's one-line usage error."""
    command = {
        "history": _cmd_history,
        "check": _cmd_check,
        "diagram": _cmd_diagram,
        "explore": _cmd_explore,
    }[args.command]
    return command(args, out, err)


if __name__ == "__main__":  # pragma: no cover
    sys.exit("use the simamqp command")
