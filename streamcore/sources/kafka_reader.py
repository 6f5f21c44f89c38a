"""Reading Kafka partitions: one shared consumer, one split reader per partition.

:class:`KafkaPartitionReader` is what the runtime polls; all readers of a source share
one assigned ``Consumer`` (:class:`SharedConsumer`) whose ``consume()`` results are
split into per-partition buffers. :class:`~streamcore.sources.kafka.KafkaSource` (the
configuration) creates them from a :class:`ReaderConfig`, the plain values they need, so
this module depends on nothing above it; confluent-kafka is imported only then.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Mapping
from dataclasses import dataclass
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
    error_name,
    import_confluent_kafka,
    kafka_errors,
)
from streamcore.logs import librdkafka_logger
from streamcore.sources.base import SplitReader
from streamcore.timestamps import extract_timestamps

__all__ = [
    "DeadLetter",
    "KafkaPartitionReader",
    "KafkaRecord",
    "ReaderConfig",
    "SharedConsumer",
    "resolve_time_offsets",
]

logger = logging.getLogger("streamcore.kafka")

#: dead letters routed to an OutputTag and not yet taken by the runtime before the reader gives up.
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


@dataclass(frozen=True)
class ReaderConfig:
    """What the readers of one source need, as validated plain values.

    :meth:`KafkaSource.reader_config <streamcore.sources.kafka.KafkaSource.reader_config>`
    builds it; the fields mean what the ``KafkaSource`` arguments of the same name mean.
    ``consumer_config`` is the full librdkafka configuration of the shared consumer.
    """

    bootstrap_servers: str
    topics: list[str]
    group_id: str
    consumer_config: Mapping[str, Any]
    starting_offsets: Any
    stopping_offsets: Any
    value_deserializer: Callable[[bytes], Any] | None
    key_deserializer: Callable[[bytes], Any] | None
    include_metadata: bool
    timestamp: str | Callable[[Any], int] | None
    dead_letter: OutputTag | Callable[[DeadLetter], Any] | None
    commit_offsets: bool
    fetch_records: int
    max_buffered: int
    timeout_s: float
    #: read only these partitions of every topic (one task of a consumer group); None: all.
    partitions: frozenset[int] | None = None


class SharedConsumer:
    """The one librdkafka consumer behind every partition reader of a source run.

    Raises:
        ConfigurationError: librdkafka rejects a setting of ``config.consumer_config``.
        ConnectorError: the consumer cannot be created.
    """

    def __init__(self, config: ReaderConfig) -> None:
        self.config = config
        self.ck = import_confluent_kafka()
        self.consumer: Any = None
        self.readers: list[KafkaPartitionReader] = []
        self.by_partition: dict[int, KafkaPartitionReader] = {}
        self.by_tp: dict[tuple[str, int], KafkaPartitionReader] = {}
        self.single_topic = len(config.topics) == 1
        self.assigned = False
        self.open_readers = 0
        self.buffered = 0
        self.fatal: BaseException | None = None
        self.transient_errors = 0
        self.commit_errors = 0
        self.committed_checkpoint = 0
        self.snapshot_positions: dict[tuple[str, int], int] = {}
        conf = dict(config.consumer_config)
        conf["error_cb"] = self._on_client_error
        conf["on_commit"] = self._on_commit
        conf.setdefault("logger", librdkafka_logger())
        with kafka_errors(f"creating a Kafka consumer for {config.bootstrap_servers}"):
            self.consumer = self.ck.Consumer(conf)

    # -- creation ------------------------------------------------------------------------
    def create_readers(self) -> list[KafkaPartitionReader]:
        """One reader per partition of the topics, at its starting offset (``starting_offsets``).

        Raises:
            ConnectorError: the cluster did not answer, a topic does not exist, or a
                starting offset is outside its partition's range.
        """
        src = self.config
        TopicPartition = self.ck.TopicPartition
        tps: list[tuple[str, int]] = []
        for topic in src.topics:
            have = self.partitions(topic)
            if src.partitions is not None:
                missing = sorted(src.partitions - set(have))
                if missing:
                    msg = (
                        f"topic {topic!r} has partitions {sorted(have)}, not {missing}: the source topics "
                        "of a consumer-group job must have the same number of partitions"
                    )
                    raise ConfigurationError(msg)
                have = [p for p in have if p in src.partitions]
            tps.extend((topic, p) for p in have)
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

    def discover(self) -> list[KafkaPartitionReader]:
        """Readers of partitions the topics gained since the readers were created, from their earliest offset.

        A failed look-up is logged and retried at the next discovery, never fatal.
        """
        if self.consumer is None:
            return []
        TopicPartition = self.ck.TopicPartition
        try:
            new = [
                (topic, p)
                for topic in self.config.topics
                for p in self.partitions(topic)
                if (topic, p) not in self.by_tp
            ]
            starts = {}
            for tp in new:
                with kafka_errors(f"reading the offsets of {tp[0]}-{tp[1]}"):
                    starts[tp] = self.consumer.get_watermark_offsets(
                        TopicPartition(*tp), timeout=self.config.timeout_s
                    )[0]
        except ConnectorError as exc:
            logger.warning(
                "partition discovery of %s failed, trying again later: %s", self.config.topics, exc
            )
            return []
        readers = []
        for tp in new:
            reader = KafkaPartitionReader(self, tp[0], tp[1], starts[tp], None)
            self.readers.append(reader)
            self.by_tp[tp] = reader
            self.by_partition[tp[1]] = reader
            readers.append(reader)
        if readers:
            self.open_readers += len(readers)
            logger.info("discovered partitions %s", [r.split_id for r in readers])
            if self.assigned:
                with kafka_errors(f"assigning the new partitions {[r.split_id for r in readers]}"):
                    self.consumer.incremental_assign(
                        [TopicPartition(r.topic, r.partition, r.next_offset) for r in readers]
                    )
        return readers

    def partitions(self, topic: str) -> list[int]:
        """The partitions of ``topic``, from the cluster's metadata.

        Raises:
            ConnectorError: the cluster did not answer within ``timeout_s``, or the topic does not exist.
        """
        src = self.config
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
        spec = self.config.starting_offsets
        TopicPartition = self.ck.TopicPartition
        if spec == "earliest":
            return {tp: marks[tp][0] for tp in tps}
        if spec == "latest":
            return {tp: marks[tp][1] for tp in tps}
        if spec == "committed":
            with kafka_errors(f"reading the committed offsets of group {self.config.group_id!r}"):
                found = self.consumer.committed(
                    [TopicPartition(*tp) for tp in tps], timeout=self.config.timeout_s
                )
            out = {}
            for tp, res in zip(tps, found, strict=True):
                low, high = marks[tp]
                out[tp] = min(max(res.offset, low), high) if res.offset >= 0 else low
            return out
        if isinstance(spec, int):
            query = [TopicPartition(tp[0], tp[1], spec) for tp in tps]
            with kafka_errors(f"looking up the offsets of timestamp {spec}"):
                found = self.consumer.offsets_for_times(query, timeout=self.config.timeout_s)
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
        spec = self.config.stopping_offsets
        if spec is None:
            return {}
        if spec == "latest":
            return {tp: marks[tp][1] for tp in tps}
        return {tp: spec.get(tp, marks[tp][1]) for tp in tps}

    # -- consuming -------------------------------------------------------------------------
    def _assign(self) -> None:
        TopicPartition = self.ck.TopicPartition
        live = [r for r in self.readers if not r.finished and not r.closed]
        with kafka_errors(f"assigning partitions of {self.config.topics}"):
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
        if self.buffered - sum(r.buffered() for r in self.readers if r.paused) >= self.config.max_buffered:
            return
        with kafka_errors(f"consuming from {self.config.topics}"):
            msgs = self.consumer.consume(self.config.fetch_records, 0)
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
        where = f"{m.topic()}-{m.partition()}" if m.topic() is not None else str(self.config.topics)
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
            msg = f"the Kafka consumer of {self.config.topics} failed fatally: {error_name(err)}: {err.str()}"
            self.fatal = ConnectorError(msg)
        else:
            self.transient_errors += 1
            logger.info("kafka source %s: %s", self.config.topics, err.str())

    def _on_commit(self, err: Any, partitions: Any) -> None:
        if err is not None:
            self.commit_errors += 1
            logger.warning(
                "kafka source: committing offsets to group %r failed: %s", self.config.group_id, err
            )

    # -- pausing ------------------------------------------------------------------------------
    def set_paused(self, reader: KafkaPartitionReader, paused: bool) -> None:
        """Pause or resume fetching ``reader``'s partition (before the first fetch: at assignment)."""
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
        """Fetch ``reader``'s partition from its ``next_offset`` (before the first fetch: at assignment)."""
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
        if not self.config.commit_offsets or checkpoint_id <= self.committed_checkpoint:
            return
        self.committed_checkpoint = checkpoint_id
        if not self.snapshot_positions or self.consumer is None:
            return
        TopicPartition = self.ck.TopicPartition
        offsets = [TopicPartition(t, p, off) for (t, p), off in sorted(self.snapshot_positions.items())]
        try:
            with kafka_errors(f"committing offsets to group {self.config.group_id!r}"):
                self.consumer.commit(offsets=offsets, asynchronous=True)
        except ConnectorError as exc:
            # Committed offsets only serve monitoring: a failure is logged, never fatal.
            self.commit_errors += 1
            logger.warning("%s", exc)

    # -- closing -------------------------------------------------------------------------------
    def release(self) -> None:
        """A reader closed; the last one closes the consumer."""
        self.open_readers -= 1
        if self.open_readers <= 0:
            self.close()

    def close(self) -> None:
        """Close the consumer (it commits nothing on close: auto-commit is off); again: nothing."""
        consumer, self.consumer = self.consumer, None
        if consumer is not None:
            with kafka_errors(f"closing the Kafka consumer of {self.config.topics}"):
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
        self, shared: SharedConsumer, topic: str, partition: int, start: int, stop: int | None
    ) -> None:
        src = shared.config
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
