"""The RocksDB bytes layer: stores, batches with read-your-writes, scans, locking, checkpoints."""

from __future__ import annotations

import itertools
import os
import subprocess
import sys
import tempfile
from pathlib import Path

import pytest
import rocksdict
from hypothesis import given
from hypothesis import strategies as st

from streamcore.errors import (
    ConfigurationError,
    SerializationError,
    StateBackendError,
    StateDirectoryLockedError,
    StateError,
)
from streamcore.state.rocksdb import (
    RocksDBDatabase,
    RocksDBOptions,
    RocksDBStore,
    build_options,
    prefix_upper_bound,
)
from streamcore.state.rocksdb import store as store_module

REPO_ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture
def db(tmp_path: Path):
    database = RocksDBDatabase(tmp_path / "db")
    yield database
    database.close()


def _fill(store: RocksDBStore, keys: list[bytes]) -> None:
    for k in keys:
        store.put(k, b"v" + k)


# -- point operations ---------------------------------------------------------------------


def test_put_get_delete(db: RocksDBDatabase) -> None:
    s = db.column_family("op/value")
    assert s.get(b"k") is None
    s.put(b"k", b"v1")
    assert s.get(b"k") == b"v1"
    s.put(b"k", b"v2")
    assert s.get(b"k") == b"v2"
    s.delete(b"k")
    assert s.get(b"k") is None
    s.delete(b"never-there")
    s.put(b"", b"empty key")
    assert s.get(b"") == b"empty key"
    assert (s.reads, s.writes) == (5, 5)


def test_column_families_are_independent(db: RocksDBDatabase) -> None:
    a, b = db.column_family("a"), db.column_family("b")
    a.put(b"k", b"in a")
    assert b.get(b"k") is None
    assert db.column_family("a") is a


def test_non_bytes_keys_and_values_raise_serialization_error(db: RocksDBDatabase) -> None:
    s = db.column_family("s")
    for call in (
        lambda: s.get(1),
        lambda: s.put("k", b"v"),
        lambda: s.put(b"k", "v"),
        lambda: s.put(b"k", bytearray(b"v")),
        lambda: s.delete(1.5),
        lambda: s.delete_range("a", b"b"),
        lambda: s.iter_range(b"a", 5),
        lambda: s.iter_prefix("a"),
        lambda: s.count_range(None, b"b"),
    ):
        with pytest.raises(SerializationError):
            call()
    with db.batch():
        with pytest.raises(SerializationError):
            s.put(b"k", 1)
        with pytest.raises(SerializationError):
            s.get(bytearray(b"k"))
        assert s.get(b"k") is None


def test_delete_range_removes_half_open_range(db: RocksDBDatabase) -> None:
    s = db.column_family("s")
    _fill(s, [bytes([i]) for i in range(10)])
    s.delete_range(b"\x02", b"\x05")
    s.delete_range(b"\x08", b"\x07")  # inverted: no-op
    assert [k[0] for k, _ in s.iter_prefix(b"")] == [0, 1, 5, 6, 7, 8, 9]


# -- batches ------------------------------------------------------------------------------


def test_batch_reads_its_own_writes_and_merges_scans(db: RocksDBDatabase) -> None:
    s = db.column_family("s")
    _fill(s, [b"a1", b"a2", b"a3", b"b1", b"c1"])
    db.begin_batch()
    assert db.in_batch
    s.put(b"a2", b"new")
    s.put(b"a25", b"inserted")
    s.delete(b"a3")
    s.delete_range(b"b", b"c")
    s.put(b"b5", b"after range delete")
    assert s.get(b"a2") == b"new"
    assert s.get(b"a3") is None
    assert s.get(b"b1") is None
    assert s.get(b"b5") == b"after range delete"
    assert s.get(b"c1") == b"vc1"
    assert list(s.iter_range(b"a", b"c", hi_inclusive=True)) == [
        (b"a1", b"va1"),
        (b"a2", b"new"),
        (b"a25", b"inserted"),
        (b"b5", b"after range delete"),
    ]
    assert s.count_range(b"", None) == 5
    # Nothing reached RocksDB yet.
    assert s._cf.get(b"a2") == b"va2"
    db.commit_batch()
    assert not db.in_batch
    assert s._cf.get(b"a2") == b"new"
    assert list(s.iter_prefix(b"")) == [
        (b"a1", b"va1"),
        (b"a2", b"new"),
        (b"a25", b"inserted"),
        (b"b5", b"after range delete"),
        (b"c1", b"vc1"),
    ]


