"""Writing to a Kafka topic, at least once or exactly once (one transaction per checkpoint).

``delivery="at_least_once"``: records are produced as batches arrive; every checkpoint
and the end of input flush the producer, so a checkpoint completes only once everything
before it is acknowledged by the brokers. A crash replays records written after the last
checkpoint: duplicates, never loss (:mod:`streamcore.sinks.kafka_at_least_once`).

``delivery="exactly_once"``: one Kafka transaction per checkpoint, through
:class:`~streamcore.sinks.two_phase.TwoPhaseCommitSink`. Records go into the open
transaction; a checkpoint flushes it (pre-commit) and the next transaction begins; the
flushed one is committed when the checkpoint completes. Consumers must read with
``isolation.level=read_committed``. With ``write_ahead=True`` (the default) a restore
also produces again a transaction the crash left uncommitted
(:mod:`streamcore.sinks.kafka_transactions`, :mod:`streamcore.sinks.kafka_write_ahead`).
Transactions must complete within ``transaction.timeout.ms`` (librdkafka default 60 s),
so keep checkpoints more frequent than that.

Delivery errors (a record the brokers refused, or could not take before
``message.timeout.ms``) fail the job with :class:`~streamcore.errors.ConnectorError`;
nothing is dropped silently.

Every wait is bounded: running waits (a flush at a checkpoint or the end of input,
initialising, committing or aborting a transaction) by ``flush_timeout_s``, closing by
``close_timeout_s``. A sink whose cluster stopped answering, or whose producer was
fenced, still closes: it aborts what it can in that time, never asks a fenced producer
to abort, and logs (logger ``streamcore.kafka``) every transaction and record it gave
up, leaving them to the broker (see :mod:`streamcore.sinks.kafka_producer`).

How the code is cut: :class:`KafkaSink` is one public class with one constructor for
both guarantees. It validates the arguments, turns records into bytes (the user's
``key`` and serializers) and hands the bytes to one of two delivery objects, each over
:class:`~streamcore.sinks.kafka_producer.SinkProducer` (the one place that talks to a
confluent-kafka producer): :class:`~streamcore.sinks.kafka_at_least_once.AtLeastOnceDelivery`
or :class:`~streamcore.sinks.kafka_transactions.TransactionalDelivery`. The sink stays a
single class, rather than a factory function or a constructor returning one of two
subclasses, because users subclass it (the crash tests override
``notify_checkpoint_complete``), check ``isinstance(sink, KafkaSink)``, and rely on it
being a :class:`~streamcore.sinks.two_phase.TwoPhaseCommitSink` whose hooks
(``begin_transaction``, ``pre_commit``, ``commit``, ``abort``) run through the base
class's checkpoint logic and can be overridden. With ``at_least_once`` those hooks are
not used: the sink bypasses the two-phase-commit machinery, as it always has.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Mapping
from typing import Any

from streamcore.errors import ConfigurationError, SerializationError, StreamcoreError
from streamcore.functions import function_name
from streamcore.kafka_client import check_client_config, check_seconds
from streamcore.serde import json_dumps
from streamcore.sinks.kafka_at_least_once import AtLeastOnceDelivery
from streamcore.sinks.kafka_producer import DeliveryStats, ProducerSettings
from streamcore.sinks.kafka_transactions import TransactionalDelivery
from streamcore.sinks.kafka_write_ahead import MARKER_TOPIC_SUFFIX, check_topic_name
from streamcore.sinks.two_phase import TwoPhaseCommitSink

__all__ = ["KafkaSink", "default_key_serializer"]

DELIVERY_MODES = ("at_least_once", "exactly_once")

#: producer settings streamcore decides, and what to do instead of setting them.
OWNED_PRODUCER_KEYS: dict[str, str] = {
    "bootstrap.servers": "pass bootstrap_servers=... to KafkaSink",
    "transactional.id": "pass transactional_id_prefix=... with delivery='exactly_once'",
    "on_delivery": "delivery errors are collected by the sink and fail the job",
    "delivery.report.only.error": "the sink only needs reports of failed deliveries",
    "error_cb": "streamcore handles client errors itself (fatal ones fail the job)",
}

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
        partitioner: ``record -> partition`` (an int below the topic's partition count);
            ``None``: librdkafka's partitioner spreads records by key (or sticks without one).
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
            deliveries before it fails; also the limit of initialising, committing or
            aborting a transaction and of a restore's marker look-up.
        close_timeout_s: how long :meth:`close` may wait in all for aborting open
            transactions and delivering queued records before it gives up, logs what it
            gave up (logger ``streamcore.kafka``) and drops the producers; so a job whose
            cluster is gone, or whose producer was fenced, still ends.

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
        partitioner: Callable[[Any], int] | None = None,
        delivery: str = "at_least_once",
        transactional_id_prefix: str | None = None,
        write_ahead: bool | None = None,
        marker_topic: str | None = None,
        write_timestamps: bool = True,
        config: Mapping[str, Any] | None = None,
        flush_timeout_s: float = 30.0,
        close_timeout_s: float = 10.0,
    ) -> None:
        super().__init__()
        _check_target(bootstrap_servers, topic)
        _check_functions(key, value_serializer, key_serializer)
        if partitioner is not None and not callable(partitioner):
            msg = f"KafkaSink partitioner must be a callable record -> int, got {type(partitioner).__name__}"
            raise ConfigurationError(msg)
        _check_delivery(delivery, transactional_id_prefix, write_ahead)
        uses_markers = delivery == "exactly_once" and write_ahead is not False
        marker_topic = _resolve_marker_topic(topic, marker_topic, uses_markers)
        if type(write_timestamps) is not bool:
            msg = f"write_timestamps must be True or False, got {write_timestamps!r}"
            raise ConfigurationError(msg)
        check_seconds(flush_timeout_s, "flush_timeout_s")
        check_seconds(close_timeout_s, "close_timeout_s")
        self.bootstrap_servers = bootstrap_servers
        self.topic = topic
        self.key = key
        self.value_serializer = value_serializer
        self.key_serializer = key_serializer
        self.partitioner = partitioner
        self.delivery = delivery
        self.exactly_once = delivery == "exactly_once"
        self.transactional_id_prefix = transactional_id_prefix
        self.write_ahead = uses_markers
        self.marker_topic = marker_topic
        self.write_timestamps = write_timestamps
        self.config = check_client_config(config, OWNED_PRODUCER_KEYS, "KafkaSink")
        self.flush_timeout_s = float(flush_timeout_s)
        self.close_timeout_s = float(close_timeout_s)
        settings = ProducerSettings(
            bootstrap_servers=bootstrap_servers,
            topic=topic,
            config=self.config,
            flush_timeout_s=self.flush_timeout_s,
            close_timeout_s=self.close_timeout_s,
            write_timestamps=write_timestamps,
        )
        self._close_deadline: float | None = None  # set while close() runs
        self._stats = DeliveryStats()
        # Exactly one of the two is set: what the chosen guarantee does.
        self._at_least_once: AtLeastOnceDelivery | None = None
        self._transactions: TransactionalDelivery | None = None
        if self.exactly_once:
            self._transactions = TransactionalDelivery(settings, self._stats, marker_topic)
        else:
            self._at_least_once = AtLeastOnceDelivery(settings, self._stats)

    # -- records to bytes ----------------------------------------------------------------------
    def _serialize(self, values: list[Any]) -> tuple[list[bytes], list[Any] | None, list[int] | None]:
        """The value bytes, key bytes (``None``: no keys) and partitions (``None``: librdkafka's) of a batch.

        Raises:
            SerializationError: a user function raised; names it.
        """
        fn: Any = self.value_serializer
        try:
            payloads = [fn(v) for v in values]
            partitions = None
            if self.partitioner is not None:
                fn = self.partitioner
                partitions = [fn(v) for v in values]
            keyf = self.key
            if keyf is None:
                return payloads, None, partitions
            fn = keyf
            raw_keys = [keyf(v) for v in values]
            fn = self.key_serializer
            return payloads, [fn(k) for k in raw_keys], partitions
        except StreamcoreError:
            raise
        except Exception as exc:
            msg = (
                f"KafkaSink({self.topic!r}): {function_name(fn)} raised {type(exc).__name__}: {exc}; "
                "records must be serializable by the sink's value_serializer / key / key_serializer"
            )
            raise SerializationError(msg) from exc

    def _txn(self) -> TransactionalDelivery:
        if self._transactions is None:
            msg = (
                f"KafkaSink({self.topic!r}) writes at least once: it has no transactions; "
                "pass delivery='exactly_once' for them"
            )
            raise ConfigurationError(msg)
        return self._transactions

    # -- sink contract ---------------------------------------------------------------------
    def open(self, operator_uid: str) -> None:
        """Create the producer (at least once), or begin the first transaction (exactly once)."""
        self.operator_uid = operator_uid
        if self._at_least_once is not None:
            self._at_least_once.open()
            return
        prefix = self.transactional_id_prefix or f"streamcore-{self.topic}-{operator_uid}".translate(
            _UNSAFE_ID
        )
        self._txn().open(prefix)
        super().open(operator_uid)

    def write_batch(self, values: list[Any], timestamps: list[int] | None) -> None:
        """Produce the batch (into the open transaction with exactly once)."""
        if self._at_least_once is not None:
            payloads, keys, partitions = self._serialize(values)
            self._at_least_once.write(payloads, keys, timestamps, partitions)
        else:
            super().write_batch(values, timestamps)

    def snapshot_state(self, checkpoint_id: int) -> Any:
        """At least once: flush. Exactly once: pre-commit the transaction, begin the next.

        The image holds the pending transactions with their logged records; the open one
        only by name (it is aborted on restore), so it costs nothing.
        """
        if self._at_least_once is not None:
            self._at_least_once.flush(f"checkpoint {checkpoint_id}")
            return None
        image = super().snapshot_state(checkpoint_id)
        current = image["current"]
        if current is not None and "log" in current:
            image["current"] = {k: v for k, v in current.items() if k != "log"}
        return image

    def notify_checkpoint_complete(self, checkpoint_id: int) -> None:
        """Exactly once: commit the transactions the checkpoint covers."""
        if self._transactions is not None:
            super().notify_checkpoint_complete(checkpoint_id)

    def restore_state(self, image: Any) -> None:
        """Exactly once: make the restored checkpoint's pending transactions committed, abort the open one.

        Runs before :meth:`open`, in the steps described in
        :mod:`streamcore.sinks.kafka_transactions`.

        Raises:
            ConnectorError: the cluster cannot be reached, the markers cannot be read
                within ``flush_timeout_s``, or producing a transaction again failed (a
                restart tries again: nothing is lost or doubled by trying twice).
        """
        if self._transactions is None or not image:
            return
        pending, aborted = self._transactions.restore(image)
        self.committed += pending
        self.aborted += aborted

    def finish(self) -> None:
        """End of input: flush (at least once) or pre-commit the last transaction (exactly once)."""
        if self._at_least_once is not None:
            self._at_least_once.flush("the end of input")
        else:
            super().finish()

    def close(self) -> None:
        """Commit or abort as the two-phase-commit base decides, then close every client.

        Aborting and delivering what is still queued take at most ``close_timeout_s`` in
        all; what could not be done in time, or not at all (a fenced producer is not asked
        to abort), is logged and left to the broker. Committing at the end of a job that
        ran without checkpoints is bounded by ``flush_timeout_s`` per transaction.

        Raises:
            ConnectorError: only that final commit failed.
        """
        deadline = time.monotonic() + self.close_timeout_s
        if self._at_least_once is not None:
            self._at_least_once.close(self.close_timeout_s)
            return
        self._close_deadline = deadline
        try:
            super().close()
        finally:
            self._close_deadline = None
            self._txn().close(deadline)

    # -- transactions (exactly once) -----------------------------------------------------------
    def begin_transaction(self) -> Any:
        """Begin a transaction on a producer with none open; the handle names its id and a sequence number."""
        return self._txn().begin()

    def write_transaction(self, transaction: Any, values: list[Any], timestamps: list[int] | None) -> None:
        """Produce the batch on the transaction's producer (and log it, with ``write_ahead``)."""
        payloads, keys, partitions = self._serialize(values)
        self._txn().write(transaction, payloads, keys, timestamps, partitions)

    def pre_commit(self, transaction: Any) -> None:
        """Produce the commit marker (``write_ahead``, if it has records), then flush.

        Afterwards every record of the transaction is acknowledged (still invisible to
        ``read_committed`` consumers).
        """
        self._txn().pre_commit(transaction)

    def commit(self, transaction: Any) -> None:
        """Commit; a handle of another run is only re-initialised (the broker completes or aborts it)."""
        self._txn().commit(transaction)

    def abort(self, transaction: Any) -> None:
        """Abort, never raising; another run's transaction is aborted by ``init_transactions``.

        Waits at most ``flush_timeout_s``, or what is left of ``close_timeout_s`` while
        closing; what is given up is logged (see :meth:`close`).
        """
        deadline = self._close_deadline
        timeout = None if deadline is None else max(0.0, deadline - time.monotonic())
        self._txn().abort(transaction, timeout)

    # -- metrics ---------------------------------------------------------------------------
    @property
    def records_out(self) -> int:
        """Records produced (replayed ones included)."""
        return self._stats.records_out

    @property
    def bytes_out(self) -> int:
        """Value bytes produced."""
        return self._stats.bytes_out

    @property
    def commit_ms_total(self) -> float:
        """Milliseconds spent committing transactions (exactly once)."""
        return self._transactions.commit_ms_total if self._transactions is not None else 0.0

    @property
    def commit_ms_last(self) -> float:
        """Milliseconds the last commit took (exactly once)."""
        return self._transactions.commit_ms_last if self._transactions is not None else 0.0

    @property
    def recovered(self) -> int:
        """Transactional ids re-initialised by a restore (exactly once)."""
        return self._transactions.recovered if self._transactions is not None else 0

    @property
    def confirmed(self) -> int:
        """Pending transactions a restore found committed (exactly once)."""
        return self._transactions.confirmed if self._transactions is not None else 0

    @property
    def replayed(self) -> int:
        """Pending transactions a restore produced again from the checkpoint (exactly once)."""
        return self._transactions.replayed if self._transactions is not None else 0

    @property
    def records_replayed(self) -> int:
        """Records of the replayed transactions."""
        return self._transactions.records_replayed if self._transactions is not None else 0

    def metrics(self) -> dict[str, Any]:
        """Records and bytes out, delivery errors, transactions and their commit time.

        At a restore, ``transactions_recovered`` counts re-initialised transactional ids;
        of the pending transactions, ``transactions_confirmed`` had their commit marker
        visible and ``transactions_replayed`` were produced again from the checkpoint.
        """
        delivery = self._at_least_once or self._transactions
        assert delivery is not None
        return {
            "records_out": self._stats.records_out,
            "bytes_out": self._stats.bytes_out,
            "delivery_errors": self._stats.delivery_errors,
            "in_flight": delivery.in_flight(),
            "transactions_committed": self.committed,
            "transactions_aborted": self.aborted,
            "transactions_recovered": self.recovered,
            "transactions_confirmed": self.confirmed,
            "transactions_replayed": self.replayed,
            "records_replayed": self.records_replayed,
            "commit_ms_last": round(self.commit_ms_last, 3),
            "commit_ms_total": round(self.commit_ms_total, 3),
        }


# -- argument checks -------------------------------------------------------------------------------
def _check_target(bootstrap_servers: Any, topic: Any) -> None:
    if not isinstance(bootstrap_servers, str) or not bootstrap_servers.strip():
        msg = f"bootstrap_servers must be a non-empty 'host:port,...' str, got {bootstrap_servers!r}"
        raise ConfigurationError(msg)
    if not isinstance(topic, str) or not topic:
        msg = f"topic must be a non-empty str, got {topic!r}"
        raise ConfigurationError(msg)


def _check_functions(key: Any, value_serializer: Any, key_serializer: Any) -> None:
    functions = (("key", key), ("value_serializer", value_serializer), ("key_serializer", key_serializer))
    for name, fn in functions:
        if fn is not None and not callable(fn):
            msg = f"KafkaSink {name} must be a callable, got {type(fn).__name__}"
            raise ConfigurationError(msg)
    if value_serializer is None or key_serializer is None:
        msg = "KafkaSink value_serializer and key_serializer must be callables (got None)"
        raise ConfigurationError(msg)


def _check_delivery(delivery: Any, transactional_id_prefix: Any, write_ahead: Any) -> None:
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


def _resolve_marker_topic(topic: str, marker_topic: Any, uses_markers: bool) -> str | None:
    """The marker topic to use (``None`` without write-ahead), checked."""
    if not uses_markers:
        if marker_topic is not None:
            msg = (
                "marker_topic only applies to delivery='exactly_once' with write_ahead=True "
                "(the default there); drop it, or enable both"
            )
            raise ConfigurationError(msg)
        return None
    if marker_topic is None:
        marker_topic = f"{topic}{MARKER_TOPIC_SUFFIX}"
        why = check_topic_name(marker_topic, f"the default marker_topic (derived from topic {topic!r})")
        hint = "; pass marker_topic=... with a legal name"
    else:
        why = check_topic_name(marker_topic, "marker_topic")
        hint = ""
    if why is not None:
        raise ConfigurationError(why + hint)
    if marker_topic == topic:
        msg = f"marker_topic must differ from topic {topic!r}: markers would mix with the records"
        raise ConfigurationError(msg)
    return marker_topic
