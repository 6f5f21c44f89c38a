"""Writing to a Kafka topic, at least once or exactly once (one transaction per checkpoint).

``delivery="at_least_once"``: records are produced as batches arrive; every checkpoint
and the end of input flush the producer, so a checkpoint completes only once everything
before it is acknowledged by the brokers. A crash replays records written after the last
checkpoint: duplicates, never loss.

``delivery="exactly_once"``: one Kafka transaction per checkpoint, through
:class:`~streamcore.sinks.two_phase.TwoPhaseCommitSink`. Records go into the open
transaction; a checkpoint flushes it (pre-commit) and the next transaction begins; the
flushed one is committed when the checkpoint completes. A Kafka producer has only one
open transaction at a time, so the sink keeps a small pool of producers with stable
``transactional.id`` values ``<prefix>-0``, ``<prefix>-1``, ... (usually two alternate).
Consumers must read with ``isolation.level=read_committed``.

Recovery: librdkafka cannot resume another process's transaction, and re-initialising a
``transactional.id`` (which fences the crashed run's producers) makes the broker abort a
transaction whose commit had not started. With ``write_ahead=True`` (the default) each
transaction keeps its records in the checkpoint and produces a commit marker, so a
restore tells a committed transaction from an aborted one and produces the aborted one
again (:mod:`streamcore.sinks.kafka_write_ahead`). A restore, in steps (the ``# Step N``
comments in :meth:`KafkaSink.restore_state` follow them):

1. Re-initialise every ``transactional.id`` of the restored checkpoint: the broker
   completes a commit that had started and aborts every other open transaction,
   including the one that was open when the checkpoint was taken.
2. Read the commit markers of the checkpoint's pending transactions with a
   ``read_committed`` consumer.
3. A pending transaction whose marker is visible committed: nothing to do. Any other is
   produced again, from the records in the checkpoint, in a fresh transaction that is
   committed before the job continues. A crash during that either committed it (its
   marker is found next time) or aborted it (it is produced again next time).

With ``write_ahead=False`` a crash between a checkpoint becoming durable and its
transaction's commit loses that transaction's records; the restore logs a warning naming
it. Transactions must also complete within ``transaction.timeout.ms`` (librdkafka default
60 s), so keep checkpoints more frequent than that.

Delivery errors (a record the brokers refused, or could not take before
``message.timeout.ms``) fail the job with :class:`~streamcore.errors.ConnectorError`;
nothing is dropped silently.
"""

from __future__ import annotations

import logging
import secrets
import time
from collections.abc import Callable, Mapping
from typing import Any

from streamcore.errors import ConfigurationError, ConnectorError, SerializationError, StreamcoreError
from streamcore.functions import function_name
from streamcore.kafka_client import check_client_config, check_seconds, import_confluent_kafka, kafka_errors
from streamcore.serde import json_dumps
from streamcore.sinks.kafka_write_ahead import (
    MARKER_TOPIC_SUFFIX,
    CommitMarkers,
    check_topic_name,
    logged_batches,
    marker_identity,
    marker_partition,
    marker_record,
    pack_batch,
)
from streamcore.sinks.two_phase import TwoPhaseCommitSink

__all__ = ["KafkaSink", "default_key_serializer"]

logger = logging.getLogger("streamcore.kafka")

DELIVERY_MODES = ("at_least_once", "exactly_once")

#: producer settings streamcore decides, and what to do instead of setting them.
OWNED_PRODUCER_KEYS: dict[str, str] = {
    "bootstrap.servers": "pass bootstrap_servers=... to KafkaSink",
    "transactional.id": "pass transactional_id_prefix=... with delivery='exactly_once'",
    "on_delivery": "delivery errors are collected by the sink and fail the job",
    "delivery.report.only.error": "the sink only needs reports of failed deliveries",
    "error_cb": "streamcore handles client errors itself (fatal ones fail the job)",
}

#: how long close() waits for queued records (a failed job should not hang on a dead cluster).
_CLOSE_FLUSH_S = 5.0

_UNSAFE_ID = str.maketrans({c: "_" for c in " /\\"})


def default_key_serializer(key: Any) -> bytes | None:
    """Bytes as they are, str as UTF-8, ``None`` as no key, anything else as JSON."""
    if key is None or isinstance(key, bytes):
        return key
    if isinstance(key, str):
        return key.encode()
    return json_dumps(key)


