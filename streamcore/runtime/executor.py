"""The scheduler loop: one thread polls source splits in turn and pushes each batch
synchronously through the operators.

Backpressure is structural: a split is read only after the previous batch has gone
all the way through. Between batches (when nothing is in flight) the executor fires
processing-time timers, serves checkpoint and savepoint requests and checks for a
stop request, so a checkpoint is a consistent cut by construction.
"""

from __future__ import annotations

import threading
import time
from dataclasses import dataclass, field
from typing import Any

from streamcore.errors import JobError, StreamcoreError
from streamcore.graph import PhysicalPlan, StreamGraph
from streamcore.operators.base import OperatorRuntime, StreamOperator
from streamcore.runtime.source_task import SourceTask
from streamcore.state.factory import StateBackendFactory
from streamcore.time import Clock, SystemClock

__all__ = ["JobControl", "JobExecutor", "JobResult", "build_plan"]


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

    def __repr__(self) -> str:
        state = "stopped" if self.stopped else "finished"
        return f"JobResult({self.job_name!r}, {state}, {self.records_read} records in {self.duration_s:.3f}s)"


class JobControl:
    """Requests from other threads to a running job (stop, savepoint); served between batches."""

    def __init__(self) -> None:
        self.stop_requested = threading.Event()
        self.drain = False
        self.savepoint_requests: list[tuple[str, threading.Event, list[Any]]] = []
        self.lock = threading.Lock()
        self.running = threading.Event()


