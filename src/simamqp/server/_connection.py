"""One client socket: AMQP 0-9-1 frames in, core method calls, frames out.

The adapter moves bytes and events; the core decides. What lives here is only what RabbitMQ's
reader process (``rabbit_reader``) does before a method reaches a channel: the protocol header,
the connection handshake (``connection.start/tune/open``), frame and channel bookkeeping, content
reassembly, heartbeats and the close handshakes. Every broker behaviour (routing, queues,
acknowledgements, errors of methods) is a call into ``simamqp.core``.

Runs on the server's event loop thread. Engine calls happen under the broker lock; the engine
calls ``Connection.listener`` (under that lock, from any thread) when it queues a frame for this
client, and the listener schedules a flush on the loop.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import socket
import struct
import threading
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from amqp.serialization import loads

from .._wire import close_args, reply_text
from ..core import frames as F
from ..core.channel import Channel as CoreChannel
from ..core.channel import ChannelClosedError
from ..core.connection import Connection as CoreConnection
from ..core.errors import AMQPError, PreconditionFailed, error_for_code
from . import _codec as C

if TYPE_CHECKING:
    from ._server import Server

__all__ = ["ServerConnection"]

_log = logging.getLogger("simamqp.server")

PROTOCOL_HEADER = b"AMQP\x00\x00\x09\x01"
#: RabbitMQ also accepts the header of AMQP 0-9 as written by some old clients.
_ACCEPTED_HEADERS = {PROTOCOL_HEADER, b"AMQP\x01\x01\x00\x09"}
#: What RabbitMQ 3.10 offers in connection.tune.
SERVER_CHANNEL_MAX = 2047
SERVER_FRAME_MAX = 131072
FRAME_MIN_SIZE = 4096
#: Frames handled per event-loop turn before other connections get the loop.
FRAMES_PER_TURN = 300
#: Unhandled input above which the server stops reading a socket (RabbitMQ's credit flow
#: blocks a publisher that outruns the broker the same way).
MAX_BACKLOG = 8 * 1024 * 1024
#: How long a server-initiated close waits for close-ok before dropping the socket.
CLOSE_OK_TIMEOUT = 10.0
#: rabbit's handshake_timeout: a socket that has not opened a connection (protocol header
#: through connection.open) this long after it connected is closed.
HANDSHAKE_TIMEOUT = 10.0
#: Deliveries (frames, or octets of bodies) queued for a client and not yet handed to its
#: socket above which the server stops giving the connection's consumers messages, until
#: the socket drains (RabbitMQ's credit flow between queue, channel and writer).
OUTBOX_FRAMES_MAX = 128
OUTBOX_OCTETS_MAX = 256 * 1024
#: RabbitMQ 3.10's default max_message_size: a bigger body is refused (406) once received,
#: and the server does not keep it meanwhile.
MAX_MESSAGE_SIZE = 128 * 1024 * 1024
#: The transport's write buffer high-water mark (asyncio calls pause_writing above it).
WRITE_HIGH_WATER = 64 * 1024

_HANDSHAKE, _START, _TUNE, _OPEN, _RUNNING, _CLOSING, _CLOSED = range(7)


@dataclass(slots=True)
class _ChannelState:
    core: CoreChannel
    #: The server sent channel.close and waits for close-ok: other methods are discarded.
    closing: bool = False
    #: basic.publish arguments while its content header/body frames are arriving.
    publish: list[Any] | None = None
    properties: dict[str, Any] = field(default_factory=dict)
    body_size: int = 0
    body: list[bytes] = field(default_factory=list)
    received: int = 0
    expect_body: bool = False


class ServerConnection(asyncio.Protocol):
    def __init__(self, server: Server) -> None:
        self.server = server
        self.broker = server.broker
        self.loop = server.loop
        self.transport: asyncio.Transport | None = None
        self.state = _HANDSHAKE
        self._header = b""
        self.reader = C.FrameReader(SERVER_FRAME_MAX)
        self.core: CoreConnection | None = None
        self.channels: dict[int, _ChannelState] = {}
        self.channel_max = SERVER_CHANNEL_MAX
        self.frame_max = SERVER_FRAME_MAX
        self.heartbeat = 0
        self.client_properties: dict[str, Any] = {}
        self.user = ""
        self._flush_scheduled = False
        self._received = False
        self._sent = False
        self._missed = 0
        #: One handle per timer kind ("handshake", "beat", "peer", "close"), replaced when
        #: rescheduled: a long-lived connection holds a fixed number of handles.
        self._timers: dict[str, asyncio.TimerHandle] = {}
        #: The socket's write buffer is above its high-water mark (the client is not reading).
        self._write_paused = False
        #: Consumers on this connection are given no messages (flow_active off on its channels).
        self._deliveries_paused = False
        self._outbox_octets = 0
        #: A resource alarm blocked this (publishing) connection: its socket is not read.
        self._alarm_blocked = False
        self._reading_paused = False
        self._process_scheduled = False
        self._paused = False
        self._loop_thread = threading.get_ident()

    # -- asyncio.Protocol -------------------------------------------------------------------

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        assert isinstance(transport, asyncio.Transport)
        self.transport = transport
        transport.set_write_buffer_limits(high=WRITE_HIGH_WATER)
        self.server._connections.add(self)
        self._schedule("handshake", self.server.handshake_timeout, self._handshake_expired)

    def _schedule(self, kind: str, delay: float, callback: Callable[[], None]) -> None:
        old = self._timers.pop(kind, None)
        if old is not None:
            old.cancel()
        self._timers[kind] = self.loop.call_later(delay, callback)

    def _handshake_expired(self) -> None:
        """rabbit_reader's handshake_timeout: the socket is closed without a word."""
        if self.state in (_RUNNING, _CLOSED):
            return
        self._abort()

    # -- backpressure towards a client that does not read ---------------------------------

    def pause_writing(self) -> None:
        """asyncio: the socket's write buffer passed its high-water mark."""
        self._write_paused = True
        self._update_reading()  # a client that does not read gets no more service
        with self.broker.lock:
            self._pause_deliveries()

    def resume_writing(self) -> None:
        """asyncio: the write buffer drained below its low-water mark."""
        self._write_paused = False
        self._update_reading()
        with self.broker.lock:
            self._on_outbox()  # the flush it schedules resumes deliveries

    def _update_reading(self) -> None:
        """Read the socket unless the backlog, a client that does not read, or a resource
        alarm that blocked this connection says stop."""
        transport = self.transport
        stop = self._paused or self._write_paused or self._alarm_blocked
        if transport is None or stop == self._reading_paused or self.state == _CLOSED:
            return
        self._reading_paused = stop
        if stop:
            transport.pause_reading()
        else:
            transport.resume_reading()

    def _pause_deliveries(self) -> None:
        """Under the broker lock: this connection's consumers take no more messages."""
        if self._deliveries_paused:
            return
        self._deliveries_paused = True
        core = self.core
        if core is not None:
            for channel in core.channels.values():
                channel.flow_active = False

    def _resume_deliveries(self) -> None:
        """Under the broker lock: consumers take messages again; queues deliver what waits."""
        if not self._deliveries_paused or self._write_paused or self.state == _CLOSED:
            return
        self._deliveries_paused = False
        core = self.core
        if core is None or not core.is_open:
            return
        channels = list(core.channels.values())
        for channel in channels:
            channel.flow_active = True
        for channel in channels:
            if self._deliveries_paused:
                break
            with contextlib.suppress(ChannelClosedError):
                channel._dispatch_all()

    def connection_lost(self, exc: Exception | None) -> None:
        self.state = _CLOSED
        self.server._connections.discard(self)
        for timer in self._timers.values():
            timer.cancel()
        self._timers.clear()
        core = self.core
        if core is not None and core.is_open:
            # The client went away without connection.close: the broker cleans up as for a
            # close (channels closed, unacked requeued, exclusive queues deleted).
            with self.broker.lock:
                core.listener = None
                core.close()
                self.broker._wake_all()
        self.server._after_activity()

    def data_received(self, data: bytes) -> None:
        self._received = True
        if self.state == _CLOSED:
            return
        if self.state == _HANDSHAKE:
            data = self._protocol_header(data)
            if not data:
                return
        if self._process_scheduled:
            self.reader.append(data)  # the scheduled turn handles it, in order
            return
        self._process(data)

    def _process(self, data: bytes = b"") -> None:
        """Handle up to FRAMES_PER_TURN frames, then let other connections have the loop.

        One loop turn per slice keeps every socket read often: a client whose socket the
        server left unread for long would time out (py-amqp sets TCP_USER_TIMEOUT to 1 s).
        """
        self._process_scheduled = False
        try:
            frames = self.reader.feed(data, FRAMES_PER_TURN)
        except C.MalformedFrame as err:
            # Closing already: malformed input is discarded until close-ok. Otherwise close;
            # then the frames after the bad one are read as closing input (a client's
            # connection.close crossing ours is answered with close-ok).
            if self.state != _CLOSING:
                self._frame_error(err)
            if self.state == _CLOSING and self.reader.buffered:
                self._process_scheduled = True
                self.loop.call_soon(self._process)
            return
        for frame in frames:
            if self.state == _CLOSED:
                return
            try:
                self._frame(frame)
            except C.MalformedFrame as err:
                if self.state != _CLOSING:
                    self._frame_error(err)
                continue
            except Exception as exc:
                # A bug here must cost one connection, never the server: close it as
                # RabbitMQ does when a channel process crashes (541 INTERNAL_ERROR). One
                # line a frame at most (the traceback at DEBUG): no client can flood the log.
                _log.error("simamqp server: error handling a frame: %r", exc)
                _log.debug("simamqp server: traceback", exc_info=True)
                self._connection_error(error_for_code(541)("INTERNAL_ERROR"))
                return
        transport = self.transport
        more = len(frames) == FRAMES_PER_TURN or self.reader.error_pending
        if more and self.state != _CLOSED:
            self._process_scheduled = True
            self.loop.call_soon(self._process)
            if transport is not None and self.reader.buffered > MAX_BACKLOG and not self._paused:
                self._paused = True
                self._update_reading()
        elif self._paused and transport is not None:
            self._paused = False
            self._update_reading()
        self.server._after_activity()

    # -- writing ----------------------------------------------------------------------------

    def _write(self, data: bytes) -> None:
        transport = self.transport
        if transport is not None and not transport.is_closing():
            transport.write(data)
            self._sent = True

    def _send_method(
        self, channel: int, sig: tuple[int, int], fmt: str = "", args: Any = ()
    ) -> None:
        self._write(C.method_frame(channel, sig, fmt, args))

    def _on_outbox(self) -> None:
        """The engine queued a frame for this client (called under the broker lock)."""
        core = self.core
        if core is not None and not self._deliveries_paused:
            outbox = core.outbox
            if outbox:
                last = outbox[-1]
                if type(last) is F.BasicDeliver:
                    self._outbox_octets += len(last.message.body)
            if len(outbox) >= OUTBOX_FRAMES_MAX or self._outbox_octets >= OUTBOX_OCTETS_MAX:
                self._pause_deliveries()
        if self._flush_scheduled:
            return
        self._flush_scheduled = True
        if threading.get_ident() == self._loop_thread:
            self.loop.call_soon(self.flush)
        else:
            self.loop.call_soon_threadsafe(self.flush)

    def _take_outbox(self) -> list[F.Frame]:
        core = self.core
        self._outbox_octets = 0
        if core is None or not core.outbox:
            return []
        frames = list(core.outbox)
        core.outbox.clear()
        return frames

    def flush(self) -> None:
        with self.broker.lock:
            self._flush_scheduled = False
            frames = self._take_outbox()
        self._write_frames(frames)
        if self._deliveries_paused and not self._write_paused:
            with self.broker.lock:
                self._resume_deliveries()
        self.server._after_activity()

    def _write_frames(self, frames: list[F.Frame]) -> None:
        if not frames or self.state == _CLOSED:
            return
        out: list[bytes] = []
        frame_max = self.frame_max
        for frame in frames:
            if type(frame) is F.BasicDeliver:
                message = frame.message
                out.append(
                    C.content_frames(
                        frame.channel_id,
                        (60, 60),
                        "sLbss",
                        (
                            frame.consumer_tag,
                            frame.delivery_tag,
                            frame.redelivered,
                            frame.exchange,
                            frame.routing_key,
                        ),
                        message.body,
                        message.properties,
                        frame_max,
                    )
                )
            elif isinstance(frame, F.BasicAck):
                out.append(
                    C.method_frame(
                        frame.channel_id, (60, 80), "Lb", (frame.delivery_tag, frame.multiple)
                    )
                )
            elif isinstance(frame, F.BasicNack):
                out.append(
                    C.method_frame(
                        frame.channel_id,
                        (60, 120),
                        "Lbb",
                        (frame.delivery_tag, frame.multiple, False),
                    )
                )
            elif isinstance(frame, F.BasicReturn):
                message = frame.message
                out.append(
                    C.content_frames(
                        frame.channel_id,
                        (60, 50),
                        "Bsss",
                        (
                            frame.reply_code,
                            reply_text(frame.reply_text),
                            frame.exchange,
                            frame.routing_key,
                        ),
                        message.body,
                        message.properties,
                        frame_max,
                    )
                )
            elif isinstance(frame, F.BasicCancel):
                # rabbit_channel sends the server-side cancel with nowait=true.
                out.append(
                    C.method_frame(frame.channel_id, (60, 30), "sb", (frame.consumer_tag, True))
                )
            elif isinstance(frame, F.ChannelClose):
                state = self.channels.get(frame.channel_id)
                if state is not None:
                    state.closing = True
                out.append(
                    C.method_frame(frame.channel_id, (20, 40), "BsBB", close_args(frame.error))
                )
            elif isinstance(frame, F.ConnectionBlocked | F.ConnectionUnblocked):
                blocked = isinstance(frame, F.ConnectionBlocked)
                capabilities = self.client_properties.get("capabilities") or {}
                if capabilities.get("connection.blocked"):
                    if isinstance(frame, F.ConnectionBlocked):
                        out.append(C.method_frame(0, (10, 60), "s", (frame.reason,)))
                    else:
                        out.append(C.method_frame(0, (10, 61)))
                self._alarm_blocked = blocked
                self._update_reading()
            elif isinstance(frame, F.ConnectionClose):
                if out:
                    self._write(b"".join(out))
                    out = []
                self._start_close(frame.error)
        if out:
            self._write(b"".join(out))

    # -- handshake --------------------------------------------------------------------------

    def _protocol_header(self, data: bytes) -> bytes:
        needed = 8 - len(self._header)
        self._header += data[:needed]
        rest = data[needed:]
        if len(self._header) < 8:
            return b""
        if self._header not in _ACCEPTED_HEADERS:
            # AMQP 0-9-1 section 4.2.2: answer with the supported header and close.
            self._write(PROTOCOL_HEADER)
            self._abort()
            return b""
        self.state = _START
        self._send_method(
            0,
            (10, 10),
            "ooFSS",
            (0, 9, self.server.server_properties, "PLAIN AMQPLAIN", "en_US"),
        )
        return rest

    def _frame(self, frame: C.RawFrame) -> None:
        state = self.state
        if frame.type == C.FRAME_HEARTBEAT:
            if frame.channel != 0:
                raise C.MalformedFrame(505, "UNEXPECTED_FRAME - type 8, all octets = <<>>")
            return
        if state == _RUNNING:
            self._running_frame(frame)
            return
        if state == _CLOSING:
            self._closing_frame(frame)
            return
        if frame.type != C.FRAME_METHOD or frame.channel != 0:
            raise C.MalformedFrame(
                505, "UNEXPECTED_FRAME - expected method frame, got non method frame instead"
            )
        sig, args = C.decode_method(frame.payload)
        if state == _START and sig == (10, 11):
            self._start_ok(*args)
        elif state == _TUNE and sig == (10, 31):
            self._tune_ok(*args)
        elif state == _OPEN and sig == (10, 40):
            self._open(args[0])
        elif sig == (10, 50):
            self._send_method(0, (10, 51))
            self._close_transport()
        else:
            self._handshake_error(None)

    def _start_ok(
        self, client_properties: dict[str, Any], mechanism: str, response: bytes, locale: str
    ) -> None:
        self.client_properties = client_properties
        credentials = _credentials(mechanism, response)
        if credentials is None:
            self._handshake_error(None)  # unknown mechanism: RabbitMQ drops the socket
            return
        user, password = credentials
        if not self.server.authenticate(user, password):
            capabilities = client_properties.get("capabilities") or {}
            error = None
            if capabilities.get("authentication_failure_close"):
                error = error_for_code(403)(
                    f"Login was refused using authentication mechanism {mechanism}. "
                    "For details see the broker logfile."
                )
            self._handshake_error(error)
            return
        self.user = user
        self.state = _TUNE
        self._send_method(
            0, (10, 30), "BlB", (SERVER_CHANNEL_MAX, SERVER_FRAME_MAX, self.server.heartbeat)
        )

    def _tune_ok(self, channel_max: int, frame_max: int, heartbeat: int) -> None:
        # rabbit_reader: a client may lower the limits, not raise them (0 means "no limit").
        if not 0 < channel_max <= SERVER_CHANNEL_MAX or not (
            FRAME_MIN_SIZE <= frame_max <= SERVER_FRAME_MAX
        ):
            self._handshake_error(None)
            return
        self.channel_max = channel_max
        self.frame_max = frame_max
        self.reader.frame_max = frame_max
        self.heartbeat = heartbeat
        self.state = _OPEN
        if heartbeat:
            self._received = True
            self._schedule("beat", heartbeat / 2, self._beat)
            self._schedule("peer", heartbeat, self._check_peer)

    def _open(self, vhost: str) -> None:
        broker = self.broker
        try:
            with broker.lock:
                core = broker.connect(
                    vhost, user=self.user, client_properties=self.client_properties
                )
                core.listener = self._on_outbox
                self.core = core
                # A fault rule at the connection point may already have closed it.
                pending = self._take_outbox()
        except AMQPError as err:
            self.state = _RUNNING
            self._start_close(err)
            return
        self.state = _RUNNING
        handshake = self._timers.pop("handshake", None)
        if handshake is not None:
            handshake.cancel()
        self._send_method(0, (10, 41), "s", ("",))
        self._sent = False  # rabbit_heartbeat starts counting after the handshake
        self._write_frames(pending)

    def _handshake_error(self, error: AMQPError | None) -> None:
        """RabbitMQ waits before closing a connection that failed its handshake."""
        self.state = _CLOSING

        def close() -> None:
            if error is not None:
                # The client reads the close before the socket goes (a reset could discard it).
                self._send_method(0, (10, 50), "BsBB", close_args(error))
                self._close_transport()
            else:
                self._abort()

        self._schedule("close", self.server.handshake_error_delay, close)

    # -- heartbeats -------------------------------------------------------------------------

    def _beat(self) -> None:
        if self.state == _CLOSED:
            return
        if not self._sent:
            self._write(C.heartbeat_frame())
        self._sent = False
        self._schedule("beat", self.heartbeat / 2, self._beat)

    def _check_peer(self) -> None:
        """rabbit_heartbeat: two intervals without a byte from the client close the socket."""
        if self.state == _CLOSED:
            return
        if self._received or self._write_paused or self._alarm_blocked:
            # rabbit_heartbeat pauses its monitor while the reader is blocked: a client the
            # server stopped reading (it does not read either) is not "silent".
            self._missed = 0
        else:
            self._missed += 1
            if self._missed >= 2:
                self._abort()
                return
        self._received = False
        self._schedule("peer", self.heartbeat, self._check_peer)

    # -- closing ----------------------------------------------------------------------------

    def _close_transport(self) -> None:
        self.state = _CLOSED
        transport = self.transport
        if transport is not None:
            transport.close()

    def _abort(self) -> None:
        """Drop the socket with a TCP reset, as RabbitMQ does when its reader gives up."""
        self.state = _CLOSED
        transport = self.transport
        if transport is None:
            return
        sock = transport.get_extra_info("socket")
        if sock is not None:
            with contextlib.suppress(OSError):
                sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
        transport.close()

    def _start_close(self, error: AMQPError) -> None:
        """Send connection.close and wait (bounded) for close-ok."""
        if self.state in (_CLOSING, _CLOSED):
            return
        self.state = _CLOSING
        self._send_method(0, (10, 50), "BsBB", close_args(error))
        self._schedule("close", self.server.close_ok_timeout, self._close_transport)

    def _connection_error(self, error: AMQPError) -> None:
        """A hard error found here (not by the engine): tear the engine side down too."""
        core = self.core
        if core is not None and core.is_open:
            with self.broker.lock:
                core.listener = None
                self.broker._emit(
                    "error",
                    connection=core.id,
                    channel=0,
                    code=error.reply_code,
                    text=error.reply_text,
                    method=list(error.method),
                    scope="connection",
                )
                core._teardown(error, notify=False)
                pending = self._take_outbox()
                self.broker._wake_all()
            self._write_frames([f for f in pending if not isinstance(f, F.ConnectionClose)])
        self._start_close(error)

    def _frame_error(self, err: C.MalformedFrame) -> None:
        if err.abort:
            core = self.core
            if core is not None and core.is_open:
                with self.broker.lock:
                    core.listener = None
                    core.close()
            self._abort()
            return
        if self.state != _RUNNING:
            self._close_transport()
            return
        self._connection_error(error_for_code(err.reply_code)(err.reply_text, err.method))

    def _closing_frame(self, frame: C.RawFrame) -> None:
        """After connection.close only close/close-ok on channel 0 count (spec 2.2.4)."""
        if frame.type != C.FRAME_METHOD or frame.channel != 0:
            return
        try:
            sig, _ = C.decode_method(frame.payload)
        except C.MalformedFrame:
            return
        if sig == (10, 51):
            self._close_transport()
        elif sig == (10, 50):
            self._send_method(0, (10, 51))
            self._close_transport()

    # -- running: frames --------------------------------------------------------------------

    def _running_frame(self, frame: C.RawFrame) -> None:
        channel_id = frame.channel
        if channel_id == 0:
            if frame.type != C.FRAME_METHOD:
                raise C.MalformedFrame(505, C.unexpected_frame_text(frame.type, frame.payload))
            sig, args = C.decode_method(frame.payload)
            self._connection_method(sig, args)
            return
        state = self.channels.get(channel_id)
        if state is not None and state.publish is not None:
            self._content_frame(channel_id, state, frame)
            return
        if frame.type != C.FRAME_METHOD:
            if state is not None and state.closing:
                return
            raise C.MalformedFrame(
                505, "UNEXPECTED_FRAME - expected method frame, got non method frame instead"
            )
        sig, args = C.decode_method(frame.payload)
        if state is None:
            if sig == (20, 10):
                self._channel_open(channel_id)
            else:
                self._connection_error(error_for_code(504)("expected 'channel.open'", sig))
            return
        if state.closing:
            if sig == (20, 41):
                del self.channels[channel_id]
            elif sig == (20, 40):
                self._send_method(channel_id, (20, 41))
            return
        if sig == (20, 10):
            self._channel_open(channel_id)  # the engine answers 504 "second 'channel.open'"
            return
        if sig == (60, 40):
            state.publish = args
            state.expect_body = False
            return
        self._channel_method(channel_id, state, sig, args)

    def _content_frame(self, channel_id: int, state: _ChannelState, frame: C.RawFrame) -> None:
        if not state.expect_body:
            if frame.type != C.FRAME_HEADER:
                raise C.MalformedFrame(
                    505,
                    "UNEXPECTED_FRAME - expected content header for class 60, "
                    "got non content header frame instead",
                    (60, 40),
                )
            class_id, body_size, properties = C.decode_content_header(frame.payload)
            if class_id != 60:
                raise C.MalformedFrame(
                    505,
                    "UNEXPECTED_FRAME - expected content header for class 60, "
                    f"got one for class {class_id} instead",
                    (60, 40),
                )
            state.properties = properties
            state.body_size = body_size
            state.body = []
            state.received = 0
            state.expect_body = True
        else:
            if frame.type != C.FRAME_BODY:
                raise C.MalformedFrame(
                    505,
                    "UNEXPECTED_FRAME - expected content body, got non content body frame instead",
                    (60, 40),
                )
            state.received += len(frame.payload)
            if state.received > state.body_size:
                # rabbit_command_assembler has no such check: the remaining size goes
                # negative and the publish never completes (the channel takes body frames
                # until a method frame gets 505; measured). Nothing is kept meanwhile.
                state.body = []
                return
            if state.body_size <= MAX_MESSAGE_SIZE:
                state.body.append(frame.payload)
        if state.received < state.body_size:
            return
        args = state.publish
        assert args is not None
        state.publish = None
        state.expect_body = False
        body = b"".join(state.body) if len(state.body) != 1 else state.body[0]
        state.body = []
        _ticket, exchange, routing_key, mandatory, immediate = args
        properties = state.properties
        core = state.core
        broker = self.broker
        if state.body_size > MAX_MESSAGE_SIZE:
            # rabbit_channel:check_msg_size, once the whole body arrived (measured); the
            # server never kept it.
            text = (
                f"message size {state.body_size} is larger than configured max size "
                f"{MAX_MESSAGE_SIZE}"
            )

            def refuse() -> None:
                raise PreconditionFailed(text)

            with broker.lock, contextlib.suppress(ChannelClosedError):
                core._async((60, 40), refuse)
            return
        # A ChannelClosedError means the broker closed the channel: its close is in the outbox.
        with broker.lock, contextlib.suppress(ChannelClosedError):
            core.basic_publish(body, exchange, routing_key, mandatory, immediate, properties)

    def _connection_method(self, sig: tuple[int, int], args: list[Any]) -> None:
        if sig == (10, 50):
            core = self.core
            pending: list[F.Frame] = []
            if core is not None:
                with self.broker.lock:
                    pending = self._take_outbox()  # sent before close-ok, as RabbitMQ does
                    core.listener = None
                    core.close()
                    self.broker._wake_all()
            self._write_frames(pending)
            self._send_method(0, (10, 51))
            self._close_transport()
        elif sig == (10, 51):
            self._close_transport()
        elif sig in ((10, 60), (10, 61)):
            pass
        else:
            self._connection_error(
                error_for_code(504)("unexpected method in connection state running", sig)
            )

    def _channel_open(self, channel_id: int) -> None:
        open_count = len(self.channels)
        if open_count >= self.channel_max and channel_id not in self.channels:
            self._connection_error(
                error_for_code(530)(
                    f"number of channels opened ({open_count}) has reached the "
                    f"negotiated channel_max ({self.channel_max})"
                )
            )
            return
        core = self.core
        assert core is not None
        broker = self.broker
        try:
            with broker.lock:
                channel = core.channel(channel_id)
        except AMQPError as err:
            self._after_error(channel_id, err)
            return
        except ValueError:
            self._connection_error(
                error_for_code(530)(
                    f"channel {channel_id} is above the highest channel id simamqp supports "
                    f"({SERVER_CHANNEL_MAX})",
                    (20, 10),
                )
            )
            return
        if self._deliveries_paused:
            channel.flow_active = False
        self.channels[channel_id] = _ChannelState(channel)
        self._send_method(channel_id, (20, 11), "S", ("",))

    def _after_error(self, channel_id: int, err: AMQPError) -> None:
        """The engine raised ``err`` for a synchronous method (it closed what it closes)."""
        with self.broker.lock:
            pending = self._take_outbox()
        self._write_frames(pending)
        if err.soft:
            state = self.channels.get(channel_id)
            if state is not None:
                state.closing = True
            self._send_method(channel_id, (20, 40), "BsBB", close_args(err))
        else:
            core = self.core
            if core is not None:
                core.listener = None
            self._start_close(err)

    def _channel_method(
        self, channel_id: int, state: _ChannelState, sig: tuple[int, int], args: list[Any]
    ) -> None:
        handler = _HANDLERS.get(sig)
        if handler is None:
            self._connection_error(
                error_for_code(540)(f"{_NAMES.get(sig, sig)} is not supported by simamqp", sig)
            )
            return
        core = state.core
        broker = self.broker
        before: list[F.Frame] = []
        try:
            with broker.lock:
                before = self._take_outbox()
                reply = handler(core, args)
                after = self._take_outbox()
        except AMQPError as err:
            self._write_frames(before)
            self._after_error(channel_id, err)
            return
        except ChannelClosedError:
            # The broker closed the channel (an earlier asynchronous method failed) before
            # this method: its channel.close is among the frames taken above.
            self._write_frames(before)
            if sig == (20, 40):  # both sides closed at once: each answers close-ok
                self.channels.pop(channel_id, None)
                self._send_method(channel_id, (20, 41))
            return
        if before:
            self._write_frames(before)
        if sig == (20, 40):
            del self.channels[channel_id]
        if sig == (90, 20) and after:
            # tx.commit: the committed publishes' returns come before commit-ok (RabbitMQ
            # sends commit-ok once the queues have the messages).
            self._write_frames(after)
            after = []
        if reply is not None:
            self._write(reply(channel_id, self.frame_max))
        if after:
            self._write_frames(after)


