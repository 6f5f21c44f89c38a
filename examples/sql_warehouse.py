"""A real-time warehouse in streaming SQL: ODS -> DWD -> DWS -> APP, printed as it runs.

The layers a Flink SQL warehouse builds, as SQL statements over streamcore:

* **ODS**: the raw order log as it lands (JSON lines, out of order by up to 20 s, with
  test orders and broken amounts), a ``filesystem`` table with event time ``ts`` and a
  processing-time column for lookups.
* **DIM**: the shop dimension in SQLite, a ``jdbc`` table read by lookup joins through a
  cache (``lookup.cache.max-rows``, ``lookup.cache.ttl``).
* **DWD**: a view of cleaned orders, each joined to its shop (``FOR SYSTEM_TIME AS OF``).
* **DWS**: 10-minute windows per city: orders, GMV, exact distinct users
  (``COUNT(DISTINCT)``) and approximate ones (``APPROX_COUNT_DISTINCT``, HyperLogLog).
* **APP**: the top 3 shops by GMV per city and window (window TopN by ``ROW_NUMBER``).

Deterministic: the order log is generated from a fixed seed.

    python examples/sql_warehouse.py                    # 20,000 orders
    python examples/sql_warehouse.py --orders 2000 --state-backend rocksdb
"""

from __future__ import annotations

import argparse
import json
import random
import sqlite3
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import streamcore as sc
from streamcore.sql.functions import date_format

START = 1_700_000_000_000  # event time of the first order (ms since the epoch)
CITIES = ["Beijing", "Shanghai", "Chengdu", "Shenzhen"]
SHOPS = 24


def write_ods(path: Path, n: int, seed: int = 7) -> None:
    """``n`` raw orders as JSON lines, in arrival order, with the dirt a real log has."""
    rng = random.Random(seed)
    with path.open("w") as f:
        for i in range(n):
            ts = START + i * 120 - rng.randint(0, 20_000)
            order = {
                "order_id": i,
                "user_id": "test" if rng.random() < 0.02 else f"u{rng.randint(1, n // 4)}",
                "shop_id": rng.randint(1, SHOPS),
                "amount": -1 if rng.random() < 0.01 else rng.randint(5, 300),
                "ts": date_format(ts, "yyyy-MM-dd HH:mm:ss.SSS"),
            }
            f.write(json.dumps(order) + "\n")


def write_dim(path: Path) -> None:
    """The shop dimension: shop -> name, city."""
    with sqlite3.connect(path) as con:
        con.execute("CREATE TABLE shops (shop_id INTEGER PRIMARY KEY, shop_name TEXT, city TEXT)")
        con.executemany(
            "INSERT INTO shops VALUES (?, ?, ?)",
            [(s, f"shop-{s:02d}", CITIES[s % len(CITIES)]) for s in range(1, SHOPS + 1)],
        )


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--orders", type=int, default=20_000)
    p.add_argument("--state-backend", choices=["heap", "rocksdb"], default="heap")
    args = p.parse_args()
    with tempfile.TemporaryDirectory(prefix="sql-warehouse-") as tmp:
        run(Path(tmp), args.orders, args.state_backend)


def run(work: Path, orders: int, backend: str) -> None:
    """Write the ODS log and the dimension under ``work``, then run the DWS and APP jobs."""
    (work / "ods").mkdir()
    write_ods(work / "ods" / "orders.json", orders)
    write_dim(work / "dim.db")
    env = sc.StreamEnvironment(
        state_backend=backend, state_dir=work / "state" if backend == "rocksdb" else None
    )
    t_env = sc.StreamTableEnvironment.create(env)
    started = time.perf_counter()

    # ODS and DIM.
    t_env.execute_sql(f"""
        CREATE TABLE ods_orders (
            order_id BIGINT, user_id STRING, shop_id BIGINT, amount INT, ts TIMESTAMP(3),
            pt AS PROCTIME(),
            WATERMARK FOR ts AS ts - INTERVAL '20' SECOND
        ) WITH ('connector' = 'filesystem', 'path' = '{work / "ods"}', 'format' = 'json');

        CREATE TABLE dim_shop (shop_id BIGINT, shop_name STRING, city STRING,
                               PRIMARY KEY (shop_id) NOT ENFORCED)
        WITH ('connector' = 'jdbc', 'url' = 'jdbc:sqlite:{work / "dim.db"}', 'table-name' = 'shops',
              'lookup.cache.max-rows' = '1000', 'lookup.cache.ttl' = '10 min')""")

    # DWD: cleaned and dimension-joined orders.
    t_env.execute_sql("""
        CREATE TEMPORARY VIEW dwd_orders AS
        SELECT o.order_id, o.user_id, d.shop_name, d.city, o.amount, o.ts
        FROM ods_orders AS o
        JOIN dim_shop FOR SYSTEM_TIME AS OF o.pt AS d ON o.shop_id = d.shop_id
        WHERE o.amount > 0 AND o.user_id <> 'test'""")

    # DWS: 10-minute windows per city.
    t_env.execute_sql("""
        CREATE TABLE dws_city (city STRING, window_start STRING, orders BIGINT, gmv BIGINT,
                               users BIGINT, users_hll BIGINT)
        WITH ('connector' = 'print', 'print-identifier' = 'dws')""")
    t_env.execute_sql("""
        INSERT INTO dws_city
        SELECT city, DATE_FORMAT(window_start, 'HH:mm'), COUNT(*), SUM(amount),
               COUNT(DISTINCT user_id), APPROX_COUNT_DISTINCT(user_id)
        FROM TABLE(TUMBLE(TABLE dwd_orders, DESCRIPTOR(ts), INTERVAL '10' MINUTE))
        GROUP BY city, window_start, window_end""").wait()

    # APP: the top 3 shops by GMV per city and window.
    t_env.execute_sql("""
        CREATE TABLE app_top_shops (city STRING, window_start STRING, shop_name STRING, gmv BIGINT, rn BIGINT)
        WITH ('connector' = 'print', 'print-identifier' = 'app')""")
    t_env.execute_sql("""
        INSERT INTO app_top_shops
        SELECT city, DATE_FORMAT(window_start, 'HH:mm'), shop_name, gmv, rn FROM (
            SELECT *, ROW_NUMBER() OVER (PARTITION BY window_start, window_end, city ORDER BY gmv DESC) AS rn
            FROM (SELECT city, shop_name, window_start, window_end, SUM(amount) AS gmv
                  FROM TABLE(TUMBLE(TABLE dwd_orders, DESCRIPTOR(ts), INTERVAL '10' MINUTE))
                  GROUP BY city, shop_name, window_start, window_end))
        WHERE rn <= 3""").wait()

    elapsed = time.perf_counter() - started
    print(
        f"... {orders} orders through ODS -> DWD -> DWS -> APP in {elapsed:.1f} s "
        f"({orders * 2 / elapsed:,.0f} orders/s over both jobs)"
    )


if __name__ == "__main__":
    main()
