"""An exactly-once file sink: part files that appear only when their checkpoint completes.

Each transaction writes one file, one encoded record per line. While it is open or
pending, the file is hidden: ``.part-<uid>-<seq>.inprogress``. When the checkpoint that
covers it completes, it is renamed atomically to ``part-<uid>-<seq>``, so readers that
glob ``part-*`` see whole files of committed records only.

When the sink opens, in-progress files of its uid that no restored checkpoint claimed
are deleted: they are leftovers of a killed run whose records the sources replay.

Example::

    env.enable_checkpointing("checkpoints/", every_records=10_000)
    stream.sink_to(FileSink("out/", encoder=json.dumps))
    env.execute("job", restore_from="latest")
    lines = [line for p in sorted(Path("out").glob("part-*")) for line in p.read_text().splitlines()]
"""

from __future__ import annotations

import logging
import os
import re
from collections.abc import Callable
from pathlib import Path
from typing import Any, TextIO

from streamcore.checkpoint.storage import fsync_path
from streamcore.errors import ConfigurationError, ConnectorError
from streamcore.sinks.two_phase import TwoPhaseCommitSink

__all__ = ["FileSink"]

logger = logging.getLogger("streamcore.sinks")

_UNSAFE = re.compile(r"[^A-Za-z0-9_.-]+")


class FileSink(TwoPhaseCommitSink):
    """Writes ``encoder(record)`` per line into ``part-*`` files of ``directory``, exactly once.

    Args:
        directory: where part files go (created if missing).
        encoder: turns a record into one line of text (without its newline).
    """

    def __init__(self, directory: str | os.PathLike[str], encoder: Callable[[Any], str] = str) -> None:
        super().__init__()
        if not callable(encoder):
            msg = f"FileSink encoder must be a callable record -> str, got {type(encoder).__name__}"
            raise ConfigurationError(msg)
        self.directory = Path(directory)
        self.encoder = encoder
        self._seq = 0
        self._prefix = ""
        self._file: TextIO | None = None
        self._file_txn: Any = None

    # -- paths -------------------------------------------------------------------------
    def _final(self, transaction: Any) -> Path:
        return self.directory / transaction["file"]

    def _in_progress(self, transaction: Any) -> Path:
        return self.directory / f".{transaction['file']}.inprogress"

    # -- lifecycle ---------------------------------------------------------------------
    def open(self, operator_uid: str) -> None:
        """Create the directory, delete leftovers of a killed run, begin the first transaction."""
        try:
            self.directory.mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            msg = f"FileSink cannot create {self.directory}: {exc}"
            raise ConnectorError(msg) from exc
        self._prefix = f"part-{_UNSAFE.sub('_', operator_uid)}-"
        # Exactly this sink's names: uid "a" must not claim the files of uid "a-b".
        mine = re.compile(rf"\.{re.escape(self._prefix)}\d+\.inprogress")
        for leftover in self.directory.glob(f".{self._prefix}*.inprogress"):
            if mine.fullmatch(leftover.name):
                leftover.unlink()
        super().open(operator_uid)

    def restore_state(self, image: Any) -> None:
        """Continue numbering after the restored transactions, then commit/abort them."""
        if image:
            handles = [t for _cid, t in image.get("pending", ())]
            if image.get("current") is not None:
                handles.append(image["current"])
            self._seq = max([self._seq, *(int(t["seq"]) for t in handles)])
        super().restore_state(image)

    # -- transactions ------------------------------------------------------------------
    def begin_transaction(self) -> Any:
        """A new part file name (created on the first write)."""
        self._seq += 1
        return {"file": f"{self._prefix}{self._seq:08d}", "seq": self._seq, "records": 0}

    def write_transaction(self, transaction: Any, values: list[Any], timestamps: list[int] | None) -> None:
        """Append one encoded line per record to the transaction's in-progress file."""
        f = self._file
        if f is None or self._file_txn is not transaction:
            f = self._open_file(transaction)
        enc = self.encoder
        f.write("".join([f"{enc(v)}\n" for v in values]))
        transaction["records"] += len(values)

    def _open_file(self, transaction: Any) -> TextIO:
        self._close_file()
        try:
            f = open(self._in_progress(transaction), "a", encoding="utf-8")  # noqa: SIM115 - lives across batches
        except OSError as exc:
            msg = f"FileSink cannot open {self._in_progress(transaction)}: {exc}"
            raise ConnectorError(msg) from exc
        self._file, self._file_txn = f, transaction
        return f

    def _close_file(self, sync: bool = False) -> None:
        f = self._file
        if f is None:
            return
        self._file = self._file_txn = None
        try:
            if sync:
                f.flush()
                os.fsync(f.fileno())
        finally:
            f.close()

    def pre_commit(self, transaction: Any) -> None:
        """Flush and fsync the transaction's file."""
        if self._file_txn is transaction:
            self._close_file(sync=True)

    def commit(self, transaction: Any) -> None:
        """Rename the in-progress file to its ``part-*`` name (nothing to do if already done)."""
        tmp, final = self._in_progress(transaction), self._final(transaction)
        try:
            os.replace(tmp, final)
        except FileNotFoundError:
            if transaction["records"] and not final.exists():
                logger.warning(
                    "FileSink %s: the file of transaction %s is gone (committed and removed since?)",
                    self.directory,
                    final.name,
                )
            return
        except OSError as exc:
            msg = f"FileSink cannot commit {tmp} to {final}: {exc}"
            raise ConnectorError(msg) from exc
        fsync_path(self.directory)

    def abort(self, transaction: Any) -> None:
        """Delete the transaction's in-progress file."""
        if self._file_txn is transaction:
            self._close_file()
        try:
            self._in_progress(transaction).unlink()
        except FileNotFoundError:
            pass

    def close(self) -> None:
        """Commit or abort (see :class:`TwoPhaseCommitSink`), then close the open file."""
        try:
            super().close()
        finally:
            self._close_file()
