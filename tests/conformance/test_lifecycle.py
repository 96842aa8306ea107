"""Declares (active, passive, equivalence), deletes, purges and queue lifecycles: exclusive,
auto-delete, server-named, x-expires."""

from __future__ import annotations

import pytest
from amqp.exceptions import AccessRefused, NotFound, PreconditionFailed, ResourceLocked


def no_queue(env, name):
    return f"NOT_FOUND - no queue '{name}' in vhost '/'"


def no_exchange(env, name):
    return f"NOT_FOUND - no exchange '{name}' in vhost '/'"


def locked(name):
    return (
        f"RESOURCE_LOCKED - cannot obtain exclusive access to locked queue '{name}' in vhost '/'. "
        "It could be originally declared on another connection or the exclusive property value "
        "does not match that of the original declaration."
    )


def test_queue_declare_returns_name_and_counts(env):
    """rabbitmq.com/amqp-0-9-1-reference.html#queue.declare-ok: queue, message-count, consumers."""
    ch = env.channel()
    q = env.name("q")
    ok = ch.queue_declare(q, auto_delete=False)
    assert tuple(ok) == (q, 0, 0)
    for i in range(3):
        env.publish(ch, b"%d" % i, "", q)
    env.consume(env.channel(), q)
    assert tuple(env.eventually(lambda: ch.queue_declare(q, passive=True), (q, 0, 1))) == (q, 0, 1)


def test_queue_declare_counts_ready_messages_only(env):
    """rabbitmq.com/amqp-0-9-1-reference.html#queue.declare-ok.message-count: unacked excluded."""
    ch = env.channel()
    q = env.queue(ch)
    for i in range(3):
        env.publish(ch, b"%d" % i, "", q)
    assert env.get(ch, q, no_ack=False).body == b"0"
    assert env.eventually_count(q, 2, ch) == 2


def test_passive_queue_declare_missing_is_404(env):
    """rabbitmq.com/amqp-0-9-1-reference.html#queue.declare.passive: missing queue is 404."""
    ch = env.channel()
    q = env.name("missing")
    with pytest.raises(NotFound) as exc:
        ch.queue_declare(q, passive=True)
    assert (exc.value.reply_code, exc.value.reply_text) == (404, no_queue(env, q))
    assert exc.value.method_sig == (50, 10)


def test_passive_exchange_declare_missing_is_404(env):
    """rabbitmq.com/amqp-0-9-1-reference.html#exchange.declare.passive: missing exchange 404."""
    ch = env.channel()
    ex = env.name("missing")
    with pytest.raises(NotFound) as exc:
        ch.exchange_declare(ex, "direct", passive=True)
    assert (exc.value.reply_code, exc.value.reply_text) == (404, no_exchange(env, ex))


def test_passive_exchange_declare_ignores_type(env):
    """rabbitmq.com/amqp-0-9-1-reference.html#exchange.declare.passive: only existence checked."""
    ch = env.channel()
    ex = env.exchange(ch, "topic")
    ch.exchange_declare(ex, "fanout", passive=True)


def test_passive_queue_declare_ignores_other_properties(env):
    """rabbitmq.com/amqp-0-9-1-reference.html#queue.declare.passive: only existence checked."""
    ch = env.channel()
    q = env.queue(ch, durable=False)
    assert ch.queue_declare(q, passive=True, durable=True, exclusive=False).queue == q


def test_queue_redeclare_durable_mismatch_is_406(env):
    """rabbitmq.com/queues.html#property-equivalence: inequivalent durable flag."""
    ch = env.channel()
    q = env.queue(ch, durable=False)
    with pytest.raises(PreconditionFailed) as exc:
        ch.queue_declare(q, durable=True, auto_delete=False)
    assert exc.value.reply_code == 406
    assert exc.value.reply_text == (
        f"PRECONDITION_FAILED - inequivalent arg 'durable' for queue '{q}' in vhost '/': "
        "received 'true' but current is 'false'"
    )


