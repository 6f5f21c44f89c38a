"""The scheduler loop: one thread polls source splits in turn and pushes each batch
synchronously through the operators of a :class:`~streamcore.runtime.task.Task`.

Backpressure is structural: a split is read only after the previous batch has gone
all the way through. Between batches (when nothing is in flight) the executor fires
processing-time timers, discovers new splits, lets the rate coordinator decide, asks the
checkpoint coordinator whether a checkpoint is due (and acts on its answers: resets the
record counter, notifies operators of completed checkpoints), serves savepoint requests
and checks for a stop request, so a checkpoint is a consistent cut by construction.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from streamcore.errors import JobError, StreamcoreError
from streamcore.graph import StreamGraph
from streamcore.operators.base import StreamOperator
from streamcore.runtime.source_task import SourceTask
from streamcore.runtime.task import Task
from streamcore.state.factory import StateBackendFactory
from streamcore.time import Clock, SystemClock

__all__ = ["JobControl", "JobExecutor", "JobResult"]

logger = logging.getLogger("streamcore.runtime")


@dataclass
class JobResult:
    """What a finished (or stopped) job reports."""

    job_name: str
    duration_s: float
    records_read: int
    metrics: dict[str, Any]
    stopped: bool = False
    savepoint: str | None = None
    checkpoints: list[int] = field(default_factory=list)
    restarts: int = 0

    def __repr__(self) -> str:
        state = "stopped" if self.stopped else "finished"
        return f"JobResult({self.job_name!r}, {state}, {self.records_read} records in {self.duration_s:.3f}s)"


class JobControl:
    """Requests from other threads to a running job (stop, savepoints); served between batches.

    A savepoint request is ``(directory, done, result)``: the job appends the savepoint's
    path (or the exception) to ``result`` and sets ``done``. ``stop_savepoint`` is the
    result list of the savepoint a stop asked for, if any; ``final_checkpoint`` says whether
    a stop without savepoint takes a last checkpoint (so sinks commit what was written).
    """

    def __init__(self) -> None:
        self.stop_requested = threading.Event()
        self.savepoint_requests: list[tuple[str, threading.Event, list[Any]]] = []
        self.stop_savepoint: list[Any] | None = None
        self.final_checkpoint = False
        self.lock = threading.Lock()
        self.running = threading.Event()

    def request_savepoint(self, directory: str) -> tuple[threading.Event, list[Any]]:
        """Queue a savepoint into ``directory``; returns the event set when it is done, and its result."""
        done = threading.Event()
        result: list[Any] = []
        with self.lock:
            self.savepoint_requests.append((directory, done, result))
        return done, result

    def request_stop(
        self, savepoint_directory: str | None = None, *, final_checkpoint: bool = False
    ) -> list[Any]:
        """Ask the job to stop between two batches, after a savepoint into ``savepoint_directory``.

        With ``final_checkpoint`` (and no savepoint) a checkpointed job takes one last
        checkpoint at the stop position and its sinks commit it. Returns the list the
        savepoint's path (or its exception) is appended to.
        """
        result: list[Any] = []
        with self.lock:
            self.final_checkpoint = self.final_checkpoint or final_checkpoint
            if savepoint_directory is not None:
                self.stop_savepoint = result
                self.savepoint_requests.append((savepoint_directory, threading.Event(), result))
            self.stop_requested.set()
        return result

    def take_savepoint_requests(self, *, stopping: bool) -> list[tuple[str, threading.Event, list[Any]]]:
        """Queued savepoint requests, oldest first; the stop's own only when ``stopping``."""
        with self.lock:
            take = [r for r in self.savepoint_requests if stopping or r[2] is not self.stop_savepoint]
            self.savepoint_requests = [r for r in self.savepoint_requests if r not in take]
        return take


BatchListener = Callable[[Task], None]
"""Called between batches with the running task (instrumentation: benchmarks sample state size)."""


