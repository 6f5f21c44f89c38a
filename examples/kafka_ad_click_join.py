"""Ad click attribution from Kafka to Kafka: interval join, checkpoints, rate coordination.

An ad server's impression log and click log are produced into two Kafka topics (keyed
by ad, the record timestamp is the event time). The job reads both backlogs with one
split per partition and per-partition watermarks, joins every click with the
impressions of its ad in the 20 minutes before, and writes the pairs to a third topic
with one Kafka transaction per checkpoint. Both sources are in one watermark alignment
group: clicks are five times sparser, so their event time runs ahead while the backlog
is read, and the rate coordinator pauses click partitions (librdkafka ``pause``) until
the impressions catch up, instead of buffering clicks in the join.

Without a broker it starts librdkafka's mock cluster in this process; with
``STREAMCORE_KAFKA_BOOTSTRAP=host:port`` it uses that cluster (the topics are created
through the Admin API there).

    python examples/kafka_ad_click_join.py [--impressions N] [--clicks N]

The job itself is :func:`build_job`, so the same file runs as several worker
processes of one consumer group (each worker runs the partitions the group gives it;
see the README's "Scaling out"), once the topics exist and hold data:

    STREAMCORE_KAFKA_BOOTSTRAP=host:port STREAMCORE_TOPIC_SUFFIX=<suffix> STREAMCORE_ASSIGNMENT=group \
        streamcore run examples/kafka_ad_click_join.py --workers 4 --checkpoints /shared/ad-join \
        --state-backend rocksdb
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import streamcore as sc
from streamcore.serde import json_dumps, json_loads
from streamcore.sinks.kafka import KafkaSink
from streamcore.sources.kafka import KafkaSource
from streamcore.time import minutes, seconds

START = 1_700_000_000_000  # event time of the first impression (ms since the epoch)
IMPRESSION_EVERY = 90  # ms of event time between two impressions
PARTITIONS = 4
TOPICS = ("impressions", "clicks", "ad-clicks-joined")
# The mock cluster holds an empty fetch for fetch.wait.max.ms; keep it short.
CONSUMER = {"fetch.wait.max.ms": 10}


def _unit(n: int, salt: int) -> float:
    """A deterministic pseudo-random number in [0, 1) for record ``n``."""
    return (((n * 2_654_435_761) ^ (salt * 40_503)) * 2_246_822_519 & 0xFFFF_FFFF) / 2**32


def impressions(n: int, n_ads: int) -> list[dict[str, Any]]:
    return [
        {
            "imp_id": i,
            "ad_id": int(n_ads * _unit(i, 1) ** 1.5),
            "ts": START + i * IMPRESSION_EVERY - int(_unit(i, 2) * seconds(5)),
            "slot": "feed" if _unit(i, 3) < 0.7 else "search",
        }
        for i in range(n)
    ]


def clicks(n: int, span_ms: int, imps: list[dict[str, Any]]) -> list[dict[str, Any]]:
    out = []
    for c in range(n):
        ts = START + c * span_ms // n
        seen = (ts - START - int(_unit(c, 4) * minutes(25))) // IMPRESSION_EVERY
        ad = imps[seen]["ad_id"] if 0 <= seen < len(imps) and _unit(c, 5) < 0.9 else int(1_000 * _unit(c, 6))
        out.append({"click_id": c, "ad_id": ad, "ts": ts - int(_unit(c, 7) * seconds(5))})
    return out


def produce(bootstrap: str, topic: str, records: list[dict[str, Any]]) -> None:
    from confluent_kafka import Producer

    producer = Producer({"bootstrap.servers": bootstrap, "linger.ms": 5})
    try:
        for i, r in enumerate(records):
            producer.produce(topic, json_dumps(r), str(r["ad_id"]).encode(), timestamp=r["ts"])
            if i % 10_000 == 0:
                producer.poll(0)
        if producer.flush(30):
            raise RuntimeError(f"could not deliver every record to {topic}")
    finally:
        producer.close()


def topic_names(suffix: str) -> dict[str, str]:
    """The topics of one run (``<topic>-<suffix>``) and the sink's commit-marker topic."""
    names = {t: f"{t}-{suffix}" if suffix else t for t in TOPICS}
    # The exactly-once sink's commit markers: one small record per transaction, one partition.
    names["commits"] = f"{names['ad-clicks-joined']}.streamcore-commits"
    return names


