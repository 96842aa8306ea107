"""``yaml.safe_load`` that remembers where every value came from, within bounded resources.

PyYAML's composer gives nodes with start marks; we construct plain Python values from them
ourselves (scalars through ``SafeConstructor``, so scalars mean exactly what ``safe_load``
makes of them) and keep the marks on the containers, so an error can name ``file:line:column``.

A scenario file is input from anyone, so the loader refuses what ``safe_load`` would accept but
a scenario never needs, before it costs anything: explicit tags other than the YAML core scalar
tags (a tag on a mapping is not silently dropped), nesting deeper than ``MAX_DEPTH``, and
documents whose aliases expand to more than ``MAX_NODES`` values (an "alias bomb": the node
graph is measured once, with each anchored node counted as often as it is referenced, without
expanding it). Files larger than ``MAX_FILE_BYTES`` and anything but regular files are not read.
"""

from __future__ import annotations

import decimal
import os
import stat
from collections.abc import Iterator
from typing import Any

import yaml
import yaml.composer
import yaml.constructor
import yaml.reader
import yaml.resolver

__all__ = [
    "MAX_DEPTH",
    "MAX_FILE_BYTES",
    "MAX_NODES",
    "Mark",
    "MarkedDict",
    "MarkedList",
    "ScenarioError",
    "load_marked",
    "read_scenario_file",
]

#: Largest scenario file read, in bytes (recorded traces of long runs fit many times over).
MAX_FILE_BYTES = 4 * 1024 * 1024
#: Deepest nesting of mappings and lists, counting what aliases bring in.
MAX_DEPTH = 64
#: Most values (mappings, lists, scalars) a document may expand to, counting each alias use.
MAX_NODES = 100_000
#: Largest integer a scalar may hold (bits): AMQP integers are at most 64 bits.
MAX_INT_BITS = 128

_CORE = "tag:yaml.org,2002:"
#: Explicit tags allowed: the scalar tags of the YAML core schema, read as ``safe_load`` does
#: (record mode writes ``!!binary`` for binary header values).
#: ``!decimal``: an AMQP decimal header value (record mode writes it), read as ``Decimal``.
DECIMAL_TAG = "!decimal"
_SCALAR_TAGS = frozenset(
    _CORE + name for name in ("str", "int", "float", "bool", "null", "binary", "timestamp")
) | {DECIMAL_TAG}


class _Constructor(yaml.constructor.SafeConstructor):
    """``safe_load``'s constructor, plus ``!decimal``."""

    def construct_decimal(self, node: yaml.ScalarNode) -> decimal.Decimal:
        text = self.construct_scalar(node)
        try:
            return decimal.Decimal(str(text))
        except decimal.InvalidOperation:
            raise yaml.constructor.ConstructorError(
                None, None, f"!decimal needs a decimal number, got {text!r}", node.start_mark
            ) from None


_Constructor.add_constructor(DECIMAL_TAG, _Constructor.construct_decimal)  # type: ignore[type-var]
_MERGE = _CORE + "merge"


class Mark:
    """A 1-based position in a file."""

    __slots__ = ("column", "line", "path")

    def __init__(self, path: str, line: int, column: int) -> None:
        self.path = path
        self.line = line
        self.column = column

    @classmethod
    def of(cls, path: str, node: yaml.Node) -> Mark:
        return cls(path, node.start_mark.line + 1, node.start_mark.column + 1)

    def __str__(self) -> str:
        path = self.path.replace("\n", "\\n").replace("\r", "\\r")  # an error stays one line
        return f"{path}:{self.line}:{self.column}"

    def __repr__(self) -> str:
        return f"Mark({self})"


class ScenarioError(Exception):
    """A malformed scenario file; ``str()`` is one line: ``file:line:column: what was expected``."""

    def __init__(self, mark: Mark, message: str) -> None:
        message = " ".join(message.split()) if "\n" in message or "\r" in message else message
        super().__init__(f"{mark}: {message}")
        self.mark = mark
        self.message = message


class MarkedDict(dict[str, Any]):
    """A mapping that knows where it and each of its keys and values start."""

    mark: Mark
    key_marks: dict[str, Mark]
    value_marks: dict[str, Mark]

    def mark_of(self, key: str) -> Mark:
        return self.value_marks.get(key, self.mark)


class MarkedList(list[Any]):
    mark: Mark
    item_marks: list[Mark]

    def mark_of(self, index: int) -> Mark:
        return self.item_marks[index] if 0 <= index < len(self.item_marks) else self.mark


