"""The scheduler reads the input furthest behind in event time, without starving or waiting."""

from __future__ import annotations

from typing import Any

import pytest

import streamcore as sc
from streamcore.errors import ConfigurationError
from streamcore.sources.base import Source, SplitReader


def _ts(record: tuple[str, int]) -> int:
    return record[1]


def _arrivals(
    batch_size: int, fast_every: int, slow_every: int, n: int, scheduling: str = "event-time"
) -> list[tuple[str, int]]:
    env = sc.StreamEnvironment(batch_size=batch_size).set_split_scheduling(scheduling)
    wm = sc.WatermarkStrategy.for_monotonous_timestamps()
    fast = env.from_collection([("fast", i * fast_every) for i in range(n)], timestamp=_ts, watermarks=wm)
    slow = env.from_collection([("slow", i * slow_every) for i in range(n)], timestamp=_ts, watermarks=wm)
    return slow.union(fast).execute_and_collect()


def test_inputs_of_different_speed_arrive_close_to_event_time_order():
    # "slow" covers 5x the event time per record: polled in turn, it would run far ahead.
    out = _arrivals(batch_size=10, fast_every=1, slow_every=5, n=2000)
    assert sorted(out) == sorted([("fast", i) for i in range(2000)] + [("slow", i * 5) for i in range(2000)])
    # one batch of the sparser input spans 50 ms of event time; round-robin gives ~8000.
    assert _worst_regress(out) <= 60


def test_round_robin_reads_every_input_in_turn_whatever_its_event_time():
    out = _arrivals(batch_size=10, fast_every=1, slow_every=5, n=2000, scheduling="round-robin")
    assert [name for name, _ in out[:40]] == ["fast"] * 10 + ["slow"] * 10 + ["fast"] * 10 + ["slow"] * 10
    assert _worst_regress(out) > 5_000


def test_an_unknown_scheduling_mode_is_refused_by_name():
    with pytest.raises(ConfigurationError, match="round-robin"):
        sc.StreamEnvironment().set_split_scheduling("fastest-first")


def _worst_regress(out: list[tuple[str, int]]) -> int:
    seen_max = 0
    worst = 0
    for _, ts in out:
        worst = max(worst, seen_max - ts)
        seen_max = max(seen_max, ts)
    return worst


class _Trickle(SplitReader):
    """A split with nothing to read for its first ``empty_polls`` polls (an idle partition)."""

    split_id = "trickle-0"

    def __init__(self, records: list[tuple[str, int]], empty_polls: int) -> None:
        self.records = records
        self.empty_polls = empty_polls
        self.polls = 0

    def poll(self, max_records: int) -> tuple[list[Any], list[int] | None]:
        self.polls += 1
        if self.polls <= self.empty_polls:
            return [], None
        out, self.records = self.records[:max_records], self.records[max_records:]
        self.finished = not self.records
        return out, None

    def position(self) -> int:
        return 0

    def seek(self, position: Any) -> None:
        raise NotImplementedError


class _TrickleSource(Source):
    def __init__(self, reader: _Trickle) -> None:
        self.reader = reader

    def create_readers(self) -> list[SplitReader]:
        return [self.reader]


def test_a_split_with_nothing_to_read_does_not_block_the_others():
    env = sc.StreamEnvironment(batch_size=5)
    wm = sc.WatermarkStrategy.for_monotonous_timestamps()
    trickle = _Trickle([("trickle", 0)], empty_polls=500)
    # the trickle's watermark stays lowest, so it is tried first every round: never waited on
    idle = env.from_source(_TrickleSource(trickle), timestamp=_ts, watermarks=wm, name="trickle")
    busy = env.from_collection([("busy", i) for i in range(100)], timestamp=_ts, watermarks=wm)
    out = idle.union(busy).execute_and_collect()
    assert out[:100] == [("busy", i) for i in range(100)]
    assert out[100:] == [("trickle", 0)]
    assert trickle.polls > 500


def test_inputs_without_watermarks_are_read_in_turn():
    env = sc.StreamEnvironment(batch_size=1)
    a = env.from_collection(["a1", "a2", "a3"])
    b = env.from_collection(["b1", "b2", "b3"])
    assert a.union(b).execute_and_collect() == ["a1", "b1", "a2", "b2", "a3", "b3"]
