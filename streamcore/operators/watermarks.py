"""Assigning timestamps and watermarks inside a dataflow (not at a source)."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from streamcore.errors import StreamcoreError, TimestampError
from streamcore.functions import function_name
from streamcore.operators.base import StreamOperator, user_error
from streamcore.time import MAX_TIMESTAMP, Clock, WatermarkStrategy

__all__ = ["TimestampsAndWatermarksOperator", "check_timestamps", "extract_timestamps"]


def extract_timestamps(op_uid: str, fn: Callable[[Any], int], values: list[Any]) -> list[int]:
    """``fn(v)`` for every value, checked to be ints.

    Raises:
        TimestampError: the assigner returned something that is not an int.
        UserFunctionError: the assigner raised.
    """
    try:
        ts = [fn(v) for v in values]
    except StreamcoreError:
        raise
    except Exception as exc:
        msg = f"timestamp assigner {function_name(fn)} of {op_uid!r} raised {type(exc).__name__}: {exc}"
        raise TimestampError(msg) from exc
    check_timestamps(op_uid, fn, ts, values)
    return ts


def check_timestamps(op_uid: str, fn: Any, ts: list[Any], values: list[Any]) -> None:
    """Raise :class:`TimestampError` unless every timestamp is an int."""
    if ts and set(map(type, ts)) != {int}:
        bad = next(i for i, t in enumerate(ts) if type(t) is not int)
        msg = (
            f"timestamp assigner {function_name(fn)} of {op_uid!r} returned {ts[bad]!r} "
            f"({type(ts[bad]).__name__}) for element {values[bad]!r}; timestamps must be int milliseconds "
            "since the epoch (e.g. int(dt.timestamp() * 1000))"
        )
        raise TimestampError(msg)


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

    def snapshot_state(self, canonical: bool = False) -> Any:
        """The generator's state and the current watermark."""
        return {"generator": self.generator.snapshot(), "watermark": self.current_watermark}

    def restore_state(self, image: Any) -> None:
        """Restore the generator."""
        if image:
            self.generator.restore(image["generator"])
            self.current_watermark = image["watermark"]