def test_delete_range_in_batch_deletes_earlier_batch_writes_but_not_later_ones(db: RocksDBDatabase) -> None:
    s = db.column_family("s")
    with db.batch():
        s.put(b"k1", b"x")
        s.delete_range(b"k", b"l")
        s.put(b"k2", b"y")
        assert list(s.iter_prefix(b"k")) == [(b"k2", b"y")]
    assert list(s.iter_prefix(b"k")) == [(b"k2", b"y")]


def test_abort_batch_discards_everything(db: RocksDBDatabase) -> None:
    a, b = db.column_family("a"), db.column_family("b")
    a.put(b"k", b"old")
    db.begin_batch()
    a.put(b"k", b"new")
    b.put(b"k", b"new")
    db.abort_batch()
    assert a.get(b"k") == b"old"
    assert b.get(b"k") is None


def test_batch_context_manager_commits_or_aborts(db: RocksDBDatabase) -> None:
    s = db.column_family("s")
    with db.batch():
        s.put(b"committed", b"1")
    with pytest.raises(RuntimeError), db.batch():
        s.put(b"aborted", b"1")
        raise RuntimeError("boom")
    assert s.get(b"committed") == b"1"
    assert s.get(b"aborted") is None
    assert not db.in_batch


def test_nested_batches_join_the_outer_one(db: RocksDBDatabase) -> None:
    s = db.column_family("s")
    db.begin_batch()
    db.begin_batch()
    s.put(b"k", b"v")
    db.commit_batch()
    assert db.in_batch
    assert s._cf.get(b"k") is None
    db.commit_batch()
    assert s._cf.get(b"k") == b"v"
    with pytest.raises(StateError):
        db.commit_batch()


def test_uncommitted_batch_is_lost_and_committed_batch_is_atomic(tmp_path: Path) -> None:
    path = tmp_path / "db"
    with RocksDBDatabase(path) as db:
        a, b = db.column_family("a"), db.column_family("b")
        with db.batch():
            a.put(b"k", b"a")
            b.put(b"k", b"b")
        db.begin_batch()
        a.put(b"lost", b"x")
        b.delete(b"k")
    with RocksDBDatabase(path) as db:
        assert db.column_family("a").get(b"k") == b"a"
        assert db.column_family("b").get(b"k") == b"b"
        assert db.column_family("a").get(b"lost") is None


def test_store_created_inside_a_batch_joins_it(db: RocksDBDatabase) -> None:
    with db.batch():
        s = db.column_family("late")
        s.put(b"k", b"v")
        assert s._cf.get(b"k") is None
        assert s.get(b"k") == b"v"
    assert s._cf.get(b"k") == b"v"


class _RecordingBatch:
    """A ``WriteBatch`` that records the keys written, in batch order."""

    written: list[list[bytes]] = []

    def __init__(self, raw_mode: bool) -> None:
        self.real = _REAL_WRITE_BATCH(raw_mode=raw_mode)
        self.keys: list[bytes] = []
        _RecordingBatch.written.append(self.keys)

    def put(self, key: bytes, value: bytes, cf: object) -> None:
        self.keys.append(key)
        self.real.put(key, value, cf)

    def delete(self, key: bytes, cf: object) -> None:
        self.keys.append(key)
        self.real.delete(key, cf)

    def is_empty(self) -> bool:
        return self.real.is_empty()

    def len(self) -> int:
        return self.real.len()


_REAL_WRITE_BATCH = rocksdict.WriteBatch


