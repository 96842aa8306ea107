"""Malformed scenario files, generated from the bundled library by mutation.

Four families, each deterministic from a ``random.Random`` seed: byte-level damage (flips,
truncation, deleted or repeated lines), structural mutations of the parsed data (a value
replaced by one of another type or range, keys renamed with typos, entries deleted or
duplicated, steps inserted), field mutations (one known field of a step given an odd value,
so the file gets past the type checks and reaches the engine), and hostile YAML (aliases,
tags, deep nesting, odd characters) spliced in.
"""

from __future__ import annotations

import copy
import random
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import yaml

from simamqp.core.message import PROPERTY_NAMES
from simamqp.scenarios import STEPS as STEP_SPECS

LIBRARY = Path(__file__).parents[2] / "scenarios"

#: Values of every type and awkward range a field might receive.
ODD_VALUES: list[Any] = [
    None,
    True,
    False,
    0,
    -1,
    -10,
    1,
    2,
    255,
    256,
    2047,
    2048,
    65536,
    2**31,
    2**63,
    2**64,
    -(2**63) - 1,
    10**30,
    1e308,
    float("inf"),
    float("-inf"),
    float("nan"),
    0.5,
    -0.0,
    "",
    "x",
    "high",
    "closed",
    "absent",
    "q",
    "amq.direct",
    "x" * 300,
    "\u00e9\u00e9",
    "!!!not-base64",
    "{i}",
    [],
    [1, "a", None],
    {},
    {"x-max-priority": "high"},
    {"priority": "high"},
    {"name": "r1", "point": "publish", "action": "drop"},
    {"deliver": 3},
    {"body": "x", "redeliverd": True},
]
#: Field names of steps and settings, added with odd values to any mapping.
FIELD_NAMES = [
    "channel",
    "repeat",
    "copies",
    "window",
    "properties",
    "body_base64",
    "arguments",
    "priority",
    "start",
    "seed",
    "delivery_tag",
    "prefetch_count",
    "prefetch_size",
    "name",
    "broker",
    "vhost",
    "queue",
    "client",
    "error",
    "seconds",
    "to",
    "nth",
    "delay",
    "max_count",
    "probability",
    "reply_code",
    "reply_text",
    "application_headers",
    "delivery_mode",
    "timestamp",
    "expiration",
    "clock",
    "vhosts",
    "headers",
    "consumer_tag",
    "multiple",
]
#: Whole steps inserted into a step list.
STEPS: list[Any] = [
    {"fault_remove": {"name": "r1"}},
    {"fault_add": {"name": "r1", "point": "publish", "action": "drop"}},
    {"fault_add": {"point": "publish", "action": "duplicate", "copies": 3}},
    {"publish": {"routing_key": "q", "body": "x", "channel": 3}},
    {"publish": {"routing_key": "q", "body": "x", "properties": {"priority": 9}}},
    {"publish": {"routing_key": "q", "body_base64": "aGk="}},
    {"expect": {"broker": "default", "queues": {"q": {"messages": 1}}}},
    {"advance": 1},
    {"advance": {"to": 0}},
    {"open": {"client": "c9", "vhost": "nope"}},
    {"add_vhost": {"vhost": "v"}},
    {"ack": {"delivery_tag": 1}},
    {"nack": {"body": "x", "requeue": False}},
    {"get": {"queue": "q", "expect": None}},
    {"consume": {"queue": "q", "arguments": {"x-priority": 5}}},
    {"qos": {"prefetch_count": 1, "a_global": True}},
    {"queue_declare": {"queue": "q", "arguments": {"x-max-priority": 5, "x-message-ttl": 10}}},
    "close",
    "close_channel",
    "restart",
    "close_connections",
    "run_until_idle",
    "channel",
]
TYPO_KEYS = ["mesages_ready", "bodys", "no_akc", "queu", "priorty", "copies", "repeat", "nme"]
SNIPPETS = [
    "a: &a [x, x, x, x, x, x, x, x]\nb: &b [*a, *a, *a, *a, *a, *a, *a, *a]\n"
    "c: &c [*b, *b, *b, *b, *b, *b, *b, *b]\nd: [*c, *c, *c, *c, *c, *c, *c, *c]\n",
    "x: !!python/object/apply:os.system ['true']\n",
    "x: !!python/object/apply:os.system {cmd: 'true'}\n",
    "x: !custom [1]\n",
    "x: " + "[" * 200 + "]" * 200 + "\n",
    "x: &r [*r]\n",
    "x: \x00\n",
    'x: "\\ud800"\n',
    "<<: {version: 2}\n",
    "seed: " + "9" * 5000 + "\n",
    "seed: 0b" + "1" * 600 + "\n",
    "start: 2001-12-14\n",
    "--- \n...\n--- \n",
    "%YAML 1.1\n---\n",
    "? [a, b]\n: c\n",
    "x: 1:2:3:4:5:6:7:8:9:10:11:12:13:14:15:16:17:18:19:20:21:22:23:24:25:26:27:28:29\n",
]


