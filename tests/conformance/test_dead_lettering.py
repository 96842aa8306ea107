"""Dead-letter exchanges: reasons, the x-death header, routing keys, cycles; and sender-selected
distribution (CC/BCC), which shares the routing-keys bookkeeping."""

from __future__ import annotations

import datetime

TTL = 60
MARGIN = 0.35


def dlx_setup(env, ch, **queue_args):
    """A fanout DLX with a queue behind it, and a source queue dead-lettering into it."""
    dlx = env.exchange(ch, "fanout")
    dead = env.queue(ch)
    ch.queue_bind(dead, dlx, "")
    src = env.queue(ch, arguments={"x-dead-letter-exchange": dlx, **queue_args})
    return dlx, src, dead


def death_headers(msg):
    """application_headers with x-death times checked and removed (they are wall/virtual time)."""
    headers = dict(msg.properties["application_headers"])
    deaths = []
    for death in headers.pop("x-death"):
        death = dict(death)
        assert isinstance(death.pop("time"), datetime.datetime)
        deaths.append(death)
    return deaths, headers


def test_rejected_message_is_dead_lettered_with_x_death(env):
    """rabbitmq.com/dlx.html#effects: x-death records queue, reason, exchange, routing keys."""
    ch = env.channel()
    dlx, src, dead = dlx_setup(env, ch)
    ex = env.exchange(ch, "direct")
    ch.queue_bind(src, ex, "rk")
    env.publish(ch, b"bad", ex, "rk", application_headers={"app": "v"}, correlation_id="c1")
    ch.basic_reject(env.get(ch, src, no_ack=False).delivery_tag, requeue=False)
    msg = env.get(ch, dead)
    assert (msg.body, msg.delivery_info["exchange"], msg.delivery_info["routing_key"]) == (
        b"bad",
        dlx,
        "rk",
    )
    deaths, headers = death_headers(msg)
    assert deaths == [
        {"count": 1, "reason": "rejected", "queue": src, "exchange": ex, "routing-keys": ["rk"]}
    ]
    assert headers == {
        "app": "v",
        "x-first-death-exchange": ex,
        "x-first-death-queue": src,
        "x-first-death-reason": "rejected",
    }
    assert msg.properties["correlation_id"] == "c1"


def test_nack_without_requeue_dead_letters(env):
    """rabbitmq.com/dlx.html#overview: basic.nack with requeue=false dead-letters."""
    ch = env.channel()
    _, src, dead = dlx_setup(env, ch)
    env.publish(ch, b"n", "", src)
    env.nack(ch, env.get(ch, src, no_ack=False).delivery_tag, multiple=False, requeue=False)
    deaths, _ = death_headers(env.get(ch, dead))
    assert [(d["reason"], d["queue"]) for d in deaths] == [("rejected", src)]


def test_requeue_does_not_dead_letter(env):
    """rabbitmq.com/dlx.html#overview: only requeue=false rejections dead-letter."""
    ch = env.channel()
    _, src, dead = dlx_setup(env, ch)
    env.publish(ch, b"r", "", src)
    ch.basic_reject(env.get(ch, src, no_ack=False).delivery_tag, requeue=True)
    assert env.get(ch, src).body == b"r"
    assert env.get_none(ch, dead) is None


def test_expired_per_message_records_original_expiration(env):
    """rabbitmq.com/dlx.html#effects: expiration is removed, kept as original-expiration."""
    ch = env.channel()
    _, src, dead = dlx_setup(env, ch)
    env.publish(ch, b"e", "", src, expiration=str(TTL))
    env.wait(MARGIN)
    msg = env.get(ch, dead)
    assert msg.body == b"e"
    assert "expiration" not in msg.properties
    deaths, headers = death_headers(msg)
    assert deaths == [
        {
            "count": 1,
            "reason": "expired",
            "queue": src,
            "exchange": "",
            "routing-keys": [src],
            "original-expiration": str(TTL),
        }
    ]
    assert headers["x-first-death-reason"] == "expired"


