"""The ``simamqp`` command: run, validate and record scenario files.

Exit status: 0 when every scenario passed, 1 when one failed, 2 when a file is malformed (then
nothing runs: every file is validated before the first one runs), the command line is wrong or
selects nothing. A user's mistake is one line on standard error (``file:line:column: ...`` or
``simamqp: ...``), never a traceback.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any, TextIO

from . import __version__
from .scenarios import Scenario, ScenarioError, collect, dump, json_schema, load, run_scenario
from .scenarios._expect import _brief
from .scenarios._model import validate
from .scenarios._runner import Result, body_text
from .scenarios._yaml import load_marked, read_scenario_file

__all__ = ["main"]

EXIT_OK, EXIT_FAILED, EXIT_USAGE, EXIT_INTERNAL = 0, 1, 2, 3


class UsageError(Exception):
    """A mistake on the command line: printed as ``simamqp: message``, exit 2."""


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="simamqp",
        description="Deterministic in-memory AMQP 0-9-1 broker: run scenario files.",
    )
    parser.add_argument("--version", action="version", version=f"simamqp {__version__}")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    run = sub.add_parser("run", help="run scenario files or folders of them")
    run.add_argument("paths", nargs="+", metavar="PATH", help="scenario files or folders")
    run.add_argument("--seed", type=int, help="run every broker with this seed instead")
    run.add_argument(
        "-k",
        dest="keyword",
        metavar="EXPR",
        help="only scenarios whose name, path or tags contain EXPR ('not EXPR' inverts)",
    )
    run.add_argument("-v", "--verbose", action="store_true", help="one line per scenario")
    run.add_argument("-x", "--exitfirst", action="store_true", help="stop at the first failure")

    validate = sub.add_parser("validate", help="check scenario files without running them")
    validate.add_argument("paths", nargs="+", metavar="PATH")

    record = sub.add_parser(
        "record", help="run a scenario and write it back with what was observed as expectations"
    )
    record.add_argument("path", metavar="PATH")
    record.add_argument("-o", "--output", help="file to write (default: standard output)")
    record.add_argument("--seed", type=int, help="run with this seed instead")
    record.add_argument(
        "--no-trace", action="store_true", help="record the trace digest but not its lines"
    )

    sub.add_parser("schema", help="print the JSON Schema of scenario files")
    from .server._cli import add_parser as add_serve_parser

    add_serve_parser(sub)
    _add_analysis_parsers(sub)
    return parser


def _add_analysis_parsers(sub: Any) -> None:
    """history, check, diagram, explore (simamqp/_analysis_cli.py)."""
    from ._analysis_cli import add_parsers

    add_parsers(sub)


def _cmd_analysis(args: argparse.Namespace, out: TextIO, err: TextIO) -> int:
    from ._analysis_cli import SourceError, dispatch

    try:
        return dispatch(args, out, err)
    except SourceError as error:
        raise UsageError(str(error)) from None


def _load_all(paths: Sequence[str], err: TextIO) -> list[Scenario] | None:
    files = collect(paths)
    scenarios: list[Scenario] = []
    broken = 0
    for path in files:
        try:
            scenarios.append(load(path))
        except ScenarioError as error:
            print(f"error: {error}", file=err)
            broken += 1
    if not files:
        print(f"error: no scenario files (*.yaml, *.yml) in {' '.join(paths)}", file=err)
        return None
    return None if broken else scenarios


def _selected(scenario: Scenario, keyword: str | None) -> bool:
    if not keyword:
        return True
    invert = keyword.startswith("not ")
    word = (keyword[4:] if invert else keyword).strip().lower()
    haystack = " ".join([scenario.name, scenario.path, *scenario.tags]).lower()
    return (word in haystack) != invert


def _cmd_run(args: argparse.Namespace, out: TextIO, err: TextIO) -> int:
    scenarios = _load_all(args.paths, err)
    if scenarios is None:
        return EXIT_USAGE
    chosen = [s for s in scenarios if _selected(s, args.keyword)]
    if not chosen:
        raise UsageError(f"-k {args.keyword!r} selects none of the {len(scenarios)} scenarios")
    started = time.perf_counter()
    failed: list[Result] = []
    passed = 0
    column = 0
    for index, scenario in enumerate(chosen, 1):
        result = run_scenario(scenario, seed=args.seed)
        if result.passed:
            passed += 1
        else:
            failed.append(result)
        if args.verbose:
            status = "PASS" if result.passed else "FAIL"
            print(
                f"[{index}/{len(chosen)}] {status} {scenario.name} ({scenario.path}) "
                f"{result.duration * 1000:.1f}ms",
                file=out,
            )
            for failure in result.failures:
                print("    " + failure.replace("\n", "\n    "), file=out)
        else:
            out.write("." if result.passed else "F")
            column += 1
            if column == 72 or index == len(chosen):
                out.write(f" [{index}/{len(chosen)}]\n")
                column = 0
            out.flush()
        if args.exitfirst and not result.passed:
            break
    if failed and not args.verbose:
        for result in failed:
            print(f"FAILED {result.scenario.name} ({result.scenario.path})", file=out)
            for failure in result.failures:
                print("    " + failure.replace("\n", "\n    "), file=out)
    elapsed = time.perf_counter() - started
    if args.verbose:
        print(f"ran {passed + len(failed)} scenarios in {elapsed:.2f}s", file=out)
    print(f"{passed} passed, {len(failed)} failed", file=out)
    return EXIT_OK if not failed else EXIT_FAILED


def _cmd_validate(args: argparse.Namespace, out: TextIO, err: TextIO) -> int:
    scenarios = _load_all(args.paths, err)
    if scenarios is None:
        return EXIT_USAGE
    print(f"{len(scenarios)} valid", file=out)
    return EXIT_OK


def observed(result: Result, *, trace: bool = True) -> dict[str, Any]:
    """What a run observed, as an ``expect`` section."""
    run = result.run
    broker = run.brokers[result.scenario.default_broker]
    expect: dict[str, Any] = {}
    deliveries = {
        name: [_brief(item) for item in client.received]
        for name, client in run.clients.items()
        if client.received
    }
    if deliveries:
        expect["deliveries"] = deliveries
    returns = {
        name: [r["body"] for r in client.returns]
        for name, client in run.clients.items()
        if client.returns
    }
    if returns:
        expect["returns"] = returns
    queues: dict[str, Any] = {}
    for name in broker.queue_names():
        info = broker.queue(name)
        queues[name] = {
            "messages_ready": info.messages_ready,
            "messages_unacknowledged": info.messages_unacknowledged,
            "consumers": info.consumers,
        }
        if info.bodies:
            queues[name]["bodies"] = [body_text(b) for b in info.bodies]
    if queues:
        expect["queues"] = queues
    if run.errors:
        expect["errors"] = [{"client": e["client"], "code": e["code"]} for e in run.errors]
    expect["trace_digest"] = broker.trace.digest()
    if trace:
        expect["trace"] = [str(e) for e in broker.trace]
    return expect


def _cmd_record(args: argparse.Namespace, out: TextIO, err: TextIO) -> int:
    if args.output and not Path(args.output).parent.is_dir():
        raise UsageError(f"cannot write {args.output}: no folder {Path(args.output).parent}")
    try:
        # read once (the path may be a pipe), validate, and keep the plain data to write back
        data = load_marked(read_scenario_file(args.path), args.path)
        scenario = validate(data, args.path)
    except ScenarioError as error:
        print(f"error: {error}", file=err)
        return EXIT_USAGE
    original = _plain_data(data)
    probe = Scenario(**{**scenario.__dict__, "expect": {}})
    probe.steps = [s for s in scenario.steps if s.name != "expect"]
    result = run_scenario(probe, seed=args.seed)
    if result.failures:
        for failure in result.failures:
            print(f"error: {failure}", file=err)
        return EXIT_FAILED
    inline = [s for s in original["steps"] if _is_expect_step(s)]
    original["steps"] = [s for s in original["steps"] if not _is_expect_step(s)]
    recorded = observed(result, trace=not args.no_trace)
    for note in _keep_hand_written(result, original.get("expect") or {}, recorded):
        print(f"record: {note}", file=err)
    if inline:
        print(
            f"record: dropped {len(inline)} inline expect step(s); the expect section "
            "describes the end of the run",
            file=err,
        )
    original["expect"] = recorded
    if args.seed is not None and "brokers" not in original:
        original["seed"] = args.seed
    text = dump(original)
    if args.output:
        try:
            Path(args.output).write_text(text, encoding="utf-8")
        except OSError as error:
            raise UsageError(f"cannot write {args.output}: {error.strerror}") from None
        print(f"recorded {args.path} -> {args.output}", file=out)
    else:
        out.write(text)
    return EXIT_OK


def _keep_hand_written(
    result: Result, written: dict[str, Any], recorded: dict[str, Any]
) -> list[str]:
    """Keep the scenario's own expectations that ``observed`` does not produce (``confirms``,
    ``errors: []``, ``events``, ...) when the new run satisfies them; notes for the others."""
    from .scenarios._expect import check_expectations

    notes = []
    for key, value in written.items():
        if key in recorded:
            continue
        problems = check_expectations(result.run, {key: value})
        if problems:
            notes.append(f"dropped expect.{key}: the run does not match it ({problems[0]})")
        else:
            recorded[key] = value
    return notes


def _is_expect_step(step: Any) -> bool:
    return (isinstance(step, dict) and "expect" in step) or step == "expect"


def _plain_data(value: Any) -> Any:
    """The loader's marked values as plain dicts and lists (what ``yaml.safe_load`` gives)."""
    if isinstance(value, dict):
        return {k: _plain_data(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_plain_data(v) for v in value]
    return value


def _dispatch(args: argparse.Namespace, out: TextIO, err: TextIO) -> int:
    if args.command == "run":
        return _cmd_run(args, out, err)
    if args.command == "validate":
        return _cmd_validate(args, out, err)
    if args.command == "record":
        return _cmd_record(args, out, err)
    if args.command in ("history", "check", "diagram", "explore"):
        return _cmd_analysis(args, out, err)
    if args.command == "serve":
        from .server._cli import cmd_serve

        return cmd_serve(args, out, err)
    json.dump(json_schema(), out, indent=2)
    out.write("\n")
    return EXIT_OK


def main(argv: Sequence[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    out, err = sys.stdout, sys.stderr
    try:
        status = _dispatch(args, out, err)
        out.flush()
    except UsageError as error:
        print(f"simamqp: {error}", file=err)
        return EXIT_USAGE
    except BrokenPipeError:
        # The reader went away (``simamqp schema | head``): as the Python docs recommend
        # (library/signal.html, "Note on SIGPIPE"), point stdout at devnull so the flush at
        # exit does not fail again, and exit quietly.
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
        return EXIT_FAILED
    except KeyboardInterrupt:
        print("simamqp: interrupted", file=err)
        return 130
    except Exception as error:  # a bug in simamqp, not the user's: still one line
        if os.environ.get("SIMAMQP_TRACEBACK"):
            raise
        print(
            f"simamqp: internal error: {type(error).__name__}: {error} "
            "(please report it; SIMAMQP_TRACEBACK=1 shows the traceback)",
            file=err,
        )
        return EXIT_INTERNAL
    return status


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
