"""The thread-safe, URL-addressable broker users hold, and the registry of named brokers.

``simamqp.Broker`` is the sans-IO core engine plus what a process needs around it: one lock
(every engine call happens under it), per-connection conditions so a thread blocked in
``drain_events`` wakes the moment a frame is queued for it, and a name in the registry so
``simamqp://NAME`` finds it.

Virtual time and threads: when every thread that has used the broker has been blocked waiting
on it for ``autojump_threshold`` real seconds, nobody can make progress but a timer, so time
jumps to the next timer or to the earliest waiter's deadline (trio's autojump threshold,
generalised to threads; the rule and its reasons are in ``_waiting`` and docs/threads.md).
"""

from __future__ import annotations

import itertools
import threading
import weakref
from collections.abc import Callable, Iterator
from contextlib import contextmanager, suppress
from typing import TYPE_CHECKING, Any, TypeVar

from . import _waiting
from .core import alarm as _alarm
from .core import broker as _core
from .core.clock import Clock
from .core.connection import Connection as CoreConnection
from .core.trace import TraceMode

if TYPE_CHECKING:
    from kombu.connection import Connection as KombuConnection

    from ._celery_timer import BrokerTimer

#: Real seconds ``advance()`` waits at most for busy event loops (Celery workers) to settle.
LOOP_SETTLE_TIMEOUT = 1.0

__all__ = ["Broker", "get_broker", "register", "registered", "unregister"]

T = TypeVar("T")
DEFAULT_NAME = "default"
_ALIASES = {"", "localhost", DEFAULT_NAME}


class Broker(_core.Broker):
    """An in-memory RabbitMQ for one test (or one process): engine + lock + URL.

    ``Broker(seed=0, clock=None)``: the clock defaults to a ``VirtualClock`` with autojump.
    ``autojump_threshold`` (real seconds, default 0.02) is how long every thread using the
    broker must have been blocked in it before virtual time jumps (docs/threads.md).
    ``trace="window"`` (the default: bounded, with a running digest), ``"full"`` or ``"off"``.
    """

    def __init__(
        self,
        seed: int = 0,
        clock: Clock | None = None,
        *,
        trace: bool | TraceMode = True,
        user: str = "guest",
        name: str | None = None,
        autojump_threshold: float = _waiting.DEFAULT_AUTOJUMP_THRESHOLD,
    ) -> None:
        if not autojump_threshold >= 0:
            raise ValueError(f"autojump_threshold must be >= 0 seconds, got {autojump_threshold!r}")
        super().__init__(seed, clock, trace=trace, user=user)
        #: Real seconds every thread must have been blocked before virtual time jumps.
        self.autojump_threshold = float(autojump_threshold)
        self.lock = threading.RLock()
        self.trace.guard = self.lock  # digest()/tail() from any thread vs emits under the lock
        self.name: str | None = None
        #: Threads that have used the broker. The creating thread counts from the start: a
        #: consumer thread that blocks before the test thread publishes must not see virtual
        #: time jump past its deadline while the test thread is still busy.
        self._threads: dict[int, threading.Thread] = {
            threading.get_ident(): threading.current_thread()
        }
        #: Threads that used the broker and have since been forgotten (they died).
        self._threads_gone = 0
        #: thread ident -> virtual deadline (None: waits forever) of threads blocked on us.
        self._waiting: dict[int, float | None] = {}
        #: When (time.monotonic) every known thread was last seen blocked, or None.
        self._all_blocked_since: float | None = None
        #: thread ident -> activity (trace length) when its wait last timed out.
        self._timed_out: dict[int, int] = {}
        #: Threads that re-blocked right after a timeout with nothing done in between.
        self._pollers: set[int] = set()
        #: Blocked threads that can never be woken: their calls raise DeadlockError.
        self._deadlocked: set[int] = set()
        self._conditions: list[threading.Condition] = []
        #: Event-loop timers (Celery workers) counting ETAs on our clock (_celery_timer).
        self._loop_timers: weakref.WeakSet[BrokerTimer] = weakref.WeakSet()
        #: Notified when an event loop goes idle (``advance`` waits for them to settle).
        self._loops_changed = threading.Condition(self.lock)
        #: Engine connections whose client object was collected without close() (transport).
        self._abandoned: list[tuple[CoreConnection, threading.Condition]] = []
        if name is not None:
            register(name, self)

    # -- identity ---------------------------------------------------------------------------

    @property
    def url(self) -> str:
        """``simamqp://NAME//``; an unregistered broker is registered under a fresh name.

        That implicit registration holds the broker weakly: a broker nobody references any more
        is collected (and its name freed) even after ``.url`` or ``.connection()``.
        """
        if self.name is None:
            _register_weakly(self)
        assert self.name is not None
        return f"simamqp://{self.name}//"

    def connection(self, vhost: str = "/", **kwargs: Any) -> KombuConnection:
        """A kombu ``Connection`` to this broker (not yet connected, as kombu does)."""
        from kombu.connection import Connection as KombuConnection

        url = self.url  # registers an unnamed broker first, so self.name is set below
        if vhost != "/":
            url = f"simamqp://{self.name}/{vhost}"
        return KombuConnection(url, **kwargs)  # type: ignore[no-untyped-call]

    def threads_seen(self) -> int:
        """How many threads have used this broker (the creating thread included)."""
        with self.lock:
            return len(self._threads) + self._threads_gone

    # -- locking ----------------------------------------------------------------------------

    def locked(self, fn: Callable[[], T]) -> T:
        with self.lock:
            self._threads.setdefault(threading.get_ident(), threading.current_thread())
            if self._abandoned:
                self._close_abandoned()
            return fn()

    def run_until_idle(self) -> int:
        with self.lock:
            if self._abandoned:
                self._close_abandoned()
            fired = super().run_until_idle()
            self._wake_all()
            return fired

    def advance(self, seconds: float) -> int:
        """Move the clock ``seconds`` on, firing what comes due (broker timers, workers' ETAs).

        A Celery worker's event loop still busy with what it was sent gets up to
        ``LOOP_SETTLE_TIMEOUT`` real seconds to finish first, as it would while real time
        passed: a task published just before ``advance`` has its ETA counted from before it.
        """
        if self._loop_timers:
            _waiting.settle_loops(self, LOOP_SETTLE_TIMEOUT)
        with self.lock:
            if self._abandoned:
                self._close_abandoned()
            fired = super().advance(seconds)
            self._wake_all()
            _waiting.wake_due_loops(self)
            return fired

    def set_memory_alarm(self, on: bool = True, resource: str = "memory") -> None:
        """Raise (``on``) or clear a resource alarm (``"memory"`` or ``"disk"``), as RabbitMQ
        does when it is low on memory or disk: a connection that publishes meanwhile is sent
        ``connection.blocked`` and its publishes wait until every alarm is clear
        (``simamqp.core.alarm``)."""
        with self.lock:
            _alarm.set_alarm(self, resource, on)
            self._wake_all()

    def restart(self) -> None:
        with self.lock:
            super().restart()
            self._wake_all()

    def close_connections(self, reason: str = "closed via management plugin") -> None:
        with self.lock:
            super().close_connections(reason)
            self._wake_all()

    def add_vhost(self, name: str) -> _core.VHost:
        with self.lock:
            return super().add_vhost(name)

    def delete_vhost(self, name: str) -> None:
        with self.lock:
            super().delete_vhost(name)
            # Clients blocked on a connection to it must wake up to see it closed.
            self._wake_all()

    def queue(self, name: str, vhost: str = "/") -> _core.QueueInfo:
        with self.lock:
            return super().queue(name, vhost)

    def exchange(self, name: str, vhost: str = "/") -> _core.ExchangeInfo:
        with self.lock:
            return super().exchange(name, vhost)

    # -- waiting ----------------------------------------------------------------------------

    def _new_condition(self) -> threading.Condition:
        condition = threading.Condition(self.lock)
        self._conditions.append(condition)
        return condition

    def _drop_condition(self, condition: threading.Condition) -> None:
        with suppress(ValueError):
            self._conditions.remove(condition)

    def _close_abandoned(self) -> None:
        """Close what ``_abandoned`` lists, as RabbitMQ handles a client's socket closing."""
        while self._abandoned:
            core, condition = self._abandoned.pop()
            self._drop_condition(condition)
            if core.is_open:
                core.close()
        self._wake_all()

    def _wake_all(self) -> None:
        for condition in self._conditions:
            condition.notify_all()


