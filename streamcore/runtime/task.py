"""A task: one instance of a job's dataflow, with its own sources, operators and state.

The executor builds a task from the logical graph, opens it, polls its sources and
pushes batches through its operators; checkpointing sees it only through
:class:`~streamcore.checkpoint.protocol.CheckpointedTask` (snapshot, restore, uids).
Everything a task owns (operator instances, keyed state, timers, watermarks, source
positions) is snapshotted and restored together, so a task can be stopped in one run
and resumed in another.
"""

from __future__ import annotations

import copy
import types
from collections.abc import Callable
from typing import Any

from streamcore.checkpoint.protocol import OperatorInfo, TaskImage
from streamcore.errors import ConfigurationError
from streamcore.graph import PhysicalPlan, StreamGraph
from streamcore.operators.base import OperatorRuntime, SnapshotContext, StreamOperator
from streamcore.runtime.source_task import SourceTask
from streamcore.state.factory import StateBackendFactory
from streamcore.state.snapshot_strategy import SnapshotStrategy
from streamcore.time import Clock

__all__ = ["Task", "build_plan"]


def copied_factory(
    factory: Callable[[str, str], StreamOperator], memo: dict[int, Any], what: str
) -> Callable[[str, str], StreamOperator]:
    """``factory`` with deep copies of the objects it captured (user functions, sinks, configuration).

    Several tasks of one process must not share a user function or sink object: each
    keeps per-task attributes (state handles fetched in ``open``, open files, producers).
    Flink gets the same by deserializing functions per task. ``memo`` is shared over one
    task's graph, so an object two operators share stays shared within the task; the
    environment, the graph and the clock are put in it beforehand so they are never copied.

    Raises:
        ConfigurationError: a captured object cannot be copied (create such resources in ``open``).
    """
    cells = factory.__closure__ or ()
    defaults = factory.__defaults__
    if not cells and not defaults:
        return factory
    try:
        copied = tuple(types.CellType(copy.deepcopy(c.cell_contents, memo)) for c in cells)
        defaults = copy.deepcopy(defaults, memo)
    except Exception as exc:
        msg = (
            f"{what}: the job runs several tasks in this process and copies each operator's functions "
            f"and sinks per task, but one of them cannot be copied ({type(exc).__name__}: {exc}); create "
            "connections, locks and other resources in open(), not in __init__"
        )
        raise ConfigurationError(msg) from exc
    code, globals_ = factory.__code__, factory.__globals__
    return types.FunctionType(code, globals_, factory.__name__, defaults, copied or None)


def build_plan(
    graph: StreamGraph,
    runtime: OperatorRuntime,
    *,
    partition: int | None = None,
    keep: tuple[Any, ...] = (),
) -> PhysicalPlan:
    """Instantiate every node of ``graph`` and wire the edges.

    With a ``partition`` (a task of a consumer group), every source reads only that
    partition of its topics (:meth:`~streamcore.sources.base.Source.for_partition`), and
    operators get their own copies of the functions and sinks they were built with
    (:func:`copied_factory`); ``keep`` lists objects never copied (the environment...).
    """
    graph.resolve_uids()
    built: dict[int, Any] = {}
    sources: list[SourceTask] = []
    operators: list[StreamOperator] = []
    by_uid: dict[str, Any] = {}
    memo: dict[int, Any] = {id(obj): obj for obj in (graph, runtime.clock, *keep)}
    for node in graph.nodes:
        if node.kind == "source":
            source = node.source if partition is None else node.source.for_partition(partition)
            task = SourceTask(
                node.name, node.resolved_uid, source, node.watermarks, node.timestamp_fn, runtime.clock
            )
            sources.append(task)
            built[node.id] = task
        else:
            assert node.factory is not None
            factory = node.factory
            if partition is not None:
                factory = copied_factory(factory, memo, f"operator {node.resolved_uid!r}")
            op = factory(node.name, node.resolved_uid)
            op.setup(runtime)
            for producer, side, tag in node.inputs:
                upstream = built[producer.id]
                upstream.output.connect(op, side, op.add_input_edge(), tag)
            operators.append(op)
            built[node.id] = op
        by_uid[node.resolved_uid] = built[node.id]
    return PhysicalPlan(sources, operators, by_uid)


