"""Window table-valued functions and their aggregation, onto the window operator.

``TABLE(TUMBLE(TABLE t, DESCRIPTOR(ts), INTERVAL '1' MINUTE))`` is a relation with t's
columns plus ``window_start``, ``window_end`` and ``window_time`` (``window_end - 1``,
the event time of the window's results). Grouped by ``window_start, window_end, keys``
it becomes ``key_by(keys).window(assigner).aggregate(combine(...), window_fn)``:

===================================================  =====================================
TVF                                                  assigner
===================================================  =====================================
``TUMBLE(t, DESCRIPTOR(ts), size [, offset])``       ``TumblingEventTimeWindows.of(size, offset)``
``HOP(t, DESCRIPTOR(ts), slide, size [, offset])``   ``SlidingEventTimeWindows.of(size, slide, offset)``
``CUMULATE(t, DESCRIPTOR(ts), step, max_size)``      ``CumulativeEventTimeWindows.of(max_size, step)``
``SESSION(t, DESCRIPTOR(ts), gap)``                  ``EventTimeSessionWindows.with_gap(gap)`` per key
===================================================  =====================================

Without a grouping, a TVF's rows are its input rows with their windows appended (one
row per window the row falls in); a session TVF needs its grouping.
"""

from __future__ import annotations

import re
from typing import Any

from sqlglot import exp

from streamcore.aggregates import combine
from streamcore.errors import SqlUnsupportedError, SqlValidationError
from streamcore.sql.aggregates import plan_aggregate
from streamcore.sql.expressions import Field, Scope, interval_ms
from streamcore.sql.parser import SESSION_TVF
from streamcore.sql.relations import PlannerLike, Rel, WindowSpec
from streamcore.sql.types import TIMESTAMP, SqlType
from streamcore.windowing import (
    CumulativeEventTimeWindows,
    EventTimeSessionWindows,
    SlidingEventTimeWindows,
    TumblingEventTimeWindows,
    WindowAssigner,
)

__all__ = ["WINDOW_COLUMNS", "WindowSpec", "materialize_windows", "plan_window_aggregate", "window_tvf"]

WINDOW_COLUMNS = ("window_start", "window_end", "window_time")
TVFS = ("TUMBLE", "HOP", "CUMULATE", "SESSION", SESSION_TVF)


