"""Write-ahead records and commit markers: recovering an exactly-once KafkaSink transaction.

librdkafka cannot resume another process's transaction: re-initialising a
``transactional.id`` after a crash makes the broker *abort* a transaction whose commit
had not started, even though a completed checkpoint promised its records. So, with
``write_ahead=True`` (the default of ``delivery="exactly_once"``), every transaction
carries what it takes to redo it:

* **The write-ahead log**: each batch the transaction produces is also kept in its
  handle, as produced (value bytes, key bytes or ``None``, timestamp), packed into one
  msgpack blob per batch (:func:`pack_batch`). The checkpoint that pre-commits the
  transaction stores the handle, hence the records.
* **A commit marker**: at pre-commit the transaction produces one more record, to the
  marker topic, which commits or aborts atomically with the others. Its key is the
  sink's transactional-id prefix; its value, JSON ``{"prefix", "run", "seq", "records"}``,
  names the transaction (``run`` is random per run of the sink, ``seq`` counts the run's
  transactions). All markers of one sink go to one partition, ``crc32(prefix) %
  partitions``, and the handle records that partition and its high watermark taken just
  before the marker was produced: the marker lies at or after it, so a search reads a
  short range, never the whole topic.

Recovery (:meth:`TransactionalDelivery.restore
<streamcore.sinks.kafka_transactions.TransactionalDelivery.restore>`) then knows, for
each pending transaction of the restored checkpoint, whether it committed: its marker is
visible to a ``read_committed`` consumer. If not, the sink produces the logged records
and the same marker again in a fresh transaction, and commits it before the job goes on.
:class:`CommitMarkers` does the reading: :meth:`~CommitMarkers.committed` reads each
marker partition from the lowest stored start up to its high watermark taken *after*
the crashed producers were fenced (every marker of theirs is below it), and waits until
the consumer's position, or the end of partition it reports, passes that offset (the
position alone may stay before a trailing transaction control record). A
``read_committed`` consumer stops at the partition's last stable offset, so a marker is
only missing once no transaction open before it can still hide it.

Handles stay msgpack-able (checkpoints store them): ``{"tid", "seq", "records", "log"}``
and, after a pre-commit with records, ``"marker": {"topic", "partition", "from",
"prefix", "run"}``.
"""

from __future__ import annotations

import json
import logging
import re
import time
import zlib
from collections.abc import Iterator, Mapping
from typing import Any

from streamcore.errors import ConnectorError
from streamcore.kafka_client import TRANSIENT_ERRORS, error_name, import_confluent_kafka, kafka_errors
from streamcore.logs import librdkafka_logger
from streamcore.serde import msgpack_dumps, msgpack_loads

__all__ = [
    "MARKER_TOPIC_SUFFIX",
    "CommitMarkers",
    "check_topic_name",
    "consumer_settings",
    "logged_batches",
    "logged_records",
    "marker_identity",
    "marker_partition",
    "marker_record",
    "pack_batch",
    "parse_marker",
]

logger = logging.getLogger("streamcore.kafka")

#: the default marker topic is ``<topic>`` + this suffix.
MARKER_TOPIC_SUFFIX = ".streamcore-commits"

#: the group id of the marker consumers; they only ``assign``, so the group is never joined.
_GROUP_ID = "streamcore-commit-markers"

_LEGAL_TOPIC = re.compile(r"[A-Za-z0-9._-]{1,249}")

# Settings of the producer ``config`` that the marker consumers need too: how to reach and
# authenticate to the cluster, and logging. Producer-only settings are left out (librdkafka
# would warn about each).
_SHARED_PREFIXES = (
    "security.",
    "sasl.",
    "ssl.",
    "ssl_",
    "enable.ssl.",
    "enable.sasl.",
    "oauth",
    "client.",
    "socket.",
    "broker.",
    "reconnect.",
    "retry.backoff",
    "api.version",
    "metadata.",
    "topic.metadata.",
    "log",
    "debug",
)


# -- names -------------------------------------------------------------------------------------
def check_topic_name(name: Any, what: str) -> str | None:
    """Why ``name`` is not a legal Kafka topic name, or ``None`` if it is."""
    if not isinstance(name, str):
        return f"{what} must be a str, got {type(name).__name__}"
    if not _LEGAL_TOPIC.fullmatch(name) or name in (".", ".."):
        return (
            f"{what} {name!r} is not a legal Kafka topic name (1-249 characters of "
            "a-z A-Z 0-9 . _ -, not '.' or '..')"
        )
    return None


def marker_partition(prefix: str, partitions: int) -> int:
    """The marker topic partition that holds every marker of the sink with ``prefix``."""
    return zlib.crc32(prefix.encode()) % partitions


def consumer_settings(config: Mapping[str, Any]) -> dict[str, Any]:
    """The connection, security and logging settings of a producer ``config``, for a consumer."""
    return {k: v for k, v in config.items() if k.startswith(_SHARED_PREFIXES)}


