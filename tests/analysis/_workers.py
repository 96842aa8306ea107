"""Two job workers for the analysis tests and docs/histories.md: one acks each job when it
arrives and works in batches (and so loses the acked, unfinished jobs of a batch when its
connection dies), one acks after the work. Both restart after a connection or channel error,
with an empty buffer, as a crashed worker process would."""

from __future__ import annotations

from typing import Any

import kombu

JOBS = kombu.Queue("jobs", durable=True, routing_key="jobs")
_RETRY = {"max_retries": 3, "interval_start": 0, "interval_step": 0}


def publish_jobs(broker: Any, count: int) -> None:
    """``job-0`` ... ``job-<count-1>``, persistent, on the durable queue ``jobs``."""
    with broker.connection() as conn:
        producer = conn.Producer()
        for n in range(count):
            producer.publish(
                f"job-{n}",
                exchange="",
                routing_key="jobs",
                declare=[JOBS],
                delivery_mode=2,
                retry=True,
                retry_policy=_RETRY,
            )


def run_worker(broker: Any, processed: list[str], *, ack_first: bool, batch: int = 3) -> None:
    """Consume ``jobs`` until it stays idle, appending each job to ``processed`` (the worker's
    own ledger) when its work is done."""
    buffer: list[tuple[str, Any]] = []

    def on_message(body: str, message: Any) -> None:
        if ack_first:
            message.ack()  # the bug: acked before the work is done
        buffer.append((body, message))

    def work() -> None:
        while buffer:
            body, message = buffer.pop(0)
            processed.append(body)
            if not ack_first:
                message.ack()

    for _ in range(20):  # restarts
        buffer.clear()  # a restarted worker has lost what it held in memory
        try:
            with (
                broker.connection() as conn,
                conn.Consumer(JOBS, callbacks=[on_message], prefetch_count=5),
            ):
                while True:
                    try:
                        conn.drain_events(timeout=5)
                    except TimeoutError:
                        work()
                        return
                    if len(buffer) >= batch:
                        work()
        except (OSError, kombu.exceptions.KombuError, *_amqp_errors()):
            continue


def _amqp_errors() -> tuple[type[BaseException], ...]:
    import amqp

    return (amqp.exceptions.AMQPError,)
