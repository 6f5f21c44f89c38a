"""Time helpers, clocks and watermark strategies."""

from __future__ import annotations

import pytest

from streamcore.errors import ConfigurationError
from streamcore.time import (
    MIN_TIMESTAMP,
    ManualClock,
    SystemClock,
    WatermarkGenerator,
    WatermarkStrategy,
    days,
    hours,
    minutes,
    seconds,
)


def test_helpers():
    assert (
        seconds(5) == 5_000 and minutes(20) == 1_200_000 and hours(1) == 3_600_000 and days(1) == 86_400_000
    )
    assert seconds(1.5) == 1_500


def test_manual_clock():
    c = ManualClock(100)
    c.advance(50)
    c.sleep(10)
    assert c.now_ms() == 160
    with pytest.raises(ConfigurationError):
        c.set(10)
    with pytest.raises(ConfigurationError):
        c.advance(-1)


def test_system_clock_is_epoch_ms():
    assert SystemClock().now_ms() > 1_600_000_000_000


def test_bounded_out_of_orderness_is_flinks_formula():
    gen = WatermarkStrategy.for_bounded_out_of_orderness(5_000).create_generator()
    assert gen.current_watermark() < MIN_TIMESTAMP + 10
    gen.on_batch([10_000, 3_000, 12_000])
    assert gen.current_watermark() == 12_000 - 5_000 - 1
    gen.on_event(11_000)
    assert gen.current_watermark() == 6_999
    state = gen.snapshot()
    other = WatermarkStrategy.for_bounded_out_of_orderness(5_000).create_generator()
    other.restore(state)
    assert other.current_watermark() == 6_999


def test_monotonous_and_none():
    gen = WatermarkStrategy.for_monotonous_timestamps().create_generator()
    gen.on_event(10)
    assert gen.current_watermark() == 9
    gen = WatermarkStrategy.no_watermarks().create_generator()
    gen.on_event(10)
    assert gen.current_watermark() == MIN_TIMESTAMP


@pytest.mark.parametrize("bad", [-1, 1.5, "5s", None])
def test_bad_bounds(bad):
    with pytest.raises(ConfigurationError):
        WatermarkStrategy.for_bounded_out_of_orderness(bad)


def test_idleness_and_alignment_are_immutable_options():
    base = WatermarkStrategy.for_bounded_out_of_orderness(100)
    s = base.with_idleness(1_000).with_watermark_alignment("g", minutes(5), seconds(10))
    assert base.idleness_ms is None and s.idleness_ms == 1_000
    assert s.alignment.group == "g" and s.alignment.max_drift == 300_000
    with pytest.raises(ConfigurationError):
        base.with_idleness(0)
    with pytest.raises(ConfigurationError):
        base.with_watermark_alignment("", 10)


def test_custom_generator_factory():
    class Fixed(WatermarkGenerator):
        def current_watermark(self):
            return 42

    assert WatermarkStrategy.for_generator(Fixed).create_generator().current_watermark() == 42
    with pytest.raises(ConfigurationError):
        WatermarkStrategy.for_generator(lambda: object()).create_generator()
