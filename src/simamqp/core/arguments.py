"""Validation and equivalence of declare arguments, the way RabbitMQ 3.10 checks them.

RabbitMQ validates known ``x-`` queue arguments by type and range (``rabbit_amqqueue``'s
``check_*`` functions) and, on redeclaration, compares only a fixed list of arguments
(``rabbit_misc:assert_args_equivalence``); unknown arguments are stored and ignored.
Values are described with their AMQP field-table type names as RabbitMQ prints them
(``signedint``, ``long``, ``longstr``, ``bool``, ``double``...), which is what py-amqp sends for
the matching Python types.
"""

from __future__ import annotations

import datetime as _dt
import decimal
from collections.abc import Mapping
from typing import Any

from . import replies
from .errors import PreconditionFailed

__all__ = [
    "EQUIVALENCE_CHECKED_EXCHANGE_ARGS",
    "EQUIVALENCE_CHECKED_QUEUE_ARGS",
    "MAX_EXPIRY_MS",
    "Long",
    "QueueArgs",
    "amqp_type",
    "check_consumer_args",
    "check_exchange_args",
    "has_non_finite",
    "render_value",
]

#: Queue arguments compared on redeclaration (rabbit_amqqueue:declare_args/0 in 3.10).
EQUIVALENCE_CHECKED_QUEUE_ARGS = (
    "x-expires",
    "x-message-ttl",
    "x-dead-letter-exchange",
    "x-dead-letter-routing-key",
    "x-max-length",
    "x-max-length-bytes",
    "x-max-priority",
    "x-overflow",
    "x-queue-mode",
    "x-queue-master-locator",
    "x-single-active-consumer",
    "x-queue-type",
)
#: Exchange arguments compared on redeclaration (rabbit_exchange:assert_args_equivalence/2).
EQUIVALENCE_CHECKED_EXCHANGE_ARGS = ("alternate-exchange",)

OVERFLOW_VALUES = ("drop-head", "reject-publish", "reject-publish-dlx")
_INT32 = 2**31
#: The largest TTL RabbitMQ 3.10 accepts (ms: ten years) for ``x-message-ttl``, ``x-expires``
#: and a message's ``expiration``; above it the value is ``value_too_large`` (measured).
MAX_EXPIRY_MS = 315_360_000_000


def amqp_type(value: Any) -> str:
    """The field-table type RabbitMQ sees for a Python value sent by py-amqp."""
    if value is None:
        return "void"
    if isinstance(value, bool):
        return "bool"
    if isinstance(value, int):
        return "signedint" if -_INT32 < value < _INT32 else "long"
    if isinstance(value, float):
        return "double"
    if isinstance(value, str | bytes):
        return "longstr"
    if isinstance(value, decimal.Decimal):
        return "decimal"
    if isinstance(value, _dt.datetime):
        return "timestamp"
    if isinstance(value, Mapping):
        return "table"
    if isinstance(value, list | tuple):
        return "array"
    return type(value).__name__


def erlang_float(value: float) -> str:
    """Erlang's shortest float rendering (``~p``): 1000.0 is ``1.0e3``, 1.5 is ``1.5``."""
    fixed = repr(value)
    mantissa, _, exponent = f"{value:e}".partition("e")
    digits = repr(float(mantissa)) if float(mantissa) != value else fixed
    # Shortest round-tripping mantissa: strip the repr of value / 10**exp.
    exp = int(exponent)
    short_mantissa = repr(value / 10**exp) if exp else fixed
    if "e" in short_mantissa or len(short_mantissa) > len(fixed):
        short_mantissa = digits
    scientific = f"{short_mantissa}e{exp}"
    return scientific if len(scientific) < len(fixed) and float(scientific) == value else fixed


def erlang_term(value: Any) -> str:
    """A value as RabbitMQ prints it inside quotes in a reply text."""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, float):
        return erlang_float(value)
    if isinstance(value, bytes):
        return value.decode("utf-8", "replace")
    return str(value)


def render_typed(value: Any) -> str:
    """``the value '1000' of type 'signedint'``, or ``none`` for a missing argument."""
    if value is None:
        return "none"
    return f"the value '{erlang_term(value)}' of type '{amqp_type(value)}'"


