"""Shared by the Celery tests (named uniquely: test directories are not packages)."""

from __future__ import annotations

import uuid
from dataclasses import dataclass, field
from typing import Any

import kombu


@dataclass
class CeleryEnv:
    kind: str
    url: str
    sim: Any
    run: str
    app: Any
    names: dict[str, str] = field(default_factory=dict)
    hostname: str = ""
    #: Shared with the tasks: what they saw, keyed by a per-test token.
    seen: dict[str, Any] = field(default_factory=dict)

    def token(self) -> str:
        return uuid.uuid4().hex

    def ready_count(self, queue: str) -> int:
        with kombu.Connection(self.url) as conn:
            return int(conn.default_channel.queue_declare(queue, passive=True)[1])
