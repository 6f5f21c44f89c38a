"""KafkaSink write-ahead recovery: records in checkpoints, commit markers, confirm or replay on restore.

On librdkafka's mock cluster a crashed run's transaction stays visible (the mock neither
aborts nor isolates), so a restore there finds its marker and takes the *confirmed*
path. The *replay* path is driven by a checkpoint image whose pending transaction never
reached the restoring sink's topic (it went to a scratch topic) and whose sequence
number no marker ever carried: what a broker leaves of a transaction it aborted. What a
``read_committed`` consumer sees after a real crash needs a real broker
(``STREAMCORE_KAFKA_BOOTSTRAP``); those tests are skipped without one.
"""

from __future__ import annotations

import copy
import json
import logging
import textwrap
import uuid
from typing import Any

import pytest

from streamcore.errors import ConfigurationError, ConnectorError
from streamcore.serde import msgpack_dumps, msgpack_loads
from streamcore.sinks.kafka import KafkaSink
from streamcore.sinks.kafka_write_ahead import logged_records, marker_partition
from tests.sinks.kafka_support import REAL_BOOTSTRAP, needs_real_broker, read_all, run_twice, sink

pytestmark = pytest.mark.kafka

confluent_kafka = pytest.importorskip("confluent_kafka")


def values_of(bootstrap: str, topic: str, partitions: int, isolation: str = "read_uncommitted") -> list[Any]:
    return [json.loads(m.value()) for m in read_all(bootstrap, topic, partitions, isolation)]


def topics_of(bootstrap: str) -> set[str]:
    admin = confluent_kafka.admin.AdminClient({"bootstrap.servers": bootstrap})
    return set(admin.list_topics(timeout=10).topics)


def outcome(s: KafkaSink) -> tuple[int, int]:
    m = s.metrics()
    return m["transactions_confirmed"], m["transactions_replayed"]


# -- what a transaction keeps and produces -----------------------------------------------------------
def test_checkpoint_image_holds_the_pending_transactions_records(cluster, sinks):
    cluster.create_topic("out", 2)
    s = sink(cluster, key=lambda r: r["k"], delivery="exactly_once", transactional_id_prefix="tx-img")
    sinks.append(s)
    s.open("out")
    s.write_batch([{"k": "a", "i": 1}, {"k": "b", "i": 2}], [1_000, 1_001])
    s.write_batch([{"k": "a", "i": 3}], [-5])  # before the epoch: the producer stamps it
    stored = msgpack_loads(msgpack_dumps(s.snapshot_state(1)))  # as the checkpoint file holds it
    [(cid, pending)] = stored["pending"]
    assert cid == 1 and pending["records"] == 3
    assert logged_records(pending) == [
        (b'{"k":"a","i":1}', b"a", 1_000),
        (b'{"k":"b","i":2}', b"b", 1_001),
        (b'{"k":"a","i":3}', b"a", -5),
    ]
    marker = pending["marker"]
    assert (marker["topic"], marker["prefix"], marker["from"]) == ("out.streamcore-commits", "tx-img", 0)
    assert marker["partition"] == marker_partition("tx-img", 4)  # the mock auto-created it: 4 partitions
    # The open transaction is aborted on restore: the image names it, without records.
    assert set(stored["current"]) == {"tid", "seq", "records"}


