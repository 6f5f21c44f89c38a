"""Restoring a job: choose the checkpoint or savepoint, validate it, rebuild state, seek sources.

``restore_from`` is one of:

* ``"latest"``: the newest complete checkpoint of the configured checkpoint directory.
  Checkpoints without metadata (a killed run's partial files) are skipped. No checkpoint
  at all means a fresh start (:func:`plan_restore` returns ``None``; logged), so one
  command serves the first start and every restart.
* a path: a ``chk-<id>`` or ``sp-<id>`` directory, its ``_metadata`` file, or a checkpoint
  directory (its newest complete checkpoint).
* a :class:`RestoreFrom`, to allow state that the job no longer has a place for, or to
  fall back past a corrupt newest checkpoint.

When the newest complete checkpoint fails validation (a truncated or missing file), the
previous one is only restored when that cannot break exactly-once output: a job without
exactly-once sinks falls back with a warning; a job with one fails with an error naming
the corrupt file, because its sinks already committed the output of the corrupt
checkpoint and would write those records again. ``RestoreFrom("latest", fall_back=True)``
accepts that cost, with a warning that says so.

Restoring has two steps, called by the runtime:

1. :meth:`RestorePlan.prepare` (before the state backend opens): put a native
   checkpoint's files back into the backend's working directory (RocksDB: hard links of
   shared SST files, copies of the private ones).
2. :meth:`RestorePlan.apply` (after sources open, before operators open): check that the
   uids of the job's stateful sources and operators match the checkpoint's, then hand the
   task a :class:`~streamcore.checkpoint.protocol.TaskImage` (split positions, operator
   images, watermarks; two-phase-commit sinks commit their pending transactions there).
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from streamcore.checkpoint.protocol import CheckpointedTask, TaskImage
from streamcore.checkpoint.snapshot import materialize_native, validate_files
from streamcore.checkpoint.storage import (
    METADATA_FILE,
    CheckpointStorage,
    join_operator_image,
    read_metadata,
    read_sections,
)
from streamcore.errors import ConfigurationError, CorruptCheckpointError, RestoreError
from streamcore.state.snapshot_strategy import SnapshotStrategy

__all__ = ["RestoreFrom", "RestorePlan", "find_latest", "plan_restore", "resolve_path"]

logger = logging.getLogger("streamcore.checkpoint")


@dataclass(frozen=True)
class RestoreFrom:
    """``restore_from=RestoreFrom(path, ...)``: restore with options.

    Args:
        path: as ``restore_from`` (``"latest"``, a checkpoint or savepoint, or a checkpoint directory).
        allow_non_restored_state: restore despite uid changes of stateful operators: state of
            operators the job no longer has is dropped, and stateful operators (or sources)
            the checkpoint does not know start empty. Operators without state may always
            be added or removed.
        fall_back: when the newest checkpoint is corrupt, restore the newest valid older one
            even though the job has exactly-once sinks: they write again the records they
            committed after it (duplicates).
    """

    path: str | Path
    allow_non_restored_state: bool = False
    fall_back: bool = False


@dataclass
class RestorePlan:
    """A validated checkpoint or savepoint, ready to be restored into a job."""

    path: Path
    meta: dict[str, Any]
    backend_kind: str
    allow_non_restored_state: bool = False
    warnings: list[str] = field(default_factory=list)

    @property
    def kind(self) -> str:
        """``"checkpoint"`` or ``"savepoint"``."""
        return str(self.meta["kind"])

    @property
    def checkpoint_id(self) -> int:
        """The id of the checkpoint or savepoint."""
        return int(self.meta["id"])

    @property
    def needs_native(self) -> bool:
        """Whether the backend's working state is rebuilt from native files (else it starts empty)."""
        native = self.meta.get("native")
        return bool(native) and native["backend"] == self.backend_kind

    # -- step 1 --------------------------------------------------------------------------
    def prepare(self, strategy: SnapshotStrategy) -> None:
        """Put the native files back where the backend opens them (native checkpoints only)."""
        if not self.needs_native:
            return
        target = strategy.restore_dir()
        try:
            materialize_native(self.meta, self.path, target)
        except OSError as exc:
            msg = f"cannot rebuild the {self.backend_kind} state directory {target} from {self.path}: {exc}"
            raise RestoreError(msg) from exc

    # -- step 2 --------------------------------------------------------------------------
    def apply(self, task: CheckpointedTask) -> None:
        """Check uids, then restore the task's sources, operators and watermarks.

        Raises:
            RestoreError: another max parallelism, or uids of stateful operators that do not
                match (unless allowed).
        """
        meta = self.meta
        if meta["max_parallelism"] != task.max_parallelism:
            msg = (
                f"{self.path} was taken with max_parallelism={meta['max_parallelism']}, the job has "
                f"{task.max_parallelism}; key groups would move: use the same max_parallelism"
            )
            raise RestoreError(msg)
        job = task.uids()
        known = set(meta["sources"]) | set(meta["operators"])
        with_state = set(meta["sources"]) | {u for u, e in meta["operators"].items() if e.get("file")}
        dropped = sorted(with_state - set(job))
        new = sorted(u for u, stateful in job.items() if stateful and u not in known)
        if (dropped or new) and not self.allow_non_restored_state:
            parts = []
            if dropped:
                parts.append(f"the {self.kind} has state of uids {dropped} that the job does not have")
            if new:
                parts.append(f"the job has stateful uids {new} that the {self.kind} does not know")
            msg = (
                f"cannot restore {self.path}: {'; '.join(parts)}. Keep operator uids stable with .uid(...), "
                "or pass restore_from=RestoreFrom(path, allow_non_restored_state=True) to drop that "
                "state and start those operators empty"
            )
            raise RestoreError(msg)
        operators = {}
        for uid, entry in meta["operators"].items():
            if uid in job and entry.get("file") is not None:
                operators[uid] = load_operator_image(self.path, entry)
        image = TaskImage(
            sources={u: st for u, st in meta["sources"].items() if u in job},
            operators=operators,
            watermarks={u: wm for u, wm in (meta.get("watermarks") or {}).items() if u in job},
            coordinator=meta.get("coordinator"),
        )
        task.restore(image)
        logger.info("job %r restored from %s %s", task.job_name, self.kind, self.path)


