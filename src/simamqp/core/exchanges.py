"""Exchanges and their routing functions, one class per exchange type.

Routing follows RabbitMQ 3.10:
- direct: exact routing-key match (rabbit_exchange_type_direct).
- fanout: every binding.
- topic: dot-separated words, ``*`` one word, ``#`` zero or more words; an empty routing key is
  zero words, ``a..b`` has an empty middle word (rabbit_exchange_type_topic's trie, so routing
  cost depends on the key's length, not on the number of bindings).
- headers: ``x-match`` all/any/all-with-x/any-with-x; a binding value of type void matches on
  presence; values compare the way Erlang's ``==`` does (1 == 1.0, but a string never equals a
  number and a bool never equals a number) (rabbit_exchange_type_headers).
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any, ClassVar, Protocol

from .errors import PreconditionFailed

__all__ = [
    "BUILTIN_TYPES",
    "Binding",
    "Destination",
    "DirectExchange",
    "Exchange",
    "FanoutExchange",
    "HeadersExchange",
    "TopicExchange",
    "exchange_class",
    "headers_match",
    "topic_words",
]


class Destination(Protocol):
    """A queue or an exchange: what a binding points at."""

    kind: str
    name: str


DestKey = tuple[str, str]


def _freeze(value: Any) -> Any:
    if isinstance(value, Mapping):
        return tuple(sorted((str(k), _freeze(v)) for k, v in value.items()))
    if isinstance(value, list | tuple):
        return tuple(_freeze(v) for v in value)
    if isinstance(value, bytes):
        return value.decode("utf-8", "surrogateescape")
    if isinstance(value, bool):
        return ("bool", value)
    return value


class Binding:
    """A binding from a source exchange to a destination, with a key and arguments."""

    __slots__ = ("arguments", "destination", "key", "routing_key", "source")

    def __init__(
        self,
        source: Exchange,
        destination: Destination,
        routing_key: str,
        arguments: Mapping[str, Any],
    ) -> None:
        self.source = source
        self.destination = destination
        self.routing_key = routing_key
        self.arguments = dict(arguments)
        #: Identity of the binding: RabbitMQ treats (source, destination, key, args) as one.
        self.key = (destination.kind, destination.name, routing_key, _freeze(arguments))

    def __repr__(self) -> str:
        return (
            f"<Binding {self.source.name!r} -> {self.destination.kind} "
            f"{self.destination.name!r} key={self.routing_key!r}>"
        )


class Exchange:
    """Base class: bookkeeping of bindings; subclasses route."""

    kind = "exchange"
    type_name: ClassVar[str] = ""

    def __init__(
        self,
        name: str,
        vhost: str,
        *,
        durable: bool = False,
        auto_delete: bool = False,
        internal: bool = False,
        arguments: Mapping[str, Any] | None = None,
        builtin: bool = False,
    ) -> None:
        self.name = name
        self.vhost = vhost
        self.durable = durable
        self.auto_delete = auto_delete
        self.internal = internal
        self.arguments: dict[str, Any] = dict(arguments or {})
        self.builtin = builtin
        self.bindings: dict[tuple[Any, ...], Binding] = {}
        ae = self.arguments.get("alternate-exchange")
        self.alternate_exchange: str | None = (
            ae.decode() if isinstance(ae, bytes) else ae if isinstance(ae, str) else None
        )

    # -- bindings ---------------------------------------------------------------------------

    def add_binding(self, binding: Binding) -> bool:
        """Add a binding; False when an identical one exists (binding is idempotent)."""
        if binding.key in self.bindings:
            return False
        self.bindings[binding.key] = binding
        self._index(binding)
        return True

    def remove_binding(self, key: tuple[Any, ...]) -> Binding | None:
        binding = self.bindings.pop(key, None)
        if binding is not None:
            self._unindex(binding)
        return binding

    def bindings_to(self, kind: str, name: str) -> list[Binding]:
        return [b for b in self.bindings.values() if b.key[0] == kind and b.key[1] == name]

    def _index(self, binding: Binding) -> None:
        raise NotImplementedError

    def _unindex(self, binding: Binding) -> None:
        raise NotImplementedError

    def route(
        self, routing_keys: Iterable[str], headers: Mapping[str, Any] | None
    ) -> list[Destination]:
        """Destinations bound for these keys, each once, in binding order."""
        raise NotImplementedError

    def validate_binding(self, arguments: Mapping[str, Any]) -> None:
        """Raise when a binding's arguments are invalid for this exchange type."""

    def __repr__(self) -> str:
        return f"<{type(self).__name__} {self.name!r} vhost={self.vhost!r}>"


