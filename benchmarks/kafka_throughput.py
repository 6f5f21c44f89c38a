"""Kafka source -> map -> Kafka sink against librdkafka's mock cluster, beside a raw loop.

Both sides read the same keyed JSON records (about 100 bytes) from an 8-partition
topic, add a field to each, and write them, keyed and with their timestamps, to a
fresh 8-partition topic; both finish with every record acknowledged.

* raw: one confluent-kafka Consumer (``assign`` + ``consume(1000, 0.1)``) and one
  Producer (``produce`` + ``poll(0)``, ``flush`` at the end): the floor of Python work.
* engine: ``KafkaSource`` (bounded, JSON) -> ``map`` -> ``KafkaSink`` (at least once)
  with per-partition event-time watermarks.

``ratio_to_raw`` = engine records/s / raw records/s (target >= 0.6). The mock keeps about
5 MiB per partition, so the input stays below that and every run writes a new topic.
``STREAMCORE_KAFKA_BOOTSTRAP`` points it at a real cluster instead (topics must exist).

    python benchmarks/kafka_throughput.py [--quick] [--json] [--records N] [--runs N]
"""

from __future__ import annotations

import json
import os
import time

from common import parser, peak_rss_mb, report

import streamcore as sc
from streamcore.sinks.kafka import KafkaSink
from streamcore.sources.kafka import KafkaSource

PARTITIONS = 8
CONSUMER = {"fetch.wait.max.ms": 10}
PRODUCER = {"linger.ms": 5, "queue.buffering.max.messages": 1_000_000}


def enrich(record):
    record["seen"] = True
    return record


def fill(bootstrap, topic, n):
    from confluent_kafka import Producer

    producer = Producer({"bootstrap.servers": bootstrap, **PRODUCER})
    pad = "x" * 60
    for i in range(n):
        value = json.dumps({"k": f"user-{i % 1000}", "i": i, "pad": pad}).encode()
        producer.produce(
            topic, value, f"user-{i % 1000}".encode(), partition=i % PARTITIONS, timestamp=1_000 + i
        )
        if i % 10_000 == 0:
            producer.poll(0)
    producer.flush(30)
    producer.close()


def raw_loop(bootstrap, topic, out, n):
    from confluent_kafka import Consumer, Producer, TopicPartition

    consumer = Consumer(
        {"bootstrap.servers": bootstrap, "group.id": "bench-raw", "enable.auto.commit": False, **CONSUMER}
    )
    producer = Producer({"bootstrap.servers": bootstrap, **PRODUCER})
    start = time.perf_counter()
    consumer.assign([TopicPartition(topic, p, 0) for p in range(PARTITIONS)])
    loads, dumps = json.loads, json.dumps
    produce, poll = producer.produce, producer.poll
    done = 0
    while done < n:
        msgs = consumer.consume(1000, 0.1)
        for m in msgs:
            if m.error() is not None:
                continue
            record = enrich(loads(m.value()))
            produce(out, dumps(record, separators=(",", ":")).encode(), m.key(), timestamp=m.timestamp()[1])
        done += len(msgs)
        poll(0)
    producer.flush(30)
    elapsed = time.perf_counter() - start
    consumer.close()
    producer.close()
    return elapsed, done


def engine(bootstrap, topic, out, n):
    env = sc.StreamEnvironment()
    src = KafkaSource(
        bootstrap,
        topic,
        "bench-engine",
        value_deserializer=sc.serde.json_loads,
        stopping_offsets="latest",
        config=CONSUMER,
    )
    sink = KafkaSink(bootstrap, out, key=lambda r: r["k"], config=PRODUCER)
    wm = sc.WatermarkStrategy.for_monotonous_timestamps()
    env.from_source(src, watermarks=wm, name="in").map(enrich).sink_to(sink)
    start = time.perf_counter()
    result = env.execute("kafka-throughput")
    elapsed = time.perf_counter() - start
    assert result.records_read == n, (result.records_read, n)
    assert sink.records_out == n
    return elapsed, result.records_read


def main():
    p = parser(__doc__.splitlines()[0])
    p.add_argument("--records", type=int, default=None, help="records per run (default 200k; quick 40k)")
    p.add_argument("--runs", type=int, default=None, help="alternating runs of each side (best is kept)")
    args = p.parse_args()
    n = args.records or (40_000 if args.quick else 200_000)
    runs = args.runs or (1 if args.quick else 3)

    cluster = None
    bootstrap = os.environ.get("STREAMCORE_KAFKA_BOOTSTRAP")
    if not bootstrap:
        from streamcore.testing.kafka_mock import MockKafkaCluster

        cluster = MockKafkaCluster(num_brokers=3)
        bootstrap = cluster.bootstrap_servers
        cluster.create_topic("bench-in", PARTITIONS)
        for i in range(runs):
            cluster.create_topic(f"bench-out-raw-{i}", PARTITIONS)
            cluster.create_topic(f"bench-out-engine-{i}", PARTITIONS)
    try:
        fill(bootstrap, "bench-in", n)
        raw_t, eng_t = [], []
        for i in range(runs):
            t, done = raw_loop(bootstrap, "bench-in", f"bench-out-raw-{i}", n)
            assert done == n, (done, n)
            raw_t.append(t)
            t, _ = engine(bootstrap, "bench-in", f"bench-out-engine-{i}", n)
            eng_t.append(t)
    finally:
        if cluster is not None:
            cluster.close()
    raw_rps = n / min(raw_t)
    engine_rps = n / min(eng_t)
    figures = {
        "records": n,
        "partitions": PARTITIONS,
        "runs": runs,
        "raw_rps": raw_rps,
        "engine_rps": engine_rps,
        "ratio_to_raw": engine_rps / raw_rps,
        "target_ratio": 0.6,
        "cluster": "real" if cluster is None else "mock",
        "peak_rss_mb": peak_rss_mb(),
    }
    print("kafka throughput (records/s, source -> map -> sink; ratio = engine / raw loop, same run)")
    report(figures, args.json)


if __name__ == "__main__":
    main()