# -- the write-ahead log -----------------------------------------------------------------------
def pack_batch(
    payloads: list[Any],
    keys: list[Any] | None,
    timestamps: list[int] | None,
    partitions: list[int] | None = None,
) -> bytes:
    """One produced batch, as the log keeps it: msgpack ``[values, keys or nil, timestamps or nil]``,
    plus the records' partitions when the sink chose them.

    ``timestamps`` are the event timestamps as given to the producer (``None``: the
    producer stamped the records); a value <= 0 also means the producer's clock.
    """
    batch = [payloads, keys, timestamps] if partitions is None else [payloads, keys, timestamps, partitions]
    return msgpack_dumps(batch)


def logged_batches(
    transaction: Mapping[str, Any],
) -> Iterator[tuple[list[Any], list[Any] | None, list[int] | None, list[int] | None]]:
    """The batches a transaction handle logged, oldest first: ``(values, keys, timestamps, partitions)``."""
    for blob in transaction.get("log") or ():
        batch = msgpack_loads(blob)
        yield batch[0], batch[1], batch[2], batch[3] if len(batch) > 3 else None


def logged_records(transaction: Mapping[str, Any]) -> list[tuple[Any, Any, int | None]]:
    """Every record a transaction handle logged, as ``(value, key, timestamp)`` (for inspection)."""
    out: list[tuple[Any, Any, int | None]] = []
    for payloads, keys, timestamps, _ in logged_batches(transaction):
        kk = keys if keys is not None else [None] * len(payloads)
        tt = timestamps if timestamps is not None else [None] * len(payloads)
        out.extend(zip(payloads, kk, tt, strict=True))
    return out


# -- markers -----------------------------------------------------------------------------------
def marker_record(prefix: str, run: str, seq: int, records: int) -> tuple[bytes, bytes]:
    """The ``(key, value)`` of the commit marker of transaction ``seq`` of ``run``."""
    value = {"prefix": prefix, "run": run, "seq": seq, "records": records}
    return prefix.encode(), json.dumps(value, separators=(",", ":")).encode()


def marker_identity(transaction: Mapping[str, Any]) -> tuple[str, str, int]:
    """``(prefix, run, seq)`` of a handle that produced a marker: what a marker must show."""
    marker = transaction["marker"]
    return str(marker["prefix"]), str(marker["run"]), int(transaction["seq"])


def parse_marker(key: Any, value: Any) -> tuple[str, str, int] | None:
    """``(prefix, run, seq)`` of a marker record; ``None`` for anything else in the topic."""
    if not isinstance(key, bytes) or not isinstance(value, bytes):
        return None
    try:
        body = json.loads(value)
        found = (str(body["prefix"]), str(body["run"]), int(body["seq"]))
    except (ValueError, TypeError, KeyError):
        return None
    return found if found[0].encode() == key else None


