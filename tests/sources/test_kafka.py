"""KafkaSource against librdkafka's mock cluster: splits, offsets, watermarks, checkpoints, failures.

Clients are always closed before their cluster (fixture order); see
``tests/testing/test_kafka_mock.py`` for the mock's own behaviour.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import textwrap
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

import streamcore as sc
from streamcore.errors import (
    ConfigurationError,
    ConnectorError,
    DeserializationError,
    JobError,
    StreamcoreError,
)
from streamcore.functions import OutputTag
from streamcore.operators.base import StreamOperator
from streamcore.runtime.source_task import SourceTask
from streamcore.sinks.file import FileSink
from streamcore.sources.base import SplitReader
from streamcore.sources.kafka import DeadLetter, KafkaRecord, KafkaSource
from streamcore.sources.kafka_reader import resolve_time_offsets
from streamcore.testing.kafka_mock import MockKafkaCluster
from streamcore.time import ManualClock, WatermarkStrategy

pytestmark = pytest.mark.kafka

confluent_kafka = pytest.importorskip("confluent_kafka")
KafkaException = confluent_kafka.KafkaException
TopicPartition = confluent_kafka.TopicPartition

# The mock holds an empty Fetch for fetch.wait.max.ms (500 ms by default).
FAST = {"fetch.wait.max.ms": 10, "reconnect.backoff.max.ms": 200}
ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture
def cluster() -> Iterator[MockKafkaCluster]:
    with MockKafkaCluster(num_brokers=3) as mock:
        yield mock


@pytest.fixture
def produce(cluster: MockKafkaCluster) -> Iterator[Callable[..., None]]:
    """``produce(topic, [(partition, value, timestamp), ...], key=None)``, flushed."""
    producer = confluent_kafka.Producer({"bootstrap.servers": cluster.bootstrap_servers, "linger.ms": 2})

    def send(topic: str, rows: list[tuple[int, Any, int]], key: bytes | None = None) -> None:
        for partition, value, ts in rows:
            producer.produce(topic, value, key, partition=partition, timestamp=ts)
        assert producer.flush(10) == 0

    yield send
    producer.purge()
    producer.close()


@pytest.fixture
def readers() -> Iterator[list[SplitReader]]:
    """Readers created in a test, closed (with their consumer) before the cluster."""
    made: list[SplitReader] = []
    yield made
    for r in made:
        r.close()


def source(cluster: MockKafkaCluster, topics: Any = "t", **kw: Any) -> KafkaSource:
    kw.setdefault("config", FAST)
    return KafkaSource(cluster.bootstrap_servers, topics, "tests", **kw)


def json_rows(partitions: int, per_partition: int, ts0: int = 1_000) -> list[tuple[int, bytes, int]]:
    return [
        (p, json.dumps({"p": p, "i": i}).encode(), ts0 + i)
        for i in range(per_partition)
        for p in range(partitions)
    ]


def drain(rs: list[SplitReader], want: int, timeout: float = 10.0) -> dict[str, list[Any]]:
    """Poll every reader until ``want`` records arrived in total (or all finished)."""
    got: dict[str, list[Any]] = {r.split_id: [] for r in rs}
    deadline = time.monotonic() + timeout
    while sum(map(len, got.values())) < want and time.monotonic() < deadline:
        if all(r.finished for r in rs):
            break
        for r in rs:
            values, _ = r.poll(100)
            got[r.split_id].extend(values)
        time.sleep(0.001)
    return got


class Recorder(StreamOperator):
    """Records what a source task emits: batches and watermarks."""

    def __init__(self) -> None:
        super().__init__("recorder", "recorder")
        self.batches: list[tuple[list[Any], Any]] = []
        self.watermarks: list[int] = []

    def process_batch(self, values: list[Any], timestamps: list[int] | None, side: int) -> None:
        self.batches.append((values, timestamps))

    def receive_watermark(self, edge: int, watermark: int) -> None:
        self.watermarks.append(watermark)

    def receive_idle(self, edge: int, idle: bool) -> None:
        pass


def run(env: sc.StreamEnvironment, stream: Any) -> list[Any]:
    return stream.execute_and_collect()


# -- basics ------------------------------------------------------------------------------------
def test_module_import_does_not_import_confluent_kafka():
    code = (
        "import sys, streamcore.sources.kafka, streamcore.sinks.kafka\n"
        "print('confluent_kafka' in sys.modules)"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True, cwd=ROOT)
    assert out.stdout.split() == ["False"]


def test_round_trip_bounded_json_in_partition_order(cluster, produce):
    cluster.create_topic("t", 4)
    produce("t", json_rows(4, 50))
    env = sc.StreamEnvironment()
    stream = env.from_source(
        source(cluster, value_deserializer=sc.serde.json_loads, stopping_offsets="latest")
    )
    out = run(env, stream)
    assert len(out) == 200
    for p in range(4):
        assert [r["i"] for r in out if r["p"] == p] == list(range(50))


def test_each_partition_is_a_split_positioned_at_its_start(cluster, produce, readers):
    cluster.create_topic("a", 3)
    cluster.create_topic("b", 2)
    produce("a", [(1, b"x", 1)] * 5)
    rs = source(cluster, ["b", "a"]).create_readers()
    readers.extend(rs)
    assert [r.split_id for r in rs] == ["b-0", "b-1", "a-0", "a-1", "a-2"]
    assert [r.position() for r in rs] == [0, 0, 0, 0, 0]
    latest = source(cluster, ["a"], starting_offsets="latest").create_readers()
    readers.extend(latest)
    assert [r.position() for r in latest] == [0, 5, 0]


def test_native_timestamps_and_per_partition_watermarks(cluster, produce):
    """The source watermark is the minimum over partitions; an idle partition stops counting."""
    cluster.create_topic("t", 3)
    produce("t", [(0, b"a", 10_000 + i) for i in range(5)] + [(1, b"b", 50_000 + i) for i in range(5)])
    clock = ManualClock(0)
    strategy = WatermarkStrategy.for_monotonous_timestamps().with_idleness(1_000)
    task = SourceTask("k", "k", source(cluster), strategy, None, clock)
    task.open()
    try:
        recorder = Recorder()
        task.output.connect(recorder, 0, recorder.add_input_edge())
        seen, watermarks = recorder.batches, recorder.watermarks
        clock.advance(600)  # partitions 0 and 1 are read at 600, partition 2 was last active at 0
        deadline = time.monotonic() + 10
        while sum(len(v) for v, _ in seen) < 10 and time.monotonic() < deadline:
            for split in task.splits:
                task.poll(split, 100)
        assert sorted(t for _, ts in seen for t in ts) == [10_000 + i for i in range(5)] + [
            50_000 + i for i in range(5)
        ]
        assert task.splits[0].watermark == 10_004 - 1
        assert task.splits[1].watermark == 50_004 - 1
        # Partition 2 has no records: until it is idle it holds the watermark back.
        assert watermarks == []
        assert not task.splits[2].idle
        clock.advance(400)
        task.poll(task.splits[2], 100)
        assert task.splits[2].idle and not task.splits[0].idle and not task.splits[1].idle
        assert task.current_watermark == 10_003  # min over the active partitions 0 and 1
        assert watermarks == [10_003]
    finally:
        task.close()


def test_bounded_mode_ends_at_high_watermarks_seen_at_start(cluster, produce, readers):
    cluster.create_topic("t", 2)
    produce("t", json_rows(2, 10))
    rs = source(cluster, stopping_offsets="latest").create_readers()
    readers.extend(rs)
    produce("t", json_rows(2, 10, ts0=5_000))  # after the start: not part of the bounded read
    got = drain(rs, 40, timeout=3)
    assert all(r.finished for r in rs)
    assert {k: len(v) for k, v in got.items()} == {"t-0": 10, "t-1": 10}


def test_bounded_mode_with_empty_partitions_and_explicit_stop_offsets(cluster, produce):
    cluster.create_topic("t", 3)
    produce("t", [(0, b"%d" % i, i) for i in range(10)] + [(1, b"x", 1)])
    env = sc.StreamEnvironment()
    out = run(env, env.from_source(source(cluster, stopping_offsets={0: 4})))
    assert sorted(out) == [b"0", b"1", b"2", b"3", b"x"]


def test_bounded_read_ends_past_transaction_markers(cluster):
    """The last offsets of a transactional topic are commit markers, never delivered as records."""
    cluster.create_topic("t", 1)
    producer = confluent_kafka.Producer(
        {"bootstrap.servers": cluster.bootstrap_servers, "transactional.id": "m"}
    )
    try:
        producer.init_transactions(10)
        producer.begin_transaction()
        for i in range(3):
            producer.produce("t", b"%d" % i, partition=0)
        producer.commit_transaction(10)
    finally:
        producer.close()
    env = sc.StreamEnvironment()
    start = time.monotonic()
    out = run(env, env.from_source(source(cluster, stopping_offsets="latest")))
    assert out == [b"0", b"1", b"2"]
    assert time.monotonic() - start < 5


# -- starting offsets ------------------------------------------------------------------------------
def test_starting_offsets_latest_dict_and_committed(cluster, produce, readers):
    cluster.create_topic("t", 2)
    produce("t", [(p, b"%d-%d" % (p, i), i) for i in range(6) for p in range(2)])
    rs = source(cluster, starting_offsets={0: 4, 1: 6}).create_readers()
    readers.extend(rs)
    assert [r.position() for r in rs] == [4, 6]
    produce("t", [(1, b"1-new", 99)])
    got = drain(rs, 3)
    assert got == {"t-0": [b"0-4", b"0-5"], "t-1": [b"1-new"]}

    consumer = confluent_kafka.Consumer(
        {"bootstrap.servers": cluster.bootstrap_servers, "group.id": "tests", "enable.auto.commit": False}
    )
    try:
        consumer.commit(offsets=[TopicPartition("t", 0, 3)], asynchronous=False)
    finally:
        consumer.close()
    committed = source(cluster, starting_offsets="committed").create_readers()
    readers.extend(committed)
    assert [r.position() for r in committed] == [3, 0]  # partition 1 has no committed offset: earliest
    tuple_keys = source(cluster, starting_offsets={("t", 1): 2}).create_readers()
    readers.extend(tuple_keys)
    assert [r.position() for r in tuple_keys] == [0, 2]


def test_starting_offset_outside_the_partition_fails_clearly(cluster, produce):
    cluster.create_topic("t", 1)
    produce("t", [(0, b"x", 1)] * 3)
    with pytest.raises(ConnectorError, match=r"starting offset 7 of t-0 is outside .*\[0, 3\]"):
        source(cluster, starting_offsets={0: 7}).create_readers()


def test_starting_offsets_by_timestamp(cluster, produce, readers):
    """The mock answers every timestamp look-up with the end (see notes/kafka_facts.md); a real
    broker's answer is mapped by ``resolve_time_offsets``, tested below with real-looking values."""
    cluster.create_topic("t", 2)
    produce("t", [(0, b"old", 1_000), (0, b"new", 2_000)])
    rs = source(cluster, starting_offsets=1_500).create_readers()
    readers.extend(rs)
    assert all(0 <= r.position() <= 2 for r in rs)
    marks = {("t", 0): (10, 50), ("t", 1): (0, 7), ("t", 2): (5, 9)}
    tps = list(marks)
    assert resolve_time_offsets(tps, [20, -1, 3], marks) == {("t", 0): 20, ("t", 1): 7, ("t", 2): 5}


