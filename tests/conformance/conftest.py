"""Differential conformance fixtures: every test body runs against simamqp AND RabbitMQ.

The ``env`` fixture is parametrised over the two brokers. A test only talks to the broker through
``env`` (connections, channels, unique names, waiting) and asserts what a client observes, so the
same assertion pins RabbitMQ's behaviour and checks simamqp's.

RabbitMQ is asynchronous where simamqp is not (dead-lettering, expiry, deliveries to consumers on
other channels). Helpers here absorb that without fixed sleeps: ``env.get`` retries ``basic_get``
for a bounded time when a message is expected, ``env.drain`` drains until a predicate holds, and
``env.eventually`` polls a value until it matches. On simamqp each of these runs the broker until
idle and looks once, so a simamqp run never sleeps.
"""

from __future__ import annotations

import contextlib
import itertools
import time
import uuid
import zlib
from collections.abc import Callable, Iterator
from typing import Any

import amqp
import kombu
import pytest
from _rabbitmq import RABBITMQ_URL, require_rabbitmq
from amqp import spec

#: How long the RabbitMQ side keeps retrying for something it expects to happen.
EVENTUALLY_TIMEOUT = 3.0


def _quiet_close(conn: Any) -> None:
    """Close a connection the fixture itself opened for cleanup (not one a test used)."""
    with contextlib.suppress(Exception):
        conn.release()


class TeardownError(AssertionError):
    """Closing a test's connections raised: an error the test left unobserved (for example a
    channel closed by the broker after an asynchronous ack/publish the test never checked)."""


class Confirms:
    """Publisher confirms and basic.return events of one channel.

    RabbitMQ may coalesce confirms (``multiple=True``); ``outcomes`` expands them per publish
    sequence number so tests never depend on the coalescing.
    """

    def __init__(self, ch: amqp.Channel) -> None:
        self.outcomes: dict[int, str] = {}
        self.returned: list[tuple[int, str, str, str, amqp.Message]] = []
        #: "return" and "ack:SEQ"/"nack:SEQ" in arrival order (a return precedes its publish's ack).
        self.order: list[str] = []
        ch.confirm_select()
        ch.events["basic_ack"].add(lambda tag, multiple: self._settle("ack", tag, multiple))
        ch.events["basic_nack"].add(lambda tag, multiple: self._settle("nack", tag, multiple))
        ch.events["basic_return"].add(self._on_return)

    def _settle(self, kind: str, tag: int, multiple: bool) -> None:
        first = 1 if multiple else tag
        for seq in range(first, tag + 1):
            if seq not in self.outcomes:
                self.outcomes[seq] = kind
                self.order.append(f"{kind}:{seq}")

    def _on_return(self, exc: Any, exchange: str, routing_key: str, msg: amqp.Message) -> None:
        self.returned.append((exc.reply_code, exc.reply_text, exchange, routing_key, msg))
        self.order.append("return")

    def settled(self, n: int) -> Callable[[], bool]:
        """A predicate for env.drain: publishes 1..n have been acked or nacked."""
        return lambda: all(seq in self.outcomes for seq in range(1, n + 1))

    def results(self, n: int) -> list[str]:
        return [self.outcomes.get(seq, "pending") for seq in range(1, n + 1)]


