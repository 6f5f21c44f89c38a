"""Scale-out: one keyed window job as 1 worker process, then as 2, on a topic of 8 partitions.

The job reads ``events`` (8 partitions by page, event time in the Kafka timestamp, produced
before timing) with ``KafkaSource(assignment="group")``; a consumer group gives each worker
process its tasks (task p = partition p). It counts and sums per page in tumbling 1-second
event-time windows (``key_by(partitioned=True)``: no repartition topic) and writes the
window results exactly once through a ``FileSink``. The librdkafka mock cluster runs in
this driver process.

Figures:

* ``rps_1`` / ``rps_2``: records per second of the whole job with 1 and with 2 workers:
  records / wall time from the first worker's job start (its process started and the job
  built) to the last worker's end, so rebalances count but Python's start-up does not;
  the median of ``--rounds`` runs each (default 3), 1-worker and 2-worker runs alternating;
* ``speedup_2_workers``: ``rps_2 / rps_1`` (target >= 1.6 on 2 cores; ``speedup_rounds``
  gives each round's, which vary by +-10 % on this machine). The default input is 3.2M
  events, about 14 s for one worker: the mock keeps a partition's newest bytes only (about
  3.8M of these small records: value ``[page, amount]``, event time in the Kafka timestamp,
  lz4), and the driver checks that it still holds every event. What a second worker costs
  once, the rebalance it causes (it idles about 0.7 s while the first worker hands over half
  the tasks), is a small part of that; at 600k events it was a quarter of the run and the
  speedup 1.2-1.4;
* ``rebalance_pause_ms_p50``: how long a moved task is unavailable: from the moment its
  old owner starts its hand-over (final checkpoint) to the moment the new owner has
  restored it (median over the tasks moved when the second worker joins);
* ``task_restore_s_p50``: restore time of a moved task (median);
* ``lost`` / ``duplicated``: window results missing or repeated against the input
  (both must be 0), for both runs.

Run ``python benchmarks/scale_out.py [--quick] [--json]``.
"""

from __future__ import annotations

import collections
import os
import random
import re
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import ROOT, parser, peak_rss_mb, percentile, report

PARTITIONS = 8
PAGES = 4_000
WINDOW_MS = 1_000


# -- the job (run by each worker process) ---------------------------------------------------------------
def page_of(r: list[Any]) -> int:
    return int(r[0])


def window_line(page: int, window: Any, r: dict[str, int]) -> str:
    return f"{page},{window.start},{r['n']},{r['total']}"


