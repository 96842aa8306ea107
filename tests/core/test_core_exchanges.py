"""Exchange routing: direct, fanout, topic, headers, default/amq.* rules, e2e bindings, AE.

Pins AMQP 0-9-1 spec section 3.1.3 (exchange types), https://www.rabbitmq.com/tutorials/amqp-
concepts.html#exchanges, https://www.rabbitmq.com/e2e.html and https://www.rabbitmq.com/ae.html,
with the matching rules measured on RabbitMQ 3.10 (docs/rabbitmq-facts.md §4, §14-16).
"""

from __future__ import annotations

from typing import Any

import pytest
from _core_helpers import drain, get_bodies

from simamqp.core import BasicReturn, Broker, Channel, Connection
from simamqp.core.errors import AccessRefused, PreconditionFailed


def routed(
    ch: Channel, exchange: str, routing_key: str = "", headers: dict[str, Any] | None = None
) -> list[str]:
    """Publish once; the names of the queues that got a copy (and empty them)."""
    broker = ch.broker
    names = [n for n in broker.queue_names()]
    props = {"application_headers": headers} if headers is not None else None
    ch.basic_publish(b"probe", exchange, routing_key, properties=props)
    hit = [n for n in names if get_bodies(ch, n)]
    return hit


def test_direct_exchange_routes_on_exact_key(ch: Channel) -> None:
    """AMQP 0-9-1 spec 3.1.3.1: direct routes when routing key == binding key (exact,
    case-sensitive); one queue may be bound with several keys and gets one copy."""
    ch.exchange_declare("x", "direct")
    for q in ("a", "b"):
        ch.queue_declare(q)
    ch.queue_bind("a", "x", "k")
    ch.queue_bind("a", "x", "k2")
    ch.queue_bind("b", "x", "k")
    assert routed(ch, "x", "k") == ["a", "b"]
    assert routed(ch, "x", "k2") == ["a"]
    assert routed(ch, "x", "K") == []


def test_fanout_ignores_the_routing_key(ch: Channel) -> None:
    """AMQP 0-9-1 spec 3.1.3.2: fanout copies to every bound queue whatever the key."""
    ch.exchange_declare("f", "fanout")
    for q in ("a", "b"):
        ch.queue_declare(q)
        ch.queue_bind(q, "f", "ignored")
    assert routed(ch, "f", "anything") == ["a", "b"]


MATCHES = [
    ("a.#", "a"),
    ("#.a", "a"),
    ("a.*.b", "a..b"),
    ("#", ""),
    ("a.#.b", "a.b"),
    ("a.*", "a."),
    ("a.#", "a."),
    ("*.*", "."),
    ("#.#", "a"),
    ("a.#.#.b", "a.b"),
    ("#.b.#", "b"),
    ("*.#", "a"),
    ("", ""),
    ("#.*", "a"),
    ("a.*.#", "a.b"),
    ("a.#.c", "a.b.b.c"),
    ("#.*.b", ".b"),
]
NO_MATCHES = [
    ("*", ""),
    ("a.*.b", "a.b"),
    ("*.#", ""),
    ("a", "a."),
    ("#.*", ""),
    ("a.*.#", "a"),
    ("A", "a"),
    ("*.b", "..b"),
    ("a#", "a"),
    ("a*", "a"),
    ("a.b*", "a.b"),
    ("a.b*", "a.bc"),
    ("a.#b", "a.b"),
]


@pytest.mark.parametrize(("pattern", "key"), MATCHES)
def test_topic_matches(ch: Channel, pattern: str, key: str) -> None:
    """https://www.rabbitmq.com/tutorials/tutorial-five-python.html: `*` is one word, `#` zero
    or more; empty words are words (measured on RabbitMQ 3.10, facts §15)."""
    ch.exchange_declare("t", "topic")
    ch.queue_declare("q")
    ch.queue_bind("q", "t", pattern)
    assert routed(ch, "t", key) == ["q"]


@pytest.mark.parametrize(("pattern", "key"), NO_MATCHES)
def test_topic_does_not_match(ch: Channel, pattern: str, key: str) -> None:
    """Wildcards only count as whole words; matching is case-sensitive (facts §15)."""
    ch.exchange_declare("t", "topic")
    ch.queue_declare("q")
    ch.queue_bind("q", "t", pattern)
    assert routed(ch, "t", key) == []