class _RefCounted:
    """Destinations reachable from one index slot, counting bindings that lead to each."""

    __slots__ = ("counts", "dests")

    def __init__(self) -> None:
        self.dests: dict[DestKey, Destination] = {}
        self.counts: dict[DestKey, int] = {}

    def add(self, dest: Destination) -> None:
        key = (dest.kind, dest.name)
        self.counts[key] = self.counts.get(key, 0) + 1
        self.dests[key] = dest

    def remove(self, dest: Destination) -> None:
        key = (dest.kind, dest.name)
        left = self.counts[key] - 1
        if left:
            self.counts[key] = left
        else:
            del self.counts[key]
            del self.dests[key]

    def __bool__(self) -> bool:
        return bool(self.dests)


class DirectExchange(Exchange):
    type_name = "direct"

    def __init__(self, name: str, vhost: str, **kwargs: Any) -> None:
        super().__init__(name, vhost, **kwargs)
        self._by_key: dict[str, _RefCounted] = {}

    def _index(self, binding: Binding) -> None:
        slot = self._by_key.get(binding.routing_key)
        if slot is None:
            slot = self._by_key[binding.routing_key] = _RefCounted()
        slot.add(binding.destination)

    def _unindex(self, binding: Binding) -> None:
        slot = self._by_key[binding.routing_key]
        slot.remove(binding.destination)
        if not slot:
            del self._by_key[binding.routing_key]

    def route(
        self, routing_keys: Iterable[str], headers: Mapping[str, Any] | None
    ) -> list[Destination]:
        by_key = self._by_key
        keys = routing_keys if isinstance(routing_keys, tuple) else tuple(routing_keys)
        if len(keys) == 1:
            slot = by_key.get(keys[0])
            return list(slot.dests.values()) if slot is not None else []
        found: dict[DestKey, Destination] = {}
        for key in keys:
            slot = by_key.get(key)
            if slot is not None:
                found.update(slot.dests)
        return list(found.values())


class FanoutExchange(Exchange):
    type_name = "fanout"

    def __init__(self, name: str, vhost: str, **kwargs: Any) -> None:
        super().__init__(name, vhost, **kwargs)
        self._all = _RefCounted()

    def _index(self, binding: Binding) -> None:
        self._all.add(binding.destination)

    def _unindex(self, binding: Binding) -> None:
        self._all.remove(binding.destination)

    def route(
        self, routing_keys: Iterable[str], headers: Mapping[str, Any] | None
    ) -> list[Destination]:
        return list(self._all.dests.values())


def topic_words(key: str) -> list[str]:
    """Split a topic key into words: '' is no words, 'a..b' is ['a', '', 'b']."""
    return key.split(".") if key else []


class _TrieNode:
    __slots__ = ("children", "slot")

    def __init__(self) -> None:
        self.children: dict[str, _TrieNode] = {}
        self.slot = _RefCounted()


class TopicExchange(Exchange):
    type_name = "topic"

    def __init__(self, name: str, vhost: str, **kwargs: Any) -> None:
        super().__init__(name, vhost, **kwargs)
        self._root = _TrieNode()

    def _index(self, binding: Binding) -> None:
        node = self._root
        for word in topic_words(binding.routing_key):
            child = node.children.get(word)
            if child is None:
                child = node.children[word] = _TrieNode()
            node = child
        node.slot.add(binding.destination)

    def _unindex(self, binding: Binding) -> None:
        path = [self._root]
        words = topic_words(binding.routing_key)
        for word in words:
            path.append(path[-1].children[word])
        path[-1].slot.remove(binding.destination)
        # Prune empty branches so a churn of bindings does not grow the trie forever.
        for depth in range(len(words), 0, -1):
            node = path[depth]
            if node.slot or node.children:
                break
            del path[depth - 1].children[words[depth - 1]]

    def route(
        self, routing_keys: Iterable[str], headers: Mapping[str, Any] | None
    ) -> list[Destination]:
        found: dict[DestKey, Destination] = {}
        for key in routing_keys:
            words = topic_words(key)
            _trie_match(self._root, words, 0, len(words), found)
        return list(found.values())


