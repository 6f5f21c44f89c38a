"""The unbounded group aggregate: exact changelog shapes, a brute-force oracle over both backends
and a checkpoint at any point, TTL, and errors that name the operator and the row."""

from __future__ import annotations

import random
from collections import Counter
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

import streamcore as sc
from streamcore.aggregates import Avg, Count, DistinctCount, Max, Min, Sum, combine
from streamcore.changelog import Change, apply_changelog, row_key_selector
from streamcore.errors import ChangelogError, ConfigurationError, UserFunctionError
from streamcore.operators.group_aggregate import GroupAggregateOperator, default_result
from streamcore.testing import OperatorHarness
from tests.operators.changelog_support import (
    BACKEND_PAIRS,
    OPS,
    UA,
    UB,
    D,
    I,
    build_changelog,
    check_well_formed,
    row,
    rows_of,
    run_split,
    shuffle_per_key,
)


def _v(r: tuple[Any, ...]) -> Any:
    return r[1]


def full_agg() -> Any:
    return combine(
        n=Count(),
        total=Sum(_v),
        low=Min(_v, retractable=True),
        high=Max(_v, retractable=True),
        distinct=DistinctCount(_v, retractable=True),
        mean=Avg(_v),
    )


def oracle(table: list[tuple[Any, ...]]) -> Counter[tuple[Any, ...]]:
    groups: dict[Any, list[int]] = {}
    for r in table:
        groups.setdefault(r[0], []).append(r[1])
    return Counter(
        (k, len(vs), sum(vs), min(vs), max(vs), len(set(vs)), sum(vs) / len(vs)) for k, vs in groups.items()
    )


def make_op(**kw: Any) -> GroupAggregateOperator:
    return GroupAggregateOperator(
        "agg", "agg", kw.pop("agg", None) or full_agg(), row_key_selector(lambda r: r[0]), **kw
    )


def changes(out: list[Change]) -> list[str]:
    return [str(c) for c in out]


# -- the property: applying the output changelog gives the oracle's table ---------------------------


@pytest.mark.parametrize("backends", BACKEND_PAIRS)
@given(ops=OPS, cut=st.integers(0, 80), chunk=st.integers(1, 5), seed=st.integers(0, 2**16))
def test_output_changelog_applies_to_the_oracle_table(
    backends: tuple[str, str], ops: list[tuple[str, int, int]], cut: int, chunk: int, seed: int
) -> None:
    log = shuffle_per_key(build_changelog(ops), lambda e: row(e)[0], random.Random(seed))
    out = run_split(make_op, [(e, 0) for e in log], cut, backends, chunk=chunk)
    check_well_formed(out)
    assert Counter(apply_changelog(out)) == oracle(rows_of(log))
    # one row per key at any time: the result table never holds two rows of a group
    assert len({r[0] for r in apply_changelog(out)}) == len(apply_changelog(out))


# -- exact changelog shapes (Flink's GroupAggFunction) --------------------------------------------------


def test_insert_update_skip_and_delete_shapes() -> None:
    with OperatorHarness(make_op(agg=combine(n=Count(), high=Max(_v, retractable=True)))) as h:
        h.process_element(("a", 1, 0))
        h.process_element(("a", 5, 0))
        h.process_element(Change(UB, ("a", 1, 0)))
        assert changes(h.values()) == [
            "+I(a, 1, 1)",
            "-U(a, 1, 1)",
            "+U(a, 2, 5)",
            "-U(a, 2, 5)",
            "+U(a, 1, 5)",
        ]
        h.clear_output()
        h.process_element(Change(UA, ("a", 5, 1)))  # count changes: emitted
        h.process_element(Change(D, ("a", 5, 1)))
        assert changes(h.values()) == ["-U(a, 1, 5)", "+U(a, 2, 5)", "-U(a, 2, 5)", "+U(a, 1, 5)"]
        h.clear_output()
        h.process_element(Change(D, ("a", 5, 0)))
        assert changes(h.values()) == ["-D(a, 1, 5)"]
        h.clear_output()
        h.process_element(("a", 2, 0))  # the group starts over
        assert changes(h.values()) == ["+I(a, 1, 2)"]


