"""Tumbling, sliding, count and processing-time windows: oracles, lateness, late data, the API."""

from __future__ import annotations

import heapq
import tempfile
from collections import Counter
from pathlib import Path
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

import streamcore as sc
from streamcore.aggregates import Avg, Count, DistinctCount, Max, Min, Sum, TopN, combine
from streamcore.errors import ConfigurationError, KeyEncodingError, TimestampError, UserFunctionError
from streamcore.operators.window_functions import (
    AllWindowFunction,
    ProcessAllWindowFunction,
    ProcessWindowFunction,
    WindowFunction,
)
from streamcore.operators.window_operator import WindowOperator
from streamcore.sinks.base import CollectSink
from streamcore.state.descriptors import ValueStateDescriptor
from streamcore.time import MAX_TIMESTAMP, ManualClock
from streamcore.windowing import (
    ContinuousEventTimeTrigger,
    CountTrigger,
    EventTimeTrigger,
    GlobalWindows,
    PurgingTrigger,
    SlidingEventTimeWindows,
    SlidingProcessingTimeWindows,
    TumblingEventTimeWindows,
    TumblingProcessingTimeWindows,
)
from tests.operators.window_support import (
    LATE,
    ROCKSDB_SETTINGS,
    Harness,
    aligned_oracle,
    run_ops,
    skip_without,
    source_ops,
)


def key_of(e: tuple[Any, int, Any]) -> Any:
    return e[0]


class Collect(ProcessWindowFunction):
    """Emits ``(key, start, end, values in arrival order)``."""

    def process(self, key: Any, context: Any, elements: Any) -> Any:
        w = context.window()
        yield key, w.start, w.end, tuple(e[2] for e in elements)


@st.composite
def event_streams(draw: Any, max_elements: int = 40) -> tuple[list[tuple[str, int, int]], int, int]:
    """Records ``(key, ts, i)`` out of order within ``bound``, a few later than that; a batch size."""
    bound = draw(st.integers(0, 8))
    n = draw(st.integers(0, max_elements))
    t = draw(st.integers(-60, 20))
    records = []
    for i in range(n):
        t += draw(st.integers(0, 4))
        ts = t - draw(st.integers(0, bound))
        if draw(st.integers(0, 9)) == 0:
            ts -= draw(st.integers(1, 30))  # beyond the bound: late unless the lateness covers it
        records.append((draw(st.sampled_from("abc")), ts, i))
    return records, bound, draw(st.integers(1, 8))


@st.composite
def aligned_windows(draw: Any) -> tuple[int, int, int, int]:
    """(size, slide, offset, allowed lateness); slide == size half of the time (tumbling)."""
    size = draw(st.integers(1, 20))
    slide = size if draw(st.booleans()) else draw(st.integers(1, size))
    offset = draw(st.integers(-(slide - 1), slide - 1))
    lateness = draw(st.sampled_from([0, 0, 3, 10]))
    return size, slide, offset, lateness


def _assigner(size: int, slide: int, offset: int) -> Any:
    if size == slide:
        return TumblingEventTimeWindows.of(size, offset)
    return SlidingEventTimeWindows.of(size, slide, offset)


def _harness(
    backend: str, state_dir: Path, fast: bool, spec: tuple[int, int, int, int], **kw: Any
) -> Harness:
    size, slide, offset, lateness = spec

    def make() -> WindowOperator:
        return WindowOperator(
            "w",
            "w",
            key_of,
            _assigner(size, slide, offset),
            allowed_lateness=lateness,
            late_tag=LATE,
            fast_path=fast,
            **kw,
        )

    return Harness(make, backend, state_dir).open()


# -- oracles -------------------------------------------------------------------------------------
def check_aligned(backend: str, fast: bool, stream: Any, spec: Any) -> None:
    records, bound, batch_size = stream
    ops = source_ops(records, batch_size, bound)
    expected, expected_late = aligned_oracle(ops, *spec)
    with tempfile.TemporaryDirectory() as d:
        h = _harness(backend, Path(d), fast, spec, window_fn=Collect())
        run_ops(h, ops)
        got = Counter((k, s, e, vals, ts) for (k, s, e, vals), ts in h.outputs())
        assert got == expected
        assert h.late.values == expected_late
        assert h.op.late_records == len(expected_late)
        h.assert_empty()
        h.close()


