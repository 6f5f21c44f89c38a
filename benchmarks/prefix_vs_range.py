"""Interval join probes on RocksDB: the exact range seek against the naive prefix scan.

The Kuaishou scenario at laptop scale. Clicks join the impressions of their previous 20
minutes (``between(-20 min, 0)`` from the click side), and clicks may arrive up to
``--lateness-hours`` late (attribution delay), so the join's watermark trails the newest
impression by that much: every ad keeps ``lateness + 20 min`` of impressions buffered,
while a click needs only 20 minutes of them. Impressions older than that were already
removed by the join's cleanup, so range tombstones sit below every probe range.

A probe in ``range`` mode seeks ``keyGroup + adId + ts(click - 20 min)`` and stops at
``ts(click + 1)``; in ``prefix`` mode it reads every entry of the ad and filters by time,
as Flink's interval join did. Both run the same probes over the same state (one
``TimeOrderedState`` of the RocksDB backend, >= 2,000,000 buffered impressions in the
full run), for a uniform and a hot-key (Zipf-like) ad distribution. The raw floor is a
hand-written rocksdict loop over the same column family (bounded iterator, key and
value decoding), measured in the same run, probe by probe alternating with range mode.
Each probe runs ``--repeat`` times and counts its best run, which keeps the scheduling
noise of a busy machine out of the tail latencies; probes/s is probes / sum of those.
Finally the whole join runs end to end through the engine in each mode.

Targets: range mode scans matches (+1) entries per probe; prefix/range P99 latency
ratio >= 10x on the hot-key data; range probes/s >= 50% of the raw floor.

    python benchmarks/prefix_vs_range.py            # full run (a few minutes)
    python benchmarks/prefix_vs_range.py --quick    # CI smoke run, seconds
    python benchmarks/prefix_vs_range.py --json     # ... and a JSON object as the last line
"""

from __future__ import annotations

import argparse
import gc
import json
import random
import struct
import sys
import tempfile
import time
from itertools import accumulate
from pathlib import Path
from typing import Any

import msgpack
import rocksdict

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import streamcore as sc
from streamcore.keygroups import DEFAULT_MAX_PARALLELISM
from streamcore.state.api import KeyContext
from streamcore.state.factory import StateBackendFactory
from streamcore.time import ManualClock, hours, minutes, seconds

WINDOW = minutes(20)
UID = "join"
BUFFER = "right"  # the impressions: the right input of clicks.interval_join(impressions)
_OFFSET = 2**63  # timestamps are stored as ts + 2**63, 8 bytes big-endian (sign bit flipped)


# -- data ----------------------------------------------------------------------------------


def key_sampler(dist: str, n_keys: int, zipf_s: float, rng: random.Random) -> Any:
    """``sample(n)`` -> n ad ids, uniform or Zipf-like (rank r has weight 1 / r**s)."""
    if dist == "uniform":
        return lambda n: [rng.randrange(n_keys) for _ in range(n)]
    cum = list(accumulate(1.0 / (r**zipf_s) for r in range(1, n_keys + 1)))
    population = range(n_keys)
    return lambda n: rng.choices(population, cum_weights=cum, k=n)


def percentile(sorted_values: list[float], q: float) -> float:
    if not sorted_values:
        return 0.0
    return sorted_values[min(len(sorted_values) - 1, int(q * len(sorted_values)))]


# -- the state-level probe benchmark ---------------------------------------------------------


