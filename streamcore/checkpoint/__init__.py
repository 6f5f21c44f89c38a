"""Checkpoints, savepoints and restore: consistent, incremental on RocksDB, crash-safe.

Enable with ``env.enable_checkpointing(directory, every_records=..., every_ms=...,
incremental=True, retain=3)`` and restart with ``env.execute(name, restore_from="latest")``.

* :mod:`~streamcore.checkpoint.config`: :class:`CheckpointConfig`.
* :mod:`~streamcore.checkpoint.coordinator`: triggers, completes and retains checkpoints.
* :mod:`~streamcore.checkpoint.snapshot`: writes one checkpoint directory (RocksDB incremental files).
* :mod:`~streamcore.checkpoint.storage`: layout, atomic writes and byte formats.
* :mod:`~streamcore.checkpoint.savepoint`: self-contained, backend-independent savepoints.
* :mod:`~streamcore.checkpoint.restore`: choosing, validating and restoring a checkpoint.
* :mod:`~streamcore.checkpoint.reader`: reading state offline (``read_state``, ``inspect``).
"""

from streamcore.checkpoint.config import CheckpointConfig
from streamcore.checkpoint.reader import inspect, list_checkpoints, read_operator_image, read_state
from streamcore.checkpoint.restore import RestoreFrom

__all__ = [
    "CheckpointConfig",
    "RestoreFrom",
    "inspect",
    "list_checkpoints",
    "read_operator_image",
    "read_state",
]
