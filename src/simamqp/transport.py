"""The kombu transport ``simamqp://``: py-amqp's Connection and Channel, over the engine.

kombu's AMQP code path (``kombu.transport.pyamqp``) runs unchanged: the Transport subclasses
kombu's pyamqp Transport and only swaps the connection class. The Connection and Channel here
have py-amqp's method signatures and defaults, raise ``amqp.exceptions`` with RabbitMQ's reply
codes and texts, hand out ``amqp.Message`` objects, and read "frames" (the engine's outbox) when
py-amqp would read them off the socket:

- ``drain_events`` dispatches one frame (a delivery, return, confirm, cancel or close).
- A method that waits for a reply first dispatches every frame queued before it ran (deliveries
  too, on any channel), in order, as py-amqp reads them while it waits for the reply.
- ``basic_publish`` first reads one pending frame, like py-amqp's ``drain_events(timeout=0)``
  before every publish when the server has the ``connection.blocked`` capability.
- After a channel error the channel is reopened under the same id (py-amqp's ``_do_revive``).

Every argument and message a client hands in passes ``simamqp._boundary`` first: coerced or
refused exactly as py-amqp's encoder would before the bytes reach RabbitMQ, so headers reach the
consumer with the wire's types (tuples become lists, datetimes lose sub-seconds...) and an
ill-typed value raises in the caller instead of reaching the engine.
"""

from __future__ import annotations

import errno
import os
import threading
import time
import weakref
from collections import defaultdict, deque
from collections.abc import Callable, Mapping
from typing import TYPE_CHECKING, Any, TypeVar, cast

import amqp
import amqp.exceptions as amqp_exc
from amqp.protocol import queue_declare_ok_t
from amqp.serialization import decode_properties_basic
from kombu.transport import base
from kombu.transport import pyamqp as kombu_pyamqp

from . import __version__, _boundary, _waiting, _wire
from ._broker import Broker, get_broker
from .core import frames as F
from .core.channel import Channel as CoreChannel
from .core.channel import ChannelClosedError
from .core.connection import Connection as CoreConnection
from .core.errors import AMQPError
from .core.message import Message as CoreMessage

if TYPE_CHECKING:
    from ._celery_timer import BrokerTimer

__all__ = ["Channel", "Connection", "SimChannel", "SimConnection", "SimSocket", "Transport"]

T = TypeVar("T")

SERVER_PROPERTIES = _wire.SERVER_PROPERTIES
SERVER_HEARTBEAT = _wire.SERVER_HEARTBEAT
_U64 = 2**64

_FLAT = (str, int, float, bool, type(None))


def _is_flat(properties: Mapping[str, Any]) -> bool:
    for key, value in properties.items():
        if key == "application_headers":
            if value and not all(type(v) in _FLAT and type(v) is not float for v in value.values()):
                return False
        elif type(value) not in _FLAT:
            return False
    return True


def _wire_properties(properties: Mapping[str, Any]) -> dict[str, Any]:
    """Properties as a py-amqp consumer decodes them off the wire, encoded as the server
    encodes them (``simamqp._wire``, without recursion whatever the headers' nesting)."""
    encoded = _wire.encode_properties(properties)
    decoded: dict[str, Any] = decode_properties_basic(encoded, 0)[0]
    return decoded


def _delivery_properties(message: CoreMessage) -> dict[str, Any]:
    props = message.properties
    if _is_flat(props):
        out = dict(props)
        headers = out.get("application_headers")
        if headers is not None:
            out["application_headers"] = dict(headers)
        return out
    return _wire_properties(props)


def _inbound(channel: SimChannel, message: CoreMessage) -> amqp.Message:
    """An ``amqp.Message`` as py-amqp builds one from an incoming content frame."""
    properties = _delivery_properties(message)
    # py-amqp reads no body frame for an empty body and leaves Message.body at its default "".
    body: bytes | str = message.body or ""
    encoding = properties.get("content_encoding")
    if encoding and channel.auto_decode:
        # try/except rather than a suppress() context manager: once per delivery.
        try:
            body = message.body.decode(encoding)
        except (LookupError, UnicodeDecodeError):
            body = message.body
    # Same object py-amqp's ``Message(body, **properties)`` builds, without copying the
    # (already fresh) properties dict a second time through ``**``.
    msg = amqp.Message(body, channel=channel)
    msg.properties = properties
    return msg


_get_ident = threading.get_ident
#: Seconds between wake-ups of an event loop that polls a simamqp connection.
EVENT_LOOP_TICK = 0.05


def _notifier(connection: SimConnection, condition: threading.Condition) -> Callable[[], None]:
    """The engine connection's listener: wake a thread waiting on ``condition``, if any, and
    make the connection's file descriptor readable if an event loop polls it."""
    waiters = condition._waiters  # type: ignore[attr-defined]
    # Weakly: the engine connection (held by the broker) keeps this listener, and a strong
    # reference back would keep a client connection dropped without close() alive forever.
    connection_ref = weakref.ref(connection)

    def notify() -> None:
        if waiters:
            condition.notify()
        client = connection_ref()
        if client is not None:
            ready = client._ready
            if ready is not None:
                ready.set()
            timer = client._loop_timer
            if timer is not None and timer.idle_ident is not None:
                _waiting.loop_busy(client.broker, timer)  # it has a frame to read now

    return notify


_to_amqp_error = _wire.to_amqp_error