def test_seek_continues_exactly_and_out_of_range_fails(cluster, produce, readers):
    cluster.create_topic("t", 1)
    produce("t", [(0, b"%d" % i, i) for i in range(20)])
    # The position is what was returned: one poll of 7 makes an exact cut.
    fresh = source(cluster).create_readers()
    readers.extend(fresh)
    deadline = time.monotonic() + 5
    values: list[Any] = []
    while not values and time.monotonic() < deadline:
        values, _ = fresh[0].poll(7)
    assert values == [b"%d" % i for i in range(7)]
    pos = fresh[0].position()
    assert pos == 7
    fresh[0].seek(3)  # while assigned: librdkafka seeks, the buffer is dropped
    assert drain(fresh, 17)["t-0"] == [b"%d" % i for i in range(3, 20)]
    restored = source(cluster, starting_offsets="latest").create_readers()
    readers.extend(restored)
    restored[0].seek(pos)
    assert drain(restored, 13)["t-0"] == [b"%d" % i for i in range(7, 20)]
    with pytest.raises(ConfigurationError, match="must be an offset"):
        restored[0].seek("7")
    gone = source(cluster).create_readers()
    readers.extend(gone)
    gone[0].seek(500)
    with pytest.raises(ConnectorError, match=r"offset 500 of t-0 no longer exists"):
        drain(gone, 1, timeout=5)


