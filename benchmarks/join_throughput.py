"""End-to-end interval join throughput: the engine on heap and on RocksDB against a plain-Python floor.

The ad-click scenario: impressions and clicks over hours of event time, keyed by ad id,
with bounded disorder; each click joins the impressions of the previous 20 minutes
(``between(-20 min, 0)`` from the click side). The floor, measured in the same run on the
same records, is what one would write by hand without an engine: a dict of per-ad sorted
impression lists and two bisects per click. Its join count must equal the engine's.

Engine variants: ``heap``; ``rocksdb`` (buffers keep their newest 65,536 elements a side
in memory, the recent tier: an element that expires among them never reaches RocksDB);
``rocksdb-nocache`` (``buffer_cache_entries(0)``: every element written to RocksDB and
deleted by a tombstone, the cost of buffers larger than the tier).

Targets (issue 14): merged logs, RocksDB >= 35% of the floor's records/s (heap >= 50%);
two logs (``--layout two``), heap >= 60% and RocksDB >= 25%.

    python benchmarks/join_throughput.py            # 500k impressions, 100k clicks, 10 h, 50k ads
    python benchmarks/join_throughput.py --quick    # a CI smoke run in seconds
    python benchmarks/join_throughput.py --json     # ... and a JSON object as the last line
"""

from __future__ import annotations

import argparse
import gc
import json
import random
import sys
import tempfile
import time
from bisect import bisect_left, bisect_right
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from common import CountSink, peak_rss_mb

import streamcore as sc
from streamcore.time import hours, minutes, seconds

WINDOW = minutes(20)


#: the ratios to the floor each layout is held to.
TARGETS = {
    "merged": {"heap_ratio": 0.5, "rocksdb_ratio": 0.35},
    "two": {"heap_ratio": 0.6, "rocksdb_ratio": 0.25},
}


