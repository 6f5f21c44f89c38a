"""Distinct counts: exact (a set), estimated (HyperLogLog) and probabilistic first-sight (Bloom).

Pick by size and need: :class:`DistinctCount` is exact but keeps every distinct value;
:class:`HyperLogLog` keeps ``2**precision`` bytes whatever the cardinality and is off by
about ``1.04 / sqrt(2**precision)``; :class:`BloomDistinct` also answers "seen before?"
per value, which is what deduplication needs, at a size fixed by its capacity.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from streamcore.aggregates.base import (
    AggregateFunction,
    Field,
    field_getter,
    multiset_merge,
    multiset_retract,
)
from streamcore.aggregates.sketches import BloomFilter, HyperLogLogSketch
from streamcore.errors import ConfigurationError

__all__ = ["BloomDistinct", "DistinctCount", "HyperLogLog"]


class _DistinctBase(AggregateFunction[Any, Any, int]):
    __slots__ = ("_get", "field")

    def __init__(self, field: Field = None) -> None:
        self.field = field
        self._get = field_getter(field)

    def _values(self, values: Sequence[Any]) -> Sequence[Any]:
        return values if self._get is None else list(map(self._get, values))


class DistinctCount(_DistinctBase):
    """The exact number of distinct values of a field; the accumulator is a ``set``.

    Values must be hashable; equality is Python's (``1``, ``1.0`` and ``True`` are one
    value). Memory grows with the number of distinct values: for very large distinct sets
    the window operator may keep them in MapState instead of one accumulator, or use
    :class:`HyperLogLog`. The accumulator is stored as a list in unspecified order.

    With ``retractable=True`` (an unbounded group aggregate over an updating stream) the
    accumulator is a dict ``{value: count}`` instead, so that retracting one of two equal
    values keeps the value counted; it is stored as a list of ``[value, count]`` pairs.

    >>> d = DistinctCount("user")
    >>> d.get_result(d.add_batch([{"user": "a"}, {"user": "b"}, {"user": "a"}], d.create_accumulator()))
    2
    >>> r = DistinctCount(retractable=True)
    >>> r.get_result(r.retract("a", r.add_batch(["a", "b", "a"], r.create_accumulator())))
    2
    """

    __slots__ = ()
    order_insensitive = True
    __slots__ = ("retractable",)

    def __init__(self, field: Field = None, *, retractable: bool = False) -> None:
        super().__init__(field)
        self.retractable = bool(retractable)

    @property
    def supports_retract(self) -> bool:  # type: ignore[override]
        """True when built with ``retractable=True``."""
        return self.retractable

    def create_accumulator(self) -> Any:
        return {} if self.retractable else set()

    def add(self, value: Any, accumulator: Any) -> Any:
        v = value if self._get is None else self._get(value)
        if self.retractable:
            accumulator[v] = accumulator.get(v, 0) + 1
        else:
            accumulator.add(v)
        return accumulator

    def add_batch(self, values: Sequence[Any], accumulator: Any) -> Any:
        if self.retractable:
            for v in self._values(values):
                accumulator[v] = accumulator.get(v, 0) + 1
        else:
            accumulator.update(values if self._get is None else map(self._get, values))
        return accumulator

    def retract(self, value: Any, accumulator: Any) -> Any:
        if not self.retractable:
            return super().retract(value, accumulator)
        return multiset_retract(self, accumulator, value if self._get is None else self._get(value))

    def merge(self, a: Any, b: Any) -> Any:
        if self.retractable:
            return multiset_merge(a, b)
        a |= b
        return a

    def get_result(self, accumulator: Any) -> int:
        return len(accumulator)

    def serialize_accumulator(self, accumulator: Any) -> list[Any]:
        if self.retractable:
            return [[v, n] for v, n in accumulator.items()]
        return list(accumulator)

    def deserialize_accumulator(self, obj: Any) -> Any:
        if self.retractable:
            return {v: n for v, n in obj}
        return set(obj)

    def __repr__(self) -> str:
        field = "" if self.field is None else repr(self.field)
        extra = ("retractable=True" if not field else ", retractable=True") if self.retractable else ""
        return f"DistinctCount({field}{extra})"


class HyperLogLog(_DistinctBase):
    """Estimated number of distinct values of a field with a :class:`HyperLogLogSketch`.

    The result is an int within about ``1.04 / sqrt(2**precision)`` relative standard
    error (0.81 % at the default 14, for 16 KiB per accumulator; fewer bytes are stored
    while the sketch is sparse). Merging is exact. Values must be int, str, bytes, float,
    bool, None or tuples of these; equal values (``1``, ``1.0``) count once.

    >>> h = HyperLogLog(precision=12)
    >>> acc = h.add_batch(list(range(1000)) * 3, h.create_accumulator())
    >>> abs(h.get_result(acc) - 1000) < 50
    True
    """

    __slots__ = ("precision",)
    order_insensitive = True  # registers are maxima

    def __init__(self, field: Field = None, precision: int = 14) -> None:
        super().__init__(field)
        HyperLogLogSketch(precision)  # validates the precision now, not at the first record
        self.precision = precision

    def create_accumulator(self) -> HyperLogLogSketch:
        return HyperLogLogSketch(self.precision)

    def add(self, value: Any, accumulator: HyperLogLogSketch) -> HyperLogLogSketch:
        accumulator.add(value if self._get is None else self._get(value))
        return accumulator

    def add_batch(self, values: Sequence[Any], accumulator: HyperLogLogSketch) -> HyperLogLogSketch:
        accumulator.add_many(self._values(values))
        return accumulator

    def merge(self, a: HyperLogLogSketch, b: HyperLogLogSketch) -> HyperLogLogSketch:
        return a.merge(b)

    def get_result(self, accumulator: HyperLogLogSketch) -> int:
        return len(accumulator)

    def serialize_accumulator(self, accumulator: HyperLogLogSketch) -> bytes:
        return accumulator.to_bytes()

    def deserialize_accumulator(self, obj: Any) -> HyperLogLogSketch:
        sketch = HyperLogLogSketch.from_bytes(obj)
        if sketch.precision != self.precision:
            msg = (
                f"stored HyperLogLog accumulator has precision {sketch.precision}, this function "
                f"{self.precision}; restore with the precision the state was written with"
            )
            raise ConfigurationError(msg)
        return sketch

    def __repr__(self) -> str:
        return f"HyperLogLog({self.field!r}, precision={self.precision})"


class BloomDistinct(_DistinctBase):
    """Counts values seen for the first time, as judged by a :class:`BloomFilter`.

    Exactly: a value adds one to the count iff ``filter.contains(value)`` was false just
    before it was added (within a batch, earlier values of the batch count as added), i.e.
    iff adding it set at least one new bit. A Bloom filter has no false negatives, so a
    repeated value never counts twice; a false positive makes a new value look seen, so
    the count is a lower bound of the distinct count, short by about the false-positive
    rate (at most ``error_rate`` on average while no more than ``capacity`` distinct
    values were added; more beyond it).

    ``merge`` is exact for the filter but must estimate the count: it adds both counts and
    subtracts the overlap estimated from set bits (``est(a) + est(b) - est(a | b)``),
    clamped to ``[max(count_a, count_b), count_a + count_b]``. The accumulator is a list
    ``[filter, count]``.

    >>> b = BloomDistinct(capacity=1000, error_rate=0.01)
    >>> b.get_result(b.add_batch(["a", "b", "a", "c"], b.create_accumulator()))
    3
    """

    __slots__ = ("capacity", "error_rate")
    # merge() estimates the count of two filters from their overlap, where adding counts
    # exactly each value the filter had not seen: merged slices would count differently.
    order_insensitive = False

    def __init__(self, field: Field = None, capacity: int = 100_000, error_rate: float = 0.01) -> None:
        super().__init__(field)
        BloomFilter(capacity, error_rate)  # validates now, not at the first record
        self.capacity = capacity
        self.error_rate = error_rate

    def create_accumulator(self) -> list[Any]:
        return [BloomFilter(self.capacity, self.error_rate), 0]

    def add(self, value: Any, accumulator: list[Any]) -> list[Any]:
        if accumulator[0].add(value if self._get is None else self._get(value)):
            accumulator[1] += 1
        return accumulator

    def add_batch(self, values: Sequence[Any], accumulator: list[Any]) -> list[Any]:
        accumulator[1] += accumulator[0].add_many(self._values(values))
        return accumulator

    def merge(self, a: list[Any], b: list[Any]) -> list[Any]:
        (fa, ca), (fb, cb) = a, b
        if cb == 0:
            fa.merge(fb)
            return a
        overlap = fa.count() + fb.count() - fa.merge(fb).count()
        a[1] = min(ca + cb, max(ca, cb, ca + cb - round(max(0.0, overlap))))
        return a

    def get_result(self, accumulator: list[Any]) -> int:
        return accumulator[1]

    def serialize_accumulator(self, accumulator: list[Any]) -> list[Any]:
        return [accumulator[0].to_bytes(), accumulator[1]]

    def deserialize_accumulator(self, obj: Any) -> list[Any]:
        bloom = BloomFilter.from_bytes(obj[0])
        if (bloom.capacity, bloom.error_rate) != (self.capacity, float(self.error_rate)):
            msg = (
                f"stored Bloom accumulator has capacity {bloom.capacity} and error rate {bloom.error_rate}, "
                f"this function {self.capacity} and {self.error_rate}; restore with the settings of the state"
            )
            raise ConfigurationError(msg)
        return [bloom, int(obj[1])]

    def __repr__(self) -> str:
        return f"BloomDistinct({self.field!r}, capacity={self.capacity}, error_rate={self.error_rate})"
