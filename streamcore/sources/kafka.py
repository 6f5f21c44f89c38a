"""Reading Kafka topics: every partition is a split, positions live in streamcore's checkpoints.

:class:`KafkaSource` assigns the partitions of its topics itself (``assign``, never a
consumer-group subscription), so which records a job has read is decided by its
checkpoints alone, as in Flink. All partitions of one source share one librdkafka
consumer: a batch from ``consume`` is split by partition into one buffer per
:class:`KafkaPartitionReader`, and the runtime polls those readers like any other
splits, with a watermark per partition.

Positions are the next offset to read, resolved to concrete offsets when the readers
are created (``"earliest"``, ``"latest"``, a timestamp...), so a checkpoint taken
before the first record arrives still restores to the right place. A restored job
assigns exactly the checkpointed offsets with ``auto.offset.reset=error``: if retention
deleted them, the job fails with a message instead of silently skipping records.

Committing offsets to the Kafka consumer group (``commit_offsets=True``) only serves
lag monitoring; it happens when a checkpoint completes and is never read back, except
by ``starting_offsets="committed"`` on a fresh start.

confluent-kafka is imported when the readers are created, not when this module is.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Mapping, Sequence
from typing import Any, NamedTuple

from streamcore.errors import (
    ConfigurationError,
    ConnectorError,
    DeserializationError,
    StreamcoreError,
)
from streamcore.functions import OutputTag, function_name
from streamcore.kafka_client import (
    TRANSIENT_ERRORS,
    check_client_config,
    error_name,
    import_confluent_kafka,
    kafka_errors,
)
from streamcore.operators.watermarks import extract_timestamps
from streamcore.sources.base import Source, SplitReader

__all__ = [
    "DeadLetter",
    "KafkaPartitionReader",
    "KafkaRecord",
    "KafkaSource",
]

logger = logging.getLogger("streamcore.kafka")

#: consumer settings streamcore decides, and what to do instead of setting them.
OWNED_CONSUMER_KEYS: dict[str, str] = {
    "bootstrap.servers": "pass bootstrap_servers=... to KafkaSource",
    "group.id": "pass group_id=... to KafkaSource",
    "enable.auto.commit": (
        "offsets are stored in streamcore's checkpoints; pass commit_offsets=True to also commit them "
        "to the consumer group when a checkpoint completes"
    ),
    "enable.auto.offset.store": "offsets are stored in streamcore's checkpoints",
    "auto.offset.reset": (
        "positions come from starting_offsets and checkpoints; an offset that no longer exists fails "
        "the job instead of being silently reset"
    ),
    "enable.partition.eof": "pass stopping_offsets='latest' for a bounded read",
    "on_commit": "offset commits are only made with commit_offsets=True, and their errors are logged",
    "error_cb": "streamcore handles client errors itself (fatal ones fail the job)",
}

_MAX_UNDRAINED_DEAD_LETTERS = 100_000


class KafkaRecord(NamedTuple):
    """A record with its Kafka metadata (what ``include_metadata=True`` emits)."""

    topic: str
    partition: int
    offset: int
    timestamp: int
    key: Any
    value: Any
    headers: list[tuple[str, bytes]] | None


class DeadLetter(NamedTuple):
    """A record that could not be deserialized, as routed by ``dead_letter=...``.

    ``key`` and ``value`` are the raw bytes; ``error`` says what failed.
    """

    topic: str
    partition: int
    offset: int
    timestamp: int
    key: bytes | None
    value: bytes | None
    error: str


# -- offsets specs ------------------------------------------------------------------------------
def _check_offsets_map(spec: Mapping[Any, Any], topics: list[str], what: str) -> dict[tuple[str, int], int]:
    out: dict[tuple[str, int], int] = {}
    for key, offset in spec.items():
        if isinstance(key, tuple) and len(key) == 2 and isinstance(key[0], str):
            topic, partition = key
        elif type(key) is int:
            if len(topics) != 1:
                msg = (
                    f"{what} keys must be (topic, partition) tuples when reading several topics, got {key!r}"
                )
                raise ConfigurationError(msg)
            topic, partition = topics[0], key
        else:
            msg = f"{what} keys must be partition numbers or (topic, partition) tuples, got {key!r}"
            raise ConfigurationError(msg)
        if topic not in topics:
            msg = f"{what} names topic {topic!r}, which the source does not read (topics={topics})"
            raise ConfigurationError(msg)
        if type(partition) is not int or partition < 0:
            msg = f"{what} partition must be an int >= 0, got {partition!r}"
            raise ConfigurationError(msg)
        if type(offset) is not int or offset < 0:
            msg = f"{what} offset of {topic}-{partition} must be an int >= 0, got {offset!r}"
            raise ConfigurationError(msg)
        out[(topic, partition)] = offset
    return out


def _check_starting(spec: Any, topics: list[str]) -> Any:
    if isinstance(spec, str):
        if spec not in ("earliest", "latest", "committed"):
            msg = (
                f"starting_offsets must be 'earliest', 'latest', 'committed', a timestamp in ms, or "
                f"a dict of offsets, got {spec!r}"
            )
            raise ConfigurationError(msg)
        return spec
    if type(spec) is int:
        if spec < 0:
            msg = f"starting_offsets as a timestamp must be ms since the epoch >= 0, got {spec}"
            raise ConfigurationError(msg)
        return spec
    if isinstance(spec, Mapping):
        return _check_offsets_map(spec, topics, "starting_offsets")
    msg = f"starting_offsets must be a str, a timestamp (int ms) or a dict, got {type(spec).__name__}"
    raise ConfigurationError(msg)


def _check_stopping(spec: Any, topics: list[str]) -> Any:
    if spec is None or spec == "latest":
        return spec
    if isinstance(spec, Mapping) and not isinstance(spec, str):
        return _check_offsets_map(spec, topics, "stopping_offsets")
    msg = f"stopping_offsets must be None (unbounded), 'latest' or a dict of end offsets, got {spec!r}"
    raise ConfigurationError(msg)


# -- the source ---------------------------------------------------------------------------------
class KafkaSource(Source):
    """Reads topics of a Kafka cluster; one split per partition, offsets in checkpoints.

    Elements are the deserialized values; ``(key, value)`` tuples when a
    ``key_deserializer`` is given; :class:`KafkaRecord` tuples with ``include_metadata``.
    Null values (tombstones) are emitted as ``None`` without calling the deserializer.

    Args:
        bootstrap_servers: the cluster's ``host:port,...``.
        topics: a topic name or a list of them.
        group_id: consumer group used for ``commit_offsets`` and ``"committed"`` only; the
            source never joins the group (partitions are assigned, not subscribed).
        value_deserializer: ``bytes -> value`` (``streamcore.serde.json_loads``,
            ``msgpack_loads``...); ``None`` keeps the raw bytes.
        key_deserializer: ``bytes -> key``; when given, elements are ``(key, value)``.
        include_metadata: emit :class:`KafkaRecord` (topic, partition, offset, timestamp,
            key, value, headers) instead.
        starting_offsets: where a fresh start reads from: ``"earliest"``, ``"latest"``,
            ``"committed"`` (the group's committed offsets, else earliest), a timestamp in
            ms (the first record at or after it, else the end), or a dict
            ``{partition: offset}`` / ``{(topic, partition): offset}`` (others: earliest).
            A restore ignores it and continues from the checkpoint.
        stopping_offsets: ``None`` (unbounded), ``"latest"`` (bounded: end at the high
            watermarks seen at start, for backfills and tests) or a dict of end offsets
            (exclusive; other partitions: latest).
        timestamp: ``"kafka"`` (event time = the record's Kafka timestamp), a callable
            ``element -> int ms``, or ``None`` (no event time).
        dead_letter: where undecodable records go instead of failing the job: an
            :class:`OutputTag` (``stream.get_side_output(tag)`` yields :class:`DeadLetter`
            tuples) or a callable ``DeadLetter -> None``. ``None``: raise
            :class:`DeserializationError` naming topic, partition and offset.
        commit_offsets: commit the checkpointed offsets to ``group_id`` when a checkpoint
            completes (for lag monitoring; never the source of truth).
        config: more librdkafka consumer settings (``{"fetch.wait.max.ms": 10}``); keys
            streamcore owns (``enable.auto.commit``, ``auto.offset.reset``...) are refused.
        fetch_records: records taken from librdkafka per ``consume`` call.
        max_buffered: records buffered in Python (over all unpaused partitions) before
            fetching pauses; bounds memory when one partition is read slowly.
        timeout_s: time limit of metadata and offset look-ups when the readers are created.

    Raises:
        ConfigurationError: a bad argument (checked here), or a setting librdkafka rejects
            (when the job starts).

    Example::

        src = KafkaSource("localhost:9092", ["clicks"], "ads", value_deserializer=json_loads,
                          stopping_offsets="latest", config={"fetch.wait.max.ms": 10})
        clicks = env.from_source(src, watermarks=WatermarkStrategy.for_monotonous_timestamps())
    """

    def __init__(
        self,
        bootstrap_servers: str,
        topics: str | Sequence[str],
        group_id: str = "streamcore",
        *,
        value_deserializer: Callable[[bytes], Any] | None = None,
        key_deserializer: Callable[[bytes], Any] | None = None,
        include_metadata: bool = False,
        starting_offsets: str | int | Mapping[Any, int] = "earliest",
        stopping_offsets: str | Mapping[Any, int] | None = None,
        timestamp: str | Callable[[Any], int] | None = "kafka",
        dead_letter: OutputTag | Callable[[DeadLetter], Any] | None = None,
        commit_offsets: bool = False,
        config: Mapping[str, Any] | None = None,
        fetch_records: int = 2_000,
        max_buffered: int = 50_000,
        timeout_s: float = 10.0,
    ) -> None:
        if not isinstance(bootstrap_servers, str) or not bootstrap_servers.strip():
            msg = f"bootstrap_servers must be a non-empty 'host:port,...' str, got {bootstrap_servers!r}"
            raise ConfigurationError(msg)
        topic_list = (
            [topics] if isinstance(topics, str) else list(topics) if isinstance(topics, Sequence) else None
        )
        if not topic_list or not all(isinstance(t, str) and t for t in topic_list):
            msg = f"topics must be a topic name or a non-empty list of names, got {topics!r}"
            raise ConfigurationError(msg)
        if len(set(topic_list)) != len(topic_list):
            msg = f"topics lists a topic twice: {topic_list}"
            raise ConfigurationError(msg)
        if not isinstance(group_id, str) or not group_id:
            msg = f"group_id must be a non-empty str, got {group_id!r}"
            raise ConfigurationError(msg)
        for name, fn in (("value_deserializer", value_deserializer), ("key_deserializer", key_deserializer)):
            if fn is not None and not callable(fn):
                msg = f"{name} must be a callable bytes -> value or None, got {type(fn).__name__}"
                raise ConfigurationError(msg)
        if not (timestamp is None or timestamp == "kafka" or callable(timestamp)):
            msg = f"timestamp must be 'kafka', a callable element -> int ms, or None, got {timestamp!r}"
            raise ConfigurationError(msg)
        if dead_letter is not None and not isinstance(dead_letter, OutputTag) and not callable(dead_letter):
            msg = f"dead_letter must be an OutputTag, a callable (DeadLetter) or None, got {dead_letter!r}"
            raise ConfigurationError(msg)
        for name, flag in (("include_metadata", include_metadata), ("commit_offsets", commit_offsets)):
            if type(flag) is not bool:
                msg = f"{name} must be True or False, got {flag!r}"
                raise ConfigurationError(msg)
        for name, n in (("fetch_records", fetch_records), ("max_buffered", max_buffered)):
            if type(n) is not int or n < 1:
                msg = f"{name} must be an int >= 1, got {n!r}"
                raise ConfigurationError(msg)
        if isinstance(timeout_s, bool) or not isinstance(timeout_s, (int, float)) or timeout_s <= 0:
            msg = f"timeout_s must be a number of seconds > 0, got {timeout_s!r}"
            raise ConfigurationError(msg)
        self.bootstrap_servers = bootstrap_servers
        self.topics = topic_list
        self.group_id = group_id
        self.value_deserializer = value_deserializer
        self.key_deserializer = key_deserializer
        self.include_metadata = include_metadata
        self.starting_offsets = _check_starting(starting_offsets, topic_list)
        self.stopping_offsets = _check_stopping(stopping_offsets, topic_list)
        self.timestamp = timestamp
        self.dead_letter = dead_letter
        self.commit_offsets = commit_offsets
        self.config = check_client_config(config, OWNED_CONSUMER_KEYS, "KafkaSource")
        self.fetch_records = fetch_records
        self.max_buffered = max_buffered
        self.timeout_s = float(timeout_s)
        self.bounded = self.stopping_offsets is not None

    def consumer_config(self) -> dict[str, Any]:
        """The full librdkafka configuration of the source's consumer."""
        return {
            **self.config,
            "bootstrap.servers": self.bootstrap_servers,
            "group.id": self.group_id,
            "enable.auto.commit": False,
            "enable.auto.offset.store": False,
            "auto.offset.reset": "error",
            "enable.partition.eof": False,
        }

    def create_readers(self) -> list[SplitReader]:
        """Look up partitions and offsets; one reader per partition, sorted by topic and partition.

        Raises:
            ConfigurationError: librdkafka rejects a setting.
            ConnectorError: the cluster cannot be reached, a topic does not exist, or a
                starting offset is out of the partition's range.
        """
        shared = _SharedConsumer(self)
        try:
            return shared.create_readers()
        except BaseException:
            shared.close()
            raise

    def describe(self) -> str:
        """``kafka(topics, bounded|unbounded)``."""
        return f"kafka({','.join(self.topics)}, {'bounded' if self.bounded else 'unbounded'})"


class _SharedConsumer:
    """The one librdkafka consumer behind every partition reader of a source run."""

    def __init__(self, source: KafkaSource) -> None:
        self.source = source
        self.ck = import_confluent_kafka()
        self.consumer: Any = None
        self.readers: list[KafkaPartitionReader] = []
        self.by_partition: dict[int, KafkaPartitionReader] = {}
        self.by_tp: dict[tuple[str, int], KafkaPartitionReader] = {}
        self.single_topic = len(source.topics) == 1
        self.assigned = False
        self.open_readers = 0
        self.buffered = 0
        self.fatal: BaseException | None = None
        self.transient_errors = 0
        self.commit_errors = 0
        self.committed_checkpoint = 0
        self.snapshot_positions: dict[tuple[str, int], int] = {}
        conf = source.consumer_config()
        conf["error_cb"] = self._on_client_error
        conf["on_commit"] = self._on_commit
        with kafka_errors(f"creating a Kafka consumer for {source.bootstrap_servers}"):
            self.consumer = self.ck.Consumer(conf)

    # -- creation ------------------------------------------------------------------------
    def create_readers(self) -> list[KafkaPartitionReader]:
        src = self.source
        TopicPartition = self.ck.TopicPartition
        tps: list[tuple[str, int]] = []
        for topic in src.topics:
            tps.extend((topic, p) for p in self._partitions(topic))
        marks: dict[tuple[str, int], tuple[int, int]] = {}
        for tp in tps:
            with kafka_errors(f"reading the offsets of {tp[0]}-{tp[1]}", "is the cluster reachable?"):
                marks[tp] = self.consumer.get_watermark_offsets(TopicPartition(*tp), timeout=src.timeout_s)
        starts = self._starting_offsets(tps, marks)
        stops = self._stopping_offsets(tps, marks)
        for tp in tps:
            reader = KafkaPartitionReader(self, tp[0], tp[1], starts[tp], stops.get(tp))
            self.readers.append(reader)
            self.by_tp[tp] = reader
            self.by_partition[tp[1]] = reader
        self.open_readers = len(self.readers)
        return list(self.readers)

    def _partitions(self, topic: str) -> list[int]:
        src = self.source
        with kafka_errors(
            f"reading the metadata of topic {topic!r}", f"is {src.bootstrap_servers} reachable?"
        ):
            meta = self.consumer.list_topics(topic, timeout=src.timeout_s)
        tmeta = meta.topics.get(topic)
        if tmeta is None or tmeta.error is not None or not tmeta.partitions:
            why = f": {tmeta.error.str()}" if tmeta is not None and tmeta.error is not None else ""
            msg = f"topic {topic!r} does not exist on {src.bootstrap_servers}{why}; create it first"
            raise ConnectorError(msg)
        return sorted(tmeta.partitions)

    def _starting_offsets(
        self, tps: list[tuple[str, int]], marks: dict[tuple[str, int], tuple[int, int]]
    ) -> dict[tuple[str, int], int]:
        spec = self.source.starting_offsets
        TopicPartition = self.ck.TopicPartition
        if spec == "earliest":
            return {tp: marks[tp][0] for tp in tps}
        if spec == "latest":
            return {tp: marks[tp][1] for tp in tps}
        if spec == "committed":
            with kafka_errors(f"reading the committed offsets of group {self.source.group_id!r}"):
                found = self.consumer.committed(
                    [TopicPartition(*tp) for tp in tps], timeout=self.source.timeout_s
                )
            out = {}
            for tp, res in zip(tps, found, strict=True):
                low, high = marks[tp]
                out[tp] = min(max(res.offset, low), high) if res.offset >= 0 else low
            return out
        if isinstance(spec, int):
            query = [TopicPartition(tp[0], tp[1], spec) for tp in tps]
            with kafka_errors(f"looking up the offsets of timestamp {spec}"):
                found = self.consumer.offsets_for_times(query, timeout=self.source.timeout_s)
            return resolve_time_offsets(tps, [r.offset for r in found], marks)
        out = {}
        for tp in tps:
            low, high = marks[tp]
            offset = spec.get(tp, low)
            if not low <= offset <= high:
                msg = (
                    f"starting offset {offset} of {tp[0]}-{tp[1]} is outside the partition's range "
                    f"[{low}, {high}]; pick an offset in that range"
                )
                raise ConnectorError(msg)
            out[tp] = offset
        return out

    def _stopping_offsets(
        self, tps: list[tuple[str, int]], marks: dict[tuple[str, int], tuple[int, int]]
    ) -> dict[tuple[str, int], int]:
        spec = self.source.stopping_offsets
        if spec is None:
            return {}
        if spec == "latest":
            return {tp: marks[tp][1] for tp in tps}
        return {tp: spec.get(tp, marks[tp][1]) for tp in tps}

    # -- consuming -------------------------------------------------------------------------
    def _assign(self) -> None:
        TopicPartition = self.ck.TopicPartition
        live = [r for r in self.readers if not r.finished and not r.closed]
        with kafka_errors(f"assigning partitions of {self.source.topics}"):
            self.consumer.assign([TopicPartition(r.topic, r.partition, r.next_offset) for r in live])
            paused = [TopicPartition(r.topic, r.partition) for r in live if r.paused]
            if paused:
                self.consumer.pause(paused)
        self.assigned = True

    def fetch(self) -> None:
        """One non-blocking ``consume``, its records appended to their partitions' buffers."""
        if self.fatal is not None:
            fatal, self.fatal = self.fatal, None
            raise fatal
        if not self.assigned:
            self._assign()
        if self.buffered - sum(r.buffered() for r in self.readers if r.paused) >= self.source.max_buffered:
            return
        with kafka_errors(f"consuming from {self.source.topics}"):
            msgs = self.consumer.consume(self.source.fetch_records, 0)
        if not msgs:
            return
        by_partition = self.by_partition
        by_tp = self.by_tp
        single = self.single_topic
        n = 0
        try:
            for m in msgs:
                if m.error() is not None:
                    self._on_message_error(m)
                    continue
                r = by_partition.get(m.partition()) if single else by_tp.get((m.topic(), m.partition()))
                if r is None or r.finished:
                    continue
                r.buf.append(m)
                n += 1
        finally:
            self.buffered += n

    def _on_message_error(self, m: Any) -> None:
        err = m.error()
        name = error_name(err)
        where = f"{m.topic()}-{m.partition()}" if m.topic() is not None else str(self.source.topics)
        if name == "_PARTITION_EOF":
            return
        if name in ("_AUTO_OFFSET_RESET", "OFFSET_OUT_OF_RANGE"):
            reader = self.by_tp.get((m.topic(), m.partition()))
            offset = reader.next_offset if reader is not None else m.offset()
            msg = (
                f"offset {offset} of {where} no longer exists (deleted by retention, or past the end): "
                f"{err.str()}; restore from a newer checkpoint, or start with starting_offsets='earliest'"
            )
            raise ConnectorError(msg)
        if not err.fatal() and (err.retriable() or name in TRANSIENT_ERRORS):
            self.transient_errors += 1
            logger.warning("kafka source %s: transient error, retrying: %s", where, err.str())
            return
        msg = f"consuming from {where} failed: {name}: {err.str()}"
        raise ConnectorError(msg)

    def _on_client_error(self, err: Any) -> None:
        # librdkafka calls this from inside consume()/poll(), on the job's thread.
        if err.fatal():
            msg = f"the Kafka consumer of {self.source.topics} failed fatally: {error_name(err)}: {err.str()}"
            self.fatal = ConnectorError(msg)
        else:
            self.transient_errors += 1
            logger.info("kafka source %s: %s", self.source.topics, err.str())

    def _on_commit(self, err: Any, partitions: Any) -> None:
        if err is not None:
            self.commit_errors += 1
            logger.warning(
                "kafka source: committing offsets to group %r failed: %s", self.source.group_id, err
            )

    # -- pausing ------------------------------------------------------------------------------
    def set_paused(self, reader: KafkaPartitionReader, paused: bool) -> None:
        if not self.assigned or reader.finished:
            return
        TopicPartition = self.ck.TopicPartition
        tp = [TopicPartition(reader.topic, reader.partition)]
        with kafka_errors(f"{'pausing' if paused else 'resuming'} {reader.split_id}"):
            if paused:
                self.consumer.pause(tp)
            else:
                self.consumer.resume(tp)
                # A resume alone waits until the broker's fetcher thread wakes up (up to about
                # a second when all its partitions were paused); a seek to where the partition
                # stopped starts the next fetch at once.
                self.consumer.seek(TopicPartition(reader.topic, reader.partition, reader.fetch_position()))

    def seek(self, reader: KafkaPartitionReader) -> None:
        if not self.assigned or reader.finished:
            return
        with kafka_errors(f"seeking {reader.split_id} to offset {reader.next_offset}"):
            self.consumer.seek(self.ck.TopicPartition(reader.topic, reader.partition, reader.next_offset))

    def finished(self, reader: KafkaPartitionReader) -> None:
        """Stop fetching a partition that reached its stopping offset."""
        if self.assigned and self.consumer is not None:
            with kafka_errors(f"unassigning {reader.split_id}"):
                self.consumer.incremental_unassign([self.ck.TopicPartition(reader.topic, reader.partition)])

    def consumer_position(self, reader: KafkaPartitionReader) -> int:
        """librdkafka's next offset of ``reader``'s partition (past transaction markers), or -1."""
        if not self.assigned:
            return -1
        with kafka_errors(f"reading the position of {reader.split_id}"):
            res = self.consumer.position([self.ck.TopicPartition(reader.topic, reader.partition)])
        return int(res[0].offset)

    def high_watermark(self, reader: KafkaPartitionReader) -> int | None:
        """The partition's high watermark as of the last fetch (no round trip), or ``None``."""
        if self.consumer is None or not self.assigned:
            return None
        try:
            _low, high = self.consumer.get_watermark_offsets(
                self.ck.TopicPartition(reader.topic, reader.partition), cached=True
            )
        except Exception:
            return None
        return high if high >= 0 else None

    # -- checkpoints ---------------------------------------------------------------------------
    def notify_checkpoint_complete(self, checkpoint_id: int) -> None:
        """Commit the positions of the last snapshot to the group (once per checkpoint)."""
        if not self.source.commit_offsets or checkpoint_id <= self.committed_checkpoint:
            return
        self.committed_checkpoint = checkpoint_id
        if not self.snapshot_positions or self.consumer is None:
            return
        TopicPartition = self.ck.TopicPartition
        offsets = [TopicPartition(t, p, off) for (t, p), off in sorted(self.snapshot_positions.items())]
        try:
            with kafka_errors(f"committing offsets to group {self.source.group_id!r}"):
                self.consumer.commit(offsets=offsets, asynchronous=True)
        except ConnectorError as exc:
            # Committed offsets only serve monitoring: a failure is logged, never fatal.
            self.commit_errors += 1
            logger.warning("%s", exc)

    # -- closing -------------------------------------------------------------------------------
    def release(self) -> None:
        self.open_readers -= 1
        if self.open_readers <= 0:
            self.close()

    def close(self) -> None:
        consumer, self.consumer = self.consumer, None
        if consumer is not None:
            with kafka_errors(f"closing the Kafka consumer of {self.source.topics}"):
                consumer.close()


def resolve_time_offsets(
    tps: list[tuple[str, int]], found: list[int], marks: dict[tuple[str, int], tuple[int, int]]
) -> dict[tuple[str, int], int]:
    """Starting offsets for a timestamp: the offset ``offsets_for_times`` found, or the end.

    Kafka answers -1 when no record is at or after the timestamp: reading starts at the
    high watermark then. An answer below the low watermark (retention) starts at the low one.
    """
    out = {}
    for tp, offset in zip(tps, found, strict=True):
        low, high = marks[tp]
        out[tp] = high if offset < 0 else min(max(offset, low), high)
    return out


class KafkaPartitionReader(SplitReader):
    """One partition of a :class:`KafkaSource`: split id ``"<topic>-<partition>"``, position = next offset."""

    def __init__(
        self, shared: _SharedConsumer, topic: str, partition: int, start: int, stop: int | None
    ) -> None:
        src = shared.source
        self.shared = shared
        self.topic = topic
        self.partition = partition
        self.split_id = f"{topic}-{partition}"
        self.next_offset = start
        self.stop = stop
        self.buf: list[Any] = []
        self.pos = 0
        self.paused = False
        self.closed = False
        self.finished = stop is not None and start >= stop
        self.records = 0
        self.bytes = 0
        self.dead_letters = 0
        self._side: list[Any] = []
        self._side_ts: list[int] = []
        self._value_de = src.value_deserializer
        self._key_de = src.key_deserializer
        self._metadata = src.include_metadata
        self._ts_mode = src.timestamp
        self._dead = src.dead_letter
        self._plain = self._value_de is None and self._key_de is None and not self._metadata

    def buffered(self) -> int:
        """Records fetched for this partition and not yet returned."""
        return len(self.buf) - self.pos

    def fetch_position(self) -> int:
        """The next offset to fetch from Kafka: after the buffered records."""
        return self.buf[-1].offset() + 1 if self.pos < len(self.buf) else self.next_offset

    # -- the split contract -------------------------------------------------------------------
    def poll(self, max_records: int) -> tuple[list[Any], list[int] | None]:
        """Up to ``max_records`` records of this partition (fetching from Kafka when its buffer is empty).

        Raises:
            DeserializationError: a record cannot be decoded and no ``dead_letter`` is set.
            ConnectorError: Kafka failed (the cause is chained).
        """
        if self.finished:
            return [], None
        if self.pos >= len(self.buf):
            self.shared.fetch()
            if self.pos >= len(self.buf):
                self._check_end()
                return [], None
        start = self.pos
        end = min(start + max_records, len(self.buf))
        batch = self.buf[start:end]
        stop = self.stop
        if stop is not None and batch[-1].offset() >= stop:
            batch = [m for m in batch if m.offset() < stop]
            end = len(self.buf)  # everything after the stop offset is dropped
        if end >= len(self.buf):
            self.buf = []
            self.pos = 0
        else:
            self.pos = end
        self.shared.buffered -= end - start
        if not batch:
            self._finish()
            return [], None
        self.next_offset = batch[-1].offset() + 1
        self.records += len(batch)
        self.bytes += sum(map(len, batch))
        values, ts = self._decode(batch)
        if stop is not None and self.next_offset >= stop:
            self._finish()
        return values, ts

    def _decode(self, batch: list[Any]) -> tuple[list[Any], list[int] | None]:
        if self._plain:
            values = [m.value() for m in batch]
        else:
            try:
                values = self._decode_fast(batch)
            except Exception:
                values, batch = self._decode_slow(batch)
        mode = self._ts_mode
        if mode == "kafka":
            return values, [m.timestamp()[1] for m in batch]
        if mode is None:
            return values, None
        return values, extract_timestamps(f"KafkaSource({self.split_id})", mode, values)

    def _decode_fast(self, batch: list[Any]) -> list[Any]:
        vde, kde = self._value_de, self._key_de
        if self._metadata:
            return [self._record(m) for m in batch]
        if kde is None:
            return [vde(m.value()) for m in batch]  # type: ignore[misc]
        if vde is None:
            return [(kde(m.key()), m.value()) for m in batch]
        return [(kde(m.key()), vde(m.value())) for m in batch]

    def _record(self, m: Any) -> Any:
        key, value = m.key(), m.value()
        if self._key_de is not None and key is not None:
            key = self._key_de(key)
        if self._value_de is not None and value is not None:
            value = self._value_de(value)
        return KafkaRecord(m.topic(), m.partition(), m.offset(), m.timestamp()[1], key, value, m.headers())

    def _decode_slow(self, batch: list[Any]) -> tuple[list[Any], list[Any]]:
        """Record by record: tombstones pass as ``None``; failures are raised or dead-lettered."""
        vde, kde = self._value_de, self._key_de
        values: list[Any] = []
        kept: list[Any] = []
        for m in batch:
            try:
                if self._metadata:
                    out = self._record(m)
                else:
                    raw = m.value()
                    value = vde(raw) if vde is not None and raw is not None else raw
                    if kde is not None:
                        rawk = m.key()
                        out = (kde(rawk) if rawk is not None else None, value)
                    else:
                        out = value
            except Exception as exc:
                self._bad_record(m, exc)
                continue
            values.append(out)
            kept.append(m)
        return values, kept

    def _bad_record(self, m: Any, exc: Exception) -> None:
        fn = self._value_de if self._value_de is not None else self._key_de
        error = f"{function_name(fn)} raised {type(exc).__name__}: {exc}"
        if self._dead is None:
            msg = (
                f"cannot deserialize record {m.topic()}-{m.partition()} offset {m.offset()}: {error}; "
                "fix the deserializer, or route bad records with KafkaSource(dead_letter=OutputTag(...))"
            )
            raise DeserializationError(msg) from exc
        letter = DeadLetter(m.topic(), m.partition(), m.offset(), m.timestamp()[1], m.key(), m.value(), error)
        self.dead_letters += 1
        if isinstance(self._dead, OutputTag):
            if len(self._side) >= _MAX_UNDRAINED_DEAD_LETTERS:
                msg = (
                    f"{len(self._side)} dead letters of {self.split_id} were never collected: this runtime "
                    "does not forward source side outputs; pass dead_letter=<callable> instead"
                )
                raise ConnectorError(msg) from exc
            self._side.append(letter)
            self._side_ts.append(letter.timestamp)
            return
        try:
            self._dead(letter)
        except StreamcoreError:
            raise
        except Exception as cb_exc:
            msg = f"dead_letter callback {function_name(self._dead)} raised {type(cb_exc).__name__}: {cb_exc}"
            raise ConnectorError(msg) from cb_exc

    def take_side_outputs(self) -> list[tuple[str, list[Any], list[int] | None]]:
        """Dead letters routed to the :class:`OutputTag` since the last call: ``[(tag, values, ts)]``."""
        if not self._side:
            return []
        assert isinstance(self._dead, OutputTag)
        out = [(self._dead.name, self._side, self._side_ts)]
        self._side, self._side_ts = [], []
        return out

    def _check_end(self) -> None:
        """Bounded: end when librdkafka moved past the stop offset (transaction markers, compaction gaps)."""
        if self.stop is not None and not self.paused and self.shared.consumer_position(self) >= self.stop:
            self._finish()

    def _finish(self) -> None:
        if not self.finished:
            self.finished = True
            self.shared.buffered -= self.buffered()
            self.buf = []
            self.pos = 0
            self.shared.finished(self)

    def position(self) -> int:
        """The next offset to read (recorded for ``commit_offsets``)."""
        self.shared.snapshot_positions[(self.topic, self.partition)] = self.next_offset
        return self.next_offset

    def seek(self, position: Any) -> None:
        """Continue at offset ``position`` (a restore calls this before the first poll).

        Raises:
            ConfigurationError: ``position`` is not an offset.
        """
        if type(position) is not int or position < 0:
            msg = f"Kafka position of {self.split_id} must be an offset (int >= 0), got {position!r}"
            raise ConfigurationError(msg)
        self.shared.buffered -= self.buffered()
        self.buf = []
        self.pos = 0
        self.next_offset = position
        was_finished = self.finished
        self.finished = self.stop is not None and position >= self.stop
        if self.finished and not was_finished:
            self.shared.finished(self)
        elif not self.finished:
            self.shared.seek(self)

    def pause(self) -> None:
        """Stop fetching this partition (librdkafka ``pause``); buffered records stay."""
        if not self.paused:
            self.paused = True
            self.shared.set_paused(self, True)

    def resume(self) -> None:
        """Fetch this partition again, from where it stopped."""
        if self.paused:
            self.paused = False
            self.shared.set_paused(self, False)

    def notify_checkpoint_complete(self, checkpoint_id: int) -> None:
        """A checkpoint completed: with ``commit_offsets``, commit its offsets to the group."""
        self.shared.notify_checkpoint_complete(checkpoint_id)

    def metrics(self) -> dict[str, Any]:
        """Records, bytes, position, lag (high watermark - position), paused, dead letters."""
        high = self.shared.high_watermark(self)
        if self.stop is not None and high is not None:
            high = min(high, self.stop)
        return {
            "records": self.records,
            "bytes": self.bytes,
            "position": self.next_offset,
            "lag": max(0, high - self.next_offset) if high is not None else None,
            "kafka_paused": self.paused,
            "dead_letters": self.dead_letters,
            "transient_errors": self.shared.transient_errors,
        }

    def close(self) -> None:
        """Release the shared consumer (closed with the last reader)."""
        if not self.closed:
            self.closed = True
            self.shared.release()