def test_queue_redeclare_auto_delete_mismatch_is_406(env):
    """rabbitmq.com/queues.html#property-equivalence: inequivalent auto_delete flag."""
    ch = env.channel()
    q = env.queue(ch)
    with pytest.raises(PreconditionFailed) as exc:
        ch.queue_declare(q)  # py-amqp default auto_delete=True
    assert exc.value.reply_text == (
        f"PRECONDITION_FAILED - inequivalent arg 'auto_delete' for queue '{q}' in vhost '/': "
        "received 'true' but current is 'false'"
    )


def test_queue_redeclare_argument_mismatch_is_406(env):
    """rabbitmq.com/queues.html#property-equivalence: inequivalent x-arguments."""
    ch = env.channel()
    q = env.queue(ch, arguments={"x-max-length": 10})
    with pytest.raises(PreconditionFailed) as exc:
        ch.queue_declare(q, auto_delete=False, arguments={"x-max-length": 20})
    assert exc.value.reply_text == (
        f"PRECONDITION_FAILED - inequivalent arg 'x-max-length' for queue '{q}' in vhost '/': "
        "received '20' but current is '10'"
    )


def test_queue_redeclare_missing_argument_is_406(env):
    """rabbitmq.com/queues.html#property-equivalence: an added x-argument is inequivalent."""
    ch = env.channel()
    q = env.queue(ch)
    with pytest.raises(PreconditionFailed) as exc:
        ch.queue_declare(q, auto_delete=False, arguments={"x-message-ttl": 500})
    assert exc.value.reply_text == (
        f"PRECONDITION_FAILED - inequivalent arg 'x-message-ttl' for queue '{q}' in vhost '/': "
        "received the value '500' of type 'signedint' but current is none"
    )


def test_queue_redeclare_equivalent_returns_counts(env):
    """rabbitmq.com/queues.html#property-equivalence: equivalent redeclare succeeds."""
    ch = env.channel()
    q = env.queue(ch, arguments={"x-max-length": 10})
    env.publish(ch, b"m", "", q)
    assert env.get(ch, q, no_ack=False) is not None
    env.publish(ch, b"n", "", q)
    env.eventually_count(q, 1, ch)
    ok = ch.queue_declare(q, auto_delete=False, arguments={"x-max-length": 10})
    assert tuple(ok) == (q, 1, 0)


def test_exchange_redeclare_type_mismatch_is_406(env):
    """rabbitmq.com/amqp-0-9-1-reference.html#exchange.declare: type must match."""
    ch = env.channel()
    ex = env.exchange(ch, "direct")
    with pytest.raises(PreconditionFailed) as exc:
        ch.exchange_declare(ex, "fanout", auto_delete=False)
    assert exc.value.reply_text == (
        f"PRECONDITION_FAILED - inequivalent arg 'type' for exchange '{ex}' in vhost '/': "
        "received 'fanout' but current is 'direct'"
    )


def test_exchange_redeclare_durable_mismatch_is_406(env):
    """rabbitmq.com/amqp-0-9-1-reference.html#exchange.declare: durable must match."""
    ch = env.channel()
    ex = env.exchange(ch, "topic")
    with pytest.raises(PreconditionFailed) as exc:
        ch.exchange_declare(ex, "topic", durable=True, auto_delete=False)
    assert exc.value.reply_text == (
        f"PRECONDITION_FAILED - inequivalent arg 'durable' for exchange '{ex}' in vhost '/': "
        "received 'true' but current is 'false'"
    )


def test_exchange_redeclare_internal_mismatch_is_406(env):
    """rabbitmq.com/amqp-0-9-1-reference.html#exchange.declare: internal must match."""
    ch = env.channel()
    ex = env.internal_exchange(ch, "fanout")
    with pytest.raises(PreconditionFailed) as exc:
        ch.exchange_declare(ex, "fanout", auto_delete=False)
    assert exc.value.reply_text == (
        f"PRECONDITION_FAILED - inequivalent arg 'internal' for exchange '{ex}' in vhost '/': "
        "received 'false' but current is 'true'"
    )


def test_queue_reserved_prefix_is_403(env):
    """rabbitmq.com/amqp-0-9-1-reference.html#queue.declare.queue: 'amq.' names are reserved."""
    ch = env.channel()
    q = "amq." + env.name("q")
    with pytest.raises(AccessRefused) as exc:
        ch.queue_declare(q)
    assert (exc.value.reply_code, exc.value.reply_text) == (
        403,
        f"ACCESS_REFUSED - queue name '{q}' contains reserved prefix 'amq.*'",
    )


