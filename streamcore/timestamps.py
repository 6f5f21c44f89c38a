"""Event timestamps of a batch: call the timestamp assigner, check that every timestamp is an int.

Used by sources (at the edge, per split) and by operators that assign timestamps inside
a dataflow, so it sits below both.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from streamcore.errors import StreamcoreError, TimestampError
from streamcore.functions import function_name

__all__ = ["check_timestamps", "extract_timestamps"]


def extract_timestamps(op_uid: str, fn: Callable[[Any], int], values: list[Any]) -> list[int]:
    """``fn(v)`` for every value, checked to be ints.

    Raises:
        TimestampError: the assigner returned something that is not an int.
        UserFunctionError: the assigner raised.
    """
    try:
        ts = [fn(v) for v in values]
    except StreamcoreError:
        raise
    except Exception as exc:
        msg = f"timestamp assigner {function_name(fn)} of {op_uid!r} raised {type(exc).__name__}: {exc}"
        raise TimestampError(msg) from exc
    check_timestamps(op_uid, fn, ts, values)
    return ts


def check_timestamps(op_uid: str, fn: Any, ts: list[Any], values: list[Any]) -> None:
    """Raise :class:`TimestampError` unless every timestamp is an int."""
    if ts and set(map(type, ts)) != {int}:
        bad = next(i for i, t in enumerate(ts) if type(t) is not int)
        msg = (
            f"timestamp assigner {function_name(fn)} of {op_uid!r} returned {ts[bad]!r} "
            f"({type(ts[bad]).__name__}) for element {values[bad]!r}; timestamps must be int milliseconds "
            "since the epoch (e.g. int(dt.timestamp() * 1000))"
        )
        raise TimestampError(msg)
