"""Property tests of keyed state and timers against plain-Python oracles.

Input: events (key, ts) shuffled with disorder within the watermark bound, so nothing
is late. The function counts per key (running, per element) and per (key, bucket)
(emitted by an event-time timer at the bucket's end). Oracles compute the same from
the unshuffled events. Every test runs on both backends and several batch sizes.
"""

from __future__ import annotations

import random
from collections import Counter

import pytest
from hypothesis import given
from hypothesis import strategies as st

import streamcore as sc

BOUND = 50
BUCKET = 100


@st.composite
def disordered_events(draw, max_keys=8):
    n = draw(st.integers(0, 120))
    keys = draw(
        st.lists(st.one_of(st.integers(-3, 5), st.text("ab", max_size=2)), min_size=1, max_size=max_keys)
    )
    events = [(draw(st.sampled_from(keys)), draw(st.integers(-500, 2_000))) for _ in range(n)]
    rnd = random.Random(draw(st.integers(0, 2**32)))
    # Arrival order: sort by ts + jitter in [0, BOUND]: every element arrives when the
    # newest timestamp seen is at most BOUND ahead of it, so it is never late.
    arrival = sorted(events, key=lambda e: e[1] + rnd.randint(0, BOUND))
    return events, arrival


class BucketCount(sc.KeyedProcessFunction):
    def open(self, ctx):
        self.total = ctx.get_state(sc.ValueStateDescriptor("total", default=0))
        self.buckets = ctx.get_state(sc.MapStateDescriptor("buckets"))
        self.fired = ctx.get_state(sc.ListStateDescriptor("fired"))

    def process_element(self, value, ctx):
        key, ts = value
        n = self.total.value() + 1
        self.total.update(n)
        b = ts // BUCKET
        self.buckets.put(b, (self.buckets.get(b) or 0) + 1)
        ctx.timer_service().register_event_time_timer(b * BUCKET + BUCKET - 1)
        ctx.timer_service().register_event_time_timer(b * BUCKET + BUCKET - 1)  # twice: fires once
        yield ("run", key, n)

    def on_timer(self, timestamp, ctx):
        b = (timestamp + 1) // BUCKET - 1
        count = self.buckets.get(b)
        self.buckets.remove(b)
        self.fired.add(timestamp)
        assert timestamp <= ctx.timer_service().current_watermark()
        yield ("bucket", ctx.get_current_key(), b, count)


def oracle(events):
    out = Counter()
    per_key = Counter()
    per_bucket = Counter()
    for key, ts in events:
        per_key[key] += 1
        out[("run", key, per_key[key])] += 1
        per_bucket[(key, ts // BUCKET)] += 1
    for (key, b), c in per_bucket.items():
        out[("bucket", key, b, c)] += 1
    return out


def run(arrival, backend, batch_size, tmp_path):
    env = sc.StreamEnvironment(state_backend=backend, state_dir=tmp_path / "state", batch_size=batch_size)
    wm = sc.WatermarkStrategy.for_bounded_out_of_orderness(BOUND)
    src = env.from_collection(arrival, timestamp=lambda e: e[1], watermarks=wm)
    return src.key_by(lambda e: e[0]).process(BucketCount()).execute_and_collect()


@pytest.mark.parametrize("backend", ["heap", "rocksdb"])
@given(data=disordered_events(), batch_size=st.sampled_from([1, 2, 7, 1024]))
def test_keyed_counts_and_timers_match_oracle(backend, data, batch_size, tmp_path_factory):
    events, arrival = data
    out = run(arrival, backend, batch_size, tmp_path_factory.mktemp("s"))
    assert Counter(out) == oracle(events)


@pytest.mark.parametrize("backend", ["heap", "rocksdb"])
@given(data=disordered_events())
def test_results_independent_of_batch_size(backend, data, tmp_path_factory):
    _, arrival = data
    results = [Counter(run(arrival, backend, bs, tmp_path_factory.mktemp("s"))) for bs in (1, 1024)]
    assert results[0] == results[1]


@given(data=disordered_events(), batch_size=st.sampled_from([1, 5, 1024]))
def test_watermarks_never_move_backwards_and_nothing_is_late(data, batch_size):
    _, arrival = data
    seen = []

    class Watch(sc.KeyedProcessFunction):
        def process_element(self, value, ctx):
            seen.append(ctx.timer_service().current_watermark())
            assert ctx.timestamp() >= ctx.timer_service().current_watermark()

    env = sc.StreamEnvironment(batch_size=batch_size)
    wm = sc.WatermarkStrategy.for_bounded_out_of_orderness(BOUND)
    src = env.from_collection(arrival, timestamp=lambda e: e[1], watermarks=wm)
    src.key_by(lambda e: e[0]).process(Watch()).sink_to(lambda v: None)
    result = env.execute("watch")
    assert seen == sorted(seen)
    assert len(seen) == len(arrival)
    assert result.metrics["keyed_process"]["late_records"] == 0


def test_late_elements_are_counted_and_routed():
    late = sc.OutputTag("late")
    env = sc.StreamEnvironment(batch_size=1)
    wm = sc.WatermarkStrategy.for_bounded_out_of_orderness(0)

    class Echo(sc.KeyedProcessFunction):
        def process_element(self, value, ctx):
            yield value

    src = env.from_collection([10, 20, 5, 30, 19], timestamp=lambda x: x, watermarks=wm)
    main = src.key_by(lambda x: 0).process(Echo(), late_output=late)
    side = sc.CollectSink()
    main.get_side_output(late).sink_to(side)
    assert main.execute_and_collect() == [10, 20, 30]
    assert side.results == [5, 19]
