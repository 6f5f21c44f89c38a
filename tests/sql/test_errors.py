"""Every SQL error points at line and column, names what is wrong and what is supported instead."""

from __future__ import annotations

import re

import pytest

import streamcore as sc
from streamcore.errors import (
    ConfigurationError,
    SqlConnectorError,
    SqlError,
    SqlSyntaxError,
    SqlUnsupportedError,
    SqlValidationError,
)


@pytest.fixture
def t_env() -> sc.StreamTableEnvironment:
    t = sc.StreamTableEnvironment.create(sc.StreamEnvironment())
    schema = (
        sc.Schema.new_builder()
        .column("k", "BIGINT")
        .column("name", "STRING")
        .column("ts", "TIMESTAMP(3)")
        .watermark("ts", "ts - INTERVAL '1' SECOND")
        .build()
    )
    t.create_temporary_view("t", t.from_elements([(1, "a", 0)], schema))
    t.execute_sql("CREATE TABLE out (k BIGINT, name STRING) WITH ('connector' = 'blackhole')")
    return t


def test_the_error_tree() -> None:
    for cls in (SqlSyntaxError, SqlUnsupportedError, SqlValidationError, SqlConnectorError):
        assert issubclass(cls, SqlError)
    assert issubclass(SqlError, ConfigurationError)
    assert issubclass(SqlError, ValueError)


def test_syntax_error_points_at_the_token_without_a_parser_trace(t_env) -> None:
    with pytest.raises(SqlSyntaxError) as info:
        t_env.sql_query("SELECT k,\n  name FROM t WHERE")
    err = info.value
    assert (err.line, err.column) == (2, 15)
    assert "line 2, column 15" in str(err)
    assert "Token" not in str(err) and "Traceback" not in str(err)
    assert err.__cause__ is None and err.__suppress_context__


@pytest.mark.parametrize(
    ("sql", "feature", "where"),
    [
        ("SELECT k FROM t ORDER BY k", "ORDER BY is not supported", (1, 26)),
        ("SELECT DISTINCT k FROM t", "SELECT DISTINCT is not supported", None),
        ("SELECT k FROM t LIMIT 3", "LIMIT is not supported", (1, 23)),
        ("SELECT k FROM t\nINTERSECT SELECT k FROM t", "INTERSECT is not supported; UNION ALL is", None),
        ("SELECT k, SUM(k) OVER (PARTITION BY name) FROM t", "OVER aggregates", (1, 11)),
        ("SELECT FIRST_VALUE(k) FROM t GROUP BY name", "FIRST_VALUE is not supported", (1, 8)),
        (
            "SELECT k, COUNT(*) FROM t GROUP BY TUMBLE(ts, INTERVAL '1' MINUTE), k",
            "legacy GROUP BY window",
            (1, 36),
        ),
        ("SELECT CURRENT_TIMESTAMP FROM t", "CURRENT_TIMESTAMP() is not supported", None),
        ("SELECT k FROM t WHERE k IN (SELECT k FROM t)", "IN (subquery) is not supported", (1, 23)),
        (
            "SELECT window_start FROM TABLE(TUMBLE(TABLE t, DESCRIPTOR(k), INTERVAL '1' SECOND))",
            "windows need the table's event-time attribute",
            (1, 59),
        ),
        (
            "SELECT k FROM TABLE(TUMBLE(TABLE t, DESCRIPTOR(ts), INTERVAL '1' MONTH))",
            "unsupported interval",
            None,
        ),
        (
            "SELECT * FROM t AS a JOIN t AS b ON a.k = b.k AND a.ts BETWEEN b.ts AND "
            "b.ts + INTERVAL '1' SECOND LEFT JOIN t AS c ON a.k < c.k",
            "a join needs at least one equality",
            None,
        ),
    ],
)
def test_unsupported_features_are_refused_by_name(t_env, sql: str, feature: str, where) -> None:
    with pytest.raises(SqlUnsupportedError, match=feature.replace("(", r"\(").replace(")", r"\)")) as info:
        t_env.sql_query(sql)
    if where is not None:
        assert (info.value.line, info.value.column) == where


@pytest.mark.parametrize(
    ("sql", "message"),
    [
        ("SELECT nope FROM t", "unknown column 'nope'; columns here: t.k, t.name, t.ts"),
        ("SELECT k FROM missing", "unknown table 'missing'"),
        ("SELECT frobnicate(k) FROM t", "unknown function FROBNICATE"),
        ("SELECT k + name FROM t", "needs numbers, not STRING"),
        ("SELECT k FROM t WHERE name", "a condition must be BOOLEAN"),
    ],
)
def test_validation_errors(t_env, sql: str, message: str) -> None:
    with pytest.raises(SqlValidationError, match=message) as info:
        t_env.sql_query(sql)
    assert info.value.line == 1 and info.value.column is not None


