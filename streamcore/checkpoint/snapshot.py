"""Writing one checkpoint or savepoint directory, and reading its files back.

Taking a snapshot has two parts:

1. **Synchronous** (:func:`take_snapshot`, between batches, the job paused): the task
   snapshots every source position, operator image and watermark into a
   :class:`~streamcore.checkpoint.protocol.TaskImage`, serialized now (heap state is made
   of live Python objects), and a backend with a native snapshot writes it
   (:meth:`~streamcore.state.snapshot_strategy.SnapshotStrategy.capture`; RocksDB: flush,
   then hard links of the SST files) into ``<dir>/native``.
2. **Asynchronous** (:func:`complete_snapshot`, may run in a background thread): operator
   files are written and fsync-ed; with ``incremental``, native files the strategy calls
   shareable (immutable) that the previous completed checkpoint already stored are dropped
   and reused from ``shared/``, new ones are moved to ``shared/`` under a unique name; the
   other native files (MANIFEST, CURRENT, OPTIONS) stay private; then the metadata is
   written last, atomically.

If anything fails, :func:`discard_snapshot` removes the directory and the shared files
this snapshot added; nothing that an earlier checkpoint references is touched.
"""

from __future__ import annotations

import os
import secrets
import shutil
import time
import zlib
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from streamcore.checkpoint.protocol import CheckpointedTask
from streamcore.checkpoint.storage import (
    FORMAT_VERSION,
    METADATA_FILE,
    SHARED_DIR,
    atomic_write,
    crc32_file,
    encode_metadata,
    encode_operator_image,
    fsync_path,
    link_or_copy,
    write_durable,
)
from streamcore.errors import CorruptCheckpointError
from streamcore.operators.base import SnapshotContext
from streamcore.serde import msgpack_dumps, msgpack_loads

__all__ = [
    "PendingSnapshot",
    "complete_snapshot",
    "discard_snapshot",
    "materialize_native",
    "native_base",
    "take_snapshot",
    "validate_files",
]

#: the directory of a checkpoint that holds the backend's native files.
NATIVE_DIR = "native"


@dataclass
class PendingSnapshot:
    """What the synchronous part produced; :func:`complete_snapshot` makes it durable."""

    checkpoint_id: int
    kind: str
    directory: Path
    meta: dict[str, Any]
    payloads: list[tuple[str, str, bytes, list[list[Any]]]]
    shareable: Callable[[str], bool] | None
    pause_ms: float
    started: float
    added_shared: list[Path] = field(default_factory=list)
    wait_ms: float = 0.0


def take_snapshot(
    task: CheckpointedTask, checkpoint_id: int, directory: Path, *, kind: str, canonical: bool
) -> PendingSnapshot:
    """The synchronous part: snapshot the task into memory, its native state to ``directory/native``.

    ``directory`` must not exist yet (it is created here).
    """
    started = time.perf_counter()
    directory.mkdir(parents=True)
    image = task.snapshot(SnapshotContext(checkpoint_id, canonical, kind))
    mp = task.max_parallelism
    operators: dict[str, Any] = {}
    payloads = []
    for n, (uid, op_image) in enumerate(image.operators.items()):
        info = image.info.get(uid)
        entry: dict[str, Any] = {
            "type": info.type if info else None,
            "stateful": info.stateful if info else op_image is not None,
            "file": None,
            "states": info.states if info else None,
        }
        if op_image is not None:
            data, index = encode_operator_image(op_image, mp, uid)
            name = f"op-{n}.state"
            entry.update(file=name, size=len(data), crc32=zlib.crc32(data), sections=index)
            payloads.append((uid, name, data, index))
        operators[uid] = entry
    # Positions are copied now: a reader may keep mutating the objects it returned.
    frozen = msgpack_loads(msgpack_dumps([image.sources, image.coordinator, image.watermarks]))
    strategy = task.snapshot_strategy
    native = not canonical and strategy.native
    if native:
        strategy.capture(directory / NATIVE_DIR)
    meta = {
        "format": FORMAT_VERSION,
        "kind": kind,
        "id": checkpoint_id,
        "job": task.job_name,
        "created_ms": int(time.time() * 1000),
        "backend": strategy.backend,
        "canonical": not native,
        "max_parallelism": mp,
        "sources": frozen[0],
        "coordinator": frozen[1],
        "watermarks": frozen[2],
        "operators": operators,
        "native": None,
        "shared": [],
    }
    pause_ms = (time.perf_counter() - started) * 1000
    shareable = strategy.shareable if native else None
    return PendingSnapshot(checkpoint_id, kind, directory, meta, payloads, shareable, pause_ms, started)