def window_tvf(planner: PlannerLike, call: exp.Anonymous, alias: str | None) -> Rel:
    """The relation of ``TUMBLE/HOP/CUMULATE/SESSION(...)``: its input with a pending window."""
    kind = call.name.upper()
    kind = "SESSION" if kind == SESSION_TVF else kind
    args = list(call.expressions)
    src = planner.source
    if len(args) < 3:
        src.error(SqlValidationError, f"{kind} needs (TABLE t, DESCRIPTOR(time column), INTERVAL ...)", call)
    table_arg, desc, *sizes = args
    if isinstance(table_arg, exp.Column) and not table_arg.table:
        rel = planner.table_rel(table_arg.name, table_arg.name, table_arg)
    elif isinstance(table_arg, (exp.Subquery, exp.Select)):
        rel = planner.plan_query(table_arg.this if isinstance(table_arg, exp.Subquery) else table_arg)
    else:
        src.error(SqlUnsupportedError, f"the first argument of {kind} must be TABLE <name>", table_arg)
    if not (
        isinstance(desc, exp.Anonymous) and desc.name.upper() == "DESCRIPTOR" and len(desc.expressions) == 1
    ):
        src.error(
            SqlValidationError, f"the second argument of {kind} must be DESCRIPTOR(<time column>)", desc
        )
    col = desc.expressions[0]
    hits = Scope(rel.fields).lookup(col.name, None)
    if not hits:
        src.error(SqlValidationError, f"DESCRIPTOR names no column of the table: {col.name!r}", col)
    if rel.time_col != hits[0]:
        src.error(
            SqlUnsupportedError,
            f"{kind} over {col.name!r}: windows need the table's event-time attribute (the column of its "
            "WATERMARK)"
            + (
                f", which is {rel.fields[rel.time_col].name!r}"
                if rel.time_col is not None
                else "; this table has none"
            ),
            col,
        )
    for s in sizes:
        if not isinstance(s, exp.Interval):
            src.error(SqlValidationError, f"{kind} sizes must be INTERVAL literals", s)
    ms = [interval_ms(s, src) for s in sizes]
    try:
        if kind == "TUMBLE" and len(ms) in (1, 2):
            assigner: WindowAssigner = TumblingEventTimeWindows.of(ms[0], ms[1] if len(ms) > 1 else 0)
        elif kind == "HOP" and len(ms) in (2, 3):
            assigner = SlidingEventTimeWindows.of(ms[1], ms[0], ms[2] if len(ms) > 2 else 0)
        elif kind == "CUMULATE" and len(ms) in (2, 3):
            assigner = CumulativeEventTimeWindows.of(ms[1], ms[0], ms[2] if len(ms) > 2 else 0)
        elif kind == "SESSION" and len(ms) == 1:
            assigner = EventTimeSessionWindows.with_gap(ms[0])
        else:
            shapes = {
                "TUMBLE": "TUMBLE(TABLE t, DESCRIPTOR(ts), size [, offset])",
                "HOP": "HOP(TABLE t, DESCRIPTOR(ts), slide, size [, offset])",
                "CUMULATE": "CUMULATE(TABLE t, DESCRIPTOR(ts), step, max_size [, offset])",
                "SESSION": "SESSION(TABLE t, DESCRIPTOR(ts), gap)",
            }
            src.error(SqlValidationError, f"wrong arguments: write {shapes[kind]}", call)
    except SqlValidationError:
        raise
    except ValueError as exc:
        src.error(SqlValidationError, str(exc), call)
    wtype = TIMESTAMP.with_nullable(False)
    fields = [Field(f.name, f.type, alias or f.qualifier) for f in rel.fields]
    fields += [Field(n, wtype, alias) for n in WINDOW_COLUMNS]
    return Rel(rel.stream, fields, rel.time_col, window=WindowSpec(kind, assigner), width=len(rel.fields))


def materialize_windows(planner: PlannerLike, rel: Rel, node: exp.Expression) -> Rel:
    """A TVF without aggregation: each row once per window, with window_start/end/time appended."""
    assert rel.window is not None
    if rel.window.kind == "SESSION":
        planner.source.error(
            SqlUnsupportedError,
            "SESSION windows need GROUP BY window_start, window_end (sessions merge)",
            node,
        )
    assigner = rel.window.assigner
    ti = rel.time_col

    def explode(row: tuple[Any, ...]) -> list[tuple[Any, ...]]:
        return [(*row, w.start, w.end, w.end - 1) for w in assigner.assign_windows(row, row[ti], None)]

    stream = rel.stream.flat_map(explode).name(f"{rel.window.kind.lower()}_windows")
    return Rel(stream, rel.fields, ti)


