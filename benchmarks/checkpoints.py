"""Checkpoint benchmark: incremental vs full bytes, synchronous pause, restore time, crash test.

A RocksDB job holds ``--keys`` keys of state (one value each). After a load phase, it
runs ``--checkpoints`` rounds; each round updates ``--churn`` (a fraction) of the keys
and takes a checkpoint. Reported:

* ``incremental_bytes_ratio``: bytes an incremental checkpoint writes (new SST files,
  private files, operator files) over the bytes of the whole checkpoint (what a full
  checkpoint writes), averaged over the rounds;
* ``pause_ms_p50`` / ``pause_ms_p99``: the synchronous part of each checkpoint (operator
  snapshots, RocksDB flush and hard links), while the job stops (``wait_ms_p50``: how long a
  due checkpoint waited for the previous one, still being written, to finish);
* ``restore_s``: a restart from the newest checkpoint (validation, database rebuilt from
  the checkpoint files, open; it includes the final checkpoint of the then empty run);
* ``kills`` / ``lost`` / ``duplicated``: the SIGKILL crash test (``tests/checkpoint/crash_job.py``).

``--quick`` runs a small configuration in well under a minute (CI smoke test). The last
line of ``--json`` output is one JSON object.
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from common import peak_rss_mb  # noqa: E402

import streamcore as sc  # noqa: E402
from tests.checkpoint.crash_job import run_crash_test  # noqa: E402


class Update(sc.KeyedProcessFunction):
    """Stores the latest value of each key."""

    def open(self, ctx: Any) -> None:
        self.value = ctx.get_state(sc.ValueStateDescriptor("value"))

    def process_element(self, record: Any, ctx: Any) -> Any:
        self.value.update(record[1])
        return None


def _key(round_no: int, j: int, keys: int) -> int:
    # A different pseudo-random 1% of the keys every round (7919 is prime: distinct in a round).
    return (j * 7919 + round_no * 104_729) % keys


def _job(
    work: Path, *, keys: int, rounds: int, churn: int, every: int, batch: int, incremental: bool, options: str
) -> sc.StreamEnvironment:
    env = sc.StreamEnvironment(
        state_backend="rocksdb", state_dir=work / "state", batch_size=batch, rocksdb_options=options
    )
    env.enable_checkpointing(work / "chk", every_records=every, incremental=incremental, retain=3)

    def record(split: int, offset: int) -> tuple[int, int]:
        # Offsets below ``keys`` load every key once; each later block of ``churn`` is a round.
        if offset < keys:
            return offset, offset
        o = offset - keys
        return _key(o // churn, o % churn, keys), offset

    count = keys + rounds * churn
    env.from_generator(record, count=count, name="updates").key_by(lambda r: r[0]).process(Update()).uid(
        "state"
    ).sink_to(lambda v: None).uid("discard")
    return env


def measure(
    work: Path, *, keys: int, rounds: int, churn_fraction: float, batch: int, options: str
) -> dict[str, Any]:
    """Load ``keys`` keys, then ``rounds`` checkpoints of ``churn_fraction`` updates each."""
    churn = max(1, int(keys * churn_fraction))
    t0 = time.perf_counter()
    load = _job(
        work, keys=keys, rounds=0, churn=churn, every=10**12, batch=batch, incremental=True, options=options
    )
    load.execute("checkpoint-bench")
    load_s = time.perf_counter() - t0
    results = {}
    for incremental in (True, False):
        run_dir = work / ("incremental" if incremental else "full")
        # Both runs start from the same loaded checkpoint.
        import shutil

        shutil.copytree(work / "chk", run_dir / "chk")
        job = {
            "keys": keys,
            "rounds": rounds,
            "churn": churn,
            "every": churn,
            "batch": batch,
            "options": options,
        }
        env = _job(run_dir, incremental=incremental, **job)
        result = env.execute("checkpoint-bench", restore_from="latest")
        history = [h for h in result.metrics["checkpoints"]["history"]][:rounds]
        results[incremental] = history
        if incremental:
            t1 = time.perf_counter()
            again = _job(run_dir, incremental=True, **job)
            again.execute("checkpoint-bench", restore_from="latest")
            results["restore_s"] = time.perf_counter() - t1
    inc, full = results[True], results[False]
    inc_bytes = [h["incremental_bytes"] for h in inc]
    full_bytes = [h["incremental_bytes"] for h in full]
    pauses = sorted(h["pause_ms"] for h in inc)
    return {
        "keys": keys,
        "checkpoints": len(inc),
        "churn_per_checkpoint": churn,
        "load_s": round(load_s, 2),
        "incremental_bytes_mean": int(statistics.mean(inc_bytes)),
        "full_bytes_mean": int(statistics.mean(full_bytes)),
        "incremental_bytes_ratio": round(statistics.mean(inc_bytes) / statistics.mean(full_bytes), 4),
        "incremental_bytes_per_checkpoint": inc_bytes,
        "pause_ms_p50": round(statistics.median(pauses), 2),
        "pause_ms_p99": round(pauses[min(len(pauses) - 1, int(0.99 * len(pauses)))], 2),
        "full_pause_ms_p50": round(statistics.median(h["pause_ms"] for h in full), 2),
        "wait_ms_p50": round(statistics.median(h.get("wait_ms", 0.0) for h in inc), 2),
        "duration_ms_p50": round(statistics.median(h["duration_ms"] for h in inc), 2),
        "restore_s": round(results["restore_s"], 3),
    }


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--quick", action="store_true", help="small configuration for CI (< 60 s)")
    p.add_argument("--json", action="store_true", help="print one JSON object as the last line")
    p.add_argument("--keys", type=int, default=None, help="keys of state (default 1,000,000; quick 100,000)")
    p.add_argument("--checkpoints", type=int, default=10)
    p.add_argument("--churn", type=float, default=0.01, help="fraction of keys updated between checkpoints")
    p.add_argument(
        "--kills", type=int, default=None, help="SIGKILLs in the crash test (default 100; quick 5)"
    )
    p.add_argument("--options", default="default", help="RocksDB options preset")
    p.add_argument("--workdir", default=None, help="keep files here (default: a temporary directory)")
    args = p.parse_args(argv)
    keys = args.keys or (100_000 if args.quick else 1_000_000)
    kills = args.kills if args.kills is not None else (5 if args.quick else 100)
    started = time.perf_counter()
    with tempfile.TemporaryDirectory(prefix="streamcore-bench-") as tmp:
        work = Path(args.workdir) if args.workdir else Path(tmp)
        work.mkdir(parents=True, exist_ok=True)
        report = measure(
            work / "state-bench",
            keys=keys,
            rounds=args.checkpoints,
            churn_fraction=args.churn,
            batch=1024,
            options=args.options,
        )
        crash = run_crash_test(
            work / "crash",
            kills=kills,
            backend="rocksdb",
            seed=1,
            timeout_s=50 if args.quick else 1800,
        )
    report.update(
        kills=crash["kills"],
        kills_during_checkpoint=crash["kills_during_checkpoint"],
        lost=crash["lost"],
        duplicated=crash["duplicated"],
        crash_lines=crash["lines"],
        crash_s=round(crash["seconds"], 1),
        total_s=round(time.perf_counter() - started, 1),
        peak_rss_mb=peak_rss_mb(),
        quick=args.quick,
    )
    if not args.json:
        for k, v in report.items():
            print(f"{k:>34}: {v}")
    print(json.dumps(report))
    ok = report["lost"] == 0 and report["duplicated"] == 0
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
