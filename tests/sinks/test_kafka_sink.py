"""KafkaSink: at-least-once flushes, one transaction per checkpoint, delivery errors, wrapping.

The mock cluster runs the transaction protocol but does not isolate: aborted records
are visible to ``read_committed`` consumers there. Tests of what a consumer may *see*
therefore need a real broker: they read ``STREAMCORE_KAFKA_BOOTSTRAP`` and are skipped
without it (see the README). Everything else runs against the mock.
"""

from __future__ import annotations

import ast
import contextlib
import copy
import json
import signal
import textwrap
import uuid

import pytest

import streamcore as sc
from streamcore.errors import ConfigurationError, ConnectorError, SerializationError, StreamcoreError
from streamcore.sinks.kafka import KafkaSink, default_key_serializer
from streamcore.sinks.two_phase import TwoPhaseCommitSink
from streamcore.sources.kafka import KafkaSource
from tests.sinks.kafka_support import (
    FAST,
    REAL_BOOTSTRAP,
    ROOT,
    needs_real_broker,
    read_all,
    run_twice,
    sink,
)

pytestmark = pytest.mark.kafka

confluent_kafka = pytest.importorskip("confluent_kafka")


# -- at least once ---------------------------------------------------------------------------------
def test_at_least_once_round_trip_with_keys_and_timestamps(cluster):
    cluster.create_topic("out", 4)
    records = [{"user": f"u{i % 5}", "n": i} for i in range(200)]
    env = sc.StreamEnvironment()
    out = sink(cluster, key=lambda r: r["user"])
    env.from_collection(records, timestamp=lambda r: 1_000 + r["n"]).sink_to(out)
    env.execute("to-kafka")
    msgs = read_all(cluster.bootstrap_servers, "out", 4)
    assert sorted((json.loads(m.value())["n"]) for m in msgs) == list(range(200))
    assert all(m.timestamp()[1] == 1_000 + json.loads(m.value())["n"] for m in msgs)
    by_key: dict[bytes, set[int]] = {}
    for m in msgs:
        by_key.setdefault(m.key(), set()).add(m.partition())
    assert sorted(by_key) == [b"u0", b"u1", b"u2", b"u3", b"u4"]
    assert all(len(parts) == 1 for parts in by_key.values())  # one key, one partition
    assert out.metrics()["records_out"] == 200 and out.metrics()["delivery_errors"] == 0


def test_at_least_once_flushes_on_every_checkpoint(cluster, sinks):
    cluster.create_topic("out", 1)
    s = sink(cluster, config={"linger.ms": 1_000})  # without the flush, records would wait a second
    sinks.append(s)
    s.open("out")
    s.write_batch([{"i": i} for i in range(50)], None)
    assert s.snapshot_state(1) is None
    assert s.metrics()["in_flight"] == 0
    assert len(read_all(cluster.bootstrap_servers, "out", 1)) == 50


def test_source_to_sink_job_round_trip(cluster):
    cluster.create_topic("in", 3)
    cluster.create_topic("out", 3)
    producer = confluent_kafka.Producer({"bootstrap.servers": cluster.bootstrap_servers})
    try:
        for i in range(600):
            producer.produce("in", json.dumps({"i": i}).encode(), partition=i % 3, timestamp=1 + i)
        producer.flush(10)
    finally:
        producer.close()
    env = sc.StreamEnvironment()
    src = KafkaSource(
        cluster.bootstrap_servers,
        "in",
        value_deserializer=sc.serde.json_loads,
        stopping_offsets="latest",
        config=FAST,
    )
    env.from_source(src).map(lambda r: {**r, "double": r["i"] * 2}).sink_to(
        sink(cluster, key=lambda r: r["i"])
    )
    env.execute("copy")
    values = [json.loads(m.value()) for m in read_all(cluster.bootstrap_servers, "out", 3)]
    assert sorted(v["i"] for v in values) == list(range(600))
    assert all(v["double"] == 2 * v["i"] for v in values)


# -- exactly once ----------------------------------------------------------------------------------
def test_exactly_once_runs_one_transaction_per_checkpoint(cluster, sinks):
    cluster.create_topic("out", 2)
    s = sink(cluster, delivery="exactly_once", transactional_id_prefix="tx-test")
    sinks.append(s)
    s.open("out")
    s.write_batch([1, 2, 3], None)
    image1 = s.snapshot_state(1)
    assert [h["tid"] for _, h in image1["pending"]] == ["tx-test-0"]
    assert image1["current"]["tid"] == "tx-test-1"  # the pending transaction keeps its producer
    s.write_batch([4, 5], None)
    s.notify_checkpoint_complete(1)
    image2 = s.snapshot_state(2)
    assert [h["tid"] for _, h in image2["pending"]] == ["tx-test-1"]
    assert image2["current"]["tid"] == "tx-test-0"  # committed, so free again: two producers alternate
    s.notify_checkpoint_complete(2)
    s.notify_checkpoint_complete(2)  # idempotent
    m = s.metrics()
    assert m["transactions_committed"] == 2 and m["records_out"] == 5
    assert m["commit_ms_last"] > 0
    assert sorted(json.loads(x.value()) for x in read_all(cluster.bootstrap_servers, "out", 2)) == [
        1,
        2,
        3,
        4,
        5,
    ]


