"""RabbitMQ 3.10's reply texts, verbatim, in one place (the fakeredis ``_msgs`` habit).

Each function returns the text after the ``CODE - `` prefix; the error classes add the prefix.
Every text here was checked against a real RabbitMQ 3.10 (see docs/rabbitmq-facts.md and the
conformance suite, which compares them character for character).
"""

from __future__ import annotations


def _v(vhost: str) -> str:
    return f"in vhost '{vhost}'"


def no_queue(name: str, vhost: str) -> str:
    return f"no queue '{name}' {_v(vhost)}"


def no_exchange(name: str, vhost: str) -> str:
    return f"no exchange '{name}' {_v(vhost)}"


def inequivalent_flag(
    arg: str, kind: str, name: str, vhost: str, received: str, current: str
) -> str:
    return (
        f"inequivalent arg '{arg}' for {kind} '{name}' {_v(vhost)}: "
        f"received '{received}' but current is '{current}'"
    )


def inequivalent_arg(
    arg: str, kind: str, name: str, vhost: str, received: str, current: str
) -> str:
    """``received``/``current`` come rendered: "none", "'1000'", "the value '1' of type ..."."""
    return (
        f"inequivalent arg '{arg}' for {kind} '{name}' {_v(vhost)}: "
        f"received {received} but current is {current}"
    )


def exclusive_locked(name: str, vhost: str) -> str:
    return (
        f"cannot obtain exclusive access to locked queue '{name}' {_v(vhost)}. It could be "
        "originally declared on another connection or the exclusive property value does not "
        "match that of the original declaration."
    )


def exclusive_consume(name: str, vhost: str) -> str:
    return f"queue '{name}' {_v(vhost)} in exclusive use"


def reserved_prefix(kind: str, name: str) -> str:
    return f"{kind} name '{name}' contains reserved prefix 'amq.*'"


def default_exchange_op() -> str:
    return "operation not permitted on the default exchange"


def internal_exchange(name: str, vhost: str) -> str:
    return f"cannot publish to internal exchange '{name}' {_v(vhost)}"


def unknown_exchange_type(type_: str) -> str:
    # RabbitMQ says "invalid" when the name is an existing Erlang atom; '' always is (it is
    # what py-amqp sends for type None). Other atoms: docs/differences.md.
    if type_ == "":
        return "invalid exchange type ''"
    return f"unknown exchange type '{type_}'"


def unknown_delivery_tag(tag: int) -> str:
    return f"unknown delivery tag {tag}"


def reuse_consumer_tag(tag: str) -> str:
    return f"attempt to reuse consumer tag '{tag}'"


def prefetch_size_unsupported(size: int) -> str:
    return f"prefetch_size!=0 ({size})"


def recover_no_requeue() -> str:
    return "requeue=false"


def queue_in_use(name: str, vhost: str) -> str:
    return f"queue '{name}' {_v(vhost)} in use"


def queue_not_empty(name: str, vhost: str) -> str:
    return f"queue '{name}' {_v(vhost)} not empty"


def exchange_in_use(name: str, vhost: str) -> str:
    return f"exchange '{name}' {_v(vhost)} in use"


def invalid_queue_arg(arg: str, name: str, vhost: str, reason: str) -> str:
    return f"invalid arg '{arg}' for queue '{name}' {_v(vhost)}: {reason}"


def invalid_exchange_arg_type(type_name: str, exchange: str, vhost: str) -> str:
    return (
        f"invalid type '{type_name}' for arg 'alternate-exchange' in exchange '{exchange}' "
        f"{_v(vhost)}"
    )


def delivery_mode_unknown(mode: int) -> str:
    return f"invalid message: {{delivery_mode_unknown,{mode}}}"


def unacceptable_header_type(header: str, type_name: str) -> str:
    return f'invalid message: {{unacceptable_type_in_header,"{header}",{type_name}}}'


def invalid_expiration(value: str, reason: str) -> str:
    return f"invalid expiration '{value}': {reason}"


def invalid_dlx_type(type_name: str, queue: str, vhost: str) -> str:
    return (
        f"invalid type '{type_name}' for arg 'x-dead-letter-exchange' in queue '{queue}' "
        f"{_v(vhost)}"
    )


def system_exchange_deletion(name: str, vhost: str) -> str:
    return f"deletion of system exchange '{name}' {_v(vhost)} not allowed"


def reply_consumer_already_set() -> str:
    return "reply consumer already set"


def immediate_unsupported() -> str:
    return "immediate=true"


def flow_unsupported() -> str:
    return "active=false"


def second_channel_open() -> str:
    return "second 'channel.open' seen"


def expected_channel_open() -> str:
    return "expected 'channel.open'"


def user_id_mismatch(user_id: str, user: str) -> str:
    return f"user_id property set to '{user_id}' but authenticated user was '{user}'"


def vhost_not_found(vhost: str) -> str:
    return f"vhost {vhost} not found"


def connection_forced_shutdown() -> str:
    return "broker forced connection closure with reason 'shutdown'"


def no_route() -> str:
    return "NO_ROUTE"


def channel_closed() -> str:
    return "channel is closed"


def direct_reply_consume_ack() -> str:
    return "reply consumer cannot acknowledge"


def direct_reply_not_consuming() -> str:
    return "fast reply consumer does not exist"


def arg_not_for_queue_type(arg: str, name: str, vhost: str, module: str) -> str:
    """An argument another queue type accepts (rabbit_amqqueue:check_arguments_key)."""
    return f"invalid arg '{arg}' for queue '{name}' {_v(vhost)} of queue type {module}"


def invalid_queue_property(prop: str, name: str, vhost: str) -> str:
    """A lifecycle flag the queue type cannot have (rabbit_queue_type_util:check_*)."""
    return f"invalid property '{prop}' for queue '{name}' {_v(vhost)}"


def server_named_unsupported(module: str) -> str:
    return f"Cannot declare a server-named queue for type {module}"


def global_qos_unsupported(name: str, vhost: str) -> str:
    return f"queue '{name}' {_v(vhost)} does not support global qos"


# -- stream queues (rabbit_stream_queue, 3.10.8) ------------------------------------------------


def _rs(name: str, vhost: str) -> str:
    """rabbit_misc:rs/1 of a queue: ``queue 'NAME' in vhost 'VHOST'``."""
    return f"queue '{name}' {_v(vhost)}"


def stream_get(name: str, vhost: str) -> str:
    return f"basic.get not supported by stream queues {_rs(name, vhost)}"


def stream_purge(name: str, vhost: str) -> str:
    return f"queue.purge not supported by stream queues {_rs(name, vhost)}"


def stream_no_ack(name: str, vhost: str) -> str:
    return f"automatic acknowledgement not supported by stream queues {_rs(name, vhost)}"


def stream_settle(name: str, vhost: str) -> str:
    return f"basic.nack and basic.reject not supported by stream queues {_rs(name, vhost)}"


def stream_prefetch_not_set(name: str, vhost: str) -> str:
    return f"consumer prefetch count is not set for '{_rs(name, vhost)}'"


def stream_segment_size_too_large() -> str:
    return "Exceeded max value for x-stream-max-segment-size-bytes"
