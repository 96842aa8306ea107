"""Blocking on a broker from several threads: when virtual time moves, and a pollable fd.

The rule (docs/threads.md), for a broker whose clock is a ``VirtualClock`` with autojump:

    Virtual time jumps to the next deadline (the earliest timer, or the earliest virtual
    deadline of a blocked call) only when every live thread that has used the broker is
    blocked in it, and has been for ``autojump_threshold`` seconds of real time. When no
    other thread exists in the process, nobody can act: it jumps at once.

It is trio's ``MockClock`` autojump threshold generalised to threads. Inside one broker we know
which threads are blocked in it; the threshold gives threads we cannot see (Celery's timer
thread, a test thread in ``time.sleep`` about to publish) the chance to act first: any call into
the broker makes a thread known and not blocked, which stops the jump. When every thread is
blocked and there is nothing to jump to, no call can ever return: the blocked calls fail with
``DeadlockError`` instead of hanging.

A thread that has used the broker and is blocked elsewhere (``Thread.join``, an event loop's
``poll``, a task computing) holds virtual time still; then a blocked call with a timeout returns
when that timeout has passed in real time, so nothing waits unboundedly.

Nobody spins: a blocked call waits on its connection's condition (which releases the broker
lock) with a real-time timeout, and re-checks only when woken (a frame for it, a jump, a thread
leaving the waiting set) or when a timeout it computed is due.
"""

from __future__ import annotations

import contextlib
import os
import threading
import time
import weakref
from typing import TYPE_CHECKING

from .core.clock import VirtualClock

if TYPE_CHECKING:
    from ._broker import Broker
    from ._celery_timer import BrokerTimer

__all__ = ["DEFAULT_AUTOJUMP_THRESHOLD", "DeadlockError", "ReadyPipe", "WaitOutcome", "wait"]

#: Real seconds every thread must have been blocked before virtual time jumps.
DEFAULT_AUTOJUMP_THRESHOLD = 0.02
#: How often a waiter re-checks for threads that died (they never notify anyone).
_RECHECK = 0.25


class DeadlockError(RuntimeError):
    """A blocked call can never return: virtual clock, nothing scheduled, everyone waiting."""


class WaitOutcome:
    """Why ``wait`` returned without a frame (besides "check again")."""

    TIMEOUT = "timeout"
    HEARTBEAT = "heartbeat"


def wait(
    broker: Broker,
    condition: threading.Condition,
    deadline: float | None,
    real_deadline: float | None,
    beat: float | None,
) -> str | None:
    """Block once, under ``broker.lock`` (released while waiting); the caller loops.

    ``deadline`` is the call's virtual deadline, ``real_deadline`` the same timeout measured in
    real time (the bound when virtual time cannot move), ``beat`` when the next heartbeat frame
    would arrive. Returns ``WaitOutcome.TIMEOUT``/``HEARTBEAT``, or None to check for a frame.
    """
    ident = threading.get_ident()
    now_real = time.monotonic()
    if real_deadline is not None and now_real >= real_deadline:
        return WaitOutcome.TIMEOUT
    if beat is not None and now_real >= beat:
        return WaitOutcome.HEARTBEAT
    clock = broker.clock
    waits: list[float] = []
    if real_deadline is not None:
        waits.append(real_deadline - now_real)
    if beat is not None:
        waits.append(beat - now_real)
    if isinstance(clock, VirtualClock):
        if deadline is not None and clock.now() >= deadline:
            # Remembered to recognise a poll loop: a thread that blocks again at once, with
            # nothing done to the broker in between (``result.get()`` draining in slices).
            broker._timed_out[ident] = _activity(broker)
            return WaitOutcome.TIMEOUT
        if ident in broker._deadlocked:
            broker._deadlocked.discard(ident)
            raise DeadlockError(_deadlock_message(broker))
        if broker._waiting.get(ident, _ABSENT) is _ABSENT:
            _enter(broker, ident, deadline)
        if clock.autojump:
            waits.append(_autojump(broker, now_real))
        else:
            waits.append(_RECHECK)
    else:
        next_timer = broker.scheduler.next_time()
        if next_timer is not None:
            waits.append(max(next_timer - clock.now(), 0.0))
    if waits:
        condition.wait(max(min(waits), 0.0))
    else:
        condition.wait()
    return None


_ABSENT = object()


