# mypy: disable-error-code="no-untyped-call"
# (kombu ships annotations only for part of its API; its constructors and publish are untyped)
"""The RPC result backend: workers publish states to a per-client reply queue, clients read.

Threads: one lock (``_lock``, reentrant because Celery's ``AsyncResult.__del__`` may call in
from the garbage collector) guards the in-memory state, and one I/O lock (``_io_lock``) lets a
single thread at a time talk on the consumer connection. A waiting thread that gets the I/O lock
drains messages for everybody; the others sleep on a condition until the state they wait for
changes or the I/O lock is free. No thread ever blocks on the network while holding ``_lock``.
"""

from __future__ import annotations

import contextlib
import logging
import os
import sys
import threading
import time
import uuid
import weakref
from collections import deque
from collections.abc import Callable, Iterable, Iterator
from datetime import UTC, datetime, timedelta
from typing import Any, ClassVar

from kombu.common import maybe_declare
from kombu.connection import Connection
from kombu.entity import Exchange as KombuExchange
from kombu.entity import Queue as KombuQueue
from kombu.message import Message
from kombu.messaging import Consumer as KombuConsumer
from kombu.messaging import Producer as KombuProducer
from kombu.serialization import prepare_accept_content

from rpcbackend import _states
from rpcbackend._consumer import DIRECT_REPLY_TO, ResultConsumer
from rpcbackend._errors import (
    BacklogLimitExceeded,
    ChordsNotSupported,
    ResultEvicted,
    ResultTimeout,
)
from rpcbackend._meta import build_meta, decode_exception, decode_meta, encode_exception
from rpcbackend._states import Meta
from rpcbackend._store import ResultStore

logger = logging.getLogger("rpcbackend")

E_NO_CHORD_SUPPORT = (
    "The RPC result backend (rpcbackend) does not support chords: every result travels to "
    "the one client that sent the task, so no other party can count the header's results. "
    "A group chained with a task is a chord too. Use a result backend with shared storage "
    "(Redis, a database, ...) for chords."
)

#: Default size of the buffer of results nobody is waiting for yet (Celery's
#: ``MESSAGE_BUFFER_MAX`` has the same value).
DEFAULT_BUFFER_MAX = 8192

#: Longest single blocking read. Waits are event driven; the cap only bounds how long a
#: waiting thread takes to notice that it became responsible for reading.
_MAX_BLOCK = 1.0


def _unpickle_backend(cls: type[RPCBackend], app: Any, kwargs: dict[str, Any]) -> RPCBackend:
    return cls(app, **kwargs)


#: Every live backend, for the one at-fork hook below (a hook per backend could never be
#: removed: os.register_at_fork has no unregister, so each backend would leak one).
_live_backends: weakref.WeakSet[RPCBackend] = weakref.WeakSet()


def _after_fork_in_child() -> None:
    for backend in list(_live_backends):
        backend._after_fork()


if hasattr(os, "register_at_fork"):  # POSIX
    os.register_at_fork(after_in_child=_after_fork_in_child)


class _Watch:
    """One waiter's subscription: accepted metas for its ids, in arrival order."""

    def __init__(self, task_ids: Iterable[str]) -> None:
        self.task_ids = set(task_ids)
        self.metas: deque[Meta] = deque()


