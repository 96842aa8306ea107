"""Threads and isolation through the kombu transport.

DESIGN.md: the transport is thread-safe (one lock per broker; waiting threads wake on
delivery) and event-driven; every test is isolated (named brokers never share entities).
Issue 4 acceptance: 8 threads publishing and consuming 10k messages each through one broker,
nothing lost or duplicated, no deadlock; a blocked consumer wakes when another thread publishes;
two tests on different named brokers never see each other's entities.
"""

from __future__ import annotations

import collections
import contextlib
import threading
import time
import uuid
from typing import Any

import amqp
import kombu
import pytest
from _realtime import fails_instead_of_hanging

import simamqp

THREADS = 8
PER_THREAD = 10_000
#: A generous bound: a deadlock fails the test instead of hanging the run.
DEADLINE_SECONDS = 120


def test_eight_threads_publish_and_consume_ten_thousand_each() -> None:
    """Issue 4 acceptance (DESIGN.md thread safety): 8 threads, each with its own
    connection, publish 10k messages each to one queue while
    consuming from it (acking each); every message is consumed exactly once."""
    broker = simamqp.Broker(seed=4)
    broker.set_tracing(False)  # 80k messages: keep the event log out of the measurement
    url = broker.url
    with kombu.Connection(url) as setup:
        setup.default_channel.queue_declare("shared", auto_delete=False)
    received: list[list[bytes]] = [[] for _ in range(THREADS)]
    errors: list[BaseException] = []
    total = THREADS * PER_THREAD
    done = threading.Event()
    count_lock = threading.Lock()
    consumed = [0]
    deadline = time.monotonic() + DEADLINE_SECONDS

    def worker(index: int) -> None:
        try:
            with kombu.Connection(url) as conn:
                conn.connect()
                ch = conn.channel()
                ch.basic_qos(0, 50, False)
                mine = received[index]

                def on_message(message: amqp.Message) -> None:
                    mine.append(message.body)
                    ch.basic_ack(message.delivery_tag)
                    with count_lock:
                        consumed[0] += 1
                        if consumed[0] == total:
                            done.set()

                ch.basic_consume("shared", callback=on_message)
                for n in range(PER_THREAD):
                    ch.basic_publish(amqp.Message(f"{index}-{n}".encode()), "", "shared")
                    if n % 200 == 0:
                        _drain_available(conn)
                while not done.is_set():
                    if time.monotonic() > deadline:
                        raise TimeoutError("deadlock? messages still missing at the deadline")
                    with contextlib.suppress(TimeoutError):
                        conn.drain_events(timeout=0.05)
        except BaseException as exc:  # reported by the main thread
            errors.append(exc)
            done.set()

    threads = [threading.Thread(target=worker, args=(i,), daemon=True) for i in range(THREADS)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(DEADLINE_SECONDS + 10)
    assert not any(t.is_alive() for t in threads), "a worker thread is stuck (deadlock)"
    assert errors == []
    everything = [body for bodies in received for body in bodies]
    duplicates = [b for b, n in collections.Counter(everything).items() if n > 1]
    assert duplicates == []
    expected = {f"{i}-{n}".encode() for i in range(THREADS) for n in range(PER_THREAD)}
    assert set(everything) == expected
    assert broker.queue("shared").messages == 0
    # Per publisher, messages arrive in publish order (one queue is FIFO).
    for i in range(THREADS):
        prefix = f"{i}-".encode()
        order = [
            int(b[len(prefix) :]) for bodies in received for b in bodies if b.startswith(prefix)
        ]
        assert len(order) == PER_THREAD


def _drain_available(conn: kombu.Connection) -> None:
    """Handle what is already there without blocking."""
    while True:
        try:
            conn.drain_events(timeout=0)
        except TimeoutError:
            return


@pytest.mark.parametrize("clock", ["wall", "virtual"])
def test_blocked_consumer_wakes_when_another_thread_publishes(clock: str) -> None:
    """DESIGN.md event-driven transport: a consumer blocked in drain_events(timeout) wakes with
    the message another thread publishes (functional check; the latency is a benchmark).

    With a virtual clock the publishing thread connects first: a thread the broker has never
    seen cannot be waited for, and with everyone it knows blocked, virtual time would jump to
    the consumer's deadline (autojump, DESIGN.md).
    """
    broker = simamqp.Broker(seed=5, clock=simamqp.WallClock() if clock == "wall" else None)
    url = broker.url
    got: list[bytes] = []
    blocked = threading.Event()
    failure: list[BaseException] = []
    publisher = kombu.Connection(url)
    publisher.connect()

    def consumer() -> None:
        try:
            with kombu.Connection(url) as conn:
                ch = conn.channel()
                ch.queue_declare("wake", auto_delete=False)
                ch.basic_consume("wake", no_ack=True, callback=lambda m: got.append(m.body))
                blocked.set()
                conn.drain_events(timeout=30)
        except BaseException as exc:
            failure.append(exc)

    thread = threading.Thread(target=consumer, daemon=True)
    thread.start()
    assert blocked.wait(10)
    with publisher:
        publisher.default_channel.basic_publish(amqp.Message(b"wake up"), "", "wake")
    thread.join(30)
    assert not thread.is_alive()
    assert failure == []
    assert got == [b"wake up"]


def test_drain_events_timeout_bounds_a_virtual_wait_in_real_time() -> None:
    """drain_events(timeout) raises socket.timeout (py-amqp's contract) even when virtual time
    cannot jump because another thread that used the broker is busy elsewhere."""
    broker = simamqp.Broker(seed=7)
    with broker.connection() as main_conn:
        main_conn.default_channel.queue_declare("idle", auto_delete=False)
        outcome: list[str] = []

        def waiter() -> None:
            with broker.connection() as conn:
                ch = conn.channel()
                ch.basic_consume("idle", no_ack=True, callback=lambda m: None)
                try:
                    conn.drain_events(timeout=0.2)
                except TimeoutError:
                    outcome.append("timeout")

        thread = threading.Thread(target=waiter, daemon=True)
        thread.start()
        thread.join(30)  # the main thread used the broker and now blocks in join()
        assert not thread.is_alive()
        assert outcome == ["timeout"]


def test_several_blocked_consumers_each_wake_for_their_own_message() -> None:
    """DESIGN.md (one lock per broker, waiting threads wake on delivery): consumers on
    different queues blocked at once each receive exactly their message."""
    broker = simamqp.Broker(seed=6)
    url = broker.url
    names = [f"wake-{i}" for i in range(4)]
    got: dict[str, list[bytes]] = {n: [] for n in names}
    ready = threading.Barrier(len(names) + 1)

    def consumer(name: str) -> None:
        with kombu.Connection(url) as conn:
            ch = conn.channel()
            ch.queue_declare(name, auto_delete=False)
            ch.basic_consume(name, no_ack=True, callback=lambda m: got[name].append(m.body))
            ready.wait(10)
            conn.drain_events(timeout=30)

    threads = [threading.Thread(target=consumer, args=(n,), daemon=True) for n in names]
    for t in threads:
        t.start()
    ready.wait(10)
    with kombu.Connection(url) as conn:
        for name in reversed(names):
            conn.default_channel.basic_publish(amqp.Message(name.encode()), "", name)
    for t in threads:
        t.join(30)
    assert got == {n: [n.encode()] for n in names}


# -- isolation ------------------------------------------------------------------------------

SHARED_NAME = "isolation-same-queue-name"


def _fresh_on(broker: Any) -> None:
    """Declare SHARED_NAME and leave a message in it; it must not have existed before."""
    with broker.connection() as conn:
        ch = conn.channel()
        with pytest.raises(amqp.exceptions.NotFound):
            ch.queue_declare(SHARED_NAME, passive=True)
        ch = conn.channel()
        ch.queue_declare(SHARED_NAME, auto_delete=False)
        ch.basic_publish(amqp.Message(b"left behind"), "", SHARED_NAME)
        ch.exchange_declare("isolation-x", "fanout", auto_delete=False)


@pytest.mark.parametrize("run", ["first", "second"])
def test_tests_with_sim_broker_do_not_share_entities(sim_broker: Any, run: str) -> None:
    """DESIGN.md isolation: each test's sim_broker is its own; the other run's queue, message
    and exchange are not visible (whichever order or process the two runs happen in)."""
    _fresh_on(sim_broker)
    assert sim_broker.queue(SHARED_NAME).messages_ready == 1


def test_named_brokers_never_see_each_others_entities() -> None:
    """simamqp://NAME addresses a separate broker per name (DESIGN.md contracts)."""
    a_name, b_name = f"iso-a-{uuid.uuid4().hex}", f"iso-b-{uuid.uuid4().hex}"
    with kombu.Connection(f"simamqp://{a_name}//") as a:
        a.default_channel.queue_declare("q", auto_delete=False)
        a.default_channel.basic_publish(amqp.Message(b"for a"), "", "q")
    with kombu.Connection(f"simamqp://{b_name}//") as b:
        ch = b.default_channel
        with pytest.raises(amqp.exceptions.NotFound):
            ch.queue_declare("q", passive=True)
    a_broker = simamqp.get_broker(a_name)
    b_broker = simamqp.get_broker(b_name)
    try:
        assert a_broker is not b_broker
        assert a_broker.queue_names() == ["q"]
        assert b_broker.queue_names() == []
    finally:
        simamqp.unregister(a_name)
        simamqp.unregister(b_name)


def test_named_brokers_used_from_threads_at_once_stay_apart() -> None:
    """DESIGN.md isolation: two brokers driven concurrently from two threads: each sees
    only its own traffic."""
    brokers = [simamqp.Broker(seed=i) for i in range(2)]
    counts: list[int] = [0, 0]

    def run(i: int) -> None:
        with brokers[i].connection() as conn:
            ch = conn.channel()
            ch.queue_declare("same", auto_delete=False)
            for n in range(500):
                ch.basic_publish(amqp.Message(f"{i}:{n}".encode()), "", "same")
            while (msg := ch.basic_get("same", no_ack=True)) is not None:
                assert msg.body.startswith(f"{i}:".encode())
                counts[i] += 1

    threads = [threading.Thread(target=run, args=(i,)) for i in range(2)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(60)
    assert counts == [500, 500]


def test_blocked_drain_events_jumps_virtual_time_to_the_next_timer() -> None:
    """Issue 4: with a virtual clock, a blocked drain_events advances virtual time to the next
    timer instead of sleeping: a 1-hour TTL dead-letters at once, in virtual time."""
    broker = simamqp.Broker(seed=9)
    got: list[Any] = []
    with broker.connection() as conn:
        ch = conn.channel()
        ch.queue_declare("dead", auto_delete=False)
        ch.queue_declare(
            "slow",
            auto_delete=False,
            arguments={
                "x-message-ttl": 3_600_000,
                "x-dead-letter-exchange": "",
                "x-dead-letter-routing-key": "dead",
            },
        )
        ch.basic_publish(amqp.Message(b"later"), "", "slow")
        ch.basic_consume("dead", no_ack=True, callback=got.append)
        started = time.monotonic()
        conn.drain_events(timeout=7200)
        assert time.monotonic() - started < 60  # generous: it did not sleep for an hour
    assert [m.body for m in got] == [b"later"]
    assert broker.clock.now() == 3600.0
    assert got[0].headers["x-death"][0]["reason"] == "expired"


# -- issue 11: threads and virtual time ----------------------------------------------------------

#: Real-time bound for the issue 11 cases: a regression fails here instead of hanging the run.
GUARD_SECONDS = 10


def _main_thread_guard(seconds: float = GUARD_SECONDS) -> contextlib.AbstractContextManager[None]:
    """Fail (instead of hanging) if the main thread is still inside after ``seconds``."""
    return fails_instead_of_hanging(seconds)


def test_two_threads_blocked_on_one_virtual_broker_both_time_out() -> None:
    """Issue 11 case 1 (virtual-clock livelock): a consumer thread loops on
    SimpleQueue.get(timeout=1) (what ConsumerMixin does) while the test thread waits
    get(timeout=3) on an empty queue. The test thread gets Empty once virtual time reaches
    3 s, within a few real milliseconds per jump; nothing spins or hangs."""
    broker = simamqp.Broker(seed=11)
    stop = threading.Event()
    rounds: list[int] = [0]
    errors: list[BaseException] = []

    def looper() -> None:
        try:
            with broker.connection() as conn:
                queue = conn.SimpleQueue("a")
                while not stop.is_set():
                    with contextlib.suppress(queue.Empty):
                        queue.get(timeout=1)
                    rounds[0] += 1
        except BaseException as exc:  # reported below
            errors.append(exc)

    with broker.connection() as conn:
        queue = conn.SimpleQueue("b")
        thread = threading.Thread(target=looper, daemon=True)
        thread.start()
        started, real_start = broker.clock.now(), time.monotonic()
        try:
            with _main_thread_guard(), pytest.raises(queue.Empty):
                queue.get(timeout=3)
        finally:
            stop.set()
        waited, real = broker.clock.now() - started, time.monotonic() - real_start
        conn.SimpleQueue("a").put("stop")  # wakes the consumer at once
        thread.join(GUARD_SECONDS)
    assert not thread.is_alive() and errors == []
    assert waited == 3
    assert rounds[0] >= 2  # the consumer's own timeouts moved virtual time too
    assert real < 2  # jumps, not a real-time wait (the bound is generous: 2 shared cores)


def test_a_wait_that_can_never_end_raises_deadlock_error() -> None:
    """Issue 11: drain_events() without a timeout on a virtual clock, with nothing scheduled
    and no other thread, fails with a named error instead of hanging."""
    broker = simamqp.Broker(seed=12)
    with broker.connection() as conn, _main_thread_guard():
        conn.SimpleQueue("nothing-comes")
        with pytest.raises(simamqp.DeadlockError, match=r"deadlock.*timeout"):
            conn.drain_events()
        # The connection stays usable: the error is the caller's, not the broker's.
        conn.SimpleQueue("nothing-comes").put("now something")
        assert conn.SimpleQueue("nothing-comes").get(timeout=1).payload == "now something"


def test_virtual_time_does_not_jump_while_a_known_thread_is_busy() -> None:
    """The rule (docs/threads.md): a thread that used the broker and is not blocked in it
    holds virtual time still; the test thread's blocked call is bounded by its timeout in
    real time instead."""
    broker = simamqp.Broker(seed=13)
    known, busy_done = threading.Event(), threading.Event()

    def busy() -> None:
        with broker.connection() as c:
            c.connect()  # the thread is known to the broker...
            known.set()
            busy_done.wait(GUARD_SECONDS)  # ...and blocked elsewhere

    thread = threading.Thread(target=busy, daemon=True)
    thread.start()
    assert known.wait(GUARD_SECONDS)
    try:
        with broker.connection() as conn, _main_thread_guard():
            conn.SimpleQueue("q")
            started = time.monotonic()
            with pytest.raises(TimeoutError):
                conn.drain_events(timeout=0.3)
            waited = time.monotonic() - started
    finally:
        busy_done.set()
        thread.join(GUARD_SECONDS)
    assert broker.clock.now() == 0.0
    assert waited >= 0.3


def test_virtual_time_jumps_to_a_timer_when_everyone_is_blocked() -> None:
    """The test thread and a thread idling in drain_events(timeout=60), both blocked: time
    jumps to the TTL timer and the dead-lettered message reaches the test thread's consumer
    (trio's autojump threshold, generalised to threads)."""
    broker = simamqp.Broker(seed=14)
    got: list[bytes] = []
    stop = threading.Event()

    def idle() -> None:
        with broker.connection() as c:
            c.default_channel.basic_consume("idle-q", no_ack=True, callback=lambda m: None)
            while not stop.is_set():
                with contextlib.suppress(TimeoutError):
                    c.drain_events(timeout=60)

    with broker.connection() as conn:
        ch = conn.default_channel
        ch.queue_declare("dlq", auto_delete=False)
        ch.queue_declare("idle-q", auto_delete=False)
        arguments = {"x-message-ttl": 5000, "x-dead-letter-exchange": ""}
        arguments["x-dead-letter-routing-key"] = "dlq"
        ch.queue_declare("ttl", auto_delete=False, arguments=arguments)
        ch.basic_publish(amqp.Message(b"late"), "", "ttl")
        ch.basic_consume("dlq", no_ack=True, callback=lambda m: got.append(m.body))
        thread = threading.Thread(target=idle, daemon=True)
        thread.start()
        with _main_thread_guard():
            conn.drain_events()
        stop.set()
        ch.basic_publish(amqp.Message(b"stop"), "", "idle-q")  # wakes the idle thread
    thread.join(GUARD_SECONDS)
    assert got == [b"late"]
    assert broker.clock.now() == 5.0


def test_autojump_threshold_is_checked_and_threads_are_counted() -> None:
    with pytest.raises(ValueError, match="autojump_threshold"):
        simamqp.Broker(autojump_threshold=-0.1)
    broker = simamqp.Broker(seed=15, autojump_threshold=0)
    assert broker.threads_seen() == 1  # the creating thread

    def connect() -> None:
        with broker.connection() as conn:
            conn.connect()

    thread = threading.Thread(target=connect)
    thread.start()
    thread.join(GUARD_SECONDS)
    assert broker.threads_seen() == 2
