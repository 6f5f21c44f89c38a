"""One confluent-kafka producer of a KafkaSink: creation, produce with backpressure, delivery errors.

Both deliveries of :class:`~streamcore.sinks.kafka.KafkaSink` write through
:class:`SinkProducer`: the at-least-once one owns one, the transactional one a small pool
(one per ``transactional.id``). The wrapper is where the sink meets librdkafka, so every
call that can fail is wrapped there (:func:`~streamcore.kafka_client.kafka_errors`) and
every wait is bounded there:

* ``produce`` runs in a loop over the batch; when librdkafka's local queue is full
  (``BufferError``) the wrapper serves delivery reports until the record fits, for at
  most ``flush_timeout_s``.
* Only failed deliveries are reported (``delivery.report.only.error``). They are
  counted, the first few kept for the message, and the next :meth:`SinkProducer.flush`
  or produce fails with :class:`~streamcore.errors.ConnectorError`: nothing is dropped
  silently.
* Transactions begin, commit and abort here; a commit or abort retries retriable errors
  until ``flush_timeout_s`` has passed.

The delivery and client-error callbacks live on a separate small object
(:class:`_Reports`) that does not refer back to the wrapper, so the producer is not part
of a reference cycle and is destroyed as soon as the wrapper lets go of it.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from streamcore.errors import ConnectorError
from streamcore.kafka_client import import_confluent_kafka, kafka_errors

__all__ = ["DeliveryStats", "ProducerSettings", "SinkProducer"]

logger = logging.getLogger("streamcore.kafka")

#: how long close() waits for queued records (a failed job should not hang on a dead cluster).
_CLOSE_FLUSH_S = 5.0

#: delivery errors quoted in the message that fails the job.
_ERRORS_KEPT = 5


@dataclass(frozen=True)
class ProducerSettings:
    """What every producer of one sink is created with (validated by the sink).

    ``config`` holds the user's extra librdkafka settings; ``flush_timeout_s`` bounds
    every wait of a running job (flush, a full queue, init, commit, abort).
    """

    bootstrap_servers: str
    topic: str
    config: Mapping[str, Any]
    flush_timeout_s: float
    write_timestamps: bool


class DeliveryStats:
    """Counters shared by every producer of a sink; they outlive the producers (metrics after close)."""

    __slots__ = ("bytes_out", "delivery_errors", "records_out")

    def __init__(self) -> None:
        self.records_out = 0
        self.bytes_out = 0
        self.delivery_errors = 0


class _Reports:
    """librdkafka's callbacks of one producer: failed deliveries and client errors.

    Kept apart from :class:`SinkProducer` so that the producer, which holds these
    callbacks, holds no reference back to its wrapper.
    """

    __slots__ = ("errors", "fatal", "stats", "topic", "undelivered")

    def __init__(self, stats: DeliveryStats, topic: str) -> None:
        self.stats = stats
        self.topic = topic
        self.undelivered = 0
        self.errors: list[str] = []
        self.fatal: str | None = None

    def on_delivery(self, err: Any, msg: Any) -> None:
        # Only failed deliveries are reported (delivery.report.only.error).
        if err is not None:
            self.undelivered += 1
            self.stats.delivery_errors += 1
            if len(self.errors) < _ERRORS_KEPT:
                where = f"{msg.topic()}-{msg.partition()}" if msg is not None else self.topic
                self.errors.append(f"{where}: {err.str() if hasattr(err, 'str') else err}")

    def on_client_error(self, err: Any) -> None:
        if err.fatal():
            self.fatal = f"{err.name()}: {err.str()}"
        else:
            logger.info("kafka sink %s: %s", self.topic, err.str())


class SinkProducer:
    """One librdkafka producer writing a sink's topic; transactional when given a ``transactional.id``.

    Args:
        settings: the sink's producer settings.
        stats: the sink's counters (records, bytes, delivery errors).
        transactional_id: makes the producer transactional; ``init_transactions`` runs here,
            which also fences older producers with the same id.

    Raises:
        ConfigurationError: librdkafka rejects a setting.
        ConnectorError: the producer cannot be created, or transactions cannot be initialised
            within ``flush_timeout_s``.
    """

    def __init__(
        self, settings: ProducerSettings, stats: DeliveryStats, transactional_id: str | None = None
    ) -> None:
        self.settings = settings
        self.stats = stats
        self.transactional_id = transactional_id
        self.in_transaction = False
        self._reports = _Reports(stats, settings.topic)
        ck = import_confluent_kafka()
        conf = {
            **settings.config,
            "bootstrap.servers": settings.bootstrap_servers,
            "on_delivery": self._reports.on_delivery,
            "delivery.report.only.error": True,
            "error_cb": self._reports.on_client_error,
        }
        if transactional_id is not None:
            conf["transactional.id"] = transactional_id
        with kafka_errors(f"creating a Kafka producer for topic {settings.topic!r}"):
            self._producer: Any = ck.Producer(conf)
        if transactional_id is not None:
            try:
                with kafka_errors(
                    f"initialising transactions of {transactional_id!r}",
                    "does the cluster support transactions (brokers >= 0.11, enough replicas)?",
                ):
                    self._producer.init_transactions(settings.flush_timeout_s)
            except BaseException:
                self.close()
                raise

    # -- producing -----------------------------------------------------------------------------
    def produce_batch(
        self, payloads: list[Any], keys: list[Any] | None, timestamps: list[int] | None
    ) -> None:
        """Produce serialized records to the sink's topic (with their timestamps if the sink writes them).

        Raises:
            ConnectorError: the queue stayed full for ``flush_timeout_s``, librdkafka refused a
                record, or an earlier delivery failed.
        """
        producer = self._producer
        topic = self.settings.topic
        produce = producer.produce
        retry = self._produce_when_room
        with kafka_errors(f"producing to topic {topic!r}"):
            if self.settings.write_timestamps and timestamps is not None:
                # Kafka timestamps are >= 0; 0 lets the producer stamp the record itself.
                kk = keys if keys is not None else [None] * len(payloads)
                for value, k, t in zip(payloads, kk, timestamps, strict=True):
                    try:
                        produce(topic, value, k, timestamp=t if t > 0 else 0)
                    except BufferError:
                        retry(value, k, t if t > 0 else 0)
            elif keys is not None:
                for value, k in zip(payloads, keys, strict=True):
                    try:
                        produce(topic, value, k)
                    except BufferError:
                        retry(value, k, 0)
            else:
                for value in payloads:
                    try:
                        produce(topic, value)
                    except BufferError:
                        retry(value, None, 0)
            producer.poll(0)
        stats = self.stats
        stats.records_out += len(payloads)
        stats.bytes_out += sum(map(len, payloads))
        self.check_errors()

    def _produce_when_room(self, value: bytes, key: Any, timestamp: int) -> None:
        """The local queue is full: serve delivery reports until the record fits."""
        producer = self._producer
        timeout = self.settings.flush_timeout_s
        deadline = time.monotonic() + timeout
        while True:
            producer.poll(0.05)
            try:
                producer.produce(self.settings.topic, value, key, timestamp=timestamp)
                return
            except BufferError:
                if time.monotonic() > deadline:
                    msg = (
                        f"the producer queue of topic {self.settings.topic!r} stayed full for "
                        f"{timeout}s; is the cluster reachable?"
                    )
                    raise ConnectorError(msg) from None

    def produce_record(self, topic: str, value: bytes, key: bytes, partition: int, what: str) -> None:
        """Produce one record to ``topic``-``partition`` (a commit marker); ``what`` names it in errors."""
        with kafka_errors(f"producing {what} to {topic!r}"):
            try:
                self._producer.produce(topic, value, key, partition=partition)
            except BufferError:
                self.flush(what)
                self._producer.produce(topic, value, key, partition=partition)

    def flush(self, what: str) -> None:
        """Wait until every produced record is acknowledged; ``what`` says why, for the error.

        Raises:
            ConnectorError: a delivery failed, or records were still unacknowledged after
                ``flush_timeout_s``.
        """
        timeout = self.settings.flush_timeout_s
        with kafka_errors(f"flushing the producer of topic {self.settings.topic!r}"):
            remaining = self._producer.flush(timeout)
        self.check_errors()
        if remaining:
            msg = (
                f"{remaining} records to topic {self.settings.topic!r} were not acknowledged within "
                f"{timeout}s at {what}; is the cluster reachable?"
            )
            raise ConnectorError(msg)

    def check_errors(self) -> None:
        """Raise if the producer failed fatally or a delivery failed since it was created.

        Raises:
            ConnectorError: naming the first failed deliveries, or the fatal error.
        """
        reports = self._reports
        topic = self.settings.topic
        if reports.fatal is not None:
            msg = f"the Kafka producer of topic {topic!r} hit a fatal error: {reports.fatal}"
            raise ConnectorError(msg)
        if reports.undelivered:
            msg = (
                f"{reports.undelivered} records could not be delivered to topic {topic!r} "
                f"(first: {'; '.join(reports.errors)}); the job fails rather than drop them"
            )
            raise ConnectorError(msg)

    def in_flight(self) -> int:
        """Records (and requests) librdkafka still holds: ``len()`` of the producer."""
        try:
            return len(self._producer)
        except Exception:
            return 0

    def partition_count(self, topic: str, timeout_s: float) -> tuple[int, str]:
        """How many partitions ``topic`` has (0 if none or unknown), and why not if 0.

        A producer's metadata request lets brokers that allow it auto-create the topic.

        Raises:
            ConnectorError: the metadata request failed.
        """
        with kafka_errors(f"reading the metadata of topic {topic!r}"):
            meta = self._producer.list_topics(topic, timeout=timeout_s)
        tmeta = meta.topics.get(topic)
        if tmeta is not None and tmeta.error is None and tmeta.partitions:
            return len(tmeta.partitions), ""
        return 0, tmeta.error.str() if tmeta is not None and tmeta.error is not None else "no partitions"

    # -- transactions ----------------------------------------------------------------------------
    def begin_transaction(self) -> None:
        """Begin a transaction (``init_transactions`` ran when the producer was created)."""
        with kafka_errors(f"beginning a transaction on {self.transactional_id!r}"):
            self._producer.begin_transaction()
        self.in_transaction = True

    def commit_transaction(self) -> None:
        """Flush and commit the open transaction.

        Raises:
            ConnectorError: the commit failed or did not finish within ``flush_timeout_s``
                (after an abortable error the transaction is aborted first).
        """
        self._end_transaction(commit=True)

    def abort_transaction(self) -> None:
        """Drop the records not yet sent, then abort the open transaction.

        Raises:
            ConnectorError: the abort failed or did not finish within ``flush_timeout_s``.
        """
        with kafka_errors(f"purging the records of transaction {self.transactional_id!r}"):
            self._producer.purge(in_queue=True, in_flight=False)
        self._end_transaction(commit=False)

    def _end_transaction(self, *, commit: bool) -> None:
        producer = self._producer
        tid = self.transactional_id
        timeout = self.settings.flush_timeout_s
        verb = "committing" if commit else "aborting"
        call = producer.commit_transaction if commit else producer.abort_transaction
        deadline = time.monotonic() + timeout
        while True:
            try:
                call(timeout)
                self.in_transaction = False
                return
            except Exception as exc:
                err = exc.args[0] if exc.args else None
                retriable = bool(getattr(err, "retriable", lambda: False)())
                if retriable and time.monotonic() < deadline:
                    time.sleep(0.05)
                    continue
                if commit and bool(getattr(err, "txn_requires_abort", lambda: False)()):
                    try:
                        producer.abort_transaction(timeout)
                        self.in_transaction = False
                    except Exception:
                        pass
                msg = (
                    f"{verb} Kafka transaction {tid!r} of topic {self.settings.topic!r} failed: {exc!r}; "
                    "a transaction open longer than transaction.timeout.ms is aborted by the broker: "
                    "checkpoint more often"
                )
                raise ConnectorError(msg) from exc

    # -- closing ---------------------------------------------------------------------------------
    def close(self) -> None:
        """Deliver what is queued (briefly), then close; used at the end and after failures."""
        producer, self._producer = self._producer, None
        if producer is None:
            return
        try:
            remaining = producer.flush(_CLOSE_FLUSH_S)
            if remaining:
                logger.warning(
                    "KafkaSink %s: %d records were not delivered before close", self.settings.topic, remaining
                )
                producer.purge()
        except Exception:
            pass
        close = getattr(producer, "close", None)
        try:
            if close is not None:
                close()
        except Exception:
            pass