def load_operator_image(directory: Path, entry: dict[str, Any]) -> Any:
    """Read and validate one operator's state file; returns its image."""
    sections = read_sections(
        directory / entry["file"], entry["sections"], size=entry["size"], crc32=entry["crc32"]
    )
    return join_operator_image(sections)


# -- choosing ------------------------------------------------------------------------------------
def resolve_path(path: str | Path) -> tuple[Path, bool]:
    """``(directory, is_root)``: a checkpoint/savepoint directory, or a checkpoint root to search.

    Raises:
        RestoreError: nothing restorable at ``path``.
    """
    p = Path(path)
    if p.name == METADATA_FILE and p.is_file():
        return p.parent, False
    if (p / METADATA_FILE).exists():
        return p, False
    if p.is_dir() and (CheckpointStorage(p).list() or (p / "shared").is_dir()):
        return p, True
    if p.is_dir() and p.name.startswith(("chk-", "sp-")):
        msg = f"{p} has no {METADATA_FILE}: it is an incomplete checkpoint (a killed run's partial files)"
        raise CorruptCheckpointError(msg)
    msg = f"nothing to restore at {p}: give a chk-<id> or sp-<id> directory, or a checkpoint directory"
    raise RestoreError(msg)


def find_latest(
    root: Path,
    job_name: str | None,
    warnings: list[str] | None = None,
    *,
    exactly_once_sinks: list[str] | None = None,
    fall_back: bool = False,
) -> tuple[Path, dict[str, Any]] | None:
    """The newest complete, valid checkpoint under ``root`` (None if there is none).

    When the newest fails validation, older ones are tried only if the job has no
    ``exactly_once_sinks`` (uids) or ``fall_back`` accepts their duplicates; each skip is
    logged as a warning and kept in ``warnings``.

    Raises:
        RestoreError: the newest readable checkpoint belongs to another job.
        CorruptCheckpointError: the newest checkpoint is corrupt and falling back could
            duplicate exactly-once output, or no checkpoint passes validation.
    """
    complete = [c for c in CheckpointStorage(root).list() if c.complete]
    last_error: CorruptCheckpointError | None = None
    for c in reversed(complete):
        try:
            meta = read_metadata(c.path)
            _check_job(meta, c.path, job_name)
            validate_files(meta, c.path)
        except CorruptCheckpointError as exc:
            if exactly_once_sinks and not fall_back:
                msg = (
                    f"the newest checkpoint {c.path} is corrupt ({exc}). Restoring an older one would "
                    f"make the exactly-once sinks {exactly_once_sinks} write again the records they "
                    "committed after it (duplicates). Repair or restore the file; or, to accept the "
                    "duplicates, pass restore_from=RestoreFrom('latest', fall_back=True)"
                )
                raise CorruptCheckpointError(msg) from exc
            cost = (
                f"; exactly-once sinks {exactly_once_sinks} write again the records they committed after it"
                if exactly_once_sinks
                else ""
            )
            text = f"skipping corrupt checkpoint {c.path}: {exc}; falling back to the previous one{cost}"
            logger.warning(text)
            if warnings is not None:
                warnings.append(text)
            last_error = exc
            continue
        return c.path, meta
    if last_error is not None:
        msg = f"no checkpoint in {root} passes validation (the newest failure: {last_error})"
        raise CorruptCheckpointError(msg) from last_error
    return None


