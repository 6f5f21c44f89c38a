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
3. When it stops (hand-over, close), the owner writes ``released``; when the task read
   all its input (a bounded job) and took its final checkpoint, ``finished``, which also
   tells the other processes of a bounded job when every task is done.

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
from typing import Any, Protocol

from streamcore.checkpoint.storage import atomic_write
from streamcore.errors import TaskFencedError

__all__ = [
    "OWNER_FILE",
    "LocalRecords",
    "RecordStore",
    "TaskOwnership",
    "member_id",
    "records_of",
    "task_finished",
]

logger = logging.getLogger("streamcore.runtime")

OWNER_FILE = "_owner"

_MEMBER = f"{socket.gethostname()}:{os.getpid()}:{uuid.uuid4().hex[:8]}"


def member_id() -> str:
    """This process's name in owner records: host, pid and a random part."""
    return _MEMBER


class RecordStore(Protocol):
    """Where small records live: a checkpoint directory, or object storage (a RemoteStore)."""

    def read(self, name: str) -> bytes | None:
        """The record ``name``, or ``None``."""
        ...

    def write(self, name: str, data: bytes) -> None:
        """Replace the record ``name`` atomically."""
        ...


class LocalRecords:
    """Records as files of a directory (written atomically: temporary file, fsync, rename)."""

    def __init__(self, directory: Path) -> None:
        self.directory = Path(directory)

    def read(self, name: str) -> bytes | None:
        """The file's bytes, or ``None``."""
        try:
            return (self.directory / name).read_bytes()
        except FileNotFoundError:
            return None

    def write(self, name: str, data: bytes) -> None:
        """Write the file atomically (creating the directory)."""
        self.directory.mkdir(parents=True, exist_ok=True)
        atomic_write(self.directory / name, data)


def records_of(config: Any) -> RecordStore:
    """The record store of a checkpoint configuration: its object storage, or its directory."""
    if getattr(config, "remote", None) is not None:
        from streamcore.checkpoint.remote import RemoteStore

        return RemoteStore(config.remote, dict(config.storage_options or {}))
    return LocalRecords(config.directory)


class TaskOwnership:
    """The owner record of one task (see the module docstring).

    Args:
        store: where the task's records live (its checkpoint directory or object storage).
        task_id: the task's id (for messages).
        takeover_s: how long a new owner waits for the previous one to release.
        poll_s: how often it looks while waiting.
    """

    def __init__(
        self, store: RecordStore, task_id: str, takeover_s: float = 10.0, poll_s: float = 0.05
    ) -> None:
        self.store = store
        self.task_id = task_id
        self.takeover_s = takeover_s
        self.poll_s = poll_s
        self.epoch = 0
        self.held = False
        self.waited_s = 0.0
        self._first_try: float | None = None

    def _read(self) -> dict[str, Any] | None:
        try:
            raw = self.store.read(OWNER_FILE)
            return None if raw is None else dict(json.loads(raw))
        except (OSError, ValueError) as exc:
            logger.warning(
                "task %s: unreadable owner record (%s); treating it as released",
                self.task_id,
                exc,
            )
            return None

    def _write(self, state: str) -> None:
        record = {
            "epoch": self.epoch,
            "owner": member_id(),
            "state": state,
            "time_ms": int(time.time() * 1000),
        }
        self.store.write(OWNER_FILE, json.dumps(record).encode())

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

    def release(self, state: str = "released") -> None:
        """Mark the task released (this process stopped writing it), unless another took it over.

        ``state="finished"``: the task also read all its input and took its final checkpoint.
        """
        if not self.held:
            return
        self.held = False
        record = self._read()
        if record is not None and int(record.get("epoch", 0)) > self.epoch:
            return
        self._write(state)


def task_finished(store: RecordStore) -> bool:
    """Whether the task whose records ``store`` holds read all its input (a bounded job)."""
    try:
        raw = store.read(OWNER_FILE)
        record = json.loads(raw) if raw is not None else {}
    except (OSError, ValueError):
        return False
    return bool(record.get("state") == "finished")
