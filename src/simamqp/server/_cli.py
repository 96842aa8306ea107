"""``simamqp serve``: serve one broker over AMQP until SIGINT/SIGTERM."""

from __future__ import annotations

import argparse
import os
import signal
import threading
from types import FrameType
from typing import TextIO

from .._broker import Broker
from ..core.clock import Clock, VirtualClock
from ._server import Server

__all__ = ["add_parser", "cmd_serve"]

EXIT_OK, EXIT_FAILED, EXIT_USAGE = 0, 1, 2


def add_parser(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    serve = sub.add_parser(
        "serve", help="serve a broker over AMQP 0-9-1 (any client, any process) until interrupted"
    )
    serve.add_argument("--host", default="127.0.0.1", help="address to listen on (127.0.0.1)")
    serve.add_argument(
        "--port", type=int, default=5672, help="port to listen on (5672; 0 picks a free one)"
    )
    serve.add_argument("--seed", type=int, default=0, help="the broker's seed (0)")
    serve.add_argument(
        "--clock",
        choices=("wall", "virtual"),
        default="wall",
        help="wall: timers (TTL, expiry) fire in real time (default); virtual: time stands "
        "still (serve runs no scenario steps, so timers never fire)",
    )
    serve.add_argument(
        "--scenario",
        metavar="FILE",
        help="set the broker up from a scenario file: its vhosts, declarations and faults "
        "(not its steps)",
    )


def _broker(args: argparse.Namespace, err: TextIO) -> Broker | None:
    clock: Clock
    if args.clock == "wall":
        from ..wallclock import WallClock

        clock = WallClock()
    else:
        clock = VirtualClock(autojump=False)
    if args.scenario is None:
        return Broker(seed=args.seed, clock=clock)
    from ..scenarios import ScenarioError, load
    from ..scenarios._runner import Run

    try:
        scenario = load(args.scenario)
    except (OSError, ScenarioError) as exc:
        print(f"simamqp serve: {exc}", file=err)
        return None
    run = Run(scenario, seed=args.seed, broker_factory=lambda seed, _clock: Broker(seed, clock))
    broker = run.brokers[scenario.default_broker]
    assert isinstance(broker, Broker)  # built by the factory above
    if scenario.faults is not None:
        broker.faults.load(scenario.faults)
    run._declare()
    if run.failures:
        print(f"simamqp serve: {args.scenario}: {run.failures[0]}", file=err)
        return None
    return broker


def cmd_serve(args: argparse.Namespace, out: TextIO, err: TextIO) -> int:
    broker = _broker(args, err)
    if broker is None:
        return EXIT_USAGE
    server = Server(broker, args.host, args.port)
    try:
        server.start()
    except OSError as exc:
        reason = os.strerror(exc.errno) if exc.errno else str(exc)
        print(f"simamqp serve: cannot listen on {args.host}:{args.port}: {reason}", file=err)
        return EXIT_FAILED
    stop = threading.Event()

    def on_signal(signum: int, frame: FrameType | None) -> None:
        stop.set()

    previous = {sig: signal.signal(sig, on_signal) for sig in (signal.SIGINT, signal.SIGTERM)}
    try:
        print(server.url, file=out, flush=True)
        while not stop.wait(3600):
            pass
    finally:
        server.stop()  # a second signal while stopping only sets the event again
        for sig, handler in previous.items():
            signal.signal(sig, handler)
    return EXIT_OK
