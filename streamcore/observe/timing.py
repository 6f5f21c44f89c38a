"""Busy and backpressured time per operator, and end-to-end latency at the sinks.

One thread pushes each batch synchronously through the chain, so an operator's
``process_batch`` call also contains the time its downstream operators spend on what it
emitted. :class:`BusyTimer` wraps ``process_batch`` (and ``process_watermark``, where
timers fire) of every operator, and ``poll`` of every source, on the instance, and splits
each call's time into:

* **busy**: the operator's own work (the call minus the calls it made downstream);
* **backpressured**: the time it waited for downstream to take what it emitted (the calls
  it made downstream), Flink's "back pressured" (blocked on output) in a synchronous chain.

Divided by wall-clock time these are ``busy_ratio`` and ``backpressured_ratio`` (Flink's
``busyTimeMsPerSecond`` / ``backPressuredTimeMsPerSecond`` divided by 1000). The rest of
the time is idle (no input). Costs two ``perf_counter`` calls per operator per batch.

Latency at sinks is **event-time latency**: wall clock when a sink receives a record minus
the record's event timestamp, sampled (up to :data:`LATENCY_SAMPLES` records per batch).
It includes how late the record reached the source; replaying old data measures its age.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any

__all__ = ["LATENCY_SAMPLES", "BusyTimer"]

#: records per sink batch whose latency is observed (evenly spaced).
LATENCY_SAMPLES = 8


class _Frame:
    __slots__ = ("child",)

    def __init__(self) -> None:
        self.child = 0.0


class BusyTimer:
    """Accumulates busy and backpressured seconds per uid for one task.

    Args:
        latency: called as ``latency(uid, seconds)`` for sampled sink records, or None.
        clock: seconds (``time.perf_counter``; tests pass a fake one).
    """

    def __init__(
        self,
        latency: Callable[[str, float], None] | None = None,
        clock: Callable[[], float] = time.perf_counter,
    ) -> None:
        self._clock = clock
        self.busy: dict[str, float] = {}
        self.backpressured: dict[str, float] = {}
        self._stack: list[_Frame] = []
        self._latency = latency

    def instrument(self, task: Any) -> None:
        """Wrap the task's sources and operators (once)."""
        for src in task.sources:
            self._wrap(src, "poll", src.uid, None)
        for op in task.operators:
            sink = getattr(op, "sink", None) is not None
            self._wrap(op, "process_batch", op.uid, self._latency if sink else None)
            self._wrap(op, "process_watermark", op.uid, None)

    def _wrap(self, obj: Any, method: str, uid: str, latency: Callable[[str, float], None] | None) -> None:
        if method in vars(obj):
            return  # already wrapped (or replaced on purpose)
        original = getattr(obj, method)
        busy, back, stack = self.busy, self.backpressured, self._stack
        busy.setdefault(uid, 0.0)
        back.setdefault(uid, 0.0)
        clock = self._clock

        def timed(*args: Any) -> Any:
            frame = _Frame()
            stack.append(frame)
            start = clock()
            try:
                return original(*args)
            finally:
                spent = clock() - start
                stack.pop()
                busy[uid] += spent - frame.child
                back[uid] += frame.child
                if stack:
                    stack[-1].child += spent

        def timed_sink(values: list[Any], timestamps: list[int] | None, side: int) -> Any:
            if timestamps and latency is not None:
                now_ms = time.time() * 1000
                step = max(1, len(timestamps) // LATENCY_SAMPLES)
                for ts in timestamps[::step][:LATENCY_SAMPLES]:
                    latency(uid, max(0.0, (now_ms - ts) / 1000))
            return timed(values, timestamps, side)

        setattr(obj, method, timed_sink if latency is not None else timed)
