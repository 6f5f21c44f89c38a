"""Lookup joins against a real PostgreSQL server (psycopg 3 async, pooled): oracle, failures, restore."""

from __future__ import annotations

import collections
import json
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import streamcore as sc
from streamcore.errors import AsyncTimeoutError, LookupStoreError
from streamcore.testing.servers import PostgresServer, free_port
from tests.lookup.support import Slowed, oracle, order, shop_row

pytestmark = pytest.mark.servers

SHOPS = 60  # shops 0..59 exist; orders also ask for 60..79 (missing)
WM = sc.WatermarkStrategy.for_bounded_out_of_orderness(50)


@pytest.fixture(scope="module")
def dsn(postgres_server: PostgresServer) -> Iterator[str]:
    import psycopg

    with psycopg.connect(postgres_server.dsn, autocommit=True) as conn:
        conn.execute("DROP TABLE IF EXISTS shops, ctl")
        conn.execute("CREATE TABLE shops (shop_id integer PRIMARY KEY, city text NOT NULL, tier integer)")
        with conn.cursor() as cur:
            cur.executemany(
                "INSERT INTO shops VALUES (%(shop_id)s, %(city)s, %(tier)s)",
                [shop_row(i) for i in range(SHOPS)],
            )
        conn.execute("CREATE TABLE ctl (slow boolean NOT NULL)")
        conn.execute("INSERT INTO ctl VALUES (false)")
    yield postgres_server.dsn


def _set_slow(dsn: str, slow: bool) -> None:
    import psycopg

    with psycopg.connect(dsn, autocommit=True) as conn:
        conn.execute("UPDATE ctl SET slow = %s", [slow])


@settings(max_examples=12)
@given(st.data())
def test_enriched_output_equals_a_dict_join(dsn: str, data: st.DataObject) -> None:
    keys = data.draw(st.lists(st.integers(0, SHOPS + 19), max_size=300), label="order keys")
    backend = data.draw(st.sampled_from(["heap", "rocksdb"]), label="backend")
    how = data.draw(st.sampled_from(["inner", "left"]), label="how")
    keyed = data.draw(st.booleans(), label="key_by_lookup_key")
    cache = data.draw(st.sampled_from([None, sc.LookupCache(max_rows=10)]), label="cache")
    orders = [order(i, k) for i, k in enumerate(keys)]
    lookup = Slowed(sc.PostgresLookup(dsn, "shops", key="shop_id", pool_size=3), seed=len(keys))
    state = tempfile.mkdtemp(prefix="pg-oracle-") if backend == "rocksdb" else None
    env = sc.StreamEnvironment(state_backend=backend, state_dir=state, batch_size=32)
    out = (
        env.from_collection(orders, timestamp=lambda o: o["ts"], watermarks=WM)
        .lookup_join(lookup, on=lambda o: o["shop_id"], how=how, cache=cache, key_by_lookup_key=keyed)
        .execute_and_collect()
    )
    expected = oracle(orders, {i: shop_row(i) for i in range(SHOPS)}, how)
    if keyed:
        assert sorted(out, key=lambda r: r["order_id"]) == expected
    else:
        assert out == expected
    assert all(len(f) == len(set(f)) for f in lookup.fetches)


def test_a_custom_query_with_a_server_side_delay(dsn: str) -> None:
    q = "WITH d AS MATERIALIZED (SELECT pg_sleep(0.001)) SELECT s.* FROM shops s, d WHERE s.shop_id = ANY(%s)"
    env = sc.StreamEnvironment(batch_size=50)
    orders = [order(i, i % 90) for i in range(400)]
    out = (
        env.from_collection(orders)
        .lookup_join(sc.PostgresLookup(dsn, key="shop_id", query=q), on=lambda o: o["shop_id"], how="left")
        .execute_and_collect()
    )
    assert sorted(out, key=lambda r: r["order_id"]) == oracle(
        orders, {i: shop_row(i) for i in range(SHOPS)}, "left"
    )


def _job(lookup: sc.Lookup, orders: list[dict[str, Any]]) -> list[Any]:
    env = sc.StreamEnvironment()
    return env.from_collection(orders).lookup_join(lookup, on=lambda o: o["shop_id"]).execute_and_collect()


