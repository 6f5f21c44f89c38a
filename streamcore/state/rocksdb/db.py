"""The job-level RocksDB database: open/close, the directory lock, column families, batches, checkpoints.

One :class:`RocksDBDatabase` per job (per state directory). Each registered state gets a
column family, served by a :class:`~streamcore.state.rocksdb.store.RocksDBStore`.

Write batches
    Between :meth:`~RocksDBDatabase.begin_batch` and :meth:`~RocksDBDatabase.commit_batch`
    every write of every store goes into **one** ``rocksdict.WriteBatch``, written
    atomically at commit; stores read their own uncommitted writes through an overlay.
    Outside a batch, writes go straight to RocksDB. Batches nest: an inner
    ``begin``/``commit`` pair joins the outer batch, and only the outermost commit writes
    (chained operators can each wrap their work in a batch).

Durability
    Writes skip RocksDB's write-ahead log (``WriteOptions.disable_wal``): durability comes
    from checkpoints, which flush memtables before hard-linking files, and a restarted job
    restores from its last checkpoint, never from the working directory. A clean
    :meth:`~RocksDBDatabase.close` flushes, so a reopen sees everything committed; a crash
    loses what was not flushed. Without the WAL a batched put plus its share of the write
    costs ~0.7-0.8 us instead of ~0.9-1.3 us (10k-entry batches). Pass
    ``disable_wal=False`` to keep the log (then a crash loses nothing that was committed).

Locking
    RocksDB's ``LOCK`` file (an ``fcntl`` lock) refuses a second read-write open of one
    directory, from this process or another. rocksdict reports it as a bare
    ``Exception``: ``IO error: lock hold by current process, ... /LOCK: No locks available``
    (same process) or ``IO error: While lock file: .../LOCK: Resource temporarily
    unavailable`` (another process); both become :class:`StateDirectoryLockedError`.

Releasing the database
    rocksdict keeps RocksDB open (and ``LOCK`` held) while any column-family ``Rdict``,
    ``ColumnFamily`` handle, iterator or checkpoint object is alive, even after
    ``Rdict.close()``. Scans never keep an iterator beyond one call, checkpoints delete
    their ``Checkpoint`` object at once, and :meth:`RocksDBDatabase.close` closes every
    column family and drops every handle the stores hold, so the lock is released on close
    even if callers keep references to stores.
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
from collections.abc import Iterator
from pathlib import Path
from typing import Any
from urllib.parse import quote, unquote

import rocksdict

from streamcore.errors import ConfigurationError, StateBackendError, StateDirectoryLockedError, StateError
from streamcore.state.rocksdb.options import RocksDBOptions, build_options
from streamcore.state.rocksdb.store import RocksDBStore

__all__ = ["RocksDBDatabase"]

# RocksDB accepts any column family name without NUL; names are escaped anyway so that
# state names never clash with "default" and stay readable in RocksDB's LOG and tools.
_CF_PREFIX = "sc:"
_CF_SAFE = "".join(chr(c) for c in range(0x20, 0x7F) if chr(c) != "%")
_DEFAULT_CF = "default"


def _cf_name(name: str) -> str:
    if type(name) is not str:
        msg = f"column family names are str, got {type(name).__name__}"
        raise ConfigurationError(msg)
    try:
        return _CF_PREFIX + quote(name, safe=_CF_SAFE, errors="strict")
    except UnicodeEncodeError as exc:
        msg = f"column family name {name!r} is not valid Unicode (lone surrogate); use a UTF-8 encodable name"
        raise ConfigurationError(msg) from exc


def _state_name(cf_name: str) -> str | None:
    if not cf_name.startswith(_CF_PREFIX):
        return None
    return unquote(cf_name[len(_CF_PREFIX) :], errors="strict")


def _is_lock_error(exc: BaseException) -> bool:
    text = str(exc)
    return "/LOCK" in text and (
        "lock hold" in text or "While lock file" in text or "No locks available" in text
    )


class RocksDBDatabase:
    """One RocksDB database in raw mode: column families, atomic write batches, checkpoints.

    Args:
        path: the state directory; created if missing. An existing directory must be
            empty or hold a RocksDB database (a ``CURRENT`` file): foreign data is never
            overwritten.
        options: a preset name (``"default"``, ``"large-state"``), a
            ``rocksdict.Options(raw_mode=True)``, or a :class:`RocksDBOptions`; see
            :func:`~streamcore.state.rocksdb.options.build_options`.
        block_cache_bytes: capacity of the block cache shared by all column families
            (``None``: the preset's default).
        disable_wal: skip RocksDB's write-ahead log (default; durability comes from
            checkpoints, see the module docstring).

    Raises:
        StateDirectoryLockedError: another open database (any process) uses ``path``.
        StateBackendError: ``path`` is a file, a non-empty directory that is not a RocksDB
            database, or a corrupted database; or RocksDB failed to open it.
        ConfigurationError: bad options (unknown preset, options without raw mode).

    Example::

        with RocksDBDatabase("state/") as db:
            store = db.column_family("join/left")
            with db.batch():
                store.put(b"k", b"v")
                assert store.get(b"k") == b"v"      # reads its own writes
            db.create_checkpoint("checkpoints/chk-1/rocksdb")
    """

    def __init__(
        self,
        path: str | os.PathLike[str],
        options: str | rocksdict.Options | RocksDBOptions = "default",
        *,
        block_cache_bytes: int | None = None,
        disable_wal: bool = True,
        _read_only: bool = False,
    ) -> None:
        self._path = Path(path)
        self._read_only = _read_only
        self._options = build_options(options, block_cache_bytes)
        self._stores: dict[str, RocksDBStore] = {}
        self._batch: rocksdict.WriteBatch | None = None
        self._batch_depth = 0
        self._rdict: rocksdict.Rdict | None = None
        wo = rocksdict.WriteOptions()
        wo.disable_wal = bool(disable_wal)
        self._write_options = wo

        cf_names = self._check_directory()
        opts = self._options.options
        access = rocksdict.AccessType.read_only(False) if _read_only else rocksdict.AccessType.read_write()
        try:
            # Every column family must be opened with our options, or rocksdict opens it
            # with defaults (and a private block cache).
            self._rdict = rocksdict.Rdict(
                str(self._path),
                opts,
                column_families={
                    n: self._options.for_column_family(_state_name(n) or n)
                    for n in cf_names
                    if n != _DEFAULT_CF
                },
                access_type=access,
            )
        except Exception as exc:
            raise self._open_error(exc) from exc
        self._write = self._rdict.write
        self._cf_names = [n for n in cf_names if _state_name(n) is not None]

    @classmethod
    def open_read_only(
        cls, path: str | os.PathLike[str], options: str | rocksdict.Options | RocksDBOptions = "default"
    ) -> RocksDBDatabase:
        """Open an existing database (typically a checkpoint directory) for reading only.

        Takes no lock, so several readers, and a reader beside the job that writes the
        directory, may coexist. A reader sees what the SST files and the WAL held at open
        time, so use it on checkpoints (flushed by construction), not on a live database
        written without WAL. Column families cannot be created and every write raises
        :class:`StateBackendError`.
        """
        return cls(path, options, _read_only=True)

    @staticmethod
    def destroy(path: str | os.PathLike[str]) -> None:
        """Delete the database at ``path`` and its directory; a missing directory is fine.

        Raises:
            StateDirectoryLockedError: an open database uses the directory.
            StateBackendError: the directory holds something that is not a RocksDB database.
        """
        p = Path(path)
        if not p.exists():
            return
        if p.is_dir() and not any(p.iterdir()):
            p.rmdir()
            return
        if not (p / "CURRENT").is_file():
            msg = f"refusing to delete {p}: it is not a RocksDB database (no CURRENT file)"
            raise StateBackendError(msg)
        try:
            rocksdict.Rdict.destroy(str(p), rocksdict.Options(raw_mode=True))
        except Exception as exc:
            if _is_lock_error(exc):
                raise _locked_error(p, exc) from exc
            msg = f"could not delete the RocksDB database at {p}: {exc}"
            raise StateBackendError(msg) from exc
        if p.exists():
            # Rdict.destroy may leave files RocksDB does not own (rocksdict's json, old LOGs).
            try:
                shutil.rmtree(p)
            except OSError as exc:
                msg = f"could not delete the RocksDB directory {p}: {exc}"
                raise StateBackendError(msg) from exc

    # -- opening ------------------------------------------------------------------------

    def _check_directory(self) -> list[str]:
        """Refuse foreign data; return the column families of an existing database."""
        p = self._path
        if p.exists() and not p.is_dir():
            msg = f"state directory {p} is a file, not a directory; point state_dir at a directory"
            raise StateBackendError(msg)
        if not p.exists() or not any(p.iterdir()):
            if self._read_only:
                msg = f"no RocksDB database at {p} to open read-only (the directory is missing or empty)"
                raise StateBackendError(msg)
            try:
                p.mkdir(parents=True, exist_ok=True)
            except OSError as exc:
                msg = f"cannot create state directory {p}: {exc}"
                raise StateBackendError(msg) from exc
            return [_DEFAULT_CF]
        if not (p / "CURRENT").exists():
            msg = (
                f"state directory {p} is not empty and is not a RocksDB database (no CURRENT file); "
                "refusing to create a database over foreign data: give the job an empty or "
                "dedicated state_dir"
            )
            raise StateBackendError(msg)
        self._check_rocksdict_config()
        try:
            return list(rocksdict.Rdict.list_cf(str(p), self._options.options))
        except Exception as exc:
            raise self._open_error(exc) from exc

    def _check_rocksdict_config(self) -> None:
        # rocksdict records raw mode in this file; a non-raw database has another comparator
        # and RocksDB would refuse it with a cryptic comparator mismatch.
        config = self._path / "rocksdict-config.json"
        try:
            raw_mode = json.loads(config.read_text()).get("raw_mode", True)
        except (OSError, ValueError, AttributeError):
            return
        if raw_mode is False:
            msg = (
                f"{self._path} holds a rocksdict database written in pickle (non-raw) mode, "
                "not streamcore state; give the job a dedicated state_dir"
            )
            raise StateBackendError(msg)

    def _open_error(self, exc: Exception) -> StateBackendError:
        if _is_lock_error(exc):
            return _locked_error(self._path, exc)
        text = str(exc)
        if "Corruption" in text or "corrupt" in text:
            msg = (
                f"the RocksDB database in {self._path} is corrupted ({text}); delete the directory "
                "and restore the job from its latest checkpoint"
            )
        elif "comparator" in text:
            msg = f"{self._path} holds a RocksDB database that is not streamcore state ({text})"
        else:
            msg = f"cannot open the RocksDB database in {self._path}: {text}"
        return StateBackendError(msg)

    # -- properties -----------------------------------------------------------------------

    @property
    def path(self) -> Path:
        """The database directory."""
        return self._path

    @property
    def read_only(self) -> bool:
        """Whether the database was opened with :meth:`open_read_only`."""
        return self._read_only

    @property
    def closed(self) -> bool:
        """Whether :meth:`close` has been called."""
        return self._rdict is None

    @property
    def options(self) -> RocksDBOptions:
        """The options of the database and of every column family."""
        return self._options

    @property
    def in_batch(self) -> bool:
        """Whether a write batch is open."""
        return self._batch is not None

    # -- column families ----------------------------------------------------------------

    def column_family_names(self) -> list[str]:
        """Names of the column families (as given to :meth:`column_family`), sorted."""
        return sorted(n for c in self._cf_names if (n := _state_name(c)) is not None)

    def has_column_family(self, name: str) -> bool:
        """Whether column family ``name`` exists."""
        return _cf_name(name) in self._cf_names

    def column_family(self, name: str) -> RocksDBStore:
        """The store of column family ``name``, created if missing (not in read-only mode).

        Names are any ``str``; they are escaped into RocksDB's namespace reversibly, so
        :meth:`column_family_names` returns them unchanged after a reopen.
        """
        store = self._stores.get(name)
        if store is not None:
            return store
        rdict = self._require_open()
        cf_name = _cf_name(name)
        try:
            if cf_name in self._cf_names:
                cf = rdict.get_column_family(cf_name)
            elif self._read_only:
                msg = f"no column family {name!r} in the read-only database {self._path}"
                raise StateBackendError(msg)
            else:
                cf = rdict.create_column_family(cf_name, self._options.for_column_family(name))
                self._cf_names.append(cf_name)
            handle = rdict.get_column_family_handle(cf_name)
        except StateBackendError:
            raise
        except Exception as exc:
            msg = f"cannot open column family {name!r} in {self._path}: {exc}"
            raise StateBackendError(msg) from exc
        store = RocksDBStore(name, cf_name, cf, handle, self._write_options)
        if self._batch is not None:
            store.begin_batch(self._batch)
        self._stores[name] = store
        return store

    def drop_column_family(self, name: str) -> None:
        """Delete column family ``name`` and all its data; its store stops working.

        Raises:
            StateError: a batch is open (its writes may target the column family).
            StateBackendError: no such column family, or RocksDB failed.
        """
        rdict = self._require_open()
        if self._batch is not None:
            msg = f"cannot drop column family {name!r} while a write batch is open; commit or abort it first"
            raise StateError(msg)
        cf_name = _cf_name(name)
        if cf_name not in self._cf_names:
            msg = f"no column family {name!r} in {self._path}"
            raise StateBackendError(msg)
        store = self._stores.pop(name, None)
        if store is not None:
            store.release()
        try:
            rdict.drop_column_family(cf_name)
        except Exception as exc:
            msg = f"cannot drop column family {name!r} in {self._path}: {exc}"
            raise StateBackendError(msg) from exc
        self._cf_names.remove(cf_name)

    # -- batches ------------------------------------------------------------------------

    def begin_batch(self) -> None:
        """Start grouping writes of every store into one atomic batch (nests: see module docs)."""
        self._require_open()
        if self._batch is not None:
            self._batch_depth += 1
            return
        if self._read_only:
            msg = f"cannot write: the database {self._path} is open read-only"
            raise StateBackendError(msg)
        batch = rocksdict.WriteBatch(raw_mode=True)
        self._batch = batch
        self._batch_depth = 1
        for store in self._stores.values():
            store.begin_batch(batch)

    def commit_batch(self) -> None:
        """Write the batch atomically (outermost commit only) and return stores to direct writes.

        Raises:
            StateError: no batch is open.
            StateBackendError: RocksDB failed to write; the batch's writes are discarded.
        """
        batch = self._batch
        if batch is None:
            msg = "commit_batch() without begin_batch(): no write batch is open"
            raise StateError(msg)
        self._batch_depth -= 1
        if self._batch_depth:
            return
        self._batch = None
        try:
            # A WriteBatch is consumed by a write; an empty one is not worth the call.
            if not batch.is_empty():
                self._write(batch, self._write_options)
        except Exception as exc:
            msg = f"writing a batch of {batch.len()} operations to {self._path} failed: {exc}"
            raise StateBackendError(msg) from exc
        finally:
            for store in self._stores.values():
                store.end_batch()

    def abort_batch(self) -> None:
        """Discard the open batch (all nesting levels): nothing of it reaches RocksDB."""
        if self._batch is None:
            return
        self._batch = None
        self._batch_depth = 0
        for store in self._stores.values():
            store.end_batch()

    @contextlib.contextmanager
    def batch(self) -> Iterator[RocksDBDatabase]:
        """``with db.batch():`` commits on success and aborts the whole batch on an exception."""
        self.begin_batch()
        try:
            yield self
        except BaseException:
            self.abort_batch()
            raise
        self.commit_batch()

    # -- durability -----------------------------------------------------------------------

    def flush(self) -> None:
        """Flush the memtables of every column family to SST files (committed writes only)."""
        rdict = self._require_open()
        if self._read_only:
            return
        try:
            rdict.flush(True)
            for cf_name in self._cf_names:
                rdict.get_column_family(cf_name).flush(True)
        except Exception as exc:
            msg = f"flushing the RocksDB database in {self._path} failed: {exc}"
            raise StateBackendError(msg) from exc

    def create_checkpoint(self, target_dir: str | os.PathLike[str]) -> list[str]:
        """Write a native RocksDB checkpoint of committed state into ``target_dir``.

        Memtables are flushed first (writes skip the WAL), then RocksDB hard-links the SST
        files (copies them across file systems) and copies the small metadata files. The
        result is a complete database: open it with :meth:`open_read_only` or restore by
        copying it to a state directory.

        Args:
            target_dir: must not exist, or be an empty directory (it is replaced); its
                parent is created if missing.

        Returns:
            The names of the files in ``target_dir``, sorted.

        Raises:
            StateError: a batch is open (checkpoints are taken between batches).
            StateBackendError: ``target_dir`` is not empty, or RocksDB failed.
        """
        rdict = self._require_open()
        if self._batch is not None:
            msg = "cannot checkpoint while a write batch is open; checkpoints are taken between batches"
            raise StateError(msg)
        target = Path(target_dir)
        if target.exists():
            if not target.is_dir() or any(target.iterdir()):
                msg = f"checkpoint target {target} already exists and is not empty; use a new directory"
                raise StateBackendError(msg)
            # RocksDB creates the directory itself and refuses an existing one.
            target.rmdir()
        target.parent.mkdir(parents=True, exist_ok=True)
        self.flush()
        try:
            checkpoint = rocksdict.Checkpoint(rdict)
            try:
                checkpoint.create_checkpoint(str(target))
            finally:
                # The Checkpoint object keeps the database open: never let it outlive this call.
                del checkpoint
        except Exception as exc:
            msg = f"creating a RocksDB checkpoint of {self._path} in {target} failed: {exc}"
            raise StateBackendError(msg) from exc
        return sorted(f.name for f in target.iterdir())

    def live_files(self) -> list[dict[str, Any]]:
        """RocksDB's live SST files: name, size, level, key range, entries and deletions."""
        rdict = self._require_open()
        try:
            return list(rdict.live_files())
        except Exception as exc:
            msg = f"listing the live files of {self._path} failed: {exc}"
            raise StateBackendError(msg) from exc

    # -- metrics --------------------------------------------------------------------------

    def stats(self) -> dict[str, dict[str, int]]:
        """Counters and size properties per column family (those opened as stores count reads)."""
        self._require_open()
        return {name: self.column_family(name).stats() for name in self.column_family_names()}

    def block_cache_usage(self) -> int:
        """Bytes in the block cache every column family shares (0 with caller-supplied options)."""
        cache = self._options.block_cache
        return 0 if cache is None else cache.get_usage()

    # -- closing --------------------------------------------------------------------------

    def close(self) -> None:
        """Release the database and its lock; idempotent. An open batch is discarded.

        Every store of this database stops working (its methods raise
        :class:`StateBackendError`) even if callers still hold it.
        """
        rdict = self._rdict
        if rdict is None:
            return
        self.abort_batch()
        for store in self._stores.values():
            store.release()
        self._stores.clear()
        self._rdict = None
        self._write = _closed_write
        try:
            rdict.close()
        except Exception as exc:
            msg = f"closing the RocksDB database in {self._path} failed: {exc}"
            raise StateBackendError(msg) from exc
        finally:
            del rdict

    def __enter__(self) -> RocksDBDatabase:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    def __repr__(self) -> str:
        state = "closed" if self.closed else ("read-only" if self._read_only else "open")
        return f"RocksDBDatabase({str(self._path)!r}, {state})"

    def _require_open(self) -> rocksdict.Rdict:
        rdict = self._rdict
        if rdict is None:
            msg = f"the RocksDB database in {self._path} is closed; open a new RocksDBDatabase"
            raise StateBackendError(msg)
        return rdict


def _closed_write(*_args: object) -> None:
    msg = "the RocksDB database is closed"
    raise StateBackendError(msg)


def _locked_error(path: Path, exc: BaseException) -> StateDirectoryLockedError:
    where = "in this process" if "current process" in str(exc) else "in another process"
    msg = (
        f"state directory {path} is locked: another running job uses it ({where}; RocksDB: {exc}). "
        "Stop that job or give this one its own state_dir"
    )
    return StateDirectoryLockedError(msg)
