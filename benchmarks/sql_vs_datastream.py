"""SQL against the DataStream API: the same jobs written both ways, measured in the same run.

Two jobs, each written once in SQL (``StreamTableEnvironment``) and once by hand with the
DataStream API, over the same records:

* **window**: records ~1 ms apart with up to 500 ms disorder over 10,000 keys; a
  10-second tumbling count+sum per key, emitting ``(key, window start, count, sum)``.
* **join**: clicks joined to the impressions of the same ad up to 20 seconds before
  (``c.ts BETWEEN i.ts AND i.ts + INTERVAL '20' SECOND``), emitting both rows.

``window_sql_ratio`` and ``join_sql_ratio`` are SQL records/s divided by DataStream
records/s (targets >= 0.8): what planning through SQL costs at run time. The SQL tables
declare their columns ``NOT NULL``, as a schema of such data would, so no NULL checks are
compiled in. ``results_match`` says both ways produced the same rows. Time is this
process's CPU time (best of ``--rounds``), the input frozen out of the garbage
collector's way (``gc.freeze``), as in ``windows.py``.

    python benchmarks/sql_vs_datastream.py            # 1,000,000 window records, 200,000 joins a side
    python benchmarks/sql_vs_datastream.py --quick    # a CI smoke run in seconds
    python benchmarks/sql_vs_datastream.py --json     # ... and a JSON object as the last line
"""

from __future__ import annotations

import gc
import random
import sys
import time
from collections.abc import Callable
from operator import itemgetter
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from common import CountSink, parser, peak_rss_mb, report

import streamcore as sc
from streamcore.aggregates import Count, Sum, combine
from streamcore.time import seconds
from streamcore.windowing import TumblingEventTimeWindows

DISORDER = 500
SIZE = seconds(10)
JOIN_WINDOW = seconds(20)


def window_records(n: int, keys: int, seed: int) -> list[tuple[int, int, int]]:
    """``(key, ts, amount)`` in arrival order: ~1 ms apart, each up to ``DISORDER`` ms late."""
    rng = random.Random(seed)
    return [
        (rng.randrange(keys), max(0, i - rng.randint(0, DISORDER)), rng.randint(1, 100)) for i in range(n)
    ]


def join_records(
    n: int, ads: int, seed: int
) -> tuple[list[tuple[int, int, int]], list[tuple[int, int, int]]]:
    """Impressions ``(ad, ts, id)`` every 5 ms and clicks ``(ad, ts, id)`` a little later, in order."""
    rng = random.Random(seed)
    imps = [(rng.randrange(ads), i * 5, i) for i in range(n)]
    clicks = sorted(((ad, ts + rng.randint(0, 30_000), i) for ad, ts, i in imps), key=itemgetter(1))
    return imps, clicks


def _cpu(fn: Callable[[], Any]) -> float:
    gc.collect()
    gc.freeze()
    start = time.process_time()
    fn()
    return time.process_time() - start


def _window_row(key: Any, window: Any, r: dict[str, int]) -> tuple[Any, int, int, int]:
    return key, window.start, r["count"], r["total"]


def window_datastream(records: list[tuple[int, int, int]]) -> tuple[float, CountSink]:
    env = sc.StreamEnvironment()
    sink = CountSink(keep=True)
    wm = sc.WatermarkStrategy.for_bounded_out_of_orderness(DISORDER)
    (
        env.from_collection(records, timestamp=itemgetter(1), watermarks=wm, name="records")
        .key_by(itemgetter(0))
        .window(TumblingEventTimeWindows.of(SIZE))
        .aggregate(combine(count=Count(), total=Sum(itemgetter(2))), _window_row)
        .sink_to(sink)
    )
    return _cpu(lambda: env.execute("window-datastream")), sink


def _sql_env(tables: dict[str, list[tuple[int, int, int]]], names: tuple[str, str, str]) -> Any:
    env = sc.StreamEnvironment()
    t_env = sc.StreamTableEnvironment.create(env)
    for name, rows in tables.items():
        schema = (
            sc.Schema.new_builder()
            .column(names[0], "BIGINT NOT NULL")
            .column("ts", "TIMESTAMP(3) NOT NULL")
            .column(names[2], "BIGINT NOT NULL")
            .watermark("ts", f"ts - INTERVAL '{DISORDER}' MILLISECOND")
            .build()
        )
        t_env.create_temporary_view(name, t_env.from_elements(rows, schema))
    return env, t_env


