"""Guarantee checkers: pure functions from message histories (and a client's own ledger) to a
``Verdict``, in the shape of Jepsen's ``total-queue`` checker.

Every checker names what it found by the user's *key* of a message (by default its body as
text: what a consumer's ledger usually records), with the broker's message ids behind it:

- ``lost``: taken by the broker (``ok``: not nacked, not returned, confirmed when confirms were
  on) but never delivered for good (acked, or no-ack) / never processed;
- ``duplicated``: delivered for good / processed more than once;
- ``unexpected``: delivered / processed although nobody published it;
- ``recovered``: delivered / processed although the publisher was not told it was taken
  (nacked, returned, unconfirmed): not a violation, Jepsen's "recovered";
- ``pending``: still in the queue when the history ends (not lost: nobody drained it).

``Verdict.valid`` depends on the guarantee asked for: ``at-least-once`` forbids lost and
unexpected, ``at-most-once`` duplicated and unexpected, ``exactly-once`` all three.

Complexity: each checker is one pass over the histories (and the ledger) with dict and Counter
lookups: O(messages + deliveries + ledger entries) time and memory. ``check_fifo`` is one pass
over a queue's deliveries in order: O(deliveries).
"""

from __future__ import annotations

import hashlib
from collections import Counter
from collections.abc import Callable, Collection, Hashable, Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any, Literal

from .histories import Histories, MessageHistory, build_histories

__all__ = [
    "GUARANTEES",
    "Finding",
    "Guarantee",
    "RPCLedger",
    "Verdict",
    "check_delivery",
    "check_durability",
    "check_fifo",
    "check_processing",
    "check_rpc",
    "text_key",
]

Guarantee = Literal["at-least-once", "at-most-once", "exactly-once"]
GUARANTEES: tuple[Guarantee, ...] = ("at-least-once", "at-most-once", "exactly-once")
#: Which finding kinds break which guarantee.
_FORBIDDEN: dict[str, frozenset[str]] = {
    "at-least-once": frozenset({"lost", "unexpected"}),
    "at-most-once": frozenset({"duplicated", "unexpected"}),
    "exactly-once": frozenset({"lost", "duplicated", "unexpected"}),
}
Key = Callable[[MessageHistory], Hashable]


def text_key(history: MessageHistory) -> Hashable:
    """The default key: the body as text (UTF-8), as a consumer's ledger usually has it."""
    return history.text()


@dataclass(frozen=True)
class Finding:
    """One key the checker has something to say about."""

    key: Hashable
    #: How many times it was delivered / processed (duplicated), or 0.
    count: int = 0
    #: The broker's message ids with this key.
    msgs: tuple[int, ...] = ()
    #: What the histories say about it (one line).
    detail: str = ""

    def __str__(self) -> str:
        count = f" x{self.count}" if self.count > 1 else ""
        msgs = f" (msg {', '.join(map(str, self.msgs))})" if self.msgs else ""
        detail = f": {self.detail}" if self.detail else ""
        return f"{self.key!r}{count}{msgs}{detail}"


