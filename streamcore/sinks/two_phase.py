"""Exactly-once delivery by two-phase commit, tied to checkpoints.

Records go into a *transaction*. When a checkpoint is taken the sink *pre-commits* the
current transaction (makes it durable but invisible), stores it in the checkpoint as
pending, and begins a new one. When the checkpoint completes, every transaction it
covers is *committed* (made visible). After a crash the job restores the latest
completed checkpoint: its pending transactions are committed again, which must be
idempotent, and the transaction that was open when the checkpoint was taken is aborted;
records after the checkpoint are replayed by the sources into new transactions. So
every record becomes visible exactly once. A system that cannot commit another
process's transaction (Kafka through librdkafka) overrides :meth:`restore_state` to
find out whether it committed and to redo it if not: see :mod:`streamcore.sinks.kafka`.

End of a bounded input: :meth:`TwoPhaseCommitSink.finish` pre-commits the last
transaction, and the final checkpoint the coordinator takes at the end of the job
commits it. Without checkpointing, there is nothing to recover from, so the sink
commits at :meth:`close` after a normal end.
"""

from __future__ import annotations

from typing import Any

from streamcore.sinks.base import Sink

__all__ = ["TwoPhaseCommitSink"]


class TwoPhaseCommitSink(Sink):
    """Base of exactly-once sinks. Subclasses implement the five transaction hooks.

    A transaction handle is whatever :meth:`begin_transaction` returns; it is stored in
    checkpoints, so it must be msgpack-able (dicts, lists, str, int, bytes) and enough to
    commit or abort the transaction in another process.

    Hooks, all called on the job's thread:

    * :meth:`begin_transaction` -> handle
    * :meth:`write_transaction` (handle, values, timestamps): a batch of records
    * :meth:`pre_commit` (handle): flush and make durable; no more writes follow
    * :meth:`commit` (handle): make visible; **idempotent** (it runs again after a restore)
    * :meth:`abort` (handle): discard (also for handles of a crashed run)
    """

    exactly_once = True

    def __init__(self) -> None:
        self.operator_uid: str | None = None
        self._current: Any = None
        self._pending: list[list[Any]] = []  # [checkpoint id or None, handle], oldest first
        self._finished = False
        self._snapshot_after_finish = False
        self.committed = 0
        self.aborted = 0

    # -- hooks -------------------------------------------------------------------------
    def begin_transaction(self) -> Any:
        """Start a transaction; return its handle."""
        raise NotImplementedError(f"{type(self).__name__} must implement begin_transaction()")

    def write_transaction(self, transaction: Any, values: list[Any], timestamps: list[int] | None) -> None:
        """Write a batch of records into ``transaction``."""
        raise NotImplementedError(f"{type(self).__name__} must implement write_transaction()")

    def pre_commit(self, transaction: Any) -> None:
        """Make ``transaction`` durable (it will be committed or aborted later, maybe by another run)."""

    def commit(self, transaction: Any) -> None:
        """Make ``transaction`` visible. Must be idempotent: it may already be committed."""
        raise NotImplementedError(f"{type(self).__name__} must implement commit()")

    def abort(self, transaction: Any) -> None:
        """Discard ``transaction`` (it may be half-written, or already gone)."""
        raise NotImplementedError(f"{type(self).__name__} must implement abort()")

    # -- the sink contract ------------------------------------------------------------------
    def open(self, operator_uid: str) -> None:
        """Begin the first transaction (after :meth:`restore_state`, if restored)."""
        self.operator_uid = operator_uid
        self._current = self.begin_transaction()

    def write_batch(self, values: list[Any], timestamps: list[int] | None) -> None:
        """Write into the current transaction."""
        self.write_transaction(self._current, values, timestamps)

    def snapshot_state(self, checkpoint_id: int) -> Any:
        """Pre-commit the current transaction, begin the next; return the pending ones."""
        if self._current is not None:
            self.pre_commit(self._current)
            self._pending.append([None, self._current])
            self._current = None if self._finished else self.begin_transaction()
        for entry in self._pending:
            if entry[0] is None:
                entry[0] = checkpoint_id
        if self._finished:
            self._snapshot_after_finish = True
        return {"pending": [list(e) for e in self._pending], "current": self._current}

    def notify_checkpoint_complete(self, checkpoint_id: int) -> None:
        """Commit every transaction that a checkpoint up to ``checkpoint_id`` covers, oldest first."""
        keep = []
        for entry in self._pending:
            if entry[0] is not None and entry[0] <= checkpoint_id:
                self.commit(entry[1])
                self.committed += 1
            else:
                keep.append(entry)
        self._pending = keep

    def restore_state(self, image: Any) -> None:
        """Commit the restored checkpoint's pending transactions; abort the one that was open."""
        if not image:
            return
        for _cid, transaction in image.get("pending", ()):
            self.commit(transaction)
            self.committed += 1
        if image.get("current") is not None:
            self.abort(image["current"])
            self.aborted += 1

    def finish(self) -> None:
        """End of input: pre-commit the last transaction (the final checkpoint commits it)."""
        if self._current is not None:
            self.pre_commit(self._current)
            self._pending.append([None, self._current])
            self._current = None
        self._finished = True

    def close(self) -> None:
        """After a normal end without a final checkpoint, commit; otherwise abort the open transaction.

        Pending transactions of a failed or stopped job are left for the restore to commit.
        """
        if self._finished and not self._snapshot_after_finish:
            for _cid, transaction in self._pending:
                self.commit(transaction)
                self.committed += 1
            self._pending = []
        elif self._current is not None:
            current, self._current = self._current, None
            self.abort(current)
            self.aborted += 1
