"""Updating results against DuckDB: TopN by ROW_NUMBER, window TopN, regular joins of every kind."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import streamcore as sc
from tests.sql.oracle import EVENTS_DDL, duck, env_for, events, events_table, final, norm

BACKENDS = ["heap", "rocksdb"]


def _unique_x(rows):
    """The rows with distinct ``x`` values (ROW_NUMBER over ties has no single right answer)."""
    return [(k, u, (i * 37) % 1000, ts) for i, (k, u, _x, ts) in enumerate(rows)]


@pytest.mark.parametrize("backend", BACKENDS)
@settings(max_examples=10)
@given(rows=events(), n=st.integers(1, 3), desc=st.booleans())
def test_top_n_equals_row_number(backend: str, rows, n: int, desc: bool) -> None:
    rows = _unique_x(rows)
    order = "DESC" if desc else "ASC"
    env = env_for(backend, batch_size=4)
    t_env = sc.StreamTableEnvironment.create(env)
    events_table(t_env, rows)
    sql = (
        f"SELECT k, x, rn FROM (SELECT *, ROW_NUMBER() OVER (PARTITION BY k ORDER BY x {order}) AS rn "
        f"FROM ev) WHERE rn <= {n}"
    )
    got = final(t_env.sql_query(sql).execute().collect())
    assert norm(got) == norm(duck(rows, sql))


@pytest.mark.parametrize("backend", BACKENDS)
@settings(max_examples=10)
@given(rows=events(), n=st.integers(1, 2))
def test_window_top_n_equals_row_number_over_window_groups(backend: str, rows, n: int) -> None:
    env = env_for(backend, batch_size=4)
    t_env = sc.StreamTableEnvironment.create(env)
    events_table(t_env, rows)
    sql = (
        "SELECT window_start, k, c, rn FROM (SELECT *, ROW_NUMBER() OVER (PARTITION BY window_start, "
        "window_end "
        "ORDER BY c DESC) AS rn FROM (SELECT window_start, window_end, k, COUNT(*) * 10 + k AS c FROM "
        "TABLE(TUMBLE(TABLE ev, DESCRIPTOR(ts), INTERVAL '5' SECOND)) GROUP BY window_start, window_end, k)) "
        f"WHERE rn <= {n}"
    )
    got = t_env.sql_query(sql).execute().collect()
    want = duck(
        rows,
        "SELECT ws, k, c, rn FROM (SELECT *, ROW_NUMBER() OVER (PARTITION BY ws ORDER BY c DESC) AS rn "
        "FROM (SELECT ts - ts % 5000 AS ws, k, COUNT(*) * 10 + k AS c FROM ev GROUP BY ws, k)) "
        f"WHERE rn <= {n}",
    )
    assert norm(got) == norm(want)


@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize("how", ["", "LEFT", "RIGHT", "FULL"])
@pytest.mark.parametrize("extra", ["", " AND a.x < b.x", " AND a.ts > b.ts"])
@settings(max_examples=5)
@given(rows=events(max_rows=25), other=events(max_rows=25))
def test_regular_join_equals_duckdb(backend: str, how: str, extra: str, rows, other) -> None:
    env = env_for(backend, batch_size=3)
    t_env = sc.StreamTableEnvironment.create(env)
    events_table(t_env, rows, "a")
    events_table(t_env, other, "b")
    sql = f"SELECT a.k, a.x, b.k, b.u FROM a {how} JOIN b ON a.k = b.k AND a.u = b.u{extra}"
    got = final(t_env.sql_query(sql).execute().collect())
    assert norm(got) == norm(duck(rows, sql, name="a", more={"b": (EVENTS_DDL, other)}))


def test_aggregate_over_a_join_retracts() -> None:
    env = sc.StreamEnvironment()
    t_env = sc.StreamTableEnvironment.create(env)
    t_env.create_temporary_view("a", t_env.from_elements([(1, "x"), (2, "y"), (3, "x")], ["id", "g"]))
    t_env.create_temporary_view("b", t_env.from_elements([("x", 10), ("z", 5)], ["g", "w"]))
    got = final(
        t_env.sql_query("SELECT b.g, COUNT(a.id) FROM a RIGHT JOIN b ON a.g = b.g GROUP BY b.g")
        .execute()
        .collect()
    )
    assert sorted(got) == [("x", 2), ("z", 0)]
