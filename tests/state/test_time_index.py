"""TimeIndex against a sorted-list oracle: adds in any order, removals of the oldest prefix."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from streamcore.state import time_index
from streamcore.state.time_index import TimeIndex

# A program: ("add", [timestamps]) adds a batch with fresh sequence numbers, ("pop", ts) pops until ts.
ops = st.lists(
    st.one_of(
        st.tuples(st.just("add"), st.lists(st.integers(-50, 200), max_size=40)),
        st.tuples(st.just("pop"), st.integers(-60, 220)),
    ),
    max_size=30,
)


def _check_invariants(idx: TimeIndex) -> None:
    chunks = idx._chunks
    assert all(chunks), "no empty chunk is kept"
    assert idx._mins == [c[0] for c in chunks]
    assert all(len(c) <= 2 * time_index.CHUNK for c in chunks)
    flat = [e for c in chunks for e in c]
    assert flat == sorted(flat) and len(flat) == len(idx)


@pytest.mark.parametrize("chunk", [2, 3, 512])
@given(program=ops)
def test_time_index_matches_a_sorted_list(chunk: int, program: list) -> None:
    old = time_index.CHUNK
    time_index.CHUNK = chunk
    try:
        idx = TimeIndex()
        oracle: list[tuple[int, int, str]] = []
        seq = 0
        for op, arg in program:
            if op == "add":
                seqs = list(range(seq + 1, seq + 1 + len(arg)))
                seq += len(arg)
                keys = [f"k{t % 7}" for t in arg]
                idx.add_many(arg, seqs, keys)
                oracle.extend(zip(arg, seqs, keys, strict=True))
                oracle.sort()
            else:
                expected = [e for e in oracle if e[0] <= arg]
                oracle = [e for e in oracle if e[0] > arg]
                assert idx.pop_until(arg) == expected
            _check_invariants(idx)
            assert list(idx) == oracle
            assert idx.first_ts() == (oracle[0][0] if oracle else None)
            assert bool(idx) == bool(oracle)
        assert idx.pop_all() == oracle
        assert len(idx) == 0 and idx.first_ts() is None
    finally:
        time_index.CHUNK = old


def test_load_sorts_and_chunks() -> None:
    idx = TimeIndex()
    entries = [(t % 97, t, "k") for t in range(2_000)]
    idx.load(entries)
    assert list(idx) == sorted(entries)
    _check_invariants(idx)
    assert idx.pop_until(10) == sorted(e for e in entries if e[0] <= 10)
    _check_invariants(idx)


def test_out_of_order_inserts_into_a_long_index_stay_chunked() -> None:
    """A wide disorder bound: every insert lands far below the newest entry, never moving the whole index."""
    idx = TimeIndex()
    n = 20_000
    idx.add_many(range(0, 2 * n, 2), range(n), ["k"] * n)
    idx.add_many(range(1, 2 * n, 2), range(n, 2 * n), ["k"] * n)
    _check_invariants(idx)
    assert [e[0] for e in idx] == list(range(2 * n))
