"""Sliding windows by slices (:mod:`streamcore.operators.window_sliced`) against the aligned oracle.

Every case checks the sliced operator against the brute-force oracle of
``window_support`` (each element in every window, in arrival order) on shuffled input
within the watermark bound plus a few later elements, with and without allowed
lateness, on both backends, across a snapshot and restore at an arbitrary point, and
against the per-window path (``slicing=False``). Values are ints, so sums are exact.
"""

from __future__ import annotations

import tempfile
from collections import Counter
from pathlib import Path
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from streamcore import serde
from streamcore.aggregates import (
    AggregateFunction,
    Avg,
    BloomDistinct,
    Count,
    DistinctCount,
    HyperLogLog,
    Max,
    Min,
    Sum,
    TopN,
    combine,
)
from streamcore.errors import StateError
from streamcore.operators.window_functions import ProcessWindowFunction, plain
from streamcore.operators.window_operator import WindowOperator
from streamcore.operators.window_sliced import SLICES_STATE, SlicedWindows
from streamcore.windowing import CountEvictor, SlidingEventTimeWindows, TumblingEventTimeWindows
from tests.operators.test_windows import event_streams
from tests.operators.window_support import (
    LATE,
    ROCKSDB_SETTINGS,
    Harness,
    aligned_oracle,
    check_against_oracle,
    run_ops,
    run_with_restore,
    source_ops,
)

COLUMNS = combine(
    n=Count(),
    total=Sum(lambda e: e[2]),
    lo=Min(lambda e: e[2] % 7),
    hi=Max(lambda e: e[2] % 7),
    mean=Avg(lambda e: e[2]),
)
#: Members the column merge does not know: merged through ``merge`` of each member.
MIXED = combine(
    n=Count(),
    total=Sum(lambda e: e[2]),
    distinct=DistinctCount(lambda e: e[2] % 5),
    uv=HyperLogLog(lambda e: e[2], precision=8),
)
#: Running accumulators: slices leaving a window are subtracted (ints), or merged afresh (floats).
INVERTIBLE = combine(n=Count(), total=Sum(lambda e: e[2]), mean=Avg(lambda e: e[2]))
HALVES = combine(total=Sum(lambda e: e[2] * 0.5 if e[2] % 3 else e[2]), mean=Avg(lambda e: e[2]))
AGGS = {"columns": COLUMNS, "mixed": MIXED, "count": Count(), "invertible": INVERTIBLE, "halves": HALVES}


def _expected_row(kind: str, values: list[int]) -> Any:
    if kind == "count":
        return len(values)
    if kind == "invertible":
        return len(values), sum(values), sum(values) / len(values)
    if kind == "halves":  # halves of small ints: float sums are exact in any order
        return sum(v * 0.5 if v % 3 else v for v in values), sum(values) / len(values)
    if kind == "columns":
        return (
            len(values),
            sum(values),
            min(v % 7 for v in values),
            max(v % 7 for v in values),
            sum(values) / len(values),
        )
    return len(values), sum(values), len({v % 5 for v in values}), _hll(values)


def _hll(values: list[int]) -> int:
    """The HyperLogLog estimate of ``values``: it depends on the set, not on the order."""
    f = HyperLogLog(precision=8)
    return f.get_result(f.add_batch(values, f.create_accumulator()))


def _row(kind: str, r: Any) -> Any:
    if kind == "count":
        return r
    if kind == "invertible":
        return r["n"], r["total"], r["mean"]
    if kind == "halves":
        return r["total"], r["mean"]
    if kind == "columns":
        return r["n"], r["total"], r["lo"], r["hi"], r["mean"]
    return r["n"], r["total"], r["distinct"], r["uv"]


@st.composite
def sliding_windows(draw: Any) -> tuple[int, int, int, int]:
    """(size, slide, offset, allowed lateness) with slide < size, not always dividing it."""
    size = draw(st.integers(2, 20))
    slide = draw(st.integers(1, size - 1))
    offset = draw(st.integers(-(slide - 1), slide - 1))
    lateness = draw(st.sampled_from([0, 0, 3, 10]))
    return size, slide, offset, lateness


def _make(kind: str, spec: tuple[int, int, int, int], slicing: bool = True, cache: int | None = None) -> Any:
    size, slide, offset, lateness = spec

    def row(key: Any, window: Any, r: Any) -> Any:
        return key, window.start, window.end, _row(kind, r)

    def make() -> WindowOperator:
        return WindowOperator(
            "w",
            "w",
            lambda e: e[0],
            SlidingEventTimeWindows.of(size, slide, offset),
            allowed_lateness=lateness,
            late_tag=LATE,
            aggregate=AGGS[kind],
            window_fn=plain(row),
            cache_entries=cache,
            slicing=slicing,
        )

    return make


def _expected(kind: str, ops: Any, spec: Any) -> tuple[Counter[Any], list[Any]]:
    fired, late = aligned_oracle(ops, *spec)
    expected: Counter[Any] = Counter()
    for (k, s, e, vals, ts), n in fired.items():
        expected[(k, s, e, _expected_row(kind, list(vals)), ts)] += n
    return expected, late


