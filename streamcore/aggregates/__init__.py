"""Aggregate functions for windows: what a window computes over the values that fall into it.

Every function implements :class:`AggregateFunction` (``create_accumulator``, ``add``,
``merge``, ``get_result``, plus ``add_batch`` and accumulator (de)serialization for
keyed state). The window operator calls them; they can also be used on their own:

>>> from streamcore.aggregates import Count, HyperLogLog, TopN, combine
>>> clicks = [{"user": "u1", "ms": 30}, {"user": "u2", "ms": 10}, {"user": "u1", "ms": 20}]
>>> agg = combine(clicks=Count(), users=HyperLogLog("user"), slowest=TopN(1, by="ms"))
>>> acc = agg.add_batch(clicks, agg.create_accumulator())
>>> agg.get_result(acc)
{'clicks': 3, 'users': 2, 'slowest': [{'user': 'u1', 'ms': 30}]}

The sketch-based names (:class:`HyperLogLog`, :class:`BloomDistinct`, :class:`DistinctCount`,
the sketches and the stable hash) are imported on first use, so that importing this
package does not import numpy.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

from streamcore.aggregates.base import AggregateFunction, ReduceAggregate
from streamcore.aggregates.basic import Avg, Count, Max, Min, Sum
from streamcore.aggregates.combine import CombinedAggregate, combine
from streamcore.aggregates.topn import TopN

if TYPE_CHECKING:
    from streamcore.aggregates.distinct import BloomDistinct, DistinctCount, HyperLogLog
    from streamcore.aggregates.hashing import stable_hash64, stable_hash64_many
    from streamcore.aggregates.sketches import BloomFilter, CorruptSketchError, HyperLogLogSketch

__all__ = [
    "AggregateFunction",
    "Avg",
    "BloomDistinct",
    "BloomFilter",
    "CombinedAggregate",
    "CorruptSketchError",
    "Count",
    "DistinctCount",
    "HyperLogLog",
    "HyperLogLogSketch",
    "Max",
    "Min",
    "ReduceAggregate",
    "Sum",
    "TopN",
    "combine",
    "stable_hash64",
    "stable_hash64_many",
]

_LAZY = {
    "BloomDistinct": "distinct",
    "DistinctCount": "distinct",
    "HyperLogLog": "distinct",
    "BloomFilter": "sketches",
    "CorruptSketchError": "sketches",
    "HyperLogLogSketch": "sketches",
    "stable_hash64": "hashing",
    "stable_hash64_many": "hashing",
}


def __getattr__(name: str) -> Any:
    module = _LAZY.get(name)
    if module is None:
        msg = f"module {__name__!r} has no attribute {name!r}"
        raise AttributeError(msg)
    value = getattr(importlib.import_module(f"{__name__}.{module}"), name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(__all__))
