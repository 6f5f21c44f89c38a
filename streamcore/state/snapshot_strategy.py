"""How a state backend's state gets into a checkpoint: one snapshot strategy per backend.

Every backend can give *canonical* images (backend-independent rows, what savepoints
hold and either backend restores). A backend may also have a *native* snapshot: files
of its own format, written quickly at the checkpoint's synchronous pause and restored
by putting them back (RocksDB: its SST files, shared between incremental checkpoints).

The checkpoint package asks the job's :class:`~streamcore.state.factory.StateBackendFactory`
for its strategy and never looks at the backend's kind:

* :meth:`SnapshotStrategy.capture` writes the native files of the whole job's state
  into a directory (synchronous part of a checkpoint);
* :meth:`SnapshotStrategy.shareable` tells which of those files are immutable, so an
  incremental checkpoint stores each once and later checkpoints reference it;
* :meth:`SnapshotStrategy.restore_dir` is where a restore puts the native files back,
  emptied first, before the backend opens.
"""

from __future__ import annotations

from pathlib import Path

__all__ = ["CanonicalSnapshotStrategy", "SnapshotStrategy"]


class SnapshotStrategy:
    """The snapshot strategy of one backend; this base is the canonical-only one (heap)."""

    #: the backend's name, as checkpoint metadata records it.
    backend = "heap"
    #: whether :meth:`capture` writes native files (else checkpoints hold canonical images).
    native = False

    def capture(self, directory: Path) -> None:
        """Write the native files of the job's state into ``directory`` (which must not exist)."""
        msg = f"the {self.backend} backend has no native snapshot; checkpoints hold canonical images"
        raise NotImplementedError(msg)

    def shareable(self, name: str) -> bool:
        """Whether the native file ``name`` is immutable (incremental checkpoints share it)."""
        return False

    def restore_dir(self) -> Path:
        """An empty directory where a restore puts the native files back, before the backend opens."""
        msg = f"the {self.backend} backend has no native snapshot to restore"
        raise NotImplementedError(msg)


class CanonicalSnapshotStrategy(SnapshotStrategy):
    """Heap state: Python objects, encoded as canonical images at every checkpoint."""