class RPCBackend:
    """RPC-style result backend using reply-to and one queue per client.

    Constructor, attribute and method names are those of ``celery.backends.rpc.RPCBackend``;
    ``app`` is a Celery app or an :class:`rpcbackend.Config`.
    """

    Exchange = KombuExchange
    Producer = KombuProducer
    ResultConsumer = ResultConsumer
    #: Exception raised when there are too many messages for a task id.
    BacklogLimitExceeded = BacklogLimitExceeded
    TimeoutError = ResultTimeout

    class Consumer(KombuConsumer):
        """Consumer that requires manual declaration of queues."""

        auto_declare = False

    class Queue(KombuQueue):
        """Queue that never caches declaration."""

        can_cache_declaration = False

    READY_STATES = _states.READY_STATES
    UNREADY_STATES = _states.UNREADY_STATES
    EXCEPTION_STATES = _states.EXCEPTION_STATES

    persistent = False
    supports_autoexpire = True
    supports_native_join = True
    supports_result_compression = False
    subpolling_interval = None
    retry_policy: ClassVar[dict[str, Any]] = {
        "max_retries": 20,
        "interval_start": 0,
        "interval_step": 1,
        "interval_max": 1,
    }

    def __init__(
        self,
        app: Any,
        connection: Connection | None = None,
        exchange: str | None = None,
        exchange_type: str | None = None,
        persistent: bool | None = None,
        serializer: str | None = None,
        auto_delete: bool = True,
        *,
        url: str | None = None,
        expires: float | timedelta | None = None,
        accept: Iterable[str] | None = None,
        buffer_max: int | None = None,
        clock: Callable[[], float] | None = None,
        direct_reply_to: bool | None = None,
        **kwargs: Any,
    ) -> None:
        self.app = app
        conf = app.conf
        if direct_reply_to is None:
            direct_reply_to = conf.get("rpcbackend_direct_reply_to")
        #: Receive results by RabbitMQ direct reply-to instead of a reply queue.
        self.direct_reply_to = bool(direct_reply_to)
        self.url = url
        self._connection = connection
        self.serializer: str = serializer or conf.get("result_serializer") or "json"
        self.persistent = self.prepare_persistent(persistent)
        self.delivery_mode = 2 if self.persistent else 1
        self.exchange_name = exchange or conf.get("result_exchange") or "celeryresults"
        self.exchange_type = exchange_type or conf.get("result_exchange_type") or "direct"
        # Results use the default exchange and the queue name as routing key, whatever
        # result_exchange says; Celery does the same (``RPCBackend._create_exchange``).
        self.exchange = self.Exchange(None)
        self.auto_delete = auto_delete
        self.expires = self.prepare_expires(expires)
        if accept is None:
            accept = conf.get("result_accept_content")
        if accept is None:
            accept = conf.get("accept_content")
        self.accept: set[str] | None = (
            None if accept is None else prepare_accept_content(list(accept))
        )
        self.buffer_max = int(buffer_max or conf.get("rpcbackend_buffer_max") or DEFAULT_BUFFER_MAX)
        self.thread_safe = bool(conf.get("result_backend_thread_safe") or False)
        self.max_retries = conf.get("result_backend_max_retries") or float("inf")
        self.always_retry = False
        self._clock = clock or time.monotonic
        self._init_process_state()
        self.result_consumer = self.ResultConsumer(self, app, self.accept)
        _live_backends.add(self)

    def _init_process_state(self) -> None:
        """Everything that must not survive into a forked child."""
        self._pid = os.getpid()
        self._lock = threading.RLock()
        self._changed = threading.Condition(self._lock)
        self._io_lock = threading.Lock()
        self._publish_lock = threading.Lock()
        self._version = 0
        self._store = ResultStore(self.buffer_max)
        self._watches: list[_Watch] = []
        self._pending: dict[str, dict[int, Callable[[], Any]]] = {}
        self._groups: dict[str, Any] = {}
        self._oid: str | None = None
        self._extra_reply_queues: dict[str, None] = {}
        self._producer_connection: Connection | None = None
        #: task id -> reply queue losses counted when it was sent (the newest buffer_max), so
        #: a timeout can say a loss between the send and the wait lost the result.
        self._losses_at_send: dict[str, int] = {}

    # -- settings -----------------------------------------------------------------------------

    def prepare_persistent(self, enabled: bool | None = None) -> bool:
        if enabled is not None:
            return enabled
        configured = self.app.conf.get("result_persistent")
        return self.persistent if configured is None else bool(configured)

    def prepare_expires(self, value: float | timedelta | None) -> float | None:
        if value is None:
            value = self.app.conf.get("result_expires")
        if isinstance(value, timedelta):
            return value.total_seconds()
        return None if value is None else float(value)

    def as_uri(self, include_password: bool = True) -> str:
        """``rpc://``: the protocol is Celery's RPC backend's (Celery's worker checks this)."""
        return "rpc://"

    # -- reply queues -------------------------------------------------------------------------

    @property
    def oid(self) -> str:
        """Name of the queue this client receives results on."""
        self._ensure_process()
        if self._oid is None:
            thread_oid = getattr(self.app, "thread_oid", None)
            # Under Celery, send_task sets reply_to to app.thread_oid, so that is the queue.
            self._oid = thread_oid if isinstance(thread_oid, str) else str(uuid.uuid4())
        return self._oid

    def reply_queue_names(self) -> list[str]:
        if self.direct_reply_to:
            return []  # replies come through amq.rabbitmq.reply-to, no queue to declare
        return [self.oid, *self._extra_reply_queues]

    def binding_for(self, queue_name: str) -> KombuQueue:
        """The reply queue declaration, identical to Celery 5's ``RPCBackend.binding``."""
        return self.Queue(
            queue_name,
            self.exchange,
            queue_name,
            durable=True,
            auto_delete=self.auto_delete,
            expires=self.expires,
        )

    @property
    def binding(self) -> KombuQueue:
        return self.binding_for(self.oid)

    def _create_binding(self, task_id: str) -> KombuQueue:
        return self.binding

    def new_read_connection(self) -> Connection:
        connection: Connection
        if self._connection is not None:
            connection = self._connection.clone()
        else:
            connection = self.app.connection_for_read()
        return connection

    def new_write_connection(self) -> Connection:
        connection: Connection
        if self._connection is not None:
            connection = self._connection.clone()
        else:
            connection = self.app.connection_for_write()
        return connection

    # -- client side: sending ------------------------------------------------------------------

    def on_task_call(self, producer: KombuProducer, task_id: str) -> None:
        """Declare the reply queue before a task is sent, so no result can miss it."""
        self._ensure_process()
        with self._lock:
            sent = self._losses_at_send
            sent[task_id] = self.result_consumer.losses
            if len(sent) > self.buffer_max:
                del sent[next(iter(sent))]
        thread_oid = getattr(self.app, "thread_oid", None)
        if self.direct_reply_to:
            # The reply consumer must exist on the publishing channel before the request is
            # published there with reply_to=amq.rabbitmq.reply-to.
            with self._io_lock:
                self.result_consumer.use_producer(producer)
            if isinstance(thread_oid, str) and _connect_celery_reply_to_rewrite():
                with _DIRECT_SENDS_LOCK:
                    _DIRECT_SENDS[task_id] = thread_oid
            return
        if isinstance(thread_oid, str) and thread_oid != self.oid:
            # A backend shared between threads (result_backend_thread_safe) still receives
            # results on each sending thread's queue, since send_task puts that in reply_to.
            with self._lock:
                self._extra_reply_queues[thread_oid] = None
        for name in self.reply_queue_names():
            maybe_declare(self.binding_for(name)(producer.channel), retry=True, **self.retry_policy)

    def reply_properties(self, task_id: str) -> dict[str, str]:
        """Message properties a standalone client puts on a request for ``task_id``."""
        reply_to = DIRECT_REPLY_TO if self.direct_reply_to else self.oid
        return {"reply_to": reply_to, "correlation_id": task_id}

    def task_producer(self) -> KombuProducer:
        """Direct reply-to: a producer on this client's reply channel, to publish tasks with.

        Call :meth:`on_task_call` with it before each publish, as with any producer. Not
        thread-safe against another thread waiting on this backend (one kombu connection).
        """
        self._ensure_process()
        if not self.direct_reply_to:
            raise RuntimeError("task_producer() is for direct reply-to mode only")
        with self._io_lock:
            producer: KombuProducer = self.result_consumer.task_producer()
        return producer

    # -- worker side: publishing --------------------------------------------------------------

    def destination_for(self, task_id: str, request: Any) -> tuple[str, str]:
        """Get the destination for result by task id: ``(reply_to, correlation_id)``."""
        if request is None:
            current = getattr(self.app, "current_task", None)
            request = getattr(current, "request", None)
            if request is None:
                raise RuntimeError(f"RPC backend missing task request for {task_id!r}")
        reply_to = _field(request, "reply_to")
        correlation_id = _field(request, "correlation_id")
        return reply_to, correlation_id or task_id

    def on_reply_declare(self, task_id: str) -> Any:
        """Entities to declare before publishing a result: none, the client declared them."""
        return None

    def store_result(
        self,
        task_id: str,
        result: Any,
        state: str,
        traceback: str | None = None,
        request: Any = None,
        **kwargs: Any,
    ) -> Any:
        """Send task return value and state to the client that asked for it."""
        self._ensure_process()
        routing_key, correlation_id = self.destination_for(task_id, request)
        if not routing_key:
            return None
        meta = build_meta(
            task_id,
            state,
            result,
            traceback,
            request,
            serializer=self.serializer,
            now=self._now,
            extended=bool(self.app.conf.get("result_extended")),
        )
        with self._publish_lock:
            if self._producer_connection is None:
                self._producer_connection = self.new_write_connection()
            producer = self.Producer(self._producer_connection, auto_declare=False)
            producer.publish(
                meta,
                exchange=self.exchange,
                routing_key=routing_key,
                correlation_id=correlation_id,
                serializer=self.serializer,
                retry=True,
                retry_policy=self.retry_policy,
                declare=self.on_reply_declare(task_id),
                delivery_mode=self.delivery_mode,
            )
        return result

    def _now(self) -> datetime:
        now = getattr(self.app, "now", None)
        if callable(now):
            value = now()
            if isinstance(value, datetime):
                return value
        return datetime.now(UTC)

    def mark_as_started(self, task_id: str, **meta: Any) -> Any:
        return self.store_result(task_id, meta, _states.STARTED)

    def mark_as_done(
        self,
        task_id: str,
        result: Any,
        request: Any = None,
        store_result: bool = True,
        state: str = _states.SUCCESS,
    ) -> None:
        if store_result and not _field(request, "ignore_result"):
            self.store_result(task_id, result, state, request=request)
        if request is not None and _field(request, "chord"):
            self.on_chord_part_return(request, state, result)

    def mark_as_failure(
        self,
        task_id: str,
        exc: BaseException,
        traceback: str | None = None,
        request: Any = None,
        store_result: bool = True,
        call_errbacks: bool = True,
        state: str = _states.FAILURE,
    ) -> None:
        if store_result:
            self.store_result(task_id, exc, state, traceback=traceback, request=request)
        if request is None:
            return
        if _field(request, "chord"):
            self.on_chord_part_return(request, state, exc)
        celery_base = _celery_backend_base()
        if celery_base is None:
            return
        # Chained tasks and errbacks are Celery canvas features; reuse Celery's own code for
        # them (only reachable when a Celery worker drives this backend, so Celery is loaded).
        chain = _field(request, "chain")
        if hasattr(celery_base, "_fail_chain"):
            celery_base._fail_chain(
                self, chain, exc, traceback, store_result=store_result, state=state
            )
        else:
            _fail_chain_before_celery_5_7(self, chain, exc, traceback, store_result, state)
        if call_errbacks and _field(request, "errbacks"):
            celery_base._call_task_errbacks(self, request, exc, traceback)

    def _errback_arity_greater(self, errback: Any, n: int) -> bool:
        celery_base = _celery_backend_base()
        assert celery_base is not None
        return bool(celery_base._errback_arity_greater(self, errback, n))

    def mark_as_retry(
        self,
        task_id: str,
        exc: BaseException,
        traceback: str | None = None,
        request: Any = None,
        store_result: bool = True,
        state: str = _states.RETRY,
    ) -> Any:
        return self.store_result(task_id, exc, state, traceback=traceback, request=request)

    def mark_as_revoked(
        self,
        task_id: str,
        reason: str = "",
        request: Any = None,
        store_result: bool = True,
        state: str = _states.REVOKED,
    ) -> None:
        celery_exc = sys.modules.get("celery.exceptions")
        revoked_cls: type[Exception] = getattr(celery_exc, "TaskRevokedError", RuntimeError)
        if store_result:
            self.store_result(task_id, revoked_cls(reason), state, request=request)
        if request is not None and _field(request, "chord"):
            self.on_chord_part_return(request, state, revoked_cls(reason))

    def prepare_exception(self, exc: BaseException, serializer: str | None = None) -> Any:
        return encode_exception(exc, self.serializer if serializer is None else serializer)

    def exception_to_python(self, exc: Any) -> BaseException | None:
        return decode_exception(exc)

    def meta_from_decoded(self, meta: Meta) -> Meta:
        return decode_meta(meta)

    def encode_result(self, result: Any, state: str) -> Any:
        if state in self.EXCEPTION_STATES and isinstance(result, BaseException):
            return self.prepare_exception(result)
        return result

    def current_task_children(self, request: Any = None) -> list[Any] | None:
        if request is None:
            return None
        return [child.as_tuple() for child in (_field(request, "children") or [])]

    def process_cleanup(self) -> None:
        """Nothing to clean after a task: results live on the client's queue."""

    def cleanup(self) -> None:
        """Nothing to expire: reply queues expire by themselves (``x-expires``)."""

    # -- chords: not supported ----------------------------------------------------------------

    def ensure_chords_allowed(self) -> None:
        raise ChordsNotSupported(E_NO_CHORD_SUPPORT)

    def apply_chord(self, *args: Any, **kwargs: Any) -> Any:
        self.ensure_chords_allowed()

    def add_to_chord(self, chord_id: str, result: Any) -> None:
        self.ensure_chords_allowed()

    def set_chord_size(self, group_id: str, chord_size: int) -> None:
        self.ensure_chords_allowed()

    def fallback_chord_unlock(self, *args: Any, **kwargs: Any) -> None:
        self.ensure_chords_allowed()

    def chord_error_from_stack(self, callback: Any, exc: BaseException | None = None) -> Any:
        self.ensure_chords_allowed()

    def on_chord_part_return(self, request: Any, state: str, result: Any, **kwargs: Any) -> None:
        """Nothing: a chord can never have been started with this backend."""

    # -- client side: receiving ---------------------------------------------------------------

    def _on_reply(self, body: Any, message: Message) -> None:
        """Buffer one result message, wake whoever waits for it, then acknowledge it."""
        properties = getattr(message, "properties", None) or {}
        task_id = properties.get("correlation_id")
        if not isinstance(body, dict) or "status" not in body:
            logger.error("rpcbackend: dropped a reply without a status: %r", body)
            message.ack()
            return
        task_id = task_id or body.get("task_id")
        if not task_id:
            logger.error("rpcbackend: dropped a reply without a task id: %r", body)
            message.ack()
            return
        fulfil: list[Any] = []
        with self._lock:
            merge = self._store.merge(task_id, body)
            if merge.accepted:
                for watch in self._watches:
                    if task_id in watch.task_ids:
                        watch.metas.append(body)
            if merge.became_ready:
                fulfil = self._take_pending(task_id)
                if fulfil:
                    self._store.claim(task_id)
            self._version += 1
            self._changed.notify_all()
        # Acknowledged only now that it is buffered: a crash before this line redelivers it.
        message.ack()
        if fulfil:
            decoded = decode_meta(body)
            for result in fulfil:
                result._maybe_set_cache(decoded)

    def on_out_of_band_result(self, task_id: str, message: Message) -> None:
        """A result for an id nobody waits on: buffered like any other (kept for the API)."""
        self._on_reply(message.payload, message)

    def on_result_fulfilled(self, result: Any) -> None:
        """Nothing to cancel: one queue serves all results of this client."""

    def _on_reconnected(self) -> None:
        with self._lock:
            self._version += 1
            self._changed.notify_all()

    def get_task_meta(self, task_id: str, backlog_limit: int = 1000) -> Meta:
        """The latest known state of ``task_id``, after reading what is queued.

        Never blocks on another thread's wait: if a thread is already reading the reply queue,
        the buffered state (which that thread keeps current) is returned. Raises
        :class:`BacklogLimitExceeded` when more than ``backlog_limit`` messages were queued,
        after buffering and acknowledging them; call again to read on.
        """
        self._ensure_process()
        _check_backlog_limit(backlog_limit)
        known = self._claim_final(task_id)
        if known is not None:
            return decode_meta(known)
        self._poll_if_idle(backlog_limit, raise_on_overflow=True, task_id=task_id)
        with self._lock:
            self._raise_if_evicted(task_id)
            meta = self._store.claim(task_id) or self._store.get(task_id)
        if meta is None:
            return {"status": _states.PENDING, "result": None}
        return decode_meta(meta)

    poll = get_task_meta

    def _poll_if_idle(
        self, backlog_limit: int, *, raise_on_overflow: bool, task_id: str = ""
    ) -> None:
        if not self._io_lock.acquire(blocking=False):
            return
        try:
            self.result_consumer.poll(
                backlog_limit, raise_on_overflow=raise_on_overflow, task_id=task_id
            )
        finally:
            self._io_lock.release()
            self._on_reconnected()

    def _claim_final(self, task_id: str) -> Meta | None:
        with self._lock:
            self._raise_if_evicted(task_id)
            return self._store.claim(task_id)

    def _raise_if_evicted(self, task_id: str) -> None:
        if self._store.was_evicted(task_id):
            raise ResultEvicted(
                f"the result of task {task_id!r} arrived but was dropped unclaimed because "
                f"more than {self.buffer_max} results were buffered (rpcbackend_buffer_max)"
            )

    def reload_task_result(self, task_id: str) -> Meta:
        """Read the reply queue again and return the task's latest state."""
        self._ensure_process()
        self._poll_if_idle(1000, raise_on_overflow=False, task_id=task_id)
        return self.get_task_meta(task_id)

    def task_result_exists(self, task_id: str) -> bool:
        return bool(self.get_task_meta(task_id)["status"] != _states.PENDING)

    def get_state(self, task_id: str) -> str:
        return str(self.get_task_meta(task_id)["status"])

    get_status = get_state

    def get_result(self, task_id: str) -> Any:
        return self.get_task_meta(task_id).get("result")

    def get_traceback(self, task_id: str) -> Any:
        return self.get_task_meta(task_id).get("traceback")

    def get_children(self, task_id: str) -> Any:
        return self.get_task_meta(task_id).get("children")

    def is_cached(self, task_id: str) -> bool:
        with self._lock:
            meta = self._store.get(task_id)
        return meta is not None and _states.is_ready(meta["status"])

    def _get_task_meta_for(self, task_id: str) -> Meta:
        return self.get_task_meta(task_id)

    def _ensure_retryable(
        self,
        func: Callable[..., Any],
        *args: Any,
        fallback_exc: Any = None,
        fallback_msg: Any = None,
        max_retries: Any = None,
        **kwargs: Any,
    ) -> Any:
        # Retrying is done per operation with retry_policy; Celery's worker calls this hook.
        return func(*args, **kwargs)

    def forget(self, task_id: str) -> None:
        """Drop everything known about ``task_id`` (nothing is stored broker-side)."""
        self._ensure_process()
        with self._lock:
            self._store.forget(task_id)
            self._pending.pop(task_id, None)

    def wait_for(
        self,
        task_id: str,
        timeout: float | None = None,
        interval: float = 0.5,
        no_ack: bool = True,
        on_interval: Callable[[], Any] | None = None,
        on_message: Callable[[Meta], Any] | None = None,
    ) -> Meta:
        """Block until ``task_id`` reaches a final state and return its meta.

        ``timeout`` is in seconds (``0`` reads what is queued once, ``None`` waits forever);
        raises :class:`ResultTimeout`. ``on_message`` is called in this thread with every
        state accepted for the task, in arrival order. ``interval`` and ``no_ack`` exist for
        Celery's signature and are ignored: waiting is event driven, and every message is
        acknowledged once buffered.
        """
        for _, meta in self.iter_results(
            [task_id], timeout=timeout, on_message=on_message, on_interval=on_interval
        ):
            return meta
        raise AssertionError("iter_results ended without a result or an error")

    def iter_results(
        self,
        task_ids: Iterable[str],
        timeout: float | None = None,
        on_message: Callable[[Meta], Any] | None = None,
        on_interval: Callable[[], Any] | None = None,
    ) -> Iterator[tuple[str, Meta]]:
        """Yield ``(task_id, meta)`` for each id as it reaches a final state, in arrival order.

        ``timeout`` bounds the whole iteration; when it runs out, :class:`ResultTimeout` is
        raised naming the ids still missing.
        """
        self._ensure_process()
        remaining = dict.fromkeys(task_ids)
        for task_id in remaining:
            if not isinstance(task_id, str):
                raise TypeError(f"a task id is a str, got {task_id!r}")
        if timeout is not None and (
            isinstance(timeout, bool)
            or not isinstance(timeout, int | float)
            or timeout != timeout  # NaN would never expire
        ):
            raise TypeError(f"timeout must be a number of seconds or None, got {timeout!r}")
        if not remaining:
            return
        deadline = None if timeout is None else self._clock() + max(0.0, timeout)
        watch = _Watch(remaining)
        with self._lock:
            for task_id in remaining:
                self._store.pin(task_id)
            self._watches.append(watch)
            losses_at_start = self.result_consumer.losses
            for task_id in remaining:
                # A loss after the task was sent, before this wait, also lost its result.
                sent_at = self._losses_at_send.get(task_id)
                if sent_at is not None and sent_at < losses_at_start:
                    losses_at_start = sent_at
        expired = False
        first_step = True
        try:
            while True:
                progress, ready, seen = self._harvest(watch, remaining)
                if on_message is not None:
                    for meta in progress:
                        on_message(decode_meta(meta))
                for task_id, meta in ready:
                    yield task_id, decode_meta(meta)
                if not remaining:
                    return
                if expired:
                    raise self._timeout_error(list(remaining), timeout, losses_at_start)
                budget = None if deadline is None else max(0.0, deadline - self._clock())
                self._step(seen, budget, first_step)
                first_step = False
                if on_interval is not None:
                    on_interval()
                expired = deadline is not None and self._clock() >= deadline
        finally:
            with self._lock:
                for task_id in watch.task_ids:
                    self._store.unpin(task_id)
                if watch in self._watches:
                    self._watches.remove(watch)

    def _harvest(
        self,
        watch: _Watch,
        remaining: dict[str, None],
    ) -> tuple[list[Meta], list[tuple[str, Meta]], int]:
        with self._lock:
            progress = list(watch.metas)
            watch.metas.clear()
            ready: list[tuple[str, Meta]] = []
            for task_id in list(remaining):
                self._raise_if_evicted(task_id)
                meta = self._store.claim(task_id)
                if meta is not None:
                    ready.append((task_id, meta))
                    del remaining[task_id]
            ready.sort(key=lambda item: self._store.ready_order(item[0]))
            return progress, ready, self._version

    def _step(self, seen: int, budget: float | None, first_step: bool) -> None:
        """Read from the broker for ``budget`` seconds at most, or wait for whoever reads."""
        block = _MAX_BLOCK if budget is None else min(budget, _MAX_BLOCK)
        if self._io_lock.acquire(blocking=False):
            try:
                with self._lock:
                    if self._version != seen:
                        return  # something arrived since the harvest: look at it first
                if first_step:
                    # Read what is already queued synchronously, so timeout=0 means
                    # "poll once" and needs no consumer.
                    self.result_consumer.poll(1000, raise_on_overflow=False)
                    return
                self.result_consumer.consume_from("")
                with contextlib.suppress(TimeoutError):
                    self.result_consumer.drain_events(timeout=block)
            finally:
                self._io_lock.release()
                # Wake the other waiters: one of them must take over reading if this one stops.
                self._on_reconnected()
        else:
            with self._lock:
                if self._version == seen:
                    self._changed.wait(timeout=block)

    def _timeout_error(
        self, missing: list[str], timeout: float | None, losses_at_start: int
    ) -> ResultTimeout:
        where = "by direct reply-to" if self.direct_reply_to else f"on reply queue {self.oid!r}"
        message = (
            f"timed out after {timeout} s waiting for the result of task(s) "
            f"{', '.join(missing)} {where}"
        )
        lost = self.result_consumer.losses - losses_at_start
        closed = self.result_consumer.channels_closed
        if self.direct_reply_to and closed:
            message += (
                f"; this client's reply channel was closed {closed} time(s) (last: "
                f"{self.result_consumer.last_loss}): the broker drops a direct reply-to reply "
                "addressed to a closed channel (it keeps no backlog), so a result sent there "
                "will not arrive"
            )
        elif lost:
            message += (
                f"; the connection or reply queue was lost {lost} time(s) since the task was "
                "sent or the wait began "
                f"(last: {self.result_consumer.last_loss}) and the queue was redeclared, so a "
                "result published before that was lost with the queue and will not arrive"
            )
        return _timeout_class()(message)

    def get_many(
        self,
        task_ids: Iterable[str],
        timeout: float | None = None,
        interval: float = 0.5,
        no_ack: bool = True,
        on_message: Callable[[Meta], Any] | None = None,
        on_interval: Callable[[], Any] | None = None,
        max_iterations: int | None = None,
        **kwargs: Any,
    ) -> Iterator[tuple[str, Meta]]:
        """Yield ``(task_id, meta)`` for final results; one read pass if ``max_iterations``."""
        if max_iterations is None:
            yield from self.iter_results(
                task_ids, timeout=timeout, on_message=on_message, on_interval=on_interval
            )
            return
        try:
            yield from self.iter_results(task_ids, timeout=0, on_message=on_message)
        except ResultTimeout:
            return

    # -- Celery result-object integration -----------------------------------------------------

    @property
    def is_async(self) -> bool:
        return True

    def add_pending_result(
        self, result: Any, weak: bool = False, start_drainer: bool = True
    ) -> Any:
        """Track a Celery ``AsyncResult`` so it is fulfilled (``then`` callbacks run) on arrival."""
        self._ensure_process()
        with self._lock:
            self._raise_if_evicted(result.id)
            meta = self._store.claim(result.id)
            if meta is None:
                ref: Callable[[], Any] = weakref.ref(result) if weak else _strong_ref(result)
                self._pending.setdefault(result.id, {})[id(result)] = ref
        if meta is not None:
            result._maybe_set_cache(decode_meta(meta))
        return result

    def add_pending_results(self, results: Iterable[Any], weak: bool = False) -> list[Any]:
        return [self.add_pending_result(result, weak=weak) for result in results]

    def remove_pending_result(self, result: Any) -> Any:
        try:
            with self._lock:
                waiters = self._pending.get(result.id)
                if waiters is not None:
                    waiters.pop(id(result), None)
                    if not waiters:
                        del self._pending[result.id]
        except AttributeError:
            pass  # called from AsyncResult.__del__ while the interpreter shuts down
        return result

    def _take_pending(self, task_id: str) -> list[Any]:
        refs = self._pending.pop(task_id, {})
        return [r for r in (ref() for ref in refs.values()) if r is not None]

    def wait_for_pending(
        self,
        result: Any,
        callback: Any = None,
        propagate: bool = True,
        timeout: float | None = None,
        interval: float = 0.5,
        no_ack: bool = True,
        on_message: Callable[[Meta], Any] | None = None,
        on_interval: Callable[[], Any] | None = None,
        **kwargs: Any,
    ) -> Any:
        """What ``AsyncResult.get`` calls: wait, fill the result's cache, raise or return."""
        meta = self.wait_for(
            result.id, timeout=timeout, on_message=on_message, on_interval=on_interval
        )
        result._maybe_set_cache(meta)
        return result.maybe_throw(callback=callback, propagate=propagate)

    def iter_native(
        self,
        result: Any,
        timeout: float | None = None,
        interval: float = 0.5,
        no_ack: bool = True,
        on_message: Callable[[Meta], Any] | None = None,
        on_interval: Callable[[], Any] | None = None,
    ) -> Iterator[tuple[str, Any]]:
        """What ``ResultSet.join_native`` calls: ``(id, meta)`` per member as it finishes."""
        nodes_by_id: dict[str, list[Any]] = {}
        for node in result.results:
            cache = getattr(node, "_cache", _MISSING)
            if cache is _MISSING:
                # A nested group: Celery yields its members for join_native to collect.
                yield node.id, node.children
            elif cache:
                yield node.id, cache
            else:
                nodes_by_id.setdefault(node.id, []).append(node)
        for task_id, meta in self.iter_results(
            list(nodes_by_id), timeout=timeout, on_message=on_message, on_interval=on_interval
        ):
            for node in nodes_by_id[task_id]:
                node._maybe_set_cache(meta)
            yield task_id, meta

    # -- groups (kept in this process: the RPC protocol has no shared store) ------------------

    def save_group(self, group_id: str, result: Any) -> Any:
        """Store the result of an executed group, for ``restore_group`` in this process."""
        self._ensure_process()
        with self._lock:
            self._groups[group_id] = result
        return result

    def get_group_meta(self, group_id: str, cache: bool = True) -> Meta | None:
        with self._lock:
            if group_id not in self._groups:
                return None
            return {"result": self._groups[group_id]}

    def restore_group(self, group_id: str, cache: bool = True) -> Any:
        """Get the result for a group saved by ``save_group``, or None."""
        meta = self.get_group_meta(group_id, cache=cache)
        return None if meta is None else meta["result"]

    def reload_group_result(self, group_id: str) -> Any:
        """Re-read every member of a saved group from the reply queue; return the group."""
        group = self.restore_group(group_id)
        for member in getattr(group, "results", None) or []:
            meta = self.reload_task_result(member.id)
            if hasattr(member, "_maybe_set_cache"):
                member._maybe_set_cache(meta)
        return group

    def delete_group(self, group_id: str) -> None:
        with self._lock:
            self._groups.pop(group_id, None)

    # -- lifecycle ----------------------------------------------------------------------------

    def revive(self, channel: Any) -> None:
        """Nothing to revive: connections are re-established on use."""

    def close(self) -> None:
        """Stop consuming and close both connections. The reply queue auto-deletes."""
        with self._io_lock:
            self.result_consumer.stop()
        with self._publish_lock:
            if self._producer_connection is not None:
                self._producer_connection.release()
                self._producer_connection = None

    def __enter__(self) -> RPCBackend:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    def _ensure_process(self) -> None:
        if os.getpid() != self._pid:
            self._after_fork()

    def _after_fork(self) -> None:
        """Give a forked child its own reply queue and drop the parent's state.

        The parent's connections are forgotten without I/O (writing on the shared sockets
        would corrupt the parent's sessions), locks are recreated (another thread may have
        held one at fork time), and the oid is regenerated so the child never consumes
        results meant for the parent.
        """
        if os.getpid() == self._pid:
            return
        # Read the fields, not the ``oid`` property: that would re-enter this method.
        old_names = {self._oid, *self._extra_reply_queues} - {None}
        producer = self._producer_connection
        self._init_process_state()
        self.result_consumer.on_after_fork()
        if producer is not None:
            try:
                producer.collect()
            except Exception:
                logger.debug("rpcbackend: error collecting the parent's producer", exc_info=True)
        local = getattr(self.app, "_local", None)
        if local is not None and getattr(local, "oid", None) in old_names:
            # Celery caches thread_oid per thread and does not reset it in a forked child, so
            # without this the child's tasks would still name the parent's queue in reply_to.
            del local.oid

    def __reduce__(self) -> tuple[Any, ...]:
        return (
            _unpickle_backend,
            (
                type(self),
                self.app,
                {
                    "connection": self._connection,
                    "exchange": self.exchange_name,
                    "exchange_type": self.exchange_type,
                    "persistent": self.persistent,
                    "serializer": self.serializer,
                    "auto_delete": self.auto_delete,
                    "expires": self.expires,
                    "url": self.url,
                    "direct_reply_to": self.direct_reply_to,
                },
            ),
        )


