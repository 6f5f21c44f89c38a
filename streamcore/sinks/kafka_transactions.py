"""Exactly-once delivery into Kafka: one transaction per checkpoint over a pool of transactional producers.

:class:`TransactionalDelivery` is what :class:`~streamcore.sinks.kafka.KafkaSink` does with
``delivery="exactly_once"``; the sink's two-phase-commit hooks call it. A Kafka producer
has only one open transaction at a time, so it keeps a small pool of producers with
stable ``transactional.id`` values ``<prefix>-0``, ``<prefix>-1``, ... (usually two
alternate: one holds the pre-committed transaction until its checkpoint completes, the
other takes the records meanwhile).

Recovery: librdkafka cannot resume another process's transaction, and re-initialising a
``transactional.id`` (which fences the crashed run's producers) makes the broker abort a
transaction whose commit had not started. With write-ahead each transaction keeps its
records in the checkpoint and produces a commit marker
(:mod:`streamcore.sinks.kafka_write_ahead`), so a restore tells a committed transaction
from an aborted one and produces the aborted one again. A restore, in steps (the
``# Step N`` comments in :meth:`TransactionalDelivery.restore` follow them):

1. Re-initialise every ``transactional.id`` of the restored checkpoint: the broker
   completes a commit that had started and aborts every other open transaction,
   including the one that was open when the checkpoint was taken.
2. Read the commit markers of the checkpoint's pending transactions with a
   ``read_committed`` consumer.
3. A pending transaction whose marker is visible committed: nothing to do. Any other is
   produced again, from the records in the checkpoint, in a fresh transaction that is
   committed before the job continues. A crash during that either committed it (its
   marker is found next time) or aborted it (it is produced again next time).

Without write-ahead a crash between a checkpoint becoming durable and its transaction's
commit loses that transaction's records; the restore logs a warning naming it.
"""

from __future__ import annotations

import logging
import secrets
import time
from typing import Any

from streamcore.errors import ConnectorError, StreamcoreError
from streamcore.sinks.kafka_producer import DeliveryStats, ProducerSettings, SinkProducer
from streamcore.sinks.kafka_write_ahead import (
    CommitMarkers,
    logged_batches,
    marker_identity,
    marker_partition,
    marker_record,
    pack_batch,
)

__all__ = ["TransactionalDelivery"]

logger = logging.getLogger("streamcore.kafka")


