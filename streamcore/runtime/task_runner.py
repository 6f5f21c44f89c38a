"""Running one task: its state backend, restore, checkpoints and rate coordination, between batches.

A :class:`TaskRunner` owns everything that belongs to one task and nothing else, so a
process can start, run, checkpoint, hand over and stop tasks independently (the
executor polls the sources of all its runners in one thread):

* the :class:`~streamcore.runtime.task.Task` (operators, sources, keyed state);
* its state backend factory (its own RocksDB directory or heap tables);
* its checkpoint coordinator (its own checkpoint directory) and the restore plan it
  started from;
* its source rate coordinator, if the job aligns watermarks.

Between two batches of its task the executor calls :meth:`TaskRunner.between_batches`:
processing-time timers fire, new splits are discovered, the rate coordinator decides,
a due checkpoint is taken and operators hear of completed ones.
"""

from __future__ import annotations

import logging
import time
from typing import Any

from streamcore.operators.base import StreamOperator
from streamcore.runtime.source_task import SourceTask
from streamcore.runtime.task import Task

__all__ = ["SCHEDULING_MODES", "STARVATION_ROUNDS", "TaskRunner"]

#: how a task picks the next split to read: ``"event-time"`` (the split furthest behind
#: first, one batch per round) or ``"round-robin"`` (every split once per round, in turn).
SCHEDULING_MODES = ("event-time", "round-robin")

#: a split not polled for this many scheduling rounds is polled first (event-time order aside).
STARVATION_ROUNDS = 64


def _schedule_key(candidate: tuple[Any, ...]) -> tuple[Any, ...]:
    return candidate[:4]


logger = logging.getLogger("streamcore.runtime")


