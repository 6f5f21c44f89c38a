"""One run of a job: its attempts (restarts after failures), its listeners, its logs.

:class:`JobRun` wraps :class:`~streamcore.runtime.executor.JobExecutor`: each attempt is a
fresh executor built from the job's graph. When an attempt fails and the restart strategy
allows it, the run waits, then restores from the latest completed checkpoint (or from
what the first attempt restored, when no checkpoint completed since) and goes on in the
same process. Configuration errors and failed restores are never retried.

Listeners (:class:`RunListener`: metrics and the dashboard, lineage, the progress line,
warnings) see the run start and end, every attempt start and end, and the job between
batches (on the job's thread). The run logs at INFO when the job starts, ends and
restarts.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable
from typing import Any

from streamcore.errors import CheckpointError, ConfigurationError, JobError, RestoreError, StreamcoreError
from streamcore.runtime.executor import JobControl, JobExecutor, JobResult
from streamcore.runtime.restart import RestartStrategy, no_restart
from streamcore.time import Clock, SystemClock

__all__ = ["JobRun", "RunListener", "checkpoint_stats", "completed_checkpoints", "runners_of", "tasks_of"]

logger = logging.getLogger("streamcore.runtime")


def runners_of(executor: JobExecutor) -> list[tuple[str, Any]]:
    """``(task_id, runner)`` of every task the executor runs or has finished, by task id.

    A runner (:class:`~streamcore.runtime.task_runner.TaskRunner`) has the ``task``, its
    ``checkpointing``, ``restore``, ``rate_coordinator`` and ``restore_seconds``.
    """
    every = {**executor.finished_runners, **executor.runners}
    return sorted(every.items())


def tasks_of(executor: JobExecutor) -> list[tuple[str, Any]]:
    """``(task_id, task)`` of every task the executor runs or has finished."""
    return [(tid, r.task) for tid, r in runners_of(executor)]


def completed_checkpoints(executor: JobExecutor) -> list[tuple[str, int]]:
    """``(task_id, checkpoint_id)`` of every checkpoint the executor's tasks completed, in order."""
    return [(tid, cid) for tid, r in runners_of(executor) for cid in r.completed_checkpoints()]


def checkpoint_stats(executor: JobExecutor) -> dict[tuple[str, int], dict[str, Any]]:
    """The figures (duration, pause, sizes) of the recent checkpoints of every task."""
    out: dict[tuple[str, int], dict[str, Any]] = {}
    for tid, r in runners_of(executor):
        if r.checkpointing is not None:
            for h in r.checkpointing.metrics().get("history", []):
                out[(tid, int(h["id"]))] = h
    return out


class RunListener:
    """Sees a job run; every hook is optional. Hooks must not raise (errors are logged)."""

    def run_started(self, run: JobRun) -> None:
        """Before the first attempt (on the caller's thread)."""

    def attempt_started(self, run: JobRun, executor: JobExecutor) -> None:
        """The attempt's task is open and about to be polled (job thread)."""

    def between_batches(self, run: JobRun, executor: JobExecutor) -> None:
        """Between two batches (job thread): keep it cheap."""

    def attempt_ended(self, run: JobRun, executor: JobExecutor, error: BaseException | None) -> None:
        """An attempt ended (finished, stopped, or failed with ``error``)."""

    def run_ended(self, run: JobRun, result: JobResult | None, error: BaseException | None) -> None:
        """The run ended: ``result`` when it finished or was stopped, else ``error``."""