def test_a_batch_is_written_in_key_order(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(rocksdict, "WriteBatch", _RecordingBatch)
    _RecordingBatch.written = written = []
    with RocksDBDatabase(tmp_path / "db") as db:
        s = db.column_family("s")
        real_write = db._write
        db._write = lambda batch, options: real_write(batch.real, options)
        s.put(b"b", b"0")
        db.begin_batch()
        s.put_many([b"d", b"a"], [b"1", b"2"])
        s.delete_many([b"b"])
        s.put(b"c", b"3")
        s.delete(b"d")
        db.commit_batch()
        assert [keys for keys in written if keys] == [[b"a", b"b", b"c", b"d"]]
        assert list(s.iter_prefix(b"")) == [(b"a", b"2"), (b"c", b"3")]


def test_put_many_rejects_mismatched_or_non_bytes_input(db: RocksDBDatabase) -> None:
    s = db.column_family("s")
    with pytest.raises(ConfigurationError, match="as many values as keys"):
        s.put_many([b"a"], [])
    db.begin_batch()
    with pytest.raises(SerializationError):
        s.put_many([b"a", "b"], [b"1", b"2"])  # type: ignore[list-item]
    with pytest.raises(SerializationError):
        s.delete_many([1])  # type: ignore[list-item]
    db.commit_batch()
    assert s.get(b"a") is None


# -- range scans --------------------------------------------------------------------------


def test_iter_range_bounds(db: RocksDBDatabase) -> None:
    s = db.column_family("s")
    keys = [
        b"",
        b"\x00",
        b"\x00\x00",
        b"\x01",
        b"a",
        b"ab",
        b"ab\x00",
        b"ab\xff",
        b"ac",
        b"\xff",
        b"\xff\xff",
    ]
    _fill(s, keys)

    def scan(lo: bytes, hi: bytes | None, **kw: bool) -> list[bytes]:
        return [k for k, _ in s.iter_range(lo, hi, **kw)]

    assert scan(b"a", b"ac") == [b"a", b"ab", b"ab\x00", b"ab\xff"]
    assert scan(b"a", b"ac", hi_inclusive=True) == [b"a", b"ab", b"ab\x00", b"ab\xff", b"ac"]
    assert scan(b"ab", b"ab", hi_inclusive=True) == [b"ab"]
    assert scan(b"ab", b"ab") == []
    assert scan(b"b", b"a") == []
    assert scan(b"", b"\x00") == [b""]
    assert scan(b"\xff", None) == [b"\xff", b"\xff\xff"]
    assert scan(b"", None) == keys
    assert [k for k, _ in s.iter_prefix(b"ab")] == [b"ab", b"ab\x00", b"ab\xff"]
    assert [k for k, _ in s.iter_prefix(b"\xff")] == [b"\xff", b"\xff\xff"]
    assert [k for k, _ in s.iter_prefix(b"")] == keys


def test_prefix_upper_bound() -> None:
    assert prefix_upper_bound(b"ab") == b"ac"
    assert prefix_upper_bound(b"a\xff") == b"b"
    assert prefix_upper_bound(b"\x00\xff\xff") == b"\x01"
    assert prefix_upper_bound(b"\xff\xff") is None
    assert prefix_upper_bound(b"") is None


def test_entries_scanned_counts_exactly_the_entries_in_range(db: RocksDBDatabase, monkeypatch) -> None:
    s = db.column_family("s")
    _fill(s, [b"k%03d" % i for i in range(100)])
    for chunk in (1024, 7, 10):
        monkeypatch.setattr(store_module, "_CHUNK", chunk)
        before = s.entries_scanned
        assert len(list(s.iter_range(b"k010", b"k050"))) == 40
        assert s.entries_scanned - before in (40, 41)
        before = s.entries_scanned
        assert s.count_range(b"k090", None) == 10
        assert s.entries_scanned - before in (10, 11)
        before = s.entries_scanned
        assert list(s.iter_range(b"k0105", b"k011")) == []
        assert s.entries_scanned - before <= 1


def test_limit_reads_no_more_than_needed(db: RocksDBDatabase, monkeypatch) -> None:
    s = db.column_family("s")
    _fill(s, [b"k%03d" % i for i in range(100)])
    before = s.entries_scanned
    assert list(s.iter_range(b"k0", None, limit=1)) == [(b"k000", b"vk000")]
    assert [k for k, _ in s.iter_prefix(b"k05", limit=3)] == [b"k050", b"k051", b"k052"]
    assert list(s.iter_range(b"k", b"l", limit=0)) == []
    assert s.entries_scanned - before == 4
    monkeypatch.setattr(store_module, "_CHUNK", 4)
    assert len(list(s.iter_range(b"k", b"l", limit=10))) == 10
    with db.batch():
        s.delete_range(b"k000", b"k010")
        assert list(s.iter_range(b"k", b"l", limit=1)) == [(b"k010", b"vk010")]
    with pytest.raises(ConfigurationError):
        s.iter_range(b"a", b"b", limit=-1)


def test_scan_tolerates_writes_while_iterating(db: RocksDBDatabase, monkeypatch) -> None:
    monkeypatch.setattr(store_module, "_CHUNK", 3)
    s = db.column_family("s")
    keys = [b"k%02d" % i for i in range(20)]
    _fill(s, keys)
    seen = []
    for k, _ in s.iter_prefix(b"k"):
        seen.append(k)
        s.delete(k)
        s.put(k + b"-later", b"x")  # after the scan position: may or may not be seen
    assert seen == sorted(set(seen))
    assert [k for k in seen if not k.endswith(b"-later")] == keys
    assert all(s.get(k) is None for k in keys)


def test_long_scan_reads_in_chunks_and_merges_overlay(db: RocksDBDatabase, monkeypatch) -> None:
    monkeypatch.setattr(store_module, "_CHUNK", 4)
    s = db.column_family("s")
    _fill(s, [b"%02d" % i for i in range(0, 40, 2)])
    with db.batch():
        for i in range(1, 40, 3):
            s.put(b"%02d" % i, b"odd")
        s.delete_range(b"10", b"20")
        got = [k for k, _ in s.iter_range(b"03", b"35")]
    expected = sorted({b"%02d" % i for i in range(0, 40, 2)} | {b"%02d" % i for i in range(1, 40, 3)})
    expected = [k for k in expected if b"03" <= k < b"35" and not b"10" <= k < b"20"]
    assert got == expected


# Keys over a 3-byte alphabet, at most 3 long (40 keys): ops collide often, and shared
# prefixes, the empty key, 0x00 and 0xFF are common.
_keys = st.binary(max_size=3).map(lambda b: bytes(b"\x00\x01\xff"[x % 3] for x in b))
_ops = st.lists(
    st.one_of(
        st.tuples(st.just("put"), _keys, st.binary(max_size=3)),
        st.tuples(st.just("delete"), _keys),
        st.tuples(st.just("delete_range"), _keys, _keys),
        st.tuples(st.just("get"), _keys),
        st.tuples(
            st.just("scan"),
            _keys,
            st.one_of(st.none(), _keys),
            st.booleans(),
            st.one_of(st.none(), st.integers(0, 4)),
        ),
        st.tuples(st.just("prefix"), _keys),
        st.tuples(st.just("put_many"), st.lists(st.tuples(_keys, st.binary(max_size=3)), max_size=5)),
        st.tuples(st.just("delete_many"), st.lists(_keys, max_size=5)),
        st.tuples(st.sampled_from(["begin", "commit", "abort"])),
    ),
    max_size=60,
)


_ALL_KEYS = [bytes(t) for n in range(4) for t in itertools.product(b"\x00\x01\xff", repeat=n)]


@given(
    initial=st.dictionaries(_keys, st.binary(max_size=3), max_size=25),
    start_in_batch=st.booleans(),
    ops=_ops,
    final_puts=st.dictionaries(_keys, st.binary(max_size=3), max_size=6),
    final_range=st.tuples(_keys, _keys),
    chunks=st.sampled_from([(1, 8), (2, 2), (3, 1024), (32, 1024)]),
)
def test_store_matches_a_sorted_dict_oracle(
    initial: dict[bytes, bytes],
    start_in_batch: bool,
    ops: list[tuple],
    final_puts: dict[bytes, bytes],
    final_range: tuple[bytes, bytes],
    chunks: tuple[int, int],
) -> None:
    """Every operation, in and out of batches, then a reopen."""
    with tempfile.TemporaryDirectory() as tmp, pytest.MonkeyPatch.context() as mp:
        mp.setattr(store_module, "_FIRST_CHUNK", chunks[0])
        mp.setattr(store_module, "_CHUNK", chunks[1])
        db = RocksDBDatabase(Path(tmp) / "db")
        try:
            s = db.column_family("prop")
            for k, v in initial.items():
                s.put(k, v)
            committed: dict[bytes, bytes] = dict(initial)
            pending: dict[bytes, bytes] | None = None
            if start_in_batch:
                db.begin_batch()
                pending = dict(committed)

            def check_everything() -> None:
                view = committed if pending is None else pending
                assert list(s.iter_prefix(b"")) == sorted(view.items())
                assert [s.get(k) for k in _ALL_KEYS] == [view.get(k) for k in _ALL_KEYS]

            for op in ops:
                view = committed if pending is None else pending
                name = op[0]
                if name == "put":
                    s.put(op[1], op[2])
                    view[op[1]] = op[2]
                elif name == "delete":
                    s.delete(op[1])
                    view.pop(op[1], None)
                elif name == "delete_range":
                    s.delete_range(op[1], op[2])
                    for k in [k for k in view if op[1] <= k < op[2]]:
                        del view[k]
                elif name == "get":
                    assert s.get(op[1]) == view.get(op[1])
                elif name == "scan":
                    lo, hi, inclusive, limit = op[1:]
                    before = s.entries_scanned
                    got = list(s.iter_range(lo, hi, hi_inclusive=inclusive, limit=limit))

                    def inside(
                        k: bytes, lo: bytes = lo, hi: bytes | None = hi, inc: bool = inclusive
                    ) -> bool:
                        return k >= lo and (hi is None or k < hi or (inc and k == hi))

                    expected = sorted((k, v) for k, v in view.items() if inside(k))
                    assert got == expected[:limit]
                    if pending is None:
                        assert s.entries_scanned - before <= len(expected[:limit]) + 1
                elif name == "prefix":
                    got = list(s.iter_prefix(op[1]))
                    assert got == sorted((k, v) for k, v in view.items() if k.startswith(op[1]))
                elif name == "put_many":
                    s.put_many([k for k, _ in op[1]], [v for _, v in op[1]])
                    view.update(op[1])
                elif name == "delete_many":
                    s.delete_many(op[1])
                    for k in op[1]:
                        view.pop(k, None)
                elif name == "begin":
                    if pending is None:
                        db.begin_batch()
                        pending = dict(committed)
                elif name == "commit":
                    if pending is not None:
                        db.commit_batch()
                        committed, pending = pending, None
                elif pending is not None:
                    db.abort_batch()
                    pending = None
            check_everything()
            # Every example ends with a batch of puts and a range delete, checked before commit.
            if pending is None:
                db.begin_batch()
                pending = dict(committed)
            for k, v in final_puts.items():
                s.put(k, v)
                pending[k] = v
            lo, hi = final_range
            s.delete_range(lo, hi)
            for k in [k for k in pending if lo <= k < hi]:
                del pending[k]
            check_everything()
            db.commit_batch()
            committed, pending = pending, None
            check_everything()
            db.close()
            db = RocksDBDatabase(Path(tmp) / "db")
            s = db.column_family("prop")
            check_everything()
        finally:
            db.close()


@given(ranges=st.lists(st.tuples(_keys, _keys), max_size=12))
def test_deleted_range_set_matches_brute_force(ranges: list[tuple[bytes, bytes]]) -> None:
    rs = store_module._RangeSet()
    for lo, hi in ranges:
        if lo < hi:
            rs.add(lo, hi)
    assert rs._los == sorted(rs._los)
    assert all(lo < hi for lo, hi in zip(rs._los, rs._his, strict=True))
    assert all(hi < lo for hi, lo in zip(rs._his, rs._los[1:], strict=False))  # disjoint, not touching
    for key in _ALL_KEYS:
        assert (key in rs) == any(lo <= key < hi for lo, hi in ranges)


# -- reopen, locking, foreign and corrupt directories -------------------------------------


def test_reopen_sees_data_and_column_families(tmp_path: Path) -> None:
    path = tmp_path / "db"
    names = ["op-1/count", "op 2/50% done", "ünïcode/状态", "", "default", "a\x00b"]
    with RocksDBDatabase(path) as db:
        for i, name in enumerate(names):
            db.column_family(name).put(b"k", b"%d" % i)
        assert db.has_column_family("default")
    with RocksDBDatabase(path) as db:
        assert db.column_family_names() == sorted(names)
        for i, name in enumerate(names):
            assert db.column_family(name).get(b"k") == b"%d" % i


def test_drop_column_family(tmp_path: Path) -> None:
    path = tmp_path / "db"
    with RocksDBDatabase(path) as db:
        s = db.column_family("gone")
        s.put(b"k", b"v")
        db.column_family("kept").put(b"k", b"v")
        with db.batch(), pytest.raises(StateError):
            db.drop_column_family("gone")
        db.drop_column_family("gone")
        with pytest.raises(StateBackendError):
            s.get(b"k")
        with pytest.raises(StateBackendError):
            db.drop_column_family("gone")
        assert db.column_family_names() == ["kept"]
    with RocksDBDatabase(path) as db:
        assert db.column_family_names() == ["kept"]
        assert db.column_family("gone").get(b"k") is None


def test_double_open_in_process_raises_locked(tmp_path: Path) -> None:
    path = tmp_path / "db"
    with RocksDBDatabase(path):
        with pytest.raises(StateDirectoryLockedError) as info:
            RocksDBDatabase(path)
        assert str(path) in str(info.value)
        assert "another running job" in str(info.value)


_HOLDER = """
import sys
from streamcore.state.rocksdb import RocksDBDatabase
db = RocksDBDatabase(sys.argv[1])
db.column_family("s").put(b"from", b"child")
print("ready", flush=True)
sys.stdin.readline()
db.close()
"""


def test_double_open_across_processes_raises_locked(tmp_path: Path) -> None:
    path = tmp_path / "db"
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(REPO_ROOT), os.environ.get("PYTHONPATH", "")])}
    child = subprocess.Popen(
        [sys.executable, "-c", _HOLDER, str(path)],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
        env=env,
    )
    try:
        assert child.stdout.readline().strip() == "ready"
        with pytest.raises(StateDirectoryLockedError) as info:
            RocksDBDatabase(path)
        assert "another running job" in str(info.value)
        assert "another process" in str(info.value)
    finally:
        child.communicate("\n", timeout=30)
    assert child.returncode == 0
    with RocksDBDatabase(path) as db:
        assert db.column_family("s").get(b"from") == b"child"


