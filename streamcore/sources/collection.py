"""Bounded in-memory sources: a collection, and a deterministic generator of records."""

from __future__ import annotations

from collections.abc import Callable, Iterable
from typing import Any

from streamcore.errors import ConfigurationError
from streamcore.sources.base import Source, SplitReader

__all__ = ["CollectionSource", "GeneratorSource"]


class _CollectionReader(SplitReader):
    __slots__ = ("_data", "_pos", "finished", "split_id")

    def __init__(self, data: list[Any]) -> None:
        self.split_id = "collection-0"
        self._data = data
        self._pos = 0
        self.finished = not data

    def poll(self, max_records: int) -> tuple[list[Any], list[int] | None]:
        pos = self._pos
        batch = self._data[pos : pos + max_records]
        self._pos = pos + len(batch)
        if self._pos >= len(self._data):
            self.finished = True
        return batch, None

    def position(self) -> int:
        return self._pos

    def seek(self, position: Any) -> None:
        if not isinstance(position, int) or not 0 <= position <= len(self._data):
            msg = (
                f"collection source position {position!r} is outside the collection (size {len(self._data)})"
            )
            raise ConfigurationError(msg)
        self._pos = position
        self.finished = position >= len(self._data)


class CollectionSource(Source):
    """The elements of a collection, in order (one split; position = index)."""

    bounded = True

    def __init__(self, elements: Iterable[Any]) -> None:
        if isinstance(elements, (str, bytes)) or not isinstance(elements, Iterable):
            msg = (
                f"from_collection() takes a list or other iterable of elements, got {type(elements).__name__}"
            )
            raise ConfigurationError(msg)
        self.elements = list(elements)

    def create_readers(self) -> list[SplitReader]:
        return [_CollectionReader(self.elements)]

    def describe(self) -> str:
        return f"collection({len(self.elements)} elements)"


class _GeneratorReader(SplitReader):
    __slots__ = ("_count", "_fn", "_offset", "_split", "finished", "split_id")

    def __init__(self, fn: Callable[[int, int], Any], split: int, count: int | None) -> None:
        self.split_id = f"generator-{split}"
        self._fn = fn
        self._split = split
        self._count = count
        self._offset = 0
        self.finished = count == 0

    def poll(self, max_records: int) -> tuple[list[Any], list[int] | None]:
        start = self._offset
        end = start + max_records if self._count is None else min(start + max_records, self._count)
        fn, split = self._fn, self._split
        batch = [fn(split, o) for o in range(start, end)]
        self._offset = end
        if self._count is not None and end >= self._count:
            self.finished = True
        return batch, None

    def position(self) -> int:
        return self._offset

    def seek(self, position: Any) -> None:
        if not isinstance(position, int) or position < 0:
            msg = f"generator source position must be an offset >= 0, got {position!r}"
            raise ConfigurationError(msg)
        self._offset = position
        self.finished = self._count is not None and position >= self._count


class GeneratorSource(Source):
    """Records ``fn(split, offset)`` for ``offset`` in ``0..count-1`` of every split.

    Deterministic and resumable: the position of a split is its offset, so a restored
    job regenerates exactly the records it had not read. ``count=None`` is unbounded.
    """

    def __init__(
        self, fn: Callable[[int, int], Any], *, num_splits: int = 1, count: int | None = None
    ) -> None:
        if not callable(fn):
            msg = "from_generator() takes a function fn(split, offset) -> record"
            raise ConfigurationError(msg)
        if type(num_splits) is not int or num_splits < 1:
            msg = f"num_splits must be an int >= 1, got {num_splits!r}"
            raise ConfigurationError(msg)
        if count is not None and (type(count) is not int or count < 0):
            msg = f"count (records per split) must be an int >= 0 or None for unbounded, got {count!r}"
            raise ConfigurationError(msg)
        self.fn = fn
        self.num_splits = num_splits
        self.count = count
        self.bounded = count is not None

    def create_readers(self) -> list[SplitReader]:
        return [_GeneratorReader(self.fn, i, self.count) for i in range(self.num_splits)]

    def describe(self) -> str:
        n = "unbounded" if self.count is None else f"{self.count} per split"
        return f"generator({self.num_splits} splits, {n})"
