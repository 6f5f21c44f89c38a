"""The checkpoint coordinator: when to checkpoint, ids, completion, retention, failures, metrics.

It decides and records; the runtime acts. Between batches, when nothing is in flight
(so every checkpoint is a consistent cut), the runtime asks :meth:`CheckpointCoordinator.is_due`
and, if so, resets its record counter and calls :meth:`~CheckpointCoordinator.trigger` with
its task (:class:`~streamcore.checkpoint.protocol.CheckpointedTask`); then it asks
:meth:`~CheckpointCoordinator.take_completed` which checkpoints completed since it last
asked, and notifies its operators of each. A checkpoint commits in these steps (the
``# Step N`` comments in the code follow them):

1. Assign the next id.
2. Synchronous part, the job paused: snapshot every source position, operator image and
   watermark (sinks pre-commit their transaction here), and let a backend with a native
   snapshot write it (:func:`~streamcore.checkpoint.snapshot.take_snapshot`).
3. Asynchronous part, in a background thread when ``asynchronous``: write the operator
   files, move new shareable native files to ``shared/``, write the metadata last and
   atomically (:func:`~streamcore.checkpoint.snapshot.complete_snapshot`).
4. Register the checkpoint and apply retention: keep the newest ``retain`` completed
   checkpoints and delete shared files that none of them references.
5. Report it completed (:meth:`~CheckpointCoordinator.take_completed`): the runtime tells
   every operator (sinks commit).

At most one checkpoint is in flight; a trigger that comes due meanwhile waits for it.
A failure in step 2 or 3 aborts that checkpoint, removes its files and the shared files
it added, and the job goes on unless more than ``tolerable_failures`` checkpoints failed
in a row. At the end of a bounded job a final checkpoint is always taken, so that
two-phase-commit sinks commit their last transaction exactly once.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from concurrent.futures import Future, ThreadPoolExecutor
from pathlib import Path
from typing import Any

from streamcore.checkpoint.config import CheckpointConfig
from streamcore.checkpoint.protocol import CheckpointedTask
from streamcore.checkpoint.snapshot import (
    PendingSnapshot,
    complete_snapshot,
    discard_snapshot,
    native_base,
    take_snapshot,
)
from streamcore.checkpoint.storage import (
    CHECKPOINT_PREFIX,
    CheckpointStorage,
    fsync_path,
    read_metadata,
    remove_checkpoint_dir,
)
from streamcore.errors import CheckpointError, CorruptCheckpointError

__all__ = ["CheckpointCoordinator"]

logger = logging.getLogger("streamcore.checkpoint")

#: completed checkpoints whose figures :meth:`CheckpointCoordinator.metrics` keeps.
HISTORY = 100


class CheckpointCoordinator:
    """Triggers, completes and retains the checkpoints of one job run (or of one task).

    ``fence`` is called before each checkpoint's metadata is written (in the writer
    thread); it raises :class:`~streamcore.errors.TaskFencedError` when another process
    took the task over, so a zombie never completes a checkpoint.
    """

    def __init__(
        self, config: CheckpointConfig, job_name: str, fence: Callable[[], None] | None = None
    ) -> None:
        self.config = config
        self.fence = fence
        self.remote: Any = None
        if config.remote is not None:
            from streamcore.checkpoint.remote import RemoteStore

            self.remote = RemoteStore(config.remote, dict(config.storage_options or {}))
        self.job_name = job_name
        self.directory: Path = config.directory
        self.storage = CheckpointStorage(config.directory)
        self.completed_ids: list[int] = []
        self._next_id = 1
        self._base: dict[str, dict[str, Any]] = {}
        self._refs: dict[int, list[str]] = {}
        self._pinned: int | None = None
        self._inflight: tuple[PendingSnapshot, Future[dict[str, Any]]] | None = None
        self._pool: ThreadPoolExecutor | None = None
        self._last_ms: int | None = None
        self._consecutive_failures = 0
        self._failed = 0
        self._history: list[dict[str, Any]] = []
        self._completed_unreported: list[int] = []

    # -- lifecycle ----------------------------------------------------------------------
    def attach(
        self,
        backend: str,
        now_ms: int,
        restored: dict[str, Any] | None = None,
        restored_dir: Path | None = None,
    ) -> None:
        """Prepare the directory: drop leftovers of a killed run, find the next id and the base.

        Args:
            backend: the job's state backend (a native checkpoint of it is an incremental base).
            now_ms: the job clock (the interval starts here).
            restored: metadata of the checkpoint or savepoint the job restored, and
                ``restored_dir`` its directory.

        Raises:
            CheckpointError: the directory holds checkpoints of another job.
        """
        try:
            self.storage.ensure()
        except OSError as exc:
            msg = f"cannot create the checkpoint directory {self.directory}: {exc}"
            raise CheckpointError(msg) from exc
        found = self.storage.list()
        ids = [c.id for c in found]
        if self.remote is not None:
            self.remote.check_writable()
            ids.extend(self.remote.complete_ids())
        if restored is not None:
            ids.append(int(restored["id"]))
        self._next_id = max(ids, default=0) + 1
        for c in found:
            if not c.complete:
                continue
            try:
                meta = read_metadata(c.path)
            except CorruptCheckpointError:
                continue
            if meta.get("job") != self.job_name:
                msg = (
                    f"checkpoint directory {self.directory} holds {c.path.name} of job {meta.get('job')!r}, "
                    f"not of {self.job_name!r}; give every job its own checkpoint directory"
                )
                raise CheckpointError(msg)
            self._refs[c.id] = list(meta.get("shared", ()))
        for c in found:
            if not c.complete:
                # A checkpoint without metadata never existed: a killed run's partial files.
                remove_checkpoint_dir(c.path)
        if (
            restored is not None
            and restored_dir is not None
            and restored.get("kind") == "checkpoint"
            and restored_dir is not None
            and Path(restored_dir).parent.resolve() == self.directory.resolve()
            and (restored.get("native") or {}).get("backend") == backend
        ):
            # The restored working state holds exactly the native files of that checkpoint:
            # the next incremental checkpoint reuses them. Pinned until a newer one completes.
            self._base = native_base(restored)
            self._pinned = int(restored["id"])
        self._retain()
        self._last_ms = now_ms

    def is_due(self, now_ms: int, records_since_last: int) -> bool:
        """Whether a checkpoint is due (called between batches); also collects a finished one.

        ``records_since_last`` counts records read since the runtime last triggered.
        """
        if self._inflight is not None and self._inflight[1].done():
            self._finish_inflight()
        cfg = self.config
        if self._last_ms is None:
            self._last_ms = now_ms
        return (cfg.every_records is not None and records_since_last >= cfg.every_records) or (
            cfg.every_ms is not None and now_ms - self._last_ms >= cfg.every_ms
        )

    def trigger(self, task: CheckpointedTask, now_ms: int, *, wait: bool = False) -> int | None:
        """Take a checkpoint of ``task`` now; returns its id, or None if it failed (within tolerance).

        A checkpoint still in flight is waited for first: the interval is a promise. With
        ``wait`` (or ``asynchronous=False``) it returns once the checkpoint completed.

        Raises:
            CheckpointError: more consecutive failures than ``tolerable_failures``.
        """
        return self._checkpoint(task, now_ms, wait=wait, tolerate=True)

    def take_completed(self) -> list[int]:
        """Ids of the checkpoints that completed since the last call, oldest first.

        The runtime notifies its operators of each (two-phase-commit sinks commit).
        """
        ids, self._completed_unreported = self._completed_unreported, []
        return ids

    def on_job_finished(self, task: CheckpointedTask, now_ms: int) -> list[int]:
        """End of a bounded job: take the final checkpoint; returns the ids to notify.

        Raises:
            CheckpointError: the final checkpoint failed (a restart finishes the job again).
        """
        try:
            self._checkpoint(task, now_ms, wait=True, tolerate=False)
        finally:
            self.close()
        return self.take_completed()

    def _checkpoint(self, task: CheckpointedTask, now_ms: int, *, wait: bool, tolerate: bool) -> int | None:
        waited = time.perf_counter()
        self._wait_inflight()
        waited = (time.perf_counter() - waited) * 1000
        # Step 1: the id.
        cid = self._next_id
        self._next_id += 1
        self._last_ms = now_ms
        directory = self.storage.checkpoint_dir(cid)
        pending: PendingSnapshot | None = None
        try:
            # Step 2: the synchronous part.
            pending = take_snapshot(task, cid, directory, kind="checkpoint", canonical=False)
            pending.wait_ms = waited
        except Exception as exc:
            discard_snapshot(pending, directory)
            self._on_failure(cid, exc, tolerate)
            return None
        if self.config.asynchronous and not wait:
            if self._pool is None:
                self._pool = ThreadPoolExecutor(max_workers=1, thread_name_prefix="streamcore-checkpoint")
            self._inflight = (pending, self._pool.submit(self._complete, pending))
            return cid
        try:
            meta = self._complete(pending)
        except Exception as exc:
            self._on_failure(cid, exc, tolerate)
            return None
        self._on_success(meta)
        return cid

    def next_savepoint_id(self) -> int:
        """An id for a savepoint (ids are shared with checkpoints); waits for one in flight."""
        self._wait_inflight()
        sid = self._next_id
        self._next_id += 1
        return sid

    def close(self) -> None:
        """Wait for a checkpoint still being written (recorded, not notified) and stop the writer.

        Called when the job ends for any reason; a stopped or failed job's operators are not
        told: its sinks' transactions are committed by the next run's restore.
        """
        if self._inflight is not None:
            pending, future = self._inflight
            self._inflight = None
            if future.exception() is None:
                meta = future.result()
                self.completed_ids.append(pending.checkpoint_id)
                self._base = native_base(meta)
                self._history.append(dict(meta["stats"], id=pending.checkpoint_id))
                self._log_completed(self._history[-1])
            else:
                self._failed += 1
        if self._pool is not None:
            self._pool.shutdown(wait=True)
            self._pool = None

    # -- completion ------------------------------------------------------------------------
    def _complete(self, pending: PendingSnapshot) -> dict[str, Any]:
        try:
            # Step 3: files, then the metadata last.
            meta = complete_snapshot(
                pending, self.storage.shared, self._base, self.config.incremental, before_metadata=self.fence
            )
            if self.remote is not None:
                if self.fence is not None:
                    self.fence()
                meta["stats"]["uploaded_bytes"] = self.remote.upload(pending.directory, meta)
        except BaseException:
            discard_snapshot(pending, pending.directory)
            raise
        # Step 4: registry and retention (a failure here never undoes a durable checkpoint).
        self._refs[pending.checkpoint_id] = list(meta["shared"])
        self._pinned = None
        try:
            self._retain()
        except OSError as exc:
            logger.warning("checkpoint retention in %s failed (retried next time): %s", self.directory, exc)
        if self.remote is not None:
            self.remote.prune(self.config.retain, self._pinned)
        return meta

    def _wait_inflight(self) -> None:
        if self._inflight is not None:
            self._inflight[1].exception()  # blocks until the background part ends
            self._finish_inflight()

    def _finish_inflight(self) -> None:
        assert self._inflight is not None
        pending, future = self._inflight
        self._inflight = None
        exc = future.exception()
        if exc is not None:
            self._on_failure(pending.checkpoint_id, exc)
        else:
            self._on_success(future.result())

    def _on_success(self, meta: dict[str, Any]) -> None:
        cid = int(meta["id"])
        self.completed_ids.append(cid)
        self._base = native_base(meta)
        self._consecutive_failures = 0
        stats = dict(meta["stats"], id=cid)
        self._history.append(stats)
        del self._history[:-HISTORY]
        self._log_completed(stats)
        # Step 5: report it; the runtime tells the operators (two-phase-commit sinks commit).
        self._completed_unreported.append(cid)

    def _log_completed(self, stats: dict[str, Any]) -> None:
        logger.info(
            "checkpoint %d of job %r completed in %.1f ms (pause %.1f ms): %d bytes, %d written",
            stats["id"],
            self.job_name,
            stats.get("duration_ms") or 0.0,
            stats.get("pause_ms") or 0.0,
            stats.get("size_bytes") or 0,
            stats.get("incremental_bytes") or 0,
            extra={"checkpoint_id": stats["id"], "job": self.job_name},
        )

    def _on_failure(self, cid: int, exc: BaseException, tolerate: bool = True) -> None:
        self._failed += 1
        self._consecutive_failures += 1
        tolerable = self.config.tolerable_failures
        if not tolerate or self._consecutive_failures > tolerable:
            why = (
                "the final checkpoint must complete"
                if not tolerate
                else (f"{self._consecutive_failures} consecutive failures, tolerable_failures={tolerable}")
            )
            latest = self.completed_ids[-1] if self.completed_ids else self._pinned
            resume = (
                f"it continues from checkpoint {latest}"
                if latest is not None
                else "no checkpoint of it has completed, so it starts from the beginning"
            )
            msg = (
                f"checkpoint {cid} of job {self.job_name!r} failed ({type(exc).__name__}: {exc}); {why}, "
                f"so the job fails. Fix the cause and run the job again with restore_from='latest': {resume}"
            )
            raise CheckpointError(msg) from exc
        logger.warning("checkpoint %d of job %r failed and was discarded: %s", cid, self.job_name, exc)

    def _retain(self) -> None:
        """Keep the newest ``retain`` completed checkpoints (and a pinned one); delete the rest."""
        ids = sorted(self._refs)
        keep = set(ids[-self.config.retain :])
        if self._pinned is not None and self._pinned in self._refs:
            keep.add(self._pinned)
        oldest_kept = min(keep, default=None)
        for c in self.storage.list():
            if c.id in keep or (oldest_kept is not None and c.id > oldest_kept):
                continue
            if c.id in self._refs or c.complete:
                remove_checkpoint_dir(c.path)
                self._refs.pop(c.id, None)
        referenced = {name for cid in keep for name in self._refs.get(cid, ())}
        removed = False
        for name in self.storage.shared_files() - referenced:
            try:
                (self.storage.shared / name).unlink()
                removed = True
            except FileNotFoundError:
                pass
        if removed:
            fsync_path(self.storage.shared)

    # -- metrics -----------------------------------------------------------------------------
    def metrics(self) -> dict[str, Any]:
        """Checkpoint figures: counts, the last completed one's pause, duration, sizes; a history.

        ``pause_ms`` is the synchronous part (the job stopped for the snapshot); ``wait_ms``
        the time a due checkpoint waited for the previous one to finish writing (also a stall).
        """
        last = self._history[-1] if self._history else {}
        return {
            "completed": len(self.completed_ids),
            "failed": self._failed,
            "consecutive_failures": self._consecutive_failures,
            "in_progress": self._inflight is not None,
            "last_completed_id": self.completed_ids[-1] if self.completed_ids else None,
            "last_pause_ms": last.get("pause_ms"),
            "last_wait_ms": last.get("wait_ms"),
            "last_duration_ms": last.get("duration_ms"),
            "last_size_bytes": last.get("size_bytes"),
            "last_incremental_bytes": last.get("incremental_bytes"),
            "shared_files": last.get("shared_files"),
            "history": [dict(h) for h in self._history],
        }

    def __repr__(self) -> str:
        return f"CheckpointCoordinator({str(self.directory)!r}, next={CHECKPOINT_PREFIX}{self._next_id})"