class BrokerEnv:
    """One broker under test, as a client sees it."""

    kind: str
    url: str

    def __init__(self, kind: str, url: str, token: str) -> None:
        self.kind = kind
        self.url = url
        self._token = token
        self._counter = itertools.count(1)
        self._connections: list[kombu.Connection] = []
        self._shared: kombu.Connection | None = None
        self._channels: list[amqp.Channel] = []
        self.declared: list[str] = []

    # -- connections and channels -------------------------------------------------------------

    def connection(self, **kwargs: Any) -> kombu.Connection:
        """A connected kombu Connection, closed at teardown."""
        conn = kombu.Connection(self.url, **kwargs)
        conn.connect()
        self._connections.append(conn)
        return conn

    @property
    def conn(self) -> kombu.Connection:
        """The shared connection that ``channel()`` opens channels on."""
        if self._shared is None:
            self._shared = self.connection()
        return self._shared

    def channel(self, conn: kombu.Connection | None = None) -> amqp.Channel:
        """A fresh py-amqp channel (on the shared connection unless ``conn`` is given).

        At teardown every channel still open gets a synchronous round trip (``fence``), so an
        error the broker raised on it after the test's last call fails the test.
        """
        ch = (conn or self.conn).channel()
        self._channels.append(ch)
        return ch

    # -- names ----------------------------------------------------------------------------------

    def name(self, prefix: str = "x") -> str:
        """A name unique to this test run; tracked so the RabbitMQ side cleans it up."""
        name = f"conf.{prefix}.{self._token}.{next(self._counter)}"
        self.declared.append(name)
        return name

    def track(self, name: str) -> str:
        """Clean up a server-generated name too."""
        self.declared.append(name)
        return name

    # -- time and asynchrony --------------------------------------------------------------------

    def wait(self, seconds: float) -> None:
        """Let ``seconds`` of broker time pass."""
        raise NotImplementedError

    def settle(self) -> None:
        """Let the broker finish what is already due (no time passes)."""

    def drain(
        self,
        conn: Any = None,
        timeout: float = EVENTUALLY_TIMEOUT,
        until: Callable[[], bool] | None = None,
    ) -> bool:
        """Dispatch incoming frames until ``until()`` holds (True) or ``timeout`` (False).

        Without ``until`` it drains for the whole ``timeout`` and returns True.
        """
        conn = conn or self.conn
        self.settle()
        deadline = time.monotonic() + timeout
        while True:
            if until is not None and until():
                return True
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                return until is None
            try:
                conn.drain_events(timeout=min(remaining, 0.25))
            except TimeoutError:
                if self.kind == "simamqp" and until is None:
                    return True

    def eventually(
        self, probe: Callable[[], Any], expected: Any, timeout: float = EVENTUALLY_TIMEOUT
    ) -> Any:
        """Poll ``probe()`` until it equals ``expected``; return the last value seen."""
        self.settle()
        value = probe()
        deadline = time.monotonic() + timeout
        while value != expected and self.kind == "rabbitmq" and time.monotonic() < deadline:
            time.sleep(0.01)
            value = probe()
        return value

    def get(
        self, ch: amqp.Channel, queue: str, no_ack: bool = True, timeout: float = EVENTUALLY_TIMEOUT
    ) -> amqp.Message | None:
        """basic_get, retried for a bounded time on RabbitMQ while the queue is empty."""
        self.settle()
        msg = ch.basic_get(queue, no_ack=no_ack)
        deadline = time.monotonic() + timeout
        while msg is None and self.kind == "rabbitmq" and time.monotonic() < deadline:
            time.sleep(0.005)
            msg = ch.basic_get(queue, no_ack=no_ack)
        return msg

    def get_none(self, ch: amqp.Channel, queue: str) -> amqp.Message | None:
        """basic_get once (after settling): for asserting that a queue is empty."""
        self.settle()
        return ch.basic_get(queue, no_ack=True)

    def bodies(self, ch: amqp.Channel, queue: str) -> list[bytes]:
        """Empty ``queue`` with basic_get (no_ack); return the bodies in order."""
        self.settle()
        out = []
        while (msg := ch.basic_get(queue, no_ack=True)) is not None:
            out.append(msg.body)
        return out

    def count(self, queue: str, ch: amqp.Channel | None = None) -> int:
        """Ready-message count from a passive queue.declare."""
        self.settle()
        ch = ch or self.conn.default_channel
        return ch.queue_declare(queue, passive=True).message_count

    def eventually_count(self, queue: str, expected: int, ch: amqp.Channel | None = None) -> int:
        return self.eventually(lambda: self.count(queue, ch), expected)

    # -- declaring and publishing ------------------------------------------------------------

    def queue(self, ch: amqp.Channel, prefix: str = "q", **kwargs: Any) -> str:
        """Declare a uniquely named queue; return its name."""
        name = self.name(prefix)
        kwargs.setdefault("auto_delete", False)  # py-amqp defaults to True
        ch.queue_declare(name, **kwargs)
        return name

    def exchange(self, ch: amqp.Channel, type: str, prefix: str = "x", **kwargs: Any) -> str:
        """Declare a uniquely named exchange; return its name."""
        name = self.name(prefix)
        kwargs.setdefault("auto_delete", False)  # py-amqp defaults to True
        ch.exchange_declare(name, type, **kwargs)
        return name

    def internal_exchange(self, ch: amqp.Channel, type: str) -> str:
        """Declare an internal exchange (py-amqp's exchange_declare cannot set the bit)."""
        name = self.name("internal")
        ch.send_method(
            spec.Exchange.Declare,
            "BssbbbbbF",
            (0, name, type, False, False, False, True, False, {}),
            wait=spec.Exchange.DeclareOk,
        )
        return name

    @staticmethod
    def nack(ch: amqp.Channel, delivery_tag: int, multiple: bool, requeue: bool) -> None:
        """basic.nack (py-amqp has no basic_nack method; it sends the frame itself)."""
        if hasattr(ch, "basic_nack"):
            ch.basic_nack(delivery_tag, multiple=multiple, requeue=requeue)
        else:
            ch.send_method(spec.Basic.Nack, "Lbb", (delivery_tag, multiple, requeue))

    @staticmethod
    def publish(
        ch: amqp.Channel,
        body: bytes | str,
        exchange: str = "",
        routing_key: str = "",
        mandatory: bool = False,
        **properties: Any,
    ) -> None:
        ch.basic_publish(amqp.Message(body, **properties), exchange, routing_key, mandatory)

    @staticmethod
    def consume(ch: amqp.Channel, queue: str, **kwargs: Any) -> tuple[str, list[amqp.Message]]:
        """basic_consume collecting deliveries into a list; return (consumer_tag, list)."""
        received: list[amqp.Message] = []
        tag = ch.basic_consume(queue, callback=received.append, **kwargs)
        return tag, received

    def confirms(self, ch: amqp.Channel) -> Confirms:
        """Put ``ch`` in confirm mode and record acks, nacks and returns in arrival order."""
        return Confirms(ch)

    # -- fences and teardown --------------------------------------------------------------------

    def fence(self, ch: amqp.Channel) -> None:
        """A synchronous round trip on ``ch`` (a passive declare of ``amq.direct``).

        Follow asynchronous calls (basic_ack/reject/nack, basic_publish) with it: a broker that
        refused one of them closes the channel, and the error surfaces here, in the test.
        """
        self.settle()
        ch.exchange_declare("amq.direct", "direct", passive=True)

    # -- teardown -------------------------------------------------------------------------------

    def close(self) -> None:
        """Close every connection the test opened; an error while closing fails the test.

        First each channel the test opened and left open gets a synchronous round trip: a
        channel error there is one the test left behind unobserved (an asynchronous ack,
        reject or publish the broker refused). Connection-level errors (a connection the broker
        already closed) are swallowed by kombu's ``release``.
        """
        errors: list[BaseException] = []
        for ch in self._channels:
            conn = ch.connection
            if not ch.is_open or conn is None or not conn.connected:
                continue  # closed by the test, or its connection is gone: nothing to observe
            try:
                self.fence(ch)
            except amqp.exceptions.ChannelError as exc:
                errors.append(exc)
            except OSError:
                continue  # the test cut the socket (conn.transport.sock): nothing to observe
        self._channels.clear()
        for conn in reversed(self._connections):
            try:
                conn.release()
            except OSError:
                pass  # the test cut the socket (conn.transport.sock): nothing left to observe
            except Exception as exc:
                errors.append(exc)
        self._connections.clear()
        self._shared = None
        if errors:
            raise TeardownError(
                f"at teardown the broker reported {errors!r}: an asynchronous call failed "
                "and nothing in the test observed it"
            ) from errors[0]


