"""The rate coordinator's decision rule and bookkeeping, on hand-made source tasks.

End-to-end behaviour (drift bound, identical results, no stall) is in
``test_coordinator_jobs.py``.
"""

from __future__ import annotations

import logging

import pytest
from hypothesis import given
from hypothesis import strategies as st

from streamcore.errors import ConfigurationError, RestoreError
from streamcore.sources.coordinator import (
    Decision,
    RateCoordinationConfig,
    SourceRateCoordinator,
    SplitReport,
    decide,
)
from streamcore.sources.split_state import SplitState
from streamcore.time import MIN_TIMESTAMP, ManualClock, WatermarkStrategy, hours, minutes, seconds

NOON = hours(12)
FIVE_MIN = minutes(5)
TEN_S = seconds(10)


def hm(h: int, m: int, s: int = 0) -> int:
    """A watermark at ``h:m:s`` of some day."""
    return hours(h) + minutes(m) + seconds(s)


# -- the decision rule ---------------------------------------------------------------------------


def test_decide_four_split_example_gives_min_predicted_plus_half_drift():
    # Four splits, interval 10 s, max drift 5 min. Speeds are event-time seconds per clock second.
    reports = [
        SplitReport("a", 0, hm(12, 0), 12_000.0),  # predicted 12:02:00
        SplitReport("b", 0, hm(12, 1), 3_000.0),  # predicted 12:01:30  <- the slowest next interval
        SplitReport("c", 0, hm(12, 8), 60_000.0),  # predicted 12:18:00
        SplitReport("d", 0, hm(12, 4, 30), 6_000.0),  # predicted 12:05:30
    ]
    d = decide(reports, now=1_000, max_drift=minutes(5), interval=seconds(10), predictive=True)
    assert d.throttling
    assert d.drift == minutes(8)
    assert d.target_watermark == hm(12, 1, 30) + minutes(5) // 2 == hm(12, 4)
    assert d.target_time == 11_000
    assert d.paused == ("c", "d")


def test_decide_reactive_mode_pauses_only_beyond_min_plus_max_drift():
    reports = [
        SplitReport("a", 0, hm(12, 0), 12_000.0),
        SplitReport("b", 0, hm(12, 1), 3_000.0),
        SplitReport("c", 0, hm(12, 8), 60_000.0),
        SplitReport("d", 0, hm(12, 4, 30), 6_000.0),
    ]
    d = decide(reports, now=1_000, max_drift=minutes(5), interval=seconds(10), predictive=False)
    assert d.target_watermark == hm(12, 5)
    assert d.paused == ("c",)


@pytest.mark.parametrize("predictive", [True, False])
def test_decide_within_max_drift_only_sets_the_hard_bound(predictive):
    reports = [SplitReport("a", 0, hm(12, 0), 6_000.0), SplitReport("b", 0, hm(12, 4), 6_000.0)]
    d = decide(reports, now=0, max_drift=minutes(5), interval=seconds(10), predictive=predictive)
    assert not d.throttling
    assert d.target_watermark == hm(12, 5)
    assert d.paused == ()


def test_decide_predictive_engages_when_the_next_report_would_exceed_max_drift():
    # 4 min apart now, but b gains 2 min per interval: the drift would be 6 min at the next report.
    reports = [SplitReport("a", 0, hm(12, 0), 6_000.0), SplitReport("b", 0, hm(12, 4), 18_000.0)]
    d = decide(reports, now=0, max_drift=minutes(5), interval=seconds(10))
    assert d.throttling
    assert d.target_watermark == hm(12, 1) + minutes(5) // 2
    assert d.paused == ("b",)


def test_decide_predictive_target_never_exceeds_the_reactive_bound():
    # The slowest split is predicted 20 min further (a watermark jump inflated its speed):
    # the target stays at min + max_drift so the drift bound holds.
    reports = [SplitReport("a", 0, hm(12, 0), 120_000.0), SplitReport("b", 0, hm(12, 30), 0.0)]
    d = decide(reports, now=0, max_drift=minutes(5), interval=seconds(10))
    assert d.target_watermark == hm(12, 5)
    assert d.paused == ("b",)


