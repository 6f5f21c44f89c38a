"""Session windows: merging (with contents, trigger state and timers), lateness, late data."""

from __future__ import annotations

import tempfile
from collections import Counter
from pathlib import Path
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

import streamcore as sc
from streamcore.aggregates import Count, Sum, combine
from streamcore.operators.window_merging import MergingWindowSet
from streamcore.operators.window_operator import WindowOperator
from streamcore.time import MAX_TIMESTAMP, ManualClock
from streamcore.windowing import (
    ContinuousEventTimeTrigger,
    CountTrigger,
    EventTimeSessionWindows,
    ProcessingTimeSessionWindows,
    TimeWindow,
)
from tests.operators.test_windows import event_streams
from tests.operators.window_support import (
    BACKENDS,
    LATE,
    ROCKSDB_SETTINGS,
    Harness,
    run_ops,
    session_oracle,
    source_ops,
)


def _sorted_values(key: Any, window: Any, elements: Any) -> Any:
    return key, window.start, window.end, tuple(sorted(e[2] for e in elements))


def _session_harness(backend: str, state_dir: Path, gap: int, lateness: int, **kw: Any) -> Harness:
    from streamcore.operators.window_functions import plain

    kw.setdefault("window_fn", plain(_sorted_values))

    def make() -> WindowOperator:
        return WindowOperator(
            "s",
            "s",
            lambda e: e[0],
            EventTimeSessionWindows.with_gap(gap),
            allowed_lateness=lateness,
            late_tag=LATE,
            **kw,
        )

    return Harness(make, backend, state_dir).open()


def check_sessions(backend: str, stream: Any, gap: int, lateness: int) -> None:
    records, bound, batch_size = stream
    ops = source_ops(records, batch_size, bound)
    expected, expected_late = session_oracle(ops, gap, lateness)
    with tempfile.TemporaryDirectory() as d:
        h = _session_harness(backend, Path(d), gap, lateness)
        run_ops(h, ops)
        assert Counter((*v, ts) for v, ts in h.outputs()) == expected
        assert h.late.values == expected_late
        # Every session fired and was cleaned up: no state, no timers left.
        h.assert_empty()
        h.close()


@given(stream=event_streams(), gap=st.integers(1, 12), lateness=st.sampled_from([0, 0, 4, 15]))
def test_sessions_match_oracle(stream: Any, gap: int, lateness: int) -> None:
    check_sessions("heap", stream, gap, lateness)


@ROCKSDB_SETTINGS
@given(stream=event_streams(), gap=st.integers(1, 12), lateness=st.sampled_from([0, 0, 4, 15]))
def test_sessions_match_oracle_rocksdb(stream: Any, gap: int, lateness: int) -> None:
    check_sessions("rocksdb", stream, gap, lateness)


@pytest.mark.parametrize("backend", BACKENDS)
def test_late_elements_reach_the_side_output_in_arrival_order(backend: str, tmp_path: Path) -> None:
    """Keys interleaved in one batch: the late side output keeps the batch's order, not key groups."""
    h = _session_harness(backend, tmp_path, 5, 0)
    h.advance(100)
    late = [("a", 1, 0), ("b", 2, 1), ("a", 3, 2), ("c", 4, 3), ("b", 5, 4)]
    h.push(late, [e[1] for e in late])
    assert h.late.values == late
    assert h.late.timestamps == [1, 2, 3, 4, 5]
    assert h.outputs() == []
    h.close()


@pytest.mark.parametrize("backend", BACKENDS)
def test_a_bridging_element_merges_two_sessions_and_their_accumulators(backend: str, tmp_path: Path) -> None:
    agg = combine(n=Count(), total=Sum(lambda e: e[2]))
    h = _session_harness(backend, tmp_path, 5, 0, aggregate=agg, window_fn=None)
    h.push([("a", 0, 1), ("a", 20, 2), ("a", 2, 3)], [0, 20, 2])  # sessions [0,7) and [20,25)
    h.push([("a", 12, 4)], [12])  # [12,17): still apart (7 < 12, 17 < 20)
    h.push([("a", 16, 5)], [16])  # [16,21) touches [12,17) and [20,25): one session [12,25)
    sessions = h.op._sessions
    h.op.key_context.set_current_key("a")
    sessions.load()
    assert sorted(sessions.mapping) == [(0, 7), (12, 25)]
    h.advance(MAX_TIMESTAMP)
    assert h.outputs() == [({"n": 2, "total": 4}, 6), ({"n": 3, "total": 11}, 24)]
    h.close()


