"""The regular join: a brute-force oracle for every join type over both backends with a restore
at any point and shuffled input, exact changelog shapes of outer joins, TTL, errors."""

from __future__ import annotations

import random
from collections import Counter
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

import streamcore as sc
from streamcore.changelog import Change, apply_changelog, row_key_selector
from streamcore.errors import ChangelogError, ConfigurationError, KeyEncodingError, UserFunctionError
from streamcore.operators.regular_join import RegularJoinOperator
from streamcore.testing import OperatorHarness
from tests.operators.changelog_support import (
    BACKEND_PAIRS,
    OPS,
    UA,
    UB,
    D,
    I,
    build_changelog,
    row,
    rows_of,
    run_split,
    shuffle_per_key,
)

HOWS = ["inner", "left", "right", "full"]
NULLS = (None, None, None)


def at_most(lrow: tuple[Any, ...], rrow: tuple[Any, ...]) -> bool:
    """A non-equi condition: the left value is at most the right one."""
    return lrow[1] <= rrow[1]


def oracle(
    left: list[tuple[Any, ...]], right: list[tuple[Any, ...]], how: str, condition: Any = None
) -> Counter[tuple[Any, ...]]:
    def match(lrow: tuple[Any, ...], rrow: tuple[Any, ...]) -> bool:
        return lrow[0] == rrow[0] and (condition is None or condition(lrow, rrow))

    out: Counter[tuple[Any, ...]] = Counter()
    for lrow in left:
        for rrow in right:
            if match(lrow, rrow):
                out[lrow + rrow] += 1
    if how in ("left", "full"):
        out.update(lrow + NULLS for lrow in left if not any(match(lrow, rrow) for rrow in right))
    if how in ("right", "full"):
        out.update(NULLS + rrow for rrow in right if not any(match(lrow, rrow) for lrow in left))
    return out


def make_op(how: str = "inner", **kw: Any) -> RegularJoinOperator:
    key = row_key_selector(lambda r: r[0])
    kw.setdefault("left_width", 3)
    kw.setdefault("right_width", 3)
    return RegularJoinOperator("join", "join", [key, key], how, **kw)


def strs(out: list[Change]) -> list[str]:
    return [str(c) for c in out]


@pytest.mark.parametrize("backends", BACKEND_PAIRS)
@given(
    how=st.sampled_from(HOWS),
    condition=st.sampled_from([None, at_most]),
    left_ops=OPS,
    right_ops=OPS,
    cut=st.integers(0, 160),
    chunk=st.integers(1, 4),
    seed=st.integers(0, 2**16),
)
def test_output_changelog_applies_to_the_oracle_join(
    how: str,
    condition: Any,
    backends: tuple[str, str],
    left_ops: list[tuple[str, int, int]],
    right_ops: list[tuple[str, int, int]],
    cut: int,
    chunk: int,
    seed: int,
) -> None:
    left, right = build_changelog(left_ops), build_changelog(right_ops)
    tagged = [(e, 0) for e in left] + [(e, 1) for e in right]
    # any interleaving of the two sides that keeps each side's order per join key
    elements = shuffle_per_key(tagged, lambda t: (t[1], row(t[0])[0]), random.Random(seed))
    out = run_split(
        lambda: make_op(how, condition=condition), elements, cut, backends, num_inputs=2, chunk=chunk
    )
    assert all(c.kind in (I, D) for c in out)
    assert Counter(apply_changelog(out)) == oracle(rows_of(left), rows_of(right), how, condition)


# -- exact changelog shapes ------------------------------------------------------------------------------


def test_left_join_pads_retracts_and_re_emits_the_unmatched_row() -> None:
    with OperatorHarness(make_op("left", right_width=2), num_inputs=2) as h:
        h.process_element((1, "a"), side=0)
        h.process_element((1, "x"), side=1)
        h.process_element((1, "y"), side=1)
        assert strs(h.values()) == [
            "+I(1, a, None, None)",
            "-D(1, a, None, None)",
            "+I(1, a, 1, x)",
            "+I(1, a, 1, y)",
        ]
        h.clear_output()
        h.process_element(Change(D, (1, "x")), side=1)
        h.process_element(Change(UB, (1, "y")), side=1)
        assert strs(h.values()) == ["-D(1, a, 1, x)", "-D(1, a, 1, y)", "+I(1, a, None, None)"]
        h.clear_output()
        h.process_element(Change(UA, (1, "z")), side=1)
        h.process_element(Change(D, (1, "a")), side=0)
        assert strs(h.values()) == ["-D(1, a, None, None)", "+I(1, a, 1, z)", "-D(1, a, 1, z)"]


def test_full_join_pads_both_sides_and_counts_duplicate_rows() -> None:
    with OperatorHarness(make_op("full", left_width=1, right_width=1), num_inputs=2) as h:
        h.process_elements([(1,), (1,)], side=0)
        h.process_element((1,), side=1)
        assert strs(h.values()) == [
            "+I(1, None)",
            "+I(1, None)",
            "-D(1, None)",
            "-D(1, None)",
            "+I(1, 1)",
            "+I(1, 1)",
        ]
        h.clear_output()
        h.process_element(
            Change(D, (1,)), side=0
        )  # one copy of the left row goes; the right row stays matched
        assert strs(h.values()) == ["-D(1, 1)"]
        h.clear_output()
        h.process_element(Change(D, (1,)), side=0)
        assert strs(h.values()) == ["-D(1, 1)", "+I(None, 1)"]
        h.clear_output()
        h.process_element((2,), side=1)
        assert strs(h.values()) == ["+I(None, 2)"]


