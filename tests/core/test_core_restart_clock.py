"""Broker restart and time: durable vs transient entities and messages; virtual and wall clocks.

Pins https://www.rabbitmq.com/queues.html#durability, /persistence-conf.html (persistent
messages in durable queues survive a restart) and the Clock contract of DESIGN.md (trio's
MockClock: virtual time, autojump, never backwards; a wall clock read at call time).
"""

from __future__ import annotations

import datetime as dt

import pytest
from _core_helpers import publish

from simamqp.core import Broker, ChannelClosedError, ConnectionClose, VirtualClock
from simamqp.core.errors import ConnectionForced
from simamqp.wallclock import WallClock


def test_restart_keeps_durable_entities_and_persistent_messages() -> None:
    """https://www.rabbitmq.com/queues.html#durability: durable queues/exchanges and their
    bindings survive; transient ones vanish; only persistent messages survive, including
    delivered-but-unacked ones, which come back redelivered."""
    broker = Broker(seed=1)
    conn = broker.connect()
    ch = conn.channel()
    ch.exchange_declare("dx", "direct", durable=True)
    ch.exchange_declare("tx", "direct")
    ch.queue_declare("dq", durable=True)
    ch.queue_declare("tq")
    ch.queue_bind("dq", "dx", "k")
    ch.queue_bind("tq", "dx", "k")
    publish(ch, "persistent", routing_key="dq", delivery_mode=2)
    publish(ch, "transient", routing_key="dq", delivery_mode=1)
    publish(ch, "unacked", routing_key="dq", delivery_mode=2)
    publish(ch, "in transient queue", routing_key="tq", delivery_mode=2)
    ch.basic_get("dq", no_ack=True)  # "persistent" is consumed for good
    publish(ch, "persistent2", routing_key="dq", delivery_mode=2)
    broker.restart()
    assert not conn.is_open
    assert isinstance(conn.close_reason, ConnectionForced)
    assert conn.close_reason.reply_code == 320
    assert isinstance(conn.outbox[-1], ConnectionClose)
    with pytest.raises(ChannelClosedError):
        ch.queue_declare("x")
    assert "dq" in broker.queue_names() and "tq" not in broker.queue_names()
    assert "dx" in broker.exchange_names() and "tx" not in broker.exchange_names()
    assert broker.exchange("dx").bindings == (("queue", "dq", "k"),)
    # The transient message is gone; the persistent ones not yet consumed stay, in order.
    assert broker.queue("dq").bodies == (b"unacked", b"persistent2")
    assert "restart" in [e.kind for e in broker.trace]


def test_restart_message_survival_rules() -> None:
    """Persistent messages in a durable queue survive (also when unacked: requeued with
    redelivered=True); transient messages do not (https://www.rabbitmq.com/persistence-
    conf.html)."""
    broker = Broker(seed=1)
    ch = broker.connect().channel()
    ch.queue_declare("dq", durable=True)
    publish(ch, "p1", routing_key="dq", delivery_mode=2)
    publish(ch, "t1", routing_key="dq")
    publish(ch, "p2", routing_key="dq", delivery_mode=2)
    held = ch.basic_get("dq")  # p1 unacked at restart
    assert held is not None and held.message.body == b"p1"
    broker.restart()
    ch2 = broker.connect().channel()
    got = [ch2.basic_get("dq", no_ack=True) for _ in range(3)]
    assert [(g.message.body, g.redelivered) for g in got if g] == [(b"p1", True), (b"p2", False)]


def test_exclusive_and_auto_delete_queues_do_not_survive() -> None:
    """Exclusive queues are deleted with their connection, and are never durable
    (https://www.rabbitmq.com/queues.html#exclusive-queues)."""
    broker = Broker(seed=1)
    ch = broker.connect().channel()
    ch.queue_declare("ex", durable=True, exclusive=True)
    assert not broker.queue("ex").durable
    broker.restart()
    assert broker.queue_names() == []