def test_expired_by_queue_ttl(env):
    """rabbitmq.com/dlx.html#overview: messages expiring by x-message-ttl are dead-lettered."""
    ch = env.channel()
    _, src, dead = dlx_setup(env, ch, **{"x-message-ttl": TTL})
    env.publish(ch, b"q-ttl", "", src)
    env.wait(MARGIN)
    deaths, _ = death_headers(env.get(ch, dead))
    assert deaths == [
        {"count": 1, "reason": "expired", "queue": src, "exchange": "", "routing-keys": [src]}
    ]


def test_dead_letter_routing_key_override(env):
    """rabbitmq.com/dlx.html#routing: x-dead-letter-routing-key replaces the routing key."""
    ch = env.channel()
    dlx = env.exchange(ch, "direct")
    dead = env.queue(ch)
    ch.queue_bind(dead, dlx, "dead")
    src = env.queue(
        ch, arguments={"x-dead-letter-exchange": dlx, "x-dead-letter-routing-key": "dead"}
    )
    env.publish(ch, b"o", "", src)
    ch.basic_reject(env.get(ch, src, no_ack=False).delivery_tag, requeue=False)
    msg = env.get(ch, dead)
    assert msg.delivery_info["routing_key"] == "dead"
    deaths, _ = death_headers(msg)
    assert deaths[0]["routing-keys"] == [src]


def test_dead_letter_to_default_exchange(env):
    """rabbitmq.com/dlx.html#routing: the default exchange ('') is a valid DLX."""
    ch = env.channel()
    dead = env.queue(ch)
    src = env.queue(ch, arguments={"x-dead-letter-exchange": "", "x-dead-letter-routing-key": dead})
    env.publish(ch, b"via-default", "", src)
    ch.basic_reject(env.get(ch, src, no_ack=False).delivery_tag, requeue=False)
    assert env.get(ch, dead).body == b"via-default"


def test_missing_dead_letter_exchange_drops(env):
    """rabbitmq.com/dlx.html#routing: a missing DLX silently drops the message."""
    ch = env.channel()
    src = env.queue(ch, arguments={"x-dead-letter-exchange": env.name("absent")})
    env.publish(ch, b"gone", "", src)
    ch.basic_reject(env.get(ch, src, no_ack=False).delivery_tag, requeue=False)
    assert env.get_none(ch, src) is None


def test_max_length_drop_head_dead_letters_as_maxlen(env):
    """rabbitmq.com/maxlength.html#overflow-behaviour: dropped heads are dead-lettered."""
    ch = env.channel()
    _, src, dead = dlx_setup(env, ch, **{"x-max-length": 1})
    env.publish(ch, b"first", "", src)
    env.publish(ch, b"second", "", src)
    msg = env.get(ch, dead)
    assert msg.body == b"first"
    deaths, _ = death_headers(msg)
    assert [(d["reason"], d["count"]) for d in deaths] == [("maxlen", 1)]
    assert env.bodies(ch, src) == [b"second"]


def test_reject_publish_dlx_dead_letters_and_nacks(env):
    """rabbitmq.com/maxlength.html#overflow-behaviour: reject-publish-dlx nacks and dead-letters."""
    ch = env.channel()
    confirms = env.confirms(ch)
    _, src, dead = dlx_setup(env, ch, **{"x-max-length": 1, "x-overflow": "reject-publish-dlx"})
    env.publish(ch, b"kept", "", src)
    env.publish(ch, b"overflow", "", src)
    assert env.drain(until=confirms.settled(2))
    assert confirms.results(2) == ["ack", "nack"]
    msg = env.get(ch, dead)
    assert msg.body == b"overflow"
    deaths, _ = death_headers(msg)
    assert [(d["reason"], d["queue"]) for d in deaths] == [("maxlen", src)]
    assert env.bodies(ch, src) == [b"kept"]


