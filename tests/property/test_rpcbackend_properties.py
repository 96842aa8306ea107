"""Property tests of rpcbackend on simamqp: out-of-order, duplicate and backlog-overflow delivery,
and connection loss or restart during a wait.

Every example gets a fresh ``simamqp.Broker`` (seeded from the example) and a fresh backend whose
clock is the broker's virtual clock, so timeouts cost no wall time and nothing sleeps. Results
are published raw, as a Celery worker publishes them, in the arrival order a drawn
``rpc_result_streams()`` example dictates, and the broker may reorder, duplicate, delay or
redeliver them further under a drawn fault plan.
"""

from __future__ import annotations

import contextlib
import itertools
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

import kombu
import pytest
from _property_budget import property_settings
from _realtime import fails_instead_of_hanging
from hypothesis import example, given, seed
from hypothesis import strategies as st

import simamqp
from rpcbackend import BacklogLimitExceeded, Config, ResultTimeout, RPCBackend
from simamqp import strategies as sims
from simamqp.analysis import RPCLedger, check_rpc
from simamqp.pytest_plugin import BrokerFactory

FINAL = frozenset(sims.FINAL_STATES)
MISSION_EXAMPLES = 200
_names = itertools.count(1)

#: A final result's body; FAILURE/REVOKED carry an exception as Celery serialises it.
_EXCEPTION = {"exc_type": "ValueError", "exc_message": ["boom"], "exc_module": "builtins"}


def _result_for(status: str, task_id: str) -> Any:
    if status == "SUCCESS":
        return {"task": task_id}
    if status in ("FAILURE", "REVOKED", "RETRY"):
        return _EXCEPTION
    return {"current": 1} if status == "PROGRESS" else None


@dataclass
class Sim:
    """One broker, one client backend and a producer connection, torn down together."""

    broker: simamqp.Broker
    client: RPCBackend
    conn: kombu.Connection
    closables: list[Any] = field(default_factory=list)

    def publish(self, task_id: str, status: str, *, client: RPCBackend | None = None) -> None:
        body = {
            "status": status,
            "result": _result_for(status, task_id),
            "traceback": None,
            "children": [],
            "date_done": None,
            "task_id": task_id,
        }
        kombu.Producer(self.conn).publish(
            body,
            exchange="",
            routing_key=(client or self.client).oid,
            correlation_id=task_id,
            serializer="json",
            delivery_mode=1,
            # After a forced close the producer's next publish reads the connection.close and
            # raises ConnectionForced (as py-amqp does on RabbitMQ): reconnect and publish, as a
            # worker's producer does. Zero intervals: no real sleeping.
            retry=True,
            retry_policy={"max_retries": 3, "interval_start": 0, "interval_step": 0},
        )

    def queue_counts(self) -> tuple[int, int]:
        try:
            info = self.broker.queue(self.client.oid)
        except KeyError:
            return 0, 0
        return info.messages_ready, info.messages_unacknowledged


@contextlib.contextmanager
def sim_rpc(
    factory: BrokerFactory, broker_seed: int, *, plan: dict[str, Any] | None = None
) -> Iterator[Sim]:
    """A fresh broker for one example (the plugin's factory: seeded, recorded, and described
    in the failure report), an rpcbackend client on it, and the client's declared queue."""
    with factory(seed=broker_seed) as broker, _rpc_client(broker, plan) as sim:
        yield sim


@contextlib.contextmanager
def _rpc_client(broker: simamqp.Broker, plan: dict[str, Any] | None) -> Iterator[Sim]:
    client = RPCBackend(Config(broker_url=broker.url), clock=broker.clock.now)
    conn = broker.connection()
    sim = Sim(broker, client, conn)
    try:
        client.on_task_call(kombu.Producer(conn), "declare")
        if plan is not None:
            with broker.lock:
                broker.faults.load(plan)
        yield sim
    finally:
        with contextlib.suppress(Exception):
            client.close()
        with contextlib.suppress(Exception):
            conn.release()