def test_topic_routing_uses_a_trie_not_a_scan(monkeypatch: pytest.MonkeyPatch) -> None:
    """Issue 3: topic routing must not scan every binding per message. With 5000 distinct
    bindings, routing one key visits only the trie nodes on its path."""
    from simamqp.core import exchanges

    broker = Broker(seed=1)
    ch = broker.connect().channel()
    ch.exchange_declare("t", "topic")
    ch.queue_declare("q")
    for i in range(5000):
        ch.queue_bind("q", "t", f"k{i}.*")
    visits = [0]
    real = exchanges._trie_match

    def counting(*args: Any) -> None:
        visits[0] += 1
        real(*args)

    monkeypatch.setattr(exchanges, "_trie_match", counting)
    assert routed(ch, "t", "k4999.x") == ["q"]
    assert visits[0] < 10


@pytest.mark.parametrize(
    ("binding", "headers", "match"),
    [
        ({"x-match": "all", "a": 1, "b": "x"}, {"a": 1, "b": "x", "c": 0}, True),
        ({"x-match": "all", "a": 1, "b": "x"}, {"a": 1}, False),
        ({"x-match": "any", "a": 1, "b": "x"}, {"a": 2, "b": "x"}, True),
        ({"x-match": "any", "a": 1, "b": "x"}, {"a": 2}, False),
        ({"a": 1}, {"a": 1}, True),  # x-match defaults to all
        ({"x-match": "all"}, None, True),  # all of nothing matches everything
        ({"x-match": "any"}, {"a": 1}, False),  # any of nothing matches nothing
        ({"x-match": "all", "x-foo": "1"}, {}, True),  # x- keys ignored by all
        ({"x-match": "any", "x-foo": "1"}, {"x-foo": "1"}, False),  # ... and by any
        ({"x-match": "all-with-x", "x-foo": "1", "a": 1}, {"a": 1}, False),
        ({"x-match": "all-with-x", "x-foo": "1", "a": 1}, {"a": 1, "x-foo": "1"}, True),
        ({"x-match": "any-with-x", "x-foo": "1"}, {"x-foo": "1"}, True),
        # Typed comparison as Erlang's ==: int 1 == float 1.0, but not '1' nor True.
        ({"a": 1}, {"a": 1.0}, True),
        ({"a": 1}, {"a": "1"}, False),
        ({"a": 1}, {"a": True}, False),
        ({"a": True}, {"a": 1}, False),
        ({"a": "1"}, {"a": b"1"}, True),
        ({"a": [1]}, {"a": [1]}, True),
        ({"a": {"b": 1}}, {"a": {"b": 1}}, True),
        # A void binding value is a presence check.
        ({"a": None}, {"a": "anything"}, True),
        ({"a": None}, {"a": None}, True),
        ({"a": None}, {"b": 1}, False),
    ],
)
def test_headers_exchange_matching(
    ch: Channel, binding: dict[str, Any], headers: dict[str, Any] | None, match: bool
) -> None:
    """AMQP 0-9-1 spec 3.1.3.3 and https://www.rabbitmq.com/tutorials/amqp-concepts.html#
    exchange-headers: x-match all/any/all-with-x/any-with-x with RabbitMQ's typed value
    comparison (measured, facts §16)."""
    ch.exchange_declare("h", "headers")
    ch.queue_declare("q")
    ch.queue_bind("q", "h", "", binding)
    assert routed(ch, "h", "ignored", headers) == (["q"] if match else [])


@pytest.mark.parametrize(
    ("x_match", "text"),
    [
        (
            "bogus",
            'Invalid x-match field value <<"bogus">>; expected all, any, all-with-x, or any-with-x',
        ),
        (
            "ALL",
            'Invalid x-match field value <<"ALL">>; expected all, any, all-with-x, or any-with-x',
        ),
        (1, "Invalid x-match field type signedint (value 1); expected longstr"),
    ],
)
def test_headers_binding_with_bad_x_match_is_406(ch: Channel, x_match: Any, text: str) -> None:
    """rabbit_exchange_type_headers:validate_binding (facts §7)."""
    ch.exchange_declare("h", "headers")
    ch.queue_declare("q")
    with pytest.raises(PreconditionFailed) as info:
        ch.queue_bind("q", "h", "", {"x-match": x_match})
    assert info.value.reply_text == "PRECONDITION_FAILED - " + text
    assert info.value.method == (50, 20)


def test_default_exchange_routes_by_queue_name_and_cannot_be_touched(
    conn: Connection, ch: Channel
) -> None:
    """AMQP 0-9-1 spec 3.1.3.1 (default exchange): every queue is bound by its name; it cannot
    be declared, deleted or bound (403 `operation not permitted on the default exchange`)."""
    ch.queue_declare("q")
    assert routed(ch, "", "q") == ["q"]
    for call in (
        lambda c: c.exchange_declare("", "direct"),
        lambda c: c.exchange_declare("", "direct", passive=True),
        lambda c: c.queue_unbind("q", ""),
        lambda c: c.exchange_bind("", "amq.direct"),
    ):
        c = conn.channel()
        with pytest.raises(AccessRefused) as info:
            call(c)
        assert info.value.reply_text == (
            "ACCESS_REFUSED - operation not permitted on the default exchange"
        )