def _trie_match(
    node: _TrieNode, words: list[str], i: int, n: int, found: dict[DestKey, Destination]
) -> None:
    children = node.children
    if i == n:
        if node.slot:
            found.update(node.slot.dests)
    else:
        child = children.get(words[i])
        if child is not None:
            _trie_match(child, words, i + 1, n, found)
        star = children.get("*")
        if star is not None:
            _trie_match(star, words, i + 1, n, found)
    hash_node = children.get("#")
    if hash_node is not None:
        # '#' swallows zero or more words: try every remaining suffix.
        for j in range(i, n + 1):
            _trie_match(hash_node, words, j, n, found)


_X_MATCH_KINDS = ("all", "any", "all-with-x", "any-with-x")


def _erlang_equal(a: Any, b: Any) -> bool:
    """Erlang ``==`` on decoded field values: numbers compare by value, bools only to bools."""
    if isinstance(a, bool) or isinstance(b, bool):
        return isinstance(a, bool) and isinstance(b, bool) and a == b
    if isinstance(a, str):
        a = a.encode("utf-8", "surrogatepass")
    if isinstance(b, str):
        b = b.encode("utf-8", "surrogatepass")
    if isinstance(a, bytes) != isinstance(b, bytes):
        return False
    if isinstance(a, Mapping) or isinstance(b, Mapping):
        if not (isinstance(a, Mapping) and isinstance(b, Mapping)) or a.keys() != b.keys():
            return False
        return all(_erlang_equal(a[k], b[k]) for k in a)
    if isinstance(a, list | tuple) or isinstance(b, list | tuple):
        if not (isinstance(a, list | tuple) and isinstance(b, list | tuple)) or len(a) != len(b):
            return False
        return all(_erlang_equal(x, y) for x, y in zip(a, b, strict=True))
    try:
        return bool(a == b)
    except TypeError:
        return False


def headers_match(binding_args: Mapping[str, Any], headers: Mapping[str, Any] | None) -> bool:
    """RabbitMQ's headers-exchange match of one binding against a message's headers."""
    kind = binding_args.get("x-match", "all")
    if isinstance(kind, bytes):
        kind = kind.decode()
    with_x = kind in ("all-with-x", "any-with-x")
    want_all = kind in ("all", "all-with-x")
    data = headers or {}
    any_matched = False
    for key, expected in binding_args.items():
        if key == "x-match" or (not with_x and key.startswith("x-")):
            continue
        if key in data and (expected is None or _erlang_equal(expected, data[key])):
            any_matched = True
            if not want_all:
                return True
        elif want_all:
            return False
    return want_all or any_matched


class HeadersExchange(Exchange):
    type_name = "headers"

    def __init__(self, name: str, vhost: str, **kwargs: Any) -> None:
        super().__init__(name, vhost, **kwargs)
        self._ordered: list[Binding] = []

    def validate_binding(self, arguments: Mapping[str, Any]) -> None:
        if "x-match" not in arguments:
            return
        kind = arguments["x-match"]
        if isinstance(kind, str | bytes):
            text = kind.decode() if isinstance(kind, bytes) else kind
            if text not in _X_MATCH_KINDS:
                raise PreconditionFailed(
                    f'Invalid x-match field value <<"{text}">>; '
                    "expected all, any, all-with-x, or any-with-x"
                )
        else:
            from .arguments import amqp_type

            raise PreconditionFailed(
                f"Invalid x-match field type {amqp_type(kind)} (value {kind!r}); expected longstr"
            )

    def _index(self, binding: Binding) -> None:
        self._ordered.append(binding)

    def _unindex(self, binding: Binding) -> None:
        self._ordered.remove(binding)

    def route(
        self, routing_keys: Iterable[str], headers: Mapping[str, Any] | None
    ) -> list[Destination]:
        found: dict[DestKey, Destination] = {}
        for binding in self._ordered:
            if headers_match(binding.arguments, headers):
                dest = binding.destination
                found[(dest.kind, dest.name)] = dest
        return list(found.values())


BUILTIN_TYPES: dict[str, type[Exchange]] = {
    cls.type_name: cls for cls in (DirectExchange, FanoutExchange, TopicExchange, HeadersExchange)
}


def exchange_class(type_name: str) -> type[Exchange] | None:
    return BUILTIN_TYPES.get(type_name)
