"""Mergeable, numpy-backed sketches: HyperLogLog (cardinality) and a Bloom filter (membership).

Both sketches are built for the window operator: they are updated a batch at a time
(``add_many`` hashes the whole batch with numpy and updates registers or bits with
one vectorised operation), merged when windows merge, and stored in keyed state as
compact bytes (``to_bytes``/``from_bytes``: versioned, checksummed, validated).

Hashing is stable across processes, runs and machines (never Python's salted
``hash()``), so a sketch written by one process means the same in another. See
:mod:`streamcore.aggregates.hashing` for the exact function.
"""

from __future__ import annotations

import math
import struct
import zlib
from collections.abc import Iterable
from typing import Any

import numpy as np

from streamcore.aggregates.hashing import fmix64, fmix64_np, stable_hash64, stable_hash64_many
from streamcore.errors import ConfigurationError, SerializationError

__all__ = ["BloomFilter", "CorruptSketchError", "HyperLogLogSketch"]

_U64 = np.uint64
_POPCOUNT = np.array([bin(i).count("1") for i in range(256)], dtype=np.uint8)
_crc32 = zlib.crc32

# Bytes layouts (little-endian), each followed by a CRC-32 of everything before it:
#   HLL:   b"SHLL" version:u8 precision:u8 encoding:u8 payload
#   Bloom: b"SBLM" version:u8 encoding:u8 num_hashes:u8 num_bits:u64 capacity:u64 error_rate:f64 payload
# Dense payloads are the raw registers / bits; sparse payloads list the non-zero ones.
_HLL_HEAD = struct.Struct("<4sBBB")
_BLOOM_HEAD = struct.Struct("<4sBBBQQd")
_VERSION = 1
_DENSE, _SPARSE = 0, 1


class CorruptSketchError(SerializationError, ValueError):
    """Raised when bytes given to ``from_bytes`` are not a valid sketch of the expected kind."""


def _corrupt(kind: str, problem: str) -> CorruptSketchError:
    msg = f"invalid {kind} bytes: {problem}; pass bytes written by {kind}.to_bytes()"
    return CorruptSketchError(msg)


def _checked_body(data: Any, kind: str, magic: bytes, head: struct.Struct) -> tuple[tuple, memoryview]:
    """Validate type, length, magic, version and checksum; return the header fields and the payload."""
    if not isinstance(data, (bytes, bytearray, memoryview)):
        msg = f"{kind}.from_bytes expects bytes, got {type(data).__name__}"
        raise CorruptSketchError(msg)
    view = memoryview(data).cast("B")
    if len(view) < head.size + 4:
        raise _corrupt(kind, f"{len(view)} bytes is shorter than the {head.size + 4}-byte minimum")
    fields = head.unpack_from(view)
    if fields[0] != magic:
        raise _corrupt(kind, f"magic {bytes(fields[0])!r} is not {magic!r}")
    if fields[1] != _VERSION:
        raise _corrupt(kind, f"format version {fields[1]} is not supported (expected {_VERSION})")
    (crc,) = struct.unpack_from("<I", view, len(view) - 4)
    if _crc32(view[:-4]) != crc:
        raise _corrupt(kind, "checksum mismatch (truncated or corrupted)")
    return fields, view[head.size : len(view) - 4]


def _shared(init: int | bytes | memoryview) -> tuple[bytearray, np.ndarray]:
    """A bytearray and a numpy view of the same memory: fast single-item updates and vector ones."""
    buf = bytearray(init)
    return buf, np.frombuffer(buf, dtype=np.uint8)


def _bit_length_u64(w: np.ndarray) -> np.ndarray:
    """Exact ``int.bit_length`` of each uint64 (float64 holds 32-bit halves exactly)."""
    e_hi = np.frexp((w >> _U64(32)).astype(np.float64))[1]
    e_lo = np.frexp((w & _U64(0xFFFFFFFF)).astype(np.float64))[1]
    return np.where(e_hi > 0, e_hi + 32, e_lo)


