"""Windows on keyed streams: ``key_by(...).window(assigner)`` and the operator that runs them.

>>> import streamcore as sc
>>> from streamcore.windowing import TumblingEventTimeWindows
>>> from streamcore.aggregates import Sum
>>> env = sc.StreamEnvironment()
>>> clicks = env.from_collection([("a", 1), ("b", 3), ("a", 12)], timestamp=lambda c: c[1])
>>> (clicks.key_by(lambda c: c[0]).window(TumblingEventTimeWindows.of(10))
...     .aggregate(Sum(lambda c: 1), lambda key, window, n: (key, window.start, n))
...     .execute_and_collect())
[('a', 0, 1), ('b', 0, 1), ('a', 10, 1)]

Semantics (Flink's): an element goes to every window its assigner gives it. An
event-time window fires when the watermark reaches ``window.max_timestamp()``
(``end - 1``); results carry that timestamp. Its state is kept until the watermark
reaches ``max_timestamp() + allowed_lateness``: an element arriving in between is added
and fires the window again at once, emitting an *updated* result for that key and
window (downstream sees the earlier result and then the update). An element is late
when every window it belongs to is past that point: it goes to the late-data side
output, or is dropped and counted (``late_records``). Session windows merge, with
their contents (``merge`` of accumulators, concatenation of element lists) and timers.

Processing-time windows fire on the job clock, with the window's ``max_timestamp()``
as the result's timestamp; the end of a bounded input does not fire them. Count
windows live in the global window, whose results carry ``MAX_TIMESTAMP``; a partial
count window at the end of the input is not emitted. Both as in Flink.

``aggregate(f)`` emits ``f.get_result(acc)`` only; pass a window function
(``aggregate(f, lambda key, window, result: ...)``) to attach the key and the window.
Keyed operators before a window drop elements behind their own watermark, so assign
watermarks after such operators when the window should see late elements.

Contents live in keyed state (:mod:`streamcore.operators.window_contents`); the
operator is :class:`~streamcore.operators.window_operator.WindowOperator`, the user
functions are in :mod:`streamcore.operators.window_functions`.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from streamcore.aggregates.base import AggregateFunction, ReduceAggregate
from streamcore.errors import ConfigurationError
from streamcore.functions import OutputTag
from streamcore.operators.window_functions import (
    AllWindowFunction,
    ProcessAllWindowFunction,
    ProcessWindowFunction,
    WindowFunction,
    plain,
    to_keyed,
)
from streamcore.operators.window_operator import WindowOperator
from streamcore.windowing import (
    CountEvictor,
    CountTrigger,
    Evictor,
    GlobalWindows,
    MergingWindowAssigner,
    PurgingTrigger,
    Trigger,
    WindowAssigner,
)

if TYPE_CHECKING:
    from streamcore.datastream import DataStream, KeyedStream

__all__ = [
    "AllWindowFunction",
    "AllWindowedStream",
    "ProcessAllWindowFunction",
    "ProcessWindowFunction",
    "WindowFunction",
    "WindowOperator",
    "WindowedStream",
    "count_window_all",
    "count_window_assigner",
    "window_all",
]


# -- the fluent API ---------------------------------------------------------------------------------
class WindowedStream:
    """A keyed stream cut into windows; finish it with ``aggregate``, ``reduce``, ``process`` or ``apply``.

    Built by ``KeyedStream.window(assigner)`` or ``KeyedStream.count_window(n)``.
    """

    def __init__(self, keyed_stream: KeyedStream, assigner: WindowAssigner) -> None:
        if not isinstance(assigner, WindowAssigner):
            msg = (
                f"window() takes a window assigner such as TumblingEventTimeWindows.of(size), "
                f"got {type(assigner).__name__}"
            )
            raise ConfigurationError(msg)
        self._stream = keyed_stream
        self._assigner = assigner
        self._trigger: Trigger | None = None
        self._evictor: Evictor | None = None
        self._lateness = 0
        self._late_tag: OutputTag | None = None

    def trigger(self, trigger: Trigger) -> WindowedStream:
        """Replace the assigner's default trigger (e.g. ``CountTrigger.of(n)``)."""
        if not isinstance(trigger, Trigger):
            msg = f"trigger() takes a Trigger, got {type(trigger).__name__}"
            raise ConfigurationError(msg)
        if isinstance(self._assigner, MergingWindowAssigner) and not trigger.can_merge():
            msg = f"{trigger!r} cannot merge windows, so it cannot be used with {self._assigner!r}"
            raise ConfigurationError(msg)
        self._trigger = trigger
        return self

    def evictor(self, evictor: Evictor) -> WindowedStream:
        """Drop elements before evaluation (``CountEvictor.of(n)``); the window keeps elements."""
        if not isinstance(evictor, Evictor):
            msg = f"evictor() takes an Evictor, got {type(evictor).__name__}"
            raise ConfigurationError(msg)
        self._evictor = evictor
        return self

    def allowed_lateness(self, lateness_ms: int) -> WindowedStream:
        """Keep window state ``lateness_ms`` past the window's end; late elements re-fire it."""
        if type(lateness_ms) is not int or lateness_ms < 0:
            msg = f"allowed_lateness() takes an int of milliseconds >= 0, got {lateness_ms!r}"
            raise ConfigurationError(msg)
        if lateness_ms and not self._assigner.is_event_time():
            msg = f"allowed lateness applies to event-time windows only, not {self._assigner!r}"
            raise ConfigurationError(msg)
        self._lateness = lateness_ms
        return self

    def side_output_late_data(self, tag: OutputTag) -> WindowedStream:
        """Send elements too late for all their windows to side output ``tag`` instead of dropping them."""
        if not isinstance(tag, OutputTag):
            msg = f"side_output_late_data() takes an OutputTag, got {type(tag).__name__}"
            raise ConfigurationError(msg)
        self._late_tag = tag
        return self

    def _build(self, aggregate: Any, window_fn: Any) -> DataStream:
        from streamcore.datastream import DataStream

        stream = self._stream
        kf = stream.key_selector
        assigner, trigger, evictor = self._assigner, self._trigger, self._evictor
        lateness = self._lateness
        late = self._late_tag.name if self._late_tag is not None else None

        def factory(name: str, uid: str) -> WindowOperator:
            return WindowOperator(
                name,
                uid,
                kf,
                assigner,
                trigger=trigger,
                evictor=evictor,
                allowed_lateness=lateness,
                late_tag=late,
                aggregate=aggregate,
                window_fn=window_fn,
            )

        return DataStream(stream._env, [(stream._add("window", factory), None)])

    @staticmethod
    def _check_window_fn(fn: Any, what: str) -> None:
        if fn is not None and not (isinstance(fn, (ProcessWindowFunction, WindowFunction)) or callable(fn)):
            msg = (
                f"{what} takes a ProcessWindowFunction, a WindowFunction or a callable "
                f"(key, window, value) -> output, got {type(fn).__name__}"
            )
            raise ConfigurationError(msg)

    def aggregate(
        self, aggregate_function: AggregateFunction[Any, Any, Any], window_function: Any = None
    ) -> DataStream:
        """Fold each window incrementally with an :class:`AggregateFunction`; emit ``get_result``.

        With ``window_function`` (a :class:`ProcessWindowFunction`, :class:`WindowFunction`
        or ``fn(key, window, result) -> output``) the result is handed to it instead,
        e.g. to attach the key and the window.
        """
        if not isinstance(aggregate_function, AggregateFunction):
            msg = (
                f"aggregate() takes an AggregateFunction (e.g. streamcore.aggregates.Count()), "
                f"got {type(aggregate_function).__name__}"
            )
            raise ConfigurationError(msg)
        self._check_window_fn(window_function, "aggregate(..., window_function)")
        return self._build(aggregate_function, plain(window_function))

    def reduce(self, reduce_function: Callable[[Any, Any], Any], window_function: Any = None) -> DataStream:
        """Fold each window with ``reduce_function(a, b)`` (associative: session windows merge results)."""
        if not callable(reduce_function):
            msg = f"reduce() takes a callable (a, b) -> c, got {type(reduce_function).__name__}"
            raise ConfigurationError(msg)
        self._check_window_fn(window_function, "reduce(..., window_function)")
        return self._build(ReduceAggregate(reduce_function), plain(window_function))

    def process(self, function: ProcessWindowFunction) -> DataStream:
        """Evaluate each fired window with all its elements."""
        if not isinstance(function, ProcessWindowFunction):
            msg = f"WindowedStream.process() takes a ProcessWindowFunction, got {type(function).__name__}"
            raise ConfigurationError(msg)
        return self._build(None, function)

    def apply(self, function: Any) -> DataStream:
        """Evaluate each fired window with a :class:`WindowFunction` or ``fn(key, window, elements)``."""
        self._check_window_fn(function, "apply()")
        if function is None:
            msg = "apply() takes a window function"
            raise ConfigurationError(msg)
        return self._build(None, plain(function))


