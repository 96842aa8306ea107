"""``stream_offsets()`` and stream ``queue_arguments``: everything drawn is accepted by a stream."""

from __future__ import annotations

from typing import Any

import pytest
from _property_budget import property_settings
from hypothesis import given
from hypothesis.errors import InvalidArgument

from simamqp import strategies as sims
from simamqp.core.broker import Broker


@property_settings()
@given(sims.queue_arguments(queue_type="stream"), sims.stream_offsets())
def test_drawn_stream_arguments_and_offsets_are_accepted(
    arguments: dict[str, Any], offset: Any
) -> None:
    broker = Broker()
    conn = broker.connect()
    channel = conn.channel()
    channel.queue_declare("s", durable=True, arguments=arguments)
    channel.basic_publish(b"m", "", "s")
    channel.basic_qos(0, 1, False)
    channel.basic_consume("s", arguments={"x-stream-offset": offset})
    assert channel.is_open and conn.is_open
    assert broker.queue("s").type == "stream"


@pytest.mark.parametrize("bad", [-1, True, "3", 1.5])
def test_stream_offsets_refuses_a_bad_max_offset(bad: Any) -> None:
    with pytest.raises(InvalidArgument):
        sims.stream_offsets(max_offset=bad).example()


def test_stream_arguments_refuse_priority() -> None:
    with pytest.raises(InvalidArgument):
        sims.queue_arguments(queue_type="stream", priority=True).example()
