"""Hostile scenario files and command lines (issue 12): each is refused by ``validate`` with one
``file:line:column`` line and exit 2, before ``run`` applies any step; resources stay bounded;
the CLI never prints a traceback for a user's mistake."""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

import pytest
import yaml

from simamqp.scenarios import MAX_COPIES, MAX_REPEAT, ScenarioError, load, load_text
from simamqp.scenarios._yaml import MAX_DEPTH, MAX_FILE_BYTES, MAX_NODES

CLI = Callable[..., tuple[int, str, str]]

GOOD = "version: 1\nsteps:\n  - queue_declare: {queue: q}\n"
Q = "version: 1\nsteps:\n  - queue_declare: {queue: q}\n"

#: name -> (file text, line of the error, words the error must contain)
REFUSED = {
    "channel-0": (
        Q + "  - publish: {routing_key: q, body: a, channel: 0}\n",
        4,
        "between 1 and 2047",
    ),
    "channel-100000": (
        Q + "  - queue_purge: {queue: q, channel: 100000}\n",
        4,
        "got integer 100000",
    ),
    "priority-high": (
        Q + "  - publish: {routing_key: q, properties: {priority: high}}\n",
        4,
        "property 'priority' must be an integer between 0 and 255",
    ),
    "unknown-property": (
        Q + "  - publish: {routing_key: q, properties: {priorty: 1}}\n",
        4,
        "unknown property 'priorty' (did you mean 'priority'?)",
    ),
    "header-date": (
        Q + "  - publish: {properties: {application_headers: {d: 2001-12-14}}}\n",
        4,
        "is not an AMQP field value",
    ),
    "header-int-too-big": (
        Q + "  - publish: {properties: {application_headers: {n: 9223372036854775808}}}\n",
        4,
        "does not fit a signed 64-bit integer",
    ),
    "bad-base64": (Q + "  - publish: {routing_key: q, body_base64: '!!!'}\n", 4, "not base64"),
    "unknown-fault-remove": (
        "version: 1\nsteps:\n  - fault_add: {name: a, point: publish, action: drop}\n"
        "  - fault_remove: {name: b}\n",
        4,
        "no active fault rule 'b' at this step (active: a)",
    ),
    "fault-removed-twice": (
        "version: 1\nsteps:\n  - fault_add: {name: a, point: publish, action: drop}\n"
        "  - fault_remove: {name: a}\n  - fault_remove: {name: a}\n",
        5,
        "no active fault rule 'a'",
    ),
    "duplicate-fault-names-in-plan": (
        "version: 1\nfaults:\n  - {name: a, point: publish, action: drop}\n"
        "  - {name: a, point: deliver, action: drop}\nsteps: []\n",
        4,
        "a fault rule named 'a' is already active",
    ),
    "duplicate-fault-names-in-steps": (
        "version: 1\nfaults: [{name: a, point: publish, action: drop}]\nsteps:\n"
        "  - fault_add: {name: a, point: deliver, action: drop}\n",
        4,
        "a fault rule named 'a' is already active",
    ),
    "expect-queue-typo": (
        Q + "expect:\n  queues:\n    q: {mesages_ready: 0}\n",
        6,
        "unknown field 'mesages_ready' in expect.queues.q (did you mean 'messages_ready'?)",
    ),
    "expect-exchange-typo": (
        Q + "expect:\n  exchanges:\n    amq.direct: {tpye: direct}\n",
        6,
        "unknown field 'tpye' in expect.exchanges.amq.direct",
    ),
    "expect-error-typo": (
        Q + "expect:\n  errors:\n    - {cod: 404}\n",
        6,
        "unknown field 'cod' in expect.errors[1]",
    ),
    "expect-delivery-typo": (
        Q + "expect:\n  deliveries:\n    c1: [{body: x, redeliverd: true}]\n",
        6,
        "unknown field 'redeliverd'",
    ),
    "expect-unknown-broker": (
        Q + "  - expect: {broker: nope}\n",
        4,
        "unknown broker 'nope'; expected one of: default",
    ),
    "negative-start": ("version: 1\nstart: -10\nsteps: []\n", 2, "'start' must be between 0 and"),
    "nan-advance": (Q + "  - advance: .nan\n", 4, "must be a number"),
    "huge-seed": ("version: 1\nseed: " + "9" * 5000 + "\nsteps: []\n", 2, "integer too large"),
    "huge-repeat": (
        Q + "  - publish: {routing_key: q, repeat: 1000000000}\n",
        4,
        f"'repeat' must be between 1 and {MAX_REPEAT}",
    ),
    "huge-copies-step": (
        "version: 1\nsteps:\n"
        "  - fault_add: {point: publish, action: duplicate, copies: 100000000}\n",
        3,
        f"'copies' must be between 1 and {MAX_COPIES}",
    ),
    "huge-copies-plan": (
        "version: 1\nfaults:\n  - {point: publish, action: duplicate, copies: 100000000}\n"
        "steps: []\n",
        3,
        f"copies must be at most {MAX_COPIES}",
    ),
    "clock-past-max": (
        Q + "  - advance: 1.0e+308\n",
        4,
        "the virtual clock would pass 10000000000 seconds",
    ),
    "clock-past-max-in-steps": (
        "version: 1\nstart: 9999999999\nsteps:\n  - advance: 1\n  - advance: {to: 5}\n"
        "  - advance: 1\n",
        6,
        "the virtual clock would pass",
    ),
    "too-many-publishes": (
        Q + "  - publish: {routing_key: q, repeat: 10000}\n" * 11,
        14,
        "send more than 100000 messages in all",
    ),
    "long-queue-name": (
        "version: 1\nsteps:\n  - queue_declare: {queue: " + "q" * 256 + "}\n",
        3,
        "at most 255 bytes",
    ),
    "prefetch-too-big": (
        Q + "  - qos: {prefetch_count: 65536}\n",
        4,
        "between 0 and 65535",
    ),
    "tag-on-mapping": (
        Q + "  - publish: !!python/object/apply:os.system {routing_key: q, body: a}\n",
        4,
        "YAML tag '!!python/object/apply:os.system' is not allowed",
    ),
    "tag-on-sequence": ("version: 1\nsteps: !!seq []\n", 2, "YAML tag '!!seq' is not allowed"),
    "local-tag-on-scalar": ("version: 1\nname: !x hello\nsteps: []\n", 2, "YAML tag '!x'"),
    "nul-byte": ("version: 1\nsteps: []\nname: a\x00b\n", 3, "character '\\x00' (#x0000)"),
    "lone-surrogate": (
        'version: 1\nname: "\\ud800"\nsteps: []\n',
        2,
        # libyaml refuses the escape itself; PyYAML's own parser leaves it to our builder
        "invalid Unicode character escape" if yaml.__with_libyaml__ else "lone surrogate",
    ),
    "deep-nesting": (
        "version: 1\nsteps: " + "[" * 5000 + "]" * 5000 + "\n",
        2,
        "nest",  # libyaml's own limit may speak first: "exceeded maximum nesting depth"
    ),
    "deep-block-nesting": (
        "version: 1\nsteps:\n" + "".join("  " * i + "- \n" for i in range(1, 80)),
        66,
        f"nested deeper than {MAX_DEPTH} levels",
    ),
    "recursive-alias": ("version: 1\nsteps: &s [*s]\n", 2, "recursive alias"),
}


