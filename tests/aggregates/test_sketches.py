"""Stable hashing, HyperLogLogSketch and BloomFilter: accuracy, merging, bytes, stability."""

from __future__ import annotations

import json
import math
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

from streamcore.aggregates.hashing import stable_hash64, stable_hash64_many
from streamcore.aggregates.sketches import BloomFilter, CorruptSketchError, HyperLogLogSketch
from streamcore.errors import ConfigurationError, KeyEncodingError, SerializationError

REPO = Path(__file__).resolve().parents[2]

scalars = st.one_of(
    st.integers(min_value=-(2**63), max_value=2**63 - 1),
    st.text(max_size=40),
    st.binary(max_size=40),
    st.floats(allow_nan=False),
    st.booleans(),
    st.none(),
)
keys = st.one_of(scalars, st.tuples(scalars, scalars), st.text(min_size=200, max_size=400))

# Pinned outputs: sketches are persisted in state and checkpoints, so the hash must never change.
GOLDEN = {
    0: 0xE9E0033E3BADAF36,
    -1: 0x6D76366A59255279,
    2**63 - 1: 0x2F754D880A5068FC,
    "a": 0xEBEA6E876CDD24BD,
    "": 0xE220A8397B1DCDAF,
    "user-42": 0x70F25CBA97578ADE,
    b"a": 0x459D34995B1769C2,
    None: 0xD15D2576CAB05A1A,
    2.5: 0x47B37A8E76F0B100,
    ("a", 1): 0x88BA91EA926AB5DD,
}


# --- hashing -------------------------------------------------------------------------------


def test_hash_matches_pinned_values() -> None:
    assert {k: stable_hash64(k) for k in GOLDEN} == GOLDEN
    assert stable_hash64_many(list(GOLDEN)).tolist() == list(GOLDEN.values())


def test_hash_is_stable_across_processes() -> None:
    items = [*range(-5, 5), "a", "user-42", "é" * 50, b"\x00", None, 2.5, ("k", 3), "x" * 1000]
    script = (
        "import json, sys\n"
        "from streamcore.aggregates.hashing import stable_hash64, stable_hash64_many\n"
        f"items = {items!r}\n"
        "print(json.dumps([[stable_hash64(i) for i in items], stable_hash64_many(items).tolist()]))\n"
    )
    env = {**os.environ, "PYTHONPATH": str(REPO), "PYTHONHASHSEED": "12345"}
    out = subprocess.run([sys.executable, "-c", script], env=env, capture_output=True, check=True, text=True)
    single, batch = json.loads(out.stdout)
    expected = [stable_hash64(i) for i in items]
    assert single == expected
    assert batch == expected


@given(st.lists(keys, max_size=30))
def test_batch_hash_equals_single_hash(items: list) -> None:
    assert stable_hash64_many(items).tolist() == [stable_hash64(i) for i in items]


@given(st.lists(st.integers(min_value=-(2**63), max_value=2**63 - 1), max_size=50))
def test_int_fast_path_and_numpy_arrays_agree(items: list[int]) -> None:
    expected = [stable_hash64(i) for i in items]
    assert stable_hash64_many(items).tolist() == expected
    assert stable_hash64_many(np.array(items, dtype=np.int64)).tolist() == expected


def test_equal_keys_hash_equally_and_distinct_kinds_do_not() -> None:
    assert stable_hash64(1) == stable_hash64(1.0) == stable_hash64(True) == stable_hash64(np.int32(1))
    assert stable_hash64("a") != stable_hash64(b"a")
    assert stable_hash64("a") != stable_hash64(("a",))
    assert stable_hash64("a") != stable_hash64("a\x00")  # zero padding must not collide
    assert stable_hash64_many([True, 1, 2.0]).tolist() == [stable_hash64(1)] * 2 + [stable_hash64(2)]


def test_long_and_short_items_in_one_batch() -> None:
    batches = (["x" * 300, "a", "y" * 1000, ""], [b"x" * 300, b"", b"k"], ["a" * 257, ("t", "b" * 300), 2.5])
    for batch in batches:
        assert stable_hash64_many(batch).tolist() == [stable_hash64(i) for i in batch]
    many = [f"item-{i}" for i in range(70_000)]  # more rows than one vectorised chunk
    assert stable_hash64_many(many)[[0, 65_536, 69_999]].tolist() == [
        stable_hash64(many[0]),
        stable_hash64(many[65_536]),
        stable_hash64(many[69_999]),
    ]


