"""Restoring a job: choose the checkpoint or savepoint, validate it, rebuild state, seek sources.

``restore_from`` is one of:

* ``"latest"``: the newest complete checkpoint of the configured checkpoint directory.
  Checkpoints without metadata (a killed run's partial files) are skipped; one whose files
  fail validation is skipped with a warning (logged, and kept in
  :attr:`RestorePlan.warnings`) and the previous one is tried. No checkpoint at all means a
  fresh start (:func:`plan_restore` returns ``None``), so one command serves the first start
  and every restart.
* a path: a ``chk-<id>`` or ``sp-<id>`` directory, its ``_metadata`` file, or a checkpoint
  directory (its newest complete checkpoint).
* a :class:`RestoreFrom`, to allow state that the job no longer has a place for.

Restoring has three steps, called by the executor:

1. :meth:`RestorePlan.prepare` (before the state backend opens): rebuild the RocksDB
   working directory ``<state_dir>/db`` from the checkpoint's files (hard links of shared
   SST files, copies of the private ones).
2. :meth:`RestorePlan.apply` (after sources open, before operators open): check that
   operator and source uids match, seek every source split to its position, and hand each
   operator its image (two-phase-commit sinks commit their pending transactions there).
"""

from __future__ import annotations

import logging
import shutil
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from streamcore.checkpoint.snapshot import materialize_rocksdb, validate_files
from streamcore.checkpoint.storage import (
    METADATA_FILE,
    CheckpointStorage,
    join_operator_image,
    read_metadata,
    read_sections,
)
from streamcore.errors import ConfigurationError, CorruptCheckpointError, RestoreError

__all__ = ["RestoreFrom", "RestorePlan", "database_dir", "find_latest", "plan_restore", "resolve_path"]

logger = logging.getLogger("streamcore.checkpoint")

#: where the RocksDB backend keeps its database inside ``state_dir``.
DATABASE_DIR = "db"


def database_dir(state_dir: Path) -> Path:
    """The RocksDB working database of a job: ``<state_dir>/db``."""
    return Path(state_dir) / DATABASE_DIR