@pytest.mark.parametrize("kind", sorted(REFUSED))
def test_validate_refuses_with_one_located_line(kind: str) -> None:
    text, line, words = REFUSED[kind]
    with pytest.raises(ScenarioError) as info:
        load_text(text, f"{kind}.yaml")
    message = str(info.value)
    assert "\n" not in message
    assert message.startswith(f"{kind}.yaml:{line}:"), message
    assert words in message, message


@pytest.mark.parametrize("kind", sorted(REFUSED))
def test_run_refuses_before_any_step(kind: str, tmp_path: Path, cli: CLI) -> None:
    (tmp_path / "a-good.yaml").write_text(GOOD)
    (tmp_path / f"{kind}.yaml").write_text(REFUSED[kind][0])
    status, out, err = cli("run", tmp_path)
    assert status == 2
    assert out == ""  # not even the good file ran
    assert len(err.strip().splitlines()) == 1


def _alias_bomb(levels: int = 9, width: int = 9) -> str:
    text = "version: 1\nsteps: []\ndescription: x\nlol0: &a0 [" + ", ".join(["lol"] * width) + "]\n"
    for i in range(1, levels + 1):
        text += f"lol{i}: &a{i} [" + ", ".join([f"*a{i - 1}"] * width) + "]\n"
    return text + f"expect:\n  trace: *a{levels}\n"


