"""The handles of keyed state: what user code and operators read and write for the current key.

Every backend implements these; a handle is bound to the current key of its
operator's :class:`~streamcore.state.api.KeyContext`. Namespaces separate several
instances of one state under the same key (a window's contents, for example); the
default namespace is ``None``.

Value and list state also have *bulk operations* over one namespace and many explicit
keys (``fold_many``, ``get_many``, ``clear_many``; ``add_many`` for lists): operators
that touch many keys of one namespace at once (window contents, fired for all keys of
a window) call them instead of switching the current key per element, and the backend
does the batch its own way (heap: its dicts, in place; RocksDB: one read per key, one
write batch). They neither need nor change the current key. A value state can also
hold *live* values (:meth:`ValueState.hold_live_values`): objects that a codec turns
into their stored form, which snapshots and serializing backends hold.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Callable, Container, Iterable, Iterator, Sequence
from typing import Any, Protocol

from streamcore.errors import StateError

__all__ = [
    "Fold",
    "InternalTimerService",
    "ListState",
    "MapState",
    "ReducingState",
    "TimeOrderedState",
    "ValueCodec",
    "ValueState",
]


class ValueCodec(Protocol):
    """A live value to its stored form (msgpack-able) and back (:meth:`ValueState.hold_live_values`)."""

    def encode(self, value: Any) -> Any:
        """The stored form of ``value``."""
        ...

    def decode(self, stored: Any) -> Any:
        """The live value of what :meth:`encode` returned (after a msgpack round trip)."""
        ...


#: ``fold(table, keys, values, new_keys)`` of :meth:`ValueState.fold_many`.
Fold = Callable[[dict[Any, Any], Sequence[Any], Sequence[Any], list[Any]], None]


def _no_bulk(handle: object, operation: str) -> StateError:
    msg = (
        f"{type(handle).__name__} has no {operation}(): bulk operations are for state without TTL; "
        "use the per-key methods, or a descriptor without ttl"
    )
    return StateError(msg)


class ValueState(ABC):
    """One value per key and namespace."""

    @abstractmethod
    def value(self) -> Any:
        """The current key's value, or the descriptor's default."""

    @abstractmethod
    def update(self, value: Any) -> None:
        """Set the current key's value (``None`` clears it)."""

    @abstractmethod
    def clear(self) -> None:
        """Remove the current key's value."""

    # -- bulk operations: one namespace, explicit keys ------------------------------------
    def hold_live_values(self, codec: ValueCodec, cache_entries: int = 0) -> None:
        """Hold values as live objects that ``codec`` turns into their stored form and back.

        Reads return live values; snapshots hold ``codec.encode(value)`` (so the live
        objects need not be msgpack-able) and restores decode. Call it once, right after
        fetching the handle. On a serializing backend (RocksDB) every write encodes and
        every read decodes; ``cache_entries`` > 0 keeps up to that many decoded values in
        a write-back cache in front of it (:mod:`streamcore.state.write_back`), which the
        backend writes back as it evicts and before every snapshot. The heap backend
        holds every value live and ignores ``cache_entries``.
        """
        raise _no_bulk(self, "hold_live_values")

    def fold_many(
        self,
        namespace: Any,
        keys: Sequence[Any],
        values: Sequence[Any],
        fold: Fold,
        *,
        known: Container[Any] | None = None,
    ) -> list[Any]:
        """Fold a batch into the values of ``namespace`` (``keys[i]`` is the key of ``values[i]``).

        Calls ``fold(table, keys, values, new_keys)`` once. ``table`` maps every key of
        ``keys`` that has a value to it, and may hold other keys of the namespace, which
        ``fold`` must leave alone; ``fold`` stores every key's new value in ``table``
        (changing values in place counts) and appends to ``new_keys`` each key it added.
        Afterwards every key of ``keys`` has the value ``table`` holds for it. Returns
        ``new_keys``.

        ``known``, when given, contains every key of ``keys`` that may have a value: the
        others are not looked up (on RocksDB, no read).

        Raises:
            KeyEncodingError: a key has no encoding (as with ``set_current_key``).
        """
        raise _no_bulk(self, "fold_many")

    def get_many(self, namespace: Any, keys: Sequence[Any], *, clear: bool = False) -> list[Any]:
        """The values of ``keys`` (distinct) in ``namespace``, ``None`` where there is none.

        Values are what :meth:`value` returns (the descriptor's default is not used);
        ``clear`` removes them as they are read.
        """
        raise _no_bulk(self, "get_many")

    def clear_many(self, namespace: Any, keys: Sequence[Any]) -> None:
        """Remove the values of ``keys`` in ``namespace``."""
        raise _no_bulk(self, "clear_many")