class JobExecutor:
    """Runs one job to its end (bounded sources), or until stopped."""

    def __init__(
        self,
        graph: StreamGraph,
        job_name: str,
        *,
        clock: Clock,
        batch_size: int,
        max_parallelism: int,
        state_factory: StateBackendFactory,
        checkpointing: Any = None,
        restore: Any = None,
        coordinator: Any = None,
        control: JobControl | None = None,
        idle_sleep_ms: int = 1,
        batch_listeners: list[BatchListener] | None = None,
    ) -> None:
        self.job_name = job_name
        self.clock = clock
        self.batch_size = batch_size
        self.checkpointing = checkpointing
        self.restore = restore
        self.coordinator = coordinator
        self.control = control or JobControl()
        self.idle_sleep_ms = idle_sleep_ms
        self.batch_listeners = list(batch_listeners or ())
        self.task = Task(
            graph,
            job_name,
            clock=clock,
            max_parallelism=max_parallelism,
            state_factory=state_factory,
            rate_coordinator=coordinator,
        )
        self.records_since_checkpoint = 0
        self._savepoints_taken = 0
        self._proc_time_ops: list[StreamOperator] = []
        self._discovering: list[SourceTask] = []
        #: called with the executor once the job is open and about to poll (observers instrument it).
        self.start_listeners: list[Callable[[JobExecutor], None]] = []
        #: seconds the last restore took (native files, open, load images), or None.
        self.restore_seconds: float | None = None

    # -- the loop ------------------------------------------------------------------------
    def run(self) -> JobResult:
        """Open, restore, run to the end or to a stop request, close. Returns the result.

        Raises:
            StreamcoreError: the job failed (user function, checkpoint, bad input...); other
                exceptions are wrapped in :class:`JobError`. A failure to close an operator or
                source is raised when the job itself succeeded, and logged otherwise.
        """
        start = time.perf_counter()
        task = self.task
        stopped = False
        savepoint_path = None
        failed = True
        try:
            factory = task.state_factory
            restore_started = time.perf_counter()
            if self.restore is not None:
                self.restore.prepare(factory.snapshot_strategy)  # native files back into the working dir
            factory.open(fresh=self.restore is None or not self.restore.needs_native)
            task.build()
            task.open_sources()
            if self.restore is not None:
                self.restore.apply(task)
                self.restore_seconds = time.perf_counter() - restore_started
            task.open_operators()
            if self.coordinator is not None:
                self.coordinator.attach(task.sources, self.clock)
            self._proc_time_ops = [op for op in task.operators if op.keyed]
            self._discovering = [s for s in task.sources if s.source.discovery_interval_ms is not None]
            if self.checkpointing is not None:
                restored = self.restore
                self.checkpointing.attach(
                    factory.snapshot_strategy.backend,
                    self.clock.now_ms(),
                    restored.meta if restored is not None else None,
                    restored.path if restored is not None else None,
                )
            self.control.running.set()
            for listener in self.start_listeners:
                listener(self)
            stopped = self._loop()
            if stopped:
                savepoint_path = self._serve_savepoints(stopping=True)
                if (
                    savepoint_path is None
                    and self.control.final_checkpoint
                    and self.checkpointing is not None
                ):
                    for cid in self.checkpointing.on_job_finished(task, self.clock.now_ms()):
                        task.notify_checkpoint_complete(cid)
            else:
                task.finish()
                if self.checkpointing is not None:
                    for cid in self.checkpointing.on_job_finished(task, self.clock.now_ms()):
                        task.notify_checkpoint_complete(cid)
            failed = False
        except StreamcoreError:
            raise
        except Exception as exc:
            msg = f"job {self.job_name!r} failed: {type(exc).__name__}: {exc}"
            raise JobError(msg) from exc
        finally:
            try:
                final_metrics = self.metrics()
            finally:
                self._close(raise_errors=not failed)
        duration = time.perf_counter() - start
        return JobResult(
            self.job_name,
            duration,
            task.records_read(),
            final_metrics,
            stopped=stopped,
            savepoint=savepoint_path,
            checkpoints=list(self.checkpointing.completed_ids) if self.checkpointing is not None else [],
        )

    def _loop(self) -> bool:
        """Poll until every source finished (returns False) or a stop was requested (True)."""
        batch_size = self.batch_size
        control = self.control
        between = self._between_batches
        coordinator = self.coordinator
        sources = self.task.sources
        while True:
            if control.stop_requested.is_set():
                return True
            progressed = 0
            active = False
            for src in sources:
                if src.finished:
                    continue
                active = True
                for split in src.pollable():
                    if coordinator is not None and not coordinator.may_poll(split):
                        continue
                    n = src.poll(split, batch_size)
                    progressed += n
                    self.records_since_checkpoint += n
                    between()
                if src.all_finished():
                    src.finish()
                    between()
            if not active:
                return False
            if not progressed:
                between()
                if coordinator is not None:
                    coordinator.on_idle_round()
                if isinstance(self.clock, SystemClock):
                    time.sleep(self.idle_sleep_ms / 1000)
                else:
                    self.clock.sleep(self.idle_sleep_ms)

    def _between_batches(self) -> None:
        now = self.clock.now_ms()
        task = self.task
        for op in self._proc_time_ops:
            op.on_processing_time(now)
        for src in self._discovering:
            new = src.discover(now)
            if new and self.coordinator is not None:
                self.coordinator.add_splits(src, new, now)
        if self.coordinator is not None:
            self.coordinator.tick(now)
        cp = self.checkpointing
        if cp is not None:
            if cp.is_due(now, self.records_since_checkpoint):
                self.records_since_checkpoint = 0
                cp.trigger(task, now)
            for cid in cp.take_completed():
                task.notify_checkpoint_complete(cid)
        if self.control.savepoint_requests and not self.control.stop_requested.is_set():
            self._serve_savepoints(stopping=False)
        for listener in self.batch_listeners:
            listener(task)

    def _serve_savepoints(self, *, stopping: bool) -> str | None:
        """Take every requested savepoint; returns the path of the one a stop asked for.

        A stop with savepoint ends the job at that cut, so its operators are notified of it
        (two-phase-commit sinks commit their last transaction).
        """
        from streamcore.checkpoint.savepoint import write_savepoint

        stop_result = self.control.stop_savepoint
        stop_path = None
        for directory, done, result in self.control.take_savepoint_requests(stopping=stopping):
            try:
                sid = self._next_savepoint_id()
                path = write_savepoint(self.task, directory, sid)
                result.append(path)
                if stopping and result is stop_result:
                    self.task.notify_checkpoint_complete(sid)
                    stop_path = path
            except Exception as exc:
                result.append(exc)
            finally:
                done.set()
        return stop_path

    def _next_savepoint_id(self) -> int:
        if self.checkpointing is not None:
            return int(self.checkpointing.next_savepoint_id())
        self._savepoints_taken += 1
        return self._savepoints_taken

    def metrics(self) -> dict[str, Any]:
        """Live figures of every source and operator, by uid (and of checkpoints, rate coordination)."""
        out = self.task.metrics()
        if not out:
            return out
        if self.checkpointing is not None:
            out["checkpoints"] = self.checkpointing.metrics()
        if self.coordinator is not None:
            out["rate_coordinator"] = self.coordinator.metrics()
        return out

    def _close(self, *, raise_errors: bool) -> None:
        """Close everything; the first close error is raised after a clean run, the rest are logged."""
        try:
            if self.checkpointing is not None:
                self.checkpointing.close()  # waits for a checkpoint still being written
        finally:
            errors = self.task.close()
            try:
                self.task.state_factory.close()
            except Exception as exc:
                errors.append(("state backend", exc))
        for uid, exc in errors[1 if raise_errors else 0 :]:
            logger.error("job %r: closing %r failed: %s: %s", self.job_name, uid, type(exc).__name__, exc)
        if raise_errors and errors:
            uid, exc = errors[0]
            if isinstance(exc, StreamcoreError):
                raise exc
            msg = f"job {self.job_name!r}: closing {uid!r} failed: {type(exc).__name__}: {exc}"
            raise JobError(msg) from exc