def _credentials(mechanism: str, response: bytes | str) -> tuple[str, str] | None:
    """(user, password) from a start-ok response, or None for an unknown mechanism."""
    if isinstance(response, str):  # py-amqp decodes a longstr as text when it can
        response = response.encode("utf-8", "surrogateescape")
    if mechanism == "PLAIN":
        parts = response.split(b"\x00")
        if len(parts) != 3:
            return ("", "")
        return parts[1].decode("utf-8", "replace"), parts[2].decode("utf-8", "replace")
    if mechanism == "AMQPLAIN":
        try:
            table, _ = loads("F", struct.pack(">I", len(response)) + response, 0)
        except Exception:
            return ("", "")
        return str(table[0].get("LOGIN", "")), str(table[0].get("PASSWORD", ""))
    return None


Reply = Callable[[int, int], bytes] | None


def _ok(sig: tuple[int, int], fmt: str = "", args: tuple[Any, ...] = ()) -> Reply:
    return lambda channel, _frame_max: C.method_frame(channel, sig, fmt, args)


def _unless_nowait(
    nowait: bool, sig: tuple[int, int], fmt: str = "", args: tuple[Any, ...] = ()
) -> Reply:
    return None if nowait else _ok(sig, fmt, args)


def _exchange_declare(ch: CoreChannel, a: list[Any]) -> Reply:
    _t, name, type_, passive, durable, auto_delete, internal, nowait, arguments = a
    ch.exchange_declare(name, type_, passive, durable, auto_delete, internal, arguments)
    return _unless_nowait(nowait, (40, 11))


