"""The source contract: immutable configuration that creates split readers.

A :class:`Source` is configuration; :meth:`Source.create_readers` builds one
:class:`SplitReader` per split (a Kafka partition, a file, a generator split). The
runtime polls readers in turn for batches, tracks a watermark per split, and asks
each reader for its position when a checkpoint is taken; on restore, readers
:meth:`~SplitReader.seek` back to it, so a restored job reads every record exactly
once.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from typing import Any

from streamcore.errors import ConfigurationError

__all__ = ["Source", "SplitReader"]


class SplitReader(ABC):
    """Reads one split. ``finished`` becomes true after the last record of a bounded split."""

    split_id: str
    finished: bool = False

    @abstractmethod
    def poll(self, max_records: int) -> tuple[list[Any], list[int] | None]:
        """Up to ``max_records`` records and their native timestamps (or ``None``).

        An empty list means nothing is available right now (not the end: see ``finished``).
        """

    @abstractmethod
    def position(self) -> Any:
        """Where the next record comes from (msgpack-able): part of every checkpoint."""

    @abstractmethod
    def seek(self, position: Any) -> None:
        """Continue from a position returned by :meth:`position`."""

    def pause(self) -> None:
        """The rate coordinator paused this split (Kafka pauses the partition)."""

    def resume(self) -> None:
        """The split may be polled again."""

    def current_watermark(self) -> int | None:
        """The split's watermark when its records carry it in-band (a repartition topic), else ``None``.

        ``None`` lets the source's watermark strategy compute it from timestamps.
        """
        return None

    def take_side_outputs(self) -> list[tuple[str, list[Any], list[int] | None]]:
        """Records routed to side outputs since the last call (dead letters).

        Returns ``[(tag, values, timestamps), ...]``; the runtime emits them after the batch.
        """
        return []

    def notify_checkpoint_complete(self, checkpoint_id: int) -> None:
        """A checkpoint holding this reader's position is durable (Kafka may commit offsets)."""

    def metrics(self) -> dict[str, Any]:
        """Reader figures (lag, bytes)."""
        return {}

    def close(self) -> None:
        """Release resources."""


class Source(ABC):
    """Configuration of a source; builds readers for every split of one job run.

    A source whose splits can grow while it runs (Kafka partitions added to a topic) sets
    ``discovery_interval_ms``; the runtime then calls :meth:`discover_readers` that often
    and reads the new splits too.
    """

    bounded: bool = True
    #: how often the runtime asks for new splits (``None``: never).
    discovery_interval_ms: int | None = None

    @abstractmethod
    def create_readers(self) -> list[SplitReader]:
        """One reader per split, positioned at the start."""

    def discover_readers(self, readers: list[SplitReader]) -> list[SplitReader]:
        """Readers for splits that appeared since ``readers`` (this run's readers) were created.

        Called on the job's thread every ``discovery_interval_ms``. A failure to look is
        not fatal: return ``[]`` (and log) to try again at the next interval.
        """
        return []

    def for_partition(self, partition: int) -> Source:
        """This source restricted to partition ``partition`` of its topics: what one task of a
        consumer group reads (see ``KafkaSource(assignment="group")``).

        Raises:
            ConfigurationError: the source has no partitions (only Kafka sources do).
        """
        msg = (
            f"a job whose tasks a consumer group assigns reads only partitioned sources; "
            f"{self.describe()} has no partitions: use KafkaSource(..., assignment='group') for every source"
        )
        raise ConfigurationError(msg)

    def describe(self) -> str:
        """A one-line description for logs and the CLI."""
        return type(self).__name__
