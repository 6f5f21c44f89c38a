"""One split of a running source, as one object: its reader and what the runtime tracks about it.

The runtime (:class:`streamcore.runtime.source_task.SourceTask`) polls the reader and
advances the watermark; idleness follows from ``last_active``; the rate coordinator
(:mod:`streamcore.sources.coordinator`) pauses and resumes it through :meth:`pause` and
:meth:`resume`, which also keep the paused time and restart the idleness timer.
Nothing else writes these fields.
"""

from __future__ import annotations

from typing import Any

from streamcore.sources.base import SplitReader
from streamcore.time import MIN_TIMESTAMP, WatermarkGenerator

__all__ = ["SplitState"]


class SplitState:
    """The run-time state of one split: reader, watermark generator, watermark, idleness, pausing.

    Attributes:
        reader: the split's reader (position, records).
        generator: the split's watermark generator, or ``None`` without a watermark strategy.
        watermark: the split's current watermark (``MIN_TIMESTAMP`` before the first one).
        last_active: clock time of the last batch that held records (or of the last resume).
        idle: the split had no record for the strategy's idleness timeout (excluded from the
            source's watermark); a paused split is never idle.
        paused: the rate coordinator holds the split back; it is not polled.
        paused_ms: total time paused before the current pause.
    """

    __slots__ = (
        "generator",
        "idle",
        "last_active",
        "pause_started",
        "paused",
        "paused_ms",
        "reader",
        "watermark",
    )

    def __init__(self, reader: SplitReader, generator: WatermarkGenerator | None, now: int) -> None:
        self.reader = reader
        self.generator = generator
        self.watermark = MIN_TIMESTAMP
        self.last_active = now
        self.idle = False
        self.paused = False
        self.paused_ms = 0
        self.pause_started = now

    @property
    def split_id(self) -> str:
        """The reader's split id (unique within its source)."""
        return self.reader.split_id

    @property
    def finished(self) -> bool:
        """Whether the reader has read the last record of a bounded split."""
        return bool(self.reader.finished)

    def position(self) -> Any:
        """Where the next record comes from (the reader's position)."""
        return self.reader.position()

    def pause(self, now: int) -> None:
        """Stop polling this split (the rate coordinator's decision); the reader is told."""
        if self.paused:
            return
        self.paused = True
        self.pause_started = now
        self.reader.pause()

    def resume(self, now: int) -> None:
        """Poll this split again; the pause was not inactivity, so the idleness timer restarts."""
        if not self.paused:
            return
        self.paused = False
        self.paused_ms += now - self.pause_started
        self.last_active = now
        self.reader.resume()

    def paused_total(self, now: int) -> int:
        """Paused time so far, the current pause included."""
        return self.paused_ms + (now - self.pause_started) if self.paused else self.paused_ms

    def snapshot(self) -> dict[str, Any]:
        """Position, watermark generator and watermark (msgpack-able) for a checkpoint."""
        gen = self.generator
        return {
            "position": self.reader.position(),
            "generator": gen.snapshot() if gen is not None else None,
            "watermark": self.watermark,
        }

    def restore(self, image: dict[str, Any]) -> None:
        """Seek the reader and restore the watermark from what :meth:`snapshot` returned."""
        self.reader.seek(image["position"])
        if self.generator is not None and image["generator"] is not None:
            self.generator.restore(image["generator"])
        self.watermark = image["watermark"]

    def metrics(self, now: int) -> dict[str, Any]:
        """Watermark, idleness, pausing, and the reader's own figures."""
        return {
            "watermark": self.watermark,
            "idle": self.idle,
            "paused": self.paused,
            "paused_ms": self.paused_total(now),
            "finished": self.finished,
            **self.reader.metrics(),
        }

    def __repr__(self) -> str:
        return f"SplitState({self.split_id!r}, watermark={self.watermark}, paused={self.paused})"