def read_scenario_file(path: str) -> str:
    """The text of a scenario file: a regular file of at most ``MAX_FILE_BYTES``, UTF-8.

    Opened without blocking (a FIFO with no writer must not hang ``validate``) and checked with
    ``fstat`` on the open descriptor, so a device such as ``/dev/zero`` is never read.
    """
    where = Mark(path, 1, 1)
    flags = os.O_RDONLY | getattr(os, "O_NONBLOCK", 0) | getattr(os, "O_CLOEXEC", 0)
    try:
        fd = os.open(path, flags)
    except OSError as err:
        raise ScenarioError(where, f"cannot read: {err.strerror}") from None
    try:
        info = os.fstat(fd)
        if not stat.S_ISREG(info.st_mode):
            kind = "a folder" if stat.S_ISDIR(info.st_mode) else "not a regular file"
            raise ScenarioError(where, f"cannot read: {kind}")
        if info.st_size > MAX_FILE_BYTES:
            raise ScenarioError(
                where, f"file too large: {info.st_size} bytes (at most {MAX_FILE_BYTES})"
            )
        with os.fdopen(fd, "rb", closefd=False) as stream:
            data = stream.read(MAX_FILE_BYTES + 1)
    except OSError as err:
        raise ScenarioError(where, f"cannot read: {err.strerror}") from None
    finally:
        os.close(fd)
    if len(data) > MAX_FILE_BYTES:
        raise ScenarioError(where, f"file too large: more than {MAX_FILE_BYTES} bytes")
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError as err:
        line = data.count(b"\n", 0, err.start) + 1
        column = err.start - (data.rfind(b"\n", 0, err.start) + 1) + 1
        raise ScenarioError(Mark(path, line, column), f"not UTF-8 text: {err.reason}") from None


#: The event parser: libyaml's when PyYAML was built with it (the scanner is where the time
#: goes on a large file), else PyYAML's own. Composition into nodes is ours, below.
_EventLoader: Any = getattr(yaml, "CSafeLoader", None) or yaml.SafeLoader


class _Composer:
    """Nodes from parser events, as PyYAML's ``Composer`` builds them, but refusing tags, deep
    nesting and more than ``MAX_NODES`` distinct nodes while it reads (so a huge document is
    refused early, and recursion is bounded by ``MAX_DEPTH``)."""

    def __init__(self) -> None:
        self.anchors: dict[str, yaml.Node] = {}
        self.composed = 0
        self.resolver = yaml.resolver.Resolver()

    def _resolve(self, kind: type[yaml.Node], value: str | None, implicit: Any) -> str:
        tag: str = self.resolver.resolve(kind, value, implicit)  # type: ignore[no-untyped-call]
        return tag

    def compose(self, events: Iterator[Any]) -> yaml.Node | None:
        next(events)  # StreamStartEvent
        event = next(events)
        if isinstance(event, yaml.StreamEndEvent):
            return None
        node = self._node(events, next(events), 1)  # after DocumentStartEvent
        next(events)  # DocumentEndEvent
        event = next(events)
        if not isinstance(event, yaml.StreamEndEvent):
            raise yaml.composer.ComposerError(
                "expected a single document in the stream",
                None,
                "but found another document",
                event.start_mark,
            )
        return node

    def _node(self, events: Iterator[Any], event: Any, depth: int) -> yaml.Node:
        error = yaml.composer.ComposerError
        start_mark: Any = event.start_mark  # the C parser's marks are another (duck) type
        end_mark: Any = event.end_mark
        if isinstance(event, yaml.AliasEvent):
            if event.anchor not in self.anchors:
                raise error(None, None, f"found undefined alias {event.anchor!r}", start_mark)
            return self.anchors[event.anchor]
        tag = getattr(event, "tag", None)
        if tag is not None and not (isinstance(event, yaml.ScalarEvent) and tag in _SCALAR_TAGS):
            shown = "!!" + tag[len(_CORE) :] if tag.startswith(_CORE) else tag
            raise error(
                None, None, f"YAML tag {shown!r} is not allowed in a scenario", event.start_mark
            )
        self.composed += 1
        if self.composed > MAX_NODES:
            # distinct nodes are a lower bound of the expanded count: stop reading early
            raise error(
                None, None, f"document too large: more than {MAX_NODES} values", event.start_mark
            )
        if depth > MAX_DEPTH:
            raise error(None, None, f"nested deeper than {MAX_DEPTH} levels", start_mark)
        anchor = getattr(event, "anchor", None)
        if anchor is not None and anchor in self.anchors:
            raise error(
                f"found duplicate anchor {anchor!r}; first occurrence",
                self.anchors[anchor].start_mark,
                "second occurrence",
                start_mark,
            )
        node: yaml.Node
        if isinstance(event, yaml.ScalarEvent):
            tag = tag or self._resolve(yaml.ScalarNode, event.value, event.implicit)
            node = yaml.ScalarNode(tag, event.value, start_mark, end_mark, event.style)
            if anchor is not None:
                self.anchors[anchor] = node
            return node
        if isinstance(event, yaml.SequenceStartEvent):
            tag = self._resolve(yaml.SequenceNode, None, event.implicit)
            node = yaml.SequenceNode(tag, [], start_mark, None, event.flow_style)
            if anchor is not None:
                self.anchors[anchor] = node
            while not isinstance(item := next(events), yaml.SequenceEndEvent):
                node.value.append(self._node(events, item, depth + 1))
            node.end_mark = item.end_mark
            return node
        tag = self._resolve(yaml.MappingNode, None, event.implicit)
        node = yaml.MappingNode(tag, [], start_mark, None, event.flow_style)
        if anchor is not None:
            self.anchors[anchor] = node
        while not isinstance(key := next(events), yaml.MappingEndEvent):
            key_node = self._node(events, key, depth + 1)
            value_node = self._node(events, next(events), depth + 1)
            node.value.append((key_node, value_node))
        node.end_mark = key.end_mark
        return node


