"""Expectations: compare what a run observed with what the scenario says, readably."""

from __future__ import annotations

from collections import Counter
from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

from ..core.trace import parse_digest
from ._runner import body_text, trace_diff

if TYPE_CHECKING:
    from ._runner import Run

__all__ = ["check_expectations"]

_QUEUE_KEYS = (
    "messages_ready",
    "messages_unacknowledged",
    "messages",
    "consumers",
    "durable",
    "exclusive",
    "auto_delete",
)
_EXCHANGE_KEYS = ("type", "durable", "auto_delete", "internal")


def _matches(expected: Any, actual: Any) -> bool:
    """Equality, where an expected mapping only constrains the keys it lists."""
    if isinstance(expected, Mapping) and isinstance(actual, Mapping):
        return all(k in actual and _matches(v, actual[k]) for k, v in expected.items())
    if isinstance(expected, bytes) and isinstance(actual, str):
        return body_text(expected) == actual
    if isinstance(expected, bool) or isinstance(actual, bool):
        return expected is actual
    if isinstance(expected, int | float) and isinstance(actual, int | float):
        return not isinstance(expected, bool) and float(expected) == float(actual)
    return bool(expected == actual)


def _item_matches(expected: Any, actual: Mapping[str, Any]) -> bool:
    if isinstance(expected, str):
        return expected == actual.get("body")
    return _matches(expected, actual)


def _short(value: Any, limit: int = 300) -> str:
    """``repr(value)``, cut in the middle when long (a failure stays readable)."""
    text = repr(value)
    if len(text) <= limit:
        return text
    return f"{text[: limit // 2]} ...({len(text) - limit} characters)... {text[-limit // 2 :]}"


def _show(item: Any) -> str:
    if isinstance(item, Mapping):
        keep = {k: v for k, v in item.items() if k not in ("properties", "channel")}
        return "{" + ", ".join(f"{k}: {v!r}" for k, v in keep.items()) + "}"
    return repr(item)


def _compare_list(what: str, expected: list[Any], actual: list[Any]) -> list[str]:
    def matches(e: Any, a: Any) -> bool:
        return _item_matches(e, a) if isinstance(a, Mapping) else bool(e == a)

    problems: list[str] = []
    for i in range(max(len(expected), len(actual))):
        if i >= len(expected):
            extra = _short(", ".join(_show(_brief(a)) for a in actual[i : i + 50]))
            problems.append(f"{what}: {len(actual) - i} more than expected: {extra}")
            break
        if i >= len(actual):
            missing = _short(", ".join(_show(e) for e in expected[i : i + 50]))
            problems.append(
                f"{what}: got {len(actual)}, expected {len(expected)}; missing: {missing}"
            )
            break
        if not matches(expected[i], actual[i]):
            problems.append(
                f"{what}[{i + 1}]: expected {_show(expected[i])}, got {_show(_brief(actual[i]))}"
            )
            got = [_brief(a) for a in actual]
            problems.append(f"{what}: all received: {_short(got)}")
            break
    return problems


def _brief(item: Any) -> Any:
    if isinstance(item, Mapping) and "body" in item:
        if item.get("via") == "deliver" and not item.get("redelivered"):
            return item["body"]
        return {k: item[k] for k in ("body", "via", "redelivered") if k in item}
    return item