def plan_window_aggregate(
    planner: PlannerLike,
    rel: Rel,
    group: list[exp.Expression],
    aggs: list[exp.Expression],
    node: exp.Expression,
) -> tuple[Rel, dict[str, tuple[int, SqlType]]]:
    """``GROUP BY window_start, window_end, keys`` over a TVF: the window operator.

    Returns the aggregated relation (keys, window_start, window_end, window_time,
    aggregates) and the slots mapping each key and aggregate's SQL text to its column.
    """
    assert rel.window is not None
    src = planner.source
    base = Scope(rel.fields[: rel.width])
    compiler = planner.compiler(base)
    window_cols = set()
    keys: list[exp.Expression] = []
    for g in group:
        if isinstance(g, exp.Column) and g.name.lower() in WINDOW_COLUMNS:
            window_cols.add(g.name.lower())
        else:
            keys.append(g)
    if not {"window_start", "window_end"} <= window_cols:
        src.error(
            SqlUnsupportedError,
            "a window aggregation must GROUP BY window_start, window_end (and any keys); grouping a window "
            "TVF otherwise is not supported",
            node,
        )
    key_codes = [compiler.compile(k) for k in keys]
    if not keys:
        key_fn: Any = _constant_key
    elif len(keys) == 1:
        key_fn = compiler.build([key_codes[0].src], as_tuple=False, name="sql_key")
    else:
        key_fn = compiler.build([c.src for c in key_codes], name="sql_key")
    members: dict[str, Any] = {}
    results: list[str] = []
    slots: dict[str, tuple[int, SqlType]] = {}
    fields: list[Field] = []
    for j, (k, c) in enumerate(zip(keys, key_codes, strict=True)):
        name = k.name if isinstance(k, exp.Column) else f"EXPR${j}"
        fields.append(Field(name, c.type))
        _slot(slots, k, j, c.type)
    nk = len(keys)
    wtype = TIMESTAMP.with_nullable(False)
    for i, n in enumerate(WINDOW_COLUMNS):
        fields.append(Field(n, SqlType("TIMESTAMP", 3, False, rowtime=(n == "window_time"))))
        slots[n] = (nk + i, wtype)
    udafs = planner.catalog.aggregate_functions
    for a in aggs:
        key = a.sql()
        if key in slots:
            continue
        m, result, t = plan_aggregate(a, compiler, udafs, f"a{len(results)}")
        members.update(m)
        slots[key] = (len(fields), t)
        fields.append(Field(f"EXPR${len(fields)}", t))
        results.append(result)
    if not members:
        from streamcore.aggregates import Count

        members["_rows"] = Count()
    key_src = [] if nk == 0 else ["key"] if nk == 1 else [f"key[{j}]" for j in range(nk)]
    srcs = [*key_src, "w.start", "w.end", "w.end - 1", *results]
    ns: dict[str, Any] = {}
    text = f"def window_row(key, w, res):\n    return ({', '.join(srcs)},)\n"
    exec(compile(text, "<streamcore sql window_row>", "exec"), ns)
    stream = (
        rel.stream.key_by(key_fn)
        .window(rel.window.assigner)
        .aggregate(combine(**members), ns["window_row"])
        .name(f"{rel.window.kind.lower()}_aggregate")
    )
    out = Rel(stream, fields, nk + 2)
    out.fuse = WindowRowFusion(ns["window_row"], ns, srcs)
    return out, slots


_PICK = re.compile(r"\br\[(\d+)\]")


class WindowRowFusion:
    """Folds the select list after a window aggregation into its generated window function.

    With ~one record per key and window, a separate projection would cost one more
    operator pass per result. The window function (generated here, with no closure)
    gets the code of ``(projection)`` over its own elements instead, before the job runs.
    """

    def __init__(self, fn: Any, namespace: dict[str, Any], elements: list[str]) -> None:
        self.fn = fn
        self.namespace = namespace
        self.elements = elements
        self.used = False

    def fuse(self, srcs: list[str], helpers: dict[str, Any]) -> bool:
        """Make the window function return ``srcs`` (over the row ``r`` it used to return)."""
        if self.used or any(name in self.namespace for name in helpers if name != "__builtins__"):
            return False
        body = ", ".join(_PICK.sub(lambda m: f"({self.elements[int(m.group(1))]})", s) for s in srcs)
        if re.search(r"\br\b", body):
            return False  # the projection reads the row otherwise than by position
        self.namespace.update(helpers)
        fused: dict[str, Any] = self.namespace
        exec(
            compile(
                f"def window_row(key, w, res):\n    return ({body},)\n", "<streamcore sql window_row>", "exec"
            ),
            fused,
        )
        self.fn.__code__ = fused["window_row"].__code__
        self.used = True
        return True


def _slot(slots: dict[str, tuple[int, SqlType]], node: exp.Expression, i: int, t: SqlType) -> None:
    slots[node.sql()] = (i, t)
    if isinstance(node, exp.Column):
        slots.setdefault(node.name, (i, t))


def _constant_key(row: Any) -> int:
    return 0