class SimChannel(base.StdChannel):
    """py-amqp's ``amqp.Channel`` surface over an engine channel."""

    Message = kombu_pyamqp.Message

    def __init__(self, connection: SimConnection, channel_id: int | None = None) -> None:
        self.connection: SimConnection | None = connection
        self._broker = connection.broker
        core_connection = connection._core
        if core_connection is None:
            raise amqp_exc.RecoverableConnectionError("connection already closed")
        self._core: CoreChannel = connection._locked(lambda: core_connection.channel(channel_id))
        self.channel_id = self._core.id
        self.is_open = True
        self.events: defaultdict[str, set[Callable[..., Any]]] = defaultdict(set)
        self.callbacks: dict[str, Callable[[amqp.Message], Any]] = {}
        self.cancel_callbacks: dict[str, Callable[[str], Any]] = {}
        self.no_ack_consumers: set[str] = set()  # type: ignore[assignment]
        #: py-amqp decodes a body whose message declares a content_encoding (auto_decode=True).
        self.auto_decode = True
        self._confirm_selected = False
        self._confirm_publish = bool(connection.confirm_publish)
        self._pending_confirms: dict[int, bool] = {}
        connection.channels[self.channel_id] = self

    def __repr__(self) -> str:
        return f"<simamqp.Channel {self.channel_id} {'open' if self.is_open else 'closed'}>"

    # -- plumbing ---------------------------------------------------------------------------

    def _conn(self) -> SimConnection:
        conn = self.connection
        if conn is None or not self.is_open:
            raise amqp_exc.RecoverableConnectionError("connection already closed")
        if conn._cut_by is not None:
            raise conn._socket_error(write=True)
        return conn

    def _call(self, fn: Callable[[CoreChannel], T], *, wait: bool = True) -> T:
        """A method: run it, map errors; if it ``wait``s for a reply, read what came before it.

        py-amqp sends a synchronous method, then reads frames in arrival order until the reply:
        every frame queued before the method ran (deliveries too, on any channel) reaches its
        callback, in outbox order, before the method returns or raises. Frames the method itself
        queues (the deliveries a basic.consume starts) follow the reply: the next read gets them.
        """
        conn = self._conn()
        if not wait:
            # Sent with nowait (or, as py-amqp sends basic.recover, without waiting): nothing is
            # read, and an error comes back as the close frame the next read raises.
            try:
                conn._locked(lambda: self._core.without_reply(fn))
            except ChannelClosedError as err:
                if self._close_pending():
                    return cast(T, None)  # the broker discards methods on a closing channel
                raise amqp_exc.RecoverableConnectionError("connection already closed") from err
            return cast(T, None)  # callers return what py-amqp returns for nowait
        earlier: deque[F.Frame] | None = None

        def run() -> T:
            nonlocal earlier
            earlier = conn._take_all()
            return fn(self._core)

        try:
            result = conn._locked(run)
        except AMQPError as err:
            try:
                conn._dispatch_frames(earlier)
            finally:
                error = self._on_error(err)
            raise error from None
        except ChannelClosedError as err:
            conn._dispatch_frames(earlier)  # raises the close that came before, if one did
            raise amqp_exc.RecoverableConnectionError("connection already closed") from err
        conn._dispatch_frames(earlier)
        return result

    def _args(self, argsig: str, *values: Any) -> list[Any]:
        """Arguments as RabbitMQ receives them (``simamqp._boundary``); a frame RabbitMQ
        cannot decode closes the connection."""
        try:
            return _boundary.method_arguments(argsig, *values)
        except AMQPError as err:
            raise self._frame_error(err) from None

    def _frame_error(self, err: AMQPError) -> amqp_exc.AMQPError:
        conn = self._conn()
        core_connection = conn._core
        if core_connection is not None:
            conn._locked(lambda: core_connection.fail(err))
        return self._on_error(err)

    def _on_error(self, err: AMQPError) -> amqp_exc.AMQPError:
        conn = self.connection
        if conn is not None and not err.soft:
            conn._collect(err)
        elif conn is not None:
            self._revive()
        return _to_amqp_error(err)

    def _revive(self) -> None:
        """Reopen the channel under the same id, as py-amqp does after channel.close."""
        conn = self.connection
        if conn is None or not conn.connected:
            return
        self.callbacks.clear()
        self.cancel_callbacks.clear()
        self.no_ack_consumers.clear()
        self._confirm_selected = False
        core_connection = conn._core
        if core_connection is not None:
            self._core = conn._locked(lambda: core_connection.channel(self.channel_id))

    def then(self, on_success: Any, on_error: Any = None) -> Any:
        return None

    def collect(self) -> None:
        self.is_open = False
        self.callbacks.clear()
        self.cancel_callbacks.clear()
        self.events.clear()
        self.no_ack_consumers.clear()
        self.connection = None

    def open(self) -> None:
        pass

    def close(
        self,
        reply_code: int = 0,
        reply_text: str = "",
        method_sig: tuple[int, int] = (0, 0),
        argsig: str = "BsBB",
    ) -> None:
        conn = self.connection
        if conn is None or not self.is_open:
            return
        if conn._cut_by is not None:
            conn.channels.pop(self.channel_id, None)
            self.collect()
            raise conn._socket_error(write=True)
        earlier: deque[F.Frame] | None = None

        def run() -> None:
            nonlocal earlier
            earlier = conn._take_all()
            self._core.close()

        try:
            if conn.connected:
                conn._locked(run)
        finally:
            conn.channels.pop(self.channel_id, None)
            self.collect()
        # Read up to close-ok: py-amqp ignores what comes for the channel it is closing (the
        # broker requeues those deliveries) and dispatches frames for the other channels.
        conn._dispatch_frames(earlier)

    # -- kombu StdChannel helpers (as kombu.transport.pyamqp.Channel) ---------------------

    def prepare_message(
        self,
        body: Any,
        priority: int | None = None,
        content_type: str | None = None,
        content_encoding: str | None = None,
        headers: Mapping[str, Any] | None = None,
        properties: Mapping[str, Any] | None = None,
        _Message: type[amqp.Message] = amqp.Message,
    ) -> amqp.Message:
        return _Message(
            body,
            priority=priority,
            content_type=content_type,
            content_encoding=content_encoding,
            application_headers=headers,
            **(properties or {}),
        )

    def prepare_queue_arguments(self, arguments: Any, **kwargs: Any) -> Any:
        return base.to_rabbitmq_queue_arguments(arguments, **kwargs)

    def message_to_python(self, raw_message: amqp.Message) -> Any:
        return self.Message(raw_message, channel=self)  # type: ignore[no-untyped-call]

    # -- exchange class ---------------------------------------------------------------------

    def exchange_declare(
        self,
        exchange: str,
        type: str,
        passive: bool = False,
        durable: bool = False,
        auto_delete: bool = True,
        nowait: bool = False,
        arguments: Mapping[str, Any] | None = None,
        argsig: str = "BssbbbbbF",
        internal: bool = False,
    ) -> None:
        _, exchange, type, passive, durable, auto_delete, internal, nowait, arguments = self._args(
            "BssbbbbbF",
            0,
            exchange,
            type,
            passive,
            durable,
            auto_delete,
            internal,
            nowait,
            arguments,
        )
        self._call(
            lambda ch: ch.exchange_declare(
                exchange, type, passive, durable, auto_delete, internal, arguments
            ),
            wait=not nowait,
        )

    def exchange_delete(
        self, exchange: str, if_unused: bool = False, nowait: bool = False, argsig: str = "Bsbb"
    ) -> tuple[()] | None:
        _, exchange, if_unused, nowait = self._args("Bsbb", 0, exchange, if_unused, nowait)
        self._call(lambda ch: ch.exchange_delete(exchange, if_unused), wait=not nowait)
        return None if nowait else ()

    def exchange_bind(
        self,
        destination: str,
        source: str = "",
        routing_key: str = "",
        nowait: bool = False,
        arguments: Mapping[str, Any] | None = None,
        argsig: str = "BsssbF",
    ) -> tuple[()] | None:
        _, destination, source, routing_key, nowait, arguments = self._args(
            "BsssbF", 0, destination, source, routing_key, nowait, arguments
        )
        self._call(
            lambda ch: ch.exchange_bind(destination, source, routing_key, arguments),
            wait=not nowait,
        )
        return None if nowait else ()

    def exchange_unbind(
        self,
        destination: str,
        source: str = "",
        routing_key: str = "",
        nowait: bool = False,
        arguments: Mapping[str, Any] | None = None,
        argsig: str = "BsssbF",
    ) -> tuple[()] | None:
        _, destination, source, routing_key, nowait, arguments = self._args(
            "BsssbF", 0, destination, source, routing_key, nowait, arguments
        )
        self._call(
            lambda ch: ch.exchange_unbind(destination, source, routing_key, arguments),
            wait=not nowait,
        )
        return None if nowait else ()

    # -- queue class ------------------------------------------------------------------------

    def queue_bind(
        self,
        queue: str,
        exchange: str = "",
        routing_key: str = "",
        nowait: bool = False,
        arguments: Mapping[str, Any] | None = None,
        argsig: str = "BsssbF",
    ) -> tuple[()] | None:
        _, queue, exchange, routing_key, nowait, arguments = self._args(
            "BsssbF", 0, queue, exchange, routing_key, nowait, arguments
        )
        self._call(
            lambda ch: ch.queue_bind(queue, exchange, routing_key, arguments), wait=not nowait
        )
        return None if nowait else ()

    def queue_unbind(
        self,
        queue: str,
        exchange: str,
        routing_key: str = "",
        nowait: bool = False,
        arguments: Mapping[str, Any] | None = None,
        argsig: str = "BsssF",
    ) -> tuple[()] | None:
        # queue.unbind has no nowait field on the wire (argsig BsssF).
        _, queue, exchange, routing_key, arguments = self._args(
            "BsssF", 0, queue, exchange, routing_key, arguments
        )
        self._call(
            lambda ch: ch.queue_unbind(queue, exchange, routing_key, arguments), wait=not nowait
        )
        return None if nowait else ()

    def queue_declare(
        self,
        queue: str = "",
        passive: bool = False,
        durable: bool = False,
        exclusive: bool = False,
        auto_delete: bool = True,
        nowait: bool = False,
        arguments: Mapping[str, Any] | None = None,
        argsig: str = "BsbbbbbF",
    ) -> queue_declare_ok_t | None:
        _, queue, passive, durable, exclusive, auto_delete, nowait, arguments = self._args(
            "BsbbbbbF", 0, queue, passive, durable, exclusive, auto_delete, nowait, arguments
        )
        result = self._call(
            lambda ch: ch.queue_declare(queue, passive, durable, exclusive, auto_delete, arguments),
            wait=not nowait,
        )
        return None if nowait else queue_declare_ok_t(*result)

    def queue_delete(
        self,
        queue: str = "",
        if_unused: bool = False,
        if_empty: bool = False,
        nowait: bool = False,
        argsig: str = "Bsbbb",
    ) -> int | None:
        _, queue, if_unused, if_empty, nowait = self._args(
            "Bsbbb", 0, queue, if_unused, if_empty, nowait
        )
        count = self._call(lambda ch: ch.queue_delete(queue, if_unused, if_empty), wait=not nowait)
        return None if nowait else count

    def queue_purge(self, queue: str = "", nowait: bool = False, argsig: str = "Bsb") -> int | None:
        _, queue, nowait = self._args("Bsb", 0, queue, nowait)
        count = self._call(lambda ch: ch.queue_purge(queue), wait=not nowait)
        return None if nowait else count

    # -- basic class ------------------------------------------------------------------------

    def basic_qos(
        self, prefetch_size: int, prefetch_count: int, a_global: bool, argsig: str = "lBb"
    ) -> tuple[()]:
        prefetch_size, prefetch_count, a_global = self._args(
            "lBb", prefetch_size, prefetch_count, a_global
        )
        self._call(lambda ch: ch.basic_qos(prefetch_size, prefetch_count, a_global))
        return ()

    def basic_consume(
        self,
        queue: str = "",
        consumer_tag: str = "",
        no_local: bool = False,
        no_ack: bool = False,
        exclusive: bool = False,
        nowait: bool = False,
        callback: Callable[[amqp.Message], Any] | None = None,
        arguments: Mapping[str, Any] | None = None,
        on_cancel: Callable[[str], Any] | None = None,
        argsig: str = "BssbbbbF",
    ) -> str:
        _, queue, consumer_tag, no_local, no_ack, exclusive, nowait, arguments = self._args(
            "BssbbbbF", 0, queue, consumer_tag, no_local, no_ack, exclusive, nowait, arguments
        )
        if nowait and not consumer_tag:
            raise ValueError("Consumer tag must be specified when nowait is True")  # as py-amqp
        tag = self._call(
            lambda ch: ch.basic_consume(
                queue, consumer_tag, no_local, no_ack, exclusive, arguments
            ),
            wait=not nowait,
        )
        if nowait:
            tag = consumer_tag
        if callback is not None:
            self.callbacks[tag] = callback
        if on_cancel is not None:
            self.cancel_callbacks[tag] = on_cancel
        if no_ack:
            self.no_ack_consumers.add(tag)
        return tag

    def basic_cancel(
        self, consumer_tag: str, nowait: bool = False, argsig: str = "sb"
    ) -> str | None:
        consumer_tag, nowait = self._args("sb", consumer_tag, nowait)
        if self.connection is not None and self.is_open:
            # As py-amqp: forget no_ack first, keep the callback for what was delivered before
            # cancel-ok (_call dispatches it), and drop the callback with cancel-ok.
            self.no_ack_consumers.discard(consumer_tag)
            self._call(lambda ch: ch.basic_cancel(consumer_tag), wait=not nowait)
        self._remove_tag(consumer_tag)
        return None if nowait else consumer_tag

    def _remove_tag(self, consumer_tag: str) -> Callable[[str], Any] | None:
        self.callbacks.pop(consumer_tag, None)
        self.no_ack_consumers.discard(consumer_tag)
        return self.cancel_callbacks.pop(consumer_tag, None)

    def basic_get(
        self, queue: str = "", no_ack: bool = False, argsig: str = "Bsb"
    ) -> amqp.Message | None:
        _, queue, no_ack = self._args("Bsb", 0, queue, no_ack)
        ok = self._call(lambda ch: ch.basic_get(queue, no_ack))
        if ok is None:
            return None
        msg = _inbound(self, ok.message)
        msg.delivery_info = {
            "delivery_tag": ok.delivery_tag,
            "redelivered": ok.redelivered,
            "exchange": ok.exchange,
            "routing_key": ok.routing_key,
            "message_count": ok.message_count,
        }
        return msg

    def basic_ack(self, delivery_tag: int, multiple: bool = False, argsig: str = "Lb") -> None:
        # _settle(lambda ch: ch.basic_ack(...)), inlined: once per message.
        # The boundary's checks, the common case inlined (argsig Lb: an unsigned 64-bit tag).
        if type(delivery_tag) is not int or not 0 <= delivery_tag < _U64:
            delivery_tag = _boundary.delivery_tag(delivery_tag)
        if type(multiple) is not bool:
            multiple = bool(self._args("b", multiple)[0])
        conn = self._conn()
        broker = conn.broker
        try:
            with broker.lock:
                threads = broker._threads
                ident = _get_ident()
                if ident not in threads:
                    threads[ident] = threading.current_thread()
                self._core.basic_ack(delivery_tag, multiple)
        except ChannelClosedError as err:
            if self._close_pending():
                return  # the broker discards methods on a channel it is closing
            raise amqp_exc.RecoverableConnectionError("connection already closed") from err

    def basic_reject(self, delivery_tag: int, requeue: bool, argsig: str = "Lb") -> None:
        delivery_tag, requeue = self._args("Lb", delivery_tag, requeue)
        self._settle(lambda ch: ch.basic_reject(delivery_tag, requeue))

    def basic_nack(self, delivery_tag: int, multiple: bool = False, requeue: bool = True) -> None:
        """basic.nack (py-amqp 5.4 has no method for it; RabbitMQ supports it)."""
        delivery_tag, multiple, requeue = self._args("Lbb", delivery_tag, multiple, requeue)
        self._settle(lambda ch: ch.basic_nack(delivery_tag, multiple, requeue))

    def _settle(self, fn: Callable[[CoreChannel], None]) -> None:
        conn = self._conn()
        try:
            conn._locked(lambda: fn(self._core))
        except ChannelClosedError as err:
            if self._close_pending():
                return  # the broker discards methods on a channel it is closing
            raise amqp_exc.RecoverableConnectionError("connection already closed") from err

    def _close_pending(self) -> bool:
        """The broker closed this channel and the client has not read the close yet."""
        conn = self.connection
        if conn is not None and conn.is_closing:
            return True  # methods sent after connection.close are discarded too
        return (
            conn is not None
            and conn.connected
            and self.is_open
            and not self._core.is_open
            and self._core.close_reason is not None
        )

    def basic_recover(self, requeue: bool = False) -> None:
        (requeue,) = self._args("b", requeue)
        # py-amqp sends basic.recover without waiting for recover-ok: it reads nothing.
        self._call(lambda ch: ch.basic_recover(requeue), wait=False)

    def basic_recover_async(self, requeue: bool = False) -> None:
        self.basic_recover(requeue)

    def flow(self, active: bool) -> None:
        (active,) = self._args("b", active)
        self._call(lambda ch: ch.flow(active))

    def confirm_select(self, nowait: bool = False) -> tuple[()] | None:
        self._call(lambda ch: ch.confirm_select(), wait=not nowait)
        self._confirm_selected = True
        return None if nowait else ()

    # tx class: py-amqp's tx_select/tx_commit/tx_rollback wait for the -ok and return it.

    def tx_select(self) -> tuple[()]:
        self._call(lambda ch: ch.tx_select())
        return ()

    def tx_commit(self) -> tuple[()]:
        self._call(lambda ch: ch.tx_commit())
        return ()

    def tx_rollback(self) -> tuple[()]:
        self._call(lambda ch: ch.tx_rollback())
        return ()

    def basic_publish(
        self,
        msg: amqp.Message,
        exchange: str = "",
        routing_key: str = "",
        mandatory: bool = False,
        immediate: bool = False,
        timeout: float | None = None,
        confirm_timeout: float | None = None,
        argsig: str = "Bssbb",
    ) -> None:
        conn = self.connection
        if conn is None or not self.is_open:
            raise amqp_exc.RecoverableConnectionError("basic_publish: connection closed")
        if conn._cut_by is not None:
            raise conn._socket_error(write=False)  # py-amqp reads before it publishes
        # py-amqp reads one pending frame before each publish (connection.blocked capability).
        core = conn._core
        if core is not None and core.outbox:
            conn._dispatch_one(block=False)
        if self._confirm_publish and not self._confirm_selected:
            self.confirm_select()
        # Encoded as py-amqp's send_method would: the method's arguments, then the content.
        try:
            exchange, routing_key, mandatory, immediate = _boundary.publish_arguments(
                exchange, routing_key, mandatory, immediate
            )
        except AMQPError as err:
            raise self._frame_error(err) from None
        body, properties = _boundary.message_content(msg.body, msg.properties)
        broker = conn.broker
        try:
            with broker.lock:  # SimConnection._locked, inlined (once per message)
                threads = broker._threads
                ident = _get_ident()
                if ident not in threads:
                    threads[ident] = threading.current_thread()
                seq = self._core.basic_publish(
                    body, exchange, routing_key, mandatory, immediate, properties
                )
        except ChannelClosedError as err:
            if self._close_pending():
                return  # the broker discards methods on a channel it is closing
            raise amqp_exc.RecoverableConnectionError("basic_publish: connection closed") from err
        if seq is not None and self._confirm_publish:
            conn._wait_confirm(self, seq, confirm_timeout or timeout)

    basic_publish_confirm = basic_publish

    def send_method(
        self,
        sig: tuple[int, int],
        format: str | None = None,
        args: Any = None,
        content: Any = None,
        wait: Any = None,
        callback: Any = None,
        returns_tuple: bool = False,
    ) -> None:
        """The raw-method escape hatch for what py-amqp has no method for.

        Supported: exchange.declare (to set ``internal``) and basic.nack.
        """
        if tuple(sig) == (40, 10):
            _, name, type_, passive, durable, auto_delete, internal, _nowait, arguments = args
            self.exchange_declare(
                name, type_, passive, durable, auto_delete, arguments=arguments, internal=internal
            )
        elif tuple(sig) == (60, 120):
            delivery_tag, multiple, requeue = args
            self.basic_nack(delivery_tag, multiple, requeue)
        else:
            raise NotImplementedError(f"simamqp does not support raw method {sig!r}")

    # -- frames from the broker -------------------------------------------------------------

    def _on_basic_deliver(self, frame: F.BasicDeliver) -> None:
        msg = _inbound(self, frame.message)
        msg.delivery_info = {
            "consumer_tag": frame.consumer_tag,
            "delivery_tag": frame.delivery_tag,
            "redelivered": frame.redelivered,
            "exchange": frame.exchange,
            "routing_key": frame.routing_key,
        }
        callback = self.callbacks.get(frame.consumer_tag)
        if callback is None:
            # py-amqp: REJECTED_MESSAGE_WITHOUT_CALLBACK, the message goes back to the queue.
            self.basic_reject(frame.delivery_tag, requeue=True)
            return
        callback(msg)

    def _on_basic_return(self, frame: F.BasicReturn) -> None:
        exc = amqp_exc.error_for_code(
            frame.reply_code,
            _wire.reply_text_str(frame.reply_text),
            (60, 50),
            amqp_exc.ChannelError,
        )
        handlers = self.events.get("basic_return")
        msg = _inbound(self, frame.message)
        if not handlers:
            raise exc
        for callback in list(handlers):
            callback(exc, frame.exchange, frame.routing_key, msg)

    def _on_basic_cancel(self, frame: F.BasicCancel) -> None:
        callback = self._remove_tag(frame.consumer_tag)
        if callback is not None:
            callback(frame.consumer_tag)
        else:
            raise amqp_exc.ConsumerCancelled(frame.consumer_tag, (60, 30))

    def _on_confirm(self, frame: F.BasicAck | F.BasicNack) -> None:
        ack = isinstance(frame, F.BasicAck)
        self._pending_confirms[frame.delivery_tag] = ack
        for callback in list(self.events.get("basic_ack" if ack else "basic_nack", ())):
            callback(frame.delivery_tag, frame.multiple)

    def _on_close(self, frame: F.ChannelClose) -> None:
        self._revive()
        raise _to_amqp_error(frame.error)


