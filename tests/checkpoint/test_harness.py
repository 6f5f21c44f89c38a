"""Operator harness: snapshot -> new operator -> restore -> continue equals an uninterrupted run.

The keyed process operator runs with value, list and map state and event-time timers,
on both backends, restored from canonical images (savepoints) and from native ones
(RocksDB: the database's own checkpoint files).
"""

from __future__ import annotations

import shutil
from pathlib import Path
from typing import Any

import pytest

from streamcore.operators.base import OperatorRuntime, SnapshotContext
from streamcore.operators.process import KeyedProcessOperator
from streamcore.sinks.base import CollectSink, SinkOperator
from streamcore.state.factory import StateBackendFactory
from streamcore.time import MAX_TIMESTAMP, ManualClock
from tests.checkpoint.jobs import CountFn, TimerFn


class Harness:
    """One keyed process operator wired to a collecting sink, fed by hand."""

    def __init__(self, backend: str, state_dir: Path, fn: Any, *, fresh: bool = True) -> None:
        self.clock = ManualClock(0)
        self.factory = StateBackendFactory(backend, state_dir, self.clock)
        self.factory.open(fresh=fresh)
        runtime = OperatorRuntime(self.clock, 128, self.factory, "harness")
        self.op = KeyedProcessOperator("p", "p", fn, lambda v: v % 5)
        self.op.setup(runtime)
        self.op.add_input_edge()
        self.out = CollectSink()
        self.sink = SinkOperator("out", "out", self.out)
        self.op.output.connect(self.sink, 0, self.sink.add_input_edge())

    def open(self, image: Any = None) -> Harness:
        if image is not None:
            self.op.restore_state(image)
        self.op.open()
        return self

    def push(self, values: list[int], watermark: int | None = None) -> None:
        self.op.process_batch(values, list(values), 0)
        if watermark is not None:
            self.op.receive_watermark(0, watermark)

    def close(self) -> None:
        self.op.close()
        self.factory.close()


BATCHES = [
    ([3, 1, 8, 4], 0),
    ([9, 12, 7], 5),
    ([15, 11, 20, 18], 10),
    ([25, 22, 30], 20),
    ([33, 41], 30),
    ([50], 45),
]


def _feed(h: Harness, batches: list[tuple[list[int], int]]) -> None:
    for values, wm in batches:
        h.push(values, wm)


@pytest.mark.parametrize("fn_type", [CountFn, TimerFn])
@pytest.mark.parametrize(
    ("backend", "mode"), [("heap", "canonical"), ("rocksdb", "canonical"), ("rocksdb", "native")]
)
@pytest.mark.parametrize("cut", [0, 2, 4, 6])
def test_snapshot_restore_continue_equals_uninterrupted(
    tmp_path: Path, backend: str, mode: str, fn_type: type, cut: int
) -> None:
    whole = Harness(backend, tmp_path / "whole", fn_type()).open()
    _feed(whole, BATCHES)
    whole.op.receive_watermark(0, MAX_TIMESTAMP)
    expected = list(whole.out.results)
    whole.close()

    first = Harness(backend, tmp_path / "first", fn_type()).open()
    _feed(first, BATCHES[:cut])
    image = first.op.snapshot_state(SnapshotContext(1, canonical=mode == "canonical"))
    before = list(first.out.results)
    state_dir = tmp_path / "second"
    if mode == "native":
        first.factory.database.create_checkpoint(tmp_path / "native")
        (state_dir).mkdir()
        shutil.copytree(tmp_path / "native", state_dir / "db")
    first.close()

    second = Harness(backend, state_dir, fn_type(), fresh=mode != "native").open(image)
    _feed(second, BATCHES[cut:])
    second.op.receive_watermark(0, MAX_TIMESTAMP)
    assert before + second.out.results == expected
    second.close()


@pytest.mark.parametrize(("source", "target"), [("heap", "rocksdb"), ("rocksdb", "heap")])
def test_canonical_image_moves_between_backends(tmp_path: Path, source: str, target: str) -> None:
    whole = Harness(source, tmp_path / "whole", CountFn()).open()
    _feed(whole, BATCHES)
    expected = list(whole.out.results)
    whole.close()
    first = Harness(source, tmp_path / "a", CountFn()).open()
    _feed(first, BATCHES[:3])
    image = first.op.snapshot_state(SnapshotContext(1, canonical=True))
    before = list(first.out.results)
    first.close()
    second = Harness(target, tmp_path / "b", CountFn()).open(image)
    _feed(second, BATCHES[3:])
    assert before + second.out.results == expected
    second.close()
