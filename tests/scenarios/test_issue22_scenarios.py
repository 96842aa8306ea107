"""Scenario loader fixes from issue 22: expectations no run can meet are refused by
``validate``; a recorded ``Decimal`` header replays to the same digest."""

from __future__ import annotations

import decimal

import pytest

import simamqp
from simamqp.scenarios import Recorder, ScenarioError, dump, load_text, run_scenario

BASE = "version: 1\nsteps:\n  - queue_declare: {queue: q}\nexpect:\n  errors: "


@pytest.mark.parametrize("errors", ["[5]", "[{code: 5}]", "[{code: true}]", "[999]"])
def test_an_error_code_no_run_can_produce_is_refused(errors):
    with pytest.raises(ScenarioError) as info:
        load_text(BASE + errors + "\n", "bad.yaml")
    assert str(info.value).startswith("bad.yaml:5:")
    assert "is not an AMQP error reply code" in str(info.value)


@pytest.mark.parametrize("errors", ["[404]", "[{code: 406, text: x}]", "[{client: a}]", "[]"])
def test_real_reply_codes_load(errors):
    load_text(BASE + errors + "\n", "good.yaml")


def test_a_recorded_decimal_header_replays_to_the_same_digest():
    """A Decimal (an AMQP ``D`` field) is written as ``!decimal "1.50"`` and read back as a
    Decimal, so a headers exchange routes the replay as it routed the recording."""
    broker = simamqp.Broker(seed=5)
    recorder = Recorder(broker)
    conn = broker.connect()
    ch = conn.channel()
    ch.exchange_declare("h", "headers")
    ch.queue_declare("priced")
    ch.queue_bind("priced", "h", "", {"x-match": "all", "price": decimal.Decimal("1.50")})
    ch.basic_publish(
        b"m", "h", "", properties={"application_headers": {"price": decimal.Decimal("1.50")}}
    )
    assert broker.queue("priced").messages_ready == 1
    text = dump(recorder.scenario("recorded"))
    assert '!decimal "1.50"' in text or "!decimal '1.50'" in text
    result = run_scenario(load_text(text, "recorded.yaml"))
    assert result.failures == []
    assert result.digests["default"] == broker.trace.digest()


@pytest.mark.parametrize("text", ["!decimal x", "!decimal ''"])
def test_a_decimal_tag_that_is_no_number_is_a_scenario_error(text):
    source = (
        "version: 1\nsteps:\n  - publish: {routing_key: q, body: m, headers: {p: " + text + "}}\n"
    )
    with pytest.raises(ScenarioError) as info:
        load_text(source, "bad.yaml")
    assert str(info.value).startswith("bad.yaml:3:")


def test_a_republished_dead_letter_records_and_replays():
    """x-death's ``count`` is a 64-bit ``Long`` (an int subclass, for the wire codec): a test
    that republishes a dead-lettered message's headers still gets a replay file."""
    broker = simamqp.Broker(seed=5)
    recorder = Recorder(broker)
    ch = broker.connect().channel()
    ch.queue_declare("dead")
    arguments = {"x-dead-letter-exchange": "", "x-dead-letter-routing-key": "dead"}
    ch.queue_declare("src", arguments={**arguments, "x-message-ttl": 0})
    ch.basic_publish(b"m", "", "src")
    broker.run_until_idle()
    got = ch.basic_get("dead", no_ack=True)
    assert got is not None
    ch.basic_publish(b"m", "", "src", properties={"application_headers": got.message.headers})
    broker.run_until_idle()
    text = dump(recorder.scenario("recorded"))
    result = run_scenario(load_text(text, "recorded.yaml"))
    assert result.failures == []
    assert result.digests["default"] == broker.trace.digest()
