"""Window TopN: a brute-force oracle with watermarks and late rows over both backends and a
restore at any point, emission when the watermark closes a window, late rows, errors."""

from __future__ import annotations

from collections import Counter
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

import streamcore as sc
from streamcore.changelog import Change, RowKind, row_key_selector
from streamcore.errors import ChangelogError, ConfigurationError, UserFunctionError
from streamcore.operators.rank import WindowTopNOperator
from streamcore.serde import msgpack_dumps, msgpack_loads
from streamcore.testing import OperatorHarness
from streamcore.time import MIN_TIMESTAMP
from tests.operators.changelog_support import BACKEND_PAIRS

LATE = "late"

# A step is a batch of rows (key, value, window_end) or a watermark.
ROWS = st.lists(
    st.tuples(st.sampled_from(["a", "b", "c"]), st.integers(0, 5), st.sampled_from([1000, 2000, 3000])),
    min_size=1,
    max_size=5,
)
STEPS = st.lists(st.one_of(ROWS, st.integers(0, 3500)), max_size=25)


def _sk(r: tuple[Any, ...]) -> Any:
    return r[1]


def _end(r: tuple[Any, ...]) -> int:
    return r[2]


def oracle(
    steps: list[Any], n: int, descending: bool
) -> tuple[Counter[tuple[tuple[Any, ...], int]], list[tuple[Any, ...]]]:
    """The outputs ``(row + (rank,), window_end - 1)`` and the late rows of ``steps`` then end of input."""
    wm = MIN_TIMESTAMP
    windows: dict[tuple[Any, int], list[tuple[Any, ...]]] = {}
    late: list[tuple[Any, ...]] = []
    for step in steps:
        if isinstance(step, int):
            wm = max(wm, step)
            continue
        for r in step:
            if r[2] - 1 <= wm:
                late.append(r)
            else:
                windows.setdefault((r[0], r[2]), []).append(r)
    out: Counter[tuple[tuple[Any, ...], int]] = Counter()
    for (_, end), rows in windows.items():
        top = sorted(rows, key=_sk, reverse=descending)[:n]
        out.update(((*r, rank), end - 1) for rank, r in enumerate(top, 1))
    return out, late


def make_op(n: int = 2, **kw: Any) -> WindowTopNOperator:
    key = row_key_selector(lambda r: r[0])
    return WindowTopNOperator("wtop", "wtop", key, n, kw.pop("sort_key", _sk), _end, late_tag=LATE, **kw)


def drive(h: OperatorHarness, steps: list[Any], wm: int) -> int:
    for step in steps:
        if isinstance(step, int):
            if step > wm:
                wm = step
                h.process_watermark(step)
        else:
            h.process_elements(step, [r[2] - 1 for r in step])
    return wm


@pytest.mark.parametrize("backends", BACKEND_PAIRS)
@given(steps=STEPS, n=st.integers(1, 3), descending=st.booleans(), cut=st.integers(0, 25))
def test_outputs_equal_the_oracle_with_watermarks_late_rows_and_a_restore(
    backends: tuple[str, str], steps: list[Any], n: int, descending: bool, cut: int
) -> None:
    expected, late = oracle(steps, n, descending)
    with OperatorHarness(
        make_op(n, descending=descending), state_backend=backends[0], side_outputs=(LATE,)
    ) as h1:
        wm = drive(h1, steps[:cut], MIN_TIMESTAMP)
        out = h1.output()
        late_out = [r for r, _ in h1.side_output(LATE)]
        image = msgpack_loads(msgpack_dumps(h1.snapshot()))
    with OperatorHarness(
        make_op(n, descending=descending),
        state_backend=backends[1],
        side_outputs=(LATE,),
        restore_image=image,
    ) as h2:
        if wm > MIN_TIMESTAMP:
            h2.process_watermark(wm)  # harness snapshots leave watermarks out: push the last one again
        drive(h2, steps[cut:], wm)
        h2.end_input()
        out += h2.output()
        late_out += [r for r, _ in h2.side_output(LATE)]
    assert all(type(v) is tuple for v, _ in out)
    assert Counter(out) == expected
    assert Counter(late_out) == Counter(late)