def test_default_transactional_id_derives_from_topic_and_uid(cluster, sinks):
    cluster.create_topic("out", 1)
    s = sink(cluster, delivery="exactly_once")
    sinks.append(s)
    s.open("joined sink")
    assert s.snapshot_state(1)["pending"][0][1]["tid"] == "streamcore-out-joined_sink-0"


def test_restore_commits_pending_transactions_and_aborts_the_open_one(cluster, sinks):
    cluster.create_topic("out", 1)
    before = sink(cluster, delivery="exactly_once", transactional_id_prefix="tx-r")
    sinks.append(before)
    before.open("out")
    before.write_batch(["a", "b"], None)
    image = copy.deepcopy(before.snapshot_state(7))  # checkpoint 7 is durable, the job dies before its commit
    before.write_batch(["c"], None)  # in the next transaction, never pre-committed
    after = sink(cluster, delivery="exactly_once", transactional_id_prefix="tx-r")
    sinks.append(after)
    after.restore_state(image)
    after.open("out")
    m = after.metrics()
    assert (m["transactions_recovered"], m["transactions_committed"], m["transactions_aborted"]) == (2, 1, 1)
    after.write_batch(["d"], None)
    after.snapshot_state(8)
    after.notify_checkpoint_complete(8)
    assert after.metrics()["transactions_committed"] == 2


def test_exactly_once_job_with_checkpoints(cluster, tmp_path):
    cluster.create_topic("out", 2)
    out = sink(cluster, key=lambda r: r, delivery="exactly_once")
    env = sc.StreamEnvironment(batch_size=100)
    env.enable_checkpointing(tmp_path / "chk", every_records=250)
    env.from_collection(list(range(1_000))).uid("numbers").sink_to(out).uid("out")
    result = env.execute("eos")
    assert len(result.checkpoints) >= 4
    assert out.metrics()["transactions_committed"] == len(result.checkpoints)
    values = [json.loads(m.value()) for m in read_all(cluster.bootstrap_servers, "out", 2)]
    assert sorted(values) == list(range(1_000))


# -- failures ----------------------------------------------------------------------------------------
def test_delivery_errors_fail_the_job_clearly(cluster):
    cluster.create_topic("out", 2)
    for broker in (1, 2, 3):
        cluster.broker_down(broker)
    env = sc.StreamEnvironment()
    out = sink(cluster, config={"message.timeout.ms": 300}, flush_timeout_s=10)
    env.from_collection(list(range(20))).sink_to(out)
    with pytest.raises(ConnectorError, match=r"20 records could not be delivered to topic 'out'.*timed out"):
        env.execute("unreachable")
    assert out.metrics()["delivery_errors"] == 20


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        ({"delivery": "exactly-once"}, "delivery must be one of"),
        ({"transactional_id_prefix": "x"}, "only applies to delivery='exactly_once'"),
        ({"delivery": "exactly_once", "transactional_id_prefix": ""}, "non-empty str"),
        ({"config": {"transactional.id": "x"}}, "must not set 'transactional.id'.*transactional_id_prefix"),
        ({"config": {"bootstrap.servers": "x"}}, "must not set 'bootstrap.servers'"),
        ({"config": {"on_delivery": print}}, "must not set 'on_delivery'"),
        ({"key": "user"}, "key must be a callable"),
        ({"value_serializer": None}, "must be callables"),
        ({"flush_timeout_s": 0}, "flush_timeout_s"),
    ],
)
def test_bad_configuration_is_refused_up_front(kwargs, match):
    with pytest.raises(ConfigurationError, match=match):
        KafkaSink("localhost:9092", "out", **kwargs)


def test_serializer_errors_name_the_function(cluster, sinks):
    cluster.create_topic("out", 1)
    s = sink(cluster)
    sinks.append(s)
    s.open("out")
    with pytest.raises(SerializationError, match=r"json_dumps raised TypeError"):
        s.write_batch([{1, 2}], None)


def test_no_confluent_kafka_exception_escapes(cluster, sinks):
    cluster.create_topic("out", 1)
    bad_config = sink(cluster, config={"no.such.property": 1})
    sinks.append(bad_config)
    with pytest.raises(ConfigurationError, match=r"no\.such\.property"):
        bad_config.open("out")
    small = sink(cluster, value_serializer=lambda v: v, config={"message.max.bytes": 1_000})
    sinks.append(small)
    small.open("out")
    with pytest.raises(ConnectorError, match="producing to topic 'out' failed") as info:
        small.write_batch([b"x" * 5_000], None)
    assert isinstance(info.value.__cause__, confluent_kafka.KafkaException)
    assert not isinstance(info.value, confluent_kafka.KafkaException)


def test_default_key_serializer():
    assert default_key_serializer(None) is None
    assert default_key_serializer(b"k") == b"k"
    assert default_key_serializer("k") == b"k"
    assert default_key_serializer(42) == b"42"
    assert default_key_serializer(("a", 1)) == b'["a",1]'


