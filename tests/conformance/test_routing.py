"""Routing: every exchange type, the default and amq.* exchanges, exchange-to-exchange bindings,
alternate exchanges and internal exchanges."""

from __future__ import annotations

import pytest
from amqp.exceptions import AccessRefused, NotFound, PreconditionFailed


def routed(env, ch, exchange_type, binding_key, routing_key, arguments=None, headers=None):
    """Bind a fresh queue with ``binding_key`` and publish with ``routing_key``: delivered?"""
    ex = env.exchange(ch, exchange_type)
    q = env.queue(ch)
    ch.queue_bind(q, ex, binding_key, arguments=arguments)
    env.publish(ch, b"m", ex, routing_key, application_headers=headers)
    return env.get_none(ch, q) is not None


def test_direct_exchange_routes_on_exact_key(env):
    """rabbitmq.com/tutorials/amqp-concepts.html#exchange-direct: exact routing key match."""
    ch = env.channel()
    ex = env.exchange(ch, "direct")
    q1, q2 = env.queue(ch), env.queue(ch)
    ch.queue_bind(q1, ex, "black")
    ch.queue_bind(q2, ex, "green")
    ch.queue_bind(q2, ex, "black")
    env.publish(ch, b"b", ex, "black")
    env.publish(ch, b"g", ex, "green")
    env.publish(ch, b"o", ex, "orange")
    env.publish(ch, b"B", ex, "Black")
    assert [env.get_none(ch, q1).body, env.get_none(ch, q1)] == [b"b", None]
    assert env.get_none(ch, q2).body == b"b"
    assert env.get_none(ch, q2).body == b"g"
    assert env.get_none(ch, q2) is None


def test_direct_exchange_duplicate_bindings_deliver_once(env):
    """AMQP 0-9-1 spec 3.1.3: a message is delivered at most once per queue."""
    ch = env.channel()
    ex = env.exchange(ch, "direct")
    q = env.queue(ch)
    ch.queue_bind(q, ex, "k")
    ch.queue_bind(q, ex, "k")
    env.publish(ch, b"once", ex, "k")
    assert env.bodies(ch, q) == [b"once"]


def test_fanout_ignores_routing_key(env):
    """rabbitmq.com/tutorials/amqp-concepts.html#exchange-fanout: every bound queue gets a copy."""
    ch = env.channel()
    ex = env.exchange(ch, "fanout")
    queues = [env.queue(ch) for _ in range(3)]
    for i, q in enumerate(queues):
        ch.queue_bind(q, ex, f"ignored-{i}")
    env.publish(ch, b"all", ex, "whatever")
    assert [env.get_none(ch, q).body for q in queues] == [b"all"] * 3


def test_fanout_multiple_bindings_same_queue_deliver_once(env):
    """AMQP 0-9-1 spec 3.1.3: one copy per queue however many bindings match."""
    ch = env.channel()
    ex = env.exchange(ch, "fanout")
    q = env.queue(ch)
    ch.queue_bind(q, ex, "a")
    ch.queue_bind(q, ex, "b")
    env.publish(ch, b"one", ex, "")
    assert env.bodies(ch, q) == [b"one"]


TOPIC_CASES = [
    ("a.b.c", "a.b.c", True),
    ("a.*.c", "a.b.c", True),
    ("a.*.c", "a.c", False),
    ("a.*.c", "a..c", True),
    ("a.#", "a", True),
    ("a.#", "a.b.c", True),
    ("a.#", "ab", False),
    ("#", "", True),
    ("#", "x.y.z", True),
    ("*", "", False),
    ("*", "a.b", False),
    ("*.b", "b", False),
    ("a.*", "a.", True),
    ("a..c", "a..c", True),
    ("#.c", "c", True),
    ("a.#.c", "a.c", True),
    ("a.#.c", "a.b.b.c", True),
    ("#.#", "a", True),
    ("*.#", "", False),
    ("a.b", "a.b.", False),
    ("A.b", "a.b", False),
    ("", "", True),
    ("", "a", False),
    ("#.*", "a", True),
    ("*.*", "a", False),
    ("a.#.a", "a", False),  # '#' never re-reads words before it (a mutant did)
    ("a.#.a", "a.a", True),
]