# -- window_all: windows over a whole (non-keyed) stream ---------------------------------------------
def _all_key(value: Any) -> int:
    return 0


class AllWindowedStream(WindowedStream):
    """Windows over a whole stream (one logical key): the result of ``window_all``."""

    def aggregate(
        self, aggregate_function: AggregateFunction[Any, Any, Any], window_function: Any = None
    ) -> DataStream:
        """As :meth:`WindowedStream.aggregate`; ``window_function(window, result)``."""
        return super().aggregate(aggregate_function, to_keyed(window_function))

    def reduce(self, reduce_function: Callable[[Any, Any], Any], window_function: Any = None) -> DataStream:
        """As :meth:`WindowedStream.reduce`; ``window_function(window, result)``."""
        return super().reduce(reduce_function, to_keyed(window_function))

    def process(self, function: Any) -> DataStream:  # type: ignore[override]
        """Evaluate each window with a :class:`ProcessAllWindowFunction`."""
        if not isinstance(function, ProcessAllWindowFunction):
            msg = (
                f"AllWindowedStream.process() takes a ProcessAllWindowFunction, got {type(function).__name__}"
            )
            raise ConfigurationError(msg)
        return self._build(None, to_keyed(function))

    def apply(self, function: Any) -> DataStream:
        """Evaluate each window with an :class:`AllWindowFunction` or ``fn(window, elements)``."""
        return super().apply(to_keyed(function))


def window_all(stream: DataStream, assigner: WindowAssigner) -> AllWindowedStream:
    """Windows over every element of ``stream`` (``DataStream.window_all``): one key, one operator."""
    return AllWindowedStream(stream.key_by(_all_key), assigner)


def count_window_all(stream: DataStream, size: int, slide: int | None = None) -> AllWindowedStream:
    """Count windows over every element of ``stream`` (``DataStream.count_window_all``)."""
    return AllWindowedStream(stream.key_by(_all_key), count_window_assigner(size, slide))


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