def test_an_unchanged_result_emits_nothing() -> None:
    with OperatorHarness(make_op(agg=Max(_v, retractable=True))) as h:
        h.process_elements([("a", 5, 0), ("a", 3, 0), Change(D, ("a", 3, 0)), ("a", 5, 1)])
        assert changes(h.values()) == ["+I(a, 5)"]


def test_the_row_count_is_kept_apart_from_the_accumulator() -> None:
    # Sum reaches 0 while the group still has rows: an update, not a delete.
    with OperatorHarness(make_op(agg=Sum(_v))) as h:
        h.process_elements([("a", 2, 0), ("a", -2, 0), Change(D, ("a", -2, 0)), Change(D, ("a", 2, 0))])
        assert changes(h.values()) == ["+I(a, 2)", "-U(a, 2)", "+U(a, 0)", "-U(a, 0)", "+U(a, 2)", "-D(a, 2)"]
        assert h.operator.state.value() is None


def test_outputs_carry_the_timestamp_of_their_input_and_watermarks_pass() -> None:
    with OperatorHarness(make_op(agg=Count())) as h:
        h.process_elements([("a", 1, 0), ("a", 2, 0)], [10, 20])
        h.process_watermark(100)
        h.process_elements([("a", 3, 0)], [5])  # not late: the result does not depend on time
        assert h.output() == [
            (Change(I, ("a", 1)), 10),
            (Change(UB, ("a", 1)), 20),
            (Change(UA, ("a", 2)), 20),
            (Change(UB, ("a", 2)), 5),
            (Change(UA, ("a", 3)), 5),
        ]
        assert h.watermarks() == [100]


def test_custom_result_builds_the_row() -> None:
    op = GroupAggregateOperator(
        "agg", "agg", Count(), row_key_selector(lambda r: r[0]), result=lambda k, n: (f"{k}!", n * 10)
    )
    with OperatorHarness(op) as h:
        h.process_elements([("a", 1), ("a", 1)])
        assert changes(h.values()) == ["+I(a!, 10)", "-U(a!, 10)", "+U(a!, 20)"]


def test_default_result_flattens_tuple_keys_and_combined_results() -> None:
    assert default_result(("a", 1), {"n": 2}) == ("a", 1, 2)
    assert default_result("a", (1, 2)) == ("a", 1, 2)
    assert default_result(None, 3) == (None, 3)


# -- errors ------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("backend", ["heap", "rocksdb"])
def test_retracting_from_an_empty_group_names_operator_and_row(backend: str) -> None:
    with (
        OperatorHarness(make_op(), state_backend=backend) as h,
        pytest.raises(ChangelogError, match=r"'agg'.*-D\(k9, 1, 0\).*'k9'"),
    ):
        h.process_element(Change(D, ("k9", 1, 0)))


def test_a_retraction_into_an_aggregate_that_cannot_retract_says_what_to_use() -> None:
    with OperatorHarness(make_op(agg=Min(_v))) as h:
        h.process_element(("a", 1))
        with pytest.raises(ConfigurationError, match=r"-D\(a, 1\).*Min.*retractable=True"):
            h.process_element(Change(D, ("a", 1)))


def test_append_only_input_needs_no_retraction() -> None:
    with OperatorHarness(make_op(agg=Min(_v))) as h:
        h.process_elements([("a", 3), ("a", 1), ("a", 2)])
        assert changes(h.values()) == ["+I(a, 3)", "-U(a, 3)", "+U(a, 1)"]