def check_oracle(backend: str, kind: str, stream: Any, spec: Any, cache: int | None = None) -> None:
    records, bound, batch_size = stream
    ops = source_ops(records, batch_size, bound)
    expected, expected_late = _expected(kind, ops, spec)
    with tempfile.TemporaryDirectory() as d:
        make = _make(kind, spec, cache=cache)
        check_against_oracle(make, backend, ops, expected, expected_late, SlicedWindows, Path(d))


@pytest.mark.parametrize("kind", sorted(AGGS))
@given(stream=event_streams(), spec=sliding_windows())
def test_sliced_windows_match_oracle(kind: str, stream: Any, spec: Any) -> None:
    check_oracle("heap", kind, stream, spec)


@pytest.mark.parametrize(
    "kind, cache",
    [("columns", None), ("columns", 0), ("invertible", None), ("halves", 0), ("mixed", 3)],
    ids=["cached", "write-through", "running-cached", "running-write-through", "evicting"],
)
@ROCKSDB_SETTINGS
@given(stream=event_streams(), spec=sliding_windows())
def test_sliced_windows_match_oracle_rocksdb(kind: str, cache: Any, stream: Any, spec: Any) -> None:
    check_oracle("rocksdb", kind, stream, spec, cache)


@given(stream=event_streams(), spec=sliding_windows())
def test_sliced_equals_per_window_path(stream: Any, spec: Any) -> None:
    """The same outputs, timestamps and late elements with slicing on and off."""
    records, bound, batch_size = stream
    ops = source_ops(records, batch_size, bound)
    results = []
    for slicing in (True, False):
        h = Harness(_make("columns", spec, slicing=slicing)).open()
        assert isinstance(h.op._aligned_windows, SlicedWindows) == slicing
        run_ops(h, ops)
        results.append((Counter(h.outputs()), h.late.values))
        h.close()
    assert results[0] == results[1]


def check_restore(before: str, after: str, kind: str, stream: Any, spec: Any, cut_at: float) -> None:
    records, bound, batch_size = stream
    ops = source_ops(records, batch_size, bound)
    expected, expected_late = _expected(kind, ops, spec)
    with tempfile.TemporaryDirectory() as d:
        outputs, late = run_with_restore(
            _make(kind, spec), before, after, ops, int(len(ops) * cut_at), Path(d), assert_empty=True
        )
    assert Counter((*v, ts) for v, ts in outputs) == expected
    assert late == expected_late


@pytest.mark.parametrize("kind", ["columns", "mixed", "invertible"])
@given(stream=event_streams(), spec=sliding_windows(), cut_at=st.floats(0.0, 1.0))
def test_restore_in_the_middle_equals_the_oracle(kind: str, stream: Any, spec: Any, cut_at: float) -> None:
    check_restore("heap", "heap", kind, stream, spec, cut_at)


@pytest.mark.parametrize("before, after", [("rocksdb", "rocksdb"), ("heap", "rocksdb"), ("rocksdb", "heap")])
@ROCKSDB_SETTINGS
@given(stream=event_streams(), spec=sliding_windows(), cut_at=st.floats(0.0, 1.0))
def test_restore_with_rocksdb_and_across_backends(
    before: str, after: str, stream: Any, spec: Any, cut_at: float
) -> None:
    check_restore(before, after, "columns", stream, spec, cut_at)


# -- fixed examples ----------------------------------------------------------------------------------
def _op(assigner: Any, **kw: Any) -> WindowOperator:
    return WindowOperator("w", "w", lambda e: e[0], assigner, **kw)


class _Mine(AggregateFunction):
    def create_accumulator(self) -> int:
        return 0

    def add(self, value: Any, acc: int) -> int:
        return acc + 1

    def merge(self, a: int, b: int) -> int:
        return a + b

    def get_result(self, acc: int) -> int:
        return acc


class _MineUnordered(_Mine):
    order_insensitive = True


def test_which_windows_are_sliced() -> None:
    sliding = SlidingEventTimeWindows.of(10, 5)
    assert _op(sliding, aggregate=Count()).sliced
    assert _op(sliding, aggregate=_MineUnordered()).sliced
    assert _op(SlidingEventTimeWindows.of(10, 4), aggregate=COLUMNS).sliced  # slices of gcd = 2
    assert not _op(sliding, aggregate=Count(), slicing=False).sliced
    assert not _op(sliding, aggregate=_Mine()).sliced  # user functions must say so
    assert not _op(sliding, aggregate=combine(n=Count(), top=TopN(2))).sliced  # ties by arrival
    assert not _op(sliding, aggregate=BloomDistinct(capacity=10)).sliced  # merge estimates the count
    assert not _op(sliding, aggregate=Count(), evictor=CountEvictor.of(2)).sliced
    assert not _op(sliding, window_fn=lambda k, w, els: len(els)).sliced
    assert not _op(TumblingEventTimeWindows.of(10), aggregate=Count()).sliced  # one slice a window anyway


