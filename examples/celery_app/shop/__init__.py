"""A small shop backend: Celery tasks plus an event publisher (the code under test)."""

from .app import make_app
from .events import EVENTS_EXCHANGE, publish_order_placed

__all__ = ["EVENTS_EXCHANGE", "make_app", "publish_order_placed"]
