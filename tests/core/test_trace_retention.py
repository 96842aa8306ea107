"""Trace retention (issue 13): a running digest with today's definition, a bounded window by
default, full retention when asked, and a clear error instead of a partial answer."""

from __future__ import annotations

import hashlib
import json
import sys
from pathlib import Path
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from simamqp.core import Broker, Trace, TraceNotRetained
from simamqp.core import broker as core_broker
from simamqp.core.trace import DEFAULT_WINDOW, Event, Shape
from simamqp.scenarios import collect, load, run_scenario

ROOT = Path(__file__).resolve().parents[2]
LIBRARY = collect([ROOT / "scenarios"])


def reference_digest(events: list[Event]) -> str:
    """The digest as it was defined before it streamed: sha256 over json.dumps lines."""
    h = hashlib.sha256()
    for event in events:
        line = json.dumps(event.to_dict(), sort_keys=True, separators=(",", ":"))
        h.update(line.encode() + b"\n")
    return h.hexdigest()


def replay(events: list[Event], window: int) -> Trace:
    trace = Trace(window=window)
    for event in events:
        trace.emit(event.time, event.kind, event.attrs)
    return trace


def busy_broker(trace: Any = True) -> Broker:
    broker = Broker(seed=3, trace=trace)
    ch = broker.connect().channel()
    ch.queue_declare("q")
    ch.basic_consume("q", no_ack=True)
    for i in range(30):
        ch.basic_publish(b"%d" % i, "", "q", properties={"application_headers": {"f": 0.5}})
    return broker


@pytest.mark.parametrize("path", LIBRARY, ids=lambda p: str(p.relative_to(ROOT / "scenarios")))
def test_streaming_digest_equals_the_full_trace_digest_on_the_scenario_library(
    path: Path,
) -> None:
    result = run_scenario(load(path))
    for name, broker in result.run.brokers.items():
        events = broker.trace.events  # the runner keeps full traces
        expected = reference_digest(events)
        assert result.digests[name] == expected
        for window in (1, 3, 64):
            assert replay(events, window).digest() == expected, (name, window)


def _exec_workload(source: str, argv: list[str]) -> Any:
    """Run a determinism workload script in this process; returns what it printed, parsed."""
    printed: list[str] = []
    namespace = {"print": lambda *a, **k: printed.append(" ".join(map(str, a)))}
    saved = sys.argv
    sys.argv = ["workload", *argv]
    try:
        exec(compile(source, "<workload>", "exec"), namespace)
    finally:
        sys.argv = saved
    return printed[-1]


@pytest.mark.parametrize("window", [1, 5, 300])
@pytest.mark.parametrize("seed", [0, 9])
def test_streaming_digest_equals_the_full_trace_digest_on_the_property_workloads(
    monkeypatch: pytest.MonkeyPatch, window: int, seed: int
) -> None:
    sys.path.insert(0, str(ROOT / "tests" / "property"))
    sys.path.insert(0, str(ROOT / "tests" / "core"))
    try:
        import test_core_determinism
        import test_determinism
    finally:
        del sys.path[:2]
    plan = json.dumps([{"point": "publish", "action": "reorder", "window": 3, "probability": 0.5}])
    workloads = [
        (test_determinism._WORKLOAD, [str(seed), plan]),
        (test_core_determinism.WORKLOAD, [str(seed)]),
    ]
    full = [_exec_workload(src, argv) for src, argv in workloads]
    created: list[Trace] = []

    def small_window(*, enabled: bool = True, mode: Any = None) -> Trace:
        trace = Trace(enabled=enabled, mode=mode, window=window)
        created.append(trace)
        return trace

    monkeypatch.setattr(core_broker, "Trace", small_window)
    windowed = [_exec_workload(src, argv) for src, argv in workloads]
    assert windowed == full
    assert any(not t.complete for t in created)  # events really left the window


def test_default_trace_is_a_bounded_window() -> None:
    broker = busy_broker()
    trace = broker.trace
    assert trace.mode == "window" and trace.window == DEFAULT_WINDOW
    small = replay(trace.events, window=10)
    assert len(small) == len(trace) and small.retained <= 20
    assert not small.complete
    assert [e.seq for e in small.tail(5)] == [e.seq for e in trace.tail(5)]
    assert small.tail(5)[-1] is not None and small[-1] == trace[-1]
    assert small.digest() == trace.digest() == reference_digest(trace.events)


def test_a_windowed_trace_refuses_to_answer_from_part_of_the_log() -> None:
    full = busy_broker(trace="full").trace
    small = replay(full.events, window=4)
    for read in (
        lambda t: t.events,
        lambda t: t.of_kind("publish"),
        lambda t: list(t),
        lambda t: list(t.lines()),
        lambda t: t.format(),
        lambda t: t[0],
        lambda t: t.since(0),
    ):
        read(full)
        with pytest.raises(TraceNotRetained, match="trace='full'"):
            read(small)
    assert small.since(len(small) - 2) == full.since(len(full) - 2)
    assert small.format(last=3) == full.format(last=3)
    with pytest.raises(IndexError):
        small[len(small)]


