"""Test helpers for rate coordination: scripted splits that spend ManualClock time, and a drift probe.

A :class:`ScriptedSource` split is a list of timestamps, with ``None`` marking an empty
poll (nothing available yet: the split may go idle). Reading costs clock time (1 ms per
record and per empty poll by default), so a job on a :class:`GuardedClock` advances
deterministically, and the coordinator's intervals pass as the job works.
"""

from __future__ import annotations

from typing import Any

from streamcore.runtime.source_task import SourceTask
from streamcore.sources.base import Source, SplitReader
from streamcore.time import MIN_TIMESTAMP, ManualClock


class StalledError(AssertionError):
    """The job slept (read nothing) more often than the test allows: a stall or a deadlock."""


class GuardedClock(ManualClock):
    """A ManualClock that counts idle sleeps and fails the job after ``max_sleeps`` of them."""

    def __init__(self, max_sleeps: int = 10_000) -> None:
        super().__init__(0)
        self.sleeps = 0
        self.max_sleeps = max_sleeps

    def sleep(self, duration_ms: int) -> None:
        self.sleeps += 1
        if self.sleeps > self.max_sleeps:
            msg = f"the job read nothing in {self.sleeps} rounds: stalled"
            raise StalledError(msg)
        super().sleep(duration_ms)


class _ScriptedReader(SplitReader):
    def __init__(self, split_id: str, script: list[int | None], clock: ManualClock, cost_ms: int) -> None:
        self.split_id = split_id
        self._script = script
        self._pos = 0
        self._clock = clock
        self._cost = cost_ms
        self.finished = not script
        self.polls = 0
        self.pause_calls = 0
        self.resume_calls = 0

    def poll(self, max_records: int) -> tuple[list[Any], list[int] | None]:
        self.polls += 1
        script, pos = self._script, self._pos
        if script[pos] is None:
            pos += 1
            out: list[Any] = []
            self._clock.advance(self._cost)
        else:
            end = pos
            while end < len(script) and end - pos < max_records and script[end] is not None:
                end += 1
            out = [(self.split_id, i, script[i]) for i in range(pos, end)]
            pos = end
            self._clock.advance(self._cost * len(out))
        self._pos = pos
        self.finished = pos >= len(script)
        return out, None

    def position(self) -> int:
        return self._pos

    def seek(self, position: Any) -> None:
        self._pos = position
        self.finished = position >= len(self._script)

    def pause(self) -> None:
        self.pause_calls += 1

    def resume(self) -> None:
        self.resume_calls += 1


class ScriptedSource(Source):
    """One split per script; records are ``(split_id, index, timestamp)``."""

    def __init__(
        self, name: str, scripts: list[list[int | None]], clock: ManualClock, cost_ms: int = 1
    ) -> None:
        self.name = name
        self.scripts = scripts
        self.clock = clock
        self.cost_ms = cost_ms
        self.readers: list[_ScriptedReader] = []

    def create_readers(self) -> list[SplitReader]:
        self.readers = [
            _ScriptedReader(f"{self.name}-{i}", s, self.clock, self.cost_ms)
            for i, s in enumerate(self.scripts)
        ]
        return list(self.readers)


def steady(count: int, step_ms: int, start: int = 0) -> list[int | None]:
    """``count`` timestamps ``step_ms`` apart: a split whose event time advances ``step_ms`` per record."""
    return [start + i * step_ms for i in range(count)]


class DriftProbe:
    """After every poll, the watermark drift (max - min) across the job's active splits.

    Active: not finished, not idle, with a watermark. Install with ``monkeypatch``.
    """

    def __init__(self, monkeypatch: Any) -> None:
        self.tasks: list[SourceTask] = []
        self.drifts: list[int] = []
        self.polls = 0
        original = SourceTask.poll
        probe = self

        def poll(task: SourceTask, split: Any, max_records: int) -> int:
            n = original(task, split, max_records)
            probe.after_poll(task)
            return n

        monkeypatch.setattr(SourceTask, "poll", poll)

    def after_poll(self, task: SourceTask) -> None:
        self.polls += 1
        if task not in self.tasks:
            self.tasks.append(task)
        wms = [
            s.watermark
            for t in self.tasks
            for s in t.splits
            if not s.finished and not s.idle and s.watermark > MIN_TIMESTAMP
        ]
        self.drifts.append(max(wms) - min(wms) if len(wms) > 1 else 0)

    @property
    def max_drift(self) -> int:
        return max(self.drifts, default=0)