# -- decoding ---------------------------------------------------------------------------------------
def test_deserialization_error_names_topic_partition_offset(cluster, produce):
    cluster.create_topic("t", 2)
    produce("t", [(1, b'{"ok": 1}', 1), (1, b"{broken", 2)])
    env = sc.StreamEnvironment()
    stream = env.from_source(
        source(cluster, value_deserializer=sc.serde.json_loads, stopping_offsets="latest")
    )
    with pytest.raises(
        DeserializationError, match=r"record t-1 offset 1: json_loads raised JSONDecodeError"
    ) as info:
        run(env, stream)
    assert "dead_letter" in str(info.value)


def test_dead_letter_callable_gets_undecodable_records(cluster, produce):
    cluster.create_topic("t", 1)
    produce("t", [(0, b"1", 5), (0, b"nope", 6), (0, None, 7), (0, b"3", 8)], key=b"k")
    letters: list[DeadLetter] = []
    env = sc.StreamEnvironment()
    src = source(cluster, value_deserializer=int, dead_letter=letters.append, stopping_offsets="latest")
    assert run(env, env.from_source(src)) == [1, None, 3]  # the tombstone passes as None
    assert letters == [DeadLetter("t", 0, 1, 6, b"k", b"nope", letters[0].error)]
    assert "ValueError" in letters[0].error


