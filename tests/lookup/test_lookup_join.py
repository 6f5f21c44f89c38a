"""Lookup joins on SQLite, on both state backends: the dict-join oracle, ordering, batching, bad input."""

from __future__ import annotations

import asyncio
import collections
import json
import tempfile
from pathlib import Path
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

import streamcore as sc
from streamcore.errors import (
    ConfigurationError,
    KeySelectorError,
    LookupStoreError,
    UserFunctionError,
)
from tests.lookup.support import Slowed, make_sqlite, oracle, order, shop_row

WM = sc.WatermarkStrategy.for_bounded_out_of_orderness(50)


class LateCounter(sc.KeyedProcessFunction):
    """Passes elements through; the operator counts elements older than its watermark (late)."""

    def process_element(self, value: Any, ctx: Any) -> Any:
        return [value]


def run_join(
    orders: list[dict[str, Any]],
    lookup: sc.Lookup,
    *,
    backend: str,
    state_dir: str | None,
    batch_size: int = 64,
    check_late: bool = True,
    **kw: Any,
) -> tuple[list[Any], dict[str, Any]]:
    env = sc.StreamEnvironment(state_backend=backend, state_dir=state_dir, batch_size=batch_size)
    src = env.from_collection(orders, timestamp=lambda o: o["ts"], watermarks=WM, name="orders")
    joined = src.lookup_join(lookup, on=lambda o: o["shop_id"], **kw).uid("lookup")
    if check_late:
        joined = joined.key_by(lambda o: o["order_id"] % 5).process(LateCounter()).uid("after")
    sink = sc.CollectSink()
    joined.sink_to(sink)
    result = env.execute("lookup-join")
    return sink.results, result.metrics


def by_shop(rows: list[dict[str, Any]]) -> dict[int, list[int]]:
    out: dict[int, list[int]] = collections.defaultdict(list)
    for r in rows:
        out[r["shop_id"]].append(r["order_id"])
    return dict(out)


@given(st.data())
def test_enriched_output_equals_a_dict_join_in_every_mode_on_both_backends(
    tmp_path_factory: pytest.TempPathFactory, data: st.DataObject
) -> None:
    n_shops = data.draw(st.integers(1, 30), label="shops")
    known = data.draw(st.sets(st.integers(0, n_shops - 1)), label="known")
    keys = data.draw(st.lists(st.integers(0, n_shops - 1), max_size=250), label="order keys")
    backend = data.draw(st.sampled_from(["heap", "rocksdb"]), label="backend")
    how = data.draw(st.sampled_from(["inner", "left"]), label="how")
    keyed = data.draw(st.booleans(), label="key_by_lookup_key")
    cache = data.draw(
        st.sampled_from([None, sc.LookupCache(max_rows=5, ttl_ms=None), sc.LookupCache(cache_missing=False)]),
        label="cache",
    )
    capacity = data.draw(st.sampled_from([1, 3, 50, 10_000]), label="capacity")
    batch_size = data.draw(st.sampled_from([1, 7, 64]), label="batch_size")
    seed = data.draw(st.integers(0, 1000), label="delay seed")
    work = Path(tempfile.mkdtemp(dir=tmp_path_factory.getbasetemp()))
    db = make_sqlite(work / "dims.db", sorted(known))
    orders = [order(i, k) for i, k in enumerate(keys)]
    lookup = Slowed(sc.SQLiteLookup(db, "shops", key="shop_id"), seed=seed, max_delay_s=0.002)
    out, metrics = run_join(
        orders,
        lookup,
        backend=backend,
        state_dir=str(work / "state") if backend == "rocksdb" else None,
        batch_size=batch_size,
        how=how,
        key_by_lookup_key=keyed,
        cache=cache,
        capacity=capacity,
    )
    expected = oracle(orders, {k: shop_row(k) for k in known}, how)
    if keyed:  # input order per lookup key
        assert by_shop(out) == by_shop(expected)
        assert sorted(out, key=lambda r: r["order_id"]) == expected
    else:  # input order
        assert out == expected
    assert metrics["after"]["late_records"] == 0  # nothing crossed a watermark
    for keys_of_fetch in lookup.fetches:  # deduplicated, bounded batches
        assert len(keys_of_fetch) == len(set(keys_of_fetch)) <= lookup.max_batch_keys


