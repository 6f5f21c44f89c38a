"""The live status of a running job: one JSON-ready snapshot, published from the job's thread.

The job's objects belong to its thread, so nothing else reads them. Between batches, at
most every ``publish_ms`` of wall time, :class:`JobObserver` (a
:class:`~streamcore.runtime.run.RunListener`) reads the task's sources and operators, the
checkpoint coordinator and the rate coordinator, computes rates and ratios over the last
interval, and replaces :attr:`JobObserver.latest` with a new dict. The HTTP server, the
Prometheus collector, the Pushgateway pusher and the progress line read only that dict.

Counters stay monotonic across restarts: what an attempt had counted is carried into the
next attempt's figures.
"""

from __future__ import annotations

import collections
import logging
import threading
import time
from typing import Any

from streamcore.observe.timing import BusyTimer
from streamcore.runtime.executor import JobExecutor
from streamcore.runtime.run import JobRun, RunListener, runners_of, tasks_of
from streamcore.time import MAX_TIMESTAMP, MIN_TIMESTAMP

__all__ = ["CHECKPOINT_HISTORY", "ERROR_HISTORY", "JobObserver"]

#: warnings and errors of the job's loggers kept for the dashboard.
ERROR_HISTORY = 50
#: completed checkpoints shown by the dashboard and the REST API.
CHECKPOINT_HISTORY = 50

_COUNTERS = ("records_in", "records_out", "late_records_dropped")


def _wm(value: Any) -> int | None:
    """A watermark worth showing (not the start or end sentinels)."""
    if not isinstance(value, int) or value <= MIN_TIMESTAMP or value >= MAX_TIMESTAMP:
        return None
    return value


def state_figures(state_metrics: dict[str, Any]) -> dict[str, dict[str, int]]:
    """``{state: {"entries": n, "bytes": b}}`` from a keyed backend's metrics (bytes: RocksDB only)."""
    out: dict[str, dict[str, int]] = {}
    for name, fig in (state_metrics or {}).items():
        if not isinstance(fig, dict):
            continue
        entries = fig.get("entries", fig.get("keys", fig.get("approximate_num_keys")))
        row: dict[str, int] = {}
        if isinstance(entries, int):
            row["entries"] = entries
        if isinstance(fig.get("sst_bytes"), int):
            row["bytes"] = int(fig["sst_bytes"]) + int(fig.get("memtable_bytes") or 0)
        out[str(name)] = row
    return out


class _ErrorLog(logging.Handler):
    """Keeps the last warnings and errors of the ``streamcore`` loggers."""

    def __init__(self) -> None:
        super().__init__(logging.WARNING)
        self.records: collections.deque[dict[str, Any]] = collections.deque(maxlen=ERROR_HISTORY)

    def emit(self, record: logging.LogRecord) -> None:
        try:
            self.records.append(
                {
                    "time_ms": int(record.created * 1000),
                    "level": record.levelname,
                    "logger": record.name,
                    "message": record.getMessage(),
                }
            )
        except Exception:  # pragma: no cover - never let logging fail the job
            pass