_MISSING = object()

#: Direct reply-to under Celery: task id -> the ``thread_oid`` Celery put in its reply_to.
_DIRECT_SENDS: dict[str, str] = {}
_DIRECT_SENDS_LOCK = threading.Lock()
_DIRECT_SENDS_MAX = 100_000


def _rewrite_reply_to(
    sender: Any = None,
    headers: Any = None,
    properties: Any = None,
    **kwargs: Any,
) -> None:
    """Celery ``before_task_publish`` receiver: point a direct-mode request's reply_to at
    ``amq.rabbitmq.reply-to``. Celery fills reply_to with ``app.thread_oid`` before the backend
    is consulted; only that value is replaced, an explicit reply_to is left alone."""
    task_id = headers.get("id") if isinstance(headers, dict) else None
    if task_id is None or not isinstance(properties, dict):
        return
    with _DIRECT_SENDS_LOCK:
        expected = _DIRECT_SENDS.pop(task_id, None)
    if expected is not None and properties.get("reply_to") == expected:
        properties["reply_to"] = DIRECT_REPLY_TO


def _connect_celery_reply_to_rewrite() -> bool:
    """Connect :func:`_rewrite_reply_to` if Celery is loaded; False when it is not."""
    signals = sys.modules.get("celery.signals")
    if signals is None:
        return False
    signals.before_task_publish.connect(
        _rewrite_reply_to, weak=False, dispatch_uid="rpcbackend-direct-reply-to"
    )
    with _DIRECT_SENDS_LOCK:
        if len(_DIRECT_SENDS) > _DIRECT_SENDS_MAX:  # publishes that failed before the signal
            _DIRECT_SENDS.clear()
    return True


