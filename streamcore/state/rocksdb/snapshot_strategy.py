"""The RocksDB backend's snapshot strategy: native checkpoints whose SST files are shared.

At a checkpoint's synchronous pause RocksDB flushes its memtables and hard-links its SST
files into the checkpoint directory (:meth:`RocksDBDatabase.create_checkpoint`); SST files
never change once written, so an incremental checkpoint stores only those the previous
one lacked. A restore rebuilds the working database ``<state_dir>/db`` from the files.
"""

from __future__ import annotations

import shutil
from collections.abc import Callable
from pathlib import Path

from streamcore.errors import StateBackendError
from streamcore.state.rocksdb.db import RocksDBDatabase
from streamcore.state.snapshot_strategy import SnapshotStrategy

__all__ = ["DATABASE_DIR", "RocksDBSnapshotStrategy", "database_dir"]

#: where the RocksDB backend keeps its database inside ``state_dir``.
DATABASE_DIR = "db"


def database_dir(state_dir: Path) -> Path:
    """The RocksDB working database of a job: ``<state_dir>/db``."""
    return Path(state_dir) / DATABASE_DIR


class RocksDBSnapshotStrategy(SnapshotStrategy):
    """Native RocksDB checkpoints; SST files are immutable and shared by incremental checkpoints."""

    backend = "rocksdb"
    native = True

    def __init__(self, state_dir: Path, database: Callable[[], RocksDBDatabase | None]) -> None:
        self.state_dir = Path(state_dir)
        self._database = database

    def capture(self, directory: Path) -> None:
        """Flush and hard-link the database's files into ``directory``.

        Raises:
            StateBackendError: the database is not open, or RocksDB failed.
        """
        db = self._database()
        if db is None:
            msg = "the RocksDB database is not open: a checkpoint is taken while the job runs"
            raise StateBackendError(msg)
        db.create_checkpoint(directory)

    def shareable(self, name: str) -> bool:
        """SST files never change once written; MANIFEST, CURRENT and OPTIONS do."""
        return name.endswith(".sst")

    def restore_dir(self) -> Path:
        """``<state_dir>/db``, emptied (a database a running job holds open is refused)."""
        target = database_dir(self.state_dir)
        if target.exists():
            if (target / "CURRENT").exists():
                RocksDBDatabase.destroy(target)  # refuses a directory a running job has locked
            shutil.rmtree(target, ignore_errors=True)
        return target