def test_insert_type_mismatch_names_the_columns(t_env) -> None:
    with pytest.raises(SqlValidationError) as info:
        t_env.execute_sql("INSERT INTO out SELECT name, k FROM t")
    msg = str(info.value)
    assert "query column 'name' is STRING, table column 'k' is BIGINT" in msg
    assert "query column 'k' is BIGINT, table column 'name' is STRING" in msg
    with pytest.raises(SqlValidationError, match="the query has 1 columns"):
        t_env.execute_sql("INSERT INTO out SELECT k FROM t")


@pytest.mark.parametrize(
    ("options", "message"),
    [
        ("'connector' = 'kafak'", "unknown connector 'kafak'; valid connectors: blackhole, datagen"),
        (
            "'connector' = 'kafka', 'topic' = 'x', 'properties.bootstrap.servers' = 'h:1', 'fromat' = 'json'",
            "unknown option 'fromat' for connector 'kafka'; valid options: ",
        ),
        (
            "'connector' = 'kafka', 'topic' = 'x', 'properties.bootstrap.servers' = 'h:1', 'format' = 'avro'",
            "option 'format' = 'avro' is not valid; valid formats: json, csv, raw",
        ),
        (
            "'connector' = 'datagen', 'number-of-rows' = 'many'",
            "option 'number-of-rows' = 'many' must be an integer",
        ),
    ],
)
def test_bad_connector_options_name_the_option_and_valid_values(t_env, options: str, message: str) -> None:
    with pytest.raises(SqlConnectorError, match=message.replace("(", r"\(")):
        t_env.execute_sql(f"CREATE TABLE bad (k BIGINT) WITH ({options})")
        t_env.execute_sql("INSERT INTO out SELECT k, 'x' FROM bad")


def test_bad_startup_mode_and_settings(t_env) -> None:
    t_env.execute_sql(
        "CREATE TABLE k (v STRING) WITH ('connector' = 'kafka', 'topic' = 't', "
        "'properties.bootstrap.servers' = 'h:1', 'format' = 'raw', 'scan.startup.mode' = "
        "'oldest')"
    )
    with pytest.raises(
        SqlConnectorError, match=re.escape("'scan.startup.mode' = 'oldest'; valid values: earliest-offset")
    ):
        t_env.execute_sql("INSERT INTO out SELECT 1, v FROM k")
    with pytest.raises(SqlConnectorError, match=re.escape("unknown setting 'table.exec.nope'; valid keys")):
        t_env.execute_sql("SET 'table.exec.nope' = '1'")
    with pytest.raises(SqlUnsupportedError, match="scale out"):
        t_env.execute_sql("SET 'parallelism.default' = '4'")
    with pytest.raises(SqlConnectorError, match="is not a duration"):
        t_env.execute_sql("SET 'table.exec.state.ttl' = 'soon'")


def test_append_only_sink_refuses_an_updating_result(t_env) -> None:
    with pytest.raises(SqlConnectorError, match="accepts only append-only results"):
        t_env.execute_sql(
            "CREATE TABLE f (k BIGINT, n BIGINT) WITH ('connector' = 'filesystem', 'path' = '/tmp/x')"
        )
        t_env.execute_sql("INSERT INTO f SELECT k, COUNT(*) FROM t GROUP BY k")


def test_watermark_must_be_column_minus_interval(t_env) -> None:
    with pytest.raises(SqlUnsupportedError, match="the watermark expression") as info:
        t_env.execute_sql(
            "CREATE TABLE w (ts TIMESTAMP(3),\n  WATERMARK FOR ts AS ts * 2) WITH ('connector' = 'datagen')"
        )
    assert (info.value.line, info.value.column) == (2, 23)


def test_time_functions_round_trip_milliseconds() -> None:
    from streamcore.sql.functions import date_format, floor_time, to_timestamp

    assert date_format(1_699_999_999_961, "yyyy-MM-dd HH:mm:ss.SSS") == "2023-11-14 22:13:19.961"
    assert to_timestamp("2023-11-14 22:13:19.961", "yyyy-MM-dd HH:mm:ss.SSS") == 1_699_999_999_961
    assert floor_time(1_699_999_999_961, "HOUR") == 1_699_999_200_000
