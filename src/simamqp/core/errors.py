"""AMQP 0-9-1 errors, one class per reply code.

Soft errors close the channel, hard errors close the connection (AMQP 0-9-1 spec, section 1.2
"Constants"; RabbitMQ additionally sends some hard-coded reply codes as channel errors, e.g.
``NOT_ALLOWED`` for a reused consumer tag, which is why the class, not the code, decides).
The reply text always starts with the reply code's name, as RabbitMQ writes it
(``NOT_FOUND - no queue 'q' in vhost '/'``).
"""

from __future__ import annotations

from typing import ClassVar

__all__ = [
    "CHANNEL_REPLY_CODES",
    "AMQPChannelError",
    "AMQPConnectionError",
    "AMQPError",
    "AMQPNotImplemented",
    "AMQPSyntaxError",
    "AccessRefused",
    "ChannelNotOpen",
    "CommandInvalid",
    "ConnectionForced",
    "ContentTooLarge",
    "FrameError",
    "InternalError",
    "InvalidPath",
    "NoConsumers",
    "NoRoute",
    "NotAllowed",
    "NotFound",
    "PreconditionFailed",
    "ResourceError",
    "ResourceLocked",
    "UnexpectedFrame",
    "channel_level",
    "error_for_code",
]

Method = tuple[int, int]


class AMQPError(Exception):
    """An AMQP close reason: reply code, reply text and the method that failed."""

    reply_code: ClassVar[int] = 0
    reply_name: ClassVar[str] = ""
    #: True when the error closes the channel, False when it closes the connection.
    soft: bool = True
    #: Raised while decoding a frame, before any method ran: the close names method (0, 0).
    frame_level: bool = False

    def __init__(self, reply_text: str, method: Method = (0, 0)) -> None:
        if not reply_text.startswith(self.reply_name):
            reply_text = f"{self.reply_name} - {reply_text}"
        super().__init__(reply_text)
        self.reply_text = reply_text
        self.method = method

    @property
    def class_id(self) -> int:
        return self.method[0]

    @property
    def method_id(self) -> int:
        return self.method[1]

    def __repr__(self) -> str:
        return f"{type(self).__name__}({self.reply_code}, {self.reply_text!r}, {self.method!r})"


class AMQPChannelError(AMQPError):
    """A soft error: the broker closes the channel, the connection stays open."""

    soft = True


class AMQPConnectionError(AMQPError):
    """A hard error: the broker closes the connection and every channel on it."""

    soft = False


class ContentTooLarge(AMQPChannelError):
    reply_code = 311
    reply_name = "CONTENT_TOO_LARGE"


class NoRoute(AMQPChannelError):
    """Reply code of a ``basic.return`` for an unroutable mandatory message."""

    reply_code = 312
    reply_name = "NO_ROUTE"


class NoConsumers(AMQPChannelError):
    reply_code = 313
    reply_name = "NO_CONSUMERS"


class AccessRefused(AMQPChannelError):
    reply_code = 403
    reply_name = "ACCESS_REFUSED"


class NotFound(AMQPChannelError):
    reply_code = 404
    reply_name = "NOT_FOUND"


class ResourceLocked(AMQPChannelError):
    reply_code = 405
    reply_name = "RESOURCE_LOCKED"


class PreconditionFailed(AMQPChannelError):
    reply_code = 406
    reply_name = "PRECONDITION_FAILED"


class ConnectionForced(AMQPConnectionError):
    reply_code = 320
    reply_name = "CONNECTION_FORCED"


class InvalidPath(AMQPConnectionError):
    reply_code = 402
    reply_name = "INVALID_PATH"


class FrameError(AMQPConnectionError):
    reply_code = 501
    reply_name = "FRAME_ERROR"


class AMQPSyntaxError(AMQPConnectionError):
    reply_code = 502
    reply_name = "SYNTAX_ERROR"


class CommandInvalid(AMQPConnectionError):
    reply_code = 503
    reply_name = "COMMAND_INVALID"


class ChannelNotOpen(AMQPConnectionError):
    """504 CHANNEL_ERROR: a method on a channel that is not open."""

    reply_code = 504
    reply_name = "CHANNEL_ERROR"


class UnexpectedFrame(AMQPConnectionError):
    reply_code = 505
    reply_name = "UNEXPECTED_FRAME"


class ResourceError(AMQPConnectionError):
    reply_code = 506
    reply_name = "RESOURCE_ERROR"


class NotAllowed(AMQPConnectionError):
    reply_code = 530
    reply_name = "NOT_ALLOWED"


class AMQPNotImplemented(AMQPConnectionError):
    reply_code = 540
    reply_name = "NOT_IMPLEMENTED"


class InternalError(AMQPConnectionError):
    reply_code = 541
    reply_name = "INTERNAL_ERROR"


_BY_CODE: dict[int, type[AMQPError]] = {
    cls.reply_code: cls
    for cls in (
        ContentTooLarge,
        NoRoute,
        NoConsumers,
        AccessRefused,
        NotFound,
        ResourceLocked,
        PreconditionFailed,
        ConnectionForced,
        InvalidPath,
        FrameError,
        AMQPSyntaxError,
        CommandInvalid,
        ChannelNotOpen,
        UnexpectedFrame,
        ResourceError,
        NotAllowed,
        AMQPNotImplemented,
        InternalError,
    )
}


#: Reply codes the spec defines as channel (soft) errors: what a channel.close may carry.
CHANNEL_REPLY_CODES = frozenset(
    code for code, cls in _BY_CODE.items() if issubclass(cls, AMQPChannelError)
)


def error_for_code(reply_code: int) -> type[AMQPError]:
    """The error class for a reply code (``AMQPError`` itself for an unknown code)."""
    return _BY_CODE.get(reply_code, AMQPError)


def channel_level(error_class: type[AMQPError], reply_text: str, method: Method) -> AMQPError:
    """An error that RabbitMQ sends as a channel close whatever the code's spec level.

    RabbitMQ raises e.g. ``NOT_ALLOWED`` (530, a connection error in the spec) with
    ``rabbit_misc:protocol_error/3`` from the channel process, which closes only the channel.
    """
    err = error_class(reply_text, method)
    err.soft = True
    return err
