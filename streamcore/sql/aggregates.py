"""SQL aggregate calls as members of one ``combine(...)`` of streamcore's built-in aggregates.

The window operator folds a batch fastest when its aggregate is a plain
:class:`~streamcore.aggregates.CombinedAggregate` of ``Count``/``Sum``/``Min``/``Max``
members (a generated loop, no call per member and value). So each SQL aggregate becomes
one or more such members plus a small function of their results that applies SQL's NULL
rules:

==========================  ===============================================================
SQL                         members (over the input row ``r``)
==========================  ===============================================================
``COUNT(*)``                ``Count()``
``COUNT(x)``                ``Count()`` if ``x`` is NOT NULL, else ``Sum(x IS NOT NULL)``
``SUM(x)``                  ``Sum(x)``; nullable ``x``: ``Sum(COALESCE(x, 0))`` and
                            ``Sum(x IS NOT NULL)``, NULL when the second is 0
``AVG(x)``                  the same two sums; their quotient (DOUBLE)
``MIN(x)`` ``MAX(x)``       ``Min(x)``/``Max(x)``; nullable ``x``: over the non-NULL values
``COUNT(DISTINCT x)``       ``DistinctCount`` of the non-NULL values (exact)
``APPROX_COUNT_DISTINCT``   ``HyperLogLog`` (precision 14: ~0.8 % standard error)
``BLOOM_COUNT_DISTINCT``    ``BloomDistinct`` (a lower bound: false positives hide values)
a registered aggregate      the user's :class:`~streamcore.aggregates.AggregateFunction`
==========================  ===============================================================
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

from sqlglot import exp

from streamcore.aggregates import AggregateFunction, Count, Max, Min, Sum
from streamcore.errors import SqlUnsupportedError, SqlValidationError
from streamcore.sql.expressions import Code, ExprCompiler
from streamcore.sql.types import BIGINT, DOUBLE, SqlType

__all__ = ["AGGREGATE_NAMES", "NonNullInput", "is_aggregate", "plan_aggregate"]

AGGREGATE_NAMES = frozenset(
    {"COUNT", "SUM", "MIN", "MAX", "AVG", "APPROX_COUNT_DISTINCT", "BLOOM_COUNT_DISTINCT"}
)
_REFUSED = {
    "FIRST_VALUE": "FIRST_VALUE",
    "LAST_VALUE": "LAST_VALUE",
    "LISTAGG": "LISTAGG",
    "GROUP_CONCAT": "LISTAGG",
    "STDDEV": "STDDEV",
    "STDDEV_POP": "STDDEV_POP",
    "STDDEV_SAMP": "STDDEV_SAMP",
    "VARIANCE": "VARIANCE",
    "VAR_POP": "VAR_POP",
    "VAR_SAMP": "VAR_SAMP",
    "COLLECT": "COLLECT",
    "ARRAY_AGG": "ARRAY_AGG",
}


class NonNullInput(AggregateFunction[Any, Any, Any]):
    """Feeds ``inner`` the non-NULL values of ``get(row)``: SQL aggregates ignore NULL inputs."""

    __slots__ = ("get", "inner")

    def __init__(self, inner: AggregateFunction[Any, Any, Any], get: Callable[[Any], Any]) -> None:
        self.inner = inner
        self.get = get

    def create_accumulator(self) -> Any:
        return self.inner.create_accumulator()

    def add(self, value: Any, accumulator: Any) -> Any:
        v = self.get(value)
        return accumulator if v is None else self.inner.add(v, accumulator)

    def add_batch(self, values: Sequence[Any], accumulator: Any) -> Any:
        vs = [v for v in map(self.get, values) if v is not None]
        return self.inner.add_batch(vs, accumulator) if vs else accumulator

    @property
    def supports_retract(self) -> bool:  # type: ignore[override]
        """Whether the inner function retracts."""
        return bool(self.inner.supports_retract)

    def retract(self, value: Any, accumulator: Any) -> Any:
        v = self.get(value)
        return accumulator if v is None else self.inner.retract(v, accumulator)

    def merge(self, a: Any, b: Any) -> Any:
        return self.inner.merge(a, b)

    def get_result(self, accumulator: Any) -> Any:
        return self.inner.get_result(accumulator)

    def serialize_accumulator(self, accumulator: Any) -> Any:
        return self.inner.serialize_accumulator(accumulator)

    def deserialize_accumulator(self, obj: Any) -> Any:
        return self.inner.deserialize_accumulator(obj)

    def __repr__(self) -> str:
        return f"{self.inner!r} of non-NULL values"


class _UdafInput(NonNullInput):
    """A user aggregate over ``get(row)`` (NULLs included: the user function decides)."""

    def add(self, value: Any, accumulator: Any) -> Any:
        return self.inner.add(self.get(value), accumulator)

    def add_batch(self, values: Sequence[Any], accumulator: Any) -> Any:
        return self.inner.add_batch(list(map(self.get, values)), accumulator)

    def retract(self, value: Any, accumulator: Any) -> Any:
        return self.inner.retract(self.get(value), accumulator)


def _name(node: exp.Expression) -> str:
    if isinstance(node, exp.Anonymous):
        return node.name.upper()
    if isinstance(node, exp.ApproxDistinct):
        return "APPROX_COUNT_DISTINCT"
    return node.sql_name()


def is_aggregate(node: exp.Expression, udafs: dict[str, Any]) -> bool:
    """Whether ``node`` is an aggregate call (built-in or registered)."""
    if isinstance(node, exp.AggFunc):
        return True
    return isinstance(node, exp.Anonymous) and (
        node.name.upper() in AGGREGATE_NAMES or node.name.lower() in udafs
    )


def plan_aggregate(
    node: exp.Expression, compiler: ExprCompiler, udafs: dict[str, Any], prefix: str, retract: bool = False
) -> tuple[dict[str, AggregateFunction[Any, Any, Any]], str, SqlType]:
    """Members (named ``prefix``...), a Python expression over the result dict ``res``, and the SQL type.

    ``retract``: the input is updating, so every member must retract (``Min``, ``Max`` and
    ``DistinctCount`` keep multisets; sketches cannot and are refused).
    """
    name = _name(node)
    if name in _REFUSED:
        compiler.error(
            SqlUnsupportedError,
            f"the aggregate {_REFUSED[name]} is not supported; supported: "
            f"{', '.join(sorted(AGGREGATE_NAMES))} and registered aggregate functions",
            node,
        )
    udaf = udafs.get(name.lower()) if isinstance(node, exp.Anonymous) else None
    if udaf is not None:
        args = list(node.expressions)
        get = compiler.function(args) if len(args) != 1 else compiler.function(args, as_tuple=False)
        result = getattr(udaf, "result_type", None) or SqlType("STRING")
        if retract and not udaf.supports_retract:
            compiler.error(
                SqlUnsupportedError,
                f"the aggregate {name} cannot retract, and its input is an "
                "updating result; implement retract() and supports_retract",
                node,
            )
        return {prefix: _UdafInput(udaf, get)}, f"res[{prefix!r}]", result.with_nullable(True)
    if name not in AGGREGATE_NAMES:
        compiler.error(
            SqlUnsupportedError,
            f"the aggregate {name} is not supported; supported: "
            f"{', '.join(sorted(AGGREGATE_NAMES))} and registered aggregate functions",
            node,
        )
    arg = (
        node.this
        if not isinstance(node, exp.Anonymous)
        else (node.expressions[0] if node.expressions else None)
    )
    distinct = isinstance(arg, exp.Distinct)
    if distinct:
        if len(arg.expressions) != 1:
            compiler.error(
                SqlUnsupportedError, "COUNT(DISTINCT ...) of several columns is not supported", node
            )
        arg = arg.expressions[0]
    if name == "COUNT" and (
        arg is None or isinstance(arg, exp.Star) or (isinstance(arg, exp.Literal) and not distinct)
    ):
        return {prefix: Count()}, f"res[{prefix!r}]", BIGINT.with_nullable(False)
    if arg is None:
        compiler.error(SqlValidationError, f"{name} needs an argument", node)
    code: Code = compiler.compile(arg)
    get = compiler.build([code.src], as_tuple=False, name="agg_input")
    nullable = code.type.nullable
    if distinct or name in ("APPROX_COUNT_DISTINCT", "BLOOM_COUNT_DISTINCT"):
        if distinct and name != "COUNT":
            compiler.error(
                SqlUnsupportedError, f"{name}(DISTINCT ...) is not supported; COUNT(DISTINCT x) is", node
            )
        from streamcore.aggregates import BloomDistinct, DistinctCount, HyperLogLog

        if retract and name != "COUNT":
            compiler.error(
                SqlUnsupportedError,
                f"{name} over an updating input is not supported (a sketch "
                "cannot forget a value); use COUNT(DISTINCT ...)",
                node,
            )
        inner: AggregateFunction[Any, Any, Any] = (
            DistinctCount(retractable=retract)
            if name == "COUNT"
            else HyperLogLog()
            if name == "APPROX_COUNT_DISTINCT"
            else BloomDistinct()
        )
        return {prefix: NonNullInput(inner, get)}, f"res[{prefix!r}]", BIGINT.with_nullable(False)
    if name in ("SUM", "AVG") and not (code.type.is_numeric or code.type.name == "NULL"):
        compiler.error(SqlValidationError, f"{name} needs a number, this is {code.type.name}", arg)
    not_null = compiler.build([f"({code.src}) is not None"], as_tuple=False, name="agg_not_null")
    if name == "COUNT":
        if not nullable:
            return {prefix: Count()}, f"res[{prefix!r}]", BIGINT.with_nullable(False)
        return {prefix: Sum(not_null)}, f"res[{prefix!r}]", BIGINT.with_nullable(False)
    if name in ("MIN", "MAX"):
        cls = Min if name == "MIN" else Max
        if not nullable:
            return {prefix: cls(get, retractable=retract)}, f"res[{prefix!r}]", code.type
        return (
            {prefix: NonNullInput(cls(retractable=retract), get)},
            f"res[{prefix!r}]",
            code.type.with_nullable(True),
        )
    total = compiler.build([f"(_v if (_v := {code.src}) is not None else 0)"], as_tuple=False, name="agg_sum")
    if name == "SUM":
        if not nullable:
            return {prefix: Sum(get)}, f"res[{prefix!r}]", code.type
        members = {prefix: Sum(total), prefix + "n": Sum(not_null)}
        return (
            members,
            f"(None if res[{prefix + 'n'!r}] == 0 else res[{prefix!r}])",
            code.type.with_nullable(True),
        )
    # AVG: DOUBLE, as DuckDB and PostgreSQL (Flink keeps the argument's type).
    members = {
        prefix: Sum(get if not nullable else total),
        prefix + "n": Count() if not nullable else Sum(not_null),
    }
    return (
        members,
        f"(None if res[{prefix + 'n'!r}] == 0 else res[{prefix!r}] / res[{prefix + 'n'!r}])",
        DOUBLE,
    )
