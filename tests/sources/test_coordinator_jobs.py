"""Rate coordination inside running jobs, on a ManualClock that advances as splits are read.

Every split costs 1 ms of clock time per record, so the coordinator's intervals pass as
the job works and every run is deterministic.
"""

from __future__ import annotations

import random

import pytest
from hypothesis import given
from hypothesis import strategies as st

import streamcore as sc
from streamcore.state.descriptors import MapStateDescriptor
from streamcore.time import MIN_TIMESTAMP, WatermarkStrategy, hours, minutes, seconds
from tests.sources.scripted import DriftProbe, GuardedClock, ScriptedSource, steady

MODES = [None, "reactive", "predictive"]


def strategy(max_drift: int, interval: int, bound: int = 0, idleness: int | None = None) -> WatermarkStrategy:
    wm = WatermarkStrategy.for_bounded_out_of_orderness(bound)
    if idleness is not None:
        wm = wm.with_idleness(idleness)
    return wm.with_watermark_alignment("g", max_drift, interval)


def env_for(clock, mode, batch_size):
    # Round-robin reads let the splits run apart as separate processes would: the
    # coordinator, not the event-time scheduler, must keep them together here.
    env = sc.StreamEnvironment(batch_size=batch_size, clock=clock).set_split_scheduling("round-robin")
    if mode is not None:
        env.set_source_rate_coordination(enabled=True, predictive=mode == "predictive")
    return env


def run_scripts(scripts, *, mode, max_drift, interval, batch_size=10, idleness=None, max_sleeps=10_000):
    """Read ``scripts`` (one source, one split each) into a sink; returns (clock, source, result)."""
    clock = GuardedClock(max_sleeps)
    env = env_for(clock, mode, batch_size)
    src = ScriptedSource("s", scripts, clock)
    env.from_source(
        src, timestamp=lambda r: r[2], watermarks=strategy(max_drift, interval, idleness=idleness), name="s"
    ).sink_to(lambda r: None)
    result = env.execute("coordination")
    return clock, src, result


# -- the drift bound ---------------------------------------------------------------------------


@pytest.mark.parametrize("mode", ["reactive", "predictive"])
def test_drift_stays_within_max_drift_plus_one_batch_span(monkeypatch, mode):
    probe = DriftProbe(monkeypatch)
    steps = [1_000, 3_000, 7_000, 20_000]  # event time per record: four different speeds
    batch = 10
    max_drift = minutes(5)
    _, src, result = run_scripts(
        [steady(2_000, s) for s in steps],
        mode=mode,
        max_drift=max_drift,
        interval=seconds(1),
        batch_size=batch,
    )
    span = batch * max(steps)
    assert probe.max_drift <= max_drift + span
    assert all(r.finished for r in src.readers)
    coord = result.metrics["rate_coordinator"]
    assert coord["pauses"] > 0
    assert coord["forced_releases"] == 0
    assert result.records_read == 8_000


def test_drift_grows_without_bound_when_coordination_is_off(monkeypatch):
    probe = DriftProbe(monkeypatch)
    peaks = []
    for n in (1_000, 2_000):
        probe.drifts.clear()
        probe.tasks.clear()
        run_scripts(
            [steady(n, 1_000), steady(n, 20_000)], mode=None, max_drift=minutes(5), interval=seconds(1)
        )
        peaks.append(probe.max_drift)
    assert peaks[0] > 10 * minutes(5)
    assert peaks[1] >= 1.9 * peaks[0]  # twice the input, twice the drift: no bound


def test_predictive_keeps_the_drift_lower_with_fewer_pauses_than_reactive(monkeypatch):
    # The slowest split advances less than max_drift / 2 per interval: the prediction pays off.
    # Reactive holds the fast split at the bound and pauses it again every interval; the
    # predictive target holds it half a drift lower for several intervals per pause.
    probe = DriftProbe(monkeypatch)
    averages = {}
    pauses = {}
    for mode in ("reactive", "predictive"):
        probe.drifts.clear()
        probe.tasks.clear()
        # Both splits cover 20 min of event time; the second one ten times faster per record.
        _, _, result = run_scripts(
            [steady(12_000, 100), steady(1_200, 1_000)],
            mode=mode,
            max_drift=minutes(1),
            interval=50,
            batch_size=5,
        )
        averages[mode] = sum(probe.drifts) / len(probe.drifts)
        pauses[mode] = result.metrics["rate_coordinator"]["pauses"]
    assert averages["reactive"] > seconds(50)
    assert averages["predictive"] < 0.9 * averages["reactive"]
    assert pauses["predictive"] * 3 < pauses["reactive"]


