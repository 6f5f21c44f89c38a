"""Choosing and owning the state backend of a job.

A job has one :class:`StateBackendFactory`. The heap backend needs nothing at job
level; the RocksDB backend opens one database under ``state_dir`` (one column family
per registered state, one shared block cache) and hands each operator a keyed
backend over it.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from streamcore.errors import ConfigurationError
from streamcore.state.api import KeyContext, KeyedStateBackend
from streamcore.state.heap import HeapKeyedStateBackend
from streamcore.state.snapshot_strategy import CanonicalSnapshotStrategy, SnapshotStrategy
from streamcore.time import Clock

__all__ = ["BACKENDS", "StateBackendFactory", "check_backend"]

BACKENDS = ("heap", "rocksdb")


def check_backend(kind: str, state_dir: str | Path | None) -> None:
    """Validate a backend name and its state directory.

    Raises:
        ConfigurationError: unknown backend, or RocksDB without ``state_dir``.
    """
    if kind not in BACKENDS:
        msg = f"state_backend must be one of {BACKENDS}, got {kind!r}"
        raise ConfigurationError(msg)
    if kind == "rocksdb" and state_dir is None:
        msg = "state_backend='rocksdb' needs state_dir=... (a directory for the database)"
        raise ConfigurationError(msg)


class StateBackendFactory:
    """Creates the keyed backend of every operator of one job run."""

    def __init__(
        self, kind: str, state_dir: str | Path | None, clock: Clock, rocksdb_options: Any = "default"
    ) -> None:
        check_backend(kind, state_dir)
        self.kind = kind
        self.state_dir = Path(state_dir) if state_dir is not None else None
        self.clock = clock
        self.rocksdb_options = rocksdb_options
        self._db: Any = None
        self._backends: list[KeyedStateBackend] = []

    def open(self, *, fresh: bool = True) -> None:
        """Open job-level resources (the RocksDB database; ``fresh`` empties it first)."""
        if self.kind == "rocksdb":
            from streamcore.state.rocksdb.backend import open_job_database

            self._db = open_job_database(self.state_dir, self.rocksdb_options, fresh=fresh)

    def create(self, operator_uid: str, key_context: KeyContext) -> KeyedStateBackend:
        """The keyed backend of operator ``operator_uid``."""
        if self.kind == "heap":
            backend: KeyedStateBackend = HeapKeyedStateBackend(operator_uid, key_context, self.clock)
        else:
            from streamcore.state.rocksdb.backend import RocksDBKeyedStateBackend

            backend = RocksDBKeyedStateBackend(operator_uid, key_context, self.clock, self._db)
        self._backends.append(backend)
        return backend

    @property
    def database(self) -> Any:
        """The job's RocksDB database (``None`` on the heap backend)."""
        return self._db

    @property
    def snapshot_strategy(self) -> SnapshotStrategy:
        """How checkpoints store this backend's state (native files or canonical images)."""
        if self.kind == "rocksdb":
            from streamcore.state.rocksdb.snapshot_strategy import RocksDBSnapshotStrategy

            assert self.state_dir is not None
            return RocksDBSnapshotStrategy(self.state_dir, lambda: self._db)
        return CanonicalSnapshotStrategy()

    def close(self) -> None:
        """Close every backend and the database."""
        for b in self._backends:
            b.close()
        self._backends.clear()
        if self._db is not None:
            self._db.close()
            self._db = None
