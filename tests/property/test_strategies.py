"""simamqp.strategies: Hypothesis API style and values RabbitMQ (the engine) accepts."""

from __future__ import annotations

from typing import Any

import pytest
from _property_budget import property_settings
from hypothesis import given
from hypothesis import strategies as st
from hypothesis.errors import InvalidArgument

from simamqp import strategies as sims
from simamqp.core.broker import Broker
from simamqp.core.faults import FaultPlan, FaultRule, topic_matches


@pytest.mark.parametrize(
    ("factory", "kwargs"),
    [
        (sims.routing_keys, {"max_words": -1}),
        (sims.routing_keys, {"min_words": 3, "max_words": 2}),
        (sims.routing_keys, {"words": []}),
        (sims.routing_keys, {"words": ["a.b"]}),
        (sims.binding_keys, {"exchange_type": "nope"}),
        (sims.exchange_types, {"builtin_only": "yes"}),
        (sims.headers_tables, {"max_size": -1}),
        (sims.message_properties, {"persistent": "no"}),
        (sims.queue_arguments, {"ttl": 1}),
        (sims.queue_arguments, {"queue_type": "lazy"}),
        (sims.queue_arguments, {"queue_type": "quorum", "priority": True}),
        (sims.queue_arguments, {"delivery_limit": "yes"}),
        (sims.queue_types, {"types": []}),
        (sims.queue_types, {"types": "quorum"}),
        (sims.queue_types, {"types": ["classic", "nope"]}),
        (sims.fault_plans, {"points": ["nowhere"]}),
        (sims.fault_plans, {"points": ["connection"], "actions": ["drop"]}),
        (sims.fault_plans, {"min_rules": 4, "max_rules": 1}),
        (sims.fault_plans, {"max_delay": 0}),
        (sims.rpc_result_streams, {"final_states": []}),
        (sims.rpc_result_streams, {"max_duplicates": -1}),
        (sims.rpc_result_streams, {"task_ids": "abc"}),
        # each of these used to fail late (or not at all) with another exception
        (sims.fault_rules, {"points": None}),
        (sims.fault_rules, {"points": 5}),
        (sims.fault_rules, {"points": "publish"}),
        (sims.fault_rules, {"actions": 5}),
        (sims.fault_rules, {"queues": 5}),
        (sims.fault_rules, {"queues": ["q" * 256]}),
        (sims.fault_rules, {"max_delay": 10**400}),
        (sims.fault_rules, {"max_delay": float("nan")}),
        (sims.fault_rules, {"max_delay": True}),
        (sims.fault_rules, {"max_count": 0}),
        (sims.fault_plans, {"points": None}),
        (sims.fault_plans, {"max_delay": 10**400}),
        (sims.headers_tables, {"keys": "k"}),
        (sims.headers_tables, {"exclude_x_keys": "yes"}),
        (sims.headers_tables, {"max_depth": 4}),
        (sims.routing_keys, {"min_words": 200, "max_words": 200}),
        (sims.routing_keys, {"min_words": 200}),
        (sims.routing_keys, {"min_words": True}),
        (sims.routing_keys, {"words": "abc"}),
        (sims.routing_keys, {"words": ["\ud800"]}),
        (sims.routing_keys, {"words": ["w" * 256]}),
        (sims.binding_keys, {"min_words": 200, "max_words": 200}),
        (sims.binding_keys, {"exchange_type": ["topic"]}),
        (sims.queue_arguments, {"dead_letter_exchange": 5}),
        (sims.queue_arguments, {"dead_letter_exchange": "x" * 256}),
        (sims.message_properties, {"headers": None}),
        (sims.rpc_result_streams, {"final_states": ["BOGUS"]}),
        (sims.rpc_result_streams, {"final_states": None}),
        (sims.rpc_result_streams, {"final_states": "SUCCESS"}),
        (sims.rpc_result_streams, {"reorder": "no"}),
        (sims.rpc_result_streams, {"max_progress": 21}),
    ],
)
def test_bad_arguments_raise_invalid_argument_at_definition(
    factory: Any, kwargs: dict[str, Any]
) -> None:
    with pytest.raises(InvalidArgument):
        factory(**kwargs)


@pytest.mark.parametrize(
    ("factory", "kwargs"),
    [
        (sims.headers_tables, {"keys": st.integers()}),
        (sims.headers_tables, {"keys": st.just("k" * 256), "exclude_x_keys": False}),
        (sims.rpc_result_streams, {"task_ids": st.integers()}),
    ],
)
def test_strategy_arguments_that_draw_the_wrong_type_raise_invalid_argument(
    factory: Any, kwargs: dict[str, Any]
) -> None:
    # What a strategy argument draws is only known when it draws; Hypothesis itself checks
    # st.text(alphabet=st.integers()) then, with InvalidArgument, and so do we.
    strategy = factory(**kwargs)

    @given(strategy)
    def draw(value: Any) -> None:
        pass  # an empty table draws no key: the draws that do must raise

    with pytest.raises(InvalidArgument):
        draw()