@pytest.mark.parametrize("fast", [True, False], ids=["aligned", "general"])
@given(stream=event_streams(), spec=aligned_windows())
def test_aligned_windows_match_oracle(fast: bool, stream: Any, spec: Any) -> None:
    check_aligned("heap", fast, stream, spec)


@pytest.mark.parametrize("fast", [True, False], ids=["aligned", "general"])
@ROCKSDB_SETTINGS
@given(stream=event_streams(), spec=aligned_windows())
def test_aligned_windows_match_oracle_rocksdb(fast: bool, stream: Any, spec: Any) -> None:
    check_aligned("rocksdb", fast, stream, spec)


def _rank(e: tuple[Any, int, int]) -> int:
    return e[2] % 5


AGG = combine(
    n=Count(),
    total=Sum(lambda e: e[2]),
    lo=Min(lambda e: e[2] % 7),
    hi=Max(lambda e: e[2] % 7),
    mean=Avg(lambda e: e[2]),
    top=TopN(3, by=_rank),
    distinct=DistinctCount(_rank),
)


def _agg_row(values: list[tuple[Any, int, int]]) -> tuple[Any, ...]:
    nums = [e[2] for e in values]
    return (
        len(values),
        sum(nums),
        min(x % 7 for x in nums),
        max(x % 7 for x in nums),
        sum(nums) / len(nums),
        tuple(heapq.nlargest(3, values, key=_rank)),
        len({_rank(e) for e in values}),
    )


def check_aggregates(
    backend: str, fast: bool, stream: Any, spec: Any, cache_entries: int | None = None
) -> None:
    """count/sum/min/max/avg, exact distinct == len(set()), TopN == heapq.nlargest, per window."""
    records, bound, batch_size = stream
    ops = source_ops(records, batch_size, bound)
    by_value = {r[2]: r for r in records}
    fired, _ = aligned_oracle(ops, *spec)
    expected = Counter()
    for (k, s, e, vals, ts), n in fired.items():
        expected[(k, s, e, _agg_row([by_value[v] for v in vals]), ts)] += n

    def row(key: Any, w: Any, r: dict[str, Any]) -> Any:
        top = tuple(r["top"])
        return key, w.start, w.end, (r["n"], r["total"], r["lo"], r["hi"], r["mean"], top, r["distinct"])

    with tempfile.TemporaryDirectory() as d:
        h = _harness(
            backend, Path(d), fast, spec, aggregate=AGG, window_fn=_plain(row), cache_entries=cache_entries
        )
        run_ops(h, ops)
        assert Counter((*v, ts) for v, ts in h.outputs()) == expected
        h.assert_empty()
        h.close()


@pytest.mark.parametrize("fast", [True, False], ids=["aligned", "general"])
@given(stream=event_streams(), spec=aligned_windows())
def test_aggregates_per_window_match_oracle(fast: bool, stream: Any, spec: Any) -> None:
    check_aggregates("heap", fast, stream, spec)


@pytest.mark.parametrize(
    "fast, cache_entries",
    [(True, None), (True, 0), (True, 3), (False, None)],
    ids=["aligned-cached", "aligned-write-through", "aligned-evicting", "general"],
)
@ROCKSDB_SETTINGS
@given(stream=event_streams(), spec=aligned_windows())
def test_aggregates_per_window_match_oracle_rocksdb(
    fast: bool, cache_entries: Any, stream: Any, spec: Any
) -> None:
    """On RocksDB the aligned path caches accumulators: all cached, none, and evicting all the time."""
    check_aggregates("rocksdb", fast, stream, spec, cache_entries)


def _plain(fn: Any) -> Any:
    from streamcore.operators.window_functions import plain

    return plain(fn)


def check_job(state_dir: Path, backend: str, stream: Any, spec: Any) -> None:
    """Source watermarks per batch, the late side output and MAX_TIMESTAMP at the end, end to end."""
    skip_without(backend)
    records, bound, batch_size = stream
    size, slide, offset, lateness = spec
    expected, expected_late = aligned_oracle(source_ops(records, batch_size, bound), *spec)
    env = sc.StreamEnvironment(batch_size=batch_size, state_backend=backend, state_dir=state_dir)
    late_tag = sc.OutputTag("late")
    src = env.from_collection(
        records, timestamp=lambda r: r[1], watermarks=sc.WatermarkStrategy.for_bounded_out_of_orderness(bound)
    )
    windowed = (
        src.key_by(key_of)
        .window(_assigner(size, slide, offset))
        .allowed_lateness(lateness)
        .side_output_late_data(late_tag)
        .apply(lambda k, w, els: (k, w.start, w.end, tuple(e[2] for e in els)))
    )
    main, late = CollectSink(), CollectSink()
    windowed.sink_to(main)
    windowed.get_side_output(late_tag).sink_to(late)
    env.execute("windows")
    assert Counter((*v, ts) for v, ts in zip(main.results, main.timestamps, strict=True)) == expected
    assert late.results == expected_late