def test_a_lone_surrogate_in_text_is_one_line() -> None:
    with pytest.raises(ScenarioError, match=r"^s.yaml:2:7: invalid YAML: a lone surrogate"):
        load_text("version: 1\nname: \ud800\nsteps: []\n", "s.yaml")


def test_alias_bomb_is_measured_not_expanded() -> None:
    text = _alias_bomb()  # 9**10 values once expanded: safe_load shares, we count
    assert len(yaml.safe_load(text)["lol9"]) == 9
    with pytest.raises(ScenarioError, match=f"expands to more than {MAX_NODES} values"):
        load_text(text, "bomb.yaml")


def test_aliases_and_merge_keys_within_bounds_load() -> None:
    scenario = load_text(
        "version: 1\nsteps:\n  - queue_declare: &d {queue: q, durable: true}\n"
        "  - queue_declare: {<<: *d, queue: r}\n"
        "  - queue_declare: *d\n"
    )
    assert [s.args for s in scenario.steps] == [
        {"queue": "q", "durable": True},
        {"queue": "r", "durable": True},
        {"queue": "q", "durable": True},
    ]


def test_core_scalar_tags_read_as_safe_load_does() -> None:
    scenario = load_text(
        "version: 1\nname: !!str 5\nsteps:\n"
        "  - publish: {properties: {application_headers: {b: !!binary aGk=}}}\n"
    )
    assert scenario.name == "5"
    assert scenario.steps[0].args["properties"]["application_headers"] == {"b": b"hi"}


def test_files_over_the_size_limit_are_not_read(tmp_path: Path) -> None:
    big = tmp_path / "big.yaml"
    with big.open("w") as stream:
        stream.write(GOOD)
        stream.write("# " + "x" * MAX_FILE_BYTES + "\n")
    with pytest.raises(ScenarioError, match="file too large"):
        load(big)


@pytest.mark.skipif(not hasattr(os, "mkfifo"), reason="needs FIFOs")
def test_a_fifo_and_a_device_are_refused_without_blocking(tmp_path: Path) -> None:
    fifo = tmp_path / "pipe.yaml"
    os.mkfifo(fifo)
    # in a child process, so a regression blocks the child (and the timeout), not the suite
    proc = _cli("validate", fifo, "/dev/zero", timeout=30)
    assert proc.returncode == 2
    assert proc.stderr.splitlines() == [
        f"error: {fifo}:1:1: cannot read: not a regular file",
        "error: /dev/zero:1:1: cannot read: not a regular file",
    ]


def test_invalid_utf8_names_its_line(tmp_path: Path) -> None:
    path = tmp_path / "latin1.yaml"
    path.write_bytes(b"version: 1\nname: caf\xe9\nsteps: []\n")
    with pytest.raises(ScenarioError, match=r"latin1.yaml:2:10: not UTF-8 text"):
        load(path)


# -- run time ---------------------------------------------------------------------------------


def test_an_engine_error_fails_that_file_at_its_step_and_the_next_files_run(
    tmp_path: Path, cli: CLI, monkeypatch: pytest.MonkeyPatch
) -> None:
    from simamqp.core.channel import Channel

    def broken(self: Channel, *args: object, **kwargs: object) -> None:
        raise RuntimeError("engine bug")

    monkeypatch.setattr(Channel, "queue_purge", broken)
    (tmp_path / "a.yaml").write_text(GOOD + "  - queue_purge: {queue: q}\n")
    (tmp_path / "b.yaml").write_text(GOOD)
    status, out, err = cli("run", tmp_path)
    assert status == 1
    assert f"step 2 (queue_purge) at {tmp_path / 'a.yaml'}:4:5: crashed: RuntimeError" in out
    assert out.splitlines()[-1] == "1 passed, 1 failed"
    assert err == ""