class JobObserver(RunListener):
    """Publishes the job's status every ``publish_ms``; feeds the metrics registry.

    Args:
        publish_ms: the shortest wall-clock interval between two snapshots.
        registry: a :class:`streamcore.observe.prometheus.JobMetrics` to observe checkpoint
            histograms and sink latency into, or None.
    """

    def __init__(self, publish_ms: int = 1_000, registry: Any = None) -> None:
        self.publish_s = publish_ms / 1000
        self.registry = registry
        self.latest: dict[str, Any] = {"job": {"state": "CREATED"}}
        self.updated = threading.Condition()
        self.version = 0
        self._last_publish = 0.0
        self._prev: dict[tuple[str, str], tuple[float, int, int, float, float]] = {}
        self._carried: dict[tuple[str, str, str], int] = {}
        self._next_carry: tuple[dict[tuple[str, str, str], int], int, int] | None = None
        self._timers: dict[str, tuple[Any, BusyTimer]] = {}
        self._seen_checkpoints: set[tuple[str, int]] = set()
        self._errors = _ErrorLog()
        self._failed_checkpoints_carried = 0
        self._completed_checkpoints_carried = 0
        self._graph: tuple[list[dict[str, Any]], list[dict[str, Any]]] | None = None

    # -- listener hooks ---------------------------------------------------------------------
    def run_started(self, run: JobRun) -> None:
        """Capture warnings of the ``streamcore`` loggers; publish the first (empty) status."""
        logging.getLogger("streamcore").addHandler(self._errors)
        self._publish(run, run.executor, final=True)

    def attempt_started(self, run: JobRun, executor: JobExecutor) -> None:
        """Instrument the attempt's tasks (busy time, latency); publish."""
        if self._next_carry is not None:  # a restart: counters go on from the failed attempt's
            self._carried, self._completed_checkpoints_carried, self._failed_checkpoints_carried = (
                self._next_carry
            )
            self._next_carry = None
        self._timers = {}
        self._prev.clear()
        restores = [r.restore_seconds for _, r in runners_of(executor) if r.restore_seconds is not None]
        if self.registry is not None and restores:
            self.registry.restore_seconds = max(restores)
        self._publish(run, executor, final=True)

    def _timer(self, tid: str, task: Any) -> BusyTimer:
        """The busy timer of task ``tid``, instrumenting a task the first time it is seen."""
        known = self._timers.get(tid)
        if known is not None and known[0] is task:
            return known[1]
        latency = self.registry.observe_latency if self.registry is not None else None
        timer = BusyTimer((lambda uid, s: latency(tid, uid, s)) if latency is not None else None)
        timer.instrument(task)
        self._timers[tid] = (task, timer)
        self._prev = {k: v for k, v in self._prev.items() if k[0] != tid}
        return timer

    def between_batches(self, run: JobRun, executor: JobExecutor) -> None:
        """Publish when the interval has passed."""
        if time.monotonic() - self._last_publish >= self.publish_s:
            self._publish(run, executor)

    def attempt_ended(self, run: JobRun, executor: JobExecutor, error: BaseException | None) -> None:
        """Publish the attempt's last figures; carry its counters into the next attempt."""
        snap = self._publish(run, executor, final=True)
        carried: dict[tuple[str, str, str], int] = {}
        for vertex in snap.get("vertices", ()):
            for tid, fig in vertex.get("tasks", {}).items():
                for name in _COUNTERS:
                    carried[(tid, vertex["uid"], name)] = int(fig.get(name) or 0)
        cps = snap.get("checkpoints") or {}
        self._next_carry = (carried, int(cps.get("completed") or 0), int(cps.get("failed") or 0))

    def run_ended(self, run: JobRun, result: Any, error: BaseException | None) -> None:
        """Publish the final status; stop capturing warnings."""
        self._publish(run, run.executor, final=True)
        logging.getLogger("streamcore").removeHandler(self._errors)

    # -- snapshots -------------------------------------------------------------------------------
    def _publish(self, run: JobRun, executor: JobExecutor | None, *, final: bool = False) -> dict[str, Any]:
        now = time.monotonic()
        self._last_publish = now
        try:
            snap = self._snapshot(run, executor, now)
        except Exception as exc:  # a figure that cannot be read must not fail the job
            logging.getLogger("streamcore.observe").debug("status snapshot failed: %s", exc)
            return self.latest
        with self.updated:
            self.latest = snap
            self.version += 1
            self.updated.notify_all()
        return snap

    def _graph_of(self, executor: JobExecutor) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
        if self._graph is None:
            graph = tasks_of(executor)[0][1].graph
            graph.resolve_uids()
            nodes = [{"uid": n.resolved_uid, "name": n.name, "kind": n.kind, "id": n.id} for n in graph.nodes]
            edges = [
                {"from": producer.resolved_uid, "to": n.resolved_uid, "side": side, "tag": tag}
                for n in graph.nodes
                for producer, side, tag in n.inputs
            ]
            self._graph = (nodes, edges)
        return self._graph

    def _snapshot(self, run: JobRun, executor: JobExecutor | None, now: float) -> dict[str, Any]:
        wall_ms = int(time.time() * 1000)
        job: dict[str, Any] = {
            "name": run.job_name,
            "state": run.state,
            "started_ms": run.started_ms,
            "ended_ms": run.ended_ms,
            "duration_s": ((run.ended_ms or wall_ms) - run.started_ms) / 1000 if run.started_ms else 0.0,
            "attempt": run.attempt,
            "restarts": run.restarts,
            "restart_strategy": run.restart.describe(),
            "failures": list(run.failures[-10:]),
            **{k: (str(v) if v is not None else None) for k, v in run.describe.items()},
        }
        out: dict[str, Any] = {"job": job, "tasks": [], "vertices": [], "edges": []}
        out["errors"] = list(self._errors.records)
        if executor is None or not any(task.plan is not None for _, task in tasks_of(executor)):
            return out
        nodes, edges = self._graph_of(executor)
        out["edges"] = edges
        tasks = tasks_of(executor)
        out["tasks"] = [{"id": tid} for tid, _ in tasks]
        vertices = {n["uid"]: {**n, "type": None, "tasks": {}} for n in nodes}
        records_read = 0
        for tid, task in tasks:
            if task.plan is None:
                continue
            timer = self._timer(tid, task)
            for src in task.sources:
                fig = self._source_figures(src, wall_ms)
                records_read += fig["records_out"]
                self._rates(tid, src.uid, fig, timer, now)
                v = vertices.setdefault(
                    src.uid, {"uid": src.uid, "name": src.name, "kind": "source", "tasks": {}}
                )
                v["type"] = type(src.source).__name__
                v["tasks"][tid] = fig
            for op in task.operators:
                fig = self._operator_figures(op, wall_ms)
                self._rates(tid, op.uid, fig, timer, now)
                v = vertices.setdefault(
                    op.uid, {"uid": op.uid, "name": op.name, "kind": "operator", "tasks": {}}
                )
                v["type"] = type(op).__name__
                v["tasks"][tid] = fig
        for (tid, uid, name), base in self._carried.items():
            fig = vertices.get(uid, {}).get("tasks", {}).get(tid)
            if fig is not None and name in fig:
                fig[name] += base
        out["vertices"] = list(vertices.values())
        job["records_read"] = records_read + sum(
            b
            for (_, uid, name), b in self._carried.items()
            if name == "records_out" and self._is_source(uid, nodes)
        )
        job["records_read_per_s"] = sum(
            fig.get("records_out_per_s", 0.0)
            for v in out["vertices"]
            if v["kind"] == "source"
            for fig in v["tasks"].values()
        )
        out["checkpoints"] = self._checkpoints(executor)
        coordinators = [r.rate_coordinator for _, r in runners_of(executor) if r.rate_coordinator is not None]
        out["rate_coordinator"] = coordinators[0].metrics() if coordinators else None
        out["metrics"] = executor.metrics()
        return out

    @staticmethod
    def _is_source(uid: str, nodes: list[dict[str, Any]]) -> bool:
        return any(n["uid"] == uid and n["kind"] == "source" for n in nodes)

    def _rates(self, tid: str, uid: str, fig: dict[str, Any], timer: BusyTimer | None, now: float) -> None:
        busy = timer.busy.get(uid, 0.0) if timer is not None else 0.0
        back = timer.backpressured.get(uid, 0.0) if timer is not None else 0.0
        rin, rout = int(fig.get("records_in") or 0), int(fig.get("records_out") or 0)
        prev = self._prev.get((tid, uid))
        self._prev[(tid, uid)] = (now, rin, rout, busy, back)
        if prev is None or now - prev[0] <= 0:
            fig.update(records_in_per_s=0.0, records_out_per_s=0.0, busy_ratio=0.0, backpressured_ratio=0.0)
            return
        dt = now - prev[0]
        fig["records_in_per_s"] = max(0.0, (rin - prev[1]) / dt)
        fig["records_out_per_s"] = max(0.0, (rout - prev[2]) / dt)
        fig["busy_ratio"] = min(1.0, max(0.0, (busy - prev[3]) / dt))
        fig["backpressured_ratio"] = min(1.0, max(0.0, (back - prev[4]) / dt))

    @staticmethod
    def _source_figures(src: Any, wall_ms: int) -> dict[str, Any]:
        fig = source_figures(src.metrics(), wall_ms)
        fig["finished"] = bool(src.finished)
        return fig

    @staticmethod
    def _operator_figures(op: Any, wall_ms: int) -> dict[str, Any]:
        m = op.metrics()
        dropped = None
        late_per_side = m.get("late_per_side")
        tags = getattr(op, "late_tags", None)
        if isinstance(late_per_side, list) and tags is not None:
            dropped = 0
            for n, tag in zip(late_per_side, tags, strict=False):
                if tag is None or not op.output.has_side(tag):
                    dropped += int(n)
        return operator_figures(m, wall_ms, dropped)

    def _checkpoints(self, executor: JobExecutor) -> dict[str, Any] | None:
        """Checkpoint figures of every task: counts summed, the newest one's figures, a history."""
        runners = [(tid, r) for tid, r in runners_of(executor) if r.checkpointing is not None]
        if not runners:
            return None
        registry = self.registry
        history: list[dict[str, Any]] = []
        m: dict[str, Any] = {"completed": 0, "failed": 0, "in_progress": False, "last_completed_id": None}
        for tid, r in runners:
            figures = r.checkpointing.metrics()
            for entry in figures.pop("history", []):
                history.append(dict(entry, task=tid))
                key = (tid, int(entry["id"]))
                if key not in self._seen_checkpoints:
                    self._seen_checkpoints.add(key)
                    if registry is not None:
                        registry.observe_checkpoint(entry, tid)
            m["completed"] += int(figures.get("completed") or 0)
            m["failed"] += int(figures.get("failed") or 0)
            m["in_progress"] = m["in_progress"] or bool(figures.get("in_progress"))
            for k, v in figures.items():
                if k not in ("completed", "failed", "in_progress") and (len(runners) == 1 or k not in m):
                    m[k] = v
        history.sort(key=lambda h: (h["id"], h["task"]))
        m["history"] = history[-CHECKPOINT_HISTORY:]
        m["completed"] += self._completed_checkpoints_carried
        m["failed"] += self._failed_checkpoints_carried
        m["directory"] = str(executor.checkpoint_dir)
        restores = [r.restore_seconds for _, r in runners if r.restore_seconds is not None]
        m["restore_seconds"] = max(restores) if restores else None
        return m