def test_predeclared_amq_exchanges(broker: Broker, conn: Connection, ch: Channel) -> None:
    """Every vhost has amq.direct/fanout/topic/headers/match (AMQP 0-9-1 spec 3.1.3) and
    amq.rabbitmq.trace; all durable, with RabbitMQ's flags (facts §4). Redeclaring one with
    matching flags is fine; with py-amqp's defaults (transient) it is 406."""
    expected = {
        "amq.direct": "direct",
        "amq.fanout": "fanout",
        "amq.topic": "topic",
        "amq.headers": "headers",
        "amq.match": "headers",
        "amq.rabbitmq.trace": "topic",
    }
    for name, kind in expected.items():
        info = broker.exchange(name)
        assert (info.type, info.durable, info.auto_delete) == (kind, True, False)
        ch.exchange_declare(name, "direct", passive=True)
    assert broker.exchange("amq.rabbitmq.trace").internal
    ch.exchange_declare("amq.direct", "direct", durable=True, auto_delete=False)
    with pytest.raises(PreconditionFailed) as info:
        ch.exchange_declare("amq.direct", "direct")
    assert info.value.reply_text == (
        "PRECONDITION_FAILED - inequivalent arg 'durable' for exchange 'amq.direct' in vhost "
        "'/': received 'false' but current is 'true'"
    )
    c2 = conn.channel()
    c2.exchange_declare("AMQ.foo", "direct")  # the reserved prefix is case-sensitive
    c2.queue_declare("amqfoo")


def test_missing_reserved_names_are_404_when_passive(ch: Channel, conn: Connection) -> None:
    """Passive declare of a missing amq.* name is the plain 404, not 403 (facts §4)."""
    with pytest.raises(Exception) as info:
        ch.exchange_declare("amq.foo", "direct", passive=True)
    assert getattr(info.value, "reply_code", None) == 404


def test_exchange_delete_if_unused_and_missing(
    broker: Broker, conn: Connection, ch: Channel
) -> None:
    """exchange.delete if-unused (AMQP 0-9-1 spec 1.6.2.3): 406 `in use` while it is a binding
    source; being only a destination does not count; deleting a missing exchange is OK (§8)."""
    ch.exchange_delete("never-declared")
    ch.exchange_declare("src", "fanout")
    ch.exchange_declare("dst", "fanout")
    ch.exchange_bind("dst", "src")
    ch.exchange_delete("dst", if_unused=True)
    assert "dst" not in broker.exchange_names()
    assert broker.exchange("src").bindings == ()
    ch.queue_declare("q")
    ch.queue_bind("q", "src")
    with pytest.raises(PreconditionFailed) as info:
        ch.exchange_delete("src", if_unused=True)
    assert info.value.reply_text == "PRECONDITION_FAILED - exchange 'src' in vhost '/' in use"


def test_auto_delete_exchange_goes_with_its_last_source_binding(
    broker: Broker, ch: Channel
) -> None:
    """https://www.rabbitmq.com/exchanges.html (auto-delete): deleted when its last binding as
    source goes; never bound survives; losing a destination binding does not count (§14)."""
    ch.exchange_declare("ad", "direct", auto_delete=True)
    ch.exchange_declare("up", "direct")
    ch.queue_declare("q1")
    ch.queue_declare("q2")
    assert "ad" in broker.exchange_names()
    ch.exchange_bind("ad", "up", "k")  # ad as destination
    ch.queue_bind("q1", "ad", "k")
    ch.queue_bind("q2", "ad", "k")
    ch.exchange_unbind("ad", "up", "k")
    assert "ad" in broker.exchange_names()
    ch.queue_unbind("q1", "ad", "k")
    assert "ad" in broker.exchange_names()
    ch.queue_delete("q2")
    assert "ad" not in broker.exchange_names()