def test_keys_of_a_batch_go_in_one_query_per_round_trip(tmp_path: Path) -> None:
    db = make_sqlite(tmp_path / "d.db", list(range(100)))
    lookup = Slowed(sc.SQLiteLookup(db, "shops", key="shop_id"), max_delay_s=0)
    orders = [order(i, i % 40) for i in range(200)]
    out, metrics = run_join(orders, lookup, backend="heap", state_dir=None, batch_size=100, check_late=False)
    assert sorted(out, key=lambda r: r["order_id"]) == oracle(
        orders, {k: shop_row(k) for k in range(100)}, "inner"
    )
    # 2 batches of 100 orders over 40 shops: at most one load of 40 distinct keys per batch.
    assert 1 <= len(lookup.fetches) <= 2
    assert all(sorted(f) == list(range(40)) for f in lookup.fetches)
    m = metrics["lookup"]["lookup"]
    assert m["loads"] == len(lookup.fetches) and m["rows"] == 40 * len(lookup.fetches)
    assert m["keys_loaded"] == 40 * len(lookup.fetches) and m["load_time_ms"] > 0


def test_large_key_sets_are_split_into_chunks_of_max_batch_keys(tmp_path: Path) -> None:
    db = make_sqlite(tmp_path / "d.db", list(range(1_200)))
    lookup = Slowed(sc.SQLiteLookup(db, "shops", key="shop_id"), max_delay_s=0)
    orders = [order(i, i) for i in range(1_200)]
    out, _ = run_join(orders, lookup, backend="heap", state_dir=None, batch_size=1_200, check_late=False)
    assert len(out) == 1_200
    assert sorted(len(f) for f in lookup.fetches) == [200, 500, 500]


def test_a_custom_query_joins_two_tables(tmp_path: Path) -> None:
    db = tmp_path / "d.db"
    import sqlite3

    with sqlite3.connect(db) as c:
        c.execute("CREATE TABLE shops (shop_id INTEGER PRIMARY KEY, city_id INTEGER)")
        c.execute("CREATE TABLE cities (city_id INTEGER PRIMARY KEY, city TEXT)")
        c.executemany("INSERT INTO shops VALUES (?, ?)", [(1, 10), (2, 20)])
        c.executemany("INSERT INTO cities VALUES (?, ?)", [(10, "Lyon"), (20, "Oslo")])
    c.close()
    q = "SELECT s.shop_id, c.city FROM shops s JOIN cities c USING (city_id) WHERE s.shop_id IN ({keys})"
    env = sc.StreamEnvironment()
    out = (
        env.from_collection([{"o": 1, "shop_id": 2}, {"o": 2, "shop_id": 1}])
        .lookup_join(
            sc.SQLiteLookup(db, key="shop_id", query=q), on=lambda o: o["shop_id"], key_by_lookup_key=False
        )
        .execute_and_collect()
    )
    assert out == [{"o": 1, "shop_id": 2, "city": "Oslo"}, {"o": 2, "shop_id": 1, "city": "Lyon"}]


def test_a_join_function_and_non_dict_elements(tmp_path: Path) -> None:
    db = make_sqlite(tmp_path / "d.db", [1])
    env = sc.StreamEnvironment()
    s = env.from_collection([1, 2])
    lk = sc.SQLiteLookup(db, "shops", key="shop_id", columns=["city"])
    assert s.lookup_join(lk, on=lambda x: x, how="left", key_by_lookup_key=False).execute_and_collect() == [
        (1, {"shop_id": 1, "city": "city-1"}),
        (2, None),
    ]
    env = sc.StreamEnvironment()
    out = (
        env.from_collection([1, 2])
        .lookup_join(lk, on=lambda x: x, join=lambda v, row: f"{v}@{row['city']}")
        .execute_and_collect()
    )
    assert out == ["1@city-1"]


