"""Fault injection hooks (the full fault plan is built on these).

The engine asks the plan at named points only when it holds rules, so a broker without faults
pays one attribute check per publish.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from .broker import Broker
    from .channel import Channel
    from .message import Message
    from .queues import Queue

__all__ = ["FaultPlan"]


class FaultPlan:
    def __init__(self, broker: Broker) -> None:
        self.broker = broker
        self.rules: list[Any] = []

    def has_point(self, point: str) -> bool:
        return False

    def on_publish(
        self, channel: Channel, message: Message, mandatory: bool, confirm_seq: int | None
    ) -> bool:
        """True when a fault consumed the publish (the engine must not route it)."""
        return False

    def on_enqueue(self, queue: Queue, message: Message, now: float) -> bool:
        return queue.enqueue(message, now)