@property_settings()
@given(sims.routing_keys(min_words=20, max_words=200, words=["orders"]))
def test_long_routing_keys_fit_a_shortstr(key: str) -> None:
    assert len(key.split(".")) >= 20 and len(key.encode()) <= 255


def test_arguments_are_keyword_only() -> None:
    with pytest.raises(TypeError):
        sims.routing_keys(4)  # type: ignore[misc]


@property_settings(minimum=200)
@given(sims.binding_keys(), sims.routing_keys())
def test_topic_binding_keys_route_like_the_engine(binding: str, key: str) -> None:
    broker = Broker()
    channel = broker.connect().channel()
    channel.exchange_declare("t", "topic")
    channel.queue_declare("q")
    channel.queue_bind("q", "t", binding)
    channel.basic_publish(b"x", "t", key)
    assert broker.queue("q").messages_ready == int(topic_matches(binding, key))


@property_settings()
@given(sims.exchange_types(), sims.queue_arguments(dead_letter_exchange="dlx", priority=True))
def test_declarations_are_accepted(exchange_type: str, arguments: dict[str, Any]) -> None:
    broker = Broker()
    channel = broker.connect().channel()
    channel.exchange_declare("e", exchange_type)
    channel.queue_declare("q", arguments=arguments)
    assert broker.queue("q").arguments == arguments


@property_settings()
@given(
    sims.queue_types().flatmap(
        lambda t: sims.queue_arguments(
            queue_type=t, dead_letter_exchange="dlx", expires=True, single_active_consumer=True
        )
    )
)
def test_typed_declarations_are_accepted(arguments: dict[str, Any]) -> None:
    broker = Broker()
    channel = broker.connect().channel()
    channel.queue_declare("q", durable=True, arguments=arguments)
    info = broker.queue("q")
    assert (info.arguments, info.type) == (arguments, arguments["x-queue-type"])


@property_settings()
@given(sims.message_properties(expiration=True), sims.headers_tables(max_depth=2))
def test_properties_and_headers_publish(props: dict[str, Any], table: dict[str, Any]) -> None:
    broker = Broker()
    channel = broker.connect().channel()
    channel.queue_declare("q")
    channel.basic_publish(b"x", "", "q", properties=props)
    channel.basic_publish(b"y", "", "q", properties={"application_headers": table})
    assert channel.is_open
    assert broker.queue("q").messages_ready + len(broker.trace.of_kind("expire")) == 2


@property_settings()
@given(sims.fault_plans(queues=["q"], min_rules=1))
def test_fault_plans_load_and_round_trip(plan: dict[str, Any]) -> None:
    broker = Broker(seed=7)
    broker.faults.load(plan)
    exported = broker.faults.to_dict()
    assert exported["rules"] == plan["rules"]
    other = Broker(seed=exported["seed"])
    assert FaultPlan.from_dict(exported, other).to_dict() == exported
    assert all(isinstance(r, FaultRule) for r in other.faults.rules)


@property_settings()
@given(sims.rpc_result_streams(max_duplicates=2))
def test_rpc_result_streams_shape(stream: sims.RPCResultStream) -> None:
    assert stream.final_state in sims.FINAL_STATES
    assert "STARTED" in stream.states
    assert sorted(set(stream.arrivals)) == sorted(set(stream.states))
    assert len(stream.arrivals) - len(stream.states) <= 2


@property_settings()
@given(sims.rpc_result_streams(reorder=False, max_duplicates=3))
def test_unreordered_streams_keep_sent_order(stream: sims.RPCResultStream) -> None:
    # The sent order is a subsequence of the arrivals: duplicates only follow their original.
    arrivals = iter(stream.arrivals)
    assert all(state in arrivals for state in stream.states)


@given(st.data())
def test_fault_rules_strategy_draws_valid_rules(data: st.DataObject) -> None:
    rule = data.draw(sims.fault_rules(points=["deliver"], actions=["delay", "redeliver"]))
    assert rule.point == "deliver" and rule.action in ("delay", "redeliver")


def test_hypothesis_is_imported_only_by_the_strategy_modules() -> None:
    import subprocess
    import sys

    code = (
        "import sys, simamqp, simamqp.core.faults, rpcbackend; "
        "assert 'hypothesis' not in sys.modules, 'runtime imports hypothesis'"
    )
    subprocess.run([sys.executable, "-c", code], check=True, timeout=60)
