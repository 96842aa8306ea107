"""What a scenario file may contain: one table of definitions, used both to validate files
(with ``file:line:column`` errors) and to generate the JSON Schema that ships with the package.
"""

from __future__ import annotations

import base64
import binascii
import datetime as _dt
import difflib
import math
from collections.abc import Mapping
from dataclasses import dataclass, field
from decimal import Decimal
from typing import Any

from ..core.connection import CHANNEL_MAX
from ..core.errors import AMQPError, error_for_code
from ..core.message import PROPERTY_NAMES
from ..core.trace import parse_digest
from ._yaml import Mark, MarkedDict, MarkedList, ScenarioError

#: The reply codes an error in a run can carry (what ``expect.errors`` may name), and
#: "closed" (a step on a channel the broker had closed).
_REPLY_CODES: frozenset[int | str] = frozenset(
    code for code in range(200, 600) if error_for_code(code) is not AMQPError
) | {"closed"}

__all__ = [
    "EXPECT_FIELDS",
    "MAX_CLOCK",
    "MAX_COPIES",
    "MAX_PUBLISHES",
    "MAX_REPEAT",
    "MAX_WINDOW",
    "STEPS",
    "TOP_FIELDS",
    "BrokerSpec",
    "Field",
    "Scenario",
    "Step",
    "StepSpec",
    "json_schema",
    "validate",
]

VERSION = 1

#: Most copies one ``publish`` step sends (``repeat``).
MAX_REPEAT = 10_000
#: Most messages all the ``publish`` steps of a scenario send together (``repeat`` counted).
MAX_PUBLISHES = 100_000
#: Most extra copies a ``duplicate`` fault makes of one message (``copies``).
MAX_COPIES = 10
#: Largest ``reorder`` fault window (messages held back at once).
MAX_WINDOW = 1_000
#: Latest virtual time a scenario may reach, in seconds (about 317 years: past any TTL RabbitMQ
#: accepts, and far inside what timestamps such as x-death's can represent).
MAX_CLOCK = 10**10
#: AMQP shortstr (names, routing keys, short properties): at most 255 bytes of UTF-8.
SHORTSTR_BYTES = 255
_INT64 = (-(2**63), 2**63 - 1)


@dataclass(frozen=True)
class Field:
    """One key of a mapping: its type (a name below), whether it is required, what it means."""

    type: str
    doc: str = ""
    required: bool = False
    enum: tuple[str, ...] | None = None
    #: inclusive bounds of an integer or number
    minimum: int | float | None = None
    maximum: int | float | None = None
    #: longest string, in bytes of UTF-8 (AMQP shortstr: 255)
    max_bytes: int | None = None


#: type name -> (JSON Schema, words for an error message)
TYPES: dict[str, tuple[dict[str, Any], str]] = {
    "string": ({"type": "string"}, "a string"),
    "integer": ({"type": "integer"}, "an integer"),
    "number": ({"type": "number"}, "a number"),
    "boolean": ({"type": "boolean"}, "true or false"),
    "mapping": ({"type": "object"}, "a mapping"),
    "list": ({"type": "array"}, "a list"),
    "body": ({"type": "string"}, "a string (the message body)"),
    "body-or-null": ({"type": ["string", "null"]}, "a string (a body) or null (no message)"),
    "code": (
        {"oneOf": [{"type": "integer"}, {"const": "closed"}]},
        'an AMQP reply code (e.g. 404) or "closed"',
    ),
    "list-or-mapping": ({"type": ["array", "object"]}, "a list or a mapping"),
    "digest": (
        {"type": "string", "pattern": "^(v2:)?[0-9a-f]{64}$"},
        "a trace digest: 'v2:' and 64 lowercase hex digits (64 hex digits alone: a v1 digest; "
        "`simamqp record FILE` writes the current version)",
    ),
    "any": ({}, "any value"),
}


@dataclass(frozen=True)
class StepSpec:
    doc: str
    fields: Mapping[str, Field]
    #: the field a bare scalar value fills (``- advance: 5``), if any.
    scalar: str | None = None
    #: True for steps that act as a client (take ``client``/``channel``/``error``).
    client: bool = True


_CLIENT = {
    "client": Field("string", "client (connection) name; opened on first use (default c1)"),
    "channel": Field(
        "integer", "channel number on that connection (default 1)", minimum=1, maximum=CHANNEL_MAX
    ),
    "error": Field("code", "the AMQP reply code this step must fail with"),
    "broker": Field("string", "broker a new client connects to (default: the first broker)"),
}
_TAG: dict[str, Any] = {
    "delivery_tag": Field("integer", "delivery tag to settle", minimum=0, maximum=2**64 - 1),
    "body": Field("body", "settle the latest unsettled delivery with this body instead"),
}


def _step(doc: str, scalar: str | None = None, client: bool = True, **fields: Any) -> StepSpec:
    merged: dict[str, Field] = {**(_CLIENT if client else {}), **fields}
    return StepSpec(doc, merged, scalar, client)


_ARGS = Field("mapping", "x-arguments table")