class ListState(ABC):
    """A list of values per key and namespace."""

    @abstractmethod
    def get(self) -> list[Any]:
        """A copy of the current key's list (empty when nothing is stored)."""

    @abstractmethod
    def add(self, value: Any) -> None:
        """Append one value."""

    def add_all(self, values: Iterable[Any]) -> None:
        """Append several values."""
        for v in values:
            self.add(v)

    @abstractmethod
    def update(self, values: Iterable[Any]) -> None:
        """Replace the list."""

    @abstractmethod
    def clear(self) -> None:
        """Remove the list."""

    # -- bulk operations: one namespace, explicit keys ------------------------------------
    def add_many(self, namespace: Any, keys: Sequence[Any], values: Sequence[Any]) -> None:
        """Append ``values[i]`` to the list of ``keys[i]`` in ``namespace``, in order.

        Raises:
            KeyEncodingError: a key has no encoding (as with ``set_current_key``).
        """
        raise _no_bulk(self, "add_many")

    def get_many(self, namespace: Any, keys: Sequence[Any], *, clear: bool = False) -> list[list[Any]]:
        """Copies of the lists of ``keys`` (distinct) in ``namespace``, empty where none.

        ``clear`` removes them as they are read.
        """
        raise _no_bulk(self, "get_many")

    def clear_many(self, namespace: Any, keys: Sequence[Any]) -> None:
        """Remove the lists of ``keys`` in ``namespace``."""
        raise _no_bulk(self, "clear_many")


class MapState(ABC):
    """A map per key and namespace; user keys follow the stream-key encoding rules."""

    @abstractmethod
    def get(self, user_key: Any) -> Any:
        """The value under ``user_key``, or ``None``."""

    @abstractmethod
    def put(self, user_key: Any, value: Any) -> None:
        """Store ``value`` under ``user_key``."""

    def put_all(self, mapping: dict[Any, Any]) -> None:
        """Store every entry of ``mapping``."""
        for k, v in mapping.items():
            self.put(k, v)

    @abstractmethod
    def remove(self, user_key: Any) -> None:
        """Remove ``user_key`` (no error if absent)."""

    def contains(self, user_key: Any) -> bool:
        """Whether ``user_key`` is present."""
        return self.get(user_key) is not None

    @abstractmethod
    def items(self) -> Iterator[tuple[Any, Any]]:
        """The current key's entries."""

    def keys(self) -> Iterator[Any]:
        """The current key's user keys."""
        return (k for k, _ in self.items())

    def values(self) -> Iterator[Any]:
        """The current key's values."""
        return (v for _, v in self.items())

    def is_empty(self) -> bool:
        """Whether the current key's map is empty."""
        return next(iter(self.items()), None) is None

    @abstractmethod
    def clear(self) -> None:
        """Remove the whole map of the current key."""


class ReducingState(ABC):
    """One value per key, folded with the descriptor's reduce function on ``add``."""

    @abstractmethod
    def get(self) -> Any:
        """The folded value, or ``None``."""

    @abstractmethod
    def add(self, value: Any) -> None:
        """Fold ``value`` into the current value."""

    @abstractmethod
    def clear(self) -> None:
        """Remove the value."""


