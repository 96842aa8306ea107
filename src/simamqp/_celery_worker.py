"""In-thread Celery workers for tests on a simamqp broker (the ``sim_celery_worker`` fixture).

``celery.contrib.testing.worker.start_worker`` waits for a worker that may never come up,
prints tracebacks into passing runs and stops only when its event loop next looks at the
shutdown flag. ``CeleryWorkers`` starts a worker (Celery's ``TestWorkController``, the worker
``start_worker`` runs) in a thread, fails fast when it dies while starting, wakes its event loop
to stop it, and keeps what the worker logged at ERROR or above for the test's failure report
instead of printing it. Celery is imported only when a worker is started.

Celery APIs used: ``celery.contrib.testing.worker.TestWorkController`` (and its
``on_consumer_ready``), ``celery.worker.state.should_stop`` (a warm shutdown: ``start_worker``
sets ``should_terminate``, which leaves a threads pool's threads running),
``celery.result._set_task_join_will_block`` (as ``start_worker`` calls it),
``Consumer.connection``, ``app.finalize()``/``set_current()``/``set_default()``, and
kombu's ``set_event_loop``.
"""

from __future__ import annotations

import logging
import threading
import time
import traceback
from typing import Any

__all__ = ["CeleryWorkers", "WorkerError"]

#: Real seconds a worker may take to start, and to stop, before the fixture gives up on it.
START_TIMEOUT = 30.0
STOP_TIMEOUT = 10.0
POOLS = ("solo", "threads")


class WorkerError(RuntimeError):
    """A worker did not start or stop; the message says what it logged."""


class _Collector(logging.Handler):
    """Keeps what workers log at ERROR or above (the failure report shows it)."""

    def __init__(self) -> None:
        super().__init__(logging.ERROR)
        self.records: list[logging.LogRecord] = []
        self.setFormatter(logging.Formatter("%(levelname)s %(name)s: %(message)s"))

    def emit(self, record: logging.LogRecord) -> None:
        self.records.append(record)

    def lines(self) -> list[str]:
        return [self.format(record) for record in self.records]


class CeleryWorkers:
    """``sim_celery_worker(app, pool="solo", **options)``: start a worker for ``app``.

    Returns the running ``WorkController`` (``.consumer``, ``.hub``, ``.pool``); every worker
    is stopped when the test ends (``stop()`` stops them earlier). ``pool`` is ``"solo"``
    (tasks run in the worker's thread) or ``"threads"`` (``concurrency`` task threads);
    ``options`` go to the worker (``hostname``, ``queues``, ``use_eventloop``, ...).
    """

    def __init__(self) -> None:
        self._running: list[tuple[Any, threading.Thread, list[BaseException]]] = []
        self._collector = _Collector()
        self._loggers = [logging.getLogger("celery"), logging.getLogger("kombu")]
        self._attached = False

    def __call__(
        self, app: Any, *, pool: str = "solo", concurrency: int = 1, **options: Any
    ) -> Any:
        if pool not in POOLS:
            raise ValueError(f"sim_celery_worker: pool must be one of {list(POOLS)}, not {pool!r}")
        from celery.contrib.testing.worker import TestWorkController

        self._attach()
        started = threading.Event()

        class Worker(TestWorkController):  # type: ignore[misc]
            def on_consumer_ready(self, consumer: Any) -> None:
                super().on_consumer_ready(consumer)
                started.set()

        # kombu keeps one event loop per process (get_event_loop) and some Celery versions
        # (5.3, 5.5) reuse it with a new timer of their own, which then never fires: countdowns
        # never run in a second worker. Every worker gets a fresh loop.
        from kombu.asynchronous import set_event_loop

        set_event_loop(None)
        app.finalize()
        app.set_current()
        app.set_default()  # the worker thread finds it as current_app (as with start_worker)
        options.setdefault("hostname", f"simamqp-worker-{len(self._running) + 1}@localhost")
        worker = Worker(
            app=app,
            pool=pool,
            concurrency=concurrency,
            loglevel="WARNING",
            ready_callback=None,
            without_heartbeat=options.pop("without_heartbeat", True),
            without_mingle=True,
            without_gossip=True,
            **options,
        )
        errors: list[BaseException] = []

        def run() -> None:
            try:
                worker.start()
            except BaseException as err:  # reported by the fixture, not printed
                errors.append(err)
            finally:
                started.set()

        thread = threading.Thread(target=run, name=f"celery-worker-{worker.hostname}", daemon=True)
        thread.start()
        self._running.append((worker, thread, errors))
        limit = time.monotonic() + START_TIMEOUT
        while not started.wait(0.05):
            if time.monotonic() > limit:
                raise WorkerError(f"the Celery worker did not start in {START_TIMEOUT} s")
        if not thread.is_alive() or errors:
            self._running.remove((worker, thread, errors))
            raise WorkerError("the Celery worker stopped while starting: " + self._why(errors))
        # The worker's pool marks every join as blocking (process-wide): the test thread may
        # still wait for results, as start_worker allows it.
        _set_task_join_will_block(False)
        return worker

    def _why(self, errors: list[BaseException]) -> str:
        said = self._collector.lines()
        if errors:
            said += [f"{type(e).__name__}: {e}" for e in errors]
        return "; ".join(said) or "it logged nothing"

    def _attach(self) -> None:
        if not self._attached:
            for logger in self._loggers:
                logger.addHandler(self._collector)
            self._attached = True

    def stop(self) -> None:
        """Stop every running worker (each test's end does it too); raises if one hangs."""
        if not self._running:
            return
        from celery.worker import state

        running, self._running = self._running, []
        state.should_stop = 0  # warm shutdown (terminating leaves a threads pool's threads)
        try:
            for worker, _, _ in running:
                _wake(worker)
            stuck = []
            limit = time.monotonic() + STOP_TIMEOUT
            for worker, thread, _ in running:
                thread.join(max(limit - time.monotonic(), 0.0))
                if thread.is_alive():
                    stuck.append(worker.hostname)
        finally:
            state.should_stop = None
        if stuck:
            raise WorkerError(
                f"Celery worker(s) {stuck} did not stop within {STOP_TIMEOUT} s "
                "(a task still running?)"
            )

    def close(self) -> None:
        try:
            self.stop()
        finally:
            if self._attached:
                for logger in self._loggers:
                    logger.removeHandler(self._collector)
                self._attached = False

    def report(self) -> str | None:
        """What the workers logged at ERROR or above, for the failure report (or None)."""
        lines = []
        for record in self._collector.records:
            lines.append(self._collector.format(record))
            if record.exc_info and record.exc_info[1] is not None:
                lines += [
                    "  " + line
                    for chunk in traceback.format_exception(*record.exc_info)
                    for line in chunk.rstrip().splitlines()
                ]
        return "\n".join(lines) if lines else None


def _set_task_join_will_block(value: bool) -> None:
    from celery import result

    result._set_task_join_will_block(value)


def _wake(worker: Any) -> None:
    """Make the worker's event loop run an iteration now (it then sees the stop request)."""
    from .transport import SimConnection

    consumer = getattr(worker, "consumer", None)
    connection = getattr(getattr(consumer, "connection", None), "_connection", None)
    if isinstance(connection, SimConnection):
        with connection.broker.lock:
            ready = connection._ready
            if ready is not None and not ready.closed:
                ready.set()