def test_commit_markers_go_with_their_transactions(cluster, sinks):
    cluster.create_topic("out", 2)
    cluster.create_topic("marks", 3)
    s = sink(cluster, delivery="exactly_once", transactional_id_prefix="tx-m", marker_topic="marks")
    sinks.append(s)
    s.open("out")
    s.write_batch([1, 2], None)
    s.snapshot_state(1)
    s.notify_checkpoint_complete(1)
    s.snapshot_state(2)  # an empty transaction: nothing to lose, no marker
    s.notify_checkpoint_complete(2)
    s.write_batch([3], None)
    s.snapshot_state(3)
    s.notify_checkpoint_complete(3)
    msgs = read_all(cluster.bootstrap_servers, "marks", 3)
    assert {m.partition() for m in msgs} == {marker_partition("tx-m", 3)}
    assert {m.key() for m in msgs} == {b"tx-m"}
    bodies = [json.loads(m.value()) for m in msgs]
    assert [(b["seq"], b["records"]) for b in bodies] == [(1, 2), (3, 1)]
    assert len({b["run"] for b in bodies}) == 1
    assert sorted(values_of(cluster.bootstrap_servers, "out", 2)) == [1, 2, 3]


# -- restore -------------------------------------------------------------------------------------------
def test_restore_confirms_a_pending_transaction_whose_marker_is_visible(cluster, sinks):
    cluster.create_topic("out", 2)
    kw: dict[str, Any] = {"key": lambda r: r, "delivery": "exactly_once", "transactional_id_prefix": "tx-c"}
    before = sink(cluster, **kw)
    sinks.append(before)
    before.open("out")
    before.write_batch(list(range(10)), None)
    image = copy.deepcopy(before.snapshot_state(4))  # checkpoint 4 is durable, the job dies before its commit
    for _attempt in range(2):  # restoring the same checkpoint twice (a crash right after the restore)
        after = sink(cluster, **kw)
        sinks.append(after)
        after.restore_state(image)
        after.open("out")
        m = after.metrics()
        counts = (m["transactions_recovered"], m["transactions_committed"], m["transactions_aborted"])
        assert counts == (2, 1, 1)
        assert outcome(after) == (1, 0)
        assert m["records_replayed"] == 0
    assert sorted(values_of(cluster.bootstrap_servers, "out", 2)) == list(range(10))


def test_restore_replays_a_pending_transaction_whose_marker_is_missing(cluster, sinks):
    cluster.create_topic("out", 2)
    cluster.create_topic("scratch", 2)
    records = [{"k": f"u{i % 3}", "i": i} for i in range(20)]
    kw: dict[str, Any] = {"key": lambda r: r["k"], "delivery": "exactly_once"}
    kw["transactional_id_prefix"] = "tx-w"
    before = sink(cluster, "scratch", **kw)
    sinks.append(before)
    before.open("out")
    before.write_batch(records[:12], [5_000 + r["i"] for r in records[:12]])
    before.write_batch(records[12:], [5_000 + r["i"] for r in records[12:]])
    image = copy.deepcopy(before.snapshot_state(9))
    # What a broker leaves of a transaction it aborted: nothing in "out", no marker for it.
    [(_cid, pending)] = image["pending"]
    pending["seq"] = 99
    markers = pending["marker"]["topic"]
    after = sink(cluster, "out", **kw)
    sinks.append(after)
    after.restore_state(image)
    assert outcome(after) == (0, 1)
    assert (after.metrics()["records_replayed"], after.metrics()["transactions_committed"]) == (20, 1)
    msgs = read_all(cluster.bootstrap_servers, "out", 2)
    got = sorted((json.loads(m.value())["i"], m.key(), m.timestamp()[1]) for m in msgs)
    assert got == [(r["i"], r["k"].encode(), 5_000 + r["i"]) for r in records]  # once, keys and times kept
    replayed = [b for b in values_of(cluster.bootstrap_servers, markers, 4) if b["seq"] == 99]
    assert len(replayed) == 1 and replayed[0]["records"] == 20
    after.open("out")
    after.write_batch([{"k": "u0", "i": 20}], None)
    assert [h["seq"] for _cid, h in after.snapshot_state(10)["pending"]] == [100]  # seq goes on past 99
    # A crash after the replay: restoring the same checkpoint again finds the replay's marker.
    again = sink(cluster, "out", **kw)
    sinks.append(again)
    again.restore_state(image)
    again.open("out")
    assert outcome(again) == (1, 0)
    assert sorted(v["i"] for v in values_of(cluster.bootstrap_servers, "out", 2)) == list(range(21))


