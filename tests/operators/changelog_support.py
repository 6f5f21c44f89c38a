"""Shared by the tests of the operators of updating streams: valid changelogs, shuffles, split runs."""

from __future__ import annotations

import random
from collections.abc import Callable, Sequence
from typing import Any

from hypothesis import strategies as st

from streamcore.changelog import Change, RowKind
from streamcore.operators.base import StreamOperator
from streamcore.serde import msgpack_dumps, msgpack_loads
from streamcore.testing import OperatorHarness

BACKEND_PAIRS = [("heap", "heap"), ("rocksdb", "rocksdb"), ("heap", "rocksdb"), ("rocksdb", "heap")]

I, UB, UA, D = RowKind.INSERT, RowKind.UPDATE_BEFORE, RowKind.UPDATE_AFTER, RowKind.DELETE  # noqa: E741

# One step of a generated changelog: insert a row, delete a present row, update a present row.
OPS = st.lists(
    st.one_of(
        st.tuples(st.just("ins"), st.integers(0, 3), st.integers(-3, 6)),
        st.tuples(st.just("del"), st.integers(0, 1000), st.just(0)),
        st.tuples(st.just("upd"), st.integers(0, 1000), st.integers(-3, 6)),
    ),
    max_size=40,
)


def build_changelog(ops: Sequence[tuple[str, int, int]], *, plain_inserts: bool = True) -> list[Any]:
    """A valid changelog of rows ``(key, value, tag)`` from ``ops``: never retracts an absent row.

    Keys are ``"k0".."k3"``; an update keeps the key (``-U old, +U new``) or, for odd new
    values, moves the row to the next key. Inserts alternate between plain tuples and
    ``+I`` changes (when ``plain_inserts``). ``tag`` (0..1) makes some rows equal, some not.
    """
    table: list[tuple[Any, ...]] = []
    out: list[Any] = []
    for n, (op, a, b) in enumerate(ops):
        if op == "ins" or not table:
            row = (f"k{a % 4}", b, n % 2)
            table.append(row)
            out.append(row if plain_inserts and n % 2 else Change(I, row))
        elif op == "del":
            row = table.pop(a % len(table))
            out.append(Change(D, row))
        else:
            old = table.pop(a % len(table))
            key = old[0] if b % 2 == 0 else f"k{(int(old[0][1]) + 1) % 4}"
            new = (key, b, n % 2)
            table.append(new)
            out += [Change(UB, old), Change(UA, new)]
    return out


def rows_of(changelog: Sequence[Any]) -> list[tuple[Any, ...]]:
    """The final table of an input changelog whose plain elements are inserts."""
    table: dict[Any, int] = {}
    for e in changelog:
        kind, row = (e.kind, e.row) if isinstance(e, Change) else (I, e)
        table[row] = table.get(row, 0) + (1 if kind in (I, UA) else -1)
        assert table[row] >= 0
    return [row for row, n in table.items() for _ in range(n)]


def shuffle_per_key(elements: Sequence[Any], key: Callable[[Any], Any], rnd: random.Random) -> list[Any]:
    """A random interleaving of ``elements`` that keeps the order of the elements of each key."""
    queues: dict[Any, list[Any]] = {}
    for e in elements:
        queues.setdefault(key(e), []).append(e)
    for q in queues.values():
        q.reverse()
    tickets = [k for k, q in queues.items() for _ in q]
    rnd.shuffle(tickets)
    return [queues[k].pop() for k in tickets]


def row(e: Any) -> tuple[Any, ...]:
    """The row of an element (a change's row, or the element)."""
    return e.row if isinstance(e, Change) else e


def feed(h: OperatorHarness, elements: Sequence[tuple[Any, int]], chunk: int) -> None:
    """Push ``(value, side)`` elements in batches of up to ``chunk`` consecutive same-side elements."""
    i = 0
    while i < len(elements):
        side = elements[i][1]
        j = i
        while j < len(elements) and j - i < chunk and elements[j][1] == side:
            j += 1
        h.process_elements([v for v, _ in elements[i:j]], side=side)
        i = j


def run_split(
    make_op: Callable[[], StreamOperator],
    elements: Sequence[tuple[Any, int]],
    cut: int,
    backends: tuple[str, str],
    *,
    num_inputs: int = 1,
    chunk: int = 3,
) -> list[Any]:
    """Run ``elements`` through an operator, snapshot after ``cut`` of them (canonical, through
    msgpack), restore into a new operator on the second backend, run the rest; all outputs."""
    cut = min(cut, len(elements))
    with OperatorHarness(make_op(), num_inputs=num_inputs, state_backend=backends[0]) as h1:
        feed(h1, elements[:cut], chunk)
        out = h1.values()
        image = msgpack_loads(msgpack_dumps(h1.snapshot()))
    with OperatorHarness(
        make_op(), num_inputs=num_inputs, state_backend=backends[1], restore_image=image
    ) as h2:
        feed(h2, elements[cut:], chunk)
        out += h2.values()
    return out


def check_well_formed(out: Sequence[Change]) -> None:
    """Every output is a Change; each ``-U`` is followed by a ``+U`` of a different row."""
    for i, c in enumerate(out):
        assert isinstance(c, Change), c
        if c.kind == UB:
            assert i + 1 < len(out) and out[i + 1].kind == UA, out[i : i + 2]
            assert out[i + 1].row != c.row, out[i : i + 2]
