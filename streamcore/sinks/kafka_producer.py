"""One confluent-kafka producer of a KafkaSink: creation, produce with backpressure, bounded waits.

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
  until ``flush_timeout_s`` has passed in total, each call given only what is left.
* A fatal error (librdkafka's ``KafkaError.fatal()``) or fencing (a newer producer
  initialised the same ``transactional.id``) leaves the producer unusable: every later
  use fails, and no abort is attempted, since it cannot succeed and its request may never
  be answered.

Closing is bounded by ``close_timeout_s`` (:meth:`SinkProducer.close`): abort the open
transaction unless the producer is fenced or failed, give queued records the rest of the
time, purge what is left, log what was given up, and let go of the producer. It never
calls ``Producer.close()``: in confluent-kafka 2.16 that aborts with no timeout and then
flushes with no timeout, so it blocks forever when the transaction coordinator does not
answer (older versions have no ``close()``). Dropping the last reference runs
``rd_kafka_destroy``, which neither aborts nor flushes; measured with confluent-kafka
2.16.1, it returned in about 10 ms with records queued for an unreachable cluster, with
a transaction open on a stopped cluster, and after an abort or commit had timed out. For
the drop to happen at once, not at some later garbage collection, the delivery and
client-error callbacks live on a separate object (:class:`_Reports`) that does not refer
back to the wrapper, so the producer is in no reference cycle.
"""

from __future__ import annotations

import contextlib
import logging
import time
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from typing import Any

from streamcore.errors import ConnectorError, StreamcoreError
from streamcore.kafka_client import error_name, import_confluent_kafka, kafka_errors
from streamcore.logs import librdkafka_logger

__all__ = ["DeliveryStats", "ProducerSettings", "SinkProducer"]

logger = logging.getLogger("streamcore.kafka")

#: delivery errors quoted in the message that fails the job.
_ERRORS_KEPT = 5

#: errors that mean a newer producer with the same transactional.id took over (fenced).
FENCED_ERRORS = frozenset({"_FENCED", "PRODUCER_FENCED", "INVALID_PRODUCER_EPOCH"})

#: what to check when a producer was fenced.
_FENCED_HINT = (
    "another producer initialised the same transactional.id (a second job with the same "
    "transactional_id_prefix, or a restarted copy of this one?)"
)

#: delivery reports of records the sink purged itself (an abort, a close): not delivery failures.
_PURGED = frozenset({"_PURGE_QUEUE", "_PURGE_INFLIGHT"})