@given(stream=event_streams(max_elements=30), spec=aligned_windows())
def test_job_through_the_runtime_matches_oracle(stream: Any, spec: Any) -> None:
    check_job(Path("unused"), "heap", stream, spec)


@ROCKSDB_SETTINGS
@given(stream=event_streams(max_elements=30), spec=aligned_windows())
def test_job_through_the_runtime_matches_oracle_rocksdb(
    tmp_path_factory: Any, stream: Any, spec: Any
) -> None:
    check_job(tmp_path_factory.getbasetemp() / "job-state", "rocksdb", stream, spec)


# -- fixed examples ------------------------------------------------------------------------------
def test_negative_timestamps_fall_into_floor_windows() -> None:
    env = sc.StreamEnvironment()
    events = [("k", -1), ("k", -10), ("k", -11), ("k", 0), ("k", 9)]
    out = (
        env.from_collection(events, timestamp=lambda e: e[1])
        .key_by(lambda e: e[0])
        .window(TumblingEventTimeWindows.of(10))
        .apply(lambda k, w, els: (w.start, w.end, sorted(e[1] for e in els)))
        .execute_and_collect()
    )
    assert sorted(out) == [(-20, -10, [-11]), (-10, 0, [-10, -1]), (0, 10, [0, 9])]


def test_results_carry_the_window_max_timestamp_and_fire_on_the_watermark() -> None:
    h = Harness(
        lambda: WindowOperator("w", "w", key_of, TumblingEventTimeWindows.of(10), aggregate=Count())
    ).open()
    h.push([("a", 3, 0), ("a", 12, 1)], [3, 12])
    h.advance(8)
    assert h.outputs() == []
    h.advance(9)
    assert h.outputs() == [(1, 9)]
    h.advance(MAX_TIMESTAMP)
    assert h.outputs() == [(1, 9), (1, 19)]
    h.close()


def test_late_element_within_lateness_fires_an_update_and_later_ones_are_dropped() -> None:
    h = Harness(
        lambda: WindowOperator(
            "w",
            "w",
            key_of,
            TumblingEventTimeWindows.of(10),
            allowed_lateness=5,
            aggregate=Count(),
            late_tag=LATE,
        )
    ).open()
    h.push([("a", 1, 0)], [1])
    h.advance(10)
    assert h.outputs() == [(1, 9)]
    h.push([("a", 2, 1)], [2])  # 9 <= wm 10 < 9 + 5: re-fires with the updated count
    assert h.outputs() == [(1, 9), (2, 9)]
    h.advance(14)  # state cleared at 9 + 5
    h.push([("a", 3, 2)], [3])
    assert h.outputs() == [(1, 9), (2, 9)]
    assert h.late.values == [("a", 3, 2)] and h.op.late_records == 1
    h.close()


@pytest.mark.parametrize("fast", [True, False], ids=["aligned", "general"])
def test_an_element_at_the_watermark_is_late_when_its_window_ends_there(fast: bool) -> None:
    """Late means ``window.max_timestamp() + allowed_lateness <= watermark``: the boundary is late."""
    h = Harness(
        lambda: WindowOperator(
            "w",
            "w",
            key_of,
            TumblingEventTimeWindows.of(10),
            aggregate=Count(),
            late_tag=LATE,
            fast_path=fast,
        )
    ).open()
    h.advance(9)
    h.push([("a", 9, 0), ("a", 10, 1)], [9, 10])
    assert h.late.values == [("a", 9, 0)]
    h.advance(MAX_TIMESTAMP)
    assert h.outputs() == [(1, 19)]
    h.close()


