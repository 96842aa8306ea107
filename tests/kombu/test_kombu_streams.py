"""A kombu application replaying a stream: ``queue_arguments`` declare it, ``consumer_arguments``
carry ``x-stream-offset``, ``prefetch_count`` is the credit (the in-process transport)."""

from __future__ import annotations

import kombu


def test_kombu_consumer_replays_a_stream_from_an_offset(sim_broker):
    with sim_broker.connection() as conn:
        declare = kombu.Queue(
            "events",
            durable=True,
            auto_delete=False,
            queue_arguments={"x-queue-type": "stream"},
        )
        with conn.Producer() as producer:
            for n in range(4):
                producer.publish({"n": n}, routing_key="events", declare=[declare])
        got: list[tuple[int, int]] = []

        def on_message(body, message):
            got.append((body["n"], message.headers["x-stream-offset"]))
            message.ack()

        replay = kombu.Queue(
            "events",
            durable=True,
            auto_delete=False,
            queue_arguments={"x-queue-type": "stream"},
            consumer_arguments={"x-stream-offset": 1},
        )
        with conn.Consumer(replay, callbacks=[on_message], prefetch_count=2):
            while len(got) < 3:
                conn.drain_events(timeout=1)
    assert got == [(1, 1), (2, 2), (3, 3)]
    assert len(sim_broker.queue("events").bodies) == 4  # reading took nothing away
