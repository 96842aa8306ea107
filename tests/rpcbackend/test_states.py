"""The state precedence rule and the bounded buffer, without a broker."""

from __future__ import annotations

import logging
from typing import Any

import pytest

from rpcbackend._states import FINAL_PRECEDENCE, supersedes
from rpcbackend._store import ResultStore


def meta(status: str, **extra: Any) -> dict[str, Any]:
    return {"status": status, "result": None, **extra}


@pytest.mark.parametrize(
    ("current", "incoming", "replaces"),
    [
        (None, "STARTED", True),
        (None, "SUCCESS", True),
        ("STARTED", "SUCCESS", True),
        ("STARTED", "RETRY", True),
        ("RETRY", "STARTED", True),  # a retried task starts again
        ("SUCCESS", "STARTED", False),  # late progress never moves a task backwards
        ("FAILURE", "RETRY", False),
        ("SUCCESS", "SUCCESS", False),  # duplicate
        ("FAILURE", "SUCCESS", True),
        ("SUCCESS", "FAILURE", False),
        ("REVOKED", "FAILURE", True),
        ("FAILURE", "REVOKED", False),
    ],
)
def test_supersedes_table(current: str | None, incoming: str, replaces: bool) -> None:
    assert supersedes(meta(incoming), None if current is None else meta(current)) is replaces


def test_two_final_states_resolve_the_same_in_either_order() -> None:
    for first, second in [("SUCCESS", "FAILURE"), ("FAILURE", "SUCCESS")]:
        store = ResultStore(10)
        store.merge("t", meta(first))
        store.merge("t", meta(second))
        assert store.get("t") == meta(FINAL_PRECEDENCE[0])


def test_merge_reports_the_first_final_state_only() -> None:
    store = ResultStore(10)
    assert store.merge("t", meta("STARTED")).became_ready is False
    assert store.merge("t", meta("SUCCESS")).became_ready is True
    again = store.merge("t", meta("SUCCESS"))
    assert (again.accepted, again.became_ready) == (False, False)


def test_claim_returns_final_states_only() -> None:
    store = ResultStore(10)
    store.merge("t", meta("STARTED"))
    assert store.claim("t") is None
    store.merge("t", meta("SUCCESS"))
    assert store.claim("t") == meta("SUCCESS")


def test_eviction_of_unclaimed_final_result_is_logged_and_remembered(
    caplog: pytest.LogCaptureFixture,
) -> None:
    store = ResultStore(2)
    with caplog.at_level(logging.WARNING, logger="rpcbackend"):
        store.merge("a", meta("SUCCESS"))
        store.merge("b", meta("SUCCESS"))
        store.merge("c", meta("SUCCESS"))
    assert store.get("a") is None and store.was_evicted("a")
    assert len(store) == 2
    assert "dropped the unclaimed SUCCESS result of task a" in caplog.text


def test_claimed_and_progress_entries_are_evicted_silently(
    caplog: pytest.LogCaptureFixture,
) -> None:
    store = ResultStore(2)
    with caplog.at_level(logging.WARNING, logger="rpcbackend"):
        store.merge("a", meta("SUCCESS"))
        store.claim("a")
        store.merge("b", meta("STARTED"))
        store.merge("c", meta("SUCCESS"))
        store.merge("d", meta("SUCCESS"))
    assert not store.was_evicted("a") and not store.was_evicted("b")
    assert caplog.text == ""


def test_pinned_ids_survive_eviction() -> None:
    store = ResultStore(1)
    store.pin("a")
    store.merge("a", meta("SUCCESS"))
    store.merge("b", meta("SUCCESS"))
    assert store.get("a") is not None
    assert store.was_evicted("b")  # the only entry that nobody waits for
    store.unpin("a")
    store.merge("c", meta("SUCCESS"))
    assert store.was_evicted("a")


def test_a_new_message_clears_the_tombstone() -> None:
    store = ResultStore(1)
    store.merge("a", meta("SUCCESS"))
    store.merge("b", meta("SUCCESS"))
    assert store.was_evicted("a")
    store.merge("a", meta("SUCCESS"))
    assert not store.was_evicted("a")


def test_limit_must_be_positive() -> None:
    with pytest.raises(ValueError, match="at least 1"):
        ResultStore(0)
