"""At-least-once delivery into Kafka: one producer, flushed at every checkpoint and at the end of input.

Records are produced as batches arrive. :meth:`AtLeastOnceDelivery.flush` waits until the
brokers acknowledged everything produced so far, so a checkpoint that flushes completes
only once every record before it is durable. A crash replays the records written after
the last checkpoint: duplicates, never loss.
"""

from __future__ import annotations

from typing import Any

from streamcore.sinks.kafka_producer import DeliveryStats, ProducerSettings, SinkProducer

__all__ = ["AtLeastOnceDelivery"]


class AtLeastOnceDelivery:
    """What :class:`~streamcore.sinks.kafka.KafkaSink` does with ``delivery="at_least_once"``.

    Args:
        settings: the sink's producer settings.
        stats: the sink's counters.
    """

    def __init__(self, settings: ProducerSettings, stats: DeliveryStats) -> None:
        self.settings = settings
        self.stats = stats
        self.producer: SinkProducer | None = None

    def open(self) -> None:
        """Create the producer."""
        self.producer = SinkProducer(self.settings, self.stats)

    def write(
        self,
        payloads: list[Any],
        keys: list[Any] | None,
        timestamps: list[int] | None,
        partitions: list[int] | None = None,
    ) -> None:
        """Produce a serialized batch (to the given partitions, if any).

        Raises:
            ConnectorError: see :meth:`SinkProducer.produce_batch`.
        """
        assert self.producer is not None, "AtLeastOnceDelivery.open() was not called"
        self.producer.produce_batch(payloads, keys, timestamps, partitions)

    def flush(self, what: str) -> None:
        """Wait until everything produced is acknowledged (``what``: "checkpoint 3", for errors).

        Raises:
            ConnectorError: a delivery failed, or ``flush_timeout_s`` passed first.
        """
        if self.producer is not None:
            self.producer.flush(what)

    def in_flight(self) -> int:
        """Records not yet acknowledged."""
        return self.producer.in_flight() if self.producer is not None else 0

    def close(self, timeout_s: float) -> None:
        """Close the producer within ``timeout_s`` (see :meth:`SinkProducer.close`); again: nothing."""
        producer, self.producer = self.producer, None
        if producer is not None:
            producer.close(timeout_s)
