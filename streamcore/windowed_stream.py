"""The window builders: ``KeyedStream.window(...)`` and ``DataStream.window_all(...)``.

A :class:`WindowedStream` collects the assigner, trigger, evictor, allowed lateness and
late-data tag, validates the window function, and hands the keyed stream a factory of a
:class:`~streamcore.operators.window_operator.WindowOperator`. It knows its stream only
through ``transform``, so it sits beside :mod:`streamcore.datastream` without importing it.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, Generic

from streamcore.aggregates.base import AggregateFunction, ReduceAggregate
from streamcore.aggregates.rolling import field_reducer
from streamcore.errors import ConfigurationError
from streamcore.functions import OutputTag
from streamcore.graph import KeyedInput, S_co
from streamcore.operators.window_functions import (
    ProcessAllWindowFunction,
    ProcessWindowFunction,
    WindowFunction,
    plain,
    to_keyed,
)
from streamcore.operators.window_operator import WindowOperator
from streamcore.windowing import Evictor, MergingWindowAssigner, Trigger, WindowAssigner

__all__ = ["AllWindowedStream", "WindowedStream", "all_key"]


class WindowedStream(Generic[S_co]):
    """A keyed stream cut into windows; finish it with ``aggregate``, ``reduce``, ``process`` or ``apply``.

    Built by ``KeyedStream.window(assigner)`` or ``KeyedStream.count_window(n)``.
    """

    def __init__(self, keyed_stream: KeyedInput[S_co], assigner: WindowAssigner) -> None:
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
        self._state_layout = {"slicing": True, "session_slots": True}

    def slicing(self, enabled: bool) -> WindowedStream[S_co]:
        """Keep sliding windows of an order-insensitive aggregate as slices (default) or per window.

        Slices (``gcd(size, slide)`` of time, merged when a window fires) update one
        accumulator per element instead of ``size/slide``; ``slicing(False)`` keeps one
        accumulator per window, the layout of checkpoints taken before slicing existed.
        """
        self._state_layout["slicing"] = bool(enabled)
        return self

    def session_slots(self, enabled: bool) -> WindowedStream[S_co]:
        """Keep event-time sessions of an aggregate as one list per key (default) or per window.

        ``session_slots(False)`` keeps the general merging path (a state window, an
        accumulator and timers per session), the layout of checkpoints taken before.
        """
        self._state_layout["session_slots"] = bool(enabled)
        return self

    def trigger(self, trigger: Trigger) -> WindowedStream[S_co]:
        """Replace the assigner's default trigger (e.g. ``CountTrigger.of(n)``)."""
        if not isinstance(trigger, Trigger):
            msg = f"trigger() takes a Trigger, got {type(trigger).__name__}"
            raise ConfigurationError(msg)
        if isinstance(self._assigner, MergingWindowAssigner) and not trigger.can_merge():
            msg = f"{trigger!r} cannot merge windows, so it cannot be used with {self._assigner!r}"
            raise ConfigurationError(msg)
        self._trigger = trigger
        return self

    def evictor(self, evictor: Evictor) -> WindowedStream[S_co]:
        """Drop elements before evaluation (``CountEvictor.of(n)``); the window keeps elements."""
        if not isinstance(evictor, Evictor):
            msg = f"evictor() takes an Evictor, got {type(evictor).__name__}"
            raise ConfigurationError(msg)
        self._evictor = evictor
        return self

    def allowed_lateness(self, lateness_ms: int) -> WindowedStream[S_co]:
        """Keep window state ``lateness_ms`` past the window's end; late elements re-fire it."""
        if type(lateness_ms) is not int or lateness_ms < 0:
            msg = f"allowed_lateness() takes an int of milliseconds >= 0, got {lateness_ms!r}"
            raise ConfigurationError(msg)
        if lateness_ms and not self._assigner.is_event_time():
            msg = f"allowed lateness applies to event-time windows only, not {self._assigner!r}"
            raise ConfigurationError(msg)
        self._lateness = lateness_ms
        return self

    def side_output_late_data(self, tag: OutputTag) -> WindowedStream[S_co]:
        """Send elements too late for all their windows to side output ``tag`` instead of dropping them."""
        if not isinstance(tag, OutputTag):
            msg = f"side_output_late_data() takes an OutputTag, got {type(tag).__name__}"
            raise ConfigurationError(msg)
        self._late_tag = tag
        return self

    def _build(self, aggregate: Any, window_fn: Any) -> S_co:
        stream = self._stream
        kf = stream.key_selector
        assigner, trigger, evictor = self._assigner, self._trigger, self._evictor
        lateness = self._lateness
        late = self._late_tag.name if self._late_tag is not None else None
        layout = dict(self._state_layout)

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
                **layout,
            )

        return stream.transform("window", factory)

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
    ) -> S_co:
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

    def reduce(self, reduce_function: Callable[[Any, Any], Any], window_function: Any = None) -> S_co:
        """Fold each window with ``reduce_function(a, b)`` (associative: session windows merge results)."""
        if not callable(reduce_function):
            msg = f"reduce() takes a callable (a, b) -> c, got {type(reduce_function).__name__}"
            raise ConfigurationError(msg)
        self._check_window_fn(window_function, "reduce(..., window_function)")
        return self._build(ReduceAggregate(reduce_function), plain(window_function))

    def sum(self, position: int | str = 0) -> S_co:
        """Sum of field ``position`` per window (Flink's ``window(...).sum``), other fields as the first.

        >>> import streamcore as sc
        >>> env = sc.StreamEnvironment()
        >>> rows = [("to", 1, 0), ("be", 1, 10), ("to", 1, 20)]
        >>> words = env.from_collection(rows, timestamp=lambda w: w[2])
        >>> keyed = words.key_by(lambda w: w[0])
        >>> sorted(keyed.window(sc.TumblingEventTimeWindows.of(1_000)).sum(1).execute_and_collect())
        [('be', 1, 10), ('to', 2, 0)]
        """
        return self.reduce(field_reducer(position, "sum"))

    def min(self, position: int | str = 0) -> S_co:
        """Minimum of field ``position`` per window (other fields from the first element)."""
        return self.reduce(field_reducer(position, "min"))

    def max(self, position: int | str = 0) -> S_co:
        """Maximum of field ``position`` per window (other fields from the first element)."""
        return self.reduce(field_reducer(position, "max"))

    def process(self, function: ProcessWindowFunction) -> S_co:
        """Evaluate each fired window with all its elements."""
        if not isinstance(function, ProcessWindowFunction):
            msg = f"WindowedStream.process() takes a ProcessWindowFunction, got {type(function).__name__}"
            raise ConfigurationError(msg)
        return self._build(None, function)

    def apply(self, function: Any) -> S_co:
        """Evaluate each fired window with a :class:`WindowFunction` or ``fn(key, window, elements)``."""
        self._check_window_fn(function, "apply()")
        if function is None:
            msg = "apply() takes a window function"
            raise ConfigurationError(msg)
        return self._build(None, plain(function))