def test_dead_letter_output_tag_collects_per_reader(cluster, produce, readers):
    cluster.create_topic("t", 1)
    produce("t", [(0, b"1", 5), (0, b"x", 6), (0, b"2", 7)])
    tag = OutputTag("bad")
    rs = source(cluster, value_deserializer=int, dead_letter=tag).create_readers()
    readers.extend(rs)
    assert drain(rs, 2)["t-0"] == [1, 2]
    [(name, values, timestamps)] = rs[0].take_side_outputs()
    assert name == "bad" and timestamps == [6]
    assert [(d.offset, d.value) for d in values] == [(1, b"x")]
    assert rs[0].take_side_outputs() == []
    assert rs[0].metrics()["dead_letters"] == 1


@pytest.mark.skipif(
    not hasattr(SourceTask, "take_side_outputs")
    and "take_side_outputs" not in SourceTask.poll.__code__.co_names,
    reason="the runtime does not yet forward SplitReader.take_side_outputs() to the source's side outputs",
)
def test_dead_letter_side_output_in_a_job(cluster, produce):
    cluster.create_topic("t", 1)
    produce("t", [(0, b"1", 5), (0, b"x", 6), (0, b"2", 7)])
    tag = OutputTag("bad")
    env = sc.StreamEnvironment()
    main = env.from_source(
        source(cluster, value_deserializer=int, dead_letter=tag, stopping_offsets="latest")
    )
    bad = sc.CollectSink()
    main.get_side_output(tag).sink_to(bad)
    assert run(env, main) == [1, 2]
    assert [(d.offset, d.value) for d in bad.results] == [(1, b"x")]


def test_keys_metadata_and_timestamp_callable(cluster, produce):
    cluster.create_topic("t", 1)
    produce("t", [(0, b'{"ts": 77}', 5)], key=b"user-1")
    env = sc.StreamEnvironment()
    src = source(
        cluster,
        key_deserializer=bytes.decode,
        value_deserializer=sc.serde.json_loads,
        stopping_offsets="latest",
    )
    assert run(env, env.from_source(src)) == [("user-1", {"ts": 77})]

    env = sc.StreamEnvironment()
    src = source(
        cluster, include_metadata=True, value_deserializer=sc.serde.json_loads, stopping_offsets="latest"
    )
    [record] = run(env, env.from_source(src))
    assert record == KafkaRecord("t", 0, 0, 5, b"user-1", {"ts": 77}, None)

    env = sc.StreamEnvironment()
    sink = sc.CollectSink()
    src = source(
        cluster,
        value_deserializer=sc.serde.json_loads,
        timestamp=lambda r: r["ts"],
        stopping_offsets="latest",
    )
    env.from_source(src).sink_to(sink)
    env.execute()
    assert sink.timestamps == [77]


# -- configuration and errors ---------------------------------------------------------------------------
@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        ({"config": {"enable.auto.commit": True}}, "must not set 'enable.auto.commit'.*checkpoints"),
        ({"config": {"auto.offset.reset": "earliest"}}, "must not set 'auto.offset.reset'"),
        ({"config": {"group.id": "x"}}, "pass group_id"),
        ({"config": {"fetch.wait.max.ms": None}}, "must be a str, number"),
        ({"config": ["x"]}, "must be a dict"),
        ({"topics": []}, "topics must be"),
        ({"starting_offsets": "beginning"}, "starting_offsets must be"),
        ({"starting_offsets": {-1: 0}}, "partition must be an int >= 0"),
        ({"starting_offsets": {("other", 0): 0}}, "does not read"),
        ({"stopping_offsets": "earliest"}, "stopping_offsets must be"),
        ({"timestamp": "event"}, "timestamp must be"),
        ({"dead_letter": "dlq"}, "dead_letter must be"),
        ({"value_deserializer": "json"}, "value_deserializer must be"),
    ],
)
def test_bad_configuration_is_refused_up_front(kwargs, match):
    kwargs = {"topics": "t", **kwargs}
    topics = kwargs.pop("topics")
    with pytest.raises(ConfigurationError, match=match):
        KafkaSource("localhost:9092", topics, **kwargs)


