"""The listening socket and its event loop thread, serving one ``simamqp.Broker``."""

from __future__ import annotations

import asyncio
import contextlib
import threading
from collections.abc import Iterator, Mapping
from typing import Any

from .._broker import Broker
from .._wire import SERVER_HEARTBEAT, SERVER_PROPERTIES
from ..core.clock import VirtualClock
from ._connection import CLOSE_OK_TIMEOUT, HANDSHAKE_TIMEOUT, ServerConnection

__all__ = ["Server", "serve"]

#: rabbit_reader's SILENT_CLOSE_DELAY: a failed handshake is answered after 3 seconds.
HANDSHAKE_ERROR_DELAY = 3.0


class Server:
    """An AMQP 0-9-1 listener for ``broker`` on an asyncio loop in a background thread.

    ``start()`` binds and returns once the socket listens; ``url`` is then the ``amqp://`` URL
    (port 0 picks a free port). ``stop()`` closes every client socket and the listener.
    Faults, clock, trace and inspection stay on ``broker``, in the caller's process.
    """

    def __init__(
        self,
        broker: Broker,
        host: str = "127.0.0.1",
        port: int = 0,
        *,
        users: Mapping[str, str] | None = None,
        heartbeat: int = SERVER_HEARTBEAT,
        handshake_error_delay: float = HANDSHAKE_ERROR_DELAY,
        handshake_timeout: float = HANDSHAKE_TIMEOUT,
        close_ok_timeout: float = CLOSE_OK_TIMEOUT,
    ) -> None:
        if not isinstance(broker, Broker):
            raise TypeError(f"Server needs a simamqp.Broker, got {type(broker).__name__}")
        self.broker = broker
        self.host = host
        self.port = port
        self.users = dict(users) if users is not None else {broker.user: "guest"}
        self.heartbeat = heartbeat
        self.handshake_error_delay = handshake_error_delay
        self.handshake_timeout = handshake_timeout
        self.close_ok_timeout = close_ok_timeout
        self.server_properties: dict[str, Any] = SERVER_PROPERTIES
        self.loop = asyncio.new_event_loop()
        self._connections: set[ServerConnection] = set()
        self._listener: asyncio.Server | None = None
        self._thread: threading.Thread | None = None
        self._timer: asyncio.TimerHandle | None = None
        self._timer_due: float | None = None
        self._started = threading.Event()
        self._error: BaseException | None = None

    def __repr__(self) -> str:
        return f"<simamqp.Server {self.url if self._listener else 'stopped'}>"

    @property
    def url(self) -> str:
        host = self.host if ":" not in self.host else f"[{self.host}]"
        users = iter(self.users.items())
        user, password = next(users, ("guest", "guest"))
        # "/%2F" (not "//") names the vhost "/" for every client: kombu, pika, aio-pika, amqplib.
        return f"amqp://{user}:{password}@{host}:{self.port}/%2F"

    @property
    def connection_count(self) -> int:
        return len(self._connections)

    def authenticate(self, user: str, password: str) -> bool:
        return user == self.broker.user and self.users.get(user) == password

    # -- lifecycle --------------------------------------------------------------------------

    def start(self) -> Server:
        if self._thread is not None:
            raise RuntimeError("server already started")
        self._thread = threading.Thread(target=self._run, name="simamqp-server", daemon=True)
        self._thread.start()
        self._started.wait()
        if self._error is not None:
            raise self._error
        return self

    def _run(self) -> None:
        loop = self.loop
        asyncio.set_event_loop(loop)
        try:
            self._listener = loop.run_until_complete(
                loop.create_server(lambda: ServerConnection(self), self.host, self.port)
            )
        except BaseException as exc:  # reported to the thread that called start()
            self._error = exc
            # Closed here, in its thread: left to the collector at interpreter exit, the loop
            # prints "Exception ignored in BaseEventLoop.__del__" after the one-line error.
            loop.close()
            self._started.set()
            return
        sockets = self._listener.sockets
        self.port = sockets[0].getsockname()[1]
        self._started.set()
        try:
            loop.run_forever()
        finally:
            loop.run_until_complete(loop.shutdown_asyncgens())
            loop.close()

    def stop(self) -> None:
        """Close the listener and every client connection; wait for the loop thread."""
        thread = self._thread
        if thread is None or not thread.is_alive():
            return
        done = threading.Event()

        def shutdown() -> None:
            listener = self._listener
            if listener is not None:
                listener.close()
            for conn in list(self._connections):
                conn._abort()
                conn.connection_lost(None)
            self.loop.call_soon(self.loop.stop)
            done.set()

        self.loop.call_soon_threadsafe(shutdown)
        done.wait(10)
        thread.join(10)

    def settle(self, timeout: float = 5.0) -> None:
        """Return once the loop has read what clients already sent and written what it queued.

        Three loop iterations: the first polls the sockets (bytes a client's ``sendall``
        already handed to the kernel are read), the second runs the flushes those methods
        scheduled for other connections, the third confirms nothing more was queued. A test
        in the server's process uses it instead of sleeping; bounded by ``timeout``.
        """
        thread = self._thread
        if thread is None or not thread.is_alive():
            return
        done = threading.Event()

        def step(remaining: int) -> None:
            if remaining:
                self.loop.call_soon(step, remaining - 1)
            else:
                done.set()

        self.loop.call_soon_threadsafe(step, 3)
        done.wait(timeout)

    def __enter__(self) -> Server:
        return self.start()

    def __exit__(self, *exc_info: object) -> None:
        self.stop()

    # -- timers -----------------------------------------------------------------------------

    def _after_activity(self) -> None:
        """With a wall clock, fire the engine's timers (TTL, expiry, delays) when they fall due.

        A virtual clock moves only when the test moves it; the listener then flushes.
        """
        broker = self.broker
        if isinstance(broker.clock, VirtualClock):
            return
        due = broker.scheduler.next_time()
        if due is None or (self._timer_due is not None and self._timer_due <= due):
            return
        if self._timer is not None:
            self._timer.cancel()
        self._timer_due = due
        delay = max(due - broker.clock.now(), 0.0)
        self._timer = self.loop.call_later(delay, self._fire_timers)

    def _fire_timers(self) -> None:
        self._timer = None
        self._timer_due = None
        with self.broker.lock:
            self.broker._tick()
            self.broker._wake_all()
        self._after_activity()


@contextlib.contextmanager
def serve(
    broker: Broker | None = None, host: str = "127.0.0.1", port: int = 0, **options: Any
) -> Iterator[str]:
    """Serve ``broker`` (a fresh wall-clock one by default) over AMQP; yield its ``amqp://`` URL.

    >>> import simamqp, kombu
    >>> from simamqp.server import serve
    >>> broker = simamqp.Broker()
    >>> with serve(broker) as url, kombu.Connection(url) as conn:
    ...     queue = conn.SimpleQueue("hello")
    ...     queue.put("hi")
    ...     queue.get(timeout=5).payload
    'hi'
    """
    if broker is None:
        from ..wallclock import WallClock

        broker = Broker(clock=WallClock())
    server = Server(broker, host, port, **options).start()
    try:
        yield server.url
    finally:
        server.stop()
