"""Run a validated scenario against the core engine and check its expectations.

Scenarios drive ``simamqp.core`` directly (no kombu, no threads), so a run is deterministic and
takes milliseconds. Each client is one core connection; what the broker sends it (deliveries,
returns, confirms, cancels, closes) is read from the connection's outbox after every step.
"""

from __future__ import annotations

import base64
import difflib
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

from ..core.broker import Broker
from ..core.channel import Channel, ChannelClosedError
from ..core.clock import Clock, VirtualClock
from ..core.connection import Connection
from ..core.errors import AMQPError
from ..core.frames import (
    BasicAck,
    BasicCancel,
    BasicDeliver,
    BasicNack,
    BasicReturn,
    ChannelClose,
    ConnectionClose,
    GetOk,
)
from ._model import BrokerSpec, Scenario, Step

__all__ = ["Result", "Run", "advance_to", "body_text", "run_scenario"]

#: step name -> core channel method (steps whose arguments pass through unchanged).
_METHODS = {
    "exchange_declare": "exchange_declare",
    "exchange_delete": "exchange_delete",
    "exchange_bind": "exchange_bind",
    "exchange_unbind": "exchange_unbind",
    "queue_declare": "queue_declare",
    "queue_bind": "queue_bind",
    "queue_unbind": "queue_unbind",
    "queue_purge": "queue_purge",
    "queue_delete": "queue_delete",
    "qos": "basic_qos",
    "confirm_select": "confirm_select",
    "consume": "basic_consume",
    "cancel": "basic_cancel",
    "recover": "basic_recover",
    "flow": "flow",
    "close_channel": "close",
}
_STEP_META = ("client", "channel", "error", "broker")


def body_text(body: bytes) -> str:
    """A body as scenario files write it: UTF-8 text, or ``base64:...`` for binary bodies."""
    try:
        return body.decode("utf-8")
    except UnicodeDecodeError:
        return "base64:" + base64.b64encode(body).decode()


def advance_to(broker: Broker, target: float) -> None:
    """``Broker.advance`` to an absolute time: each timer fires at its own due time."""
    clock = broker.clock
    if not isinstance(clock, VirtualClock):
        raise TypeError("advance needs a virtual clock")
    broker.run_until_idle()
    while (when := broker.next_timer()) is not None and when <= target:
        clock.jump_to(max(when, clock.now()))
        broker.run_until_idle()
    clock.jump_to(max(target, clock.now()))
    broker.run_until_idle()


@dataclass
class Client:
    name: str
    broker: str
    connection: Connection
    channels: dict[int, Channel] = field(default_factory=dict)
    received: list[dict[str, Any]] = field(default_factory=list)
    unsettled: dict[int, list[tuple[int, bytes]]] = field(default_factory=dict)
    returns: list[dict[str, Any]] = field(default_factory=list)
    confirms: list[str] = field(default_factory=list)
    cancels: list[str] = field(default_factory=list)


@dataclass
class Result:
    scenario: Scenario
    failures: list[str]
    digests: dict[str, str]
    duration: float
    run: Run

    @property
    def passed(self) -> bool:
        return not self.failures


class StepFailed(Exception):
    pass


def make_clock(spec: BrokerSpec) -> Clock:
    if spec.clock == "wall":
        from ..wallclock import WallClock

        return WallClock()
    return VirtualClock(spec.start, autojump=False)


