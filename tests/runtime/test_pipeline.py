"""End-to-end behaviour of the DataStream API on the batch runtime."""

from __future__ import annotations

import io
import time

import pytest

import streamcore as sc
from streamcore.errors import ConfigurationError, GraphError
from streamcore.time import MAX_TIMESTAMP


def test_map_filter_flat_map_in_order():
    env = sc.StreamEnvironment(batch_size=3)
    out = (
        env.from_collection(range(10))
        .map(lambda x: x * 2)
        .filter(lambda x: x % 3 != 0)
        .flat_map(lambda x: [x, -x] if x > 10 else None)
        .execute_and_collect()
    )
    assert out == [14, -14, 16, -16]


def test_union_and_watermark_is_min_of_inputs():
    env = sc.StreamEnvironment(batch_size=2)
    wm = sc.WatermarkStrategy.for_monotonous_timestamps()
    a = env.from_collection([1, 2, 3, 100], timestamp=lambda x: x, watermarks=wm, name="a")
    b = env.from_collection([5, 6], timestamp=lambda x: x, watermarks=wm, name="b")
    seen = []

    class Watch(sc.KeyedProcessFunction):
        def process_element(self, value, ctx):
            seen.append((value, ctx.timer_service().current_watermark()))
            yield value

    out = a.union(b).key_by(lambda x: 0).process(Watch()).execute_and_collect()
    assert sorted(out) == [1, 2, 3, 5, 6, 100]
    wms = [w for _, w in seen]
    assert wms == sorted(wms)
    # b stops at 6 (then finishes): until then the union's watermark is held at b's.
    assert all(w <= 5 for v, w in seen if v != 100 and v != 6)


def test_connect_co_process_and_side_outputs():
    env = sc.StreamEnvironment()
    odd = sc.OutputTag("odd")

    class Route(sc.CoProcessFunction):
        def process_element1(self, value, ctx):
            if value % 2:
                ctx.output(odd, value)
            else:
                yield ("a", value)

        def process_element2(self, value, ctx):
            yield ("b", value)

    main = env.from_collection([1, 2, 3, 4]).connect(env.from_collection(["x"])).process(Route())
    side = sc.CollectSink()
    main.get_side_output(odd).sink_to(side)
    out = main.execute_and_collect()
    assert sorted(out) == [("a", 2), ("a", 4), ("b", "x")]
    assert side.results == [1, 3]


def test_keyed_co_process_shares_state_per_key():
    env = sc.StreamEnvironment()

    class Enrich(sc.KeyedCoProcessFunction):
        def open(self, ctx):
            self.name = ctx.get_state(sc.ValueStateDescriptor("name"))

        def process_element1(self, value, ctx):
            self.name.update(value[1])

        def process_element2(self, value, ctx):
            yield (value[0], self.name.value(), value[1])

    names = env.from_collection([(1, "ann"), (2, "bob")])
    orders = env.from_collection([(1, 10), (2, 20), (3, 30)])
    out = (
        names.key_by(lambda r: r[0])
        .connect(orders.key_by(lambda r: r[0]))
        .process(Enrich())
        .execute_and_collect()
    )
    assert sorted(out, key=str) == sorted([(1, "ann", 10), (2, "bob", 20), (3, None, 30)], key=str)


def test_reduce_emits_running_fold():
    env = sc.StreamEnvironment(batch_size=2)
    out = (
        env.from_collection([("a", 1), ("b", 2), ("a", 3)])
        .key_by(lambda r: r[0])
        .reduce(lambda x, y: (x[0], x[1] + y[1]))
        .execute_and_collect()
    )
    assert out == [("a", 1), ("b", 2), ("a", 4)]


def test_end_of_input_fires_every_event_timer():
    env = sc.StreamEnvironment()

    class Far(sc.KeyedProcessFunction):
        def process_element(self, value, ctx):
            ctx.timer_service().register_event_time_timer(10**15)

        def on_timer(self, timestamp, ctx):
            yield (ctx.get_current_key(), timestamp, ctx.timestamp())

    out = (
        env.from_collection([1, 2, 1], timestamp=lambda x: x)
        .key_by(lambda x: x)
        .process(Far())
        .execute_and_collect()
    )
    assert sorted(out) == [(1, 10**15, 10**15), (2, 10**15, 10**15)]