def _interleavings(streams: list[sims.RPCResultStream]) -> st.SearchStrategy[list[int]]:
    """Which stream each next message comes from: any interleaving keeping each stream's order."""
    slots = [i for i, s in enumerate(streams) for _ in s.arrivals]
    return st.permutations(slots)


def _ordered_messages(
    streams: list[sims.RPCResultStream], order: list[int]
) -> list[tuple[str, str]]:
    cursors = [0] * len(streams)
    out = []
    for index in order:
        stream = streams[index]
        out.append((stream.task_id, stream.arrivals[cursors[index]]))
        cursors[index] += 1
    return out


def _rpc_ledger(streams: list[sims.RPCResultStream], client: RPCBackend) -> RPCLedger:
    """The calls ``client`` made (its reply queue is their reply address) and the terminal
    state each must end in, for ``check_rpc``; ``_on_message`` adds what it was handed."""
    ledger = RPCLedger(final_states=FINAL)
    for stream in streams:
        ledger.call(stream.task_id, reply_to=client.oid)
        ledger.expect(stream.task_id, stream.final_state)
    return ledger


def _on_message(ledger: RPCLedger, client: RPCBackend) -> Any:
    """An ``on_message`` callback recording each result ``client`` is handed, on its queue."""
    return lambda m: ledger.result(m["task_id"], m["status"], reply_to=client.oid)


def _check_rpc(ledger: RPCLedger) -> None:
    """Every call got exactly one terminal result, the expected one, on its caller's reply
    address, and nothing after it (duplicates and reordering notwithstanding)."""
    verdict = check_rpc(ledger)
    assert verdict.valid, verdict.report()


_reply_faults = sims.fault_plans(
    points=("enqueue", "deliver"),
    actions=("duplicate", "reorder", "delay", "redeliver"),
    max_rules=2,
    max_delay=1.0,
)


# -- out-of-order and duplicate delivery -------------------------------------------------------


@property_settings(minimum=MISSION_EXAMPLES)
@given(
    streams=st.lists(
        sims.rpc_result_streams(max_duplicates=2),
        min_size=1,
        max_size=4,
        unique_by=lambda s: s.task_id,
    ),
    data=st.data(),
    plan=_reply_faults,
    broker_seed=st.integers(0, 2**32 - 1),
)
def test_out_of_order_delivery_never_moves_a_task_backwards(
    sim_broker_factory: BrokerFactory,
    streams: list[sims.RPCResultStream],
    data: st.DataObject,
    plan: dict[str, Any],
    broker_seed: int,
) -> None:
    order = data.draw(_interleavings(streams), label="interleaving")
    with sim_rpc(sim_broker_factory, broker_seed, plan=plan) as sim:
        ledger = _rpc_ledger(streams, sim.client)
        for task_id, status in _ordered_messages(streams, order):
            sim.publish(task_id, status)
        ids = [s.task_id for s in streams]
        results = dict(
            sim.client.iter_results(ids, timeout=30, on_message=_on_message(ledger, sim.client))
        )
        for stream in streams:
            assert results[stream.task_id]["status"] == stream.final_state
        _check_rpc(ledger)
        # A late report of a finished task is acked and ignored, never read as news.
        assert sim.client.get_task_meta(ids[0])["status"] == streams[0].final_state


