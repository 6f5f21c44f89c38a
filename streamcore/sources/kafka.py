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

``assignment="group"`` runs the job as tasks: task ``p`` reads partition ``p`` of every
source topic, and the consumer group ``group_id`` decides which process runs which
task (:mod:`streamcore.sources.kafka_group`). Within a task, reading works exactly as
above, from the task's own checkpoints.

confluent-kafka is imported when the readers are created, not when this module is.
"""

from __future__ import annotations

import copy
from collections.abc import Callable, Mapping, Sequence
from typing import Any

from streamcore.errors import ConfigurationError
from streamcore.functions import OutputTag
from streamcore.kafka_client import check_client_config, check_seconds
from streamcore.sources.base import Source, SplitReader
from streamcore.sources.kafka_reader import (
    DeadLetter,
    KafkaPartitionReader,
    KafkaRecord,
    ReaderConfig,
    SharedConsumer,
)

__all__ = [
    "DeadLetter",
    "KafkaPartitionReader",
    "KafkaRecord",
    "KafkaSource",
]

#: how a source's partitions are assigned to processes.
ASSIGNMENTS = ("static", "group")

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
        timeout_s: time limit of each metadata and offset look-up (when the readers are
            created, and at partition discovery).
        partition_discovery_s: how often an unbounded source looks for partitions added to
            its topics (default every 5 minutes, as Flink's KafkaSource); new partitions are
            read from their earliest offset. ``None`` disables it; bounded sources read the
            partitions that existed when they started.
        assignment: ``"static"`` (this process reads every partition) or ``"group"``
            (the job runs as one task per partition, assigned to the processes that run it
            by the consumer group ``group_id``; every source of the job must then be such a
            source, with the same bootstrap servers and group, over topics with the same
            partition count).

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
        partition_discovery_s: float | None = 300.0,
        assignment: str = "static",
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
        check_seconds(timeout_s, "timeout_s")
        check_seconds(partition_discovery_s, "partition_discovery_s", optional=True)
        if assignment not in ASSIGNMENTS:
            msg = f"assignment must be one of {ASSIGNMENTS}, got {assignment!r}"
            raise ConfigurationError(msg)
        self.assignment = assignment
        self.partitions: frozenset[int] | None = None
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
        self.discovery_interval_ms = (
            None
            if self.bounded or partition_discovery_s is None
            else max(1, round(partition_discovery_s * 1000))
        )

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

    def reader_config(self) -> ReaderConfig:
        """The settings the partition readers work from (the readers never see the source itself)."""
        return ReaderConfig(
            bootstrap_servers=self.bootstrap_servers,
            topics=list(self.topics),
            group_id=self.group_id,
            consumer_config=self.consumer_config(),
            starting_offsets=self.starting_offsets,
            stopping_offsets=self.stopping_offsets,
            value_deserializer=self.value_deserializer,
            key_deserializer=self.key_deserializer,
            include_metadata=self.include_metadata,
            timestamp=self.timestamp,
            dead_letter=self.dead_letter,
            commit_offsets=self.commit_offsets,
            fetch_records=self.fetch_records,
            max_buffered=self.max_buffered,
            timeout_s=self.timeout_s,
            partitions=self.partitions,
        )

    def create_readers(self) -> list[SplitReader]:
        """Look up partitions and offsets; one reader per partition, sorted by topic and partition.

        Raises:
            ConfigurationError: librdkafka rejects a setting.
            ConnectorError: the cluster cannot be reached, a topic does not exist, or a
                starting offset is out of the partition's range.
        """
        shared = SharedConsumer(self.reader_config())
        try:
            return shared.create_readers()
        except BaseException:
            shared.close()
            raise

    def discover_readers(self, readers: list[SplitReader]) -> list[SplitReader]:
        """Readers of partitions added to the topics since ``readers`` were created (from earliest)."""
        shared = next((r.shared for r in readers if isinstance(r, KafkaPartitionReader)), None)
        return [] if shared is None else list(shared.discover())

    def for_partition(self, partition: int) -> KafkaSource:
        """This source reading only partition ``partition`` of each topic (one task of the group).

        Raises:
            ConfigurationError: the source is not in ``assignment="group"`` mode.
        """
        if self.assignment != "group":
            msg = (
                f"{self.describe()} reads every partition (assignment='static'); a job whose tasks the "
                "consumer group assigns needs assignment='group' on every Kafka source"
            )
            raise ConfigurationError(msg)
        task = copy.copy(self)
        task.partitions = frozenset([partition])
        # A task reads a fixed partition; new partitions become new tasks of the group.
        task.discovery_interval_ms = None
        return task

    def describe(self) -> str:
        """``kafka(topics, bounded|unbounded)``."""
        return f"kafka({','.join(self.topics)}, {'bounded' if self.bounded else 'unbounded'})"
