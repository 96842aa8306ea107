"""The running digest read from one thread while another thread moves messages (issue 13):
reads and folds are serialised by the broker's lock, so reading never changes the digest."""

from __future__ import annotations

import threading

import simamqp


def _workload(broker: simamqp.Broker, messages: int) -> None:
    ch = broker.locked(lambda: broker.connect().channel())
    broker.locked(lambda: ch.queue_declare("q"))
    broker.locked(lambda: ch.basic_consume("q", no_ack=True))
    for n in range(messages):
        broker.locked(lambda n=n: ch.basic_publish(b"%d" % n, "", "q"))


def test_reading_the_digest_from_another_thread_does_not_change_it() -> None:
    quiet, busy = simamqp.Broker(seed=5), simamqp.Broker(seed=5)
    _workload(quiet, 3_000)
    done = threading.Event()
    seen: list[str] = []

    def read() -> None:
        while not done.is_set():
            seen.append(busy.trace.digest())
            busy.trace.tail(5)

    reader = threading.Thread(target=read)
    reader.start()
    try:
        _workload(busy, 3_000)
    finally:
        done.set()
        reader.join(10)
    assert len(busy.trace) == len(quiet.trace) > 4 * busy.trace.window
    assert seen  # the reader really ran during the workload
    assert busy.trace.digest() == quiet.trace.digest()
