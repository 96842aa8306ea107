"""``python -m benchmarks [--quick] [--only 1,3] [--no-rabbitmq] [--json PATH] [--strict]``.

Runs every row in one process, prints one table, and exits:
- 0 when every row ran (targets missed are marked ✗ but do not fail the run, since timing on
  shared CI machines is noisy; pass ``--strict`` to fail on them);
- 1 when a row errored, or when RabbitMQ is unreachable: the rows that need it print
  ``skipped: RabbitMQ unreachable`` and everything else still runs. ``--no-rabbitmq`` skips
  those rows on purpose (exit 0).
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import sys
import time
import traceback
from collections.abc import Callable
from datetime import UTC, datetime

from ._util import RABBITMQ_URL, Row, rabbitmq_reachable

UNREACHABLE = "skipped: RabbitMQ unreachable"


def _sections() -> list[tuple[int, str, bool, Callable[[bool, bool], list[Row]]]]:
    """(row number, title, needs RabbitMQ for part of it, runner(quick, rabbit))."""
    from . import (
        bench_abuse,
        bench_analysis,
        bench_celery,
        bench_core,
        bench_hypothesis,
        bench_kombu,
        bench_server,
    )

    return [
        (1, "kombu round trip", True, bench_kombu.row_round_trip),
        (2, "core engine", False, lambda q, r: bench_core.row_core(q) + bench_core.row_trace(q)),
        (3, "wake-up latency", True, bench_kombu.row_wakeup),
        (4, "topic routing", False, lambda q, r: bench_core.row_topic(q)),
        (5, "broker lifecycle", False, lambda q, r: bench_core.row_lifecycle(q)),
        (6, "memory per message", False, lambda q, r: bench_core.row_memory(q)),
        (7, "Celery round trip", True, bench_celery.row_celery),
        (8, "Hypothesis", False, lambda q, r: bench_hypothesis.row_hypothesis(q)),
        (9, "Celery worker stop", True, bench_celery.row_worker_stop),
        (10, "socket server", True, bench_server.row_server),
        (11, "abusive clients", True, bench_abuse.row_abuse),
        (12, "history checkers", False, lambda q, r: bench_analysis.row_analysis(q)),
    ]


def _mark(row: Row) -> str:
    if row.skipped:
        return "-"
    if row.met is None:
        return ""
    return "✓" if row.met else "✗"


def print_table(rows: list[Row], out: Callable[[str], None] = print) -> None:
    width = max(len(r.name) for r in rows) + 1
    value_width = max(len(r.value or r.skipped) for r in rows) + 1
    out(f"{'#':>2}  {'benchmark':<{width}} {'result':<{value_width}} {'target':<13} ok  detail")
    out("-" * (width + value_width + 40))
    last = None
    for r in rows:
        number = str(r.number) if r.number != last else ""
        last = r.number
        value = r.value if not r.skipped else r.skipped
        out(
            f"{number:>2}  {r.name:<{width}} {value:<{value_width}} {r.target:<13} "
            f"{_mark(r):<3} {r.detail}"
        )


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m benchmarks",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--quick", action="store_true", help="small samples: a smoke run")
    parser.add_argument("--only", default="", help="comma-separated row numbers, e.g. 1,3")
    parser.add_argument(
        "--no-rabbitmq",
        action="store_true",
        help="skip the RabbitMQ rows on purpose (exit 0 without RabbitMQ)",
    )
    parser.add_argument("--strict", action="store_true", help="exit 1 when a target is missed")
    parser.add_argument("--json", metavar="PATH", help="also write the rows as JSON")
    args = parser.parse_args(argv)

    only = {int(x) for x in args.only.split(",") if x.strip()}
    rabbit = False if args.no_rabbitmq else rabbitmq_reachable()
    started = time.perf_counter()
    print(
        f"simamqp benchmarks — {datetime.now(UTC):%Y-%m-%d %H:%M} UTC, "
        f"{platform.python_implementation()} {platform.python_version()}, "
        f"{os.cpu_count()} CPUs, {platform.machine()}, load average {os.getloadavg()[0]:.1f}"
        f"{' (quick)' if args.quick else ''}"
    )
    if args.no_rabbitmq:
        print("RabbitMQ rows skipped (--no-rabbitmq)")
    elif not rabbit:
        print(f"RabbitMQ unreachable at {RABBITMQ_URL}: its rows are skipped")
    print(flush=True)

    rows: list[Row] = []
    errors = 0
    for number, title, needs_rabbit, run in _sections():
        if only and number not in only:
            continue
        t0 = time.perf_counter()
        try:
            section = run(args.quick, rabbit)
        except Exception:
            errors += 1
            traceback.print_exc()
            section = [Row(number, title, "", skipped="error (traceback above)")]
        if needs_rabbit and not rabbit and args.no_rabbitmq:
            for r in section:
                if r.skipped == UNREACHABLE:
                    r.skipped = "skipped: --no-rabbitmq"
        rows.extend(section)
        print(
            f"  [{number}] {title}: {time.perf_counter() - t0:.1f} s", file=sys.stderr, flush=True
        )

    print()
    print_table(rows)
    elapsed = time.perf_counter() - started
    missed = [r for r in rows if r.met is False and not r.skipped]
    unreachable = [r for r in rows if r.skipped == UNREACHABLE]
    print(
        f"\n{len(rows)} rows in {elapsed:.0f} s; targets missed: {len(missed)}"
        f"{'; errors: ' + str(errors) if errors else ''}"
    )
    if args.json:
        with open(args.json, "w", encoding="utf-8") as fh:
            json.dump(
                {
                    "date": datetime.now(UTC).isoformat(timespec="seconds"),
                    "cpus": os.cpu_count(),
                    "python": platform.python_version(),
                    "quick": args.quick,
                    "rows": [r.__dict__ for r in rows],
                },
                fh,
                indent=1,
                ensure_ascii=False,
            )
    if unreachable:
        print(
            f"exit 1: RabbitMQ unreachable — {len(unreachable)} row(s) skipped "
            f"(rows {sorted({r.number for r in unreachable})}); the others ran"
        )
        return 1
    if errors:
        return 1
    if args.strict and missed:
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