def _exchange_delete(ch: CoreChannel, a: list[Any]) -> Reply:
    _t, name, if_unused, nowait = a
    ch.exchange_delete(name, if_unused)
    return _unless_nowait(nowait, (40, 21))


def _exchange_bind(ch: CoreChannel, a: list[Any]) -> Reply:
    _t, destination, source, routing_key, nowait, arguments = a
    ch.exchange_bind(destination, source, routing_key, arguments)
    return _unless_nowait(nowait, (40, 31))


def _exchange_unbind(ch: CoreChannel, a: list[Any]) -> Reply:
    _t, destination, source, routing_key, nowait, arguments = a
    ch.exchange_unbind(destination, source, routing_key, arguments)
    return _unless_nowait(nowait, (40, 51))


def _queue_declare(ch: CoreChannel, a: list[Any]) -> Reply:
    _t, name, passive, durable, exclusive, auto_delete, nowait, arguments = a
    result = ch.queue_declare(name, passive, durable, exclusive, auto_delete, arguments)
    return _unless_nowait(nowait, (50, 11), "sll", result)


def _queue_bind(ch: CoreChannel, a: list[Any]) -> Reply:
    _t, queue, exchange, routing_key, nowait, arguments = a
    ch.queue_bind(queue, exchange, routing_key, arguments)
    return _unless_nowait(nowait, (50, 21))


