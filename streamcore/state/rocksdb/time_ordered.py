"""The RocksDB time-ordered buffer: entries under ``kg + key + ts + seq``, and a tier of recent ones.

An interval join buffers every element of both inputs and deletes it once the watermark
passes its last possible partner, so most entries live a short time. In RocksDB each of
them costs a memtable insert at a random key (``kg + key`` first, for the per-key range
probe), a tombstone later, and a flush and compaction of both. The **recent tier** keeps
the newest ``cache_entries`` entries in memory instead (serialized, per key, in
``(ts, seq)`` order), as Kafka Streams puts a record cache in front of its RocksDB stores:

* an entry deleted while still recent never reaches RocksDB (no insert, no tombstone);
* when the tier holds more than ``cache_entries`` entries, all of them are written in one
  sorted batch (sorted inserts are several times cheaper than random ones) and the tier
  starts empty;
* every snapshot writes the tier first (:meth:`RocksDBTimeOrderedState.spill`, called by
  the backend), so native checkpoints and savepoints hold every entry;
* a probe reads RocksDB only for a key that has entries there (in-memory counts per key),
  and the key's recent entries from memory.

Values are serialized when they are added on either tier, so a bad value fails at once,
naming the state, and a value changed after it was buffered does not change the buffer.
``cache_entries=0`` writes every entry through (the tier is off).
"""

from __future__ import annotations

from bisect import insort
from collections.abc import Iterable
from typing import Any, Protocol

from streamcore.serde import decode_key, decode_ts, encode_seq, encode_ts, encode_ts_seq
from streamcore.state.api import KeyContext, TimeOrderedState
from streamcore.state.descriptors import DEFAULT_SERIALIZER
from streamcore.state.rocksdb.handles import dumps_error, dumps_ok
from streamcore.state.rocksdb.store import RocksDBStore, prefix_upper_bound
from streamcore.time import MAX_TIMESTAMP

__all__ = ["BufferOwner", "RocksDBTimeOrderedState"]


class BufferOwner(Protocol):
    """What a buffer needs of its backend: the operator's uid, sequence numbers and batches."""

    operator_uid: str

    def next_seqs(self, n: int) -> Iterable[int]: ...

    def advance_seq(self, seq: int) -> None: ...

    def begin_batch(self) -> None: ...

    def end_batch(self) -> None: ...


_SEQ_BIAS = 2**63  # encode_ts_seq stores seq through the timestamp encoding


def _count_down(counts: dict[Any, int], keys: list[Any]) -> None:
    for k in keys:
        left = counts.get(k, 0) - 1
        if left > 0:
            counts[k] = left
        else:
            counts.pop(k, None)