def test_each_element_updates_one_slice_and_slices_go_with_their_last_window() -> None:
    h = Harness(lambda: _op(SlidingEventTimeWindows.of(10, 5), aggregate=Count())).open()
    h.push([("a", 1, 0), ("a", 7, 0), ("b", 7, 0)], [1, 7, 7])
    rows = h.snapshot()["keyed"]["states"][SLICES_STATE]["rows"]
    assert sorted((key, ns, acc) for _kg, key, ns, acc in rows) == [
        ("a", (0, 5), 1),
        ("a", (5, 10), 1),
        ("b", (5, 10), 1),
    ]
    h.advance(9)  # fires [0, 10); slice [0, 5) is in no later window
    assert sorted(h.outputs()) == [(1, 4), (1, 9), (2, 9)]
    rows = h.snapshot()["keyed"]["states"][SLICES_STATE]["rows"]
    assert sorted(ns for _kg, _key, ns, _acc in rows) == [(5, 10), (5, 10)]
    h.advance(14)
    assert sorted(h.outputs()[3:]) == [(1, 14), (1, 14)]
    h.assert_empty()
    h.close()


def test_late_element_within_lateness_fires_each_fired_window_again_for_its_key() -> None:
    h = Harness(
        lambda: _op(SlidingEventTimeWindows.of(10, 5), aggregate=Count(), allowed_lateness=20, late_tag=LATE)
    ).open()
    h.push([("a", 6, 0)], [6])
    h.advance(15)  # [0, 10) and [5, 15) fired
    assert h.outputs() == [(1, 9), (1, 14)]
    h.push([("a", 7, 0), ("b", 8, 0)], [7, 8])
    assert sorted(h.outputs()[2:]) == [(1, 9), (1, 14), (2, 9), (2, 14)]
    h.advance(40)  # past [5, 15)'s lateness: late from now on
    h.push([("a", 8, 0)], [8])
    assert h.late.values == [("a", 8, 0)]
    h.close()


def test_process_window_function_with_window_state_and_clear() -> None:
    from streamcore.state.descriptors import ValueStateDescriptor

    seen = ValueStateDescriptor("seen")
    cleared: list[Any] = []

    class Firings(ProcessWindowFunction):
        def process(self, key: Any, context: Any, elements: Any) -> Any:
            st_ = context.window_state().get_state(seen)
            n = (st_.value() or 0) + 1
            st_.update(n)
            yield key, context.window().start, elements[0], n

        def clear(self, context: Any) -> None:
            cleared.append(context.window().start)
            context.window_state().get_state(seen).clear()

    h = Harness(
        lambda: _op(
            SlidingEventTimeWindows.of(4, 2), aggregate=Count(), allowed_lateness=2, window_fn=Firings()
        )
    ).open()
    assert h.op.sliced
    h.push([("a", 3, 0)], [3])
    h.advance(3)
    h.push([("a", 2, 0)], [2])  # [0, 4) again, within its lateness
    h.advance(100)
    assert sorted(v for v, _ in h.outputs()) == [("a", 0, 1, 1), ("a", 0, 2, 2), ("a", 2, 2, 1)]
    assert sorted(cleared) == [0, 2]
    h.assert_empty()
    h.close()


def test_a_per_window_checkpoint_does_not_restore_into_slices() -> None:
    sliding = SlidingEventTimeWindows.of(10, 5)
    old = Harness(lambda: _op(sliding, aggregate=Count(), slicing=False)).open()
    old.push([("a", 1, 0)], [1])
    image = serde.msgpack_loads(serde.msgpack_dumps(old.snapshot()))
    old.close()
    new = Harness(lambda: _op(sliding, aggregate=Count()))
    with pytest.raises(StateError, match="slicing"):
        new.open(image)
    new.close()
    back = Harness(lambda: _op(sliding, aggregate=Count(), slicing=False)).open(image)
    back.advance(100)
    assert back.outputs() == [(1, 4), (1, 9)]
    back.close()


@pytest.mark.parametrize("slicing", [True, False])
def test_the_windowed_stream_chooses_slices_or_windows(slicing: bool) -> None:
    import streamcore as sc
    from streamcore.sinks.base import CollectSink

    env = sc.StreamEnvironment()
    records = [("a", t, t) for t in range(0, 40, 3)] + [("b", 5, 1)]
    sink = CollectSink()
    (
        env.from_collection(records, timestamp=lambda r: r[1])
        .key_by(lambda r: r[0])
        .window(SlidingEventTimeWindows.of(10, 5))
        .slicing(slicing)
        .session_slots(True)
        .aggregate(COLUMNS, lambda k, w, r: (k, w.start, r["n"], r["total"]))
        .sink_to(sink)
    )
    env.execute("slices")
    expected = []
    for key in "ab":
        for start in range(-5, 40, 5):
            vals = [v for k, t, v in records if k == key and start <= t < start + 10]
            if vals:
                expected.append((key, start, len(vals), sum(vals)))
    assert sorted(sink.results) == sorted(expected)