@pytest.mark.parametrize(("binding_key", "routing_key", "expected"), TOPIC_CASES)
def test_topic_matching(env, binding_key, routing_key, expected):
    """rabbitmq.com/tutorials/tutorial-five-python.html: '*' one word, '#' zero or more words."""
    ch = env.channel()
    assert routed(env, ch, "topic", binding_key, routing_key) is expected


HEADERS_CASES = [
    ({"x-match": "all", "a": 1, "b": "x"}, {"a": 1, "b": "x", "c": 2}, True),
    ({"x-match": "all", "a": 1, "b": "x"}, {"a": 1}, False),
    ({"x-match": "any", "a": 1, "b": "x"}, {"b": "x"}, True),
    ({"x-match": "any", "a": 1, "b": "x"}, {"c": 1}, False),
    ({"x-match": "any", "a": 1}, None, False),
    ({"a": 1}, {"a": 1}, True),  # x-match defaults to all
    ({"a": 1}, {"a": 2}, False),
    ({"x-match": "all", "a": 1}, {"a": "1"}, False),  # values are typed
    ({"x-match": "all", "a": True}, {"a": 1}, False),
    ({"x-match": "all", "a": 2**40}, {"a": 2**40}, True),
    ({"x-match": "all", "a": 7}, {"a": 2**40}, False),
    ({"x-match": "all"}, None, True),  # no keys: all matches everything
    ({"x-match": "any"}, {"a": 1}, False),  # no keys: any matches nothing
    ({"x-match": "all", "a": None}, {"a": "anything"}, True),  # void: presence only
    ({"x-match": "all", "a": None}, {"b": 1}, False),
    ({"x-match": "all", "x-k": "v"}, {}, True),  # x- args ignored by all
    ({"x-match": "any", "x-k": "v", "a": 1}, {"x-k": "v"}, False),
    ({"x-match": "all-with-x", "x-k": "v"}, {}, False),
    ({"x-match": "all-with-x", "x-k": "v"}, {"x-k": "v"}, True),
    ({"x-match": "any-with-x", "x-k": "v", "a": 1}, {"x-k": "v"}, True),
    ({"x-match": "all", "a": "x"}, {"a": b"x"}, True),  # shortstr/longstr/bytes are one class
    # Issue 15: x-match defaults to all with two keys too (a mutant defaulting to any survived).
    ({"a": 1, "b": "x"}, {"a": 1}, False),
    ({"a": 1, "b": "x"}, {"b": "x"}, False),
    ({"a": 1, "b": "x"}, {"a": 1, "b": "x"}, True),
    # x-match given as bytes (py-amqp sends it as a longstr) is the same word.
    ({"x-match": b"all", "a": 1, "b": "x"}, {"a": 1}, False),
    ({"x-match": b"any", "a": 1, "b": "x"}, {"a": 1}, True),
    # bools equal bools
    ({"x-match": "all", "a": True}, {"a": True}, True),
    ({"x-match": "all", "a": False}, {"a": True}, False),
    # tables compare key by key, arrays element by element, never across types
    ({"x-match": "all", "t": {"k": 1}}, {"t": {"k": 1}}, True),
    ({"x-match": "all", "t": {"k": 1}}, {"t": {"k": 2}}, False),
    ({"x-match": "all", "t": {"k": 1}}, {"t": {"j": 1}}, False),
    ({"x-match": "all", "t": {"k": 1}}, {"t": {"k": 1, "j": 2}}, False),
    ({"x-match": "all", "t": {"k": 1}}, {"t": "k"}, False),
    ({"x-match": "all", "t": {"k": 1}}, {"t": [1]}, False),
    ({"x-match": "all", "l": [1, "a"]}, {"l": [1, "a"]}, True),
    ({"x-match": "all", "l": [1, "a"]}, {"l": [1, "b"]}, False),
    ({"x-match": "all", "l": [1]}, {"l": [1, 1]}, False),
    ({"x-match": "all", "l": [1]}, {"l": 1}, False),
]


