"""State TTL, the same on every backend: handles that wrap a backend's plain handles.

A TTL'd entry is stored as ``[expires_at, value]`` (per value for value and reducing
state, per element for list state, per entry for map state), so the stored form is
identical on heap and RocksDB and survives savepoints. Expired entries are invisible
on read and deleted when read; :meth:`streamcore.state.api.KeyedStateBackend.cleanup_expired` removes the
rest in bulk.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from typing import Any, Protocol

from streamcore.state.descriptors import StateDescriptor
from streamcore.state.handles import ListState, MapState, ReducingState, ValueState

__all__ = ["TtlTimeSource", "is_expired", "wrap_with_ttl"]


class TtlTimeSource(Protocol):
    """Where TTL handles read the time (the keyed backend): the clock or the operator's watermark."""

    def ttl_now(self, time: str) -> int:
        """The current time in the TTL's time domain, ``"processing"`` or ``"event"``."""
        ...


def is_expired(raw: Any, now: int) -> bool:
    """Whether a stored ``[expires_at, value]`` is expired at ``now``."""
    return raw[0] <= now


class _TtlBase:
    __slots__ = ("_backend", "_inner", "_time", "_ttl", "_update_on_read")

    def __init__(self, inner: Any, descriptor: StateDescriptor, backend: TtlTimeSource) -> None:
        assert descriptor.ttl is not None
        self._inner = inner
        self._backend = backend
        self._ttl = descriptor.ttl.ttl_ms
        self._time = descriptor.ttl.time
        self._update_on_read = descriptor.ttl.update_on_read

    def _now(self) -> int:
        return self._backend.ttl_now(self._time)

    def set_namespace(self, namespace: Any) -> None:
        self._inner.set_namespace(namespace)


class TtlValueState(_TtlBase, ValueState):
    """Value state whose value expires ``ttl`` after its last write."""

    __slots__ = ("_default",)

    def __init__(self, inner: Any, descriptor: Any, backend: TtlTimeSource) -> None:
        super().__init__(inner, descriptor, backend)
        self._default = descriptor.default

    def value(self) -> Any:
        """The live value, or the default."""
        raw = self._inner.value()
        if raw is None:
            return self._default
        now = self._now()
        if raw[0] <= now:
            self._inner.clear()
            return self._default
        if self._update_on_read:
            self._inner.update([now + self._ttl, raw[1]])
        return raw[1]

    def update(self, value: Any) -> None:
        """Store ``value`` with a fresh lifetime."""
        if value is None:
            self._inner.clear()
        else:
            self._inner.update([self._now() + self._ttl, value])

    def clear(self) -> None:
        """Remove the value."""
        self._inner.clear()


class TtlReducingState(_TtlBase, ReducingState):
    """Reducing state whose folded value expires ``ttl`` after its last write."""

    __slots__ = ("_reduce",)

    def __init__(self, inner: Any, descriptor: Any, backend: TtlTimeSource) -> None:
        super().__init__(inner, descriptor, backend)
        self._reduce = descriptor.reduce_fn

    def get(self) -> Any:
        """The live folded value, or ``None``."""
        raw = self._inner.value()
        if raw is None:
            return None
        now = self._now()
        if raw[0] <= now:
            self._inner.clear()
            return None
        if self._update_on_read:
            self._inner.update([now + self._ttl, raw[1]])
        return raw[1]

    def add(self, value: Any) -> None:
        """Fold ``value`` into the live value (an expired one counts as absent)."""
        current = self.get()
        new = value if current is None else self._reduce(current, value)
        self._inner.update([self._now() + self._ttl, new])

    def clear(self) -> None:
        """Remove the value."""
        self._inner.clear()


class TtlListState(_TtlBase, ListState):
    """List state whose elements each expire ``ttl`` after they were added."""

    __slots__ = ()

    def get(self) -> list[Any]:
        """The live elements."""
        raw = self._inner.get()
        now = self._now()
        live = [r for r in raw if r[0] > now]
        if len(live) != len(raw):
            self._inner.update(live)
        if self._update_on_read and live:
            live = [[now + self._ttl, r[1]] for r in live]
            self._inner.update(live)
        return [r[1] for r in live]

    def add(self, value: Any) -> None:
        """Append ``value`` with a fresh lifetime."""
        self._inner.add([self._now() + self._ttl, value])

    def add_all(self, values: Iterable[Any]) -> None:
        """Append several values."""
        exp = self._now() + self._ttl
        self._inner.add_all([[exp, v] for v in values])

    def update(self, values: Iterable[Any]) -> None:
        """Replace the list; every element gets a fresh lifetime."""
        exp = self._now() + self._ttl
        self._inner.update([[exp, v] for v in values])

    def clear(self) -> None:
        """Remove the list."""
        self._inner.clear()


class TtlMapState(_TtlBase, MapState):
    """Map state whose entries each expire ``ttl`` after their last write."""

    __slots__ = ()

    def get(self, user_key: Any) -> Any:
        """The live value under ``user_key``, or ``None``."""
        raw = self._inner.get(user_key)
        if raw is None:
            return None
        now = self._now()
        if raw[0] <= now:
            self._inner.remove(user_key)
            return None
        if self._update_on_read:
            self._inner.put(user_key, [now + self._ttl, raw[1]])
        return raw[1]

    def put(self, user_key: Any, value: Any) -> None:
        """Store with a fresh lifetime."""
        self._inner.put(user_key, [self._now() + self._ttl, value])

    def remove(self, user_key: Any) -> None:
        """Remove ``user_key``."""
        self._inner.remove(user_key)

    def items(self) -> Iterator[tuple[Any, Any]]:
        """Live entries (expired ones are removed as they are met)."""
        now = self._now()
        expired = []
        live = []
        for k, raw in self._inner.items():
            if raw[0] <= now:
                expired.append(k)
            else:
                live.append((k, raw[1]))
        for k in expired:
            self._inner.remove(k)
        return iter(live)

    def clear(self) -> None:
        """Remove the map."""
        self._inner.clear()


_WRAPPERS = {
    "value": TtlValueState,
    "reducing": TtlReducingState,
    "list": TtlListState,
    "map": TtlMapState,
}


def wrap_with_ttl(handle: Any, descriptor: StateDescriptor, backend: TtlTimeSource) -> Any:
    """Wrap a backend's plain handle (storing ``[expires_at, value]``) in its TTL handle."""
    return _WRAPPERS[descriptor.kind](handle, descriptor, backend)