def test_virtual_clock_advance_fires_timers_at_their_time() -> None:
    """DESIGN.md Clock: virtual time moves only when told; timers fire at their own due time
    (a TTL expiry's x-death `time` is the due time, not the end of the advance)."""
    clock = VirtualClock(start=100.0)
    broker = Broker(seed=1, clock=clock)
    ch = broker.connect().channel()
    ch.queue_declare("dlq")
    ch.queue_declare(
        "q",
        arguments={
            "x-message-ttl": 1500,
            "x-dead-letter-exchange": "",
            "x-dead-letter-routing-key": "dlq",
        },
    )
    publish(ch, "m", routing_key="q")
    assert broker.next_timer() == 101.5
    assert broker.advance(60) >= 1
    assert clock.now() == 160.0
    ok = ch.basic_get("dlq")
    assert ok is not None
    death = ok.message.headers["x-death"][0]  # type: ignore[index]
    assert death["time"] == dt.datetime(1970, 1, 1, 0, 1, 41)
    expire = broker.trace.of_kind("expire")[0]
    assert expire.time == 101.5


def test_virtual_clock_never_goes_backwards() -> None:
    """trio MockClock habit (DESIGN.md): time never goes backwards."""
    clock = VirtualClock()
    clock.advance(5)
    with pytest.raises(ValueError, match="backwards"):
        clock.advance(-1)
    with pytest.raises(ValueError, match="backwards"):
        clock.jump_to(4.0)
    with pytest.raises(ValueError):
        VirtualClock(start=-1)
    broker = Broker(seed=1, clock=clock)
    with pytest.raises(ValueError, match="backwards"):
        broker.advance(-0.1)
    clock.jump_to(5.0)  # jumping to now is fine
    assert clock.now() == 5.0


def test_autojump_jumps_to_the_next_timer() -> None:
    """DESIGN.md Clock: with autojump, a caller that would block jumps to the next timer
    (what the transport does for a blocked drain_events): no time passes for nothing."""
    clock = VirtualClock(autojump=True)
    broker = Broker(seed=1, clock=clock)
    ch = broker.connect().channel()
    ch.queue_declare("q", arguments={"x-message-ttl": 250})
    publish(ch, "m", routing_key="q")
    when = broker.next_timer()
    assert clock.autojump and when == 0.25
    clock.jump_to(when)
    broker.run_until_idle()
    assert broker.queue("q").messages == 0
    assert broker.next_timer() is None
    assert VirtualClock(autojump=False).autojump is False


def test_advance_needs_a_virtual_clock() -> None:
    """A wall clock moves by itself: advance() refuses it (DESIGN.md Clock)."""
    broker = Broker(seed=1, clock=WallClock())
    with pytest.raises(TypeError):
        broker.advance(1)


def test_wall_clock_follows_freezegun() -> None:
    """DESIGN.md Clock: the wall clock reads `time` at call time, so freezegun moves it, and
    TTLs run on it (https://www.rabbitmq.com/ttl.html)."""
    freezegun = pytest.importorskip("freezegun")
    with freezegun.freeze_time("2024-01-01 00:00:00") as frozen:
        broker = Broker(seed=1, clock=WallClock())
        assert broker.clock.now() == dt.datetime(2024, 1, 1, tzinfo=dt.UTC).timestamp()
        ch = broker.connect().channel()
        ch.queue_declare("q", arguments={"x-message-ttl": 5000})
        publish(ch, "m", routing_key="q")
        frozen.tick(dt.timedelta(seconds=4))
        assert broker.queue("q").messages == 1
        frozen.tick(dt.timedelta(seconds=1))
        assert broker.queue("q").messages == 0
        ok_time = broker.trace.of_kind("expire")[0].time
        assert ok_time == broker.clock.now()


def test_virtual_time_ends_with_the_last_amqp_timestamp_a_client_can_read() -> None:
    """x-death `time` is an AMQP timestamp, which py-amqp reads as a datetime: year 9999 is the
    end. Moving a virtual clock past it is refused up front, by name, and the broker is left as
    it was; at the last second itself, dead-lettering still stamps a readable time."""
    with pytest.raises(ValueError, match="9999-12-31"):
        VirtualClock(start=VirtualClock.MAX_TIME + 1)
    clock = VirtualClock(start=VirtualClock.MAX_TIME - 10)
    broker = Broker(seed=1, clock=clock)
    ch = broker.connect().channel()
    ch.queue_declare("dlq")
    ch.queue_declare(
        "q", arguments={"x-dead-letter-exchange": "", "x-dead-letter-routing-key": "dlq"}
    )
    publish(ch, "m", routing_key="q")
    with pytest.raises(ValueError, match="9999-12-31"):
        broker.advance(11)
    with pytest.raises(ValueError, match="9999-12-31"):
        clock.advance(11)
    with pytest.raises(ValueError, match="9999-12-31"):
        clock.jump_to(VirtualClock.MAX_TIME + 0.5)
    assert clock.now() == VirtualClock.MAX_TIME - 10
    broker.advance(10)
    ok = ch.basic_get("q")
    assert ok is not None
    ch.basic_reject(ok.delivery_tag, requeue=False)
    dead = ch.basic_get("dlq")
    assert dead is not None
    death = dead.message.headers["x-death"][0]  # type: ignore[index]
    assert death["time"] == dt.datetime(9999, 12, 31, 23, 59, 59)