def _queue_purge(ch: CoreChannel, a: list[Any]) -> Reply:
    _t, queue, nowait = a
    count = ch.queue_purge(queue)
    return _unless_nowait(nowait, (50, 31), "l", (count,))


def _queue_delete(ch: CoreChannel, a: list[Any]) -> Reply:
    _t, queue, if_unused, if_empty, nowait = a
    count = ch.queue_delete(queue, if_unused, if_empty)
    return _unless_nowait(nowait, (50, 41), "l", (count,))


def _queue_unbind(ch: CoreChannel, a: list[Any]) -> Reply:
    _t, queue, exchange, routing_key, arguments = a
    ch.queue_unbind(queue, exchange, routing_key, arguments)
    return _ok((50, 51))


def _basic_qos(ch: CoreChannel, a: list[Any]) -> Reply:
    prefetch_size, prefetch_count, a_global = a
    ch.basic_qos(prefetch_size, prefetch_count, a_global)
    return _ok((60, 11))


def _basic_consume(ch: CoreChannel, a: list[Any]) -> Reply:
    _t, queue, tag, no_local, no_ack, exclusive, nowait, arguments = a
    tag = ch.basic_consume(queue, tag, no_local, no_ack, exclusive, arguments)
    return _unless_nowait(nowait, (60, 21), "s", (tag,))


