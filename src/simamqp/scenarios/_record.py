"""Record mode: write what a program did to a broker as a scenario that replays it.

``Recorder(broker)`` wraps the engine entry points on that one broker *instance* (connect,
channel methods, advance, restart, fault rules...), so every top-level call a client made,
through kombu or directly, becomes a step. Calls made by the engine itself while serving a call
(a fault restarting the broker, say) are not steps: replaying the outer call redoes them. Time
that moved between calls becomes an ``advance: {to: T}`` step, so timers fire at the times
they fired.
"""

from __future__ import annotations

import base64
import contextlib
import datetime as _dt
import decimal
import functools
import inspect
from collections.abc import Callable, Mapping
from typing import Any

from ..core.broker import Broker
from ..core.channel import Channel, ChannelClosedError
from ..core.connection import Connection
from ..core.errors import AMQPError
from ._model import STEPS

__all__ = ["Recorder", "plain"]

#: core channel method -> scenario step
_CHANNEL_STEPS = {
    "exchange_declare": "exchange_declare",
    "exchange_delete": "exchange_delete",
    "exchange_bind": "exchange_bind",
    "exchange_unbind": "exchange_unbind",
    "queue_declare": "queue_declare",
    "queue_bind": "queue_bind",
    "queue_unbind": "queue_unbind",
    "queue_purge": "queue_purge",
    "queue_delete": "queue_delete",
    "basic_qos": "qos",
    "confirm_select": "confirm_select",
    "basic_publish": "publish",
    "basic_consume": "consume",
    "basic_cancel": "cancel",
    "basic_get": "get",
    "basic_ack": "ack",
    "basic_reject": "reject",
    "basic_nack": "nack",
    "basic_recover": "recover",
    "flow": "flow",
    "close": "close_channel",
}