def test_client_errors_are_wrapped_never_escaping(cluster, produce, monkeypatch):
    """No confluent-kafka exception leaves the connector unwrapped."""
    cluster.create_topic("t", 1)
    produce("t", [(0, b"x", 1)])
    failures: list[BaseException] = []

    def expect(fn: Callable[[], Any], kind: type[StreamcoreError]) -> None:
        with pytest.raises(StreamcoreError) as info:
            fn()
        assert isinstance(info.value, kind), info.value
        assert not isinstance(info.value, KafkaException)
        failures.append(info.value)

    expect(lambda: source(cluster, config={"no.such.property": 1}).create_readers(), ConfigurationError)
    expect(lambda: source(cluster, config={"fetch.wait.max.ms": "soon"}).create_readers(), ConfigurationError)
    expect(lambda: source(cluster, "missing-topic").create_readers(), ConnectorError)
    dead = MockKafkaCluster(1)
    bootstrap = dead.bootstrap_servers
    dead.close()
    expect(lambda: KafkaSource(bootstrap, "t", config=FAST, timeout_s=0.5).create_readers(), ConnectorError)

    rs = source(cluster).create_readers()
    try:
        consumer = rs[0].shared.consumer

        class Broken:
            def __getattr__(self, name: str) -> Any:
                return getattr(consumer, name)

            def consume(self, *args: Any) -> Any:
                raise KafkaException(confluent_kafka.KafkaError(confluent_kafka.KafkaError._TRANSPORT))

        rs[0].shared.consumer = Broken()
        expect(lambda: rs[0].poll(10), ConnectorError)
        rs[0].shared.consumer = consumer
    finally:
        for r in rs:
            r.close()
    assert all(isinstance(f.__cause__, Exception) or f.__cause__ is None for f in failures)


# -- checkpoints ---------------------------------------------------------------------------------------
def test_offsets_in_checkpoints_restored_exactly(cluster, produce, tmp_path):
    """A job fails mid-way; the restored run continues from the checkpointed offsets: exactly once."""
    cluster.create_topic("t", 4)
    produce("t", [(i % 4, b"%d" % i, 1_000 + i) for i in range(2_000)])
    state = {"seen": 0, "fail_at": 1_300}

    def parse(v: bytes) -> int:
        state["seen"] += 1
        if state["seen"] == state["fail_at"]:
            raise RuntimeError("injected failure")
        return int(v)

    def build() -> sc.StreamEnvironment:
        env = sc.StreamEnvironment(batch_size=64)
        env.enable_checkpointing(tmp_path / "chk", every_records=300)
        src = source(cluster, stopping_offsets="latest")
        stream = env.from_source(src, watermarks=WatermarkStrategy.for_monotonous_timestamps(), name="kafka")
        stream.uid("kafka").map(parse).uid("parse").sink_to(FileSink(tmp_path / "out", encoder=str)).uid(
            "out"
        )
        return env

    with pytest.raises(StreamcoreError, match="injected failure"):
        build().execute("kafka-restore")
    state["fail_at"] = -1
    result = build().execute("kafka-restore", restore_from="latest")
    assert 0 < result.records_read < 2_000  # resumed, not restarted
    lines = [int(x) for f in sorted((tmp_path / "out").glob("part-*")) for x in f.read_text().split()]
    assert sorted(lines) == list(range(2_000))
    splits = result.metrics["kafka"]["splits"]
    assert {k: v["position"] for k, v in splits.items()} == {f"t-{p}": 500 for p in range(4)}
    assert all(v["lag"] == 0 for v in splits.values())