@dataclass(frozen=True)
class Verdict:
    """A checker's answer. True (``bool(verdict)``) when the guarantee held."""

    checker: str
    guarantee: str
    valid: bool
    attempted: int = 0
    ok: int = 0
    observed: int = 0
    lost: tuple[Finding, ...] = ()
    duplicated: tuple[Finding, ...] = ()
    unexpected: tuple[Finding, ...] = ()
    recovered: tuple[Finding, ...] = ()
    #: Other kinds of findings: "pending", "out_of_order", "wrong", "after_final", ...
    other: Mapping[str, tuple[Finding, ...]] = field(default_factory=dict)
    notes: tuple[str, ...] = ()

    def __bool__(self) -> bool:
        return self.valid

    def keys(self, kind: str) -> set[Hashable]:
        """The keys of one kind of finding (``"lost"``, ``"duplicated"``, ...)."""
        found = getattr(self, kind, None) if kind in _KINDS else self.other.get(kind, ())
        return {f.key for f in found or ()}

    def to_dict(self) -> dict[str, Any]:
        """Plain data (Jepsen's map: valid?, lost, duplicated, unexpected, recovered...)."""
        out: dict[str, Any] = {
            "checker": self.checker,
            "guarantee": self.guarantee,
            "valid": self.valid,
            "attempted": self.attempted,
            "ok": self.ok,
            "observed": self.observed,
        }
        for kind in _KINDS:
            out[kind] = [_plain(f) for f in getattr(self, kind)]
        for kind, found in self.other.items():
            out[kind] = [_plain(f) for f in found]
        out["notes"] = list(self.notes)
        return out

    def report(self, limit: int = 10) -> str:
        """Plain text for a test failure or a terminal."""
        status = "valid" if self.valid else "INVALID"
        lines = [
            f"{self.checker} ({self.guarantee}): {status}: {self.attempted} attempted, "
            f"{self.ok} ok, {self.observed} observed"
        ]
        kinds = [(k, getattr(self, k)) for k in _KINDS] + list(self.other.items())
        for kind, found in kinds:
            if not found:
                continue
            lines.append(f"  {kind} ({len(found)}):")
            lines.extend(f"    {f}" for f in found[:limit])
            if len(found) > limit:
                lines.append(f"    ... and {len(found) - limit} more")
        lines.extend(f"  note: {n}" for n in self.notes)
        return "\n".join(lines)

    __str__ = report


_KINDS = ("lost", "duplicated", "unexpected", "recovered")


def _plain(finding: Finding) -> dict[str, Any]:
    key = finding.key
    if not isinstance(key, str | int | float | bool | type(None)):
        key = repr(key)
    return {
        "key": key,
        "count": finding.count,
        "msgs": list(finding.msgs),
        "detail": finding.detail,
    }


def _histories(source: Any) -> Histories:
    return source if isinstance(source, Histories) else build_histories(source)


def _why_lost(histories: Histories, history: MessageHistory, queue: str | None) -> str:
    """The broker's side of a lost message, briefly."""
    parts = []
    accepted = history.accepted(queue)
    if accepted:
        d = accepted[-1]
        how = f"acked at #{d.settled_seq}" if d.settled == "ack" else "no-ack"
        parts.append(f"delivered to {d.consumer} at #{d.seq} and {how}")
        closed = histories.closed_after(d.connection, d.settled_seq or d.seq)
        if closed is not None:
            parts.append(f"then connection {d.connection} was {closed[1]} at #{closed[0]}")
    elif history.deliveries:
        parts.append(f"delivered {len(history.deliveries)}x, never acked")
    parts.extend(f"{why}" + (f" in {q}" if q else "") for q, why in history.lost)
    parts.extend(f"expired in {q}" for q in history.expired)
    parts.extend(f"dead-lettered from {d['queue']} ({d['reason']})" for d in history.dead_lettered)
    parts.extend(str(hit) for hit in history.faults if hit.action != "drop")
    parts.extend(f"restart: {outcome} in {q}" for q, outcome in history.restarts)
    if not parts:
        parts.append("published, never delivered")
    return "; ".join(parts)


def _intended(histories: Histories) -> Callable[[MessageHistory], Collection[str]]:
    """The queues a published message was meant for: where it (or a copy) routed, or, when a
    fault dropped it before routing, where others with its exchange and key routed."""
    by_route: dict[tuple[Any, Any], set[str]] = {}
    for h in histories:
        if h.routed and h.published is not None:
            by_route.setdefault((h.exchange, h.routing_key), set()).update(h.routed)

    def intended(h: MessageHistory) -> Collection[str]:
        if h.routed or h.route_events:
            return h.routed
        queues = by_route.get((h.exchange, h.routing_key), ())
        if not queues and h.exchange == "" and h.routing_key:
            return (h.routing_key,)
        return queues

    return intended


