"""The example budget of the property tests (imported by the test modules).

``SIMAMQP_PROPERTY_EXAMPLES`` sets it (the ``property`` nox session runs 2000+); the default keeps
``tests/property`` under a minute on two cores. Properties the mission names run at least 200
examples whatever the budget.
"""

from __future__ import annotations

import os

from hypothesis import HealthCheck, settings

DEFAULT_EXAMPLES = 300


def examples(minimum: int = 0) -> int:
    raw = os.environ.get("SIMAMQP_PROPERTY_EXAMPLES", "")
    budget = int(raw) if raw.strip() else DEFAULT_EXAMPLES
    return max(budget, minimum)


def property_settings(minimum: int = 0, **overrides: object) -> settings:
    """Settings for one property: the budget, no deadline (CI machines stall), no DB noise."""
    base: dict[str, object] = {
        "max_examples": examples(minimum),
        "deadline": None,
        "suppress_health_check": [HealthCheck.too_slow, HealthCheck.data_too_large],
    }
    base.update(overrides)
    return settings(**base)  # type: ignore[arg-type]