def generate(
    n_imps: int, n_clicks: int, span_ms: int, n_ads: int, disorder_ms: int, seed: int
) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    """Impressions and clicks in arrival order; each record is at most ``disorder_ms`` late.

    Clicks mostly follow an impression of the same ad by 0..25 minutes, so most of them
    join something, as in the real scenario.
    """
    rng = random.Random(seed)
    randint = rng.randint
    randrange = rng.randrange
    imps = [
        {"imp_id": i, "ad_id": randrange(n_ads), "ts": i * span_ms // n_imps - randint(0, disorder_ms)}
        for i in range(n_imps)
    ]
    clicks = []
    for i in range(n_clicks):
        base = i * span_ms // n_clicks
        delay = randint(0, minutes(25))
        j = min(max((base - delay) * n_imps // span_ms, 0), n_imps - 1)
        ad = imps[j]["ad_id"] if rng.random() < 0.9 else randrange(n_ads)
        clicks.append({"click_id": i, "ad_id": ad, "ts": base - randint(0, disorder_ms)})
    return imps, clicks


def floor_join(imps: list[dict[str, Any]], clicks: list[dict[str, Any]]) -> list[tuple[int, int]]:
    """The plain-Python floor: per-ad sorted impression lists, two bisects per click."""
    by_ad: dict[Any, list[tuple[int, int, dict[str, Any]]]] = {}
    for imp in imps:
        lst = by_ad.get(imp["ad_id"])
        entry = (imp["ts"], imp["imp_id"], imp)
        if lst is None:
            by_ad[imp["ad_id"]] = [entry]
        else:
            lst.append(entry)
    times: dict[Any, list[int]] = {}
    for ad, lst in by_ad.items():
        lst.sort()
        times[ad] = [e[0] for e in lst]
    out: list[tuple[int, int]] = []
    append = out.append
    for click in clicks:
        ad = click["ad_id"]
        tss = times.get(ad)
        if tss is None:
            continue
        ts = click["ts"]
        i = bisect_left(tss, ts - WINDOW)
        j = bisect_right(tss, ts, i)
        if i < j:
            for e in by_ad[ad][i:j]:
                append((click["click_id"], e[2]["imp_id"]))
    return out


def engine_join(
    imps: list[dict[str, Any]],
    clicks: list[dict[str, Any]],
    backend: str,
    disorder_ms: int,
    keep: bool,
    scan: str = "range",
    layout: str = "merged",
) -> tuple[float, CountSink, dict[str, Any]]:
    """Run the join through the engine; returns (seconds, sink, join operator metrics)."""
    kind, _, variant = backend.partition("-")
    with tempfile.TemporaryDirectory(prefix="sc-join-bench-") as tmp:
        env = sc.StreamEnvironment(state_backend=kind, state_dir=tmp if kind == "rocksdb" else None)
        wm = sc.WatermarkStrategy.for_bounded_out_of_orderness(disorder_ms)
        if layout == "merged":
            log = env.from_collection(merge_log(imps, clicks), timestamp=_ts, watermarks=wm, name="ad-log")
            imp_stream = log.filter(_is_impression)
            click_stream = log.filter(_is_click)
        else:
            imp_stream = env.from_collection(imps, timestamp=_ts, watermarks=wm, name="impressions")
            click_stream = env.from_collection(clicks, timestamp=_ts, watermarks=wm, name="clicks")
        sink = CountSink(keep)
        joined = click_stream.key_by(_ad).interval_join(imp_stream.key_by(_ad))
        builder = joined.between(-WINDOW, 0).scan(scan)
        if variant == "nocache":
            builder = builder.buffer_cache_entries(0)  # every element written through to RocksDB
        builder.process(_pair).uid("join").sink_to(sink)
        gc.collect()
        start = time.perf_counter()
        result = env.execute("join-throughput")
        elapsed = time.perf_counter() - start
    return elapsed, sink, result.metrics["join"]


def merge_log(imps: list[dict[str, Any]], clicks: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """One log of both kinds in arrival order (by each record's slot in its own stream)."""
    n_i, n_c = len(imps), len(clicks)
    slots = [(i * n_c, 0, i) for i in range(n_i)] + [(j * n_i, 1, j) for j in range(n_c)]
    slots.sort()
    return [imps[i] if kind == 0 else clicks[i] for _, kind, i in slots]


def _is_impression(r: dict[str, Any]) -> bool:
    return "imp_id" in r


def _is_click(r: dict[str, Any]) -> bool:
    return "click_id" in r


def _ts(r: dict[str, Any]) -> int:
    return r["ts"]


def _ad(r: dict[str, Any]) -> Any:
    return r["ad_id"]


def _pair(click: dict[str, Any], imp: dict[str, Any], ctx: Any) -> tuple[int, int]:
    return (click["click_id"], imp["imp_id"])


def main(argv: list[str] | None = None) -> dict[str, Any]:
    """Run the benchmark; print figures, then (with ``--json``) one JSON object last."""
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--quick", action="store_true", help="small data, one round (CI smoke run)")
    p.add_argument("--json", action="store_true", help="print a JSON object as the last line")
    p.add_argument("--impressions", type=int, default=500_000)
    p.add_argument("--clicks", type=int, default=100_000)
    p.add_argument("--hours", type=float, default=10.0, help="event-time span")
    p.add_argument("--ads", type=int, default=50_000, help="distinct ad ids")
    p.add_argument(
        "--disorder-s", type=float, default=5.0, help="max lateness of a record (bounded disorder)"
    )
    p.add_argument("--rounds", type=int, default=3, help="rounds; the best of each is reported")
    p.add_argument("--seed", type=int, default=7)
    p.add_argument(
        "--backends",
        default="heap,rocksdb,rocksdb-nocache",
        help="comma-separated engine backends to run (rocksdb-nocache: buffers written through)",
    )
    p.add_argument(
        "--layout",
        choices=["merged", "two"],
        default="merged",
        help="merged: one ad log in arrival order, split by kind (both kinds advance together); "
        "two: a source per kind, polled a batch each in turn",
    )
    args = p.parse_args(argv)
    if args.quick:
        args.impressions, args.clicks, args.hours, args.ads, args.rounds = 50_000, 10_000, 1.0, 5_000, 1
    disorder = seconds(args.disorder_s)
    imps, clicks = generate(args.impressions, args.clicks, hours(args.hours), args.ads, disorder, args.seed)
    n = len(imps) + len(clicks)
    # The inputs live through every run: keep them out of the collector's way, for all runs alike.
    gc.collect()
    gc.freeze()
    print(
        f"interval join throughput: {len(imps):,} impressions + {len(clicks):,} clicks, "
        f"{args.hours:g} h, {args.ads:,} ads, disorder {args.disorder_s:g} s, between(-20 min, 0)"
    )
    backends = [b for b in args.backends.split(",") if b]
    best = {k: float("inf") for k in ["floor", *backends]}
    counts: dict[str, int] = {}
    same_pairs = True
    metrics: dict[str, Any] = {}
    for rnd in range(args.rounds):
        gc.collect()
        start = time.perf_counter()
        pairs = floor_join(imps, clicks)
        best["floor"] = min(best["floor"], time.perf_counter() - start)
        counts["floor"] = len(pairs)
        for backend in backends:
            keep = rnd == 0 and args.quick
            elapsed, sink, m = engine_join(imps, clicks, backend, disorder, keep, layout=args.layout)
            best[backend] = min(best[backend], elapsed)
            counts[backend] = sink.count
            metrics[backend] = m
            if keep:
                same_pairs = same_pairs and sorted(sink.results) == sorted(pairs)
    rps = {k: n / v for k, v in best.items()}
    count_ok = all(counts[b] == counts["floor"] for b in backends) and same_pairs
    for k in best:
        ratio = "" if k == "floor" else f"  {rps[k] / rps['floor']:6.1%} of the floor"
        print(f"  {k:15s} {best[k]:7.3f} s  {rps[k]:>12,.0f} records/s  {counts[k]:>9,} pairs{ratio}")
    for backend in backends:
        m = metrics[backend]
        print(
            f"  {backend:15s} probes {m['probes']:,}, entries scanned/probe "
            f"{m['entries_scanned_per_probe']:.3f}, matches/probe {m['matches_per_probe']:.3f}, "
            f"buffered at end {m['buffered_per_side']}"
        )
    out = {
        "heap_rps": round(rps["heap"]) if "heap" in rps else None,
        "rocksdb_rps": round(rps["rocksdb"]) if "rocksdb" in rps else None,
        "floor_rps": round(rps["floor"]),
        "heap_ratio": round(rps["heap"] / rps["floor"], 4) if "heap" in rps else None,
        "rocksdb_ratio": round(rps["rocksdb"] / rps["floor"], 4) if "rocksdb" in rps else None,
        "rocksdb_nocache_ratio": (
            round(rps["rocksdb-nocache"] / rps["floor"], 4) if "rocksdb-nocache" in rps else None
        ),
        "count_ok": count_ok,
        "pairs": counts["floor"],
        "records": n,
        "quick": args.quick,
        "layout": args.layout,
        "peak_rss_mb": peak_rss_mb(),
        "targets": TARGETS[args.layout],
    }
    print(f"  join count equal to the floor's: {count_ok}; peak RSS {out['peak_rss_mb']:.0f} MiB")
    if args.json:
        print(json.dumps(out))
    return out


if __name__ == "__main__":
    main()