def test_inner_join_emits_inserts_and_deletes_with_input_timestamps() -> None:
    with OperatorHarness(make_op("inner"), num_inputs=2) as h:
        h.process_elements([("k", 1, 0)], [5], side=0)
        h.process_elements([("k", 2, 0), ("j", 3, 0)], [7, 8], side=1)
        h.process_elements([Change(UB, ("k", 1, 0))], [9], side=0)
        assert h.output() == [
            (Change(I, ("k", 1, 0, "k", 2, 0)), 7),
            (Change(D, ("k", 1, 0, "k", 2, 0)), 9),
        ]
        h.process_watermark(100)
        assert h.watermarks() == [100]


def test_a_condition_decides_matches_of_an_outer_join() -> None:
    with OperatorHarness(make_op("left", right_width=2, condition=at_most), num_inputs=2) as h:
        h.process_element((1, 5), side=0)
        h.process_element((1, 3), side=1)  # same key, but 5 > 3: no match
        h.process_element((1, 8), side=1)
        assert strs(h.values()) == ["+I(1, 5, None, None)", "-D(1, 5, None, None)", "+I(1, 5, 1, 8)"]

    def picky(lrow: Any, rrow: Any) -> bool:
        raise ValueError("no")

    with (
        OperatorHarness(make_op(condition=picky), num_inputs=2) as h,
        pytest.raises(UserFunctionError, match=r"condition .*picky of operator 'join'"),
    ):
        h.process_element((1, 5), side=0)
        h.process_element((1, 3), side=1)


def test_custom_combine_and_right_join() -> None:
    op = make_op("right", combine=lambda lrow, rrow: (lrow[1], rrow[1]), left_width=2)
    with OperatorHarness(op, num_inputs=2) as h:
        h.process_element((1, "r"), side=1)
        h.process_element((1, "l"), side=0)
        assert strs(h.values()) == ["+I(None, r)", "-D(None, r)", "+I(l, r)"]


# -- errors ------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("backend", ["heap", "rocksdb"])
def test_retracting_a_row_the_side_does_not_hold_names_operator_side_and_row(backend: str) -> None:
    with (
        OperatorHarness(make_op(), num_inputs=2, state_backend=backend) as h,
        pytest.raises(ChangelogError, match=r"'join'.*-D\(k, 1\) on its right input.*'k'"),
    ):
        h.process_element(Change(D, ("k", 1)), side=1)


def test_rows_must_be_encodable_and_combine_failures_name_the_function() -> None:
    with (
        OperatorHarness(make_op(), num_inputs=2) as h,
        pytest.raises(KeyEncodingError, match=r"'join'.*left input"),
    ):
        h.process_element(("k", {"not": "a key"}), side=0)

    def broken(lrow: Any, rrow: Any) -> Any:
        raise RuntimeError("boom")

    with (
        OperatorHarness(make_op(combine=broken), num_inputs=2) as h,
        pytest.raises(UserFunctionError, match=r"broken.*'join'.*boom"),
    ):
        h.process_element(("k", 1), side=0)
        h.process_element(("k", 2), side=1)


def test_configuration_is_checked_when_the_job_is_built() -> None:
    env = sc.StreamEnvironment()
    a, b = env.from_collection([(1,)]), env.from_collection([(1,)])
    with pytest.raises(ConfigurationError, match=r"right_width"):
        a.regular_join(b, lambda r: r[0], lambda r: r[0], "left")
    with pytest.raises(ConfigurationError, match=r"left_width"):
        a.regular_join(b, lambda r: r[0], lambda r: r[0], "full", right_width=1)
    with pytest.raises(ConfigurationError, match=r"how"):
        a.regular_join(b, lambda r: r[0], lambda r: r[0], "outer")
    with pytest.raises(ConfigurationError, match=r"state_ttl_ms"):
        a.regular_join(b, lambda r: r[0], lambda r: r[0], state_ttl_ms=-1)
    with pytest.raises(ConfigurationError, match=r"condition"):
        a.regular_join(b, lambda r: r[0], lambda r: r[0], condition=True)  # type: ignore[arg-type]
    with pytest.raises(ConfigurationError, match=r"left_key"):
        a.regular_join(b, 0, lambda r: r[0])  # type: ignore[arg-type]


@pytest.mark.parametrize("backend", ["heap", "rocksdb"])
def test_state_ttl_expires_rows_and_ignores_their_retractions(backend: str) -> None:
    with OperatorHarness(make_op("inner", state_ttl_ms=1_000), num_inputs=2, state_backend=backend) as h:
        h.process_element(("k", 1), side=0)
        h.set_processing_time(2_000)
        h.process_element(("k", 2), side=1)  # the left row expired: nothing joins
        h.process_element(Change(D, ("k", 1)), side=0)
        assert h.values() == [] and h.operator.metrics()["retractions_ignored"] == 1


@pytest.mark.parametrize("backend", ["heap", "rocksdb"])
def test_through_the_engine(backend: str, tmp_path: Any) -> None:
    env = sc.StreamEnvironment(state_backend=backend, state_dir=str(tmp_path / "state"), batch_size=2)
    orders = env.from_collection([("o1", "s1"), ("o2", "s2"), Change(D, ("o2", "s2"))])
    shops = env.from_collection([("s1", "Lyon"), ("s2", "Oslo")])
    joined = orders.regular_join(
        shops, lambda o: o[1], lambda s: s[0], "full", left_width=2, right_width=2, uid="orders-shops"
    )
    out = sc.CollectSink()
    joined.sink_to(out)
    result = env.execute("regular-join")
    assert sorted(apply_changelog(out.results), key=repr) == sorted(
        [("o1", "s1", "s1", "Lyon"), (None, None, "s2", "Oslo")], key=repr
    )
    assert result.metrics["orders-shops"]["records_in"] == 5