@pytest.mark.parametrize(("arguments", "headers", "expected"), HEADERS_CASES)
def test_headers_matching(env, arguments, headers, expected):
    """rabbitmq.com/tutorials/amqp-concepts.html#exchange-headers: x-match all/any(-with-x)."""
    ch = env.channel()
    assert routed(env, ch, "headers", "", "rk", arguments=arguments, headers=headers) is expected


def test_bindings_differing_only_in_argument_values_are_distinct(env):
    """AMQP 0-9-1 queue.bind: a binding is (exchange, queue, key, arguments); bindings that differ
    only in an argument's value (scalar, array element, or non-UTF-8 bytes) are separate
    bindings, and unbinding one leaves the other."""
    ch = env.channel()
    ex = env.exchange(ch, "headers")
    q = env.queue(ch)
    pairs = [({"a": 1}, {"a": 2}), ({"l": [1]}, {"l": [2]}), ({"b": b"\xff"}, {"b": b"\xfe"})]
    for first, second in pairs:
        ch.queue_bind(q, ex, "", arguments={"x-match": "all", **first})
        ch.queue_bind(q, ex, "", arguments={"x-match": "all", **second})
    for first, _ in pairs:
        ch.queue_unbind(q, ex, "", arguments={"x-match": "all", **first})
    for _, second in pairs:
        env.publish(ch, b"second", ex, "", application_headers=second)
    for first, _ in pairs:
        env.publish(ch, b"first", ex, "", application_headers=first)
    assert env.bodies(ch, q) == [b"second"] * len(pairs)


def test_same_key_bindings_with_other_arguments_each_keep_the_route(env):
    """AMQP 0-9-1 queue.bind: bindings with one key but other arguments are separate, so the
    queue stays routed until the last of them is removed (a binding count a mutant broke)."""
    ch = env.channel()
    ex = env.exchange(ch, "direct")
    q = env.queue(ch)
    variants = [{}, {"n": 1}, {"n": 2}]
    for arguments in variants:
        ch.queue_bind(q, ex, "k", arguments=arguments)
    routed_after = []
    for arguments in variants:
        ch.queue_unbind(q, ex, "k", arguments=arguments)
        env.publish(ch, b"m", ex, "k")
        routed_after.append(env.get_none(ch, q) is not None)
    assert routed_after == [True, True, False]


def test_unbinding_a_binding_that_does_not_exist_is_ok(env):
    """rabbitmq.com/amqp-0-9-1-reference.html#queue.unbind: unbinding what is not bound is a
    no-op (unbind-ok), and the channel stays usable."""
    ch = env.channel()
    ex = env.exchange(ch, "direct")
    q = env.queue(ch)
    ch.queue_unbind(q, ex, "never-bound")
    env.fence(ch)


def test_duplicate_binding_is_one_binding_for_auto_delete(env):
    """AMQP 0-9-1 queue.bind is idempotent: binding twice then unbinding once removes the only
    binding, so an auto-delete exchange goes away (rabbitmq.com/exchanges.html)."""
    ch = env.channel()
    ex = env.exchange(ch, "direct", auto_delete=True)
    q = env.queue(ch)
    ch.queue_bind(q, ex, "k")
    ch.queue_bind(q, ex, "k")
    ch.queue_unbind(q, ex, "k")
    with pytest.raises(NotFound):
        ch.exchange_declare(ex, "direct", passive=True)


def test_headers_exchange_ignores_routing_key(env):
    """rabbitmq.com/tutorials/amqp-concepts.html#exchange-headers: routing key is not used."""
    ch = env.channel()
    args = {"x-match": "all", "h": "v"}
    assert routed(env, ch, "headers", "bind-key", "other-key", args, {"h": "v"}) is True