def _name(doc: str = "", *, required: bool = False) -> Field:
    """A name or key sent as an AMQP shortstr."""
    return Field("string", doc, required=required, max_bytes=SHORTSTR_BYTES)


STEPS: dict[str, StepSpec] = {
    "open": _step("open a connection for a client", vhost=_name("vhost (default /)")),
    "channel": _step("open a channel (steps open channels on first use)"),
    "exchange_declare": _step(
        "exchange.declare",
        exchange=_name("exchange name", required=True),
        type=_name("exchange type: direct (default), fanout, topic, headers"),
        passive=Field("boolean"),
        durable=Field("boolean"),
        auto_delete=Field("boolean"),
        internal=Field("boolean"),
        arguments=_ARGS,
    ),
    "exchange_delete": _step(
        "exchange.delete",
        exchange=_name(required=True),
        if_unused=Field("boolean"),
    ),
    "exchange_bind": _step(
        "exchange.bind (destination receives what source routes)",
        destination=_name(required=True),
        source=_name(required=True),
        routing_key=_name(),
        arguments=_ARGS,
    ),
    "exchange_unbind": _step(
        "exchange.unbind",
        destination=_name(required=True),
        source=_name(required=True),
        routing_key=_name(),
        arguments=_ARGS,
    ),
    "queue_declare": _step(
        "queue.declare",
        queue=_name("queue name ('' lets the broker name it)"),
        passive=Field("boolean"),
        durable=Field("boolean"),
        exclusive=Field("boolean"),
        auto_delete=Field("boolean"),
        arguments=_ARGS,
    ),
    "queue_bind": _step(
        "queue.bind",
        queue=_name(required=True),
        exchange=_name(required=True),
        routing_key=_name(),
        arguments=_ARGS,
    ),
    "queue_unbind": _step(
        "queue.unbind",
        queue=_name(required=True),
        exchange=_name(required=True),
        routing_key=_name(),
        arguments=_ARGS,
    ),
    "queue_purge": _step("queue.purge", queue=_name(required=True)),
    "queue_delete": _step(
        "queue.delete",
        queue=_name(required=True),
        if_unused=Field("boolean"),
        if_empty=Field("boolean"),
    ),
    "qos": _step(
        "basic.qos",
        prefetch_count=Field("integer", required=True, minimum=0, maximum=2**16 - 1),
        prefetch_size=Field("integer", minimum=0, maximum=2**32 - 1),
        a_global=Field("boolean", "RabbitMQ's per-channel (global) prefetch"),
    ),
    "confirm_select": _step("confirm.select: publisher confirms on this channel"),
    "publish": _step(
        "basic.publish",
        body=Field("body", "message body; '{i}' is replaced by the copy number with repeat"),
        body_base64=Field("string", "message body as base64 (binary bodies)"),
        exchange=_name("exchange ('' is the default exchange)"),
        routing_key=_name(),
        mandatory=Field("boolean"),
        immediate=Field("boolean"),
        properties=Field("mapping", "basic properties (py-amqp names)"),
        repeat=Field(
            "integer", "publish this many copies (default 1)", minimum=1, maximum=MAX_REPEAT
        ),
        reply_to_of=Field(
            "string",
            "reply to the last message this client received: routing key = its reply_to, "
            "correlation_id copied unless given (a worker answering an RPC request)",
        ),
    ),
    "consume": _step(
        "basic.consume",
        queue=_name(required=True),
        consumer_tag=_name(),
        no_ack=Field("boolean"),
        exclusive=Field("boolean"),
        arguments=_ARGS,
    ),
    "cancel": _step("basic.cancel", consumer_tag=_name(required=True)),
    "get": _step(
        "basic.get",
        queue=_name(required=True),
        no_ack=Field("boolean"),
        expect=Field("body-or-null", "the body this get must return (null: queue empty)"),
    ),
    "ack": _step("basic.ack", **_TAG, multiple=Field("boolean")),
    "reject": _step("basic.reject", **_TAG, requeue=Field("boolean")),
    "nack": _step("basic.nack", **_TAG, multiple=Field("boolean"), requeue=Field("boolean")),
    "recover": _step("basic.recover", requeue=Field("boolean")),
    "flow": _step("channel.flow", active=Field("boolean", required=True)),
    "close_channel": _step("channel.close (client side)"),
    "close": _step("connection.close (client side)"),
    "advance": _step(
        "move the virtual clock forward, firing each timer at its due time",
        scalar="seconds",
        client=False,
        seconds=Field("number", "seconds to move forward", minimum=0),
        to=Field("number", "absolute time to move to (what record mode writes)", minimum=0),
        broker=Field("string"),
    ),
    "run_until_idle": _step(
        "deliver everything due and fire due timers", client=False, broker=Field("string")
    ),
    "restart": _step(
        "restart the broker: connections dropped, transient state lost",
        client=False,
        broker=Field("string"),
    ),
    "close_connections": _step(
        "force-close every connection (320 CONNECTION_FORCED)",
        client=False,
        broker=Field("string"),
    ),
    "add_vhost": _step(
        "create a vhost", client=False, vhost=_name(required=True), broker=Field("string")
    ),
    "fault_add": _step(
        "activate a fault rule (simamqp.core.faults.FaultRule fields)",
        client=False,
        broker=Field("string"),
        point=Field("string", "publish, enqueue, deliver, ack or connection", required=True),
        action=Field("string", "drop, duplicate, reorder, delay, redeliver, ...", required=True),
        name=Field("string"),
        queue=_name(),
        exchange=_name(),
        routing_key=_name("topic pattern"),
        properties=Field("mapping"),
        headers=Field("mapping"),
        nth=Field("integer", minimum=1),
        probability=Field("number"),
        max_count=Field("integer", minimum=1),
        copies=Field("integer", minimum=1, maximum=MAX_COPIES),
        window=Field("integer", minimum=2, maximum=MAX_WINDOW),
        delay=Field("number", minimum=0),
        reply_code=Field("integer"),
        reply_text=_name(),
    ),
    "fault_remove": _step(
        "deactivate a fault rule",
        client=False,
        name=Field("string", required=True),
        broker=Field("string"),
    ),
    "expect": _step("check expectations at this point", client=False),
}

