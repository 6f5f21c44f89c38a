"""The fluent API: DataStream, KeyedStream, ConnectedStreams. It only builds a graph.

>>> import streamcore as sc
>>> env = sc.StreamEnvironment()
>>> env.from_collection([1, 2, 3, 4]).map(lambda x: x * 10).filter(lambda x: x > 10).execute_and_collect()
[20, 30, 40]
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from streamcore.errors import ConfigurationError, GraphError
from streamcore.functions import (
    CoProcessFunction,
    KeyedCoProcessFunction,
    KeyedProcessFunction,
    OutputTag,
    ProcessFunction,
)
from streamcore.graph import Transformation, validate_uid
from streamcore.operators.basic import FilterOperator, FlatMapOperator, MapOperator, ProcessOperator
from streamcore.operators.process import (
    CoProcessOperator,
    KeyedCoProcessOperator,
    KeyedProcessOperator,
    ReduceFunction,
)
from streamcore.sinks.base import CallableSink, CollectSink, PrintSink, Sink, SinkOperator
from streamcore.time import WatermarkStrategy

if TYPE_CHECKING:
    from streamcore.environment import StreamEnvironment

__all__ = ["ConnectedStreams", "DataStream", "DataStreamSink", "KeyedStream"]

Producer = tuple[Transformation, str | None]


def _check_callable(fn: Any, what: str) -> None:
    if not callable(fn):
        msg = f"{what} takes a callable, got {type(fn).__name__}"
        raise ConfigurationError(msg)


class DataStream:
    """A stream of elements: the result of a source or an operator (or a union of them)."""

    def __init__(self, env: StreamEnvironment, producers: list[Producer]) -> None:
        self._env = env
        self._producers = producers

    # -- naming --------------------------------------------------------------------
    def _single_node(self, what: str) -> Transformation:
        if len(self._producers) != 1 or self._producers[0][1] is not None:
            msg = f"{what}() applies to the operator that produced a stream, not to a union or side output"
            raise GraphError(msg)
        return self._producers[0][0]

    def name(self, name: str) -> DataStream:
        """Name the operator that produces this stream (logs, metrics, default uid)."""
        if not isinstance(name, str) or not name:
            msg = f"name() takes a non-empty str, got {name!r}"
            raise ConfigurationError(msg)
        self._single_node("name").name = name
        return self

    def uid(self, uid: str) -> DataStream:
        """Set the stable id of the producing operator: the name of its state in checkpoints."""
        self._single_node("uid").uid = validate_uid(uid)
        return self

    # -- building blocks --------------------------------------------------------------
    def _inputs(self, side: int = 0) -> list[tuple[Transformation, int, str | None]]:
        return [(node, side, tag) for node, tag in self._producers]

    def _check_env(self, other: DataStream) -> None:
        if other._env is not self._env:
            msg = "streams of two different StreamEnvironments cannot be combined"
            raise GraphError(msg)

    def _add(
        self, kind: str, factory: Callable[[str, str], Any], inputs: Any = None, **kw: Any
    ) -> Transformation:
        return self._env.graph.add(
            kind, kind, inputs if inputs is not None else self._inputs(), factory, **kw
        )

    def map(self, fn: Callable[[Any], Any]) -> DataStream:
        """``fn(value)`` for every element."""
        _check_callable(fn, "map()")
        return DataStream(self._env, [(self._add("map", lambda n, u: MapOperator(n, u, fn)), None)])

    def filter(self, fn: Callable[[Any], bool]) -> DataStream:
        """Keep the elements for which ``fn(value)`` is true."""
        _check_callable(fn, "filter()")
        return DataStream(self._env, [(self._add("filter", lambda n, u: FilterOperator(n, u, fn)), None)])

    def flat_map(self, fn: Callable[[Any], Any]) -> DataStream:
        """Emit every item of the iterable ``fn(value)`` returns (``None`` emits nothing)."""
        _check_callable(fn, "flat_map()")
        return DataStream(self._env, [(self._add("flat_map", lambda n, u: FlatMapOperator(n, u, fn)), None)])

    def process(self, fn: ProcessFunction) -> DataStream:
        """Run a :class:`ProcessFunction` (side outputs; no keyed state or timers)."""
        if not isinstance(fn, ProcessFunction):
            msg = (
                f"DataStream.process() takes a ProcessFunction, got {type(fn).__name__} "
                "(use key_by first for keyed functions)"
            )
            raise ConfigurationError(msg)
        return DataStream(self._env, [(self._add("process", lambda n, u: ProcessOperator(n, u, fn)), None)])

    def key_by(self, key_selector: Callable[[Any], Any]) -> KeyedStream:
        """Partition by ``key_selector(value)``: downstream state and timers are per key."""
        _check_callable(key_selector, "key_by()")
        return KeyedStream(self, key_selector)

    def union(self, *others: DataStream) -> DataStream:
        """Merge streams of the same type; the watermark is the minimum of the inputs'."""
        producers = list(self._producers)
        for o in others:
            if not isinstance(o, DataStream):
                msg = f"union() takes DataStreams, got {type(o).__name__}"
                raise ConfigurationError(msg)
            self._check_env(o)
            producers.extend(o._producers)
        return DataStream(self._env, producers)

    def connect(self, other: DataStream) -> ConnectedStreams:
        """Connect two streams for a co-process function (shared state when both are keyed)."""
        if not isinstance(other, DataStream):
            msg = f"connect() takes a DataStream, got {type(other).__name__}"
            raise ConfigurationError(msg)
        self._check_env(other)
        return ConnectedStreams(self, other)

    def assign_timestamps_and_watermarks(
        self, strategy: WatermarkStrategy, timestamp: Callable[[Any], int] | None = None
    ) -> DataStream:
        """Set timestamps (``timestamp(value)``) and watermarks of this stream.

        Directly on a source, watermarks are tracked per split; elsewhere an operator
        assigns them (and ignores upstream watermarks).
        """
        if not isinstance(strategy, WatermarkStrategy):
            msg = (
                f"assign_timestamps_and_watermarks() takes a WatermarkStrategy, got {type(strategy).__name__}"
            )
            raise ConfigurationError(msg)
        if timestamp is not None:
            _check_callable(timestamp, "timestamp")
        if (
            len(self._producers) == 1
            and self._producers[0][0].kind == "source"
            and self._producers[0][1] is None
        ):
            node = self._producers[0][0]
            node.watermarks = strategy
            if timestamp is not None:
                node.timestamp_fn = timestamp
            return self
        from streamcore.operators.watermarks import TimestampsAndWatermarksOperator

        def factory(n: str, u: str) -> Any:
            return TimestampsAndWatermarksOperator(n, u, strategy, timestamp, self._env.clock)

        return DataStream(self._env, [(self._add("timestamps", factory), None)])

    def window_all(self, assigner: Any) -> Any:
        """Windows over the whole stream (one operator, one logical key)."""
        from streamcore.operators.window import window_all

        return window_all(self, assigner)

    def count_window_all(self, size: int, slide: int | None = None) -> Any:
        """Windows of ``size`` elements over the whole stream."""
        from streamcore.operators.window import count_window_all

        return count_window_all(self, size, slide)

    def get_side_output(self, tag: OutputTag) -> DataStream:
        """The side output ``tag`` of the operator that produced this stream."""
        if not isinstance(tag, OutputTag):
            msg = f"get_side_output() takes an OutputTag, got {type(tag).__name__}"
            raise ConfigurationError(msg)
        node = self._single_node("get_side_output")
        return DataStream(self._env, [(node, tag.name)])

    def sink_to(self, sink: Sink | Callable[[Any], Any]) -> DataStreamSink:
        """Send the stream to a :class:`Sink`, or call a function per element."""
        if not isinstance(sink, Sink):
            sink = CallableSink(sink)  # type: ignore[arg-type]
        s = sink
        node = self._add("sink", lambda n, u: SinkOperator(n, u, s))
        node.attrs["sink"] = s
        return DataStreamSink(node)

    def print(self, prefix: str = "") -> DataStreamSink:
        """Print every element (an at-least-once :class:`PrintSink`)."""
        return self.sink_to(PrintSink(prefix))

    def execute_and_collect(self, job_name: str = "collect", **execute_kw: Any) -> list[Any]:
        """Build and run the job; return this stream's elements in emission order."""
        sink = CollectSink()
        node = self.sink_to(sink)._node
        try:
            self._env.execute(job_name, **execute_kw)
        finally:
            self._env.graph.remove(node)
        return sink.results


