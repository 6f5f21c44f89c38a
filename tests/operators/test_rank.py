"""TopN: a brute-force oracle (ties by arrival, retractions remove the earliest copy) over both
backends with a restore at any point, exact changelog shapes with and without row numbers,
bounded state for append-only input, errors."""

from __future__ import annotations

import random
from collections import Counter
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

import streamcore as sc
from streamcore.changelog import Change, apply_changelog, row_key_selector
from streamcore.errors import ChangelogError, ConfigurationError, UserFunctionError
from streamcore.operators.rank import TopNOperator
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
    run_split,
    shuffle_per_key,
)


def _sk(r: tuple[Any, ...]) -> Any:
    return r[1]


def oracle(log: list[Any], n: int, descending: bool, row_number: bool) -> Counter[tuple[Any, ...]]:
    """Each partition's rows in arrival order (a retraction removes the first equal row), stably
    sorted by the sort key, cut at n."""
    parts: dict[Any, list[tuple[Any, ...]]] = {}
    for e in log:
        kind, r = (e.kind, e.row) if isinstance(e, Change) else (I, e)
        rows = parts.setdefault(r[0], [])
        if kind in (I, UA):
            rows.append(r)
        else:
            rows.remove(r)
    out: Counter[tuple[Any, ...]] = Counter()
    for rows in parts.values():
        top = sorted(rows, key=_sk, reverse=descending)[:n]
        out.update((*r, rank) if row_number else r for rank, r in enumerate(top, 1))
    return out


def make_op(n: int = 2, **kw: Any) -> TopNOperator:
    return TopNOperator("top", "top", row_key_selector(lambda r: r[0]), n, kw.pop("sort_key", _sk), **kw)


def strs(out: list[Change]) -> list[str]:
    return [str(c) for c in out]


@pytest.mark.parametrize("backends", BACKEND_PAIRS)
@given(
    ops=OPS,
    n=st.integers(1, 4),
    descending=st.booleans(),
    row_number=st.booleans(),
    append_only=st.booleans(),
    cut=st.integers(0, 80),
    chunk=st.integers(1, 5),
    seed=st.integers(0, 2**16),
)
def test_output_changelog_applies_to_the_oracle_top_n(
    backends: tuple[str, str],
    ops: list[tuple[str, int, int]],
    n: int,
    descending: bool,
    row_number: bool,
    append_only: bool,
    cut: int,
    chunk: int,
    seed: int,
) -> None:
    if append_only:
        ops = [op for op in ops if op[0] == "ins"]
    log = shuffle_per_key(build_changelog(ops), lambda e: row(e)[0], random.Random(seed))

    def op() -> TopNOperator:
        return make_op(n, descending=descending, row_number=row_number, append_only=append_only)

    out = run_split(op, [(e, 0) for e in log], cut, backends, chunk=chunk)
    check_well_formed(out)
    assert Counter(apply_changelog(out)) == oracle(log, n, descending, row_number)


# -- exact changelog shapes ------------------------------------------------------------------------------


def test_row_numbers_shift_with_update_pairs() -> None:
    with OperatorHarness(make_op(2)) as h:
        h.process_element(("a", 5))
        h.process_element(("a", 3))
        assert strs(h.values()) == ["+I(a, 5, 1)", "-U(a, 5, 1)", "+U(a, 3, 1)", "+I(a, 5, 2)"]
        h.clear_output()
        h.process_element(("a", 9))  # below the top 2: nothing
        h.process_element(("a", 4))
        assert strs(h.values()) == ["-U(a, 5, 2)", "+U(a, 4, 2)"]
        h.clear_output()
        h.process_element(Change(D, ("a", 3)))
        assert strs(h.values()) == ["-U(a, 3, 1)", "+U(a, 4, 1)", "-U(a, 4, 2)", "+U(a, 5, 2)"]
        h.clear_output()
        h.process_elements([Change(D, ("a", 9)), Change(D, ("a", 5)), Change(UB, ("a", 4))])
        assert strs(h.values()) == ["-D(a, 5, 2)", "-D(a, 4, 1)"]
        assert h.operator.state.value() is None


