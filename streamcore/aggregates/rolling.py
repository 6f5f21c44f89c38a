"""Flink's rolling aggregations by field: ``key_by(...).sum(1)``, ``.min("price")``, ``.max_by(0)``.

:func:`field_reducer` builds the reduce function that ``KeyedStream.sum/min/max/min_by/max_by``
and ``WindowedStream.sum/min/max`` fold with.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from streamcore.errors import ConfigurationError

__all__ = ["field_reducer", "short_repr"]


def field_reducer(position: int | str, how: str) -> Callable[[Any, Any], Any]:
    """The reduce function of Flink's rolling aggregations ``sum``/``min``/``max``/``min_by``/``max_by``.

    ``position`` is an index of tuples and lists, a key of dicts, or an attribute name;
    plain numbers are aggregated themselves (``position`` 0). ``sum``/``min``/``max`` keep
    the first element and replace the field; ``min_by``/``max_by`` keep the whole element.

    >>> field_reducer(1, "sum")(("to", 1), ("to", 2))
    ('to', 3)
    >>> field_reducer("n", "max")({"k": "a", "n": 1}, {"k": "a", "n": 5})
    {'k': 'a', 'n': 5}
    """
    if isinstance(position, bool) or not isinstance(position, (int, str)):
        msg = f"{how}() takes a field position (int) or name (str), got {position!r}"
        raise ConfigurationError(msg)

    def get(v: Any) -> Any:
        if isinstance(v, (int, float)) and not isinstance(v, bool) and position == 0:
            return v
        try:
            if isinstance(v, (tuple, list, dict)):
                return v[position]  # type: ignore[index]
            if isinstance(position, str):
                return getattr(v, position)
        except (KeyError, IndexError, AttributeError, TypeError) as exc:
            msg = f"{how}({position!r}): element {short_repr(v)} has no field {position!r}"
            raise ConfigurationError(msg) from exc
        msg = (
            f"{how}({position!r}) needs tuples, lists, dicts or objects with that field, got {short_repr(v)}"
        )
        raise ConfigurationError(msg)

    def put(v: Any, x: Any) -> Any:
        if isinstance(v, (int, float)) and not isinstance(v, bool) and position == 0:
            return x
        if isinstance(v, tuple):
            t = list(v)
            t[position] = x  # type: ignore[index]
            return type(v)(t) if type(v) is tuple else type(v)(*t)
        if isinstance(v, list):
            out = list(v)
            out[position] = x  # type: ignore[index]
            return out
        if isinstance(v, dict):
            return {**v, position: x}
        import copy

        out = copy.copy(v)
        setattr(out, position, x)  # type: ignore[arg-type]
        return out

    if how == "sum":
        return lambda a, b: put(a, get(a) + get(b))
    if how == "min":
        return lambda a, b: put(a, min(get(a), get(b)))
    if how == "max":
        return lambda a, b: put(a, max(get(a), get(b)))
    if how == "min_by":
        return lambda a, b: b if get(b) < get(a) else a
    return lambda a, b: b if get(b) > get(a) else a


def short_repr(value: Any, limit: int = 200) -> str:
    text = repr(value)
    return text if len(text) <= limit else text[: limit - 3] + "..."
