"""``streamcore run``: load a job, run it in this process, stop it gracefully on SIGTERM.

The command line is parsed by :mod:`streamcore.cli` into :class:`RunOptions`; :func:`run_job`
does the run, so a supervisor (``--workers N``) can start one plain ``streamcore run`` per
worker process with the same options:

1. load the job function: ``pkg.module:build_job`` or ``path/to/job.py`` (function
   ``build_job`` unless ``path.py:name``), a function that takes a
   :class:`~streamcore.environment.StreamEnvironment` and builds the job on it (it may
   return the job's name);
2. apply the options: state backend, checkpoint directory (``enable_checkpointing`` with
   ``every_ms=10_000`` if the job did not enable it), metrics port, Pushgateway, logging;
3. print one status line (job, state backend, checkpoints, dashboard URL) to stderr, run
   the job in a background thread, and show a progress line for bounded jobs when stdout
   is a terminal;
4. on the first SIGTERM or SIGINT, stop the job between two batches: stop reading, take a
   final checkpoint (a savepoint with ``--savepoint-on-stop``), let sinks commit, close;
   a second signal exits at once (status 128 + signal);
5. print a summary line.

Exit status: 0 when the job finished, or was stopped by SIGTERM or the REST API; 130 when
stopped by Ctrl-C (SIGINT); 1 when it failed (one line on stderr, no traceback); 2 on
bad usage.
"""

from __future__ import annotations

import importlib
import importlib.util
import os
import signal
import sys
import tempfile
import time
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any, TextIO

from streamcore.errors import ConfigurationError, StreamcoreError

__all__ = ["RunOptions", "load_job", "run_job"]


@dataclass
class RunOptions:
    """What ``streamcore run`` was asked to do (see ``streamcore run --help``)."""

    job: str
    name: str | None = None
    restore: str | None = None
    checkpoints: str | None = None
    state_backend: str | None = None
    state_dir: str | None = None
    metrics_port: int | None = 0
    metrics_host: str = "127.0.0.1"
    pushgateway: str | None = None
    savepoint_on_stop: str | None = None
    progress: bool | None = None
    log_level: str = "INFO"
    log_json: bool = False
    extra: dict[str, Any] = field(default_factory=dict)


def load_job(spec: str) -> tuple[Any, str]:
    """The job function named by ``spec`` and the default job name.

    Raises:
        ConfigurationError: no such file, module or function, or not callable.
    """
    target, _, func = spec.partition(":")
    if target.endswith(".py") or os.sep in target or "/" in target:
        path = Path(target)
        if not path.is_file():
            msg = f"no job file {str(path)!r}: pass path/to/job.py or pkg.module:build_job"
            raise ConfigurationError(msg)
        module_name = f"streamcore_job_{path.stem}"
        sys.path.insert(0, str(path.resolve().parent))
        mod_spec = importlib.util.spec_from_file_location(module_name, path)
        assert mod_spec is not None and mod_spec.loader is not None
        module = importlib.util.module_from_spec(mod_spec)
        sys.modules[module_name] = module
        mod_spec.loader.exec_module(module)
        default_name = path.stem
    else:
        try:
            module = importlib.import_module(target)
        except ModuleNotFoundError as exc:
            msg = f"cannot import job module {target!r}: {exc}; pass pkg.module:build_job or path/to/job.py"
            raise ConfigurationError(msg) from exc
        default_name = target.rsplit(".", 1)[-1]
    func = func or "build_job"
    fn = getattr(module, func, None)
    if not callable(fn):
        msg = (
            f"job module {target!r} has no function {func!r}: define def {func}(env): ... that builds the "
            "job on the StreamEnvironment it gets, or name another with MODULE:FUNCTION"
        )
        raise ConfigurationError(msg)
    return fn, default_name


class _Stderr:
    """sys.stderr looked up on every write (the progress display redirects it)."""

    def write(self, text: str) -> int:
        return sys.stderr.write(text)

    def flush(self) -> None:
        sys.stderr.flush()


def _configure(opts: RunOptions) -> Any:
    """Build the environment and the job; returns ``(env, job_name)``."""
    from streamcore.environment import StreamEnvironment

    fn, default_name = load_job(opts.job)
    backend = opts.state_backend or "heap"
    state_dir = opts.state_dir
    if backend == "rocksdb" and state_dir is None:
        state_dir = tempfile.mkdtemp(prefix="streamcore-state-")
        opts.extra["temporary_state_dir"] = state_dir
    env = StreamEnvironment(state_backend=backend, state_dir=state_dir)
    if opts.checkpoints is not None:
        env.default_checkpoint_dir = Path(opts.checkpoints)
    returned = fn(env)
    name = opts.name or (returned if isinstance(returned, str) and returned else default_name)
    if opts.checkpoints is not None:
        if env.checkpoint_config is None:
            env.enable_checkpointing(opts.checkpoints, every_ms=10_000)
        else:
            env.checkpoint_config = replace(env.checkpoint_config, directory=Path(opts.checkpoints))
    if opts.metrics_port is not None or opts.pushgateway is not None:
        current = env.metrics_config
        port = opts.metrics_port if opts.metrics_port is not None else (current.port if current else None)
        env.enable_metrics(
            port=port,
            host=opts.metrics_host,
            pushgateway=opts.pushgateway or (current.pushgateway if current else None),
        )
    return env, name


