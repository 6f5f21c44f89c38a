"""Meituan's layered real-time warehouse: ODS -> DWD -> DWS -> APP in one dataflow.

Meituan's real-time warehouse keeps Hive's layers, made streaming:

* **ODS** (operational data store): the raw order log as the order service writes it,
  out of order, with test orders, broken records and duplicates from retries.
* **DWD** (detail): cleaned, deduplicated per order id, and enriched with a dimension
  table (shop -> city, category) by a lookup; late-arriving orders are routed aside.
* **DWS** (summaries): one-minute windows per shop with the distinct counts their
  write-up found slow in Flink SQL, here computed in one pass by one combined aggregate:
  exact distinct users (a set), HyperLogLog distinct devices, Bloom-filter first-seen
  orders, and the top 3 orders by amount (TopN, as Meituan advises over ranking).
* **APP**: per-shop metrics served from a table the DWS stream updates; late orders
  within the allowed lateness update the window they belong to (the row is replaced).

Deterministic: the order log is generated from a fixed seed.

    python examples/meituan_warehouse.py                        # heap state
    python examples/meituan_warehouse.py --state-backend rocksdb
"""

from __future__ import annotations

import argparse
import random
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import streamcore as sc
from streamcore.aggregates import BloomDistinct, Count, DistinctCount, HyperLogLog, Sum, TopN, combine
from streamcore.time import minutes, seconds
from streamcore.windowing import TumblingEventTimeWindows

START = 1_700_000_000_000  # event time of the first order (ms since the epoch)
DISORDER = seconds(20)  # ordinary out-of-orderness of the order log
LATENESS = minutes(2)  # how long a window accepts late orders (each one updates its row)

# The dimension table (DIM): in production a compacted topic or a KV store.
CITIES = ["Beijing", "Shanghai", "Chengdu", "Shenzhen"]
CATEGORIES = ["noodles", "hotpot", "dumplings", "tea", "bbq"]
SHOPS = {
    shop: {"shop_name": f"shop-{shop:02d}", "city": CITIES[shop % 4], "category": CATEGORIES[shop % 5]}
    for shop in range(12)
}


# -- ODS: the raw order log -------------------------------------------------------------------
def order_log(n: int, seed: int = 7) -> list[dict[str, Any]]:
    """``n`` raw orders in arrival order, with the dirt a real log has."""
    rng = random.Random(seed)
    log: list[dict[str, Any]] = []
    for i in range(n):
        ts = START + i * 150 - rng.randint(0, DISORDER)
        if rng.random() < 0.01:
            ts -= rng.randint(minutes(1), minutes(4))  # a delayed upload: late, maybe too late
        shop = min(int(12 * rng.random() ** 1.7), 11)  # a few hot shops
        user = rng.randrange(3_000)
        order = {
            "order_id": f"o{i:07d}",
            "user_id": f"u{user:05d}",
            "device_id": f"d{user * 2 + rng.randrange(2):05d}",
            "shop_id": shop,
            "amount_cents": rng.randint(800, 12_000),
            "status": "paid",
            "ts": ts,
        }
        roll = rng.random()
        if roll < 0.01:
            order["status"] = "test"  # test traffic
        elif roll < 0.015:
            order["amount_cents"] = -order["amount_cents"]  # a broken record
        elif roll < 0.02:
            order["shop_id"] = 999  # a shop missing from the dimension table
        log.append(order)
        if rng.random() < 0.02:
            log.append(dict(order))  # a retry: the same order again
    return log


# -- DWD: clean, deduplicate, enrich ------------------------------------------------------------
def is_valid(order: dict[str, Any]) -> bool:
    """Paid orders with a positive amount of a known shop."""
    return order["status"] == "paid" and order["amount_cents"] > 0 and order["shop_id"] in SHOPS


class FirstSeen(sc.KeyedProcessFunction):
    """Drops repeated order ids (retries): keyed by order id, a flag per order."""

    def open(self, ctx: Any) -> None:
        self.seen = ctx.get_state(sc.ValueStateDescriptor("seen", ttl=minutes(30)))

    def process_element(self, order: dict[str, Any], ctx: Any) -> Any:
        if self.seen.value() is None:
            self.seen.update(True)
            yield order


def enrich(order: dict[str, Any]) -> dict[str, Any]:
    """Join the shop's dimensions (a lookup in the dimension table)."""
    return {**order, **SHOPS[order["shop_id"]], "amount": order["amount_cents"] / 100}


# -- DWS: windowed summaries ------------------------------------------------------------------------
SUMMARY = combine(
    orders=Count(),
    gmv=Sum("amount"),
    users=DistinctCount("user_id"),  # exact
    devices=HyperLogLog("device_id", precision=14),  # estimated, fixed size
    first_orders=BloomDistinct("order_id", capacity=50_000, error_rate=0.001),
    top=TopN(3, by="amount"),
)


def summary_row(shop: int, window: Any, s: dict[str, Any]) -> dict[str, Any]:
    """One DWS row: the shop, its window and the summary."""
    return {
        "shop_id": shop,
        "window_start": window.start,
        "orders": s["orders"],
        "gmv": round(s["gmv"], 2),
        "users": s["users"],
        "devices_hll": s["devices"],
        "first_orders": s["first_orders"],
        "top_orders": [(o["order_id"], o["amount"]) for o in s["top"]],
    }


