"""The scheduler loop: one thread polls the source splits of every task of the process in turn
and pushes each batch synchronously through that task's operators.

A process runs one or more tasks (:class:`~streamcore.runtime.task_runner.TaskRunner`),
as its :class:`~streamcore.runtime.membership.Membership` decides: a job in one process
has one task; a job whose Kafka sources form a consumer group runs the tasks the group
assigns, and starts and hands over tasks as the group rebalances, between batches.

Backpressure is structural: a split is read only after the previous batch has gone
all the way through. Between batches (when nothing is in flight) the executor fires the
task's processing-time timers, discovers new splits, lets the rate coordinator decide,
asks the checkpoint coordinator whether a checkpoint is due (and acts on its answers:
resets the record counter, notifies operators of completed checkpoints), serves
savepoint requests and checks for a stop request, so a checkpoint is a consistent cut by
construction.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from streamcore.errors import JobError, StreamcoreError
from streamcore.runtime.membership import Membership, StaticMembership
from streamcore.runtime.task import Task
from streamcore.runtime.task_runner import TaskRunner
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
    a stop without savepoint takes a last checkpoint of every task (so sinks commit what
    was written).
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

        With ``final_checkpoint`` (and no savepoint) every checkpointed task takes one last
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

RunnerFactory = Callable[[str], "TaskRunner | None"]
"""Builds the runner of a task id (its state backend, checkpoints and restore plan), or
returns ``None`` when the task cannot start yet (its previous owner still runs it)."""


class JobExecutor:
    """Runs the tasks of one job in this process to their end (bounded sources), or until stopped.

    Args:
        job_name: the job's name.
        make_runner: builds the runner of a task id.
        clock: the job clock.
        batch_size: records taken from a split at a time.
        membership: which tasks this process runs (one task ``"0"`` by default).
        control: requests from other threads (stop, savepoints).
        batch_listeners: called with the task after every batch.
        checkpoint_dir: the job's checkpoint directory, if it checkpoints (savepoints go to
            its ``savepoints/`` unless a request names a directory).
    """

    def __init__(
        self,
        job_name: str,
        make_runner: RunnerFactory,
        *,
        clock: Clock,
        batch_size: int,
        membership: Membership | None = None,
        control: JobControl | None = None,
        idle_sleep_ms: int = 1,
        batch_listeners: list[BatchListener] | None = None,
        checkpoint_dir: Path | None = None,
    ) -> None:
        self.job_name = job_name
        self.checkpoint_dir = checkpoint_dir
        self.make_runner = make_runner
        self.clock = clock
        self.batch_size = batch_size
        self.membership = membership or StaticMembership()
        self.control = control or JobControl()
        self.idle_sleep_ms = idle_sleep_ms
        self.batch_listeners = list(batch_listeners or ())
        self.runners: dict[str, TaskRunner] = {}
        self.finished_runners: dict[str, TaskRunner] = {}
        self._handed_over: list[TaskRunner] = []
        self._savepoints_taken = 0
        #: called with the executor once its first tasks run and it is about to poll (observers).
        self.start_listeners: list[Callable[[JobExecutor], None]] = []

    @property
    def task(self) -> Task:
        """The task of a job that runs as one task (the first task otherwise)."""
        runners = self.runners or self.finished_runners
        if not runners:
            msg = f"job {self.job_name!r} runs no task yet"
            raise RuntimeError(msg)
        return next(iter(runners.values())).task

    # -- tasks coming and going ----------------------------------------------------------------
    def _assign(self, task_ids: list[str]) -> list[str]:
        """Start these tasks; returns those started (a task whose previous owner has not released
        it yet is not: ``make_runner`` returns ``None``, and the membership offers it again)."""
        now = self.clock.now_ms()
        started = []
        for task_id in task_ids:
            if task_id in self.runners or task_id in self.finished_runners:
                started.append(task_id)
                continue
            runner = self.make_runner(task_id)
            if runner is None:
                continue
            self.runners[task_id] = runner  # closed with the others if starting fails
            runner.start(now)
            started.append(task_id)
            logger.info("job %r started task %s", self.job_name, task_id)
        return started

    def _revoke(self, task_ids: list[str]) -> None:
        for task_id in task_ids:
            runner = self.runners.pop(task_id, None) or self.finished_runners.pop(task_id, None)
            if runner is None:
                continue
            self._handed_over.append(runner)
            try:
                if not runner.finished:
                    cid = runner.hand_over(self.clock.now_ms())
                    logger.info("job %r handed task %s over at checkpoint %s", self.job_name, task_id, cid)
            finally:
                self._log_close_errors(runner.close())

    def _lose(self, task_ids: list[str]) -> None:
        """Another process may already run these tasks: close them, take no checkpoint, commit nothing."""
        for task_id in task_ids:
            runner = self.runners.pop(task_id, None) or self.finished_runners.pop(task_id, None)
            if runner is not None:
                self._handed_over.append(runner)
                self._log_close_errors(runner.close())

    # -- the loop ------------------------------------------------------------------------
    def run(self) -> JobResult:
        """Open, restore, run to the end or to a stop request, close. Returns the result.

        Raises:
            StreamcoreError: the job failed (user function, checkpoint, bad input...); other
                exceptions are wrapped in :class:`JobError`. A failure to close an operator or
                source is raised when the job itself succeeded, and logged otherwise.
        """
        start = time.perf_counter()
        stopped = False
        savepoint_path = None
        failed = True
        try:
            self.membership.start()
            self.membership.poll(self._assign, self._revoke, self._lose)
            self.control.running.set()
            for listener in self.start_listeners:
                listener(self)
            stopped = self._loop()
            if stopped:
                savepoint_path = self._serve_savepoints(stopping=True)
                if self.membership.dynamic:
                    # Leaving the group: every running task's final checkpoint, so the next
                    # owner continues from there and replays nothing.
                    self._revoke(list(self.runners))
                elif savepoint_path is None and self.control.final_checkpoint:
                    for runner in list(self.runners.values()):
                        runner.hand_over(self.clock.now_ms())  # a last checkpoint; sinks commit it
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
        every = [*self.runners.values(), *self.finished_runners.values(), *self._handed_over]
        return JobResult(
            self.job_name,
            duration,
            sum(r.task.records_read() for r in every),
            final_metrics,
            stopped=stopped,
            savepoint=savepoint_path,
            checkpoints=sorted({cid for r in every for cid in r.completed_checkpoints()}),
        )

    def _loop(self) -> bool:
        """Poll until every task finished (returns False) or a stop was requested (True)."""
        batch_size = self.batch_size
        control = self.control
        between = self._between_batches
        membership = self.membership
        while True:
            if control.stop_requested.is_set():
                return True
            membership.poll(self._assign, self._revoke, self._lose)
            progressed = 0
            for task_id, runner in list(self.runners.items()):
                n, active = runner.poll_round(batch_size, between)
                progressed += n
                if not active:
                    runner.finish(self.clock.now_ms())
                    self.finished_runners[task_id] = self.runners.pop(task_id)
            if not self.runners and membership.may_end(list(self.finished_runners)):
                return False
            if not progressed:
                for runner in list(self.runners.values()):
                    between(runner)
                    runner.on_idle_round()
                if isinstance(self.clock, SystemClock):
                    time.sleep(self.idle_sleep_ms / 1000)
                else:
                    self.clock.sleep(self.idle_sleep_ms)

    def _between_batches(self, runner: TaskRunner) -> None:
        runner.between_batches(self.clock.now_ms())
        if self.control.savepoint_requests and not self.control.stop_requested.is_set():
            self._serve_savepoints(stopping=False)
        for listener in self.batch_listeners:
            listener(runner.task)

    def _serve_savepoints(self, *, stopping: bool) -> str | None:
        """Take every requested savepoint (one per running task); returns the stop's savepoint path.

        A stop with savepoint ends the job at that cut, so its operators are notified of it
        (two-phase-commit sinks commit their last transaction). With several tasks, each
        writes its savepoint into ``<directory>/task-<id>``.
        """
        from streamcore.checkpoint.savepoint import write_savepoint

        stop_result = self.control.stop_savepoint
        stop_path = None
        runners = list(self.runners.values())
        for directory, done, result in self.control.take_savepoint_requests(stopping=stopping):
            try:
                paths = []
                for runner in runners:
                    sid = self._next_savepoint_id(runner)
                    where = directory if len(runners) == 1 else f"{directory}/task-{runner.task_id}"
                    paths.append(write_savepoint(runner.task, where, sid))
                    if stopping and result is stop_result:
                        runner.task.notify_checkpoint_complete(sid)
                path = paths[0] if len(paths) == 1 else directory
                result.append(path)
                if stopping and result is stop_result:
                    stop_path = path
            except Exception as exc:
                result.append(exc)
            finally:
                done.set()
        return stop_path

    def _next_savepoint_id(self, runner: TaskRunner) -> int:
        if runner.checkpointing is not None:
            return int(runner.checkpointing.next_savepoint_id())
        self._savepoints_taken += 1
        return self._savepoints_taken

    def metrics(self) -> dict[str, Any]:
        """Live figures: of the one task by uid, or ``{"tasks": {task_id: figures}}`` with several."""
        runners = {**self.finished_runners, **self.runners}
        if len(runners) == 1:
            return next(iter(runners.values())).metrics()
        return {"tasks": {task_id: r.metrics() for task_id, r in sorted(runners.items())}}

    def _close(self, *, raise_errors: bool) -> None:
        """Close every task and leave the group; the first close error is raised after a clean run."""
        errors: list[tuple[str, Exception]] = []
        for runner in [*self.runners.values(), *self.finished_runners.values()]:
            errors.extend(runner.close())
        try:
            self.membership.close()
        except Exception as exc:
            errors.append(("membership", exc))
        self._log_close_errors(errors[1 if raise_errors else 0 :])
        if raise_errors and errors:
            uid, exc = errors[0]
            if isinstance(exc, StreamcoreError):
                raise exc
            msg = f"job {self.job_name!r}: closing {uid!r} failed: {type(exc).__name__}: {exc}"
            raise JobError(msg) from exc

    def _log_close_errors(self, errors: list[tuple[str, Exception]]) -> None:
        for uid, exc in errors:
            logger.error("job %r: closing %r failed: %s: %s", self.job_name, uid, type(exc).__name__, exc)
