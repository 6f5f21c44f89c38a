"""Compiling SQL expressions into Python functions over row tuples, once, at plan time.

An expression becomes a fragment of Python source over the row ``r`` (a tuple): column
``i`` is ``r[i]``, ``a + b`` is ``r[0] + r[1]`` when neither can be NULL and
``(None if (_t1 := r[0]) is None or (_t2 := r[1]) is None else _t1 + _t2)`` when they
can. The fragments of a projection are joined into one generated function
``def f(r): return (frag0, frag1, ...)`` (:meth:`ExprCompiler.function`), so a row
costs one call and no interpretation. Constants and helpers reach the generated code
as globals of its namespace, never as source text.

NULL follows SQL: arithmetic, comparisons and functions of ``NULL`` are ``NULL``;
``AND``/``OR``/``NOT`` use three-valued logic; a filter keeps a row only when its
condition is ``TRUE``.

>>> from streamcore.sql.types import SqlType
>>> import sqlglot
>>> scope = Scope([Field("a", SqlType("BIGINT")), Field("b", SqlType("STRING"))])
>>> c = ExprCompiler(scope)
>>> f = c.function(sqlglot.parse_one("SELECT a * 2 + 1, UPPER(b)").expressions)
>>> f((20, "x")), f((None, None))
((41, 'X'), (None, None))
"""

from __future__ import annotations

import itertools
import re
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from operator import itemgetter
from typing import Any

from sqlglot import exp

from streamcore.errors import SqlUnsupportedError, SqlValidationError
from streamcore.sql import functions as F
from streamcore.sql.parser import SqlText
from streamcore.sql.types import (
    BIGINT,
    BOOLEAN,
    DOUBLE,
    NULL,
    STRING,
    TIMESTAMP,
    SqlType,
    caster,
    common_type,
    parse_timestamp,
)

__all__ = ["Code", "ExprCompiler", "Field", "Scope", "interval_ms"]

INTERVAL = SqlType("INTERVAL", nullable=False)
_LEGACY_WINDOWS = frozenset(
    f"{w}{suffix}"
    for w in ("TUMBLE", "HOP", "SESSION", "CUMULATE")
    for suffix in ("", "_START", "_END", "_ROWTIME")
)
_COLUMN_PICK = re.compile(r"r\[(\d+)\]")


@dataclass(frozen=True)
class Field:
    """A column of a relation: its name, type, and the table name or alias that qualifies it."""

    name: str
    type: SqlType
    qualifier: str | None = None


class Scope:
    """The columns an expression can name, in row order (a row is a tuple in this order)."""

    def __init__(self, fields: Sequence[Field]) -> None:
        self.fields = list(fields)

    def lookup(self, name: str, qualifier: str | None) -> list[int]:
        """Indexes of the columns ``qualifier.name`` (case-insensitive) can mean."""
        n = name.lower()
        q = qualifier.lower() if qualifier else None
        return [
            i
            for i, f in enumerate(self.fields)
            if f.name.lower() == n and (q is None or (f.qualifier or "").lower() == q)
        ]

    def names(self) -> list[str]:
        """The column names, qualified where a qualifier is known."""
        return [f"{f.qualifier}.{f.name}" if f.qualifier else f.name for f in self.fields]


@dataclass(frozen=True)
class Code:
    """A compiled expression: Python source over ``r``, its SQL type, and a constant value if known."""

    src: str
    type: SqlType
    const: Any = None
    is_const: bool = False


def interval_ms(node: exp.Interval, source: SqlText | None = None) -> int:
    """Milliseconds of ``INTERVAL '5' SECOND`` (fixed-length units only)."""
    unit = node.unit.name if node.unit is not None else ""
    value = node.this.name if node.this is not None else ""
    parts = value.split()
    if unit == "" and len(parts) == 2:
        value, unit = parts
    ms = F.unit_ms(unit)
    try:
        amount = float(value)
    except ValueError:
        amount = None
    if ms is None or amount is None:
        msg = (
            f"unsupported interval {node.sql()!r}: use INTERVAL 'n' with a fixed unit "
            f"({', '.join(F.TIME_UNITS_MS)}); months and years vary in length"
        )
        if source is not None:
            source.error(SqlUnsupportedError, msg, node)
        raise SqlUnsupportedError(msg)
    return int(amount * ms)