def _verdict(
    checker: str,
    guarantee: str,
    *,
    attempted: int,
    ok: int,
    observed: int,
    lost: list[Finding],
    duplicated: list[Finding],
    unexpected: list[Finding],
    recovered: list[Finding],
    other: dict[str, list[Finding]] | None = None,
    notes: list[str] | None = None,
    forbidden_other: Iterable[str] = (),
) -> Verdict:
    if guarantee not in _FORBIDDEN:
        raise ValueError(f"guarantee must be one of {list(GUARANTEES)}, not {guarantee!r}")
    found = {"lost": lost, "duplicated": duplicated, "unexpected": unexpected}
    bad = _FORBIDDEN[guarantee]
    others = {k: tuple(v) for k, v in (other or {}).items()}
    valid = not any(found[k] for k in bad) and not any(others.get(k) for k in forbidden_other)
    return Verdict(
        checker,
        guarantee,
        valid,
        attempted,
        ok,
        observed,
        tuple(lost),
        tuple(duplicated),
        tuple(unexpected),
        tuple(recovered),
        others,
        tuple(notes or ()),
    )


def _window_note(histories: Histories) -> list[str]:
    if histories.complete:
        return []
    return [
        "the trace was windowed: messages published before its window are unknown, never "
        "called lost (create the broker with trace='full' for a whole history)"
    ]


def check_delivery(
    source: Any,
    queue: str,
    *,
    guarantee: Guarantee = "at-least-once",
    key: Key = text_key,
) -> Verdict:
    """Did the messages published to ``queue`` reach a consumer for good (acked or no-ack)
    at least / at most / exactly once? Compared by ``key`` (fault copies and redeliveries of a
    message share its key)."""
    histories = _histories(source)
    intended = _intended(histories)
    attempts: dict[Hashable, list[MessageHistory]] = {}
    ok: set[Hashable] = set()
    for h in histories:
        if h.published is None or queue not in intended(h):
            continue
        k = key(h)
        attempts.setdefault(k, []).append(h)
        if h.ok:
            ok.add(k)
    delivered: Counter[Hashable] = Counter()
    by_key: dict[Hashable, list[int]] = {}
    pending: set[Hashable] = set()
    pending_pairs = histories.pending
    for h in histories:
        n = 0
        for d in h.deliveries:
            if d.queue == queue and (d.settled == "ack" or d.no_ack is True):
                n += 1
        if n or (queue, h.msg) in pending_pairs:
            k = key(h)
            by_key.setdefault(k, []).append(h.msg)
            if n:
                delivered[k] += n
            else:
                pending.add(k)
    return _ledger_verdict(
        histories,
        "delivery to " + repr(queue),
        guarantee,
        attempts,
        ok,
        delivered,
        by_key,
        pending,
        queue,
        _window_note(histories),
        complete=histories.complete,
    )


def _ledger_verdict(
    histories: Histories,
    checker: str,
    guarantee: str,
    attempts: Mapping[Hashable, list[MessageHistory]],
    ok: set[Hashable],
    observed: Counter[Hashable],
    observed_msgs: Mapping[Hashable, list[int]],
    pending: set[Hashable],
    queue: str | None,
    notes: list[str],
    *,
    complete: bool = True,
) -> Verdict:
    """Jepsen's total-queue: attempts, ok enqueues and observed dequeues -> findings."""
    lost = [
        Finding(
            k,
            0,
            tuple(h.msg for h in attempts[k]),
            "; ".join(_why_lost(histories, h, queue) for h in attempts[k]),
        )
        for k in attempts
        if k in ok and k not in observed and k not in pending
    ]
    duplicated = [
        Finding(k, n, tuple(observed_msgs.get(k, ())), _dup_detail(attempts.get(k, ())))
        for k, n in observed.items()
        if n > 1
    ]
    unexpected = [
        Finding(k, n, tuple(observed_msgs.get(k, ())), "never published")
        for k, n in observed.items()
        if k not in attempts and complete
    ]
    recovered = [
        Finding(k, n, tuple(h.msg for h in attempts[k]), "publisher was not told it was taken")
        for k, n in observed.items()
        if k in attempts and k not in ok
    ]
    waiting = [
        Finding(k, 0, tuple(observed_msgs.get(k, ())), "still queued")
        for k in pending
        if k not in observed
    ]
    return _verdict(
        checker,
        guarantee,
        attempted=len(attempts),
        ok=len(ok),
        observed=sum(observed.values()),
        lost=lost,
        duplicated=duplicated,
        unexpected=unexpected,
        recovered=recovered,
        other={"pending": waiting} if waiting else {},
        notes=notes,
    )