def test_independent_groups_do_not_hold_each_other_back(monkeypatch):
    clock = GuardedClock()
    env = env_for(clock, "predictive", 10)
    fast = ScriptedSource("fast", [steady(500, 60_000)], clock)
    slow = ScriptedSource("slow", [steady(500, 1_000), steady(500, 1_000)], clock)
    a = WatermarkStrategy.for_monotonous_timestamps().with_watermark_alignment("a", minutes(5), 100)
    b = WatermarkStrategy.for_monotonous_timestamps().with_watermark_alignment("b", minutes(5), 100)
    s1 = env.from_source(fast, timestamp=lambda r: r[2], watermarks=a, name="fast")
    s2 = env.from_source(slow, timestamp=lambda r: r[2], watermarks=b, name="slow")
    s1.union(s2).sink_to(lambda r: None)
    result = env.execute("groups")
    assert result.metrics["rate_coordinator"]["pauses"] == 0
    assert result.metrics["fast"]["splits"]["fast-0"]["paused_ms"] == 0


def test_sources_without_alignment_are_never_paused():
    clock = GuardedClock()
    env = env_for(clock, "predictive", 10)
    src = ScriptedSource("free", [steady(500, 1_000), steady(500, 60_000)], clock)
    wm = WatermarkStrategy.for_monotonous_timestamps()
    env.from_source(src, timestamp=lambda r: r[2], watermarks=wm, name="free").sink_to(lambda r: None)
    result = env.execute("free")
    assert result.metrics["rate_coordinator"]["pauses"] == 0
    assert result.metrics["rate_coordinator"]["groups"] == {}


# -- results never change ------------------------------------------------------------------------


class WindowSum(sc.KeyedProcessFunction):
    """Sum of values per key and tumbling event-time window, emitted when the window closes."""

    def __init__(self, size: int) -> None:
        self.size = size

    def open(self, ctx):
        self.sums = ctx.get_state(MapStateDescriptor("sums"))

    def process_element(self, value, ctx):
        start = ctx.timestamp() - ctx.timestamp() % self.size
        self.sums.put(start, (self.sums.get(start) or 0) + value[1])
        ctx.timer_service().register_event_time_timer(start + self.size - 1)

    def on_timer(self, timestamp, ctx):
        start = timestamp + 1 - self.size
        total = self.sums.get(start)
        self.sums.remove(start)
        yield (ctx.get_current_key(), start, total)


def join_and_aggregate(left, right, *, mode, max_drift, interval, bound, batch_size):
    """Interval join of two sources plus a windowed sum over both; outputs sorted."""
    clock = GuardedClock()
    env = env_for(clock, mode, batch_size)
    wm = strategy(max_drift, interval, bound)
    ls = env.from_source(
        ScriptedSource("l", left, clock), timestamp=lambda r: r[2], watermarks=wm, name="left"
    )
    rs = env.from_source(
        ScriptedSource("r", right, clock), timestamp=lambda r: r[2], watermarks=wm, name="right"
    )
    joined = sc.CollectSink()
    (
        ls.key_by(lambda r: r[1] % 3)
        .interval_join(rs.key_by(lambda r: r[1] % 3))
        .between(-seconds(30), seconds(20))
        .process(lambda a, b, ctx: [(a[0], a[1], b[0], b[1])])
        .sink_to(joined)
    )
    summed = sc.CollectSink()
    ls.union(rs).key_by(lambda r: r[0]).process(WindowSum(minutes(1))).sink_to(summed)
    result = env.execute("join")
    late = sum(sum(m.get("late_per_side", [0])) for m in result.metrics.values() if isinstance(m, dict))
    assert late == 0
    return sorted(joined.results), sorted(summed.results), result


def disordered(count, step, disorder, seed):
    rnd = random.Random(seed)
    return [i * step - rnd.randint(0, disorder) for i in range(count)]