BROKER_FIELDS: dict[str, Field] = {
    "seed": Field("integer", "the broker's seed (default 0; simamqp run --seed overrides)"),
    "clock": Field("string", "virtual (default) or wall", enum=("virtual", "wall")),
    "start": Field("number", "virtual clock start time (default 0)", minimum=0, maximum=MAX_CLOCK),
    "vhosts": Field("list", "extra vhosts to create"),
}

DECLARE_FIELDS: dict[str, Field] = {
    "exchanges": Field("list", "exchange_declare arguments, one mapping each"),
    "queues": Field("list", "queue_declare arguments, one mapping each"),
    "bindings": Field("list", "queue_bind (queue:) or exchange_bind (destination:) arguments"),
}

EXPECT_FIELDS: dict[str, Field] = {
    "broker": Field("string", "the broker these expectations are about"),
    "deliveries": Field(
        "mapping",
        "client -> the messages it received (deliveries and gets) in order: bodies, or "
        "mappings with body/redelivered/routing_key/exchange/consumer_tag/via/properties",
    ),
    "queues": Field(
        "mapping",
        "queue -> 'absent' or a mapping of messages_ready, messages_unacknowledged, messages, "
        "consumers, bodies, durable, exclusive, auto_delete, arguments, type, delivery_counts, "
        "vhost",
    ),
    "exchanges": Field("mapping", "exchange -> 'absent' or a mapping of type, durable, ..."),
    "errors": Field("list", "every error in order: mappings of client, code, text (substring)"),
    "returns": Field("mapping", "client -> bodies of basic.return'ed messages, in order"),
    "confirms": Field("mapping", "client -> list of 'ack'/'nack' publisher confirms, in order"),
    "cancels": Field("mapping", "client -> consumer tags the broker cancelled, in order"),
    "events": Field("mapping", "trace event kind -> how many such events"),
    "time": Field("number", "the clock's time"),
    "trace_digest": Field(
        "digest",
        "the trace's digest, 'v2:<sha256 hex>' (broker.trace.digest()); a bare 64-hex value is a "
        "v1 digest, still checked",
    ),
    "trace": Field("list", "the trace events, one line each (record mode writes this)"),
}

TOP_FIELDS: dict[str, Field] = {
    "version": Field("integer", "scenario format version: 1", required=True),
    "name": Field("string", "what the scenario shows (default: the file name)"),
    "description": Field("string"),
    "tags": Field("list", "words -k can select on"),
    **{k: v for k, v in BROKER_FIELDS.items()},
    "brokers": Field("mapping", "name -> broker settings (seed, clock, start, vhosts)"),
    "declare": Field("mapping", "entities declared before the steps, by client 'setup'"),
    "faults": Field("list-or-mapping", "fault plan rules (simamqp.core.faults), per from_dict"),
    "steps": Field("list", "client steps, in order", required=True),
    "expect": Field("mapping", "expectations checked after the last step"),
}


@dataclass
class BrokerSpec:
    name: str
    seed: int = 0
    clock: str = "virtual"
    start: float = 0.0
    vhosts: list[str] = field(default_factory=list)


@dataclass
class Step:
    name: str
    args: dict[str, Any]
    mark: Mark
    index: int

    def where(self) -> str:
        return f"step {self.index + 1} ({self.name}) at {self.mark}"


@dataclass
class Scenario:
    path: str
    name: str
    brokers: dict[str, BrokerSpec]
    steps: list[Step]
    expect: dict[str, Any]
    declare: dict[str, Any]
    faults: Any
    description: str = ""
    tags: list[str] = field(default_factory=list)
    mark: Mark | None = None

    @property
    def default_broker(self) -> str:
        return next(iter(self.brokers))


# -- validation -------------------------------------------------------------------------------