def build_plan(graph: StreamGraph, runtime: OperatorRuntime) -> PhysicalPlan:
    """Instantiate every node of ``graph`` and wire the edges."""
    graph.resolve_uids()
    built: dict[int, Any] = {}
    sources: list[SourceTask] = []
    operators: list[StreamOperator] = []
    by_uid: dict[str, Any] = {}
    for node in graph.nodes:
        if node.kind == "source":
            task = SourceTask(
                node.name, node.resolved_uid, node.source, node.watermarks, node.timestamp_fn, runtime.clock
            )
            sources.append(task)
            built[node.id] = task
        else:
            assert node.factory is not None
            op = node.factory(node.name, node.resolved_uid)
            op.setup(runtime)
            for producer, side, tag in node.inputs:
                upstream = built[producer.id]
                upstream.output.connect(op, side, op.add_input_edge(), tag)
            operators.append(op)
            built[node.id] = op
        by_uid[node.resolved_uid] = built[node.id]
    return PhysicalPlan(sources, operators, by_uid)


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
    ) -> None:
        self.graph = graph
        self.job_name = job_name
        self.clock = clock
        self.batch_size = batch_size
        self.max_parallelism = max_parallelism
        self.state_factory = state_factory
        self.checkpointing = checkpointing
        self.restore = restore
        self.coordinator = coordinator
        self.control = control or JobControl()
        self.idle_sleep_ms = idle_sleep_ms
        self.plan: PhysicalPlan | None = None
        self.records_since_checkpoint = 0
        self._proc_time_ops: list[StreamOperator] = []
        self._discovering: list[SourceTask] = []

    # -- snapshots (used by the checkpoint coordinator) ----------------------------------
    def snapshot_all(self, checkpoint_id: int, canonical: bool = False) -> dict[str, Any]:
        """Snapshot of every source position and operator state: call only between batches.

        ``canonical`` asks keyed backends for backend-independent rows (savepoints).
        """
        assert self.plan is not None
        for op in self.plan.operators:
            op.checkpoint_id = checkpoint_id  # type: ignore[attr-defined]
        return {
            "sources": {s.uid: s.snapshot_state() for s in self.plan.sources},
            "operators": {op.uid: op.snapshot_state(canonical) for op in self.plan.operators},
            "coordinator": self.coordinator.snapshot() if self.coordinator is not None else None,
        }

    def notify_checkpoint_complete(self, checkpoint_id: int) -> None:
        """Tell operators (sinks commit) and sources (offsets commit) that ``checkpoint_id`` is durable."""
        assert self.plan is not None
        for op in self.plan.operators:
            op.notify_checkpoint_complete(checkpoint_id)
        for src in self.plan.sources:
            src.notify_checkpoint_complete(checkpoint_id)

    # -- the loop ------------------------------------------------------------------------
    def run(self) -> JobResult:
        """Open, restore, run to the end or to a stop request, close. Returns the result."""
        start = time.perf_counter()
        runtime = OperatorRuntime(self.clock, self.max_parallelism, self.state_factory, self.job_name)
        stopped = False
        savepoint_path = None
        try:
            if self.restore is not None:
                self.restore.prepare(self.state_factory)  # rebuilds <state_dir>/db from the checkpoint
            self.state_factory.open(fresh=self.restore is None or not self.restore.needs_state_dir)
            self.plan = build_plan(self.graph, runtime)
            plan = self.plan
            for s in plan.sources:
                s.open()
            if self.restore is not None:
                self.restore.apply(self)
            for op in plan.operators:
                op.open()
            if self.coordinator is not None:
                self.coordinator.attach(plan.sources, self.clock)
            self._proc_time_ops = [op for op in plan.operators if op.keyed]
            self._discovering = [s for s in plan.sources if s.source.discovery_interval_ms is not None]
            if self.checkpointing is not None:
                self.checkpointing.attach(self)
            self.control.running.set()
            stopped = self._loop(plan)
            if stopped:
                savepoint_path = self._serve_stop()
            else:
                for op in plan.operators:
                    op.finish()
                if self.checkpointing is not None:
                    self.checkpointing.on_job_finished(self)
        except StreamcoreError:
            raise
        except Exception as exc:
            msg = f"job {self.job_name!r} failed: {type(exc).__name__}: {exc}"
            raise JobError(msg) from exc
        finally:
            try:
                final_metrics = self.metrics()
            finally:
                self._close()
        duration = time.perf_counter() - start
        plan = self.plan
        return JobResult(
            self.job_name,
            duration,
            sum(s.records_out for s in plan.sources) if plan else 0,
            final_metrics,
            stopped=stopped,
            savepoint=savepoint_path,
            checkpoints=list(self.checkpointing.completed_ids) if self.checkpointing is not None else [],
        )

    def _loop(self, plan: PhysicalPlan) -> bool:
        """Poll until every source finished (returns False) or a stop was requested (True)."""
        batch_size = self.batch_size
        control = self.control
        between = self._between_batches
        coordinator = self.coordinator
        while True:
            if control.stop_requested.is_set():
                return True
            progressed = 0
            active = False
            for src in plan.sources:
                if src.finished:
                    continue
                active = True
                for i in src.pollable():
                    if coordinator is not None and not coordinator.may_poll(src, i):
                        continue
                    n = src.poll(i, batch_size)
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
        for op in self._proc_time_ops:
            op.on_processing_time(now)
        for src in self._discovering:
            first = len(src.readers)
            if src.discover(now) and self.coordinator is not None:
                self.coordinator.add_splits(src, first, now)
        if self.coordinator is not None:
            self.coordinator.tick(now)
        if self.checkpointing is not None:
            self.checkpointing.maybe_trigger(self, now)
        if self.control.savepoint_requests:
            self._serve_savepoints()

    def _serve_savepoints(self) -> None:
        with self.control.lock:
            requests, self.control.savepoint_requests = self.control.savepoint_requests, []
        for directory, done, result in requests:
            try:
                if self.checkpointing is None:
                    from streamcore.checkpoint.savepoint import write_savepoint

                    result.append(write_savepoint(self, directory))
                else:
                    result.append(self.checkpointing.savepoint(self, directory))
            except Exception as exc:
                result.append(exc)
            finally:
                done.set()

    def _serve_stop(self) -> str | None:
        self._serve_savepoints()
        return None

    def metrics(self) -> dict[str, Any]:
        """Live figures of every source and operator, by uid."""
        plan = self.plan
        if plan is None:
            return {}
        out: dict[str, Any] = {s.uid: s.metrics() for s in plan.sources}
        for op in plan.operators:
            out[op.uid] = op.metrics()
        if self.checkpointing is not None:
            out["checkpoints"] = self.checkpointing.metrics()
        if self.coordinator is not None:
            out["rate_coordinator"] = self.coordinator.metrics()
        return out

    def _close(self) -> None:
        errors: list[BaseException] = []
        if self.checkpointing is not None:
            self.checkpointing.close()  # waits for a checkpoint still being written
        plan = self.plan
        if plan is not None:
            for op in plan.operators:
                try:
                    op.close()
                except Exception as exc:
                    errors.append(exc)
            for s in plan.sources:
                try:
                    s.close()
                except Exception as exc:
                    errors.append(exc)
        self.state_factory.close()