def test_coordination_changes_timing_never_results():
    left = [disordered(400, 500, 2_000, 1), disordered(400, 4_000, 2_000, 2)]
    right = [disordered(300, 9_000, 2_000, 3)]
    reference = join_and_aggregate(
        left, right, mode=None, max_drift=minutes(1), interval=50, bound=2_000, batch_size=7
    )
    assert reference[0] and reference[1]
    for mode in ("reactive", "predictive"):
        joined, summed, result = join_and_aggregate(
            left, right, mode=mode, max_drift=minutes(1), interval=50, bound=2_000, batch_size=7
        )
        assert result.metrics["rate_coordinator"]["pauses"] > 0
        assert (joined, summed) == reference[:2]


_split = st.tuples(st.integers(0, 60), st.integers(1, 20_000), st.integers(0, 10_000))


@given(
    left=st.lists(_split, min_size=1, max_size=3),
    right=st.lists(_split, min_size=1, max_size=2),
    bound=st.integers(0, 3_000),
    max_drift=st.integers(1, minutes(3)),
    interval=st.integers(1, 200),
    batch_size=st.integers(1, 9),
    predictive=st.booleans(),
)
def test_coordination_never_changes_results(left, right, bound, max_drift, interval, batch_size, predictive):
    def scripts(splits):
        return [disordered(n, step, bound, seed) for n, step, seed in splits]

    kw = {"max_drift": max_drift, "interval": interval, "bound": bound, "batch_size": batch_size}
    off = join_and_aggregate(scripts(left), scripts(right), mode=None, **kw)
    mode = "predictive" if predictive else "reactive"
    on = join_and_aggregate(scripts(left), scripts(right), mode=mode, **kw)
    assert on[:2] == off[:2]
    assert on[2].metrics["rate_coordinator"]["forced_releases"] == 0


# -- no stall, no deadlock --------------------------------------------------------------------------


def test_a_split_that_finishes_early_releases_the_others_at_once():
    # Split 0 is the slow one and ends first; the others must not wait for an interval.
    clock, src, result = run_scripts(
        [steady(200, 1_000), steady(2_000, 30_000), steady(2_000, 30_000)],
        mode="predictive",
        max_drift=minutes(5),
        interval=seconds(60),
    )
    assert clock.sleeps == 0
    assert all(r.finished for r in src.readers)
    splits = result.metrics["s"]["splits"]
    # Paused for at most the 200 ms split 0 needed to run, never for the 60 s interval.
    assert 0 < splits["s-1"]["paused_ms"] <= 200
    assert result.metrics["rate_coordinator"]["forced_releases"] == 0


def test_a_split_that_goes_idle_does_not_stall_the_others():
    # Split 0 holds the others back, then has no data for a long while (empty polls).
    idle_split = [*steady(50, 1_000), *([None] * 5_000), *steady(50, 1_000, start=seconds(50))]
    _, src, result = run_scripts(
        [idle_split, steady(1_000, 30_000), steady(1_000, 30_000)],
        mode="predictive",
        max_drift=minutes(5),
        interval=seconds(1),
        idleness=seconds(2),
        max_sleeps=5_000,
    )
    assert all(r.finished for r in src.readers)
    # The others were held back until split 0 went idle (2 s), then ran while it was idle.
    splits = result.metrics["s"]["splits"]
    for split in ("s-1", "s-2"):
        assert 0 < splits[split]["paused_ms"] <= seconds(2) + seconds(1)
    assert src.readers[1].polls == 100


def test_a_watermark_jump_pauses_only_the_jumping_split():
    jumper = [*steady(300, 1_000), *steady(300, 1_000, start=hours(3))]
    clock, src, result = run_scripts(
        [steady(600, 1_000), steady(600, 1_000), jumper],
        mode="predictive",
        max_drift=minutes(5),
        interval=seconds(1),
    )
    assert clock.sleeps == 0
    splits = result.metrics["s"]["splits"]
    assert splits["s-0"]["paused_ms"] == splits["s-1"]["paused_ms"] == 0
    assert splits["s-2"]["paused_ms"] > 0
    assert all(r.finished for r in src.readers)


def test_every_split_of_a_source_paused_still_reaches_the_next_batch(monkeypatch):
    # A tiny drift with a long interval: the slowest split keeps reaching the target early.
    clock, src, result = run_scripts(
        [steady(1_000, 1_000), steady(1_000, 1_100)], mode="predictive", max_drift=5_000, interval=seconds(60)
    )
    assert all(r.finished for r in src.readers)
    assert clock.sleeps == 0
    assert result.records_read == 2_000