def seeds() -> list[tuple[str, str]]:
    """(name, text) of every bundled scenario: the material mutations start from."""
    files = sorted(LIBRARY.rglob("*.yaml"))
    return [(p.relative_to(LIBRARY).as_posix(), p.read_text(encoding="utf-8")) for p in files]


def _nodes(data: Any, path: tuple[Any, ...] = ()) -> Iterator[tuple[tuple[Any, ...], Any]]:
    yield path, data
    if isinstance(data, dict):
        for key, value in data.items():
            yield from _nodes(value, (*path, key))
    elif isinstance(data, list):
        for index, value in enumerate(data):
            yield from _nodes(value, (*path, index))


def _set(data: Any, path: tuple[Any, ...], value: Any) -> Any:
    if not path:
        return value
    parent = data
    for part in path[:-1]:
        parent = parent[part]
    parent[path[-1]] = value
    return data


def mutate_structure(text: str, rng: random.Random) -> str:
    data = yaml.safe_load(text)
    for _ in range(rng.randint(1, 3)):
        nodes = list(_nodes(data))
        path, node = rng.choice(nodes)
        choice = rng.random()
        if choice < 0.35:
            data = _set(data, path, copy.deepcopy(rng.choice(ODD_VALUES)))
        elif choice < 0.45 and isinstance(node, dict):
            node[rng.choice(FIELD_NAMES)] = copy.deepcopy(rng.choice(ODD_VALUES))
        elif choice < 0.55 and isinstance(node, list):
            node.insert(rng.randrange(len(node) + 1), copy.deepcopy(rng.choice(STEPS)))
        elif choice < 0.7 and isinstance(node, dict) and node:
            key = rng.choice(list(node))
            node[rng.choice(TYPO_KEYS)] = node.pop(key)
        elif choice < 0.8 and isinstance(node, dict) and node:
            del node[rng.choice(list(node))]
        elif choice < 0.9 and isinstance(node, list) and node:
            node.insert(rng.randrange(len(node) + 1), copy.deepcopy(rng.choice(node)))
        elif isinstance(node, list) and node:
            del node[rng.randrange(len(node))]
        else:
            data = _set(data, path, [node] if rng.random() < 0.5 else {"wrapped": node})
    return yaml.safe_dump(data, sort_keys=False, allow_unicode=True)


_OF_TYPE = {
    "integer": lambda v: isinstance(v, int) and not isinstance(v, bool),
    "number": lambda v: isinstance(v, int | float) and not isinstance(v, bool),
    "string": lambda v: isinstance(v, str),
    "body": lambda v: isinstance(v, str),
    "boolean": lambda v: isinstance(v, bool),
    "mapping": lambda v: isinstance(v, dict),
    "list": lambda v: isinstance(v, list),
}


