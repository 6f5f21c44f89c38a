"""A job running in a background thread: stop it, wait for it, read its metrics."""

from __future__ import annotations

import threading
from pathlib import Path
from typing import Any

from streamcore.errors import CheckpointError, JobError, StreamcoreError
from streamcore.runtime.executor import JobControl, JobExecutor, JobResult

__all__ = ["JobHandle"]


class JobHandle:
    """Returned by ``env.execute_async()``. The dataflow runs in one background thread."""

    def __init__(self, executor: JobExecutor | Any) -> None:
        self._executor = executor
        self._control: JobControl = executor.control
        self._result: JobResult | None = None
        self._error: BaseException | None = None
        self._thread = threading.Thread(target=self._run, name=f"streamcore-{executor.job_name}", daemon=True)
        self._thread.start()

    def _run(self) -> None:
        try:
            self._result = self._executor.run()
        except BaseException as exc:
            self._error = exc
        finally:
            self._control.running.set()

    @property
    def job_name(self) -> str:
        """The job's name."""
        return self._executor.job_name

    def done(self) -> bool:
        """Whether the job has ended (finished, stopped or failed)."""
        return not self._thread.is_alive()

    def wait(self, timeout: float | None = None) -> JobResult:
        """Wait for the end of the job and return its result.

        Raises:
            TimeoutError: the job is still running after ``timeout`` seconds.
            StreamcoreError: the job failed (the original error).
        """
        self._thread.join(timeout)
        if self._thread.is_alive():
            msg = f"job {self.job_name!r} is still running after {timeout} s"
            raise TimeoutError(msg)
        if self._error is not None:
            if isinstance(self._error, StreamcoreError):
                raise self._error
            raise JobError(f"job {self.job_name!r} failed: {self._error}") from self._error
        assert self._result is not None
        return self._result

    def stop(
        self,
        savepoint: bool | str | Path = False,
        timeout: float | None = None,
        *,
        final_checkpoint: bool = False,
    ) -> JobResult:
        """Stop the job between two batches and wait for it.

        Args:
            savepoint: ``True`` (a savepoint in the checkpoint directory's ``savepoints/``) or a
                directory: take a savepoint at the stop position first; ``result.savepoint`` has its path.
            final_checkpoint: without a savepoint, take one last checkpoint at the stop
                position (sinks commit it), as ``streamcore run`` does on SIGTERM.
        """
        directory = None
        if savepoint:
            directory = self._default_savepoint_dir() if savepoint is True else str(savepoint)
        result = self._control.request_stop(directory, final_checkpoint=final_checkpoint)
        res = self.wait(timeout)
        if savepoint:
            if result and isinstance(result[0], BaseException):
                raise result[0]
            res.savepoint = result[0] if result else None
        return res

    def request_stop(self, savepoint_directory: str | None = None, *, final_checkpoint: bool = False) -> None:
        """Ask the job to stop (as :meth:`stop`) without waiting; safe from a signal handler."""
        self._control.request_stop(savepoint_directory, final_checkpoint=final_checkpoint)

    def trigger_savepoint(self, directory: str | Path | None = None, timeout: float | None = 60.0) -> str:
        """Take a savepoint while the job keeps running; returns its path."""
        directory = str(directory) if directory is not None else self._default_savepoint_dir()
        done, result = self._control.request_savepoint(directory)
        if not done.wait(timeout):
            msg = f"savepoint of job {self.job_name!r} not taken within {timeout} s"
            raise CheckpointError(msg)
        if isinstance(result[0], BaseException):
            raise result[0]
        return result[0]

    def metrics(self) -> dict[str, Any]:
        """Live metrics of every source and operator, by uid."""
        return self._executor.metrics()

    @property
    def dashboard_url(self) -> str | None:
        """The dashboard's URL when ``enable_metrics(port=...)`` serves one (``/metrics`` is beside it)."""
        for listener in getattr(self._executor, "listeners", ()):
            url = getattr(listener, "url", None)
            if url:
                return str(url)
        return None

    @property
    def restarts(self) -> int:
        """Restarts after failures so far (restart strategy)."""
        return int(getattr(self._executor, "restarts", 0))

    def _default_savepoint_dir(self) -> str:
        directory = self._executor.checkpoint_dir
        if directory is None:
            msg = (
                "no savepoint directory: pass one, or enable_checkpointing(...) "
                "to use <checkpoint_dir>/savepoints"
            )
            raise CheckpointError(msg)
        return str(Path(directory) / "savepoints")