def load_marked(text: str, path: str) -> Any:
    """Parse one YAML document like ``yaml.safe_load``, with marks; errors as ScenarioError."""
    if len(text) > MAX_FILE_BYTES:
        raise ScenarioError(
            Mark(path, 1, 1), f"document too large: more than {MAX_FILE_BYTES} characters"
        )
    try:
        node = _Composer().compose(iter(yaml.parse(text, Loader=_EventLoader)))
    except UnicodeEncodeError as err:
        line = text.count("\n", 0, err.start) + 1
        column = err.start - (text.rfind("\n", 0, err.start) + 1) + 1
        raise ScenarioError(
            Mark(path, line, column), "invalid YAML: a lone surrogate is not text"
        ) from None
    except yaml.reader.ReaderError as err:
        # not a MarkedYAMLError: its str() spans two lines; name the character and its place
        position = max(0, min(err.position, len(text)))
        line = text.count("\n", 0, position) + 1
        column = position - (text.rfind("\n", 0, position) + 1) + 1
        char = err.character if isinstance(err.character, str) else chr(err.character)
        raise ScenarioError(
            Mark(path, line, column),
            f"invalid YAML: character {char!r} (#x{ord(char):04x}) is not allowed",
        ) from None
    except yaml.MarkedYAMLError as err:
        mark = err.problem_mark or err.context_mark
        where = Mark(path, mark.line + 1, mark.column + 1) if mark else Mark(path, 1, 1)
        problem = err.problem or err.context or "invalid YAML"
        raise ScenarioError(where, f"invalid YAML: {problem}") from None
    except yaml.YAMLError as err:
        raise ScenarioError(Mark(path, 1, 1), f"invalid YAML: {err}") from None
    if node is None:
        return None
    _check_expansion(node, path)
    return _Builder(path).build(node)


def _children(node: yaml.Node) -> list[yaml.Node]:
    if isinstance(node, yaml.SequenceNode):
        return list(node.value)
    return [n for pair in node.value for n in pair]


def _check_expansion(root: yaml.Node, path: str) -> None:
    """Refuse recursive aliases and documents that expand past MAX_NODES / MAX_DEPTH.

    One iterative pass over the node graph: each distinct collection is visited once and its
    expanded size (each alias use counted) is the sum of its children's, so an alias bomb is
    measured in the time it takes to read it, not to expand it.
    """
    if isinstance(root, yaml.ScalarNode):
        return
    measured: dict[int, tuple[int, int]] = {}  # id(collection) -> (expanded size, depth)
    scalar = (1, 1)
    on_path: set[int] = set()
    stack: list[tuple[yaml.Node, bool]] = [(root, False)]
    while stack:
        node, finished = stack.pop()
        key = id(node)
        if finished:
            on_path.discard(key)
            size, depth = 1, 1
            for child in _children(node):
                child_size, child_depth = (
                    scalar if isinstance(child, yaml.ScalarNode) else measured[id(child)]
                )
                size += child_size
                depth = max(depth, child_depth + 1)
            if size > MAX_NODES:
                raise ScenarioError(
                    Mark.of(path, node),
                    f"document too large: expands to more than {MAX_NODES} values"
                    " (aliases are counted each time they are used)",
                )
            if depth > MAX_DEPTH:
                raise ScenarioError(
                    Mark.of(path, node), f"nested deeper than {MAX_DEPTH} levels (with aliases)"
                )
            measured[key] = (size, depth)
            continue
        if key in measured:
            continue
        on_path.add(key)
        stack.append((node, True))
        for child in _children(node):
            if isinstance(child, yaml.ScalarNode):
                continue
            if id(child) in on_path:
                raise ScenarioError(Mark.of(path, child), "invalid YAML: recursive alias")
            if id(child) not in measured:
                stack.append((child, False))