def _sigma(x: float) -> float:
    """Ertl's sigma series, the share of zero registers in the improved HLL estimator."""
    if x == 1.0:
        return math.inf
    y, z = 1.0, x
    while True:
        x *= x
        prev = z
        z += x * y
        y += y
        if z == prev:
            return z


def _tau(x: float) -> float:
    """Ertl's tau series, the share of saturated registers in the improved HLL estimator."""
    if x in (0.0, 1.0):
        return 0.0
    y, z = 1.0, 1.0 - x
    while True:
        x = math.sqrt(x)
        prev = z
        y *= 0.5
        z -= (1.0 - x) ** 2 * y
        if z == prev:
            return z / 3.0


class HyperLogLogSketch:
    """Estimates the number of distinct items in a stream with ``2**precision`` one-byte registers.

    Each item's 64-bit stable hash picks a register (its top ``precision`` bits) and a
    rank (leading zeros of the remaining bits, plus one); a register keeps the largest
    rank it saw. The estimate uses Ertl's improved estimator ("New cardinality estimation
    algorithms for HyperLogLog sketches", 2017), which is accurate from zero to billions
    without empirical bias tables: for small counts it behaves like linear counting.
    The relative standard error is about ``1.04 / sqrt(2**precision)`` (0.81 % at 14).

    Sketches of the same precision merge exactly: the merge of two sketches equals the
    sketch of the concatenated streams. Equal values (``1``, ``1.0``, ``True``) count once.

    >>> s = HyperLogLogSketch(precision=12)
    >>> s.add_many(range(10_000))
    >>> abs(s.count() - 10_000) < 300
    True
    >>> HyperLogLogSketch.from_bytes(s.to_bytes()) == s
    True
    """

    __slots__ = ("_buf", "_precision", "_registers")

    MIN_PRECISION = 4
    MAX_PRECISION = 18

    def __init__(self, precision: int = 14) -> None:
        if type(precision) is not int or not self.MIN_PRECISION <= precision <= self.MAX_PRECISION:
            msg = (
                f"HyperLogLog precision must be an int in [{self.MIN_PRECISION}, {self.MAX_PRECISION}], "
                f"got {precision!r}; 14 gives 0.81 % standard error in 16 KiB"
            )
            raise ConfigurationError(msg)
        self._precision = precision
        self._buf, self._registers = _shared(1 << precision)

    @property
    def precision(self) -> int:
        """Number of index bits: the sketch has ``2**precision`` registers."""
        return self._precision

    @property
    def registers(self) -> np.ndarray:
        """A read-only view of the registers (uint8)."""
        view = self._registers.view()
        view.flags.writeable = False
        return view

    def add(self, item: Any) -> None:
        """Add one item (int, str, bytes, float, bool, None or a tuple of these)."""
        q = 64 - self._precision
        h = stable_hash64(item)
        rank = q + 1 - (h & ((1 << q) - 1)).bit_length()
        idx = h >> q
        if rank > self._buf[idx]:
            self._buf[idx] = rank

    def add_many(self, items: Iterable[Any] | np.ndarray) -> None:
        """Add a batch of items with vectorised hashing and one ``np.maximum.at`` update."""
        hashes = stable_hash64_many(items)
        q = 64 - self._precision
        idx = (hashes >> _U64(q)).astype(np.intp)
        rank = (q + 1 - _bit_length_u64(hashes & _U64((1 << q) - 1))).astype(np.uint8)
        np.maximum.at(self._registers, idx, rank)

    def merge(self, other: HyperLogLogSketch) -> HyperLogLogSketch:
        """Fold ``other`` into this sketch (register-wise maximum); returns ``self``."""
        if not isinstance(other, HyperLogLogSketch):
            msg = f"can only merge a HyperLogLogSketch with another, got {type(other).__name__}"
            raise TypeError(msg)
        if other._precision != self._precision:
            msg = (
                f"cannot merge HyperLogLog sketches of precision {self._precision} and {other._precision}; "
                "use the same precision for every sketch of one aggregation"
            )
            raise ConfigurationError(msg)
        np.maximum(self._registers, other._registers, out=self._registers)
        return self

    def count(self) -> float:
        """Estimated number of distinct items added (0.0 for an empty sketch)."""
        m = 1 << self._precision
        q = 64 - self._precision
        hist = np.bincount(self._registers, minlength=q + 2).tolist()
        z = m * _tau(1.0 - hist[q + 1] / m)
        for k in range(q, 0, -1):
            z = 0.5 * (z + hist[k])
        z += m * _sigma(hist[0] / m)
        return 0.0 if z == math.inf else m * m / (2.0 * math.log(2.0)) / z

    def __len__(self) -> int:
        return round(self.count())

    def copy(self) -> HyperLogLogSketch:
        """An independent copy."""
        clone = HyperLogLogSketch.__new__(HyperLogLogSketch)
        clone._precision = self._precision
        clone._buf, clone._registers = _shared(self._buf)
        return clone

    def to_bytes(self) -> bytes:
        """Compact bytes: sparse (index, rank) pairs while few registers are set, else raw registers."""
        nonzero = np.flatnonzero(self._registers)
        if 5 * len(nonzero) + 4 < len(self._registers):
            payload = (
                struct.pack("<I", len(nonzero))
                + nonzero.astype("<u4").tobytes()
                + self._registers[nonzero].tobytes()
            )
            encoding = _SPARSE
        else:
            payload, encoding = self._registers.tobytes(), _DENSE
        body = _HLL_HEAD.pack(b"SHLL", _VERSION, self._precision, encoding) + payload
        return body + struct.pack("<I", _crc32(body))

    @classmethod
    def from_bytes(cls, data: bytes) -> HyperLogLogSketch:
        """Rebuild a sketch from :meth:`to_bytes` output.

        Raises:
            CorruptSketchError: the bytes are not a valid HyperLogLog sketch.
        """
        kind = cls.__name__
        (_, _, precision, encoding), payload = _checked_body(data, kind, b"SHLL", _HLL_HEAD)
        if not cls.MIN_PRECISION <= precision <= cls.MAX_PRECISION:
            raise _corrupt(kind, f"precision {precision} is out of range")
        m = 1 << precision
        if encoding == _DENSE:
            if len(payload) != m:
                raise _corrupt(kind, f"dense payload has {len(payload)} bytes, expected {m}")
            registers = np.frombuffer(payload, dtype=np.uint8).copy()
        elif encoding == _SPARSE:
            (n,) = struct.unpack_from("<I", payload) if len(payload) >= 4 else (-1,)
            if n < 0 or len(payload) != 4 + 5 * n:
                raise _corrupt(kind, "sparse payload length does not match its entry count")
            idx = np.frombuffer(payload, dtype="<u4", count=n, offset=4).astype(np.intp)
            if n and (idx[-1] >= m or np.any(np.diff(idx) <= 0)):
                raise _corrupt(kind, "sparse register indexes are not increasing and in range")
            registers = np.zeros(m, dtype=np.uint8)
            registers[idx] = np.frombuffer(payload, dtype=np.uint8, count=n, offset=4 + 4 * n)
        else:
            raise _corrupt(kind, f"unknown encoding {encoding}")
        if registers.size and int(registers.max()) > 64 - precision + 1:
            raise _corrupt(kind, "a register holds a rank larger than the hash allows")
        sketch = cls.__new__(cls)
        sketch._precision = precision
        sketch._buf, sketch._registers = _shared(registers.tobytes())
        return sketch

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, HyperLogLogSketch):
            return NotImplemented
        return self._precision == other._precision and np.array_equal(self._registers, other._registers)

    __hash__ = None  # type: ignore[assignment]  # mutable

    def __repr__(self) -> str:
        return f"HyperLogLogSketch(precision={self._precision}, count≈{self.count():.0f})"


