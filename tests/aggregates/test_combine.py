"""combine(): several aggregates in one pass, batches delegated, accumulators serialized member-wise."""

from __future__ import annotations

import heapq
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from streamcore.aggregates import (
    AggregateFunction,
    Avg,
    BloomDistinct,
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
from streamcore.errors import ConfigurationError
from streamcore.serde import msgpack_dumps, msgpack_loads


def through_msgpack(function: AggregateFunction, acc: Any) -> Any:
    return function.deserialize_accumulator(msgpack_loads(msgpack_dumps(function.serialize_accumulator(acc))))


def everything() -> AggregateFunction:
    return combine(
        count=Count(),
        total=Sum("v"),
        low=Min("v"),
        high=Max("v"),
        mean=Avg("v"),
        users=DistinctCount("user"),
        users_hll=HyperLogLog("user", precision=10),
        users_bloom=BloomDistinct("user", capacity=1000, error_rate=0.01),
        top=TopN(2, by="v"),
        longest=ReduceAggregate(lambda a, b: b if len(b["user"]) > len(a["user"]) else a),
    )


rows = st.lists(
    st.builds(lambda v, u: {"v": v, "user": u}, st.integers(-100, 100), st.text("abc", max_size=3)),
    max_size=40,
)


@given(rows, st.integers(0, 40))
def test_results_match_each_member_and_oracles(values: list[dict], cut: int) -> None:
    f = everything()
    acc = f.add_batch(values, f.create_accumulator())
    result = f.get_result(acc)
    assert list(result) == list(f.functions)
    for name, member in f.functions.items():
        assert result[name] == member.get_result(member.add_batch(values, member.create_accumulator()))
    vs = [r["v"] for r in values]
    assert result["count"] == len(values)
    assert result["total"] == sum(vs)
    assert result["top"] == heapq.nlargest(2, values, key=lambda r: r["v"])
    assert result["users"] == len({r["user"] for r in values})
    # Merge of msgpack round-tripped halves == aggregate of the whole.
    left = through_msgpack(f, f.add_batch(values[:cut], f.create_accumulator()))
    right = through_msgpack(f, f.add_batch(values[cut:], f.create_accumulator()))
    merged = f.get_result(f.merge(left, right))
    bloom_merged, bloom_whole = merged.pop("users_bloom"), result.pop("users_bloom")
    assert merged == result
    assert abs(bloom_merged - bloom_whole) <= 1  # the merged Bloom count is an estimate


def test_one_by_one_equals_batch() -> None:
    f = everything()
    values = [{"v": i % 7, "user": "abc"[i % 3] * (i % 4)} for i in range(50)]
    acc = f.create_accumulator()
    for value in values:
        acc = f.add(value, acc)
    assert f.get_result(acc) == f.get_result(f.add_batch(values, f.create_accumulator()))


def test_add_batch_is_delegated_once_per_member() -> None:
    calls: list[int] = []

    class Spy(Count):
        def add(self, value: Any, accumulator: int) -> int:
            raise AssertionError("add_batch must not fall back to add")

        def add_batch(self, values: Any, accumulator: int) -> int:
            calls.append(len(values))
            return accumulator + len(values)

    f = combine(a=Spy(), b=Spy())
    assert f.get_result(f.add_batch([1, 2, 3], f.create_accumulator())) == {"a": 3, "b": 3}
    assert calls == [3, 3]


def test_rejects_bad_members_and_mismatched_state() -> None:
    with pytest.raises(ConfigurationError, match="at least one"):
        combine()
    with pytest.raises(ConfigurationError, match="'total' is a builtin"):
        combine(total=sum)  # type: ignore[arg-type]
    stored = combine(a=Count()).serialize_accumulator([5])
    with pytest.raises(ConfigurationError, match="2 members"):
        combine(a=Count(), b=Count()).deserialize_accumulator(stored)


def test_repr_names_members() -> None:
    assert repr(combine(n=Count(), s=Sum("x"))) == "combine(n=Count(), s=Sum('x'))"