def test_no_collisions_among_a_million_strs() -> None:
    hashes = np.sort(stable_hash64_many([f"user-{i}" for i in range(1_000_000)]))
    assert np.all(hashes[1:] != hashes[:-1])


def test_unhashable_values_raise_key_encoding_error() -> None:
    with pytest.raises(KeyEncodingError):
        stable_hash64([1, 2])
    with pytest.raises(KeyEncodingError):
        stable_hash64_many([1, 2**70])
    with pytest.raises(KeyEncodingError):
        stable_hash64_many([float("nan")])


# --- HyperLogLog ---------------------------------------------------------------------------


@pytest.mark.parametrize("precision", [10, 12, 14])
def test_hll_error_for_a_million_distinct_within_three_standard_errors(precision: int) -> None:
    sketch = HyperLogLogSketch(precision)
    sketch.add_many(np.arange(1_000_000, dtype=np.int64))
    sketch.add_many(range(500_000))  # duplicates change nothing
    standard_error = 1.04 / math.sqrt(2**precision)
    assert abs(sketch.count() / 1_000_000 - 1) < 3 * standard_error


def test_hll_error_for_a_million_distinct_strs() -> None:
    sketch = HyperLogLogSketch(14)
    sketch.add_many([f"session-{i}" for i in range(1_000_000)])
    assert abs(sketch.count() / 1_000_000 - 1) < 3 * 1.04 / 128


@pytest.mark.parametrize("n", [0, 1, 2, 10, 100, 1000, 5000, 20_000, 40_000, 80_000])
def test_hll_small_and_transition_cardinalities(n: int) -> None:
    sketch = HyperLogLogSketch(12)
    sketch.add_many([f"k{i}" for i in range(n)])
    assert abs(sketch.count() - n) <= max(0.5, 3 * 1.04 / 64 * n)
    if n <= 100:
        assert len(sketch) == n


@given(st.lists(keys, max_size=60), st.integers(min_value=0, max_value=60))
def test_hll_single_adds_batch_adds_and_merge_agree(items: list, cut: int) -> None:
    one_by_one = HyperLogLogSketch(8)
    for item in items:
        one_by_one.add(item)
    batched = HyperLogLogSketch(8)
    batched.add_many(items)
    left, right = HyperLogLogSketch(8), HyperLogLogSketch(8)
    left.add_many(items[:cut])
    right.add_many(items[cut:])
    assert one_by_one == batched == left.merge(right)
    assert HyperLogLogSketch.from_bytes(batched.to_bytes()) == batched


def test_hll_bytes_are_sparse_when_small_and_dense_when_full() -> None:
    small = HyperLogLogSketch(14)
    small.add_many(range(100))
    assert len(small.to_bytes()) < 600
    full = HyperLogLogSketch(14)
    full.add_many(range(200_000))
    assert len(full.to_bytes()) == 2**14 + 11
    for sketch in (small, full, HyperLogLogSketch(4)):
        restored = HyperLogLogSketch.from_bytes(sketch.to_bytes())
        assert restored == sketch
        assert restored.count() == sketch.count()


def test_hll_merge_requires_same_precision() -> None:
    with pytest.raises(ConfigurationError, match="precision 12 and 14"):
        HyperLogLogSketch(12).merge(HyperLogLogSketch(14))
    with pytest.raises(TypeError):
        HyperLogLogSketch(12).merge(BloomFilter(10))  # type: ignore[arg-type]


@pytest.mark.parametrize("precision", [3, 19, 14.0, "14"])
def test_hll_rejects_bad_precision(precision: object) -> None:
    with pytest.raises(ConfigurationError, match="precision"):
        HyperLogLogSketch(precision)  # type: ignore[arg-type]


def _flip_each_byte(data: bytes) -> list[bytes]:
    return [data[:i] + bytes([data[i] ^ 0x41]) + data[i + 1 :] for i in range(len(data))]


@pytest.mark.parametrize("sketch_type", [HyperLogLogSketch, BloomFilter])
def test_corrupt_bytes_raise_a_clear_error(sketch_type: type) -> None:
    sketch = HyperLogLogSketch(4) if sketch_type is HyperLogLogSketch else BloomFilter(20, 0.1)
    sketch.add_many(["a", "b", "c"])
    good = sketch.to_bytes()
    bad = [b"", good[:5], good[:-1], good + b"\x00", b"XXXX" + good[4:], *_flip_each_byte(good)]
    for data in bad:
        with pytest.raises(CorruptSketchError, match="invalid"):
            sketch_type.from_bytes(data)
    with pytest.raises(CorruptSketchError, match="expects bytes"):
        sketch_type.from_bytes("not bytes")
    assert issubclass(CorruptSketchError, SerializationError)
    assert issubclass(CorruptSketchError, ValueError)