class TransactionalDelivery:
    """Transactions of one exactly-once sink: begin, write, pre-commit, commit, abort, restore.

    Handles are msgpack-able dicts (checkpoints store them): ``{"tid", "seq", "records"}``,
    plus ``"log"`` with write-ahead and, after a pre-commit with records, ``"marker"``
    (see :mod:`streamcore.sinks.kafka_write_ahead`).

    Args:
        settings: the sink's producer settings.
        stats: the sink's counters.
        marker_topic: the commit-marker topic, or ``None`` without write-ahead.
    """

    def __init__(self, settings: ProducerSettings, stats: DeliveryStats, marker_topic: str | None) -> None:
        self.settings = settings
        self.stats = stats
        self.marker_topic = marker_topic
        self.write_ahead = marker_topic is not None
        self.producers: dict[str, SinkProducer] = {}  # transactional.id -> producer
        self.open_seq: dict[str, int] = {}  # transactional.id -> seq of its open transaction
        self.free: list[str] = []
        self.seq = 0
        self.prefix: str | None = None
        self.run = ""  # random per open(): names this run's transactions in their markers
        self.marker_partition: int | None = None
        self.markers = CommitMarkers(settings.bootstrap_servers, settings.config, settings.flush_timeout_s)
        self.commit_ms_total = 0.0
        self.commit_ms_last = 0.0
        self.recovered = 0
        self.replayed = 0
        self.records_replayed = 0
        self.confirmed = 0

    def open(self, prefix: str) -> None:
        """Start a run whose producers are ``<prefix>-0``, ``<prefix>-1``, ... (after :meth:`restore`)."""
        self.prefix = prefix
        self.run = secrets.token_hex(6)

    # -- the two-phase-commit hooks ------------------------------------------------------------
    def begin(self) -> dict[str, Any]:
        """Begin a transaction on a producer with none open; the handle names its id and a sequence number."""
        tid = self._free_producer()
        self.producers[tid].begin_transaction()
        self.seq += 1
        self.open_seq[tid] = self.seq
        if self.write_ahead:
            return {"tid": tid, "seq": self.seq, "records": 0, "log": []}
        return {"tid": tid, "seq": self.seq, "records": 0}

    def _free_producer(self) -> str:
        """The id of a producer with no open transaction, created (and initialised) if none is free."""
        if self.free:
            return self.free.pop()
        assert self.prefix is not None, "TransactionalDelivery.open() was not called"
        tid = f"{self.prefix}-{len(self.producers)}"
        while tid in self.producers:
            tid = f"{tid}x"
        self.producers[tid] = SinkProducer(self.settings, self.stats, tid)
        return tid

    def write(
        self,
        transaction: dict[str, Any],
        payloads: list[Any],
        keys: list[Any] | None,
        timestamps: list[int] | None,
        partitions: list[int] | None = None,
    ) -> None:
        """Produce a serialized batch on the transaction's producer (and log it, with write-ahead)."""
        self.producers[transaction["tid"]].produce_batch(payloads, keys, timestamps, partitions)
        transaction["records"] += len(payloads)
        log = transaction.get("log")
        if log is not None:
            stamps = timestamps if self.settings.write_timestamps else None
            log.append(pack_batch(payloads, keys, stamps, partitions))

    def pre_commit(self, transaction: dict[str, Any]) -> None:
        """Produce the commit marker (write-ahead, if it has records), then flush.

        Afterwards every record of the transaction is acknowledged (still invisible to
        ``read_committed`` consumers).
        """
        tid = transaction["tid"]
        producer = self.producers[tid]
        if "log" in transaction and transaction["records"] and "marker" not in transaction:
            assert self.marker_topic is not None and self.prefix is not None
            partition = self._marker_partition_of(producer)
            transaction["marker"] = {
                "topic": self.marker_topic,
                "partition": partition,
                "from": self.markers.high_watermark(self.marker_topic, partition),
                "prefix": self.prefix,
                "run": self.run,
            }
            self._produce_marker(producer, transaction)
        producer.flush(f"pre-commit of {tid!r}")

    def _marker_partition_of(self, producer: SinkProducer) -> int:
        """The marker partition of this sink; the topic's metadata is read once per run."""
        if self.marker_partition is not None:
            return self.marker_partition
        assert self.marker_topic is not None and self.prefix is not None
        topic = self.marker_topic
        timeout = self.settings.flush_timeout_s
        deadline = time.monotonic() + timeout
        while True:
            partitions, why = producer.partition_count(topic, timeout)
            if partitions:
                self.marker_partition = marker_partition(self.prefix, partitions)
                return self.marker_partition
            if time.monotonic() > deadline:
                msg = (
                    f"the commit-marker topic {topic!r} of KafkaSink({self.settings.topic!r}) is not "
                    f"available on {self.settings.bootstrap_servers} ({why}): create it (one partition "
                    "is enough) or let the brokers auto-create topics; or pass write_ahead=False and "
                    "accept losing a transaction when the job dies between a checkpoint and its commit"
                )
                raise ConnectorError(msg)
            time.sleep(0.1)

    def _produce_marker(self, producer: SinkProducer, transaction: dict[str, Any]) -> None:
        prefix, run, seq = marker_identity(transaction)
        key, value = marker_record(prefix, run, seq, transaction["records"])
        marker = transaction["marker"]
        what = f"the commit marker of {transaction['tid']!r}"
        producer.produce_record(marker["topic"], value, key, marker["partition"], what)

    def commit(self, transaction: dict[str, Any]) -> None:
        """Commit; a handle of another run is only re-initialised (the broker completes or aborts it)."""
        tid, seq = transaction["tid"], transaction["seq"]
        producer = self.producers.get(tid)
        if producer is None:
            self._reinit(transaction)
            return
        if self.open_seq.get(tid) != seq:
            return  # committed already
        start = time.perf_counter()
        producer.commit_transaction()
        elapsed = (time.perf_counter() - start) * 1000
        self.commit_ms_last = elapsed
        self.commit_ms_total += elapsed
        del self.open_seq[tid]
        self.free.append(tid)

    def abort(self, transaction: dict[str, Any], timeout_s: float | None = None) -> None:
        """Abort within ``timeout_s`` (default ``flush_timeout_s``); never raises.

        Another run's transaction is aborted (its producer fenced) by ``init_transactions``.
        A fenced or failed producer is not asked to abort, and an abort the coordinator
        does not answer in time is given up: both are logged
        (:meth:`SinkProducer.abort_transaction`), and that producer takes no new
        transaction.
        """
        tid, seq = transaction["tid"], transaction["seq"]
        producer = self.producers.get(tid)
        if producer is None:
            self._reinit(transaction)
            return
        if self.open_seq.get(tid) != seq:
            return
        del self.open_seq[tid]
        if producer.abort_transaction(timeout_s):
            self.free.append(tid)

    # -- restore ---------------------------------------------------------------------------------
    def restore(self, image: dict[str, Any]) -> tuple[int, int]:
        """Make the image's pending transactions committed and abort its open one.

        Runs before :meth:`open`, in the steps of the module docstring. A pending
        transaction without a marker in the image (written without write-ahead) can only
        be left to the broker: the warning names it.

        Returns:
            ``(pending, aborted)``: how many pending transactions were settled (confirmed,
            replayed or left to the broker) and how many open ones were aborted (0 or 1).

        Raises:
            ConnectorError: the cluster cannot be reached, the markers cannot be read
                within ``flush_timeout_s``, or producing a transaction again failed (a
                restart tries again: nothing is lost or doubled by trying twice).
        """
        pending = [transaction for _cid, transaction in image.get("pending", ())]
        current = image.get("current")
        # Step 1: fence every producer of the crashed run that the checkpoint names.
        for transaction in [*pending, current]:
            if transaction is not None:
                self._reinit(transaction)
        # Step 2: which pending transactions are visibly committed?
        logged = [t for t in pending if t.get("marker") and t.get("log")]
        seen = self.markers.committed(logged) if logged else set()
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
                    self.settings.topic,
                    transaction["tid"],
                    transaction["records"],
                )
        return len(pending), 0 if current is None else 1

    def _reinit(self, transaction: dict[str, Any]) -> None:
        """Re-initialise a crashed run's ``transactional.id``: fences its producer; the broker
        completes a commit that had started and aborts any other open transaction."""
        tid = transaction["tid"]
        if tid in self.producers:
            return
        self.producers[tid] = SinkProducer(self.settings, self.stats, tid)
        self.free.append(tid)
        self.seq = max(self.seq, int(transaction.get("seq", 0)))
        self.recovered += 1

    def _replay(self, transaction: dict[str, Any]) -> None:
        """Produce a logged transaction and its marker again, in a fresh transaction; commit it."""
        tid = transaction["tid"]
        producer = self.producers[tid]
        logger.info(
            "KafkaSink %s: transaction %r (seq %d, %d records) did not commit before the previous run "
            "stopped; producing it again from the checkpoint",
            self.settings.topic,
            tid,
            transaction["seq"],
            transaction["records"],
        )
        producer.begin_transaction()
        try:
            for payloads, keys, timestamps, partitions in logged_batches(transaction):
                producer.produce_batch(payloads, keys, timestamps, partitions)
                self.records_replayed += len(payloads)
            self._produce_marker(producer, transaction)
            producer.flush(f"the replay of {tid!r}")
        except BaseException:
            producer.abort_transaction()
            raise
        producer.commit_transaction()
        self.replayed += 1

    # -- the end -------------------------------------------------------------------------------
    def in_flight(self) -> int:
        """Records not yet acknowledged, over every producer."""
        return sum(producer.in_flight() for producer in self.producers.values())

    def close(self, deadline: float) -> None:
        """Close every producer and the marker consumer by ``deadline`` (``time.monotonic()``).

        Each producer gets what is left of the time (:meth:`SinkProducer.close`): its open
        transaction is aborted (pre-committed ones too: a restore produces those again
        from the checkpoint) unless it is fenced or the time is up, and what was given up
        is logged. Calling it again does nothing.
        """
        producers = list(self.producers.values())
        self.producers = {}
        self.open_seq = {}
        self.free = []
        for producer in producers:
            producer.close(max(0.0, deadline - time.monotonic()))
        try:
            # An assign-only consumer without auto-commit closes at once, cluster or not.
            self.markers.close()
        except StreamcoreError as exc:
            logger.warning("KafkaSink %s: %s", self.settings.topic, exc)