class _Progress:
    """A one-line progress display of a bounded job (rich), fed from the job's thread."""

    def __init__(self) -> None:
        self.figures: dict[str, Any] = {"records": 0, "rate": 0.0, "watermark": None, "checkpoints": 0}
        self._last = (time.monotonic(), 0)

    def listener(self) -> Any:
        from streamcore.runtime.run import RunListener, completed_checkpoints, tasks_of

        progress = self

        class Feed(RunListener):
            def between_batches(self, run: Any, executor: Any) -> None:
                now = time.monotonic()
                if now - progress._last[0] < 0.2:
                    return
                tasks = [t for _, t in tasks_of(executor) if t.plan is not None]
                records = sum(t.records_read() for t in tasks)
                rate = (records - progress._last[1]) / (now - progress._last[0])
                progress._last = (now, records)
                wms = [s.current_watermark for t in tasks for s in t.sources if not s.finished]
                progress.figures = {
                    "records": records,
                    "rate": max(rate, 0.0),
                    "watermark": min(wms) if wms else None,
                    "checkpoints": len(completed_checkpoints(executor)),
                }

        return Feed()

    def text(self) -> str:
        from streamcore.time import MAX_TIMESTAMP, MIN_TIMESTAMP

        f = self.figures
        wm = f["watermark"]
        shown = (
            "-"
            if wm is None or wm in (MIN_TIMESTAMP, MAX_TIMESTAMP)
            else time.strftime("%Y-%m-%d %H:%M:%S", time.gmtime(wm / 1000))
        )
        return (
            f"records read {f['records']:,}  {f['rate']:,.0f}/s  watermark {shown}  "
            f"checkpoints {f['checkpoints']}"
        )


def run_job(opts: RunOptions, *, err: TextIO | None = None) -> int:
    """Run the job of ``opts`` until it ends; returns the exit status (see the module docstring)."""
    from streamcore.logs import configure_logging

    err = err or sys.stderr
    try:
        configure_logging(opts.log_level, json=opts.log_json, stream=_Stderr())  # type: ignore[arg-type]
        env, name = _configure(opts)
        bounded = all(n.source.bounded for n in env.graph.nodes if n.kind == "source")
        show_progress = opts.progress if opts.progress is not None else (bounded and sys.stdout.isatty())
        progress = _Progress() if show_progress else None
        if progress is not None:
            env.add_run_listener(progress.listener)
        handle = env.execute_async(name, restore_from=opts.restore)
    except StreamcoreError as exc:
        err.write(f"streamcore: error: {exc}\n")
        return 1
    cp = env.checkpoint_config
    err.write(
        f"streamcore: job {name!r} running: state backend {env.state_backend}"
        + (f" ({env.state_dir})" if env.state_dir else "")
        + f", checkpoints {cp.directory if cp is not None else 'off'}"
        + f", dashboard {handle.dashboard_url or 'off'}\n"
    )
    err.flush()
    stop_signal: list[int] = []

    def on_signal(signum: int, frame: Any) -> None:
        if stop_signal:
            err.write(f"streamcore: {signal.Signals(signum).name} again: aborting job {name!r} now\n")
            err.flush()
            os._exit(128 + signum)
        stop_signal.append(signum)
        how = (
            "a savepoint"
            if opts.savepoint_on_stop is not None
            else "a final checkpoint"
            if cp is not None
            else "no checkpoint"
        )
        err.write(
            f"streamcore: {signal.Signals(signum).name}: stopping job {name!r} with {how} (again to abort)\n"
        )
        err.flush()
        savepoint = opts.savepoint_on_stop
        if savepoint == "":
            savepoint = str(Path(cp.directory) / "savepoints") if cp is not None else None
        try:
            handle.request_stop(savepoint, final_checkpoint=True)
        except Exception as exc:  # pragma: no cover - never lose the signal
            err.write(f"streamcore: could not request the stop: {exc}\n")

    previous = {s: signal.signal(s, on_signal) for s in (signal.SIGTERM, signal.SIGINT)}
    display = None
    try:
        if progress is not None:
            from rich.console import Console
            from rich.live import Live
            from rich.text import Text

            display = Live(
                Text(progress.text()), console=Console(file=sys.stdout), refresh_per_second=4, transient=True
            )
            display.start()
        while not handle.done():
            time.sleep(0.1)
            if display is not None:
                display.update(Text(progress.text()))  # type: ignore[union-attr]
        if display is not None:
            display.stop()
            display = None
        try:
            result = handle.wait()
        except StreamcoreError as exc:
            err.write(f"streamcore: job {name!r} failed: {exc}\n")
            return 1
    finally:
        if display is not None:
            display.stop()
        for s, h in previous.items():
            signal.signal(s, h)
        temporary = opts.extra.get("temporary_state_dir")
        if temporary and handle.done():  # working state only: checkpoints hold what a restore needs
            import shutil

            shutil.rmtree(temporary, ignore_errors=True)
    rate = result.records_read / result.duration_s if result.duration_s > 0 else 0.0
    parts = [
        f"streamcore: job {name!r} {'stopped' if result.stopped else 'finished'}: "
        f"{result.records_read:,} records in {result.duration_s:.1f} s ({rate:,.0f}/s)",
        f"{len(result.checkpoints)} checkpoints"
        + (f" (last chk-{result.checkpoints[-1]} in {cp.directory})" if result.checkpoints and cp else ""),
    ]
    if result.savepoint:
        parts.append(f"savepoint {result.savepoint}")
    if result.restarts:
        parts.append(f"{result.restarts} restarts")
    err.write(", ".join(parts) + "\n")
    err.flush()
    if stop_signal and stop_signal[0] == signal.SIGINT:
        return 130
    return 0
