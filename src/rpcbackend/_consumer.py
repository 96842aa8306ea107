# mypy: disable-error-code="no-untyped-call"
# (kombu ships annotations only for part of its API; its constructors and publish are untyped)
"""Broker I/O of the client side: one connection, the reply queue(s), a consumer, polls.

Every method here does network I/O on one kombu connection, which is not thread-safe, so the
caller must hold the backend's I/O lock (``RPCBackend._io_lock``). Messages are handed to
``RPCBackend._on_reply`` which buffers them before they are acknowledged.
"""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING, Any

from kombu.connection import Connection
from kombu.entity import Queue
from kombu.message import Message
from kombu.messaging import Consumer as KombuConsumer

from rpcbackend._errors import BacklogLimitExceeded

if TYPE_CHECKING:
    from rpcbackend._backend import RPCBackend

logger = logging.getLogger("rpcbackend")

#: After the first message of a drain, read at most this many more without blocking so one
#: drain call empties the socket buffer instead of returning after every message.
_DRAIN_BURST = 1000


class ResultConsumer:
    """Consumes result messages from the client's reply queue(s).

    Named and shaped like ``celery.backends.rpc.ResultConsumer``. Unlike Celery's, the
    consumer acknowledges each message only after the backend has buffered it, and is never
    cancelled while the backend lives: the reply queue is declared ``auto_delete``, so
    cancelling its only consumer would delete it together with any result still in it.
    """

    Consumer = KombuConsumer

    def __init__(self, backend: RPCBackend, app: Any, accept: set[str] | None) -> None:
        self.backend = backend
        self.app = app
        self.accept = accept
        self._connection: Connection | None = None
        self._channel: Any = None
        self._consumer: KombuConsumer | None = None
        self._connection_errors: tuple[type[BaseException], ...] = ()
        #: How many times the connection or the reply queue was lost and rebuilt.
        self.losses = 0
        self.last_loss = ""

    # -- the API named after Celery's ResultConsumer ------------------------------------------

    def start(self, initial_task_id: str | None = None, no_ack: bool = True, **kwargs: Any) -> None:
        """Connect, declare the reply queue(s) and start consuming.

        ``no_ack`` is accepted for Celery compatibility and ignored: messages are always
        acknowledged explicitly, after they are buffered, so none is lost in between.
        """
        self._with_reconnect(self._start_consuming)

    def consume_from(self, task_id: str) -> None:
        # One reply queue serves every task of this client, so there is nothing per task.
        if self._consumer is None:
            self.start(task_id)
        else:
            self._with_reconnect(self._consume_new_queues)

    def cancel_for(self, task_id: str) -> None:
        """Do nothing: results of all tasks share the queue; cancelling would delete it."""

    def drain_events(self, timeout: float | None = None) -> None:
        """Wait up to ``timeout`` for a message, then read whatever else has already arrived.

        Raises ``socket.timeout`` when nothing arrived. A lost connection or reply queue is
        rebuilt before returning (counted in :attr:`losses`).
        """
        if self._consumer is None:
            self.start()
        connection = self._connection
        assert connection is not None
        try:
            connection.drain_events(timeout=timeout)
        except TimeoutError:
            raise
        except self._connection_errors as exc:
            self._reconnect(exc)
            return
        self._drain_nowait()

    def poll(self, backlog_limit: int, *, raise_on_overflow: bool, task_id: str = "") -> None:
        """Read everything queued for this client right now, up to ``backlog_limit`` messages.

        With ``raise_on_overflow``, raise :class:`BacklogLimitExceeded` if more were waiting;
        the extra message read to find that out is buffered and acknowledged like the others.
        """

        def _poll() -> None:
            if self._consumer is not None:
                self._drain_nowait()
            self._ensure_connected()
            for queue in self._bound_queues():
                queue.declare()
                read = 0
                while True:
                    message = queue.get(no_ack=False, accept=self.accept)
                    if message is None:
                        break
                    self._on_message(message)
                    read += 1
                    if read > backlog_limit:
                        if raise_on_overflow:
                            raise BacklogLimitExceeded(
                                f"more than {backlog_limit} messages waiting on reply queue "
                                f"{queue.name!r} while polling for task {task_id!r}; the "
                                f"{read} read are buffered, call again to read on"
                            )
                        break

        self._with_reconnect(_poll)

    def declare(self, channel: Any) -> None:
        """Declare every reply queue on ``channel`` (used before a task is sent)."""
        for queue_name in self.backend.reply_queue_names():
            self.backend.binding_for(queue_name)(channel).declare()

    def stop(self) -> None:
        """Cancel the consumer and close the connection."""
        consumer, connection = self._consumer, self._connection
        self._consumer = self._connection = self._channel = None
        try:
            if consumer is not None:
                consumer.cancel()
        except Exception:
            logger.debug("rpcbackend: error cancelling the result consumer", exc_info=True)
        finally:
            if connection is not None:
                connection.release()

    def on_after_fork(self) -> None:
        """Forget the parent's connection without talking on it (the parent still owns it)."""
        connection = self._connection
        self._consumer = self._connection = self._channel = None
        if connection is not None:
            try:
                connection.collect()
            except Exception:
                logger.debug("rpcbackend: error collecting the parent's connection", exc_info=True)

    @property
    def consuming(self) -> bool:
        return self._consumer is not None

    # -- internals ----------------------------------------------------------------------------

    def _ensure_connected(self) -> None:
        if self._connection is not None:
            return
        connection = self.backend.new_read_connection()
        policy = self.backend.retry_policy
        connection.ensure_connection(
            max_retries=policy["max_retries"],
            interval_start=policy["interval_start"],
            interval_step=policy["interval_step"],
            interval_max=policy["interval_max"],
        )
        self._connection = connection
        self._connection_errors = tuple(connection.connection_errors) + tuple(
            connection.channel_errors
        )
        self._channel = connection.channel()

    def _bound_queues(self) -> list[Queue]:
        return [
            self.backend.binding_for(name)(self._channel)
            for name in self.backend.reply_queue_names()
        ]

    def _start_consuming(self) -> None:
        self._ensure_connected()
        queues = self._bound_queues()
        for queue in queues:
            queue.declare()
        consumer = self.Consumer(
            self._channel,
            queues,
            callbacks=[self._on_body],
            no_ack=False,
            accept=self.accept,
            on_decode_error=self._on_decode_error,
            auto_declare=False,
        )
        consumer.consume()
        self._consumer = consumer

    def _consume_new_queues(self) -> None:
        consumer = self._consumer
        assert consumer is not None
        for queue in self._bound_queues():
            if not consumer.consuming_from(queue):
                queue.declare()
                consumer.add_queue(queue)
                consumer.consume()

    def _drain_nowait(self) -> None:
        connection = self._connection
        for _ in range(_DRAIN_BURST):
            if connection is None:
                return
            try:
                connection.drain_events(timeout=0)
            except TimeoutError:
                return
            except self._connection_errors as exc:
                self._reconnect(exc)
                return

    def _with_reconnect(self, operation: Any) -> None:
        try:
            operation()
        except BacklogLimitExceeded:
            raise
        except TimeoutError:
            raise
        except self._connection_errors as exc:
            self._reconnect(exc)
            operation()

    def _reconnect(self, exc: BaseException) -> None:
        # An auto-delete reply queue goes away with its consumer's connection (RabbitMQ
        # deletes it when the last consumer is gone), and a server-side queue.delete cancels
        # the consumer: either way results published until we redeclare are lost.
        was_consuming = self._consumer is not None
        self.losses += 1
        self.last_loss = f"{type(exc).__name__}: {exc}"
        logger.warning(
            "rpcbackend: lost the connection or reply queue (%s); reconnecting and redeclaring %s",
            self.last_loss,
            ", ".join(self.backend.reply_queue_names()),
        )
        self.on_after_fork()  # drop the dead connection without talking on it
        self._ensure_connected()
        if was_consuming:
            self._start_consuming()
        else:
            for queue in self._bound_queues():
                queue.declare()
        self.backend._on_reconnected()

    def _on_body(self, body: Any, message: Message) -> None:
        self.backend._on_reply(body, message)

    def _on_message(self, message: Message) -> None:
        try:
            body = message.decode()
        except Exception as exc:
            self._on_decode_error(message, exc)
            return
        self.backend._on_reply(body, message)

    def _on_decode_error(self, message: Message, exc: BaseException) -> None:
        # Acknowledge: a message we cannot decode now will not decode later either, and
        # leaving it unacked would pin it on the channel until the connection closes.
        logger.error(
            "rpcbackend: dropped an undecodable result message (content type %r): %s",
            message.content_type,
            exc,
        )
        message.ack()
