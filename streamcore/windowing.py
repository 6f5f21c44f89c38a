"""Windows and window assigners (PyFlink names): configuration only.

A *window assigner* puts each element into zero or more windows: tumbling and sliding
windows aligned to the epoch (plus an offset), session windows that merge as the gaps
(fixed or per element) between elements close, processing-time variants, and the single
global window (of count windows, or fired at the end of input). Triggers and evictors are
in :mod:`streamcore.triggers` (and re-exported here).

Everything here is immutable configuration shared by every key and window; the per
window data (contents, trigger state, timers) lives in the window operator's keyed
state (:mod:`streamcore.operators.window_operator`).

Time is int milliseconds. A :class:`TimeWindow` covers ``[start, end)``; its
``max_timestamp()`` is ``end - 1``, the event time at which it fires. Window starts use
floor division, so negative timestamps fall into the right window:

>>> TumblingEventTimeWindows.of(10).assign_windows(None, -1, None)
[TimeWindow(start=-10, end=0)]
>>> SlidingEventTimeWindows.of(10, 5).assign_windows(None, 7, None)
[TimeWindow(start=5, end=15), TimeWindow(start=0, end=10)]
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, Self

from streamcore.errors import ConfigurationError
from streamcore.functions import function_name
from streamcore.time import MAX_TIMESTAMP
from streamcore.triggers import (
    ContinuousEventTimeTrigger,
    CountEvictor,
    CountTrigger,
    EndOfStreamTrigger,
    EventTimeTrigger,
    Evictor,
    NeverTrigger,
    ProcessingTimeTrigger,
    PurgingTrigger,
    Trigger,
    TriggerContext,
    TriggerResult,
    positive_ms,
)

__all__ = [
    "AlignedWindowAssigner",
    "ContinuousEventTimeTrigger",
    "CountEvictor",
    "CountTrigger",
    "CumulativeEventTimeWindows",
    "EndOfStreamTrigger",
    "EventTimeSessionWindows",
    "EventTimeTrigger",
    "Evictor",
    "GlobalWindow",
    "GlobalWindows",
    "MergingWindowAssigner",
    "NeverTrigger",
    "ProcessingTimeSessionWindows",
    "ProcessingTimeTrigger",
    "PurgingTrigger",
    "SlidingEventTimeWindows",
    "SlidingProcessingTimeWindows",
    "TimeWindow",
    "Trigger",
    "TriggerContext",
    "TriggerResult",
    "TumblingEventTimeWindows",
    "TumblingProcessingTimeWindows",
    "WindowAssigner",
    "count_window_assigner",
    "merge_time_windows",
]


# -- windows -------------------------------------------------------------------------------
class TimeWindow:
    """The half-open time interval ``[start, end)`` of a window.

    >>> w = TimeWindow(0, 10)
    >>> w.max_timestamp(), w.intersects(TimeWindow(10, 20)), w.cover(TimeWindow(5, 15))
    (9, True, TimeWindow(start=0, end=15))
    """

    __slots__ = ("end", "start")

    def __init__(self, start: int, end: int) -> None:
        self.start = start
        self.end = end

    def max_timestamp(self) -> int:
        """The largest timestamp inside the window (``end - 1``): the window fires at this event time."""
        return self.end - 1

    def intersects(self, other: TimeWindow) -> bool:
        """Whether the windows overlap or touch (touching session windows merge, as in Flink)."""
        return self.start <= other.end and self.end >= other.start

    def cover(self, other: TimeWindow) -> TimeWindow:
        """The smallest window containing both."""
        return TimeWindow(min(self.start, other.start), max(self.end, other.end))

    def namespace(self) -> tuple[int, int]:
        """``(start, end)``: the namespace of this window's keyed state."""
        return (self.start, self.end)

    def __eq__(self, other: object) -> bool:
        return isinstance(other, TimeWindow) and self.start == other.start and self.end == other.end

    def __lt__(self, other: TimeWindow) -> bool:
        return (self.start, self.end) < (other.start, other.end)

    def __hash__(self) -> int:
        return hash((self.start, self.end))

    def __repr__(self) -> str:
        return f"TimeWindow(start={self.start}, end={self.end})"


class GlobalWindow:
    """The one window of :class:`GlobalWindows` (count windows): it never ends on its own."""

    __slots__ = ()
    _instance: GlobalWindow | None = None

    def __new__(cls) -> GlobalWindow:
        if cls._instance is None:
            cls._instance = super().__new__(cls)
        return cls._instance

    @staticmethod
    def get() -> GlobalWindow:
        """The singleton."""
        return GlobalWindow()

    def max_timestamp(self) -> int:
        """``MAX_TIMESTAMP``: the global window covers all of time."""
        return MAX_TIMESTAMP

    def namespace(self) -> None:
        """``None``: the namespace of the global window's keyed state."""
        return None

    def __repr__(self) -> str:
        return "GlobalWindow()"


