"""MockKafkaCluster: a librdkafka mock cluster that real confluent-kafka clients can use.

Every client is closed before its cluster (the fixtures below are torn down in that
order): a consumer that still has to commit offsets blocks for up to
``session.timeout.ms`` (45 s) in ``close()`` once its cluster is gone.
"""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap
import time
from collections import defaultdict
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from streamcore.errors import ConfigurationError, ConnectorError
from streamcore.testing import kafka_mock
from streamcore.testing.kafka_mock import LIBRDKAFKA_ENV_VAR, MockKafkaCluster, find_librdkafka

pytestmark = pytest.mark.kafka

confluent_kafka = pytest.importorskip("confluent_kafka")
Consumer = confluent_kafka.Consumer
Producer = confluent_kafka.Producer
TopicPartition = confluent_kafka.TopicPartition

# Without a short fetch.wait.max.ms the mock holds every empty Fetch for the default
# 500 ms, and requests queued behind it on the same connection wait as long.
CONSUMER_DEFAULTS = {
    "group.id": "streamcore-tests",
    "enable.auto.commit": False,
    "fetch.wait.max.ms": 10,
    "reconnect.backoff.max.ms": 500,
}
PRODUCER_DEFAULTS = {"linger.ms": 5, "reconnect.backoff.max.ms": 500}


@pytest.fixture
def cluster() -> Iterator[MockKafkaCluster]:
    with MockKafkaCluster(num_brokers=3) as mock:
        yield mock


@pytest.fixture
def other_cluster() -> Iterator[MockKafkaCluster]:
    with MockKafkaCluster(num_brokers=1) as mock:
        yield mock


@pytest.fixture
def make_producer(cluster: MockKafkaCluster) -> Iterator[Callable[..., Producer]]:
    producers: list[Producer] = []

    def make(mock: MockKafkaCluster = cluster, **conf: object) -> Producer:
        producer = Producer({"bootstrap.servers": mock.bootstrap_servers, **PRODUCER_DEFAULTS, **conf})
        producers.append(producer)
        return producer

    yield make
    for producer in producers:
        producer.purge()
        producer.close()


@pytest.fixture
def make_consumer(cluster: MockKafkaCluster) -> Iterator[Callable[..., Consumer]]:
    consumers: list[Consumer] = []

    def make(mock: MockKafkaCluster = cluster, **conf: object) -> Consumer:
        consumer = Consumer({"bootstrap.servers": mock.bootstrap_servers, **CONSUMER_DEFAULTS, **conf})
        consumers.append(consumer)
        return consumer

    yield make
    for consumer in consumers:
        consumer.close()


def consume_until(consumer: Consumer, count: int, timeout: float = 10.0) -> list:
    """Consume until ``count`` records arrived or ``timeout`` seconds passed; fail on errors."""
    records: list = []
    deadline = time.monotonic() + timeout
    while len(records) < count and time.monotonic() < deadline:
        for message in consumer.consume(1000, 0.1):
            assert message.error() is None, message.error()
            records.append(message)
    return records


def consume_for(consumer: Consumer, seconds: float) -> list:
    """Consume everything that arrives within ``seconds``."""
    records: list = []
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        records.extend(m for m in consumer.consume(1000, 0.1) if m.error() is None)
    return records


def produce_keyed(producer: Producer, topic: str, count: int, prefix: str = "k") -> None:
    for i in range(count):
        producer.produce(topic, key=f"{prefix}{i % 37}".encode(), value=f"v{i}".encode(), timestamp=1_000 + i)
        producer.poll(0)
    assert producer.flush(10) == 0


def leader_of(producer: Producer, topic: str, partition: int) -> int:
    return producer.list_topics(topic, timeout=5).topics[topic].partitions[partition].leader


def test_cluster_starts_with_one_address_per_broker() -> None:
    with MockKafkaCluster(num_brokers=3) as mock:
        addresses = mock.bootstrap_servers.split(",")
        assert len(addresses) == 3
        assert all(address.startswith("127.0.0.1:") for address in addresses)
        assert len(set(addresses)) == 3
        assert not mock.closed
        assert mock.bootstrap_servers in repr(mock)
    assert mock.closed
    assert "closed" in repr(mock)
    mock.close()  # idempotent


def test_closed_cluster_refuses_operations() -> None:
    mock = MockKafkaCluster(num_brokers=1)
    mock.close()
    with pytest.raises(ConnectorError, match="closed"):
        mock.create_topic("late")
    with pytest.raises(ConnectorError, match="closed"):
        mock.broker_down(1)
    with pytest.raises(ConnectorError, match="closed"):
        mock.push_request_errors(0, [29])


