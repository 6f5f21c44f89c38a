"""The cache of a lookup join: recently used rows, bounded in rows and age.

:class:`LookupCache` is the configuration (immutable, copied per task); each run of a
lookup join builds its own :class:`LookupCacheTable`. The table is a least-recently-used
dict: a hit moves the key to the back, an insert beyond ``max_rows`` evicts from the
front. Entries expire ``ttl_ms`` after they were loaded, by the job's processing-time
clock, so a changed dimension row is seen within ``ttl_ms``. With ``cache_missing``, keys
the store does not hold are cached too (as ``None``), so a stream of unknown keys does
not query the store again and again.

The cache is only a cache: it is never checkpointed, and a restored job starts with an
empty one. Only the job's thread touches it (never the lookup's event loop).
"""

from __future__ import annotations

from collections import OrderedDict
from dataclasses import dataclass
from typing import Any

from streamcore.errors import ConfigurationError

__all__ = ["MISS", "LookupCache", "LookupCacheTable"]

#: what :meth:`LookupCacheTable.get` returns for a key it does not hold (a cached missing row is ``None``).
MISS: Any = object()


@dataclass(frozen=True)
class LookupCache:
    """How a lookup join caches rows: at most ``max_rows``, each for ``ttl_ms`` (``None``: no expiry).

    Args:
        max_rows: rows kept at most (least recently used evicted first).
        ttl_ms: how long a loaded row is used, in processing-time milliseconds (``None``: forever).
        cache_missing: also cache that a key has no row (a left join emits it without a row;
            an inner join drops it) instead of asking the store each time.

    >>> LookupCache(max_rows=10, ttl_ms=1_000).build().max_rows
    10
    """

    max_rows: int = 100_000
    ttl_ms: int | None = 60_000
    cache_missing: bool = True

    def __post_init__(self) -> None:
        if type(self.max_rows) is not int or self.max_rows < 1:
            msg = f"LookupCache max_rows must be an int >= 1, got {self.max_rows!r}"
            raise ConfigurationError(msg)
        if self.ttl_ms is not None and (type(self.ttl_ms) is not int or self.ttl_ms <= 0):
            msg = f"LookupCache ttl_ms must be an int of milliseconds > 0 or None, got {self.ttl_ms!r}"
            raise ConfigurationError(msg)
        if not isinstance(self.cache_missing, bool):
            msg = f"LookupCache cache_missing must be a bool, got {self.cache_missing!r}"
            raise ConfigurationError(msg)

    def build(self) -> LookupCacheTable:
        """A new, empty table with this configuration."""
        return LookupCacheTable(self.max_rows, self.ttl_ms, self.cache_missing)


class LookupCacheTable:
    """The rows of one lookup join: an LRU dict with expiry; counts hits, misses, evictions, expiries."""

    __slots__ = ("_rows", "cache_missing", "evictions", "expired", "hits", "max_rows", "misses", "ttl_ms")

    def __init__(self, max_rows: int, ttl_ms: int | None, cache_missing: bool) -> None:
        self._rows: OrderedDict[Any, tuple[Any, int | None]] = OrderedDict()
        self.max_rows = max_rows
        self.ttl_ms = ttl_ms
        self.cache_missing = cache_missing
        self.hits = 0
        self.misses = 0
        self.evictions = 0
        self.expired = 0

    def get(self, key: Any, now: int) -> Any:
        """The cached row of ``key`` (``None``: cached as missing), or :data:`MISS`."""
        entry = self._rows.get(key)
        if entry is None:
            self.misses += 1
            return MISS
        expires = entry[1]
        if expires is not None and now >= expires:
            del self._rows[key]
            self.expired += 1
            self.misses += 1
            return MISS
        self._rows.move_to_end(key)
        self.hits += 1
        return entry[0]

    def put(self, key: Any, row: Any, now: int) -> None:
        """Cache ``row`` for ``key`` (``None``: no row; cached only with ``cache_missing``)."""
        rows = self._rows
        if row is None and not self.cache_missing:
            rows.pop(key, None)
            return
        rows[key] = (row, None if self.ttl_ms is None else now + self.ttl_ms)
        rows.move_to_end(key)
        if len(rows) > self.max_rows:
            rows.popitem(last=False)
            self.evictions += 1

    def __len__(self) -> int:
        return len(self._rows)

    def __contains__(self, key: Any) -> bool:
        return key in self._rows

    def metrics(self) -> dict[str, Any]:
        """Hits, misses, evictions, expiries and rows held."""
        return {
            "rows": len(self._rows),
            "hits": self.hits,
            "misses": self.misses,
            "evictions": self.evictions,
            "expired": self.expired,
        }