def test_write_ahead_false_keeps_no_records_and_warns_on_restore(cluster, sinks, caplog):
    cluster.create_topic("out", 1)
    kw: dict[str, Any] = {"delivery": "exactly_once", "transactional_id_prefix": "tx-o", "write_ahead": False}
    before = sink(cluster, **kw)
    sinks.append(before)
    before.open("out")
    before.write_batch(["a", "b"], None)
    image = copy.deepcopy(before.snapshot_state(3))
    [(_cid, pending)] = image["pending"]
    assert set(pending) == {"tid", "seq", "records"}
    after = sink(cluster, **kw)
    sinks.append(after)
    with caplog.at_level(logging.WARNING, logger="streamcore.kafka"):
        after.restore_state(image)
    assert "'tx-o-0' (2 records, written with write_ahead=False)" in caplog.text
    assert "records are lost" in caplog.text
    m = after.metrics()
    assert (m["transactions_recovered"], m["transactions_committed"]) == (2, 1)
    assert outcome(after) == (0, 0)
    assert "out.streamcore-commits" not in topics_of(cluster.bootstrap_servers)


# -- configuration -----------------------------------------------------------------------------------------
@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        ({"delivery": "exactly_once", "write_ahead": "yes"}, "write_ahead must be True, False or None"),
        ({"write_ahead": True}, "write_ahead only applies to delivery='exactly_once'"),
        ({"marker_topic": "m"}, "marker_topic only applies to delivery='exactly_once' with write_ahead=True"),
        ({"delivery": "exactly_once", "write_ahead": False, "marker_topic": "m"}, "marker_topic only"),
        ({"delivery": "exactly_once", "marker_topic": "out"}, "marker_topic must differ from topic 'out'"),
        ({"delivery": "exactly_once", "marker_topic": "bad name"}, "'bad name' is not a legal Kafka topic"),
        ({"delivery": "exactly_once", "marker_topic": ""}, "not a legal Kafka topic name"),
        ({"delivery": "exactly_once", "marker_topic": 7}, "marker_topic must be a str, got int"),
    ],
)
def test_bad_write_ahead_configuration_is_refused_up_front(kwargs, match):
    with pytest.raises(ConfigurationError, match=match):
        KafkaSink("localhost:9092", "out", **kwargs)


def test_a_topic_too_long_for_the_default_marker_topic_asks_for_one():
    long = "t" * 240
    with pytest.raises(ConfigurationError, match=r"default marker_topic \(derived from topic .*pass marker"):
        KafkaSink("localhost:9092", long, delivery="exactly_once")
    assert KafkaSink("localhost:9092", long, delivery="exactly_once", marker_topic="m").marker_topic == "m"


def test_a_missing_marker_topic_fails_the_checkpoint_clearly(cluster, sinks):
    cluster.create_topic("out", 1)
    s = sink(
        cluster,
        delivery="exactly_once",
        marker_topic="no-such-markers",
        config={"allow.auto.create.topics": False},
        flush_timeout_s=3.0,
    )
    sinks.append(s)
    s.open("out")
    s.write_batch([1], None)
    with pytest.raises(ConnectorError, match=r"marker topic 'no-such-markers'.*create it.*write_ahead=False"):
        s.snapshot_state(1)


