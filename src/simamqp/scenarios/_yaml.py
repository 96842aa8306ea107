"""``yaml.safe_load`` that remembers where every value came from.

PyYAML's composer gives nodes with start marks; we construct plain Python values from them
ourselves (scalars through ``SafeConstructor``, so the tag rules are exactly ``safe_load``'s)
and keep the marks on the containers, so an error can name ``file:line:column``.
"""

from __future__ import annotations

from typing import Any

import yaml
import yaml.constructor

__all__ = ["Mark", "MarkedDict", "MarkedList", "ScenarioError", "load_marked"]


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
        return f"{self.path}:{self.line}:{self.column}"

    def __repr__(self) -> str:
        return f"Mark({self})"


class ScenarioError(Exception):
    """A malformed scenario file; ``str()`` is one line: ``file:line:column: what was expected``."""

    def __init__(self, mark: Mark, message: str) -> None:
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


class _Constructor(yaml.constructor.SafeConstructor):
    pass


def load_marked(text: str, path: str) -> Any:
    """Parse one YAML document like ``yaml.safe_load``, with marks; errors as ScenarioError."""
    try:
        node = yaml.compose(text, Loader=yaml.SafeLoader)
    except yaml.MarkedYAMLError as err:
        mark = err.problem_mark or err.context_mark
        where = Mark(path, mark.line + 1, mark.column + 1) if mark else Mark(path, 1, 1)
        problem = err.problem or err.context or "invalid YAML"
        raise ScenarioError(where, f"invalid YAML: {problem}") from None
    except yaml.YAMLError as err:
        raise ScenarioError(Mark(path, 1, 1), f"invalid YAML: {err}") from None
    if node is None:
        return None
    return _build(node, path, _Constructor())


def _build(node: yaml.Node, path: str, constructor: _Constructor) -> Any:
    if isinstance(node, yaml.MappingNode):
        constructor.flatten_mapping(node)
        result = MarkedDict()
        result.mark = Mark.of(path, node)
        result.key_marks = {}
        result.value_marks = {}
        for key_node, value_node in node.value:
            key = _build(key_node, path, constructor)
            key_mark = Mark.of(path, key_node)
            if not isinstance(key, str | int | float | bool) and key is not None:
                raise ScenarioError(key_mark, "expected a scalar mapping key")
            key = str(key) if not isinstance(key, str) else key
            if key in result:
                raise ScenarioError(key_mark, f"duplicate key {key!r}")
            result[key] = _build(value_node, path, constructor)
            result.key_marks[key] = key_mark
            result.value_marks[key] = Mark.of(path, value_node)
        return result
    if isinstance(node, yaml.SequenceNode):
        items = MarkedList()
        items.mark = Mark.of(path, node)
        items.item_marks = []
        for item in node.value:
            items.append(_build(item, path, constructor))
            items.item_marks.append(Mark.of(path, item))
        return items
    try:
        return constructor.construct_object(node, deep=True)
    except yaml.constructor.ConstructorError as err:
        raise ScenarioError(Mark.of(path, node), f"invalid YAML value: {err.problem}") from None
