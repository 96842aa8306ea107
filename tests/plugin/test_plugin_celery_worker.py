"""The ``sim_celery_worker`` fixture: a worker per test whose errors go into the failure report
(issue 21), not into the output of a passing run."""

from __future__ import annotations

import pytest

pytest.importorskip("celery")

pytestmark = pytest.mark.celery

APP = """
import pytest
from celery import Celery


@pytest.fixture
def celery_app(sim_celery_config):
    app = Celery("shop", set_as_current=False)
    app.conf.update(task_default_queue="shop", **sim_celery_config)

    @app.task(name="shop.boom", shared=False)
    def boom():
        raise ValueError("the task's own error")

    yield app
    app.close()


def test_expects_the_failure(celery_app, sim_celery_worker):
    sim_celery_worker(celery_app)
    with pytest.raises(ValueError):
        celery_app.tasks["shop.boom"].delay().get(timeout=10)


def test_fails_after_the_worker_logged(celery_app, sim_celery_worker):
    sim_celery_worker(celery_app)
    with pytest.raises(ValueError):
        celery_app.tasks["shop.boom"].delay().get(timeout=10)
    assert False, "the test's own failure"
"""


def test_worker_errors_go_into_the_failure_report_only(pytester: pytest.Pytester) -> None:
    pytester.makepyfile(test_app=APP)
    result = pytester.runpytest_subprocess("-p", "no:cacheprovider", "-p", "no:randomly")
    result.assert_outcomes(passed=1, failed=1)
    out = result.stdout.str()
    # The failing test's report carries what its worker logged, traceback included ...
    result.stdout.fnmatch_lines(
        [
            "*simamqp: Celery worker errors*",
            "ERROR celery.app.trace: Task shop.boom*raised unexpected*ValueError*",
        ]
    )
    assert out.count("simamqp: Celery worker errors") == 1  # ... the passing one's does not
    assert "Traceback" not in result.stderr.str()


def test_a_worker_that_cannot_start_fails_fast(pytester: pytest.Pytester) -> None:
    pytester.makepyfile(
        test_bad="""
        from celery import Celery

        def test_bad_pool(sim_celery_config, sim_celery_worker):
            app = Celery("shop", set_as_current=False)
            app.conf.update(**sim_celery_config)
            sim_celery_worker(app, pool="prefork")
        """
    )
    result = pytester.runpytest_subprocess("-p", "no:cacheprovider")
    result.assert_outcomes(failed=1)
    result.stdout.fnmatch_lines(["*ValueError: sim_celery_worker: pool must be one of*"])