class DataStreamSink:
    """The end of a stream; name it and give it a uid like any operator."""

    def __init__(self, node: Transformation) -> None:
        self._node = node

    def name(self, name: str) -> DataStreamSink:
        """Name the sink operator."""
        self._node.name = name
        return self

    def uid(self, uid: str) -> DataStreamSink:
        """Set the sink's stable id (its transactions are stored under it)."""
        self._node.uid = validate_uid(uid)
        return self


class KeyedStream(DataStream):
    """A stream partitioned by key: keyed state, timers, joins and windows."""

    def __init__(self, stream: DataStream, key_selector: Callable[[Any], Any]) -> None:
        super().__init__(stream._env, stream._producers)
        self.key_selector = key_selector

    def process(self, fn: KeyedProcessFunction, *, late_output: OutputTag | None = None) -> DataStream:  # type: ignore[override]
        """Run a :class:`KeyedProcessFunction`.

        Late elements (older than the operator's watermark) are dropped and counted, or
        sent to ``late_output``.
        """
        if not isinstance(fn, KeyedProcessFunction):
            msg = f"KeyedStream.process() takes a KeyedProcessFunction, got {type(fn).__name__}"
            raise ConfigurationError(msg)
        kf = self.key_selector
        late = late_output.name if late_output is not None else None

        def factory(n: str, u: str) -> Any:
            return KeyedProcessOperator(n, u, fn, kf, late)

        return DataStream(self._env, [(self._add("keyed_process", factory), None)])

    def reduce(self, fn: Callable[[Any, Any], Any]) -> DataStream:
        """Emit the running ``fn(accumulated, value)`` of each key after every element."""
        _check_callable(fn, "reduce()")
        rf = ReduceFunction(fn)
        kf = self.key_selector
        node = self._add("reduce", lambda n, u: KeyedProcessOperator(n, u, rf, kf))
        return DataStream(self._env, [(node, None)])

    def connect(self, other: DataStream) -> ConnectedStreams:
        """Connect with another stream (keyed on both sides for a KeyedCoProcessFunction)."""
        return super().connect(other)

    def interval_join(self, other: KeyedStream) -> Any:
        """Join with ``other`` on equal keys within a time interval; see ``.between(lower, upper)``."""
        from streamcore.operators.interval_join import IntervalJoinBuilder

        if not isinstance(other, KeyedStream):
            msg = "interval_join() takes a KeyedStream (call key_by on the other stream with the same key)"
            raise ConfigurationError(msg)
        self._check_env(other)
        return IntervalJoinBuilder(self, other)

    def window(self, assigner: Any) -> Any:
        """Group elements of each key into windows (tumbling, sliding, session)."""
        from streamcore.operators.window import WindowedStream

        return WindowedStream(self, assigner)

    def count_window(self, size: int, slide: int | None = None) -> Any:
        """Windows of ``size`` elements per key."""
        from streamcore.operators.window import WindowedStream, count_window_assigner

        return WindowedStream(self, count_window_assigner(size, slide))