def test_foreign_directory_is_refused_and_left_alone(tmp_path: Path) -> None:
    foreign = tmp_path / "foreign"
    foreign.mkdir()
    (foreign / "data.csv").write_text("a,b\n")
    with pytest.raises(StateBackendError, match="not a RocksDB database"):
        RocksDBDatabase(foreign)
    assert sorted(p.name for p in foreign.iterdir()) == ["data.csv"]
    with pytest.raises(StateBackendError):
        RocksDBDatabase.destroy(foreign)
    a_file = tmp_path / "file"
    a_file.write_text("x")
    with pytest.raises(StateBackendError, match="is a file"):
        RocksDBDatabase(a_file)


@pytest.mark.parametrize(
    "damage",
    [
        pytest.param(lambda p: (p / "CURRENT").write_text("garbage\n"), id="garbage-CURRENT"),
        pytest.param(lambda p: (p / "CURRENT").write_bytes(b"MANIFEST-0"), id="truncated-CURRENT"),
        pytest.param(
            lambda p: [m.write_bytes(os.urandom(256)) for m in p.glob("MANIFEST-*")], id="garbage-MANIFEST"
        ),
    ],
)
def test_corrupted_database_raises_backend_error(tmp_path: Path, damage) -> None:
    path = tmp_path / "db"
    with RocksDBDatabase(path) as db:
        db.column_family("s").put(b"k", b"v")
    damage(path)
    with pytest.raises(StateBackendError) as info:
        RocksDBDatabase(path)
    assert not isinstance(info.value, StateDirectoryLockedError)
    assert str(path) in str(info.value)
    assert isinstance(info.value.__cause__, Exception)


