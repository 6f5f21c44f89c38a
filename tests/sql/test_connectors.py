"""DDL and connectors: filesystem, datagen, print, blackhole, kafka, upsert-kafka, jdbc lookups."""

from __future__ import annotations

import json
import sqlite3
from pathlib import Path

import pytest

import streamcore as sc
from streamcore.changelog import Change, RowKind, apply_changelog
from streamcore.testing.kafka_mock import MockKafkaCluster
from tests.sinks.kafka_support import read_all


def _t_env(**kw) -> sc.StreamTableEnvironment:
    return sc.StreamTableEnvironment.create(sc.StreamEnvironment(**kw))


def test_filesystem_json_to_csv_with_a_window(tmp_path: Path) -> None:
    src = tmp_path / "in"
    src.mkdir()
    lines = [
        {"city": c, "amount": a, "ts": f"2024-01-01 00:00:{s:02d}"}
        for c, a, s in [("lyon", 3, 1), ("oslo", 4, 2), ("lyon", 5, 12), ("lyon", 1, 14)]
    ]
    (src / "part-0.json").write_text("\n".join(json.dumps(x) for x in lines) + "\n")
    t_env = _t_env()
    t_env.execute_sql(f"""
        CREATE TABLE orders (city STRING, amount INT, ts TIMESTAMP(3),
                             WATERMARK FOR ts AS ts - INTERVAL '1' SECOND)
        WITH ('connector' = 'filesystem', 'path' = '{src}', 'format' = 'json');
        CREATE TABLE totals (city STRING, wstart STRING, n BIGINT, total BIGINT)
        WITH ('connector' = 'filesystem', 'path' = '{tmp_path / "out"}', 'format' = 'csv')""")
    t_env.execute_sql("""
        INSERT INTO totals
        SELECT city, DATE_FORMAT(window_start, 'HH:mm:ss'), COUNT(*), SUM(amount)
        FROM TABLE(TUMBLE(TABLE orders, DESCRIPTOR(ts), INTERVAL '10' SECOND))
        GROUP BY city, window_start, window_end""").wait()
    written = sorted(
        line
        for f in (tmp_path / "out").iterdir()
        if not f.name.startswith(".")
        for line in f.read_text().split()
    )
    assert written == ["lyon,00:00:00,1,3", "lyon,00:00:10,2,6", "oslo,00:00:00,1,4"]


def test_datagen_print_and_blackhole(capsys: pytest.CaptureFixture[str]) -> None:
    t_env = _t_env()
    t_env.execute_sql("""
        CREATE TABLE gen (id BIGINT, v INT) WITH ('connector' = 'datagen', 'number-of-rows' = '5',
            'fields.id.kind' = 'sequence', 'fields.id.start' = '1', 'fields.id.end' = '5',
            'fields.v.min' = '1', 'fields.v.max' = '9');
        CREATE TABLE out (id BIGINT, v INT) WITH ('connector' = 'print', 'print-identifier' = 'gen');
        CREATE TABLE void (id BIGINT) WITH ('connector' = 'blackhole')""")
    t_env.execute_sql("INSERT INTO out SELECT id, v FROM gen").wait()
    t_env.execute_sql("INSERT INTO void SELECT id FROM gen").wait()
    printed = capsys.readouterr().out.splitlines()
    assert [line.split(",")[0] for line in printed] == [f"gen> +I({i}" for i in range(1, 6)]
    assert all(1 <= int(line.split(", ")[1].rstrip(")")) <= 9 for line in printed)


def test_print_shows_the_changelog_of_an_updating_result(capsys: pytest.CaptureFixture[str]) -> None:
    t_env = _t_env()
    t_env.create_temporary_view("t", t_env.from_elements([("a", 1), ("a", 2)], ["k", "v"]))
    t_env.execute_sql("CREATE TABLE out (k STRING, s BIGINT) WITH ('connector' = 'print')")
    t_env.execute_sql("INSERT INTO out SELECT k, SUM(v) FROM t GROUP BY k").wait()
    assert capsys.readouterr().out.split() == ["+I(a,", "1)", "-U(a,", "1)", "+U(a,", "3)"]