def worker(bootstrap: str, work: str, records: int) -> None:
    import streamcore as sc
    from streamcore.aggregates import Count, Sum, combine
    from streamcore.serde import msgpack_loads
    from streamcore.sinks.file import FileSink
    from streamcore.windowing import TumblingEventTimeWindows

    env = sc.StreamEnvironment(state_backend="rocksdb", state_dir=tempfile.mkdtemp(prefix="sc-bench-"))
    env.enable_checkpointing(Path(work) / "chk", every_records=max(5_000, records // 40))
    env.takeover_s = 5.0
    env.initial_assignment_delay_s = float(os.environ.get("SC_BENCH_INITIAL_DELAY_S", "0"))
    src = sc.KafkaSource(
        bootstrap,
        "events",
        f"scale-out-{Path(work).name}",  # a fresh group per run
        value_deserializer=msgpack_loads,
        stopping_offsets="latest",
        assignment="group",
        config={"fetch.wait.max.ms": 10},
    )
    (
        env.from_source(src, watermarks=sc.WatermarkStrategy.for_bounded_out_of_orderness(200), name="events")
        .key_by(page_of, partitioned=True)
        .window(TumblingEventTimeWindows.of(WINDOW_MS))
        .aggregate(
            combine(n=Count(), total=Sum(lambda r: r[1])),
            lambda k, w, r: f"{k},{w.start},{r['n']},{r['total']}",
        )
        .uid("per-page")
        .sink_to(FileSink(Path(work) / "out"))
        .uid("files")
    )
    handle = env.execute_async("scale-out")
    print(f"RUNNING {time.time():.3f}", flush=True)
    result = handle.wait()
    print(f"DONE {result.records_read} {time.time():.3f}", flush=True)


# -- the driver -----------------------------------------------------------------------------------------
def produce(bootstrap: str, n: int) -> dict[tuple[int, int], tuple[int, int]]:
    """Produce ``n`` events partitioned by page; returns the expected (page, window start) -> (count, sum)."""
    from confluent_kafka import Producer

    from streamcore.serde import msgpack_dumps

    rng = random.Random(5)
    p = Producer(
        {
            "bootstrap.servers": bootstrap,
            "linger.ms": 50,
            "batch.num.messages": 100_000,
            "queue.buffering.max.messages": 1_000_000,
            "compression.type": "lz4",
        }
    )
    expected: dict[tuple[int, int], list[int]] = collections.defaultdict(lambda: [0, 0])
    failed: list[int] = []

    def delivered(err: Any, _msg: Any) -> None:
        if err is not None:
            failed[:] = [(failed[0] if failed else 0) + 1]

    for i in range(n):
        page = rng.randrange(PAGES)
        ts = i * 2 + rng.randint(0, 150)
        v = rng.randint(1, 9)
        # Partitioned by page, the event time in the record's Kafka timestamp: small records, so
        # that the mock, which keeps a partition's newest bytes only, holds the whole input.
        p.produce(
            "events",
            msgpack_dumps([page, v]),
            partition=page % PARTITIONS,
            timestamp=ts,
            on_delivery=delivered,
        )
        e = expected[(page, ts - ts % WINDOW_MS)]
        e[0] += 1
        e[1] += v
        if i % 10_000 == 0:
            p.poll(0)
    remaining = p.flush(300)
    if remaining or failed:
        errors = failed[0] if failed else 0
        msg = f"producing the input failed: {remaining:,} events undelivered, {errors:,} delivery errors"
        raise RuntimeError(msg)
    return {k: (c, s) for k, (c, s) in expected.items()}


def check_retained(bootstrap: str, records: int) -> None:
    """Fail unless the mock still holds every event: it drops a partition's oldest message sets
    once the partition passes its size limit, which would make the runs read less than
    ``records`` (and the rates too high)."""
    from confluent_kafka import Consumer, TopicPartition

    consumer = Consumer({"bootstrap.servers": bootstrap, "group.id": "scale-out-bench-check"})
    try:
        marks = [
            consumer.get_watermark_offsets(TopicPartition("events", p), timeout=10) for p in range(PARTITIONS)
        ]
    finally:
        consumer.close()
    held = sum(hi - lo for lo, hi in marks)
    if held != records or any(lo for lo, _ in marks):
        msg = (
            f"the mock cluster holds {held:,} of {records:,} events (low offsets {[lo for lo, _ in marks]}): "
            "it dropped the oldest message sets of full partitions; use fewer --records"
        )
        raise RuntimeError(msg)


_LOG = re.compile(r"^(?P<t>\d+\.\d+) .*job 'scale-out' (?P<what>started|handed) task (?P<task>\d+)")
_RESTORE = re.compile(r"started task \d+ \(restore (?P<s>[\d.]+) s\)")


def run_workers(bootstrap: str, work: Path, records: int, workers: int, stagger_s: float) -> dict[str, Any]:
    env = dict(os.environ, PYTHONPATH=str(ROOT), STREAMCORE_BENCH_LOG="1")
    cmd = [sys.executable, __file__, "--worker", bootstrap, str(work), str(records)]
    procs = []
    for i in range(workers):
        if i:
            time.sleep(stagger_s)
        procs.append(
            subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env)
        )
    outs = [p.communicate(timeout=900) for p in procs]
    began, ended = [], []
    for p, (out, err) in zip(procs, outs, strict=True):
        if p.returncode != 0 or "DONE" not in out:
            raise RuntimeError(f"a worker failed (exit {p.returncode}): {err[-3000:]}")
        for line in out.splitlines():
            if line.startswith("RUNNING"):
                began.append(float(line.split()[1]))
            elif line.startswith("DONE"):
                ended.append(float(line.split()[2]))
    elapsed = max(ended) - min(began)
    handed: dict[int, float] = {}
    started: dict[int, list[float]] = collections.defaultdict(list)
    restores = []
    for _, err in outs:
        for line in err.splitlines():
            m = _LOG.match(line)
            if m:
                t, task = float(m["t"]), int(m["task"])
                if m["what"] == "handed":
                    handed[task] = t
                else:
                    started[task].append(t)
                    r = _RESTORE.search(line)
                    if r and float(r["s"]) > 0:
                        restores.append(float(r["s"]))
    pauses = sorted(
        (min(t for t in started[task] if t >= h) - h) * 1000
        for task, h in handed.items()
        if any(t >= h for t in started[task])
    )
    return {"elapsed": elapsed, "pauses_ms": pauses, "restores_s": sorted(restores)}


def check_output(out: Path, expected: dict[tuple[int, int], tuple[int, int]]) -> tuple[int, int]:
    lines = [line for f in sorted(out.glob("part-*")) for line in f.read_text().splitlines()]
    seen = collections.Counter(lines)
    want = {f"{p},{w},{c},{s}" for (p, w), (c, s) in expected.items()}
    lost = len(want - seen.keys())
    duplicated = sum(c - 1 for c in seen.values()) + len(set(seen) - want)
    return lost, duplicated


def main() -> dict[str, Any]:
    p = parser(__doc__.splitlines()[0])
    p.add_argument(
        "--records", type=int, default=None, help="events (default 3,200,000; 30,000 with --quick)"
    )
    p.add_argument(
        "--rounds",
        type=int,
        default=None,
        help="1-worker and 2-worker runs, alternately (default 3; 1 with --quick)",
    )
    args = p.parse_args()
    args.rounds = args.rounds or (1 if args.quick else 3)
    from streamcore.testing.kafka_mock import MockKafkaCluster

    records = args.records or (30_000 if args.quick else 3_200_000)
    with MockKafkaCluster(num_brokers=3) as cluster:
        cluster.set_group_timing(session_timeout_ms=3_000, heartbeat_interval_ms=300)
        cluster.create_topic("events", PARTITIONS)
        expected = produce(cluster.bootstrap_servers, records)
        check_retained(cluster.bootstrap_servers, records)
        elapsed: dict[int, list[float]] = {1: [], 2: []}
        pauses_2: list[float] = []
        restores_2: list[float] = []
        lost = duplicated = 0
        for rnd in range(args.rounds):
            for workers in (1, 2):  # alternately, so that drifts of the machine hit both alike
                with tempfile.TemporaryDirectory(prefix=f"sc-scale-{workers}-") as tmp:
                    work = Path(tmp)
                    run = run_workers(cluster.bootstrap_servers, work, records, workers, 0.0)
                    elapsed[workers].append(run["elapsed"])
                    if workers == 2:
                        pauses_2 += run["pauses_ms"]
                        restores_2 += run["restores_s"]
                    lo, du = check_output(work / "out", expected)
                    print(
                        f"  round {rnd}, {workers} worker(s): {records / run['elapsed']:,.0f} rec/s, "
                        f"lost {lo:,}, duplicated {du:,}",
                        file=sys.stderr,
                    )
                    lost += lo
                    duplicated += du
        # The rebalance a second worker causes: it joins while the first runs every task.
        with tempfile.TemporaryDirectory(prefix="sc-scale-join-") as tmp:
            moved = run_workers(cluster.bootstrap_servers, Path(tmp), records, 2, 1.0 if args.quick else 3.0)
            lo, du = check_output(Path(tmp) / "out", expected)
            print(f"  2 workers, the second joining late: lost {lo:,}, duplicated {du:,}", file=sys.stderr)
            lost += lo
            duplicated += du
    rps_1 = records / statistics.median(elapsed[1])
    rps_2 = records / statistics.median(elapsed[2])
    speedups = [e1 / e2 for e1, e2 in zip(elapsed[1], elapsed[2], strict=True)]
    pauses = moved["pauses_ms"] or pauses_2
    restores = moved["restores_s"] or restores_2
    figures = {
        "records": records,
        "partitions": PARTITIONS,
        "rps_1": round(rps_1),
        "rps_2": round(rps_2),
        "speedup_2_workers": round(rps_2 / rps_1, 3),
        "speedup_rounds": [round(x, 3) for x in speedups],
        "rounds": args.rounds,
        "rebalance_pause_ms_p50": round(percentile(pauses, 50), 1),
        "rebalance_pause_ms_max": round(max(pauses, default=0.0), 1),
        "tasks_moved": len(pauses),
        "task_restore_s_p50": round(percentile(restores, 50), 4),
        "lost": lost,
        "duplicated": duplicated,
        "peak_rss_mb": round(peak_rss_mb(), 1),
    }
    print(f"scale-out: {records:,} events on {PARTITIONS} partitions, 1 worker vs 2 (processes)")
    report(figures, args.json)
    return figures


if __name__ == "__main__":
    if len(sys.argv) > 1 and sys.argv[1] == "--worker":
        import logging

        logging.basicConfig(level=logging.INFO, format="%(created).3f %(name)s %(message)s")
        worker(sys.argv[2], sys.argv[3], int(sys.argv[4]))
    else:
        main()
