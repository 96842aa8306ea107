"""The Celery app. ``make_app(**settings)`` builds one (tests pass the simamqp settings)."""

from __future__ import annotations

from typing import Any

from celery import Celery


def make_app(**settings: Any) -> Celery:
    app = Celery("shop", set_as_current=False)
    app.conf.update(
        task_default_queue="shop",
        result_expires=3600,
        worker_prefetch_multiplier=1,
    )
    app.conf.update(settings)

    @app.task(name="shop.add", shared=False)
    def add(x: int, y: int) -> int:
        return x + y

    @app.task(name="shop.charge", shared=False)
    def charge(order_id: str, amount: int) -> dict[str, Any]:
        if amount <= 0:
            raise ValueError(f"order {order_id}: amount must be positive, got {amount}")
        return {"order": order_id, "charged": amount}

    @app.task(name="shop.pack", bind=True, shared=False)
    def pack(self: Any, items: list[str]) -> int:
        for n, _item in enumerate(items, 1):
            self.update_state(state="PROGRESS", meta={"packed": n, "of": len(items)})
        return len(items)

    return app
