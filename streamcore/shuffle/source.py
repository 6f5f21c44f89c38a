"""The reading side of a repartition topic: elements in order, each once, with combined watermarks.

Task ``p`` reads partition ``p`` of the topic with ``read_committed`` (every writer
commits its records with its checkpoints). Each partition holds the frames of every
writing task (:mod:`streamcore.shuffle.frames`); the reader keeps, per writer, the last
element number it passed on and the writer's watermark and idleness:

* an element whose number it already passed is a replay (a writer restored from a
  checkpoint writes what it replays again) and is dropped;
* the split's watermark is the minimum over the writers' watermarks, idle writers
  excluded; a writer not heard from yet holds it at the minimum, so nothing downstream
  fires before every writer got going;
* the split ends when every writer sent the end-of-input watermark (``MAX_TIMESTAMP``).

All of it is part of the split's position, so a restore continues exactly.
"""

from __future__ import annotations

from typing import Any

from streamcore.shuffle.frames import DATA, WATERMARK, decode
from streamcore.sources.base import SplitReader
from streamcore.sources.kafka import KafkaSource
from streamcore.time import MAX_TIMESTAMP, MIN_TIMESTAMP

__all__ = ["RepartitionReader", "RepartitionSource"]


class RepartitionReader(SplitReader):
    """One partition of a repartition topic (wraps the Kafka partition reader)."""

    def __init__(self, inner: SplitReader, writers: int) -> None:
        self.inner = inner
        self.split_id = inner.split_id
        self.writers = writers
        self.seen: dict[int, int] = {}
        self.watermarks: dict[int, int] = {}
        self.idle: set[int] = set()
        self.duplicates = 0

    @property  # type: ignore[override]
    def finished(self) -> bool:
        """Every writer sent the end-of-input watermark."""
        ended = sum(1 for wm in self.watermarks.values() if wm >= MAX_TIMESTAMP)
        return ended >= self.writers

    def poll(self, max_records: int) -> tuple[list[Any], list[int] | None]:
        """Elements of the next frames (replays dropped), with their timestamps."""
        frames, _ = self.inner.poll(max_records)
        values: list[Any] = []
        stamps: list[int] = []
        seen, watermarks, idle = self.seen, self.watermarks, self.idle
        for raw in frames:
            frame = decode(raw)
            kind, task = frame[0], frame[1]
            if kind == DATA:
                seq = frame[2]
                if seq <= seen.get(task, 0):
                    self.duplicates += 1
                    continue
                seen[task] = seq
                stamps.append(frame[3])
                values.append(frame[4])
            elif kind == WATERMARK:
                if frame[2] > watermarks.get(task, MIN_TIMESTAMP):
                    watermarks[task] = frame[2]
                idle.discard(task)
            elif frame[2]:
                idle.add(task)
            else:
                idle.discard(task)
        has_ts = stamps and stamps[0] is not None
        return values, stamps if has_ts else None

    def current_watermark(self) -> int:
        """The minimum over the writers' watermarks, idle writers excluded."""
        active = [self.watermarks.get(t, MIN_TIMESTAMP) for t in range(self.writers) if t not in self.idle]
        if active:
            return min(active)
        return min(self.watermarks.values(), default=MIN_TIMESTAMP)

    def position(self) -> Any:
        """The Kafka offset, and what the reader knows of every writer."""
        return {
            "offset": self.inner.position(),
            "seen": [[t, s] for t, s in sorted(self.seen.items())],
            "watermarks": [[t, w] for t, w in sorted(self.watermarks.items())],
            "idle": sorted(self.idle),
        }

    def seek(self, position: Any) -> None:
        """Continue from a position of :meth:`position`."""
        self.inner.seek(position["offset"])
        self.seen = {int(t): int(s) for t, s in position["seen"]}
        self.watermarks = {int(t): int(w) for t, w in position["watermarks"]}
        self.idle = set(position["idle"])

    def pause(self) -> None:
        """Pause the Kafka partition."""
        self.inner.pause()

    def resume(self) -> None:
        """Resume the Kafka partition."""
        self.inner.resume()

    def notify_checkpoint_complete(self, checkpoint_id: int) -> None:
        """Forward to the Kafka reader."""
        self.inner.notify_checkpoint_complete(checkpoint_id)

    def metrics(self) -> dict[str, Any]:
        """The Kafka reader's figures, replays dropped, and the writers' watermarks."""
        return {**self.inner.metrics(), "replays_dropped": self.duplicates, "writers": len(self.watermarks)}

    def close(self) -> None:
        """Close the Kafka reader."""
        self.inner.close()


class RepartitionSource(KafkaSource):
    """A repartition topic as a source: read ``read_committed`` from the start, frames decoded.

    Args:
        bootstrap_servers: the cluster.
        topic: the repartition topic.
        group_id: the job's consumer group (for the consumer's configuration only).
        writers: how many tasks write to it (the job's task count).
        config: more librdkafka consumer settings.
    """

    def __init__(
        self,
        bootstrap_servers: str,
        topic: str,
        group_id: str,
        writers: int,
        config: dict[str, Any] | None = None,
    ) -> None:
        super().__init__(
            bootstrap_servers,
            [topic],
            group_id,
            starting_offsets="earliest",
            timestamp=None,
            config={"isolation.level": "read_committed", **(config or {})},
            partition_discovery_s=None,
            assignment="group",
        )
        self.writers = writers

    def create_readers(self) -> list[SplitReader]:
        """The Kafka readers of the partitions, each wrapped to decode frames."""
        return [RepartitionReader(r, self.writers) for r in super().create_readers()]

    def describe(self) -> str:
        """``repartition(topic)``."""
        return f"repartition({self.topics[0]})"