class JobRun:
    """Runs a job, restarting it after failures as its :class:`RestartStrategy` allows.

    It answers what :class:`~streamcore.runtime.job.JobHandle` asks of an executor
    (``run``, ``metrics``, ``control``, ``checkpointing``, ``job_name``).
    """

    def __init__(
        self,
        job_name: str,
        make_executor: Callable[[Any], JobExecutor],
        *,
        control: JobControl | None = None,
        restore_from: Any = None,
        restart: RestartStrategy | None = None,
        listeners: list[RunListener] | None = None,
        clock: Clock | None = None,
        describe: dict[str, Any] | None = None,
    ) -> None:
        self.job_name = job_name
        self.control = control or JobControl()
        self.restart = restart or no_restart()
        self.listeners = list(listeners or ())
        self.clock = clock or SystemClock()
        #: what the run reports about itself (backend, checkpoint directory...).
        self.describe = dict(describe or {})
        self._make_executor = make_executor
        self._restore_from = restore_from
        self.executor: JobExecutor | None = None
        self.state = "CREATED"
        self.attempt = 0
        self.restarts = 0
        self.failures: list[dict[str, Any]] = []
        self.started_ms: int | None = None
        self.ended_ms: int | None = None
        self.result: JobResult | None = None
        self.error: BaseException | None = None
        self._opened = False
        self._lock = threading.Lock()
        self.executor = make_executor(restore_from)

    # -- what JobHandle uses ---------------------------------------------------------------
    @property
    def checkpoint_dir(self) -> Any:
        """The job's checkpoint directory (savepoints go to its ``savepoints/``), or None."""
        return self.executor.checkpoint_dir if self.executor is not None else None

    def metrics(self) -> dict[str, Any]:
        """Live metrics of the current attempt (see :meth:`JobExecutor.metrics`)."""
        executor = self.executor
        return executor.metrics() if executor is not None else {}

    # -- the run ---------------------------------------------------------------------------
    def open(self) -> None:
        """Tell the listeners the run starts (the metrics server binds its port here)."""
        if self._opened:
            return
        self._opened = True
        self.started_ms = int(time.time() * 1000)
        done: list[RunListener] = []
        try:
            for listener in self.listeners:
                listener.run_started(self)
                done.append(listener)
        except BaseException as exc:
            for listener in done:
                self._call(listener.run_ended, self, None, exc)
            raise

    def run(self) -> JobResult:
        """Run attempts until the job finishes, is stopped, or fails for good.

        Raises:
            StreamcoreError: the last attempt's error, when no restart is allowed.
        """
        self.open()
        result: JobResult | None = None
        error: BaseException | None = None
        try:
            result = self._attempts()
            return result
        except BaseException as exc:
            error = exc
            raise
        finally:
            self.ended_ms = int(time.time() * 1000)
            self.result, self.error = result, error
            if result is not None:
                self.state = "STOPPED" if result.stopped else "FINISHED"
                result.restarts = self.restarts
                logger.info(
                    "job %r %s: %d records in %.1f s, %d checkpoints%s%s",
                    self.job_name,
                    "stopped" if result.stopped else "finished",
                    result.records_read,
                    result.duration_s,
                    len(result.checkpoints),
                    f", savepoint {result.savepoint}" if result.savepoint else "",
                    f", {self.restarts} restarts" if self.restarts else "",
                )
            else:
                self.state = "FAILED"
                # INFO, not ERROR: the error itself is raised to the caller, who reports it once.
                logger.info("job %r failed: %s", self.job_name, error)
            for listener in self.listeners:
                self._call(listener.run_ended, self, result, error)

    def _attempts(self) -> JobResult:
        restore_from = self._restore_from
        restarts_in_backoff = 0
        while True:
            self.attempt += 1
            executor = self.executor if self.attempt == 1 else self._make_executor(restore_from)
            assert executor is not None
            self.executor = executor
            executor.start_listeners.append(self._attempt_started)
            executor.batch_listeners.append(self._between_batches)
            self.state = "RUNNING" if self.attempt == 1 else "RESTARTING"
            attempt_began = time.monotonic()
            try:
                result = executor.run()
            except BaseException as exc:
                for listener in self.listeners:
                    self._call(listener.attempt_ended, self, executor, exc)
                self.failures.append(
                    {"attempt": self.attempt, "time_ms": int(time.time() * 1000), "error": str(exc)}
                )
                if not self._restartable(exc):
                    raise
                strategy = self.restart
                if strategy.reset_after_ms is not None and (
                    (time.monotonic() - attempt_began) * 1000 >= strategy.reset_after_ms
                ):
                    restarts_in_backoff = 0
                restarts_in_backoff += 1
                if not strategy.allows(restarts_in_backoff):
                    if strategy.kind != "none":
                        logger.info(
                            "job %r failed after %d restarts (%s): no restart left",
                            self.job_name,
                            self.restarts,
                            strategy.describe(),
                        )
                    raise
                restore_from = self._restore_after_failure(executor)
                delay = strategy.delay_ms(restarts_in_backoff)
                self.restarts += 1
                self.state = "RESTARTING"
                logger.info(
                    "job %r failed (attempt %d): %s; restart %d in %d ms from %s",
                    self.job_name,
                    self.attempt,
                    exc,
                    self.restarts,
                    delay,
                    "the latest checkpoint"
                    if restore_from == "latest"
                    else (restore_from or "the beginning"),
                )
                if self._wait(delay):
                    logger.info("job %r: stop requested while waiting to restart", self.job_name)
                    return JobResult(self.job_name, 0.0, 0, executor.metrics(), stopped=True)
                continue
            for listener in self.listeners:
                self._call(listener.attempt_ended, self, executor, None)
            return result

    @staticmethod
    def _restartable(exc: BaseException) -> bool:
        """Failures a restart cannot fix are never retried: bad configuration, failed restores."""
        if isinstance(exc, (ConfigurationError, RestoreError)):
            return False
        return isinstance(exc, (StreamcoreError, CheckpointError, JobError))

    def _restore_after_failure(self, executor: JobExecutor) -> Any:
        if executor.checkpoint_dir is not None and completed_checkpoints(executor):
            return "latest"
        return self._restore_from

    def _wait(self, delay_ms: int) -> bool:
        """Wait before a restart; True when a stop was requested meanwhile."""
        stop = self.control.stop_requested
        if isinstance(self.clock, SystemClock):
            return stop.wait(delay_ms / 1000)
        self.clock.sleep(delay_ms)
        return stop.is_set()

    # -- listeners ----------------------------------------------------------------------------
    def _attempt_started(self, executor: JobExecutor) -> None:
        self.state = "RUNNING"
        if self.attempt == 1:
            restores = [r.restore for _, r in runners_of(executor) if r.restore is not None]
            restored = restores[0] if restores else None
            logger.info(
                "job %r started: %s%s",
                self.job_name,
                ", ".join(f"{k} {v}" for k, v in self.describe.items() if v is not None),
                f", restored from {restored.kind} {restored.path}" if restored is not None else "",
            )
        for listener in self.listeners:
            self._call(listener.attempt_started, self, executor)

    def _between_batches(self, task: Any) -> None:
        executor = self.executor
        for listener in self.listeners:
            listener.between_batches(self, executor)  # type: ignore[arg-type]

    def _call(self, fn: Callable[..., None], *args: Any) -> None:
        try:
            fn(*args)
        except Exception as exc:
            logger.warning("listener %s of job %r failed: %s", fn, self.job_name, exc)