def _type_ok(kind: str, value: Any, spec: Field) -> bool:
    if kind in ("string", "body"):
        ok = isinstance(value, str)
    elif kind == "integer":
        ok = isinstance(value, int) and not isinstance(value, bool)
    elif kind == "number":
        ok = (
            isinstance(value, int | float)
            and not isinstance(value, bool)
            and (isinstance(value, int) or math.isfinite(value))
        )
    elif kind == "boolean":
        ok = isinstance(value, bool)
    elif kind == "mapping":
        ok = isinstance(value, dict)
    elif kind == "list":
        ok = isinstance(value, list)
    elif kind == "body-or-null":
        ok = value is None or isinstance(value, str)
    elif kind == "code":
        ok = (isinstance(value, int) and not isinstance(value, bool)) or value == "closed"
    elif kind == "list-or-mapping":
        ok = isinstance(value, list | dict)
    elif kind == "digest":
        try:
            parse_digest(value)
        except ValueError:
            ok = False
        else:
            ok = True
    else:
        ok = True
    if ok and spec.enum is not None:
        ok = value in spec.enum
    return ok


def _describe(value: Any) -> str:
    if value is None:
        return "null"
    if isinstance(value, bool):
        return f"boolean {str(value).lower()}"
    if isinstance(value, dict):
        return "a mapping"
    if isinstance(value, list):
        return "a list"
    kind = {int: "integer", float: "number", str: "string"}.get(type(value), type(value).__name__)
    shown = repr(value)
    if len(shown) > 60:
        shown = shown[:50] + "..." + shown[-7:]
    return f"{kind} {shown}"


def _bounds_problem(spec: Field, value: Any) -> str | None:
    """What is out of range about a value of the right type, or None."""
    if isinstance(value, str) and spec.max_bytes is not None:
        size = len(value.encode("utf-8"))
        if size > spec.max_bytes:
            return f"must be at most {spec.max_bytes} bytes (AMQP shortstr), got {size}"
    if isinstance(value, int | float) and not isinstance(value, bool):
        low, high = spec.minimum, spec.maximum
        if (low is not None and value < low) or (high is not None and value > high):
            if low is not None and high is not None:
                return f"must be between {low} and {high}, got {_describe(value)}"
            if low is not None:
                return f"must be >= {low}, got {_describe(value)}"
            return f"must be <= {high}, got {_describe(value)}"
    return None


def _suggest(word: str, options: list[str]) -> str:
    close = difflib.get_close_matches(word, options, n=1)
    return f" (did you mean {close[0]!r}?)" if close else ""


def check_fields(
    mapping: MarkedDict, fields: Mapping[str, Field], what: str, *, mark: Mark | None = None
) -> None:
    """Every key known, every value of its type, every required key present."""
    for key, value in mapping.items():
        spec = fields.get(key)
        if spec is None:
            known = sorted(fields)
            raise ScenarioError(
                mapping.key_marks.get(key, mapping.mark),
                f"unknown field {key!r} in {what}{_suggest(key, known)}; "
                f"expected one of: {', '.join(known)}",
            )
        if not _type_ok(spec.type, value, spec):
            expected = TYPES[spec.type][1]
            if spec.enum is not None:
                expected = "one of " + ", ".join(repr(e) for e in spec.enum)
            raise ScenarioError(
                mapping.mark_of(key),
                f"{what}: field {key!r} must be {expected}, got {_describe(value)}",
            )
        problem = _bounds_problem(spec, value)
        if problem is not None:
            raise ScenarioError(mapping.mark_of(key), f"{what}: field {key!r} {problem}")
    for key, spec in fields.items():
        if spec.required and key not in mapping:
            raise ScenarioError(mark or mapping.mark, f"{what}: missing required field {key!r}")


#: basic properties by py-amqp name -> AMQP type (spec section 1.8.1)
_PROPERTY_TYPES: dict[str, str] = {
    **dict.fromkeys(PROPERTY_NAMES, "shortstr"),
    "application_headers": "table",
    "delivery_mode": "octet",
    "priority": "octet",
    "timestamp": "timestamp",
}


def _check_table(table: Any, mark: Mark, what: str) -> None:
    """An AMQP field table as py-amqp's encoder takes it: str keys of at most 255 bytes, values
    str, bytes, bool, int (64-bit), float, null, timestamp, list or table."""
    if not isinstance(table, dict):
        raise ScenarioError(mark, f"{what} must be a mapping, got {_describe(table)}")
    for key, value in table.items():
        where = table.mark_of(key) if isinstance(table, MarkedDict) else mark
        if len(key.encode("utf-8")) > SHORTSTR_BYTES:
            raise ScenarioError(where, f"{what}: key {key[:20]!r}... is longer than 255 bytes")
        _check_field_value(value, where, f"{what}.{key}")


def _check_field_value(value: Any, mark: Mark, what: str) -> None:
    if isinstance(value, dict):
        _check_table(value, mark, what)
    elif isinstance(value, list):
        for i, item in enumerate(value):
            where = value.mark_of(i) if isinstance(value, MarkedList) else mark
            _check_field_value(item, where, f"{what}[{i + 1}]")
    elif isinstance(value, int) and not isinstance(value, bool):
        if not _INT64[0] <= value <= _INT64[1]:
            raise ScenarioError(mark, f"{what}: {value} does not fit a signed 64-bit integer")
    elif not (
        value is None or isinstance(value, str | bytes | bool | float | _dt.datetime | Decimal)
    ):
        raise ScenarioError(
            mark, f"{what}: {_describe(value)} is not an AMQP field value (write it as a string)"
        )


