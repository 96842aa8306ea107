"""Suite-wide configuration.

Its presence puts tests/ on sys.path, so every test package shares ``_rabbitmq`` (the URL of the
reference RabbitMQ and the one check of whether it answers); the report header says up front
whether the RabbitMQ side of the differential tests will run.
"""

from __future__ import annotations

import pytest
from _rabbitmq import RABBITMQ_URL, unreachable_reason


def pytest_report_header(config: pytest.Config) -> str:
    reason = unreachable_reason()
    return f"rabbitmq: reachable at {RABBITMQ_URL}" if reason is None else f"rabbitmq: {reason}"