class Task:
    """One instance of the dataflow: build, open, snapshot, restore, notify, finish, close.

    ``partition``: the task reads partition ``partition`` of every source topic (a task of
    a consumer group), with its own copies of the job's functions and sinks; ``None``: it
    is the job's only task and reads everything.

    Lifecycle: :meth:`build` (the state backend is open) -> :meth:`open_sources` ->
    (:meth:`restore`) -> :meth:`open_operators` -> polling by the executor, with
    :meth:`snapshot` and :meth:`notify_checkpoint_complete` between batches ->
    :meth:`finish` (bounded input ended) -> :meth:`close`.
    """

    def __init__(
        self,
        graph: StreamGraph,
        job_name: str,
        *,
        clock: Clock,
        max_parallelism: int,
        state_factory: StateBackendFactory,
        rate_coordinator: Any = None,
        partition: int | None = None,
        keep: tuple[Any, ...] = (),
    ) -> None:
        self.graph = graph
        self.partition = partition
        self.keep = keep
        self.job_name = job_name
        self.clock = clock
        self.max_parallelism = max_parallelism
        self.state_factory = state_factory
        self.rate_coordinator = rate_coordinator
        self.plan: PhysicalPlan | None = None

    # -- lifecycle -----------------------------------------------------------------------
    def build(self) -> PhysicalPlan:
        """Create the operator and source instances (the state backend must be open)."""
        task_id = None if self.partition is None else str(self.partition)
        runtime = OperatorRuntime(
            self.clock, self.max_parallelism, self.state_factory, self.job_name, task_id
        )
        self.plan = build_plan(self.graph, runtime, partition=self.partition, keep=self.keep)
        return self.plan

    @property
    def sources(self) -> list[SourceTask]:
        """The task's sources, in graph order."""
        return self._plan().sources

    @property
    def operators(self) -> list[StreamOperator]:
        """The task's operators, in topological order."""
        return self._plan().operators

    def operator(self, uid: str) -> Any:
        """The source or operator with ``uid``."""
        return self._plan().by_uid[uid]

    def _plan(self) -> PhysicalPlan:
        if self.plan is None:
            msg = f"task of job {self.job_name!r} is not built yet"
            raise RuntimeError(msg)
        return self.plan

    def open_sources(self) -> None:
        """Create every source's split readers (before a restore seeks them)."""
        for s in self.sources:
            s.open()

    def open_operators(self) -> None:
        """Open every operator, upstream first (user functions' ``open`` runs here)."""
        for op in self.operators:
            op.open()

    def finish(self) -> None:
        """All input ended (after the final watermark): operators flush what they buffer."""
        for op in self.operators:
            op.finish()

    def close(self) -> list[tuple[str, Exception]]:
        """Close every operator and source, also after failures; returns ``(uid, error)`` of each failure.

        Every component is closed whatever the others raise; the caller decides what to
        raise and what to log.
        """
        errors: list[tuple[str, Exception]] = []
        if self.plan is not None:
            for component in [*self.plan.operators, *self.plan.sources]:
                try:
                    component.close()
                except Exception as exc:
                    errors.append((component.uid, exc))
        return errors

    # -- checkpoints (streamcore.checkpoint.protocol.CheckpointedTask) ------------------------
    @property
    def snapshot_strategy(self) -> SnapshotStrategy:
        """How the task's state backend stores state in checkpoints."""
        return self.state_factory.snapshot_strategy

    def uids(self) -> dict[str, bool]:
        """Every source and operator uid, mapped to whether it keeps state (sources always do)."""
        out = {s.uid: True for s in self.sources}
        out.update({op.uid: op.stateful for op in self.operators})
        return out

    def snapshot(self, ctx: SnapshotContext) -> TaskImage:
        """Every source position, operator image and watermark: call only between batches."""
        info = {
            op.uid: OperatorInfo(type(op).__name__, op.stateful, op.describe_state()) for op in self.operators
        }
        coordinator = self.rate_coordinator
        return TaskImage(
            sources={s.uid: s.snapshot_state() for s in self.sources},
            operators={op.uid: op.snapshot_state(ctx) for op in self.operators},
            info=info,
            watermarks={op.uid: op.watermark_state() for op in self.operators},
            coordinator=coordinator.snapshot() if coordinator is not None else None,
        )

    def restore(self, image: TaskImage) -> None:
        """Seek sources, load operator images and watermarks, restore rate coordination.

        Raises:
            RestoreError: a source no longer creates a split of the image.
        """
        for src in self.sources:
            st = image.sources.get(src.uid)
            if st is not None:
                src.restore_state(st)
        for op in self.operators:
            op_image = image.operators.get(op.uid)
            if op_image is not None:
                op.restore_state(op_image)
            wm = image.watermarks.get(op.uid)
            if wm is not None:
                op.restore_watermarks(wm)
        coordinator = self.rate_coordinator
        if coordinator is not None and image.coordinator is not None:
            coordinator.restore(image.coordinator)

    def notify_checkpoint_complete(self, checkpoint_id: int) -> None:
        """Tell operators (sinks commit) and sources (offsets commit) that ``checkpoint_id`` is durable."""
        for op in self.operators:
            op.notify_checkpoint_complete(checkpoint_id)
        for src in self.sources:
            src.notify_checkpoint_complete(checkpoint_id)

    # -- observability -----------------------------------------------------------------------
    def records_read(self) -> int:
        """Records the task's sources have read."""
        return sum(s.records_out for s in self.sources) if self.plan is not None else 0

    def metrics(self) -> dict[str, Any]:
        """Live figures of every source and operator, by uid."""
        if self.plan is None:
            return {}
        out: dict[str, Any] = {s.uid: s.metrics() for s in self.plan.sources}
        for op in self.plan.operators:
            out[op.uid] = op.metrics()
        return out