# -- against a real broker --------------------------------------------------------------------------
@needs_real_broker
def test_read_committed_sees_only_committed_transactions(real_topics):
    assert REAL_BOOTSTRAP
    topic, markers = real_topics(1), real_topics(1)
    prefix = f"tx-{uuid.uuid4().hex[:8]}"
    kw = {"delivery": "exactly_once", "transactional_id_prefix": prefix, "marker_topic": markers}
    before = KafkaSink(REAL_BOOTSTRAP, topic, **kw)
    after = KafkaSink(REAL_BOOTSTRAP, topic, **kw)
    try:
        before.open("out")
        before.write_batch(["committed"], None)
        image1 = copy.deepcopy(before.snapshot_state(1))  # as stored in checkpoint 1
        before.notify_checkpoint_complete(1)
        before.write_batch(["pre-committed"], None)
        before.snapshot_state(2)  # checkpoint 2 never completes
        before.write_batch(["open"], None)
        # The restart from checkpoint 1 re-commits its transaction (a no-op) and aborts the
        # one that was open then; re-initialising the ids fences `before` and aborts its others.
        after.restore_state(image1)
        after.open("out")
        after.write_batch(["after-restart"], None)
        after.snapshot_state(3)
        after.notify_checkpoint_complete(3)
    finally:
        after.close()
        with contextlib.suppress(StreamcoreError):
            before.close()  # fenced
    seen = [m.value() for m in read_all(REAL_BOOTSTRAP, topic, 1, isolation="read_committed")]
    assert seen == [b'"committed"', b'"after-restart"']


KAFKA_CRASH_JOB = textwrap.dedent(
    """
    import os, signal, sys
    import streamcore as sc
    from streamcore.sinks.kafka import KafkaSink
    from streamcore.sources.kafka import KafkaSource

    bootstrap, topic_in, topic_out, markers, work, kill_at = sys.argv[1:7]
    kill_at, seen = int(kill_at), 0

    def parse(v):
        global seen
        seen += 1
        if seen == kill_at:
            os.kill(os.getpid(), signal.SIGKILL)
        return int(v)

    env = sc.StreamEnvironment(batch_size=50)
    env.enable_checkpointing(work + "/chk", every_records=400)
    src = KafkaSource(bootstrap, topic_in, "crash", stopping_offsets="latest")
    (env.from_source(src, name="kafka").uid("kafka").map(parse).uid("parse")
        .sink_to(KafkaSink(bootstrap, topic_out, delivery="exactly_once",
                           transactional_id_prefix=topic_out, marker_topic=markers)).uid("out"))
    env.execute("kafka-crash", restore_from="latest")
    """
)


@needs_real_broker
def test_sigkill_crash_exactly_once_into_kafka(real_topics, tmp_path):
    assert REAL_BOOTSTRAP
    topic_in, topic_out, markers = real_topics(3), real_topics(3), real_topics(1)
    topics = (topic_in, topic_out, markers)
    crashed, done = run_twice(KAFKA_CRASH_JOB, REAL_BOOTSTRAP, topics, tmp_path, "1700")
    assert crashed.returncode == -signal.SIGKILL, crashed.stderr
    assert done.returncode == 0, done.stderr
    values = [
        json.loads(m.value()) for m in read_all(REAL_BOOTSTRAP, topic_out, 3, isolation="read_committed")
    ]
    assert len(values) == len(set(values)) == 3_000


def test_errors_are_streamcore_errors():
    assert issubclass(ConnectorError, StreamcoreError)


# -- one public class over two deliveries ----------------------------------------------------------
@pytest.mark.parametrize("delivery", ["at_least_once", "exactly_once"])
def test_one_sink_class_for_both_guarantees(delivery):
    s = KafkaSink("localhost:9092", "out", delivery=delivery)
    assert type(s) is KafkaSink
    assert isinstance(s, TwoPhaseCommitSink)


def test_a_subclass_overrides_the_two_phase_commit_hooks(cluster, sinks):
    cluster.create_topic("out", 1)
    commits: list[str] = []

    class Audited(KafkaSink):
        def commit(self, transaction):
            commits.append(transaction["tid"])
            super().commit(transaction)

    s = Audited(cluster.bootstrap_servers, "out", delivery="exactly_once", transactional_id_prefix="tx-sub")
    sinks.append(s)
    s.open("out")
    s.write_batch([1], None)
    s.snapshot_state(1)
    s.notify_checkpoint_complete(1)
    assert commits == ["tx-sub-0"]
    assert s.metrics()["transactions_committed"] == 1


@pytest.mark.parametrize(
    "module", ["kafka_producer", "kafka_at_least_once", "kafka_transactions", "kafka_write_ahead"]
)
def test_the_delivery_modules_do_not_import_the_sink_module(module):
    tree = ast.parse((ROOT / "streamcore" / "sinks" / f"{module}.py").read_text())
    imported = {node.module for node in ast.walk(tree) if isinstance(node, ast.ImportFrom)}
    assert "streamcore.sinks.kafka" not in imported