def _check_properties(properties: MarkedDict, what: str) -> None:
    for key, value in properties.items():
        where = properties.mark_of(key)
        kind = _PROPERTY_TYPES.get(key)
        if kind is None:
            raise ScenarioError(
                properties.key_marks.get(key, properties.mark),
                f"{what}: unknown property {key!r}{_suggest(key, list(_PROPERTY_TYPES))}; "
                f"expected one of: {', '.join(PROPERTY_NAMES)}",
            )
        if kind == "shortstr":
            ok = isinstance(value, str) and len(value.encode("utf-8")) <= SHORTSTR_BYTES
            expected = "a string of at most 255 bytes"
        elif kind == "octet":
            ok = isinstance(value, int) and not isinstance(value, bool) and 0 <= value <= 255
            expected = "an integer between 0 and 255"
        elif kind == "timestamp":
            ok = isinstance(value, _dt.datetime) or (
                isinstance(value, int) and not isinstance(value, bool) and 0 <= value < 2**64
            )
            expected = "a timestamp (seconds since 1970 or an ISO date and time)"
        else:
            _check_table(value, where, f"{what}.{key}")
            continue
        if not ok:
            raise ScenarioError(
                where, f"{what}: property {key!r} must be {expected}, got {_describe(value)}"
            )


def _check_wire_values(name: str, args: MarkedDict, what: str) -> None:
    """What the client library would refuse to encode, refused before anything runs."""
    if name != "fault_add" and "arguments" in args:
        _check_table(args["arguments"], args.mark_of("arguments"), f"{what}: arguments")
    if name == "publish":
        if "properties" in args:
            _check_properties(args["properties"], f"{what}: properties")
        if "body_base64" in args:
            try:
                base64.b64decode(args["body_base64"], validate=True)
            except (binascii.Error, ValueError) as err:
                raise ScenarioError(
                    args.mark_of("body_base64"), f"{what}: body_base64 is not base64: {err}"
                ) from None


def _require_mapping(value: Any, mark: Mark, what: str) -> MarkedDict:
    if not isinstance(value, MarkedDict):
        raise ScenarioError(mark, f"{what} must be a mapping, got {_describe(value)}")
    return value


def _parse_step(item: Any, mark: Mark, index: int) -> Step:
    names = sorted(STEPS)
    if isinstance(item, str):
        spec = STEPS.get(item)
        if spec is None:
            raise ScenarioError(
                mark,
                f"unknown step {item!r}{_suggest(item, names)}; expected one of: "
                + ", ".join(names),
            )
        missing = [k for k, f in spec.fields.items() if f.required]
        if missing:
            raise ScenarioError(mark, f"step {item!r}: missing required field {missing[0]!r}")
        return Step(item, {}, mark, index)
    if not isinstance(item, MarkedDict) or len(item) != 1:
        raise ScenarioError(
            mark,
            "a step must be a mapping with exactly one key, the step name "
            f"(e.g. '- publish: {{routing_key: q, body: hi}}'), got {_describe(item)}"
            + (f" with keys {', '.join(map(repr, item))}" if isinstance(item, dict) else ""),
        )
    name, value = next(iter(item.items()))
    spec = STEPS.get(name)
    if spec is None:
        raise ScenarioError(
            item.key_marks[name],
            f"unknown step {name!r}{_suggest(name, names)}; expected one of: " + ", ".join(names),
        )
    value_mark = item.mark_of(name)
    if name == "expect":
        body = _require_mapping(value, value_mark, "step 'expect'")
        _check_expect(body)
        return Step(name, dict(body), item.key_marks[name], index)
    if value is None:
        args = MarkedDict()
        args.mark, args.key_marks, args.value_marks = value_mark, {}, {}
    elif isinstance(value, MarkedDict):
        args = value
    elif spec.scalar is not None and not isinstance(value, list):
        args = MarkedDict({spec.scalar: value})
        args.mark = value_mark
        args.key_marks = {spec.scalar: value_mark}
        args.value_marks = {spec.scalar: value_mark}
    else:
        raise ScenarioError(
            value_mark, f"step {name!r} takes a mapping of fields, got {_describe(value)}"
        )
    check_fields(args, spec.fields, f"step {name!r}", mark=item.key_marks[name])
    if name == "advance" and ("seconds" in args) == ("to" in args):
        raise ScenarioError(value_mark, "step 'advance': give exactly one of 'seconds' or 'to'")
    if name == "advance" and args.get("seconds", 0) < 0:
        raise ScenarioError(value_mark, "step 'advance': time never goes backwards (seconds < 0)")
    if name in ("ack", "reject", "nack") and ("delivery_tag" in args) == ("body" in args):
        raise ScenarioError(
            value_mark, f"step {name!r}: give exactly one of 'delivery_tag' or 'body'"
        )
    if name == "publish" and "body" in args and "body_base64" in args:
        raise ScenarioError(value_mark, "step 'publish': give 'body' or 'body_base64', not both")
    _check_wire_values(name, args, f"step {name!r}")
    return Step(name, dict(args), item.key_marks[name], index)