def _odd(rng: random.Random, field: str, kind: str = "any") -> Any:
    """An odd value, of the field's own type three times in four (past the type check)."""
    if kind in _OF_TYPE and rng.random() < 0.75:
        return copy.deepcopy(rng.choice([v for v in ODD_VALUES if _OF_TYPE[kind](v)]))
    if field == "properties" and rng.random() < 0.7:
        return {rng.choice(PROPERTY_NAMES): copy.deepcopy(rng.choice(ODD_VALUES))}
    if field in ("arguments", "headers") and rng.random() < 0.7:
        key = rng.choice(["x-max-priority", "x-message-ttl", "x-priority", "x-expires", "k"])
        return {key: copy.deepcopy(rng.choice(ODD_VALUES))}
    return copy.deepcopy(rng.choice(ODD_VALUES))


def mutate_fields(text: str, rng: random.Random) -> str:
    """One known field of one step (or of the top level) given an odd value: what gets past
    the parser and the type checks and reaches the engine."""
    data = yaml.safe_load(text)
    steps = data.get("steps") if isinstance(data, dict) else None
    if isinstance(steps, list) and steps and rng.random() < 0.8:
        i = rng.randrange(len(steps))
        step = steps[i]
        if isinstance(step, str):
            step = steps[i] = {step: {}}
        if isinstance(step, dict) and len(step) == 1:
            name, args = next(iter(step.items()))
            spec = STEP_SPECS.get(name)
            if spec is not None and name != "expect":
                if not isinstance(args, dict):
                    args = step[name] = {} if args is None else {spec.scalar or "x": args}
                field = rng.choice(sorted(spec.fields))
                args[field] = _odd(rng, field, spec.fields[field].type)
                return yaml.safe_dump(data, sort_keys=False, allow_unicode=True)
    if isinstance(data, dict):
        field = rng.choice(["seed", "start", "clock", "vhosts", "faults", "tags", "name"])
        data[field] = _odd(rng, field)
    return yaml.safe_dump(data, sort_keys=False, allow_unicode=True)


def mutate_bytes(text: str, rng: random.Random) -> str:
    raw = bytearray(text.encode("utf-8"))
    kind = rng.randrange(4)
    if kind == 0 and raw:
        for _ in range(rng.randint(1, 4)):
            raw[rng.randrange(len(raw))] = rng.randrange(256)
    elif kind == 1:
        del raw[rng.randrange(len(raw) + 1) :]
    else:
        lines = raw.split(b"\n")
        i = rng.randrange(len(lines))
        if kind == 2:
            del lines[i]
        else:
            lines.insert(i, lines[rng.randrange(len(lines))])
        raw = bytearray(b"\n".join(lines))
    return raw.decode("utf-8", errors="surrogateescape")


def splice_hostile(text: str, rng: random.Random) -> str:
    lines = text.split("\n")
    snippet = rng.choice(SNIPPETS)
    if rng.random() < 0.5:
        return snippet + text  # at the top level
    i = rng.randrange(len(lines))
    indent = " " * (len(lines[i]) - len(lines[i].lstrip()))
    body = "\n".join(indent + line for line in snippet.rstrip("\n").split("\n"))
    return "\n".join([*lines[:i], body, *lines[i:]])


def malformed(count: int, seed: int = 0) -> Iterator[tuple[str, str]]:
    """``count`` generated files as (name, text); the text may hold undecodable bytes as
    surrogate escapes (write it with ``errors="surrogateescape"``)."""
    rng = random.Random(seed)
    library = seeds()
    for n in range(count):
        name, text = library[n % len(library)]
        family = rng.randrange(4)
        if family == 0:
            mutated = mutate_structure(text, rng)
        elif family == 3:
            mutated = mutate_fields(text, rng)
        elif family == 1:
            mutated = mutate_bytes(text, rng)
        else:
            mutated = splice_hostile(text, rng)
        yield f"fuzz-{n:05d}-{name.replace('/', '-')}", mutated