def test_non_raw_rocksdict_database_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "pickled"
    other = rocksdict.Rdict(str(path))
    other["k"] = 1
    other.close()
    del other
    with pytest.raises(StateBackendError, match="non-raw"):
        RocksDBDatabase(path)


def test_close_releases_the_lock_even_with_live_scans_and_stores(tmp_path: Path, monkeypatch) -> None:
    monkeypatch.setattr(store_module, "_CHUNK", 2)
    path = tmp_path / "db"
    db = RocksDBDatabase(path)
    s = db.column_family("s")
    _fill(s, [b"a", b"b", b"c", b"d", b"e"])
    half_read = s.iter_prefix(b"")
    next(half_read)
    abandoned = s.iter_range(b"a", b"z")
    db.begin_batch()
    s.put(b"uncommitted", b"x")
    db.close()
    db.close()  # idempotent
    assert db.closed and s.closed
    with pytest.raises(StateBackendError):
        s.get(b"a")
    with pytest.raises(StateBackendError):
        s.put(b"a", b"b")
    with pytest.raises(StateBackendError):
        db.column_family("s")
    with RocksDBDatabase(path) as again:
        assert again.column_family("s").count_range(b"", None) == 5
    del half_read, abandoned


def test_destroy_removes_a_closed_database(tmp_path: Path) -> None:
    path = tmp_path / "db"
    db = RocksDBDatabase(path)
    db.column_family("s").put(b"k", b"v")
    with pytest.raises(StateDirectoryLockedError):
        RocksDBDatabase.destroy(path)
    db.close()
    RocksDBDatabase.destroy(path)
    assert not path.exists()
    RocksDBDatabase.destroy(path)