def test_trace_modes_on_the_broker() -> None:
    assert busy_broker(trace="full").trace.complete
    assert len(busy_broker(trace="full").trace.events) == len(busy_broker().trace)
    off = busy_broker(trace="off")
    assert off.trace.mode == "off" and len(off.trace) == 0
    assert off.trace.digest() == hashlib.sha256().hexdigest()
    assert busy_broker(trace=False).trace.mode == "off"
    with pytest.raises(ValueError, match="trace mode must be one of"):
        Broker(trace="everything")  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="positive int"):
        Trace(window=0)


def test_set_trace_mode_switches_retention_from_now_on() -> None:
    broker = Broker(seed=1)
    broker.set_trace_mode("off")
    broker.connect()
    assert len(broker.trace) == 0
    broker.set_trace_mode("full")
    broker.connect()
    assert [e.kind for e in broker.trace] == ["connection-open"]
    broker.set_trace_mode("window")
    assert broker.trace.mode == "window" and broker.tracing


def test_clear_starts_the_log_and_its_digest_again() -> None:
    broker = busy_broker()
    broker.trace.clear()
    assert len(broker.trace) == 0 and broker.trace.digest() == hashlib.sha256().hexdigest()
    broker.connect()
    assert broker.trace[0].seq == 1


def test_a_window_does_not_keep_bodies_alive() -> None:
    """Bodies of messages that left the broker and the window are not held by the trace."""
    trace = Trace(window=4)
    bodies = []
    for i in range(50):
        body = bytearray(b"%d" % i)  # bytearray: weak-referenceable stand-in for a body
        bodies.append(body)
        trace.emit(float(i), "publish", {"body": body})
    held = {id(e.attrs["body"]) for e in trace.tail(100)}
    assert trace.retained <= 8 and len(held) == trace.retained
    assert all(id(b) not in held for b in bodies[:40])


_values = st.recursive(
    st.none()
    | st.booleans()
    | st.integers()
    | st.floats()
    | st.text()
    | st.binary(max_size=40)
    | st.lists(st.text(max_size=5), max_size=3),
    lambda inner: (
        st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=4), inner, max_size=3)
    ),
    max_leaves=6,
)


@settings(max_examples=150, deadline=None)
@given(
    shapes=st.lists(
        st.tuples(
            st.sampled_from(["deliver", "ack", 'odd kind \u00e9"{}']),
            st.dictionaries(st.text(min_size=1, max_size=6), _values, max_size=5),
            st.floats(allow_nan=False) | st.integers(0, 10),
        ),
        min_size=1,
        max_size=12,
    )
)
def test_compiled_line_encoders_write_exactly_what_json_dumps_writes(
    shapes: list[tuple[str, dict[str, Any], float]],
) -> None:
    """Whatever kinds, attribute names, value types and clock values events have (the same
    kind with different shapes included), the running digest equals the reference."""
    events = [Event(i + 1, t, kind, attrs) for i, (kind, attrs, t) in enumerate(shapes)]
    assert replay(events, window=1).digest() == reference_digest(events)


_SHAPE = Shape(
    "shape-test",
    conn=1,
    name="q",
    body=b"",
    flag=False,
    names=("a",),
    t=0.5,
    nothing=None,
)
_field_values = _values | st.lists(st.text(max_size=3) | st.integers(), max_size=3).map(tuple)


@settings(max_examples=150, deadline=None)
@given(
    events=st.lists(
        st.tuples(
            # the types the shape was compiled for (its encoder), or anything (the fallback)
            st.tuples(
                st.integers(),
                st.text(),
                st.binary(max_size=40),
                st.booleans(),
                st.lists(st.text(max_size=3), max_size=3).map(tuple),
                st.floats(),
                st.none(),
            )
            | st.tuples(*[_field_values for _ in _SHAPE.keys]),
            st.floats() | st.integers(0, 10),
            st.booleans(),
        ),
        min_size=1,
        max_size=8,
    )
)
def test_shape_records_give_the_lines_of_the_same_events_emitted_as_dicts(
    events: list[tuple[tuple[Any, ...], float, bool]],
) -> None:
    """``Trace.record`` (a tuple of values, tuples for lists) hashes and reads back exactly as
    ``emit`` with the attribute dict would, whatever types the values turn out to have."""
    trace = Trace(window=1)
    full = Trace(mode="full")
    expected = []
    for i, (values, time, as_dict) in enumerate(events):
        attrs = {
            k: list(v) if k in _SHAPE.lists and type(v) is tuple else v
            for k, v in zip(_SHAPE.keys, values, strict=True)
        }
        if as_dict:  # mixing both ways of recording in one trace
            trace.emit(time, "shape-test", attrs)
            full.emit(time, "shape-test", attrs)
        else:
            trace.record(time, _SHAPE, values)
            full.record(time, _SHAPE, values)
        expected.append(Event(i + 1, time, "shape-test", attrs))
    assert full.events == expected
    assert trace.digest() == full.digest() == reference_digest(expected)