def test_server_named_queue(env):
    """rabbitmq.com/queues.html#server-named-queues: empty name gives a unique amq.gen- name."""
    ch = env.channel()
    first = ch.queue_declare("", exclusive=True)
    second = ch.queue_declare("", exclusive=True)
    assert first.queue.startswith("amq.gen-")
    assert len(first.queue) == len("amq.gen-") + 22
    assert first.queue != second.queue
    assert tuple(first)[1:] == (0, 0)
    env.publish(ch, b"to-generated", "", first.queue)
    assert env.get_none(ch, first.queue).body == b"to-generated"


def test_server_named_queue_is_the_channels_last_queue(env):
    """AMQP 0-9-1 spec 1.7.2.3: an empty queue name refers to the channel's last declared queue."""
    ch = env.channel()
    q = ch.queue_declare("", exclusive=True).queue
    ex = env.exchange(ch, "direct")
    ch.queue_bind("", ex, "k")
    env.publish(ch, b"last-queue", ex, "k")
    assert env.get_none(ch, q).body == b"last-queue"


def test_an_empty_queue_name_on_a_channel_that_declared_none_is_404(env):
    """rabbit_channel's expand_queue_name_shortcut: "" with no queue declared on the channel."""
    ch = env.channel(env.connection())
    with pytest.raises(NotFound) as exc:
        ch.queue_purge("")
    assert (exc.value.reply_text, exc.value.method_sig) == (
        "NOT_FOUND - no previously declared queue",
        (50, 30),
    )


def test_a_passive_declare_makes_its_queue_the_channels_last_queue(env):
    """rabbit_channel sets the most recently declared queue on a passive declare too: after
    declaring a second queue, passively declaring the first makes "" name the first again."""
    ch = env.channel()
    first = env.queue(ch)
    env.publish(ch, b"in-first", "", first)
    env.queue(ch)  # the second queue is now the last one
    assert env.eventually_count(first, 1, env.channel()) == 1  # counted on another channel
    ch.queue_declare(first, passive=True)
    msg = ch.basic_get("", no_ack=True)
    assert msg is not None and msg.body == b"in-first"


def test_exclusive_queue_locked_for_other_connections(env):
    """rabbitmq.com/queues.html#exclusive-queues: other connections get 405 RESOURCE_LOCKED."""
    owner = env.channel()
    q = env.queue(owner, exclusive=True)
    other = env.channel(env.connection())
    with pytest.raises(ResourceLocked) as exc:
        other.queue_declare(q, exclusive=True, auto_delete=False)
    assert (exc.value.reply_code, exc.value.reply_text) == (405, locked(q))


def test_exclusive_queue_passive_declare_from_other_connection_is_405(env):
    """rabbitmq.com/queues.html#exclusive-queues: even a passive declare is refused."""
    owner = env.channel()
    q = env.queue(owner, exclusive=True)
    other = env.channel(env.connection())
    with pytest.raises(ResourceLocked) as exc:
        other.queue_declare(q, passive=True)
    assert exc.value.reply_text == locked(q)


@pytest.mark.parametrize("operation", ["basic_get", "basic_consume", "queue_purge", "queue_bind"])
def test_exclusive_queue_operations_from_other_connection_are_405(env, operation):
    """rabbitmq.com/queues.html#exclusive-queues: only the declaring connection may use it."""
    owner = env.channel()
    q = env.queue(owner, exclusive=True)
    other = env.channel(env.connection())
    calls = {
        "basic_get": lambda: other.basic_get(q),
        "basic_consume": lambda: other.basic_consume(q, callback=lambda m: None),
        "queue_purge": lambda: other.queue_purge(q),
        "queue_bind": lambda: other.queue_bind(q, "amq.fanout", ""),
    }
    with pytest.raises(ResourceLocked) as exc:
        calls[operation]()
    assert exc.value.reply_text == locked(q)