def test_restart_goes_through_every_queue_and_recounts_their_bytes() -> None:
    """A restart drops the transient messages of every durable queue, also those declared
    after a transient queue; a durable queue's byte count is that of the persistent messages
    it kept, so x-max-length-bytes (reject-publish) refuses exactly at its limit afterwards."""
    broker = Broker(seed=1)
    ch = broker.connect().channel()
    ch.queue_declare("transient")
    args = {"x-max-length-bytes": 10, "x-overflow": "reject-publish"}
    ch.queue_declare("dq", durable=True, arguments=args)
    publish(ch, "four", routing_key="dq", delivery_mode=2)
    publish(ch, "l", routing_key="dq", delivery_mode=1)
    publish(ch, "333", routing_key="dq", delivery_mode=2)
    broker.restart()
    assert broker.queue("dq").bodies == (b"four", b"333")
    ch = broker.connect().channel()
    ch.confirm_select()
    for body in ("22", "1", "x"):
        publish(ch, body, routing_key="dq", delivery_mode=2)
    assert broker.queue("dq").bodies == (b"four", b"333", b"22", b"1")
    confirms = [e.attrs["ack"] for e in broker.trace.of_kind("confirm")]
    assert confirms == [True, True, False]


def test_auto_delete_works_again_after_a_restart() -> None:
    """Auto-delete is held off only while the restart runs: afterwards a durable auto-delete
    queue goes when its last consumer cancels, and its consumer is told when it is deleted."""
    broker = Broker(seed=1)
    broker.restart()
    conn = broker.connect()
    ch = conn.channel()
    ch.queue_declare("auto", durable=True, auto_delete=True)
    tag = ch.basic_consume("auto")
    ch.basic_cancel(tag)
    assert "auto" not in broker.queue_names()
    ch.queue_declare("deleted")
    tag = ch.basic_consume("deleted")
    conn.outbox.clear()
    other = broker.connect().channel()
    other.queue_delete("deleted")
    assert [type(f).__name__ for f in conn.outbox] == ["BasicCancel"]


def test_advance_refuses_a_wall_clock_and_accepts_zero() -> None:
    """advance() says why it refuses a wall clock; advance(0) is allowed and fires what is
    due now (only negative time is refused)."""
    with pytest.raises(TypeError) as info:
        Broker(seed=1, clock=WallClock()).advance(1)
    assert str(info.value) == "advance() needs a VirtualClock; a wall clock moves by itself"
    broker = Broker(seed=1)
    ch = broker.connect().channel()
    ch.queue_declare("q", arguments={"x-expires": 1000})
    broker.clock.advance(1)  # the clock alone: the lease timer is due, not yet fired
    assert broker.advance(0) == 1
    assert "q" not in broker.queue_names()


def test_run_until_idle_and_advance_count_the_timers_they_fire() -> None:
    """Both return how many timers fired: none when none is due, each of several due at
    the same time, and those fired at different times within one advance."""
    broker = Broker(seed=1)
    ch = broker.connect().channel()
    assert broker.run_until_idle() == 0
    for name, ms in (("a", 1000), ("b", 2000), ("c", 2000), ("d", 3000), ("e", 4000)):
        ch.queue_declare(name, arguments={"x-expires": ms})
    assert broker.advance(1.5) == 1
    assert broker.advance(1) == 2
    broker.clock.advance(2)  # the clock alone: d and e are due, not yet fired
    assert broker.run_until_idle() == 2
    ch.queue_declare("f", arguments={"x-expires": 1000})
    ch.queue_declare("g", arguments={"x-expires": 2000})
    assert broker.advance(3) == 2
    assert broker.queue_names() == []
