"""Bad input of consumer-group jobs fails at start with errors that name what is wrong."""

from __future__ import annotations

from pathlib import Path

import pytest

import streamcore as sc
from streamcore.errors import ConfigurationError, ConnectorError, RestoreError

pytestmark = pytest.mark.kafka


@pytest.fixture
def cluster():
    from streamcore.testing.kafka_mock import MockKafkaCluster

    with MockKafkaCluster(num_brokers=1) as c:
        c.create_topic("four", 4)
        c.create_topic("four-too", 4)
        c.create_topic("six", 6)
        yield c


def _source(cluster, topics, group="g") -> sc.KafkaSource:
    return sc.KafkaSource(
        cluster.bootstrap_servers,
        topics,
        group,
        stopping_offsets="latest",
        assignment="group",
        config={"fetch.wait.max.ms": 10},
    )


def _env(tmp: Path) -> sc.StreamEnvironment:
    env = sc.StreamEnvironment()
    env.enable_checkpointing(tmp / "chk", every_records=100)
    return env


def test_sources_that_are_not_co_partitioned_are_named_with_their_counts(cluster, tmp_path: Path) -> None:
    env = _env(tmp_path)
    a = env.from_source(_source(cluster, "four"), name="a")
    b = env.from_source(_source(cluster, "six"), name="b")
    a.union(b).key_by(lambda v: v, partitioned=True).reduce(lambda x, y: y).sink_to(lambda v: None)
    with pytest.raises(ConfigurationError, match="four has 4, six has 6"):
        env.execute("mixed")


def test_group_mode_with_a_source_that_has_no_partitions(cluster, tmp_path: Path) -> None:
    env = _env(tmp_path)
    a = env.from_source(_source(cluster, "four"), name="kafka")
    b = env.from_collection([1, 2], name="numbers")
    a.union(b).sink_to(lambda v: None)
    with pytest.raises(ConfigurationError, match=r"sources \['numbers'\] are not Kafka sources"):
        env.execute("mixed")


def test_group_mode_needs_shared_checkpoints(cluster) -> None:
    env = sc.StreamEnvironment()
    env.from_source(_source(cluster, "four"), name="kafka").sink_to(lambda v: None)
    with pytest.raises(ConfigurationError, match="needs enable_checkpointing"):
        env.execute("no-checkpoints")


def test_sources_of_two_groups_are_refused(cluster, tmp_path: Path) -> None:
    env = _env(tmp_path)
    a = env.from_source(_source(cluster, "four", "g1"), name="a")
    b = env.from_source(_source(cluster, "four-too", "g2"), name="b")
    a.union(b).sink_to(lambda v: None)
    with pytest.raises(ConfigurationError, match="share one cluster and one group_id"):
        env.execute("two-groups")


def test_a_program_that_differs_from_the_stored_job_is_refused(cluster, tmp_path: Path) -> None:
    env = _env(tmp_path)
    env.from_source(_source(cluster, "four"), name="kafka").map(lambda v: v).uid("m1").sink_to(lambda v: None)
    env.execute("job")
    other = _env(tmp_path)
    other.from_source(_source(cluster, "four"), name="kafka").map(lambda v: v).uid("m2").sink_to(
        lambda v: None
    )
    with pytest.raises(RestoreError, match="uids differ"):
        other.execute("job")


def test_a_missing_source_topic_is_named(cluster, tmp_path: Path) -> None:
    env = _env(tmp_path)
    env.from_source(_source(cluster, "nope"), name="kafka").sink_to(lambda v: None)
    with pytest.raises(ConnectorError, match="'nope' does not exist"):
        env.execute("missing")