class CommitMarkers:
    """Reads the marker topic: high watermarks while running, committed markers at a restore.

    Consumers are created when first needed: a *probe* (``read_uncommitted``, never
    assigned) answers high watermarks; a ``read_committed`` reader is created for each
    :meth:`committed` call and closed after it.

    Args:
        bootstrap_servers: the cluster.
        config: librdkafka settings shared with the producers (see :func:`consumer_settings`).
        timeout_s: how long a look-up may take before it fails.
    """

    def __init__(self, bootstrap_servers: str, config: Mapping[str, Any], timeout_s: float) -> None:
        self.bootstrap_servers = bootstrap_servers
        self.config = consumer_settings(config)
        self.timeout_s = timeout_s
        self._probe: Any = None
        self.lookups = 0

    def _consumer(self, isolation: str) -> Any:
        ck = import_confluent_kafka()
        conf = {
            **self.config,
            "bootstrap.servers": self.bootstrap_servers,
            "group.id": _GROUP_ID,
            "enable.auto.commit": False,
            "enable.auto.offset.store": False,
            "auto.offset.reset": "error",
            "enable.partition.eof": True,
            "isolation.level": isolation,
            # A short fetch wait: the reader stops at the end of a short range.
            "fetch.wait.max.ms": 10,
        }
        conf.setdefault("logger", librdkafka_logger())
        with kafka_errors("creating the consumer of the commit-marker topic"):
            return ck.Consumer(conf)

    def high_watermark(self, topic: str, partition: int) -> int:
        """The partition's high watermark (every record written so far is below it).

        Raises:
            ConnectorError: the cluster did not answer within ``timeout_s``.
        """
        if self._probe is None:
            self._probe = self._consumer("read_uncommitted")
        ck = import_confluent_kafka()
        with kafka_errors(
            f"reading the high watermark of commit-marker partition {topic}-{partition}",
            "is the cluster reachable, and does the marker topic exist?",
        ):
            _low, high = self._probe.get_watermark_offsets(
                ck.TopicPartition(topic, partition), timeout=self.timeout_s
            )
        return int(high)

    def committed(self, transactions: list[Mapping[str, Any]]) -> set[tuple[str, str, int]]:
        """The identities (:func:`marker_identity`) of every committed marker at or after the handles' starts.

        Reads each marker partition the handles name, from the lowest ``from`` up to the
        partition's current high watermark; call it only once the producers that could
        still add to those transactions are fenced.

        Raises:
            ConnectorError: the range could not be read within ``timeout_s`` (a transaction
                open on the partition holds back its last stable offset), or a read failed.
        """
        starts: dict[tuple[str, int], int] = {}
        for t in transactions:
            m = t["marker"]
            tp = (str(m["topic"]), int(m["partition"]))
            starts[tp] = min(starts.get(tp, int(m["from"])), int(m["from"]))
        self.lookups += 1
        ck = import_confluent_kafka()
        ranges: dict[tuple[str, int], tuple[int, int]] = {}
        if self._probe is None:
            self._probe = self._consumer("read_uncommitted")
        for tp, start in sorted(starts.items()):
            with kafka_errors(f"reading the offsets of commit-marker partition {tp[0]}-{tp[1]}"):
                low, high = self._probe.get_watermark_offsets(ck.TopicPartition(*tp), timeout=self.timeout_s)
            if start < low:
                logger.warning(
                    "commit markers of %s-%d from offset %d were deleted (the partition now starts at %d): "
                    "a transaction whose marker is gone is produced again, which may duplicate its records; "
                    "keep the marker topic's retention longer than any outage you restore after",
                    tp[0],
                    tp[1],
                    start,
                    low,
                )
            start = min(max(start, low), high)
            if start < high:
                ranges[tp] = (start, high)
        if not ranges:
            return set()
        return self._read(ranges)

    def _read(self, ranges: dict[tuple[str, int], tuple[int, int]]) -> set[tuple[str, str, int]]:
        """Read every ``(start, end)`` range with ``read_committed``; the marker identities seen."""
        ck = import_confluent_kafka()
        reader = self._consumer("read_committed")
        found: set[tuple[str, str, int]] = set()
        try:
            with kafka_errors("assigning the commit-marker partitions"):
                reader.assign([ck.TopicPartition(t, p, start) for (t, p), (start, _end) in ranges.items()])
            todo = {tp: end for tp, (_start, end) in ranges.items()}
            deadline = time.monotonic() + self.timeout_s
            while todo:
                with kafka_errors("reading the commit-marker topic"):
                    msgs = reader.consume(500, 0.05)
                for m in msgs:
                    err = m.error()
                    if err is None:
                        ident = parse_marker(m.key(), m.value())
                        if ident is not None:
                            found.add(ident)
                    elif error_name(err) == "_PARTITION_EOF":
                        # The end a read_committed reader can see (the last stable offset). It is
                        # the safer stop: the position may stay before a trailing control record.
                        tp = (m.topic(), m.partition())
                        if tp in todo and (m.offset() or 0) >= todo[tp]:
                            del todo[tp]
                    else:
                        _raise_unless_transient(err, m)
                if not todo:
                    break
                with kafka_errors("reading the position in the commit-marker topic"):
                    positions = reader.position([ck.TopicPartition(*tp) for tp in todo])
                for pos in positions:
                    if pos.offset >= todo[(pos.topic, pos.partition)]:
                        del todo[(pos.topic, pos.partition)]
                if todo and time.monotonic() > deadline:
                    (topic, partition), end = next(iter(todo.items()))
                    msg = (
                        f"reading the commit markers of {topic}-{partition} did not reach offset {end} "
                        f"within {self.timeout_s}s: a transaction still open on that partition holds back "
                        "what read_committed consumers see (the broker aborts it after its "
                        "transaction.timeout.ms); the restore fails rather than guess, restart the job then"
                    )
                    raise ConnectorError(msg)
        finally:
            with kafka_errors("closing the commit-marker reader"):
                reader.close()
        return found

    def close(self) -> None:
        """Close the probe consumer (calling it again does nothing)."""
        probe, self._probe = self._probe, None
        if probe is not None:
            with kafka_errors("closing the commit-marker consumer"):
                probe.close()


def _raise_unless_transient(err: Any, m: Any) -> None:
    name = error_name(err)
    where = f"{m.topic()}-{m.partition()}" if m.topic() is not None else "the commit-marker topic"
    if name in ("_AUTO_OFFSET_RESET", "OFFSET_OUT_OF_RANGE"):
        msg = f"commit markers of {where} are gone (deleted by retention while being read): {err.str()}"
        raise ConnectorError(msg)
    if not err.fatal() and (err.retriable() or name in TRANSIENT_ERRORS):
        logger.info("commit-marker reader %s: transient error, retrying: %s", where, err.str())
        return
    msg = f"reading the commit markers of {where} failed: {name}: {err.str()}"
    raise ConnectorError(msg)