def render_value(value: Any) -> str:
    return f"'{erlang_term(value)}'"


_MISSING = object()


def inequivalent_args(
    declared: Mapping[str, Any], current: Mapping[str, Any], keys: tuple[str, ...]
) -> tuple[str, str, str] | None:
    """The first compared argument that differs, as (key, received, current) texts."""
    for key in keys:
        new = declared.get(key, _MISSING)
        old = current.get(key, _MISSING)
        if key == "x-queue-type" and _MISSING in (new, old):
            # A classic queue may or may not carry x-queue-type: "classic" (rabbit_misc's
            # assert_field_equivalence special case); "classic" against "quorum" differs.
            new = _MISSING if new in ("classic", b"classic") else new
            old = _MISSING if old in ("classic", b"classic") else old
        if new is _MISSING and old is _MISSING:
            continue
        if new is _MISSING:
            return key, "none", render_typed(old)
        if old is _MISSING:
            return key, render_typed(new), "none"
        if not args_equal(new, old):
            return key, render_value(new), render_value(old)
    return None


def _int_arg(
    args: Mapping[str, Any],
    key: str,
    queue: str,
    vhost: str,
    *,
    positive: bool = False,
    maximum: int | None = None,
) -> int | None:
    if key not in args:
        return None
    value = args[key]
    if isinstance(value, bool) or not isinstance(value, int):
        reason = f'"expected integer, got {amqp_type(value)}"'
        raise PreconditionFailed(replies.invalid_queue_arg(key, queue, vhost, reason))
    if positive and value == 0:
        raise PreconditionFailed(replies.invalid_queue_arg(key, queue, vhost, "{value_zero,0}"))
    if value < 0:
        raise PreconditionFailed(
            replies.invalid_queue_arg(key, queue, vhost, f"{{value_negative,{value}}}")
        )
    if maximum is not None and value > maximum:
        raise PreconditionFailed(
            replies.invalid_queue_arg(key, queue, vhost, f"{{value_too_large,{value}}}")
        )
    return value


class QueueArgs:
    """The ``x-`` arguments of a classic queue, validated."""

    __slots__ = (
        "dead_letter_exchange",
        "dead_letter_routing_key",
        "expires_ms",
        "max_length",
        "max_length_bytes",
        "max_priority",
        "message_ttl_ms",
        "overflow",
        "single_active_consumer",
    )

    def __init__(self, args: Mapping[str, Any], queue: str, vhost: str) -> None:
        self.message_ttl_ms = _int_arg(args, "x-message-ttl", queue, vhost, maximum=MAX_EXPIRY_MS)
        self.expires_ms = _int_arg(
            args, "x-expires", queue, vhost, positive=True, maximum=MAX_EXPIRY_MS
        )
        self.max_length = _int_arg(args, "x-max-length", queue, vhost)
        self.max_length_bytes = _int_arg(args, "x-max-length-bytes", queue, vhost)
        max_priority = _int_arg(args, "x-max-priority", queue, vhost)
        if max_priority is not None and max_priority > 255:
            raise PreconditionFailed(
                replies.invalid_queue_arg(
                    "x-max-priority", queue, vhost, f"{{max_value_exceeded,{max_priority}}}"
                )
            )
        self.max_priority = max_priority or None
        self.overflow = "drop-head"
        if "x-overflow" in args:
            overflow = args["x-overflow"]
            if not isinstance(overflow, str | bytes):
                reason = f"{{unacceptable_type,{amqp_type(overflow)}}}"
                raise PreconditionFailed(
                    replies.invalid_queue_arg("x-overflow", queue, vhost, reason)
                )
            overflow = erlang_term(overflow)
            if overflow not in OVERFLOW_VALUES:
                raise PreconditionFailed(
                    replies.invalid_queue_arg("x-overflow", queue, vhost, "invalid_overflow")
                )
            self.overflow = overflow
        dlx = args.get("x-dead-letter-exchange")
        if dlx is not None and not isinstance(dlx, str | bytes):
            raise PreconditionFailed(replies.invalid_dlx_type(amqp_type(dlx), queue, vhost))
        self.dead_letter_exchange = erlang_term(dlx) if dlx is not None else None
        self.dead_letter_routing_key = self._str_arg(
            args, "x-dead-letter-routing-key", queue, vhost
        )
        if self.dead_letter_routing_key is not None and self.dead_letter_exchange is None:
            raise PreconditionFailed(
                replies.invalid_queue_arg(
                    "x-dead-letter-routing-key", queue, vhost, "routing_key_but_no_dlx_defined"
                )
            )
        # (x-queue-type chose this class already: queue_type.queue_class_for.)
        for key, allowed, what in (("x-queue-mode", ("default", "lazy"), "mode"),):
            if key in args:
                value = args[key]
                if not isinstance(value, str | bytes):
                    reason = f"{{unacceptable_type,{amqp_type(value)}}}"
                    raise PreconditionFailed(replies.invalid_queue_arg(key, queue, vhost, reason))
                text = erlang_term(value)
                if text not in allowed:
                    reason = f"\"unsupported queue {what} '{text}'\""
                    raise PreconditionFailed(replies.invalid_queue_arg(key, queue, vhost, reason))
        sac = args.get("x-single-active-consumer", False)
        if not isinstance(sac, bool):
            reason = f"{{unacceptable_type,{amqp_type(sac)}}}"
            raise PreconditionFailed(
                replies.invalid_queue_arg("x-single-active-consumer", queue, vhost, reason)
            )
        self.single_active_consumer = sac

    @staticmethod
    def _str_arg(args: Mapping[str, Any], key: str, queue: str, vhost: str) -> str | None:
        if key not in args:
            return None
        value = args[key]
        if not isinstance(value, str | bytes):
            reason = f"{{unacceptable_type,{amqp_type(value)}}}"
            raise PreconditionFailed(replies.invalid_queue_arg(key, queue, vhost, reason))
        return erlang_term(value)