def test_without_row_numbers_only_entering_and_leaving_rows_change() -> None:
    with OperatorHarness(make_op(2, row_number=False)) as h:
        h.process_elements([("a", 5), ("a", 3), ("a", 9), ("a", 4)])
        assert strs(h.values()) == ["+I(a, 5)", "+I(a, 3)", "-D(a, 5)", "+I(a, 4)"]
        h.clear_output()
        h.process_element(Change(D, ("a", 3)))
        assert strs(h.values()) == ["-D(a, 3)", "+I(a, 5)"]
        h.clear_output()
        h.process_element(Change(D, ("a", 9)))  # outside the top 2
        assert h.values() == []


def test_ties_rank_by_arrival_and_a_retraction_removes_the_earliest_copy() -> None:
    with OperatorHarness(make_op(3, descending=True)) as h:
        h.process_elements([("a", 1, "x"), ("a", 1, "y"), ("a", 1, "x")])
        assert apply_changelog(h.values()) == [("a", 1, "x", 1), ("a", 1, "y", 2), ("a", 1, "x", 3)]
        h.process_element(Change(D, ("a", 1, "x")))
        assert sorted(apply_changelog(h.values()), key=lambda r: r[3]) == [("a", 1, "y", 1), ("a", 1, "x", 2)]


def test_descending_order_and_string_sort_keys() -> None:
    with OperatorHarness(make_op(2, descending=True, sort_key=lambda r: r[1])) as h:
        h.process_elements([("a", "pear"), ("a", "apple"), ("a", "zucchini")])
        assert sorted(apply_changelog(h.values()), key=lambda r: r[2]) == [
            ("a", "zucchini", 1),
            ("a", "pear", 2),
        ]


@pytest.mark.parametrize("backend", ["heap", "rocksdb"])
def test_append_only_keeps_only_the_top_n_rows(backend: str) -> None:
    with OperatorHarness(make_op(2, append_only=True), state_backend=backend) as h:
        h.process_elements([("a", v) for v in (9, 1, 8, 2, 7, 0, 5)])
        next_seq, entries = h.operator.state.value()
        assert [e[1] for e in entries] == [("a", 0), ("a", 1)]
        assert next_seq == 5  # 7 and 5 could not enter: they took no sequence number
        with pytest.raises(ChangelogError, match=r"'top'.*append_only=True.*-D\(a, 1\)"):
            h.process_element(Change(D, ("a", 1)))


def test_outputs_carry_the_input_timestamp() -> None:
    with OperatorHarness(make_op(1)) as h:
        h.process_elements([("a", 2), ("a", 1)], [10, 20])
        assert [ts for _, ts in h.output()] == [10, 20, 20]


# -- errors ------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("backend", ["heap", "rocksdb"])
def test_retracting_a_row_the_partition_does_not_hold_names_operator_and_row(backend: str) -> None:
    with (
        OperatorHarness(make_op(), state_backend=backend) as h,
        pytest.raises(ChangelogError, match=r"'top'.*-U\(a, 3\).*'a'"),
    ):
        h.process_element(("a", 2))
        h.process_element(Change(UB, ("a", 3)))


def test_sort_key_failures_name_the_function() -> None:
    def bad_key(r: Any) -> Any:
        raise KeyError("nope")

    with (
        OperatorHarness(make_op(sort_key=bad_key)) as h,
        pytest.raises(UserFunctionError, match=r"bad_key.*'top'"),
    ):
        h.process_element(("a", 1))


def test_configuration_is_checked_when_the_job_is_built() -> None:
    env = sc.StreamEnvironment()
    keyed = env.from_collection([("a", 1)]).key_by(lambda r: r[0])
    with pytest.raises(ConfigurationError, match=r"n as an int >= 1"):
        keyed.top_n(0, _sk)
    with pytest.raises(ConfigurationError, match=r"sort_key"):
        keyed.top_n(1, "x")  # type: ignore[arg-type]


@pytest.mark.parametrize("backend", ["heap", "rocksdb"])
def test_through_the_engine(backend: str, tmp_path: Any) -> None:
    env = sc.StreamEnvironment(state_backend=backend, state_dir=str(tmp_path / "state"), batch_size=2)
    rows = [("a", 3), ("b", 1), ("a", 1), Change(UB, ("a", 1)), Change(UA, ("a", 7)), ("b", 0)]
    out = sc.CollectSink()
    env.from_collection(rows).key_by(lambda r: r[0]).top_n(1, _sk, uid="top1").sink_to(out)
    result = env.execute("top-n")
    assert sorted(apply_changelog(out.results)) == [("a", 3, 1), ("b", 0, 1)]
    assert result.metrics["top1"]["records_in"] == 6