def complete_snapshot(
    pending: PendingSnapshot,
    shared_dir: Path | None,
    base: dict[str, dict[str, Any]],
    incremental: bool,
    before_metadata: Callable[[], None] | None = None,
) -> dict[str, Any]:
    """The asynchronous part: write every file, then the metadata last. Returns the metadata.

    ``base`` maps native file names of the previous completed checkpoint to their shared
    file (``{"shared": name, "size": n}``); with ``incremental`` those are reused, not
    stored again.
    """
    directory = pending.directory
    meta = pending.meta
    written = 0
    for _uid, name, data, _index in pending.payloads:
        write_durable(directory / name, data)
        written += len(data)
    size = written
    shared_names: list[str] = []
    shareable = pending.shareable
    if shareable is not None:
        assert shared_dir is not None
        native_dir = directory / NATIVE_DIR
        files = []
        moved = False
        for path in sorted(native_dir.iterdir()):
            fsize = path.stat().st_size
            size += fsize
            if incremental and shareable(path.name):
                prev = base.get(path.name)
                if prev is not None and prev["size"] == fsize and (shared_dir / prev["shared"]).is_file():
                    path.unlink()
                    files.append({"name": path.name, "size": fsize, "shared": prev["shared"]})
                    shared_names.append(prev["shared"])
                    continue
                shared_name = f"{path.stem}-{secrets.token_hex(6)}{path.suffix}"
                target = shared_dir / shared_name
                os.replace(path, target)
                pending.added_shared.append(target)
                moved = True
                written += fsize
                files.append({"name": path.name, "size": fsize, "shared": shared_name})
                shared_names.append(shared_name)
            else:
                fsync_path(path)
                written += fsize
                files.append({"name": path.name, "size": fsize, "crc32": crc32_file(path)})
        fsync_path(native_dir)
        if moved:
            fsync_path(shared_dir)
        meta["native"] = {"backend": meta["backend"], "dir": NATIVE_DIR, "files": files}
    meta["shared"] = sorted(set(shared_names))
    fsync_path(directory)
    meta["stats"] = {
        "size_bytes": size,
        "incremental_bytes": written,
        "shared_files": len(meta["shared"]),
        "pause_ms": pending.pause_ms,
        "wait_ms": pending.wait_ms,
    }
    if before_metadata is not None:
        before_metadata()  # e.g. the task's owner check: a fenced process writes no metadata
    # Step last: the metadata makes the checkpoint exist.
    atomic_write(directory / METADATA_FILE, encode_metadata(meta))
    meta["stats"]["duration_ms"] = (time.perf_counter() - pending.started) * 1000
    return meta


def discard_snapshot(pending: PendingSnapshot | None, directory: Path) -> None:
    """Remove a failed snapshot's directory and the shared files it added."""
    if pending is not None:
        for path in pending.added_shared:
            try:
                path.unlink()
            except OSError:
                pass
    shutil.rmtree(directory, ignore_errors=True)


def native_base(meta: dict[str, Any] | None) -> dict[str, dict[str, Any]]:
    """Native file name -> ``{"shared", "size"}`` of a checkpoint's shared files (the next one's base)."""
    if not meta or not meta.get("native"):
        return {}
    return {f["name"]: f for f in meta["native"]["files"] if "shared" in f}


def shared_dir_of(checkpoint_dir: Path) -> Path:
    """The ``shared/`` directory beside a ``chk-<id>`` directory."""
    return checkpoint_dir.parent / SHARED_DIR


# -- validation and restore -----------------------------------------------------------------------
def validate_files(meta: dict[str, Any], directory: Path, *, checksums: bool = True) -> None:
    """Check that every file the metadata lists exists with its size (and checksum for private files).

    Raises:
        CorruptCheckpointError: naming the first file that fails.
    """
    for uid, entry in meta["operators"].items():
        if entry.get("file") is None:
            continue
        path = directory / entry["file"]
        _check_file(path, entry["size"], entry["crc32"] if checksums else None, f"state of operator {uid!r}")
    native = meta.get("native")
    if native:
        shared = shared_dir_of(directory)
        what = f"{native['backend']} file"
        for f in native["files"]:
            if "shared" in f:
                _check_file(shared / f["shared"], f["size"], None, f"shared {what}")
            else:
                path = directory / native["dir"] / f["name"]
                _check_file(path, f["size"], f.get("crc32") if checksums else None, what)


def _check_file(path: Path, size: int, crc: int | None, what: str) -> None:
    try:
        actual = path.stat().st_size
    except FileNotFoundError as exc:
        msg = f"{what} {path} is missing; the checkpoint cannot be restored"
        raise CorruptCheckpointError(msg) from exc
    if actual != size:
        msg = f"{what} {path} has {actual} bytes, the metadata says {size}: it is truncated or altered"
        raise CorruptCheckpointError(msg)
    if crc is not None and crc32_file(path) != crc:
        msg = f"{what} {path} fails its checksum; the file is corrupted"
        raise CorruptCheckpointError(msg)


def materialize_native(meta: dict[str, Any], directory: Path, target: Path) -> None:
    """Put a checkpoint's native files back into a working directory ``target`` (must not exist).

    Shared files are hard-linked (copied where the file system refuses); private files are
    copied, because the backend may change them (RocksDB appends to its MANIFEST).
    """
    native = meta["native"]
    shared = shared_dir_of(directory)
    tmp = target.with_name(f".{target.name}.restoring")
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.mkdir(parents=True)
    try:
        for f in native["files"]:
            if "shared" in f:
                link_or_copy(shared / f["shared"], tmp / f["name"])
            else:
                shutil.copyfile(directory / native["dir"] / f["name"], tmp / f["name"])
        os.replace(tmp, target)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