@property_settings(minimum=MISSION_EXAMPLES)
@given(
    per_client=st.lists(
        st.lists(sims.rpc_result_streams(max_duplicates=1), min_size=1, max_size=2),
        min_size=2,
        max_size=3,
    ).filter(
        lambda clients: len({s.task_id for c in clients for s in c}) == sum(map(len, clients))
    ),
    data=st.data(),
    plan=_reply_faults,
    broker_seed=st.integers(0, 2**32 - 1),
)
def test_many_clients_each_see_their_own_tasks_final_states_once(
    sim_broker_factory: BrokerFactory,
    per_client: list[list[sims.RPCResultStream]],
    data: st.DataObject,
    plan: dict[str, Any],
    broker_seed: int,
) -> None:
    with sim_rpc(sim_broker_factory, broker_seed, plan=plan) as sim:
        clients = [sim.client]
        for _ in per_client[1:]:
            other = RPCBackend(Config(broker_url=sim.broker.url), clock=sim.broker.clock.now)
            sim.closables.append(other)
            other.on_task_call(kombu.Producer(sim.conn), "declare")
            clients.append(other)
        try:
            # One global interleaving of every client's messages.
            flat = [(c, s) for c, streams in enumerate(per_client) for s in streams]
            order = data.draw(_interleavings([s for _, s in flat]), label="interleaving")
            messages = _ordered_messages([s for _, s in flat], order)
            owner = {s.task_id: clients[c] for c, s in flat}
            for task_id, status in messages:
                sim.publish(task_id, status, client=owner[task_id])
            for client, streams in zip(clients, per_client, strict=True):
                ledger = _rpc_ledger(streams, client)
                results = dict(
                    client.iter_results(
                        [s.task_id for s in streams],
                        timeout=30,
                        on_message=_on_message(ledger, client),
                    )
                )
                assert {t: m["status"] for t, m in results.items()} == {
                    s.task_id: s.final_state for s in streams
                }
                _check_rpc(ledger)
        finally:
            for other in clients[1:]:
                with contextlib.suppress(Exception):
                    other.close()


@property_settings(minimum=MISSION_EXAMPLES)
@given(
    stream=sims.rpc_result_streams(reorder=False, max_duplicates=4),
    copies=st.integers(1, 3),
    point=st.sampled_from(("publish", "enqueue")),
    probability=st.sampled_from((0.5, 1.0)),
    redeliver_nth=st.none() | st.integers(1, 6),
    lost_ack=st.none()
    | st.tuples(st.sampled_from(("redeliver", "close_channel")), st.integers(1, 6)),
    broker_seed=st.integers(0, 2**32 - 1),
)
def test_duplicate_delivery_reports_the_final_state_exactly_once(
    sim_broker_factory: BrokerFactory,
    stream: sims.RPCResultStream,
    copies: int,
    point: str,
    probability: float,
    redeliver_nth: int | None,
    lost_ack: tuple[str, int] | None,
    broker_seed: int,
) -> None:
    rules: list[dict[str, Any]] = [
        {
            "point": point,
            "action": "duplicate",
            "copies": copies,
            "probability": probability,
            "name": "dup",
        }
    ]
    if redeliver_nth is not None:
        rules.append({"point": "deliver", "action": "redeliver", "nth": redeliver_nth})
    if lost_ack is not None:
        # An ack lost with its channel: the message comes back, redelivered (at-least-once).
        rules.append({"point": "ack", "action": lost_ack[0], "nth": lost_ack[1], "max_count": 1})
    with sim_rpc(sim_broker_factory, broker_seed, plan={"version": 1, "rules": rules}) as sim:
        ledger = _rpc_ledger([stream], sim.client)
        for status in stream.arrivals:
            sim.publish(stream.task_id, status)
        meta = sim.client.wait_for(
            stream.task_id, timeout=30, on_message=_on_message(ledger, sim.client)
        )
        assert meta["status"] == stream.final_state
        # Drain the late duplicates too: they must be acked and change nothing.
        assert sim.client.get_task_meta(stream.task_id)["status"] == stream.final_state
        _check_rpc(ledger)
        sim.broker.run_until_idle()
        assert sim.queue_counts()[1] == 0
        # The copies really happened: every application of the rule put `copies` extra
        # messages into the reply queue (the rule's setting, not the engine's own account).
        applied = sum(1 for e in sim.broker.trace.of_kind("fault") if e.attrs["rule"] == "dup")
        if probability == 1.0:
            assert applied == len(stream.arrivals)
        enqueued = len(sim.broker.trace.of_kind("enqueue"))
        assert enqueued == len(stream.arrivals) + applied * copies


