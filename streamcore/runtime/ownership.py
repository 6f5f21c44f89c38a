"""Who runs a task right now: an owner record with an epoch, in the task's checkpoint storage.

The consumer group decides which process runs a task, but the group's view and the
processes' actions are not atomic: a process whose session expired may still be
writing (a zombie), and a broker may hand a partition to the next member before the
previous one finished its hand-over. So each task keeps ``_owner`` (JSON: ``epoch``,
``owner``, ``state``) beside its checkpoints:

1. A process that starts the task waits until the record says ``released`` (the
   previous owner took its final checkpoint and stopped), or until ``takeover_s`` passed
   (the previous owner died without releasing: a killed process), then writes the next
   epoch with itself as owner.
2. Before completing a checkpoint and before telling its sinks to commit, the owner
   checks that the record still names its epoch; a newer epoch means another process
   took over, and this one fails instead of writing (Flink's and Kafka's fencing idea).
3. When it stops (hand-over, end of input, close), the owner writes ``released``.

The record is written atomically (temporary file, fsync, rename), so it is either the
old or the new one.
"""

from __future__ import annotations

import json
import logging
import os
import socket
import time
import uuid
from pathlib import Path
from typing import Any

from streamcore.checkpoint.storage import atomic_write
from streamcore.errors import TaskFencedError

__all__ = ["OWNER_FILE", "TaskOwnership", "member_id"]

logger = logging.getLogger("streamcore.runtime")

OWNER_FILE = "_owner"

_MEMBER = f"{socket.gethostname()}:{os.getpid()}:{uuid.uuid4().hex[:8]}"


def member_id() -> str:
    """This process's name in owner records: host, pid and a random part."""
    return _MEMBER


class TaskOwnership:
    """The owner record of one task (see the module docstring).

    Args:
        directory: the task's checkpoint directory.
        task_id: the task's id (for messages).
        takeover_s: how long a new owner waits for the previous one to release.
        poll_s: how often it looks while waiting.
    """

    def __init__(self, directory: Path, task_id: str, takeover_s: float = 10.0, poll_s: float = 0.05) -> None:
        self.path = Path(directory) / OWNER_FILE
        self.task_id = task_id
        self.takeover_s = takeover_s
        self.poll_s = poll_s
        self.epoch = 0
        self.held = False
        self.waited_s = 0.0
        self._first_try: float | None = None

    def _read(self) -> dict[str, Any] | None:
        try:
            return dict(json.loads(self.path.read_text(encoding="utf-8")))
        except FileNotFoundError:
            return None
        except (OSError, ValueError) as exc:
            logger.warning(
                "task %s: unreadable owner record %s (%s); treating it as released",
                self.task_id,
                self.path,
                exc,
            )
            return None

    def _write(self, state: str) -> None:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        record = {
            "epoch": self.epoch,
            "owner": member_id(),
            "state": state,
            "time_ms": int(time.time() * 1000),
        }
        atomic_write(self.path, json.dumps(record).encode())

    def try_acquire(self) -> bool:
        """Become the task's owner if the previous one released it, or ``takeover_s`` passed
        since the first try; never blocks (the caller tries again later). True once owned."""
        now = time.monotonic()
        if self._first_try is None:
            self._first_try = now
        record = self._read()
        if record is not None and record.get("state") == "running" and record.get("owner") != member_id():
            if now - self._first_try < self.takeover_s:
                return False
            logger.warning(
                "task %s: owner %s (epoch %s) did not release it within %.1f s; taking over (a stopped "
                "process's writes are fenced by the new epoch)",
                self.task_id,
                record.get("owner"),
                record.get("epoch"),
                self.takeover_s,
            )
        self.waited_s = now - self._first_try
        self.epoch = int(record.get("epoch", 0)) + 1 if record is not None else 1
        self._write("running")
        self.held = True
        return True

    def acquire(self) -> int:
        """Become the task's owner, waiting as :meth:`try_acquire` allows; returns the new epoch."""
        while not self.try_acquire():
            time.sleep(self.poll_s)
        return self.epoch

    def check(self) -> None:
        """Fail if another process took the task over since :meth:`acquire`.

        Raises:
            TaskFencedError: the record names a newer epoch (this process is a zombie).
        """
        if not self.held:
            return
        record = self._read()
        if record is not None and int(record.get("epoch", 0)) > self.epoch:
            self.held = False
            msg = (
                f"task {self.task_id} was taken over by {record.get('owner')} (epoch {record.get('epoch')}, "
                f"ours {self.epoch}): this process lost it (its group session expired?) and stops writing "
                "its checkpoints and commits"
            )
            raise TaskFencedError(msg)

    def release(self) -> None:
        """Mark the task released (this process stopped writing it), unless another took it over."""
        if not self.held:
            return
        self.held = False
        record = self._read()
        if record is not None and int(record.get("epoch", 0)) > self.epoch:
            return
        self._write("released")