CRASH_JOB = textwrap.dedent(
    """
    import os, signal, sys
    import streamcore as sc
    from streamcore.sinks.file import FileSink
    from streamcore.sources.kafka import KafkaSource

    bootstrap, work, kill_at = sys.argv[1], sys.argv[2], int(sys.argv[3])
    seen = 0

    def parse(v):
        global seen
        seen += 1
        if seen == kill_at:
            os.kill(os.getpid(), signal.SIGKILL)
        return int(v)

    env = sc.StreamEnvironment(batch_size=50)
    env.enable_checkpointing(work + "/chk", every_records=400)
    src = KafkaSource(bootstrap, "t", "crash", stopping_offsets="latest", config={"fetch.wait.max.ms": 10})
    (env.from_source(src, name="kafka").uid("kafka").map(parse).uid("parse")
        .sink_to(FileSink(work + "/out")).uid("out"))
    result = env.execute("kafka-crash", restore_from="latest")
    print(result.records_read)
    """
)


def test_sigkill_crash_then_restore_is_exactly_once(cluster, produce, tmp_path):
    cluster.create_topic("t", 3)
    produce("t", [(i % 3, b"%d" % i, 1_000 + i) for i in range(3_000)])
    script = tmp_path / "job.py"
    script.write_text(CRASH_JOB)
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    args = [sys.executable, str(script), cluster.bootstrap_servers, str(tmp_path)]
    crashed = subprocess.run([*args, "1700"], capture_output=True, text=True, env=env, timeout=60)
    assert crashed.returncode == -signal.SIGKILL, crashed.stderr
    done = subprocess.run([*args, "0"], capture_output=True, text=True, env=env, timeout=60)
    assert done.returncode == 0, done.stderr
    assert 0 < int(done.stdout.split()[-1]) < 3_000
    lines = [int(x) for f in sorted((tmp_path / "out").glob("part-*")) for x in f.read_text().split()]
    assert len(lines) == len(set(lines)) == 3_000
    assert sorted(lines) == list(range(3_000))
    assert not list((tmp_path / "out").glob(".*inprogress"))


def test_commit_offsets_on_checkpoint_complete(cluster, produce, readers):
    cluster.create_topic("t", 2)
    produce("t", [(p, b"x", i) for i in range(5) for p in range(2)])
    rs = source(cluster, commit_offsets=True).create_readers()
    readers.extend(rs)
    drain(rs, 10)
    positions = [r.position() for r in rs]  # what a checkpoint records
    assert positions == [5, 5]
    for r in rs:
        r.notify_checkpoint_complete(1)
    consumer = confluent_kafka.Consumer(
        {"bootstrap.servers": cluster.bootstrap_servers, "group.id": "tests", "enable.auto.commit": False}
    )
    try:
        deadline = time.monotonic() + 5
        committed: list[int] = []
        while committed != [5, 5] and time.monotonic() < deadline:
            rs[0].poll(1)  # serves the asynchronous commit's callback
            committed = [
                tp.offset for tp in consumer.committed([TopicPartition("t", 0), TopicPartition("t", 1)], 5)
            ]
    finally:
        consumer.close()
    assert committed == [5, 5]


@pytest.mark.skipif(
    not hasattr(SourceTask, "notify_checkpoint_complete"),
    reason="the runtime does not yet tell sources that a checkpoint completed (notify_checkpoint_complete)",
)
def test_job_commits_checkpointed_offsets_to_the_group(cluster, produce, tmp_path):
    cluster.create_topic("t", 2)
    produce("t", [(p, b"x", 1 + i) for i in range(300) for p in range(2)])
    env = sc.StreamEnvironment(batch_size=50)
    env.enable_checkpointing(tmp_path / "chk", every_records=100)
    src = source(cluster, commit_offsets=True, stopping_offsets="latest")
    env.from_source(src, name="kafka").uid("kafka").sink_to(sc.CollectSink()).uid("out")
    env.execute("commits")
    consumer = confluent_kafka.Consumer(
        {"bootstrap.servers": cluster.bootstrap_servers, "group.id": "tests", "enable.auto.commit": False}
    )
    try:
        committed = consumer.committed([TopicPartition("t", 0), TopicPartition("t", 1)], 5)
    finally:
        consumer.close()
    assert [tp.offset for tp in committed] == [300, 300]  # the final checkpoint's positions


