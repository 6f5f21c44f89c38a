"""DistinctCount, HyperLogLog and BloomDistinct against exact oracles."""

from __future__ import annotations

from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from streamcore.aggregates import AggregateFunction, BloomDistinct, DistinctCount, HyperLogLog
from streamcore.aggregates.sketches import BloomFilter, HyperLogLogSketch
from streamcore.errors import ConfigurationError
from streamcore.serde import msgpack_dumps, msgpack_loads

hashables = st.one_of(
    st.integers(-(2**63), 2**63 - 1),
    st.text(max_size=6),
    st.binary(max_size=4),
    st.tuples(st.integers(0, 5), st.text(max_size=2)),
)


def through_msgpack(function: AggregateFunction, acc: Any) -> Any:
    return function.deserialize_accumulator(msgpack_loads(msgpack_dumps(function.serialize_accumulator(acc))))


def run(function: AggregateFunction, values: list, batch: bool = True) -> Any:
    acc = function.create_accumulator()
    if batch:
        return function.add_batch(values, acc)
    for value in values:
        acc = function.add(value, acc)
    return acc


@given(st.lists(hashables, max_size=60), st.integers(0, 60))
def test_distinct_count_is_exact(values: list, cut: int) -> None:
    f = DistinctCount()
    expected = len(set(values))
    assert f.get_result(run(f, values)) == expected
    assert f.get_result(run(f, values, batch=False)) == expected
    left, right = through_msgpack(f, run(f, values[:cut])), through_msgpack(f, run(f, values[cut:]))
    merged = f.merge(left, right)
    assert merged == set(values)
    assert f.get_result(merged) == expected


def test_distinct_count_reads_fields() -> None:
    f = DistinctCount("user")
    rows = [{"user": ("a", 1)}, {"user": ("a", 1)}, {"user": ("b", 1)}]
    acc = through_msgpack(f, run(f, rows))
    assert acc == {("a", 1), ("b", 1)}


@given(st.lists(hashables, max_size=60), st.integers(0, 60))
def test_hyperloglog_merge_equals_aggregate_of_concatenation(values: list, cut: int) -> None:
    f = HyperLogLog(precision=10)
    whole = run(f, values)
    assert whole == run(f, values, batch=False)
    merged = f.merge(through_msgpack(f, run(f, values[:cut])), through_msgpack(f, run(f, values[cut:])))
    assert merged == whole
    assert f.get_result(merged) == f.get_result(whole)
    # No accuracy bound here: a search over inputs finds register collisions at will.
    # Accuracy is tested on fixed inputs in test_sketches.py.


def test_hyperloglog_estimates_large_cardinality_with_fields() -> None:
    f = HyperLogLog("id", precision=14)
    acc = f.create_accumulator()
    for start in range(0, 300_000, 10_000):
        acc = f.add_batch([{"id": f"user-{i % 200_000}"} for i in range(start, start + 10_000)], acc)
    assert abs(f.get_result(acc) / 200_000 - 1) < 3 * 1.04 / 128
    assert isinstance(f.serialize_accumulator(acc), bytes)


def test_hyperloglog_refuses_state_of_another_precision() -> None:
    stored = HyperLogLog(precision=12).serialize_accumulator(HyperLogLogSketch(12))
    with pytest.raises(ConfigurationError, match="precision 12"):
        HyperLogLog(precision=14).deserialize_accumulator(stored)
    with pytest.raises(ConfigurationError):
        HyperLogLog(precision=2)


@given(st.lists(st.one_of(st.integers(0, 80), st.text(max_size=2)), max_size=80), st.integers(0, 80))
def test_bloom_distinct_counts_first_sightings(values: list, cut: int) -> None:
    f = BloomDistinct(capacity=20, error_rate=0.1)
    # The oracle: the documented rule, applied one value at a time.
    oracle = BloomFilter(20, 0.1)
    expected = sum(not oracle.contains(v) and oracle.add(v) for v in values)
    batched = run(f, values)
    assert f.get_result(batched) == expected
    assert f.get_result(run(f, values, batch=False)) == expected
    assert expected <= len(set(values))
    # Batches split anywhere give the same count when fed in order into one accumulator.
    acc = f.add_batch(values[cut:], f.add_batch(values[:cut], f.create_accumulator()))
    assert f.get_result(acc) == expected
    restored = through_msgpack(f, batched)
    assert restored == batched


def test_bloom_distinct_undercounts_by_at_most_about_the_error_rate() -> None:
    f = BloomDistinct("k", capacity=100_000, error_rate=0.01)
    acc = f.create_accumulator()
    for start in range(0, 150_000, 5_000):  # 100,000 distinct, each seen 1-2 times
        acc = f.add_batch([{"k": i % 100_000} for i in range(start, start + 5_000)], acc)
    result = f.get_result(acc)
    assert 100_000 * (1 - 0.01) <= result <= 100_000


def test_bloom_distinct_merge_estimates_the_overlap() -> None:
    f = BloomDistinct(capacity=50_000, error_rate=0.01)
    a = f.add_batch(list(range(0, 20_000)), f.create_accumulator())
    b = f.add_batch(list(range(10_000, 30_000)), f.create_accumulator())
    whole = f.get_result(
        f.add_batch(list(range(10_000, 30_000)), f.add_batch(list(range(20_000)), f.create_accumulator()))
    )
    merged = f.merge(a, b)
    assert abs(f.get_result(merged) - whole) / whole < 0.02
    assert merged[0] == f.add_batch(list(range(30_000)), f.create_accumulator())[0]
    # Merging an empty accumulator changes nothing, in either order.
    count = f.get_result(merged)
    assert f.get_result(f.merge(merged, f.create_accumulator())) == count
    assert f.get_result(f.merge(f.create_accumulator(), merged)) == count


def test_bloom_distinct_validates_settings() -> None:
    with pytest.raises(ConfigurationError, match="capacity"):
        BloomDistinct(capacity=0)
    stored = BloomDistinct(capacity=10).serialize_accumulator(BloomDistinct(capacity=10).create_accumulator())
    with pytest.raises(ConfigurationError, match="capacity 10"):
        BloomDistinct(capacity=20).deserialize_accumulator(stored)