def test_exclusive_queue_shared_by_channels_of_its_connection(env):
    """rabbitmq.com/queues.html#exclusive-queues: exclusivity is per connection, not channel."""
    conn = env.connection()
    ch1, ch2 = env.channel(conn), env.channel(conn)
    q = env.queue(ch1, exclusive=True)
    env.publish(ch2, b"same-conn", "", q)
    assert env.get(ch2, q).body == b"same-conn"


def test_exclusive_queue_deleted_with_its_connection(env):
    """rabbitmq.com/queues.html#exclusive-queues: deleted when the declaring connection closes."""
    owner_conn = env.connection()
    q = env.queue(env.channel(owner_conn), exclusive=True)
    owner_conn.release()

    def exists():
        try:
            env.channel().queue_declare(q, passive=True)
        except NotFound:
            return False
        return True

    assert env.eventually(exists, False) is False


def test_auto_delete_queue_deleted_after_last_consumer_cancels(env):
    """rabbitmq.com/queues.html#temporary-queues: auto-delete after the last consumer goes."""
    ch = env.channel()
    q = env.queue(ch, auto_delete=True)
    tag1, _ = env.consume(ch, q)
    tag2, _ = env.consume(ch, q)
    ch.basic_cancel(tag1)
    assert ch.queue_declare(q, passive=True).consumer_count == 1
    ch.basic_cancel(tag2)

    def exists():
        try:
            env.channel().queue_declare(q, passive=True)
        except NotFound:
            return False
        return True

    assert env.eventually(exists, False) is False


def test_auto_delete_queue_survives_without_ever_having_consumers(env):
    """rabbitmq.com/queues.html#temporary-queues: never-consumed auto-delete queues stay."""
    ch = env.channel()
    q = env.queue(ch, auto_delete=True)
    env.publish(ch, b"m", "", q)
    assert env.get(ch, q).body == b"m"
    assert ch.queue_declare(q, passive=True).queue == q


def test_x_expires_deletes_unused_queue(env):
    """rabbitmq.com/ttl.html#queue-ttl: x-expires deletes a queue unused for that long."""
    ch = env.channel()
    q = env.queue(ch, arguments={"x-expires": 100})
    ch.queue_declare(q, passive=True)
    env.wait(0.5)
    with pytest.raises(NotFound) as exc:
        env.channel().queue_declare(q, passive=True)
    assert exc.value.reply_text == no_queue(env, q)


def test_x_expires_not_while_consumed(env):
    """rabbitmq.com/ttl.html#queue-ttl: a queue with consumers is in use and does not expire."""
    ch = env.channel()
    q = env.queue(ch, arguments={"x-expires": 100})
    env.consume(ch, q)
    env.wait(0.4)
    assert ch.queue_declare(q, passive=True).consumer_count == 1


def test_queue_delete_returns_message_count(env):
    """rabbitmq.com/amqp-0-9-1-reference.html#queue.delete-ok.message-count."""
    ch = env.channel()
    q = env.queue(ch)
    for i in range(4):
        env.publish(ch, b"%d" % i, "", q)
    env.eventually_count(q, 4, ch)
    assert ch.queue_delete(q) == 4
    with pytest.raises(NotFound):
        ch.queue_declare(q, passive=True)


def test_queue_delete_missing_is_ok(env):
    """rabbitmq.com/amqp-0-9-1-reference.html#queue.delete: deleting a missing queue succeeds."""
    ch = env.channel()
    assert ch.queue_delete(env.name("never")) == 0
    ch.exchange_delete(env.name("never"))
    assert ch.is_open


def test_queue_delete_if_unused_with_consumer_is_406(env):
    """rabbitmq.com/amqp-0-9-1-reference.html#queue.delete.if-unused."""
    ch = env.channel()
    q = env.queue(ch)
    env.consume(ch, q)
    other = env.channel()
    with pytest.raises(PreconditionFailed) as exc:
        other.queue_delete(q, if_unused=True)
    assert exc.value.reply_text == f"PRECONDITION_FAILED - queue '{q}' in vhost '/' in use"


