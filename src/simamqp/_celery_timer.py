"""Celery's countdown, ETA and retry timers on the broker's clock (docs/threads.md).

A Celery worker keeps a task with an ETA (``countdown=``, ``eta=``, ``retry(countdown=)``) in
its event loop's timer (kombu's ``Timer``, which counts ``time.monotonic``) until it is due. On
a simamqp broker with a virtual clock that timer would make tests wait in real time, and
``broker.advance()`` could not reach it. When a simamqp connection is registered with kombu's
hub (``Transport.register_with_event_loop``), the hub's timer becomes a ``BrokerTimer``:

- an entry whose callback is Celery's ETA callback (``Consumer.apply_eta_task``, or
  ``Consumer._limit_post_eta`` for a rate-limited task) is due after the same delay **on the
  broker's clock**. The delay is what kombu computes: the ETA minus the real time when the
  worker received the task (``kombu.asynchronous.timer.to_timestamp``). Every other entry
  (heartbeats, rate-limit buckets, the transport's own tick) stays on real time;
- while its loop has nothing to do (no timer due, no frame to read, no callback queued) the
  loop's thread counts as blocked in the broker, with its next ETA as its deadline: when every
  thread using the broker is blocked, virtual time jumps to that deadline as it jumps to the
  broker's own timers (``_waiting``). A frame queued for one of its connections, or a jump
  that makes an ETA due, wakes the loop (its descriptor becomes readable).

It relies on kombu's ``Timer`` (``enter_at``, ``call_repeatedly``, ``_queue``, iteration as
``Hub.fire_timers`` uses it), ``Hub.timer``/``Hub.scheduler``/``Hub._ready``, and the names of
Celery's ETA callbacks, all stable from Celery 5.3 (kombu 5.3) on. A timer of any other class
(eventlet's, gevent's) is left alone: its ETAs stay on real time.
"""

from __future__ import annotations

import contextlib
import heapq
import itertools
import math
import threading
import time
import weakref
from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING, Any

from kombu.asynchronous.timer import Entry
from kombu.asynchronous.timer import Timer as KombuTimer

from .core.clock import VirtualClock

if TYPE_CHECKING:
    from collections.abc import Iterator

    from ._broker import Broker
    from .transport import SimConnection

__all__ = ["BrokerTimer", "adopt", "release"]

#: Celery's callbacks for a task whose ETA has come (strategy.py hands them to ``call_at``).
ETA_CALLBACKS = frozenset({"apply_eta_task", "_limit_post_eta"})
#: Real seconds between looks at the virtual clock while ETA entries wait (a jump also wakes
#: the loop at once; this bounds what a missed wake-up costs).
VIRTUAL_POLL = 0.05


def adopt(loop: Any, connection: SimConnection) -> None:
    """Make ``loop``'s timer count Celery's ETAs on ``connection``'s broker clock."""
    connection._event_loop = weakref.ref(loop)
    broker = connection.broker
    if not isinstance(broker.clock, VirtualClock):
        return  # a wall clock already is real time
    from . import _waiting

    timer = getattr(loop, "timer", None)
    if type(timer) is KombuTimer:
        timer.__class__ = BrokerTimer
        assert isinstance(timer, BrokerTimer)
        timer._adopted(broker, loop)
        # Hub.fire_timers iterates ``hub.scheduler`` (a cached ``iter(timer)``): start over.
        loop.__dict__.pop("scheduler", None)
    elif not isinstance(timer, BrokerTimer):
        return  # an unknown timer (eventlet's, gevent's): its ETAs stay on real time
    elif timer._broker is not broker:
        # kombu keeps one hub per process (``get_event_loop``) and some Celery versions reuse
        # it: a new worker on another broker. What the old one scheduled goes with it.
        previous = timer._broker
        with previous.lock:
            _waiting.loop_busy(previous, timer)
            previous._loop_timers.discard(timer)
        timer._adopted(broker, loop)
        loop.__dict__.pop("scheduler", None)
    for gone in list(timer._connections):
        if gone._closed:
            timer._connections.discard(gone)  # the client knows it is gone: nothing to read
    timer._connections.add(connection)
    connection._loop_timer = timer
    # Called in the loop's thread (Celery's asynloop registers before it polls): until it is
    # first idle, advance() waits for it (it may be about to read what was just published).
    timer.thread = threading.current_thread()
    with broker.lock:
        broker._loop_timers.add(timer)
        _waiting.loop_busy(broker, timer)  # it is running: registering, not polling


def release(connection: SimConnection) -> None:
    """The client closed a connection an event loop polled: let the next worker have a fresh
    loop. kombu keeps one loop per process (``get_event_loop``) and some Celery versions
    (5.3, 5.5) hand it to the next worker, whose own new timer the loop never fires: that
    worker's countdowns would never run. The running worker keeps its loop (``worker.hub``).
    """
    ref = connection._event_loop
    loop = ref() if ref is not None else None
    if loop is None:
        return
    from kombu.asynchronous import get_event_loop, set_event_loop

    if get_event_loop() is loop:
        set_event_loop(None)


def _is_eta(entry: Entry) -> bool:
    return getattr(entry.fun, "__name__", None) in ETA_CALLBACKS


def _seconds_until(when: datetime) -> float:
    """Real seconds from now until ``when`` (naive: UTC, as kombu's ``to_timestamp``)."""
    aware = when if when.tzinfo is not None else when.replace(tzinfo=UTC)
    return (aware - datetime.now(UTC)).total_seconds()


def _expire(request: Any) -> None:
    """Make Celery's own check (``Request.maybe_expire``) find ``request`` expired now."""
    expires = request.expires
    past = datetime.now(UTC if expires.tzinfo is not None else None) - timedelta(seconds=1)
    with contextlib.suppress(AttributeError):  # no setter: it expires on real time only
        request.expires = past.astimezone(expires.tzinfo) if expires.tzinfo else past


