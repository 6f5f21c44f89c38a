"""Event time and clocks: int milliseconds, clocks to inject, watermark strategies.

Event time inside streamcore is always an ``int`` of milliseconds since the epoch, as
in Flink. Conversions happen at the edges (``seconds(5) == 5_000``).

A :class:`WatermarkStrategy` is immutable configuration; each source split gets its
own :class:`WatermarkGenerator` (mutable logic) built from it. Bounded
out-of-orderness emits ``max_timestamp - bound - 1``, exactly Flink's formula, so an
element that is exactly ``bound`` ms older than the newest one is still on time.
"""

from __future__ import annotations

import time as _time
from abc import ABC, abstractmethod
from collections.abc import Callable
from dataclasses import dataclass, replace
from typing import Any

from streamcore.errors import ConfigurationError

__all__ = [
    "MAX_TIMESTAMP",
    "MIN_TIMESTAMP",
    "BoundedOutOfOrdernessWatermarks",
    "Clock",
    "ManualClock",
    "NoWatermarksGenerator",
    "SystemClock",
    "WatermarkAlignment",
    "WatermarkGenerator",
    "WatermarkStrategy",
    "days",
    "hours",
    "minutes",
    "ms",
    "seconds",
]

MIN_TIMESTAMP = -(2**63)
"""The smallest timestamp: the watermark before any element was seen."""
MAX_TIMESTAMP = 2**63 - 1
"""The largest timestamp: the watermark at the end of a bounded input; it fires every event-time timer."""


def ms(n: float) -> int:
    """Milliseconds, as an int."""
    return int(n)


def seconds(n: float) -> int:
    """``n`` seconds in milliseconds. ``seconds(1.5) == 1500``."""
    return int(n * 1_000)


def minutes(n: float) -> int:
    """``n`` minutes in milliseconds."""
    return int(n * 60_000)


def hours(n: float) -> int:
    """``n`` hours in milliseconds."""
    return int(n * 3_600_000)


def days(n: float) -> int:
    """``n`` days in milliseconds."""
    return int(n * 86_400_000)


def _check_duration(value: Any, what: str, *, allow_zero: bool = True) -> int:
    if type(value) is not int or value < 0 or (value == 0 and not allow_zero):
        bound = ">= 0" if allow_zero else "> 0"
        msg = (
            f"{what} must be an int of milliseconds {bound}, got {value!r}; use streamcore.time.seconds(...)"
        )
        raise ConfigurationError(msg)
    return value


class Clock(ABC):
    """A source of processing time in milliseconds, injected wherever time is read."""

    @abstractmethod
    def now_ms(self) -> int:
        """The current processing time in milliseconds."""

    def sleep(self, duration_ms: int) -> None:
        """Wait ``duration_ms`` of this clock's time (real clocks sleep; manual clocks advance)."""
        _time.sleep(duration_ms / 1000)


class SystemClock(Clock):
    """Wall-clock time (``time.time_ns() // 1_000_000``)."""

    def now_ms(self) -> int:
        """The wall-clock time in milliseconds since the epoch."""
        return _time.time_ns() // 1_000_000


class ManualClock(Clock):
    """A clock that moves only when told to: deterministic processing time for tests.

    >>> clock = ManualClock(1_000)
    >>> clock.advance(500)
    >>> clock.now_ms()
    1500
    """

    def __init__(self, start_ms: int = 0) -> None:
        self._now = start_ms

    def now_ms(self) -> int:
        """The clock's current time."""
        return self._now

    def advance(self, delta_ms: int) -> None:
        """Move the clock forward by ``delta_ms`` (never backwards)."""
        if delta_ms < 0:
            msg = f"a ManualClock never moves backwards (advance({delta_ms}))"
            raise ConfigurationError(msg)
        self._now += delta_ms

    def set(self, now_ms: int) -> None:
        """Set the clock to ``now_ms`` if that is not in its past."""
        if now_ms < self._now:
            msg = f"a ManualClock never moves backwards ({self._now} -> {now_ms})"
            raise ConfigurationError(msg)
        self._now = now_ms

    def sleep(self, duration_ms: int) -> None:
        """Advance instead of sleeping, so waits in tests cost no real time."""
        self.advance(max(0, duration_ms))


class WatermarkGenerator:
    """Tracks the event time seen by one source split and says what its watermark is.

    Subclass it for a custom strategy: override :meth:`on_event` (and :meth:`on_batch`
    for speed) and :meth:`current_watermark`. :meth:`snapshot`/:meth:`restore` make the
    generator part of checkpoints.
    """

    def on_event(self, timestamp: int) -> None:
        """Observe one element's timestamp."""

    def on_batch(self, timestamps: list[int]) -> None:
        """Observe the timestamps of a batch (default: :meth:`on_event` for each)."""
        on_event = self.on_event
        for ts in timestamps:
            on_event(ts)

    def current_watermark(self) -> int:
        """The watermark to emit now: no element with a smaller timestamp is expected."""
        return MIN_TIMESTAMP

    def snapshot(self) -> Any:
        """State to store in a checkpoint (msgpack-able)."""
        return None

    def restore(self, state: Any) -> None:
        """Restore what :meth:`snapshot` returned."""