# -- checkpoints and read-only open -------------------------------------------------------


def test_checkpoint_hard_links_ssts_and_holds_unflushed_writes(tmp_path: Path) -> None:
    path, target = tmp_path / "db", tmp_path / "checkpoints" / "chk-1"
    with RocksDBDatabase(path) as db:
        s = db.column_family("op/state")
        with db.batch():  # written without WAL, still in the memtable
            _fill(s, [b"k%04d" % i for i in range(500)])
        files = db.create_checkpoint(target)
        assert files == sorted(p.name for p in target.iterdir())
        assert "CURRENT" in files
        ssts = [f for f in files if f.endswith(".sst")]
        assert ssts
        for f in ssts:
            assert (target / f).stat().st_ino == (path / f).stat().st_ino
        s.put(b"after", b"checkpoint")
        with pytest.raises(StateBackendError, match="not empty"):
            db.create_checkpoint(target)
        with db.batch(), pytest.raises(StateError):
            db.create_checkpoint(tmp_path / "chk-2")
        # A read-only reader coexists with the writer and sees the checkpoint, not later writes.
        with RocksDBDatabase.open_read_only(target) as snapshot:
            assert snapshot.read_only
            assert snapshot.column_family_names() == ["op/state"]
            r = snapshot.column_family("op/state")
            assert r.count_range(b"", None) == 500
            assert r.get(b"k0042") == b"vk0042"
            assert r.get(b"after") is None
            with pytest.raises(StateBackendError):
                r.put(b"x", b"y")
            with pytest.raises(StateBackendError):
                snapshot.begin_batch()
            with pytest.raises(StateBackendError):
                snapshot.column_family("missing")