@pytest.mark.parametrize("n", [0, 1])
def test_decide_needs_two_active_splits(n):
    reports = [SplitReport("a", 0, NOON, 1.0)][:n]
    d = decide(reports, now=7, max_drift=minutes(5), interval=100)
    assert d == Decision(
        None, 107, False, reports[0].watermark if n else None, reports[0].watermark if n else None, ()
    )
    assert d.drift == 0


_reports = st.lists(
    st.builds(
        SplitReport,
        st.text("abcdefgh", min_size=1, max_size=3),
        st.just(0),
        st.integers(0, hours(10)),
        st.floats(0, 1e6, allow_nan=False),
    ),
    min_size=2,
    max_size=8,
    unique_by=lambda r: r.split_id,
)


@given(_reports, st.integers(1, hours(1)), st.integers(1, 60_000), st.booleans())
def test_decide_never_pauses_the_slowest_and_bounds_the_target(reports, max_drift, interval, predictive):
    d = decide(reports, now=0, max_drift=max_drift, interval=interval, predictive=predictive)
    low = min(r.watermark for r in reports)
    assert d.target_watermark is not None
    assert low < d.target_watermark <= low + max_drift
    slowest = [r.split_id for r in reports if r.watermark == low]
    assert not set(slowest) & set(d.paused)
    assert set(d.paused) == {r.split_id for r in reports if r.watermark >= d.target_watermark}


# -- configuration -------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "kwargs",
    [
        {"enabled": 1},
        {"predictive": "yes"},
        {"speed_smoothing": 0},
        {"speed_smoothing": 1.5},
        {"speed_smoothing": True},
        {"min_sample_fraction": -0.1},
    ],
)
def test_config_rejects_bad_values(kwargs):
    with pytest.raises(ConfigurationError, match="rate coordination"):
        RateCoordinationConfig(**kwargs)


def test_config_is_immutable_and_names_its_mode():
    cfg = RateCoordinationConfig()
    assert cfg.mode == "predictive"
    with pytest.raises(AttributeError):
        cfg.predictive = False  # type: ignore[misc]
    with pytest.raises(ConfigurationError):
        SourceRateCoordinator("fast")  # type: ignore[arg-type]


# -- bookkeeping on hand-made source tasks ---------------------------------------------------------


class FakeReader:
    def __init__(self, split_id: str) -> None:
        self.split_id = split_id
        self.finished = False
        self.pause_calls = 0
        self.resume_calls = 0

    def pause(self) -> None:
        self.pause_calls += 1

    def resume(self) -> None:
        self.resume_calls += 1


class FakeTask:
    """The parts of a SourceTask the coordinator uses."""

    def __init__(self, uid, wms, group="g", max_drift=FIVE_MIN, interval=TEN_S):
        strategy = WatermarkStrategy.for_monotonous_timestamps()
        if group is not None:
            strategy = strategy.with_watermark_alignment(group, max_drift, interval)
        self.uid = uid
        self.strategy = strategy
        self.splits = [SplitState(FakeReader(f"s{i}"), None, 0) for i in range(len(wms))]
        self.set_watermarks(*wms)

    def set_watermarks(self, *wms):
        for split, wm in zip(self.splits, wms, strict=True):
            split.watermark = wm

    @property
    def paused(self):
        return [s.paused for s in self.splits]

    @property
    def readers(self):
        return [s.reader for s in self.splits]


def coordinator(*tasks, clock=None, **config):
    clock = clock or ManualClock(0)
    coord = SourceRateCoordinator(RateCoordinationConfig(**config))
    coord.attach(list(tasks), clock)
    return coord, clock


def test_warm_up_decides_as_soon_as_every_split_has_a_watermark():
    task = FakeTask("src", [MIN_TIMESTAMP, MIN_TIMESTAMP])
    coord, clock = coordinator(task)
    coord.tick(0)
    assert coord.metrics()["groups"]["g"]["target_watermark"] is None
    task.set_watermarks(NOON, NOON + hours(1))
    clock.advance(1)
    coord.tick(1)
    assert task.paused == [False, True]
    assert coord.metrics()["groups"]["g"]["target_watermark"] == NOON + minutes(5) // 2


