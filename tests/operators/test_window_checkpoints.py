"""Snapshot -> fresh operator on a fresh backend -> restore -> continue equals an uninterrupted run."""

from __future__ import annotations

import tempfile
from collections import Counter
from pathlib import Path
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from streamcore import serde
from streamcore.aggregates import BloomDistinct, Count, DistinctCount, HyperLogLog, Sum, TopN, combine
from streamcore.operators.window_functions import plain
from streamcore.operators.window_operator import WindowOperator
from streamcore.windowing import (
    ContinuousEventTimeTrigger,
    EventTimeSessionWindows,
    GlobalWindows,
    SlidingEventTimeWindows,
    TumblingEventTimeWindows,
    count_window_assigner,
)
from tests.operators.test_windows import event_streams
from tests.operators.window_support import (
    LATE,
    ROCKSDB_SETTINGS,
    Harness,
    run_ops,
    run_with_restore,
    source_ops,
)

AGG = combine(
    n=Count(),
    total=Sum(lambda e: e[2]),
    top=TopN(2, by=lambda e: e[2] % 4),
    users=DistinctCount(lambda e: e[2] % 6),
    uv=HyperLogLog(lambda e: e[2], precision=8),
    seen=BloomDistinct(lambda e: e[2] % 9, capacity=100, error_rate=0.01),
)


def _row(key: Any, window: Any, value: Any) -> Any:
    if isinstance(value, dict):
        value = tuple((k, tuple(v) if isinstance(v, list) else v) for k, v in value.items())
    else:
        value = tuple(e[2] for e in value)
    return key, getattr(window, "start", None), value


def _gap(e: Any) -> int:
    return 1 + e[2] % 7


MODES = {
    # aligned fast path, accumulators (HLL and Bloom bytes, sets, heaps) in state
    "tumbling-aggregate": lambda: {"assigner": TumblingEventTimeWindows.of(10), "aggregate": AGG},
    "tumbling-aggregate-evicting": lambda: {
        "assigner": TumblingEventTimeWindows.of(8),
        "aggregate": AGG,
        "lateness": 5,
        "cache_entries": 2,
    },
    "sliding-elements-lateness": lambda: {"assigner": SlidingEventTimeWindows.of(12, 4, 1), "lateness": 6},
    "general-sliding-aggregate": lambda: {
        "assigner": SlidingEventTimeWindows.of(9, 3),
        "aggregate": AGG,
        "fast_path": False,
        "lateness": 4,
    },
    "sessions": lambda: {"assigner": EventTimeSessionWindows.with_gap(4), "aggregate": AGG, "lateness": 3},
    "session-elements": lambda: {"assigner": EventTimeSessionWindows.with_gap(6)},
    "dynamic-sessions": lambda: {
        "assigner": EventTimeSessionWindows.with_dynamic_gap(_gap),
        "aggregate": AGG,
        "lateness": 2,
    },
    "end-of-stream": lambda: {
        "assigner": GlobalWindows.create_with_end_of_stream_trigger(),
        "aggregate": AGG,
    },
    "continuous-trigger": lambda: {
        "assigner": TumblingEventTimeWindows.of(30),
        "trigger": ContinuousEventTimeTrigger.of(7),
        "aggregate": AGG,
    },
    "count-sliding": lambda: {"assigner": count_window_assigner(3, 2)},
}


def _make(mode: str) -> Any:
    spec = MODES[mode]()

    def make() -> WindowOperator:
        return WindowOperator(
            "w",
            "w",
            lambda e: e[0],
            spec["assigner"],
            trigger=spec.get("trigger"),
            allowed_lateness=spec.get("lateness", 0),
            late_tag=LATE,
            aggregate=spec.get("aggregate"),
            window_fn=plain(_row),
            fast_path=spec.get("fast_path", True),
            cache_entries=spec.get("cache_entries"),
        )

    return make


def check_restore(mode: str, before: str, after: str, stream: Any, cut_at: float) -> None:
    records, bound, batch_size = stream
    ops = source_ops(records, batch_size, bound)
    cut = int(len(ops) * cut_at)
    make = _make(mode)
    with tempfile.TemporaryDirectory() as d:
        full = Harness(make, before, Path(d) / "full").open()
        run_ops(full, ops)
        expected = Counter(full.outputs())
        expected_late = full.late.values
        full.close()

        outputs, late = run_with_restore(make, before, after, ops, cut, Path(d))
    got = Counter(outputs)
    assert got == expected
    assert late == expected_late


@pytest.mark.parametrize("mode", sorted(MODES))
@given(stream=event_streams(), cut_at=st.floats(0.0, 1.0))
def test_restore_in_the_middle_equals_an_uninterrupted_run(mode: str, stream: Any, cut_at: float) -> None:
    check_restore(mode, "heap", "heap", stream, cut_at)


@pytest.mark.parametrize(
    "mode",
    [
        "tumbling-aggregate",
        "tumbling-aggregate-evicting",
        "general-sliding-aggregate",
        "sessions",
        "dynamic-sessions",
        "end-of-stream",
    ],
)
@pytest.mark.parametrize("before, after", [("rocksdb", "rocksdb"), ("heap", "rocksdb"), ("rocksdb", "heap")])
@ROCKSDB_SETTINGS
@given(stream=event_streams(), cut_at=st.floats(0.0, 1.0))
def test_restore_with_rocksdb_and_across_backends(
    mode: str, before: str, after: str, stream: Any, cut_at: float
) -> None:
    check_restore(mode, before, after, stream, cut_at)


def test_snapshot_of_the_heap_backend_holds_serialized_accumulators() -> None:
    h = Harness(_make("tumbling-aggregate")).open()
    h.push([("a", 1, 5), ("a", 2, 6)], [1, 2])
    image = h.snapshot()
    rows = image["keyed"]["states"]["window-contents"]["rows"]
    ((_kg, key, ns, acc),) = rows
    assert key == "a" and ns == (0, 10)
    assert isinstance(acc[4], bytes)  # the HyperLogLog sketch
    assert image["operator"] == {"windows": [[h.op.key_context.key_group_of("a"), "a", 0, 10, 0]]}
    # The live accumulator was not touched by the snapshot.
    h.advance(100)
    assert h.out.values[0][2][0] == ("n", 2)
    h.close()


@pytest.mark.parametrize("fast", [True, False], ids=["aligned", "general"])
def test_element_for_a_fired_window_before_the_first_watermark_after_restore_fires_it_again(
    fast: bool,
) -> None:
    """After a restore the operator's watermark starts over (as in Flink): the window waits for it again."""

    def make() -> WindowOperator:
        return WindowOperator(
            "w",
            "w",
            lambda e: e[0],
            TumblingEventTimeWindows.of(10),
            allowed_lateness=20,
            aggregate=Count(),
            fast_path=fast,
        )

    first = Harness(make).open()
    first.push([("a", 1, 0)], [1])
    first.advance(10)
    assert first.outputs() == [(1, 9)]
    image = serde.msgpack_loads(serde.msgpack_dumps(first.snapshot()))
    first.close()
    second = Harness(make).open(image)
    second.push([("a", 2, 1)], [2])
    assert second.outputs() == []
    second.advance(10)
    assert second.outputs() == [(2, 9)]
    second.advance(100)
    assert second.outputs() == [(2, 9)]
    second.close()
