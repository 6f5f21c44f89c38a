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
from streamcore.errors import ConfigurationError, UserFunctionError
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


def _session_harness(backend: str, state_dir: Path, gap: Any, lateness: int, **kw: Any) -> Harness:
    """Event-time sessions of ``gap`` ms, or of ``gap(element)`` ms when it is a function."""
    from streamcore.operators.window_functions import plain

    kw.setdefault("window_fn", plain(_sorted_values))
    sessions = EventTimeSessionWindows
    assigner = sessions.with_dynamic_gap(gap) if callable(gap) else sessions.with_gap(gap)

    def make() -> WindowOperator:
        return WindowOperator(
            "s",
            "s",
            lambda e: e[0],
            assigner,
            allowed_lateness=lateness,
            late_tag=LATE,
            **kw,
        )

    return Harness(make, backend, state_dir).open()


def check_sessions(backend: str, stream: Any, gap: Any, lateness: int) -> None:
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


def _gap_of_value(element: Any) -> int:
    """A dynamic gap: 1 to 12 ms, from the element's value."""
    return 1 + element[2] * 7 % 12


@given(stream=event_streams(), lateness=st.sampled_from([0, 0, 4, 15]))
def test_dynamic_gap_sessions_match_oracle(stream: Any, lateness: int) -> None:
    check_sessions("heap", stream, _gap_of_value, lateness)


@ROCKSDB_SETTINGS
@given(stream=event_streams(), lateness=st.sampled_from([0, 0, 4, 15]))
def test_dynamic_gap_sessions_match_oracle_rocksdb(stream: Any, lateness: int) -> None:
    check_sessions("rocksdb", stream, _gap_of_value, lateness)


def _flink_gap(element: Any) -> int:
    """The gap extractor of Flink's WindowOperatorTest.testDynamic*SessionWindows."""
    key, _, value = element
    if key == "key1":
        return 3000
    return 1000 if value == 10 else 2000


def _flink_session(key: Any, window: Any, elements: Any) -> Any:
    """Flink's SessionWindowFunction: ``(key-sum, start, end)``."""
    return f"{key}-{sum(e[2] for e in elements)}", window.start, window.end


@pytest.mark.parametrize("backend", BACKENDS)
def test_dynamic_event_time_sessions_as_in_flink(backend: str, tmp_path: Path) -> None:
    """Port of Flink's WindowOperatorTest.testDynamicEventTimeSessionWindows."""
    from streamcore.operators.window_functions import plain

    h = _session_harness(backend, tmp_path, _flink_gap, 0, window_fn=plain(_flink_session))
    # Different gaps for different keys.
    h.push([("key1", 10, 3), ("key2", 5000, 4), ("key2", 6000, 5)], [10, 5000, 6000])
    h.advance(8999)
    assert sorted(h.outputs()) == [(("key1-3", 10, 3010), 3009), (("key2-9", 5000, 8000), 7999)]
    # A gap that ends before the session's current end: the furthest end is kept.
    h.push([("key2", 9000, 1), ("key2", 10000, 2), ("key2", 10500, 10)], [9000, 10000, 10500])
    h.advance(12999)
    assert h.outputs()[2:] == [(("key2-13", 9000, 12000), 11999)]
    # A gap that ends after it.
    h.push([("key2", 13000, 10), ("key2", 13500, 10), ("key2", 14000, 1)], [13000, 13500, 14000])
    h.advance(16999)
    assert h.outputs()[3:] == [(("key2-21", 13000, 16000), 15999)]
    h.assert_empty()
    h.close()


@pytest.mark.parametrize("backend", BACKENDS)
def test_dynamic_processing_time_sessions_as_in_flink(backend: str, tmp_path: Path) -> None:
    """Port of Flink's WindowOperatorTest.testDynamicProcessingTimeSessionWindows."""
    from streamcore.operators.window_functions import plain

    clock = ManualClock(0)
    h = Harness(
        lambda: WindowOperator(
            "s",
            "s",
            lambda e: e[0],
            ProcessingTimeSessionWindows.with_dynamic_gap(_flink_gap),
            window_fn=plain(_flink_session),
        ),
        backend,
        tmp_path,
        clock,
    ).open()

    def at(now: int, *elements: tuple[str, int]) -> None:
        clock.set(now)
        h.processing_time(now)
        if elements:
            h.push([(k, None, v) for k, v in elements], None)

    at(10, ("key1", 3))
    at(5000, ("key2", 4))
    at(6000, ("key2", 5))
    at(8999)
    assert sorted(h.outputs()) == [(("key1-3", 10, 3010), 3009), (("key2-9", 5000, 8000), 7999)]
    at(9000, ("key2", 1))
    at(10000, ("key2", 2))
    at(10500, ("key2", 10))
    at(12000)
    assert h.outputs()[2:] == [(("key2-13", 9000, 12000), 11999)]
    at(13000, ("key2", 10))
    at(13500, ("key2", 10))
    at(14000, ("key2", 1))
    at(16999)
    assert h.outputs()[3:] == [(("key2-21", 13000, 16000), 15999)]
    h.close()


def gap_from_field(element: Any) -> Any:
    return element[1]


@pytest.mark.parametrize("sessions", [EventTimeSessionWindows, ProcessingTimeSessionWindows])
def test_dynamic_gaps_are_validated_and_errors_name_the_extractor(sessions: Any) -> None:
    with pytest.raises(ConfigurationError, match="callable"):
        sessions.with_dynamic_gap(5)

    assigner = sessions.with_dynamic_gap(gap_from_field)
    assert repr(assigner) == f"{sessions.__name__}.with_dynamic_gap(gap_from_field)"
    assert repr(sessions.with_gap(5)) == f"{sessions.__name__}.with_gap(5)"

    class Now:
        def get_current_processing_time(self) -> int:
            return 7

    start = 100 if sessions.event_time else 7
    assert assigner.assign_windows(("a", 3), 100, Now()) == [TimeWindow(start, start + 3)]
    for bad in (0, -1, 1.5, True, "5", None):
        with pytest.raises(ConfigurationError, match=r"session gap function .*gap_from_field returned"):
            assigner.assign_windows(("a", bad), 100, Now())


@pytest.mark.parametrize("backend", BACKENDS)
def test_a_bad_or_raising_gap_function_fails_the_job_with_its_name(backend: str, tmp_path: Path) -> None:
    h = _session_harness(backend, tmp_path / "bad", lambda e: -e[2], 0)
    with pytest.raises(ConfigurationError, match=r"<lambda> returned -1 for element \('a', 1, 1\)"):
        h.push([("a", 1, 1)], [1])
    h.close()

    def zero_gap(element: Any) -> int:
        return 1 // element[2]

    h = _session_harness(backend, tmp_path / "raising", zero_gap, 0)
    with pytest.raises(
        UserFunctionError, match=r"with_dynamic_gap\(.*zero_gap\) of operator 's' raised Zero"
    ):
        h.push([("a", 1, 0)], [1])
    h.close()


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
    # The general path's state windows (session_slots=False); test_window_session_slots covers the other.
    h = _session_harness(backend, tmp_path, 5, 0, aggregate=agg, window_fn=None, session_slots=False)
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