def test_checkpoint_into_existing_empty_directory(db: RocksDBDatabase, tmp_path: Path) -> None:
    db.column_family("s").put(b"k", b"v")
    target = tmp_path / "empty"
    target.mkdir()
    assert "CURRENT" in db.create_checkpoint(target)


def test_open_read_only_of_missing_directory_raises(tmp_path: Path) -> None:
    with pytest.raises(StateBackendError):
        RocksDBDatabase.open_read_only(tmp_path / "nothing")
    assert not (tmp_path / "nothing").exists()


# -- options and metrics ------------------------------------------------------------------


def test_build_options_presets_and_validation(tmp_path: Path) -> None:
    for preset in ("default", "large-state"):
        built = build_options(preset, block_cache_bytes=8 << 20)
        assert isinstance(built, RocksDBOptions)
        assert built.preset == preset
        assert build_options(built) is built
    with pytest.raises(ConfigurationError, match="unknown RocksDB options preset"):
        build_options("fast")
    with pytest.raises(ConfigurationError):
        build_options("default", block_cache_bytes=0)
    with pytest.raises(ConfigurationError, match="raw_mode=True"):
        build_options(rocksdict.Options())
    with pytest.raises(ConfigurationError, match="raw_mode=True"):
        RocksDBDatabase(tmp_path / "never", rocksdict.Options(raw_mode=False))
    assert not (tmp_path / "never").exists()
    custom = build_options(rocksdict.Options(raw_mode=True))
    assert custom.preset == "custom" and custom.block_cache is None