def create_topics(bootstrap: str, cluster: Any, suffix: str) -> dict[str, str]:
    names = topic_names(suffix)
    partitions = {name: 1 if key == "commits" else PARTITIONS for key, name in names.items()}
    if cluster is not None:
        for name, count in partitions.items():
            cluster.create_topic(name, count)
        return names
    from confluent_kafka.admin import AdminClient, NewTopic

    admin = AdminClient({"bootstrap.servers": bootstrap})
    for future in admin.create_topics([NewTopic(n, count, 1) for n, count in partitions.items()]).values():
        future.result(30)
    return names


def count_committed(bootstrap: str, topic: str) -> int:
    """Records of ``topic`` a read_committed consumer sees (the mock shows aborted ones too)."""
    env = sc.StreamEnvironment()
    src = KafkaSource(
        bootstrap,
        topic,
        "kafka-ad-click-join-check",
        stopping_offsets="latest",
        config={**CONSUMER, "isolation.level": "read_committed"},
    )
    return len(env.from_source(src, name="check").execute_and_collect("check"))


class Attribute(sc.ProcessJoinFunction):
    """One attributed (click, impression) pair per match."""

    def process_element(self, click: dict[str, Any], imp: dict[str, Any], ctx: Any) -> Any:
        yield {
            "click_id": click["click_id"],
            "imp_id": imp["imp_id"],
            "ad_id": click["ad_id"],
            "slot": imp["slot"],
            "delay_s": (ctx.get_left_timestamp() - ctx.get_right_timestamp()) / 1000,
        }


def build(
    env: sc.StreamEnvironment, bootstrap: str, names: dict[str, str], assignment: str = "static"
) -> KafkaSink:
    """The job on ``env``: both backlogs, the interval join, exactly-once into Kafka; returns the sink.

    With ``assignment="group"`` the job runs as one task per partition (the topics are keyed
    by ad, so every ad's clicks and impressions are in the same partition of each:
    ``key_by(partitioned=True)``, no repartition topic), assigned by consumer group
    ``kafka-ad-click-join`` to whichever processes run it.
    """
    env.set_source_rate_coordination()

    def aligned(bound: int) -> sc.WatermarkStrategy:
        return (
            sc.WatermarkStrategy.for_bounded_out_of_orderness(bound)
            .with_idleness(seconds(2))
            .with_watermark_alignment("ads", max_drift=minutes(5), update_interval=50)
        )

    def kafka(topic: str) -> KafkaSource:
        return KafkaSource(
            bootstrap,
            topic,
            "kafka-ad-click-join",
            value_deserializer=json_loads,
            stopping_offsets="latest",  # a backfill: read the backlog, then finish
            commit_offsets=assignment == "static",  # for lag monitoring only
            config=CONSUMER,
            assignment=assignment,
        )

    imps = env.from_source(kafka(names["impressions"]), watermarks=aligned(seconds(5)), name="impressions")
    clks = env.from_source(kafka(names["clicks"]), watermarks=aligned(seconds(5)), name="clicks")
    sink = KafkaSink(
        bootstrap,
        names["ad-clicks-joined"],
        key=lambda r: r["ad_id"],
        delivery="exactly_once",
        marker_topic=names["commits"],
    )
    (
        clks.uid("clicks")
        .key_by(lambda c: c["ad_id"], partitioned=True)
        .interval_join(imps.uid("impressions").key_by(lambda i: i["ad_id"], partitioned=True))
        .between(-minutes(20), 0)
        .process(Attribute())
        .uid("click-impression-join")
        .sink_to(sink)
        .uid("joined-to-kafka")
    )
    return sink