def test_e2e_diamond_delivers_once(ch: Channel) -> None:
    """https://www.rabbitmq.com/e2e.html: a message reaching a queue through several paths
    (a diamond of exchange-to-exchange bindings) is enqueued once."""
    ch.exchange_declare("top", "fanout")
    ch.exchange_declare("left", "fanout")
    ch.exchange_declare("right", "direct")
    ch.exchange_declare("bottom", "topic")
    ch.exchange_bind("left", "top")
    ch.exchange_bind("right", "top", "k")
    ch.exchange_bind("bottom", "left", "#")
    ch.exchange_bind("bottom", "right", "k")
    ch.queue_declare("q")
    ch.queue_bind("q", "bottom", "#")
    ch.queue_bind("q", "left")
    ch.basic_publish(b"m", "top", "k")
    assert get_bodies(ch, "q") == [b"m"]


def test_e2e_cycle_terminates_and_delivers_once(ch: Channel) -> None:
    """https://www.rabbitmq.com/e2e.html: cycles are allowed; each exchange is visited once."""
    ch.exchange_declare("a", "fanout")
    ch.exchange_declare("b", "fanout")
    ch.exchange_bind("b", "a")
    ch.exchange_bind("a", "b")
    ch.queue_declare("q")
    ch.queue_bind("q", "b")
    ch.basic_publish(b"m", "a", "")
    ch.basic_publish(b"n", "b", "")
    assert get_bodies(ch, "q") == [b"m", b"n"]


def test_e2e_topic_to_direct_filters(ch: Channel) -> None:
    """https://www.rabbitmq.com/e2e.html: the destination exchange routes with its own rules."""
    ch.exchange_declare("t", "topic")
    ch.exchange_declare("d", "direct")
    ch.exchange_bind("d", "t", "a.*")
    ch.queue_declare("q")
    ch.queue_bind("q", "d", "a.x")
    assert routed(ch, "t", "a.x") == ["q"]
    assert routed(ch, "t", "a.y") == []
    assert routed(ch, "t", "b.x") == []


def test_alternate_exchange_takes_unroutable_messages(conn: Connection, ch: Channel) -> None:
    """https://www.rabbitmq.com/ae.html: a message the exchange cannot route goes to its
    alternate-exchange; it counts as routed (no basic.return for mandatory)."""
    ch.exchange_declare("ae", "fanout")
    ch.queue_declare("unrouted")
    ch.queue_bind("unrouted", "ae")
    ch.exchange_declare("x", "direct", arguments={"alternate-exchange": "ae"})
    ch.queue_declare("q")
    ch.queue_bind("q", "x", "k")
    ch.basic_publish(b"routed", "x", "k", mandatory=True)
    ch.basic_publish(b"lost", "x", "nope", mandatory=True)
    assert drain(conn) == []
    assert get_bodies(ch, "q") == [b"routed"]
    assert get_bodies(ch, "unrouted") == [b"lost"]


def test_missing_alternate_exchange_means_unroutable(conn: Connection, ch: Channel) -> None:
    """https://www.rabbitmq.com/ae.html: an AE that does not exist is ignored, so a mandatory
    message comes back with 312 NO_ROUTE."""
    ch.exchange_declare("x", "direct", arguments={"alternate-exchange": "nope"})
    ch.basic_publish(b"m", "x", "k", mandatory=True)
    [ret] = drain(conn)
    assert isinstance(ret, BasicReturn)
    assert (ret.reply_code, ret.reply_text) == (312, "NO_ROUTE")


def test_alternate_exchange_chain_and_cycle(ch: Channel) -> None:
    """https://www.rabbitmq.com/ae.html: AEs chain; a cycle of AEs terminates."""
    ch.exchange_declare("ae2", "fanout")
    ch.exchange_declare("ae1", "direct", arguments={"alternate-exchange": "ae2"})
    ch.exchange_declare("x", "direct", arguments={"alternate-exchange": "ae1"})
    ch.queue_declare("last")
    ch.queue_bind("last", "ae2")
    assert routed(ch, "x", "k") == ["last"]
    ch.exchange_declare("c1", "direct", arguments={"alternate-exchange": "c2"})
    ch.exchange_declare("c2", "direct", arguments={"alternate-exchange": "c1"})
    assert routed(ch, "c1", "k") == []


def test_a_duplicate_binding_is_traced_once() -> None:
    """queue.bind is idempotent: binding the same (exchange, queue, key, arguments) twice adds
    one binding and one ``bind`` trace event (a mutant reporting the duplicate as new survived)."""
    from simamqp.core import Broker

    broker = Broker(seed=0)
    ch = broker.connect().channel()
    ch.exchange_declare("x", "headers")
    ch.queue_declare("q")
    for _ in range(2):
        ch.queue_bind("q", "x", "", {"x-match": "all", "a": 1})
    assert len(broker.trace.of_kind("bind")) == 1
    assert len(broker.vhosts["/"].exchanges["x"].bindings) == 1
