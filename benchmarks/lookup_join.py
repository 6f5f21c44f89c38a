"""Lookup join throughput against a real PostgreSQL, beside a synchronous per-record lookup floor.

200,000 orders over 10,000 shops with Zipf-skewed shop ids (s = 1.1) are enriched
with their shop's row from PostgreSQL (started for the run on a free loopback port).
Every query sleeps 1 ms on the server (``pg_sleep(0.001)``) to stand for a network round
trip. Three measurements:

* ``sync``: the floor, a plain loop that sends one query per order and waits for it
  (psycopg, one connection, prepared statement), over the first ``floor_records`` orders
  (the whole set would take minutes at ~1 ms per order);
* ``async``: ``lookup_join`` without a cache: the keys of each batch, deduplicated, go in
  one ``= ANY(%s)`` query, several in flight over a pool of 4 connections;
* ``async_cached``: the same with ``LookupCache(max_rows=100_000, ttl_ms=60_000)``.

``p99_latency_ms`` is the 99th percentile of the time from an order entering the lookup
join's input to its enriched row reaching the sink, in the cached run
(``p99_latency_ms_uncached`` for the other). Targets from issue 15: ``speedup_async``
>= 10 and ``speedup_cached`` >= 50. Figures are printed, never asserted.

    python benchmarks/lookup_join.py [--quick] [--json]
"""

from __future__ import annotations

import time

import numpy as np
from common import CountSink, parser, peak_rss_mb, percentile, report

import streamcore as sc
from streamcore.testing.servers import PostgresServer

SHOPS = 10_000
DELAY_S = 0.001
QUERY = (
    f"WITH d AS MATERIALIZED (SELECT pg_sleep({DELAY_S})) "
    "SELECT s.shop_id, s.city, s.tier, s.name FROM shops s, d WHERE s.shop_id = ANY(%s)"
)
ONE = (
    f"WITH d AS MATERIALIZED (SELECT pg_sleep({DELAY_S})) "
    "SELECT s.shop_id, s.city, s.tier, s.name FROM shops s, d WHERE s.shop_id = %s"
)


def make_orders(n: int, seed: int = 7) -> list[dict]:
    """``n`` orders; shop ids follow a Zipf law (s = 1.1) over ``SHOPS`` shops, ranks shuffled."""
    rng = np.random.default_rng(seed)
    weights = 1.0 / np.arange(1, SHOPS + 1) ** 1.1
    ranks = rng.choice(SHOPS, size=n, p=weights / weights.sum())
    shop_of_rank = rng.permutation(SHOPS)
    shops = shop_of_rank[ranks].tolist()
    return [{"order_id": i, "shop_id": s, "amount": (i * 37) % 1000} for i, s in enumerate(shops)]


def load_shops(dsn: str) -> None:
    import psycopg

    with psycopg.connect(dsn, autocommit=True) as conn:
        conn.execute("CREATE TABLE shops (shop_id integer PRIMARY KEY, city text, tier integer, name text)")
        with conn.cursor().copy("COPY shops FROM STDIN") as copy:
            for i in range(SHOPS):
                copy.write_row((i, f"city-{i % 97}", i % 5, f"shop #{i}"))
        conn.execute("ANALYZE shops")


def sync_floor(dsn: str, orders: list[dict]) -> tuple[float, int]:
    """One query per order, waiting for each: the synchronous per-record lookup loop."""
    import psycopg

    with psycopg.connect(dsn, autocommit=True) as conn:
        conn.execute(ONE, [0], prepare=True).fetchall()
        out = 0
        start = time.perf_counter()
        for o in orders:
            row = conn.execute(ONE, [o["shop_id"]], prepare=True).fetchone()
            if row is not None:
                enriched = {**o, "shop_id": row[0], "city": row[1], "tier": row[2], "name": row[3]}
                out += enriched is not None
        return time.perf_counter() - start, out


class LatencySink(CountSink):
    """Counts, and records each row's time since it entered the lookup join (``_t0``)."""

    def __init__(self) -> None:
        super().__init__()
        self.latencies: list[float] = []

    def write_batch(self, values: list, timestamps: list | None) -> None:
        now = time.perf_counter()
        self.count += len(values)
        self.latencies.extend(now - v["_t0"] for v in values)


def stamp(o: dict) -> dict:
    return {**o, "_t0": time.perf_counter()}


def engine(dsn: str, orders: list[dict], cache: sc.LookupCache | None) -> tuple[float, LatencySink, dict]:
    env = sc.StreamEnvironment()
    sink = LatencySink()
    lookup = sc.PostgresLookup(dsn, key="shop_id", query=QUERY, pool_size=4)
    (
        env.from_collection(orders)
        .map(stamp)
        .lookup_join(lookup, on=lambda o: o["shop_id"], cache=cache)
        .uid("lookup")
        .sink_to(sink)
    )
    start = time.perf_counter()
    result = env.execute("lookup-join-bench")
    return time.perf_counter() - start, sink, result.metrics["lookup"]


def main() -> None:
    args = parser(__doc__.splitlines()[0]).parse_args()
    n = 20_000 if args.quick else 200_000
    n_floor = 300 if args.quick else 5_000
    orders = make_orders(n)
    with PostgresServer() as server:
        dsn = server.dsn
        load_shops(dsn)
        t_sync, n_sync = sync_floor(dsn, orders[:n_floor])
        assert n_sync == n_floor, (n_sync, n_floor)
        t_async, sink_async, m_async = engine(dsn, orders, None)
        cache = sc.LookupCache(max_rows=100_000, ttl_ms=60_000, cache_missing=True)
        t_cached, sink_cached, m_cached = engine(dsn, orders, cache)
    assert sink_async.count == n and sink_cached.count == n, (sink_async.count, sink_cached.count)
    sync_rps = n_floor / t_sync
    async_rps = n / t_async
    cached_rps = n / t_cached
    lookup_a, lookup_c = m_async["lookup"], m_cached["lookup"]
    figures = {
        "orders": n,
        "shops": SHOPS,
        "server_delay_ms": DELAY_S * 1000,
        "floor_records": n_floor,
        "sync_rps": sync_rps,
        "async_rps": async_rps,
        "async_cached_rps": cached_rps,
        "speedup_async": async_rps / sync_rps,
        "speedup_cached": cached_rps / sync_rps,
        "cache_hit_ratio": lookup_c["hit_ratio"],
        "p99_latency_ms": percentile(sorted(sink_cached.latencies), 99) * 1000,
        "p50_latency_ms": percentile(sorted(sink_cached.latencies), 50) * 1000,
        "p99_latency_ms_uncached": percentile(sorted(sink_async.latencies), 99) * 1000,
        "queries_async": lookup_a["loads"],
        "keys_per_query_async": lookup_a["keys_loaded"] / max(1, lookup_a["loads"]),
        "queries_cached": lookup_c["loads"],
        "keys_per_query_cached": lookup_c["keys_loaded"] / max(1, lookup_c["loads"]),
        "coalesced_misses_cached": lookup_c["coalesced"],
        "peak_rss_mb": peak_rss_mb(),
    }
    report(figures, args.json)


if __name__ == "__main__":
    main()