#: What an expectation may say about each observed thing (a typo is an error, not a failure).
EXPECT_KEYS: dict[str, tuple[str, ...]] = {
    "queues": (
        "messages_ready",
        "messages_unacknowledged",
        "messages",
        "consumers",
        "bodies",
        "durable",
        "exclusive",
        "auto_delete",
        "arguments",
        "type",
        "delivery_counts",
        "vhost",
    ),
    "exchanges": ("type", "durable", "auto_delete", "internal", "arguments", "vhost"),
    "deliveries": (
        "body",
        "via",
        "channel",
        "delivery_tag",
        "redelivered",
        "exchange",
        "routing_key",
        "consumer_tag",
        "properties",
    ),
    "returns": ("body", "reply_code", "exchange", "routing_key"),
    "errors": ("client", "channel", "code", "text", "step"),
}


def _check_keys(item: MarkedDict, section: str, what: str) -> None:
    known = EXPECT_KEYS[section]
    for key in item:
        if key not in known:
            raise ScenarioError(
                item.key_marks.get(key, item.mark),
                f"unknown field {key!r} in {what}{_suggest(key, list(known))}; "
                f"expected one of: {', '.join(known)}",
            )


def _check_expect(expect: MarkedDict) -> None:
    check_fields(expect, EXPECT_FIELDS, "expect")
    for section in ("deliveries", "returns", "confirms", "cancels"):
        table = expect.get(section)
        if isinstance(table, MarkedDict):
            for client, items in table.items():
                if not isinstance(items, list):
                    raise ScenarioError(
                        table.mark_of(client),
                        f"expect.{section}.{client} must be a list, got {_describe(items)}",
                    )
                for i, item in enumerate(items):
                    where = f"expect.{section}.{client}[{i + 1}]"
                    item_mark = (
                        items.mark_of(i) if isinstance(items, MarkedList) else table.mark_of(client)
                    )
                    if section in EXPECT_KEYS and isinstance(item, MarkedDict):
                        _check_keys(item, section, where)
                    elif section in EXPECT_KEYS and not isinstance(item, str):
                        raise ScenarioError(
                            item_mark,
                            f"{where} must be a body or a mapping, got {_describe(item)}",
                        )
                    elif section not in EXPECT_KEYS and not isinstance(item, str):
                        raise ScenarioError(
                            item_mark, f"{where} must be a string, got {_describe(item)}"
                        )
    for section in ("queues", "exchanges"):
        table = expect.get(section)
        if isinstance(table, MarkedDict):
            for name, state in table.items():
                if state != "absent" and not isinstance(state, dict):
                    raise ScenarioError(
                        table.mark_of(name),
                        f"expect.{section}.{name} must be 'absent' or a mapping, "
                        f"got {_describe(state)}",
                    )
                if isinstance(state, MarkedDict):
                    _check_keys(state, section, f"expect.{section}.{name}")
    errors = expect.get("errors")
    if isinstance(errors, MarkedList):
        for i, item in enumerate(errors):
            code: Any = item
            mark = errors.mark_of(i)
            if isinstance(item, MarkedDict):
                _check_keys(item, "errors", f"expect.errors[{i + 1}]")
                if "code" not in item:
                    continue
                code, mark = item["code"], item.mark_of("code")
            elif not (isinstance(item, int) and not isinstance(item, bool)):
                raise ScenarioError(
                    mark,
                    f"expect.errors[{i + 1}] must be a reply code or a mapping of "
                    f"client, channel, code, text, step; got {_describe(item)}",
                )
            if isinstance(code, bool) or code not in _REPLY_CODES:
                # An expectation no run can meet is a mistake in the file: say so at once.
                raise ScenarioError(
                    mark,
                    f"expect.errors[{i + 1}]: {code!r} is not an AMQP error reply code "
                    f"(one of {', '.join(sorted(map(str, _REPLY_CODES)))})",
                )
    events = expect.get("events")
    if isinstance(events, MarkedDict):
        for kind, count in events.items():
            if not isinstance(count, int) or isinstance(count, bool):
                raise ScenarioError(
                    events.mark_of(kind), f"expect.events.{kind} must be an integer count"
                )
    for key in ("trace",):
        lines = expect.get(key)
        if isinstance(lines, MarkedList):
            for i, line in enumerate(lines):
                if not isinstance(line, str):
                    raise ScenarioError(
                        lines.mark_of(i), f"expect.trace[{i + 1}] must be a string (one event)"
                    )


