"""Swarm fault plans, shrinking, and the marker's argument checks; and the analysis layer's
imports (it reads the engine's trace and nothing above it)."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

import simamqp
from simamqp._explore import Limits, shrink, swarm_plan

ANALYSIS = Path(simamqp.__file__).parent / "analysis"


def test_a_seed_always_draws_the_same_plan_within_the_limits() -> None:
    limits = Limits(
        points=("deliver", "ack"),
        actions=("redeliver", "delay"),
        max_rules=2,
        max_probability=0.3,
        max_delay=0.5,
    )
    plans = [swarm_plan(seed, limits) for seed in range(200)]
    assert plans == [swarm_plan(seed, limits) for seed in range(200)]
    kinds = set()
    for plan in plans:
        assert plan["version"] == 1 and 1 <= len(plan["rules"]) <= 2
        for rule in plan["rules"]:
            assert rule["point"] in ("deliver", "ack")
            assert rule["action"] in ("redeliver", "delay")
            assert rule.get("probability", 1.0) <= 0.3
            assert rule.get("delay", 0) <= 0.5
            kinds.add((rule["point"], rule["action"]))
        simamqp.Broker().faults.load(plan)  # every drawn plan loads
    assert len(kinds) == 4  # swarm: every allowed kind turns up somewhere
    assert {len(p["rules"]) for p in plans} == {1, 2}  # and subsets vary in size


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"points": ("nowhere",)}, "unknown point"),
        ({"actions": ("explode",)}, "unknown action"),
        ({"points": ("route",), "actions": ("restart",)}, "no action of"),
        ({"min_rules": 3, "max_rules": 1}, "min_rules <= max_rules"),
        ({"max_probability": 0}, "max_probability"),
    ],
)
def test_impossible_limits_are_refused(kwargs: dict[str, object], message: str) -> None:
    with pytest.raises(ValueError, match=message):
        Limits(**kwargs)  # type: ignore[arg-type]


def test_shrink_keeps_only_the_rules_the_failure_needs() -> None:
    rules = [{"name": f"r{i}"} for i in range(5)]
    needed = {"r1", "r3"}
    calls = []

    def fails(trial: list[dict[str, str]]) -> bool:
        calls.append(trial)
        return needed <= {r["name"] for r in trial}

    assert [r["name"] for r in shrink(rules, fails)] == ["r1", "r3"]
    assert len(calls) <= len(rules)


def test_marker_mistakes_are_one_line_collection_errors(pytester: pytest.Pytester) -> None:
    pytester.makepyfile(
        test_bad="""
        import pytest

        @pytest.mark.simamqp_explore(seeds=3, actions=("explode",))
        def test_bad(sim_broker):
            pass
        """,
        test_no_broker="""
        import pytest

        @pytest.mark.simamqp_explore(seeds=3)
        def test_no_broker():
            pass
        """,
    )
    result = pytester.runpytest("-p", "no:cacheprovider", "--simamqp-explore-db=none")
    assert result.ret == pytest.ExitCode.INTERRUPTED  # collection errors
    result.stdout.fnmatch_lines(
        ["simamqp_explore: unknown action 'explode'*", "*test_no_broker uses no sim_broker"]
    )
    assert "_explore.py" not in result.stdout.str()  # no traceback into simamqp


def test_the_analysis_layer_imports_only_the_engine_and_the_stdlib() -> None:
    allowed_relative = {"core", "core.trace", "histories", "checkers", "svg"}
    for path in ANALYSIS.glob("*.py"):
        tree = ast.parse(path.read_text(), str(path))
        for node in ast.walk(tree):
            if isinstance(node, ast.ImportFrom):
                if node.level == 0:
                    assert node.module in ("__future__",) or _stdlib(node.module), (
                        path,
                        node.module,
                    )
                else:
                    module = node.module or ""
                    assert (node.level == 1 and module in allowed_relative) or (
                        node.level == 2 and module.startswith("core")
                    ), (path, node.level, module)
            elif isinstance(node, ast.Import):
                for alias in node.names:
                    assert _stdlib(alias.name), (path, alias.name)


def _stdlib(name: str | None) -> bool:
    import sys

    return name is not None and name.split(".")[0] in sys.stdlib_module_names