def merge_time_windows(windows: list[TimeWindow]) -> list[tuple[TimeWindow, list[TimeWindow]]]:
    """Group overlapping (or touching) windows: ``[(cover, [merged windows...]), ...]``.

    Only groups of two or more windows are returned.

    >>> merge_time_windows([TimeWindow(0, 5), TimeWindow(9, 12), TimeWindow(4, 8)])
    [(TimeWindow(start=0, end=8), [TimeWindow(start=0, end=5), TimeWindow(start=4, end=8)])]
    """
    out: list[tuple[TimeWindow, list[TimeWindow]]] = []
    current: TimeWindow | None = None
    members: list[TimeWindow] = []
    for w in sorted(windows, key=lambda w: (w.start, w.end)):
        if current is not None and current.intersects(w):
            current = current.cover(w)
            members.append(w)
            continue
        if len(members) > 1:
            out.append((current, members))  # type: ignore[arg-type]
        current, members = w, [w]
    if len(members) > 1:
        out.append((current, members))  # type: ignore[arg-type]
    return out


# -- assigners -----------------------------------------------------------------------------------
class WindowAssigner:
    """Assigns each element to windows; says which trigger a windowed stream uses by default."""

    #: event-time assigners use element timestamps; processing-time ones the job clock.
    event_time = True

    def assign_windows(self, element: Any, timestamp: int | None, context: Any) -> list[Any]:
        """The windows of ``element`` (``context.get_current_processing_time()`` for processing time)."""
        raise NotImplementedError(f"{type(self).__name__} must implement assign_windows")

    def get_default_trigger(self) -> Trigger:
        """The trigger used unless ``WindowedStream.trigger(...)`` sets one."""
        return EventTimeTrigger() if self.event_time else ProcessingTimeTrigger()

    def get_default_evictor(self) -> Evictor | None:
        """The evictor used unless ``WindowedStream.evictor(...)`` sets one (count windows)."""
        return None

    def is_event_time(self) -> bool:
        """Whether windows follow event time (watermarks) rather than the clock."""
        return self.event_time

    def element_time(self, timestamp: int | None, context: Any) -> int:
        """Where an element falls: its timestamp, or the clock's time for processing-time assigners."""
        if not self.event_time:
            return context.get_current_processing_time()  # type: ignore[no-any-return]
        if timestamp is None:
            msg = (
                f"{type(self).__name__} needs element timestamps: pass timestamp=... to the source or "
                "call assign_timestamps_and_watermarks(...) before the window"
            )
            raise ConfigurationError(msg)
        return timestamp

    def __repr__(self) -> str:
        return f"{type(self).__name__}()"


class MergingWindowAssigner(WindowAssigner):
    """An assigner whose windows merge when they overlap (sessions)."""

    def merge_windows(self, windows: list[TimeWindow]) -> list[tuple[TimeWindow, list[TimeWindow]]]:
        """Groups of windows to merge: ``[(result, [merged...]), ...]``."""
        return merge_time_windows(windows)


class AlignedWindowAssigner(WindowAssigner):
    """Tumbling and sliding windows: ``size`` long, every ``slide``, starting at ``offset`` + k * slide."""

    def __init__(self, size: int, slide: int, offset: int, event_time: bool) -> None:
        what = type(self).__name__
        self.size = positive_ms(size, f"{what} size")
        self.slide = positive_ms(slide, f"{what} slide")
        if type(offset) is not int or abs(offset) >= self.slide:
            msg = f"{what} offset must be an int with abs(offset) < {self.slide} (the slide), got {offset!r}"
            raise ConfigurationError(msg)
        self.offset = offset
        self.event_time = event_time

    def window_start(self, timestamp: int) -> int:
        """Start of the latest window containing ``timestamp`` (floor semantics, negatives too)."""
        return timestamp - (timestamp - self.offset) % self.slide

    def assign_windows(self, element: Any, timestamp: int | None, context: Any) -> list[Any]:
        """Every window containing the element's time, latest first."""
        timestamp = self.element_time(timestamp, context)
        size, slide = self.size, self.slide
        start = timestamp - (timestamp - self.offset) % slide
        out = []
        while start > timestamp - size:
            out.append(TimeWindow(start, start + size))
            start -= slide
        return out

    def __repr__(self) -> str:
        off = f", offset={self.offset}" if self.offset else ""
        if self.size == self.slide:
            return f"{type(self).__name__}.of({self.size}{off})"
        return f"{type(self).__name__}.of({self.size}, {self.slide}{off})"