def test_lookup_join_as_of_an_event_time_column_is_refused(tmp_path: Path) -> None:
    t_env = _t_env()
    t_env.execute_sql(f"""
        CREATE TABLE shops (shop_id BIGINT, city STRING)
        WITH ('connector' = 'jdbc', 'url' = 'jdbc:sqlite:{tmp_path / "x.db"}', 'table-name' = 'shops')""")
    t_env.create_temporary_view("o", t_env.from_elements([(10, 1)], ["order_id", "shop_id"]))
    sql = (
        "SELECT o.order_id, d.city FROM o "
        "JOIN shops FOR SYSTEM_TIME AS OF o.order_id AS d ON o.shop_id = d.shop_id"
    )
    with pytest.raises(sc.errors.SqlUnsupportedError, match="processing-time attribute") as info:
        t_env.sql_query(sql)
    assert (info.value.line, info.value.column) == (1, 67)


def _orders_with_proctime(t_env: sc.StreamTableEnvironment, tmp_path: Path) -> None:
    src = tmp_path / "orders"
    src.mkdir()
    (src / "o.csv").write_text("10,1\n11,3\n12,2\n13,1\n")
    t_env.execute_sql(f"""
        CREATE TABLE orders (order_id BIGINT, shop_id BIGINT, pt AS PROCTIME())
        WITH ('connector' = 'filesystem', 'path' = '{src}', 'format' = 'csv')""")


@pytest.mark.parametrize(
    ("how", "expected"),
    [
        ("", [(10, "lyon"), (12, "oslo"), (13, "lyon")]),
        ("LEFT", [(10, "lyon"), (11, None), (12, "oslo"), (13, "lyon")]),
    ],
)
def test_lookup_join_inner_and_left(tmp_path: Path, how: str, expected: list) -> None:
    db = tmp_path / "dims.db"
    with sqlite3.connect(db) as con:
        con.execute("CREATE TABLE shops (shop_id INTEGER PRIMARY KEY, city TEXT)")
        con.executemany("INSERT INTO shops VALUES (?, ?)", [(1, "lyon"), (2, "oslo")])
    t_env = _t_env()
    _orders_with_proctime(t_env, tmp_path)
    t_env.execute_sql(f"""
        CREATE TABLE shops (shop_id BIGINT, city STRING)
        WITH ('connector' = 'jdbc', 'url' = 'jdbc:sqlite:{db}', 'table-name' = 'shops',
              'lookup.cache.max-rows' = '100', 'lookup.cache.ttl' = '10 min')""")
    got = (
        t_env.sql_query(f"""
        SELECT o.order_id, d.city FROM orders AS o
        {how} JOIN shops FOR SYSTEM_TIME AS OF o.pt AS d ON o.shop_id = d.shop_id""")
        .execute()
        .collect()
    )
    assert sorted(got, key=lambda r: r[0]) == expected


def test_kafka_json_in_and_out_and_upsert_kafka() -> None:
    with MockKafkaCluster(num_brokers=1) as cluster:
        boot = cluster.bootstrap_servers
        for topic in ("clicks", "out", "agg"):
            cluster.create_topic(topic, 1)
        from confluent_kafka import Producer

        p = Producer({"bootstrap.servers": boot})
        for i in range(6):
            p.produce("clicks", json.dumps({"ad": i % 2, "user": f"u{i}", "ts": i * 1000}).encode())
        p.flush(10)
        t_env = _t_env()
        t_env.execute_sql(
            f"""
            CREATE TABLE clicks (ad BIGINT, `user` STRING, ts TIMESTAMP(3)) WITH ('connector' = 'kafka',
              'topic' = 'clicks', 'properties.bootstrap.servers' = '{boot}', 'format' = 'json',
              'scan.startup.mode' = 'earliest-offset', 'scan.bounded.mode' = 'latest-offset')""".replace(
                "`", '"'
            )
        )
        t_env.execute_sql(f"""
            CREATE TABLE out (ad BIGINT, u STRING) WITH ('connector' = 'kafka', 'topic' = 'out',
              'properties.bootstrap.servers' = '{boot}', 'format' = 'csv')""")
        t_env.execute_sql(f"""
            CREATE TABLE agg (ad BIGINT, n BIGINT, PRIMARY KEY (ad) NOT ENFORCED) WITH (
              'connector' = 'upsert-kafka', 'topic' = 'agg', 'properties.bootstrap.servers' = '{boot}',
              'key.format' = 'json', 'value.format' = 'json')""")
        t_env.execute_sql("INSERT INTO out SELECT ad, `user` FROM clicks WHERE ad = 1").wait()
        t_env.execute_sql("INSERT INTO agg SELECT ad, COUNT(*) FROM clicks GROUP BY ad").wait()
        assert [m.value().decode() for m in read_all(boot, "out", 1)] == ["1,u1", "1,u3", "1,u5"]
        latest = {}
        for m in read_all(boot, "agg", 1):
            latest[json.loads(m.key())["ad"]] = json.loads(m.value())
        assert latest == {0: {"ad": 0, "n": 3}, 1: {"ad": 1, "n": 3}}