# -- APP: a serving table of per-shop metrics -------------------------------------------------------
class ServingTable(sc.Sink):
    """The APP layer's table: the latest row per (shop, window); an update replaces the row."""

    def __init__(self) -> None:
        self.rows: dict[tuple[int, int], dict[str, Any]] = {}
        self.updates = 0

    def write_batch(self, values: list[dict[str, Any]], timestamps: list[int] | None) -> None:
        """Upsert the rows."""
        for row in values:
            key = (row["shop_id"], row["window_start"])
            if key in self.rows:
                self.updates += 1
            self.rows[key] = row

    def per_shop(self) -> dict[int, dict[str, Any]]:
        """Per shop: windows, orders, GMV, peak distinct users per window, best order."""
        shops: dict[int, dict[str, Any]] = {}
        for (shop, _), row in sorted(self.rows.items()):
            m = shops.setdefault(
                shop, {"windows": 0, "orders": 0, "gmv": 0.0, "peak_users": 0, "best": ("", 0.0)}
            )
            m["windows"] += 1
            m["orders"] += row["orders"]
            m["gmv"] += row["gmv"]
            m["peak_users"] = max(m["peak_users"], row["users"])
            if row["top_orders"] and row["top_orders"][0][1] > m["best"][1]:
                m["best"] = row["top_orders"][0]
        return shops


def build(env: sc.StreamEnvironment, log: list[dict[str, Any]]) -> tuple[ServingTable, sc.CollectSink]:
    """The whole warehouse as one dataflow; returns the APP table and the late-order sink."""
    ods = env.from_collection(log, timestamp=lambda o: o["ts"], name="ods-orders")
    # Watermarks come after the DWD layer: a keyed operator drops what is behind its
    # watermark, and deduplication must see late orders too, so that the windows can.
    watermarks = sc.WatermarkStrategy.for_bounded_out_of_orderness(DISORDER)
    dwd = (
        ods.filter(is_valid)
        .name("dwd-clean")
        .key_by(lambda o: o["order_id"])
        .process(FirstSeen())
        .name("dwd-dedup")
        .map(enrich)
        .name("dwd-enrich")
        .assign_timestamps_and_watermarks(watermarks)
    )
    too_late = sc.OutputTag("too-late-orders")
    dws = (
        dwd.key_by(lambda o: o["shop_id"])
        .window(TumblingEventTimeWindows.of(minutes(1)))
        .allowed_lateness(LATENESS)
        .side_output_late_data(too_late)
        .aggregate(SUMMARY, summary_row)
        .name("dws-shop-minute")
        .uid("dws-shop-minute")
    )
    table = ServingTable()
    late = sc.CollectSink()
    dws.sink_to(table).name("app-serving-table")
    dws.get_side_output(too_late).sink_to(late).name("too-late-orders")
    return table, late


def main(argv: list[str] | None = None) -> None:
    """Generate the order log, run the warehouse, print the APP layer's per-shop metrics."""
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--orders", type=int, default=60_000)
    p.add_argument("--state-backend", choices=["heap", "rocksdb"], default="heap")
    args = p.parse_args(argv)
    log = order_log(args.orders)
    with tempfile.TemporaryDirectory(prefix="meituan-") as tmp:
        env = sc.StreamEnvironment(state_backend=args.state_backend, state_dir=tmp)
        table, late = build(env, log)
        started = time.perf_counter()
        result = env.execute("meituan-warehouse")
        elapsed = time.perf_counter() - started
    m = result.metrics
    valid = [o for o in log if is_valid(o)]
    print(f"ODS  {len(log):,} raw orders ({result.records_read:,} read in {elapsed:.1f} s)")
    print(
        f"DWD  {m['dwd-clean']['records_out']:,} valid, {m['dwd-dedup']['records_out']:,} after removing "
        f"retries, enriched with {len(SHOPS)} shops' dimensions"
    )
    print(
        f"DWS  {len(table.rows):,} shop-minute rows ({table.updates} updated by late orders), "
        f"{len(late.results)} orders too late even for the {LATENESS // 60_000}-minute lateness"
    )
    print("APP  per-shop metrics:")
    header = ("shop", "city", "category", "min", "orders", "GMV", "peak users", "best order")
    print("     {:8} {:9} {:10} {:>4} {:>7} {:>11} {:>10}  {}".format(*header))
    for shop, s in table.per_shop().items():
        dim = SHOPS[shop]
        best = f"{s['best'][0]} ({s['best'][1]:.2f})"
        row = (
            dim["shop_name"],
            dim["city"],
            dim["category"],
            s["windows"],
            s["orders"],
            s["gmv"],
            s["peak_users"],
        )
        print("     {:8} {:9} {:10} {:>4} {:>7,} {:>11,.2f} {:>10}  ".format(*row) + best)
    # The distinct counts next to each other, for the busiest row: exact, HyperLogLog, Bloom.
    busiest = max(table.rows.values(), key=lambda r: r["orders"])
    print(
        f"     busiest shop-minute: shop {busiest['shop_id']}, {busiest['orders']} orders: "
        f"{busiest['users']} distinct users (exact), ~{busiest['devices_hll']} devices (HyperLogLog), "
        f"{busiest['first_orders']} first-seen orders (Bloom)"
    )
    assert sum(r["orders"] for r in table.rows.values()) + len(late.results) <= len(valid)


if __name__ == "__main__":
    main()
