"""A bounded write-back cache of decoded values in front of a serializing value state.

Kafka Streams puts the same kind of record cache in front of RocksDB. Here it serves
:meth:`ValueState.hold_live_values <streamcore.state.handles.ValueState.hold_live_values>`
with ``cache_entries``: a value that is created, updated many times and finally read
and dropped while cached (a window's accumulator of one key, from its first element to
its firing) costs no database read, write or (de)serialization at all.

The cache knows values by namespace and key and reaches its backing state only through
three callables given to it: read, write and delete many keys of one namespace, all in
decoded (live) values. Invariants:

* a cached value is the current one; the backing state may hold an older one;
* ``dirty`` keys of a namespace differ from the backing state: they are written when
  evicted and by :meth:`WriteBackCache.flush`, which the owning backend calls before
  every snapshot, so snapshots and checkpoints see every value;
* ``stored`` keys have a value in the backing state (dropping them must delete it);
* eviction goes namespace by namespace in insertion order (the oldest windows first),
  down to 7/8 of the capacity, so one eviction pays for many insertions.

The cache starts empty and must be empty when its backend restores an image (operators
restore before they process anything).
"""

from __future__ import annotations

from collections.abc import Callable, Container, Sequence
from itertools import islice
from typing import Any

from streamcore.state.handles import Fold

__all__ = ["WriteBackCache"]

_MISSING = object()

ReadMany = Callable[[Any, Sequence[Any]], list[Any]]
WriteMany = Callable[[Any, Sequence[Any], Sequence[Any]], None]
DeleteMany = Callable[[Any, Sequence[Any]], None]


class _Namespace:
    """The cached values of one namespace, with which keys are dirty and which are stored."""

    __slots__ = ("dirty", "stored", "values")

    def __init__(self) -> None:
        self.values: dict[Any, Any] = {}
        self.dirty: set[Any] = set()
        self.stored: set[Any] = set()


class WriteBackCache:
    """Up to ``max_entries`` decoded values of one value state, written back lazily.

    ``read_many(ns, keys)`` returns decoded values (``None`` where absent),
    ``write_many(ns, keys, values)`` and ``delete_many(ns, keys)`` change the backing
    state; the cache calls them inside whatever write batch is open.
    """

    __slots__ = ("_delete_many", "_read_many", "_size", "_spaces", "_write_many", "max_entries")

    def __init__(
        self, read_many: ReadMany, write_many: WriteMany, delete_many: DeleteMany, max_entries: int
    ) -> None:
        self._read_many = read_many
        self._write_many = write_many
        self._delete_many = delete_many
        self.max_entries = max_entries
        self._spaces: dict[Any, _Namespace] = {}
        self._size = 0

    def __len__(self) -> int:
        return self._size

    # -- per key: the backing state's per-key operations consult the cache ----------------
    def get(self, namespace: Any, key: Any, default: Any) -> Any:
        """The cached value of ``key``, or ``default`` when it is not cached."""
        space = self._spaces.get(namespace)
        return default if space is None else space.values.get(key, default)

    def replace(self, namespace: Any, key: Any, value: Any) -> bool:
        """Set a cached key's value (written back later); ``False`` when ``key`` is not cached."""
        space = self._spaces.get(namespace)
        if space is None or key not in space.values:
            return False
        space.values[key] = value
        space.dirty.add(key)
        return True

    def discard(self, namespace: Any, key: Any) -> None:
        """Forget ``key`` (the caller deletes it from the backing state)."""
        space = self._spaces.get(namespace)
        if space is not None and space.values.pop(key, _MISSING) is not _MISSING:
            self._size -= 1
            space.dirty.discard(key)
            space.stored.discard(key)

    # -- bulk ----------------------------------------------------------------------------
    def fold(
        self,
        namespace: Any,
        keys: Sequence[Any],
        values: Sequence[Any],
        fold: Fold,
        known: Container[Any] | None,
    ) -> list[Any]:
        """:meth:`ValueState.fold_many` through the cache: keys not cached are read once, then cached."""
        space = self._spaces.get(namespace)
        if space is None:
            space = self._spaces[namespace] = _Namespace()
        cached = space.values
        before = len(cached)
        missing = [k for k in dict.fromkeys(keys) if k not in cached and (known is None or k in known)]
        if missing:
            stored = space.stored
            for k, v in zip(missing, self._read_many(namespace, missing), strict=True):
                if v is not None:
                    cached[k] = v
                    stored.add(k)
        new_keys: list[Any] = []
        fold(cached, keys, values, new_keys)
        space.dirty.update(keys)
        self._size += len(cached) - before
        if self._size > self.max_entries:
            self._evict(self.max_entries - self.max_entries // 8)
        return new_keys

    def get_many(self, namespace: Any, keys: Sequence[Any], clear: bool) -> list[Any]:
        """:meth:`ValueState.get_many` through the cache: cached values, the others read."""
        space = self._spaces.get(namespace)
        cached = space.values if space is not None else {}
        uncached = [k for k in keys if k not in cached]
        loaded = iter(self._read_many(namespace, uncached) if uncached else ())
        out = [cached[k] if k in cached else next(loaded) for k in keys]
        if clear:
            self._drop(namespace, space, keys, uncached)
        return out

    def clear_many(self, namespace: Any, keys: Sequence[Any]) -> None:
        """:meth:`ValueState.clear_many` through the cache."""
        space = self._spaces.get(namespace)
        cached = space.values if space is not None else {}
        self._drop(namespace, space, keys, [k for k in keys if k not in cached])

    def _drop(
        self, namespace: Any, space: _Namespace | None, keys: Sequence[Any], uncached: list[Any]
    ) -> None:
        """Remove ``keys`` from the cache and from the backing state (where it may hold them)."""
        gone = uncached if space is None else uncached + [k for k in keys if k in space.stored]
        if gone:
            self._delete_many(namespace, gone)
        if space is None:
            return
        cached = space.values
        asked = set(keys)
        if cached.keys() <= asked:
            del self._spaces[namespace]
            self._size -= len(cached)
            return
        for k in asked:
            if cached.pop(k, _MISSING) is not _MISSING:
                self._size -= 1
        space.dirty -= asked
        space.stored -= asked

    def has_dirty(self) -> bool:
        """Whether some cached value differs from the backing state's."""
        return any(space.dirty for space in self._spaces.values())

    def flush(self) -> None:
        """Write every dirty value to the backing state; the values stay cached, clean."""
        for namespace, space in self._spaces.items():
            if space.dirty:
                keys = list(space.dirty)
                cached = space.values
                self._write_many(namespace, keys, [cached[k] for k in keys])
                space.stored |= space.dirty
                space.dirty.clear()

    def _evict(self, target: int) -> None:
        """Write back and drop values, oldest namespaces first, until ``target`` remain."""
        for namespace in list(self._spaces):
            if self._size <= target:
                return
            space = self._spaces[namespace]
            cached = space.values
            if self._size - len(cached) >= target:
                evicted = list(cached)
            else:
                evicted = list(islice(cached, self._size - target))
            dirty = [k for k in evicted if k in space.dirty]
            if dirty:
                self._write_many(namespace, dirty, [cached[k] for k in dirty])
            self._size -= len(evicted)
            if len(evicted) == len(cached):
                del self._spaces[namespace]
                continue
            for k in evicted:
                del cached[k]
            space.dirty.difference_update(evicted)
            space.stored.difference_update(evicted)
