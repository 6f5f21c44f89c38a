"""Top-N: the n largest values of a window, ranked by a field, in a bounded heap."""

from __future__ import annotations

import heapq
from collections.abc import Callable, Sequence
from itertools import count as _count
from typing import Any

from streamcore.aggregates.base import AggregateFunction, Field, field_getter
from streamcore.errors import ConfigurationError

__all__ = ["TopN"]


class TopN(AggregateFunction[Any, list[Any], list[Any]]):
    """Keeps the ``n`` largest values of a window, ranked by ``by`` (or the heapq-style ``key``).

    The result is a list of at most ``n`` values, largest rank first, and equals
    ``heapq.nlargest(n, values, key=rank)`` over the window's values in arrival order,
    including ties: among values of equal rank, the earlier one wins a place and comes
    first (a merge of ``a`` and ``b`` counts ``a``'s values as earlier). Ranks must be
    mutually comparable; values themselves are never compared (``(rank, -arrival)`` is
    unique, so heap comparisons stop before the value).

    ``by`` is a field spec (dict key or attribute name, or a callable), ``key`` a callable
    as for ``heapq.nlargest``; give at most one. With neither, values rank themselves.

    The accumulator is ``[seen, heap]``: how many values were added, and a min-heap of at
    most ``n`` entries ``(rank, -arrival, value)`` whose root is the entry to evict next.
    Memory is O(n) whatever the window size.

    >>> top = TopN(2, by="score")
    >>> rows = [{"id": 1, "score": 5}, {"id": 2, "score": 9}, {"id": 3, "score": 5}]
    >>> [r["id"] for r in top.get_result(top.add_batch(rows, top.create_accumulator()))]
    [2, 1]
    """

    __slots__ = ("_rank", "by", "n")

    def __init__(self, n: int, by: Field = None, key: Callable[[Any], Any] | None = None) -> None:
        if type(n) is not int or n < 1:
            msg = f"TopN needs a positive int n, got {n!r}"
            raise ConfigurationError(msg)
        if by is not None and key is not None:
            msg = "TopN takes `by` (a field) or `key` (a callable), not both"
            raise ConfigurationError(msg)
        if key is not None and not callable(key):
            msg = f"TopN key must be callable, got {type(key).__name__}; pass field names as `by`"
            raise ConfigurationError(msg)
        self.n = n
        self.by = by if key is None else key
        self._rank = field_getter(self.by)

    def create_accumulator(self) -> list[Any]:
        return [0, []]

    def add(self, value: Any, accumulator: list[Any]) -> list[Any]:
        seen, heap = accumulator
        entry = (value if self._rank is None else self._rank(value), -seen, value)
        if len(heap) < self.n:
            heapq.heappush(heap, entry)
        elif entry > heap[0]:
            heapq.heapreplace(heap, entry)
        accumulator[0] = seen + 1
        return accumulator

    def add_batch(self, values: Sequence[Any], accumulator: list[Any]) -> list[Any]:
        if not values:
            return accumulator
        seen, heap = accumulator
        ranks = values if self._rank is None else map(self._rank, values)
        # (rank, -arrival) is unique per entry, so tuple comparison never reaches the values.
        best = heapq.nlargest(self.n, zip(ranks, _count(-seen, -1), values))
        accumulator[0] = seen + len(values)
        self._absorb(heap, best)
        return accumulator

    def _absorb(self, heap: list[Any], entries: list[Any]) -> None:
        n = self.n
        for entry in entries:
            if len(heap) < n:
                heapq.heappush(heap, entry)
            elif entry > heap[0]:
                heapq.heapreplace(heap, entry)

    def merge(self, a: list[Any], b: list[Any]) -> list[Any]:
        offset = a[0]
        self._absorb(a[1], [(rank, neg - offset, value) for rank, neg, value in b[1]])
        a[0] += b[0]
        return a

    def get_result(self, accumulator: list[Any]) -> list[Any]:
        return [entry[2] for entry in sorted(accumulator[1], reverse=True)]

    def serialize_accumulator(self, accumulator: list[Any]) -> list[Any]:
        seen, heap = accumulator
        if self._rank is None:  # the rank is the value: store it once
            return [seen, [[neg, v] for _, neg, v in heap]]
        return [seen, [[r, neg, v] for r, neg, v in heap]]

    def deserialize_accumulator(self, obj: Any) -> list[Any]:
        seen, entries = obj
        # The stored list is the heap's own array, in order, so it is still a valid heap.
        if self._rank is None:
            return [seen, [(v, neg, v) for neg, v in entries]]
        return [seen, [(r, neg, v) for r, neg, v in entries]]

    def __repr__(self) -> str:
        by = self.by if self.by is None or isinstance(self.by, str) else getattr(self.by, "__name__", self.by)
        return f"TopN({self.n}, by={by!r})"
