"""What ``env.enable_metrics(...)`` turns on for a job run: status, registry, server, pushes.

:class:`JobService` is a :class:`~streamcore.runtime.run.RunListener`: when the run starts
it binds the HTTP port (``/metrics``, the dashboard, the REST API) and starts pushing to a
Pushgateway; between batches it lets its :class:`~streamcore.observe.status.JobObserver`
publish; when the run ends it publishes the final status, pushes once more (or deletes
its group from the Pushgateway when the job ended cleanly) and closes the port.
"""

from __future__ import annotations

import logging
import os
import socket
import threading
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from streamcore.errors import ConfigurationError
from streamcore.observe.prometheus import JobMetrics
from streamcore.observe.status import JobObserver
from streamcore.runtime.executor import JobExecutor
from streamcore.runtime.run import JobRun, RunListener

__all__ = ["FLINK_PROMETHEUS_PORT", "JobService", "MetricsConfig"]

#: the port of Flink's PrometheusReporter, the default of ``enable_metrics()``.
FLINK_PROMETHEUS_PORT = 9249

logger = logging.getLogger("streamcore.observe")


@dataclass(frozen=True)
class MetricsConfig:
    """How a job exposes its metrics (built by ``env.enable_metrics``).

    Args:
        port: serve ``/metrics``, the dashboard and the REST API on this port (0: a free
            one; ``None``: no server).
        host: the address to bind (loopback by default: expose it on purpose).
        pushgateway: ``"host:port"`` of a Prometheus Pushgateway to push to, or None.
        every_ms: push interval.
        job: the Pushgateway job name (default: the streamcore job name).
        grouping_key: further Pushgateway grouping labels (default ``{"instance": host-pid}``).
        publish_ms: how often the job's thread publishes a status snapshot.
    """

    port: int | None = FLINK_PROMETHEUS_PORT
    host: str = "127.0.0.1"
    pushgateway: str | None = None
    every_ms: int = 10_000
    job: str | None = None
    grouping_key: dict[str, str] = field(default_factory=dict)
    publish_ms: int = 1_000

    def __post_init__(self) -> None:
        if self.port is not None and (type(self.port) is not int or not 0 <= self.port <= 65535):
            msg = f"enable_metrics port must be an int 0-65535 (0: any free port) or None, got {self.port!r}"
            raise ConfigurationError(msg)
        if self.port is None and self.pushgateway is None:
            msg = (
                "enable_metrics() needs port=... (serve /metrics) or pushgateway='host:port' (push), or both"
            )
            raise ConfigurationError(msg)
        if self.pushgateway is not None and (not isinstance(self.pushgateway, str) or not self.pushgateway):
            msg = f"pushgateway must be 'host:port' (or a URL), got {self.pushgateway!r}"
            raise ConfigurationError(msg)
        for name in ("every_ms", "publish_ms"):
            value = getattr(self, name)
            if type(value) is not int or value < 1:
                msg = f"enable_metrics {name} must be an int >= 1 (milliseconds), got {value!r}"
                raise ConfigurationError(msg)
        if not isinstance(self.grouping_key, dict) or not all(
            isinstance(k, str) and isinstance(v, str) for k, v in self.grouping_key.items()
        ):
            msg = f"grouping_key must be a dict of str to str, got {self.grouping_key!r}"
            raise ConfigurationError(msg)


class _Pusher:
    """Pushes the registry to a Pushgateway every ``every_ms`` in a daemon thread."""

    def __init__(self, config: MetricsConfig, metrics: JobMetrics, job: str) -> None:
        self.gateway = config.pushgateway
        self.every_s = config.every_ms / 1000
        self.job = config.job or job
        self.grouping_key = dict(config.grouping_key) or {"instance": f"{socket.gethostname()}-{os.getpid()}"}
        self.metrics = metrics
        self.pushes = 0
        self.last_error: str | None = None
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._loop, name="streamcore-pushgateway", daemon=True)

    def start(self) -> None:
        self.push()
        self._thread.start()

    def _loop(self) -> None:
        while not self._stop.wait(self.every_s):
            self.push()

    def push(self) -> None:
        from prometheus_client import push_to_gateway

        try:
            push_to_gateway(
                self.gateway,
                job=self.job,
                registry=self.metrics.registry,
                grouping_key=self.grouping_key,
                timeout=5,
            )
            self.pushes += 1
            if self.last_error is not None:
                logger.info("pushing metrics to %s works again", self.gateway)
            self.last_error = None
        except Exception as exc:
            text = f"{type(exc).__name__}: {exc}"
            if text != self.last_error:  # once per distinct error, not every interval
                logger.warning("pushing metrics to the Pushgateway %s failed: %s", self.gateway, text)
            self.last_error = text

    def stop(self, *, delete: bool) -> None:
        from prometheus_client import delete_from_gateway

        self._stop.set()
        if self._thread.is_alive():
            self._thread.join(10)
        if not delete:
            self.push()
            return
        try:
            delete_from_gateway(self.gateway, job=self.job, grouping_key=self.grouping_key, timeout=5)
        except Exception as exc:
            logger.warning("deleting the metrics group of %r from %s failed: %s", self.job, self.gateway, exc)


