"""Ad click attribution: join every click with the impressions of its ad in the 20 minutes before.

The flagship demo (``make demo``). Two deterministic generators play the impression log
and the click log of an ad server; clicks can be reported up to an hour late, so the
join keeps an hour and twenty minutes of impressions per ad on RocksDB, while each
click only needs its last twenty minutes. The interval join seeks exactly that range
(``keyGroup + adId + ts[click - 20 min, click]``) instead of reading every impression
of the ad, and the summary shows how much that saves.

    python examples/ad_click_join.py                    # RocksDB in a temporary directory
    python examples/ad_click_join.py --state-dir state  # keep the database in ./state
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import streamcore as sc
from streamcore.time import hours, minutes, seconds

START = 1_700_000_000_000  # event time of the first impression (ms since the epoch)
IMPRESSION_EVERY = 90  # ms of event time between two impressions
CLICK_EVERY = 450  # ms between two clicks
LATE_REPORTING = hours(1)  # how late a click may be reported
DISORDER = seconds(5)  # ordinary out-of-orderness of both logs


def _unit(n: int, salt: int) -> float:
    """A deterministic pseudo-random number in [0, 1) for record ``n`` (a multiplicative hash)."""
    return (((n * 2_654_435_761) ^ (salt * 40_503)) * 2_246_822_519 & 0xFFFF_FFFF) / 2**32


def ad_of_impression(n: int, n_ads: int) -> int:
    """Ads are skewed: hot ads get more impressions (u**1.5 favours small ids)."""
    return int(n_ads * _unit(n, 1) ** 1.5)


def make_impression(n_ads: int) -> Any:
    def impression(split: int, n: int) -> dict[str, Any]:
        return {
            "imp_id": n,
            "ad_id": ad_of_impression(n, n_ads),
            "ts": START + n * IMPRESSION_EVERY - int(_unit(n, 2) * DISORDER),
            "slot": "feed" if _unit(n, 3) < 0.7 else "search",
        }

    return impression


def make_click(n_ads: int) -> Any:
    def click(split: int, n: int) -> dict[str, Any]:
        ts = START + n * CLICK_EVERY
        # Most clicks follow an impression of the same ad by 0-25 minutes.
        seen = (ts - START - int(_unit(n, 4) * minutes(25))) // IMPRESSION_EVERY
        ad = ad_of_impression(seen, n_ads) if seen >= 0 and _unit(n, 5) < 0.9 else int(n_ads * _unit(n, 6))
        # One click in ten is reported late (by up to an hour), the rest within seconds.
        late = int(_unit(n, 7) * LATE_REPORTING) if _unit(n, 8) < 0.1 else int(_unit(n, 9) * DISORDER)
        return {"click_id": n, "ad_id": ad, "ts": ts - late, "user": f"u{int(_unit(n, 10) * 10_000)}"}

    return click


class Attribute(sc.ProcessJoinFunction):
    """One attributed (click, impression) pair per join match."""

    def process_element(self, click: dict[str, Any], imp: dict[str, Any], ctx: Any) -> Any:
        yield {
            "click_id": click["click_id"],
            "imp_id": imp["imp_id"],
            "ad_id": click["ad_id"],
            "slot": imp["slot"],
            "delay_s": (ctx.get_left_timestamp() - ctx.get_right_timestamp()) / 1000,
        }


class Summary(sc.Sink):
    """Counts pairs, attributed clicks and delays; keeps the first few pairs to show."""

    def __init__(self) -> None:
        self.pairs = 0
        self.clicks: set[int] = set()
        self.delay_total = 0.0
        self.first: list[dict[str, Any]] = []

    def write_batch(self, values: list[dict[str, Any]], timestamps: list[int] | None) -> None:
        """Fold a batch into the summary."""
        self.pairs += len(values)
        self.clicks.update(v["click_id"] for v in values)
        self.delay_total += sum(v["delay_s"] for v in values)
        if len(self.first) < 5:
            self.first.extend(values[: 5 - len(self.first)])


def run(state_dir: str, n_imps: int, n_clicks: int, n_ads: int, backend: str) -> None:
    env = sc.StreamEnvironment(state_backend=backend, state_dir=state_dir if backend == "rocksdb" else None)
    imps = env.from_generator(
        make_impression(n_ads),
        count=n_imps,
        timestamp=lambda r: r["ts"],
        watermarks=sc.WatermarkStrategy.for_bounded_out_of_orderness(DISORDER),
        name="impressions",
    )
    clicks = env.from_generator(
        make_click(n_ads),
        count=n_clicks,
        timestamp=lambda r: r["ts"],
        watermarks=sc.WatermarkStrategy.for_bounded_out_of_orderness(LATE_REPORTING),
        name="clicks",
    )
    summary = Summary()
    (
        clicks.key_by(lambda c: c["ad_id"])
        .interval_join(imps.key_by(lambda i: i["ad_id"]))
        .between(-minutes(20), 0)
        .process(Attribute())
        .uid("click-impression-join")
        .sink_to(summary)
    )
    start = time.perf_counter()
    result = env.execute("ad-click-join")
    elapsed = time.perf_counter() - start

    m = result.metrics["click-impression-join"]
    records = n_imps + n_clicks
    print(f"ad click attribution on {backend}: {n_imps:,} impressions, {n_clicks:,} clicks, {n_ads:,} ads")
    print("  join: clicks.interval_join(impressions).between(-20 min, 0), clicks reported up to 1 h late\n")
    print("  first pairs:")
    for p in summary.first:
        print(
            f"    click {p['click_id']:>6} <- impression {p['imp_id']:>7}  ad {p['ad_id']:>4}  "
            f"{p['slot']:6s}  {p['delay_s']:7.1f} s after"
        )
    attributed = len(summary.clicks)
    rows = [
        ("joined pairs", f"{summary.pairs:,}", ""),
        ("clicks attributed", f"{attributed:,}", f"{attributed / max(n_clicks, 1):.0%} of clicks"),
        ("mean click delay", f"{summary.delay_total / max(summary.pairs, 1):,.1f} s", "impression -> click"),
        ("probes (state reads)", f"{m['probes']:,}", f"+{m['probes_skipped']:,} skipped: nothing buffered"),
        (
            "entries read per probe",
            f"{m['entries_scanned_per_probe']:.2f}",
            "range seek: exactly the matches",
        ),
        ("a prefix scan would read", f"{m['key_entries_per_probe']:.2f}", "every buffered entry of the ad"),
        ("entries not read", f"{1 - m['entries_scanned'] / max(m['key_entries'], 1):.0%}", ""),
        ("late records dropped", f"{sum(m['late_per_side']):,}", ""),
        ("buffered at the end", f"{sum(m['buffered_per_side']):,}", "end of input empties the join"),
        ("time", f"{elapsed:.2f} s", ""),
        ("throughput", f"{records / elapsed:,.0f} records/s", ""),
    ]
    print()
    for label, value, note in rows:
        print(f"  {label:26s} {value:>18s}  {note}".rstrip())


def main(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--state-dir", help="RocksDB working directory (default: a temporary one)")
    p.add_argument("--backend", choices=["rocksdb", "heap"], default="rocksdb")
    p.add_argument("--impressions", type=int, default=100_000)
    p.add_argument("--clicks", type=int, default=20_000)
    p.add_argument("--ads", type=int, default=1_000)
    args = p.parse_args(argv)
    if args.state_dir:
        Path(args.state_dir).mkdir(parents=True, exist_ok=True)
        run(args.state_dir, args.impressions, args.clicks, args.ads, args.backend)
    else:
        with tempfile.TemporaryDirectory(prefix="streamcore-demo-") as tmp:
            run(tmp, args.impressions, args.clicks, args.ads, args.backend)


if __name__ == "__main__":
    main()