class RabbitEnv(BrokerEnv):
    def wait(self, seconds: float) -> None:
        time.sleep(seconds)

    def close(self) -> None:
        try:
            super().close()
        finally:
            self._delete_declared()

    def _delete_declared(self) -> None:
        if not self.declared:
            return
        admin = kombu.Connection(self.url)
        try:
            ch = admin.channel()
            for name in self.declared:
                for delete in (ch.queue_delete, ch.exchange_delete):
                    try:
                        delete(name)
                    except amqp.exceptions.ChannelError:
                        ch = admin.channel()
        finally:
            _quiet_close(admin)


class SimEnv(BrokerEnv):
    def __init__(self, broker: Any, registered_as: str, token: str) -> None:
        super().__init__("simamqp", broker.url, token)
        self.broker = broker
        self.registered_as = registered_as

    def wait(self, seconds: float) -> None:
        self.broker.clock.advance(seconds)
        self.broker.run_until_idle()

    def settle(self) -> None:
        self.broker.run_until_idle()

    def close(self) -> None:
        import simamqp

        try:
            super().close()
        finally:
            simamqp.unregister(self.registered_as)


class SocketEnv(SimEnv):
    """simamqp served over a real AMQP socket (``simamqp.server``), same broker object.

    The clients are ordinary py-amqp/kombu connections to ``amqp://``; time still moves only
    when the test moves it. ``settle`` runs the broker until idle and then waits for the
    server loop to have read what the client sent and written what it queued, so nothing
    here sleeps.
    """

    def __init__(self, broker: Any, registered_as: str, token: str) -> None:
        from simamqp.server import Server

        super().__init__(broker, registered_as, token)
        self.server = Server(broker).start()
        self.url = self.server.url

    def settle(self) -> None:
        self.broker.run_until_idle()
        self.server.settle()

    def wait(self, seconds: float) -> None:
        # What the client sent before the wait happened before it, as on RabbitMQ.
        self.server.settle()
        super().wait(seconds)
        self.server.settle()

    def drain(
        self,
        conn: Any = None,
        timeout: float = EVENTUALLY_TIMEOUT,
        until: Callable[[], bool] | None = None,
    ) -> bool:
        if until is not None:
            return super().drain(conn, timeout, until)
        # After settle() every frame the server queued is already in the client's socket
        # buffer: drain until a read finds nothing.
        conn = conn or self.conn
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            self.settle()
            try:
                conn.drain_events(timeout=0.01)
            except TimeoutError:
                return True
        return True

    def close(self) -> None:
        super().close()
        self.server.stop()


