"""The jobs of the scale-out tests, run as worker processes (or in-process as the oracle).

Run as a script: ``worker.py BOOTSTRAP WORKDIR JOB MODE [--throttle N] [--takeover-s S]``
prints ``RUNNING`` once the job is built, ``DONE <records read>`` at the end, and stops
with a final hand-over of its tasks on SIGTERM. ``JOB`` is:

* ``window``: ``events`` records spread over the partitions round robin, keyed by page
  (a repartition topic), tumbling 1-second event-time windows: ``page,start,count,sum``;
* ``join``: ``clicks`` and ``imps`` partitioned by ad (``key_by(partitioned=True)``), an
  interval join of each click with the impressions of the 2 seconds before it.

``MODE`` is ``group`` (a consumer-group task set) or ``static`` (one process reads all).
"""

from __future__ import annotations

import argparse
import signal
import sys
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[2]
GROUP = "scaleout"


def page_of(r: dict[str, Any]) -> int:
    return int(r["page"])


def ad_of(r: dict[str, Any]) -> int:
    return int(r["ad"])


def build(env: Any, bootstrap: str, job: str, mode: str, out: Path, throttle: int) -> None:
    import streamcore as sc
    from streamcore.aggregates import Count, Sum, combine
    from streamcore.serde import json_loads
    from streamcore.sinks.file import FileSink
    from streamcore.windowing import TumblingEventTimeWindows

    wm = sc.WatermarkStrategy.for_bounded_out_of_orderness(300)

    def source(topics: list[str], name: str) -> Any:
        src = sc.KafkaSource(
            bootstrap,
            topics,
            GROUP,
            value_deserializer=json_loads,
            stopping_offsets="latest",
            timestamp=lambda r: r["ts"],
            assignment=mode,
            config={"fetch.wait.max.ms": 10},
        )
        return env.from_source(src, watermarks=wm, name=name)

    def slow(r: Any) -> Any:
        if throttle and int(r.get("i", 0)) % throttle == 0:
            time.sleep(0.002)
        return r

    if job == "window":
        events = source(["events"], "events").map(slow).uid("slow")
        (
            events.key_by(page_of)
            .window(TumblingEventTimeWindows.of(1000))
            .aggregate(
                combine(n=Count(), total=Sum("v")),
                lambda page, w, r: f"{page},{w.start},{r['n']},{r['total']}",
            )
            .uid("per-page")
            .sink_to(FileSink(out))
            .uid("files")
        )
    elif job == "join":
        clicks = source(["clicks"], "clicks").map(slow).uid("slow")
        imps = source(["imps"], "imps")
        (
            clicks.key_by(ad_of, partitioned=True)
            .interval_join(imps.key_by(ad_of, partitioned=True))
            .between(-2000, 0)
            .process(lambda c, i, ctx: f"{c['id']},{i['id']},{ctx.timestamp()}")
            .uid("join")
            .sink_to(FileSink(out))
            .uid("files")
        )
    else:  # pragma: no cover
        raise ValueError(job)


def main() -> None:
    p = argparse.ArgumentParser()
    p.add_argument("bootstrap")
    p.add_argument("work")
    p.add_argument("job", choices=["window", "join"])
    p.add_argument("mode", choices=["group", "static"])
    p.add_argument("--throttle", type=int, default=0, help="sleep 2 ms every N records (0: never)")
    p.add_argument("--takeover-s", type=float, default=3.0)
    p.add_argument("--backend", default="rocksdb")
    p.add_argument("--checkpoints", default=None, help="checkpoint URL (default: WORKDIR/chk)")
    p.add_argument("--s3-endpoint", default=None, help="endpoint of an S3 API for --checkpoints s3://...")
    args = p.parse_args()
    import streamcore as sc

    work = Path(args.work)
    env = sc.StreamEnvironment(state_backend=args.backend, state_dir=work / "state" / str(time.time_ns()))
    options = None
    if args.s3_endpoint:
        endpoint = {"endpoint_url": args.s3_endpoint, "region_name": "eu-west-1"}
        options = {"key": "testing", "secret": "testing", "client_kwargs": endpoint}
    env.enable_checkpointing(args.checkpoints or work / "chk", every_records=300, storage_options=options)
    env.takeover_s = args.takeover_s
    build(env, args.bootstrap, args.job, args.mode, work / "out", args.throttle)
    handle = env.execute_async(f"scaleout-{args.job}")
    signal.signal(signal.SIGTERM, lambda *_: handle.stop())
    print("RUNNING", flush=True)
    result = handle.wait()
    print(f"DONE {result.records_read}", flush=True)


if __name__ == "__main__":
    sys.path.insert(0, str(ROOT))
    main()
