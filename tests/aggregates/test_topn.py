"""TopN against heapq.nlargest, including the order of ties, across batches, merges and msgpack."""

from __future__ import annotations

import heapq
import itertools
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from streamcore.aggregates import TopN
from streamcore.errors import ConfigurationError
from streamcore.serde import msgpack_dumps, msgpack_loads

# Few distinct scores, so ties are common; ids tell equal-scored records apart.
records = st.lists(st.tuples(st.integers(0, 6), st.integers()), max_size=50).map(
    lambda rows: [{"score": s, "id": i, "pos": n} for n, (s, i) in enumerate(rows)]
)


def through_msgpack(top: TopN, acc: Any) -> Any:
    return top.deserialize_accumulator(msgpack_loads(msgpack_dumps(top.serialize_accumulator(acc))))


def split_in_batches(values: list, cuts: list[int]) -> list[list]:
    bounds = [0, *sorted(min(c, len(values)) for c in cuts), len(values)]
    return [values[a:b] for a, b in itertools.pairwise(bounds)]


@given(records, st.integers(1, 8), st.lists(st.integers(0, 50), max_size=3))
def test_equals_nlargest_including_tie_order(rows: list[dict], n: int, cuts: list[int]) -> None:
    top = TopN(n, by="score")
    expected = heapq.nlargest(n, rows, key=lambda r: r["score"])
    one_by_one = top.create_accumulator()
    for row in rows:
        one_by_one = top.add(row, one_by_one)
    assert top.get_result(one_by_one) == expected
    batched = top.create_accumulator()
    for batch in split_in_batches(rows, cuts):
        batched = top.add_batch(batch, batched)
    assert top.get_result(batched) == expected
    assert top.get_result(through_msgpack(top, batched)) == expected


@given(records, st.integers(1, 8), st.lists(st.integers(0, 50), min_size=1, max_size=4))
def test_merging_partial_accumulators_equals_aggregate_of_concatenation(
    rows: list[dict], n: int, cuts: list[int]
) -> None:
    top = TopN(n, by="score")
    partials = [
        through_msgpack(top, top.add_batch(b, top.create_accumulator())) for b in split_in_batches(rows, cuts)
    ]
    merged = partials[0]
    for partial in partials[1:]:
        merged = top.merge(merged, partial)
    assert top.get_result(merged) == heapq.nlargest(n, rows, key=lambda r: r["score"])
    assert merged[0] == len(rows)


@given(
    st.lists(st.one_of(st.integers(-5, 5), st.floats(-5, 5, allow_nan=False)), max_size=40), st.integers(1, 6)
)
def test_plain_values_rank_themselves(values: list, n: int) -> None:
    top = TopN(n)
    acc = through_msgpack(top, top.add_batch(values, top.create_accumulator()))
    result = top.get_result(acc)
    assert result == heapq.nlargest(n, values)
    assert [type(v) for v in result] == [type(v) for v in heapq.nlargest(n, values)]  # 1 vs 1.0: which one


@given(st.lists(st.tuples(st.text(max_size=2), st.integers(0, 3)), max_size=30), st.integers(1, 5))
def test_key_callable_and_tuple_values_survive_msgpack(values: list[tuple], n: int) -> None:
    top = TopN(n, key=lambda v: (v[1], v[0]))
    acc = through_msgpack(top, top.add_batch(values, top.create_accumulator()))
    result = top.get_result(acc)
    assert result == heapq.nlargest(n, values, key=lambda v: (v[1], v[0]))
    assert all(type(v) is tuple for v in result)


def test_values_are_never_compared() -> None:
    class Opaque:
        def __lt__(self, other: object) -> bool:
            raise AssertionError("values must not be compared")

    top = TopN(2, by=lambda v: 1)
    items = [Opaque() for _ in range(5)]
    acc = top.add_batch(items[:3], top.create_accumulator())
    acc = top.merge(acc, top.add_batch(items[3:], top.create_accumulator()))
    assert top.get_result(acc) == items[:2]


def test_memory_is_bounded_by_n() -> None:
    top = TopN(3)
    acc = top.add_batch(list(range(10_000)), top.create_accumulator())
    assert len(acc[1]) == 3
    assert top.get_result(acc) == [9_999, 9_998, 9_997]


def test_rejects_bad_arguments() -> None:
    with pytest.raises(ConfigurationError, match="positive int"):
        TopN(0)
    with pytest.raises(ConfigurationError, match="not both"):
        TopN(3, by="x", key=lambda v: v)
    with pytest.raises(ConfigurationError, match="callable"):
        TopN(3, key="x")  # type: ignore[arg-type]
    assert repr(TopN(3, by="x")) == "TopN(3, by='x')"
