"""Several aggregates over one window in a single pass: ``combine(count=Count(), total=Sum("x"))``."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from streamcore.aggregates.base import AggregateFunction
from streamcore.errors import ConfigurationError

__all__ = ["CombinedAggregate", "combine"]


class CombinedAggregate(AggregateFunction[Any, list[Any], dict[str, Any]]):
    """Runs named aggregate functions side by side; the result is a dict ``name -> result``.

    The accumulator is a list of the members' accumulators, in the order the members were
    given; it is serialized as the list of their serialized forms. ``add_batch`` hands the
    whole batch to each member's ``add_batch``, so vectorised members stay vectorised.
    Build it with :func:`combine`.

    >>> from streamcore.aggregates import Count, Max
    >>> f = combine(n=Count(), top=Max())
    >>> f.get_result(f.add_batch([3, 7, 5], f.create_accumulator()))
    {'n': 3, 'top': 7}
    """

    __slots__ = ("_functions", "names")

    def __init__(self, named: dict[str, AggregateFunction[Any, Any, Any]]) -> None:
        if not named:
            msg = "combine() needs at least one aggregate, e.g. combine(count=Count(), total=Sum('x'))"
            raise ConfigurationError(msg)
        for name, function in named.items():
            if not isinstance(function, AggregateFunction):
                msg = (
                    f"combine() argument {name!r} is a {type(function).__name__}, not an AggregateFunction; "
                    "wrap a two-argument function in ReduceAggregate"
                )
                raise ConfigurationError(msg)
        self.names: tuple[str, ...] = tuple(named)
        self._functions: tuple[AggregateFunction[Any, Any, Any], ...] = tuple(named.values())

    @property
    def order_insensitive(self) -> bool:  # type: ignore[override]
        """Whether every member's result is independent of the order of adds and merges."""
        return all(f.order_insensitive for f in self._functions)

    @property
    def functions(self) -> dict[str, AggregateFunction[Any, Any, Any]]:
        """The members by name."""
        return dict(zip(self.names, self._functions, strict=True))

    def create_accumulator(self) -> list[Any]:
        return [f.create_accumulator() for f in self._functions]

    def add(self, value: Any, accumulator: list[Any]) -> list[Any]:
        return [f.add(value, acc) for f, acc in zip(self._functions, accumulator, strict=True)]

    def add_batch(self, values: Sequence[Any], accumulator: list[Any]) -> list[Any]:
        return [f.add_batch(values, acc) for f, acc in zip(self._functions, accumulator, strict=True)]

    @property
    def supports_retract(self) -> bool:  # type: ignore[override]
        """True when every member can retract."""
        return all(f.supports_retract for f in self._functions)

    def retract(self, value: Any, accumulator: list[Any]) -> list[Any]:
        return [f.retract(value, acc) for f, acc in zip(self._functions, accumulator, strict=True)]

    def merge(self, a: list[Any], b: list[Any]) -> list[Any]:
        return [f.merge(x, y) for f, x, y in zip(self._functions, a, b, strict=True)]

    def get_result(self, accumulator: list[Any]) -> dict[str, Any]:
        return {
            name: f.get_result(acc)
            for name, f, acc in zip(self.names, self._functions, accumulator, strict=True)
        }

    def serialize_accumulator(self, accumulator: list[Any]) -> list[Any]:
        return [f.serialize_accumulator(acc) for f, acc in zip(self._functions, accumulator, strict=True)]

    def deserialize_accumulator(self, obj: Any) -> list[Any]:
        if not isinstance(obj, list) or len(obj) != len(self._functions):
            msg = (
                f"stored combined accumulator does not have {len(self._functions)} members "
                f"({', '.join(self.names)}); restore with the aggregates the state was written with"
            )
            raise ConfigurationError(msg)
        return [f.deserialize_accumulator(o) for f, o in zip(self._functions, obj, strict=True)]

    def __repr__(self) -> str:
        members = ", ".join(f"{n}={f!r}" for n, f in zip(self.names, self._functions, strict=True))
        return f"combine({members})"


def combine(**named_aggregates: AggregateFunction[Any, Any, Any]) -> CombinedAggregate:
    """One aggregate function computing every named member over the same values.

    Raises:
        ConfigurationError: no members, or a member that is not an AggregateFunction.

    >>> from streamcore.aggregates import Avg, Count
    >>> f = combine(count=Count(), mean=Avg())
    >>> f.get_result(f.add_batch([1, 2, 3], f.create_accumulator()))
    {'count': 3, 'mean': 2.0}
    """
    return CombinedAggregate(named_aggregates)
