"""The input boundary (simamqp._boundary) equals py-amqp's encoder, fast paths included.

The reference is py-amqp itself: ``method_framing.frame_writer`` writes the frames of a
basic.publish into a buffer, which is then decoded the way a peer decodes them. For every
generated input the boundary must raise the same exception (type and message) or produce the
same arguments, properties and body.
"""

from __future__ import annotations

import datetime
import decimal
import math
import struct
from typing import Any

import amqp
import pytest
from amqp.method_framing import frame_writer
from amqp.serialization import decode_properties_basic, dumps, loads
from hypothesis import given, settings
from hypothesis import strategies as st

from simamqp import _boundary
from simamqp.core.errors import FrameError

# -- the reference: py-amqp's own frame writer ------------------------------------------------


class _Sink:
    def __init__(self) -> None:
        self.data = bytearray()

    def write(self, data: Any) -> None:
        self.data += bytes(data)


class _Conn:
    frame_max = 131072
    bytes_sent = 0


def reference_publish(
    body: Any, properties: dict[str, Any], exchange: Any = "", routing_key: Any = ""
) -> tuple[list[Any], bytes, dict[str, Any]]:
    """What a peer decodes from py-amqp's basic.publish frames (arguments, body, properties)."""
    sink = _Sink()
    write = frame_writer(_Conn(), sink)
    message = amqp.Message(body)
    message.properties = dict(properties)
    args = dumps("Bssbb", (0, exchange, routing_key, False, False))
    write(1, 1, (60, 40), args, message)
    data = bytes(sink.data)
    frames = []
    offset = 0
    while offset < len(data):
        type_, _, size = struct.unpack_from(">BHI", data, offset)
        frames.append((type_, data[offset + 7 : offset + 7 + size]))
        offset += 8 + size
    method_args = loads("Bssbb", frames[0][1], 4)[0]
    header = frames[1][1][12:]
    payload = b"".join(payload for type_, payload in frames[2:] if type_ == 3)
    return method_args, payload, header


def encoded_properties(properties: dict[str, Any]) -> bytes:
    message = amqp.Message(b"")
    message.properties = dict(properties)
    return bytes(message._serialize_properties())


def outcome(fn: Any, *args: Any) -> Any:
    try:
        return ("ok", fn(*args))
    except Exception as exc:
        return ("error", type(exc).__name__, str(exc))


# -- generated inputs ---------------------------------------------------------------------------

TEXT = st.text(max_size=70) | st.sampled_from(["", "é" * 63, "é" * 128, "\ud800", "x" * 256])
SCALARS = (
    st.none()
    | st.booleans()
    | st.integers(min_value=-(2**65), max_value=2**65)
    | st.floats(allow_nan=True, allow_infinity=True)
    | TEXT
    | st.binary(max_size=8)
    | st.sampled_from(
        [
            decimal.Decimal("1.5"),
            decimal.Decimal("-0.01"),
            datetime.datetime(2020, 1, 2, 3, 4, 5, 6),
            {1, 2},
            b"\xff\xfe",
            # the edges of py-amqp's int encodings ('I' 32-bit, 'L' 64-bit, then refused)
            2**31 - 1,
            -(2**31) + 1,
            -(2**31),
            2**63 - 1,
            -(2**63),
            2**63,
            -(2**63) - 1,
        ]
    )
)
VALUES = st.recursive(
    SCALARS,
    lambda inner: (
        st.lists(inner, max_size=3)
        | st.tuples(inner, inner)
        | st.dictionaries(TEXT | st.integers(0, 3) | st.binary(max_size=3), inner, max_size=3)
    ),
    max_leaves=6,
)
TABLES = st.dictionaries(TEXT | st.integers(0, 2), VALUES, max_size=4) | st.sampled_from(
    [None, [], {1, 2}, [("a", 1)]]
)
PROPERTY_VALUES = {
    "content_type": TEXT | st.integers(0, 3) | st.binary(max_size=4),
    "content_encoding": st.sampled_from(["utf-8", "latin-1", "bogus", None, 5]),
    "application_headers": TABLES,
    "delivery_mode": st.integers(-2, 300) | st.sampled_from(["2", 2.0, True]),
    "priority": st.integers(-300, 300) | st.sampled_from(["hi", 2.5, True]),
    "correlation_id": TEXT,
    "reply_to": TEXT | st.none(),
    "expiration": TEXT | st.integers(0, 3),
    "message_id": TEXT,
    "timestamp": st.integers(-1, 2**64) | st.sampled_from(["5", datetime.datetime(2020, 1, 1)]),
    "type": TEXT,
    "user_id": TEXT,
    "app_id": TEXT,
    "cluster_id": TEXT,
    "unknown": VALUES,
}
PROPERTIES = st.fixed_dictionaries({}, optional=PROPERTY_VALUES)
BODIES = (
    st.binary(max_size=16)
    | st.text(max_size=8)
    | st.sampled_from([5, None, [104, 105], [], (), bytearray(b"ba"), memoryview(b"mv"), {}])
)


