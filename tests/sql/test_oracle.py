"""Every supported query's final result equals DuckDB's for the equivalent batch query.

Hypothesis draws the rows (disorder within the watermark bound, NULLs, duplicates);
each template pairs a streaming query with its batch equivalent: window TVFs as GROUP BY
on the window bounds, interval joins as BETWEEN joins, unbounded GROUP BY as GROUP BY
(its changelog applied). Both state backends.
"""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import streamcore as sc
from tests.sql.oracle import duck, env_for, events, events_table, final, norm

BACKENDS = ["heap", "rocksdb"]

TEMPLATES = {
    "projection_where_case": (
        "SELECT k, x * 2 + 1 AS y, CASE WHEN x > 0 THEN 'pos' WHEN x < 0 THEN 'neg' ELSE 'zero' END, "
        "COALESCE(u, '?') || '!' FROM ev WHERE (x IS NULL OR x <> 3) AND k IN (0, 1, 2)",
        "SELECT k, x * 2 + 1, CASE WHEN x > 0 THEN 'pos' WHEN x < 0 THEN 'neg' ELSE 'zero' END, "
        "COALESCE(u, '?') || '!' FROM ev WHERE (x IS NULL OR x <> 3) AND k IN (0, 1, 2)",
    ),
    "tumble_aggregates": (
        "SELECT k, window_start, window_end, COUNT(*), COUNT(x), SUM(x), MIN(x), MAX(x), AVG(x), "
        "COUNT(DISTINCT u) FROM TABLE(TUMBLE(TABLE ev, DESCRIPTOR(ts), INTERVAL '5' SECOND)) "
        "GROUP BY k, window_start, window_end",
        "SELECT k, ws, ws + 5000, COUNT(*), COUNT(x), SUM(x), MIN(x), MAX(x), AVG(x), COUNT(DISTINCT u) "
        "FROM (SELECT *, ts - ts % 5000 AS ws FROM ev) GROUP BY k, ws",
    ),
    "tumble_having_expression_key": (
        "SELECT window_start, UPPER(u) AS uu, COUNT(*) AS n FROM TABLE(TUMBLE(TABLE ev, DESCRIPTOR(ts), "
        "INTERVAL '4' SECOND)) WHERE x IS NOT NULL GROUP BY window_start, window_end, UPPER(u) HAVING "
        "COUNT(*) > 1",
        "SELECT ws, UPPER(u), COUNT(*) FROM (SELECT *, ts - ts % 4000 AS ws FROM ev WHERE x IS NOT NULL) "
        "GROUP BY ws, UPPER(u) HAVING COUNT(*) > 1",
    ),
    "hop": (
        "SELECT window_start, window_end, COUNT(*), SUM(x) FROM TABLE(HOP(TABLE ev, DESCRIPTOR(ts), "
        "INTERVAL '2' SECOND, INTERVAL '6' SECOND)) GROUP BY window_start, window_end",
        "SELECT ws, ws + 6000, COUNT(*), SUM(x) FROM (SELECT *, UNNEST(generate_series(ts - ts % 2000 - "
        "4000, "
        "ts - ts % 2000, 2000)) AS ws FROM ev) GROUP BY ws",
    ),
    "cumulate": (
        "SELECT k, window_start, window_end, COUNT(*), MAX(x) FROM TABLE(CUMULATE(TABLE ev, DESCRIPTOR(ts), "
        "INTERVAL '2' SECOND, INTERVAL '8' SECOND)) GROUP BY k, window_start, window_end",
        "SELECT k, ps, we, COUNT(*), MAX(x) FROM (SELECT *, ts - ts % 8000 AS ps, UNNEST(generate_series("
        "ts - ts % 8000 + ((ts % 8000) // 2000 + 1) * 2000, ts - ts % 8000 + 8000, 2000)) AS we FROM ev) "
        "GROUP BY k, ps, we",
    ),
    "session": (
        "SELECT k, window_start, window_end, COUNT(*) FROM TABLE(SESSION(TABLE ev, DESCRIPTOR(ts), "
        "INTERVAL '1' SECOND)) GROUP BY k, window_start, window_end",
        "SELECT k, MIN(ts), MAX(ts) + 1000, COUNT(*) FROM (SELECT *, SUM(brk) OVER (PARTITION BY k ORDER BY "
        "ts "
        "ROWS UNBOUNDED PRECEDING) AS sid FROM (SELECT *, CASE WHEN ts - LAG(ts) OVER (PARTITION BY k ORDER "
        "BY ts) "
        "<= 1000 THEN 0 ELSE 1 END AS brk FROM ev)) GROUP BY k, sid",
    ),
    "tvf_rows": (
        "SELECT k, x, window_start, window_end FROM TABLE(TUMBLE(TABLE ev, DESCRIPTOR(ts), INTERVAL '3' "
        "SECOND))",
        "SELECT k, x, ts - ts % 3000, ts - ts % 3000 + 3000 FROM ev",
    ),
    "union_all_subquery_with": (
        "WITH pos AS (SELECT k, x FROM ev WHERE x > 0) SELECT k, x FROM pos UNION ALL "
        "SELECT k + 10 AS k, -x AS x FROM (SELECT * FROM ev WHERE x < 0) AS neg",
        "WITH pos AS (SELECT k, x FROM ev WHERE x > 0) SELECT k, x FROM pos UNION ALL "
        "SELECT k + 10, -x FROM (SELECT * FROM ev WHERE x < 0)",
    ),
    "group_by_unbounded": (
        "SELECT k, COUNT(*), SUM(x), MIN(x), MAX(x), COUNT(DISTINCT u) FROM ev GROUP BY k",
        "SELECT k, COUNT(*), SUM(x), MIN(x), MAX(x), COUNT(DISTINCT u) FROM ev GROUP BY k",
    ),
    "group_by_over_group_by": (
        "SELECT n, COUNT(*) FROM (SELECT k, COUNT(*) AS n FROM ev GROUP BY k) GROUP BY n",
        "SELECT n, COUNT(*) FROM (SELECT k, COUNT(*) AS n FROM ev GROUP BY k) GROUP BY n",
    ),
}


