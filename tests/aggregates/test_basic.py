"""Count, Sum, Min, Max, Avg, ReduceAggregate and the shared base: oracles, merges, msgpack round trips."""

from __future__ import annotations

import doctest
import importlib
import math
import operator
import os
import subprocess
import sys
from collections import namedtuple
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from streamcore.aggregates import (
    AggregateFunction,
    Avg,
    Count,
    Max,
    Min,
    ReduceAggregate,
    Sum,
)
from streamcore.aggregates.base import field_getter
from streamcore.errors import ConfigurationError, SerializationError
from streamcore.serde import msgpack_dumps, msgpack_loads

ints = st.integers(min_value=-(2**70), max_value=2**70)
int_lists = st.lists(ints, max_size=40)


def through_msgpack(function: AggregateFunction, acc: Any) -> Any:
    return function.deserialize_accumulator(msgpack_loads(msgpack_dumps(function.serialize_accumulator(acc))))


def aggregate(function: AggregateFunction, values: list, batch: bool = True) -> Any:
    acc = function.create_accumulator()
    if batch:
        return function.add_batch(values, acc)
    for value in values:
        acc = function.add(value, acc)
    return acc


def check_contract(function: AggregateFunction, values: list, cut: int) -> Any:
    """Batch == one by one == merge of two halves == the same after msgpack; returns the result."""
    result = function.get_result(aggregate(function, values, batch=False))
    assert function.get_result(aggregate(function, values)) == result
    left = through_msgpack(function, aggregate(function, values[:cut]))
    right = through_msgpack(function, aggregate(function, values[cut:]))
    assert function.get_result(function.merge(left, right)) == result
    assert function.get_result(through_msgpack(function, aggregate(function, values))) == result
    return result


@given(int_lists, st.integers(0, 40))
def test_count(values: list[int], cut: int) -> None:
    assert check_contract(Count(), values, cut) == len(values)


@given(int_lists, st.integers(0, 40))
def test_sum_is_exact_for_ints_of_any_size(values: list[int], cut: int) -> None:
    assert check_contract(Sum(), values, cut) == sum(values)


@given(int_lists, st.integers(0, 40))
def test_min_and_max(values: list[int], cut: int) -> None:
    assert check_contract(Min(), values, cut) == (min(values) if values else None)
    assert check_contract(Max(), values, cut) == (max(values) if values else None)


@given(int_lists, st.integers(0, 40))
def test_avg(values: list[int], cut: int) -> None:
    expected = sum(values) / len(values) if values else None
    assert check_contract(Avg(), values, cut) == expected


@given(st.lists(st.floats(-1e9, 1e9), max_size=40), st.integers(0, 40))
def test_float_sum_and_avg_match_fsum_closely(values: list[float], cut: int) -> None:
    s, a = Sum(), Avg()
    merged = s.merge(aggregate(s, values[:cut]), aggregate(s, values[cut:]))
    assert math.isclose(s.get_result(merged), math.fsum(values), rel_tol=1e-9, abs_tol=1e-3)
    if values:
        mean = a.get_result(a.merge(aggregate(a, values[:cut]), aggregate(a, values[cut:])))
        assert math.isclose(mean, math.fsum(values) / len(values), rel_tol=1e-9, abs_tol=1e-3)


@given(st.lists(st.tuples(st.integers(0, 3), st.text(max_size=3)), max_size=30), st.integers(0, 30))
def test_min_max_of_tuples_keep_the_first_of_equals_and_survive_msgpack(values: list, cut: int) -> None:
    first = operator.itemgetter(0)
    assert check_contract(Min(first), values, cut) == (min(map(first, values)) if values else None)
    assert check_contract(Max(), values, cut) == (max(values) if values else None)
    records = [{"k": k, "tag": t} for k, t in values]
    lowest = Min(lambda r: (r["k"], r["tag"]))
    expected = min(((r["k"], r["tag"]) for r in records), default=None)
    result = check_contract(lowest, records, cut)
    assert result == expected
    assert result is None or type(result) is tuple


def test_fields_read_dict_keys_attributes_and_callables() -> None:
    Point = namedtuple("Point", "x y")
    assert aggregate_result(Sum("x"), [{"x": 1}, {"x": 2}]) == 3
    assert aggregate_result(Sum("y"), [Point(0, 4), Point(0, 5)]) == 9
    assert aggregate_result(Max(lambda p: p.x - p.y), [Point(9, 1), Point(3, 0)]) == 8
    with pytest.raises(KeyError):
        aggregate_result(Sum("missing"), [{"x": 1}])
    with pytest.raises(ConfigurationError, match="field must be"):
        Sum(3)  # type: ignore[arg-type]
    assert field_getter(None) is None


