"""State descriptors: the name, kind, serializer and TTL of a piece of keyed state.

A descriptor is immutable configuration; an operator asks its keyed state backend for
the handle that a descriptor names (``ctx.get_state(ValueStateDescriptor("count"))``).
Type information is optional: values are msgpack-serialized unless a custom
serializer (an object with ``dumps(value) -> bytes`` and ``loads(bytes) -> value``) is
given. PyFlink-style type arguments (``ValueStateDescriptor("n", Types.INT())``,
``MapStateDescriptor("m", Types.STRING(), Types.INT())``) are accepted in the positions
PyFlink puts them and recorded as ``type_info``; they are never read as a default, a TTL
or a serializer.

>>> from streamcore.typeinfo import Types
>>> d = ValueStateDescriptor("n", Types.INT())
>>> d.type_info, d.default
((Types.INT(),), None)
>>> MapStateDescriptor("m", Types.STRING(), Types.INT()).type_info
(Types.STRING(), Types.INT())
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Protocol

from streamcore import serde
from streamcore.errors import ConfigurationError
from streamcore.typeinfo import is_type_information

__all__ = [
    "ListStateDescriptor",
    "MapStateDescriptor",
    "MsgpackSerializer",
    "ReducingStateDescriptor",
    "Serializer",
    "StateDescriptor",
    "StateTtlConfig",
    "ValueStateDescriptor",
]


class Serializer(Protocol):
    """Turns state values into bytes and back (used by the RocksDB backend and snapshots)."""

    def dumps(self, value: Any) -> bytes:
        """Encode ``value``."""
        ...

    def loads(self, data: bytes) -> Any:
        """Decode what :meth:`dumps` wrote."""
        ...


class MsgpackSerializer:
    """The default serializer: msgpack, with tuples kept as tuples."""

    dumps = staticmethod(serde.msgpack_dumps)
    loads = staticmethod(serde.msgpack_loads)


DEFAULT_SERIALIZER = MsgpackSerializer()


@dataclass(frozen=True)
class StateTtlConfig:
    """Time-to-live of state entries.

    Args:
        ttl_ms: how long an entry lives after its last write (or read, with ``update_on_read``).
        time: ``"processing"`` (the job's clock) or ``"event"`` (the operator's watermark).
        update_on_read: reading an entry also renews its lifetime.

    Expired entries are invisible on read and removed lazily when read, and in bulk
    by :meth:`KeyedStateBackend.cleanup_expired` (which the runtime calls between
    batches) and when snapshots are taken.
    """

    ttl_ms: int
    time: str = "processing"
    update_on_read: bool = False

    def __post_init__(self) -> None:
        if type(self.ttl_ms) is not int or self.ttl_ms <= 0:
            msg = f"state TTL must be a positive int of milliseconds, got {self.ttl_ms!r}"
            raise ConfigurationError(msg)
        if self.time not in ("processing", "event"):
            msg = f"state TTL time must be 'processing' or 'event', got {self.time!r}"
            raise ConfigurationError(msg)


def _ttl(ttl: int | StateTtlConfig | None) -> StateTtlConfig | None:
    if ttl is None or isinstance(ttl, StateTtlConfig):
        return ttl
    if type(ttl) is not int:
        msg = (
            f"state ttl must be an int of milliseconds or a StateTtlConfig, got {ttl!r}; "
            "type information goes in PyFlink's positions (e.g. ValueStateDescriptor('n', Types.INT()))"
        )
        raise ConfigurationError(msg)
    return StateTtlConfig(ttl)


class StateDescriptor:
    """Base of every state descriptor: a name, a serializer and an optional TTL."""

    kind = "abstract"
    __slots__ = ("name", "serializer", "ttl", "type_info")

    def __init__(
        self, name: str, ttl: int | StateTtlConfig | None = None, serializer: Serializer | None = None
    ) -> None:
        type_info: tuple[Any, ...] = getattr(self, "type_info", None) or ()
        # PyFlink: ListStateDescriptor(name, elem_type), MapStateDescriptor(name, key_type, value_type)
        if is_type_information(ttl):
            type_info = (*type_info, ttl)
            ttl = None
        if is_type_information(serializer):
            type_info = (*type_info, serializer)
            serializer = None
        self.type_info = type_info
        if not isinstance(name, str) or not name or "/" in name:
            msg = f"state name must be a non-empty str without '/', got {name!r}"
            raise ConfigurationError(msg)
        if serializer is not None and not (hasattr(serializer, "dumps") and hasattr(serializer, "loads")):
            msg = "a state serializer needs dumps(value) -> bytes and loads(bytes) -> value"
            raise ConfigurationError(msg)
        self.name = name
        self.ttl = _ttl(ttl)
        self.serializer: Serializer = serializer or DEFAULT_SERIALIZER

    def signature(self) -> tuple[Any, ...]:
        """What must match when the same name is registered twice."""
        return (self.kind, self.ttl)

    def __repr__(self) -> str:
        return f"{type(self).__name__}({self.name!r})"


class ValueStateDescriptor(StateDescriptor):
    """A single value per key (``value()``, ``update(v)``, ``clear()``).

    ``default`` is returned by ``value()`` when nothing is stored; it is shared, so
    use an immutable default.
    """

    kind = "value"
    __slots__ = ("default",)

    def __init__(
        self,
        name: str,
        default: Any = None,
        ttl: int | StateTtlConfig | None = None,
        serializer: Serializer | None = None,
    ) -> None:
        if is_type_information(default):  # PyFlink: ValueStateDescriptor(name, value_type_info)
            self.type_info = (default,)
            default = None
        super().__init__(name, ttl, serializer)
        self.default = default


class ListStateDescriptor(StateDescriptor):
    """A list of values per key (``get()``, ``add(v)``, ``add_all(vs)``, ``update(vs)``, ``clear()``)."""

    kind = "list"
    __slots__ = ()


class MapStateDescriptor(StateDescriptor):
    """A map per key. User keys follow the same rules as stream keys (int, str, bytes, tuples...).

    Iteration order of ``keys()``/``items()`` is the order of the encoded user keys on
    both backends.
    """

    kind = "map"
    __slots__ = ()


class ReducingStateDescriptor(StateDescriptor):
    """One value per key, folded with ``reduce_fn(old, new)`` on every ``add``."""

    kind = "reducing"
    __slots__ = ("reduce_fn",)

    def __init__(
        self,
        name: str,
        reduce_fn: Callable[[Any, Any], Any],
        ttl: int | StateTtlConfig | None = None,
        serializer: Serializer | None = None,
    ) -> None:
        super().__init__(name, ttl, serializer)
        if not callable(reduce_fn):
            msg = f"ReducingStateDescriptor({name!r}) needs a callable reduce_fn(a, b)"
            raise ConfigurationError(msg)
        self.reduce_fn = reduce_fn