_BINARY = {
    exp.Add: "+",
    exp.Sub: "-",
    exp.Mul: "*",
    exp.EQ: "==",
    exp.NEQ: "!=",
    exp.GT: ">",
    exp.GTE: ">=",
    exp.LT: "<",
    exp.LTE: "<=",
}
_COMPARISONS = (exp.EQ, exp.NEQ, exp.GT, exp.GTE, exp.LT, exp.LTE)

_SQLGLOT_NAMES = {
    "Upper": "UPPER",
    "Lower": "LOWER",
    "Initcap": "INITCAP",
    "Length": "CHAR_LENGTH",
    "Substring": "SUBSTRING",
    "Replace": "REPLACE",
    "Abs": "ABS",
    "Sign": "SIGN",
    "Round": "ROUND",
    "Trunc": "TRUNCATE",
    "Pow": "POWER",
    "Sqrt": "SQRT",
    "Ln": "LN",
    "Exp": "EXP",
    "Left": "LEFT",
    "Right": "RIGHT",
    "MD5": "MD5",
    "RegexpExtract": "REGEXP_EXTRACT",
    "RegexpReplace": "REGEXP_REPLACE",
    "Hour": "HOUR",
    "Minute": "MINUTE",
    "Second": "SECOND",
    "Year": "YEAR",
    "Month": "MONTH",
    "Quarter": "QUARTER",
    "Day": "DAYOFMONTH",
    "DayOfMonth": "DAYOFMONTH",
    "Reverse": "REVERSE",
    "Repeat": "REPEAT",
}


def _and3(a: Any, b: Any) -> Any:
    if a is False or b is False:
        return False
    if a is None or b is None:
        return None
    return True


def _or3(a: Any, b: Any) -> Any:
    if a is True or b is True:
        return True
    if a is None or b is None:
        return None
    return False


def _int_div(a: int, b: int) -> int | None:
    if b == 0:
        return None
    q = abs(a) // abs(b)
    return q if (a >= 0) == (b >= 0) else -q


def _float_div(a: Any, b: Any) -> float | None:
    return None if b == 0 else a / b


def _like_regex(pattern: str, escape: str | None = None) -> re.Pattern[str]:
    out = []
    i = 0
    while i < len(pattern):
        ch = pattern[i]
        if escape and ch == escape and i + 1 < len(pattern):
            out.append(re.escape(pattern[i + 1]))
            i += 2
            continue
        out.append(".*" if ch == "%" else "." if ch == "_" else re.escape(ch))
        i += 1
    return re.compile("".join(out), re.DOTALL)