# --- Bloom filter --------------------------------------------------------------------------


def test_bloom_sizing_follows_the_formulas() -> None:
    bloom = BloomFilter(1_000_000, 0.001)
    # Sized for 90% of the configured rate, so the measured rate stays within it.
    expected_bits = -1_000_000 * math.log(0.001 * 0.9) / math.log(2) ** 2
    assert expected_bits <= bloom.num_bits < expected_bits * 1.001
    assert bloom.num_hashes == 10


def test_bloom_false_positive_rate_at_capacity() -> None:
    bloom = BloomFilter(1_000_000, 0.001)
    added = np.arange(1_000_000, dtype=np.int64)
    assert bloom.add_many(added) >= 999_000
    assert bloom.contains_many(added).all()  # no false negatives
    others = np.arange(10**9, 10**9 + 1_000_000, dtype=np.int64)
    rate = bloom.contains_many(others).mean()
    assert rate <= 0.001  # within the configured rate at capacity (the requirement)
    assert abs(bloom.count() / 1_000_000 - 1) < 0.01


def test_bloom_false_positive_rate_for_strs() -> None:
    bloom = BloomFilter(50_000, 0.01)
    bloom.add_many([f"in-{i}" for i in range(50_000)])
    rate = bloom.contains_many([f"out-{i}" for i in range(100_000)]).mean()
    assert rate <= 0.01


@given(st.lists(st.one_of(st.integers(0, 60), st.text(max_size=3)), max_size=80))
def test_bloom_batch_count_equals_sequential_first_sightings(items: list) -> None:
    # A tiny filter makes false positives common, which is what this must get right.
    sequential = BloomFilter(8, 0.2)
    expected = 0
    for item in items:
        fresh = not sequential.contains(item)
        assert sequential.add(item) == fresh
        expected += fresh
    batched = BloomFilter(8, 0.2)
    assert batched.add_many(items) == expected
    assert batched == sequential
    assert all(batched.contains(i) for i in items)
    assert batched.contains_many(items).all()


@given(st.lists(keys, max_size=40), st.integers(min_value=0, max_value=40))
def test_bloom_merge_equals_filter_of_concatenation(items: list, cut: int) -> None:
    whole = BloomFilter(100, 0.05)
    whole.add_many(items)
    left, right = BloomFilter(100, 0.05), BloomFilter(100, 0.05)
    left.add_many(items[:cut])
    right.add_many(items[cut:])
    assert left.merge(right) == whole
    assert BloomFilter.from_bytes(whole.to_bytes()) == whole


def test_bloom_bytes_sparse_and_dense_round_trip() -> None:
    sparse = BloomFilter(100_000, 0.01)
    sparse.add_many(range(10))
    assert len(sparse.to_bytes()) < 1000
    dense = BloomFilter(1000, 0.01)
    dense.add_many(range(1000))
    assert len(dense.to_bytes()) > dense.num_bits // 8
    for bloom in (sparse, dense, BloomFilter(1)):
        restored = BloomFilter.from_bytes(bloom.to_bytes())
        assert restored == bloom
        assert restored.copy() == bloom


def test_bloom_rejects_bad_parameters_and_mismatched_merges() -> None:
    for capacity, rate in [(0, 0.01), (10, 0.0), (10, 1.0), (1.5, 0.1), (10**12, 1e-9)]:
        with pytest.raises(ConfigurationError):
            BloomFilter(capacity, rate)  # type: ignore[arg-type]
    with pytest.raises(ConfigurationError, match="different shapes"):
        BloomFilter(100, 0.01).merge(BloomFilter(200, 0.01))


def test_sketches_copy_independently_and_are_unhashable() -> None:
    hll = HyperLogLogSketch(6)
    clone = hll.copy()
    clone.add("x")
    assert clone != hll
    bloom = BloomFilter(10)
    other = bloom.copy()
    other.add("x")
    assert other != bloom and "x" in other and "x" not in bloom
    with pytest.raises(TypeError):
        hash(hll)
    with pytest.raises(ValueError):
        hll.registers[0] = 1