# -- availability, pausing, metrics --------------------------------------------------------------------
def test_broker_down_stalls_its_partitions_only_and_recovers(cluster, produce, readers):
    cluster.create_topic("t", 3)  # leaders on brokers 1, 2, 3
    produce("t", [(p, b"%d" % i, i) for i in range(20) for p in range(3)])
    rs = source(cluster, stopping_offsets="latest").create_readers()
    readers.extend(rs)
    cluster.broker_down(2)
    try:
        got = drain(rs, 60, timeout=2)
        assert len(got["t-0"]) == 20 and len(got["t-2"]) == 20
        assert len(got["t-1"]) < 20 and not rs[1].finished
    finally:
        cluster.broker_up(2)
    rest = drain(rs, 20 - len(got["t-1"]), timeout=15)
    assert got["t-1"] + rest["t-1"] == [b"%d" % i for i in range(20)]
    assert all(r.finished for r in rs)


def test_pause_stops_a_partition_without_loss_or_duplicates(cluster, produce, readers):
    cluster.create_topic("t", 2)
    produce("t", [(p, b"%d" % i, i) for i in range(10) for p in range(2)])
    rs = source(cluster).create_readers()
    readers.extend(rs)
    rs[0].pause()
    got = drain(rs, 10, timeout=2)
    assert got["t-1"] == [b"%d" % i for i in range(10)]
    assert got["t-0"] == []
    produce("t", [(p, b"%d" % i, i) for i in range(10, 15) for p in range(2)])
    assert rs[0].metrics()["kafka_paused"] is True
    rs[0].resume()
    got = drain(rs, 20, timeout=5)
    assert got["t-0"] == [b"%d" % i for i in range(15)]
    assert got["t-1"] == [b"%d" % i for i in range(10, 15)]


def test_rate_coordinator_pauses_the_partition_that_runs_ahead(cluster, produce):
    """Partition 0's event time runs 1 s per record, partition 1's 1 ms: the coordinator pauses 0."""
    cluster.create_topic("t", 2)
    # Timestamps start at 1: the producer replaces 0 with its clock.
    produce("t", [(0, b"0", 1 + 1_000 * i) for i in range(400)] + [(1, b"1", 1 + i) for i in range(400)])
    paused: list[str] = []
    src = source(cluster, stopping_offsets="latest")
    original = src.create_readers

    def spying() -> list[SplitReader]:
        rs = original()
        # Fetch both backlogs first: otherwise partition 0 may be read to its end before
        # partition 1's first fetch arrives, and there would be nothing to align.
        deadline = time.monotonic() + 10
        while any(r.buffered() < 400 for r in rs) and time.monotonic() < deadline:  # type: ignore[attr-defined]
            rs[0].shared.fetch()  # type: ignore[attr-defined]
        for r in rs:
            pause = r.pause
            r.pause = lambda r=r, pause=pause: (paused.append(r.split_id), pause())[1]  # type: ignore[method-assign]
        return rs

    src.create_readers = spying  # type: ignore[method-assign]
    env = sc.StreamEnvironment(batch_size=20)
    env.set_source_rate_coordination()
    wm = WatermarkStrategy.for_monotonous_timestamps().with_watermark_alignment(
        "g", max_drift=5_000, update_interval=50
    )
    sink = sc.CollectSink()
    env.from_source(src, watermarks=wm, name="kafka").sink_to(sink)
    result = env.execute("aligned")
    assert sorted(sink.results) == [b"0"] * 400 + [b"1"] * 400
    assert "t-0" in paused and "t-1" not in paused
    assert result.metrics["rate_coordinator"]["pauses"] >= 1


def test_metrics_per_partition(cluster, produce):
    cluster.create_topic("t", 2)
    produce("t", [(0, b"abcd", i) for i in range(6)])
    env = sc.StreamEnvironment()
    env.from_source(source(cluster, stopping_offsets="latest"), name="kafka").sink_to(sc.CollectSink())
    splits = env.execute().metrics["kafka"]["splits"]
    assert splits["t-0"]["records"] == 6 and splits["t-0"]["bytes"] == 24
    assert splits["t-0"]["position"] == 6 and splits["t-0"]["lag"] == 0
    assert splits["t-1"]["records"] == 0 and splits["t-1"]["finished"]
    assert splits["t-0"]["paused"] is False


def test_unbounded_job_sees_records_produced_while_it_runs(cluster, produce):
    cluster.create_topic("t", 2)
    env = sc.StreamEnvironment()
    sink = sc.CollectSink()
    env.from_source(source(cluster, starting_offsets="latest"), name="kafka").sink_to(sink)
    handle = env.execute_async("live")
    try:
        deadline = time.monotonic() + 5
        # "latest" is resolved when the readers are created: produce only once they exist.
        while not handle.metrics().get("kafka", {}).get("splits") and time.monotonic() < deadline:
            time.sleep(0.01)
        produce("t", [(i % 2, b"%d" % i, i) for i in range(30)])
        while len(sink.results) < 30 and time.monotonic() < deadline:
            time.sleep(0.01)
    finally:
        handle.stop(timeout=10)
    assert sorted(sink.results, key=int) == [b"%d" % i for i in range(30)]