def aggregate_result(function: AggregateFunction, values: list) -> Any:
    return function.get_result(aggregate(function, values))


def test_empty_windows() -> None:
    assert [aggregate_result(f, []) for f in (Count(), Sum(), Min(), Max(), Avg())] == [
        0,
        0,
        None,
        None,
        None,
    ]
    m = Min()
    assert m.merge(m.create_accumulator(), m.create_accumulator()) is None


@given(int_lists, st.integers(0, 40))
def test_reduce_aggregate(values: list[int], cut: int) -> None:
    result = check_contract(ReduceAggregate(max), values, cut)
    assert result == (max(values) if values else None)
    concat = ReduceAggregate(operator.add)
    words = [str(v) for v in values]
    assert check_contract(concat, words, cut) == ("".join(words) if words else None)


def test_reduce_aggregate_needs_a_callable() -> None:
    with pytest.raises(ConfigurationError, match="callable"):
        ReduceAggregate(42)  # type: ignore[arg-type]


values_tree = st.recursive(
    st.one_of(
        ints, st.floats(allow_nan=False), st.text(max_size=5), st.binary(max_size=5), st.booleans(), st.none()
    ),
    lambda inner: st.one_of(
        st.lists(inner, max_size=4),
        st.tuples(inner, inner),
        st.dictionaries(
            st.one_of(st.text(max_size=3), st.integers(), st.tuples(st.integers())), inner, max_size=3
        ),
    ),
    max_leaves=12,
)


@given(values_tree)
def test_reduce_accumulators_round_trip_any_value(value: Any) -> None:
    # Regression: big ints inside tuples came back as msgpack ExtType(2) (two codecs shared code 1).
    f = ReduceAggregate(lambda a, b: b)
    acc = f.add(value, f.create_accumulator())
    decoded = f.get_result(through_msgpack(f, acc))
    assert decoded == value
    assert _shape(decoded) == _shape(value)


def _shape(value: Any) -> Any:
    """Types all the way down (tuples must stay tuples, lists lists)."""
    if isinstance(value, (list, tuple)):
        return (type(value), [_shape(v) for v in value])
    if isinstance(value, dict):
        return (dict, sorted((repr(_shape(k)), repr(_shape(v))) for k, v in value.items()))
    return type(value)


def test_accumulators_of_types_the_codec_cannot_carry_fail_clearly() -> None:
    with pytest.raises(SerializationError, match="Decimal"):
        through_msgpack(Sum(), Decimal("1.5"))


def test_repr_and_abstract_contract() -> None:
    assert repr(Sum("amount")) == "Sum('amount')"
    assert repr(Count()) == "Count()"
    with pytest.raises(TypeError):
        AggregateFunction()  # type: ignore[abstract]


def test_min_and_max_keep_the_first_of_equal_values_across_batches_and_merges() -> None:
    for function in (Min(), Max()):
        acc = function.add_batch([1.0, 1, True], function.create_accumulator())
        assert type(function.get_result(acc)) is float
        merged = function.merge(function.add(2 - 1, function.create_accumulator()), acc)
        assert type(function.get_result(merged)) is int


AGGREGATE_MODULES = ["__init__", "base", "basic", "combine", "distinct", "hashing", "sketches", "topn"]


@pytest.mark.parametrize("module_name", AGGREGATE_MODULES)
def test_docstring_examples_run(module_name: str) -> None:
    name = "streamcore.aggregates" + ("" if module_name == "__init__" else f".{module_name}")
    module = importlib.import_module(name)
    failed, attempted = doctest.testmod(module, optionflags=doctest.ELLIPSIS)
    assert failed == 0
    assert attempted > 0


def test_public_names_exist_are_sorted_and_documented() -> None:
    package = importlib.import_module("streamcore.aggregates")
    assert package.__all__ == sorted(package.__all__)
    for name in package.__all__:
        assert getattr(package, name).__doc__, name


def test_importing_the_package_does_not_import_numpy() -> None:
    code = (
        "import sys, streamcore.aggregates as a\n"
        "a.Count()\n"
        "assert 'numpy' not in sys.modules\n"
        "a.HyperLogLog()\n"
    )
    env = {**os.environ, "PYTHONPATH": str(Path(__file__).resolve().parents[2])}
    subprocess.run([sys.executable, "-c", code], env=env, check=True)