# -- backlog overflow --------------------------------------------------------------------------


@st.composite
def backlogs(draw: st.DrawFn) -> tuple[int, int]:
    """(backlog_limit, queued messages): below, equal, just above and far above the limit."""
    limit = draw(st.integers(1, 12))
    relation = draw(st.sampled_from(("below", "equal", "above", "far-above")))
    if relation == "below":
        return limit, draw(st.integers(0, limit - 1))
    if relation == "equal":
        return limit, limit
    if relation == "above":
        return limit, limit + draw(st.integers(1, 2))
    return limit, limit * draw(st.integers(3, 6)) + draw(st.integers(0, limit))


@property_settings(minimum=MISSION_EXAMPLES)
@given(backlog=backlogs(), position=st.integers(0, 100), broker_seed=st.integers(0, 2**32 - 1))
def test_backlog_overflow_polling_makes_progress_and_leaves_nothing_unacked(
    sim_broker_factory: BrokerFactory, backlog: tuple[int, int], position: int, broker_seed: int
) -> None:
    limit, queued = backlog
    target = str(uuid.UUID(int=broker_seed))
    others = [str(uuid.UUID(int=broker_seed + 1 + i)) for i in range(queued)]
    with sim_rpc(sim_broker_factory, broker_seed) as sim:
        order = list(others)
        order.insert(position % (len(order) + 1), target)
        for task_id in order:
            sim.publish(task_id, "SUCCESS")
        # Each call reads at most limit + 1 messages; the target is found within this many.
        max_calls = (queued + 1) // limit + 2
        for _ in range(max_calls):
            try:
                meta = sim.client.get_task_meta(target, backlog_limit=limit)
            except BacklogLimitExceeded:
                assert queued + 1 > limit
                continue
            if meta["status"] == "SUCCESS":
                break
        else:
            pytest.fail(f"no progress: {max_calls} polls did not reach the target")
        assert meta["result"] == {"task": target}
        # Draining the rest progresses the same way, and nothing is left unacked or queued.
        for _ in range(max_calls):
            with contextlib.suppress(BacklogLimitExceeded):
                sim.client.get_task_meta(others[-1] if others else target, backlog_limit=limit)
                break
        assert sim.queue_counts() == (0, 0)
        for task_id in others:
            assert sim.client.get_task_meta(task_id, backlog_limit=limit)["status"] == "SUCCESS"


# -- connection loss and restart during a wait -------------------------------------------------


@property_settings(minimum=MISSION_EXAMPLES)
@given(
    stream=sims.rpc_result_streams(max_duplicates=1),
    fault=st.sampled_from(("close_connection", "close_channel", "restart")),
    nth=st.integers(1, 4),
    published_before_wait=st.booleans(),
    persistent_queue=st.booleans(),
    broker_seed=st.integers(0, 2**32 - 1),
)
def test_connection_loss_during_a_wait_ends_in_the_result_or_a_clear_timeout(
    sim_broker_factory: BrokerFactory,
    stream: sims.RPCResultStream,
    fault: str,
    nth: int,
    published_before_wait: bool,
    persistent_queue: bool,
    broker_seed: int,
) -> None:
    plan = {
        "version": 1,
        "rules": [{"point": "deliver", "action": fault, "nth": nth, "max_count": 1}],
    }
    timeout = 20.0
    with sim_rpc(sim_broker_factory, broker_seed, plan=plan) as sim:
        if not published_before_wait:
            # Start the consumer first, so the fault hits a live wait.
            with pytest.raises(ResultTimeout):
                sim.client.wait_for("nobody", timeout=0.1)
        for status in stream.arrivals:
            sim.publish(stream.task_id, status)
        started_virtual = sim.broker.clock.now()
        started_wall = time.monotonic()
        try:
            with _fails_instead_of_hanging(10.0):
                meta = sim.client.wait_for(stream.task_id, timeout=timeout)
        except ResultTimeout as exc:
            # Only acceptable if the fault really took the result away (queue or message lost).
            lost = sim.broker.trace.of_kind("queue-delete", "restart")
            assert lost, f"timed out although nothing was lost: {exc}"
            assert stream.task_id in str(exc)
            assert sim.broker.clock.now() - started_virtual >= timeout
        else:
            assert meta["status"] == stream.final_state
        assert time.monotonic() - started_wall < 10, "a wait must never hang"