def test_the_window_fires_when_the_watermark_reaches_its_end_minus_one() -> None:
    with OperatorHarness(make_op(2, descending=True), side_outputs=(LATE,)) as h:
        rows = [("a", 5, 1000), ("a", 9, 1000), ("b", 1, 1000), ("a", 7, 1000), ("a", 9, 2000)]
        h.process_elements(rows, [999] * 4 + [1999])
        h.process_watermark(998)
        assert h.output() == []
        h.process_watermark(999)
        assert h.output() == [(("a", 9, 1000, 1), 999), (("a", 7, 1000, 2), 999), (("b", 1, 1000, 1), 999)]
        h.clear_output()
        h.process_elements([("a", 10, 1000), ("a", 3, 2000)], [999, 1999])  # the first is late
        assert h.side_output(LATE) == [(("a", 10, 1000), 999)]
        assert h.operator.metrics()["late_records"] == 1
        h.end_input()
        assert h.values() == [("a", 9, 2000, 1), ("a", 3, 2000, 2)]
        assert h.watermarks()[-1] > 999


def test_ties_rank_by_arrival_and_state_is_cleared() -> None:
    with OperatorHarness(make_op(2)) as h:
        h.process_elements([("a", 1, 1000, "x"), ("a", 1, 1000, "y"), ("a", 1, 1000, "z")])
        h.process_watermark(999)
        assert h.values() == [("a", 1, 1000, "x", 1), ("a", 1, 1000, "y", 2)]
        h.operator.state.set_namespace(1000)
        assert h.operator.state.value() is None
        assert h.operator.timers.num_event_timers() == 0


def test_late_rows_are_dropped_and_counted_without_a_side_output() -> None:
    op = WindowTopNOperator("wtop", "wtop", row_key_selector(lambda r: r[0]), 1, _sk, _end)
    with OperatorHarness(op) as h:
        h.process_watermark(5000)
        h.process_elements([("a", 1, 1000)])
        h.end_input()
        assert h.values() == [] and h.operator.metrics()["late_records"] == 1


def test_retractions_and_bad_window_ends_are_errors() -> None:
    with (
        OperatorHarness(make_op()) as h,
        pytest.raises(ChangelogError, match=r"'wtop'.*retraction -D\(a, 1, 1000\).*append-only"),
    ):
        h.process_element(Change(RowKind.DELETE, ("a", 1, 1000)))
    with OperatorHarness(make_op()) as h:
        h.process_element(Change(RowKind.INSERT, ("a", 1, 1000)))  # +I changes are rows
        h.end_input()
        assert h.values() == [("a", 1, 1000, 1)]
    with OperatorHarness(make_op()) as h, pytest.raises(ConfigurationError, match=r"window_end.*int"):
        h.process_element(("a", 1, "1000"))
    with OperatorHarness(make_op()) as h, pytest.raises(UserFunctionError, match=r"window_end.*'wtop'"):
        h.process_element(("a", 1))


@pytest.mark.parametrize("backend", ["heap", "rocksdb"])
def test_after_a_tumbling_window_aggregate_in_the_engine(backend: str, tmp_path: Any) -> None:
    env = sc.StreamEnvironment(state_backend=backend, state_dir=str(tmp_path / "state"), batch_size=3)
    sales = [("eu", "ann", 3, 100), ("eu", "bob", 5, 200), ("eu", "ann", 4, 300), ("us", "cy", 1, 400)]
    sales += [("eu", "cy", 2, 1100), ("eu", "bob", 1, 1200)]
    wm = sc.WatermarkStrategy.for_bounded_out_of_orderness(0)
    late = sc.OutputTag("late-results")
    totals = (
        env.from_collection(sales, timestamp=lambda s: s[3], watermarks=wm)
        .key_by(lambda s: (s[0], s[1]))
        .window(sc.TumblingEventTimeWindows.of(1000))
        .aggregate(
            sc.aggregates.Sum(lambda s: s[2]),
            window_function=lambda key, window, total: (*key, total, window.end),
        )
    )
    top = totals.key_by(lambda r: r[0]).window_top_n(
        1, lambda r: r[2], lambda r: r[3], descending=True, late_output=late
    )
    out = sc.CollectSink()
    top.uid("best-seller").sink_to(out)
    result = env.execute("window-top-n")
    assert sorted(out.results) == [
        ("eu", "ann", 7, 1000, 1),
        ("eu", "cy", 2, 2000, 1),
        ("us", "cy", 1, 1000, 1),
    ]
    assert sorted(out.timestamps) == [999, 999, 1999]
    assert result.metrics["best-seller"]["late_records"] == 0
