"""Kafka figures in the metrics: source_lag_records per split, datasets in lineage (mock cluster)."""

from __future__ import annotations

import pytest
from confluent_kafka import Producer

import streamcore as sc
from streamcore.testing.kafka_mock import MockKafkaCluster
from tests.observe.jobs import get_json, wait_for

pytestmark = pytest.mark.kafka


def test_source_lag_records_per_partition(tmp_path):
    with MockKafkaCluster(num_brokers=1) as cluster:
        cluster.create_topic("clicks", partitions=2)
        producer = Producer({"bootstrap.servers": cluster.bootstrap_servers})
        for i in range(2_000):
            producer.produce("clicks", value=str(i).encode(), partition=i % 2)
        producer.flush(10)
        del producer  # before the cluster goes, or librdkafka logs its reconnects to stderr
        env = sc.StreamEnvironment(batch_size=50)
        source = sc.KafkaSource(cluster.bootstrap_servers, "clicks", value_deserializer=bytes.decode)
        env.from_source(source, name="clicks").map(int).sink_to(lambda v: None)
        env.enable_metrics(port=0)
        handle = env.execute_async("kafka-lag")
        try:
            url = handle.dashboard_url

            def lags():
                snap = get_json(url + "api/v1/vertices")
                found = [v for v in snap["vertices"] if v["uid"] == "clicks"]
                if not found:
                    return None
                clicks = found[0]["tasks"]["0"]
                read = clicks["records_out"]
                splits = clicks["splits"]
                if read >= 2_000 and all(s["lag_records"] is not None for s in splits.values()):
                    return splits
                return None

            splits = wait_for("all records read", lags)
            assert set(splits) == {"clicks-0", "clicks-1"}
            assert all(s["lag_records"] == 0 for s in splits.values())
            text = get_json(url + "api/v1/job")
            assert text["records_read"] >= 2_000
        finally:
            handle.stop()