class Run:
    """One execution of a scenario: brokers, clients, and what each client observed."""

    def __init__(
        self,
        scenario: Scenario,
        *,
        seed: int | None = None,
        broker_factory: Callable[[int, Clock], Broker] | None = None,
    ) -> None:
        self.scenario = scenario
        factory = broker_factory or (lambda s, c: Broker(seed=s, clock=c, trace="full"))
        self.brokers: dict[str, Broker] = {}
        for name, spec in scenario.brokers.items():
            broker = factory(spec.seed if seed is None else seed, make_clock(spec))
            for vhost in spec.vhosts:
                broker.add_vhost(vhost)
            self.brokers[name] = broker
        self.clients: dict[str, Client] = {}
        self.errors: list[dict[str, Any]] = []
        self.failures: list[str] = []

    # -- clients --------------------------------------------------------------------------

    def _broker_of(self, args: Mapping[str, Any]) -> tuple[str, Broker]:
        name = args.get("broker") or self.scenario.default_broker
        return name, self.brokers[name]

    def open_client(self, name: str, broker_name: str, vhost: str = "/") -> Client:
        existing = self.clients.get(name)
        if existing is not None and existing.connection.is_open:
            raise StepFailed(f"client {name!r} is already open")
        connection = self.brokers[broker_name].connect(vhost)
        client = Client(name, broker_name, connection)
        if existing is not None:
            # keep what the client observed before it reconnected
            client.received = existing.received
            client.returns = existing.returns
            client.confirms = existing.confirms
            client.cancels = existing.cancels
        self.clients[name] = client
        return client

    def _client(self, args: Mapping[str, Any]) -> Client:
        name = args.get("client", "c1")
        client = self.clients.get(name)
        if client is None:
            broker_name, _ = self._broker_of(args)
            client = self.open_client(name, broker_name)
        return client

    def _channel(self, client: Client, number: int) -> Channel:
        channel = client.channels.get(number)
        if channel is None:
            channel = client.connection.channel(number)
            client.channels[number] = channel
        return channel

    def drain(self) -> None:
        """Read every client's outbox, as a client library would."""
        for client in self.clients.values():
            outbox = client.connection.outbox
            while outbox:
                frame = outbox.popleft()
                if isinstance(frame, BasicDeliver):
                    self._received(client, frame.channel_id, frame, "deliver")
                elif isinstance(frame, BasicReturn):
                    client.returns.append(
                        {
                            "body": body_text(frame.message.body),
                            "reply_code": frame.reply_code,
                            "exchange": frame.exchange,
                            "routing_key": frame.routing_key,
                        }
                    )
                elif isinstance(frame, BasicAck):
                    client.confirms.append("ack")
                elif isinstance(frame, BasicNack):
                    client.confirms.append("nack")
                elif isinstance(frame, BasicCancel):
                    client.cancels.append(frame.consumer_tag)
                elif isinstance(frame, ChannelClose | ConnectionClose):
                    pass  # recorded from the trace's error events

    def _received(
        self, client: Client, channel_id: int, frame: BasicDeliver | GetOk, via: str
    ) -> None:
        message = frame.message
        entry: dict[str, Any] = {
            "body": body_text(message.body),
            "via": via,
            "channel": channel_id,
            "delivery_tag": frame.delivery_tag,
            "redelivered": frame.redelivered,
            "exchange": frame.exchange,
            "routing_key": frame.routing_key,
            "properties": dict(message.properties),
        }
        if isinstance(frame, BasicDeliver):
            entry["consumer_tag"] = frame.consumer_tag
        client.received.append(entry)
        client.unsettled.setdefault(channel_id, []).append((frame.delivery_tag, message.body))

    # -- steps ----------------------------------------------------------------------------

    def run(self) -> None:
        scenario = self.scenario
        if scenario.faults is not None:
            for broker in self.brokers.values():
                broker.faults.load(scenario.faults)
        self._declare()
        for step in scenario.steps:
            try:
                self.step(step)
            except StepFailed as err:
                self.failures.append(f"{step.where()}: {err}")
                return
            except Exception as err:  # the engine refused what validation let through
                self.failures.append(f"{step.where()}: crashed: {type(err).__name__}: {err}")
                return
            if step.name == "expect":
                problems = self.check(step.args)
                if problems:
                    self.failures.extend(f"{step.where()}: {p}" for p in problems)
                    return
        self.drain()
        self.failures.extend(self.check(scenario.expect))

    def _declare(self) -> None:
        declare = self.scenario.declare
        if not declare:
            return
        steps: list[Step] = []
        for section, name in (
            ("exchanges", "exchange_declare"),
            ("queues", "queue_declare"),
            ("bindings", "queue_bind"),
        ):
            for entry in declare.get(section, []):
                step_name = "exchange_bind" if "destination" in entry else name
                mark = getattr(entry, "mark", self.scenario.mark)
                assert mark is not None
                steps.append(Step(step_name, {"client": "setup", **entry}, mark, -1))
        for step in steps:
            try:
                self.step(step)
            except StepFailed as err:
                self.failures.append(f"declare at {step.mark}: {err}")
                return
            except Exception as err:  # the engine refused what validation let through
                self.failures.append(
                    f"declare at {step.mark}: crashed: {type(err).__name__}: {err}"
                )
                return

    def step(self, step: Step) -> None:
        args = step.args
        name = step.name
        broker_name, broker = self._broker_of(args)
        if name == "expect":
            self.drain()
            return
        if name == "advance":
            target = args["to"] if "to" in args else broker.clock.now() + args["seconds"]
            advance_to(broker, float(target))
            self.drain()
            return
        if name == "add_vhost":
            broker.add_vhost(args["vhost"])
            return
        if name == "fault_add":
            broker.faults.add(**{k: v for k, v in args.items() if k != "broker"})
            self.drain()
            return
        if name == "fault_remove":
            broker.faults.remove(args["name"])
            self.drain()
            return
        if name in ("run_until_idle", "restart", "close_connections"):
            getattr(broker, name)()
            self.drain()
            return
        if name == "open":
            try:
                self.open_client(args.get("client", "c1"), broker_name, args.get("vhost", "/"))
            except AMQPError as err:
                if args.get("error") != err.reply_code:
                    raise StepFailed(
                        f"unexpected error {err.reply_code} {err.reply_text}"
                    ) from None
            else:
                if args.get("error") is not None:
                    raise StepFailed(f"expected error {args['error']}, it succeeded")
            return
        client = self._client(args)
        broker = self.brokers[client.broker]
        mark = len(broker.trace)
        refused: int | None = None
        closed = False
        try:
            self._client_step(client, step)
        except AMQPError as err:
            refused = err.reply_code
        except ChannelClosedError:
            closed = True
        self.drain()
        trace = broker.trace
        codes: list[int | str] = []
        for i in range(mark, len(trace)):
            event = trace[i]
            if event.kind == "error":
                codes.append(event.attrs["code"])
                self.errors.append(
                    {
                        "client": client.name,
                        "channel": event.attrs.get("channel"),
                        "code": event.attrs["code"],
                        "text": event.attrs.get("text", ""),
                        "step": step.index + 1,
                    }
                )
        if refused is not None and not codes:
            # e.g. a connection refused (530) raises without an error event
            codes.append(refused)
            self.errors.append(
                {
                    "client": client.name,
                    "channel": None,
                    "code": refused,
                    "text": "",
                    "step": step.index + 1,
                }
            )
        if closed:
            codes.append("closed")
            self.errors.append(
                {
                    "client": client.name,
                    "channel": args.get("channel", 1),
                    "code": "closed",
                    "text": "channel is closed",
                    "step": step.index + 1,
                }
            )
        expected = args.get("error")
        if expected is not None:
            if expected not in codes:
                got = f"got {', '.join(map(str, codes))}" if codes else "it succeeded"
                raise StepFailed(f"expected error {expected}, {got}")
        elif codes:
            text = next((e["text"] for e in self.errors if e["step"] == step.index + 1), "")
            raise StepFailed(f"unexpected error {codes[0]} {text}".rstrip())

    def _client_step(self, client: Client, step: Step) -> None:
        args = step.args
        name = step.name
        number = int(args.get("channel", 1))
        if name == "close":
            client.connection.close()
            return
        if name == "channel":
            old = client.channels.get(number)
            if old is not None and old.is_open:
                raise StepFailed(f"channel {number} of {client.name!r} is already open")
            client.channels[number] = client.connection.channel(number)
            return
        if not client.connection.is_open:
            raise ChannelClosedError("connection is closed", client.connection.close_reason)
        channel = self._channel(client, number)
        params = {k: v for k, v in args.items() if k not in _STEP_META}
        if name == "publish":
            self._publish(channel, params)
        elif name == "get":
            self._get(client, channel, params)
        elif name in ("ack", "reject", "nack"):
            self._settle(client, channel, name, params)
        else:
            getattr(channel, _METHODS[name])(**params)

    def _publish(self, channel: Channel, params: dict[str, Any]) -> None:
        repeat = int(params.pop("repeat", 1))
        if "reply_to_of" in params:
            source = self.clients.get(params.pop("reply_to_of"))
            if source is None or not source.received:
                raise StepFailed("reply_to_of: that client has received nothing to reply to")
            request = source.received[-1]["properties"]
            if not request.get("reply_to"):
                raise StepFailed("reply_to_of: the last message received has no reply_to")
            params["routing_key"] = request["reply_to"]
            properties = dict(params.get("properties") or {})
            if "correlation_id" in request:
                properties.setdefault("correlation_id", request["correlation_id"])
            params["properties"] = properties
        if "body_base64" in params:
            template: bytes | str = base64.b64decode(params.pop("body_base64"))
        else:
            template = params.pop("body", "")
        properties = dict(params.pop("properties", {}) or {})
        for i in range(1, repeat + 1):
            if isinstance(template, str):
                text = template.replace("{i}", str(i)) if repeat > 1 else template
                body = text.encode("utf-8")
            else:
                body = template
            channel.basic_publish(body, properties=properties, **params)

    def _get(self, client: Client, channel: Channel, params: dict[str, Any]) -> None:
        has_expect = "expect" in params
        expected = params.pop("expect", None)
        result = channel.basic_get(**params)
        if result is not None:
            self._received(client, channel.id, result, "get")
            if params.get("no_ack"):
                client.unsettled[channel.id].pop()
        if has_expect:
            got = None if result is None else body_text(result.message.body)
            if got != expected:
                raise StepFailed(f"get returned {got!r}, expected {expected!r}")

    def _settle(self, client: Client, channel: Channel, name: str, params: dict[str, Any]) -> None:
        pending = client.unsettled.setdefault(channel.id, [])
        if "body" in params:
            wanted = params.pop("body").encode("utf-8")
            tags = [tag for tag, body in pending if body == wanted]
            if not tags:
                raise StepFailed(f"no unsettled delivery with body {wanted.decode()!r}")
            params["delivery_tag"] = tags[-1]
        tag = params["delivery_tag"]
        if params.get("multiple"):
            client.unsettled[channel.id] = [(t, b) for t, b in pending if t > tag]
        else:
            client.unsettled[channel.id] = [(t, b) for t, b in pending if t != tag]
        method = {"ack": "basic_ack", "reject": "basic_reject", "nack": "basic_nack"}[name]
        getattr(channel, method)(**params)

    # -- expectations -----------------------------------------------------------------------

    def check(self, expect: Mapping[str, Any]) -> list[str]:
        from ._expect import check_expectations

        return check_expectations(self, expect)


def run_scenario(
    scenario: Scenario,
    *,
    seed: int | None = None,
    broker_factory: Callable[[int, Clock], Broker] | None = None,
) -> Result:
    """Run a scenario; the result lists every failed expectation (empty when it passed)."""
    started = time.perf_counter()
    run = Run(scenario, seed=seed, broker_factory=broker_factory)
    try:
        run.run()
    except Exception as err:  # a crash is a failure of this scenario, not of the runner
        run.failures.append(f"{scenario.path}: crashed: {type(err).__name__}: {err}")
    digests = {name: broker.trace.digest() for name, broker in run.brokers.items()}
    return Result(scenario, run.failures, digests, time.perf_counter() - started, run)


def trace_diff(expected: list[str], actual: list[str], limit: int = 60) -> str:
    """A unified diff of two traces (event lines), cut to ``limit`` lines."""
    lines = list(
        difflib.unified_diff(expected, actual, "expected trace", "actual trace", lineterm="", n=2)
    )
    if len(lines) > limit:
        lines = [*lines[:limit], f"... ({len(lines) - limit} more diff lines)"]
    return "\n".join(lines)
