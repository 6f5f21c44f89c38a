"""Session windows through :class:`~streamcore.operators.window_sessions.SessionSlots`.

Checked against the brute-force session oracle of ``window_support`` and against the
general merging path (``session_slots=False``) with an aggregate that records the order
of its adds and merges, so the merge order must be the same too; shuffled input within
the watermark bound plus a few later elements, allowed lateness, the late side output
in arrival order, both backends, and a snapshot and restore at an arbitrary point.
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
from streamcore.aggregates import AggregateFunction, Count, Max, Min, Sum, combine
from streamcore.operators.window_functions import ProcessWindowFunction, plain
from streamcore.operators.window_operator import WindowOperator
from streamcore.operators.window_sessions import SLOTS_STATE, SessionSlots
from streamcore.state.descriptors import ValueStateDescriptor
from streamcore.time import MAX_TIMESTAMP
from streamcore.windowing import CountTrigger, EventTimeSessionWindows
from tests.operators.test_windows import event_streams
from tests.operators.window_support import (
    LATE,
    ROCKSDB_SETTINGS,
    Harness,
    check_against_oracle,
    run_ops,
    run_with_restore,
    session_oracle,
    source_ops,
)

AGG = combine(n=Count(), total=Sum(lambda e: e[2]), lo=Min(lambda e: e[2] % 7), hi=Max(lambda e: e[2] % 7))


class Trace(AggregateFunction):
    """The values in the order they were added and merged: any difference in order shows."""

    def create_accumulator(self) -> list[Any]:
        return []

    def add(self, value: Any, acc: list[Any]) -> list[Any]:
        acc.append(value[2])
        return acc

    def merge(self, a: list[Any], b: list[Any]) -> list[Any]:
        a.extend(b)
        return a

    def get_result(self, acc: list[Any]) -> tuple[Any, ...]:
        return tuple(acc)


def _row(key: Any, window: Any, r: Any) -> Any:
    if isinstance(r, dict):
        r = (r["n"], r["total"], r["lo"], r["hi"])
    return key, window.start, window.end, r


def _make(gap: int, lateness: int, agg: Any = AGG, slots: bool = True, cache: int | None = None) -> Any:
    def make() -> WindowOperator:
        return WindowOperator(
            "s",
            "s",
            lambda e: e[0],
            EventTimeSessionWindows.with_gap(gap),
            allowed_lateness=lateness,
            late_tag=LATE,
            aggregate=agg,
            window_fn=plain(_row),
            session_slots=slots,
            cache_entries=cache,
        )

    return make


def _expected(ops: Any, gap: int, lateness: int) -> tuple[Counter[Any], list[Any]]:
    fired, late = session_oracle(ops, gap, lateness)
    expected: Counter[Any] = Counter()
    for (k, s, e, vals, ts), n in fired.items():
        row = (len(vals), sum(vals), min(v % 7 for v in vals), max(v % 7 for v in vals))
        expected[(k, s, e, row, ts)] += n
    return expected, late


def check_oracle(backend: str, stream: Any, gap: int, lateness: int, cache: int | None = None) -> None:
    records, bound, batch_size = stream
    ops = source_ops(records, batch_size, bound)
    expected, expected_late = _expected(ops, gap, lateness)
    with tempfile.TemporaryDirectory() as d:
        make = _make(gap, lateness, cache=cache)
        check_against_oracle(make, backend, ops, expected, expected_late, SessionSlots, Path(d))


GAPS = st.integers(1, 12)
LATENESS = st.sampled_from([0, 0, 4, 15])


@given(stream=event_streams(), gap=GAPS, lateness=LATENESS)
def test_session_slots_match_oracle(stream: Any, gap: int, lateness: int) -> None:
    check_oracle("heap", stream, gap, lateness)


@pytest.mark.parametrize("cache", [None, 0, 2], ids=["cached", "write-through", "evicting"])
@ROCKSDB_SETTINGS
@given(stream=event_streams(), gap=GAPS, lateness=LATENESS)
def test_session_slots_match_oracle_rocksdb(cache: Any, stream: Any, gap: int, lateness: int) -> None:
    check_oracle("rocksdb", stream, gap, lateness, cache)


@pytest.mark.parametrize("backend", ["heap", "rocksdb"])
@ROCKSDB_SETTINGS
@given(stream=event_streams(), gap=GAPS, lateness=LATENESS)
def test_same_adds_and_merges_in_the_same_order_as_the_general_path(
    backend: str, stream: Any, gap: int, lateness: int
) -> None:
    records, bound, batch_size = stream
    ops = source_ops(records, batch_size, bound)
    results = []
    with tempfile.TemporaryDirectory() as d:
        for slots in (True, False):
            h = Harness(_make(gap, lateness, Trace(), slots), backend, Path(d) / str(slots)).open()
            assert isinstance(h.op._aligned_windows, SessionSlots) == slots
            run_ops(h, ops)
            results.append((Counter(h.outputs()), h.late.values, h.op.windows_fired))
            h.close()
    assert results[0] == results[1]


def check_restore(before: str, after: str, stream: Any, gap: int, lateness: int, cut_at: float) -> None:
    records, bound, batch_size = stream
    ops = source_ops(records, batch_size, bound)
    expected, expected_late = _expected(ops, gap, lateness)
    with tempfile.TemporaryDirectory() as d:
        outputs, late = run_with_restore(
            _make(gap, lateness), before, after, ops, int(len(ops) * cut_at), Path(d), assert_empty=True
        )
    assert Counter((*v, ts) for v, ts in outputs) == expected
    assert late == expected_late


@given(stream=event_streams(), gap=GAPS, lateness=LATENESS, cut_at=st.floats(0.0, 1.0))
def test_restore_in_the_middle_equals_the_oracle(stream: Any, gap: int, lateness: int, cut_at: float) -> None:
    check_restore("heap", "heap", stream, gap, lateness, cut_at)


@pytest.mark.parametrize("before, after", [("rocksdb", "rocksdb"), ("heap", "rocksdb"), ("rocksdb", "heap")])
@ROCKSDB_SETTINGS
@given(stream=event_streams(), gap=GAPS, lateness=LATENESS, cut_at=st.floats(0.0, 1.0))
def test_restore_with_rocksdb_and_across_backends(
    before: str, after: str, stream: Any, gap: int, lateness: int, cut_at: float
) -> None:
    check_restore(before, after, stream, gap, lateness, cut_at)


# -- fixed examples ----------------------------------------------------------------------------------
def _op(assigner: Any, **kw: Any) -> WindowOperator:
    return WindowOperator("s", "s", lambda e: e[0], assigner, **kw)


def test_which_session_windows_use_slots() -> None:
    gap = EventTimeSessionWindows.with_gap(5)
    assert _op(gap, aggregate=Count()).session_slots
    assert _op(gap, aggregate=Trace()).session_slots  # merge order is the general path's
    assert not _op(gap, aggregate=Count(), session_slots=False).session_slots
    assert not _op(gap, aggregate=Count(), fast_path=False).session_slots
    assert not _op(gap, window_fn=lambda k, w, els: len(els)).session_slots  # elements
    assert not _op(gap, aggregate=Count(), trigger=CountTrigger.of(2)).session_slots
    assert not _op(EventTimeSessionWindows.with_dynamic_gap(lambda e: 3), aggregate=Count()).session_slots


def test_one_state_value_per_key_holds_its_sessions() -> None:
    h = Harness(_make(5, 0)).open()
    h.push([("a", 0, 1), ("a", 20, 2), ("a", 2, 3), ("b", 1, 4)], [0, 20, 2, 1])
    h.push([("a", 12, 4)], [12])
    h.push([("a", 16, 5)], [16])  # [16,21) touches [12,17) and [20,25): one session [12,25)
    rows = h.snapshot()["keyed"]["states"][SLOTS_STATE]["rows"]
    by_key = {key: [(s, e, armed) for s, e, _acc, armed in value] for _kg, key, _ns, value in rows}
    assert by_key == {"a": [(0, 7, True), (12, 25, True)], "b": [(1, 6, True)]}
    h.advance(MAX_TIMESTAMP)
    assert sorted(h.outputs()) == [
        (("a", 0, 7, (2, 4, 1, 3)), 6),
        (("a", 12, 25, (3, 11, 2, 5)), 24),
        (("b", 1, 6, (1, 4, 4, 4)), 5),
    ]
    h.assert_empty()
    h.close()


def test_late_elements_within_lateness_fire_at_once_and_later_ones_go_to_the_side_output() -> None:
    h = Harness(_make(5, 10)).open()
    h.push([("a", 0, 1)], [0])
    h.advance(6)
    assert h.outputs() == [(("a", 0, 5, (1, 1, 1, 1)), 4)]
    h.push([("a", 1, 2), ("b", 1, 3), ("a", 0, 4)], [1, 1, 0])  # a fires twice, b once, at once
    assert sorted(h.outputs()[1:]) == [
        (("a", 0, 6, (2, 3, 1, 2)), 5),
        (("a", 0, 6, (3, 7, 1, 4)), 5),
        (("b", 1, 6, (1, 3, 3, 3)), 5),
    ]
    h.push([("a", 4, 5)], [4])  # [4, 9) extends [0, 6) past the watermark: waits for it again
    assert len(h.outputs()) == 4
    h.advance(30)
    h.push([("b", 2, 5), ("a", 1, 6), ("c", 40, 7)], [2, 1, 40])
    assert h.late.values == [("b", 2, 5), ("a", 1, 6)]
    h.advance(MAX_TIMESTAMP)
    h.assert_empty()
    h.close()


def test_process_window_function_runs_with_its_key_current_and_clears() -> None:
    fired_count = ValueStateDescriptor("fired")
    cleared: list[Any] = []

    class Firings(ProcessWindowFunction):
        def process(self, key: Any, context: Any, elements: Any) -> Any:
            st_ = context.global_state().get_state(fired_count)
            n = (st_.value() or 0) + 1
            st_.update(n)
            yield key, context.window().start, elements[0], n

        def clear(self, context: Any) -> None:
            cleared.append(context.window().start)

    h = Harness(
        lambda: _op(
            EventTimeSessionWindows.with_gap(5), aggregate=Count(), allowed_lateness=3, window_fn=Firings()
        )
    ).open()
    assert h.op.session_slots
    h.push([("a", 0, 0), ("b", 1, 0)], [0, 1])
    h.advance(5)
    h.push([("a", 2, 0)], [2])  # within the lateness: fires [0, 7) again at once
    h.advance(100)
    assert sorted(v for v, _ in h.outputs()) == [("a", 0, 1, 1), ("a", 0, 2, 2), ("b", 1, 1, 1)]
    assert sorted(cleared) == [0, 1]
    h.close()


def test_a_checkpoint_of_the_general_path_does_not_restore_into_slots() -> None:
    from streamcore.errors import StateError

    old = Harness(_make(5, 0, slots=False)).open()
    old.push([("a", 1, 1)], [1])
    image = serde.msgpack_loads(serde.msgpack_dumps(old.snapshot()))
    old.close()
    new = Harness(_make(5, 0))
    with pytest.raises(StateError, match="session_slots"):
        new.open(image)
    new.close()
    back = Harness(_make(5, 0, slots=False)).open(image)
    back.advance(MAX_TIMESTAMP)
    assert back.outputs() == [(("a", 1, 6, (1, 1, 1, 1)), 5)]
    back.close()