def _close_abandoned(broker: Broker, core: CoreConnection, condition: threading.Condition) -> None:
    """Close the engine connection of a collected SimConnection: a socket close, no frame.

    The collector may run in any thread at any allocation, also inside a broker call on this
    thread or while another thread holds the lock: it never waits for the lock (that could
    deadlock), so then the close is left for the next ``Broker.locked``/``run_until_idle``/
    ``advance``.
    """
    broker._abandoned.append((core, condition))
    lock = broker.lock
    if lock._is_owned() or not lock.acquire(blocking=False):  # type: ignore[attr-defined]
        return
    try:
        broker._close_abandoned()
    finally:
        lock.release()


class SimSocket:
    """``connection.transport.sock``: the socket py-amqp would hold, as far as code reaches it.

    There is no socket, but ``shutdown()`` and ``close()`` cut the connection the way a dead TCP
    connection does, which is how a test simulates a network failure from user code (kombu's
    integration suite does ``sock.shutdown(socket.SHUT_RDWR); sock.close()``). The broker closes
    the connection as if the client had (consumers cancelled, unacked messages requeued,
    exclusive queues deleted), and the client's next use raises what py-amqp raises on
    RabbitMQ: after ``shutdown`` a read (``drain_events``, ``basic_publish``) raises
    ``OSError('Server unexpectedly closed connection')`` and a write (any other method)
    ``BrokenPipeError``; after ``close`` everything raises ``OSError(EBADF)``. Those are in
    kombu's ``connection_errors``, so ``Connection.ensure``/``autoretry`` reconnect.
    """

    def __init__(self, connection: SimConnection) -> None:
        self._connection = connection
        self._closed = False

    def __repr__(self) -> str:
        state = "closed" if self._closed else "open"
        return f"<simamqp.SimSocket {state} for {self._connection!r}>"

    def fileno(self) -> int:
        """The descriptor an event loop polls (``SimConnection.fileno``), as a socket's."""
        if self._closed:
            raise OSError(errno.EBADF, os.strerror(errno.EBADF))
        return self._connection.fileno()

    def shutdown(self, how: int) -> None:
        if self._closed:
            raise OSError(errno.EBADF, os.strerror(errno.EBADF))
        self._connection._cut("shutdown")

    def close(self) -> None:
        if self._closed:
            return
        self._closed = True
        self._connection._cut("closed")