def test_bad_arguments_raise_configuration_error(cluster: MockKafkaCluster) -> None:
    with pytest.raises(ConfigurationError, match="num_brokers"):
        MockKafkaCluster(num_brokers=0)
    with pytest.raises(ConfigurationError, match="partitions"):
        cluster.create_topic("t", partitions=0)
    with pytest.raises(ConfigurationError, match="replication_factor 4 exceeds"):
        cluster.create_topic("t", replication_factor=4)
    with pytest.raises(ConfigurationError, match="topic name"):
        cluster.create_topic("")
    with pytest.raises(ConfigurationError, match="broker_id"):
        cluster.broker_down(4)
    with pytest.raises(ConfigurationError, match="api_key"):
        cluster.push_request_errors(-1, [29])
    with pytest.raises(ConfigurationError, match="error code"):
        cluster.push_request_errors(0, ["TOPIC_AUTHORIZATION_FAILED"])


def test_create_existing_topic_raises_connector_error(cluster: MockKafkaCluster) -> None:
    cluster.create_topic("twice", partitions=2)
    with pytest.raises(ConnectorError, match="already exists"):
        cluster.create_topic("twice", partitions=2)


def test_keyed_records_read_back_with_assign_from_offset_zero(
    cluster: MockKafkaCluster, make_producer, make_consumer
) -> None:
    cluster.create_topic("clicks", partitions=4, replication_factor=3)
    count = 2_000
    produce_keyed(make_producer(), "clicks", count)

    consumer = make_consumer()
    consumer.assign([TopicPartition("clicks", p, 0) for p in range(4)])
    records = consume_until(consumer, count)

    assert sorted(int(m.value()[1:]) for m in records) == list(range(count))
    partitions_of_key = defaultdict(set)
    offsets_of_partition = defaultdict(list)
    for message in records:
        partitions_of_key[message.key()].add(message.partition())
        offsets_of_partition[message.partition()].append(message.offset())
        created = 1_000 + int(message.value()[1:])
        assert message.timestamp() == (confluent_kafka.TIMESTAMP_CREATE_TIME, created)
    assert all(len(partitions) == 1 for partitions in partitions_of_key.values())
    assert len(offsets_of_partition) == 4  # 37 keys spread over every partition
    for offsets in offsets_of_partition.values():
        assert offsets == list(range(len(offsets)))


def test_pushed_request_errors_answer_the_next_requests(cluster: MockKafkaCluster, make_producer) -> None:
    cluster.create_topic("refused", partitions=1)
    producer = make_producer(**{"retries": 0})
    reports: list[str | None] = []

    def report(err: object, _msg: object) -> None:
        reports.append(None if err is None else err.name())  # type: ignore[attr-defined]

    cluster.push_request_errors(0, [confluent_kafka.KafkaError.MSG_SIZE_TOO_LARGE])
    producer.produce("refused", b"first", partition=0, on_delivery=report)
    assert producer.flush(10) == 0
    producer.produce("refused", b"second", partition=0, on_delivery=report)
    assert producer.flush(10) == 0
    assert reports == ["MSG_SIZE_TOO_LARGE", None]  # one error pushed, one request refused


def test_get_watermark_offsets(cluster: MockKafkaCluster, make_producer, make_consumer) -> None:
    cluster.create_topic("wm", partitions=4)
    produce_keyed(make_producer(), "wm", 500)
    consumer = make_consumer()

    live = [consumer.get_watermark_offsets(TopicPartition("wm", p), timeout=5) for p in range(4)]
    assert all(low == 0 for low, _ in live)
    assert sum(high for _, high in live) == 500

    # The cached variant only knows partitions that were fetched.
    unknown = consumer.get_watermark_offsets(TopicPartition("wm", 0), cached=True)
    assert unknown == (confluent_kafka.OFFSET_INVALID, confluent_kafka.OFFSET_INVALID)
    consumer.assign([TopicPartition("wm", p, 0) for p in range(4)])
    assert len(consume_until(consumer, 500)) == 500
    cached = [consumer.get_watermark_offsets(TopicPartition("wm", p), cached=True) for p in range(4)]
    assert cached == live