def make_socket_env(nodeid: str) -> SocketEnv:
    import simamqp

    seed = zlib.crc32(nodeid.encode())
    broker = simamqp.Broker(seed=seed, clock=simamqp.VirtualClock())
    registered_as = f"conformance-{seed:08x}-{uuid.uuid4().hex[:6]}"
    simamqp.register(registered_as, broker)
    return SocketEnv(broker, registered_as, token="sock")


def make_sim_env(nodeid: str) -> SimEnv:
    import simamqp

    seed = zlib.crc32(nodeid.encode())
    broker = simamqp.Broker(seed=seed, clock=simamqp.VirtualClock())
    registered_as = f"conformance-{seed:08x}-{uuid.uuid4().hex[:6]}"
    simamqp.register(registered_as, broker)
    return SimEnv(broker, registered_as, token="sim")


def make_rabbit_env() -> RabbitEnv:
    require_rabbitmq()
    return RabbitEnv("rabbitmq", RABBITMQ_URL, token=uuid.uuid4().hex[:10])


@pytest.fixture(
    params=["simamqp", "simamqp-socket", pytest.param("rabbitmq", marks=pytest.mark.rabbitmq)],
)
def env(request: pytest.FixtureRequest) -> Iterator[BrokerEnv]:
    """The broker under test: simamqp in-process, simamqp over a socket (``simamqp.server``)
    or RabbitMQ, with the same client-side API."""
    broker_env: BrokerEnv
    if request.param == "rabbitmq":
        broker_env = make_rabbit_env()
    elif request.param == "simamqp-socket":
        broker_env = make_socket_env(request.node.nodeid)
    else:
        broker_env = make_sim_env(request.node.nodeid)
    try:
        yield broker_env
    finally:
        broker_env.close()


@pytest.fixture
def rabbitmq_url() -> str:
    """The RabbitMQ URL, after checking it answers (skip, or fail in CI, otherwise)."""
    require_rabbitmq()
    return RABBITMQ_URL


@pytest.fixture
def make_sim_broker(request: pytest.FixtureRequest) -> Iterator[Callable[[], Any]]:
    """Factory: a fresh registered simamqp broker on a virtual clock; unregistered at teardown.

    Returns the broker (``broker.url`` to connect, ``broker.run_until_idle()`` to settle). Every
    call uses the same seed; the broker made by the previous call is unregistered.
    """
    import simamqp

    # fail at setup (an error, like the env fixture's simamqp side) if the API is missing
    broker_class, clock_class = simamqp.Broker, simamqp.VirtualClock
    registered: list[str] = []

    def make() -> Any:
        while registered:
            simamqp.unregister(registered.pop())
        seed = zlib.crc32(request.node.nodeid.encode())
        broker = broker_class(seed=seed, clock=clock_class())
        name = f"differential-{seed:08x}-{uuid.uuid4().hex[:8]}"
        simamqp.register(name, broker)
        registered.append(name)
        return broker

    yield make
    for name in registered:
        simamqp.unregister(name)