def _basic_cancel(ch: CoreChannel, a: list[Any]) -> Reply:
    tag, nowait = a
    ch.basic_cancel(tag)
    return _unless_nowait(nowait, (60, 31), "s", (tag,))


def _basic_get(ch: CoreChannel, a: list[Any]) -> Reply:
    _t, queue, no_ack = a
    ok = ch.basic_get(queue, no_ack)
    if ok is None:
        return _ok((60, 72), "s", ("",))
    message = ok.message
    args = (ok.delivery_tag, ok.redelivered, ok.exchange, ok.routing_key, ok.message_count)
    return lambda channel, frame_max: C.content_frames(
        channel, (60, 71), "Lbssl", args, message.body, message.properties, frame_max
    )


def _basic_ack(ch: CoreChannel, a: list[Any]) -> Reply:
    ch.basic_ack(a[0], a[1])
    return None


def _basic_reject(ch: CoreChannel, a: list[Any]) -> Reply:
    ch.basic_reject(a[0], a[1])
    return None


def _basic_nack(ch: CoreChannel, a: list[Any]) -> Reply:
    ch.basic_nack(a[0], a[1], a[2])
    return None


def _basic_recover_async(ch: CoreChannel, a: list[Any]) -> Reply:
    ch.basic_recover(a[0])
    return None


