"""Trace retention (issue 13): a running digest, a bounded window by default, full retention
when asked, and a clear error instead of a partial answer; one timestamp per operation
(issue 23). The digests themselves are defined in tests/core/test_trace_digest.py."""

from __future__ import annotations

import hashlib
import json
import sys
from pathlib import Path
from typing import Any

import pytest
from _digest_reference import v1_digest, v2_digest
from hypothesis import given, settings
from hypothesis import strategies as st

from simamqp.core import Broker, Trace, TraceNotRetained
from simamqp.core import broker as core_broker
from simamqp.core.trace import DEFAULT_WINDOW, Event, Shape
from simamqp.scenarios import collect, load, run_scenario

ROOT = Path(__file__).resolve().parents[2]
LIBRARY = collect([ROOT / "scenarios"])


def reference_digest(events: list[Event]) -> str:
    """The v2 digest of whole events, computed from the definition (no streaming, no marshal)."""
    return v2_digest((e.time, e.kind, e.attrs) for e in events)


def reference_v1(events: list[Event]) -> str:
    return v1_digest((e.time, e.kind, e.attrs) for e in events)


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
        assert broker.trace.digest(version=1) == reference_v1(events)
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
    assert off.trace.digest() == "v2:" + hashlib.sha256().hexdigest()
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
    assert len(broker.trace) == 0 and broker.trace.digest() == "v2:" + hashlib.sha256().hexdigest()
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
            st.floats() | st.integers(0, 10),
        ),
        min_size=1,
        max_size=12,
    ),
    window=st.integers(1, 5),
)
def test_the_running_digest_is_the_digest_of_whole_events(
    shapes: list[tuple[str, dict[str, Any], float]], window: int
) -> None:
    """Whatever kinds, attribute names, value types and clock values events have, however the
    window cuts them into batches, the running digest equals the definition's (and v1 is
    still the v1 of the same events)."""
    events = [Event(i + 1, t, kind, attrs) for i, (kind, attrs, t) in enumerate(shapes)]
    assert replay(events, window=window).digest() == reference_digest(events)
    assert replay(events, window=10**6).digest(version=1) == reference_v1(events)


class _Int(int):
    pass


class _Str(str):
    pass


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
#: what a call site may pass (Trace.record's contract): exact atomic values, subclasses of them
#: (from clients), tuples of those
_atomic = (
    st.none()
    | st.booleans()
    | st.integers()
    | st.integers().map(_Int)
    | st.floats()
    | st.text()
    | st.text().map(_Str)
    | st.binary(max_size=40)
)
_field_values = _atomic | st.lists(_atomic, max_size=3).map(tuple)