def _strong_ref(obj: Any) -> Callable[[], Any]:
    # Same call shape as weakref.ref, so weak and strong waiters are stored alike.
    return lambda: obj


def _field(request: Any, name: str) -> Any:
    if request is None:
        return None
    if isinstance(request, dict):
        return request.get(name)
    return getattr(request, name, None)


def _celery_backend_base() -> Any:
    # Looked up, never imported: present exactly when a Celery worker is driving us.
    module = sys.modules.get("celery.backends.base")
    return getattr(module, "Backend", None)


def _fail_chain_before_celery_5_7(
    backend: Any, chain: Any, exc: BaseException, traceback: str | None, store: bool, state: str
) -> None:
    """Fail the tasks chained after a failed one, as Celery before 5.7 does it inline in
    ``Backend.mark_as_failure`` (it has no ``_fail_chain`` to reuse): without this, a chain's
    last result never arrives and its caller waits until its timeout."""
    # Looked up, never imported (as in _celery_backend_base): Celery's backend module has it.
    context_class = sys.modules["celery.backends.base"].Context

    try:
        chain_data = iter(chain)
    except TypeError:
        return
    for element in chain_data:
        ctx = context_class(element)
        ctx.update(ctx.options)
        ctx.id = ctx.options.get("task_id")
        ctx.group = ctx.options.get("group_id")
        if store and state in _states.PROPAGATE_STATES and ctx.task_id is not None:
            backend.store_result(ctx.task_id, exc, state, traceback=traceback, request=ctx)
        if "chord" in ctx.options:
            backend.on_chord_part_return(ctx, state, exc)