def source_figures(m: dict[str, Any], wall_ms: int) -> dict[str, Any]:
    """The status figures of a source from its metrics dict (``SourceTask.metrics()``)."""
    wm = _wm(m.get("watermark"))
    splits = {}
    for sid, s in (m.get("splits") or {}).items():
        swm = _wm(s.get("watermark"))
        splits[str(sid)] = {
            "watermark": swm,
            "watermark_lag_ms": wall_ms - swm if swm is not None else None,
            "idle": bool(s.get("idle")),
            "paused": bool(s.get("paused")),
            "paused_ms": s.get("paused_ms"),
            "finished": bool(s.get("finished")),
            "lag_records": s.get("lag"),
        }
    return {
        "records_in": 0,
        "records_out": int(m.get("records_out") or 0),
        "late_records_dropped": 0,
        "watermark": wm,
        "watermark_lag_ms": wall_ms - wm if wm is not None else None,
        "splits": splits,
    }


def operator_figures(m: dict[str, Any], wall_ms: int, late_dropped: int | None = None) -> dict[str, Any]:
    """The status figures of an operator from its metrics dict (``StreamOperator.metrics()``).

    ``late_dropped``: late records not sent to a side output (default: every late record).
    """
    wm = _wm(m.get("watermark"))
    buffered = m.get("buffered_per_side")
    fig: dict[str, Any] = {
        "records_in": int(m.get("records_in") or 0),
        "records_out": int(m.get("records_out") or 0),
        "late_records_dropped": int(m.get("late_records") or 0) if late_dropped is None else late_dropped,
        "watermark": wm,
        "watermark_lag_ms": wall_ms - wm if wm is not None else None,
        "state": state_figures(m.get("state") or {}),
        "event_timers": m.get("event_timers"),
    }
    if isinstance(buffered, list):
        fig["buffered_records"] = int(sum(buffered))
    elif "pending_windows" in m:
        fig["buffered_records"] = int(m["pending_windows"])
    return fig


def status_of_metrics(job_name: str, metrics: dict[str, Any]) -> dict[str, Any]:
    """A status snapshot (one task, ``"0"``) built from a job's metrics dict (``JobResult.metrics``)."""
    wall_ms = int(time.time() * 1000)
    vertices = []
    for uid, m in metrics.items():
        if uid in ("checkpoints", "rate_coordinator") or not isinstance(m, dict):
            continue
        if "splits" in m:
            vertices.append({"uid": uid, "kind": "source", "tasks": {"0": source_figures(m, wall_ms)}})
        else:
            vertices.append({"uid": uid, "kind": "operator", "tasks": {"0": operator_figures(m, wall_ms)}})
    return {
        "job": {"name": job_name},
        "tasks": [{"id": "0"}],
        "vertices": vertices,
        "checkpoints": metrics.get("checkpoints"),
        "rate_coordinator": metrics.get("rate_coordinator"),
    }
