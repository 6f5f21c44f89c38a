"""A time-ordered index of buffered entries, for cleanup by time without scanning state.

Operators that buffer elements until the watermark passes them (the interval join) need
to find, when the watermark advances, exactly the entries it expired. :class:`TimeIndex`
keeps ``(ts, seq, key)`` tuples sorted. It is built for the way such entries arrive:
almost in time order (disorder is bounded), and removed oldest first.

A single sorted list would do it, but inserting an out-of-order entry moves every later
entry in memory: with a wide disorder bound and a dense stream that tail is hundreds of
thousands of pointers per insert. So entries live in *chunks*, each a sorted list of at
most ``2 * CHUNK`` entries, the chunks in order; an insert moves at most one chunk's
tail, and the expired prefix is whole chunks dropped plus one cut.

>>> idx = TimeIndex()
>>> idx.add_many([5, 3, 9], [1, 2, 3], ["a", "b", "a"])
>>> idx.pop_until(5)
[(3, 2, 'b'), (5, 1, 'a')]
>>> len(idx), list(idx)
(1, [(9, 3, 'a')])
"""

from __future__ import annotations

from bisect import bisect_left, bisect_right, insort
from collections.abc import Iterable, Iterator
from typing import Any

__all__ = ["CHUNK", "TimeIndex"]

#: a chunk is split in two when it grows past twice this many entries.
CHUNK = 512


class TimeIndex:
    """A sorted multiset of ``(ts, seq, key)``: add (mostly at the end), remove the oldest.

    ``(ts, seq)`` must be unique (``seq`` is a buffer's sequence number), so keys are
    never compared.
    """

    __slots__ = ("_chunks", "_len", "_mins")

    def __init__(self) -> None:
        self._chunks: list[list[tuple[int, int, Any]]] = []
        self._mins: list[tuple[int, int, Any]] = []  # the first entry of each chunk
        self._len = 0

    def __len__(self) -> int:
        return self._len

    def __bool__(self) -> bool:
        return self._len > 0

    def __iter__(self) -> Iterator[tuple[int, int, Any]]:
        """Every entry in time order."""
        for chunk in self._chunks:
            yield from chunk

    def first_ts(self) -> int | None:
        """The oldest timestamp held, or ``None`` when empty."""
        return self._mins[0][0] if self._chunks else None

    def add_many(self, timestamps: Iterable[int], seqs: Iterable[int], keys: Iterable[Any]) -> None:
        """Add one entry per ``(ts, seq, key)`` of the parallel iterables."""
        chunks = self._chunks
        mins = self._mins
        n = 0
        tail: list[tuple[int, int, Any]] | None = chunks[-1] if chunks else None
        last = tail[-1] if tail else None
        for ts, seq, key in zip(timestamps, seqs, keys, strict=True):
            entry = (ts, seq, key)
            n += 1
            if tail is not None and last is not None and entry > last:
                if len(tail) < CHUNK:
                    tail.append(entry)
                else:
                    tail = [entry]
                    chunks.append(tail)
                    mins.append(entry)
                last = entry
            elif tail is None:
                tail = [entry]
                chunks.append(tail)
                mins.append(entry)
                last = entry
            elif entry > tail[0] and len(tail) < 2 * CHUNK:
                insort(tail, entry)  # the common out-of-order case: within the newest chunk
            else:
                self._insert(entry)
                tail = chunks[-1]
                last = tail[-1]
        self._len += n

    def _insert(self, entry: tuple[int, int, Any]) -> None:
        """Insert an entry below the newest one into the chunk that covers it."""
        chunks = self._chunks
        mins = self._mins
        i = bisect_right(mins, entry) - 1
        if i < 0:
            i = 0
            mins[0] = entry
        chunk = chunks[i]
        insort(chunk, entry)
        if len(chunk) > 2 * CHUNK:
            half = chunk[CHUNK:]
            del chunk[CHUNK:]
            chunks.insert(i + 1, half)
            mins.insert(i + 1, half[0])

    def pop_until(self, ts: int) -> list[tuple[int, int, Any]]:
        """Remove and return, oldest first, every entry with timestamp ``<= ts``."""
        chunks = self._chunks
        mins = self._mins
        out: list[tuple[int, int, Any]] = []
        whole = 0
        while whole < len(chunks) and chunks[whole][-1][0] <= ts:
            out.extend(chunks[whole])
            whole += 1
        if whole:
            del chunks[:whole]
            del mins[:whole]
        if chunks and mins[0][0] <= ts:
            chunk = chunks[0]
            n = bisect_left(chunk, (ts + 1,))
            out.extend(chunk[:n])
            del chunk[:n]
            mins[0] = chunk[0]
        self._len -= len(out)
        return out

    def pop_all(self) -> list[tuple[int, int, Any]]:
        """Remove and return every entry, oldest first."""
        out = list(self)
        self.clear()
        return out

    def clear(self) -> None:
        """Remove every entry."""
        self._chunks = []
        self._mins = []
        self._len = 0

    def load(self, entries: Iterable[tuple[int, int, Any]]) -> None:
        """Replace the contents with ``entries`` (any order)."""
        ordered = sorted(entries)
        self._chunks = [ordered[i : i + CHUNK] for i in range(0, len(ordered), CHUNK)]
        self._mins = [c[0] for c in self._chunks]
        self._len = len(ordered)