class TumblingEventTimeWindows(AlignedWindowAssigner):
    """Back-to-back windows of ``size`` ms of event time: ``[k*size + offset, (k+1)*size + offset)``."""

    def __init__(self, size: int, offset: int = 0) -> None:
        super().__init__(size, size, offset, True)

    @staticmethod
    def of(size: int, offset: int = 0) -> TumblingEventTimeWindows:
        """Windows of ``size`` ms, shifted by ``offset`` (e.g. a time zone)."""
        return TumblingEventTimeWindows(size, offset)


class SlidingEventTimeWindows(AlignedWindowAssigner):
    """Windows of ``size`` ms of event time starting every ``slide`` ms (an element is in ``size/slide``)."""

    def __init__(self, size: int, slide: int, offset: int = 0) -> None:
        super().__init__(size, slide, offset, True)

    @staticmethod
    def of(size: int, slide: int, offset: int = 0) -> SlidingEventTimeWindows:
        """Windows of ``size`` ms every ``slide`` ms."""
        return SlidingEventTimeWindows(size, slide, offset)


class CumulativeEventTimeWindows(WindowAssigner):
    """Windows that grow by ``step`` ms from the start of each ``max_size`` period (SQL's ``CUMULATE``).

    An element at ``t`` in period ``[s, s + max_size)`` is in ``[s, s + k * step)`` for
    every ``k`` with ``s + k * step > t``, so each window fires with the running result
    of its period so far:

    >>> CumulativeEventTimeWindows.of(30, 10).assign_windows(None, 12, None)
    [TimeWindow(start=0, end=20), TimeWindow(start=0, end=30)]
    """

    def __init__(self, max_size: int, step: int, offset: int = 0) -> None:
        self.max_size = positive_ms(max_size, "CumulativeEventTimeWindows max_size")
        self.step = positive_ms(step, "CumulativeEventTimeWindows step")
        if self.max_size % self.step:
            msg = f"CumulativeEventTimeWindows max_size {max_size} must be a multiple of the step {step}"
            raise ConfigurationError(msg)
        if type(offset) is not int or abs(offset) >= self.max_size:
            msg = f"CumulativeEventTimeWindows offset: an int, abs(offset) < {max_size}, got {offset!r}"
            raise ConfigurationError(msg)
        self.offset = offset

    @staticmethod
    def of(max_size: int, step: int, offset: int = 0) -> CumulativeEventTimeWindows:
        """Windows growing by ``step`` ms up to ``max_size`` ms."""
        return CumulativeEventTimeWindows(max_size, step, offset)

    def assign_windows(self, element: Any, timestamp: int | None, context: Any) -> list[Any]:
        """Every window of the element's period that ends after it, smallest first."""
        timestamp = self.element_time(timestamp, context)
        start = timestamp - (timestamp - self.offset) % self.max_size
        first_end = start + ((timestamp - start) // self.step + 1) * self.step
        return [TimeWindow(start, end) for end in range(first_end, start + self.max_size + 1, self.step)]

    def __repr__(self) -> str:
        off = f", offset={self.offset}" if self.offset else ""
        return f"CumulativeEventTimeWindows.of({self.max_size}, {self.step}{off})"


class TumblingProcessingTimeWindows(AlignedWindowAssigner):
    """Back-to-back windows of ``size`` ms of the job clock's time."""

    def __init__(self, size: int, offset: int = 0) -> None:
        super().__init__(size, size, offset, False)

    @staticmethod
    def of(size: int, offset: int = 0) -> TumblingProcessingTimeWindows:
        """Windows of ``size`` ms of processing time."""
        return TumblingProcessingTimeWindows(size, offset)


class SlidingProcessingTimeWindows(AlignedWindowAssigner):
    """Windows of ``size`` ms of the job clock's time, starting every ``slide`` ms."""

    def __init__(self, size: int, slide: int, offset: int = 0) -> None:
        super().__init__(size, slide, offset, False)

    @staticmethod
    def of(size: int, slide: int, offset: int = 0) -> SlidingProcessingTimeWindows:
        """Windows of ``size`` ms every ``slide`` ms of processing time."""
        return SlidingProcessingTimeWindows(size, slide, offset)


class _SessionWindows(MergingWindowAssigner):
    """Sessions: each element opens ``[ts, ts + gap)``, merged with every window it touches."""

    def __init__(self, gap: int | None, gap_fn: Callable[[Any], int] | None) -> None:
        self.gap = gap
        self.gap_fn = gap_fn

    @classmethod
    def with_gap(cls, gap: int) -> Self:
        """A fixed session gap of ``gap`` ms."""
        return cls(positive_ms(gap, "session gap"), None)

    @classmethod
    def with_dynamic_gap(cls, extractor: Callable[[Any], int]) -> Self:
        """A gap per element: ``extractor(element)`` ms, an int > 0 (Flink's ``withDynamicGap``).

        A session ends at the latest end of its elements' windows: a short gap never cuts it short.
        """
        if not callable(extractor):
            msg = f"with_dynamic_gap() takes a callable element -> gap in ms, got {type(extractor).__name__}"
            raise ConfigurationError(msg)
        return cls(None, extractor)

    def assign_windows(self, element: Any, timestamp: int | None, context: Any) -> list[Any]:
        """``[ts, ts + gap)``: merged with every window it touches."""
        timestamp = self.element_time(timestamp, context)
        gap = self.gap
        if gap is None:
            gap = self.gap_fn(element)  # type: ignore[misc]
            if type(gap) is not int or gap <= 0:
                msg = (
                    f"session gap function {function_name(self.gap_fn)} returned {gap!r} for element "
                    f"{element!r}; it must return an int of milliseconds > 0"
                )
                raise ConfigurationError(msg)
        return [TimeWindow(timestamp, timestamp + gap)]

    def __repr__(self) -> str:
        if self.gap is not None:
            return f"{type(self).__name__}.with_gap({self.gap})"
        return f"{type(self).__name__}.with_dynamic_gap({function_name(self.gap_fn)})"


class EventTimeSessionWindows(_SessionWindows):
    """Sessions of event time (:meth:`with_gap`, :meth:`with_dynamic_gap`): a window closes after ``gap`` ms.

    Elements whose timestamps are at most ``gap`` apart share a session; windows merge
    (with their contents and timers) when a late-enough element bridges them.
    """

    event_time = True


class ProcessingTimeSessionWindows(_SessionWindows):
    """Sessions of processing time (:meth:`with_gap`, :meth:`with_dynamic_gap`): ``gap`` ms of the clock."""

    event_time = False


class GlobalWindows(WindowAssigner):
    """One window per key that never ends: use with a trigger (count windows, the end-of-stream one)."""

    event_time = False

    def __init__(self, trigger: Trigger | None = None, evictor: Evictor | None = None) -> None:
        self._trigger = trigger
        self._evictor = evictor

    @staticmethod
    def create() -> GlobalWindows:
        """The global window assigner (its default trigger never fires)."""
        return GlobalWindows()

    @staticmethod
    def create_with_end_of_stream_trigger() -> GlobalWindows:
        """The global window, fired once when the input ends (Flink's ``createWithEndOfStreamTrigger``).

        Results carry ``MAX_TIMESTAMP``; an input that never ends never fires it.
        """
        return GlobalWindows(EndOfStreamTrigger())

    def assign_windows(self, element: Any, timestamp: int | None, context: Any) -> list[Any]:
        """The global window."""
        return [GlobalWindow()]

    def get_default_trigger(self) -> Trigger:
        """:class:`NeverTrigger`, or the count trigger of count windows."""
        return self._trigger if self._trigger is not None else NeverTrigger()

    def get_default_evictor(self) -> Evictor | None:
        """The count evictor of sliding count windows."""
        return self._evictor

    def __repr__(self) -> str:
        if self._trigger is None:
            return "GlobalWindows.create()"
        if type(self._trigger) is EndOfStreamTrigger and self._evictor is None:
            return "GlobalWindows.create_with_end_of_stream_trigger()"
        return f"GlobalWindows(trigger={self._trigger!r}, evictor={self._evictor!r})"


def count_window_assigner(size: int, slide: int | None = None) -> GlobalWindows:
    """The assigner of ``count_window(size, slide)``: the global window with a count trigger.

    Tumbling (``slide=None``): fires and purges every ``size`` elements of a key.
    Sliding: fires every ``slide`` elements with the last ``size`` elements (fewer at first).
    A partial window at the end of the input is not emitted (as in Flink).
    """
    if type(size) is not int or size < 1:
        msg = f"count_window() size must be an int >= 1, got {size!r}"
        raise ConfigurationError(msg)
    if slide is None:
        return GlobalWindows(PurgingTrigger.of(CountTrigger.of(size)))
    if type(slide) is not int or slide < 1:
        msg = f"count_window() slide must be an int >= 1, got {slide!r}"
        raise ConfigurationError(msg)
    return GlobalWindows(CountTrigger.of(slide), CountEvictor.of(size))