def test_queue_delete_if_empty_with_messages_is_406(env):
    """rabbitmq.com/amqp-0-9-1-reference.html#queue.delete.if-empty."""
    ch = env.channel()
    q = env.queue(ch)
    env.publish(ch, b"m", "", q)
    env.eventually_count(q, 1, ch)
    with pytest.raises(PreconditionFailed) as exc:
        ch.queue_delete(q, if_empty=True)
    assert exc.value.reply_text == f"PRECONDITION_FAILED - queue '{q}' in vhost '/' not empty"


def test_exchange_delete_if_unused_with_bindings_is_406(env):
    """rabbitmq.com/amqp-0-9-1-reference.html#exchange.delete.if-unused."""
    ch = env.channel()
    ex = env.exchange(ch, "direct")
    ch.queue_bind(env.queue(ch), ex, "k")
    with pytest.raises(PreconditionFailed) as exc:
        ch.exchange_delete(ex, if_unused=True)
    assert exc.value.reply_text == f"PRECONDITION_FAILED - exchange '{ex}' in vhost '/' in use"


def test_exchange_delete_removes_its_bindings(env):
    """rabbitmq.com/amqp-0-9-1-reference.html#exchange.delete: bindings go with it."""
    ch = env.channel()
    ex = env.exchange(ch, "direct")
    q = env.queue(ch)
    ch.queue_bind(q, ex, "k")
    ch.exchange_delete(ex)
    ch.exchange_declare(ex, "direct", auto_delete=False)
    env.publish(ch, b"m", ex, "k")
    assert env.get_none(ch, q) is None


def test_queue_delete_removes_its_bindings(env):
    """rabbitmq.com/amqp-0-9-1-reference.html#queue.delete: bindings go with it."""
    ch = env.channel()
    ex = env.exchange(ch, "fanout")
    q = env.queue(ch)
    ch.queue_bind(q, ex, "")
    ch.queue_delete(q)
    ch.queue_declare(q, auto_delete=False)
    env.publish(ch, b"m", ex, "")
    assert env.get_none(ch, q) is None


def test_queue_purge_returns_count_and_keeps_unacked(env):
    """rabbitmq.com/amqp-0-9-1-reference.html#queue.purge: removes ready messages only."""
    ch = env.channel()
    q = env.queue(ch)
    for i in range(3):
        env.publish(ch, b"%d" % i, "", q)
    held = env.get(ch, q, no_ack=False)
    env.eventually_count(q, 2, ch)
    assert ch.queue_purge(q) == 2
    ch.basic_reject(held.delivery_tag, requeue=True)
    msg = env.get(ch, q)
    assert (msg.body, msg.delivery_info["redelivered"]) == (b"0", True)


def test_queue_purge_missing_is_404(env):
    """rabbitmq.com/amqp-0-9-1-reference.html#queue.purge: the queue must exist."""
    ch = env.channel()
    q = env.name("missing")
    with pytest.raises(NotFound) as exc:
        ch.queue_purge(q)
    assert exc.value.reply_text == no_queue(env, q)


def test_bind_missing_exchange_is_404(env):
    """rabbitmq.com/amqp-0-9-1-reference.html#queue.bind: the exchange must exist."""
    ch = env.channel()
    q = env.queue(ch)
    ex = env.name("missing")
    with pytest.raises(NotFound) as exc:
        ch.queue_bind(q, ex, "k")
    assert exc.value.reply_text == no_exchange(env, ex)


def test_bind_missing_queue_is_404(env):
    """rabbitmq.com/amqp-0-9-1-reference.html#queue.bind: the queue must exist."""
    ch = env.channel()
    ex = env.exchange(ch, "direct")
    q = env.name("missing")
    with pytest.raises(NotFound) as exc:
        ch.queue_bind(q, ex, "k")
    assert exc.value.reply_text == no_queue(env, q)


def test_exchange_bind_missing_destination_is_404(env):
    """rabbitmq.com/e2e.html: both exchanges of an exchange binding must exist."""
    ch = env.channel()
    src = env.exchange(ch, "direct")
    dst = env.name("missing")
    with pytest.raises(NotFound) as exc:
        ch.exchange_bind(dst, src, "k")
    assert exc.value.reply_text == no_exchange(env, dst)