def test_job_error_from_a_source_failure_is_a_streamcore_error(cluster, produce):
    cluster.create_topic("t", 1)
    produce("t", [(0, b"x", 1)])
    env = sc.StreamEnvironment()
    stream = env.from_source(
        source(cluster, value_deserializer=sc.serde.json_loads, stopping_offsets="latest")
    )
    with pytest.raises(StreamcoreError) as info:
        run(env, stream)
    assert isinstance(info.value, (DeserializationError, JobError))


# -- partition discovery ----------------------------------------------------------------------------
def _hide_partitions_at_first_look(monkeypatch, hidden: set[int]) -> None:
    """Each consumer's first metadata look-up misses ``hidden`` partitions, as if they were added later.

    (The mock cannot add partitions to a topic: CreatePartitions is not implemented.)
    """
    from streamcore.sources import kafka_reader

    original = kafka_reader.SharedConsumer.partitions
    looked: set[int] = set()

    def partitions(self, topic):
        found = original(self, topic)
        if id(self) not in looked:
            looked.add(id(self))
            return [p for p in found if p not in hidden]
        return found

    monkeypatch.setattr(kafka_reader.SharedConsumer, "partitions", partitions)


def _collect_until(env: sc.StreamEnvironment, out: list[Any], n: int, **kw: Any) -> Any:
    handle = env.execute_async("discovery", **kw)
    deadline = time.monotonic() + 30
    while len(out) < n and time.monotonic() < deadline:
        time.sleep(0.02)
    return handle


def test_partitions_added_while_running_are_discovered_and_checkpointed(
    cluster, produce, monkeypatch, tmp_path
):
    cluster.create_topic("t", 4)
    produce("t", [(i % 4, b"%d" % i, 1_000 + i) for i in range(400)])
    _hide_partitions_at_first_look(monkeypatch, {2, 3})
    out: list[int] = []

    def build() -> sc.StreamEnvironment:
        env = sc.StreamEnvironment(batch_size=16)
        src = source(cluster, partition_discovery_s=0.05)
        env.from_source(src, name="kafka").uid("kafka").map(int).uid("parse").sink_to(out.append).uid("out")
        return env

    handle = _collect_until(build(), out, 400)
    first = handle.stop(savepoint=tmp_path / "sp", timeout=30)
    assert sorted(out) == list(range(400))  # partitions 2 and 3 were found and read from earliest
    assert set(first.metrics["kafka"]["splits"]) == {f"t-{p}" for p in range(4)}
    # The savepoint holds all four positions; the restored run's first look again misses 2 and 3,
    # and the restore finds them rather than failing.
    produce("t", [(i % 4, b"%d" % i, 2_000 + i) for i in range(400, 800)])
    handle = _collect_until(build(), out, 800, restore_from=str(first.savepoint))
    second = handle.stop(timeout=30)
    assert sorted(out) == list(range(800))
    assert {k: v["position"] for k, v in second.metrics["kafka"]["splits"].items()} == {
        f"t-{p}": 200 for p in range(4)
    }


def test_bad_partition_discovery_interval_is_refused(cluster):
    for bad in (0, -1, "5", True):
        with pytest.raises(ConfigurationError, match="partition_discovery_s"):
            KafkaSource(cluster.bootstrap_servers, "t", partition_discovery_s=bad)
    assert (
        KafkaSource(cluster.bootstrap_servers, "t", partition_discovery_s=None).discovery_interval_ms is None
    )
    assert (
        KafkaSource(cluster.bootstrap_servers, "t", stopping_offsets="latest").discovery_interval_ms is None
    )
    assert KafkaSource(cluster.bootstrap_servers, "t").discovery_interval_ms == 300_000


def test_the_readers_module_does_not_import_the_source_module():
    """``kafka_reader`` sits below ``kafka``: it works from a ReaderConfig, never from the source."""
    import ast

    tree = ast.parse((ROOT / "streamcore" / "sources" / "kafka_reader.py").read_text())
    imported = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.ImportFrom):
            imported.add(node.module)
        elif isinstance(node, ast.Import):
            imported.update(alias.name for alias in node.names)
    assert "streamcore.sources.kafka" not in imported