# -- the command line -------------------------------------------------------------------------


def _cli(*args: str | Path, timeout: float = 60) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "simamqp.cli", *map(str, args)],
        capture_output=True,
        text=True,
        timeout=timeout,
        check=False,
    )


def test_record_to_a_missing_folder_is_one_line(tmp_path: Path) -> None:
    source = tmp_path / "s.yaml"
    source.write_text(GOOD)
    proc = _cli("record", source, "-o", tmp_path / "missing" / "out.yaml")
    assert proc.returncode == 2
    assert proc.stderr == f"simamqp: cannot write {tmp_path / 'missing' / 'out.yaml'}: " + (
        f"no folder {tmp_path / 'missing'}\n"
    )


def test_record_reads_what_run_accepts(tmp_path: Path) -> None:
    # aliases, merge keys, bare step names and an expect step: run accepts all of them
    source = tmp_path / "s.yaml"
    source.write_text(
        "version: 1\nsteps:\n  - queue_declare: &d {queue: q}\n  - queue_declare: {<<: *d}\n"
        "  - run_until_idle\n  - expect\n  - publish: {routing_key: q, body: hi}\n"
    )
    assert _cli("run", source).returncode == 0
    target = tmp_path / "out.yaml"
    proc = _cli("record", source, "-o", target)
    assert proc.returncode == 0, proc.stderr
    assert load(target).expect["queues"]["q"]["bodies"] == ["hi"]
    assert _cli("run", target).returncode == 0


def test_keyword_selecting_nothing_exits_2(tmp_path: Path) -> None:
    (tmp_path / "a.yaml").write_text(GOOD)
    proc = _cli("run", "-k", "nothing-like-this", tmp_path)
    assert proc.returncode == 2
    assert proc.stderr == "simamqp: -k 'nothing-like-this' selects none of the 1 scenarios\n"


def test_schema_into_a_closed_pipe_is_quiet() -> None:
    """Like `simamqp schema | true`: the reader is gone before the first write. (The schema fits
    in a pipe's 64 KiB buffer, so a reader that closes after one line can race the writer.)"""
    read_end, write_end = os.pipe()
    os.close(read_end)
    try:
        proc = subprocess.run(
            [sys.executable, "-m", "simamqp.cli", "schema"],
            stdout=write_end,
            stderr=subprocess.PIPE,
            timeout=60,
        )
    finally:
        os.close(write_end)
    assert proc.returncode == 1
    assert proc.stderr.decode() == ""


def test_a_bad_seed_on_the_command_line_is_one_usage_error(tmp_path: Path) -> None:
    (tmp_path / "a.yaml").write_text(GOOD)
    proc = _cli("run", "--seed", "9" * 5000, tmp_path)
    assert proc.returncode == 2
    assert "Traceback" not in proc.stderr
    assert "invalid int value" in proc.stderr


def test_the_docs_state_the_limits_the_loader_applies() -> None:
    import simamqp.scenarios as scenarios

    text = (Path(__file__).parents[2] / "docs" / "scenarios.md").read_text()
    assert f"`MAX_FILE_BYTES` ({MAX_FILE_BYTES // 2**20} MiB)" in text
    for name in (
        "MAX_NODES",
        "MAX_DEPTH",
        "MAX_REPEAT",
        "MAX_PUBLISHES",
        "MAX_COPIES",
        "MAX_WINDOW",
        "MAX_CLOCK",
    ):
        assert f"`{name}` ({getattr(scenarios, name):,})" in text, name


def test_a_failure_about_many_messages_stays_readable() -> None:
    from simamqp.scenarios import run_scenario

    scenario = load_text(
        Q + f"  - publish: {{routing_key: q, body: m, repeat: {MAX_REPEAT // 5}}}\n"
        "expect:\n  queues:\n    q: {bodies: [m]}\n"
    )
    failures = run_scenario(scenario).failures
    assert len(failures) == 1 and failures[0].startswith("queue 'q': bodies expected ['m'], got")
    assert "characters)..." in failures[0] and len(failures[0]) < 1000