def _is_repeating(entry: Entry) -> bool:
    """An entry of kombu's ``Timer.call_repeatedly`` (entered before we adopted the timer)."""
    code = getattr(entry.fun, "__code__", None)
    return code is not None and code.co_name == "_reschedules"


class BrokerTimer(KombuTimer):
    """kombu's ``Timer`` whose Celery ETA entries count the broker's (virtual) clock."""

    _broker: Broker
    _loop: weakref.ref[Any]
    _virtual: list[tuple[float, int, Entry]]
    _seq: Iterator[int]
    _periodic: weakref.WeakSet[Entry]
    #: ETA entry -> when its task expires on the broker's clock (``expires=``).
    _expiry: weakref.WeakKeyDictionary[Entry, float]
    _connections: weakref.WeakSet[SimConnection]
    #: The loop's thread while it waits in its poll (counted as blocked in the broker).
    idle_ident: int | None
    thread: threading.Thread | None

    def _adopted(self, broker: Broker, loop: Any) -> None:
        self._broker = broker
        self._loop = weakref.ref(loop)
        self._virtual = []
        self._seq = itertools.count()
        self._periodic = weakref.WeakSet()
        self._expiry = weakref.WeakKeyDictionary()
        self._connections = weakref.WeakSet()
        self.idle_ident = None
        self.thread = None

    # -- entering ---------------------------------------------------------------------------

    def call_repeatedly(
        self, secs: float, fun: Any, args: Any = (), kwargs: Any = None, priority: int = 0
    ) -> Entry:
        entry: Entry = super().call_repeatedly(  # type: ignore[no-untyped-call]
            secs, fun, args, kwargs, priority
        )
        self._periodic.add(entry)  # housekeeping: it never makes the loop busy by itself
        return entry

    def enter_at(
        self, entry: Entry, eta: Any = None, priority: int = 0, time: Any = time.monotonic
    ) -> Entry:
        if eta is None or not _is_eta(entry):
            result: Entry = super().enter_at(  # type: ignore[no-untyped-call]
                entry, eta, priority, time
            )
            return result
        delay = _seconds_until(eta) if isinstance(eta, datetime) else float(eta) - time()
        broker = self._broker
        with broker.lock:
            now = broker.clock.now()
            due = now + max(delay, 0.0)
            heapq.heappush(self._virtual, (due, next(self._seq), entry))
            expires = getattr(entry.args[0], "expires", None) if entry.args else None
            if isinstance(expires, datetime):
                # Celery compares ``expires`` with the real time when the task is due; on the
                # broker's clock it is the same distance from now as the ETA is.
                self._expiry[entry] = now + _seconds_until(expires)
        return entry

    def clear(self) -> None:
        super().clear()  # type: ignore[no-untyped-call]
        self._virtual[:] = []

    def __len__(self) -> int:
        return len(self._queue) + len(self._virtual)

    @property
    def queue(self) -> list[Any]:
        return list(super().queue) + [entry for _, _, entry in sorted(self._virtual)]

    def next_virtual(self) -> float | None:
        """When the next live ETA entry is due on the broker's clock (under the lock)."""
        virtual = self._virtual
        while virtual and virtual[0][2].canceled:
            heapq.heappop(virtual)
        return virtual[0][0] if virtual else None

    # -- firing -----------------------------------------------------------------------------

    def __iter__(self) -> Iterator[tuple[float | None, Entry | None]]:  # type: ignore[override]
        """``(wait, None)`` or ``(None, entry)`` pairs, as kombu's ``Timer.__iter__``."""
        from . import _waiting

        broker = self._broker
        clock = broker.clock
        queue = self._queue
        virtual = self._virtual
        max_interval = self.max_interval
        self.thread = threading.current_thread()
        while True:
            if self.idle_ident is not None:
                with broker.lock:
                    _waiting.loop_busy(broker, self)
            if virtual:
                with broker.lock:
                    due = self.next_virtual()
                    ready = due is not None and due <= clock.now()
                    entry = heapq.heappop(virtual)[2] if ready else None
                    expired = entry is not None and self._expiry.pop(entry, math.inf) < clock.now()
                if entry is not None:
                    if expired:
                        _expire(entry.args[0])
                    yield None, entry
                    continue
            wait: float | None = None
            if queue:
                first = queue[0]
                now, eta = time.monotonic(), first[0]
                if now < eta:
                    wait = min(eta - now, max_interval)
                else:
                    popped = heapq.heappop(queue)
                    if popped is first:
                        if not first[2].canceled:
                            yield None, first[2]
                    else:
                        heapq.heappush(queue, popped)
                    continue
            if virtual:
                wait = VIRTUAL_POLL if wait is None else min(wait, VIRTUAL_POLL)
            self._maybe_idle()
            yield wait, None

    def _maybe_idle(self) -> None:
        """Count the loop's thread as blocked in the broker if it has nothing left to do."""
        from . import _waiting

        loop = self._loop()
        if loop is None or getattr(loop, "_ready", None):
            return  # callbacks queued for the loop run after its poll
        periodic = self._periodic
        for item in self._queue:
            entry = item[2]
            if not entry.canceled and entry not in periodic and not _is_repeating(entry):
                return  # real-time work (a rate limit) is pending
        broker = self._broker
        with broker.lock:
            for connection in self._connections:
                core = connection._core
                if connection._closed or core is None:
                    continue
                if core.outbox or not core.is_open:
                    return  # it has frames to read: its descriptor wakes it at once
            _waiting.loop_idle(broker, self)