def test_default_exchange_routes_to_queue_by_name(env):
    """rabbitmq.com/tutorials/amqp-concepts.html#exchange-default: implicit binding by name."""
    ch = env.channel()
    q = env.queue(ch)
    env.publish(ch, b"direct-to-queue", "", q)
    env.publish(ch, b"nowhere", "", env.name("missing"))
    msg = env.get_none(ch, q)
    assert (msg.body, msg.delivery_info["exchange"], msg.delivery_info["routing_key"]) == (
        b"direct-to-queue",
        "",
        q,
    )
    assert env.get_none(ch, q) is None


def test_default_exchange_cannot_be_bound(env):
    """rabbitmq.com/tutorials/amqp-concepts.html#exchange-default: no explicit bindings."""
    ch = env.channel()
    q = env.queue(ch)
    with pytest.raises(AccessRefused) as exc:
        ch.queue_bind(q, "", "k")
    assert exc.value.reply_code == 403
    assert exc.value.reply_text == (
        "ACCESS_REFUSED - operation not permitted on the default exchange"
    )


def test_default_exchange_cannot_be_unbound(env):
    """rabbitmq.com/tutorials/amqp-concepts.html#exchange-default: no explicit bindings."""
    ch = env.channel()
    q = env.queue(ch)
    with pytest.raises(AccessRefused) as exc:
        ch.queue_unbind(q, "", q)
    assert exc.value.reply_text == (
        "ACCESS_REFUSED - operation not permitted on the default exchange"
    )


def test_default_exchange_cannot_be_deleted(env):
    """rabbitmq.com/tutorials/amqp-concepts.html#exchange-default: it cannot be deleted."""
    ch = env.channel()
    with pytest.raises(AccessRefused) as exc:
        ch.exchange_delete("")
    assert exc.value.reply_text == (
        "ACCESS_REFUSED - operation not permitted on the default exchange"
    )


def test_default_exchange_cannot_be_declared(env):
    """rabbitmq.com/tutorials/amqp-concepts.html#exchange-default: it is predeclared."""
    ch = env.channel()
    with pytest.raises(AccessRefused) as exc:
        ch.exchange_declare("", "direct")
    assert exc.value.reply_text == (
        "ACCESS_REFUSED - operation not permitted on the default exchange"
    )


@pytest.mark.parametrize(
    ("name", "type_"),
    [
        ("amq.direct", "direct"),
        ("amq.fanout", "fanout"),
        ("amq.topic", "topic"),
        ("amq.headers", "headers"),
        ("amq.match", "headers"),
    ],
)
def test_amq_exchanges_are_predeclared(env, name, type_):
    """AMQP 0-9-1 spec 3.1.3.1: the server predeclares amq.direct/fanout/topic/headers/match."""
    ch = env.channel()
    ch.exchange_declare(name, type_, passive=True)
    q = env.queue(ch)
    args = {"x-match": "all"} if type_ == "headers" else None
    ch.queue_bind(q, name, "k", arguments=args)
    env.publish(ch, b"via-" + name.encode(), name, "k")
    assert env.get_none(ch, q).body == b"via-" + name.encode()
    ch.queue_unbind(q, name, "k", arguments=args)


def test_amq_prefix_is_reserved_for_exchanges(env):
    """rabbitmq.com/amqp-0-9-1-reference.html#exchange.declare.exchange: 'amq.' is reserved."""
    ch = env.channel()
    name = "amq." + env.name("custom")
    with pytest.raises(AccessRefused) as exc:
        ch.exchange_declare(name, "direct")
    assert exc.value.reply_code == 403
    assert exc.value.reply_text == (
        f"ACCESS_REFUSED - exchange name '{name}' contains reserved prefix 'amq.*'"
    )


def test_amq_exchange_equivalent_redeclare_is_allowed(env):
    """rabbitmq.com/amqp-0-9-1-reference.html#exchange.declare: equivalent redeclare is a no-op."""
    ch = env.channel()
    ch.exchange_declare("amq.direct", "direct", durable=True, auto_delete=False)
    with pytest.raises(PreconditionFailed) as exc:
        ch.exchange_declare("amq.direct", "direct", durable=True)  # py-amqp: auto_delete=True
    assert exc.value.reply_text == (
        "PRECONDITION_FAILED - inequivalent arg 'auto_delete' for exchange 'amq.direct' "
        "in vhost '/': received 'true' but current is 'false'"
    )