def _is_prime(n: int) -> bool:
    """Deterministic Miller-Rabin for n < 3.3e24 (far beyond any Bloom filter size)."""
    if n < 2:
        return False
    small = (2, 3, 5, 7, 11, 13, 17, 19, 23, 29, 31, 37)
    if n in small:
        return True
    if any(n % p == 0 for p in small):
        return False
    d, s = n - 1, 0
    while d % 2 == 0:
        d, s = d // 2, s + 1
    for a in small:
        x = pow(a, d, n)
        if x in (1, n - 1):
            continue
        for _ in range(s - 1):
            x = x * x % n
            if x == n - 1:
                break
        else:
            return False
    return True


_STEP_SEED = 0x5851F42D4C957F2D  # derives the second (step) hash of double hashing from the first
_CHUNK = 1 << 16  # items per vectorised Bloom step: bounds temporary memory to a few MiB


_BLOOM_MARGIN = 0.9


class BloomFilter:
    """A set membership filter with no false negatives and a bounded false-positive rate.

    Sized from the expected number of distinct items and the acceptable false-positive
    rate: ``m = -capacity * ln(error_rate) / ln(2)**2`` bits (rounded up to a prime, so
    that double hashing ``(h1 + i*h2) mod m`` always yields ``k`` distinct positions) and
    ``k = round(m / capacity * ln 2)`` positions per item. Until ``capacity`` distinct
    items are added, ``contains`` of an item never added is true with probability at
    most about ``error_rate``; beyond it the rate grows.

    Filters of the same capacity and error rate merge exactly (bitwise or).
    :meth:`count` estimates the distinct items added from the number of set bits.

    >>> f = BloomFilter(capacity=1000, error_rate=0.01)
    >>> f.add_many(["a", "b", "c"])
    3
    >>> f.contains("a"), f.contains("zzz")
    (True, False)
    >>> BloomFilter.from_bytes(f.to_bytes()) == f
    True
    """

    __slots__ = ("_bits", "_buf", "_capacity", "_error_rate", "_num_bits", "_num_hashes")

    MAX_BITS = 1 << 36

    def __init__(self, capacity: int, error_rate: float = 0.01) -> None:
        self._num_bits, self._num_hashes = self._shape(capacity, error_rate)
        self._capacity = capacity
        self._error_rate = float(error_rate)
        self._buf, self._bits = _shared((self._num_bits + 7) // 8)

    @classmethod
    def _shape(cls, capacity: int, error_rate: float) -> tuple[int, int]:
        """Validated ``(num_bits, num_hashes)`` for a capacity and error rate."""
        if type(capacity) is not int or capacity < 1:
            msg = f"Bloom filter capacity must be a positive int (expected distinct items), got {capacity!r}"
            raise ConfigurationError(msg)
        if not isinstance(error_rate, float | int) or not 0.0 < error_rate < 1.0:
            msg = f"Bloom filter error_rate must be in (0, 1), e.g. 0.01, got {error_rate!r}"
            raise ConfigurationError(msg)
        # Sized for 90% of the configured rate (1.5% more bits at 0.001), so the rate measured
        # at capacity stays within the configured one despite sampling noise and rounding k.
        bits = math.ceil(-capacity * math.log(error_rate * _BLOOM_MARGIN) / math.log(2) ** 2)
        if bits > cls.MAX_BITS:
            msg = (
                f"a Bloom filter for {capacity} items at error rate {error_rate} needs {bits} bits, "
                f"over the {cls.MAX_BITS}-bit limit; lower the capacity or raise the error rate"
            )
            raise ConfigurationError(msg)
        bits = max(bits, 11)
        while not _is_prime(bits):
            bits += 1
        return bits, max(1, round(bits / capacity * math.log(2)))

    @property
    def capacity(self) -> int:
        """Distinct items the filter is sized for."""
        return self._capacity

    @property
    def error_rate(self) -> float:
        """False-positive rate expected at capacity."""
        return self._error_rate

    @property
    def num_bits(self) -> int:
        """Size ``m`` of the bit array."""
        return self._num_bits

    @property
    def num_hashes(self) -> int:
        """Positions ``k`` set per item."""
        return self._num_hashes

    def _positions_one(self, item: Any) -> list[int]:
        m = self._num_bits
        h = stable_hash64(item)
        pos, step = h % m, fmix64(h ^ _STEP_SEED) % (m - 1) + 1
        out = []
        for _ in range(self._num_hashes):
            out.append(pos)
            pos = pos + step - m if pos + step >= m else pos + step
        return out

    def _positions(self, hashes: np.ndarray) -> np.ndarray:
        """Bit positions ``(h1 + i*h2) mod m`` of hashed items: int64 array of shape (items, num_hashes)."""
        m = _U64(self._num_bits)
        step = fmix64_np(hashes ^ _U64(_STEP_SEED)) % (m - _U64(1)) + _U64(1)
        pos = step[:, None] * np.arange(self._num_hashes, dtype=np.uint64)
        pos += (hashes % m)[:, None]
        pos %= m
        return pos.view(np.int64)

    def add(self, item: Any) -> bool:
        """Add one item; returns True when it set a new bit (it was not already, probably, present)."""
        bits = self._buf
        changed = False
        for p in self._positions_one(item):
            mask = 1 << (p & 7)
            if not bits[p >> 3] & mask:
                bits[p >> 3] |= mask
                changed = True
        return changed

    def add_many(self, items: Iterable[Any] | np.ndarray) -> int:
        """Add a batch; returns how many items set a new bit, exactly as if added one by one in order.

        An item sets a new bit iff ``contains(item)`` was false just before it was added,
        counting the items earlier in the same batch.
        """
        hashes = stable_hash64_many(items)
        return sum(self._add_hashes(hashes[i : i + _CHUNK]) for i in range(0, len(hashes), _CHUNK))

    def _add_hashes(self, hashes: np.ndarray) -> int:
        pos = self._positions(hashes)
        byte = pos >> 3
        mask = np.left_shift(1, pos & 7).astype(np.uint8)
        flat = np.flatnonzero((self._bits[byte] & mask) == 0)
        if flat.size == 0:
            return 0
        # A bit unset before the batch is set by the first item (in batch order) that has it;
        # an item sets a new bit iff it is that first item for at least one of its positions.
        # Sorting ``position * _CHUNK + item`` puts each position's first item first in its run.
        owner = flat // self._num_hashes
        keys = pos.ravel()[flat] * _CHUNK + owner
        keys.sort()
        first = np.ones(keys.size, dtype=bool)
        first[1:] = (keys[1:] // _CHUNK) != (keys[:-1] // _CHUNK)
        changed = np.zeros(len(hashes), dtype=bool)
        changed[keys[first] % _CHUNK] = True
        np.bitwise_or.at(self._bits, byte.ravel()[flat], mask.ravel()[flat])
        return int(np.count_nonzero(changed))

    def contains(self, item: Any) -> bool:
        """True if the item was probably added; False if it certainly was not."""
        bits = self._buf
        return all(bits[p >> 3] & (1 << (p & 7)) for p in self._positions_one(item))

    __contains__ = contains

    def contains_many(self, items: Iterable[Any] | np.ndarray) -> np.ndarray:
        """Vectorised :meth:`contains`: a bool array, one entry per item."""
        hashes = stable_hash64_many(items)
        out = np.empty(len(hashes), dtype=bool)
        for i in range(0, len(hashes), _CHUNK):
            pos = self._positions(hashes[i : i + _CHUNK])
            hit = (self._bits[pos >> 3] >> (pos & 7).astype(np.uint8)) & 1
            out[i : i + _CHUNK] = hit.all(axis=1)
        return out

    def merge(self, other: BloomFilter) -> BloomFilter:
        """Fold ``other`` into this filter (bitwise or); returns ``self``."""
        if not isinstance(other, BloomFilter):
            msg = f"can only merge a BloomFilter with another, got {type(other).__name__}"
            raise TypeError(msg)
        if (other._num_bits, other._num_hashes) != (self._num_bits, self._num_hashes):
            msg = (
                f"cannot merge Bloom filters of different shapes (m={self._num_bits}, k={self._num_hashes}"
                f" vs m={other._num_bits}, k={other._num_hashes}); use one capacity and error rate"
            )
            raise ConfigurationError(msg)
        np.bitwise_or(self._bits, other._bits, out=self._bits)
        return self

    def bits_set(self) -> int:
        """Number of bits set to one."""
        return int(_POPCOUNT[self._bits].sum(dtype=np.int64))

    def count(self) -> float:
        """Estimated distinct items added, from the share of set bits (Swamidass and Baldi)."""
        m, ones = self._num_bits, self.bits_set()
        return -m / self._num_hashes * math.log1p(-min(ones, m - 0.5) / m)

    def __len__(self) -> int:
        return round(self.count())

    def copy(self) -> BloomFilter:
        """An independent copy."""
        clone = BloomFilter.__new__(BloomFilter)
        for name in ("_capacity", "_error_rate", "_num_bits", "_num_hashes"):
            setattr(clone, name, getattr(self, name))
        clone._buf, clone._bits = _shared(self._buf)
        return clone

    def to_bytes(self) -> bytes:
        """Compact bytes: sparse set-bit positions while few bits are set, else the raw bit array."""
        ones = self.bits_set()
        if 8 * ones + 8 < len(self._bits):
            where = np.flatnonzero(np.unpackbits(self._bits, bitorder="little"))
            payload, encoding = struct.pack("<Q", ones) + where.astype("<u8").tobytes(), _SPARSE
        else:
            payload, encoding = self._bits.tobytes(), _DENSE
        head = _BLOOM_HEAD.pack(
            b"SBLM", _VERSION, encoding, self._num_hashes, self._num_bits, self._capacity, self._error_rate
        )
        body = head + payload
        return body + struct.pack("<I", _crc32(body))

    @classmethod
    def from_bytes(cls, data: bytes) -> BloomFilter:
        """Rebuild a filter from :meth:`to_bytes` output.

        Raises:
            CorruptSketchError: the bytes are not a valid Bloom filter.
        """
        kind = cls.__name__
        fields, payload = _checked_body(data, kind, b"SBLM", _BLOOM_HEAD)
        _, _, encoding, num_hashes, num_bits, capacity, error_rate = fields
        try:
            shape = cls._shape(capacity, error_rate)
        except ConfigurationError as exc:
            raise _corrupt(kind, f"bad parameters ({exc})") from exc
        if shape != (num_bits, num_hashes):
            raise _corrupt(kind, "bit count or hash count does not match capacity and error rate")
        nbytes = (num_bits + 7) // 8
        if encoding == _DENSE and len(payload) != nbytes:
            raise _corrupt(kind, f"dense payload has {len(payload)} bytes, expected {nbytes}")
        bloom = cls(capacity, error_rate)
        if encoding == _DENSE:
            bloom._buf, bloom._bits = _shared(payload)
            if num_bits % 8 and bloom._buf[-1] >> (num_bits % 8):
                raise _corrupt(kind, "padding bits past the end of the bit array are set")
        elif encoding == _SPARSE:
            (n,) = struct.unpack_from("<Q", payload) if len(payload) >= 8 else (-1,)
            if n < 0 or len(payload) != 8 + 8 * n:
                raise _corrupt(kind, "sparse payload length does not match its entry count")
            where = np.frombuffer(payload, dtype="<u8", count=n, offset=8).astype(np.int64)
            if n and (where[-1] >= num_bits or np.any(np.diff(where) <= 0)):
                raise _corrupt(kind, "sparse bit positions are not increasing and in range")
            np.bitwise_or.at(bloom._bits, where >> 3, np.left_shift(1, where & 7).astype(np.uint8))
        else:
            raise _corrupt(kind, f"unknown encoding {encoding}")
        return bloom

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, BloomFilter):
            return NotImplemented
        return (
            (self._capacity, self._error_rate, self._num_bits, self._num_hashes)
            == (other._capacity, other._error_rate, other._num_bits, other._num_hashes)
        ) and np.array_equal(self._bits, other._bits)

    __hash__ = None  # type: ignore[assignment]  # mutable

    def __repr__(self) -> str:
        return (
            f"BloomFilter(capacity={self._capacity}, error_rate={self._error_rate}, "
            f"bits={self._num_bits}, hashes={self._num_hashes})"
        )