def _enter(broker: Broker, ident: int, deadline: float | None) -> None:
    broker._waiting[ident] = deadline
    broker._all_blocked_since = None
    mark = broker._timed_out.pop(ident, None)
    if mark is not None and mark >= 0 and mark == _activity(broker):
        broker._pollers.add(ident)
    else:
        broker._pollers.discard(ident)


def _activity(broker: Broker) -> int:
    """Events so far (-1 when the trace is off: then no thread counts as a poller)."""
    return len(broker.trace) if broker.trace.enabled else -1


def leave(broker: Broker) -> None:
    """The calling thread is no longer blocked (under the lock): the rule starts over."""
    ident = threading.get_ident()
    # A frame that came after a deadlock was declared means someone could act after all.
    broker._deadlocked.discard(ident)
    if broker._waiting.pop(ident, _ABSENT) is not _ABSENT:
        # Not everyone is blocked any more. Nobody needs waking: the thread that completes
        # the blocked set next starts the threshold itself.
        broker._all_blocked_since = None


def _everyone_blocked(broker: Broker) -> bool:
    """True when every live thread that has used the broker is blocked on it."""
    threads = broker._threads
    waiting = broker._waiting
    for ident, thread in list(threads.items()):
        if not thread.is_alive():
            del threads[ident]
            waiting.pop(ident, None)
            broker._timed_out.pop(ident, None)
            broker._pollers.discard(ident)
            broker._threads_gone += 1
    return bool(threads) and all(ident in waiting for ident in threads)


def _unseen_threads(broker: Broker) -> bool:
    """Does the process run a thread that has not used the broker (it may be about to)?"""
    known = broker._threads
    return any(thread.ident not in known for thread in threading.enumerate())


def _autojump(broker: Broker, now_real: float) -> float:
    """Apply the rule; how long (real seconds) the caller may wait before checking again."""
    if not _everyone_blocked(broker):
        broker._all_blocked_since = None
        return _RECHECK
    since = broker._all_blocked_since
    if since is None:
        if _unseen_threads(broker):
            broker._all_blocked_since = now_real
            return broker.autojump_threshold
        # Every thread of the process is blocked in this broker: nobody can act, so
        # waiting out the threshold would only slow single-threaded tests down.
    elif since + broker.autojump_threshold - now_real > 0:
        return since + broker.autojump_threshold - now_real
    clock = broker.clock
    assert isinstance(clock, VirtualClock)
    now = clock.now()
    deadlines = [d for d in broker._waiting.values() if d is not None]
    if any(d <= now for d in deadlines):
        # A waiter's deadline has passed: it leaves on its own (it is woken below), and
        # time must not move past it first.
        broker._wake_all()
        return broker.autojump_threshold
    candidates = deadlines
    next_timer = broker.scheduler.next_time()
    if next_timer is not None:
        candidates.append(next_timer)
    if not candidates:
        # Nobody can ever act: every blocked call fails instead of hanging.
        broker._deadlocked = set(broker._waiting)
        broker._all_blocked_since = None
        broker._wake_all()
        return 0.0
    target = min(candidates)
    eta = _skip_polls_to(broker, next_timer)
    if eta is not None and eta > target:
        target = eta
    clock.jump_to(max(target, now))
    broker._tick()
    broker._all_blocked_since = None
    broker._wake_all()
    wake_due_loops(broker)
    return 0.0


def _skip_polls_to(broker: Broker, next_timer: float | None) -> float | None:
    """Where to jump past poll loops' deadlines, when an idle event loop waits for an ETA.

    A thread that re-blocks right after its timeout without touching the broker (Celery's
    ``result.get()``, which drains in one-second slices) would otherwise make time crawl to a
    far ETA one slice per jump. The jump goes to the earliest other deadline (the ETA, a broker
    timer, a thread that is not polling); a poller's current wait returns what arrives then,
    or times out then. It cannot tell: it measures its own timeout in real time.
    """
    idle = {timer.idle_ident for timer in broker._loop_timers if timer.idle_ident is not None}
    etas = [d for i in idle if (d := broker._waiting.get(i)) is not None]
    if not etas:
        return None
    events = etas
    if next_timer is not None:
        events.append(next_timer)
    for ident, deadline in broker._waiting.items():
        if deadline is not None and ident not in idle and ident not in broker._pollers:
            events.append(deadline)
    return min(events)


# -- event loops (kombu's hub running a Celery worker; see _celery_timer) -----------------------