class ProbeBench:
    """One RocksDB time-ordered state of impressions, probed in three ways."""

    def __init__(self, tmp: str, args: argparse.Namespace, dist: str) -> None:
        self.args = args
        self.dist = dist
        self.rng = random.Random(args.seed)
        self.sample = key_sampler(dist, args.keys, args.zipf, self.rng)
        self.factory = StateBackendFactory("rocksdb", tmp, ManualClock(), args.rocksdb_options)
        self.factory.open()
        self.kc = KeyContext(DEFAULT_MAX_PARALLELISM)
        self.backend = self.factory.create(UID, self.kc)
        self.buffer = self.backend.time_ordered_state(BUFFER)
        self.db_path = Path(tmp) / "db"

    def build(self) -> dict[str, Any]:
        """Buffer the impressions, then let the watermark's cleanup remove the oldest ones."""
        a = self.args
        lateness = hours(a.lateness_hours)
        self.span = lateness + WINDOW + minutes(a.cleaned_minutes)
        self.watermark = self.span - lateness
        n, chunk = a.impressions, 20_000
        set_key, add = self.kc.set_current_key, self.buffer.add
        cut = self.watermark - WINDOW - 1
        expired: list[tuple[int, int, Any]] = []  # the join's expiry index, cut at this watermark
        start = time.perf_counter()
        for base in range(0, n, chunk):
            m = min(chunk, n - base)
            keys = self.sample(m)
            self.backend.begin_batch()
            try:
                for i, k in enumerate(keys, base):
                    set_key(k)
                    ts = i * self.span // n
                    seq = add(ts, i)
                    if ts <= cut:
                        expired.append((ts, seq, k))
            finally:
                self.backend.end_batch()
        built = time.perf_counter() - start
        # What the join's cleanup does at this watermark: point deletes of the expired (ts, seq).
        removed = len(expired)
        start = time.perf_counter()
        self.backend.begin_batch()
        try:
            self.buffer.remove_entries(expired)
        finally:
            self.backend.end_batch()
        cleaned = time.perf_counter() - start
        self.factory.database.flush()
        return {
            "impressions": n,
            "buffered": n - removed,
            "removed": removed,
            "build_s": built,
            "cleanup_s": cleaned,
        }

    def probes(self) -> list[tuple[int, int]]:
        """(ad, click ts): clicks between the watermark and the newest impression, none late."""
        n = self.args.probes
        keys = self.sample(n)
        return [(k, self.rng.randrange(self.watermark, self.span)) for k in keys]

    def run(self) -> dict[str, Any]:
        setup = self.build()
        probes = self.probes()
        set_key = self.kc.set_current_key
        buf = self.buffer
        rng_probe, scan_key = buf.range, buf.scan_prefix
        raw = RawFloor(self.db_path, self.kc)
        try:
            # Warm the block caches of both readers (untimed).
            for k, ts in probes[: min(len(probes), 200)]:
                set_key(k)
                rng_probe(ts - WINDOW, ts)
                raw.probe(k, ts - WINDOW, ts)
            range_ns: list[int] = []
            raw_ns: list[int] = []
            matches: list[int] = []
            scanned: list[int] = []
            clock = time.perf_counter_ns
            repeat = self.args.repeat
            gc.collect()
            for i, (k, ts) in enumerate(probes):
                lo = ts - WINDOW
                best_range = best_raw = 1 << 62
                before = buf.entries_scanned
                for r in range(repeat):
                    # Alternate which reader goes first: neither always gets the warmer cache.
                    if (i + r) % 2:
                        t0 = clock()
                        floor_rows = raw.probe(k, lo, ts)
                        t1 = clock()
                        set_key(k)
                        rows = rng_probe(lo, ts)
                        t2 = clock()
                        best_raw, best_range = min(best_raw, t1 - t0), min(best_range, t2 - t1)
                    else:
                        t0 = clock()
                        set_key(k)
                        rows = rng_probe(lo, ts)
                        t1 = clock()
                        floor_rows = raw.probe(k, lo, ts)
                        t2 = clock()
                        best_range, best_raw = min(best_range, t1 - t0), min(best_raw, t2 - t1)
                range_ns.append(best_range)
                raw_ns.append(best_raw)
                scanned.append((buf.entries_scanned - before) // repeat)
                matches.append(len(rows))
                if rows != floor_rows:
                    msg = f"range probe and raw floor disagree for ad {k} at {ts}"
                    raise AssertionError(msg)
        finally:
            raw.close()
        prefix_ns: list[int] = []
        prefix_scanned: list[int] = []
        gc.collect()
        for (k, ts), expected in zip(probes, matches, strict=True):
            lo = ts - WINDOW
            best = 1 << 62
            before = buf.entries_scanned
            for _ in range(repeat):
                t0 = clock()
                set_key(k)
                rows = [e for e in scan_key() if lo <= e[0] <= ts]
                t1 = clock()
                best = min(best, t1 - t0)
            prefix_ns.append(best)
            prefix_scanned.append((buf.entries_scanned - before) // repeat)
            if len(rows) != expected:
                msg = f"prefix probe found {len(rows)} entries, range probe {expected} (ad {k} at {ts})"
                raise AssertionError(msg)
        return summarise(setup, range_ns, raw_ns, prefix_ns, scanned, matches, prefix_scanned)

    def close(self) -> None:
        self.factory.close()


class RawFloor:
    """The floor: bounded rocksdict iterators straight on the buffer's column family.

    Opened read-only beside the backend (no lock; the backend flushed first, so the
    reader sees every entry). Builds the same keys and decodes the same ``(ts, value)``
    rows as the backend's range read, with nothing in between.
    """

    def __init__(self, path: Path, kc: KeyContext) -> None:
        names = rocksdict.Rdict.list_cf(str(path))
        target = [n for n in names if n.endswith(f"~buffer/{BUFFER}") and UID in n]
        if len(target) != 1:
            msg = f"cannot find the buffer column family among {names}"
            raise RuntimeError(msg)
        opts = rocksdict.Options(raw_mode=True)
        self._db = rocksdict.Rdict(
            str(path),
            opts,
            column_families={n: opts for n in names if n != "default"},
            access_type=rocksdict.AccessType.read_only(False),
        )
        self._cf = self._db.get_column_family(target[0])
        self._items = self._cf.items
        self._prefix = kc.entry_for
        self._pack = struct.Struct(">Q").pack
        self._unpack = struct.Struct(">Q").unpack_from
        self._loads = msgpack.unpackb

    def probe(self, key: Any, lo: int, hi: int) -> list[tuple[int, Any]]:
        prefix = self._prefix(key)[1]
        n = len(prefix)
        ro = rocksdict.ReadOptions()
        ro.set_iterate_upper_bound(prefix + self._pack(hi + 1 + _OFFSET))
        entries = list(self._items(False, prefix + self._pack(lo + _OFFSET), ro))
        unpack, loads = self._unpack, self._loads
        return [(unpack(k, n)[0] - _OFFSET, loads(v)) for k, v in entries]

    def close(self) -> None:
        self._items = None  # type: ignore[assignment]
        self._cf.close()
        self._db.close()
        del self._cf, self._db


def summarise(
    setup: dict[str, Any],
    range_ns: list[int],
    raw_ns: list[int],
    prefix_ns: list[int],
    scanned: list[int],
    matches: list[int],
    prefix_scanned: list[int],
) -> dict[str, Any]:
    n = len(range_ns)
    out: dict[str, Any] = {"probes": n, **setup}
    lat: dict[str, list[float]] = {}
    for mode, ns in (("range", range_ns), ("prefix", prefix_ns), ("raw_floor", raw_ns)):
        s = sorted(x / 1000 for x in ns)
        lat[mode] = s
        out[f"{mode}_probe_rps"] = round(n / (sum(ns) / 1e9)) if sum(ns) else 0
        for name, q in (("p50", 0.5), ("p99", 0.99), ("p999", 0.999)):
            out[f"{mode}_{name}_us"] = round(percentile(s, q), 1)
    for name in ("p50", "p99", "p999"):
        r = out[f"range_{name}_us"]
        out[f"{name}_ratio"] = round(out[f"prefix_{name}_us"] / r, 2) if r else 0.0
    out["raw_floor_probe_rps"] = out.pop("raw_floor_probe_rps")
    out["range_vs_floor"] = round(out["range_probe_rps"] / out["raw_floor_probe_rps"], 3)
    out["range_scanned_per_probe"] = round(sum(scanned) / n, 3)
    out["range_matches_per_probe"] = round(sum(matches) / n, 3)
    out["prefix_scanned_per_probe"] = round(sum(prefix_scanned) / n, 3)
    out["range_scan_exact"] = all(m <= s <= m + 1 for s, m in zip(scanned, matches, strict=True))
    return out


# -- end to end through the engine -------------------------------------------------------------


class _Count(sc.Sink):
    def __init__(self) -> None:
        self.count = 0

    def write_batch(self, values: list[Any], timestamps: list[int] | None) -> None:
        self.count += len(values)


def _ts(r: tuple[int, int, int]) -> int:
    return r[2]


def _ad(r: tuple[int, int, int]) -> int:
    return r[1]


def _pair(click: tuple[int, int, int], imp: tuple[int, int, int], ctx: Any) -> tuple[int, int]:
    return (click[0], imp[0])


def end_to_end(args: argparse.Namespace, dist: str) -> dict[str, Any]:
    """The whole join through the engine on RocksDB, once per scan mode; records/s each."""
    rng = random.Random(args.seed + 1)
    n_imp, n_clk = args.e2e_impressions, args.e2e_impressions // 5
    # As many impressions per ad as in the probe benchmark, so probes read as much per ad.
    n_keys = max(10, args.keys * n_imp // args.impressions)
    sample = key_sampler(dist, n_keys, args.zipf, rng)
    lateness = hours(args.lateness_hours)
    span = lateness + WINDOW + minutes(args.cleaned_minutes)
    disorder = seconds(5)
    imps = [(i, k, i * span // n_imp - rng.randrange(disorder)) for i, k in enumerate(sample(n_imp))]
    clicks = [(i, k, i * span // n_clk - rng.randrange(disorder)) for i, k in enumerate(sample(n_clk))]
    out: dict[str, Any] = {}
    counts = {}
    for mode in ("range", "prefix"):
        with tempfile.TemporaryDirectory(prefix="sc-pvr-e2e-") as tmp:
            env = sc.StreamEnvironment(
                state_backend="rocksdb", state_dir=tmp, rocksdb_options=args.rocksdb_options
            )
            imp_wm = sc.WatermarkStrategy.for_bounded_out_of_orderness(disorder)
            # Clicks may be up to `lateness` late: their watermark, hence the join's, trails by that much.
            clk_wm = sc.WatermarkStrategy.for_bounded_out_of_orderness(lateness)
            i_s = env.from_collection(imps, timestamp=_ts, watermarks=imp_wm, name="impressions")
            c_s = env.from_collection(clicks, timestamp=_ts, watermarks=clk_wm, name="clicks")
            sink = _Count()
            (
                c_s.key_by(_ad)
                .interval_join(i_s.key_by(_ad))
                .between(-WINDOW, 0)
                .scan(mode)
                .process(_pair)
                .uid("join")
                .sink_to(sink)
            )
            gc.collect()
            start = time.perf_counter()
            result = env.execute(f"prefix-vs-range-{mode}")
            elapsed = time.perf_counter() - start
        m = result.metrics["join"]
        counts[mode] = sink.count
        out[f"e2e_{mode}_rps"] = round((n_imp + n_clk) / elapsed)
        out[f"e2e_{mode}_scanned_per_probe"] = round(m["entries_scanned_per_probe"], 2)
    out["e2e_records"] = n_imp + n_clk
    out["e2e_keys"] = n_keys
    out["e2e_pairs"] = counts["range"]
    out["e2e_count_ok"] = counts["range"] == counts["prefix"]
    out["e2e_speedup"] = round(out["e2e_range_rps"] / out["e2e_prefix_rps"], 2)
    return out


# -- main ----------------------------------------------------------------------------------------


def report(dist: str, r: dict[str, Any]) -> None:
    print(f"\n[{dist}] {r['buffered']:,} impressions buffered ({r['removed']:,} removed by cleanup)")
    print(f"  {r['probes']:,} probes; latency is each probe's best of --repeat runs, in microseconds")
    print(f"  {'mode':10s} {'probes/s':>10s} {'P50':>9s} {'P99':>9s} {'P99.9':>9s}  entries scanned/probe")
    for mode, scanned in (
        ("range", r["range_scanned_per_probe"]),
        ("prefix", r["prefix_scanned_per_probe"]),
        ("raw_floor", r["range_matches_per_probe"]),
    ):
        lat = " ".join(f"{r[f'{mode}_{q}_us']:>9.1f}" for q in ("p50", "p99", "p999"))
        print(f"  {mode:10s} {r[f'{mode}_probe_rps']:>10,} {lat}  {scanned:,.2f}")
    print(
        f"  matches/probe {r['range_matches_per_probe']:.2f}; range scans matches(+1) on every probe: "
        f"{r['range_scan_exact']}; prefix/range latency P50 {r['p50_ratio']}x, P99 {r['p99_ratio']}x, "
        f"P99.9 {r['p999_ratio']}x; range = {r['range_vs_floor']:.0%} of the raw floor's probes/s"
    )
    print(
        f"  end to end ({r['e2e_records']:,} records, {r['e2e_pairs']:,} pairs): "
        f"range {r['e2e_range_rps']:,} rec/s, prefix {r['e2e_prefix_rps']:,} rec/s ({r['e2e_speedup']}x); "
        f"scanned/probe range {r['e2e_range_scanned_per_probe']}, prefix {r['e2e_prefix_scanned_per_probe']}"
    )


def main(argv: list[str] | None = None) -> dict[str, Any]:
    """Run both distributions; print figures, then (with ``--json``) one JSON object last."""
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--quick", action="store_true", help="small state, few probes (CI smoke run)")
    p.add_argument("--json", action="store_true", help="print a JSON object as the last line")
    p.add_argument("--impressions", type=int, default=2_200_000, help="impressions written (some cleaned up)")
    p.add_argument("--keys", type=int, default=50_000, help="distinct ad ids")
    p.add_argument("--zipf", type=float, default=0.8, help="exponent of the hot-key distribution")
    p.add_argument("--probes", type=int, default=3_000)
    p.add_argument(
        "--lateness-hours",
        type=float,
        default=6.0,
        help="how late clicks may be: buffered depth is this + 20 min",
    )
    p.add_argument("--cleaned-minutes", type=float, default=30.0, help="event time already cleaned up")
    p.add_argument("--e2e-impressions", type=int, default=100_000, help="impressions of the end-to-end runs")
    p.add_argument("--rocksdb-options", default="default", help="RocksDB preset")
    p.add_argument("--repeat", type=int, default=3, help="runs of each probe; its latency is the best run")
    p.add_argument("--seed", type=int, default=5)
    args = p.parse_args(argv)
    if args.quick:
        args.impressions, args.keys, args.probes, args.e2e_impressions = 40_000, 2_000, 400, 6_000
    print(
        f"prefix vs range probes on RocksDB: {args.impressions:,} impressions over {args.keys:,} ads, "
        f"clicks up to {args.lateness_hours:g} h late, between(-20 min, 0), zipf s={args.zipf:g} for 'hot'"
    )
    out: dict[str, Any] = {"quick": args.quick}
    for dist in ("uniform", "hot"):
        with tempfile.TemporaryDirectory(prefix="sc-pvr-") as tmp:
            bench = ProbeBench(tmp, args, dist)
            try:
                r = bench.run()
            finally:
                bench.close()
        gc.collect()
        r.update(end_to_end(args, dist))
        report(dist, r)
        out[dist] = r
    out["buffered_ok"] = args.quick or min(out["uniform"]["buffered"], out["hot"]["buffered"]) >= 2_000_000
    out["targets"] = {"p99_ratio_hot": 10.0, "range_vs_floor": 0.5, "range_scanned_per_probe": "matches (+1)"}
    out["targets_met"] = {
        "range_scan_exact": out["uniform"]["range_scan_exact"] and out["hot"]["range_scan_exact"],
        "p99_ratio_hot": out["hot"]["p99_ratio"] >= 10.0,
        "range_vs_floor": min(out["uniform"]["range_vs_floor"], out["hot"]["range_vs_floor"]) >= 0.5,
    }
    print(f"\ntargets met: {out['targets_met']}")
    if args.json:
        print(json.dumps(out))
    return out


if __name__ == "__main__":
    main()
