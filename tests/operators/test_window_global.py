"""The global window fired when the input ends (Flink's ``GlobalWindows.createWithEndOfStreamTrigger``)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

import streamcore as sc
from streamcore import serde
from streamcore.aggregates import Count
from streamcore.operators.window_functions import plain
from streamcore.operators.window_operator import WindowOperator
from streamcore.time import MAX_TIMESTAMP
from streamcore.windowing import CountTrigger, EndOfStreamTrigger, GlobalWindows
from tests.operators.window_support import BACKENDS, Harness, skip_without


def _sum_reducer(a: tuple[str, int], b: tuple[str, int]) -> tuple[str, int]:
    return a[0], a[1] + b[1]


def _end_of_stream(backend: str, state_dir: Path, **kw: Any) -> Harness:
    from streamcore.aggregates.base import ReduceAggregate

    kw.setdefault("aggregate", ReduceAggregate(_sum_reducer))
    return Harness(
        lambda: WindowOperator(
            "g", "g", lambda e: e[0], GlobalWindows.create_with_end_of_stream_trigger(), **kw
        ),
        backend,
        state_dir,
    )


def test_the_assigner_and_its_trigger() -> None:
    assigner = GlobalWindows.create_with_end_of_stream_trigger()
    assert isinstance(assigner.get_default_trigger(), EndOfStreamTrigger)
    assert not assigner.is_event_time()
    assert assigner.get_default_evictor() is None
    assert repr(assigner) == "GlobalWindows.create_with_end_of_stream_trigger()"
    assert repr(GlobalWindows.create()) == "GlobalWindows.create()"


@pytest.mark.parametrize("backend", BACKENDS)
def test_end_of_stream_trigger_as_in_flink(backend: str, tmp_path: Path) -> None:
    """Port of Flink's WindowOperatorTest.testEndOfStreamTrigger: nothing fires before the final watermark."""
    h = _end_of_stream(backend, tmp_path).open()
    elements = [
        (("key2", 1), 3000),
        (("key2", 1), 3999),
        (("key1", 1), 20),
        (("key1", 1), 0),
        (("key1", 1), 999),
        (("key2", 1), 1998),
        (("key2", 1), 1999),
        (("key2", 1), 1000),
    ]
    h.push([e for e, _ in elements], [ts for _, ts in elements])
    assert h.outputs() == []
    h.advance(10_000)  # any watermark short of the end of input
    assert h.outputs() == []
    assert h.op.timers.num_event_timers() == 2  # one per key, however many elements
    h.advance(MAX_TIMESTAMP)
    assert sorted(h.outputs()) == [(("key1", 3), MAX_TIMESTAMP), (("key2", 5), MAX_TIMESTAMP)]
    assert h.op.timers.num_event_timers() == 0
    h.close()


@pytest.mark.parametrize("backend", BACKENDS)
def test_a_snapshot_before_the_end_keeps_contents_and_the_end_timer(backend: str, tmp_path: Path) -> None:
    # Each restore gets its own image: a heap restore keeps the image's lists as its state.
    fn = plain(_key_and_values)
    first = _end_of_stream(backend, tmp_path / "first", aggregate=None, window_fn=fn).open()
    first.push([("a", 1), ("b", 2), ("a", 3)], [5, 1, 2])
    stored = serde.msgpack_dumps(first.snapshot())
    first.close()
    for target in BACKENDS:
        second = _end_of_stream(target, tmp_path / f"second-{target}", aggregate=None, window_fn=fn)
        second.open(serde.msgpack_loads(stored))
        second.push([("b", 4)], [0])
        second.advance(MAX_TIMESTAMP)
        assert sorted(second.outputs()) == [(("a", (1, 3)), MAX_TIMESTAMP), (("b", (2, 4)), MAX_TIMESTAMP)]
        second.close()


def _key_and_values(key: Any, window: Any, elements: Any) -> Any:
    return key, tuple(e[1] for e in elements)


@pytest.mark.parametrize("backend", BACKENDS)
def test_through_the_api_without_timestamps(backend: str, tmp_path: Path) -> None:
    """Elements need no timestamps: the final watermark of a bounded input fires every key once."""
    skip_without(backend)
    env = sc.StreamEnvironment(batch_size=3, state_backend=backend, state_dir=tmp_path)
    words = ["to", "be", "or", "not", "to", "be"]
    out = (
        env.from_collection(words)
        .key_by(lambda w: w)
        .window(GlobalWindows.create_with_end_of_stream_trigger())
        .aggregate(Count(), lambda word, window, n: (word, n))
        .execute_and_collect()
    )
    assert sorted(out) == [("be", 2), ("not", 1), ("or", 1), ("to", 2)]
    env = sc.StreamEnvironment(batch_size=4)
    everything = (
        env.from_collection(list(range(10)))
        .window_all(GlobalWindows.create_with_end_of_stream_trigger())
        .apply(lambda window, values: tuple(values))
        .execute_and_collect()
    )
    assert everything == [tuple(range(10))]


def test_another_trigger_replaces_the_end_of_stream_trigger() -> None:
    env = sc.StreamEnvironment()
    out = (
        env.from_collection(list(range(5)))
        .key_by(lambda x: 0)
        .window(GlobalWindows.create_with_end_of_stream_trigger())
        .trigger(CountTrigger.of(2))
        .apply(lambda key, window, values: tuple(values))
        .execute_and_collect()
    )
    assert out == [(0, 1), (0, 1, 2, 3)]
