"""Checkpoint configuration: immutable, validated once when the job is configured."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from streamcore.errors import ConfigurationError

__all__ = ["CheckpointConfig"]


@dataclass(frozen=True)
class CheckpointConfig:
    """How and where a job takes checkpoints (built by ``env.enable_checkpointing``).

    Args:
        directory: the checkpoint directory (``chk-<id>/``, ``shared/``, ``savepoints/``).
        every_records: take a checkpoint after this many records were read (``None``: never by count).
        every_ms: take a checkpoint when this much processing time passed (``None``: never by time).
        incremental: RocksDB only: upload only SST files the previous checkpoint did not have.
        retain: how many completed checkpoints to keep (older ones and their unused
            shared files are deleted; savepoints never are).
        tolerable_failures: consecutive failed checkpoints the job survives; one more fails it.
        asynchronous: write files in a background thread after the synchronous part
            (operator snapshots, RocksDB's native checkpoint); at most one checkpoint is in flight.
        remote: an object-storage URL (``s3://bucket/prefix``) that holds the checkpoints;
            ``directory`` is then the local staging copy (:mod:`streamcore.checkpoint.remote`).
        storage_options: fsspec options of ``remote`` (credentials, endpoint...).

    Raises:
        ConfigurationError: a bad value, or neither trigger set.
    """

    directory: Path
    every_records: int | None = 100_000
    every_ms: int | None = None
    incremental: bool = True
    retain: int = 3
    tolerable_failures: int = 0
    asynchronous: bool = True
    remote: str | None = None
    storage_options: Mapping[str, Any] | None = None

    def __post_init__(self) -> None:
        if not isinstance(self.directory, (str, Path)) or not str(self.directory):
            msg = f"checkpoint directory must be a non-empty path, got {self.directory!r}"
            raise ConfigurationError(msg)
        object.__setattr__(self, "directory", Path(self.directory))
        for name in ("every_records", "every_ms"):
            v = getattr(self, name)
            if v is not None and (type(v) is not int or v < 1):
                msg = f"{name} must be an int >= 1 or None, got {v!r}"
                raise ConfigurationError(msg)
        if self.every_records is None and self.every_ms is None:
            msg = "enable_checkpointing() needs every_records=... or every_ms=... (both are None)"
            raise ConfigurationError(msg)
        if type(self.retain) is not int or self.retain < 1:
            msg = f"retain must be an int >= 1 (completed checkpoints to keep), got {self.retain!r}"
            raise ConfigurationError(msg)
        if type(self.tolerable_failures) is not int or self.tolerable_failures < 0:
            msg = f"tolerable_failures must be an int >= 0, got {self.tolerable_failures!r}"
            raise ConfigurationError(msg)
        for name in ("incremental", "asynchronous"):
            if type(getattr(self, name)) is not bool:
                msg = f"{name} must be True or False, got {getattr(self, name)!r}"
                raise ConfigurationError(msg)