def run_sql(backend: str, rows, sql: str, batch_size: int = 7) -> list:
    env = env_for(backend, batch_size=batch_size)
    t_env = sc.StreamTableEnvironment.create(env)
    events_table(t_env, rows)
    return final(t_env.sql_query(sql).execute().collect())


@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize("template", sorted(TEMPLATES))
@settings(max_examples=8)
@given(rows=events(), batch=st.integers(1, 20))
def test_query_equals_duckdb(backend: str, template: str, rows, batch: int) -> None:
    ours, theirs = TEMPLATES[template]
    assert norm(run_sql(backend, rows, ours, batch)) == norm(duck(rows, theirs))


@pytest.mark.parametrize("backend", BACKENDS)
@settings(max_examples=10)
@given(rows=events(max_rows=40), other=events(max_rows=40))
def test_interval_join_equals_between_join(backend: str, rows, other) -> None:
    env = env_for(backend, batch_size=5)
    t_env = sc.StreamTableEnvironment.create(env)
    events_table(t_env, rows, "a")
    events_table(t_env, other, "b")
    sql = (
        "SELECT a.k, a.x, b.x, a.ts, b.ts FROM a JOIN b ON a.k = b.k "
        "AND a.ts BETWEEN b.ts - INTERVAL '3' SECOND AND b.ts + INTERVAL '1' SECOND"
    )
    got = t_env.sql_query(sql).execute().collect()
    ddl = "k BIGINT, u VARCHAR, x BIGINT, ts BIGINT"
    want = duck(
        rows,
        "SELECT a.k, a.x, b.x, a.ts, b.ts FROM a JOIN b ON a.k = b.k AND a.ts BETWEEN b.ts - 3000 "
        "AND b.ts + 1000",
        ddl=ddl,
        name="a",
        more={"b": (ddl, other)},
    )
    assert norm(got) == norm(want)


def test_comma_interval_join_with_strict_bounds() -> None:
    rows = [(1, "a", 1, 1000), (1, "b", 2, 5000), (2, "c", 3, 9000)]
    other = [(1, "x", 10, 1000), (1, "y", 20, 3000), (2, "z", 30, 9500)]
    env = sc.StreamEnvironment()
    t_env = sc.StreamTableEnvironment.create(env)
    events_table(t_env, rows, "a")
    events_table(t_env, other, "b")
    sql = "SELECT a.x, b.x FROM a, b WHERE a.k = b.k AND a.ts > b.ts AND a.ts <= b.ts + INTERVAL '4' SECOND"
    got = t_env.sql_query(sql).execute().collect()
    assert sorted(got) == [(2, 10), (2, 20)]


@given(rows=events(max_rows=200))
@settings(max_examples=10)
def test_approx_count_distinct_within_error_bound(rows) -> None:
    env = sc.StreamEnvironment()
    t_env = sc.StreamTableEnvironment.create(env)
    events_table(t_env, [(k, f"user-{x}", x, ts) for k, _u, x, ts in rows])
    got = (
        t_env.sql_query(
            "SELECT window_start, APPROX_COUNT_DISTINCT(u), COUNT(DISTINCT u), BLOOM_COUNT_DISTINCT(u) "
            "FROM TABLE(TUMBLE(TABLE ev, DESCRIPTOR(ts), INTERVAL '30' SECOND)) GROUP BY window_start, "
            "window_end"
        )
        .execute()
        .collect()
    )
    for _ws, approx, exact, bloom in got:
        assert abs(approx - exact) <= max(2, 0.05 * exact)
        assert bloom <= exact


@pytest.mark.parametrize("backend", BACKENDS)
def test_sessions_exactly_a_gap_apart_merge(backend: str) -> None:
    # As Flink's TimeWindow.intersects: [0, 1000) and [1000, 2000) touch, so they merge.
    rows = [(0, "a", None, 0), (0, "a", None, 1000), (0, "b", 1, 2001)]
    got = run_sql(backend, rows, TEMPLATES["session"][0], batch_size=1)
    assert sorted(got) == [(0, 0, 2000, 2), (0, 2001, 3001, 1)]