class TimeOrderedState(ABC):
    """Per-key entries ordered by timestamp; duplicates of one timestamp are all kept.

    Used by interval joins and windows. ``entries_scanned`` counts every entry a
    range read touched, so tests and benchmarks can prove a probe reads no more than
    it must.
    """

    entries_scanned: int

    @abstractmethod
    def add(self, timestamp: int, value: Any) -> int:
        """Buffer ``value`` at ``timestamp`` under the current key; returns the entry's sequence number.

        ``(timestamp, seq)`` identifies the entry: :meth:`remove` deletes exactly it.
        """

    @abstractmethod
    def add_batch(
        self, keys: list[Any], key_bytes: list[bytes], timestamps: list[int], values: list[Any]
    ) -> list[int]:
        """Buffer many values of any keys (parallel lists); returns their sequence numbers.

        The bulk form of :meth:`add` for a batch of elements: no current key is needed or
        changed. ``key_bytes`` are the keys' encodings from :meth:`KeyContext.key_bytes_batch`.
        """

    @abstractmethod
    def counts(self, keys: list[Any]) -> list[int]:
        """How many entries each of ``keys`` holds (0 for a key with none), in order; nothing is read.

        What a join asks for a batch before probing: a key the buffer holds nothing for
        needs no probe, and the counts are what a prefix scan of each key would read.
        """

    @abstractmethod
    def remove(self, timestamp: int, seq: int) -> None:
        """Remove the current key's entry ``(timestamp, seq)`` (no error if absent); nothing is read."""

    @abstractmethod
    def remove_entries(self, entries: list[tuple[int, int, Any]]) -> None:
        """Remove many entries of any keys, given as ``(timestamp, seq, key)``; nothing is read.

        The bulk form of :meth:`remove` for cleanup: no current key is needed or changed.
        Every entry must be present (as an expiry index built from :meth:`index_entries`
        and the sequence numbers :meth:`add_batch` returned lists them). The tuple order is
        that of a time-ordered expiry index, so its expired prefix can be passed as it is.
        """

    @abstractmethod
    def range(self, lower: int, upper: int) -> list[tuple[int, Any]]:
        """Entries of the current key with ``lower <= ts <= upper``, in timestamp order."""

    @abstractmethod
    def scan_prefix(self) -> list[tuple[int, Any]]:
        """Every entry of the current key, in timestamp order (the naive probe)."""

    @abstractmethod
    def is_empty(self) -> bool:
        """Whether the current key has no entries."""

    @abstractmethod
    def count(self) -> int:
        """Entries of every key (for metrics and tests)."""

    @abstractmethod
    def index_entries(self) -> list[tuple[int, int, Any]]:
        """``(ts, seq, key)`` of every entry of every key, in no particular order; values are not decoded.

        What an expiry index holds: callers rebuild theirs from it after a restore
        instead of storing it in checkpoints. A full read.
        """


class InternalTimerService(ABC):
    """Event- and processing-time timers of one keyed operator, per (timestamp, key, namespace).

    Registering the same timer twice keeps one. Timers pop in timestamp order.
    """

    @abstractmethod
    def register_event_time_timer(self, timestamp: int, namespace: Any = None) -> None:
        """Register an event-time timer for the current key."""

    @abstractmethod
    def delete_event_time_timer(self, timestamp: int, namespace: Any = None) -> None:
        """Delete an event-time timer of the current key (no error if absent)."""

    @abstractmethod
    def register_processing_time_timer(self, timestamp: int, namespace: Any = None) -> None:
        """Register a processing-time timer for the current key."""

    @abstractmethod
    def delete_processing_time_timer(self, timestamp: int, namespace: Any = None) -> None:
        """Delete a processing-time timer of the current key (no error if absent)."""

    @abstractmethod
    def pop_event_timer(self, watermark: int) -> tuple[int, Any, Any] | None:
        """Remove and return the earliest event-time timer ``<= watermark`` as (ts, key, ns)."""

    @abstractmethod
    def pop_processing_timer(self, now: int) -> tuple[int, Any, Any] | None:
        """Remove and return the earliest processing-time timer ``<= now`` as (ts, key, ns)."""

    @abstractmethod
    def next_processing_time(self) -> int | None:
        """The earliest processing-time timer, if any."""

    @abstractmethod
    def num_event_timers(self) -> int:
        """How many event-time timers are registered."""

    @abstractmethod
    def num_processing_timers(self) -> int:
        """How many processing-time timers are registered."""
