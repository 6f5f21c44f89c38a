"""streamcore: a pure-Python, Flink-like stream processing engine.

Build a dataflow with :class:`StreamEnvironment` and the fluent :class:`DataStream`
API, run it in your own process with keyed state on the heap or in RocksDB, event
time and watermarks, interval joins, windows, checkpoints, async I/O and lookup
joins against PostgreSQL, Redis or SQLite.

>>> import streamcore as sc
>>> env = sc.StreamEnvironment()
>>> env.from_collection([3, 1, 2]).map(lambda x: x + 1).execute_and_collect()
[4, 2, 3]
"""

from streamcore import aggregates, errors, serde, time, windowing
from streamcore.changelog import Change, RowKind, apply_changelog
from streamcore.checkpoint.restore import RestoreFrom
from streamcore.datastream import AsyncDataStream, ConnectedStreams, DataStream, DataStreamSink, KeyedStream
from streamcore.environment import StreamEnvironment, StreamExecutionEnvironment
from streamcore.errors import StreamcoreError
from streamcore.functions import (
    AsyncFunction,
    AsyncRetryStrategy,
    CoProcessFunction,
    KeyedCoProcessFunction,
    KeyedProcessFunction,
    OutputTag,
    ProcessFunction,
    ProcessJoinFunction,
)
from streamcore.interval_join_builder import IntervalJoinBuilder
from streamcore.lookup import Lookup, LookupCache, PostgresLookup, RedisLookup, SQLiteLookup
from streamcore.operators.window_functions import (
    AllWindowFunction,
    ProcessAllWindowFunction,
    ProcessWindowFunction,
    WindowFunction,
)
from streamcore.runtime.executor import JobResult
from streamcore.runtime.job import JobHandle
from streamcore.runtime.restart import RestartStrategy, exponential_delay, fixed_delay, no_restart
from streamcore.sinks.base import CallableSink, CollectSink, PrintSink, Sink
from streamcore.sinks.file import FileSink
from streamcore.sinks.kafka import KafkaSink
from streamcore.sinks.two_phase import TwoPhaseCommitSink
from streamcore.sources.base import Source, SplitReader
from streamcore.sources.collection import CollectionSource, GeneratorSource
from streamcore.sources.kafka import KafkaSource
from streamcore.state.descriptors import (
    ListStateDescriptor,
    MapStateDescriptor,
    ReducingStateDescriptor,
    StateTtlConfig,
    ValueStateDescriptor,
)
from streamcore.time import (
    MAX_TIMESTAMP,
    MIN_TIMESTAMP,
    Clock,
    ManualClock,
    SystemClock,
    WatermarkGenerator,
    WatermarkStrategy,
)
from streamcore.typeinfo import TypeInformation, Types
from streamcore.windowed_stream import AllWindowedStream, WindowedStream
from streamcore.windowing import (
    ContinuousEventTimeTrigger,
    CountEvictor,
    CountTrigger,
    EndOfStreamTrigger,
    EventTimeSessionWindows,
    EventTimeTrigger,
    GlobalWindow,
    GlobalWindows,
    ProcessingTimeSessionWindows,
    ProcessingTimeTrigger,
    PurgingTrigger,
    SlidingEventTimeWindows,
    SlidingProcessingTimeWindows,
    TimeWindow,
    Trigger,
    TriggerResult,
    TumblingEventTimeWindows,
    TumblingProcessingTimeWindows,
    WindowAssigner,
)

__version__ = "0.1.0"

# The SQL layer imports sqlglot: it is loaded on first use of one of its names.
_SQL_NAMES = ("DataTypes", "Schema", "StreamTableEnvironment", "Table", "TableResult")


def __getattr__(name: str) -> object:
    if name in _SQL_NAMES:
        from streamcore import sql

        value = getattr(sql, name)
        globals()[name] = value
        return value
    msg = f"module 'streamcore' has no attribute {name!r}"
    raise AttributeError(msg)


__all__ = [
    "MAX_TIMESTAMP",
    "MIN_TIMESTAMP",
    "AllWindowFunction",
    "AllWindowedStream",
    "AsyncDataStream",
    "AsyncFunction",
    "AsyncRetryStrategy",
    "CallableSink",
    "Change",
    "Clock",
    "CoProcessFunction",
    "CollectSink",
    "CollectionSource",
    "ConnectedStreams",
    "ContinuousEventTimeTrigger",
    "CountEvictor",
    "CountTrigger",
    "DataStream",
    "DataStreamSink",
    "DataTypes",
    "EndOfStreamTrigger",
    "EventTimeSessionWindows",
    "EventTimeTrigger",
    "FileSink",
    "GeneratorSource",
    "GlobalWindow",
    "GlobalWindows",
    "IntervalJoinBuilder",
    "JobHandle",
    "JobResult",
    "KafkaSink",
    "KafkaSource",
    "KeyedCoProcessFunction",
    "KeyedProcessFunction",
    "KeyedStream",
    "ListStateDescriptor",
    "Lookup",
    "LookupCache",
    "ManualClock",
    "MapStateDescriptor",
    "OutputTag",
    "PostgresLookup",
    "PrintSink",
    "ProcessAllWindowFunction",
    "ProcessFunction",
    "ProcessJoinFunction",
    "ProcessWindowFunction",
    "ProcessingTimeSessionWindows",
    "ProcessingTimeTrigger",
    "PurgingTrigger",
    "RedisLookup",
    "ReducingStateDescriptor",
    "RestartStrategy",
    "RestoreFrom",
    "RowKind",
    "SQLiteLookup",
    "Schema",
    "Sink",
    "SlidingEventTimeWindows",
    "SlidingProcessingTimeWindows",
    "Source",
    "SplitReader",
    "StateTtlConfig",
    "StreamEnvironment",
    "StreamExecutionEnvironment",
    "StreamTableEnvironment",
    "StreamcoreError",
    "SystemClock",
    "Table",
    "TableResult",
    "TimeWindow",
    "Trigger",
    "TriggerResult",
    "TumblingEventTimeWindows",
    "TumblingProcessingTimeWindows",
    "TwoPhaseCommitSink",
    "TypeInformation",
    "Types",
    "ValueStateDescriptor",
    "WatermarkGenerator",
    "WatermarkStrategy",
    "WindowAssigner",
    "WindowFunction",
    "WindowedStream",
    "aggregates",
    "apply_changelog",
    "errors",
    "exponential_delay",
    "fixed_delay",
    "no_restart",
    "serde",
    "time",
    "windowing",
]
