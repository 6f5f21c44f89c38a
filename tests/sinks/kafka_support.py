"""Helpers shared by the KafkaSink tests: reading a topic back, building sinks, real-broker switches."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pytest

from streamcore.sinks.kafka import KafkaSink
from streamcore.testing.kafka_mock import MockKafkaCluster

FAST = {"fetch.wait.max.ms": 10, "reconnect.backoff.max.ms": 200}
ROOT = Path(__file__).resolve().parents[2]
REAL_BOOTSTRAP = os.environ.get("STREAMCORE_KAFKA_BOOTSTRAP")
needs_real_broker = pytest.mark.skipif(
    not REAL_BOOTSTRAP,
    reason=(
        "needs a real Kafka broker: librdkafka's mock cluster shows aborted transactions to read_committed "
        "consumers; set STREAMCORE_KAFKA_BOOTSTRAP=host:port to run it"
    ),
)


def read_all(bootstrap: str, topic: str, partitions: int, isolation: str = "read_uncommitted") -> list[Any]:
    """Every record of ``topic`` up to its current end, as confluent-kafka Messages."""
    import confluent_kafka

    TopicPartition = confluent_kafka.TopicPartition
    consumer = confluent_kafka.Consumer(
        {
            "bootstrap.servers": bootstrap,
            "group.id": "sink-tests",
            "enable.auto.commit": False,
            "isolation.level": isolation,
            **FAST,
        }
    )
    try:
        marks = {
            p: consumer.get_watermark_offsets(TopicPartition(topic, p), timeout=10) for p in range(partitions)
        }
        # Empty partitions are never fetched, so their position stays unknown: skip them.
        tps = [TopicPartition(topic, p) for p, (low, high) in marks.items() if high > low]
        consumer.assign([TopicPartition(topic, tp.partition, marks[tp.partition][0]) for tp in tps])
        out: list[Any] = []
        deadline = time.monotonic() + 15
        while tps and time.monotonic() < deadline:
            positions = consumer.position(tps)
            if all(tp.offset >= marks[tp.partition][1] for tp in positions):
                break
            out.extend(m for m in consumer.consume(500, 0.05) if m.error() is None)
        return out
    finally:
        consumer.close()


def sink(cluster: MockKafkaCluster, topic: str = "out", **kw: Any) -> KafkaSink:
    """A KafkaSink writing ``topic`` of the mock ``cluster``."""
    return KafkaSink(cluster.bootstrap_servers, topic, **kw)


def run_twice(
    script_text: str, bootstrap: str, topics: tuple[str, str, str], work: Path, crash_arg: str, n: int = 3_000
) -> tuple[subprocess.CompletedProcess[str], subprocess.CompletedProcess[str]]:
    """Fill ``topics[0]`` (3 partitions) with ``n`` numbers, run a job script that dies, then run it again.

    The script gets ``bootstrap topic_in topic_out marker_topic work_dir arg``; ``arg`` is
    ``crash_arg`` the first time and ``"0"`` (no crash) the second.
    """
    import confluent_kafka

    producer = confluent_kafka.Producer({"bootstrap.servers": bootstrap})
    try:
        for i in range(n):
            producer.produce(topics[0], b"%d" % i, partition=i % 3)
        producer.flush(30)
    finally:
        producer.close()
    script = work / "job.py"
    script.write_text(script_text)
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    args = [sys.executable, str(script), bootstrap, *topics, str(work)]
    crashed = subprocess.run([*args, crash_arg], capture_output=True, text=True, env=env, timeout=120)
    done = subprocess.run([*args, "0"], capture_output=True, text=True, env=env, timeout=120)
    return crashed, done