@dataclass(frozen=True)
class ProducerSettings:
    """What every producer of one sink is created with (validated by the sink).

    ``config`` holds the user's extra librdkafka settings; ``flush_timeout_s`` bounds
    every wait of a running job (flush, a full queue, init, commit, abort);
    ``close_timeout_s`` bounds closing.
    """

    bootstrap_servers: str
    topic: str
    config: Mapping[str, Any]
    flush_timeout_s: float
    close_timeout_s: float
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
        if err is not None and error_name(err) not in _PURGED:
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
        self.name = f"producer {transactional_id!r}" if transactional_id is not None else "producer"
        #: a transaction is open (begun, neither committed nor aborted nor given up).
        self.in_transaction = False
        #: records produced into the open transaction.
        self.transaction_records = 0
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
        conf.setdefault("logger", librdkafka_logger())
        with kafka_errors(f"creating a Kafka producer for topic {settings.topic!r}"):
            self._producer: Any = ck.Producer(conf)
        if transactional_id is not None:
            try:
                with self._calling(
                    f"initialising transactions of {transactional_id!r}",
                    "is the cluster reachable, and does it support transactions "
                    "(brokers >= 0.11, enough replicas)?",
                ):
                    self._producer.init_transactions(settings.flush_timeout_s)
            except BaseException:
                self.close(settings.close_timeout_s)
                raise

    @property
    def fatal(self) -> str | None:
        """Why the producer cannot be used any more (fatal error or fenced), or ``None``."""
        return self._reports.fatal

    @contextlib.contextmanager
    def _calling(self, action: str, hint: str = "") -> Iterator[None]:
        """:func:`kafka_errors`, and remember a fatal or fencing error of the call.

        Raises:
            ConnectorError: the call failed; a fencing error says what to check.
        """
        try:
            with kafka_errors(action, hint):
                yield
        except StreamcoreError as exc:
            unusable = self._note(exc.__cause__)
            if unusable is None:
                raise
            fenced = f"; {_FENCED_HINT}" if unusable.split(":", 1)[0] in FENCED_ERRORS else ""
            msg = f"{action} failed, the {self.name} of topic {self.settings.topic!r} is unusable: {unusable}"
            raise ConnectorError(msg + fenced) from exc.__cause__

    def _note(self, exc: BaseException | None) -> str | None:
        """If ``exc`` carries a fatal or fencing ``KafkaError``, mark the producer unusable; which error.

        confluent-kafka may raise the fatal error inside a callback, where it surfaces as
        a ``SystemError`` caused by it: the chain of causes is searched.
        """
        for _ in range(4):
            if exc is None:
                return None
            err = exc.args[0] if exc.args else None
            if err is not None and hasattr(err, "fatal"):
                name = error_name(err)
                if not err.fatal() and name not in FENCED_ERRORS:
                    return None
                if self._reports.fatal is None:
                    self._reports.fatal = f"{name}: {err.str()}"
                return f"{name}: {err.str()}"
            exc = exc.__cause__ or exc.__context__
        return None

    # -- producing -----------------------------------------------------------------------------
    def produce_batch(
        self,
        payloads: list[Any],
        keys: list[Any] | None,
        timestamps: list[int] | None,
        partitions: list[int] | None = None,
    ) -> None:
        """Produce serialized records to the sink's topic (with their timestamps if the sink writes them).

        ``partitions``: the partition of each record (else librdkafka's partitioner decides).

        Raises:
            ConnectorError: the queue stayed full for ``flush_timeout_s``, librdkafka refused a
                record, or an earlier delivery failed.
        """
        if self._reports.fatal is not None:
            self.check_errors()
        producer = self._producer
        topic = self.settings.topic
        produce = producer.produce
        retry = self._produce_when_room
        with self._calling(f"producing to topic {topic!r}"):
            if partitions is not None:
                kk = keys if keys is not None else [None] * len(payloads)
                tt = timestamps if self.settings.write_timestamps and timestamps is not None else None
                for i, (value, k, p) in enumerate(zip(payloads, kk, partitions, strict=True)):
                    t = tt[i] if tt is not None and tt[i] > 0 else 0
                    try:
                        produce(topic, value, k, partition=p, timestamp=t)
                    except BufferError:
                        retry(value, k, t, p)
            elif self.settings.write_timestamps and timestamps is not None:
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
        if self.in_transaction:
            self.transaction_records += len(payloads)
        self.check_errors()

    def _produce_when_room(self, value: bytes, key: Any, timestamp: int, partition: int = -1) -> None:
        """The local queue is full: serve delivery reports until the record fits."""
        producer = self._producer
        timeout = self.settings.flush_timeout_s
        deadline = time.monotonic() + timeout
        while True:
            producer.poll(0.05)
            try:
                producer.produce(self.settings.topic, value, key, partition=partition, timestamp=timestamp)
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
        with self._calling(f"producing {what} to {topic!r}"):
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
        with self._calling(f"flushing the producer of topic {self.settings.topic!r}"):
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
            msg = f"the Kafka {self.name} of topic {topic!r} hit a fatal error: {reports.fatal}"
            if reports.fatal.split(":", 1)[0] in FENCED_ERRORS:
                msg += f"; {_FENCED_HINT}"
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
        with self._calling(f"reading the metadata of topic {topic!r}"):
            meta = self._producer.list_topics(topic, timeout=timeout_s)
        tmeta = meta.topics.get(topic)
        if tmeta is not None and tmeta.error is None and tmeta.partitions:
            return len(tmeta.partitions), ""
        return 0, tmeta.error.str() if tmeta is not None and tmeta.error is not None else "no partitions"

    # -- transactions ----------------------------------------------------------------------------
    def begin_transaction(self) -> None:
        """Begin a transaction (``init_transactions`` ran when the producer was created)."""
        self.check_errors()
        with self._calling(f"beginning a transaction on {self.transactional_id!r}"):
            self._producer.begin_transaction()
        self.in_transaction = True
        self.transaction_records = 0

    def commit_transaction(self) -> None:
        """Flush and commit the open transaction, within ``flush_timeout_s`` in all.

        Raises:
            ConnectorError: the commit failed or did not finish in time (after an abortable
                error the transaction is aborted first, with what is left of the time).
        """
        self.check_errors()
        deadline = time.monotonic() + self.settings.flush_timeout_s
        try:
            self._end_transaction(self._producer.commit_transaction, deadline)
        except Exception as exc:
            err = exc.args[0] if exc.args else None
            if bool(getattr(err, "txn_requires_abort", lambda: False)()):
                self.abort_transaction(max(0.0, deadline - time.monotonic()))
            unusable = self._note(exc)
            hint = (
                _FENCED_HINT
                if unusable is not None and unusable.split(":", 1)[0] in FENCED_ERRORS
                else "a transaction open longer than transaction.timeout.ms is aborted by the broker: "
                "checkpoint more often"
            )
            msg = (
                f"committing Kafka transaction {self.transactional_id!r} of topic {self.settings.topic!r} "
                f"failed: {exc!r}; {hint}"
            )
            raise ConnectorError(msg) from exc
        self.in_transaction = False

    def abort_transaction(self, timeout_s: float | None = None) -> bool:
        """Abort the open transaction (its unsent records are dropped), waiting at most ``timeout_s``.

        Never raises: an abort is cleanup. It is skipped when the producer failed fatally or
        was fenced (an abort cannot succeed then, and its request may never be answered),
        and given up when the coordinator does not answer in time; either is logged, and
        the broker aborts the transaction after ``transaction.timeout.ms``, or when the
        ``transactional.id`` is initialised again (a restore does that first).

        Args:
            timeout_s: the limit (default ``flush_timeout_s``); 0 gives up at once.

        Returns:
            Whether the transaction is aborted.
        """
        if not self.in_transaction:
            return True
        timeout = self.settings.flush_timeout_s if timeout_s is None else timeout_s
        self.in_transaction = False  # aborted now, or given up for the broker to abort
        start = time.monotonic()
        why = "no time was left"
        if self.fatal is None and timeout > 0:
            try:
                self._end_transaction(self._producer.abort_transaction, start + timeout)
                return True
            except Exception as exc:
                why = f"{type(exc).__name__}: {exc}"
        tid, records = self.transactional_id, self.transaction_records
        if self.fatal is not None:
            what = f"not aborting the open transaction of {tid!r} ({records} records): the producer is"
            what += " unusable"
            why = self.fatal
        else:
            what = (
                f"gave up aborting the open transaction of {tid!r} ({records} records) after "
                f"{time.monotonic() - start:.1f}s"
            )
        logger.warning(
            "KafkaSink %s: %s (%s); the broker aborts it after transaction.timeout.ms, or when %r is "
            "initialised again",
            self.settings.topic,
            what,
            why,
            tid,
        )
        return False

    def _end_transaction(self, call: Any, deadline: float) -> None:
        """``call`` (commit or abort) with what is left until ``deadline``, again after retriable errors.

        Raises:
            Exception: the client's error, once it is not retriable or the time is up.
        """
        while True:
            try:
                call(max(0.001, deadline - time.monotonic()))
                return
            except Exception as exc:
                self._note(exc)
                err = exc.args[0] if exc.args else None
                retriable = bool(getattr(err, "retriable", lambda: False)())
                if retriable and self.fatal is None and time.monotonic() < deadline:
                    time.sleep(0.05)
                    continue
                raise

    # -- closing ---------------------------------------------------------------------------------
    def close(self, timeout_s: float) -> None:
        """Let go of the producer within ``timeout_s``; never raises, never waits longer.

        1. An open transaction is aborted (:meth:`abort_transaction`; skipped for a fenced
           or failed producer).
        2. Queued records get what is left of the time to be delivered.
        3. Whatever is still queued or in flight is purged, and its count logged.
        4. The last reference to the confluent-kafka producer is dropped, which destroys it
           (module docstring: ``Producer.close()`` could block forever).

        Calling it again does nothing.
        """
        producer = self._producer
        if producer is None:
            return
        deadline = time.monotonic() + timeout_s
        try:
            if self.in_transaction:
                self.abort_transaction(timeout_s)
            left = self.in_flight()
            if left and self.fatal is None:
                with contextlib.suppress(Exception):
                    left = producer.flush(max(0.0, deadline - time.monotonic()))
            if left:
                logger.warning(
                    "KafkaSink %s: %d records or requests of the %s were still queued after "
                    "close_timeout_s=%ss; dropping them (a restore replays what the last checkpoint "
                    "did not cover)",
                    self.settings.topic,
                    left,
                    self.name,
                    timeout_s,
                )
                with contextlib.suppress(Exception):
                    producer.purge(in_queue=True, in_flight=True, blocking=False)
                with contextlib.suppress(Exception):
                    producer.poll(0)  # serve the purged records' reports
        finally:
            self._producer = None
            del producer  # the last reference: rd_kafka_destroy runs here
