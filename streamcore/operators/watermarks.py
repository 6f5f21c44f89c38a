"""Assigning timestamps and watermarks inside a dataflow (not at a source)."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from streamcore.errors import StreamcoreError, TimestampError
from streamcore.operators.base import SnapshotContext, StreamOperator, user_error
from streamcore.time import MAX_TIMESTAMP, Clock, WatermarkStrategy
from streamcore.timestamps import extract_timestamps

__all__ = ["TimestampsAndWatermarksOperator"]


class TimestampsAndWatermarksOperator(StreamOperator):
    """Re-assigns timestamps and generates its own watermarks; upstream watermarks are ignored
    except the final ``MAX_TIMESTAMP`` of the end of input."""

    def __init__(
        self,
        name: str,
        uid: str,
        strategy: WatermarkStrategy,
        timestamp: Callable[[Any], int] | None,
        clock: Clock,
    ) -> None:
        super().__init__(name, uid)
        self.strategy = strategy
        self.timestamp_fn = timestamp
        self.generator = strategy.create_generator()

    def process_batch(self, values: list[Any], timestamps: list[int] | None, side: int) -> None:
        """Assign timestamps, emit, then emit the watermark if it advanced."""
        if self.timestamp_fn is not None:
            timestamps = extract_timestamps(self.uid, self.timestamp_fn, values)
        elif timestamps is None:
            msg = (
                f"operator {self.uid!r}: elements have no timestamps; "
                "pass timestamp=... to assign_timestamps_and_watermarks"
            )
            raise TimestampError(msg)
        try:
            self.generator.on_batch(timestamps)
        except StreamcoreError:
            raise
        except Exception as exc:
            raise user_error(self, self.generator, "watermark generator", exc) from exc
        self.records_in += len(values)
        self.records_out += len(values)
        self.output.emit(values, timestamps)
        wm = self.generator.current_watermark()
        if wm > self.current_watermark:
            self.current_watermark = wm
            self.output.emit_watermark(wm)

    def receive_watermark(self, edge: int, watermark: int) -> None:
        """Only the end-of-input watermark passes through."""
        if watermark == MAX_TIMESTAMP and self.current_watermark < MAX_TIMESTAMP:
            self.current_watermark = MAX_TIMESTAMP
            self.output.emit_watermark(MAX_TIMESTAMP)

    def receive_idle(self, edge: int, idle: bool) -> None:
        """Idleness of the input does not matter: this operator makes its own watermarks."""

    stateful = True

    def snapshot_state(self, ctx: SnapshotContext) -> Any:
        """The generator's state and the current watermark."""
        return {"generator": self.generator.snapshot(), "watermark": self.current_watermark}

    def restore_state(self, image: Any) -> None:
        """Restore the generator."""
        if image:
            self.generator.restore(image["generator"])
            self.current_watermark = image["watermark"]