@pytest.mark.parametrize("fast", [True, False], ids=["aligned", "general"])
def test_late_elements_of_several_keys_keep_their_arrival_order(fast: bool) -> None:
    h = Harness(
        lambda: WindowOperator(
            "w",
            "w",
            key_of,
            SlidingEventTimeWindows.of(10, 5),
            aggregate=Count(),
            late_tag=LATE,
            fast_path=fast,
        )
    ).open()
    h.advance(50)
    batch = [("a", 1, 0), ("b", 2, 1), ("a", 48, 2), ("c", 3, 3), ("a", 4, 4), ("b", 5, 5)]
    h.push(batch, [e[1] for e in batch])
    assert h.late.values == [e for e in batch if e[1] != 48]
    h.advance(MAX_TIMESTAMP)
    assert h.outputs() == [(1, 54)]
    h.close()


def test_sliding_element_is_not_late_while_one_of_its_windows_is_open() -> None:
    h = Harness(
        lambda: WindowOperator(
            "w", "w", key_of, SlidingEventTimeWindows.of(10, 5), aggregate=Count(), late_tag=LATE
        )
    ).open()
    h.advance(10)
    h.push([("a", 7, 0)], [7])  # windows [0,10) (gone) and [5,15) (open)
    assert h.late.values == []
    h.advance(MAX_TIMESTAMP)
    assert h.outputs() == [(1, 14)]
    h.close()


def test_reduce_and_window_function_with_state_and_clear() -> None:
    cleared = []

    class Sum3(ProcessWindowFunction):
        def process(self, key: Any, context: Any, elements: Any) -> Any:
            fires = context.window_state().get_state(ValueStateDescriptor("fires", default=0))
            fires.update(fires.value() + 1)
            seen = context.global_state().get_state(ValueStateDescriptor("seen", default=0))
            seen.update(seen.value() + 1)
            yield key, context.window().start, elements[0], fires.value(), seen.value()

        def clear(self, context: Any) -> None:
            cleared.append(context.window().start)
            context.window_state().get_state(ValueStateDescriptor("fires", default=0)).clear()

    env = sc.StreamEnvironment(batch_size=2)
    events = [("a", 1, 2), ("a", 4, 3), ("b", 5, 1), ("a", 15, 4)]
    out = (
        env.from_collection(events, timestamp=lambda e: e[1])
        .key_by(key_of)
        .window(TumblingEventTimeWindows.of(10))
        .reduce(lambda x, y: (x[0], x[1], x[2] + y[2]), Sum3())
        .execute_and_collect()
    )
    assert sorted(out) == [
        ("a", 0, ("a", 1, 5), 1, 1),
        ("a", 10, ("a", 15, 4), 1, 2),
        ("b", 0, ("b", 5, 1), 1, 1),
    ]
    assert sorted(cleared) == [0, 0, 10]


def test_window_function_and_all_window_functions() -> None:
    class Apply(WindowFunction):
        def apply(self, key: Any, window: Any, inputs: Any) -> Any:
            yield key, window.start, len(inputs)

    class AllProcess(ProcessAllWindowFunction):
        def process(self, context: Any, elements: Any) -> Any:
            yield context.window().start, sorted(e[0] for e in elements)

    class AllApply(AllWindowFunction):
        def apply(self, window: Any, inputs: Any) -> Any:
            yield window.start, inputs[0]

    events = [("a", 1), ("b", 2), ("a", 11)]

    def stream() -> Any:
        env = sc.StreamEnvironment()
        return env.from_collection(events, timestamp=lambda e: e[1])

    tumbling = TumblingEventTimeWindows.of(10)
    assert sorted(stream().key_by(key_of).window(tumbling).apply(Apply()).execute_and_collect()) == [
        ("a", 0, 1),
        ("a", 10, 1),
        ("b", 0, 1),
    ]
    assert stream().window_all(tumbling).process(AllProcess()).execute_and_collect() == [
        (0, ["a", "b"]),
        (10, ["a"]),
    ]
    assert stream().window_all(tumbling).aggregate(Count(), AllApply()).execute_and_collect() == [
        (0, 2),
        (10, 1),
    ]
    assert stream().window_all(tumbling).reduce(
        lambda a, b: a, lambda w, r: (w.end, r)
    ).execute_and_collect() == [
        (10, ("a", 1)),
        (20, ("a", 11)),
    ]
    assert stream().window_all(tumbling).apply(lambda w, els: len(els)).execute_and_collect() == [2, 1]


