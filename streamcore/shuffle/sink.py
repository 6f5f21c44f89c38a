"""The writing side of a repartition topic: each element to the partition that owns its key group.

Key groups map to partitions in contiguous ranges, as Flink maps key groups to
operator instances: key group ``g`` of ``max_parallelism`` goes to partition
``g * partitions // max_parallelism``. The operator also writes its watermark, and its
input's idleness, to every partition, so the readers can combine the watermarks of all
writers. Writes go through a :class:`~streamcore.sinks.kafka.KafkaSink` (transactional
by default: the records of a checkpoint interval become visible when the checkpoint
completes), under the operator's uid qualified by the task, so every task has its own
transactional ids and a new owner of a task fences the previous one.
"""

from __future__ import annotations

from operator import itemgetter
from typing import Any

from streamcore.errors import KeyEncodingError, KeySelectorError, StreamcoreError
from streamcore.functions import function_name
from streamcore.keygroups import key_group_for
from streamcore.operators.base import OperatorRuntime, SnapshotContext
from streamcore.shuffle.frames import data_frame, idle_frame, watermark_frame
from streamcore.sinks.base import SinkOperator
from streamcore.sinks.kafka import KafkaSink

__all__ = ["RepartitionSinkOperator", "partition_of_key_group", "repartition_sink"]


def partition_of_key_group(key_group: int, partitions: int, max_parallelism: int) -> int:
    """The partition that owns ``key_group`` (contiguous ranges of key groups per partition)."""
    return key_group * partitions // max_parallelism


def repartition_sink(
    bootstrap_servers: str,
    topic: str,
    *,
    delivery: str = "exactly_once",
    config: dict[str, Any] | None = None,
) -> KafkaSink:
    """The sink a repartition operator writes through: frames as values, partitions chosen per frame."""
    return KafkaSink(
        bootstrap_servers,
        topic,
        value_serializer=itemgetter(1),
        partitioner=itemgetter(0),
        delivery=delivery,
        write_timestamps=False,
        config=config,
    )


class RepartitionSinkOperator(SinkOperator):
    """Writes its input to a repartition topic by key group, with watermarks and idleness.

    Args:
        name: operator name.
        uid: operator uid.
        sink: from :func:`repartition_sink`.
        key_selector: the downstream ``key_by``'s key function.
        partitions: the topic's partition count (the job's task count).
    """

    stateful = True

    def __init__(self, name: str, uid: str, sink: KafkaSink, key_selector: Any, partitions: int) -> None:
        super().__init__(name, uid, sink)
        self.key_selector = key_selector
        self.partitions = partitions
        self.task = 0
        self.seq = 0
        self.max_parallelism = 128

    def setup(self, runtime: OperatorRuntime) -> None:
        """Learn the task id (frames are tagged with it) and the max parallelism."""
        super().setup(runtime)
        self.task = int(runtime.task_id) if runtime.task_id is not None else 0
        self.max_parallelism = runtime.max_parallelism

    def process_batch(self, values: list[Any], timestamps: list[int] | None, side: int) -> None:
        """Write each element to the partition of its key group."""
        kf = self.key_selector
        try:
            keys = [kf(v) for v in values]
        except StreamcoreError:
            raise
        except Exception as exc:
            msg = (
                f"key selector {function_name(kf)} of repartition {self.uid!r} raised "
                f"{type(exc).__name__}: {exc}; make it return a key for every element"
            )
            raise KeySelectorError(msg) from exc
        mp, n, task = self.max_parallelism, self.partitions, self.task
        try:
            parts = [key_group_for(k, mp) * n // mp for k in keys]
        except KeyEncodingError as exc:
            msg = f"repartition {self.uid!r}, key selector {function_name(kf)}: {exc}"
            raise KeyEncodingError(msg) from exc
        tss = timestamps if timestamps is not None else [None] * len(values)
        first = self.seq + 1
        self.seq += len(values)
        frames = [
            (p, data_frame(task, seq, t, v))
            for p, seq, t, v in zip(parts, range(first, first + len(values)), tss, values, strict=True)
        ]
        super().process_batch(frames, None, side)

    def _broadcast(self, frame: bytes) -> None:
        super().process_batch([(p, frame) for p in range(self.partitions)], None, 0)
        self.records_in -= self.partitions  # control frames are not input records

    def process_watermark(self, watermark: int) -> None:
        """Write the watermark to every partition."""
        self._broadcast(watermark_frame(self.task, watermark))

    def process_idle(self, idle: bool) -> None:
        """Write the input's idleness to every partition."""
        self._broadcast(idle_frame(self.task, idle))

    def snapshot_state(self, ctx: SnapshotContext) -> Any:
        """The sink's transactions and the element counter (replays reuse the same numbers)."""
        return {"sink": super().snapshot_state(ctx), "seq": self.seq}

    def restore_state(self, image: Any) -> None:
        """Restore the counter and the sink."""
        if image:
            self.seq = int(image["seq"])
            super().restore_state(image["sink"])