class JobService(RunListener):
    """Metrics registry, HTTP server and Pushgateway pusher of one job run."""

    def __init__(self, config: MetricsConfig, job_name: str) -> None:
        self.config = config
        self.job_name = job_name
        self.observer = JobObserver(config.publish_ms)
        self.metrics = JobMetrics(job_name, lambda: self.observer.latest)
        self.observer.registry = self.metrics
        self.server: Any = None
        self.pusher: _Pusher | None = None
        self.run: JobRun | None = None

    @property
    def url(self) -> str | None:
        """The dashboard's URL (``/metrics`` and ``/api/v1`` are beside it), or None without a server."""
        return self.server.url + "/" if self.server is not None else None

    # -- listener --------------------------------------------------------------------------
    def run_started(self, run: JobRun) -> None:
        """Bind the port and start pushing.

        Raises:
            ConfigurationError: the port is in use or the address cannot be bound.
        """
        from streamcore.observe.server import JobHTTPServer

        self.run = run
        self.observer.run_started(run)
        cfg = self.config
        if cfg.port is not None:
            try:
                self.server = JobHTTPServer(cfg.host, cfg.port, self)
            except OSError as exc:
                msg = (
                    f"cannot serve metrics on {cfg.host}:{cfg.port}: {exc.strerror or exc}; pick another "
                    "port with enable_metrics(port=...) (or --metrics-port), or port=0 for any free one"
                )
                raise ConfigurationError(msg) from exc
            self.server.start()
            logger.info(
                "job %r: dashboard at %s, Prometheus metrics at %smetrics", self.job_name, self.url, self.url
            )
        if cfg.pushgateway is not None:
            self.pusher = _Pusher(cfg, self.metrics, self.job_name)
            self.pusher.start()

    def attempt_started(self, run: JobRun, executor: JobExecutor) -> None:
        """Instrument and publish."""
        self.observer.attempt_started(run, executor)

    def between_batches(self, run: JobRun, executor: JobExecutor) -> None:
        """Publish when due."""
        self.observer.between_batches(run, executor)

    def attempt_ended(self, run: JobRun, executor: JobExecutor, error: BaseException | None) -> None:
        """Publish the attempt's last figures."""
        self.observer.attempt_ended(run, executor, error)

    def run_ended(self, run: JobRun, result: Any, error: BaseException | None) -> None:
        """Final status; last push (or delete the group after a clean end); close the port."""
        self.observer.run_ended(run, result, error)
        if self.pusher is not None:
            self.pusher.stop(delete=error is None)
        if self.server is not None:
            self.server.stop()

    # -- the REST API ------------------------------------------------------------------------------
    def api_get(self, path: str) -> Any:
        """Answer ``GET /api/v1<path>``."""
        from streamcore.observe.server import api_error

        snap = self.observer.latest
        if path == "/overview":
            return {k: v for k, v in snap.items() if k != "metrics"}
        if path == "/job":
            return {**snap.get("job", {}), "tasks": snap.get("tasks", []), "url": self.url}
        if path == "/vertices":
            return {k: snap.get(k, []) for k in ("vertices", "edges", "tasks")}
        if path == "/checkpoints":
            return snap.get("checkpoints") or {"completed": 0, "failed": 0, "history": [], "enabled": False}
        if path == "/metrics":
            return snap.get("metrics", {})
        raise api_error(404, f"no such endpoint /api/v1{path}; try /api/v1/overview")

    def api_post(self, path: str, body: dict[str, Any]) -> Any:
        """Answer ``POST /api/v1<path>``: savepoints and stop."""
        from streamcore.observe.server import api_error

        run = self.run
        if run is None or run.state in ("FINISHED", "STOPPED", "FAILED"):
            raise api_error(409, f"job {self.job_name!r} is not running")
        directory = body.get("directory")
        if directory is not None and not isinstance(directory, str):
            raise api_error(400, f"'directory' must be a string path, got {directory!r}")
        timeout = body.get("timeout_s", 300)
        if isinstance(timeout, bool) or not isinstance(timeout, (int, float)) or timeout <= 0:
            raise api_error(400, f"'timeout_s' must be a number of seconds > 0, got {timeout!r}")
        if path == "/savepoints":
            target = directory or self._default_savepoint_dir()
            done, result = run.control.request_savepoint(target)
            if not done.wait(timeout):
                raise api_error(500, f"the savepoint was not taken within {timeout} s")
            if isinstance(result[0], BaseException):
                raise api_error(500, f"the savepoint failed: {result[0]}")
            return {"path": str(result[0])}
        if path == "/stop":
            savepoint = body.get("savepoint", False)
            if not isinstance(savepoint, bool):
                raise api_error(400, f"'savepoint' must be true or false, got {savepoint!r}")
            target = (directory or self._default_savepoint_dir()) if savepoint else None
            result = run.control.request_stop(target, final_checkpoint=True)
            if not savepoint:
                return {"stopping": True, "savepoint": None}
            waited = 0.0
            while not result and waited < timeout and run.state not in ("FINISHED", "STOPPED", "FAILED"):
                threading.Event().wait(0.05)
                waited += 0.05
            if result and isinstance(result[0], BaseException):
                raise api_error(500, f"the savepoint failed: {result[0]}")
            return {"stopping": True, "savepoint": str(result[0]) if result else None}
        raise api_error(404, f"no such endpoint POST /api/v1{path}")

    def _default_savepoint_dir(self) -> str:
        from streamcore.observe.server import api_error

        directory = self.run.checkpoint_dir if self.run is not None else None
        if directory is None:
            raise api_error(400, 'the job has no checkpoint directory: pass {"directory": ...}')
        return str(Path(directory) / "savepoints")