def test_pause_and_resume_one_partition(cluster: MockKafkaCluster, make_producer, make_consumer) -> None:
    cluster.create_topic("paused", partitions=2)
    producer = make_producer()
    for partition in (0, 1):
        for i in range(50):
            producer.produce("paused", value=f"{partition}-{i}".encode(), partition=partition)
    assert producer.flush(10) == 0

    consumer = make_consumer()
    consumer.assign([TopicPartition("paused", 0, 0), TopicPartition("paused", 1, 0)])
    consumer.pause([TopicPartition("paused", 0)])
    while_paused = consume_for(consumer, 1.0)
    assert {m.partition() for m in while_paused} == {1}
    assert len(while_paused) == 50

    consumer.resume([TopicPartition("paused", 0)])
    after_resume = consume_until(consumer, 50)
    assert [m.offset() for m in after_resume] == list(range(50))
    assert {m.partition() for m in after_resume} == {0}


def test_consumer_recovers_after_broker_down_and_up(
    cluster: MockKafkaCluster, make_producer, make_consumer
) -> None:
    cluster.create_topic("flaky", partitions=3)
    producer = make_producer()
    down = leader_of(producer, "flaky", 0)
    stuck = {p for p in range(3) if leader_of(producer, "flaky", p) == down}
    consumer = make_consumer()
    consumer.assign([TopicPartition("flaky", p, 0) for p in range(3)])
    for partition in range(3):
        producer.produce("flaky", value=b"before", partition=partition)
    assert producer.flush(10) == 0
    assert len(consume_until(consumer, 3)) == 3

    cluster.broker_down(down)
    for partition in range(3):
        producer.produce("flaky", value=b"during", partition=partition)
    producer.flush(1.0)
    during = consume_for(consumer, 1.0)
    assert not stuck & {m.partition() for m in during}

    cluster.broker_up(down)
    assert producer.flush(10) == 0
    recovered = during + consume_until(consumer, 3 - len(during))
    assert sorted(m.partition() for m in recovered) == [0, 1, 2]
    assert {m.value() for m in recovered} == {b"during"}


def test_two_clusters_at_once_are_independent(
    cluster: MockKafkaCluster, other_cluster: MockKafkaCluster, make_producer, make_consumer
) -> None:
    assert set(other_cluster.bootstrap_servers.split(",")).isdisjoint(cluster.bootstrap_servers.split(","))
    for mock, value in ((cluster, b"first"), (other_cluster, b"second")):
        mock.create_topic("same-name")
        producer = make_producer(mock)
        producer.produce("same-name", value=value)
        assert producer.flush(10) == 0

    first = make_consumer(cluster)
    second = make_consumer(other_cluster)
    first.assign([TopicPartition("same-name", 0, 0)])
    second.assign([TopicPartition("same-name", 0, 0)])
    assert [m.value() for m in consume_until(first, 1)] == [b"first"]
    assert [m.value() for m in consume_until(second, 1)] == [b"second"]
    assert consume_for(first, 0.3) == []
    assert consume_for(second, 0.3) == []


def test_cluster_shared_with_a_subprocess(cluster: MockKafkaCluster, make_consumer) -> None:
    cluster.create_topic("from-child", partitions=4)
    child = textwrap.dedent(
        """
        import sys
        from confluent_kafka import Producer

        producer = Producer({"bootstrap.servers": sys.argv[1], "linger.ms": 5})
        for i in range(1000):
            producer.produce("from-child", key=str(i % 10).encode(), value=str(i).encode())
            producer.poll(0)
        sys.exit(producer.flush(10))
        """
    )
    result = subprocess.run(
        [sys.executable, "-c", child, cluster.bootstrap_servers],
        capture_output=True,
        text=True,
        timeout=30,
        check=False,
    )
    assert result.returncode == 0, result.stderr

    consumer = make_consumer()
    consumer.assign([TopicPartition("from-child", p, 0) for p in range(4)])
    records = consume_until(consumer, 1000)
    assert sorted(int(m.value()) for m in records) == list(range(1000))


def test_find_librdkafka_locates_the_bundled_library(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv(LIBRDKAFKA_ENV_VAR, raising=False)
    assert "rdkafka" in find_librdkafka()
    monkeypatch.setenv(LIBRDKAFKA_ENV_VAR, "/nonexistent/librdkafka.so")
    with pytest.raises(ConnectorError, match=LIBRDKAFKA_ENV_VAR):
        find_librdkafka()


def test_importing_the_module_does_not_import_confluent_kafka() -> None:
    code = "import sys, streamcore.testing.kafka_mock; sys.exit('confluent_kafka' in sys.modules)"
    root = str(Path(kafka_mock.__file__).resolve().parents[2])
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(filter(None, [root, os.environ.get("PYTHONPATH")]))}
    result = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, timeout=30, check=False, env=env
    )
    assert result.returncode == 0, result.stderr