def test_reject_publish_does_not_dead_letter(env):
    """rabbitmq.com/maxlength.html#overflow-behaviour: plain reject-publish drops, no DLX."""
    ch = env.channel()
    _, src, dead = dlx_setup(env, ch, **{"x-max-length": 1, "x-overflow": "reject-publish"})
    env.publish(ch, b"kept", "", src)
    env.publish(ch, b"dropped", "", src)
    env.eventually_count(src, 1, ch)
    assert env.get_none(ch, dead) is None


def test_x_death_count_and_order_across_queues(env):
    """rabbitmq.com/dlx.html#effects: x-death is most-recent-first; count per queue/reason."""
    ch = env.channel()
    a, b = env.name("a"), env.name("b")
    ch.queue_declare(
        a,
        auto_delete=False,
        arguments={"x-dead-letter-exchange": "", "x-dead-letter-routing-key": b},
    )
    ch.queue_declare(
        b,
        auto_delete=False,
        arguments={"x-dead-letter-exchange": "", "x-dead-letter-routing-key": a},
    )
    env.publish(ch, b"ping-pong", "", a)
    for queue in (a, b, a):
        ch.basic_reject(env.get(ch, queue, no_ack=False).delivery_tag, requeue=False)
    msg = env.get(ch, b)
    deaths, headers = death_headers(msg)
    assert [(d["queue"], d["reason"], d["count"]) for d in deaths] == [
        (a, "rejected", 2),
        (b, "rejected", 1),
    ]
    assert (headers["x-first-death-queue"], headers["x-first-death-reason"]) == (a, "rejected")


def test_expiry_cycle_is_dropped(env):
    """rabbitmq.com/dlx.html#routing: a fully automatic dead-letter cycle drops the message."""
    ch = env.channel()
    q = env.name("cycle")
    ch.queue_declare(
        q,
        auto_delete=False,
        arguments={
            "x-message-ttl": TTL,
            "x-dead-letter-exchange": "",
            "x-dead-letter-routing-key": q,
        },
    )
    env.publish(ch, b"loop", "", q)
    env.wait(MARGIN)
    env.wait(MARGIN)
    # still cycling would show the message in the queue most of the time: look twice
    assert env.get_none(ch, q) is None
    env.wait(0.1)
    assert env.get_none(ch, q) is None


def test_rejection_breaks_cycle_detection(env):
    """rabbitmq.com/dlx.html#routing: a cycle with a rejection in it is not dropped."""
    ch = env.channel()
    q = env.name("cycle")
    ch.queue_declare(
        q,
        auto_delete=False,
        arguments={"x-dead-letter-exchange": "", "x-dead-letter-routing-key": q},
    )
    env.publish(ch, b"again", "", q)
    for _ in range(2):
        ch.basic_reject(env.get(ch, q, no_ack=False).delivery_tag, requeue=False)
    deaths, _ = death_headers(env.get(ch, q))
    assert [(d["reason"], d["count"]) for d in deaths] == [("rejected", 2)]


def test_cc_header_adds_routing_keys(env):
    """rabbitmq.com/sender-selected.html: CC adds routing keys and stays visible."""
    ch = env.channel()
    ex = env.exchange(ch, "direct")
    q1, q2 = env.queue(ch), env.queue(ch)
    ch.queue_bind(q1, ex, "one")
    ch.queue_bind(q2, ex, "two")
    env.publish(ch, b"cc", ex, "one", application_headers={"CC": ["two"]})
    m1, m2 = env.get(ch, q1), env.get(ch, q2)
    assert (m1.body, m2.body) == (b"cc", b"cc")
    assert m2.delivery_info["routing_key"] == "one"
    assert m2.properties["application_headers"] == {"CC": ["two"]}