def _dup_detail(histories: Iterable[MessageHistory]) -> str:
    parts: list[str] = []
    for h in histories:
        parts.extend(str(hit) for hit in h.faults if hit.action in ("duplicate", "redeliver"))
        redelivered = [d for d in h.deliveries if d.redelivered]
        if redelivered:
            parts.append(f"redelivered {len(redelivered)}x")
    return "; ".join(parts)


def check_processing(
    processed: Iterable[Hashable],
    source: Any = None,
    *,
    queue: str | None = None,
    sent: Iterable[Hashable] | None = None,
    guarantee: Guarantee = "exactly-once",
    key: Key = text_key,
) -> Verdict:
    """Check a consumer's own ledger (the keys it says it processed, in order, repeats
    included) against what was published, in Jepsen's terms.

    What counts as sent: ``sent`` when given, else the messages in the histories of ``source``
    published to ``queue`` (any queue when None) and taken by the broker (``ok``). A lost
    message is named with what the broker did with it (delivered to whom, acked when): the
    difference between "the broker lost it" and "the consumer acked it and lost its work".
    """
    observed: Counter[Hashable] = Counter(processed)
    attempts: dict[Hashable, list[MessageHistory]] = {}
    ok: set[Hashable] = set()
    notes: list[str] = []
    complete = True
    histories = Histories({}, True, 0, set())
    if source is not None:
        histories = _histories(source)
        complete = histories.complete
        notes += _window_note(histories)
        intended = _intended(histories)
        for h in histories:
            if h.published is None or (queue is not None and queue not in intended(h)):
                continue
            k = key(h)
            attempts.setdefault(k, []).append(h)
            if h.ok:
                ok.add(k)
    if sent is not None:
        for k in sent:
            attempts.setdefault(k, [])
            ok.add(k)
    if source is None and sent is None:
        raise ValueError("check_processing needs the histories (source) or the sent keys")
    if key is text_key and attempts:
        # A recorded trace keeps bodies by their sha256 ("sha256:..." keys): match the ledger's
        # text by its hash too.
        observed = Counter({_as_attempted(k, attempts): n for k, n in observed.items()})
    msgs = {k: [h.msg for h in hs] for k, hs in attempts.items()}
    return _ledger_verdict(
        histories,
        "processing ledger" + (f" of {queue!r}" if queue else ""),
        guarantee,
        attempts,
        ok,
        observed,
        msgs,
        set(),
        queue,
        notes,
        complete=complete,
    )


def _as_attempted(entry: Hashable, attempts: Mapping[Hashable, Any]) -> Hashable:
    if entry in attempts or not isinstance(entry, str | bytes):
        return entry
    data = entry.encode() if isinstance(entry, str) else entry
    hashed = f"sha256:{hashlib.sha256(data).hexdigest()}"
    return hashed if hashed in attempts else entry