def test_a_server_that_is_down_at_start_is_named_without_its_password() -> None:
    port = free_port()
    lookup = sc.PostgresLookup(f"postgresql://app:s3cret@127.0.0.1:{port}/shop", "shops", key="shop_id")
    pattern = rf"operator 'lookup_join': open failed: PostgresLookup\('postgresql://app:\*\*\*@127.0.0.1:{port}/shop'\)"
    with pytest.raises(LookupStoreError, match=pattern) as info:
        _job(lookup, [order(0, 1)])
    assert "s3cret" not in str(info.value) and "start the server" in str(info.value)


def test_a_wrong_table_fails_at_start(dsn: str) -> None:
    with pytest.raises(LookupStoreError, match=r'relation "shopz" does not exist'):
        _job(sc.PostgresLookup(dsn, "shopz", key="shop_id"), [order(0, 1)])


def test_a_query_error_names_the_store(dsn: str) -> None:
    q = "SELECT shop_id, no_such_column FROM shops WHERE shop_id = ANY(%s)"
    with pytest.raises(LookupStoreError, match=r"query failed: column \"no_such_column\" does not exist"):
        _job(sc.PostgresLookup(dsn, key="shop_id", query=q), [order(0, 1)])


def test_a_result_without_the_key_column_is_the_wrong_shape(dsn: str) -> None:
    q = "SELECT city FROM shops WHERE shop_id = ANY(%s)"
    with pytest.raises(
        LookupStoreError, match=r"the query returns no column 'shop_id' \(columns: \['city'\]\)"
    ):
        _job(sc.PostgresLookup(dsn, key="shop_id", query=q), [order(0, 1)])


def test_a_timeout_storm_fails_the_job_after_retries_and_a_restore_loses_and_duplicates_nothing(
    dsn: str, tmp_path: Path
) -> None:
    """Lookups turn slow mid-job: every attempt times out, the job fails; restored, it ends exactly once."""
    q = (
        "WITH d AS MATERIALIZED (SELECT pg_sleep(CASE WHEN (SELECT slow FROM ctl) THEN 3 ELSE 0 END)) "
        "SELECT s.* FROM shops s, d WHERE s.shop_id = ANY(%s)"
    )
    n = 600
    out_dir = tmp_path / "out"
    flipped = []

    def generate(split: int, offset: int) -> dict[str, Any]:
        if offset == 300 and not flipped:
            flipped.append(True)
            _set_slow(dsn, True)
        return order(offset, offset % (SHOPS + 10))

    def build(env: sc.StreamEnvironment) -> None:
        env.enable_checkpointing(tmp_path / "chk", every_records=60, retain=2)
        (
            env.from_generator(generate, count=n, name="orders")
            .uid("orders")
            .lookup_join(
                sc.PostgresLookup(dsn, key="shop_id", query=q, pool_size=2),
                on=lambda o: o["shop_id"],
                how="left",
                timeout_ms=1_000,
                capacity=40,
                retry=sc.AsyncRetryStrategy.fixed_delay(2, 10),
            )
            .uid("enrich")
            .sink_to(sc.FileSink(out_dir, encoder=lambda r: json.dumps(r, sort_keys=True)))
            .uid("files")
        )

    try:
        env = sc.StreamEnvironment(batch_size=20)
        build(env)
        with pytest.raises(
            AsyncTimeoutError,
            match=r"operator 'enrich': a lookup .* timed out on all 2 attempt\(s\) of 1000 ms",
        ):
            env.execute("storm", restore_from="latest")
    finally:
        _set_slow(dsn, False)
    env = sc.StreamEnvironment(batch_size=20)
    build(env)
    result = env.execute("storm", restore_from="latest")
    assert result.checkpoints
    lines = [json.loads(line) for p in sorted(out_dir.glob("part-*")) for line in p.read_text().splitlines()]
    counts = collections.Counter(r["order_id"] for r in lines)
    assert set(counts) == set(range(n)) and max(counts.values()) == 1
    dims = {i: shop_row(i) for i in range(SHOPS)}
    assert sorted(lines, key=lambda r: r["order_id"]) == oracle(
        [order(i, i % (SHOPS + 10)) for i in range(n)], dims, "left"
    )
