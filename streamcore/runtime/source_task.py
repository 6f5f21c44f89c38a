"""Runs one source: its split readers, a watermark per split, idleness, pausing.

Each split is one :class:`~streamcore.sources.split_state.SplitState` (reader, watermark
generator, watermark, idleness, pausing). The source's watermark is the minimum over its
active splits: not finished, and not idle (no record for the strategy's idleness
timeout). A paused split (rate coordination) is never idle. When every split has
finished, :meth:`SourceTask.finish` emits ``MAX_TIMESTAMP``, which fires every event-time
timer downstream.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from streamcore.errors import ConfigurationError, RestoreError
from streamcore.operators.base import Output
from streamcore.sources.base import Source, SplitReader
from streamcore.sources.split_state import SplitState
from streamcore.time import MAX_TIMESTAMP, MIN_TIMESTAMP, Clock, WatermarkStrategy
from streamcore.timestamps import check_timestamps, extract_timestamps

__all__ = ["SourceTask"]


class SourceTask:
    """The runtime side of one source node: its splits, its watermark, its output."""

    def __init__(
        self,
        name: str,
        uid: str,
        source: Source,
        strategy: WatermarkStrategy | None,
        timestamp_fn: Callable[[Any], int] | None,
        clock: Clock,
    ) -> None:
        self.name = name
        self.uid = uid
        self.source = source
        self.strategy = strategy
        self.timestamp_fn = timestamp_fn
        self.clock = clock
        self.output = Output()
        self.current_watermark = MIN_TIMESTAMP
        self.splits: list[SplitState] = []
        self.records_out = 0
        self.finished = False
        self._next_discovery: int | None = None  # clock time of the next split discovery
        self._idle_emitted = False
        self._idleness = strategy.idleness_ms if strategy is not None else None

    def open(self) -> None:
        """Create the readers, one split state (with its watermark generator) each."""
        now = self.clock.now_ms()
        self.splits = []
        self._add_splits(self.source.create_readers(), now, "created")
        self.finished = not self.splits and self.source.discovery_interval_ms is None
        interval = self.source.discovery_interval_ms
        self._next_discovery = None if interval is None or self.source.bounded else now + interval

    def discover(self, now: int) -> list[SplitState]:
        """Every ``discovery_interval_ms``: add the splits that appeared; returns them.

        A new split starts with no watermark, so the source's watermark waits for it (or
        for its idleness) as it does for every split.
        """
        due = self._next_discovery
        if due is None or now < due or self.finished:
            return []
        interval = self.source.discovery_interval_ms
        assert interval is not None
        self._next_discovery = now + interval
        return self._add_splits(self.source.discover_readers(self.readers()), now, "discovered")

    def _add_splits(self, readers: list[SplitReader], now: int, how: str) -> list[SplitState]:
        known = {s.split_id for s in self.splits}
        ids = [r.split_id for r in readers]
        if len(set(ids)) != len(ids) or known & set(ids):
            msg = (
                f"source {self.uid!r} {how} splits {ids} that repeat known ids (it has {sorted(known)}); "
                "split ids must be unique"
            )
            raise ConfigurationError(msg)
        strategy = self.strategy
        new = [SplitState(r, strategy.create_generator() if strategy else None, now) for r in readers]
        self.splits.extend(new)
        return new

    def readers(self) -> list[SplitReader]:
        """The readers of every split, in split order."""
        return [s.reader for s in self.splits]

    def pollable(self) -> list[SplitState]:
        """Splits that may be polled now (not finished, not paused)."""
        return [s for s in self.splits if not s.paused and not s.reader.finished]

    def poll(self, split: SplitState, max_records: int) -> int:
        """Read one batch from ``split``, push it downstream, update the watermark."""
        reader = split.reader
        values, native_ts = reader.poll(max_records)
        if values:
            if self.timestamp_fn is not None:
                ts: list[int] | None = extract_timestamps(self.uid, self.timestamp_fn, values)
            else:
                ts = native_ts
                if ts is not None:
                    check_timestamps(self.uid, "native timestamps", ts, values)
            gen = split.generator
            if ts is not None and gen is not None:
                gen.on_batch(ts)
            self.records_out += len(values)
            split.last_active = self.clock.now_ms()
            split.idle = False
            self.output.emit(values, ts)
        for tag, side_values, side_ts in reader.take_side_outputs():
            self.output.emit_side(tag, side_values, side_ts)
        in_band = reader.current_watermark()
        if in_band is not None:
            split.watermark = in_band
        elif split.generator is not None:
            split.watermark = split.generator.current_watermark()
        self.update_watermark()
        return len(values)

    def update_watermark(self) -> None:
        """Recompute the source watermark (min over active splits) and emit it if it advanced."""
        idleness = self._idleness
        now = self.clock.now_ms() if idleness is not None else 0
        active = []
        for s in self.splits:
            if s.reader.finished:
                continue
            if idleness is not None and not s.paused and now - s.last_active >= idleness:
                s.idle = True
                continue
            active.append(s.watermark)
        if not active:
            if not all(s.reader.finished for s in self.splits) and not self._idle_emitted:
                self._idle_emitted = True
                self.output.emit_idle(True)
            return
        if self._idle_emitted:
            self._idle_emitted = False
            self.output.emit_idle(False)
        wm = min(active)
        if wm > self.current_watermark:
            self.current_watermark = wm
            self.output.emit_watermark(wm)

    def all_finished(self) -> bool:
        """Whether every split has ended (never, while new splits may still be discovered)."""
        return self._next_discovery is None and all(s.reader.finished for s in self.splits)

    def finish(self) -> None:
        """End of input: emit ``MAX_TIMESTAMP``."""
        self.finished = True
        if self._idle_emitted:
            self._idle_emitted = False
            self.output.emit_idle(False)
        if self.current_watermark < MAX_TIMESTAMP:
            self.current_watermark = MAX_TIMESTAMP
            self.output.emit_watermark(MAX_TIMESTAMP)

    # -- checkpoints -------------------------------------------------------------------
    def snapshot_state(self) -> dict[str, Any]:
        """Position and watermark state of every split."""
        return {
            "watermark": self.current_watermark,
            "splits": {s.split_id: s.snapshot() for s in self.splits},
        }

    def restore_state(self, image: dict[str, Any]) -> None:
        """Seek every split to its checkpointed position.

        Raises:
            RestoreError: the checkpoint has splits this source does not (a changed source).
        """
        by_id = {s.split_id: s for s in self.splits}
        unknown = set(image["splits"]) - set(by_id)
        if unknown and self._next_discovery is not None:
            # Splits the checkpointed run discovered: look for them now rather than fail.
            self._add_splits(self.source.discover_readers(self.readers()), self.clock.now_ms(), "discovered")
            by_id = {s.split_id: s for s in self.splits}
            unknown = set(image["splits"]) - set(by_id)
        if unknown:
            msg = (
                f"source {self.uid!r}: the checkpoint has splits {sorted(unknown)} that the source "
                f"no longer creates (it has {sorted(by_id)}); restore with the same source configuration"
            )
            raise RestoreError(msg)
        for split_id, st in image["splits"].items():
            by_id[split_id].restore(st)
        self.current_watermark = image["watermark"]

    def notify_checkpoint_complete(self, checkpoint_id: int) -> None:
        """Forward checkpoint completion to every reader."""
        for s in self.splits:
            s.reader.notify_checkpoint_complete(checkpoint_id)

    def metrics(self) -> dict[str, Any]:
        """Records out, watermark, and per-split figures."""
        now = self.clock.now_ms()
        return {
            "records_out": self.records_out,
            "watermark": self.current_watermark,
            "splits": {s.split_id: s.metrics(now) for s in self.splits},
        }

    def close(self) -> None:
        """Close every reader."""
        for s in self.splits:
            s.reader.close()