def test_exchange_to_exchange_binding_routes(env):
    """rabbitmq.com/e2e.html: a destination exchange routes what the source routes to it."""
    ch = env.channel()
    src = env.exchange(ch, "topic")
    dst = env.exchange(ch, "direct")
    q = env.queue(ch)
    ch.exchange_bind(dst, src, "logs.*")
    ch.queue_bind(q, dst, "logs.error")
    env.publish(ch, b"e", src, "logs.error")
    env.publish(ch, b"i", src, "logs.info")
    env.publish(ch, b"x", src, "other.error")
    assert env.get_none(ch, q).body == b"e"
    assert env.get_none(ch, q) is None


def test_exchange_to_exchange_diamond_delivers_once(env):
    """rabbitmq.com/e2e.html: a queue reached through several paths gets one copy."""
    ch = env.channel()
    top, left, right, bottom = (env.exchange(ch, "fanout") for _ in range(4))
    ch.exchange_bind(left, top, "")
    ch.exchange_bind(right, top, "")
    ch.exchange_bind(bottom, left, "")
    ch.exchange_bind(bottom, right, "")
    q = env.queue(ch)
    ch.queue_bind(q, bottom, "")
    ch.queue_bind(q, left, "")
    env.publish(ch, b"diamond", top, "")
    assert env.bodies(ch, q) == [b"diamond"]


def test_exchange_to_exchange_cycle_terminates(env):
    """rabbitmq.com/e2e.html: cycles are allowed; each message visits an exchange once."""
    ch = env.channel()
    a, b = env.exchange(ch, "fanout"), env.exchange(ch, "fanout")
    ch.exchange_bind(b, a, "")
    ch.exchange_bind(a, b, "")
    qa, qb = env.queue(ch), env.queue(ch)
    ch.queue_bind(qa, a, "")
    ch.queue_bind(qb, b, "")
    env.publish(ch, b"loop", a, "")
    env.publish(ch, b"loop2", b, "")
    assert env.bodies(ch, qa) == [b"loop", b"loop2"]
    assert env.bodies(ch, qb) == [b"loop", b"loop2"]


def test_exchange_to_exchange_cycle_behind_the_source_terminates(env):
    """rabbitmq.com/e2e.html: a cycle the message enters one hop after the exchange it was
    published to is followed once too (each exchange is visited once, not only the first)."""
    ch = env.channel()
    front, b, c = (env.exchange(ch, "fanout") for _ in range(3))
    ch.exchange_bind(b, front, "")
    ch.exchange_bind(c, b, "")
    ch.exchange_bind(b, c, "")
    q = env.queue(ch)
    ch.queue_bind(q, c, "")
    env.publish(ch, b"once", front, "")
    assert env.bodies(ch, q) == [b"once"]


def test_exchange_to_exchange_headers_destination_matches_the_message_headers(env):
    """rabbitmq.com/e2e.html: a headers exchange reached through an exchange binding matches
    the message's headers, as when it is published to directly."""
    ch = env.channel()
    front = env.exchange(ch, "fanout")
    headers_ex = env.exchange(ch, "headers")
    ch.exchange_bind(headers_ex, front, "")
    q = env.queue(ch)
    ch.queue_bind(q, headers_ex, "", arguments={"x-match": "all", "kind": "a"})
    env.publish(ch, b"a", front, "", application_headers={"kind": "a"})
    env.publish(ch, b"b", front, "", application_headers={"kind": "b"})
    assert env.bodies(ch, q) == [b"a"]


def test_exchange_unbind_stops_routing(env):
    """rabbitmq.com/amqp-0-9-1-reference.html#exchange.unbind: removes the e2e binding."""
    ch = env.channel()
    src, dst = env.exchange(ch, "direct"), env.exchange(ch, "fanout")
    q = env.queue(ch)
    ch.queue_bind(q, dst, "")
    ch.exchange_bind(dst, src, "k")
    env.publish(ch, b"1", src, "k")
    ch.exchange_unbind(dst, src, "k")
    env.publish(ch, b"2", src, "k")
    assert env.get_none(ch, q).body == b"1"
    assert env.get_none(ch, q) is None


