"""Keyed state: descriptors, handles, TTL, and the heap and RocksDB backends.

Operators ask a :class:`KeyedStateBackend` for named state after the current key is
set; the code is identical on every backend. Only ``streamcore.state.rocksdb``
imports rocksdict.
"""

from streamcore.state.api import (
    InternalTimerService,
    KeyContext,
    KeyedStateBackend,
    ListState,
    MapState,
    ReducingState,
    TimeOrderedState,
    ValueState,
)
from streamcore.state.descriptors import (
    ListStateDescriptor,
    MapStateDescriptor,
    ReducingStateDescriptor,
    StateDescriptor,
    StateTtlConfig,
    ValueStateDescriptor,
)
from streamcore.state.factory import StateBackendFactory
from streamcore.state.heap import HeapKeyedStateBackend

__all__ = [
    "HeapKeyedStateBackend",
    "InternalTimerService",
    "KeyContext",
    "KeyedStateBackend",
    "ListState",
    "ListStateDescriptor",
    "MapState",
    "MapStateDescriptor",
    "ReducingState",
    "ReducingStateDescriptor",
    "StateBackendFactory",
    "StateDescriptor",
    "StateTtlConfig",
    "TimeOrderedState",
    "ValueState",
    "ValueStateDescriptor",
]