def test_result_must_return_a_tuple_and_failures_name_the_function() -> None:
    def listy(k: Any, n: Any) -> Any:
        return [k, n]

    def broken(k: Any, n: Any) -> Any:
        raise RuntimeError("boom")

    with (
        OperatorHarness(make_op(agg=Count(), result=listy)) as h,
        pytest.raises(ConfigurationError, match=r"listy.*tuple"),
    ):
        h.process_element(("a", 1))
    with (
        OperatorHarness(make_op(agg=Count(), result=broken)) as h,
        pytest.raises(UserFunctionError, match=r"broken.*'agg'.*boom"),
    ):
        h.process_element(("a", 1))


def test_configuration_is_checked_when_the_job_is_built() -> None:
    env = sc.StreamEnvironment()
    keyed = env.from_collection([("a", 1)]).key_by(lambda r: r[0])
    with pytest.raises(ConfigurationError, match=r"AggregateFunction"):
        keyed.group_aggregate(lambda a, b: a)  # type: ignore[arg-type]
    with pytest.raises(ConfigurationError, match=r"state_ttl_ms"):
        keyed.group_aggregate(Count(), state_ttl_ms=0)
    with pytest.raises(ConfigurationError, match=r"result"):
        keyed.group_aggregate(Count(), result=3)  # type: ignore[arg-type]


# -- state TTL (processing time) -----------------------------------------------------------------------------


@pytest.mark.parametrize("backend", ["heap", "rocksdb"])
def test_state_ttl_expires_idle_groups_and_ignores_their_retractions(backend: str) -> None:
    with OperatorHarness(make_op(agg=Count(), state_ttl_ms=1_000), state_backend=backend) as h:
        h.process_element(("a", 1))
        h.set_processing_time(500)
        h.process_element(("a", 2))  # renews the group's lifetime to 1500
        h.set_processing_time(1_400)
        h.process_element(Change(D, ("a", 1)))
        assert changes(h.values()) == ["+I(a, 1)", "-U(a, 1)", "+U(a, 2)", "-U(a, 2)", "+U(a, 1)"]
        h.clear_output()
        h.set_processing_time(2_500)  # expired
        h.process_element(Change(D, ("a", 2)))
        assert h.values() == [] and h.operator.metrics()["retractions_ignored"] == 1
        h.process_element(("a", 3))
        assert changes(h.values()) == ["+I(a, 1)"]


# -- through the engine -------------------------------------------------------------------------------------


@pytest.mark.parametrize("backend", ["heap", "rocksdb"])
def test_through_the_engine_with_uid_name_and_timestamps(backend: str, tmp_path: Any) -> None:
    env = sc.StreamEnvironment(state_backend=backend, state_dir=str(tmp_path / "state"), batch_size=2)
    rows = [("a", 1, 10), ("b", 2, 11), Change(UB, ("a", 1, 10)), Change(UA, ("b", 7, 12)), ("a", 4, 13)]
    out = sc.CollectSink()
    (
        env.from_collection(rows, timestamp=lambda e: row(e)[2])
        .key_by(lambda r: r[0])
        .group_aggregate(combine(n=Count(), total=Sum(_v)), uid="totals", name="totals-by-key")
        .sink_to(out)
    )
    result = env.execute("group-agg")
    assert changes(out.results) == [
        "+I(a, 1, 1)",
        "+I(b, 1, 2)",
        "-D(a, 1, 1)",
        "-U(b, 1, 2)",
        "+U(b, 2, 9)",
        "+I(a, 1, 4)",
    ]
    assert out.timestamps == [10, 11, 10, 12, 12, 13]
    assert result.metrics["totals"]["records_in"] == 5


def test_a_failing_key_selector_is_named_with_where_it_is_defined() -> None:
    def region_of(r: Any) -> Any:
        return r[5]

    env = sc.StreamEnvironment()
    stream = env.from_collection([Change(D, ("a", 1))]).key_by(region_of).group_aggregate(Count())
    with pytest.raises(
        sc.errors.KeySelectorError, match=r"key_by\(.*region_of\) \(defined at .*test_group_aggregate.py"
    ):
        stream.execute_and_collect()