def test_speed_is_event_time_per_clock_second_smoothed():
    task = FakeTask("src", [0, 0])
    coord, clock = coordinator(task, speed_smoothing=0.5)
    for wm, expected in [(seconds(100), 10_000.0), (seconds(100) + seconds(300), 20_000.0)]:
        task.splits[0].watermark = wm
        task.splits[1].watermark = wm
        clock.advance(seconds(10))
        coord.tick(clock.now_ms())
        assert coord.metrics()["splits"]["src/s0"]["speed"] == expected
    # The second sample was 30_000 ms/s: the average moved half way.


def test_a_split_reaching_the_target_is_paused_before_its_next_poll():
    task = FakeTask("src", [NOON, NOON + minutes(1)])
    coord, _ = coordinator(task)
    coord.tick(0)
    assert coord.may_poll(task.splits[1])
    task.splits[1].watermark = NOON + minutes(5)
    assert not coord.may_poll(task.splits[1])
    assert task.paused[1]
    assert task.readers[1].pause_calls == 1
    assert coord.may_poll(task.splits[0])


def test_unaligned_sources_and_other_groups_are_never_held_back():
    free = FakeTask("free", [NOON, NOON + hours(5)], group=None)
    a = FakeTask("a", [NOON, NOON + hours(1)], group="a")
    b = FakeTask("b", [NOON + hours(3), NOON + hours(3)], group="b")
    coord, _ = coordinator(free, a, b)
    coord.tick(0)
    assert a.paused == [False, True]
    assert b.paused == [False, False]
    assert free.paused == [False, False]
    assert coord.may_poll(free.splits[1])
    assert set(coord.metrics()["groups"]) == {"a", "b"}


def test_one_group_needs_one_alignment_setting():
    a = FakeTask("a", [0], max_drift=minutes(5))
    b = FakeTask("b", [0], max_drift=minutes(6))
    with pytest.raises(ConfigurationError, match="'a' and 'b' share watermark alignment group 'g'"):
        coordinator(a, b)


def test_paused_split_resumes_when_the_target_time_passes_and_the_target_rises():
    task = FakeTask("src", [NOON, NOON + minutes(10)])
    coord, clock = coordinator(task)
    coord.tick(0)
    assert task.paused == [False, True]
    task.splits[0].watermark = NOON + minutes(8)
    clock.advance(seconds(10))
    coord.tick(clock.now_ms())
    assert task.paused == [False, False]
    assert task.splits[1].paused_ms == seconds(10)
    assert task.splits[1].last_active == clock.now_ms()  # no spurious idleness after a pause
    assert task.readers[1].resume_calls == 1


def test_the_finished_slowest_split_releases_the_others_at_once():
    task = FakeTask("src", [NOON, NOON + hours(1), NOON + hours(2)])
    coord, clock = coordinator(task)
    coord.tick(0)
    assert task.paused == [False, True, True]
    assert coord.may_poll(task.splits[0])
    task.readers[0].finished = True
    clock.advance(1)
    coord.tick(1)
    assert task.paused == [False, False, True]
    assert coord.metrics()["forced_releases"] == 0


def test_a_group_never_stays_fully_paused():
    # The slowest split reaches the target before the interval ends: everyone would be paused.
    task = FakeTask("src", [NOON, NOON + minutes(6)])
    coord, clock = coordinator(task)
    coord.tick(0)
    assert task.paused == [False, True]
    task.splits[0].watermark = NOON + minutes(7)
    clock.advance(5)
    # s0 reaches the target and would leave nothing to poll: the group is decided again
    # at once (drift 1 min: only the bound min + 5 min applies), and both run.
    assert coord.may_poll(task.splits[0])
    assert task.paused == [False, False]
    task.splits[0].watermark = NOON + minutes(12)
    assert not coord.may_poll(task.splits[0])
    assert task.paused == [True, False]


