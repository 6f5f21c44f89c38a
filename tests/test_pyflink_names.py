"""The first hour of a PyFlink user: the names typed from habit work, or say exactly what to do."""

from __future__ import annotations

import io
import logging
import time

import pytest

import streamcore as sc
from streamcore.errors import ConfigurationError, KeySelectorError


def test_environment_aliases_and_add_source_add_sink():
    env = sc.StreamExecutionEnvironment.get_execution_environment(batch_size=2)
    assert isinstance(env, sc.StreamEnvironment)
    got: list = []
    env.add_source(sc.CollectionSource([1, 2, 3]), "numbers").map(lambda x: x * 10).add_sink(got.append)
    env.execute("aliases")
    assert got == [10, 20, 30]


def test_rolling_aggregations_by_position_and_name():
    env = sc.StreamEnvironment()
    words = env.from_collection([("to", 1), ("be", 1), ("to", 1), ("to", 5)])
    assert words.key_by(lambda w: w[0]).sum(1).execute_and_collect() == [
        ("to", 1),
        ("be", 1),
        ("to", 2),
        ("to", 7),
    ]
    rows = env.from_collection([{"k": "a", "v": 3}, {"k": "a", "v": 1}, {"k": "a", "v": 2}])
    assert [r["v"] for r in rows.key_by(lambda r: r["k"]).min("v").execute_and_collect()] == [3, 1, 1]
    assert [r["v"] for r in rows.key_by(lambda r: r["k"]).max("v").execute_and_collect()] == [3, 3, 3]
    assert env.from_collection([4, 1, 9]).key_by(lambda x: 0).max().execute_and_collect() == [4, 4, 9]
    with pytest.raises(sc.StreamcoreError, match="has no field 'missing'"):
        rows.key_by(lambda r: r["k"]).sum("missing").execute_and_collect()


def test_window_sum_and_timestamp_assigner():
    env = sc.StreamEnvironment()
    strategy = sc.WatermarkStrategy.for_monotonous_timestamps().with_timestamp_assigner(lambda e: e[2])
    words = env.from_collection(
        [("to", 1, 0), ("be", 1, 500), ("to", 1, 900), ("to", 1, 1_500)], watermarks=strategy
    )
    out = (
        words.key_by(lambda w: w[0])
        .window(sc.TumblingEventTimeWindows.of(1_000))
        .sum(1)
        .execute_and_collect()
    )
    assert sorted(out) == [("be", 1, 500), ("to", 1, 1_500), ("to", 2, 0)]

    class Assigner:
        def extract_timestamp(self, value, record_timestamp):
            return value * 1_000

    strategy = sc.WatermarkStrategy.for_monotonous_timestamps().with_timestamp_assigner(Assigner())
    env = sc.StreamEnvironment()
    stream = env.from_collection([1, 2, 3]).assign_timestamps_and_watermarks(strategy).map(lambda x: x)
    sink = sc.CollectSink()
    stream.sink_to(sink)
    env.execute("assigner")
    assert sink.timestamps == [1_000, 2_000, 3_000]
    with pytest.raises(ConfigurationError, match="with_timestamp_assigner\\(\\) takes a callable"):
        sc.WatermarkStrategy.for_monotonous_timestamps().with_timestamp_assigner(5)


