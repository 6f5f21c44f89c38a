"""Split discovery: sources whose splits grow while the job runs (Kafka partitions added to a topic)."""

from __future__ import annotations

import time
from typing import Any

import pytest

import streamcore as sc
from streamcore.errors import ConfigurationError
from streamcore.sources.base import Source, SplitReader
from streamcore.time import WatermarkStrategy, minutes


class _ListReader(SplitReader):
    def __init__(self, split_id: str, timestamps: list[int]) -> None:
        self.split_id = split_id
        self.items = timestamps
        self.pos = 0
        self.finished = not timestamps

    def poll(self, max_records: int) -> tuple[list[Any], list[int] | None]:
        out = [(self.split_id, ts) for ts in self.items[self.pos : self.pos + max_records]]
        self.pos += len(out)
        self.finished = self.pos >= len(self.items)
        return out, None

    def position(self) -> int:
        return self.pos

    def seek(self, position: Any) -> None:
        self.pos = position
        self.finished = position >= len(self.items)


class GrowingSource(Source):
    """Split ``a`` from the start; ``b`` (and then ``c``) appear at the first discoveries."""

    bounded = False

    def __init__(self, later: list[str], interval_ms: int = 5, duplicate: bool = False) -> None:
        self.discovery_interval_ms = interval_ms
        self.later = later
        self.duplicate = duplicate
        self.calls = 0

    def create_readers(self) -> list[SplitReader]:
        self.pending = list(self.later)
        return [_ListReader("a", list(range(0, 3_000, 10)))]

    def discover_readers(self, readers: list[SplitReader]) -> list[SplitReader]:
        self.calls += 1
        if self.duplicate:
            return [_ListReader("a", [1])]
        if not self.pending:
            return []
        name = self.pending.pop(0)
        return [_ListReader(name, list(range(5, 1_000, 10)))]


def _run_until(env: sc.StreamEnvironment, sink: list[Any], n: int) -> Any:
    handle = env.execute_async("discovery")
    deadline = time.monotonic() + 20
    while len(sink) < n and time.monotonic() < deadline:
        time.sleep(0.01)
    return handle.stop(timeout=20)


@pytest.mark.parametrize("coordinated", [False, True])
def test_discovered_splits_are_read_exactly_once(coordinated: bool) -> None:
    env = sc.StreamEnvironment(batch_size=7)
    wm = WatermarkStrategy.for_bounded_out_of_orderness(0)
    if coordinated:
        env.set_source_rate_coordination(enabled=True)
        wm = wm.with_watermark_alignment("g", minutes(1), 10)
    src = GrowingSource(["b", "c"])
    out: list[Any] = []
    env.from_source(src, timestamp=lambda r: r[1], watermarks=wm, name="growing").uid("growing").sink_to(
        out.append
    )
    result = _run_until(env, out, 300 + 2 * 100)
    expected = [("a", t) for t in range(0, 3_000, 10)] + [(s, t) for s in "bc" for t in range(5, 1_000, 10)]
    assert sorted(out) == sorted(expected)
    assert set(result.metrics["growing"]["splits"]) == {"a", "b", "c"}
    if coordinated:
        assert result.metrics["rate_coordinator"]["groups"]["g"]["splits"] == 3


def test_a_discovered_split_holds_back_the_source_watermark() -> None:
    """A new split starts without a watermark: the source's watermark waits for it, as for any split."""
    from streamcore.runtime.source_task import SourceTask
    from streamcore.time import ManualClock

    clock = ManualClock(0)
    task = SourceTask(
        "s",
        "s",
        GrowingSource(["b"], interval_ms=100),
        WatermarkStrategy.for_bounded_out_of_orderness(0),
        lambda r: r[1],
        clock,
    )
    task.open()
    task.poll(task.splits[0], 50)
    before = task.current_watermark
    assert before == 490 - 1
    assert task.discover(50) == []  # not due yet
    assert len(task.discover(100)) == 1 and [s.split_id for s in task.splits] == ["a", "b"]
    task.poll(task.splits[0], 50)
    assert task.current_watermark == before  # held: b has no watermark yet
    task.poll(task.splits[1], 10)
    assert task.current_watermark == before  # b's 95 is behind: the source watermark never goes back
    assert task.splits[1].watermark == 94
    assert not task.all_finished()


def test_discovering_a_known_split_id_is_a_clear_error() -> None:
    env = sc.StreamEnvironment()
    env.from_source(GrowingSource([], duplicate=True), timestamp=lambda r: r[1], name="dup").sink_to(
        lambda r: None
    )
    with pytest.raises(ConfigurationError, match="repeat known ids"):
        env.execute("dup")


def test_bounded_sources_do_not_discover() -> None:
    src = GrowingSource(["b"])
    src.bounded = True
    out: list[Any] = []
    env = sc.StreamEnvironment()
    env.from_source(src, timestamp=lambda r: r[1], name="bounded").sink_to(out.append)
    env.execute("bounded")
    assert src.calls == 0 and len(out) == 300