def all_key(value: Any) -> int:
    """The one logical key of ``window_all``."""
    return 0


class AllWindowedStream(WindowedStream[S_co]):
    """Windows over a whole stream (one logical key): the result of ``window_all``."""

    def aggregate(
        self, aggregate_function: AggregateFunction[Any, Any, Any], window_function: Any = None
    ) -> S_co:
        """As :meth:`WindowedStream.aggregate`; ``window_function(window, result)``."""
        return super().aggregate(aggregate_function, to_keyed(window_function))

    def reduce(self, reduce_function: Callable[[Any, Any], Any], window_function: Any = None) -> S_co:
        """As :meth:`WindowedStream.reduce`; ``window_function(window, result)``."""
        return super().reduce(reduce_function, to_keyed(window_function))

    def process(self, function: Any) -> S_co:  # type: ignore[override]
        """Evaluate each window with a :class:`ProcessAllWindowFunction`."""
        if not isinstance(function, ProcessAllWindowFunction):
            msg = (
                f"AllWindowedStream.process() takes a ProcessAllWindowFunction, got {type(function).__name__}"
            )
            raise ConfigurationError(msg)
        return self._build(None, to_keyed(function))

    def apply(self, function: Any) -> S_co:
        """Evaluate each window with an :class:`AllWindowFunction` or ``fn(window, elements)``."""
        return super().apply(to_keyed(function))