def test_bcc_header_routes_and_is_removed(env):
    """rabbitmq.com/sender-selected.html: BCC routes like CC and is removed from the message."""
    ch = env.channel()
    ex = env.exchange(ch, "direct")
    q = env.queue(ch)
    ch.queue_bind(q, ex, "hidden")
    env.publish(ch, b"bcc", ex, "nobody", application_headers={"BCC": ["hidden"], "k": 1})
    msg = env.get(ch, q)
    assert msg.properties["application_headers"] == {"k": 1}


def test_x_death_routing_keys_include_cc(env):
    """rabbitmq.com/dlx.html#effects: routing-keys lists the routing key and CC keys."""
    ch = env.channel()
    _, src, dead = dlx_setup(env, ch)
    ch.queue_bind(src, "amq.direct", "main")
    env.publish(ch, b"m", "amq.direct", "main", application_headers={"CC": ["main", "other"]})
    ch.basic_reject(env.get(ch, src, no_ack=False).delivery_tag, requeue=False)
    deaths, headers = death_headers(env.get(ch, dead))
    ch.queue_unbind(src, "amq.direct", "main")
    assert deaths[0]["routing-keys"] == ["main", "main", "other"]
    assert headers["CC"] == ["main", "other"]


def test_dead_letter_routing_key_drops_the_cc_header(env):
    """rabbitmq.com/dlx.html#routing: with x-dead-letter-routing-key the dead letter is routed
    on that key alone and loses its CC header; x-death still lists the CC keys."""
    ch = env.channel()
    _, src, dead = dlx_setup(env, ch, **{"x-dead-letter-routing-key": "dl"})
    env.publish(ch, b"m", "", src, application_headers={"CC": ["nowhere"], "k": 1})
    ch.basic_reject(env.get(ch, src, no_ack=False).delivery_tag, requeue=False)
    deaths, headers = death_headers(env.get(ch, dead))
    assert deaths[0]["routing-keys"] == [src, "nowhere"]
    assert "CC" not in headers and headers["k"] == 1


def test_dead_letter_through_a_headers_dlx_into_a_ttl_queue(env):
    """rabbitmq.com/dlx.html: a dead letter is routed by its headers through a headers DLX,
    and enters a queue with a message TTL like any message."""
    ch = env.channel()
    dlx = env.exchange(ch, "headers")
    dead = env.queue(ch, arguments={"x-message-ttl": 60000})
    ch.queue_bind(dead, dlx, "", arguments={"x-match": "all", "k": "v"})
    src = env.queue(ch, arguments={"x-dead-letter-exchange": dlx})
    env.publish(ch, b"m", "", src, application_headers={"k": "v"})
    ch.basic_reject(env.get(ch, src, no_ack=False).delivery_tag, requeue=False)
    assert env.get(ch, dead).body == b"m"


def test_rejection_between_two_queues_breaks_the_cycle(env):
    """rabbit_dead_letter:is_cycle: a message that expired from A to B, was rejected in B back
    to A and expires in A again reaches B again: the rejection on the way breaks the cycle."""
    ch = env.channel()
    qa, qb = env.name("cycle-a"), env.name("cycle-b")
    ch.queue_declare(
        qa,
        auto_delete=False,
        arguments={
            "x-message-ttl": TTL,
            "x-dead-letter-exchange": "",
            "x-dead-letter-routing-key": qb,
        },
    )
    ch.queue_declare(
        qb,
        auto_delete=False,
        arguments={"x-dead-letter-exchange": "", "x-dead-letter-routing-key": qa},
    )
    env.publish(ch, b"m", "", qa)
    env.wait(MARGIN)
    ch.basic_reject(env.get(ch, qb, no_ack=False).delivery_tag, requeue=False)
    env.wait(MARGIN)
    deaths, _ = death_headers(env.get(ch, qb))
    assert [(d["queue"], d["reason"], d["count"]) for d in deaths] == [
        (qa, "expired", 2),
        (qb, "rejected", 1),
    ]