def test_merging_window_set_keeps_the_earliest_state_window() -> None:
    h = _session_harness("heap", Path("."), 5, 0)
    ms = MergingWindowSet(h.op.backend, EventTimeSessionWindows.with_gap(5))
    h.op.key_context.set_current_key("k")
    ms.load()
    merges: list[Any] = []

    def cb(*args: Any) -> None:
        merges.append(args)

    assert ms.add_window(TimeWindow(10, 15), cb) == TimeWindow(10, 15)
    assert ms.add_window(TimeWindow(0, 5), cb) == TimeWindow(0, 5)
    assert ms.add_window(TimeWindow(11, 13), cb) == TimeWindow(10, 15)  # contained: no merge
    assert merges == []
    assert ms.add_window(TimeWindow(5, 10), cb) == TimeWindow(0, 15)
    merged, members, target, folded = merges[0]
    assert merged == TimeWindow(0, 15) and members == [TimeWindow(0, 5), TimeWindow(10, 15)]
    assert target == (0, 5) and folded == [(10, 15)]
    assert ms.rows() == [[0, 15, 0, 5]]
    ms.persist()
    ms.load()
    assert ms.rows() == [[0, 15, 0, 5]]
    h.close()


def test_count_trigger_counts_merge_with_sessions() -> None:
    h = _session_harness("heap", Path("."), 10, 0, trigger=CountTrigger.of(3))
    h.push([("a", 0, 1), ("a", 20, 2)], [0, 20])  # [0,10) and [20,30): one element each
    h.push([("a", 10, 3)], [10])  # bridges them: the merged count 1 + 1, plus this one, fires
    assert h.out.values == [("a", 0, 30, (1, 2, 3))]
    h.close()


def test_continuous_trigger_on_sessions_fires_early() -> None:
    h = _session_harness("heap", Path("."), 100, 0, trigger=ContinuousEventTimeTrigger.of(50))
    h.push([("a", 10, 1), ("a", 60, 2)], [10, 60])
    h.advance(50)
    assert h.out.values == [("a", 10, 160, (1, 2))]
    h.advance(MAX_TIMESTAMP)
    assert [v[3] for v in h.out.values] == [(1, 2), (1, 2), (1, 2), (1, 2)]  # 50, 100, 150, end
    assert h.op.timers.num_event_timers() == 0
    h.close()


def test_processing_time_sessions() -> None:
    clock = ManualClock(0)
    from streamcore.operators.window_functions import plain

    h = Harness(
        lambda: WindowOperator(
            "s",
            "s",
            lambda e: e[0],
            ProcessingTimeSessionWindows.with_gap(10),
            window_fn=plain(_sorted_values),
        ),
        clock=clock,
    ).open()
    h.push([("a", None, 1)], None)
    clock.set(5)
    h.processing_time(5)
    h.push([("a", None, 2)], None)  # extends the session to [0, 15)
    clock.set(14)
    h.processing_time(14)
    assert h.outputs() == [(("a", 0, 15, (1, 2)), 14)]
    h.close()


def test_sessions_through_the_api() -> None:
    env = sc.StreamEnvironment(batch_size=2)
    clicks = [("u1", 0), ("u2", 3), ("u1", 4), ("u1", 30), ("u2", 7)]
    out = (
        env.from_collection(clicks, timestamp=lambda c: c[1])
        .key_by(lambda c: c[0])
        .window(EventTimeSessionWindows.with_gap(5))
        .aggregate(Count(), lambda user, w, n: (user, w.start, w.end, n))
        .execute_and_collect()
    )
    assert sorted(out) == [("u1", 0, 9, 2), ("u1", 30, 35, 1), ("u2", 3, 12, 2)]


def test_dynamic_gap_sessions() -> None:
    env = sc.StreamEnvironment()
    events = [("a", 0, 3), ("a", 5, 1), ("a", 7, 1)]
    out = (
        env.from_collection(events, timestamp=lambda e: e[1])
        .key_by(lambda e: e[0])
        .window(EventTimeSessionWindows.with_dynamic_gap(lambda e: e[2]))
        .apply(lambda k, w, els: (w.start, w.end, len(els)))
        .execute_and_collect()
    )
    assert sorted(out) == [(0, 3, 1), (5, 6, 1), (7, 8, 1)]


def test_per_window_state_is_refused_for_sessions() -> None:
    from streamcore.errors import StateError
    from streamcore.operators.window_functions import ProcessWindowFunction
    from streamcore.state.descriptors import ValueStateDescriptor

    class UsesWindowState(ProcessWindowFunction):
        def process(self, key: Any, context: Any, elements: Any) -> Any:
            context.window_state().get_state(ValueStateDescriptor("n"))
            return ()

    env = sc.StreamEnvironment()
    job = (
        env.from_collection([("a", 1)], timestamp=lambda e: e[1])
        .key_by(lambda e: e[0])
        .window(EventTimeSessionWindows.with_gap(5))
        .process(UsesWindowState())
    )
    with pytest.raises(StateError, match="global_state"):
        job.execute_and_collect()