# -- a process that dies between a durable checkpoint and its commit ------------------------------------
DIES_BEFORE_COMMIT_JOB = textwrap.dedent(
    """
    import json, os, sys
    import streamcore as sc
    from streamcore.sinks.kafka import KafkaSink
    from streamcore.sources.kafka import KafkaSource

    bootstrap, topic_in, topic_out, markers, work, crash_at = sys.argv[1:7]
    crash_at = int(crash_at)

    class DiesBeforeCommit(KafkaSink):
        # Ends the process once checkpoint `crash_at` is durable, before its transaction commits.
        def notify_checkpoint_complete(self, checkpoint_id):
            if checkpoint_id == crash_at:
                os._exit(3)
            super().notify_checkpoint_complete(checkpoint_id)

    env = sc.StreamEnvironment(batch_size=50)
    # Synchronous checkpoints: the commit would follow the metadata before any other batch.
    env.enable_checkpointing(work + "/chk", every_records=400, asynchronous=False)
    src = KafkaSource(bootstrap, topic_in, "crash", stopping_offsets="latest",
                      config={"fetch.wait.max.ms": 10})
    out = DiesBeforeCommit(bootstrap, topic_out, key=lambda v: v, delivery="exactly_once",
                           transactional_id_prefix=topic_out, marker_topic=markers)
    env.from_source(src, name="kafka").uid("kafka").map(int).uid("parse").sink_to(out).uid("out")
    result = env.execute("kafka-crash", restore_from="latest")
    print(json.dumps(result.metrics["out"]["sink"]))
    """
)


@pytest.mark.parametrize("broker", ["mock", pytest.param("real", marks=needs_real_broker)])
def test_death_between_checkpoint_and_commit_loses_and_duplicates_nothing(broker, request, tmp_path):
    if broker == "mock":
        cluster = request.getfixturevalue("cluster")
        bootstrap = cluster.bootstrap_servers
        topic_in, topic_out, markers = "in", "out", "marks"
        for name, partitions in ((topic_in, 3), (topic_out, 3), (markers, 1)):
            cluster.create_topic(name, partitions)
    else:
        assert REAL_BOOTSTRAP
        bootstrap = REAL_BOOTSTRAP
        make = request.getfixturevalue("real_topics")
        topic_in, topic_out, markers = make(3), make(3), make(1)
    topics = (topic_in, topic_out, markers)
    crashed, done = run_twice(DIES_BEFORE_COMMIT_JOB, bootstrap, topics, tmp_path, "2")
    assert crashed.returncode == 3, crashed.stderr
    assert done.returncode == 0, done.stderr
    sink_metrics = json.loads(done.stdout.splitlines()[-1])
    # The mock keeps the crashed transaction visible; a real broker aborts it at the restore.
    expected = (1, 0) if broker == "mock" else (0, 1)
    assert (sink_metrics["transactions_confirmed"], sink_metrics["transactions_replayed"]) == expected
    values = values_of(bootstrap, topic_out, 3, isolation="read_committed")
    assert len(values) == len(set(values)) == 3_000


# -- against a real broker ------------------------------------------------------------------------------
@needs_real_broker
def test_real_broker_aborts_the_pending_transaction_and_the_restore_replays_it_once(real_topics):
    assert REAL_BOOTSTRAP
    topic, markers = real_topics(2), real_topics(1)
    kw: dict[str, Any] = {
        "key": lambda r: r,
        "delivery": "exactly_once",
        "transactional_id_prefix": f"tx-{uuid.uuid4().hex[:8]}",
        "marker_topic": markers,
    }
    made: list[KafkaSink] = []
    try:
        before = KafkaSink(REAL_BOOTSTRAP, topic, **kw)
        made.append(before)
        before.open("out")
        before.write_batch(list(range(50)), None)
        image = copy.deepcopy(before.snapshot_state(1))  # durable; the process dies before the commit
        for expected in ((0, 1), (1, 0)):  # the fenced transaction is replayed; a second restore finds it
            after = KafkaSink(REAL_BOOTSTRAP, topic, **kw)
            made.append(after)
            after.restore_state(image)
            after.open("out")
            assert outcome(after) == expected
    finally:
        for s in reversed(made):
            try:
                s.close()
            except Exception:
                pass  # `before` is fenced
    assert sorted(values_of(REAL_BOOTSTRAP, topic, 2, isolation="read_committed")) == list(range(50))
