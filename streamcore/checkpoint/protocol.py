"""The typed protocol between the runtime and checkpointing.

Checkpointing never reaches into the runtime: it sees a *task* (one instance of the
job's dataflow with its own sources, operators and state) through
:class:`CheckpointedTask`, asks it for a :class:`TaskImage` at a consistent cut, and on
restore hands one back. It never changes the runtime either: the checkpoint coordinator
answers questions (is a checkpoint due, which ones completed) and the runtime acts on
the answers (resets its counters, notifies operators). A process can therefore hold
several independent tasks, each snapshotted and restored on its own.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Protocol

from streamcore.operators.base import SnapshotContext
from streamcore.state.snapshot_strategy import SnapshotStrategy

__all__ = ["CheckpointedTask", "OperatorInfo", "TaskImage"]


@dataclass(frozen=True, slots=True)
class OperatorInfo:
    """What checkpoint metadata records about one operator besides its image.

    Attributes:
        type: the operator's class name (for tools and error messages).
        stateful: whether the operator keeps state (restores may drop or add stateless ones).
        states: what a keyed operator registered (:meth:`KeyedStateBackend.describe`), else None.
    """

    type: str
    stateful: bool
    states: dict[str, Any] | None = None


@dataclass
class TaskImage:
    """Everything one task holds at a consistent cut (msgpack-able parts).

    Attributes:
        sources: source uid -> its image (split positions and watermarks).
        operators: operator uid -> its image (``None`` when it has no state).
        info: operator uid -> :class:`OperatorInfo` (snapshots only; restores leave it empty).
        watermarks: operator uid -> its watermark state (:meth:`StreamOperator.watermark_state`).
        coordinator: the source rate coordinator's image, or None.
    """

    sources: dict[str, Any]
    operators: dict[str, Any]
    info: dict[str, OperatorInfo] = field(default_factory=dict)
    watermarks: dict[str, Any] = field(default_factory=dict)
    coordinator: Any = None


class CheckpointedTask(Protocol):
    """What checkpointing needs of a task (:class:`streamcore.runtime.task.Task` implements it)."""

    job_name: str
    max_parallelism: int

    @property
    def snapshot_strategy(self) -> SnapshotStrategy:
        """How the task's state backend stores state in checkpoints."""
        ...

    def uids(self) -> dict[str, bool]:
        """Every source and operator uid of the task, mapped to whether it keeps state."""
        ...

    def snapshot(self, ctx: SnapshotContext) -> TaskImage:
        """Snapshot every source and operator (between batches only)."""
        ...

    def restore(self, image: TaskImage) -> None:
        """Load an image (after sources open, before operators open)."""
        ...