class TaskRunner:
    """One task and what runs it (see the module docstring).

    Args:
        task_id: the task's id (``"0"`` for a job that runs as one task; the partition
            number when a consumer group assigns tasks).
        task: the task, not built yet.
        checkpointing: its checkpoint coordinator, or ``None``.
        restore: the restore plan it starts from, or ``None`` for a fresh start.
        rate_coordinator: its source rate coordinator, or ``None``.
        ownership: its owner record (:class:`~streamcore.runtime.ownership.TaskOwnership`),
            acquired already, when tasks move between processes; checked before operators
            hear of a completed checkpoint (sinks commit), released when the task stops.
        scheduling: one of :data:`SCHEDULING_MODES` (see :meth:`poll_round`).
    """

    def __init__(
        self,
        task_id: str,
        task: Task,
        *,
        checkpointing: Any = None,
        restore: Any = None,
        rate_coordinator: Any = None,
        ownership: Any = None,
        scheduling: str = "event-time",
    ) -> None:
        self.task_id = task_id
        self.scheduling = scheduling
        self.ownership = ownership
        self.task = task
        self.checkpointing = checkpointing
        self.restore = restore
        self.rate_coordinator = rate_coordinator
        self.records_since_checkpoint = 0
        self.finished = False
        self.started = False
        #: seconds the restore took (native files, open, images), or None without a restore.
        self.restore_seconds: float | None = None
        self._proc_time_ops: list[StreamOperator] = []
        self._discovering: list[SourceTask] = []
        self._round = 0

    @property
    def sources(self) -> list[SourceTask]:
        """The task's sources."""
        return self.task.sources

    # -- lifecycle -----------------------------------------------------------------------
    def start(self, now_ms: int) -> None:
        """Restore (if planned), open the state backend, build and open the task."""
        task = self.task
        factory = task.state_factory
        restore = self.restore
        began = time.perf_counter()
        if restore is not None:
            restore.prepare(factory.snapshot_strategy)  # native files back into the working dir
        factory.open(fresh=restore is None or not restore.needs_native)
        self.started = True
        task.build()
        task.open_sources()
        if restore is not None:
            restore.apply(task)
            self.restore_seconds = time.perf_counter() - began
        task.open_operators()
        if self.rate_coordinator is not None:
            self.rate_coordinator.attach(task.sources, task.clock)
        self._proc_time_ops = [op for op in task.operators if op.keyed or op.needs_processing_time]
        self._discovering = [s for s in task.sources if s.source.discovery_interval_ms is not None]
        if self.checkpointing is not None:
            self.checkpointing.attach(
                factory.snapshot_strategy.backend,
                now_ms,
                restore.meta if restore is not None else None,
                restore.path if restore is not None else None,
            )

    def poll_round(self, batch_size: int, between: Any) -> tuple[int, bool]:
        """Read one batch, from the split furthest behind in event time; ``between()`` runs after it.

        Splits are tried in order of their watermark (lowest first; splits without one yet
        and without a watermark strategy count as lowest, least recently polled first), as
        Kafka Streams picks the partition with the smallest head timestamp: inputs of
        different event-time speed then advance together, and joins and windows buffer
        little. A split with nothing to read is skipped, never waited for; one not polled
        for ``STARVATION_ROUNDS`` rounds goes first, so none starves.

        With ``scheduling="round-robin"`` every pollable split is read once per round in
        declaration order instead: each split gets the same share of reads whatever its
        event time, as independent processes would read them.

        Returns ``(records read, whether any source is still active)``.
        """
        if self.scheduling == "round-robin":
            return self._poll_each(batch_size, between)
        coordinator = self.rate_coordinator
        self._round += 1
        rnd = self._round
        active = False
        candidates = []
        for order, src in enumerate(self.task.sources):
            if src.finished:
                continue
            if src.all_finished():
                src.finish()
                between(self)
                continue
            active = True
            for index, split in enumerate(src.pollable()):
                starving = rnd - split.last_polled > STARVATION_ROUNDS
                position = (order, index)  # deterministic tie-break: declaration order
                candidates.append((not starving, split.watermark, split.last_polled, position, src, split))
        candidates.sort(key=_schedule_key)
        progressed = 0
        for *_, src, split in candidates:
            if coordinator is not None and not coordinator.may_poll(split):
                continue
            split.last_polled = rnd
            n = src.poll(split, batch_size)
            if n:
                progressed = n
                self.records_since_checkpoint += n
                between(self)
                break
        else:
            if candidates:
                between(self)
        return progressed, active

    def _poll_each(self, batch_size: int, between: Any) -> tuple[int, bool]:
        """Round-robin: one batch from every pollable split, ``between()`` after each."""
        coordinator = self.rate_coordinator
        progressed = 0
        active = False
        for src in self.task.sources:
            if src.finished:
                continue
            active = True
            for split in src.pollable():
                if coordinator is not None and not coordinator.may_poll(split):
                    continue
                n = src.poll(split, batch_size)
                progressed += n
                self.records_since_checkpoint += n
                between(self)
            if src.all_finished():
                src.finish()
                between(self)
        return progressed, active

    def between_batches(self, now: int) -> None:
        """Timers, split discovery, rate coordination, checkpoints: everything due between batches."""
        task = self.task
        for op in self._proc_time_ops:
            op.on_processing_time(now)
        coordinator = self.rate_coordinator
        for src in self._discovering:
            new = src.discover(now)
            if new and coordinator is not None:
                coordinator.add_splits(src, new, now)
        if coordinator is not None:
            coordinator.tick(now)
        cp = self.checkpointing
        if cp is not None:
            if cp.is_due(now, self.records_since_checkpoint):
                self.records_since_checkpoint = 0
                cp.trigger(task, now)
            completed = cp.take_completed()
            if completed:
                self._check_owner()
                for cid in completed:
                    task.notify_checkpoint_complete(cid)

    def _check_owner(self) -> None:
        if self.ownership is not None:
            self.ownership.check()  # raises TaskFencedError: another process runs the task now

    def on_idle_round(self) -> None:
        """A round read nothing: let the rate coordinator unstick a group that waits."""
        if self.rate_coordinator is not None:
            self.rate_coordinator.on_idle_round()

    def finish(self, now_ms: int) -> None:
        """Every source of the task ended: flush operators, take the final checkpoint (sinks commit)."""
        self.finished = True
        self.task.finish()
        if self.checkpointing is not None:
            completed = self.checkpointing.on_job_finished(self.task, now_ms)
            self._check_owner()
            for cid in completed:
                self.task.notify_checkpoint_complete(cid)
        if self.ownership is not None:
            self.ownership.release("finished")

    def hand_over(self, now_ms: int) -> int | None:
        """The task moves to another process: take a final checkpoint now (returns its id), commit.

        The next owner restores it, so nothing after it is replayed. Without
        checkpointing there is nothing to hand over (``None``).
        """
        cp = self.checkpointing
        if cp is None:
            return None
        cid = cp.trigger(self.task, now_ms, wait=True)
        completed = cp.take_completed()
        self._check_owner()
        for done in completed:
            self.task.notify_checkpoint_complete(done)
        return cid

    def close(self) -> list[tuple[str, Exception]]:
        """Close the task and its state backend (also after failures); returns ``(what, error)`` pairs."""
        errors: list[tuple[str, Exception]] = []
        try:
            if self.checkpointing is not None:
                self.checkpointing.close()  # waits for a checkpoint still being written
        except Exception as exc:
            errors.append(("checkpointing", exc))
        errors.extend(self.task.close())
        if self.started:
            try:
                self.task.state_factory.close()
            except Exception as exc:
                errors.append(("state backend", exc))
        if self.ownership is not None:
            try:
                self.ownership.release()  # this process writes nothing of the task any more
            except Exception as exc:
                errors.append(("owner record", exc))
        return errors

    # -- observability -------------------------------------------------------------------------
    def completed_checkpoints(self) -> list[int]:
        """Ids of the checkpoints this runner completed."""
        return list(self.checkpointing.completed_ids) if self.checkpointing is not None else []

    def metrics(self) -> dict[str, Any]:
        """The task's figures, plus checkpoints and rate coordination."""
        out = self.task.metrics()
        if not out:
            return out
        if self.checkpointing is not None:
            out["checkpoints"] = self.checkpointing.metrics()
        if self.rate_coordinator is not None:
            out["rate_coordinator"] = self.rate_coordinator.metrics()
        return out