def _check_fault_limits(rule: Any) -> None:
    if rule.copies > MAX_COPIES:
        raise ValueError(f"copies must be at most {MAX_COPIES}, got {rule.copies}")
    if rule.window > MAX_WINDOW:
        raise ValueError(f"window must be at most {MAX_WINDOW}, got {rule.window}")
    if rule.reply_text and len(rule.reply_text.encode("utf-8")) > SHORTSTR_BYTES:
        raise ValueError("reply_text must be at most 255 bytes (AMQP shortstr)")


def _check_expect_broker(expect: Mapping[str, Any], brokers: Mapping[str, Any], mark: Mark) -> None:
    target = expect.get("broker")
    if target is not None and target not in brokers:
        raise ScenarioError(
            mark, f"expect: unknown broker {target!r}; expected one of: {', '.join(brokers)}"
        )


def _broker_spec(name: str, data: Mapping[str, Any], mark: Mark) -> BrokerSpec:
    vhosts = data.get("vhosts", [])
    if not all(isinstance(v, str) and len(v.encode("utf-8")) <= SHORTSTR_BYTES for v in vhosts):
        raise ScenarioError(mark, "vhosts must be a list of names (strings of at most 255 bytes)")
    return BrokerSpec(
        name=name,
        seed=int(data.get("seed", 0)),
        clock=str(data.get("clock", "virtual")),
        start=float(data.get("start", 0.0)),
        vhosts=list(vhosts),
    )


def validate(data: Any, path: str) -> Scenario:
    """Check a parsed file against the definitions; the first problem raises ScenarioError."""
    top_mark = data.mark if isinstance(data, MarkedDict | MarkedList) else Mark(path, 1, 1)
    if not isinstance(data, MarkedDict):
        raise ScenarioError(
            top_mark, f"a scenario file must be a mapping with 'version: 1', got {_describe(data)}"
        )
    if "version" not in data:
        raise ScenarioError(data.mark, "missing required field 'version' (expected version: 1)")
    version = data["version"]
    if version != VERSION or isinstance(version, bool):
        raise ScenarioError(
            data.mark_of("version"),
            f"unknown version {version!r}; this simamqp reads version: {VERSION}",
        )
    check_fields(data, TOP_FIELDS, "scenario")
    brokers: dict[str, BrokerSpec] = {}
    if "brokers" in data:
        table = data["brokers"]
        if any(k in data for k in BROKER_FIELDS):
            raise ScenarioError(
                data.key_marks["brokers"],
                "give broker settings either at the top level or under 'brokers', not both",
            )
        if not table:
            raise ScenarioError(data.mark_of("brokers"), "brokers: expected at least one broker")
        for name, settings in table.items():
            settings = _require_mapping(settings, table.mark_of(name), f"brokers.{name}")
            check_fields(settings, BROKER_FIELDS, f"brokers.{name}")
            brokers[name] = _broker_spec(name, settings, settings.mark)
    else:
        brokers["default"] = _broker_spec("default", data, data.mark)
    declare = data.get("declare", MarkedDict())
    if "declare" in data:
        check_fields(declare, DECLARE_FIELDS, "declare")
        for section in ("exchanges", "queues", "bindings"):
            for i, entry in enumerate(declare.get(section, [])):
                entry_mark = declare[section].mark_of(i)
                entry = _require_mapping(entry, entry_mark, f"declare.{section}[{i + 1}]")
                step_name = {
                    "exchanges": "exchange_declare",
                    "queues": "queue_declare",
                    "bindings": "exchange_bind" if "destination" in entry else "queue_bind",
                }[section]
                fields = {k: v for k, v in STEPS[step_name].fields.items() if k not in _CLIENT}
                check_fields(entry, fields, f"declare.{section}[{i + 1}]")
                _check_wire_values(step_name, entry, f"declare.{section}[{i + 1}]")
    faults = data.get("faults")
    if isinstance(faults, MarkedList):
        for i, rule in enumerate(faults):
            _require_mapping(rule, faults.mark_of(i), f"faults[{i + 1}]")
    from ..core.broker import Broker
    from ..core.faults import FaultRule, InvalidFault, parse_rules

    # The rules each broker will hold, step by step, in a throwaway engine: names are given
    # (and clash, or are missing at fault_remove) exactly as they will be when the file runs.
    plans = {name: Broker().faults for name in brokers}
    if faults is not None:
        listed = faults.get("rules") if isinstance(faults, MarkedDict) else faults
        where = data.mark_of("faults")
        try:
            for i, rule in enumerate(parse_rules(faults)):
                if isinstance(listed, MarkedList):
                    where = listed.mark_of(i)
                _check_fault_limits(rule)
                for plan in plans.values():
                    plan.add(rule)
        except (InvalidFault, TypeError, ValueError) as err:
            raise ScenarioError(where, f"faults: {err}") from None
    clocks: dict[str, float] = {}  # broker -> virtual time after the steps so far
    published = 0
    steps_value: MarkedList = data["steps"]
    steps = [_parse_step(item, steps_value.mark_of(i), i) for i, item in enumerate(steps_value)]
    for step in steps:
        target = step.args.get("broker")
        if target is not None and target not in brokers:
            raise ScenarioError(
                step.mark,
                f"{step.where()}: unknown broker {target!r}; expected one of: {', '.join(brokers)}",
            )
        plan = plans[target or next(iter(brokers))]
        if step.name == "fault_add":
            rule_data = {k: v for k, v in step.args.items() if k != "broker"}
            try:
                plan.add(FaultRule.from_dict(rule_data))
            except (InvalidFault, TypeError, ValueError) as err:
                raise ScenarioError(step.mark, f"{step.where()}: {err}") from None
        if step.name == "fault_remove":
            try:
                plan.remove(step.args["name"])
            except KeyError:
                active = ", ".join(r.name for r in plan.rules) or "none"
                raise ScenarioError(
                    step.mark,
                    f"{step.where()}: no active fault rule {step.args['name']!r} "
                    f"at this step (active: {active})",
                ) from None
        if step.name == "expect":
            _check_expect_broker(step.args, brokers, step.mark)
        if step.name == "publish":
            published += step.args.get("repeat", 1)
            if published > MAX_PUBLISHES:
                raise ScenarioError(
                    step.mark,
                    f"{step.where()}: the publish steps send more than {MAX_PUBLISHES} "
                    "messages in all (MAX_PUBLISHES)",
                )
        if step.name == "advance":
            spec = brokers[target or next(iter(brokers))]
            if spec.clock == "wall":
                raise ScenarioError(step.mark, "step 'advance' needs clock: virtual")
            now = clocks.get(spec.name, spec.start)
            now = max(now, step.args["to"]) if "to" in step.args else now + step.args["seconds"]
            if now > MAX_CLOCK:
                raise ScenarioError(
                    step.mark,
                    f"{step.where()}: the virtual clock would pass {MAX_CLOCK} seconds (MAX_CLOCK)",
                )
            clocks[spec.name] = now
    expect = data.get("expect", MarkedDict())
    if "expect" in data:
        _check_expect(expect)
        _check_expect_broker(expect, brokers, data.mark_of("expect"))
    tags = data.get("tags", [])
    default_name = path.rsplit("/", 1)[-1].rsplit(".", 1)[0]
    return Scenario(
        path=path,
        name=str(data.get("name", default_name)),
        brokers=brokers,
        steps=steps,
        expect=dict(expect),
        declare=dict(declare),
        faults=faults,
        description=str(data.get("description", "")),
        tags=[str(t) for t in tags],
        mark=data.mark,
    )