class KafkaSink(TwoPhaseCommitSink):
    """Writes records to ``topic``; at least once (flush per checkpoint) or exactly once (transactions).

    Args:
        bootstrap_servers: the cluster's ``host:port,...``.
        topic: the topic to write to (it must exist, or the cluster must auto-create it).
        key: ``record -> key`` (serialized with ``key_serializer``); ``None``: no key,
            librdkafka's partitioner spreads records.
        value_serializer: ``record -> bytes`` (default: compact JSON).
        key_serializer: ``key -> bytes`` (default :func:`default_key_serializer`).
        delivery: ``"at_least_once"`` or ``"exactly_once"``.
        transactional_id_prefix: exactly once only: prefix of the producers'
            ``transactional.id``; default ``streamcore-<topic>-<sink uid>``. Two jobs
            writing the same topic with equal sink uids need distinct prefixes.
        write_ahead: exactly once only (default ``True`` there): keep each transaction's
            records in the checkpoint and give it a commit marker, so that a restore
            produces again a transaction the crash left uncommitted (module docstring).
            Checkpoints then also hold the bytes written since the previous one.
            ``False`` saves that, but a crash between a checkpoint and its commit loses
            the transaction's records.
        marker_topic: with ``write_ahead``: the topic that takes one small commit marker
            per transaction, default ``<topic>.streamcore-commits``. It must exist, or
            the brokers must auto-create it (librdkafka's mock cluster does, with 4
            partitions); one partition is enough. Keep its retention longer than any
            outage after which you restore, and do not compact it. Several sinks may
            share it (markers are keyed by ``transactional_id_prefix``).
        write_timestamps: give each Kafka record its streamcore event timestamp (when it
            has one, >= 0); otherwise the producer's clock.
        config: more librdkafka producer settings (``{"linger.ms": 20}``); keys streamcore
            owns are refused.
        flush_timeout_s: how long a checkpoint or the end of input waits for outstanding
            deliveries before it fails (also the limit of a restore's marker look-up).

    Raises:
        ConfigurationError: a bad argument, or a setting librdkafka rejects (when the job starts).

    Example::

        stream.sink_to(KafkaSink("localhost:9092", "ad-clicks-joined", key=lambda r: r["ad_id"],
                                 delivery="exactly_once")).uid("joined-out")
    """

    def __init__(
        self,
        bootstrap_servers: str,
        topic: str,
        *,
        key: Callable[[Any], Any] | None = None,
        value_serializer: Callable[[Any], bytes] = json_dumps,
        key_serializer: Callable[[Any], bytes | None] = default_key_serializer,
        delivery: str = "at_least_once",
        transactional_id_prefix: str | None = None,
        write_ahead: bool | None = None,
        marker_topic: str | None = None,
        write_timestamps: bool = True,
        config: Mapping[str, Any] | None = None,
        flush_timeout_s: float = 30.0,
    ) -> None:
        super().__init__()
        if not isinstance(bootstrap_servers, str) or not bootstrap_servers.strip():
            msg = f"bootstrap_servers must be a non-empty 'host:port,...' str, got {bootstrap_servers!r}"
            raise ConfigurationError(msg)
        if not isinstance(topic, str) or not topic:
            msg = f"topic must be a non-empty str, got {topic!r}"
            raise ConfigurationError(msg)
        for name, fn in (
            ("key", key),
            ("value_serializer", value_serializer),
            ("key_serializer", key_serializer),
        ):
            if fn is not None and not callable(fn):
                msg = f"KafkaSink {name} must be a callable, got {type(fn).__name__}"
                raise ConfigurationError(msg)
        if value_serializer is None or key_serializer is None:
            msg = "KafkaSink value_serializer and key_serializer must be callables (got None)"
            raise ConfigurationError(msg)
        if delivery not in DELIVERY_MODES:
            msg = f"delivery must be one of {DELIVERY_MODES}, got {delivery!r}"
            raise ConfigurationError(msg)
        if transactional_id_prefix is not None:
            if delivery != "exactly_once":
                msg = "transactional_id_prefix only applies to delivery='exactly_once'"
                raise ConfigurationError(msg)
            if not isinstance(transactional_id_prefix, str) or not transactional_id_prefix:
                msg = f"transactional_id_prefix must be a non-empty str, got {transactional_id_prefix!r}"
                raise ConfigurationError(msg)
        if write_ahead is not None and type(write_ahead) is not bool:
            msg = f"write_ahead must be True, False or None (the default), got {write_ahead!r}"
            raise ConfigurationError(msg)
        if write_ahead and delivery != "exactly_once":
            msg = "write_ahead only applies to delivery='exactly_once'"
            raise ConfigurationError(msg)
        uses_markers = delivery == "exactly_once" and write_ahead is not False
        if marker_topic is not None and not uses_markers:
            msg = (
                "marker_topic only applies to delivery='exactly_once' with write_ahead=True "
                "(the default there); drop it, or enable both"
            )
            raise ConfigurationError(msg)
        if uses_markers:
            if marker_topic is None:
                marker_topic = f"{topic}{MARKER_TOPIC_SUFFIX}"
                why = check_topic_name(
                    marker_topic, f"the default marker_topic (derived from topic {topic!r})"
                )
                hint = "; pass marker_topic=... with a legal name"
            else:
                why = check_topic_name(marker_topic, "marker_topic")
                hint = ""
            if why is not None:
                raise ConfigurationError(why + hint)
            if marker_topic == topic:
                msg = f"marker_topic must differ from topic {topic!r}: markers would mix with the records"
                raise ConfigurationError(msg)
        if type(write_timestamps) is not bool:
            msg = f"write_timestamps must be True or False, got {write_timestamps!r}"
            raise ConfigurationError(msg)
        check_seconds(flush_timeout_s, "flush_timeout_s")
        self.bootstrap_servers = bootstrap_servers
        self.topic = topic
        self.key = key
        self.value_serializer = value_serializer
        self.key_serializer = key_serializer
        self.delivery = delivery
        self.exactly_once = delivery == "exactly_once"
        self.transactional_id_prefix = transactional_id_prefix
        self.write_ahead = uses_markers
        self.marker_topic = marker_topic if uses_markers else None
        self.write_timestamps = write_timestamps
        self.config = check_client_config(config, OWNED_PRODUCER_KEYS, "KafkaSink")
        self.flush_timeout_s = float(flush_timeout_s)
        # Runtime objects (one run of the job).
        self._ck: Any = None
        self._producer: Any = None  # at least once
        self._producers: dict[str, Any] = {}  # exactly once: transactional.id -> producer
        self._open_txn: dict[str, int] = {}  # transactional.id -> seq of its open transaction
        self._free: list[str] = []
        self._seq = 0
        self._prefix: str | None = None
        self._run = ""  # random per open(): names this run's transactions in their markers
        self._marker_partition: int | None = None
        self._markers = CommitMarkers(bootstrap_servers, self.config, self.flush_timeout_s)
        self._errors: list[str] = []
        self._error_count = 0
        self._fatal: str | None = None
        self.records_out = 0
        self.bytes_out = 0
        self.commit_ms_total = 0.0
        self.commit_ms_last = 0.0
        self.recovered = 0
        self.replayed = 0
        self.records_replayed = 0
        self.confirmed = 0

    # -- producers --------------------------------------------------------------------------
    def _on_delivery(self, err: Any, msg: Any) -> None:
        # Only failed deliveries are reported (delivery.report.only.error).
        if err is not None:
            self._error_count += 1
            if len(self._errors) < 5:
                where = f"{msg.topic()}-{msg.partition()}" if msg is not None else self.topic
                self._errors.append(f"{where}: {err.str() if hasattr(err, 'str') else err}")

    def _on_client_error(self, err: Any) -> None:
        if err.fatal():
            self._fatal = f"{err.name()}: {err.str()}"
        else:
            logger.info("kafka sink %s: %s", self.topic, err.str())

    def _new_producer(self, transactional_id: str | None) -> Any:
        if self._ck is None:
            self._ck = import_confluent_kafka()
        conf = {
            **self.config,
            "bootstrap.servers": self.bootstrap_servers,
            "on_delivery": self._on_delivery,
            "delivery.report.only.error": True,
            "error_cb": self._on_client_error,
        }
        if transactional_id is not None:
            conf["transactional.id"] = transactional_id
        with kafka_errors(f"creating a Kafka producer for topic {self.topic!r}"):
            producer = self._ck.Producer(conf)
        if transactional_id is not None:
            try:
                with kafka_errors(
                    f"initialising transactions of {transactional_id!r}",
                    "does the cluster support transactions (brokers >= 0.11, enough replicas)?",
                ):
                    producer.init_transactions(self.flush_timeout_s)
            except BaseException:
                _close_quietly(producer)
                raise
        return producer

    def _check_errors(self) -> None:
        if self._fatal is not None:
            msg = f"the Kafka producer of topic {self.topic!r} hit a fatal error: {self._fatal}"
            raise ConnectorError(msg)
        if self._error_count:
            msg = (
                f"{self._error_count} records could not be delivered to topic {self.topic!r} "
                f"(first: {'; '.join(self._errors)}); the job fails rather than drop them"
            )
            raise ConnectorError(msg)

    def _serialize(self, values: list[Any]) -> tuple[list[bytes], list[Any] | None]:
        fn: Any = self.value_serializer
        try:
            payloads = [fn(v) for v in values]
            keyf = self.key
            if keyf is None:
                return payloads, None
            fn = keyf
            raw_keys = [keyf(v) for v in values]
            fn = self.key_serializer
            return payloads, [fn(k) for k in raw_keys]
        except StreamcoreError:
            raise
        except Exception as exc:
            msg = (
                f"KafkaSink({self.topic!r}): {function_name(fn)} raised {type(exc).__name__}: {exc}; "
                "records must be serializable by the sink's value_serializer / key / key_serializer"
            )
            raise SerializationError(msg) from exc

    def _produce(
        self, producer: Any, values: list[Any], timestamps: list[int] | None
    ) -> tuple[list[bytes], list[Any] | None]:
        """Serialize and produce a batch; returns the ``(values, keys)`` bytes produced."""
        payloads, keys = self._serialize(values)
        self._produce_serialized(producer, payloads, keys, timestamps)
        return payloads, keys

    def _produce_serialized(
        self, producer: Any, payloads: list[Any], keys: list[Any] | None, timestamps: list[int] | None
    ) -> None:
        topic = self.topic
        produce = producer.produce
        retry = self._produce_when_room
        with kafka_errors(f"producing to topic {topic!r}"):
            if self.write_timestamps and timestamps is not None:
                # Kafka timestamps are >= 0; 0 lets the producer stamp the record itself.
                kk = keys if keys is not None else [None] * len(payloads)
                for value, k, t in zip(payloads, kk, timestamps, strict=True):
                    try:
                        produce(topic, value, k, timestamp=t if t > 0 else 0)
                    except BufferError:
                        retry(producer, value, k, t if t > 0 else 0)
            elif keys is not None:
                for value, k in zip(payloads, keys, strict=True):
                    try:
                        produce(topic, value, k)
                    except BufferError:
                        retry(producer, value, k, 0)
            else:
                for value in payloads:
                    try:
                        produce(topic, value)
                    except BufferError:
                        retry(producer, value, None, 0)
            producer.poll(0)
        self.records_out += len(payloads)
        self.bytes_out += sum(map(len, payloads))
        self._check_errors()

    def _produce_when_room(self, producer: Any, value: bytes, key: Any, timestamp: int) -> None:
        """The local queue is full: serve delivery reports until the record fits."""
        deadline = time.monotonic() + self.flush_timeout_s
        while True:
            producer.poll(0.05)
            try:
                producer.produce(self.topic, value, key, timestamp=timestamp)
                return
            except BufferError:
                if time.monotonic() > deadline:
                    msg = (
                        f"the producer queue of topic {self.topic!r} stayed full for "
                        f"{self.flush_timeout_s}s; is the cluster reachable?"
                    )
                    raise ConnectorError(msg) from None

    def _flush(self, producer: Any, what: str) -> None:
        with kafka_errors(f"flushing the producer of topic {self.topic!r}"):
            remaining = producer.flush(self.flush_timeout_s)
        self._check_errors()
        if remaining:
            msg = (
                f"{remaining} records to topic {self.topic!r} were not acknowledged within "
                f"{self.flush_timeout_s}s at {what}; is the cluster reachable?"
            )
            raise ConnectorError(msg)

    # -- sink contract ---------------------------------------------------------------------
    def open(self, operator_uid: str) -> None:
        """Create the producer (at least once), or begin the first transaction (exactly once)."""
        self.operator_uid = operator_uid
        if not self.exactly_once:
            self._producer = self._new_producer(None)
            return
        self._prefix = self.transactional_id_prefix or f"streamcore-{self.topic}-{operator_uid}".translate(
            _UNSAFE_ID
        )
        self._run = secrets.token_hex(6)
        super().open(operator_uid)

    def write_batch(self, values: list[Any], timestamps: list[int] | None) -> None:
        """Produce the batch (into the open transaction with exactly once)."""
        if self.exactly_once:
            super().write_batch(values, timestamps)
        else:
            self._produce(self._producer, values, timestamps)

    def snapshot_state(self, checkpoint_id: int) -> Any:
        """At least once: flush. Exactly once: pre-commit the transaction, begin the next.

        The image holds the pending transactions with their logged records; the open one
        only by name (it is aborted on restore), so it costs nothing.
        """
        if self.exactly_once:
            image = super().snapshot_state(checkpoint_id)
            current = image["current"]
            if current is not None and "log" in current:
                image["current"] = {k: v for k, v in current.items() if k != "log"}
            return image
        if self._producer is not None:
            self._flush(self._producer, f"checkpoint {checkpoint_id}")
        return None

    def notify_checkpoint_complete(self, checkpoint_id: int) -> None:
        """Exactly once: commit the transactions the checkpoint covers."""
        if self.exactly_once:
            super().notify_checkpoint_complete(checkpoint_id)

    def restore_state(self, image: Any) -> None:
        """Exactly once: make the restored checkpoint's pending transactions committed, abort the open one.

        Runs before :meth:`open`, in the steps of the module docstring. A pending
        transaction without a marker in the image (written with ``write_ahead=False``)
        can only be left to the broker: the warning names it.

        Raises:
            ConnectorError: the cluster cannot be reached, the markers cannot be read
                within ``flush_timeout_s``, or producing a transaction again failed (a
                restart tries again: nothing is lost or doubled by trying twice).
        """
        if not self.exactly_once or not image:
            return
        pending = [transaction for _cid, transaction in image.get("pending", ())]
        current = image.get("current")
        # Step 1: fence every producer of the crashed run that the checkpoint names.
        for transaction in [*pending, current]:
            if transaction is not None:
                self._reinit(transaction)
        if current is not None:
            self.aborted += 1
        # Step 2: which pending transactions are visibly committed?
        logged = [t for t in pending if t.get("marker") and t.get("log")]
        seen = self._markers.committed(logged) if logged else set()
        # Step 3: produce again every one that is not.
        logged_ids = {id(t) for t in logged}
        for transaction in pending:
            if id(transaction) in logged_ids:
                if marker_identity(transaction) in seen:
                    self.confirmed += 1
                else:
                    self._replay(transaction)
            elif transaction.get("records"):
                logger.warning(
                    "KafkaSink %s: transaction %r (%d records, written with write_ahead=False) was pending "
                    "when the previous run stopped; the broker completes its commit if it had started, "
                    "otherwise it aborts it and those records are lost",
                    self.topic,
                    transaction["tid"],
                    transaction["records"],
                )
            self.committed += 1

    def finish(self) -> None:
        """End of input: flush (at least once) or pre-commit the last transaction (exactly once)."""
        if self.exactly_once:
            super().finish()
        elif self._producer is not None:
            self._flush(self._producer, "the end of input")

    def close(self) -> None:
        """Commit or abort as the two-phase-commit base decides, then close every client."""
        try:
            if self.exactly_once:
                super().close()
        finally:
            producers = [self._producer, *self._producers.values()]
            self._producer = None
            self._producers = {}
            self._open_txn = {}
            self._free = []
            for producer in producers:
                if producer is not None:
                    _close_quietly(producer, self.topic)
            try:
                self._markers.close()
            except StreamcoreError as exc:
                logger.warning("KafkaSink %s: %s", self.topic, exc)

    # -- transactions (exactly once) -----------------------------------------------------------
    def begin_transaction(self) -> Any:
        """Begin a transaction on a producer with none open; the handle names its id and a sequence number."""
        tid = self._free_producer()
        with kafka_errors(f"beginning a transaction on {tid!r}"):
            self._producers[tid].begin_transaction()
        self._seq += 1
        self._open_txn[tid] = self._seq
        if self.write_ahead:
            return {"tid": tid, "seq": self._seq, "records": 0, "log": []}
        return {"tid": tid, "seq": self._seq, "records": 0}

    def _free_producer(self) -> str:
        """The id of a producer with no open transaction, created (and initialised) if none is free."""
        if self._free:
            return self._free.pop()
        assert self._prefix is not None
        tid = f"{self._prefix}-{len(self._producers)}"
        while tid in self._producers:
            tid = f"{tid}x"
        self._producers[tid] = self._new_producer(tid)
        return tid

    def write_transaction(self, transaction: Any, values: list[Any], timestamps: list[int] | None) -> None:
        """Produce the batch on the transaction's producer (and log it, with ``write_ahead``)."""
        payloads, keys = self._produce(self._producers[transaction["tid"]], values, timestamps)
        transaction["records"] += len(values)
        log = transaction.get("log")
        if log is not None:
            log.append(pack_batch(payloads, keys, timestamps if self.write_timestamps else None))

    def pre_commit(self, transaction: Any) -> None:
        """Produce the commit marker (``write_ahead``, if it has records), then flush.

        Afterwards every record of the transaction is acknowledged (still invisible to
        ``read_committed`` consumers).
        """
        tid = transaction["tid"]
        producer = self._producers[tid]
        if "log" in transaction and transaction["records"] and "marker" not in transaction:
            assert self.marker_topic is not None and self._prefix is not None
            partition = self._marker_partition_of(producer)
            transaction["marker"] = {
                "topic": self.marker_topic,
                "partition": partition,
                "from": self._markers.high_watermark(self.marker_topic, partition),
                "prefix": self._prefix,
                "run": self._run,
            }
            self._produce_marker(producer, transaction)
        self._flush(producer, f"pre-commit of {tid!r}")

    def _marker_partition_of(self, producer: Any) -> int:
        """The marker partition of this sink; the topic's metadata is read once per run."""
        if self._marker_partition is not None:
            return self._marker_partition
        assert self.marker_topic is not None and self._prefix is not None
        topic = self.marker_topic
        deadline = time.monotonic() + self.flush_timeout_s
        while True:
            # A producer's metadata request lets brokers that allow it auto-create the topic.
            with kafka_errors(f"reading the metadata of commit-marker topic {topic!r}"):
                meta = producer.list_topics(topic, timeout=self.flush_timeout_s)
            tmeta = meta.topics.get(topic)
            if tmeta is not None and tmeta.error is None and tmeta.partitions:
                self._marker_partition = marker_partition(self._prefix, len(tmeta.partitions))
                return self._marker_partition
            if time.monotonic() > deadline:
                why = tmeta.error.str() if tmeta is not None and tmeta.error is not None else "no partitions"
                msg = (
                    f"the commit-marker topic {topic!r} of KafkaSink({self.topic!r}) is not available on "
                    f"{self.bootstrap_servers} ({why}): create it (one partition is enough) or let the "
                    "brokers auto-create topics; or pass write_ahead=False and accept losing a "
                    "transaction when the job dies between a checkpoint and its commit"
                )
                raise ConnectorError(msg)
            time.sleep(0.1)

    def _produce_marker(self, producer: Any, transaction: Any) -> None:
        prefix, run, seq = marker_identity(transaction)
        key, value = marker_record(prefix, run, seq, transaction["records"])
        marker = transaction["marker"]
        topic, partition = marker["topic"], marker["partition"]
        with kafka_errors(f"producing the commit marker of {transaction['tid']!r} to {topic!r}"):
            try:
                producer.produce(topic, value, key, partition=partition)
            except BufferError:
                self._flush(producer, f"the commit marker of {transaction['tid']!r}")
                producer.produce(topic, value, key, partition=partition)

    def commit(self, transaction: Any) -> None:
        """Commit; a handle of another run is only re-initialised (the broker completes or aborts it)."""
        tid, seq = transaction["tid"], transaction["seq"]
        producer = self._producers.get(tid)
        if producer is None:
            self._reinit(transaction)
            return
        if self._open_txn.get(tid) != seq:
            return  # committed already
        start = time.perf_counter()
        self._end_transaction(producer, tid, commit=True)
        elapsed = (time.perf_counter() - start) * 1000
        self.commit_ms_last = elapsed
        self.commit_ms_total += elapsed
        del self._open_txn[tid]
        self._free.append(tid)

    def abort(self, transaction: Any) -> None:
        """Abort; another run's transaction is aborted (its producer fenced) by ``init_transactions``."""
        tid, seq = transaction["tid"], transaction["seq"]
        producer = self._producers.get(tid)
        if producer is None:
            self._reinit(transaction)
            return
        if self._open_txn.get(tid) != seq:
            return
        with kafka_errors(f"purging the records of transaction {tid!r}"):
            producer.purge(in_queue=True, in_flight=False)
        self._end_transaction(producer, tid, commit=False)
        del self._open_txn[tid]
        self._free.append(tid)

    def _end_transaction(self, producer: Any, tid: str, *, commit: bool) -> None:
        verb = "committing" if commit else "aborting"
        call = producer.commit_transaction if commit else producer.abort_transaction
        deadline = time.monotonic() + self.flush_timeout_s
        while True:
            try:
                call(self.flush_timeout_s)
                return
            except Exception as exc:
                err = exc.args[0] if exc.args else None
                retriable = bool(getattr(err, "retriable", lambda: False)())
                if retriable and time.monotonic() < deadline:
                    time.sleep(0.05)
                    continue
                if commit and bool(getattr(err, "txn_requires_abort", lambda: False)()):
                    try:
                        producer.abort_transaction(self.flush_timeout_s)
                    except Exception:
                        pass
                msg = (
                    f"{verb} Kafka transaction {tid!r} of topic {self.topic!r} failed: {exc!r}; a "
                    "transaction open longer than transaction.timeout.ms is aborted by the broker: "
                    "checkpoint more often"
                )
                raise ConnectorError(msg) from exc

    def _reinit(self, transaction: Any) -> None:
        """Re-initialise a crashed run's ``transactional.id``: fences its producer; the broker
        completes a commit that had started and aborts any other open transaction."""
        tid = transaction["tid"]
        if tid in self._producers:
            return
        self._producers[tid] = self._new_producer(tid)
        self._free.append(tid)
        self._seq = max(self._seq, int(transaction.get("seq", 0)))
        self.recovered += 1

    def _replay(self, transaction: Any) -> None:
        """Produce a logged transaction and its marker again, in a fresh transaction; commit it."""
        tid = transaction["tid"]
        producer = self._producers[tid]
        logger.info(
            "KafkaSink %s: transaction %r (seq %d, %d records) did not commit before the previous run "
            "stopped; producing it again from the checkpoint",
            self.topic,
            tid,
            transaction["seq"],
            transaction["records"],
        )
        with kafka_errors(f"beginning the replay of transaction {tid!r}"):
            producer.begin_transaction()
        try:
            for payloads, keys, timestamps in logged_batches(transaction):
                self._produce_serialized(producer, payloads, keys, timestamps)
                self.records_replayed += len(payloads)
            self._produce_marker(producer, transaction)
            self._flush(producer, f"the replay of {tid!r}")
        except BaseException:
            try:
                producer.abort_transaction(self.flush_timeout_s)
            except Exception:
                pass
            raise
        self._end_transaction(producer, tid, commit=True)
        self.replayed += 1

    # -- metrics ---------------------------------------------------------------------------
    def metrics(self) -> dict[str, Any]:
        """Records and bytes out, delivery errors, transactions and their commit time.

        At a restore, ``transactions_recovered`` counts re-initialised transactional ids;
        of the pending transactions, ``transactions_confirmed`` had their commit marker
        visible and ``transactions_replayed`` were produced again from the checkpoint.
        """
        in_flight = 0
        for producer in (self._producer, *self._producers.values()):
            if producer is not None:
                try:
                    in_flight += len(producer)
                except Exception:
                    pass
        return {
            "records_out": self.records_out,
            "bytes_out": self.bytes_out,
            "delivery_errors": self._error_count,
            "in_flight": in_flight,
            "transactions_committed": self.committed,
            "transactions_aborted": self.aborted,
            "transactions_recovered": self.recovered,
            "transactions_confirmed": self.confirmed,
            "transactions_replayed": self.replayed,
            "records_replayed": self.records_replayed,
            "commit_ms_last": round(self.commit_ms_last, 3),
            "commit_ms_total": round(self.commit_ms_total, 3),
        }


def _close_quietly(producer: Any, topic: str = "") -> None:
    """Deliver what is queued (briefly), then close; used at the end and after failures."""
    try:
        remaining = producer.flush(_CLOSE_FLUSH_S)
        if remaining:
            logger.warning("KafkaSink %s: %d records were not delivered before close", topic, remaining)
            producer.purge()
    except Exception:
        pass
    close = getattr(producer, "close", None)
    try:
        if close is not None:
            close()
    except Exception:
        pass