def test_queue_unbind_stops_routing(env):
    """rabbitmq.com/amqp-0-9-1-reference.html#queue.unbind: removes the binding."""
    ch = env.channel()
    ex = env.exchange(ch, "direct")
    q = env.queue(ch)
    ch.queue_bind(q, ex, "k")
    env.publish(ch, b"1", ex, "k")
    ch.queue_unbind(q, ex, "k")
    env.publish(ch, b"2", ex, "k")
    ch.queue_unbind(q, ex, "never-bound")  # unbinding a missing binding is not an error
    assert env.get_none(ch, q).body == b"1"
    assert env.get_none(ch, q) is None


def test_alternate_exchange_receives_unroutable(env):
    """rabbitmq.com/ae.html: unroutable messages go to the alternate exchange."""
    ch = env.channel()
    ae = env.exchange(ch, "fanout")
    ex = env.exchange(ch, "direct", arguments={"alternate-exchange": ae})
    routed_q, ae_q = env.queue(ch), env.queue(ch)
    ch.queue_bind(routed_q, ex, "known")
    ch.queue_bind(ae_q, ae, "")
    env.publish(ch, b"k", ex, "known")
    env.publish(ch, b"u", ex, "unknown")
    assert env.get_none(ch, routed_q).body == b"k"
    assert env.get_none(ch, routed_q) is None
    msg = env.get_none(ch, ae_q)
    assert (msg.body, msg.delivery_info["exchange"], msg.delivery_info["routing_key"]) == (
        b"u",
        ex,
        "unknown",
    )
    assert env.get_none(ch, ae_q) is None


def test_alternate_exchange_not_used_for_a_routable_message(env):
    """rabbitmq.com/ae.html: only a message the exchange cannot route goes to its alternate
    exchange; one routed to several queues does not reach it too."""
    ch = env.channel()
    ae = env.exchange(ch, "fanout")
    ex = env.exchange(ch, "direct", arguments={"alternate-exchange": ae})
    q1, q2, ae_q = env.queue(ch), env.queue(ch), env.queue(ch)
    ch.queue_bind(q1, ex, "k")
    ch.queue_bind(q2, ex, "k")
    ch.queue_bind(ae_q, ae, "")
    env.publish(ch, b"routed", ex, "k")
    assert env.bodies(ch, q1) == [b"routed"]
    assert env.bodies(ch, q2) == [b"routed"]
    assert env.bodies(ch, ae_q) == []


def test_alternate_exchange_missing_drops_silently(env):
    """rabbitmq.com/ae.html: a missing alternate exchange is not an error."""
    ch = env.channel()
    ex = env.exchange(ch, "direct", arguments={"alternate-exchange": env.name("absent")})
    q = env.queue(ch)
    ch.queue_bind(q, ex, "k")
    env.publish(ch, b"lost", ex, "nope")
    env.publish(ch, b"kept", ex, "k")
    assert env.get_none(ch, q).body == b"kept"


def test_alternate_exchange_mandatory_not_returned(env):
    """rabbitmq.com/ae.html: routed via the AE counts as routed, so no basic.return."""
    ch = env.channel()
    confirms = env.confirms(ch)
    ae = env.exchange(ch, "fanout")
    ex = env.exchange(ch, "direct", arguments={"alternate-exchange": ae})
    ae_q = env.queue(ch)
    ch.queue_bind(ae_q, ae, "")
    env.publish(ch, b"m", ex, "unbound", mandatory=True)
    assert env.drain(until=confirms.settled(1))
    assert confirms.returned == []
    assert confirms.results(1) == ["ack"]