class ExprCompiler:
    """Compiles sqlglot expressions over a :class:`Scope` into Python source and functions.

    Args:
        scope: the columns of the input row.
        source: the statement text, for errors that point at the expression.
        udfs: scalar user functions by lower-case name.
        slots: expressions already computed into columns (``GROUP BY`` keys and
            aggregates after an aggregation), by their SQL text: such an expression
            compiles to its column.
    """

    def __init__(
        self,
        scope: Scope,
        source: SqlText | None = None,
        udfs: dict[str, Callable[..., Any]] | None = None,
        slots: dict[str, tuple[int, SqlType]] | None = None,
    ) -> None:
        self.scope = scope
        self.source = source or SqlText("")
        self.udfs = udfs or {}
        self.slots = slots or {}
        self.namespace: dict[str, Any] = {
            "_and3": _and3,
            "_or3": _or3,
            "_idiv": _int_div,
            "_fdiv": _float_div,
        }
        self._ids = itertools.count()

    # -- helpers -----------------------------------------------------------------------------
    def error(self, cls: type, message: str, node: exp.Expression | None) -> Any:
        """Raise ``cls`` at ``node``."""
        self.source.error(cls, message, node)

    def _const(self, value: Any) -> str:
        if value is None or type(value) in (int, bool):
            return repr(value)
        if type(value) is str and len(value) < 200:
            return repr(value)
        name = f"_c{next(self._ids)}"
        self.namespace[name] = value
        return name

    def _bind(self, fn: Any) -> str:
        name = f"_f{next(self._ids)}"
        self.namespace[name] = fn
        return name

    def _tmp(self) -> str:
        return f"_t{next(self._ids)}"

    def null_safe(self, args: list[Code], build: Callable[[list[str]], str], result: SqlType) -> Code:
        """``build(args)`` with SQL NULL propagation: NULL if any nullable argument is NULL."""
        checks, refs = [], []
        for a in args:
            if a.type.nullable and not (a.is_const and a.const is not None):
                t = self._tmp()
                checks.append(f"({t} := {a.src}) is None")
                refs.append(t)
            else:
                refs.append(a.src)
        body = build(refs)
        if not checks:
            return Code(f"({body})", result.with_nullable(result.nullable and False) if False else result)
        return Code(f"(None if {' or '.join(checks)} else {body})", result.with_nullable(True))

    def function(self, nodes: Sequence[exp.Expression], *, as_tuple: bool = True) -> Callable[[Any], Any]:
        """One generated function ``f(r)`` returning the tuple of ``nodes`` (or the single value)."""
        codes = [self.compile(n) for n in nodes]
        return self.build([c.src for c in codes], as_tuple=as_tuple)

    def build(
        self, srcs: Sequence[str], *, as_tuple: bool = True, name: str = "sql_expr"
    ) -> Callable[[Any], Any]:
        """A generated function over ``r`` returning ``srcs`` as a tuple (or the single value).

        Plain column picks become an :func:`operator.itemgetter` (C, no Python frame per row).
        """
        picks = [_COLUMN_PICK.fullmatch(s) for s in srcs]
        if all(picks) and (not as_tuple or len(srcs) > 1):
            return itemgetter(*(int(m.group(1)) for m in picks))  # type: ignore[union-attr]
        body = f"({', '.join(srcs)}{',' if len(srcs) == 1 else ''})" if as_tuple else srcs[0]
        source = f"def {name}(r):\n    return {body}\n"
        namespace = dict(self.namespace)
        exec(compile(source, f"<streamcore sql {name}>", "exec"), namespace)
        return namespace[name]  # type: ignore[no-any-return]

    def predicate(self, node: exp.Expression) -> Callable[[Any], bool]:
        """A generated filter function: true when ``node`` is TRUE (not FALSE, not NULL)."""
        code = self.compile(node)
        if code.type.name not in ("BOOLEAN", "NULL"):
            self.error(SqlValidationError, f"a condition must be BOOLEAN, this is {code.type.name}", node)
        return self.build(
            [f"{code.src} is True" if code.type.nullable else code.src], as_tuple=False, name="sql_where"
        )

    # -- the compiler ----------------------------------------------------------------------------
    def compile(self, node: exp.Expression) -> Code:
        """The :class:`Code` of ``node``."""
        key = node.sql() if self.slots else None
        if key is not None and key in self.slots:
            i, t = self.slots[key]
            return Code(f"r[{i}]", t)
        if isinstance(node, (exp.Paren, exp.Alias)):
            return self.compile(node.this)
        if isinstance(node, exp.Column):
            return self._column(node)
        if isinstance(node, exp.Literal):
            if node.is_string:
                return Code(repr(node.this), STRING.with_nullable(False), node.this, True)
            text = node.this
            value = int(text) if re.fullmatch(r"-?\d+", text) else float(text)
            return Code(
                repr(value), (BIGINT if isinstance(value, int) else DOUBLE).with_nullable(False), value, True
            )
        if isinstance(node, exp.Boolean):
            return Code(repr(bool(node.this)), BOOLEAN.with_nullable(False), bool(node.this), True)
        if isinstance(node, exp.Null):
            return Code("None", NULL, None, True)
        if isinstance(node, exp.Interval):
            ms = interval_ms(node, self.source)
            return Code(repr(ms), INTERVAL, ms, True)
        if isinstance(node, exp.Neg):
            a = self.compile(node.this)
            return self.null_safe([a], lambda r: f"-{r[0]}", a.type.plain())
        if isinstance(node, (exp.And, exp.Or)):
            return self._logic(node)
        if isinstance(node, exp.Not):
            a = self.compile(node.this)
            return self.null_safe([a], lambda r: f"not {r[0]}", BOOLEAN)
        if isinstance(node, _COMPARISONS):
            return self._compare(node)
        if isinstance(node, (exp.Add, exp.Sub, exp.Mul)):
            return self._arith(node)
        if isinstance(node, (exp.Div, exp.IntDiv)):
            a, b = self.compile(node.this), self.compile(node.expression)
            self._numeric(a, node.this)
            self._numeric(b, node.expression)
            if a.type.is_integer and b.type.is_integer:
                return self.null_safe([a, b], lambda r: f"_idiv({r[0]}, {r[1]})", a.type.with_nullable(True))
            return self.null_safe([a, b], lambda r: f"_fdiv({r[0]}, {r[1]})", DOUBLE.with_nullable(True))
        if isinstance(node, exp.Mod):
            return self._call("MOD", [node.this, node.expression], node)
        if isinstance(node, exp.Is):
            a = self.compile(node.this)
            if isinstance(node.expression, exp.Null):
                return Code(f"({a.src} is None)", BOOLEAN.with_nullable(False))
            if isinstance(node.expression, exp.Boolean):
                return Code(f"({a.src} is {bool(node.expression.this)!r})", BOOLEAN.with_nullable(False))
            self.error(SqlUnsupportedError, "IS supports IS [NOT] NULL, IS [NOT] TRUE/FALSE only", node)
        if isinstance(node, exp.Between):
            low = exp.GTE(this=node.this, expression=node.args["low"])
            high = exp.LTE(this=node.this, expression=node.args["high"])
            return self._logic(exp.And(this=low, expression=high))
        if isinstance(node, exp.In):
            return self._in(node)
        if isinstance(node, (exp.Like, exp.ILike)):
            return self._like(node)
        if isinstance(node, (exp.Case, exp.If)):
            return self._case(node)
        if isinstance(node, exp.Coalesce):
            return self._coalesce([node.this, *node.expressions], node)
        if isinstance(node, exp.Nullif):
            a, b = self.compile(node.this), self.compile(node.expression)
            t = self._tmp()
            return Code(f"(None if ({t} := {a.src}) == {b.src} else {t})", a.type.with_nullable(True))
        if isinstance(node, (exp.Cast, exp.TryCast)):
            return self._cast(node)
        if isinstance(node, (exp.DPipe, exp.Concat)):
            parts = [node.this, node.expression] if isinstance(node, exp.DPipe) else node.expressions
            codes = [self._as_string(self.compile(p)) for p in parts]
            return self.null_safe(codes, lambda r: " + ".join(r), STRING)
        if isinstance(node, exp.ConcatWs):
            sep, *rest = node.expressions
            s = self.compile(sep)
            codes = [self._as_string(self.compile(p)) for p in rest]
            joined = ", ".join(c.src for c in codes)
            return self.null_safe(
                [s], lambda r: f"{r[0]}.join([x for x in ({joined},) if x is not None])", STRING
            )
        if isinstance(node, (exp.Floor, exp.Ceil)):
            return self._floor_ceil(node)
        if isinstance(node, exp.Extract):
            unit = node.this.name
            a = self.compile(node.expression)
            fn = self._bind(F.extract)
            return self.null_safe([a], lambda r: f"{fn}({unit!r}, {r[0]})", BIGINT)
        if isinstance(node, exp.Trim):
            return self._call("TRIM", [node.this], node)
        if isinstance(node, exp.StrPosition):
            return self._call("POSITION", [node.args["substr"], node.this], node)
        if isinstance(node, exp.Pad):
            name = "LPAD" if node.args.get("is_left") else "RPAD"
            args = [node.this, node.expression] + (
                [node.args["fill_pattern"]] if node.args.get("fill_pattern") else []
            )
            return self._call(name, args, node)
        if isinstance(node, (exp.Greatest, exp.Least)):
            codes = [self.compile(a) for a in [node.this, *node.expressions]]
            pick = "max" if isinstance(node, exp.Greatest) else "min"
            t = codes[0].type
            for c in codes[1:]:
                t = common_type(t, c.type) or t
            return self.null_safe(codes, lambda r: f"{pick}({', '.join(r)})", t)
        if isinstance(node, exp.Log):
            if node.expression is not None:
                base, x = self.compile(node.this), self.compile(node.expression)
                fn = self._bind(__import__("math").log)
                return self.null_safe([x, base], lambda r: f"{fn}({r[0]}, {r[1]})", DOUBLE)
            return self._call("LN", [node.this], node)
        if isinstance(node, (exp.CurrentTimestamp, exp.Localtimestamp, exp.CurrentDate)):
            self.error(
                SqlUnsupportedError,
                f"{node.sql()} is not supported: a streaming result must not depend on when it is computed; "
                "use a PROCTIME() column of the table or the event-time column",
                node,
            )
        if isinstance(node, exp.Anonymous):
            return self._call(node.name.upper(), list(node.expressions), node)
        name = _SQLGLOT_NAMES.get(type(node).__name__)
        if name is not None:
            args = [
                node.this,
                *[v for k, v in node.args.items() if k != "this" and isinstance(v, exp.Expression)],
            ]
            return self._call(name, args, node)
        if isinstance(node, (exp.AggFunc, exp.Window)):
            self.error(SqlValidationError, "an aggregate or window function is not allowed here", node)
        if isinstance(node, exp.Subquery | exp.Select):
            self.error(
                SqlUnsupportedError, "subqueries in expressions (scalar, IN, EXISTS) are not supported", node
            )
        self.error(SqlUnsupportedError, f"the expression {type(node).__name__} is not supported", node)
        raise AssertionError  # pragma: no cover

    def _column(self, node: exp.Column) -> Code:
        qualifier = node.table or None
        hits = self.scope.lookup(node.name, qualifier)
        if not hits:
            what = f"{qualifier}.{node.name}" if qualifier else node.name
            self.error(
                SqlValidationError,
                f"unknown column {what!r}; columns here: {', '.join(self.scope.names())}",
                node,
            )
        if len(hits) > 1:
            self.error(
                SqlValidationError, f"column {node.name!r} is ambiguous: qualify it with its table", node
            )
        i = hits[0]
        return Code(f"r[{i}]", self.scope.fields[i].type.plain())

    def _numeric(self, code: Code, node: exp.Expression) -> None:
        if not (code.type.is_numeric or code.type.name in ("NULL", "INTERVAL") or code.type.is_time):
            self.error(SqlValidationError, f"arithmetic needs numbers, this is {code.type.name}", node)

    def _arith(self, node: exp.Expression) -> Code:
        a, b = self.compile(node.this), self.compile(node.expression)
        op = _BINARY[type(node)]
        if a.type.is_time or b.type.is_time:
            if op == "*" or (a.type.is_time and b.type.is_time and op == "+"):
                self.error(SqlValidationError, "timestamps can only be shifted by intervals", node)
            result = TIMESTAMP if not (a.type.is_time and b.type.is_time) else BIGINT
            return self.null_safe([a, b], lambda r: f"{r[0]} {op} {r[1]}", result)
        if a.type.name == "STRING" or b.type.name == "STRING":
            self.error(
                SqlValidationError, f"{op} needs numbers, not STRING (use || or CONCAT for text)", node
            )
        self._numeric(a, node.this)
        self._numeric(b, node.expression)
        t = common_type(a.type, b.type) or DOUBLE
        if t.name == "INTERVAL":
            t = BIGINT
        return self.null_safe([a, b], lambda r: f"{r[0]} {op} {r[1]}", t.with_nullable(False))

    def _coerce_pair(self, a: Code, b: Code) -> tuple[Code, Code]:
        """A string literal compared with a timestamp is read as a timestamp."""
        if a.type.is_time and b.is_const and isinstance(b.const, str):
            v = parse_timestamp(b.const)
            b = Code(repr(v), TIMESTAMP.with_nullable(v is None), v, True)
        elif b.type.is_time and a.is_const and isinstance(a.const, str):
            a, b = self._coerce_pair(b, a)[::-1]
        return a, b

    def _compare(self, node: exp.Expression) -> Code:
        a, b = self._coerce_pair(self.compile(node.this), self.compile(node.expression))
        if common_type(a.type, b.type) is None:
            self.error(SqlValidationError, f"cannot compare {a.type.name} with {b.type.name}", node)
        op = _BINARY[type(node)]
        return self.null_safe([a, b], lambda r: f"{r[0]} {op} {r[1]}", BOOLEAN)

    def _logic(self, node: exp.Expression) -> Code:
        a, b = self.compile(node.this), self.compile(node.expression)
        for c, n in ((a, node.this), (b, node.expression)):
            if c.type.name not in ("BOOLEAN", "NULL"):
                self.error(SqlValidationError, f"AND/OR need BOOLEAN operands, this is {c.type.name}", n)
        word = "and" if isinstance(node, exp.And) else "or"
        if not a.type.nullable and not b.type.nullable:
            return Code(f"({a.src} {word} {b.src})", BOOLEAN.with_nullable(False))
        fn = "_and3" if word == "and" else "_or3"
        return Code(f"{fn}({a.src}, {b.src})", BOOLEAN)

    def _in(self, node: exp.In) -> Code:
        if node.args.get("query") is not None:
            self.error(SqlUnsupportedError, "IN (subquery) is not supported; use a join", node)
        a = self.compile(node.this)
        items = [self._coerce_pair(a, self.compile(e))[1] for e in node.expressions]
        if all(i.is_const for i in items):
            values = frozenset(i.const for i in items if i.const is not None)
            c = self._const(values)
            has_null = any(i.const is None for i in items)
            if has_null:
                t = self._tmp()
                return Code(
                    f"(None if ({t} := {a.src}) is None else (True if {t} in {c} else None))", BOOLEAN
                )
            return self.null_safe([a], lambda r: f"{r[0]} in {c}", BOOLEAN)
        return self.null_safe([a], lambda r: f"{r[0]} in ({', '.join(i.src for i in items)},)", BOOLEAN)

    def _like(self, node: exp.Expression) -> Code:
        a = self.compile(node.this)
        pattern = node.expression
        escape = None
        if isinstance(pattern, exp.Escape):
            escape = pattern.expression.this
            pattern = pattern.this
        p = self.compile(pattern)
        if not p.is_const or not isinstance(p.const, str):
            self.error(SqlUnsupportedError, "LIKE needs a constant pattern", node)
        rx = _like_regex(p.const, escape)
        if isinstance(node, exp.ILike):
            rx = re.compile(rx.pattern, re.DOTALL | re.IGNORECASE)
        m = self._bind(rx.fullmatch)
        return self.null_safe([a], lambda r: f"{m}({r[0]}) is not None", BOOLEAN)

    def _case(self, node: exp.Expression) -> Code:
        if isinstance(node, exp.If):
            branches = [(node.this, node.args.get("true"))]
            default = node.args.get("false")
            operand = None
        else:
            branches = [(i.this, i.args.get("true")) for i in node.args.get("ifs", [])]
            default = node.args.get("default")
            operand = node.this
        base = self.compile(operand) if operand is not None else None
        t: SqlType | None = NULL
        parts = []
        for cond, value in branches:
            if base is not None:
                c = self.compile(exp.EQ(this=operand, expression=cond))
            else:
                c = self.compile(cond)
            v = self.compile(value)
            merged = common_type(t, v.type) if t is not None else None
            if merged is None:
                self.error(
                    SqlValidationError, f"CASE branches have incompatible types ({t} and {v.type})", value
                )
            t = merged
            parts.append((f"{c.src} is True" if c.type.nullable else c.src, v.src))
        d = self.compile(default) if default is not None else Code("None", NULL, None, True)
        merged = common_type(t, d.type) if t is not None else None
        if merged is None:
            self.error(
                SqlValidationError, f"CASE branches have incompatible types ({t} and {d.type})", default
            )
        src = d.src
        for cond_src, value_src in reversed(parts):
            src = f"({value_src} if {cond_src} else {src})"
        return Code(src, merged.with_nullable(merged.nullable or default is None))  # type: ignore[union-attr]

    def _coalesce(self, args: list[exp.Expression], node: exp.Expression) -> Code:
        codes = [self.compile(a) for a in args]
        t = codes[0].type
        for c in codes[1:]:
            merged = common_type(t, c.type)
            if merged is None:
                self.error(
                    SqlValidationError, f"COALESCE arguments have incompatible types ({t}, {c.type})", node
                )
            t = merged
        src = codes[-1].src
        nullable = codes[-1].type.nullable
        for c in reversed(codes[:-1]):
            tmp = self._tmp()
            src = f"({tmp} if ({tmp} := {c.src}) is not None else {src})"
            nullable = nullable and c.type.nullable
        return Code(src, t.with_nullable(nullable))

    def _cast(self, node: exp.Expression) -> Code:
        a = self.compile(node.this)
        to = node.args["to"]
        try:
            target = _datatype(to)
        except SqlValidationError as exc:
            self.error(SqlUnsupportedError, str(exc), to)
        if a.is_const and isinstance(a.const, str) and target.is_time:
            v = parse_timestamp(a.const)
            if v is None:
                self.error(
                    SqlValidationError, f"{a.const!r} is not a timestamp (use 'YYYY-MM-DD HH:MM:SS')", node
                )
            return Code(repr(v), TIMESTAMP.with_nullable(False), v, True)
        if a.type.name == target.name:
            return Code(a.src, target.with_nullable(a.type.nullable))
        fn = self._bind(caster(a.type, target))
        return self.null_safe([a], lambda r: f"{fn}({r[0]})", target.with_nullable(True))

    def _as_string(self, code: Code) -> Code:
        if code.type.name in ("STRING", "NULL"):
            return code
        fn = self._bind(caster(code.type, STRING))
        return self.null_safe([code], lambda r: f"{fn}({r[0]})", STRING)

    def _floor_ceil(self, node: exp.Expression) -> Code:
        a = self.compile(node.this)
        to = node.args.get("to")
        if to is not None:
            unit = to.name.upper()
            if not a.type.is_time:
                self.error(SqlValidationError, f"FLOOR/CEIL ... TO {unit} needs a timestamp", node)
            step = F.unit_ms(unit)
            if step is not None:
                if isinstance(node, exp.Floor):
                    return self.null_safe([a], lambda r: f"{r[0]} - {r[0]} % {step}", TIMESTAMP)
                fn = self._bind(F.ceil_time)
                return self.null_safe([a], lambda r: f"{fn}({r[0]}, {unit!r})", TIMESTAMP)
            if isinstance(node, exp.Floor) and unit in ("MONTH", "YEAR"):
                fn = self._bind(F.floor_time)
                return self.null_safe([a], lambda r: f"{fn}({r[0]}, {unit!r})", TIMESTAMP)
            self.error(
                SqlUnsupportedError, f"{type(node).__name__.upper()}(... TO {unit}) is not supported", to
            )
        import math

        fn = self._bind(math.floor if isinstance(node, exp.Floor) else math.ceil)
        t = a.type.plain() if a.type.is_integer else BIGINT
        return self.null_safe([a], lambda r: f"{fn}({r[0]})", t)

    def _call(self, name: str, args: list[exp.Expression], node: exp.Expression) -> Code:
        udf = self.udfs.get(name.lower())
        if udf is not None:
            codes = [self.compile(a) for a in args]
            fn = self._bind(udf)
            result = getattr(udf, "result_type", None) or SqlType("STRING")
            return Code(f"{fn}({', '.join(c.src for c in codes)})", result.with_nullable(True))
        entry = F.SCALARS.get(name)
        if name in _LEGACY_WINDOWS:
            self.error(
                SqlUnsupportedError,
                f"the group window function {name} (legacy GROUP BY window syntax) is not supported; use a "
                "window TVF: FROM TABLE(TUMBLE(TABLE t, DESCRIPTOR(ts), INTERVAL ...)) "
                "GROUP BY window_start, window_end",
                node,
            )
        if entry is None:
            if name == "PROCTIME":
                self.error(
                    SqlUnsupportedError, "PROCTIME() is supported as a computed column of CREATE TABLE", node
                )
            known = ", ".join(sorted(F.SCALARS))
            self.error(
                SqlValidationError,
                f"unknown function {name}; built-in functions: {known}; register others with "
                "create_temporary_function",
                node,
            )
        impl, result = entry
        codes = [self.compile(a) for a in args]
        codes = [
            Code(c.src, STRING.with_nullable(False), c.const, True)
            if c.is_const and isinstance(c.const, str)
            else c
            for c in codes
        ]
        rtype = result(list(c.type for c in codes)) if callable(result) else result
        fn = self._bind(impl)
        try:
            return self.null_safe(codes, lambda r: f"{fn}({', '.join(r)})", rtype.with_nullable(True))
        except TypeError:  # pragma: no cover
            self.error(SqlValidationError, f"bad arguments for {name}", node)


def _datatype(node: exp.Expression) -> SqlType:
    """The :class:`SqlType` of a sqlglot ``DataType`` node."""
    if not isinstance(node, exp.DataType):
        raise SqlValidationError(f"expected a type, got {node.sql()}")
    text = node.sql()
    return SqlType.parse(text)


datatype = _datatype
