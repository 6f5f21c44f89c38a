"""Warnings a running job gives once, when it looks stuck in a way the user can fix.

* An event-time window fed by an unbounded source that has run for
  ``env.no_watermark_warning_s`` (60 s by default, on the job's clock) with records read
  but no watermark anywhere before the window: its windows can never fire. Logged once as
  a WARNING that names the window and the sources without a watermark strategy.
"""

from __future__ import annotations

import logging
from typing import Any

from streamcore.runtime.executor import JobExecutor
from streamcore.runtime.run import JobRun, RunListener, tasks_of
from streamcore.time import MIN_TIMESTAMP

__all__ = ["NoWatermarkWarning", "no_watermark_listener"]

logger = logging.getLogger("streamcore.runtime")


def _is_event_time_window(op: Any) -> bool:
    assigner = getattr(op, "assigner", None)
    is_event_time = getattr(assigner, "is_event_time", None)
    return callable(is_event_time) and bool(is_event_time()) and hasattr(op, "windows_fired")


def no_watermark_listener(env: Any) -> NoWatermarkWarning | None:
    """The listener for ``env``'s job, or None when it has no unbounded source."""
    if not any(n.kind == "source" and not n.source.bounded for n in env.graph.nodes):
        return None
    return NoWatermarkWarning(env.no_watermark_warning_s)


class NoWatermarkWarning(RunListener):
    """Warns once when event-time windows have waited ``after_s`` for a first watermark."""

    def __init__(self, after_s: float) -> None:
        self.after_ms = int(after_s * 1000)
        self._since: int | None = None
        self._windows: list[Any] = []
        self._warned = False

    def attempt_started(self, run: JobRun, executor: JobExecutor) -> None:
        """Find the event-time windows of the attempt."""
        self._windows = [op for _, t in tasks_of(executor) for op in t.operators if _is_event_time_window(op)]
        self._since = executor.clock.now_ms()

    def between_batches(self, run: JobRun, executor: JobExecutor) -> None:
        """Warn once if a window still has no watermark after the delay."""
        if self._warned or not self._windows or self._since is None:
            return
        if executor.clock.now_ms() - self._since < self.after_ms:
            return
        waiting = [op for op in self._windows if op.current_watermark == MIN_TIMESTAMP and op.records_in]
        if not waiting:
            return
        self._warned = True
        sources = sorted(
            {
                s.uid
                for _, t in tasks_of(executor)
                for s in t.sources
                if s.strategy is None or s.strategy.description == "none"
            }
        )
        hint = (
            f"sources without a watermark strategy: {sources}; pass watermarks=WatermarkStrategy."
            "for_bounded_out_of_orderness(...) to them (or assign_timestamps_and_watermarks(...))"
            if sources
            else "check the sources' watermark strategies and idleness (with_idleness(...))"
        )
        for op in waiting:
            logger.warning(
                "job %r: event-time window %r has received %d records but no watermark in %d s, so its "
                "windows cannot fire; %s",
                run.job_name,
                op.uid,
                op.records_in,
                self.after_ms // 1000,
                hint,
            )