def check_expectations(run: Run, expect: Mapping[str, Any]) -> list[str]:
    if not expect:
        return []
    run.drain()
    broker_name = expect.get("broker") or run.scenario.default_broker
    broker = run.brokers[broker_name]
    problems: list[str] = []

    section: str
    for section, attr in (
        ("deliveries", "received"),
        ("returns", "returns"),
        ("confirms", "confirms"),
        ("cancels", "cancels"),
    ):
        for client_name, items in (expect.get(section) or {}).items():
            client = run.clients.get(client_name)
            seen = list(getattr(client, attr)) if client is not None else []
            problems += _compare_list(f"{section} of {client_name}", list(items), seen)

    for name, state in (expect.get("queues") or {}).items():
        vhost = state.get("vhost", "/") if isinstance(state, Mapping) else "/"
        try:
            info = broker.queue(name, vhost)
        except KeyError:
            if state != "absent":
                problems.append(f"queue {name!r}: expected it to exist, it does not")
            continue
        if state == "absent":
            problems.append(
                f"queue {name!r}: expected it to be gone, it exists "
                f"({info.messages_ready} ready, {info.consumers} consumers)"
            )
            continue
        actual: dict[str, Any] = {k: getattr(info, k) for k in _QUEUE_KEYS}
        actual["bodies"] = [body_text(b) for b in info.bodies]
        actual["arguments"] = dict(info.arguments)
        actual["type"] = info.type
        actual["delivery_counts"] = list(info.delivery_counts)
        for key, want in state.items():
            if key == "vhost":
                continue
            if key not in actual:
                problems.append(f"queue {name!r}: unknown field {key!r}")
            elif not _matches(want, actual[key]):
                problems.append(
                    f"queue {name!r}: {key} expected {_short(want)}, got {_short(actual[key])}"
                )

    for name, state in (expect.get("exchanges") or {}).items():
        vhost = state.get("vhost", "/") if isinstance(state, Mapping) else "/"
        try:
            xinfo = broker.exchange(name, vhost)
        except KeyError:
            if state != "absent":
                problems.append(f"exchange {name!r}: expected it to exist, it does not")
            continue
        if state == "absent":
            problems.append(f"exchange {name!r}: expected it to be gone, it exists")
            continue
        xactual: dict[str, Any] = {k: getattr(xinfo, k) for k in _EXCHANGE_KEYS}
        xactual["arguments"] = dict(xinfo.arguments)
        for key, want in state.items():
            if key == "vhost":
                continue
            if key not in xactual:
                problems.append(f"exchange {name!r}: unknown field {key!r}")
            elif not _matches(want, xactual[key]):
                problems.append(
                    f"exchange {name!r}: {key} expected {_short(want)}, got {_short(xactual[key])}"
                )

    if "errors" in expect:
        problems += _compare_errors(list(expect["errors"]), run.errors)

    if "events" in expect:
        counts = Counter(e.kind for e in broker.trace)
        for kind, want in expect["events"].items():
            if counts.get(kind, 0) != want:
                problems.append(f"events: expected {want} {kind!r}, got {counts.get(kind, 0)}")

    if "time" in expect and float(expect["time"]) != broker.clock.now():
        problems.append(f"time: expected {expect['time']!r}, got {broker.clock.now()!r}")

    actual_lines = [str(e) for e in broker.trace]
    if "trace" in expect and list(expect["trace"]) != actual_lines:
        problems.append("trace differs:\n" + trace_diff(list(expect["trace"]), actual_lines))
    if "trace_digest" in expect:
        want = expect["trace_digest"]
        digest = broker.trace.digest(version=parse_digest(want))  # v1 only when a file has v1
        if digest != want:
            problems.append(
                f"trace digest: expected {want}, got {digest} "
                f"({len(actual_lines)} events; record the scenario again to see them)"
                if "trace" not in expect
                else f"trace digest: expected {want}, got {digest}"
            )
    return problems


def _compare_errors(expected: list[Any], actual: list[dict[str, Any]]) -> list[str]:
    want: Any
    problems: list[str] = []
    if len(expected) != len(actual):
        summary = [f"{a['client']}:{a['code']}" for a in actual]
        problems.append(f"errors: expected {len(expected)}, got {len(actual)}: {summary}")
    for i, (want, got) in enumerate(zip(expected, actual, strict=False)):
        if isinstance(want, int):
            want = {"code": want}
        for key, value in want.items():
            if key == "text":
                if str(value) not in str(got.get("text", "")):
                    problems.append(f"errors[{i + 1}]: text {got.get('text')!r} lacks {value!r}")
            elif got.get(key) != value:
                problems.append(f"errors[{i + 1}]: {key} expected {value!r}, got {got.get(key)!r}")
    return problems
