"""streamcore: a pure-Python, Flink-like stream processing engine.

Build a dataflow with :class:`StreamEnvironment` and the fluent :class:`DataStream`
API, run it in your own process with keyed state on the heap or in RocksDB, event
time and watermarks, interval joins, windows and checkpoints.

>>> import streamcore as sc
>>> env = sc.StreamEnvironment()
>>> env.from_collection([3, 1, 2]).map(lambda x: x + 1).execute_and_collect()
[4, 2, 3]
"""

from streamcore import aggregates, errors, serde, time
from streamcore.checkpoint.restore import RestoreFrom
from streamcore.datastream import ConnectedStreams, DataStream, DataStreamSink, KeyedStream
from streamcore.environment import StreamEnvironment
from streamcore.errors import StreamcoreError
from streamcore.functions import (
    CoProcessFunction,
    KeyedCoProcessFunction,
    KeyedProcessFunction,
    OutputTag,
    ProcessFunction,
    ProcessJoinFunction,
)
from streamcore.runtime.executor import JobResult
from streamcore.runtime.job import JobHandle
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

__version__ = "0.1.0"

__all__ = [
    "MAX_TIMESTAMP",
    "MIN_TIMESTAMP",
    "CallableSink",
    "Clock",
    "CoProcessFunction",
    "CollectSink",
    "CollectionSource",
    "ConnectedStreams",
    "DataStream",
    "DataStreamSink",
    "FileSink",
    "GeneratorSource",
    "JobHandle",
    "JobResult",
    "KafkaSink",
    "KafkaSource",
    "KeyedCoProcessFunction",
    "KeyedProcessFunction",
    "KeyedStream",
    "ListStateDescriptor",
    "ManualClock",
    "MapStateDescriptor",
    "OutputTag",
    "PrintSink",
    "ProcessFunction",
    "ProcessJoinFunction",
    "ReducingStateDescriptor",
    "RestoreFrom",
    "Sink",
    "Source",
    "SplitReader",
    "StateTtlConfig",
    "StreamEnvironment",
    "StreamcoreError",
    "SystemClock",
    "TwoPhaseCommitSink",
    "ValueStateDescriptor",
    "WatermarkGenerator",
    "WatermarkStrategy",
    "aggregates",
    "errors",
    "serde",
    "time",
]