def test_readers_are_told_to_pause_and_resume():
    _, src, result = run_scripts(
        [steady(1_000, 1_000), steady(1_000, 20_000)],
        mode="reactive",
        max_drift=minutes(5),
        interval=seconds(1),
    )
    fast = src.readers[1]
    assert fast.pause_calls > 0
    assert fast.resume_calls == fast.pause_calls
    m = result.metrics["rate_coordinator"]
    assert m["pauses"] == m["resumes"] == fast.pause_calls
    assert m["splits"]["s/s-1"]["paused_ms"] == result.metrics["s"]["splits"]["s-1"]["paused_ms"] > 0
    assert m["splits"]["s/s-0"]["speed"] > 0


def test_pausing_never_blocks_a_checkpoint(tmp_path, monkeypatch):
    from streamcore.sources.coordinator import SourceRateCoordinator

    images = []
    original = SourceRateCoordinator.snapshot

    def snapshot(self):
        image = original(self)
        images.append(image)
        return image

    monkeypatch.setattr(SourceRateCoordinator, "snapshot", snapshot)
    clock = GuardedClock()
    env = env_for(clock, "predictive", 10)
    env.enable_checkpointing(tmp_path / "chk", every_records=None, every_ms=100)
    src = ScriptedSource("s", [steady(1_000, 1_000), steady(1_000, 20_000)], clock)
    env.from_source(
        src, timestamp=lambda r: r[2], watermarks=strategy(minutes(5), seconds(1)), name="s"
    ).sink_to(lambda r: None)
    result = env.execute("checkpointed")
    assert len(result.checkpoints) >= 5
    assert any(img["splits"]["s/s-1"]["paused"] for img in images)
    assert all(r.finished for r in src.readers)


def test_paused_splits_do_not_make_the_source_idle():
    # Idleness shorter than the pauses: a paused split must still hold the watermark.
    clock = GuardedClock()
    env = env_for(clock, "reactive", 10)
    src = ScriptedSource("s", [steady(2_000, 1_000), steady(2_000, 20_000)], clock)
    seen = []

    class Watch(sc.KeyedProcessFunction):
        def process_element(self, value, ctx):
            seen.append(ctx.timer_service().current_watermark())

    wm = strategy(minutes(5), seconds(1), idleness=50)
    env.from_source(src, timestamp=lambda r: r[2], watermarks=wm, name="s").key_by(lambda r: 0).process(
        Watch()
    ).sink_to(lambda r: None)
    result = env.execute("idle")
    assert result.metrics["rate_coordinator"]["pauses"] > 0
    # Had the paused fast split been taken for idle, the watermark would have jumped to it
    # and the slow split's records would be late.
    assert result.metrics["s"]["watermark"] > MIN_TIMESTAMP
    assert not any(m.get("late_records") for m in result.metrics.values() if isinstance(m, dict))


def test_coordinator_state_is_restored_from_a_checkpoint(tmp_path, monkeypatch):
    from streamcore.sources.coordinator import SourceRateCoordinator

    scripts = [steady(1_000, 1_000), steady(1_000, 20_000)]

    def job(clock):
        env = env_for(clock, "predictive", 10)
        env.enable_checkpointing(tmp_path / "chk", every_records=None, every_ms=100, retain=100)
        src = ScriptedSource("s", scripts, clock)
        wm = strategy(minutes(5), seconds(1))
        sink = sc.CollectSink()
        env.from_source(src, timestamp=lambda r: r[2], watermarks=wm, name="s").sink_to(sink)
        return env, sink

    env, full = job(GuardedClock())
    first = env.execute("restorable")
    assert len(first.checkpoints) >= 3
    restored_images = []
    original = SourceRateCoordinator.restore

    def restore(self, image):
        restored_images.append(image)
        original(self, image)

    monkeypatch.setattr(SourceRateCoordinator, "restore", restore)
    middle = sorted((tmp_path / "chk").glob("chk-*"))[len(first.checkpoints) // 2]
    env, rest = job(GuardedClock())
    second = env.execute("restorable", restore_from=str(middle))
    assert restored_images and restored_images[0]["splits"].keys() == {"s/s-0", "s/s-1"}
    # The restored run reads exactly what the checkpoint had not read.
    assert 0 < len(rest.results) == second.records_read < len(full.results)
    assert set(rest.results) < set(full.results)
    assert second.metrics["rate_coordinator"]["decisions"] > 0