def build_job(env: sc.StreamEnvironment) -> str:
    """``streamcore run`` entry point: the cluster and topics come from the environment.

    ``STREAMCORE_KAFKA_BOOTSTRAP`` (required), ``STREAMCORE_TOPIC_SUFFIX`` (the topics'
    suffix, as :func:`create_topics` named them) and ``STREAMCORE_ASSIGNMENT`` (``static``
    or ``group``, default ``group``).
    """
    bootstrap = os.environ.get("STREAMCORE_KAFKA_BOOTSTRAP")
    if not bootstrap:
        raise SystemExit("set STREAMCORE_KAFKA_BOOTSTRAP=host:port (and STREAMCORE_TOPIC_SUFFIX)")
    suffix = os.environ.get("STREAMCORE_TOPIC_SUFFIX", "")
    names = topic_names(suffix)
    env.batch_size = 500
    build(env, bootstrap, names, os.environ.get("STREAMCORE_ASSIGNMENT", "group"))
    return "kafka-ad-click-join"


def run_job(bootstrap: str, names: dict[str, str], work: Path) -> tuple[Any, KafkaSink]:
    env = sc.StreamEnvironment(state_backend="rocksdb", state_dir=work / "state", batch_size=500)
    env.enable_checkpointing(work / "checkpoints", every_records=10_000)
    sink = build(env, bootstrap, names)
    return env.execute("kafka-ad-click-join", restore_from="latest"), sink


def main(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--impressions", type=int, default=40_000)
    p.add_argument("--clicks", type=int, default=8_000)
    p.add_argument("--ads", type=int, default=5_000)
    args = p.parse_args(argv)

    cluster = None
    bootstrap = os.environ.get("STREAMCORE_KAFKA_BOOTSTRAP")
    if not bootstrap:
        from streamcore.testing.kafka_mock import MockKafkaCluster

        cluster = MockKafkaCluster(num_brokers=3)
        bootstrap = cluster.bootstrap_servers
    try:
        names = create_topics(bootstrap, cluster, suffix=f"{int(time.time())}")
        imps = impressions(args.impressions, args.ads)
        clks = clicks(args.clicks, args.impressions * IMPRESSION_EVERY, imps)
        t0 = time.perf_counter()
        produce(bootstrap, names["impressions"], imps)
        produce(bootstrap, names["clicks"], clks)
        produced_s = time.perf_counter() - t0
        with tempfile.TemporaryDirectory(prefix="streamcore-kafka-demo-") as tmp:
            start = time.perf_counter()
            result, sink = run_job(bootstrap, names, Path(tmp))
            elapsed = time.perf_counter() - start
        written = count_committed(bootstrap, names["ad-clicks-joined"])
    finally:
        if cluster is not None:
            cluster.close()

    m = result.metrics
    join = m["click-impression-join"]
    coord = m.get("rate_coordinator", {})
    where = "librdkafka mock cluster" if cluster is not None else bootstrap
    print(f"ad click attribution, Kafka to Kafka ({where}, {PARTITIONS} partitions per topic)")
    print(f"  produced {len(imps):,} impressions and {len(clks):,} clicks in {produced_s:.2f} s\n")
    print("  per partition       records    lag  paused ms       watermark")
    for source in ("impressions", "clicks"):
        for split, s in m[source]["splits"].items():
            name = f"{source}-{split.rsplit('-', 1)[1]}"  # without the run's topic suffix
            print(
                f"    {name:<17} {s['records']:>7,} {s['lag']:>6} {s['paused_ms']:>10,}  {s['watermark']:>14}"
            )
    print()
    print(f"  joined pairs written       {sink.records_out:>10,}  (exactly once, {written:,} in the topic)")
    print(f"  probes / matches           {join['probes']:>10,} / {join['matches']:,}")
    print(f"  late records dropped       {sum(join['late_per_side']):>10,}")
    print(f"  checkpoints                {len(result.checkpoints):>10,}")
    print(f"  transactions committed     {sink.committed:>10,}  ({sink.commit_ms_total:.1f} ms in commits)")
    print(f"  rate coordinator pauses    {coord.get('pauses', 0):>10,}  (peak drift {peak_drift(coord)} ms)")
    print(f"  time                       {elapsed:>10.2f} s")
    print(f"  throughput                 {result.records_read / elapsed:>10,.0f} records/s")


def peak_drift(coord: dict[str, Any]) -> int:
    return max((g.get("peak_drift", 0) for g in coord.get("groups", {}).values()), default=0)


if __name__ == "__main__":
    main()