class SimConnection:
    """py-amqp's ``amqp.Connection`` surface over an engine connection."""

    Channel = SimChannel

    def __init__(
        self,
        host: str = "localhost",
        userid: str = "guest",
        password: str = "guest",
        virtual_host: str = "/",
        broker: Broker | None = None,
        confirm_publish: bool = False,
        client_properties: Mapping[str, Any] | None = None,
        heartbeat: float | None = 0,
        **kwargs: Any,
    ) -> None:
        self.broker = broker if broker is not None else get_broker(host)
        trace = kwargs.pop("trace", None)
        if trace is not None:
            # transport_options={"trace": "full"|"window"|"off"} (Celery:
            # broker_transport_options): the broker's trace retention, for every connection.
            self.broker.locked(lambda: self.broker.set_trace_mode(trace))
        self.host = host
        self.userid = userid
        self.virtual_host = virtual_host or "/"
        self.confirm_publish = confirm_publish
        self.client_properties = dict(client_properties or {})
        self.server_properties = SERVER_PROPERTIES
        #: Negotiated heartbeat (s). RabbitMQ sends a heartbeat frame every heartbeat/2 s and
        #: py-amqp's drain_events returns after reading one; simamqp does the same, so loops
        #: that only check for shutdown between drain_events calls behave as on RabbitMQ.
        self.heartbeat = float(heartbeat or 0)
        self._client_heartbeat = heartbeat
        self.channels: dict[int, SimChannel] = {}
        self.client: Any = None
        self.on_blocked = kwargs.get("on_blocked")
        self.on_unblocked = kwargs.get("on_unblocked")
        self._core: CoreConnection | None = None
        #: The client has seen the connection closed (it closed it, or read connection.close).
        self._closed = True
        self._condition: threading.Condition | None = None
        self._default_channel: SimChannel | None = None
        #: The file descriptor event loops poll (created on first use, closed with us).
        self._ready: _waiting.ReadyPipe | None = None
        #: The timer of the event loop polling us (Celery's ETAs on the broker's clock).
        self._loop_timer: BrokerTimer | None = None
        #: The event loop (kombu's hub) polling us, if one does.
        self._event_loop: weakref.ref[Any] | None = None
        self._finalizer: (
            weakref.finalize[[Broker, CoreConnection, threading.Condition], SimConnection] | None
        ) = None
        self._sock: SimSocket | None = None
        #: How user code cut the socket (SimSocket): "shutdown", "closed", or None.
        self._cut_by: str | None = None
        #: True while close() waits for close-ok (py-amqp's attribute of the same name).
        self.is_closing = False

    def __repr__(self) -> str:
        state = "connected" if self.connected else "closed"
        return f"<simamqp.Connection {self.broker.name}{self.virtual_host} {state}>"

    def __enter__(self) -> SimConnection:
        return self.connect()

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    # -- lifecycle --------------------------------------------------------------------------

    def connect(self, callback: Callable[[], Any] | None = None) -> SimConnection:
        if self._core is not None and not self._closed:
            return self
        # connection.tune-ok: py-amqp negotiates and encodes the heartbeat (a short), so
        # ?heartbeat=-5 fails to connect as it does on RabbitMQ instead of spinning later.
        self.heartbeat = float(_boundary.heartbeat(self._client_heartbeat, SERVER_HEARTBEAT))
        broker = self.broker
        try:
            core = broker.locked(
                lambda: broker.connect(
                    self.virtual_host, user=self.userid, client_properties=self.client_properties
                )
            )
        except AMQPError as err:
            raise _to_amqp_error(err) from None
        with broker.lock:
            self._condition = broker._new_condition()
            condition = self._condition
            core.listener = _notifier(self, condition)
        self._core = core
        self._closed = False
        # A connection object collected without close() is closed by the broker, as
        # RabbitMQ sees the socket close when py-amqp's Connection is collected.
        self._finalizer = weakref.finalize(self, _close_abandoned, broker, core, condition)
        self._finalizer.atexit = False  # at exit there is no one left to observe the close
        self._sock = SimSocket(self)
        self._cut_by = None
        if callback is not None:
            callback()
        return self

    @property
    def connected(self) -> bool:
        # Like py-amqp: a connection the broker closed stays "connected" until the client has
        # read the connection.close (drain_events or a sync call raises it); otherwise kombu
        # would silently reconnect and the client would never see ConnectionForced.
        return self._core is not None and not self._closed

    @property
    def server_capabilities(self) -> dict[str, Any]:
        capabilities: dict[str, Any] = SERVER_PROPERTIES["capabilities"]
        return capabilities

    @property
    def sock(self) -> SimSocket | None:
        return self._sock

    def _cut(self, how: str) -> None:
        """The socket was shut down or closed (SimSocket): the TCP connection is dead."""
        if self._cut_by == "closed" or self._core is None:
            return
        self._cut_by = how
        core = self._core
        condition = self._condition
        with self.broker.lock:
            core.drop()
            if condition is not None:
                condition.notify_all()  # a thread blocked in drain_events reads the cut now
            ready = self._ready
            if ready is not None:
                ready.set()  # a socket shut down is readable: an event loop reads the cut
            timer = self._loop_timer
            if timer is not None:
                _waiting.loop_busy(self.broker, timer)

    def _socket_error(self, *, write: bool) -> OSError:
        """What py-amqp raises using a cut socket; from then on the client knows it is gone."""
        self._closed = True
        ready = self._ready
        if ready is not None:
            with self.broker.lock:
                ready.eof()
        if self._cut_by == "closed":
            return OSError(errno.EBADF, os.strerror(errno.EBADF))
        if write:
            return BrokenPipeError(errno.EPIPE, os.strerror(errno.EPIPE))
        return OSError("Server unexpectedly closed connection")

    @property
    def transport(self) -> SimConnection:
        return self

    def is_alive(self) -> bool:
        return self.connected

    def fileno(self) -> int:
        """A file descriptor that is readable while frames are waiting to be read.

        For event loops (kombu's hub, Celery's worker), which poll it where py-amqp's
        connection gives them its socket; reading is still ``drain_events``.
        """
        if self._core is None or self._closed:
            raise amqp_exc.RecoverableConnectionError("connection already closed")
        with self.broker.lock:
            ready = self._ready
            if ready is None:
                ready = self._ready = _waiting.ReadyPipe()
                if self._core.outbox:
                    ready.set()
            return ready.fileno()

    def channel(self, channel_id: int | None = None, callback: Any = None) -> SimChannel:
        if self._cut_by is not None:
            raise self._socket_error(write=True)
        if not self.connected:
            raise amqp_exc.RecoverableConnectionError("connection already closed")
        if channel_id is not None:
            if channel_id in self.channels:
                return self.channels[channel_id]
            if channel_id == 0:
                # py-amqp keeps the connection itself as channel 0 and returns it.
                return self  # type: ignore[return-value]
            channel_id = _boundary.channel_id(channel_id)
        # channel.open waits for open-ok: what was queued before it is read first.
        with self.broker.lock:
            earlier = self._take_all()
            closed = False
            try:
                channel = SimChannel(self, channel_id)
            except AMQPError as err:
                error: AMQPError | None = err
            except ChannelClosedError:
                # The broker closed the connection before channel.open: py-amqp reads that
                # connection.close while it waits for open-ok (raised by the dispatch below).
                error, closed = None, True
            else:
                error = None
        self._dispatch_frames(earlier)
        if closed:
            raise amqp_exc.RecoverableConnectionError("connection already closed")
        if error is not None:
            self._collect(error)
            raise _to_amqp_error(error) from None
        return channel

    def close(
        self,
        reply_code: int = 0,
        reply_text: str = "",
        method_sig: tuple[int, int] = (0, 0),
        argsig: str = "BsBB",
    ) -> None:
        core = self._core
        if core is None:
            return
        if self._cut_by is not None and not self._closed:
            error = self._socket_error(write=True)
            self._collect(None)
            raise error  # as py-amqp: kombu's close() swallows connection errors
        earlier: deque[F.Frame] | None = None

        def run() -> None:
            nonlocal earlier
            earlier = self._take_all()
            core.close()

        self.is_closing = True
        try:
            if core.is_open:
                self._locked(run)
            # Read up to close-ok: py-amqp discards channel 0's other methods but dispatches the
            # deliveries, returns and confirms the broker sent the other channels before it.
            # What their callbacks send (an ack) reaches a broker that discards it.
            self._dispatch_frames(earlier)
        finally:
            self.is_closing = False
            self._collect(None)

    def collect(self) -> None:
        self._collect(None)

    def _collect(self, reason: AMQPError | None, *, eof: bool = False) -> None:
        """The connection is closed for the client; ``eof``: it read the close (not its own).

        Then its descriptor stays open and readable, as a socket at end of file: an event loop
        polling it wakes and learns the connection is gone even when the close itself was read
        by a call that swallowed the error (Celery's ``_quick_drain`` at loop start). Closing
        the connection object (``close()``, ``collect()``) closes the descriptor.
        """
        self._closed = True
        finalizer = self._finalizer
        if finalizer is not None:
            finalizer.detach()
        for channel in list(self.channels.values()):
            channel.collect()
        self.channels.clear()
        condition = self._condition
        if condition is not None:
            with self.broker.lock:
                self.broker._drop_condition(condition)
                # A thread blocked in drain_events on this connection must see it closed now,
                # as a socket read returns when the socket is closed.
                condition.notify_all()
        with self.broker.lock:
            ready = self._ready
            if ready is not None:
                if eof:
                    ready.eof()
                else:
                    self._ready = None
                    ready.close()  # as py-amqp closes its socket: no descriptor outlives us
        if not eof and self._event_loop is not None:
            from ._celery_timer import release

            release(self)

    def send_heartbeat(self) -> None:
        pass

    def heartbeat_tick(self, rate: int = 2) -> None:
        pass

    # -- frames -----------------------------------------------------------------------------

    def _locked(self, fn: Callable[[], T]) -> T:
        # Broker.locked, inlined: this runs several times per message.
        broker = self.broker
        with broker.lock:
            threads = broker._threads
            ident = _get_ident()
            if ident not in threads:
                threads[ident] = threading.current_thread()
            return fn()

    def _take(self) -> F.Frame | None:
        """Pop the next frame (under the lock)."""
        core = self._core
        if core is None:
            return None
        outbox = core.outbox
        return outbox.popleft() if outbox else None

    def _take_ready(self) -> F.Frame | None:
        """The next frame if one is queued and no timer is pending (else None), under the lock."""
        broker = self.broker
        with broker.lock:
            threads = broker._threads
            ident = _get_ident()
            if ident not in threads:
                threads[ident] = threading.current_thread()
            if broker.scheduler._heap:
                return None
            return self._take()

    def _dispatch(self, frame: F.Frame) -> None:
        if type(frame) is F.BasicDeliver:  # the common case first
            deliver_to = self.channels.get(frame.channel_id)
            if deliver_to is not None:
                deliver_to._on_basic_deliver(frame)
            return
        if isinstance(frame, F.ConnectionClose):
            self._collect(frame.error, eof=True)
            raise _to_amqp_error(frame.error)
        if isinstance(frame, F.ConnectionBlocked | F.ConnectionUnblocked):
            # py-amqp's _on_blocked/_on_unblocked: its callback gets a fixed reason text.
            if isinstance(frame, F.ConnectionBlocked):
                if self.on_blocked is not None:
                    self.on_blocked("connection blocked, see broker logs")
            elif self.on_unblocked is not None:
                self.on_unblocked()
            return
        channel = self.channels.get(frame.channel_id)
        if channel is None:
            return
        if isinstance(frame, F.BasicDeliver):
            channel._on_basic_deliver(frame)
        elif isinstance(frame, F.BasicReturn):
            channel._on_basic_return(frame)
        elif isinstance(frame, F.BasicAck | F.BasicNack):
            channel._on_confirm(frame)
        elif isinstance(frame, F.BasicCancel):
            channel._on_basic_cancel(frame)
        elif isinstance(frame, F.ChannelClose):
            channel._on_close(frame)

    def _take_all(self) -> deque[F.Frame] | None:
        """Everything queued so far, in order (under the lock), or None when nothing is."""
        core = self._core
        if core is None or not core.outbox:
            return None
        frames = core.outbox.copy()
        core.outbox.clear()
        return frames

    def _dispatch_frames(self, frames: deque[F.Frame] | None) -> None:
        """Dispatch taken frames in order; if one raises, the rest go back to the outbox front.

        They stay unread, as frames behind the one that raised stay in py-amqp's socket buffer.
        """
        if not frames:
            return
        try:
            while frames:
                self._dispatch(frames.popleft())
        finally:
            core = self._core
            if frames and core is not None and core.is_open:
                self._locked(lambda: core.outbox.extendleft(reversed(frames)))

    def _dispatch_one(self, *, block: bool) -> bool:
        core = self._core
        if core is None or not core.outbox:
            return False
        broker = self.broker
        with broker.lock:  # self._locked(self._take), inlined: once per pipelined message
            threads = broker._threads
            ident = _get_ident()
            if ident not in threads:
                threads[ident] = threading.current_thread()
            frame = self._take()
        if frame is None:
            return False
        self._dispatch(frame)
        return True

    def _wait_confirm(self, channel: SimChannel, seq: int, timeout: float | None) -> None:
        """Wait for the confirm of ``seq`` (it is queued at once: the engine is synchronous)."""
        while seq not in channel._pending_confirms:
            # py-amqp waits for basic.ack/nack reading every frame in order, deliveries too.
            frame = self._locked(lambda: self._take())
            if frame is None:
                if not self.connected:
                    raise amqp_exc.RecoverableConnectionError("connection already closed")
                if not channel.is_open:
                    return
                # The confirm was consumed by a fault (e.g. a dropped publish never confirms
                # on a real broker either): wait like py-amqp would, bounded by the timeout.
                self.drain_events(timeout=timeout)
                continue
            self._dispatch(frame)
        if not channel._pending_confirms.pop(seq):
            raise amqp_exc.MessageNacked()

    def drain_events(self, timeout: float | None = None) -> None:
        """Dispatch one frame; ``socket.timeout`` when none came within ``timeout`` seconds."""
        core = self._core
        condition = self._condition
        if core is None or condition is None:
            raise amqp_exc.RecoverableConnectionError("connection already closed")
        broker = self.broker
        if core.outbox and not broker.scheduler._heap:
            # Hot path: a frame is ready and no timer is due to fire first; this is the first
            # iteration of the loop below, without the deadline bookkeeping.
            ready = self._take_ready()
            if ready is not None:
                self._dispatch(ready)
                return
        clock = broker.clock
        with broker.lock:
            ident = _get_ident()
            if ident not in broker._threads:
                broker._threads[ident] = threading.current_thread()
            deadline = None if timeout is None else clock.now() + timeout
            real_deadline = None if timeout is None else time.monotonic() + timeout
            beat = time.monotonic() + self.heartbeat / 2 if self.heartbeat else None
            try:
                while True:
                    broker._tick()
                    frame = self._take()
                    if frame is not None:
                        break
                    if not core.is_open:
                        if self._cut_by is not None:
                            raise self._socket_error(write=False)
                        raise amqp_exc.RecoverableConnectionError("connection already closed")
                    pipe = self._ready
                    if pipe is not None:
                        pipe.clear()  # nothing to read: an event loop must not see it readable
                    outcome = _waiting.wait(broker, condition, deadline, real_deadline, beat)
                    if outcome == _waiting.WaitOutcome.TIMEOUT:
                        raise TimeoutError("timed out")
                    if outcome == _waiting.WaitOutcome.HEARTBEAT:
                        return  # a heartbeat frame was read: nothing to dispatch
            finally:
                _waiting.leave(broker)
        self._dispatch(frame)


