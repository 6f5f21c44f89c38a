"""Order enrichment with dimension lookups, then GMV per city per minute (a DWS table).

The real-time warehouse's DWD layer enriches each order with its dimensions where they
live, in a database: here an order gets its shop (name, city id) and then its city
(name, province) by two lookup joins, each batching the keys of a batch into one query
and caching hot keys; the stream is keyed by each lookup key first, so every key's
orders stay in order and a cache hit never waits for another key's query. The DWS layer
then sums GMV per city in one-minute event-time windows.

The dimensions live in SQLite by default (a file made for the run; no server needed);
``--postgres DSN`` writes them to PostgreSQL tables ``demo_shops``/``demo_cities``
(replacing them) and looks them up there through a pooled psycopg connection.

    python examples/order_enrichment.py
    python examples/order_enrichment.py --orders 50000 --postgres postgresql://user@127.0.0.1:5432/db
"""

from __future__ import annotations

import argparse
import random
import sqlite3
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import streamcore as sc
from streamcore.aggregates import Count, Sum, combine
from streamcore.time import minutes, seconds
from streamcore.windowing import TumblingEventTimeWindows

START = 1_699_999_980_000  # a minute boundary (ms since the epoch): the first window starts here
CITIES = [
    (1, "Beijing", "Beijing"),
    (2, "Shanghai", "Shanghai"),
    (3, "Chengdu", "Sichuan"),
    (4, "Shenzhen", "Guangdong"),
    (5, "Hangzhou", "Zhejiang"),
]
N_SHOPS = 500


def shops() -> list[tuple[int, str, int]]:
    """``(shop_id, shop_name, city_id)``; shop ids 500+ are unknown to the dimension table."""
    return [(s, f"shop-{s:03d}", CITIES[s % len(CITIES)][0]) for s in range(N_SHOPS)]


def orders(n: int, seed: int = 3) -> list[dict[str, Any]]:
    """``n`` orders, 50 ms apart with some disorder; hot shops get most orders."""
    rng = random.Random(seed)
    out = []
    for i in range(n):
        shop = int(N_SHOPS * 1.01 * rng.random() ** 2.5)  # skewed; a few ids past the table
        out.append(
            {
                "order_id": i,
                "shop_id": shop,
                "amount": round(rng.uniform(5, 120), 2),
                "ts": START + 2_000 + i * 50 - rng.randint(0, 2_000),
            }
        )
    return out


def sqlite_dims(directory: Path) -> tuple[sc.Lookup, sc.Lookup]:
    """The two dimension tables in a fresh SQLite file; a lookup on each."""
    path = directory / "dims.db"
    with sqlite3.connect(path) as db:
        db.execute("CREATE TABLE shops (shop_id INTEGER PRIMARY KEY, shop_name TEXT, city_id INTEGER)")
        db.execute("CREATE TABLE cities (city_id INTEGER PRIMARY KEY, city TEXT, province TEXT)")
        db.executemany("INSERT INTO shops VALUES (?, ?, ?)", shops())
        db.executemany("INSERT INTO cities VALUES (?, ?, ?)", CITIES)
    db.close()
    return sc.SQLiteLookup(path, "shops", key="shop_id"), sc.SQLiteLookup(path, "cities", key="city_id")


def postgres_dims(dsn: str) -> tuple[sc.Lookup, sc.Lookup]:
    """The two dimension tables in PostgreSQL (replaced); a pooled lookup on each."""
    import psycopg

    with psycopg.connect(dsn, autocommit=True) as conn:
        conn.execute("DROP TABLE IF EXISTS demo_shops, demo_cities")
        conn.execute("CREATE TABLE demo_shops (shop_id integer PRIMARY KEY, shop_name text, city_id integer)")
        conn.execute("CREATE TABLE demo_cities (city_id integer PRIMARY KEY, city text, province text)")
        with conn.cursor() as cur:
            cur.executemany("INSERT INTO demo_shops VALUES (%s, %s, %s)", shops())
            cur.executemany("INSERT INTO demo_cities VALUES (%s, %s, %s)", CITIES)
    return (
        sc.PostgresLookup(dsn, "demo_shops", key="shop_id"),
        sc.PostgresLookup(dsn, "demo_cities", key="city_id"),
    )


def gmv_row(city: str, window: Any, result: dict[str, Any]) -> dict[str, Any]:
    """One DWS row: GMV and orders of a city in a one-minute window."""
    return {
        "city": city,
        "minute": (window.start - START) // minutes(1),
        "orders": result["orders"],
        "gmv": round(result["gmv"], 2),
    }


def run(
    n: int, shop_lookup: sc.Lookup, city_lookup: sc.Lookup
) -> tuple[list[dict[str, Any]], dict[str, Any]]:
    """Build and run the job; returns the DWS rows and the job's metrics."""
    env = sc.StreamEnvironment()
    wm = sc.WatermarkStrategy.for_bounded_out_of_orderness(seconds(3))
    cache = sc.LookupCache(max_rows=10_000, ttl_ms=60_000)
    dwd = (
        env.from_collection(orders(n), timestamp=lambda o: o["ts"], watermarks=wm, name="orders")
        # DWD: shop, then city; orders of unknown shops are dropped (inner join).
        .lookup_join(shop_lookup, on=lambda o: o["shop_id"], cache=cache)
        .uid("dim-shop")
        .lookup_join(city_lookup, on=lambda o: o["city_id"], cache=cache, how="left")
        .uid("dim-city")
    )
    rows = (
        dwd.key_by(lambda o: o["city"])
        .window(TumblingEventTimeWindows.of(minutes(1)))
        .aggregate(combine(orders=Count(), gmv=Sum("amount")), gmv_row)
        .uid("dws-gmv")
    )
    sink = sc.CollectSink()
    rows.sink_to(sink)
    result = env.execute("order-enrichment")
    return sink.results, result.metrics


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--orders", type=int, default=20_000)
    p.add_argument("--postgres", metavar="DSN", help="look dimensions up in PostgreSQL instead of SQLite")
    args = p.parse_args()
    with tempfile.TemporaryDirectory(prefix="order-enrichment-") as tmp:
        if args.postgres:
            shop_lookup, city_lookup = postgres_dims(args.postgres)
        else:
            shop_lookup, city_lookup = sqlite_dims(Path(tmp))
        started = time.perf_counter()
        rows, metrics = run(args.orders, shop_lookup, city_lookup)
        seconds_taken = time.perf_counter() - started
    print(f"{'minute':>6}  {'city':<10} {'orders':>6}  {'gmv':>10}")
    for r in sorted(rows, key=lambda r: (r["minute"], r["city"]))[:15]:
        print(f"{r['minute']:>6}  {r['city']:<10} {r['orders']:>6}  {r['gmv']:>10.2f}")
    total = sum(r["orders"] for r in rows)
    print(f"... {len(rows)} rows; {total} of {args.orders} orders had a known shop")
    for uid in ("dim-shop", "dim-city"):
        m = metrics[uid]["lookup"]
        print(
            f"{uid}: {m['store']}, cache hit ratio {m['hit_ratio']:.3f}, {m['loads']} queries "
            f"for {m['keys_loaded']} keys, {m['load_time_ms']:.0f} ms loading"
        )
    print(f"{args.orders / seconds_taken:,.0f} orders/s")


if __name__ == "__main__":
    main()
