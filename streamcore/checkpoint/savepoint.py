"""Savepoints: self-contained, backend-independent snapshots taken on request.

A savepoint holds canonical images only (per operator uid, state name and key group,
rows in msgpack), never RocksDB files, so it restores into either backend: it is how a
job moves from heap to RocksDB or back, and how it survives an upgrade. It lives in
``<directory>/sp-<id>/`` and nothing deletes it: retention only touches ``chk-<id>``.

The savepoint is built in a hidden temporary directory (metadata last) and renamed into
place, so ``sp-<id>`` either is complete or does not exist.

Savepoints do not commit two-phase-commit sinks' transactions (restarts recover from
checkpoints, which would then replay committed records), except for a stop with
savepoint: the job ends there, so the runtime notifies its operators of the savepoint
and its last transaction commits.
"""

from __future__ import annotations

import os
import secrets
from pathlib import Path

from streamcore.checkpoint.protocol import CheckpointedTask
from streamcore.checkpoint.snapshot import PendingSnapshot, complete_snapshot, discard_snapshot, take_snapshot
from streamcore.checkpoint.storage import SAVEPOINT_PREFIX, fsync_path
from streamcore.errors import CheckpointError, StreamcoreError

__all__ = ["write_savepoint"]


def write_savepoint(task: CheckpointedTask, directory: str | Path, savepoint_id: int) -> str:
    """Write a savepoint of the running task into ``directory/sp-<id>``; returns its path.

    Call between batches only (the runtime serves savepoint requests there).

    Raises:
        CheckpointError: the savepoint could not be written (nothing is left behind).
    """
    root = Path(directory)
    try:
        root.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        msg = f"cannot create the savepoint directory {root}: {exc}"
        raise CheckpointError(msg) from exc
    final = root / f"{SAVEPOINT_PREFIX}{savepoint_id}"
    n = 1
    while final.exists():
        n += 1
        final = root / f"{SAVEPOINT_PREFIX}{savepoint_id}-{n}"
    tmp = root / f".{final.name}.inprogress-{secrets.token_hex(4)}"
    pending: PendingSnapshot | None = None
    try:
        pending = take_snapshot(task, savepoint_id, tmp, kind="savepoint", canonical=True)
        complete_snapshot(pending, None, {}, incremental=False)
        os.replace(tmp, final)
        fsync_path(root)
    except Exception as exc:
        discard_snapshot(pending, tmp)
        if isinstance(exc, StreamcoreError):
            raise
        what = f"{type(exc).__name__}: {exc}"
        msg = f"savepoint {savepoint_id} of job {task.job_name!r} into {root} failed: {what}"
        raise CheckpointError(msg) from exc
    return str(final)
