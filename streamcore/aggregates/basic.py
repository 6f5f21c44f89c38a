"""Count, sum, minimum, maximum and average: the aggregates every window job needs.

Each takes a ``field`` saying where the number lives in a value: a dict key or attribute
name (str), a callable, or None for the value itself. Batches are folded with the C-level
builtins (``sum``, ``min``, ``max`` over ``map``), so a batch costs one extraction per
value and no Python-level loop.

Count, Sum and Avg can retract (take a value back out), which an unbounded group
aggregate over an updating stream needs. Min and Max can only when built with
``retractable=True``: they then keep a multiset (``{value: count}``) of the values instead
of the one extreme, because retracting the minimum must reveal the next smallest.
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

__all__ = ["Avg", "Count", "Max", "Min", "Sum"]


def _describe(name: str, field: Field) -> str:
    if field is None:
        return f"{name}()"
    return f"{name}({field!r})" if isinstance(field, str) else f"{name}({getattr(field, '__name__', field)})"


class Count(AggregateFunction[Any, int, int]):
    """Counts the values of a window; the accumulator is an int.

    >>> c = Count()
    >>> c.get_result(c.add_batch(["a", "b", "c"], c.create_accumulator()))
    3
    """

    __slots__ = ()
    order_insensitive = True
    supports_retract = True

    def create_accumulator(self) -> int:
        return 0

    def add(self, value: Any, accumulator: int) -> int:
        return accumulator + 1

    def retract(self, value: Any, accumulator: int) -> int:
        return accumulator - 1

    def add_batch(self, values: Sequence[Any], accumulator: int) -> int:
        return accumulator + len(values)

    def merge(self, a: int, b: int) -> int:
        return a + b

    def get_result(self, accumulator: int) -> int:
        return accumulator


class _FieldAggregate(AggregateFunction[Any, Any, Any]):
    """Shared plumbing: a field spec and the getter built from it once."""

    __slots__ = ("_get", "field")
    # Sums of floats may differ in the last bits with the order of additions.
    order_insensitive = True

    def __init__(self, field: Field = None) -> None:
        self.field = field
        self._get = field_getter(field)

    def _extract(self, values: Sequence[Any]) -> Any:
        return values if self._get is None else map(self._get, values)

    def _one(self, value: Any) -> Any:
        return value if self._get is None else self._get(value)

    def __repr__(self) -> str:
        return _describe(type(self).__name__, self.field)


class Sum(_FieldAggregate):
    """Sums a field (0 for an empty window); the accumulator is the running sum.

    Ints stay exact (sums beyond 64 bits are stored too); floats are summed in order.

    >>> s = Sum("amount")
    >>> s.get_result(s.add_batch([{"amount": 2}, {"amount": 5}], s.create_accumulator()))
    7
    """

    __slots__ = ()
    supports_retract = True

    def create_accumulator(self) -> Any:
        return 0

    def add(self, value: Any, accumulator: Any) -> Any:
        return accumulator + self._one(value)

    def retract(self, value: Any, accumulator: Any) -> Any:
        return accumulator - self._one(value)

    def add_batch(self, values: Sequence[Any], accumulator: Any) -> Any:
        return sum(self._extract(values), accumulator)

    def merge(self, a: Any, b: Any) -> Any:
        return a + b

    def get_result(self, accumulator: Any) -> Any:
        return accumulator


class _Extreme(_FieldAggregate):
    """Min and Max: the accumulator is None (nothing seen) or a 1-tuple holding the extreme.

    With ``retractable=True`` the accumulator is a dict ``{value: count}`` of every value
    seen and not retracted (stored as a list of ``[value, count]`` pairs): the result is
    its smallest (largest) key, None when empty.
    """

    __slots__ = ("retractable",)
    _pick = staticmethod(min)

    def __init__(self, field: Field = None, *, retractable: bool = False) -> None:
        super().__init__(field)
        self.retractable = bool(retractable)

    @property
    def supports_retract(self) -> bool:  # type: ignore[override]
        """True when built with ``retractable=True``."""
        return self.retractable

    def create_accumulator(self) -> Any:
        return {} if self.retractable else None

    def _better(self, candidate: Any, current: Any) -> bool:
        raise NotImplementedError

    def add(self, value: Any, accumulator: Any) -> Any:
        v = self._one(value)
        if self.retractable:
            accumulator[v] = accumulator.get(v, 0) + 1
            return accumulator
        if accumulator is None or self._better(v, accumulator[0]):
            return (v,)
        return accumulator

    def add_batch(self, values: Sequence[Any], accumulator: Any) -> Any:
        if self.retractable:
            for v in self._extract(values):
                accumulator[v] = accumulator.get(v, 0) + 1
            return accumulator
        if not values:
            return accumulator
        return self.merge(accumulator, (self._pick(self._extract(values)),))

    def retract(self, value: Any, accumulator: Any) -> Any:
        if not self.retractable:
            return super().retract(value, accumulator)
        return multiset_retract(self, accumulator, self._one(value))

    def merge(self, a: Any, b: Any) -> Any:
        if self.retractable:
            return multiset_merge(a, b)
        if a is None:
            return b
        if b is None or not self._better(b[0], a[0]):
            return a
        return b

    def get_result(self, accumulator: Any) -> Any:
        if self.retractable:
            return self._pick(accumulator) if accumulator else None
        return None if accumulator is None else accumulator[0]

    def serialize_accumulator(self, accumulator: Any) -> Any:
        if self.retractable:
            return [[v, n] for v, n in accumulator.items()]
        return accumulator

    def deserialize_accumulator(self, obj: Any) -> Any:
        if self.retractable:
            return {v: n for v, n in obj}
        return obj

    def __repr__(self) -> str:
        text = super().__repr__()
        if not self.retractable:
            return text
        sep = "" if self.field is None else ", "
        return f"{text[:-1]}{sep}retractable=True)"


class Min(_Extreme):
    """The smallest value of a field (None for an empty window); among equals, the first seen.

    >>> m = Min()
    >>> m.get_result(m.add_batch([3, 1, 2], m.create_accumulator()))
    1
    >>> r = Min(retractable=True)
    >>> r.get_result(r.retract(1, r.add_batch([3, 1, 2], r.create_accumulator())))
    2
    """

    __slots__ = ()
    _pick = staticmethod(min)

    def _better(self, candidate: Any, current: Any) -> bool:
        return candidate < current


class Max(_Extreme):
    """The largest value of a field (None for an empty window); among equals, the first seen.

    >>> m = Max(lambda r: r[1])
    >>> m.get_result(m.add_batch([("a", 3), ("b", 9)], m.create_accumulator()))
    9
    """

    __slots__ = ()
    _pick = staticmethod(max)

    def _better(self, candidate: Any, current: Any) -> bool:
        return candidate > current


class Avg(_FieldAggregate):
    """The arithmetic mean of a field (None for an empty window); the accumulator is ``(sum, count)``.

    >>> a = Avg("v")
    >>> a.get_result(a.add_batch([{"v": 1}, {"v": 2}], a.create_accumulator()))
    1.5
    """

    __slots__ = ()
    supports_retract = True

    def create_accumulator(self) -> tuple[Any, int]:
        return (0, 0)

    def add(self, value: Any, accumulator: tuple[Any, int]) -> tuple[Any, int]:
        return (accumulator[0] + self._one(value), accumulator[1] + 1)

    def retract(self, value: Any, accumulator: tuple[Any, int]) -> tuple[Any, int]:
        return (accumulator[0] - self._one(value), accumulator[1] - 1)

    def add_batch(self, values: Sequence[Any], accumulator: tuple[Any, int]) -> tuple[Any, int]:
        return (sum(self._extract(values), accumulator[0]), accumulator[1] + len(values))

    def merge(self, a: tuple[Any, int], b: tuple[Any, int]) -> tuple[Any, int]:
        return (a[0] + b[0], a[1] + b[1])

    def get_result(self, accumulator: tuple[Any, int]) -> float | None:
        total, count = accumulator
        return total / count if count else None