class Transport(kombu_pyamqp.Transport):
    """kombu transport for ``simamqp://[NAME][/VHOST]``."""

    Connection = SimConnection  # type: ignore[assignment]
    driver_name = "simamqp"
    driver_type = "amqp"
    default_port = 5672
    implements = base.Transport.implements.extend(
        # A pollable descriptor (SimConnection.fileno): Celery's worker runs its event-loop
        # consumer (asynloop), the code path it runs with py-amqp on RabbitMQ.
        asynchronous=True,
        exchange_type=frozenset(["direct", "topic", "fanout", "headers"]),
        heartbeats=False,
    )

    def driver_version(self) -> str:
        return __version__

    def establish_connection(self) -> SimConnection:
        conninfo = self.client
        assert conninfo is not None, "the transport is bound to a kombu Connection"
        for name, default_value in self.default_connection_params.items():
            if not getattr(conninfo, name, None):
                setattr(conninfo, name, default_value)
        options = dict(conninfo.transport_options or {})
        conn = SimConnection(
            host=conninfo.hostname or "localhost",
            userid=conninfo.userid or "guest",
            password=conninfo.password or "guest",
            virtual_host=conninfo.virtual_host or "/",
            confirm_publish=bool(options.pop("confirm_publish", False)),
            heartbeat=conninfo.heartbeat,
            **options,
        )
        conn.client = self.client
        conn.connect()
        return conn

    def register_with_event_loop(self, connection: SimConnection, loop: Any) -> None:
        """Poll the connection's descriptor in ``loop`` (kombu's hub), as py-amqp's socket.

        The loop is also woken every ``EVENT_LOOP_TICK`` seconds: a wall clock's timers (TTL,
        x-expires, delayed faults) fire when due with nobody blocked in ``drain_events``, and a
        worker loop notices a stop request (Celery's in-thread test worker only checks its
        state between polls) within that time instead of at its next timer. On a virtual clock
        the loop's timer then counts Celery's ETAs on the broker's clock (``_celery_timer``).
        """
        from ._celery_timer import adopt

        loop.add_reader(connection.fileno(), self.on_readable, connection, loop)
        loop.call_repeatedly(EVENT_LOOP_TICK, self._on_loop_tick, connection)
        adopt(loop, connection)

    def _on_loop_tick(self, connection: SimConnection) -> None:
        if connection.connected:
            connection.broker.locked(connection.broker._tick)

    def heartbeat_check(self, connection: SimConnection, rate: int = 2) -> None:
        pass

    def get_heartbeat_interval(self, connection: SimConnection) -> float:
        return connection.heartbeat


#: py-amqp's names, for code that imports them from the transport module.
Channel = SimChannel
Connection = SimConnection
