"""Fixtures of the sink tests: a mock Kafka cluster, sinks closed before it, real-broker topics."""

from __future__ import annotations

import uuid
from collections.abc import Callable, Iterator

import pytest

from streamcore.sinks.kafka import KafkaSink
from streamcore.testing.kafka_mock import MockKafkaCluster
from tests.sinks.kafka_support import REAL_BOOTSTRAP


@pytest.fixture
def cluster() -> Iterator[MockKafkaCluster]:
    with MockKafkaCluster(num_brokers=3) as mock:
        yield mock


@pytest.fixture
def sinks() -> Iterator[list[KafkaSink]]:
    """Sinks opened by a test, closed before the cluster."""
    made: list[KafkaSink] = []
    yield made
    for s in made:
        s.close()


@pytest.fixture
def real_topics() -> Iterator[Callable[[int], str]]:
    """``make(partitions) -> name``: fresh topics on the real broker, deleted after the test."""
    assert REAL_BOOTSTRAP
    from confluent_kafka.admin import AdminClient, NewTopic

    admin = AdminClient({"bootstrap.servers": REAL_BOOTSTRAP})
    created: list[str] = []

    def make(partitions: int = 2) -> str:
        name = f"streamcore-test-{uuid.uuid4().hex[:10]}"
        futures = admin.create_topics([NewTopic(name, partitions, 1)])
        futures[name].result(30)
        created.append(name)
        return name

    yield make
    if created:
        for f in admin.delete_topics(created).values():
            try:
                f.result(30)
            except Exception:
                pass