class ConnectedStreams:
    """Two connected streams, processed by a co-process function."""

    def __init__(self, first: DataStream, second: DataStream) -> None:
        self.first = first
        self.second = second

    def process(self, fn: CoProcessFunction) -> DataStream:
        """Run a :class:`CoProcessFunction`, or a :class:`KeyedCoProcessFunction` when both are keyed."""
        env = self.first._env
        inputs = self.first._inputs(0) + self.second._inputs(1)
        keyed = isinstance(self.first, KeyedStream) and isinstance(self.second, KeyedStream)
        if isinstance(fn, KeyedCoProcessFunction):
            if not keyed:
                msg = "a KeyedCoProcessFunction needs both connected streams keyed (key_by on each)"
                raise ConfigurationError(msg)
            kfs = [self.first.key_selector, self.second.key_selector]  # type: ignore[attr-defined]
            node = env.graph.add(
                "co_process", "co_process", inputs, lambda n, u: KeyedCoProcessOperator(n, u, fn, kfs)
            )
        elif isinstance(fn, CoProcessFunction):
            node = env.graph.add("co_process", "co_process", inputs, lambda n, u: CoProcessOperator(n, u, fn))
        else:
            msg = f"ConnectedStreams.process() takes a CoProcessFunction, got {type(fn).__name__}"
            raise ConfigurationError(msg)
        return DataStream(env, [(node, None)])