class RocksDBTimeOrderedState(TimeOrderedState):
    """Per-key entries under ``kg + key + ts + seq``; range reads seek the exact bounds.

    How many entries each key holds, in all and in RocksDB, is kept in memory, so a join
    skips the probes of keys the buffer holds nothing for, and a probe seeks RocksDB only
    for keys with entries there. The counts are built by one scan of the stored keys the
    first time they are needed after the state opened (also after a native restore),
    then kept by every write. See the module docstring for the recent tier.
    """

    __slots__ = (
        "_backend",
        "_cache_entries",
        "_counts",
        "_dumps",
        "_kc",
        "_loads",
        "_name",
        "_recent",
        "_recent_n",
        "_store",
        "_stored",
        "_uid",
        "entries_scanned",
        "spills",
    )

    def __init__(
        self,
        name: str,
        kc: KeyContext,
        store: RocksDBStore,
        serializer: Any,
        backend: BufferOwner,
        cache_entries: int = 0,
    ) -> None:
        self._name = name
        self._kc = kc
        self._store = store
        self._backend = backend
        self._uid = backend.operator_uid
        ser = serializer or DEFAULT_SERIALIZER
        self._dumps = ser.dumps
        self._loads = ser.loads
        self._cache_entries = cache_entries
        self._counts: dict[Any, int] | None = None  # key -> entries on both tiers
        self._stored: dict[Any, int] | None = None  # key -> entries in RocksDB
        # key -> [(ts, seq, serialized value)] in (ts, seq) order: the recent tier.
        self._recent: dict[Any, list[tuple[int, int, bytes]]] = {}
        self._recent_n = 0
        self.entries_scanned = 0
        self.spills = 0

    # -- counts ---------------------------------------------------------------------------------
    def _key_counts(self) -> dict[Any, int]:
        counts = self._counts
        if counts is None:
            stored: dict[Any, int] = {}
            for _, _, key in self._stored_entries():
                stored[key] = stored.get(key, 0) + 1
            counts = dict(stored)
            for key, entries in self._recent.items():
                counts[key] = counts.get(key, 0) + len(entries)
            self._stored = stored
            self._counts = counts
        return counts

    def _stored_counts(self) -> dict[Any, int]:
        self._key_counts()
        assert self._stored is not None
        return self._stored

    def counts(self, keys: list[Any]) -> list[int]:
        """Entries per key, from the in-memory counts."""
        get = self._key_counts().get
        return [get(k, 0) for k in keys]

    # -- writes ---------------------------------------------------------------------------------
    def add(self, timestamp: int, value: Any) -> int:
        """Buffer ``value`` at ``timestamp``; returns its sequence number."""
        kc = self._kc
        return self.add_batch([kc.key], [kc.key_bytes], [timestamp], [value])[0]

    def add_batch(
        self, keys: list[Any], key_bytes: list[bytes], timestamps: list[int], values: list[Any]
    ) -> list[int]:
        """Buffer many values of any keys; returns their sequence numbers."""
        dumps = self._dumps
        try:
            data = [dumps(v) for v in values]
        except Exception as exc:
            bad = next((v for v in values if not dumps_ok(dumps, v)), None)
            raise dumps_error(self._name, self._uid, bad, exc, "buffer") from exc
        counts = self._key_counts()  # built before the writes, which it must not count twice
        seqs = list(self._backend.next_seqs(len(values)))
        get = counts.get
        for k in keys:
            counts[k] = get(k, 0) + 1
        if not self._cache_entries:
            self._write_through(keys, key_bytes, timestamps, seqs, data)
            return seqs
        recent = self._recent
        for k, ts, seq, d in zip(keys, timestamps, seqs, data, strict=True):
            entries = recent.get(k)
            if entries is None:
                recent[k] = [(ts, seq, d)]
            elif ts >= entries[-1][0]:
                entries.append((ts, seq, d))  # seqs grow: (ts, seq) order holds
            else:
                insort(entries, (ts, seq, d))
        self._recent_n += len(seqs)
        if self._recent_n > self._cache_entries:
            self.spill()
        return seqs

    def _write_through(
        self,
        keys: list[Any],
        key_bytes: list[bytes],
        timestamps: list[int],
        seqs: list[int],
        data: list[bytes],
    ) -> None:
        stored = self._stored_counts()
        entries = zip(key_bytes, timestamps, seqs, strict=True)
        self._store.put_many([kb + encode_ts_seq(ts, seq) for kb, ts, seq in entries], data)
        get = stored.get
        for k in keys:
            stored[k] = get(k, 0) + 1

    def spill(self) -> None:
        """Write every recent entry to RocksDB (in the open batch, or in one of its own)."""
        recent = self._recent
        if not recent:
            return
        self._key_counts()  # built before the tiers change
        keys: list[Any] = []
        key_bytes: list[bytes] = []
        timestamps: list[int] = []
        seqs: list[int] = []
        data: list[bytes] = []
        kbs = self._kc.key_bytes_batch(list(recent))
        for (key, entries), kb in zip(recent.items(), kbs, strict=True):
            for ts, seq, d in entries:
                keys.append(key)
                key_bytes.append(kb)
                timestamps.append(ts)
                seqs.append(seq)
                data.append(d)
        backend = self._backend
        backend.begin_batch()  # joins the open batch, if any
        try:
            self._write_through(keys, key_bytes, timestamps, seqs, data)
        finally:
            backend.end_batch()
        recent.clear()
        self._recent_n = 0
        self.spills += 1

    @property
    def recent_entries(self) -> int:
        """Entries held in memory, not yet in RocksDB."""
        return self._recent_n

    def remove(self, timestamp: int, seq: int) -> None:
        """Delete exactly the entry ``(timestamp, seq)`` of the current key (no error if absent)."""
        kc = self._kc
        key = kc.key
        counts = self._key_counts()  # built before anything changes, which it must not count
        if self._take_recent(key, timestamp, seq):
            _count_down(counts, [key])
            return
        k = kc.key_bytes + encode_ts_seq(timestamp, seq)
        if self._store.get(k) is None:
            return
        self._store.delete(k)
        _count_down(counts, [key])
        _count_down(self._stored_counts(), [key])

    def _take_recent(self, key: Any, ts: int, seq: int) -> bool:
        """Drop ``(ts, seq)`` of ``key`` from the recent tier; whether it was there."""
        entries = self._recent.get(key)
        if not entries:
            return False
        first = entries[0]
        if first[0] == ts and first[1] == seq:  # expiry goes in time order: usually the head
            del entries[0]
        else:
            for i, e in enumerate(entries):
                if e[1] == seq and e[0] == ts:
                    del entries[i]
                    break
            else:
                return False
        if not entries:
            del self._recent[key]
        self._recent_n -= 1
        return True

    def remove_entries(self, entries: list[tuple[int, int, Any]]) -> None:
        """Delete ``(ts, seq, key)`` entries: recent ones in memory, the others by point tombstones."""
        counts = self._key_counts()
        if self._recent:
            take = self._take_recent
            stored = [e for e in entries if not take(e[2], e[0], e[1])]
        else:
            stored = entries
        _count_down(counts, [e[2] for e in entries])
        if not stored:
            return
        keys = [e[2] for e in stored]
        key_bytes = self._kc.key_bytes_batch(keys)
        self._store.delete_many(
            [kb + encode_ts_seq(ts, seq) for kb, (ts, seq, _) in zip(key_bytes, stored, strict=True)]
        )
        _count_down(self._stored_counts(), keys)

    # -- reads ----------------------------------------------------------------------------------
    def range(self, lower: int, upper: int) -> list[tuple[int, Any]]:
        """Entries with ``lower <= ts <= upper``: RocksDB read with one seek, if it holds any of the key."""
        if lower > upper:
            return []
        kc = self._kc
        key = kc.key
        loads = self._loads
        recent = self._recent.get(key)
        if recent:
            recent = [e for e in recent if lower <= e[0] <= upper]
        if not self._stored_counts().get(key):
            if not recent:
                return []
            self.entries_scanned += len(recent)
            return [(ts, loads(d)) for ts, _, d in recent]
        kb = kc.key_bytes
        hi = kb + encode_ts(upper + 1) if upper < MAX_TIMESTAMP else prefix_upper_bound(kb)
        return self._merged(list(self._store.iter_range(kb + encode_ts(lower), hi)), len(kb), recent)

    def _merged(
        self, stored: list[tuple[bytes, bytes]], n: int, recent: list[tuple[int, int, bytes]] | None
    ) -> list[tuple[int, Any]]:
        """``(ts, value)`` of RocksDB entries (keys ``kb + ts + seq``, ``n == len(kb)``) and recent ones.

        In ``(ts, seq)`` order, as a RocksDB-only read would return them.
        """
        loads = self._loads
        self.entries_scanned += len(stored) + (len(recent) if recent else 0)
        if not recent:
            return [(decode_ts(k, n), loads(v)) for k, v in stored]
        rows = [(decode_ts(k, n), decode_ts(k, n + 8) + _SEQ_BIAS, v) for k, v in stored]
        rows += recent
        rows.sort()  # (ts, seq) is unique: values are never compared
        return [(ts, loads(d)) for ts, _, d in rows]

    def scan_prefix(self) -> list[tuple[int, Any]]:
        """Every entry of the key (the naive probe the range read replaces)."""
        kb = self._kc.key_bytes
        return self._merged(list(self._store.iter_prefix(kb)), len(kb), self._recent.get(self._kc.key))

    def is_empty(self) -> bool:
        """Whether the current key has no entries."""
        return not self._key_counts().get(self._kc.key)

    def count(self) -> int:
        """Entries of every key (a full count: for tests and small states)."""
        return self._store.count_range(b"", None) + self._recent_n

    def stats(self) -> dict[str, Any]:
        """The column family's read/write figures, entries scanned, recent entries and spills."""
        return {
            **self._store.stats(),
            "entries_scanned": self.entries_scanned,
            "recent_entries": self._recent_n,
            "spills": self.spills,
        }

    # -- the expiry index, snapshots, restore ----------------------------------------------------
    def _stored_entries(self) -> list[tuple[int, int, Any]]:
        """``(ts, seq, key)`` of every RocksDB entry, decoded from the stored keys (one scan)."""
        out = []
        append = out.append
        last_kb = b""
        key: Any = None
        for k, _ in self._store.iter_range(b"", None):
            kb = k[:-16]
            if kb != last_kb:
                key, _off = decode_key(k, 2)
                last_kb = kb
            n = len(kb)
            append((decode_ts(k, n), decode_ts(k, n + 8) + _SEQ_BIAS, key))
        return out

    def index_entries(self) -> list[tuple[int, int, Any]]:
        """``(ts, seq, key)`` of every entry on both tiers."""
        out = self._stored_entries()
        out += [(ts, seq, key) for key, entries in self._recent.items() for ts, seq, _ in entries]
        return out

    def snapshot(self) -> list[list[Any]]:
        """``[[key, ts, seq, value], ...]`` (canonical rows) of both tiers."""
        rows = []
        loads = self._loads
        for k, v in self._store.iter_range(b"", None):
            key, off = decode_key(k, 2)
            rows.append([key, decode_ts(k, off), decode_ts(k, off + 8) + _SEQ_BIAS, loads(v)])
        for key, entries in self._recent.items():
            rows += [[key, ts, seq, loads(d)] for ts, seq, d in entries]
        return rows

    def restore(self, rows: list[list[Any]]) -> None:
        """Load canonical rows (of either backend) into RocksDB, keeping their sequence numbers.

        Callers may hold ``(ts, seq)`` of buffered entries (the interval join's expiry index).
        """
        self.spill()
        bytes_for = self._kc.bytes_for
        dumps = self._dumps
        put = self._store.put
        for key, ts, seq, value in rows:
            put(bytes_for(key) + encode_ts(ts) + encode_seq(seq), dumps(value))
        if rows:
            self._backend.advance_seq(max(r[2] for r in rows))
        self._counts = self._stored = None  # rebuilt from the stored keys when next needed