# -- bad input ------------------------------------------------------------------------------
def _run(stream_fn: Any) -> None:
    env = sc.StreamEnvironment()
    stream_fn(env.from_collection([{"shop_id": 1}, {"shop_id": 2}])).sink_to(lambda v: None)
    env.execute("bad")


def test_a_missing_database_fails_at_start_naming_operator_and_path(tmp_path: Path) -> None:
    lk = sc.SQLiteLookup(tmp_path / "nope.db", "shops", key="shop_id")
    with pytest.raises(
        LookupStoreError, match=r"operator 'lookup_join': open failed: SQLiteLookup\(.*nope.db'\)"
    ):
        _run(lambda s: s.lookup_join(lk, on=lambda o: o["shop_id"]))


def test_a_wrong_table_fails_at_start(tmp_path: Path) -> None:
    lk = sc.SQLiteLookup(make_sqlite(tmp_path / "d.db", [1]), "shopz", key="shop_id")
    with pytest.raises(LookupStoreError, match=r"no such table: shopz; check the table, key and columns"):
        _run(lambda s: s.lookup_join(lk, on=lambda o: o["shop_id"]))


def test_a_raising_key_function_is_named(tmp_path: Path) -> None:
    lk = sc.SQLiteLookup(make_sqlite(tmp_path / "d.db", [1]), "shops", key="shop_id")

    def key_of(o: dict[str, Any]) -> Any:
        return o["shop"]

    with pytest.raises(
        KeySelectorError, match=r"lookup key function .*key_of of operator 'lookup_join' raised KeyError"
    ):
        _run(lambda s: s.lookup_join(lk, on=key_of, key_by_lookup_key=False))


def test_an_unhashable_key_is_named(tmp_path: Path) -> None:
    lk = sc.SQLiteLookup(make_sqlite(tmp_path / "d.db", [1]), "shops", key="shop_id")
    with pytest.raises(KeySelectorError, match=r"returned an unhashable list"):
        _run(lambda s: s.lookup_join(lk, on=lambda o: [o["shop_id"]], key_by_lookup_key=False))


class Shaped(sc.Lookup):
    def __init__(self, result: Any) -> None:
        self.result = result

    async def fetch(self, keys: list[Any]) -> Any:
        return self.result


@pytest.mark.parametrize(
    ("result", "match"),
    [
        ([{"shop_id": 1}], r"Shaped.fetch returned a list, not a mapping"),
        ({1: {"a": 1}, 99: {"a": 2}}, r"Shaped.fetch returned rows for keys it was not asked for \(\[99\]\)"),
    ],
)
def test_a_result_of_the_wrong_shape_is_named(result: Any, match: str) -> None:
    with pytest.raises(LookupStoreError, match=rf"operator 'lookup_join': {match}"):
        _run(lambda s: s.lookup_join(Shaped(result), on=lambda o: o["shop_id"]))


def test_duplicate_rows_for_a_key_are_an_error(tmp_path: Path) -> None:
    import sqlite3

    db = tmp_path / "d.db"
    with sqlite3.connect(db) as c:
        c.execute("CREATE TABLE shops (shop_id INTEGER, city TEXT)")
        c.executemany("INSERT INTO shops VALUES (?, ?)", [(1, "a"), (1, "b")])
    c.close()
    with pytest.raises(LookupStoreError, match=r"key 1 has more than one row"):
        _run(lambda s: s.lookup_join(sc.SQLiteLookup(db, "shops", key="shop_id"), on=lambda o: o["shop_id"]))


def test_a_raising_lookup_and_join_function_are_named(tmp_path: Path) -> None:
    class Broken(sc.Lookup):
        async def fetch(self, keys: list[Any]) -> Any:
            raise ConnectionResetError("peer went away")

    with pytest.raises(
        LookupStoreError, match=r"a lookup in Broken raised ConnectionResetError: peer went away"
    ):
        _run(lambda s: s.lookup_join(Broken(), on=lambda o: o["shop_id"]))
    lk = sc.SQLiteLookup(make_sqlite(tmp_path / "d.db", [1]), "shops", key="shop_id")
    with pytest.raises(
        UserFunctionError, match=r"join function .*lambda.* of operator 'lookup_join' raised ZeroDivision"
    ):
        _run(lambda s: s.lookup_join(lk, on=lambda o: o["shop_id"], join=lambda v, r: 1 / 0))


