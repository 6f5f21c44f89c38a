"""Test helpers for users and for streamcore's own tests: drive one operator by hand.

:class:`OperatorHarness` wires a single operator to a state backend, a manual clock
and capturing outputs, so a test can push elements and watermarks, advance
processing time, read what came out, inspect state, and snapshot -> restore into a
new harness (Flink's operator test harnesses, the same idea).

>>> from streamcore.operators.basic import MapOperator
>>> h = OperatorHarness(MapOperator("double", "double", lambda x: 2 * x))
>>> h.process_elements([1, 2], [10, 20])
>>> h.values()
[2, 4]
"""

from __future__ import annotations

import tempfile
from pathlib import Path
from typing import Any

from streamcore.operators.base import OperatorRuntime, SnapshotContext, StreamOperator
from streamcore.state.factory import StateBackendFactory
from streamcore.time import MAX_TIMESTAMP, MIN_TIMESTAMP, ManualClock

__all__ = ["CapturingOperator", "OperatorHarness"]


class CapturingOperator(StreamOperator):
    """Records every batch and watermark it receives."""

    def __init__(self, name: str = "capture") -> None:
        super().__init__(name, name)
        self.records: list[tuple[Any, int | None]] = []
        self.watermarks: list[int] = []
        self.add_input_edge()

    def process_batch(self, values: list[Any], timestamps: list[int] | None, side: int) -> None:
        """Record the batch."""
        tss = timestamps if timestamps is not None else [None] * len(values)
        self.records.extend(zip(values, tss, strict=True))

    def receive_watermark(self, edge: int, watermark: int) -> None:
        """Record the watermark."""
        self.watermarks.append(watermark)

    def receive_idle(self, edge: int, idle: bool) -> None:
        """Ignore idleness."""


class OperatorHarness:
    """Runs one operator by hand.

    Args:
        operator: a freshly constructed operator (not yet set up).
        num_inputs: 1, or 2 for two-input operators (joins, co-process).
        state_backend: ``"heap"`` or ``"rocksdb"`` (a temporary directory unless ``state_dir``).
        side_outputs: names of side-output tags to capture.
        clock: the processing-time clock (a fresh ``ManualClock(0)`` by default).
    """

    def __init__(
        self,
        operator: StreamOperator,
        *,
        num_inputs: int = 1,
        state_backend: str = "heap",
        state_dir: str | Path | None = None,
        side_outputs: tuple[str, ...] = (),
        clock: ManualClock | None = None,
        max_parallelism: int = 128,
        restore_image: Any = None,
    ) -> None:
        self.clock = clock or ManualClock(0)
        self._tmp = None
        if state_backend == "rocksdb" and state_dir is None:
            self._tmp = tempfile.TemporaryDirectory(prefix="streamcore-harness-")
            state_dir = self._tmp.name
        self.factory = StateBackendFactory(state_backend, state_dir, self.clock)
        self.factory.open(fresh=True)
        self.operator = operator
        operator.setup(OperatorRuntime(self.clock, max_parallelism, self.factory, "harness"))
        self.main = CapturingOperator("main")
        operator.output.connect(self.main, 0, 0)
        self.sides: dict[str, CapturingOperator] = {}
        for tag in side_outputs:
            cap = CapturingOperator(tag)
            operator.output.connect(cap, 0, 0, tag)
            self.sides[tag] = cap
        self.edges = [operator.add_input_edge() for _ in range(num_inputs)]
        if restore_image is not None:
            operator.restore_state(restore_image)
        operator.open()
        self._closed = False

    # -- input -----------------------------------------------------------------------------
    def process_element(self, value: Any, timestamp: int | None = None, side: int = 0) -> None:
        """Push one element on input ``side``."""
        self.process_elements([value], None if timestamp is None else [timestamp], side)

    def process_elements(self, values: list[Any], timestamps: list[int] | None = None, side: int = 0) -> None:
        """Push a batch on input ``side``."""
        self.operator.process_batch(list(values), None if timestamps is None else list(timestamps), side)

    def process_watermark(self, watermark: int, side: int | None = None) -> None:
        """Advance the watermark of one input (``None``: every input)."""
        edges = self.edges if side is None else [self.edges[side]]
        for e in edges:
            self.operator.receive_watermark(e, watermark)

    def set_processing_time(self, now: int) -> None:
        """Move the manual clock to ``now`` and fire due processing-time timers."""
        self.clock.set(now)
        self.operator.on_processing_time(now)

    def end_input(self) -> None:
        """Send the final watermark and call ``finish``."""
        self.process_watermark(MAX_TIMESTAMP)
        self.operator.finish()

    # -- output ------------------------------------------------------------------------------
    def output(self) -> list[tuple[Any, int | None]]:
        """``(value, timestamp)`` of every main output so far."""
        return list(self.main.records)

    def values(self) -> list[Any]:
        """Values of every main output so far."""
        return [v for v, _ in self.main.records]

    def side_output(self, tag: str) -> list[tuple[Any, int | None]]:
        """``(value, timestamp)`` of side output ``tag`` (must be listed in ``side_outputs``)."""
        return list(self.sides[tag].records)

    def watermarks(self) -> list[int]:
        """Watermarks the operator forwarded."""
        return list(self.main.watermarks)

    def clear_output(self) -> None:
        """Forget what was captured so far."""
        self.main.records.clear()
        for cap in self.sides.values():
            cap.records.clear()

    @property
    def current_watermark(self) -> int:
        """The operator's combined input watermark."""
        return (
            self.operator.current_watermark if self.operator.current_watermark is not None else MIN_TIMESTAMP
        )

    # -- state ---------------------------------------------------------------------------------
    def snapshot(self, canonical: bool = True, checkpoint_id: int = 1) -> Any:
        """The operator's snapshot (canonical by default: restorable into either backend).

        As in Flink's harnesses, watermarks are not part of it: push them again after a restore.
        """
        return self.operator.snapshot_state(SnapshotContext(checkpoint_id, canonical))

    def close(self) -> None:
        """Close the operator and the backend."""
        if self._closed:
            return
        self._closed = True
        try:
            self.operator.close()
        finally:
            self.factory.close()
            if self._tmp is not None:
                self._tmp.cleanup()

    def __enter__(self) -> OperatorHarness:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