# -- count windows -------------------------------------------------------------------------------
COUNT_WINDOWS = {
    "keys": st.lists(st.sampled_from("xyz"), max_size=40),
    "size": st.integers(1, 5),
    "slide": st.none() | st.integers(1, 5),
    "batch_size": st.integers(1, 7),
}


@given(**COUNT_WINDOWS)
def test_count_windows_match_oracle(keys: list[str], size: int, slide: Any, batch_size: int) -> None:
    check_count_windows("heap", keys, size, slide, batch_size)


@ROCKSDB_SETTINGS
@given(**COUNT_WINDOWS)
def test_count_windows_match_oracle_rocksdb(keys: list[str], size: int, slide: Any, batch_size: int) -> None:
    check_count_windows("rocksdb", keys, size, slide, batch_size)


def check_count_windows(backend: str, keys: list[str], size: int, slide: Any, batch_size: int) -> None:
    expected: Counter[Any] = Counter()
    per_key: dict[str, list[int]] = {}
    for i, k in enumerate(keys):
        seen = per_key.setdefault(k, [])
        seen.append(i)
        if slide is None and len(seen) % size == 0:
            expected[(k, tuple(seen[-size:]))] += 1
        if slide is not None and len(seen) % slide == 0:
            expected[(k, tuple(seen[-size:]))] += 1
    from streamcore.windowing import count_window_assigner

    with tempfile.TemporaryDirectory() as d:
        h = Harness(
            lambda: WindowOperator(
                "w", "w", lambda e: e[0], count_window_assigner(size, slide), window_fn=_plain(_key_and_ids)
            ),
            backend,
            Path(d),
        ).open()
        events = [(k, i) for i, k in enumerate(keys)]
        for j in range(0, len(events), batch_size):
            h.push(events[j : j + batch_size], None)
        h.advance(MAX_TIMESTAMP)  # partial count windows never fire
        assert Counter(h.out.values) == expected
        assert set(h.out.timestamps) <= {MAX_TIMESTAMP}
        h.close()


def _key_and_ids(key: Any, window: Any, elements: Any) -> Any:
    return key, tuple(e[1] for e in elements)


def test_count_window_through_the_api_and_window_all() -> None:
    env = sc.StreamEnvironment(batch_size=3)
    src = env.from_collection(list(range(10)))
    out = src.key_by(lambda x: x % 2).count_window(2).aggregate(Sum()).execute_and_collect()
    assert sorted(out) == [0 + 2, 1 + 3, 4 + 6, 5 + 7]  # 8 and 9 are partial windows
    env = sc.StreamEnvironment(batch_size=4)
    out = (
        env.from_collection(list(range(7)))
        .count_window_all(3, 2)
        .apply(lambda w, els: tuple(els))
        .execute_and_collect()
    )
    assert out == [(0, 1), (1, 2, 3), (3, 4, 5)]


def test_count_trigger_on_time_windows_and_purging() -> None:
    h = Harness(
        lambda: WindowOperator(
            "w",
            "w",
            key_of,
            TumblingEventTimeWindows.of(100),
            trigger=PurgingTrigger.of(CountTrigger.of(2)),
            aggregate=Count(),
        )
    ).open()
    h.push([("a", 1, 0), ("a", 2, 1), ("a", 3, 2)], [1, 2, 3])
    assert h.outputs() == [(2, 99)]
    h.advance(MAX_TIMESTAMP)  # a count trigger does not fire on time: the last element stays unemitted
    assert h.outputs() == [(2, 99)]
    h.close()


# -- processing time and early firings -------------------------------------------------------------
PROCESSING_TIME = {
    "arrivals": st.lists(st.tuples(st.integers(0, 15), st.sampled_from("ab")), max_size=30),
    "size": st.integers(1, 12),
    "slide": st.none() | st.integers(1, 12),
}


@given(**PROCESSING_TIME)
def test_processing_time_windows_fire_on_the_clock(arrivals: Any, size: int, slide: Any) -> None:
    check_processing_time("heap", arrivals, size, slide)


@ROCKSDB_SETTINGS
@given(**PROCESSING_TIME)
def test_processing_time_windows_fire_on_the_clock_rocksdb(arrivals: Any, size: int, slide: Any) -> None:
    check_processing_time("rocksdb", arrivals, size, slide)