def check_durability(
    source: Any,
    *,
    persistent: Iterable[Hashable] | Callable[[MessageHistory], bool],
    queue: str | None = None,
    key: Key = text_key,
) -> Verdict:
    """No confirmed persistent message is lost across restarts: every ``ok`` message whose key
    is in ``persistent`` (or for which it returns True) that was routed to a queue (``queue``,
    or any) is delivered for good afterwards, or still queued. The trace does not record
    ``delivery_mode``, hence the argument. ``lost`` findings name the restarts they sat through.
    """
    histories = _histories(source)
    if callable(persistent):
        chosen: Callable[[MessageHistory], bool] = persistent
    else:
        keys = set(persistent)

        def chosen(h: MessageHistory) -> bool:
            return key(h) in keys

    intended = _intended(histories)
    attempts: dict[Hashable, list[MessageHistory]] = {}
    ok: set[Hashable] = set()
    for h in histories:
        if h.published is None or not chosen(h):
            continue
        queues = intended(h)
        if not queues or (queue is not None and queue not in queues):
            continue
        k = key(h)
        attempts.setdefault(k, []).append(h)
        if h.ok:
            ok.add(k)
    delivered: Counter[Hashable] = Counter()
    msgs: dict[Hashable, list[int]] = {}
    pending: set[Hashable] = set()
    pending_in: dict[int, list[str]] = {}
    for q, m in histories.pending:
        pending_in.setdefault(m, []).append(q)
    for h in histories:
        k = key(h)
        if k not in attempts:
            continue
        n = len(h.accepted(queue))
        msgs.setdefault(k, []).append(h.msg)
        if n:
            delivered[k] += n
        elif any(queue is None or q == queue for q in pending_in.get(h.msg, ())):
            pending.add(k)
    notes = [*_window_note(histories), f"{histories.restarts} restart(s) in the history"]
    return _ledger_verdict(
        histories,
        "durability" + (f" of {queue!r}" if queue else ""),
        "at-least-once",
        attempts,
        ok,
        delivered,
        msgs,
        pending,
        queue,
        notes,
        complete=histories.complete,
    )


#: Fault actions that may legitimately put a message out of FIFO order.
_EXCUSING = frozenset(
    {"delay", "reorder", "redeliver", "close_channel", "close_connection", "restart"}
)


def check_fifo(source: Any, queue: str, *, priorities: bool = False) -> Verdict:
    """Per-queue FIFO: first deliveries from ``queue`` (to any consumer, or basic.get) come in
    the order the messages were enqueued. Allowed exceptions, not reported: redeliveries
    (requeued messages go back to their place), messages a fault delayed, reordered or
    redelivered, and everything when ``priorities`` (a priority queue orders by priority).

    One pass over the queue's deliveries in delivery order (sorted by event number: linear for
    the nearly ordered lists histories give, O(d log d) at worst), keeping the highest enqueue
    rank delivered so far. Each violation names the message delivered late and the
    one that overtook it.
    """
    histories = _histories(source)
    rank: dict[int, int] = {}
    firsts: list[tuple[int, MessageHistory]] = []
    excused: set[int] = set()
    for h in histories:
        msg = h.msg
        if h.faults and any(f.action in _EXCUSING for f in h.faults):
            excused.add(msg)
        position = h.enqueue_seqs.get(queue)
        if position is not None:
            rank[msg] = position
        for d in h.deliveries:
            if d.count == 1 and d.queue == queue and not d.redelivered:
                firsts.append((d.seq, h))
    out_of_order: list[Finding] = []
    if not priorities:
        firsts.sort(key=_first)
        top: tuple[int, int] | None = None  # (rank, msg) of the latest-enqueued delivered yet
        for _, h in firsts:
            r = rank.get(h.msg)
            if r is None or h.msg in excused:
                continue
            if top is not None and r < top[0]:
                out_of_order.append(
                    Finding(
                        h.text(),
                        0,
                        (h.msg,),
                        f"enqueued before msg {top[1]} but delivered after it",
                    )
                )
            elif top is None or r > top[0]:
                top = (r, h.msg)
    notes = _window_note(histories)
    if priorities:
        notes.append("priority queue: order not checked")
    return _verdict(
        f"fifo of {queue!r}",
        "at-least-once",
        attempted=len(rank),
        ok=len(rank),
        observed=len(firsts),
        lost=[],
        duplicated=[],
        unexpected=[],
        recovered=[],
        other={"out_of_order": out_of_order},
        notes=notes,
        forbidden_other=("out_of_order",),
    )