def loop_idle(broker: Broker, timer: BrokerTimer) -> None:
    """The loop's thread is about to poll with nothing to do (under the lock): blocked in the
    broker, its deadline the loop's next ETA on the broker's clock."""
    ident = threading.get_ident()
    broker._threads.setdefault(ident, threading.current_thread())
    timer.idle_ident = ident
    broker._waiting[ident] = timer.next_virtual()
    broker._all_blocked_since = None
    broker._loops_changed.notify_all()
    if _everyone_blocked(broker):
        broker._wake_all()  # the waiting threads start the threshold now


def loop_busy(broker: Broker, timer: BrokerTimer) -> None:
    """The loop woke up, or was given something to do (under the lock)."""
    ident = timer.idle_ident
    if ident is None:
        return
    timer.idle_ident = None
    broker._waiting.pop(ident, None)
    broker._all_blocked_since = None


def wake_due_loops(broker: Broker) -> None:
    """Wake the idle loops whose next ETA has come (after time moved, under the lock)."""
    now = broker.clock.now()
    for timer in list(broker._loop_timers):
        if timer.idle_ident is None:
            continue
        due = timer.next_virtual()
        if due is None or due > now:
            continue
        loop_busy(broker, timer)
        for connection in list(timer._connections):
            ready = connection._ready
            if ready is not None and not ready.closed:
                ready.set()
                break


def settle_loops(broker: Broker, timeout: float) -> None:
    """Wait (real time, at most ``timeout``) until every other live event loop is idle.

    ``advance()`` calls it first, so what was published before it has reached the worker
    (and its ETA is counted from before the advance), as it would have in real time.
    """
    me = threading.current_thread()
    limit = time.monotonic() + timeout
    with broker.lock:
        while True:
            busy = [
                timer
                for timer in broker._loop_timers
                if timer.thread is not None
                and timer.thread is not me
                and timer.thread.is_alive()
                and timer.idle_ident is None
            ]
            left = limit - time.monotonic()
            if not busy or left <= 0:
                return
            broker._loops_changed.wait(min(left, 0.05))


def _deadlock_message(broker: Broker) -> str:
    return (
        f"deadlock on {broker.name or 'an unregistered broker'}: every thread using it is "
        "blocked waiting for a frame, no timer is scheduled and no call has a timeout, so on "
        "a virtual clock nothing can ever arrive. Publish before waiting, pass a timeout, "
        "advance the clock (broker.advance), or use simamqp.WallClock() if a thread the "
        "broker has not seen yet will publish (see docs/threads.md)"
    )


class ReadyPipe:
    """A file descriptor that is readable while a connection has frames to read.

    What an event loop (kombu's hub, Celery's worker) polls instead of py-amqp's socket. Set and
    cleared under the broker lock; one write per empty->pending transition, one read back.
    """

    def __init__(self) -> None:
        self._read_fd, self._write_fd = os.pipe()
        os.set_blocking(self._read_fd, False)
        os.set_blocking(self._write_fd, False)
        self._set = False
        self.closed = False
        # A connection dropped without close() must not leak its descriptors.
        self._finalizer = weakref.finalize(self, _close_fds, self._read_fd, self._write_fd)

    def fileno(self) -> int:
        if self.closed:
            raise ValueError("the connection's file descriptor is closed")
        return self._read_fd

    def set(self) -> None:
        if not self._set and not self.closed:
            os.write(self._write_fd, b"\0")
            self._set = True

    def clear(self) -> None:
        if self._set and not self.closed and not self.at_eof:
            with contextlib.suppress(BlockingIOError):
                os.read(self._read_fd, 64)
            self._set = False

    @property
    def at_eof(self) -> bool:
        return self._write_fd < 0

    def eof(self) -> None:
        """Readable from now on, as a socket whose peer closed it is (end of file).

        The connection is gone but an event loop may still poll this descriptor: it must wake
        and call its reader, which learns that the connection is closed and reconnects. The
        read end stays open until ``close()`` (the client closes its connection object).
        """
        if self.closed or self.at_eof:
            return
        write_fd, self._write_fd = self._write_fd, -1
        self._set = True
        self._finalizer.detach()
        self._finalizer = weakref.finalize(self, _close_fds, self._read_fd)
        with contextlib.suppress(OSError):
            os.close(write_fd)

    def close(self) -> None:
        if not self.closed:
            self.closed = True
            self._finalizer()


def _close_fds(*fds: int) -> None:
    for fd in fds:
        with contextlib.suppress(OSError):
            os.close(fd)