def check_processing_time(backend: str, arrivals: Any, size: int, slide: Any) -> None:
    slide = size if slide is None or slide > size else slide
    assigner = (
        TumblingProcessingTimeWindows.of(size)
        if slide == size
        else SlidingProcessingTimeWindows.of(size, slide)
    )
    clock = ManualClock(0)
    with tempfile.TemporaryDirectory() as d:
        h = Harness(
            lambda: WindowOperator("w", "w", key_of, assigner, window_fn=_plain(_window_keys)),
            backend,
            Path(d),
            clock,
        ).open()
        expected: Counter[Any] = Counter()
        contents: dict[Any, list[int]] = {}
        now = 0
        for i, (step, key) in enumerate(arrivals):
            now += step
            clock.set(now)
            for ckey in sorted((c for c in contents if c[1] + c[2] - 1 <= now), key=lambda c: c[1]):
                expected[(ckey[0], ckey[1], tuple(contents.pop(ckey)))] += 1
            h.processing_time(now)
            h.push([(key, None, i)], None)
            start = now - now % slide
            while start > now - size:
                contents.setdefault((key, start, size), []).append(i)
                start -= slide
        clock.set(now + 100)
        h.processing_time(now + 100)
        for ckey, ids in contents.items():
            expected[(ckey[0], ckey[1], tuple(ids))] += 1
        assert Counter(h.out.values) == expected
        assert all(ts == v[1] + size - 1 for v, ts in h.outputs())
        h.close()


def _window_keys(key: Any, window: Any, elements: Any) -> Any:
    return key, window.start, tuple(e[2] for e in elements)


def test_continuous_event_time_trigger_fires_early_then_at_the_end() -> None:
    h = Harness(
        lambda: WindowOperator(
            "w",
            "w",
            key_of,
            TumblingEventTimeWindows.of(100),
            trigger=ContinuousEventTimeTrigger.of(30),
            aggregate=Count(),
        )
    ).open()
    h.push([("a", 5, 0), ("a", 10, 1)], [5, 10])
    h.advance(29)
    assert h.outputs() == []
    h.advance(30)
    assert h.outputs() == [(2, 99)]  # early results carry the window's max timestamp too
    h.push([("a", 40, 2)], [40])
    h.advance(65)
    assert h.outputs() == [(2, 99), (3, 99)]
    h.advance(200)  # early firing at 90, the final one at 99
    assert h.outputs() == [(2, 99), (3, 99), (3, 99), (3, 99)]
    assert h.op.timers.num_event_timers() == 0
    h.close()


def test_explicit_event_time_trigger_takes_the_aligned_path() -> None:
    op = WindowOperator(
        "w",
        "w",
        key_of,
        TumblingEventTimeWindows.of(10),
        trigger=EventTimeTrigger.create(),
        aggregate=Count(),
    )
    assert op.aligned


# -- errors and configuration ---------------------------------------------------------------------
def test_configuration_errors_say_what_to_do() -> None:
    env = sc.StreamEnvironment()
    keyed = env.from_collection([1]).key_by(lambda x: x)
    with pytest.raises(ConfigurationError, match="window assigner"):
        keyed.window("tumbling")
    with pytest.raises(ConfigurationError, match="offset"):
        TumblingEventTimeWindows.of(10, 10)
    with pytest.raises(ConfigurationError, match="size"):
        SlidingEventTimeWindows.of(0, 1)
    with pytest.raises(ConfigurationError, match="event-time windows only"):
        keyed.window(TumblingProcessingTimeWindows.of(10)).allowed_lateness(5)
    with pytest.raises(ConfigurationError, match="AggregateFunction"):
        keyed.window(TumblingEventTimeWindows.of(10)).aggregate(lambda a, b: a)
    with pytest.raises(ConfigurationError, match="ProcessWindowFunction"):
        keyed.window(TumblingEventTimeWindows.of(10)).process(lambda k, w, e: e)
    with pytest.raises(ConfigurationError, match="count_window"):
        keyed.count_window(0)
    with pytest.raises(ConfigurationError, match="cannot merge"):
        from streamcore.windowing import EventTimeSessionWindows, Trigger, TriggerResult

        class NoMerge(Trigger):
            def on_element(self, element: Any, timestamp: Any, window: Any, ctx: Any) -> Any:
                return TriggerResult.CONTINUE

        keyed.window(EventTimeSessionWindows.with_gap(5)).trigger(NoMerge())