def plain(value: Any) -> Any:
    """A value ``yaml.safe_dump`` writes and ``safe_load`` reads back equal."""
    if type(value) in (int, float, str, bytes) or value is None or isinstance(value, bool):
        return value
    # A subclass (the engine's 64-bit Long in x-death or x-stream-offset): YAML writes only
    # the exact types, and the value is what a client sees.
    if isinstance(value, int):
        return int(value)
    if isinstance(value, float):
        return float(value)
    if isinstance(value, str):
        return str(value)
    if isinstance(value, bytes):
        return bytes(value)
    if isinstance(value, _dt.datetime):
        return value
    if isinstance(value, bytearray | memoryview):
        return bytes(value)
    if isinstance(value, decimal.Decimal):
        return value  # written as !decimal "1.50" (scenarios.dump), read back as Decimal
    if isinstance(value, Mapping):
        return {str(k): plain(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [plain(v) for v in value]
    return str(value)


class Recorder:
    """Turns the calls made on one broker into scenario steps."""

    def __init__(self, broker: Broker) -> None:
        self.broker = broker
        self.seed = broker.seed
        self.start = broker.clock.now()
        self.virtual = bool(getattr(broker.clock, "virtual", False))
        self.steps: list[dict[str, Any]] = []
        self._depth = 0
        self._last_time = self.start
        if broker.trace.enabled:
            # A replay file expects every trace line: recording needs the whole log.
            broker.trace.set_mode("full")
        self._trace_mark = len(broker.trace)
        self._names: dict[int, str] = {}
        self._lock: Any = getattr(broker, "lock", None) or contextlib.nullcontext()
        self._install()

    # -- wrapping ---------------------------------------------------------------------------

    def _install(self) -> None:
        broker = self.broker
        original_connect = broker.connect

        @functools.wraps(original_connect)
        def connect(vhost: str = "/", **kwargs: Any) -> Connection:
            def args(conn: Connection | None) -> dict[str, Any]:
                name = f"c{conn.id}" if conn is not None else f"c{broker._next_connection_id}"
                return {"client": name, "vhost": vhost}

            conn: Connection = self._call("open", args, lambda: original_connect(vhost, **kwargs))
            self._wrap_connection(conn)
            return conn

        broker.connect = connect  # type: ignore[method-assign]
        for method, step in (
            ("run_until_idle", "run_until_idle"),
            ("restart", "restart"),
            ("close_connections", "close_connections"),
        ):
            self._wrap_simple(broker, method, step)
        original_advance = broker.advance

        def advance(seconds: float) -> int:
            result: int = self._call(
                "advance", lambda _r: {"to": broker.clock.now()}, lambda: original_advance(seconds)
            )
            return result

        broker.advance = advance  # type: ignore[method-assign]
        original_add_vhost = broker.add_vhost
        broker.add_vhost = lambda name: self._call(  # type: ignore[method-assign]
            "add_vhost", lambda _r: {"vhost": name}, lambda: original_add_vhost(name)
        )
        self._wrap_faults()

    def _wrap_simple(self, target: Any, method: str, step: str) -> None:
        original = getattr(target, method)

        def wrapper(*a: Any, **kw: Any) -> Any:
            return self._call(step, lambda _r: {}, lambda: original(*a, **kw))

        setattr(target, method, wrapper)

    def _wrap_faults(self) -> None:
        faults = self.broker.faults
        original_add = faults.add
        original_remove = faults.remove

        def add(rule: Any = None, /, **kwargs: Any) -> Any:
            def args(result: Any) -> dict[str, Any]:
                return plain(result.to_dict()) if result is not None else {}

            return self._call("fault_add", args, lambda: original_add(rule, **kwargs))

        def remove(rule: Any) -> None:
            name = rule if isinstance(rule, str) else rule.name
            self._call("fault_remove", lambda _r: {"name": name}, lambda: original_remove(rule))

        faults.add = add  # type: ignore[method-assign]
        faults.remove = remove  # type: ignore[method-assign]

    def _wrap_connection(self, conn: Connection) -> None:
        client = f"c{conn.id}"
        original_channel = conn.channel
        original_close = conn.close

        def channel(channel_id: int | None = None) -> Channel:
            def args(ch: Channel | None) -> dict[str, Any]:
                return {"client": client, "channel": ch.id if ch is not None else channel_id}

            ch: Channel = self._call("channel", args, lambda: original_channel(channel_id))
            self._wrap_channel(client, ch)
            return ch

        conn.channel = channel  # type: ignore[method-assign]
        conn.close = lambda: self._call(  # type: ignore[method-assign]
            "close", lambda _r: {"client": client}, original_close
        )

    def _wrap_channel(self, client: str, ch: Channel) -> None:
        for method, step in _CHANNEL_STEPS.items():
            original = getattr(ch, method)
            setattr(ch, method, self._channel_wrapper(client, ch, step, original))

    def _channel_wrapper(
        self, client: str, ch: Channel, step: str, original: Callable[..., Any]
    ) -> Callable[..., Any]:
        signature = inspect.signature(original)
        fields = STEPS[step].fields

        def wrapper(*a: Any, **kw: Any) -> Any:
            bound = signature.bind(*a, **kw)
            args: dict[str, Any] = {"client": client, "channel": ch.id}
            for name, value in bound.arguments.items():
                param = signature.parameters[name]
                if name == "body":
                    body = bytes(value)
                    try:
                        args["body"] = body.decode("utf-8")
                    except UnicodeDecodeError:
                        args["body_base64"] = base64.b64encode(body).decode()
                    continue
                if name not in fields:
                    continue
                if value == param.default and not fields[name].required:
                    continue
                if name in ("properties", "arguments") and not value:
                    continue
                args[name] = plain(value)
            for name, spec in fields.items():
                if spec.required and name not in args:
                    args[name] = plain(signature.parameters[name].default)
            return self._call(step, lambda _r: args, lambda: original(*a, **kw))

        return wrapper

    # -- recording --------------------------------------------------------------------------

    def _call(
        self, step: str, make_args: Callable[[Any], dict[str, Any]], fn: Callable[[], Any]
    ) -> Any:
        with self._lock:
            if self._depth:
                return fn()
            broker = self.broker
            self._catch_up()
            self._depth += 1
            mark = len(broker.trace)
            result: Any = None
            failure: int | str | None = None
            try:
                result = fn()
                return result
            except AMQPError as err:
                failure = err.reply_code
                raise
            except ChannelClosedError:
                failure = "closed"
                raise
            finally:
                self._depth -= 1
                args = make_args(result)
                trace = broker.trace
                codes = [
                    trace[i].attrs["code"]
                    for i in range(mark, len(trace))
                    if trace[i].kind == "error"
                ]
                if codes:
                    args["error"] = codes[0]
                elif failure is not None:
                    args["error"] = failure
                self.steps.append({step: args or None})
                self._last_time = broker.clock.now()
                self._trace_mark = len(trace)

    def _catch_up(self) -> None:
        """Time that moved, or timers that fired, since the last step become a step."""
        now = self.broker.clock.now()
        if now != self._last_time:
            self.steps.append({"advance": {"to": now}})
            self._last_time = now
            self._trace_mark = len(self.broker.trace)
        elif len(self.broker.trace) != self._trace_mark:
            self.steps.append({"run_until_idle": None})
            self._trace_mark = len(self.broker.trace)

    # -- output -----------------------------------------------------------------------------

    def scenario(self, name: str = "recorded", *, description: str = "") -> dict[str, Any]:
        """The scenario (plain data, ready for ``yaml.safe_dump``) that replays the calls so
        far, expecting the trace they produced (its digest and its lines)."""
        with self._lock:
            steps = list(self.steps)
            now = self.broker.clock.now()
            trace = self.broker.trace
            if now != self._last_time:
                steps.append({"advance": {"to": now}})
            elif len(trace) != self._trace_mark:
                steps.append({"run_until_idle": None})
            data: dict[str, Any] = {"version": 1, "name": name}
            if description:
                data["description"] = description
            data["seed"] = self.seed
            if self.start:
                data["start"] = self.start
            data["steps"] = steps
            if self.virtual:
                data["expect"] = {
                    "trace_digest": trace.digest(),
                    "trace": [str(e) for e in trace],
                }
            else:
                # A wall clock moves inside a call; a replay cannot reproduce those event
                # times, so only what happened (not when) is expected.
                counts: dict[str, int] = {}
                for event in trace:
                    counts[event.kind] = counts.get(event.kind, 0) + 1
                data["description"] = (
                    (description + "\n" if description else "")
                    + "recorded on a wall clock: the replay expects the same events, not the "
                    "same times (trace digest " + trace.digest() + ")"
                )
                data["expect"] = {"events": counts}
            return data