@settings(max_examples=150, deadline=None)
@given(
    events=st.lists(
        st.tuples(
            # the types the shape was declared with, or anything a call site may pass
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
def test_shape_records_give_the_digest_of_the_same_events_emitted_as_dicts(
    events: list[tuple[tuple[Any, ...], float, bool]],
) -> None:
    """``Trace.record`` (a tuple of values in the call site's order, tuples for lists) hashes
    and reads back exactly as ``emit`` with the attribute dict would."""
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
    assert [list(e.attrs) for e in full.events] == [list(_SHAPE.keys)] * len(events)
    assert trace.digest() == full.digest() == reference_digest(expected)


# -- the known gaps of a windowed log, each pinned ----------------------------------------------


@pytest.mark.parametrize("window", [1, 2, 3, 10])
def test_a_window_keeps_the_last_window_events_at_every_length(window: int) -> None:
    """After any number of events, the last ``window`` of them (all, when fewer) are there to
    read; the trace never keeps fewer than that, nor more than twice that."""
    trace = Trace(window=window)
    for n in range(1, 5 * window + 3):
        trace.emit(float(n), "e", {"n": n})
        kept = [e.attrs["n"] for e in trace.tail(window)]
        assert kept == list(range(max(1, n - window + 1), n + 1)), n
        assert min(n, window) <= trace.retained <= 2 * window
        assert trace[-1].seq == n and trace[n - 1].attrs["n"] == n
        assert trace.since(n - min(n, window)) == trace.tail(window)


def test_switching_to_the_window_lets_go_at_once() -> None:
    """``set_mode("window")`` after full retention keeps only the window, not everything until
    the next fold; the digest still covers every event."""
    trace = Trace(mode="full", window=4)
    events = [(float(i), "e", {"i": i}) for i in range(7)]  # under 2 * window
    for time, kind, attrs in events:
        trace.emit(time, kind, attrs)
    trace.set_mode("window")
    assert trace.retained == 4 and not trace.complete
    assert [e.attrs["i"] for e in trace.tail(10)] == [3, 4, 5, 6]
    assert trace.digest() == v2_digest(events)


def test_clear_forgets_the_old_digest() -> None:
    """After ``clear()`` the digest is that of the events since, as if the trace were new,
    even when the events before it had been folded."""
    trace = Trace(window=2)
    for i in range(9):
        trace.emit(0.0, "old", {"i": i})
    trace.digest()
    trace.clear()
    assert trace.digest() == "v2:" + hashlib.sha256().hexdigest() and trace.complete
    trace.emit(1.0, "new", {})
    assert trace.digest() == v2_digest([(1.0, "new", {})]) and trace[0].seq == 1


def test_digest_does_not_drop_events() -> None:
    """Asking for the digest folds the kept events into it but keeps them: the log is still
    complete and whole, and asking again changes nothing."""
    trace = Trace(window=50)
    for i in range(30):
        trace.emit(0.0, "e", {"i": i})
    first = trace.digest()
    assert trace.complete and trace.retained == 30 and len(trace.events) == 30
    trace.emit(0.0, "e", {"i": 30})
    assert trace.complete
    assert trace.digest() != first and trace.digest() == trace.digest()
    assert trace.digest(version=1) == reference_v1(trace.events)


def test_since_counts_as_indexing_does() -> None:
    trace = Trace(window=3)
    for i in range(10):
        trace.emit(0.0, "e", {"i": i})
    assert [e.attrs["i"] for e in trace.since(8)] == [8, 9]
    assert trace.since(8)[0] == trace[8]
    assert trace.since(len(trace)) == [] and trace.since(len(trace) + 5) == []
    assert [e.attrs["i"] for e in trace.since(-2)] == [8, 9]
    with pytest.raises(TraceNotRetained):
        trace.since(2)


# -- one timestamp per operation ------------------------------------------------------------


class TickingClock:
    """A clock that moves by itself: each read is 1 ms later (what a wall clock does)."""

    virtual = False

    def __init__(self) -> None:
        self.reads = 0

    def now(self) -> float:
        self.reads += 1
        return 1000.0 + self.reads / 1000


def test_the_events_of_one_operation_share_its_time() -> None:
    """On a clock that moves by itself, every event one channel method causes (publish, route,
    enqueue, the delivery to a waiting consumer; an ack) carries one time; the next operation
    has a later one."""
    broker = Broker(seed=1, clock=TickingClock(), trace="full")
    ch = broker.connect().channel()
    ch.queue_declare("q")
    ch.basic_consume("q")
    mark = len(broker.trace)
    ch.basic_publish(b"m", "", "q")
    publish = broker.trace.since(mark)
    assert [e.kind for e in publish] == ["publish", "route", "enqueue", "deliver"]
    assert len({e.time for e in publish}) == 1
    mark = len(broker.trace)
    ch.basic_ack(1)
    (ack,) = broker.trace.since(mark)
    assert ack.kind == "ack" and ack.time > publish[0].time
    assert broker.trace._op_time is None  # nothing left pinned between operations


def test_an_operation_that_fails_still_ends() -> None:
    """A refused method (404) ends its operation: later events get their own time."""
    broker = Broker(seed=1, clock=TickingClock(), trace="full")
    conn = broker.connect()
    ch = conn.channel()
    with pytest.raises(Exception, match="NOT_FOUND"):
        ch.queue_declare("missing", passive=True)
    assert broker.trace._op_time is None
    ch2 = conn.channel()
    ch2.queue_declare("q")
    ch2.basic_publish(b"a", "", "q")  # an async method on another channel
    ch2.basic_publish(b"b", "", "missing-exchange")  # closes ch2 through the outbox
    assert broker.trace._op_time is None
    times = [e.time for e in broker.trace.of_kind("publish")]
    assert len(times) == 2 and times[0] < times[1]


def test_a_virtual_clock_is_not_pinned() -> None:
    """Virtual time only moves when told to, so nothing is pinned (and nothing costs)."""
    broker = Broker(seed=1, trace="full")
    ch = broker.connect().channel()
    ch.queue_declare("q")
    begun = []
    broker.trace.begin_operation = lambda time: begun.append(time) or False  # type: ignore[method-assign]
    ch.basic_publish(b"m", "", "q")
    assert begun == []
