"""The fluent API: DataStream, KeyedStream, ConnectedStreams, AsyncDataStream.

The window and interval-join builders they return live in :mod:`streamcore.windowed_stream`
and :mod:`streamcore.interval_join_builder`.

It only builds a logical graph (:mod:`streamcore.graph`); nothing runs until ``execute``.
Every operator is added through :meth:`DataStream.transform` (or
:meth:`ConnectedStreams.transform` for two inputs), which takes a factory of the
operator: the builders here validate their configuration, then hand a factory over.
This module knows the environment only through :class:`~streamcore.graph.GraphOwner`,
so the environment sits above it and operators below it.

>>> import streamcore as sc
>>> env = sc.StreamEnvironment()
>>> env.from_collection([1, 2, 3, 4]).map(lambda x: x * 10).filter(lambda x: x > 10).execute_and_collect()
[20, 30, 40]
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from streamcore.aggregates.base import AggregateFunction
from streamcore.aggregates.rolling import field_reducer
from streamcore.changelog import row_key_selector
from streamcore.errors import ConfigurationError, GraphError
from streamcore.functions import (
    CoProcessFunction,
    KeyedCoProcessFunction,
    KeyedProcessFunction,
    OutputTag,
    ProcessFunction,
)
from streamcore.graph import GraphOwner, Transformation, validate_uid
from streamcore.interval_join_builder import IntervalJoinBuilder
from streamcore.operators.async_wait import async_wait_factory
from streamcore.operators.basic import FilterOperator, FlatMapOperator, MapOperator, ProcessOperator
from streamcore.operators.group_aggregate import group_aggregate_factory
from streamcore.operators.lookup_join import lookup_join_factory
from streamcore.operators.process import (
    CoProcessOperator,
    KeyedCoProcessOperator,
    KeyedProcessOperator,
    ReduceFunction,
)
from streamcore.operators.rank import top_n_factory, window_top_n_factory
from streamcore.operators.regular_join import regular_join_factory
from streamcore.operators.watermarks import TimestampsAndWatermarksOperator
from streamcore.sinks.base import CallableSink, CollectSink, PrintSink, Sink, SinkOperator
from streamcore.time import WatermarkStrategy
from streamcore.windowed_stream import AllWindowedStream, WindowedStream, all_key
from streamcore.windowing import (
    WindowAssigner,
    count_window_assigner,
)

__all__ = [
    "AsyncDataStream",
    "ConnectedStreams",
    "DataStream",
    "DataStreamSink",
    "KeyedStream",
]

Producer = tuple[Transformation, str | None]


def _check_callable(fn: Any, what: str) -> None:
    if not callable(fn):
        msg = f"{what} takes a callable, got {type(fn).__name__}"
        raise ConfigurationError(msg)


class DataStream:
    """A stream of elements: the result of a source or an operator (or a union of them)."""

    def __init__(self, env: GraphOwner, producers: list[Producer]) -> None:
        self._env = env
        self._producers = producers

    @property
    def environment(self) -> GraphOwner:
        """The environment whose graph this stream belongs to."""
        return self._env

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
    def input_edges(self, side: int = 0) -> list[tuple[Transformation, int, str | None]]:
        """The graph edges an operator reading this stream on its input ``side`` gets."""
        return [(node, side, tag) for node, tag in self._producers]

    def _check_env(self, other: DataStream) -> None:
        if other.environment is not self._env:
            msg = "streams of two different StreamEnvironments cannot be combined"
            raise GraphError(msg)

    def _add(
        self, kind: str, factory: Callable[[str, str], Any], inputs: Any = None, **kw: Any
    ) -> Transformation:
        return self._env.graph.add(
            kind, kind, inputs if inputs is not None else self.input_edges(), factory, **kw
        )

    def transform(self, kind: str, factory: Callable[[str, str], Any]) -> DataStream:
        """Add an operator reading this stream; ``factory(name, uid)`` builds it for each run.

        The building block of every other method (Flink's ``DataStream.transform``):
        ``kind`` is the operator's default name. The operator must be a
        :class:`~streamcore.operators.base.StreamOperator`.
        """
        return DataStream(self._env, [(self._add(kind, factory), None)])

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

    def key_by(self, key_selector: Callable[[Any], Any], *, partitioned: bool = False) -> KeyedStream:
        """Partition by ``key_selector(value)``: downstream state and timers are per key.

        ``partitioned=True`` declares that the input is partitioned by this key already
        (Flink's ``reinterpretAsKeyedStream``): in a job whose tasks a consumer group
        assigns, the records of a key all arrive in one partition of the source topics, so
        no repartition topic is needed. Otherwise such a job sends the stream through one
        (:mod:`streamcore.shuffle`). A job in one process ignores it.
        """
        _check_callable(key_selector, "key_by()")
        if type(partitioned) is not bool:
            msg = f"key_by(partitioned=...) must be True or False, got {partitioned!r}"
            raise ConfigurationError(msg)
        return KeyedStream(self, key_selector, partitioned)

    def union(self, *others: DataStream) -> DataStream:
        """Merge streams of the same type; the watermark is the minimum of the inputs'."""
        producers = list(self._producers)
        for o in others:
            if not isinstance(o, DataStream):
                msg = f"union() takes DataStreams, got {type(o).__name__}"
                raise ConfigurationError(msg)
            self._check_env(o)
            producers.extend((node, tag) for node, _, tag in o.input_edges())
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
        else:
            timestamp = strategy.timestamp_assigner
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

        def factory(n: str, u: str) -> Any:
            return TimestampsAndWatermarksOperator(n, u, strategy, timestamp, self._env.clock)

        return DataStream(self._env, [(self._add("timestamps", factory), None)])

    def window_all(self, assigner: WindowAssigner) -> AllWindowedStream[DataStream]:
        """Windows over the whole stream (one operator, one logical key)."""
        return AllWindowedStream(self.key_by(all_key), assigner)

    def count_window_all(self, size: int, slide: int | None = None) -> AllWindowedStream[DataStream]:
        """Windows of ``size`` elements over the whole stream (see :func:`count_window_assigner`)."""
        return AllWindowedStream(self.key_by(all_key), count_window_assigner(size, slide))

    def lookup_join(
        self,
        lookup: Any,
        on: Callable[[Any], Any],
        *,
        cache: Any = None,
        key_by_lookup_key: bool = True,
        how: str = "inner",
        join: Callable[[Any, Any], Any] | None = None,
        timeout_ms: int = 30_000,
        capacity: int = 10_000,
        retry: Any = None,
    ) -> DataStream:
        """Enrich each element with the row of its key ``on(element)`` from a dimension store.

        The keys of each batch that the ``cache`` (a :class:`~streamcore.lookup.LookupCache`)
        does not hold are deduplicated and loaded in one query per round trip, on an
        event loop of the operator, up to ``capacity`` elements in flight; see
        :mod:`streamcore.operators.lookup_join`.

        Args:
            lookup: a :class:`~streamcore.lookup.Lookup` (``SQLiteLookup``, ``PostgresLookup``,
                ``RedisLookup`` or your own).
            on: the lookup key of an element (hashable).
            key_by_lookup_key: key the stream by the lookup key first (the default): results
                keep their input order per key, so a cache hit never waits for another
                key's load, and a job split into tasks gives each task's cache a fraction
                of the keys. ``False`` keeps the input order of the whole stream.
                Either way no result crosses a watermark.
            how: ``"inner"`` drops elements whose key has no row; ``"left"`` joins them with ``None``.
            join: ``join(value, row) -> output``; default :func:`~streamcore.lookup.merge_row`
                (dicts merge, the row's fields win; a dict without a row stays as it is;
                otherwise ``(value, row)``).
            timeout_ms: bound of each attempt of a load.
            retry: an :class:`~streamcore.functions.AsyncRetryStrategy` for failed or slow loads.

        >>> import sqlite3, tempfile, os, streamcore as sc
        >>> path = os.path.join(tempfile.mkdtemp(), "dims.db")
        >>> with sqlite3.connect(path) as db:
        ...     _ = db.execute("CREATE TABLE shops (shop_id INTEGER PRIMARY KEY, city TEXT)")
        ...     _ = db.executemany("INSERT INTO shops VALUES (?, ?)", [(1, "Lyon"), (2, "Oslo")])
        >>> env = sc.StreamEnvironment()
        >>> orders = env.from_collection([{"id": 10, "shop_id": 2}, {"id": 11, "shop_id": 3}])
        >>> orders.lookup_join(sc.SQLiteLookup(path, "shops", key="shop_id"), on=lambda o: o["shop_id"],
        ...                    how="left").execute_and_collect()
        [{'id': 10, 'shop_id': 2, 'city': 'Oslo'}, {'id': 11, 'shop_id': 3}]
        """
        factory = lookup_join_factory(
            lookup,
            on,
            cache=cache,
            key_by_lookup_key=key_by_lookup_key,
            how=how,
            join=join,
            timeout_ms=timeout_ms,
            capacity=capacity,
            retry=retry,
        )
        stream = self.key_by(on) if key_by_lookup_key else self
        node = stream._add("lookup_join", factory)
        if key_by_lookup_key:
            node.attrs["key_selector"] = on  # the partitioning a multi-task runtime may apply
        return DataStream(self._env, [(node, None)])

    def regular_join(
        self,
        other: DataStream,
        left_key: Callable[[Any], Any],
        right_key: Callable[[Any], Any],
        how: str = "inner",
        *,
        combine: Callable[[tuple[Any, ...], tuple[Any, ...]], tuple[Any, ...]] | None = None,
        left_width: int | None = None,
        right_width: int | None = None,
        state_ttl_ms: int | None = None,
        condition: Callable[[tuple[Any, ...], tuple[Any, ...]], bool] | None = None,
        uid: str | None = None,
        name: str | None = None,
    ) -> DataStream:
        """Unbounded equi-join with ``other`` (SQL's ``JOIN ... ON left_key = right_key``): a changelog.

        Both inputs are :class:`~streamcore.changelog.Change` records or plain row tuples
        (``+I``); ``left_key``/``right_key`` see the rows. ``how`` is ``"inner"``, ``"left"``,
        ``"right"`` or ``"full"``. The output row is ``combine(left_row, right_row)``
        (default ``left_row + right_row``); an unmatched row of an outer side is combined
        with ``(None,) * width`` of the other side, so ``left``/``full`` need ``right_width``
        and ``right``/``full`` need ``left_width``. ``condition(left_row, right_row)``, when
        given, must also hold for two rows to match (the non-equi part of ``ON``). Emits ``+I``
        and ``-D`` only; see :mod:`streamcore.operators.regular_join`. ``state_ttl_ms``
        expires rows (processing time).

        >>> import streamcore as sc
        >>> env = sc.StreamEnvironment()
        >>> a = env.from_collection([(1, "x"), (2, "y")])
        >>> b = env.from_collection([(1, 10), (1, 11)])
        >>> sorted(str(c) for c in a.regular_join(b, lambda r: r[0], lambda r: r[0]).execute_and_collect())
        ['+I(1, x, 1, 10)', '+I(1, x, 1, 11)']
        """
        self._check_env(other)
        _check_callable(left_key, "regular_join(left_key)")
        _check_callable(right_key, "regular_join(right_key)")
        selectors = [row_key_selector(left_key), row_key_selector(right_key)]
        factory = regular_join_factory(
            selectors, how, combine, left_width, right_width, state_ttl_ms, condition
        )
        inputs = self.input_edges(0) + other.input_edges(1)
        node = self._env.graph.add("regular_join", "regular_join", inputs, factory)
        node.attrs["keyed_inputs"] = {0: (selectors[0], False), 1: (selectors[1], False)}
        stream = DataStream(self._env, [(node, None)])
        if name is not None:
            stream.name(name)
        if uid is not None:
            stream.uid(uid)
        return stream

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

    def print(self, sink_identifier: str = "") -> DataStreamSink:
        """Print every element, as ``sink_identifier> element`` with an identifier (Flink's format)."""
        return self.sink_to(PrintSink(sink_identifier))

    def add_sink(self, sink: Sink | Callable[[Any], Any]) -> DataStreamSink:
        """PyFlink's name of :meth:`sink_to`."""
        return self.sink_to(sink)

    def execute_and_collect(
        self, job_name: str = "collect", limit: int | None = None, **execute_kw: Any
    ) -> Any:
        """Build and run the job; return this stream's elements in emission order.

        Without ``limit`` the job runs to its end and the result is a list. With
        ``limit=n`` the job runs in the background and the result is an iterator of at
        most ``n`` elements (it also works on unbounded sources): the job is stopped when
        the iterator is exhausted or closed (use it in a ``with`` block to stop it early).
        PyFlink returns a list with ``limit``; here ``list(it)`` gives one.

        >>> import streamcore as sc
        >>> env = sc.StreamEnvironment(batch_size=4)
        >>> numbers = env.from_generator(lambda split, offset: offset)  # unbounded
        >>> with numbers.map(lambda x: x * 2).execute_and_collect(limit=3) as it:
        ...     list(it)
        [0, 2, 4]
        """
        if limit is not None:
            if type(limit) is not int or limit < 1:
                msg = f"execute_and_collect(limit=...) takes an int >= 1 or None, got {limit!r}"
                raise ConfigurationError(msg)
            from streamcore.sinks.collect import CollectIterator, QueueSink

            qsink = QueueSink()
            qnode = self.sink_to(qsink)._node
            try:
                handle = self._env.execute_async(job_name, **execute_kw)
            except BaseException:
                self._env.graph.remove(qnode)
                raise
            return CollectIterator(handle, qsink, limit, lambda: self._env.graph.remove(qnode))
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

    def __init__(
        self, stream: DataStream, key_selector: Callable[[Any], Any], partitioned: bool = False
    ) -> None:
        super().__init__(stream.environment, [(node, tag) for node, _, tag in stream.input_edges()])
        self.key_selector = key_selector
        self.partitioned = partitioned

    def keyed_input(self) -> tuple[Callable[[Any], Any], bool]:
        """``(key_selector, partitioned)``: what a keyed operator reading this stream records on its node."""
        return self.key_selector, self.partitioned

    def transform(self, kind: str, factory: Callable[[str, str], Any]) -> DataStream:
        """Add a keyed operator reading this stream (the node records how its input is keyed)."""
        node = self._add(kind, factory)
        node.attrs["keyed_inputs"] = {0: self.keyed_input()}
        return DataStream(self._env, [(node, None)])

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

        return self.transform("keyed_process", factory)

    def reduce(self, fn: Callable[[Any, Any], Any]) -> DataStream:
        """Emit the running ``fn(accumulated, value)`` of each key after every element."""
        _check_callable(fn, "reduce()")
        rf = ReduceFunction(fn)
        kf = self.key_selector
        return self.transform("reduce", lambda n, u: KeyedProcessOperator(n, u, rf, kf))

    def sum(self, position: int | str = 0) -> DataStream:
        """Rolling sum of field ``position`` per key (Flink's ``sum``): emits the running result per element.

        >>> import streamcore as sc
        >>> env = sc.StreamEnvironment()
        >>> words = env.from_collection([("to", 1), ("be", 1), ("to", 1)])
        >>> words.key_by(lambda w: w[0]).sum(1).execute_and_collect()
        [('to', 1), ('be', 1), ('to', 2)]
        """
        return self.reduce(field_reducer(position, "sum"))

    def min(self, position: int | str = 0) -> DataStream:
        """Rolling minimum of field ``position`` per key (the other fields are the first element's)."""
        return self.reduce(field_reducer(position, "min"))

    def max(self, position: int | str = 0) -> DataStream:
        """Rolling maximum of field ``position`` per key (the other fields are the first element's)."""
        return self.reduce(field_reducer(position, "max"))

    def min_by(self, position: int | str = 0) -> DataStream:
        """The element with the smallest field ``position`` so far, per key."""
        return self.reduce(field_reducer(position, "min_by"))

    def max_by(self, position: int | str = 0) -> DataStream:
        """The element with the largest field ``position`` so far, per key."""
        return self.reduce(field_reducer(position, "max_by"))

    def connect(self, other: DataStream) -> ConnectedStreams:
        """Connect with another stream (keyed on both sides for a KeyedCoProcessFunction)."""
        return super().connect(other)

    # -- operators of updating (changelog) streams: the key selector reads each element's row --
    def _changelog_transform(
        self, kind: str, factory: Callable[[str, str], Any], uid: str | None, name: str | None
    ) -> DataStream:
        node = self._add(kind, factory)
        node.attrs["keyed_inputs"] = {0: (row_key_selector(self.key_selector), self.partitioned)}
        stream = DataStream(self._env, [(node, None)])
        if name is not None:
            stream.name(name)
        if uid is not None:
            stream.uid(uid)
        return stream

    def group_aggregate(
        self,
        agg: AggregateFunction[Any, Any, Any],
        *,
        result: Callable[[Any, Any], tuple[Any, ...]] | None = None,
        state_ttl_ms: int | None = None,
        uid: str | None = None,
        name: str | None = None,
    ) -> DataStream:
        """Unbounded ``GROUP BY`` with retraction: the changelog of one result row per key.

        Elements are :class:`~streamcore.changelog.Change` records or plain rows (``+I``);
        the key selector sees the row. ``+I``/``+U`` rows are added to their group,
        ``-U``/``-D`` rows retracted (``agg`` must then support retraction). Emits ``+I`` for a
        new group, ``-U old, +U new`` when a group's result row changes (nothing when it does
        not), ``-D`` when a group loses its last row. The output row is
        ``result(key, agg_result)``; by default the key's fields then the aggregate's (see
        :func:`~streamcore.operators.group_aggregate.default_result`). ``state_ttl_ms``
        expires idle groups (processing time, as ``table.exec.state.ttl``).
        See :mod:`streamcore.operators.group_aggregate`.

        >>> import streamcore as sc
        >>> from streamcore.aggregates import Sum
        >>> env = sc.StreamEnvironment()
        >>> out = (env.from_collection([("a", 1), ("a", 2)]).key_by(lambda r: r[0])
        ...        .group_aggregate(Sum(lambda r: r[1])).execute_and_collect())
        >>> [str(c) for c in out]
        ['+I(a, 1)', '-U(a, 1)', '+U(a, 3)']
        """
        factory = group_aggregate_factory(agg, row_key_selector(self.key_selector), result, state_ttl_ms)
        return self._changelog_transform("group_aggregate", factory, uid, name)

    def top_n(
        self,
        n: int,
        sort_key: Callable[[Any], Any],
        *,
        descending: bool = False,
        row_number: bool = True,
        append_only: bool = False,
        uid: str | None = None,
        name: str | None = None,
    ) -> DataStream:
        """The changelog of each key's first ``n`` rows by ``sort_key`` (SQL's ``ROW_NUMBER() <= n``).

        Elements are :class:`~streamcore.changelog.Change` records or plain row tuples
        (``+I``). Order: ``sort_key(row)`` ascending (``descending=True``: descending), ties
        by arrival. With ``row_number=True`` outputs are ``row + (rank,)`` and a shift of
        ranks emits ``-U/+U`` for every shifted rank; with ``row_number=False`` outputs are
        the rows, ``+I`` entering and ``-D`` leaving the top n. ``append_only=True`` (the
        input never retracts) keeps only the top n rows per key. See
        :mod:`streamcore.operators.rank`.

        >>> import streamcore as sc
        >>> env = sc.StreamEnvironment()
        >>> rows = env.from_collection([("a", 3), ("a", 1), ("a", 2)])
        >>> out = rows.key_by(lambda r: r[0]).top_n(1, lambda r: r[1], row_number=False).execute_and_collect()
        >>> [str(c) for c in out]
        ['+I(a, 3)', '-D(a, 3)', '+I(a, 1)']
        """
        factory = top_n_factory(
            row_key_selector(self.key_selector),
            n,
            sort_key,
            descending=descending,
            row_number=row_number,
            append_only=append_only,
        )
        return self._changelog_transform("top_n", factory, uid, name)

    def window_top_n(
        self,
        n: int,
        sort_key: Callable[[Any], Any],
        window_end: Callable[[Any], int],
        *,
        descending: bool = False,
        late_output: OutputTag | None = None,
        uid: str | None = None,
        name: str | None = None,
    ) -> DataStream:
        """The first ``n`` rows of each key and window, once the watermark closes the window.

        Over an append-only stream of window results whose rows carry their window's end
        (``window_end(row)``, ms, exclusive): emits plain tuples ``row + (rank,)`` (rank from
        1, ``sort_key`` ascending or ``descending``, ties by arrival) with timestamp
        ``window_end - 1`` when the watermark reaches it. Rows of an already fired window are
        late: dropped and counted, or sent to ``late_output``. See
        :class:`~streamcore.operators.rank.WindowTopNOperator`.

        >>> import streamcore as sc
        >>> env = sc.StreamEnvironment()
        >>> sales = [("eu", "ann", 5, 1000), ("eu", "bob", 9, 1000), ("eu", "cy", 7, 1000),
        ...          ("eu", "ann", 1, 2000)]
        >>> (env.from_collection(sales, timestamp=lambda r: r[3] - 1).key_by(lambda r: r[0])
        ...     .window_top_n(2, lambda r: r[2], lambda r: r[3], descending=True).execute_and_collect())
        [('eu', 'bob', 9, 1000, 1), ('eu', 'cy', 7, 1000, 2), ('eu', 'ann', 1, 2000, 1)]
        """
        factory = window_top_n_factory(
            row_key_selector(self.key_selector),
            n,
            sort_key,
            window_end,
            descending=descending,
            late_tag=late_output.name if late_output is not None else None,
        )
        return self._changelog_transform("window_top_n", factory, uid, name)

    def interval_join(self, other: KeyedStream) -> IntervalJoinBuilder[DataStream]:
        """Join with ``other`` on equal keys within a time interval; see ``.between(lower, upper)``."""
        if not isinstance(other, KeyedStream):
            msg = "interval_join() takes a KeyedStream (call key_by on the other stream with the same key)"
            raise ConfigurationError(msg)
        self._check_env(other)
        return IntervalJoinBuilder(self, other)

    def window(self, assigner: WindowAssigner) -> WindowedStream[DataStream]:
        """Group elements of each key into windows (tumbling, sliding, session)."""
        return WindowedStream(self, assigner)

    def count_window(self, size: int, slide: int | None = None) -> WindowedStream[DataStream]:
        """Windows of ``size`` elements per key (see :func:`~streamcore.windowing.count_window_assigner`)."""
        return WindowedStream(self, count_window_assigner(size, slide))


class ConnectedStreams:
    """Two connected streams, processed by a co-process function."""

    def __init__(self, first: DataStream, second: DataStream) -> None:
        self.first = first
        self.second = second

    def transform(self, kind: str, factory: Callable[[str, str], Any]) -> DataStream:
        """Add a two-input operator: the first stream feeds its input 0, the second its input 1."""
        inputs = self.first.input_edges(0) + self.second.input_edges(1)
        env = self.first.environment
        node = env.graph.add(kind, kind, inputs, factory)
        if isinstance(self.first, KeyedStream) and isinstance(self.second, KeyedStream):
            node.attrs["keyed_inputs"] = {0: self.first.keyed_input(), 1: self.second.keyed_input()}
        return DataStream(env, [(node, None)])

    def process(self, fn: CoProcessFunction) -> DataStream:
        """Run a :class:`CoProcessFunction`, or a :class:`KeyedCoProcessFunction` when both are keyed."""
        keyed = isinstance(self.first, KeyedStream) and isinstance(self.second, KeyedStream)
        if isinstance(fn, KeyedCoProcessFunction):
            if not keyed:
                msg = "a KeyedCoProcessFunction needs both connected streams keyed (key_by on each)"
                raise ConfigurationError(msg)
            kfs = [self.first.key_selector, self.second.key_selector]  # type: ignore[attr-defined]
            return self.transform("co_process", lambda n, u: KeyedCoProcessOperator(n, u, fn, kfs))
        if isinstance(fn, CoProcessFunction):
            return self.transform("co_process", lambda n, u: CoProcessOperator(n, u, fn))
        msg = f"ConnectedStreams.process() takes a CoProcessFunction, got {type(fn).__name__}"
        raise ConfigurationError(msg)


class AsyncDataStream:
    """Async I/O on a stream (Flink's ``AsyncDataStream``): run an :class:`~streamcore.AsyncFunction`.

    Up to ``capacity`` elements are in flight at once on the operator's own event loop;
    the job's thread blocks only when all of them are. Each attempt is bounded by
    ``timeout_ms``; ``retry`` (an :class:`~streamcore.functions.AsyncRetryStrategy`) tries
    failed or slow requests again. In-flight elements are part of checkpoints and are
    issued again after a restore. See :mod:`streamcore.operators.async_wait`.

    >>> import streamcore as sc
    >>> class Double(sc.AsyncFunction):
    ...     async def async_invoke(self, value):
    ...         return [value * 2]
    >>> env = sc.StreamEnvironment()
    >>> numbers = env.from_collection([1, 2, 3])
    >>> sc.AsyncDataStream.ordered_wait(numbers, Double(), timeout_ms=1_000).execute_and_collect()
    [2, 4, 6]
    """

    @staticmethod
    def ordered_wait(
        stream: DataStream, fn: Any, timeout_ms: int = 30_000, capacity: int = 100, *, retry: Any = None
    ) -> DataStream:
        """Results in input order (a result waits for every earlier element's)."""
        factory = async_wait_factory(fn, ordered=True, timeout_ms=timeout_ms, capacity=capacity, retry=retry)
        return _check_stream(stream, "ordered_wait").transform("async_wait", factory)

    @staticmethod
    def unordered_wait(
        stream: DataStream, fn: Any, timeout_ms: int = 30_000, capacity: int = 100, *, retry: Any = None
    ) -> DataStream:
        """Results as they complete, but never across a watermark (which waits for every earlier element)."""
        factory = async_wait_factory(fn, ordered=False, timeout_ms=timeout_ms, capacity=capacity, retry=retry)
        return _check_stream(stream, "unordered_wait").transform("async_wait", factory)


def _check_stream(stream: Any, what: str) -> DataStream:
    if not isinstance(stream, DataStream):
        msg = f"AsyncDataStream.{what}() takes a DataStream first, got {type(stream).__name__}"
        raise ConfigurationError(msg)
    return stream
