"""Canonical state images: what savepoints (and heap checkpoints) hold, restorable into either backend.

A canonical image lists every keyed state as rows ``[key_group, key, namespace, payload]``
where the payload is the stored value (value and reducing state), the list of stored
items (list state) or ``[[user_key, stored value], ...]`` (map state); a TTL'd state
stores ``[expires_at, value]`` where an untimed one stores the value.

Stored values are Python values, encoded in the checkpoint file by streamcore's value
codec, unless the state's descriptor has its own serializer: then they are the bytes
that serializer wrote (``"encoded": True`` on the state's entry), so any value the
serializer handles survives a savepoint, and a restore decodes them with the
descriptor's serializer once the operator registers the state.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from streamcore.errors import RestoreError
from streamcore.state.descriptors import DEFAULT_SERIALIZER, StateDescriptor

__all__ = ["custom_serializer", "decode_rows", "encode_rows", "row_decoder"]


def custom_serializer(descriptor: StateDescriptor) -> bool:
    """Whether the descriptor has its own serializer (its canonical rows hold its bytes)."""
    return descriptor.serializer is not DEFAULT_SERIALIZER


def _map_payload(storage: str, payload: Any, fn: Callable[[Any], Any]) -> Any:
    if storage in ("value", "reducing"):
        return fn(payload)
    if storage == "list":
        return [fn(item) for item in payload]
    return [[uk, fn(v)] for uk, v in payload]


def encode_rows(storage: str, rows: list[list[Any]], dumps: Callable[[Any], bytes]) -> list[list[Any]]:
    """Rows whose stored values are replaced by ``dumps(value)``."""
    return [[kg, key, ns, _map_payload(storage, payload, dumps)] for kg, key, ns, payload in rows]


def decode_rows(storage: str, rows: list[list[Any]], loads: Callable[[bytes], Any]) -> list[list[Any]]:
    """Invert :func:`encode_rows` with the descriptor's ``loads``."""
    return [[kg, key, ns, _map_payload(storage, payload, loads)] for kg, key, ns, payload in rows]


def row_decoder(
    name: str, entry: dict[str, Any], descriptor: StateDescriptor
) -> Callable[[bytes], Any] | None:
    """How to turn the stored values of a restored state entry into values for ``descriptor``.

    Returns None when the rows hold plain values, the descriptor's ``loads`` when they hold
    its bytes.

    Raises:
        RestoreError: the rows hold bytes of a custom serializer and the descriptor has none.
    """
    if not entry.get("encoded"):
        return None
    if not custom_serializer(descriptor):
        msg = (
            f"state {name!r} was stored with a custom serializer and is now registered without one; "
            "register it with the serializer=... it had"
        )
        raise RestoreError(msg)
    return descriptor.serializer.loads