def _basic_recover(ch: CoreChannel, a: list[Any]) -> Reply:
    ch.basic_recover(a[0])
    return _ok((60, 111))


def _confirm_select(ch: CoreChannel, a: list[Any]) -> Reply:
    ch.confirm_select()
    return _unless_nowait(a[0], (85, 11))


def _tx_select(ch: CoreChannel, a: list[Any]) -> Reply:
    ch.tx_select()
    return _ok((90, 11))


def _tx_commit(ch: CoreChannel, a: list[Any]) -> Reply:
    ch.tx_commit()
    return _ok((90, 21))


def _tx_rollback(ch: CoreChannel, a: list[Any]) -> Reply:
    ch.tx_rollback()
    return _ok((90, 31))


def _channel_flow(ch: CoreChannel, a: list[Any]) -> Reply:
    ch.flow(a[0])
    return _ok((20, 21), "b", (a[0],))


def _channel_flow_ok(ch: CoreChannel, a: list[Any]) -> Reply:
    return None


def _channel_close(ch: CoreChannel, a: list[Any]) -> Reply:
    ch.close()
    return _ok((20, 41))


_HANDLERS: dict[tuple[int, int], Callable[[CoreChannel, list[Any]], Reply]] = {
    (20, 20): _channel_flow,
    (20, 21): _channel_flow_ok,
    (20, 40): _channel_close,
    (40, 10): _exchange_declare,
    (40, 20): _exchange_delete,
    (40, 30): _exchange_bind,
    (40, 40): _exchange_unbind,
    (50, 10): _queue_declare,
    (50, 20): _queue_bind,
    (50, 30): _queue_purge,
    (50, 40): _queue_delete,
    (50, 50): _queue_unbind,
    (60, 10): _basic_qos,
    (60, 20): _basic_consume,
    (60, 30): _basic_cancel,
    (60, 70): _basic_get,
    (60, 80): _basic_ack,
    (60, 90): _basic_reject,
    (60, 100): _basic_recover_async,
    (60, 110): _basic_recover,
    (60, 120): _basic_nack,
    (85, 10): _confirm_select,
    (90, 10): _tx_select,
    (90, 20): _tx_commit,
    (90, 30): _tx_rollback,
}

_NAMES: dict[tuple[int, int], str] = {}
