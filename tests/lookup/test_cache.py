"""LookupCache: size bound (LRU), TTL expiry, missing keys, counters; and inside a lookup join."""

from __future__ import annotations

from pathlib import Path

import pytest

import streamcore as sc
from streamcore.errors import ConfigurationError
from streamcore.lookup.cache import MISS
from streamcore.operators.lookup_join import LookupJoinOperator
from streamcore.testing import OperatorHarness
from streamcore.time import ManualClock
from tests.lookup.support import Slowed, make_sqlite, shop_row


def test_size_bound_evicts_the_least_recently_used_row() -> None:
    t = sc.LookupCache(max_rows=2, ttl_ms=None).build()
    t.put(1, "a", 0)
    t.put(2, "b", 0)
    assert t.get(1, 0) == "a"  # 1 is now the most recently used
    t.put(3, "c", 0)
    assert len(t) == 2 and 2 not in t and t.get(1, 0) == "a" and t.get(3, 0) == "c"
    assert t.evictions == 1


def test_rows_expire_ttl_ms_after_they_were_loaded() -> None:
    t = sc.LookupCache(max_rows=10, ttl_ms=1_000).build()
    t.put("k", {"v": 1}, now=5_000)
    assert t.get("k", 5_999) == {"v": 1}
    assert t.get("k", 6_000) is MISS
    assert t.expired == 1 and "k" not in t


def test_missing_keys_are_cached_only_with_cache_missing() -> None:
    on = sc.LookupCache(cache_missing=True).build()
    on.put("gone", None, 0)
    assert on.get("gone", 1) is None  # a known miss, not MISS
    off = sc.LookupCache(cache_missing=False).build()
    off.put("gone", None, 0)
    assert off.get("gone", 1) is MISS and len(off) == 0


def test_counters() -> None:
    t = sc.LookupCache().build()
    t.get(1, 0)
    t.put(1, "x", 0)
    t.get(1, 0)
    t.get(1, 0)
    assert t.metrics() == {"rows": 1, "hits": 2, "misses": 1, "evictions": 0, "expired": 0}


@pytest.mark.parametrize(
    ("kw", "match"),
    [({"max_rows": 0}, "max_rows"), ({"ttl_ms": 0}, "ttl_ms"), ({"cache_missing": 1}, "cache_missing")],
)
def test_bad_configuration(kw: dict, match: str) -> None:
    with pytest.raises(ConfigurationError, match=match):
        sc.LookupCache(**kw)


def _op(lookup: sc.Lookup, cache: sc.LookupCache, how: str = "inner") -> LookupJoinOperator:
    from streamcore.lookup import merge_row

    return LookupJoinOperator("lj", "lj", lookup, lambda o: o["shop_id"], merge_row, how=how, cache=cache)


def test_in_a_lookup_join_ttl_expiry_reloads_and_missing_keys_are_not_asked_again(tmp_path: Path) -> None:
    lookup = Slowed(
        sc.SQLiteLookup(make_sqlite(tmp_path / "d.db", [1, 2]), "shops", key="shop_id"), max_delay_s=0
    )
    clock = ManualClock(0)
    h = OperatorHarness(_op(lookup, sc.LookupCache(max_rows=10, ttl_ms=1_000), how="left"), clock=clock)
    with h:
        h.process_elements([{"shop_id": 1}, {"shop_id": 9}], [0, 1])
        h.operator.finish()
        assert lookup.fetches == [[1, 9]]
        h.process_elements([{"shop_id": 1}, {"shop_id": 9}], [2, 3])  # both cached (9 as missing)
        h.operator.finish()
        assert len(lookup.fetches) == 1
        clock.set(1_000)
        h.process_elements([{"shop_id": 1}], [4])  # expired: loaded again
        h.operator.finish()
        assert lookup.fetches == [[1, 9], [1]]
        m = h.operator.metrics()["lookup"]
        assert (m["hits"], m["misses"], m["loads"], m["rows"]) == (2, 3, 2, 2)
    assert h.values() == [
        {**shop_row(1)},
        {"shop_id": 9},
        {**shop_row(1)},
        {"shop_id": 9},
        {**shop_row(1)},
    ]
