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

#: RabbitMQ's pseudo-queue for direct reply-to (https://www.rabbitmq.com/direct-reply-to.html).
DIRECT_REPLY_TO = "amq.rabbitmq.reply-to"

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
        #: Direct reply-to only: whether ``_connection`` is ours (else a producer's, adopted).
        self._owned = True
        #: Direct reply-to only: how many reply channels were closed or replaced.
        self.channels_closed = 0

    # -- the API named after Celery's ResultConsumer ------------------------------------------

    def start(self, initial_task_id: str | None = None, no_ack: bool = True, **kwargs: Any) -> None:
        """Connect, declare the reply queue(s) and start consuming.

        ``no_ack`` is accepted for Celery compatibility and ignored: messages are always
        acknowledged explicitly, after they are buffered, so none is lost in between.
        """
        if self.backend.direct_reply_to:
            self._with_reconnect(self._start_direct)
        else:
            self._with_reconnect(self._start_consuming)

    def use_producer(self, producer: Any) -> None:
        """Direct reply-to: make sure a reply consumer exists on ``producer``'s channel.

        The broker addresses replies to the channel a request was published on, so that is
        the channel to consume on. The first producer's channel is adopted (its connection is
        left to its owner); our own idle connection is given up for it. A second, different
        live channel cannot be served: one client, one channel.
        """
        channel = producer.channel
        if self._consumer is not None and self._channel is channel:
            return
        if self._consumer is not None and not self._owned and self._alive():
            raise RuntimeError(
                "rpcbackend direct reply-to: this client already receives replies on another "
                "channel; every task of one client must be published on one channel (send "
                "from one thread per backend, or publish with backend.task_producer())"
            )
        if self._consumer is not None:
            self.channels_closed += 1
            self.last_loss = "the reply channel was replaced by the publishing channel"
        self._forget(release=True)
        self._connection = producer.connection
        self._owned = False
        self._set_errors()
        self._channel = channel
        self._start_direct()

    def task_producer(self) -> Any:
        """Direct reply-to: a producer on the channel replies arrive on (ours)."""
        from kombu.messaging import Producer

        if self._consumer is None:
            self.start()
        return Producer(self._channel, auto_declare=False)

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
            if self.backend.direct_reply_to:
                return  # nothing is queued broker-side: replies are pushed or dropped
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
        if self.backend.direct_reply_to:
            return
        for queue_name in self.backend.reply_queue_names():
            self.backend.binding_for(queue_name)(channel).declare()

    def stop(self) -> None:
        """Cancel the consumer and close the connection (an adopted one is left open)."""
        if self.backend.direct_reply_to and self._consumer is not None:
            self.channels_closed += 1
            self.last_loss = "the client closed its reply channel"
        self._forget(release=True)

    def _forget(self, *, release: bool) -> None:
        consumer, connection, owned = self._consumer, self._connection, self._owned
        self._consumer = self._connection = self._channel = None
        self._owned = True
        try:
            if consumer is not None and release:
                consumer.cancel()
        except Exception:
            logger.debug("rpcbackend: error cancelling the result consumer", exc_info=True)
        finally:
            if connection is not None and release and owned:
                connection.release()

    def _alive(self) -> bool:
        connection = self._connection
        return bool(connection is not None and connection.connected)

    def on_after_fork(self) -> None:
        """Forget the parent's connection without talking on it (the parent still owns it)."""
        connection, owned = self._connection, self._owned
        self._consumer = self._connection = self._channel = None
        self._owned = True
        if connection is not None and owned:
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
        self._owned = True
        self._set_errors()
        self._channel = connection.channel()

    def _set_errors(self) -> None:
        connection = self._connection
        assert connection is not None
        self._connection_errors = tuple(connection.connection_errors) + tuple(
            connection.channel_errors
        )

    def _start_direct(self) -> None:
        self._ensure_connected()
        consumer = self.Consumer(
            self._channel,
            [Queue(DIRECT_REPLY_TO, no_declare=True)],
            callbacks=[self._on_body],
            no_ack=True,  # RabbitMQ refuses an acknowledging reply consumer
            accept=self.accept,
            on_decode_error=self._on_decode_error,
            auto_declare=False,
        )
        consumer.consume()
        self._consumer = consumer

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
        if self.backend.direct_reply_to:
            return
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
        if self.backend.direct_reply_to:
            # The reply address was the dead channel's: replies to it are dropped by the
            # broker. A new channel has a new address, so only later requests can use it.
            logger.warning(
                "rpcbackend: lost the direct reply-to channel (%s); replies addressed to it "
                "are dropped",
                self.last_loss,
            )
            if was_consuming:
                self.channels_closed += 1
            self.on_after_fork()  # drop the dead connection without talking on it
            self.backend._on_reconnected()
            return
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
