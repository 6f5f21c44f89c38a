"""Runs one source: its split readers, a watermark per split, idleness, pausing.

The source's watermark is the minimum over its active splits: not finished, and not
idle (no record for the strategy's idleness timeout). A paused split (rate
coordination) is never idle. When every split has finished, :meth:`SourceTask.finish`
emits ``MAX_TIMESTAMP``, which fires every event-time timer downstream.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from streamcore.errors import ConfigurationError, RestoreError
from streamcore.operators.base import Output
from streamcore.operators.watermarks import check_timestamps, extract_timestamps
from streamcore.sources.base import Source, SplitReader
from streamcore.time import MAX_TIMESTAMP, MIN_TIMESTAMP, Clock, WatermarkGenerator, WatermarkStrategy

__all__ = ["SourceTask"]


class SourceTask:
    """The runtime side of one source node."""

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
        self.readers: list[SplitReader] = []
        self.generators: list[WatermarkGenerator] | None = None
        self.split_wm: list[int] = []
        self.last_active: list[int] = []
        self.idle: list[bool] = []
        self.paused: list[bool] = []
        self.paused_ms: list[int] = []
        self.records_out = 0
        self.finished = False
        self._next_discovery: int | None = None  # clock time of the next split discovery
        self._idle_emitted = False
        self._idleness = strategy.idleness_ms if strategy is not None else None

    def open(self) -> None:
        """Create the readers and one watermark generator per split."""
        self.readers = self.source.create_readers()
        ids = [r.split_id for r in self.readers]
        if len(set(ids)) != len(ids):
            msg = f"source {self.uid!r} created splits with duplicate ids {ids}; split ids must be unique"
            raise ConfigurationError(msg)
        n = len(self.readers)
        if self.strategy is not None:
            self.generators = [self.strategy.create_generator() for _ in range(n)]
        now = self.clock.now_ms()
        self.split_wm = [MIN_TIMESTAMP] * n
        self.last_active = [now] * n
        self.idle = [False] * n
        self.paused = [False] * n
        self.paused_ms = [0] * n
        self.finished = n == 0 and self.source.discovery_interval_ms is None
        interval = self.source.discovery_interval_ms
        self._next_discovery = None if interval is None or self.source.bounded else now + interval

    def discover(self, now: int) -> int:
        """Every ``discovery_interval_ms``: add the readers of splits that appeared; returns how many.

        A new split starts with no watermark, so the source's watermark waits for it (or
        for its idleness) as it does for every split.
        """
        due = self._next_discovery
        if due is None or now < due or self.finished:
            return 0
        interval = self.source.discovery_interval_ms
        assert interval is not None
        self._next_discovery = now + interval
        return self._add_readers(self.source.discover_readers(list(self.readers)), now)

    def _add_readers(self, new: list[SplitReader], now: int) -> int:
        """Append discovered readers with fresh watermark, idleness and pause state."""
        known = {r.split_id for r in self.readers}
        ids = [r.split_id for r in new]
        if len(set(ids)) != len(ids) or known & set(ids):
            msg = (
                f"source {self.uid!r} discovered splits {ids} that repeat known ids; split ids must be unique"
            )
            raise ConfigurationError(msg)
        for _ in new:
            if self.generators is not None and self.strategy is not None:
                self.generators.append(self.strategy.create_generator())
            self.split_wm.append(MIN_TIMESTAMP)
            self.last_active.append(now)
            self.idle.append(False)
            self.paused.append(False)
            self.paused_ms.append(0)
        self.readers.extend(new)
        return len(new)

    def pollable(self) -> list[int]:
        """Indices of splits that may be polled now (not finished, not paused)."""
        return [i for i, r in enumerate(self.readers) if not r.finished and not self.paused[i]]

    def poll(self, i: int, max_records: int) -> int:
        """Read one batch from split ``i``, push it downstream, update the watermark."""
        values, native_ts = self.readers[i].poll(max_records)
        if values:
            if self.timestamp_fn is not None:
                ts: list[int] | None = extract_timestamps(self.uid, self.timestamp_fn, values)
            else:
                ts = native_ts
                if ts is not None:
                    check_timestamps(self.uid, "native timestamps", ts, values)
            gens = self.generators
            if ts is not None and gens is not None:
                gens[i].on_batch(ts)
            self.records_out += len(values)
            self.last_active[i] = self.clock.now_ms()
            self.idle[i] = False
            self.output.emit(values, ts)
        for tag, side_values, side_ts in self.readers[i].take_side_outputs():
            self.output.emit_side(tag, side_values, side_ts)
        if self.generators is not None:
            self.split_wm[i] = self.generators[i].current_watermark()
        self.update_watermark()
        return len(values)

    def update_watermark(self) -> None:
        """Recompute the source watermark (min over active splits) and emit it if it advanced."""
        idleness = self._idleness
        now = self.clock.now_ms() if idleness is not None else 0
        active = []
        for j, r in enumerate(self.readers):
            if r.finished:
                continue
            if idleness is not None and not self.paused[j] and now - self.last_active[j] >= idleness:
                self.idle[j] = True
                continue
            active.append(self.split_wm[j])
        if not active:
            if not all(r.finished for r in self.readers) and not self._idle_emitted:
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
        return self._next_discovery is None and all(r.finished for r in self.readers)

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
        gens = self.generators
        return {
            "watermark": self.current_watermark,
            "splits": {
                r.split_id: {
                    "position": r.position(),
                    "generator": gens[i].snapshot() if gens is not None else None,
                    "watermark": self.split_wm[i],
                }
                for i, r in enumerate(self.readers)
            },
        }

    def restore_state(self, image: dict[str, Any]) -> None:
        """Seek every split to its checkpointed position.

        Raises:
            RestoreError: the checkpoint has splits this source does not (a changed source).
        """
        by_id = {r.split_id: i for i, r in enumerate(self.readers)}
        unknown = set(image["splits"]) - set(by_id)
        if unknown and self._next_discovery is not None:
            # Splits the checkpointed run discovered: look for them now rather than fail.
            self._add_readers(self.source.discover_readers(list(self.readers)), self.clock.now_ms())
            by_id = {r.split_id: i for i, r in enumerate(self.readers)}
            unknown = set(image["splits"]) - set(by_id)
        if unknown:
            msg = (
                f"source {self.uid!r}: the checkpoint has splits {sorted(unknown)} that the source "
                f"no longer creates (it has {sorted(by_id)}); restore with the same source configuration"
            )
            raise RestoreError(msg)
        for split_id, st in image["splits"].items():
            i = by_id[split_id]
            self.readers[i].seek(st["position"])
            if self.generators is not None and st["generator"] is not None:
                self.generators[i].restore(st["generator"])
            self.split_wm[i] = st["watermark"]
        self.current_watermark = image["watermark"]

    def notify_checkpoint_complete(self, checkpoint_id: int) -> None:
        """Forward checkpoint completion to every reader."""
        for r in self.readers:
            r.notify_checkpoint_complete(checkpoint_id)

    def metrics(self) -> dict[str, Any]:
        """Records out, watermark, and per-split figures."""
        return {
            "records_out": self.records_out,
            "watermark": self.current_watermark,
            "splits": {
                r.split_id: {
                    "watermark": self.split_wm[i],
                    "idle": self.idle[i],
                    "paused": self.paused[i],
                    "paused_ms": self.paused_ms[i],
                    "finished": r.finished,
                    **r.metrics(),
                }
                for i, r in enumerate(self.readers)
            },
        }

    def close(self) -> None:
        """Close every reader."""
        for r in self.readers:
            r.close()