def test_udfs_scalar_aggregate_and_table() -> None:
    from streamcore.aggregates import AggregateFunction

    class Longest(AggregateFunction):
        def create_accumulator(self):
            return ""

        def add(self, value, acc):
            return value if value is not None and len(value) > len(acc) else acc

        def merge(self, a, b):
            return a if len(a) >= len(b) else b

        def get_result(self, acc):
            return acc

    def split_words(text):
        for w in (text or "").split():
            yield (w, len(w))

    split_words.table_function = True
    t_env = _t_env()
    t_env.create_temporary_function("shout", lambda s: None if s is None else s.upper() + "!")
    t_env.create_temporary_function("longest", Longest())
    t_env.create_temporary_function("split_words", split_words)
    t_env.create_temporary_view(
        "t", t_env.from_elements([(1, "to be or"), (2, "not"), (1, None)], ["k", "s"])
    )
    assert t_env.sql_query("SELECT shout(s) FROM t").execute().collect() == [
        ("TO BE OR!",),
        ("NOT!",),
        (None,),
    ]
    assert apply_changelog(t_env.sql_query("SELECT k, longest(s) FROM t GROUP BY k").execute().collect()) == [
        (1, "to be or"),
        (2, "not"),
    ]
    rows = (
        t_env.sql_query("SELECT k, w, n FROM t, LATERAL TABLE(split_words(s)) AS T(w, n)").execute().collect()
    )
    assert rows == [(1, "to", 2), (1, "be", 2), (1, "or", 2), (2, "not", 3)]
    left = (
        t_env.sql_query("SELECT k, w FROM t LEFT JOIN LATERAL TABLE(split_words(s)) AS T(w, n) ON TRUE")
        .execute()
        .collect()
    )
    assert left[-1] == (1, None)


def test_to_and_from_data_stream_and_changelog_stream() -> None:
    env = sc.StreamEnvironment()
    t_env = sc.StreamTableEnvironment.create(env)
    ds = env.from_collection([{"k": "a", "v": 1}, {"k": "b", "v": 2}, {"k": "a", "v": 3}])
    t_env.create_temporary_view("t", t_env.from_data_stream(ds, ["k STRING", "v BIGINT"]))
    assert t_env.to_data_stream(t_env.sql_query("SELECT k, v * 10 FROM t")).execute_and_collect() == [
        ("a", 10),
        ("b", 20),
        ("a", 30),
    ]
    changes = t_env.to_changelog_stream(
        t_env.sql_query("SELECT k, SUM(v) FROM t GROUP BY k")
    ).execute_and_collect()
    assert changes[-1] == Change(RowKind.UPDATE_AFTER, ("a", 4))
    with pytest.raises(sc.errors.SqlUnsupportedError, match="to_changelog_stream"):
        t_env.to_data_stream(t_env.sql_query("SELECT k, COUNT(*) FROM t GROUP BY k"))


def test_settings_reach_the_job(tmp_path: Path) -> None:
    t_env = _t_env()
    t_env.execute_sql(f"""
        SET 'execution.checkpointing.interval' = '10 s';
        SET 'execution.checkpointing.dir' = '{tmp_path / "chk"}';
        SET 'table.exec.state.ttl' = '1 h'""")
    assert t_env.env.checkpoint_config is not None
    assert t_env.env.checkpoint_config.every_ms == 10_000
    t_env.create_temporary_view("t", t_env.from_elements([("a", 1)], ["k", "v"]))
    assert "ttl" in t_env.explain_sql("SELECT k, SUM(v) FROM t GROUP BY k").lower()
    t_env.execute_sql("CREATE TABLE void (k STRING) WITH ('connector' = 'blackhole')")
    t_env.execute_sql(f"SET 'execution.savepoint.path' = '{tmp_path / 'no-such-checkpoint'}'")
    with pytest.raises(sc.errors.RestoreError):
        t_env.execute_sql("INSERT INTO void SELECT k FROM t").wait()
    # The restore applies to the next INSERT only.
    t_env.execute_sql("INSERT INTO void SELECT k FROM t").wait()