def test_short_lived_column_families_get_their_own_options(tmp_path: Path) -> None:
    """Buffers (``~buffer`` segment) get the small-memtable variant; reopening keeps both kinds readable."""
    for preset in ("default", "large-state"):
        built = build_options(preset, block_cache_bytes=8 << 20)
        assert built.buffer_options is not None and built.buffer_options is not built.options
        assert built.for_column_family("join/~buffer/left") is built.buffer_options
        assert built.for_column_family("join/counts") is built.options
        assert built.for_column_family("join/~bufferish") is built.options
    custom = build_options(rocksdict.Options(raw_mode=True))
    assert custom.for_column_family("join/~buffer/left") is custom.options
    path = tmp_path / "db"
    with RocksDBDatabase(path) as db:
        db.column_family("op/~buffer/left").put(b"k", b"buffered")
        db.column_family("op/v").put(b"k", b"value")
        db.flush()
    with RocksDBDatabase(path) as db:
        assert db.column_family("op/~buffer/left").get(b"k") == b"buffered"
        assert db.column_family("op/v").get(b"k") == b"value"


def test_user_options_and_large_state_preset_open(tmp_path: Path) -> None:
    with RocksDBDatabase(tmp_path / "custom", rocksdict.Options(raw_mode=True)) as db:
        db.column_family("s").put(b"k", b"v")
        assert db.column_family("s").get(b"k") == b"v"
        assert db.block_cache_usage() == 0
    with RocksDBDatabase(tmp_path / "large", "large-state", block_cache_bytes=16 << 20) as db:
        s = db.column_family("s")
        _fill(s, [b"k%05d" % i for i in range(2000)])
        db.flush()
        assert s.get(b"k00007") == b"vk00007"


def test_one_block_cache_is_shared_by_all_column_families(db: RocksDBDatabase) -> None:
    a, b = db.column_family("a"), db.column_family("b")
    _fill(a, [b"k%05d" % i for i in range(3000)])
    b.put(b"k", b"v")
    db.flush()
    for i in range(0, 3000, 7):
        a.get(b"k%05d" % i)
    usage = db.block_cache_usage()
    assert usage > 0
    assert a.int_property("rocksdb.block-cache-usage") == usage
    assert b.int_property("rocksdb.block-cache-usage") == usage
    assert b.int_property("rocksdb.block-cache-capacity") == 64 << 20


def test_stats_per_column_family(db: RocksDBDatabase) -> None:
    s = db.column_family("s")
    _fill(s, [b"a", b"b", b"c"])
    s.get(b"a")
    list(s.iter_prefix(b""))
    db.flush()
    stats = db.stats()
    assert set(stats) == {"s"}
    assert stats["s"]["reads"] == 1
    assert stats["s"]["writes"] == 3
    assert stats["s"]["scans"] == 1
    assert stats["s"]["entries_scanned"] == 3
    assert stats["s"]["approximate_num_keys"] == 3
    assert stats["s"]["sst_bytes"] > 0
    assert s.approximate_num_keys() == 3


# -- rocksdict facts the layer depends on (fail loudly when an upgrade changes them) ------


def test_rocksdict_lower_bound_sets_the_upper_bound(tmp_path: Path) -> None:
    rd = rocksdict.Rdict(str(tmp_path / "raw"), rocksdict.Options(raw_mode=True))
    try:
        for i in range(10):
            rd[bytes([i])] = b"v"
        ro = rocksdict.ReadOptions()
        ro.set_iterate_lower_bound(bytes([5]))
        # A working lower bound would yield 5..9; rocksdict 0.3.29 yields 0..4.
        assert [k[0] for k in rd.keys(read_opt=ro)] == [0, 1, 2, 3, 4]
    finally:
        rd.close()
        del rd


def test_rocksdict_snapshot_iteration_ignores_the_snapshot(tmp_path: Path) -> None:
    rd = rocksdict.Rdict(str(tmp_path / "raw"), rocksdict.Options(raw_mode=True))
    try:
        rd[b"a"] = b"old"
        snap = rd.snapshot()
        rd[b"a"] = b"new"
        rd[b"b"] = b"later"
        assert snap[b"a"] == b"old"  # point reads honour the snapshot...
        assert list(snap.items()) == [(b"a", b"new"), (b"b", b"later")]  # ...iteration does not
        del snap
    finally:
        rd.close()
        del rd
