"""The one operator contract, and how operators hand batches to each other.

Lifecycle (Flink's ``StreamOperator``): ``setup`` -> (``restore_state``,
``restore_watermarks``) -> ``open`` -> any number of ``process_batch`` /
``receive_watermark`` / ``on_processing_time`` / ``snapshot_state`` /
``notify_checkpoint_complete`` -> ``finish`` -> ``close``. No method is ever called
concurrently with another: one thread runs the whole dataflow.

Checkpoints are taken between batches, so an operator's watermarks are part of the
consistent cut: :meth:`StreamOperator.watermark_state` is stored beside its state and a
restore puts it back silently (timers it had fired stay fired), so an element that was
late before a checkpoint is late after a restore too.

A batch is two parallel lists, ``values`` and ``timestamps`` (``timestamps`` may be
``None`` for a batch without event time). Lists handed downstream are never mutated
afterwards, so one list may feed several consumers.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from streamcore.errors import StreamcoreError, UserFunctionError
from streamcore.functions import function_name
from streamcore.time import MIN_TIMESTAMP, Clock

__all__ = ["OperatorRuntime", "Output", "SnapshotContext", "StreamOperator", "call_user", "user_error"]


class Output:
    """Where an operator's batches and watermarks go: main edges and side-output edges."""

    __slots__ = ("_all_edges", "_main", "_side")

    def __init__(self) -> None:
        self._main: list[tuple[StreamOperator, int, int]] = []
        self._side: dict[str, list[tuple[StreamOperator, int, int]]] = {}
        self._all_edges: list[tuple[StreamOperator, int, int]] = []

    def connect(self, target: StreamOperator, side: int, edge: int, tag: str | None = None) -> None:
        """Add an edge to ``target``'s input ``side`` (its ``edge``-th incoming edge)."""
        entry = (target, side, edge)
        if tag is None:
            self._main.append(entry)
        else:
            self._side.setdefault(tag, []).append(entry)
        self._all_edges.append(entry)

    def emit(self, values: list[Any], timestamps: list[int] | None) -> None:
        """Push a batch to every main edge."""
        if values:
            for target, side, _ in self._main:
                target.process_batch(values, timestamps, side)

    def emit_side(self, tag: str, values: list[Any], timestamps: list[int] | None) -> None:
        """Push a batch to the side output ``tag`` (dropped when nothing reads it)."""
        if values:
            for target, side, _ in self._side.get(tag, ()):
                target.process_batch(values, timestamps, side)

    def has_side(self, tag: str) -> bool:
        """Whether anything reads side output ``tag``."""
        return tag in self._side

    def emit_watermark(self, watermark: int) -> None:
        """Forward a watermark along every edge (side outputs too)."""
        for target, _, edge in self._all_edges:
            target.receive_watermark(edge, watermark)

    def emit_idle(self, idle: bool) -> None:
        """Tell every downstream edge that this input is (no longer) idle."""
        for target, _, edge in self._all_edges:
            target.receive_idle(edge, idle)


@dataclass
class OperatorRuntime:
    """What the runtime gives an operator in ``setup``.

    ``task_id`` is the id of the task the operator belongs to when the job runs as several
    tasks (a consumer group's partition), ``None`` when it is the job's only task.
    """

    clock: Clock
    max_parallelism: int
    state_factory: Any
    job_name: str = "job"
    task_id: str | None = None


@dataclass(frozen=True, slots=True)
class SnapshotContext:
    """What an operator is told when it snapshots its state.

    Attributes:
        checkpoint_id: the id of the checkpoint or savepoint being taken; two-phase-commit
            sinks tag their pending transactions with it.
        canonical: a backend-independent image is wanted (savepoints); otherwise keyed
            backends may answer with a reference to their native snapshot (RocksDB files).
        kind: ``"checkpoint"`` or ``"savepoint"``.
    """

    checkpoint_id: int
    canonical: bool = False
    kind: str = "checkpoint"


def user_error(op: StreamOperator, fn: Any, what: str, exc: BaseException) -> UserFunctionError:
    """The error for user function ``fn`` (called as ``what``) of operator ``op`` that raised ``exc``.

    Use as ``except StreamcoreError: raise`` then ``except Exception as exc: raise user_error(...) from exc``.
    """
    msg = (
        f"{what} {function_name(fn)} of operator {op.uid!r} raised {type(exc).__name__}: {exc}; "
        "fix the function or filter the input before it"
    )
    return UserFunctionError(msg)


def call_user(op: StreamOperator, fn: Any, what: str, call: Callable[..., Any], *args: Any) -> Any:
    """``call(*args)`` (a method of user function ``fn``), with any failure named as :func:`user_error`.

    For the calls outside the hot loop: ``open``, ``close``, ``finish`` of functions and sinks.
    """
    try:
        return call(*args)
    except StreamcoreError:
        raise
    except Exception as exc:
        raise user_error(op, fn, what, exc) from exc


