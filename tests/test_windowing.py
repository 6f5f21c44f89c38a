"""Window assigners, session merging and triggers (configuration objects only)."""

from __future__ import annotations

from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from streamcore.errors import ConfigurationError
from streamcore.time import MAX_TIMESTAMP
from streamcore.windowing import (
    CountEvictor,
    CountTrigger,
    EventTimeSessionWindows,
    EventTimeTrigger,
    GlobalWindow,
    GlobalWindows,
    NeverTrigger,
    ProcessingTimeTrigger,
    PurgingTrigger,
    SlidingEventTimeWindows,
    SlidingProcessingTimeWindows,
    TimeWindow,
    TriggerResult,
    TumblingEventTimeWindows,
    merge_time_windows,
)


@st.composite
def sliding(draw: Any) -> tuple[int, int, int]:
    size = draw(st.integers(1, 50))
    slide = draw(st.integers(1, 50))
    return size, slide, draw(st.integers(-(slide - 1), slide - 1))


@given(spec=sliding(), ts=st.integers(-(10**12), 10**12))
def test_sliding_windows_are_exactly_those_containing_the_timestamp(
    spec: tuple[int, int, int], ts: int
) -> None:
    size, slide, offset = spec
    windows = SlidingEventTimeWindows.of(size, slide, offset).assign_windows(None, ts, None)
    assert all(w.start <= ts < w.end and w.end - w.start == size for w in windows)
    assert all((w.start - offset) % slide == 0 for w in windows)
    # Every aligned start in (ts - size, ts] appears once, latest first.
    expected = [s for s in range(ts - size + 1, ts + 1) if (s - offset) % slide == 0]
    assert [w.start for w in windows] == sorted(expected, reverse=True)


@given(size=st.integers(1, 10**6), ts=st.integers(-(10**15), 10**15))
def test_tumbling_start_is_a_floor_also_for_negative_timestamps(size: int, ts: int) -> None:
    (w,) = TumblingEventTimeWindows.of(size).assign_windows(None, ts, None)
    assert w.start == (ts // size) * size and w.max_timestamp() == w.start + size - 1


@given(st.lists(st.tuples(st.integers(-50, 50), st.integers(1, 20)), max_size=12))
def test_merging_groups_exactly_the_connected_windows(spans: list[tuple[int, int]]) -> None:
    windows = [TimeWindow(s, s + n) for s, n in spans]
    merged = merge_time_windows(windows)
    for cover, members in merged:
        assert len(members) >= 2
        assert cover == TimeWindow(min(m.start for m in members), max(m.end for m in members))
    # The covers of all groups (and singletons) are pairwise apart.
    grouped = [m for _, ms in merged for m in ms]
    singles = list(windows)
    for m in grouped:
        singles.remove(m)
    covers = [c for c, _ in merged] + singles
    for i, a in enumerate(covers):
        for b in covers[i + 1 :]:
            assert not a.intersects(b)


def test_windows_and_results() -> None:
    assert TimeWindow(0, 10) == TimeWindow(0, 10) and hash(TimeWindow(0, 10)) == hash(TimeWindow(0, 10))
    assert TimeWindow(0, 10) < TimeWindow(0, 11) < TimeWindow(1, 2)
    assert TimeWindow(3, 7).namespace() == (3, 7)
    assert GlobalWindow.get() is GlobalWindow() and GlobalWindow().max_timestamp() == MAX_TIMESTAMP
    assert GlobalWindow().namespace() is None
    assert TriggerResult.FIRE_AND_PURGE.is_fire() and TriggerResult.FIRE_AND_PURGE.is_purge()
    assert not TriggerResult.CONTINUE.is_fire() and TriggerResult.PURGE.is_purge()
    assert repr(SlidingEventTimeWindows.of(10, 5, 2)) == "SlidingEventTimeWindows.of(10, 5, offset=2)"
    assert repr(PurgingTrigger.of(CountTrigger.of(3))) == "PurgingTrigger.of(CountTrigger.of(3))"
    assert CountEvictor.of(2).evict_before([1, 2, 3], None) == [2, 3]


def test_defaults_of_assigners() -> None:
    assert isinstance(TumblingEventTimeWindows.of(5).get_default_trigger(), EventTimeTrigger)
    assert isinstance(SlidingProcessingTimeWindows.of(5, 1).get_default_trigger(), ProcessingTimeTrigger)
    assert isinstance(GlobalWindows.create().get_default_trigger(), NeverTrigger)
    assert not GlobalWindows.create().is_event_time()
    assert EventTimeSessionWindows.with_gap(5).assign_windows(None, 3, None) == [TimeWindow(3, 8)]


def test_processing_time_assigners_read_the_clock() -> None:
    class Ctx:
        def get_current_processing_time(self) -> int:
            return 25

    assert SlidingProcessingTimeWindows.of(10, 5).assign_windows("x", None, Ctx()) == [
        TimeWindow(25, 35),
        TimeWindow(20, 30),
    ]


def test_invalid_configuration() -> None:
    for bad in (lambda: TumblingEventTimeWindows.of(-1), lambda: SlidingEventTimeWindows.of(10, 5, 5)):
        with pytest.raises(ConfigurationError):
            bad()
    with pytest.raises(ConfigurationError, match="gap"):
        EventTimeSessionWindows.with_gap(0)
    with pytest.raises(ConfigurationError, match="count"):
        CountTrigger.of(0)
    with pytest.raises(ConfigurationError, match="Trigger"):
        PurgingTrigger.of("fire")  # type: ignore[arg-type]
    with pytest.raises(ConfigurationError, match="timestamps"):
        TumblingEventTimeWindows.of(10).assign_windows("x", None, None)
    with pytest.raises(ConfigurationError, match="gap function"):
        EventTimeSessionWindows.with_dynamic_gap(lambda e: 0).assign_windows("x", 1, None)