def _check_backlog_limit(backlog_limit: Any) -> None:
    """Refuse a bad ``backlog_limit`` before any message is read (and acknowledged)."""
    if isinstance(backlog_limit, bool) or not isinstance(backlog_limit, int):
        raise TypeError(f"backlog_limit must be an int, got {backlog_limit!r}")
    if backlog_limit < 0:
        raise ValueError(f"backlog_limit must be >= 0, got {backlog_limit!r}")


_celery_timeout_classes: dict[type[BaseException], type[ResultTimeout]] = {}


def _celery_timeout_class(celery_timeout: type[BaseException]) -> type[ResultTimeout]:
    cls = _celery_timeout_classes.get(celery_timeout)
    if cls is None:
        cls = type("ResultTimeout", (ResultTimeout, celery_timeout), {"__module__": "rpcbackend"})
        _celery_timeout_classes[celery_timeout] = cls
    return cls


def _timeout_class() -> type[ResultTimeout]:
    """:class:`ResultTimeout`, also a ``celery.exceptions.TimeoutError`` when Celery is loaded."""
    celery_exceptions = sys.modules.get("celery.exceptions")
    celery_timeout = getattr(celery_exceptions, "TimeoutError", None)
    if isinstance(celery_timeout, type) and issubclass(celery_timeout, BaseException):
        return _celery_timeout_class(celery_timeout)
    return ResultTimeout
