"""The trace's retention contract, through its public behaviour only (issue 22's gaps).

Each test kills a hand-written bug that survived the suite before (docs/mutation.md): the
window keeping ``window - 1`` events, ``set_mode("window")`` not trimming a full trace,
``clear()`` keeping the old running hash, ``complete`` wrong after ``digest()``, ``since()``
off by one.
"""

from __future__ import annotations

import pytest

from simamqp.core.trace import Trace, TraceNotRetained


def _emit(trace: Trace, n: int, start: int = 0) -> None:
    for i in range(start, start + n):
        trace.emit(float(i), "tick", {"i": i})


def _indexes(events: list) -> list[int]:
    return [e.attrs["i"] for e in events]


@pytest.mark.parametrize("extra", [0, 1, 7])
def test_window_keeps_at_least_the_last_window_events(extra):
    trace = Trace(mode="window", window=10)
    _emit(trace, 2 * 10 + extra)  # past the point where old events are let go
    assert not trace.complete
    assert _indexes(trace.tail(10)) == list(range(10 + extra, 20 + extra))
    assert trace[len(trace) - 10].attrs["i"] == 10 + extra
    assert 10 <= trace.retained <= 2 * 10


def test_switching_a_full_trace_to_window_trims_it():
    trace = Trace(mode="full", window=10)
    _emit(trace, 50)
    assert trace.complete and trace.retained == 50
    trace.set_mode("window")
    assert trace.retained <= 2 * 10
    assert not trace.complete
    assert _indexes(trace.tail(10)) == list(range(40, 50))
    with pytest.raises(TraceNotRetained):
        _ = trace.events


def test_clear_starts_a_fresh_digest():
    fresh = Trace(mode="window", window=10)
    _emit(fresh, 5, start=100)
    cleared = Trace(mode="window", window=10)
    _emit(cleared, 30)  # some of it folded into the running hash
    cleared.digest()
    cleared.clear()
    _emit(cleared, 5, start=100)
    assert len(cleared) == 5
    assert cleared.digest() == fresh.digest()
    assert cleared.complete


def test_digest_does_not_make_a_whole_trace_incomplete():
    trace = Trace(mode="window", window=10)
    _emit(trace, 8)
    before = trace.digest()
    assert trace.complete
    assert _indexes(trace.events) == list(range(8))
    _emit(trace, 1, start=8)
    assert trace.complete and trace.retained == 9
    assert trace.digest() != before


@pytest.mark.parametrize("mode", ["full", "window"])
def test_since_starts_at_the_index_it_is_given(mode):
    trace = Trace(mode=mode, window=10)
    _emit(trace, 25 if mode == "window" else 12)
    last = len(trace) - 1
    for index in (last - 3, last - 1, last):
        got = trace.since(index)
        assert got[0] == trace[index]
        assert _indexes(got) == list(range(index, len(trace)))
    assert trace.since(len(trace)) == []