class _Builder:
    """Plain values (MarkedDict/MarkedList/scalars) from a measured node graph."""

    def __init__(self, path: str) -> None:
        self.path = path
        self.constructor = _Constructor()
        self.scalars: dict[int, Any] = {}  # immutable values, built once per node

    def build(self, node: yaml.Node) -> Any:
        if isinstance(node, yaml.MappingNode):
            return self._mapping(node)
        if isinstance(node, yaml.SequenceNode):
            items = MarkedList()
            items.mark = Mark.of(self.path, node)
            items.item_marks = []
            for item in node.value:
                items.append(self.build(item))
                items.item_marks.append(Mark.of(self.path, item))
            return items
        return self._scalar(node)

    def _scalar(self, node: yaml.Node) -> Any:
        key = id(node)
        if key in self.scalars:
            return self.scalars[key]
        try:
            value = self.constructor.construct_object(node, deep=True)
        except yaml.constructor.ConstructorError as err:
            raise ScenarioError(
                Mark.of(self.path, node), f"invalid YAML value: {err.problem}"
            ) from None
        except (ValueError, OverflowError, TypeError) as err:
            # e.g. an integer of more than 4300 digits, a timestamp in year 0
            what = (
                f"integer too large (more than {MAX_INT_BITS} bits)"
                if node.tag == _CORE + "int"
                else f"invalid YAML value: {err}"
            )
            raise ScenarioError(Mark.of(self.path, node), what) from None
        if (
            isinstance(value, int)
            and not isinstance(value, bool)
            and value.bit_length() > MAX_INT_BITS
        ):
            raise ScenarioError(
                Mark.of(self.path, node), f"integer too large (more than {MAX_INT_BITS} bits)"
            )
        if isinstance(value, str):
            try:
                value.encode("utf-8")
            except UnicodeEncodeError:
                # "\ud800" escapes: a lone surrogate is not text any client can send
                raise ScenarioError(
                    Mark.of(self.path, node), "invalid YAML value: a lone surrogate is not text"
                ) from None
        self.scalars[key] = value
        return value

    def _mapping(self, node: yaml.MappingNode) -> MarkedDict:
        result = MarkedDict()
        result.mark = Mark.of(self.path, node)
        result.key_marks = {}
        result.value_marks = {}
        merged: list[MarkedDict] = []
        for key_node, value_node in node.value:
            key_mark = Mark.of(self.path, key_node)
            if not isinstance(key_node, yaml.ScalarNode):
                raise ScenarioError(key_mark, "expected a scalar mapping key")
            if key_node.tag == _MERGE:
                merged.extend(self._merge_sources(value_node))
                continue
            key = self._scalar(key_node)
            if not isinstance(key, str | int | float | bool) and key is not None:
                raise ScenarioError(key_mark, "expected a scalar mapping key")
            key = str(key) if not isinstance(key, str) else key
            if key in result:
                raise ScenarioError(key_mark, f"duplicate key {key!r}")
            result[key] = self.build(value_node)
            result.key_marks[key] = key_mark
            result.value_marks[key] = Mark.of(self.path, value_node)
        # YAML merge keys: keys given in the mapping win, then earlier merged mappings
        for source in merged:
            for key, value in source.items():
                if key not in result:
                    result[key] = value
                    result.key_marks[key] = source.key_marks.get(key, source.mark)
                    result.value_marks[key] = source.mark_of(key)
        return result

    def _merge_sources(self, node: yaml.Node) -> list[MarkedDict]:
        nodes = node.value if isinstance(node, yaml.SequenceNode) else [node]
        sources = []
        for item in nodes:
            if not isinstance(item, yaml.MappingNode):
                raise ScenarioError(
                    Mark.of(self.path, item), "a merge key '<<' takes a mapping or a list of them"
                )
            sources.append(self._mapping(item))
        return sources