@dataclass(frozen=True)
class RestoreFrom:
    """``restore_from=RestoreFrom(path, allow_non_restored_state=True)``: restore despite uid changes.

    With ``allow_non_restored_state`` state of operators the job no longer has is dropped
    and operators (or sources) the checkpoint does not know start empty.
    """

    path: str | Path
    allow_non_restored_state: bool = False


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
    def needs_state_dir(self) -> bool:
        """Whether the state directory is rebuilt from native RocksDB files (else it starts empty)."""
        return bool(self.meta.get("rocksdb")) and self.backend_kind == "rocksdb"

    # -- step 1 --------------------------------------------------------------------------
    def prepare(self, state_factory: Any) -> None:
        """Rebuild ``<state_dir>/db`` from the checkpoint (RocksDB native checkpoints only)."""
        if not self.needs_state_dir:
            return
        target = database_dir(state_factory.state_dir)
        if target.exists():
            from streamcore.state.rocksdb.db import RocksDBDatabase

            if (target / "CURRENT").exists():
                RocksDBDatabase.destroy(target)  # refuses a directory a running job has locked
            shutil.rmtree(target, ignore_errors=True)
        try:
            materialize_rocksdb(self.meta, self.path, target)
        except OSError as exc:
            msg = f"cannot rebuild the RocksDB state directory {target} from {self.path}: {exc}"
            raise RestoreError(msg) from exc

    # -- step 2 --------------------------------------------------------------------------
    def apply(self, executor: Any) -> None:
        """Check uids, seek sources, restore operator images.

        Raises:
            RestoreError: another max parallelism, or uids that do not match (unless allowed).
        """
        meta = self.meta
        plan = executor.plan
        if meta["max_parallelism"] != executor.max_parallelism:
            msg = (
                f"{self.path} was taken with max_parallelism={meta['max_parallelism']}, the job has "
                f"{executor.max_parallelism}; key groups would move: use the same max_parallelism"
            )
            raise RestoreError(msg)
        job_sources = {s.uid for s in plan.sources}
        job_ops = {op.uid for op in plan.operators}
        dropped = sorted((set(meta["sources"]) - job_sources) | (set(meta["operators"]) - job_ops))
        new = sorted((job_sources - set(meta["sources"])) | (job_ops - set(meta["operators"])))
        if (dropped or new) and not self.allow_non_restored_state:
            parts = []
            if dropped:
                parts.append(f"the {self.kind} has state for uids {dropped} that the job does not have")
            if new:
                parts.append(f"the job has uids {new} that the {self.kind} does not know")
            msg = (
                f"cannot restore {self.path}: {'; '.join(parts)}. Keep operator uids stable with .uid(...), "
                "or pass restore_from=RestoreFrom(path, allow_non_restored_state=True)"
            )
            raise RestoreError(msg)
        for src in plan.sources:
            image = meta["sources"].get(src.uid)
            if image is not None:
                src.restore_state(image)
        for op in plan.operators:
            entry = meta["operators"].get(op.uid)
            if entry is None or entry.get("file") is None:
                continue
            image = load_operator_image(self.path, entry)
            op.restore_state(image)
        coord = executor.coordinator
        if coord is not None and meta.get("coordinator") is not None and hasattr(coord, "restore"):
            coord.restore(meta["coordinator"])
        logger.info("job %r restored from %s %s", executor.job_name, self.kind, self.path)


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
    root: Path, job_name: str | None, warnings: list[str] | None = None
) -> tuple[Path, dict[str, Any]] | None:
    """The newest complete, valid checkpoint under ``root`` (None if there is none).

    Raises:
        RestoreError: the newest readable checkpoint belongs to another job.
        CorruptCheckpointError: checkpoints exist but none passes validation.
    """
    complete = [c for c in CheckpointStorage(root).list() if c.complete]
    last_error: CorruptCheckpointError | None = None
    for c in reversed(complete):
        try:
            meta = read_metadata(c.path)
            _check_job(meta, c.path, job_name)
            validate_files(meta, c.path)
        except CorruptCheckpointError as exc:
            text = f"skipping checkpoint {c.path}: {exc}; falling back to the previous one"
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
    restore_from: Any, checkpoint_config: Any, job_name: str, backend_kind: str
) -> RestorePlan | None:
    """Choose and validate what to restore; ``None`` means a fresh start (``"latest"``, nothing yet).

    Raises:
        ConfigurationError: ``"latest"`` without checkpointing, or a bad ``restore_from``.
        RestoreError: another job's checkpoint, nothing at the path, or a backend mismatch.
        CorruptCheckpointError: metadata or a file fails validation (names the file).
    """
    allow = False
    if isinstance(restore_from, RestoreFrom):
        allow = restore_from.allow_non_restored_state
        restore_from = restore_from.path
    if not isinstance(restore_from, (str, Path)):
        msg = f"restore_from must be 'latest', a path or a RestoreFrom, got {type(restore_from).__name__}"
        raise ConfigurationError(msg)
    warnings: list[str] = []
    if restore_from == "latest":
        if checkpoint_config is None:
            msg = "restore_from='latest' needs enable_checkpointing(directory) to know where to look"
            raise ConfigurationError(msg)
        found = find_latest(Path(checkpoint_config.directory), job_name, warnings)
        if found is None:
            logger.info(
                "no completed checkpoint in %s: job %r starts fresh", checkpoint_config.directory, job_name
            )
            return None
        path, meta = found
    else:
        path, is_root = resolve_path(restore_from)
        if is_root:
            found = find_latest(path, job_name, warnings)
            if found is None:
                msg = f"{path} holds no complete checkpoint to restore"
                raise RestoreError(msg)
            path, meta = found
        else:
            meta = read_metadata(path)
            _check_job(meta, path, job_name)
            validate_files(meta, path)
    if meta.get("rocksdb") and backend_kind != "rocksdb":
        msg = (
            f"{path} is a native RocksDB checkpoint and the job uses the {backend_kind} backend; "
            "to switch backends, take a savepoint (handle.trigger_savepoint()) and restore from it"
        )
        raise RestoreError(msg)
    return RestorePlan(path, meta, backend_kind, allow, warnings)
