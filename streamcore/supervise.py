"""``streamcore run JOB --workers N``: run a consumer-group job as N worker processes on this machine.

Each worker is a plain ``streamcore run JOB ...`` (the same options, without
``--workers``): a member of the job's consumer group that runs the tasks the group
assigns it, with its own dashboard port. Started with the same arguments on another
machine, a worker joins the same group. The supervisor:

* checks first that the job is a consumer-group job (``KafkaSource(assignment="group")``):
  N copies of any other job would each read everything;
* forwards SIGTERM and SIGINT to every worker (each stops with a final checkpoint of its
  tasks; a second signal aborts them);
* waits for all of them; when one fails, the others take its tasks over and go on, and
  the supervisor's exit status says which failed (the first failure's status, else 0).
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from typing import Any, TextIO

from streamcore.errors import ConfigurationError

__all__ = ["run_argv", "run_workers"]


def run_argv(opts: Any) -> list[str]:
    """The ``streamcore run`` arguments (after ``run``) that reproduce ``opts`` (a ``RunOptions``)."""
    argv = [opts.job]
    for flag, value in (
        ("--name", opts.name),
        ("--restore", opts.restore),
        ("--checkpoints", opts.checkpoints),
        ("--state-backend", opts.state_backend),
        ("--state-dir", opts.state_dir),
        ("--metrics-host", opts.metrics_host),
        ("--pushgateway", opts.pushgateway),
        ("--log-level", opts.log_level),
    ):
        if value is not None:
            argv += [flag, str(value)]
    if opts.metrics_port is None:
        argv.append("--no-metrics")
    else:
        argv += ["--metrics-port", "0" if opts.metrics_port == 0 else str(opts.metrics_port)]
    if opts.savepoint_on_stop is not None:
        argv.append("--savepoint-on-stop")
        if opts.savepoint_on_stop:
            argv.append(opts.savepoint_on_stop)
    if opts.progress is not None:
        argv.append("--progress" if opts.progress else "--no-progress")
    if opts.log_json:
        argv.append("--log-json")
    return argv


def _check_group_job(opts: Any) -> None:
    """Build the job once (nothing runs) to see that a consumer group assigns its tasks.

    Raises:
        ConfigurationError: it is not a consumer-group job.
    """
    from streamcore.environment import StreamEnvironment
    from streamcore.launch import load_job
    from streamcore.runtime.group_job import group_spec

    fn, _ = load_job(opts.job)
    env = StreamEnvironment()
    fn(env)
    if group_spec(env.graph) is None:
        msg = (
            f"--workers runs one job as several processes of a consumer group, but {opts.job} does not read "
            "its sources with KafkaSource(..., assignment='group'): each worker would read everything. "
            "Use assignment='group', or run it without --workers"
        )
        raise ConfigurationError(msg)


def run_workers(opts: Any, workers: int, *, err: TextIO | None = None) -> int:
    """Start ``workers`` worker processes of the job of ``opts``; returns the exit status.

    Raises:
        ConfigurationError: ``workers`` < 1, or not a consumer-group job.
    """
    err = err or sys.stderr
    if type(workers) is not int or workers < 1:
        msg = f"--workers takes an int >= 1, got {workers!r}"
        raise ConfigurationError(msg)
    if workers > 1 and opts.metrics_port not in (None, 0):
        msg = f"--workers {workers} with --metrics-port {opts.metrics_port}: pass 0 (a free port per worker)"
        raise ConfigurationError(msg)
    _check_group_job(opts)
    argv = [sys.executable, "-m", "streamcore.cli", "run", *run_argv(opts)]
    procs = [subprocess.Popen(argv) for _ in range(workers)]
    err.write(f"streamcore: started {workers} workers of {opts.job}: pids {[p.pid for p in procs]}\n")
    err.flush()

    def forward(signum: int, frame: Any) -> None:
        for p in procs:
            if p.poll() is None:
                try:
                    os.kill(p.pid, signum)
                except ProcessLookupError:  # pragma: no cover - exited meanwhile
                    pass

    previous = {s: signal.signal(s, forward) for s in (signal.SIGTERM, signal.SIGINT)}
    status = 0
    try:
        for i, p in enumerate(procs):
            rc = p.wait()
            if rc != 0:
                err.write(f"streamcore: worker {i} (pid {p.pid}) exited with status {rc}\n")
                err.flush()
                status = status or rc
    finally:
        for s, h in previous.items():
            signal.signal(s, h)
    return status