def _check_job(meta: dict[str, Any], path: Path, job_name: str | None) -> None:
    if job_name is not None and meta.get("kind") == "checkpoint" and meta.get("job") != job_name:
        msg = (
            f"{path} is a checkpoint of job {meta.get('job')!r}, not of {job_name!r}; restore a job "
            "from its own checkpoints (or move state between jobs with a savepoint)"
        )
        raise RestoreError(msg)


def plan_restore(
    restore_from: Any,
    checkpoint_config: Any,
    job_name: str,
    backend_kind: str,
    exactly_once_sinks: list[str] | None = None,
) -> RestorePlan | None:
    """Choose and validate what to restore; ``None`` means a fresh start (``"latest"``, nothing yet).

    ``exactly_once_sinks`` are the uids of the job's exactly-once sinks: with any, a corrupt
    newest checkpoint is an error unless ``RestoreFrom(..., fall_back=True)``.

    Raises:
        ConfigurationError: ``"latest"`` without checkpointing, or a bad ``restore_from``.
        RestoreError: another job's checkpoint, nothing at the path, or a backend mismatch.
        CorruptCheckpointError: metadata or a file fails validation (names the file).
    """
    allow = fall_back = False
    if isinstance(restore_from, RestoreFrom):
        allow = restore_from.allow_non_restored_state
        fall_back = restore_from.fall_back
        restore_from = restore_from.path
    if not isinstance(restore_from, (str, Path)):
        msg = f"restore_from must be 'latest', a path or a RestoreFrom, got {type(restore_from).__name__}"
        raise ConfigurationError(msg)
    warnings: list[str] = []
    if restore_from == "latest":
        if checkpoint_config is None:
            msg = "restore_from='latest' needs enable_checkpointing(directory) to know where to look"
            raise ConfigurationError(msg)
        root = Path(checkpoint_config.directory)
        if checkpoint_config.remote is not None:
            from streamcore.checkpoint.remote import RemoteStore

            store = RemoteStore(checkpoint_config.remote, dict(checkpoint_config.storage_options or {}))
            if store.download(root):
                logger.info("downloaded the checkpoints of %s into %s", checkpoint_config.remote, root)
        if not root.exists():
            logger.info("no checkpoint directory %s yet: job %r starts fresh", root, job_name)
            return None
        found = find_latest(
            root, job_name, warnings, exactly_once_sinks=exactly_once_sinks, fall_back=fall_back
        )
        if found is None:
            # A task of a consumer-group job that never checkpointed holds only its owner record.
            fresh_task = (root / "_owner").exists() and not CheckpointStorage(root).list()
            log = logger.info if fresh_task else logger.warning
            log("checkpoint directory %s holds no complete checkpoint: job %r starts fresh", root, job_name)
            return None
        path, meta = found
    else:
        path, is_root = resolve_path(restore_from)
        if is_root:
            found = find_latest(
                path, job_name, warnings, exactly_once_sinks=exactly_once_sinks, fall_back=fall_back
            )
            if found is None:
                msg = f"{path} holds no complete checkpoint to restore"
                raise RestoreError(msg)
            path, meta = found
        else:
            meta = read_metadata(path)
            _check_job(meta, path, job_name)
            validate_files(meta, path)
    native = meta.get("native")
    if native and native["backend"] != backend_kind:
        msg = (
            f"{path} is a native {native['backend']} checkpoint and the job uses the {backend_kind} "
            "backend; to switch backends, take a savepoint (handle.trigger_savepoint()) and restore from it"
        )
        raise RestoreError(msg)
    return RestorePlan(path, meta, backend_kind, allow, warnings)