# -- JSON Schema ------------------------------------------------------------------------------


def _object(fields: Mapping[str, Field], *, closed: bool = True) -> dict[str, Any]:
    properties: dict[str, Any] = {}
    for key, spec in fields.items():
        prop = dict(TYPES[spec.type][0])
        if spec.enum is not None:
            prop["enum"] = list(spec.enum)
        if spec.minimum is not None:
            prop["minimum"] = spec.minimum
        if spec.maximum is not None:
            prop["maximum"] = spec.maximum
        if spec.max_bytes is not None:
            prop["maxLength"] = spec.max_bytes  # characters: a lower bound of the byte limit
        if spec.doc:
            prop["description"] = spec.doc
        properties[key] = prop
    schema: dict[str, Any] = {"type": "object", "properties": properties}
    required = [k for k, f in fields.items() if f.required]
    if required:
        schema["required"] = required
    if closed:
        schema["additionalProperties"] = False
    return schema


def json_schema() -> dict[str, Any]:
    """The JSON Schema of scenario files, generated from the same tables the loader uses."""
    step_variants: list[dict[str, Any]] = []
    bare = []
    for name, spec in STEPS.items():
        if name == "expect":
            body: dict[str, Any] = {"$ref": "#/$defs/expect"}
        else:
            body = {"oneOf": [_object(spec.fields), {"type": "null"}]}
            if spec.scalar is not None:
                scalar_schema = dict(TYPES[spec.fields[spec.scalar].type][0])
                body["oneOf"].append(scalar_schema)
        step_variants.append(
            {
                "type": "object",
                "description": spec.doc,
                "properties": {name: body},
                "required": [name],
                "additionalProperties": False,
            }
        )
        if not any(f.required for f in spec.fields.values()) and name != "expect":
            bare.append(name)
    step_variants.append({"enum": bare, "description": "a step with no fields"})
    top = _object(TOP_FIELDS)
    top["properties"]["version"] = {"const": VERSION, "description": "scenario format version"}
    top["properties"]["steps"] = {"type": "array", "items": {"$ref": "#/$defs/step"}}
    top["properties"]["expect"] = {"$ref": "#/$defs/expect"}
    top["properties"]["declare"] = _object(DECLARE_FIELDS)
    top["properties"]["brokers"] = {
        "type": "object",
        "minProperties": 1,
        "additionalProperties": _object(BROKER_FIELDS),
    }
    return {
        "$schema": "https://json-schema.org/draft/2020-12/schema",
        "$id": "https://simamqp.invalid/scenario-v1.schema.json",
        "title": "simamqp scenario file, version 1",
        **top,
        "$defs": {"step": {"oneOf": step_variants}, "expect": _object(EXPECT_FIELDS)},
    }