_fails_instead_of_hanging = fails_instead_of_hanging


# -- Celery's own rpc backend: SUCCESS overtaken by a late STARTED ------------------------------


def _celery_poll(broker: simamqp.Broker, arrivals: tuple[str, ...], task_id: str) -> str:
    celery = pytest.importorskip("celery")
    app = celery.Celery(
        "prop-celery-rpc", broker=broker.url, backend="rpc://", set_as_current=False
    )
    try:
        with broker.connection() as conn:
            app.backend.on_task_call(kombu.Producer(conn), task_id)
            queue = app.backend.oid
            for status in arrivals:
                body = {
                    "status": status,
                    "result": _result_for(status, task_id),
                    "traceback": None,
                    "children": [],
                    "date_done": None,
                    "task_id": task_id,
                }
                kombu.Producer(conn).publish(
                    body,
                    exchange="",
                    routing_key=queue,
                    correlation_id=task_id,
                    serializer="json",
                    delivery_mode=1,
                )
            return str(app.backend.get_task_meta(task_id)["status"])
    finally:
        app.close()


def _rpcbackend_poll(broker: simamqp.Broker, arrivals: tuple[str, ...], task_id: str) -> str:
    client = RPCBackend(Config(broker_url=broker.url), clock=broker.clock.now)
    try:
        with broker.connection() as conn:
            client.on_task_call(kombu.Producer(conn), task_id)
            sim = Sim(broker, client, conn)
            for status in arrivals:
                sim.publish(task_id, status)
            return str(client.get_task_meta(task_id)["status"])
    finally:
        client.close()


_LATE_STARTED = sims.RPCResultStream("late-started", ("STARTED", "SUCCESS"), ("SUCCESS", "STARTED"))


@pytest.mark.parametrize(
    "backend",
    [
        pytest.param("rpcbackend", id="rpcbackend"),
        pytest.param(
            "celery",
            id="celery-rpc",
            marks=[
                pytest.mark.celery,
                pytest.mark.xfail(
                    strict=True,
                    reason="celery.backends.rpc reads the last message: a STARTED delivered after "
                    "SUCCESS moves a finished task back to STARTED",
                ),
            ],
        ),
    ],
)
@seed(20260601)
@property_settings(minimum=MISSION_EXAMPLES)
@example(stream=_LATE_STARTED, broker_seed=0)
@given(stream=sims.rpc_result_streams(max_duplicates=1), broker_seed=st.integers(0, 2**32 - 1))
def test_a_polled_task_never_moves_back_from_its_final_state(
    backend: str, stream: sims.RPCResultStream, broker_seed: int
) -> None:
    broker = simamqp.Broker(seed=broker_seed)
    name = f"prop-rpc-{next(_names)}"
    simamqp.register(name, broker)
    try:
        poll = _celery_poll if backend == "celery" else _rpcbackend_poll
        assert poll(broker, stream.arrivals, stream.task_id) == stream.final_state
    finally:
        simamqp.unregister(name)


def test_celery_rpc_backend_reads_success_overtaken_by_started_as_started() -> None:
    """The seeded failing case, asserted explicitly: Celery says STARTED, rpcbackend SUCCESS."""
    broker = simamqp.Broker(seed=1)
    name = f"prop-rpc-{next(_names)}"
    simamqp.register(name, broker)
    try:
        assert _celery_poll(broker, ("SUCCESS", "STARTED"), "t-1") == "STARTED"  # Celery's bug
        assert _rpcbackend_poll(broker, ("SUCCESS", "STARTED"), "t-2") == "SUCCESS"
    finally:
        simamqp.unregister(name)