def test_execute_and_collect_with_limit_stops_an_unbounded_job():
    env = sc.StreamEnvironment(batch_size=8)
    numbers = env.from_generator(lambda split, offset: offset, name="numbers")
    it = numbers.map(lambda x: x + 1).execute_and_collect(limit=5)
    assert list(it) == [1, 2, 3, 4, 5]
    assert not [n for n in env.graph.nodes if n.kind == "sink"]  # the temporary sink is gone
    with numbers.execute_and_collect(limit=1_000) as early:
        assert next(early) == 0
    with pytest.raises(ConfigurationError, match="limit"):
        numbers.execute_and_collect(limit=0)
    # A bounded job simply ends; a failing one raises from next().
    env2 = sc.StreamEnvironment()
    assert list(env2.from_collection([1, 2]).execute_and_collect(limit=10)) == [1, 2]
    bad = env2.from_collection([1, 0]).map(lambda x: 1 // x).execute_and_collect(limit=10)
    with pytest.raises(sc.StreamcoreError, match="ZeroDivisionError"):
        list(bad)


def test_state_descriptors_take_type_information_never_misread():
    v = sc.ValueStateDescriptor("n", sc.Types.INT())
    assert v.default is None and v.type_info == (sc.Types.INT(),) and v.ttl is None
    lst = sc.ListStateDescriptor("l", sc.Types.STRING())
    assert lst.ttl is None and lst.type_info == (sc.Types.STRING(),)
    m = sc.MapStateDescriptor("m", sc.Types.STRING(), sc.Types.LONG())
    assert m.type_info == (sc.Types.STRING(), sc.Types.LONG()) and m.ttl is None
    r = sc.ReducingStateDescriptor("r", lambda a, b: a + b, sc.Types.INT())
    assert r.ttl is None and r.type_info == (sc.Types.INT(),)
    assert sc.ValueStateDescriptor("d", 0).default == 0  # a real default still works
    with pytest.raises(ConfigurationError, match="ttl must be an int of milliseconds or a StateTtlConfig"):
        sc.ListStateDescriptor("l", "INT")

    class Counter(sc.KeyedProcessFunction):
        def open(self, ctx):
            self.n = ctx.get_state(sc.ValueStateDescriptor("n", sc.Types.INT()))

        def process_element(self, value, ctx):
            self.n.update((self.n.value() or 0) + 1)
            yield self.n.value()

    env = sc.StreamEnvironment()
    assert env.from_collection(["a", "a", "b"]).key_by(lambda x: x).process(
        Counter()
    ).execute_and_collect() == [
        1,
        2,
        1,
    ]


def test_enable_checkpointing_with_an_interval(tmp_path):
    env = sc.StreamEnvironment()
    with pytest.raises(ConfigurationError) as info:
        env.enable_checkpointing(10_000)
    assert "enable_checkpointing(10000, checkpoint_dir='checkpoints/')" in str(info.value)
    assert "enable_checkpointing('checkpoints/', every_ms=10000)" in str(info.value)
    env.enable_checkpointing(10_000, checkpoint_dir=tmp_path / "ck")
    assert env.checkpoint_config.every_ms == 10_000 and env.checkpoint_config.every_records is None
    env.default_checkpoint_dir = tmp_path / "cli"
    env.enable_checkpointing(5_000)
    assert env.checkpoint_config.directory == tmp_path / "cli"
    with pytest.raises(ConfigurationError, match="not both"):
        env.enable_checkpointing(tmp_path, checkpoint_dir=tmp_path)


def test_print_sink_prints_like_flink():
    buf = io.StringIO()
    env = sc.StreamEnvironment()
    env.from_collection([("to", 1)]).sink_to(sc.PrintSink("wc", stream=buf))
    env.execute("print")
    assert buf.getvalue() == "wc> ('to', 1)\n"


def test_key_selector_error_names_the_key_by_and_the_element():
    env = sc.StreamEnvironment()
    big = {"user": None, "payload": "x" * 1_000}

    def user_of(event):
        return event["id"]

    env.from_collection([{"id": 1}, big]).key_by(user_of).reduce(lambda a, b: a).sink_to(lambda v: None)
    with pytest.raises(KeySelectorError) as info:
        env.execute("keys")
    text = str(info.value)
    assert text.startswith(
        "key_by(test_key_selector_error_names_the_key_by_and_the_element.<locals>.user_of)"
    )
    assert "test_pyflink_names.py:" in text and "KeyError: 'id'" in text
    assert "for element {'user': None, 'payload': 'xxx" in text and "...," in text and len(text) < 600
    assert text.count("KeyError") == 1


def test_event_time_window_without_watermarks_warns_once(caplog):
    clock = sc.ManualClock(0)
    env = sc.StreamEnvironment(batch_size=10, clock=clock)
    env.no_watermark_warning_s = 5

    def events(split, offset):
        clock.advance(10)  # 10 ms of processing time per record
        return ("k", offset * 10)

    src = env.from_generator(events, timestamp=lambda e: e[1], name="events")  # no watermark strategy
    src.key_by(lambda e: e[0]).window(sc.TumblingEventTimeWindows.of(1_000)).sum(1).sink_to(lambda v: None)
    with caplog.at_level(logging.WARNING, logger="streamcore.runtime"):
        handle = env.execute_async("no-watermarks")
        deadline = time.monotonic() + 30
        while not any("no watermark" in r.getMessage() for r in caplog.records):
            assert time.monotonic() < deadline, "no warning"
            time.sleep(0.01)
        while handle.metrics().get("events", {}).get("records_out", 0) < 2_000:
            time.sleep(0.01)
        handle.stop()
    warnings = [r.getMessage() for r in caplog.records if "no watermark" in r.getMessage()]
    assert len(warnings) == 1
    assert "event-time window 'window'" in warnings[0] and "windows cannot fire" in warnings[0]
    assert "sources without a watermark strategy: ['events']" in warnings[0]