#: Brokers bound to a name by ``register()`` or created by ``get_broker()``: kept until
#: ``unregister()``, like a server that runs until stopped.
_registry: dict[str, Broker] = {}
#: Brokers that got a fresh name implicitly (``.url``, ``.connection()``): kept only while
#: someone else references them.
_weak_registry: weakref.WeakValueDictionary[str, Broker] = weakref.WeakValueDictionary()
_registry_lock = threading.Lock()
_counter = itertools.count(1)


def _fresh_name() -> str:
    return f"broker-{next(_counter)}"


def _normalise(name: str | None) -> str:
    return DEFAULT_NAME if name is None or name in _ALIASES else name


def register(name: str, broker: Broker) -> Broker:
    """Bind ``broker`` to ``simamqp://name``; a name is bound to one broker at a time."""
    if not isinstance(broker, Broker):
        raise TypeError(f"register() needs a simamqp.Broker, got {type(broker).__name__}")
    key = _normalise(name)
    with _registry_lock:
        current = _registry.get(key)
        if current is None:
            current = _weak_registry.get(key)
        if current is not None and current is not broker:
            raise ValueError(f"a broker is already registered as {key!r}; unregister it first")
        if broker.name is not None:
            _registry.pop(broker.name, None)
            _weak_registry.pop(broker.name, None)
        _registry[key] = broker
        broker.name = key
    return broker


def _register_weakly(broker: Broker) -> None:
    """Give ``broker`` a fresh name without keeping it alive (``Broker.url``)."""
    with _registry_lock:
        if broker.name is None:
            key = _fresh_name()
            _weak_registry[key] = broker
            broker.name = key


def unregister(name: str) -> Broker | None:
    """Unbind a name (the broker itself lives on while referenced)."""
    key = _normalise(name)
    with _registry_lock:
        broker = _registry.pop(key, None)
        if broker is None:
            broker = _weak_registry.pop(key, None)
    if broker is not None:
        broker.name = None
    return broker


def get_broker(name: str = DEFAULT_NAME, *, create: bool = True) -> Broker:
    """The broker bound to ``name``; created on first use (with a wall clock) when ``create``."""
    key = _normalise(name)
    with _registry_lock:
        broker = _registry.get(key)
        if broker is None:
            broker = _weak_registry.get(key)
        if broker is None:
            if not create:
                raise KeyError(f"no simamqp broker named {key!r}")
            from .wallclock import WallClock

            broker = Broker(clock=WallClock())
            _registry[key] = broker
            broker.name = key
    return broker


def registered() -> dict[str, Broker]:
    with _registry_lock:
        return {**_weak_registry, **_registry}


@contextmanager
def temporary(broker: Broker, name: str | None = None) -> Iterator[Broker]:
    """Register a broker for the duration of a ``with`` block."""
    key = name or _fresh_name()
    register(key, broker)
    try:
        yield broker
    finally:
        unregister(key)