class StreamOperator:
    """Base of every operator. Subclasses override the hooks they need."""

    #: keyed operators set this; the runtime uses it to route snapshots and TTL cleanup.
    keyed = False
    #: whether the operator keeps state in checkpoints. Restoring a savepoint into a job that
    #: added or removed operators without state needs no flag (Flink's rule).
    stateful = False

    def __init__(self, name: str, uid: str) -> None:
        self.name = name
        self.uid = uid
        self.output = Output()
        self.current_watermark = MIN_TIMESTAMP
        self._input_wms: list[int] = []
        self._input_idle: list[bool] = []
        self._idle = False
        self.records_in = 0
        self.records_out = 0
        self.late_records = 0
        self.runtime: OperatorRuntime | None = None

    # -- wiring --------------------------------------------------------------------
    def add_input_edge(self) -> int:
        """Register one more incoming edge; returns its index."""
        self._input_wms.append(MIN_TIMESTAMP)
        self._input_idle.append(False)
        return len(self._input_wms) - 1

    # -- lifecycle -----------------------------------------------------------------
    def setup(self, runtime: OperatorRuntime) -> None:
        """Receive clock, state factory and configuration (before ``open``)."""
        self.runtime = runtime

    def open(self) -> None:
        """Prepare for the first batch (user functions' ``open`` runs here)."""

    def process_batch(self, values: list[Any], timestamps: list[int] | None, side: int) -> None:
        """Process a batch arriving on input ``side`` (0, or 1 for a second input)."""
        raise NotImplementedError

    def process_watermark(self, watermark: int) -> None:
        """React to the combined input watermark advancing (fire timers), then forward it."""
        self.output.emit_watermark(watermark)

    def on_processing_time(self, now: int) -> None:
        """Fire processing-time timers due at ``now``."""

    def snapshot_state(self, ctx: SnapshotContext) -> Any:
        """Operator state for the checkpoint ``ctx.checkpoint_id`` (msgpack-able), or ``None``."""
        return None

    def restore_state(self, image: Any) -> None:
        """Load what :meth:`snapshot_state` returned."""

    def describe_state(self) -> dict[str, Any] | None:
        """What keyed state the operator registered (for checkpoint metadata), or None."""
        return None

    def watermark_state(self) -> list[Any]:
        """The operator's watermarks (input watermarks, idleness, combined): stored in checkpoints."""
        return [self.current_watermark, list(self._input_wms), list(self._input_idle), self._idle]

    def restore_watermarks(self, state: list[Any]) -> None:
        """Put back what :meth:`watermark_state` returned, without firing anything.

        A checkpoint is taken when every timer its watermark made due has fired, so
        nothing is owed. Input edges the restored job does not have keep their defaults.
        """
        current, wms, idle, own_idle = state
        self.current_watermark = current
        if len(wms) == len(self._input_wms):  # else the graph changed: inputs start over
            self._input_wms[:] = wms
            self._input_idle[:] = idle
            self._idle = own_idle

    def notify_checkpoint_complete(self, checkpoint_id: int) -> None:
        """The checkpoint ``checkpoint_id`` is durable (two-phase-commit sinks commit here)."""

    def finish(self) -> None:
        """All input has ended (after the final watermark): flush what is buffered."""

    def close(self) -> None:
        """Release resources; called once, also after failures."""

    def metrics(self) -> dict[str, Any]:
        """Counters of this operator."""
        return {
            "records_in": self.records_in,
            "records_out": self.records_out,
            "late_records": self.late_records,
            "watermark": self.current_watermark,
        }

    # -- watermarks ------------------------------------------------------------------
    def receive_watermark(self, edge: int, watermark: int) -> None:
        """A watermark arrived on ``edge``: combine (min over active inputs) and advance."""
        wms = self._input_wms
        if watermark <= wms[edge] and not self._input_idle[edge]:
            return
        if watermark > wms[edge]:
            wms[edge] = watermark
        if self._input_idle[edge]:
            self._input_idle[edge] = False
            self._set_idle(False)
        self._advance()

    def receive_idle(self, edge: int, idle: bool) -> None:
        """Input ``edge`` became idle (excluded from the minimum) or active again."""
        if self._input_idle[edge] == idle:
            return
        self._input_idle[edge] = idle
        if idle and all(self._input_idle):
            self._set_idle(True)
            return
        if not idle:
            self._set_idle(False)
        self._advance()

    def _advance(self) -> None:
        active = [wm for wm, idle in zip(self._input_wms, self._input_idle, strict=True) if not idle]
        if not active:
            return
        combined = min(active)
        if combined > self.current_watermark:
            self.current_watermark = combined
            self.process_watermark(combined)

    def _set_idle(self, idle: bool) -> None:
        if idle != self._idle:
            self._idle = idle
            self.process_idle(idle)

    def process_idle(self, idle: bool) -> None:
        """Every input became idle (``True``), or one is active again: tell downstream."""
        self.output.emit_idle(idle)


UserFn = Callable[..., Any]