def test_event_time_windows_without_timestamps_raise() -> None:
    env = sc.StreamEnvironment()
    job = (
        env.from_collection([1, 2])
        .key_by(lambda x: x)
        .window(TumblingEventTimeWindows.of(10))
        .aggregate(Count())
    )
    with pytest.raises(TimestampError, match="timestamp"):
        job.execute_and_collect()


def test_a_raising_aggregate_names_the_operator() -> None:
    env = sc.StreamEnvironment()
    job = (
        env.from_collection([1, 2], timestamp=lambda x: x)
        .key_by(lambda x: x)
        .window(TumblingEventTimeWindows.of(10))
        .aggregate(Sum(lambda x: 1 / 0))
    )
    with pytest.raises(UserFunctionError, match="window"):
        job.execute_and_collect()


def test_keys_without_an_encoding_are_rejected() -> None:
    h = Harness(
        lambda: WindowOperator("w", "w", lambda e: e[0], TumblingEventTimeWindows.of(10), aggregate=Count())
    ).open()
    with pytest.raises(KeyEncodingError, match="operator 'w'"):
        h.push([(object(), 1)], [1])
    h.close()


def test_global_windows_need_a_trigger() -> None:
    h = Harness(lambda: WindowOperator("w", "w", key_of, GlobalWindows.create(), aggregate=Count())).open()
    h.push([("a", 1, 0)] * 5, None)
    h.advance(MAX_TIMESTAMP)
    assert h.outputs() == []
    h.close()


# -- the write-back cache in front of RocksDB ----------------------------------------------------
@pytest.mark.parametrize("lateness", [0, 5])
@pytest.mark.parametrize("snapshot", [True, False], ids=["snapshot", "no-snapshot"])
@pytest.mark.parametrize("cache_entries", [0, 1, 2, 100])
def test_accumulator_cache_writes_back_reloads_and_leaves_no_rows(
    tmp_path: Path, cache_entries: int, snapshot: bool, lateness: int
) -> None:
    h = Harness(
        lambda: WindowOperator(
            "w",
            "w",
            key_of,
            TumblingEventTimeWindows.of(10),
            aggregate=Sum(lambda e: e[2]),
            allowed_lateness=lateness,
            cache_entries=cache_entries,
        ),
        "rocksdb",
        tmp_path,
    ).open()
    h.push([("a", 1, 1), ("b", 1, 10), ("c", 1, 100)], [1, 1, 1])  # evicts past the cache size
    h.push([("a", 2, 2), ("b", 2, 20)], [2, 2])  # reloads evicted accumulators
    if snapshot:
        h.snapshot()  # writes every changed one back
    h.push([("c", 3, 200), ("a", 12, 3)], [3, 12])
    h.advance(9)
    assert sorted(h.out.values) == [3, 30, 300]
    h.push([("a", 4, 4)], [4])  # late: within the lateness an update, else dropped
    h.advance(MAX_TIMESTAMP)
    assert sorted(h.out.values) == ([3, 3, 7, 30, 300] if lateness else [3, 3, 30, 300])
    h.assert_empty()
    h.close()


def test_fired_windows_leave_no_empty_namespace_tables_on_heap(monkeypatch) -> None:
    """Housekeeping between batches drops the empty per-window tables (no TTL needed for that)."""
    from streamcore.state.heap import HeapKeyedStateBackend

    left: list[dict[str, int]] = []
    close = HeapKeyedStateBackend.close

    def counting_close(self: Any) -> None:
        left.append({n: len(t) for n, (_, t) in self._tables.items()})
        close(self)

    monkeypatch.setattr(HeapKeyedStateBackend, "close", counting_close)
    env = sc.StreamEnvironment(batch_size=10)
    src = env.from_collection(
        list(range(20_000)),
        timestamp=lambda v: v * 10,
        watermarks=sc.WatermarkStrategy.for_bounded_out_of_orderness(0),
    )
    src.key_by(lambda v: v % 3).window(sc.TumblingEventTimeWindows.of(50)).reduce(lambda a, b: a + b).sink_to(
        lambda r: None
    )
    env.execute("namespaces")
    # 4,000 windows fired; a cleanup every 16 batches of 10 records leaves at most a few behind.
    assert left and all(n < 100 for n in left[0].values()), left