def _same(a: Any, b: Any) -> bool:
    """Equality with NaN equal to itself (the wire carries NaN unchanged)."""
    if isinstance(a, float) and isinstance(b, float) and math.isnan(a) and math.isnan(b):
        return True
    if type(a) is not type(b):
        return False
    if isinstance(a, dict):
        return a.keys() == b.keys() and all(_same(a[k], b[k]) for k in a)
    if isinstance(a, list | tuple):
        return len(a) == len(b) and all(map(_same, a, b))
    return bool(a == b)


# -- the properties -----------------------------------------------------------------------------


@settings(max_examples=600, deadline=None)
@given(body=BODIES, properties=PROPERTIES)
def test_message_content_equals_py_amqps_frame_writer(body, properties):
    """Body and properties (fast path or codec) are what py-amqp's frames carry, or its error."""
    expected = outcome(lambda: reference_publish(body, properties)[1:])
    got = outcome(lambda: _boundary.message_content(body, properties))
    if expected[0] == "error":
        assert got == expected
        return
    ref_body, ref_header = expected[1]
    sim_body, sim_props = got[1]
    assert sim_body == ref_body
    try:
        ref_props = decode_properties_basic(ref_header, 0)[0]
    except UnicodeDecodeError:
        # RabbitMQ accepts a non-UTF-8 shortstr property; the consumer's py-amqp fails to
        # decode it. simamqp keeps what was sent, which encodes to the same header.
        assert encoded_properties(sim_props) == ref_header
        return
    assert _same(sim_props, ref_props), (sim_props, ref_props)


@settings(max_examples=600, deadline=None)
@given(data=st.data(), key=st.sampled_from(sorted(PROPERTY_VALUES)))
def test_each_property_alone_equals_py_amqps_frame_writer(data, key):
    """One property at a time, so no other property's error hides a fast-path mistake."""
    properties = {key: data.draw(PROPERTY_VALUES[key], label=key)}
    test_message_content_equals_py_amqps_frame_writer.hypothesis.inner_test(b"x", properties)


@settings(max_examples=400, deadline=None)
@given(
    headers=st.dictionaries(
        st.text(max_size=4) | st.sampled_from(["k" * 63, "k" * 64, "é" * 64]),
        SCALARS | st.lists(SCALARS, max_size=2) | st.dictionaries(st.text(max_size=2), SCALARS),
        max_size=3,
    )
)
def test_headers_equal_py_amqps_frame_writer(headers):
    """Headers alone: every field type and int width the fast path takes or leaves."""
    properties = {"application_headers": headers}
    test_message_content_equals_py_amqps_frame_writer.hypothesis.inner_test(b"x", properties)


@settings(max_examples=300, deadline=None)
@given(exchange=TEXT | st.none() | st.binary(max_size=4) | st.integers(0, 3), key=TEXT)
def test_publish_arguments_equal_py_amqps_encoder(exchange, key):
    expected = outcome(lambda: reference_publish(b"", {}, exchange, key)[0][1:3])
    got = outcome(lambda: list(_boundary.publish_arguments(exchange, key, False, False)[:2]))
    if got[0] == "error" and "Malformed UTF-8" in got[2]:
        assert expected[0] == "error" and expected[1] == "UnicodeDecodeError"
        return
    assert got == expected


@settings(max_examples=300, deadline=None)
@given(
    tag=st.integers(-(2**65), 2**65) | st.sampled_from([1.0, "1", None, True, decimal.Decimal(1)])
)
def test_delivery_tag_equals_py_amqps_encoder(tag):
    expected = outcome(lambda: loads("L", dumps("L", (tag,)), 0)[0][0])
    assert outcome(_boundary.delivery_tag, tag) == expected


@pytest.mark.parametrize(
    ("value", "coerced"),
    [("5", 5), (2.7, 2), (True, 1), (0, 0), (65535, 65535)],
)
def test_short_arguments_are_coerced_with_int(value, coerced):
    assert _boundary.method_arguments("B", value) == [coerced]


@pytest.mark.parametrize("value", [-1, 65536, None, "x", []])
def test_short_arguments_out_of_range_raise_what_py_amqp_raises(value):
    expected = outcome(dumps, "B", (value,))
    assert expected[0] == "error"
    assert outcome(_boundary.method_arguments, "B", value) == expected


def test_shortstr_that_is_not_utf8_is_rabbitmqs_frame_error():
    with pytest.raises(FrameError, match="Malformed UTF-8 in shortstr") as info:
        _boundary.method_arguments("Bs", 0, b"\xff")
    assert (info.value.reply_code, info.value.method, info.value.soft) == (501, (0, 0), False)


def test_none_and_bytes_shortstrs_decode_as_the_peer_reads_them():
    assert _boundary.method_arguments("Bss", 0, None, b"bx") == [0, "", "bx"]


@pytest.mark.parametrize(
    ("client", "negotiated"),
    [(None, 0), (0, 0), (1, 1), (30, 30), (120, 60), (2.7, 2), (0.5, 0)],
)
def test_heartbeat_is_negotiated_as_py_amqp_does(client, negotiated):
    assert _boundary.heartbeat(client, 60) == negotiated


def test_negative_heartbeat_is_refused_as_tune_ok_encodes_it():
    with pytest.raises(struct.error):
        _boundary.heartbeat(-5, 60)
