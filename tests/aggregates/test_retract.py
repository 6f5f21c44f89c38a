"""Retraction in the aggregate contract: retract undoes add, against an oracle over the remaining values."""

from __future__ import annotations

from collections import Counter
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from streamcore.aggregates import (
    AggregateFunction,
    Avg,
    Count,
    DistinctCount,
    HyperLogLog,
    Max,
    Min,
    ReduceAggregate,
    Sum,
    TopN,
    combine,
)
from streamcore.errors import ChangelogError
from streamcore.serde import msgpack_dumps, msgpack_loads


def through_msgpack(function: AggregateFunction, acc: Any) -> Any:
    return function.deserialize_accumulator(msgpack_loads(msgpack_dumps(function.serialize_accumulator(acc))))


def oracle(values: list[int]) -> dict[str, Any]:
    return {
        "n": len(values),
        "total": sum(values),
        "low": min(values, default=None),
        "high": max(values, default=None),
        "distinct": len(set(values)),
        "mean": sum(values) / len(values) if values else None,
    }


def all_retractable() -> AggregateFunction:
    return combine(
        n=Count(),
        total=Sum(),
        low=Min(retractable=True),
        high=Max(retractable=True),
        distinct=DistinctCount(retractable=True),
        mean=Avg(),
    )


# Each step adds a value or retracts one still held (index into the held values).
steps = st.lists(st.tuples(st.booleans(), st.integers(-5, 5), st.integers(0, 100)), max_size=60)


@given(steps, st.booleans())
def test_retract_undoes_add_for_every_retractable_function(
    script: list[tuple[bool, int, int]], batch: bool
) -> None:
    f = all_retractable()
    acc = f.create_accumulator()
    held: list[int] = []
    for add, value, pick in script:
        if add or not held:
            acc = f.add_batch([value], acc) if batch else f.add(value, acc)
            held.append(value)
        else:
            gone = held.pop(pick % len(held))
            acc = f.retract(gone, acc)
        acc = through_msgpack(f, acc)
        assert f.get_result(acc) == oracle(held)


def test_supports_retract_says_which_can() -> None:
    assert Count().supports_retract and Sum().supports_retract and Avg().supports_retract
    assert Min(retractable=True).supports_retract and Max("x", retractable=True).supports_retract
    assert DistinctCount(retractable=True).supports_retract
    assert all_retractable().supports_retract
    for f in (Min(), Max(), DistinctCount(), HyperLogLog(), TopN(2), ReduceAggregate(min)):
        assert not f.supports_retract, f
    assert not combine(n=Count(), low=Min()).supports_retract


@pytest.mark.parametrize("function", [Min(), Max("x"), DistinctCount(), TopN(2), ReduceAggregate(min)])
def test_default_retract_raises_naming_the_function(function: AggregateFunction) -> None:
    with pytest.raises(NotImplementedError, match=r"cannot retract") as info:
        function.retract(1, function.create_accumulator())
    assert repr(function) in str(info.value)


def test_combined_retract_names_the_member_that_cannot() -> None:
    f = combine(n=Count(), low=Min("v"))
    with pytest.raises(NotImplementedError, match=r"Min\('v'\)"):
        f.retract({"v": 1}, f.add({"v": 1}, f.create_accumulator()))


@pytest.mark.parametrize(
    "function", [Min(retractable=True), Max(retractable=True), DistinctCount(retractable=True)]
)
def test_retracting_a_value_never_added_is_a_changelog_error(function: AggregateFunction) -> None:
    acc = function.add(1, function.create_accumulator())
    with pytest.raises(ChangelogError, match=r"retracts 2"):
        function.retract(2, acc)


def test_retractable_min_max_keep_a_multiset_and_merge() -> None:
    low, high = Min(lambda r: r[1], retractable=True), Max(lambda r: r[1], retractable=True)
    rows = [("a", 3), ("b", 1), ("c", 1), ("d", 7)]
    a = low.add_batch(rows[:2], low.create_accumulator())
    b = low.add_batch(rows[2:], low.create_accumulator())
    acc = low.merge(a, b)
    assert acc == Counter({1: 2, 3: 1, 7: 1})
    assert low.get_result(low.retract(("b", 1), acc)) == 1  # the other 1 is still there
    assert low.get_result(low.retract(("c", 1), acc)) == 3
    h = high.add_batch(rows, high.create_accumulator())
    assert high.get_result(high.retract(("d", 7), h)) == 3
    assert repr(low).endswith("retractable=True)") and repr(Min(retractable=True)) == "Min(retractable=True)"


def test_retractable_accumulators_empty_back_to_the_empty_result() -> None:
    f = all_retractable()
    acc = f.add_batch([4, 4], f.create_accumulator())
    acc = f.retract(4, f.retract(4, acc))
    assert f.get_result(acc) == oracle([])


@pytest.mark.parametrize("backend", ["heap", "rocksdb"])
def test_retractable_members_fold_in_windows_as_the_plain_ones(backend: str, tmp_path: Any) -> None:
    import streamcore as sc

    rows = [(k, v, t) for t, (k, v) in enumerate([("a", 3), ("b", 1), ("a", 1), ("a", 7), ("b", 4)] * 3)]

    def run(agg: AggregateFunction, name: str) -> list[Any]:
        env = sc.StreamEnvironment(state_backend=backend, state_dir=str(tmp_path / name), batch_size=4)
        return (
            env.from_collection(rows, timestamp=lambda r: r[2])
            .key_by(lambda r: r[0])
            .window(sc.TumblingEventTimeWindows.of(5))
            .aggregate(agg, window_function=lambda key, window, result: (key, window.end, result))
            .execute_and_collect()
        )

    def value(r: Any) -> int:
        return r[1]

    plain = run(combine(n=Count(), low=Min(value), high=Max(value), d=DistinctCount(value)), "plain")
    retractable = run(
        combine(
            n=Count(),
            low=Min(value, retractable=True),
            high=Max(value, retractable=True),
            d=DistinctCount(value, retractable=True),
        ),
        "retractable",
    )
    assert sorted(retractable, key=repr) == sorted(plain, key=repr) and len(plain) == 6