def check_exchange_args(args: Mapping[str, Any], exchange: str, vhost: str) -> None:
    """``alternate-exchange`` must be a string (rabbit_exchange's type check)."""
    if "alternate-exchange" in args:
        value = args["alternate-exchange"]
        if not isinstance(value, str | bytes):
            raise PreconditionFailed(
                replies.invalid_exchange_arg_type(amqp_type(value), exchange, vhost)
            )


def check_consumer_args(args: Mapping[str, Any], queue: str, vhost: str) -> None:
    """``x-priority`` must be an integer (rabbit_amqqueue:check_consume_arguments)."""
    if "x-priority" in args:
        value = args["x-priority"]
        if isinstance(value, bool) or not isinstance(value, int):
            reason = f'"expected integer, got {amqp_type(value)}"'
            raise PreconditionFailed(replies.invalid_queue_arg("x-priority", queue, vhost, reason))


def has_non_finite(value: Any) -> bool:
    """A NaN or an infinity anywhere in a field value (tables and arrays included).

    RabbitMQ cannot decode them: a message whose headers hold one closes the connection with
    541 INTERNAL_ERROR. Walked without recursion: RabbitMQ accepts headers nested as deep as a
    frame holds (18,000 levels measured), and no nesting may exhaust the interpreter's stack.
    """
    pending = [value]
    pop, extend = pending.pop, pending.extend
    while pending:
        item = pop()
        kind = type(item)
        if kind is float:
            if item != item or item in (_INF, -_INF):
                return True
        elif kind is dict:
            extend(item.values())
        elif kind is list or kind is tuple:
            extend(item)
    return False


class Long(int):
    """An integer RabbitMQ sends as a signed 64-bit ``l`` table field whatever its value (the
    ``count`` of an ``x-death`` entry); it compares, hashes and prints as the ``int``."""

    __slots__ = ()

    def __repr__(self) -> str:
        return int.__repr__(self)


_INF = float("inf")


def args_equal(a: Any, b: Any) -> bool:
    """Equality of two argument values as RabbitMQ compares them (type and value)."""
    return amqp_type(a) == amqp_type(b) and _normalise(a) == _normalise(b)


def _normalise(value: Any) -> Any:
    if isinstance(value, bytes):
        return value.decode("utf-8", "surrogateescape")
    return value
