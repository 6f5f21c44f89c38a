"""The lookup crash test: kill -9 a job at random moments while lookups are in flight; restart; compare.

Run as a script, this module runs one job: ``records`` orders (order ``i`` of shop
``zipf(i)``, some shops missing from the dimension table) are enriched by a left lookup
join against SQLite whose every round trip sleeps a random 0-6 ms (so checkpoints hold
elements in flight), with a small cache, and written exactly once by a
:class:`~streamcore.FileSink`; a checkpoint every ``every`` records; ``restore_from="latest"``.

:func:`run_crash_test` starts the job, kills it with SIGKILL after a random delay,
restarts it, and after ``kills`` kills lets it finish; then it checks every order was
enriched exactly once, as a dict join would.
"""

from __future__ import annotations

import argparse
import asyncio
import collections
import json
import os
import random
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[2]
SHOPS = 300


def shop_of(i: int) -> int:
    """A skewed shop id for order ``i`` (deterministic)."""
    r = random.Random(i).random()
    return int(SHOPS * 1.2 * r**3)


def run_job(args: argparse.Namespace) -> None:
    """Build and run the job (in this process)."""
    sys.path.insert(0, str(ROOT))
    import streamcore as sc
    from tests.lookup.support import order

    class SlowSQLite(sc.SQLiteLookup):
        async def fetch(self, keys: list[Any]) -> Any:
            await asyncio.sleep(random.uniform(0, 0.006))
            return await super().fetch(keys)

    def generate(split: int, offset: int) -> dict[str, Any]:
        if offset % 3 == 0:
            time.sleep(0.001)  # about 2 s for 6,000 orders: no run ends before its kill
        return order(offset, shop_of(offset))

    env = sc.StreamEnvironment(state_backend=args.backend, state_dir=args.state, batch_size=25)
    env.enable_checkpointing(args.checkpoints, every_records=args.every, retain=2)
    (
        env.from_generator(generate, count=args.records, name="orders")
        .uid("orders")
        .lookup_join(
            SlowSQLite(args.db, "shops", key="shop_id"),
            on=lambda o: o["shop_id"],
            how="left",
            cache=sc.LookupCache(max_rows=50, ttl_ms=500),
            capacity=64,
        )
        .uid("enrich")
        .sink_to(sc.FileSink(args.out, encoder=lambda r: json.dumps(r, sort_keys=True)))
        .uid("files")
    )
    print("RUNNING", flush=True)
    env.execute("lookup-crash", restore_from="latest")
    print("DONE", flush=True)


def run_crash_test(
    workdir: Path, *, kills: int = 4, records: int = 6_000, backend: str = "rocksdb", seed: int = 0
) -> dict[str, Any]:
    """Kill the job ``kills`` times, let it finish; returns lost/duplicated/wrong counts."""
    from tests.lookup.support import make_sqlite, oracle, order, shop_row

    rng = random.Random(seed)
    known = [s for s in range(SHOPS) if s % 11]
    db = make_sqlite(workdir / "dims.db", known)
    out = workdir / "out"
    cmd = [sys.executable, str(Path(__file__).resolve()), "--db", str(db), "--out", str(out)]
    cmd += ["--checkpoints", str(workdir / "chk"), "--state", str(workdir / "state")]
    cmd += ["--records", str(records), "--backend", backend, "--every", "200"]
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(ROOT), env.get("PYTHONPATH")]))
    done = 0
    while done < kills:
        proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, env=env, text=True)
        assert proc.stdout is not None and proc.stderr is not None
        if proc.stdout.readline().strip() != "RUNNING":
            proc.wait()
            msg = f"the crash job did not start: {proc.stderr.read()[-3000:]}"
            raise RuntimeError(msg)
        time.sleep(rng.uniform(0.2, 0.45))
        if proc.poll() is not None:
            msg = (
                f"the crash job ended before its kill (exit {proc.returncode}): {proc.stderr.read()[-3000:]}"
            )
            raise RuntimeError(msg)
        os.kill(proc.pid, signal.SIGKILL)
        proc.wait()
        proc.stdout.close()
        proc.stderr.close()
        done += 1
    final = subprocess.run(cmd, capture_output=True, text=True, env=env, timeout=300, check=False)
    if final.returncode != 0 or "DONE" not in final.stdout:
        msg = f"the final run failed (exit {final.returncode}): {final.stderr[-3000:]}"
        raise RuntimeError(msg)
    rows = [json.loads(line) for p in sorted(out.glob("part-*")) for line in p.read_text().splitlines()]
    counts = collections.Counter(r["order_id"] for r in rows)
    expected = oracle([order(i, shop_of(i)) for i in range(records)], {s: shop_row(s) for s in known}, "left")
    by_id = {r["order_id"]: r for r in rows}
    return {
        "kills": done,
        "lines": len(rows),
        "lost": sum(1 for i in range(records) if i not in counts),
        "duplicated": sum(c - 1 for c in counts.values()),
        "wrong": sum(1 for e in expected if by_id.get(e["order_id"], e) != e),
    }


def _parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(description=__doc__)
    p.add_argument("--db", required=True)
    p.add_argument("--out", required=True)
    p.add_argument("--checkpoints", required=True)
    p.add_argument("--state", required=True)
    p.add_argument("--records", type=int, default=6_000)
    p.add_argument("--backend", default="rocksdb", choices=["heap", "rocksdb"])
    p.add_argument("--every", type=int, default=200)
    return p


if __name__ == "__main__":
    run_job(_parser().parse_args())