def test_a_timeout_storm_fails_after_the_retries() -> None:
    class Hanging(sc.Lookup):
        calls = 0

        async def fetch(self, keys: list[Any]) -> Any:
            Hanging.calls += 1
            await asyncio.sleep(10)

    retry = sc.AsyncRetryStrategy.fixed_delay(3, 1)
    with pytest.raises(sc.errors.AsyncTimeoutError, match=r"timed out on all 3 attempt\(s\) of 30 ms"):
        _run(lambda s: s.lookup_join(Hanging(), on=lambda o: o["shop_id"], timeout_ms=30, retry=retry))
    assert Hanging.calls == 3


def test_configuration_errors() -> None:
    env = sc.StreamEnvironment()
    s = env.from_collection([1])
    lk = sc.SQLiteLookup("x.db", "shops", key="shop_id")
    with pytest.raises(ConfigurationError, match="takes a Lookup"):
        s.lookup_join({"a": 1}, on=lambda x: x)
    with pytest.raises(ConfigurationError, match="how"):
        s.lookup_join(lk, on=lambda x: x, how="outer")
    with pytest.raises(ConfigurationError, match="LookupCache"):
        s.lookup_join(lk, on=lambda x: x, cache={"max_rows": 1})
    with pytest.raises(ConfigurationError, match="on="):
        s.lookup_join(lk, on="shop_id")
    with pytest.raises(ConfigurationError, match="plain SQL name"):
        sc.SQLiteLookup("x.db", "shops; DROP TABLE x", key="shop_id")
    with pytest.raises(ConfigurationError, match="key="):
        sc.PostgresLookup("postgresql://localhost/db", "shops")
    with pytest.raises(ConfigurationError, match="exactly one %s"):
        sc.PostgresLookup("postgresql://localhost/db", key="k", query="SELECT 1")


def test_metrics_are_json_friendly(tmp_path: Path) -> None:
    lk = sc.SQLiteLookup(make_sqlite(tmp_path / "d.db", [1, 2]), "shops", key="shop_id")
    out, metrics = run_join(
        [order(i, i % 3) for i in range(30)], lk, backend="heap", state_dir=None, cache=sc.LookupCache()
    )
    m = metrics["lookup"]
    json.dumps(m)
    assert m["lookup"]["hits"] + m["lookup"]["misses"] == 30 and m["async"]["in_flight"] == 0
    assert len(out) == 20


def test_importing_streamcore_loads_neither_psycopg_nor_redis() -> None:
    import subprocess
    import sys

    heavy = "('psycopg', 'psycopg_pool', 'redis')"
    code = f"import sys, streamcore; print(any(m.split('.')[0] in {heavy} for m in sys.modules))"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.strip() == "False"


def test_lookups_name_their_tables_for_lineage(tmp_path: Path) -> None:
    from streamcore.lineage import datasets
    from streamcore.lookup import merge_row
    from streamcore.operators.lookup_join import LookupJoinOperator

    pg = sc.PostgresLookup("postgresql://app:pw@db.example:6543/shop", "shops", key="shop_id")
    assert pg.lineage_datasets() == [("postgres://db.example:6543", "shop.shops")]
    kv = sc.PostgresLookup("host=10.0.0.9 dbname=dw password=x", "dim.cities", key="city_id")
    assert kv.lineage_datasets() == [("postgres://10.0.0.9:5432", "dw.dim.cities")]
    assert sc.RedisLookup("redis://:pw@cache:6380/2", key_prefix="shop:").lineage_datasets() == [
        ("redis://cache:6380", "2/shop:*")
    ]
    lite = sc.SQLiteLookup(tmp_path / "d.db", "shops", key="shop_id")
    op = LookupJoinOperator("lj", "lj", lite, lambda o: o, merge_row)
    assert datasets(op) == [(f"sqlite://{(tmp_path / 'd.db').resolve()}", "shops")]
