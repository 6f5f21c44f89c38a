"""DuckDB as the oracle of SQL tests: the same rows, the equivalent batch query, the same result."""

from __future__ import annotations

import math
import tempfile
from collections import Counter
from typing import Any

import duckdb
from hypothesis import strategies as st

import streamcore as sc
from streamcore.changelog import Change, apply_changelog

#: the bound of the test tables' watermarks (ms): rows are at most this much out of order.
BOUND = 2_000
EVENTS_DDL = "k BIGINT, u VARCHAR, x BIGINT, ts BIGINT"


@st.composite
def events(draw: Any, max_rows: int = 60) -> list[tuple[Any, ...]]:
    """Rows (k, u, x, ts): few keys, duplicate users, NULL values, disorder within ``BOUND``."""
    n = draw(st.integers(0, max_rows))
    rows, t = [], 0
    for _ in range(n):
        t += draw(st.integers(0, 1_500))
        ts = t - draw(st.integers(0, BOUND))
        k = draw(st.integers(0, 3))
        u = draw(st.sampled_from(["a", "b", "c", "d", "e", None]))
        x = draw(st.one_of(st.none(), st.integers(-50, 50)))
        rows.append((k, u, x, max(ts, 0)))
    return rows


def duck(
    rows: list[tuple[Any, ...]],
    sql: str,
    ddl: str = EVENTS_DDL,
    name: str = "ev",
    more: dict[str, tuple[str, list[tuple[Any, ...]]]] | None = None,
) -> list[tuple[Any, ...]]:
    """The result of ``sql`` in DuckDB over ``rows`` loaded as table ``name``."""
    con = duckdb.connect()
    tables = {name: (ddl, rows), **(more or {})}
    for tname, (tddl, trows) in tables.items():
        con.execute(f"CREATE TABLE {tname} ({tddl})")
        if trows:
            marks = ", ".join("?" * len(trows[0]))
            con.executemany(f"INSERT INTO {tname} VALUES ({marks})", [list(r) for r in trows])
    return [tuple(r) for r in con.execute(sql).fetchall()]


def norm(rows: list[Any]) -> Counter[tuple[Any, ...]]:
    """Rows as a multiset; floats rounded (sums in another order differ in the last bits)."""
    out: Counter[tuple[Any, ...]] = Counter()
    for r in rows:
        out[tuple(round(v, 6) if isinstance(v, float) and not math.isnan(v) else v for v in r)] += 1
    return out


def env_for(backend: str, **kw: Any) -> sc.StreamEnvironment:
    """An environment on ``backend`` with a fresh state directory."""
    if backend == "rocksdb":
        return sc.StreamEnvironment(state_backend="rocksdb", state_dir=tempfile.mkdtemp(prefix="sqlt-"), **kw)
    return sc.StreamEnvironment(**kw)


def events_table(t_env: Any, rows: list[tuple[Any, ...]], name: str = "ev") -> None:
    """Register ``rows`` as table ``name`` with event time ``ts`` and a ``BOUND`` watermark."""
    schema = (
        sc.Schema.new_builder()
        .column("k", "BIGINT")
        .column("u", "STRING")
        .column("x", "BIGINT")
        .column("ts", "TIMESTAMP(3)")
        .watermark("ts", f"ts - INTERVAL '{BOUND // 1000}' SECOND")
        .build()
    )
    t_env.create_temporary_view(name, t_env.from_elements(rows, schema))


def final(rows: list[Any]) -> list[tuple[Any, ...]]:
    """The table a query's output describes (a changelog applied, or the rows themselves)."""
    if rows and isinstance(rows[0], Change):
        return apply_changelog(rows)
    return rows