def test_internal_exchange_rejects_direct_publish(env):
    """rabbitmq.com/amqp-0-9-1-reference.html#exchange.declare.internal: clients cannot publish."""
    ch = env.channel()
    internal = env.internal_exchange(ch, "fanout")
    with pytest.raises(AccessRefused) as exc:
        env.publish(ch, b"m", internal, "")
        ch.queue_declare(env.name("sync"), exclusive=True)  # the error arrives asynchronously
    assert exc.value.reply_code == 403
    assert exc.value.reply_text == (
        f"ACCESS_REFUSED - cannot publish to internal exchange '{internal}' in vhost '/'"
    )


def test_internal_exchange_routes_via_e2e_binding(env):
    """rabbitmq.com/e2e.html: internal exchanges are reachable through exchange bindings."""
    ch = env.channel()
    internal = env.internal_exchange(ch, "fanout")
    front = env.exchange(ch, "direct")
    q = env.queue(ch)
    ch.exchange_bind(internal, front, "k")
    ch.queue_bind(q, internal, "")
    env.publish(ch, b"through", front, "k")
    assert env.get_none(ch, q).body == b"through"


def test_auto_delete_exchange_deleted_after_last_binding_removed(env):
    """rabbitmq.com/amqp-0-9-1-reference.html#exchange.declare.auto-delete (py-amqp default)."""
    ch = env.channel()
    ex = env.name("autodel")
    ch.exchange_declare(ex, "direct")  # py-amqp: auto_delete=True unless told otherwise
    q = env.queue(ch)
    ch.queue_bind(q, ex, "a")
    ch.queue_bind(q, ex, "b")
    ch.queue_unbind(q, ex, "a")
    ch.exchange_declare(ex, "direct", passive=True)
    ch.queue_unbind(q, ex, "b")
    with pytest.raises(NotFound) as exc:
        ch.exchange_declare(ex, "direct", passive=True)
    assert exc.value.reply_text == f"NOT_FOUND - no exchange '{ex}' in vhost '/'"


def test_auto_delete_exchange_deleted_with_the_queue_holding_its_last_binding(env):
    """rabbitmq.com/exchanges.html: deleting a queue removes its bindings; when one of them was
    an auto-delete exchange's last, the exchange goes too, even after an earlier unbind of
    another binding between the two."""
    ch = env.channel()
    ex = env.exchange(ch, "direct", auto_delete=True)
    q = env.queue(ch)
    ch.queue_bind(q, ex, "a")
    ch.queue_bind(q, ex, "b")
    ch.queue_unbind(q, ex, "a")
    ch.queue_delete(q)
    with pytest.raises(NotFound) as exc:
        ch.exchange_declare(ex, "direct", passive=True)
    assert exc.value.reply_text == f"NOT_FOUND - no exchange '{ex}' in vhost '/'"


@pytest.mark.parametrize("side", ["source", "destination"])
def test_default_exchange_cannot_be_in_an_exchange_binding(env, side):
    """rabbitmq.com/tutorials/amqp-concepts.html#exchange-default: exchange.bind and
    exchange.unbind refuse the default exchange on either side (403, naming the method)."""
    ch = env.channel()
    ex = env.exchange(ch, "fanout")
    pair = (
        {"source": "", "destination": ex} if side == "source" else {"source": ex, "destination": ""}
    )
    for method, sig in ((ch.exchange_unbind, (40, 40)), (ch.exchange_bind, (40, 30))):
        with pytest.raises(AccessRefused) as exc:
            method(**pair)
        assert (exc.value.reply_text, exc.value.method_sig) == (
            "ACCESS_REFUSED - operation not permitted on the default exchange",
            sig,
        )
        ch = env.channel()


def test_unbinding_from_or_to_a_missing_exchange_is_ok(env):
    """exchange.unbind and queue.unbind naming an exchange that does not exist succeed (as
    for a binding that does not exist, rabbitmq.com/amqp-0-9-1-reference.html#queue.unbind)."""
    ch = env.channel()
    ex = env.exchange(ch, "fanout")
    q = env.queue(ch)
    missing = env.name("missing")
    ch.exchange_unbind(missing, ex, "k")
    ch.exchange_unbind(ex, missing, "k")
    ch.queue_unbind(q, missing, "k")
    env.fence(ch)
