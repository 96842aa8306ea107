"""Memory stays flat (issue 13): the default broker with the default trace, brokers given a URL
and then dropped, and RPC backends. Measured with tracemalloc; no timing assertions."""

from __future__ import annotations

import gc
import itertools
import sys
import tracemalloc
import weakref
from collections.abc import Callable

import amqp
import kombu

import rpcbackend
import simamqp

_names = itertools.count(1)


def _growth(step: Callable[[int], None], warm: int, total: int) -> tuple[int, int]:
    """Traced bytes still allocated after ``warm`` steps and after ``total`` steps."""
    gc.collect()
    tracemalloc.start()
    try:
        base = tracemalloc.get_traced_memory()[0]
        for i in range(total):
            step(i)
            if i + 1 == warm:
                gc.collect()
                after_warm = tracemalloc.get_traced_memory()[0] - base
        gc.collect()
        after_total = tracemalloc.get_traced_memory()[0] - base
    finally:
        tracemalloc.stop()
    return after_warm, after_total


def test_100k_messages_through_the_default_broker_leave_memory_flat() -> None:
    """100k messages published, delivered and acked through ``simamqp://`` (the process's
    default broker, default trace). tracemalloc slows every allocation ~6x, so it traces the
    last 20k messages; allocated blocks are compared over the whole 10k -> 100k."""
    name = f"test.memory-flat.{next(_names)}"
    connection = kombu.Connection("simamqp://")
    connection.connect()
    broker = simamqp.get_broker()
    assert broker.trace.mode == "window"  # the default, nothing turned off
    raw = connection.connection  # the transport's connection, as kombu drives it
    channel = raw.channel()
    channel.queue_declare(name, auto_delete=False)
    received = 0

    def on_message(message: amqp.Message) -> None:
        nonlocal received
        received += 1
        channel.basic_ack(message.delivery_tag)

    channel.basic_consume(name, callback=on_message)
    published = 0

    def step(_: int) -> None:
        nonlocal published
        for _ in range(1_000):
            message = amqp.Message(b'{"n": 1}', content_type="application/json")
            channel.basic_publish(message, "", name)
        published += 1_000
        while received < published:
            raw.drain_events(timeout=5)

    try:
        for i in range(10):
            step(i)
        gc.collect()
        blocks_10k = sys.getallocatedblocks()
        for i in range(70):
            step(i)
        after_82k, after_100k = _growth(step, warm=2, total=20)
        gc.collect()
        blocks_100k = sys.getallocatedblocks()
        assert received == published == 100_000
        assert broker.queue(name).messages == 0
    finally:
        channel.queue_delete(name)
        connection.release()
    # Before issue 13 this grew by ~1,970 B per message (~35 MB over these 18k); now the
    # trace keeps a bounded window. 64 KiB over 18,000 messages is < 4 B per message.
    assert after_100k - after_82k < 64 * 1024, (after_82k, after_100k)
    assert blocks_100k - blocks_10k < 2_000, (blocks_10k, blocks_100k)
    assert len(broker.trace) >= 500_000 and broker.trace.retained <= 2 * broker.trace.window


def _url_broker(_: int) -> None:
    broker = simamqp.Broker(seed=7)
    connection = broker.connection()
    connection.connect()
    connection.default_channel.queue_declare("tasks", auto_delete=False)
    connection.release()


def test_2000_brokers_given_a_url_and_dropped_leave_memory_flat() -> None:
    for i in range(50):
        _url_broker(i)
    before = set(simamqp.registered())
    after_200, after_2000 = _growth(_url_broker, warm=200, total=2_000)
    # Before issue 13 the registry kept every one of them: ~27 MB for 2,000.
    assert after_2000 - after_200 < 64 * 1024, (after_200, after_2000)
    assert set(simamqp.registered()) <= before


def test_a_dropped_broker_that_gave_out_its_url_is_collected() -> None:
    broker = simamqp.Broker(seed=1)
    url = broker.url
    name = broker.name
    assert name is not None and simamqp.registered()[name] is broker
    ref = weakref.ref(broker)
    del broker
    gc.collect()
    assert ref() is None
    assert name not in simamqp.registered()
    assert url.startswith("simamqp://")


def test_an_explicitly_registered_broker_stays_until_unregistered() -> None:
    name = f"test-explicit-{next(_names)}"
    broker = simamqp.Broker(seed=1)
    assert broker.url  # a weak, implicit name first...
    simamqp.register(name, broker)  # ...then an explicit one, which holds it
    ref = weakref.ref(broker)
    del broker
    gc.collect()
    assert ref() is not None and simamqp.get_broker(name, create=False) is ref()
    assert ref().url == f"simamqp://{name}//"  # type: ignore[union-attr]
    simamqp.unregister(name)
    gc.collect()
    assert ref() is None


def test_an_implicit_name_resolves_while_the_broker_lives() -> None:
    broker = simamqp.Broker(seed=1)
    with kombu.Connection(broker.url) as conn:
        conn.default_channel.queue_declare("q-implicit", auto_delete=False)
    assert simamqp.get_broker(broker.name or "", create=False) is broker
    assert broker.queue("q-implicit").messages == 0


def test_trace_transport_option_sets_the_broker_trace_mode() -> None:
    broker = simamqp.Broker(seed=1)
    with kombu.Connection(broker.url, transport_options={"trace": "full"}) as conn:
        conn.connect()
    assert broker.trace.mode == "full"
    with kombu.Connection(broker.url, transport_options={"trace": "off"}) as conn:
        conn.connect()
        conn.default_channel.queue_declare("q-off", auto_delete=False)
    assert broker.trace.mode == "off"
    assert not [e for e in broker.trace if e.kind == "queue-declare"]


def test_rpc_backends_do_not_accumulate_fork_hooks() -> None:
    from rpcbackend import _backend

    broker = simamqp.Broker(seed=1)
    app = rpcbackend.Config(broker_url=broker.url)

    def make(_: int) -> None:
        rpcbackend.RPCBackend(app)

    # Backends that earlier tests still hold (a Celery app's, say) are not ours to count.
    gc.collect()
    already_live = len(_backend._live_backends)
    make(0)
    gc.collect()
    assert len(_backend._live_backends) == already_live
    after_100, after_1000 = _growth(make, warm=100, total=1_000)
    assert after_1000 - after_100 < 32 * 1024, (after_100, after_1000)
    backend = rpcbackend.RPCBackend(app)
    assert backend in _backend._live_backends