def window_sql(records: list[tuple[int, int, int]]) -> tuple[float, CountSink]:
    env, t_env = _sql_env({"records": records}, ("k", "ts", "amount"))
    table = t_env.sql_query(
        "SELECT k, window_start, COUNT(*), SUM(amount) FROM TABLE(TUMBLE(TABLE records, DESCRIPTOR(ts), "
        "INTERVAL '10' SECOND)) GROUP BY k, window_start, window_end"
    )
    sink = CountSink(keep=True)
    t_env.to_data_stream(table).sink_to(sink)
    return _cpu(lambda: env.execute("window-sql")), sink


def _pair(click: tuple[int, int, int], imp: tuple[int, int, int], ctx: Any) -> tuple[int, ...]:
    return click + imp


def join_datastream(imps: list[Any], clicks: list[Any]) -> tuple[float, CountSink]:
    env = sc.StreamEnvironment()
    wm = sc.WatermarkStrategy.for_bounded_out_of_orderness(DISORDER)
    i = env.from_collection(imps, timestamp=itemgetter(1), watermarks=wm, name="imps")
    c = env.from_collection(clicks, timestamp=itemgetter(1), watermarks=wm, name="clicks")
    sink = CountSink(keep=True)
    (
        c.key_by(itemgetter(0))
        .interval_join(i.key_by(itemgetter(0)))
        .between(-JOIN_WINDOW, 0)
        .process(_pair)
        .sink_to(sink)
    )
    return _cpu(lambda: env.execute("join-datastream")), sink


def join_sql(imps: list[Any], clicks: list[Any]) -> tuple[float, CountSink]:
    env, t_env = _sql_env({"clicks": clicks, "imps": imps}, ("ad", "ts", "id"))
    table = t_env.sql_query(
        "SELECT * FROM clicks c, imps i "
        "WHERE c.ad = i.ad AND c.ts BETWEEN i.ts AND i.ts + INTERVAL '20' SECOND"
    )
    sink = CountSink(keep=True)
    t_env.to_data_stream(table).sink_to(sink)
    return _cpu(lambda: env.execute("join-sql")), sink


def best(rounds: int, fn: Callable[[], tuple[float, CountSink]]) -> tuple[float, CountSink]:
    """The fastest of ``rounds`` runs and its sink."""
    runs = [fn() for _ in range(rounds)]
    return min(runs, key=lambda r: r[0])


def main() -> None:
    p = parser(__doc__.splitlines()[0])
    p.add_argument(
        "--records", type=int, default=None, help="window records (default 1,000,000; quick 50,000)"
    )
    p.add_argument("--rounds", type=int, default=None, help="runs of each job; the fastest counts")
    args = p.parse_args()
    n = args.records or (50_000 if args.quick else 1_000_000)
    n_join = n // 5
    rounds = args.rounds or (1 if args.quick else 3)
    records = window_records(n, 10_000, 1)
    imps, clicks = join_records(n_join, 2_000, 2)
    ds_w, ds_w_sink = best(rounds, lambda: window_datastream(records))
    sql_w, sql_w_sink = best(rounds, lambda: window_sql(records))
    ds_j, ds_j_sink = best(rounds, lambda: join_datastream(imps, clicks))
    sql_j, sql_j_sink = best(rounds, lambda: join_sql(imps, clicks))
    match = sorted(ds_w_sink.results) == sorted(sql_w_sink.results) and sorted(ds_j_sink.results) == sorted(
        sql_j_sink.results
    )
    figures = {
        "window_records": n,
        "window_datastream_rps": n / ds_w,
        "window_sql_rps": n / sql_w,
        "window_sql_ratio": ds_w / sql_w,
        "join_records": 2 * n_join,
        "join_pairs": ds_j_sink.count,
        "join_datastream_rps": 2 * n_join / ds_j,
        "join_sql_rps": 2 * n_join / sql_j,
        "join_sql_ratio": ds_j / sql_j,
        "results_match": match,
        "peak_rss_mb": peak_rss_mb(),
    }
    report(figures, args.json)
    if not match:
        sys.exit("SQL and DataStream results differ")


if __name__ == "__main__":
    main()
