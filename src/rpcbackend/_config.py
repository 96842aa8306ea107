# mypy: disable-error-code="no-untyped-call"
# (kombu ships annotations only for part of its API; its constructors and publish are untyped)
"""Standalone configuration: the part of a Celery app that the backend reads."""

from __future__ import annotations

import dataclasses
from datetime import timedelta
from typing import Any

from kombu.connection import Connection

#: Celery's default for ``result_expires``: reply queues expire after a day unused.
DEFAULT_RESULT_EXPIRES = timedelta(days=1)


@dataclasses.dataclass(kw_only=True)
class Config:
    """Settings for using :class:`~rpcbackend.RPCBackend` without Celery.

    Pass it where a Celery app would go: ``RPCBackend(Config(broker_url=...))``. The field
    names and defaults are Celery's settings of the same name, so code moving between the two
    keeps its configuration. ``rpcbackend_*`` fields have no Celery counterpart.
    """

    broker_url: str = "amqp://guest:guest@localhost:5672//"
    broker_transport_options: dict[str, Any] = dataclasses.field(default_factory=dict)
    broker_connection_timeout: float = 4.0
    result_serializer: str = "json"
    result_persistent: bool | None = None
    result_exchange: str = "celeryresults"
    result_exchange_type: str = "direct"
    result_expires: timedelta | float | None = DEFAULT_RESULT_EXPIRES
    result_extended: bool = False
    accept_content: list[str] = dataclasses.field(default_factory=lambda: ["json"])
    result_accept_content: list[str] | None = None
    #: Most results (final or in progress) buffered for ids nobody waits on yet.
    rpcbackend_buffer_max: int = 8192
    #: Receive results by RabbitMQ direct reply-to (``amq.rabbitmq.reply-to``), no queue.
    rpcbackend_direct_reply_to: bool = False

    @property
    def conf(self) -> Config:
        """The settings object, named as on a Celery app (``app.conf``)."""
        return self

    def get(self, key: str, default: Any = None) -> Any:
        """Read a setting by name, like ``celery_app.conf.get``."""
        return getattr(self, key, default)

    def connection_for_read(self) -> Connection:
        """A new, not yet connected, broker connection (as ``Celery.connection_for_read``)."""
        return self._connection()

    def connection_for_write(self) -> Connection:
        """A new, not yet connected, broker connection (as ``Celery.connection_for_write``)."""
        return self._connection()

    def _connection(self) -> Connection:
        return Connection(
            self.broker_url,
            transport_options=dict(self.broker_transport_options),
            connect_timeout=self.broker_connection_timeout,
        )