def test_processing_time_timers_fire_off_the_injected_clock():
    clock = sc.ManualClock(0)

    def gen(split, offset):
        clock.advance(100)
        return offset

    class Later(sc.KeyedProcessFunction):
        def process_element(self, value, ctx):
            if value == 0:
                ctx.timer_service().register_processing_time_timer(
                    ctx.timer_service().current_processing_time() + 250
                )

        def on_timer(self, timestamp, ctx):
            yield ("fired", timestamp, ctx.timestamp())

    env = sc.StreamEnvironment(clock=clock, batch_size=1)
    out = env.from_generator(gen, count=6).key_by(lambda x: 0).process(Later()).execute_and_collect()
    assert out == [("fired", 350, None)]


class _Reader(sc.SplitReader):
    """Split 0 emits one record and then nothing (idle, never finished); split 1 a record per poll."""

    def __init__(self, split, clock):
        self.split_id = f"s{split}"
        self.split = split
        self.clock = clock
        self.offset = 0

    def poll(self, max_records):
        self.clock.advance(10)
        if self.split == 0 and self.offset >= 1:
            return [], None
        self.offset += 1
        return [(self.split, (self.offset - 1) * 1_000)], None

    def position(self):
        return self.offset

    def seek(self, position):
        self.offset = position


class _IdleSource(sc.Source):
    bounded = False

    def __init__(self, clock):
        self.clock = clock

    def create_readers(self):
        return [_Reader(0, self.clock), _Reader(1, self.clock)]


@pytest.mark.parametrize("idleness", [200, None])
def test_idle_split_does_not_hold_back_the_watermark(idleness):
    clock = sc.ManualClock(0)
    fired = []

    class Timer(sc.KeyedProcessFunction):
        def process_element(self, value, ctx):
            if value == (1, 0):
                ctx.timer_service().register_event_time_timer(5_000)

        def on_timer(self, timestamp, ctx):
            fired.append(ctx.timer_service().current_watermark())

    wm = sc.WatermarkStrategy.for_monotonous_timestamps()
    if idleness:
        wm = wm.with_idleness(idleness)
    env = sc.StreamEnvironment(clock=clock, batch_size=1)
    stream = env.from_source(_IdleSource(clock), timestamp=lambda r: r[1], watermarks=wm)
    stream.filter(lambda r: r[1] <= 60_000).key_by(lambda r: r[0]).process(Timer()).sink_to(lambda v: None)
    h = env.execute_async("idle")
    while clock.now_ms() < 1_000:
        time.sleep(0.001)
    h.stop(timeout=10)
    if idleness:
        assert fired and fired[0] >= 5_000
    else:
        assert fired == []  # split 0's watermark (-1) holds everything back


def test_execute_async_stop_and_metrics():
    env = sc.StreamEnvironment()
    env.from_generator(lambda s, o: o, count=None).map(lambda x: x).sink_to(lambda v: None)
    h = env.execute_async("forever")
    time.sleep(0.2)
    m = h.metrics()
    assert m["generator"]["records_out"] > 0
    res = h.stop(timeout=10)
    assert res.stopped and res.records_read > 0
    assert h.done()


def test_print_sink_and_callable_sink():
    buf = io.StringIO()
    env = sc.StreamEnvironment()
    got = []
    s = env.from_collection(["x", "y"])
    s.sink_to(sc.PrintSink(prefix="> ", stream=buf))
    s.sink_to(got.append)
    env.execute("print")
    assert buf.getvalue() == "> x\n> y\n" and got == ["x", "y"]


def test_uids_default_from_names_and_must_be_unique():
    env = sc.StreamEnvironment()
    s = env.from_collection([1]).map(lambda x: x).uid("same")
    s.map(lambda x: x).uid("same").sink_to(lambda v: None)
    with pytest.raises(GraphError, match="same"):
        env.execute("dup")
    with pytest.raises(GraphError):
        s.uid("bad/uid")


def test_job_without_sink_is_a_clear_error():
    env = sc.StreamEnvironment()
    env.from_collection([1]).map(lambda x: x)
    with pytest.raises(ConfigurationError, match="no sink"):
        env.execute("nothing")


def test_final_watermark_is_max_timestamp():
    from streamcore.operators.basic import MapOperator
    from streamcore.testing import OperatorHarness

    h = OperatorHarness(MapOperator("m", "m", lambda x: x))
    h.process_elements([1], [5])
    h.end_input()
    assert h.watermarks() == [MAX_TIMESTAMP] and h.output() == [(1, 5)]
