"""Which tasks a process runs: a fixed set, or whatever a consumer group assigns it.

The executor asks its membership between rounds of polling (:meth:`Membership.poll`)
and is called back with the tasks it must start (``assign``) or hand over
(``revoke``). ``assign`` returns the tasks it could start; the others (their previous
owner has not released them yet) are offered again at the next poll, so a process never
blocks waiting for another. A revoke callback returns only when the task's final
checkpoint is durable, so the next owner (which restores from it) never replays what
this process already committed.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Callable, Sequence

__all__ = ["AssignCallback", "Membership", "StaticMembership", "TaskCallback"]

TaskCallback = Callable[[list[str]], None]
"""``callback(task_ids)``: hand over (revoke) or drop (lose) these tasks."""

AssignCallback = Callable[[list[str]], list[str]]
"""``assign(task_ids)``: start these tasks; returns those started (the rest are offered again)."""


class Membership(ABC):
    """The tasks of one process, and how they change."""

    #: whether tasks may be assigned after the start (then the job does not end when its
    #: current tasks do, unless :meth:`may_end` says so).
    dynamic = False

    def start(self) -> None:
        """Join (a consumer group); called once before the first :meth:`poll`."""

    @abstractmethod
    def poll(self, assign: AssignCallback, revoke: TaskCallback, lose: TaskCallback | None = None) -> None:
        """Deliver assignment changes since the last call through the callbacks.

        ``revoke``: hand the tasks over (final checkpoint); ``lose``: another process may
        already run them, close them without a checkpoint (``revoke`` when not given).
        """

    def may_end(self, finished: Sequence[str]) -> bool:
        """Whether the process may end now that every task it runs (``finished``) has ended its input."""
        return True

    def close(self) -> None:
        """Leave (the consumer group); its tasks move to the other members."""


class StaticMembership(Membership):
    """A fixed set of tasks, assigned once at the start (a job that runs in one process)."""

    def __init__(self, task_ids: Sequence[str] = ("0",)) -> None:
        self.pending = list(task_ids)

    def poll(self, assign: AssignCallback, revoke: TaskCallback, lose: TaskCallback | None = None) -> None:
        """Assign every task (until each one started)."""
        if self.pending:
            started = set(assign(list(self.pending)))
            self.pending = [t for t in self.pending if t not in started]