def test_idle_splits_are_excluded_and_idle_rounds_unstick_the_group():
    task = FakeTask("src", [NOON, NOON + hours(1)])
    coord, _ = coordinator(task)
    coord.tick(0)
    assert task.paused == [False, True]
    task.splits[0].idle = True
    coord.on_idle_round()
    assert task.paused == [False, False]


def test_watermark_jump_of_the_slowest_split_does_not_stall_the_group():
    task = FakeTask("src", [NOON, NOON + minutes(20), NOON + minutes(20)])
    coord, clock = coordinator(task)
    coord.tick(0)
    assert task.paused == [False, True, True]
    task.splits[0].watermark = NOON + hours(3)  # a jump: now far ahead of everyone
    clock.advance(seconds(10))
    coord.tick(clock.now_ms())
    assert task.paused == [True, False, False]


def test_snapshot_restores_speeds_pauses_and_target_even_before_attach():
    task = FakeTask("src", [NOON, NOON + hours(1)])
    coord, clock = coordinator(task)
    task.set_watermarks(NOON + seconds(50), NOON + hours(1) + seconds(10))
    clock.advance(seconds(10))
    coord.tick(clock.now_ms())
    clock.advance(seconds(4))
    image = coord.snapshot()
    assert image["groups"]["g"]["target_remaining_ms"] == seconds(6)

    fresh = FakeTask("src", [s.watermark for s in task.splits])
    restored = SourceRateCoordinator(RateCoordinationConfig())
    restored.restore(image)
    restored.attach([fresh], ManualClock(500))
    assert fresh.paused == [False, True]
    m = restored.metrics()
    assert m["splits"]["src/s0"]["speed"] == coord.metrics()["splits"]["src/s0"]["speed"] == 5_000.0
    assert m["groups"]["g"]["target_watermark"] == coord.metrics()["groups"]["g"]["target_watermark"]
    assert m["groups"]["g"]["target_time"] == 500 + seconds(6)


def test_restore_ignores_unknown_splits_and_rejects_foreign_images():
    task = FakeTask("src", [NOON, NOON])
    coord, _ = coordinator(task)
    image = coord.snapshot()
    image["splits"]["gone/s9"] = {"speed": 1.0, "has_speed": True, "paused": True}
    image["groups"]["gone"] = {"target": 1, "target_remaining_ms": 5, "throttling": True}
    coord.restore(image)
    assert task.paused == [False, False]
    with pytest.raises(RestoreError, match="rate coordinator"):
        coord.restore({"version": 99})


def test_metrics_per_split_and_group():
    task = FakeTask("src", [NOON, NOON + hours(1)])
    coord, clock = coordinator(task)
    coord.tick(0)
    clock.advance(3_000)
    m = coord.metrics()
    assert m["mode"] == "predictive"
    assert m["pauses"] == 1
    assert m["groups"]["g"] == {
        "target_watermark": NOON + minutes(5) // 2,
        "target_time": seconds(10),
        "throttling": True,
        "drift": hours(1),
        "peak_drift": hours(1),
        "max_drift": minutes(5),
        "update_interval": seconds(10),
        "splits": 2,
        "paused_splits": 1,
        "decisions": 1,
    }
    assert m["splits"]["src/s1"] == {
        "group": "g",
        "watermark": NOON + hours(1),
        "speed": 0.0,
        "paused": True,
        "paused_ms": 3_000,
        "finished": False,
    }


def test_decisions_are_logged(caplog):
    task = FakeTask("src", [NOON, NOON + hours(1)])
    with caplog.at_level(logging.DEBUG, logger="streamcore.coordinator"):
        coord, _ = coordinator(task)
        coord.tick(0)
    messages = [r.getMessage() for r in caplog.records]
    assert any(m.startswith("rate coordination engaged group=g drift_ms=3600000") for m in messages)
    assert any(m.startswith("pause split=src/s1") for m in messages)
    engaged = next(r for r in caplog.records if r.getMessage().startswith("rate coordination engaged"))
    assert engaged.levelno == logging.INFO
    assert engaged.group == "g"