def _first(item: tuple[int, MessageHistory]) -> int:
    return item[0]


# -- RPC ------------------------------------------------------------------------------------


@dataclass
class RPCLedger:
    """What an RPC client saw, for ``check_rpc``: the calls it made and every result message
    it was handed (``on_message``), each with the address it arrived on.

    ``ledger.call(id, reply_to)``, then ``ledger.result(correlation_id, state, reply_to=...)``
    per message received; ``expect(id, state)`` names the terminal state a call must end in.
    """

    final_states: frozenset[str] = frozenset({"SUCCESS", "FAILURE", "REVOKED"})
    calls: dict[str, str | None] = field(default_factory=dict)
    results: list[tuple[str, str, str | None]] = field(default_factory=list)
    expected: dict[str, str] = field(default_factory=dict)

    def call(self, call_id: str, reply_to: str | None = None) -> None:
        self.calls[call_id] = reply_to

    def expect(self, call_id: str, state: str) -> None:
        self.expected[call_id] = state

    def result(self, correlation_id: str, state: str, *, reply_to: str | None = None) -> None:
        self.results.append((correlation_id, state, reply_to))


def check_rpc(ledger: RPCLedger) -> Verdict:
    """Every call gets exactly one terminal result, on its caller's reply address, matched by
    correlation id, whatever the broker duplicated or reordered:

    - ``lost``: a call with no terminal result;
    - ``duplicated``: a call handed more than one terminal result;
    - ``unexpected``: a terminal result for no call of this client, or on another address;
    - ``wrong``: the terminal result is not the expected state;
    - ``after_final``: a result handed over after the call's terminal one.

    One pass over the results: O(calls + results).
    """
    finals: dict[str, list[str]] = {}
    after: list[Finding] = []
    unexpected: list[Finding] = []
    for correlation_id, state, reply_to in ledger.results:
        known = correlation_id in ledger.calls
        expected_address = ledger.calls.get(correlation_id)
        if not known or (
            expected_address is not None and reply_to is not None and reply_to != expected_address
        ):
            where = f"on {reply_to!r}" if reply_to else ""
            why = "no such call" if not known else f"arrived {where}, not {expected_address!r}"
            unexpected.append(Finding(correlation_id, 1, (), f"{state}: {why}"))
            continue
        if correlation_id in finals and state not in ledger.final_states:
            after.append(
                Finding(correlation_id, 1, (), f"{state} after {finals[correlation_id][0]}")
            )
        if state in ledger.final_states:
            finals.setdefault(correlation_id, []).append(state)
    lost = [Finding(c, 0, (), "no terminal result") for c in ledger.calls if c not in finals]
    duplicated = [
        Finding(c, len(states), (), " then ".join(states))
        for c, states in finals.items()
        if len(states) > 1
    ]
    wrong = [
        Finding(c, 1, (), f"ended {finals[c][0]}, expected {state}")
        for c, state in ledger.expected.items()
        if c in finals and finals[c][0] != state
    ]
    return _verdict(
        "rpc",
        "exactly-once",
        attempted=len(ledger.calls),
        ok=len(ledger.calls),
        observed=len(ledger.results),
        lost=lost,
        duplicated=duplicated,
        unexpected=unexpected,
        recovered=[],
        other={"wrong": wrong, "after_final": after},
        forbidden_other=("wrong", "after_final"),
    )