class BoundedOutOfOrdernessWatermarks(WatermarkGenerator):
    """Watermark = highest timestamp seen - bound - 1 (Flink's formula)."""

    __slots__ = ("_bound", "_max_ts")

    def __init__(self, bound_ms: int) -> None:
        self._bound = bound_ms
        self._max_ts = MIN_TIMESTAMP + bound_ms + 1

    def on_event(self, timestamp: int) -> None:
        """Remember the highest timestamp."""
        if timestamp > self._max_ts:
            self._max_ts = timestamp

    def on_batch(self, timestamps: list[int]) -> None:
        """Remember the highest timestamp of the batch (one C-level ``max``)."""
        if timestamps:
            m = max(timestamps)
            if m > self._max_ts:
                self._max_ts = m

    def current_watermark(self) -> int:
        """``max_ts - bound - 1``."""
        return self._max_ts - self._bound - 1

    def snapshot(self) -> Any:
        """The highest timestamp seen."""
        return self._max_ts

    def restore(self, state: Any) -> None:
        """Restore the highest timestamp seen."""
        self._max_ts = int(state)


class NoWatermarksGenerator(WatermarkGenerator):
    """Never advances: event-time timers fire only at the end of a bounded input."""


@dataclass(frozen=True)
class WatermarkAlignment:
    """Watermark alignment of a source: its group, the allowed drift and the report interval."""

    group: str
    max_drift: int
    update_interval: int


@dataclass(frozen=True)
class WatermarkStrategy:
    """How a source assigns watermarks (immutable; builds one generator per split).

    >>> from streamcore.time import seconds
    >>> strategy = WatermarkStrategy.for_bounded_out_of_orderness(seconds(5)).with_idleness(seconds(30))
    >>> gen = strategy.create_generator()
    >>> gen.on_event(10_000)
    >>> gen.current_watermark()
    4999
    """

    generator_factory: Callable[[], WatermarkGenerator]
    idleness_ms: int | None = None
    alignment: WatermarkAlignment | None = None
    description: str = "custom"
    timestamp_assigner: Callable[[Any], int] | None = None

    @staticmethod
    def for_bounded_out_of_orderness(bound_ms: int) -> WatermarkStrategy:
        """Elements may arrive up to ``bound_ms`` out of order; watermark = max_ts - bound - 1."""
        bound = _check_duration(bound_ms, "bounded out-of-orderness")
        return WatermarkStrategy(
            lambda: BoundedOutOfOrdernessWatermarks(bound), description=f"bounded({bound} ms)"
        )

    @staticmethod
    def for_monotonous_timestamps() -> WatermarkStrategy:
        """Timestamps never decrease; watermark = max_ts - 1."""
        return WatermarkStrategy(lambda: BoundedOutOfOrdernessWatermarks(0), description="monotonous")

    @staticmethod
    def no_watermarks() -> WatermarkStrategy:
        """No watermarks: event time only advances at the end of a bounded input."""
        return WatermarkStrategy(NoWatermarksGenerator, description="none")

    @staticmethod
    def for_generator(factory: Callable[[], WatermarkGenerator]) -> WatermarkStrategy:
        """A custom :class:`WatermarkGenerator`, built by ``factory`` once per split."""
        if not callable(factory):
            msg = "for_generator() takes a callable that returns a WatermarkGenerator"
            raise ConfigurationError(msg)
        return WatermarkStrategy(factory, description=getattr(factory, "__name__", "custom"))

    def with_timestamp_assigner(self, assigner: Any) -> WatermarkStrategy:
        """Take event timestamps from ``assigner`` (PyFlink's name): a callable ``element -> int ms``
        or an object with ``extract_timestamp(element, record_timestamp)`` (called with
        ``record_timestamp=None``). A ``timestamp=`` given to the source wins over it.

        >>> s = WatermarkStrategy.for_monotonous_timestamps().with_timestamp_assigner(lambda e: e["ts"])
        >>> s.timestamp_assigner({"ts": 5})
        5
        """
        extract = getattr(assigner, "extract_timestamp", None)
        if callable(extract):
            fn: Callable[[Any], int] = lambda element: extract(element, None)  # noqa: E731
        elif callable(assigner):
            fn = assigner
        else:
            msg = (
                "with_timestamp_assigner() takes a callable element -> int ms or an object with "
                f"extract_timestamp(element, record_timestamp), got {type(assigner).__name__}"
            )
            raise ConfigurationError(msg)
        return replace(self, timestamp_assigner=fn)

    def with_idleness(self, idle_timeout_ms: int) -> WatermarkStrategy:
        """Mark a split idle after ``idle_timeout_ms`` of processing time without records.

        Idle splits do not hold back the source's watermark; they become active again
        with their next record.
        """
        return replace(self, idleness_ms=_check_duration(idle_timeout_ms, "idleness", allow_zero=False))

    def with_watermark_alignment(
        self, group: str, max_drift: int, update_interval: int = 10_000
    ) -> WatermarkStrategy:
        """Align this source's splits with every split of the same ``group`` (rate coordination).

        Splits whose watermark runs more than ``max_drift`` ahead of the slowest split of
        the group are paused; see :class:`streamcore.sources.coordinator.SourceRateCoordinator`.
        """
        if not isinstance(group, str) or not group:
            msg = f"watermark alignment group must be a non-empty str, got {group!r}"
            raise ConfigurationError(msg)
        drift = _check_duration(max_drift, "max_drift", allow_zero=False)
        interval = _check_duration(update_interval, "update_interval", allow_zero=False)
        return replace(self, alignment=WatermarkAlignment(group, drift, interval))

    def create_generator(self) -> WatermarkGenerator:
        """Build a fresh generator for one split."""
        gen = self.generator_factory()
        if not isinstance(gen, WatermarkGenerator):
            msg = f"the watermark generator factory returned {type(gen).__name__}, not a WatermarkGenerator"
            raise ConfigurationError(msg)
        return gen
