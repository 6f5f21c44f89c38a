"""The query planner: a sqlglot ``SELECT`` tree to DataStream operators over row tuples.

A :class:`Rel` is a planned relation: a DataStream of tuples, the :class:`Field` of
each position, which position is the event-time attribute (its value is the record
timestamp), whether the stream is updating (:class:`~streamcore.changelog.Change`
records) and, for a window TVF, the window still to apply.

``plan_query`` plans in SQL's order: ``FROM`` (tables, views, ``WITH``, subqueries, window
TVFs, joins, ``LATERAL TABLE``), ``WHERE`` (a filter), ``GROUP BY``/aggregates (the window
operator for window TVFs), ``HAVING``, the select list (one generated function per
row), then ``UNION ALL``. Joins are in :mod:`streamcore.sql.joins`, window TVFs in
:mod:`streamcore.sql.windows`. What it cannot plan it refuses with
:class:`~streamcore.errors.SqlUnsupportedError` naming the feature.
"""

from __future__ import annotations

from operator import itemgetter
from typing import Any

from sqlglot import exp

from streamcore.errors import SqlUnsupportedError, SqlValidationError
from streamcore.sql.aggregates import is_aggregate
from streamcore.sql.catalog import Catalog, TableDef
from streamcore.sql.connectors import build_source
from streamcore.sql.expressions import ExprCompiler, Field, Scope
from streamcore.sql.joins import plan_joins
from streamcore.sql.parser import SqlText
from streamcore.sql.relations import Rel, conjuncts
from streamcore.sql.types import SqlType, common_type
from streamcore.sql.updating import (
    filter_changes,
    plan_group_aggregate,
    plan_over,
    project_changes,
    topn_limit,
)
from streamcore.sql.windows import TVFS, materialize_windows, plan_window_aggregate, window_tvf
from streamcore.time import WatermarkStrategy

__all__ = ["Planner"]


def _alias(node: exp.Expression) -> str | None:
    a = node.args.get("alias")
    if a is None:
        return None
    return a.name if isinstance(a, exp.TableAlias) else str(a.name if hasattr(a, "name") else a)


class Planner:
    """Plans queries of one statement onto the environment ``env`` (see the module docstring)."""

    def __init__(self, env: Any, catalog: Catalog, source: SqlText) -> None:
        self.env = env
        self.catalog = catalog
        self.source = source
        self.ctes: list[dict[str, exp.Expression]] = []
        #: the N of a TopN whose ROW_NUMBER() subquery is being planned.
        self.topn: int | None = None
        #: maps a DataStream of a table made with from_data_stream into ``env``'s graph.
        self.bind: Any = lambda ds: ds

    def compiler(self, scope: Scope, slots: dict[str, tuple[int, SqlType]] | None = None) -> ExprCompiler:
        """An expression compiler over ``scope`` with the registered scalar functions."""
        return ExprCompiler(scope, self.source, self.catalog.scalar_functions, slots)

    def unsupported(self, message: str, node: exp.Expression | None) -> Any:
        """Refuse a feature by name."""
        self.source.error(SqlUnsupportedError, message, node)

    # -- relations -----------------------------------------------------------------------------
    def table_rel(self, name: str, alias: str | None, node: exp.Expression) -> Rel:
        """The relation of a table, view or ``WITH`` name."""
        key = name.lower()
        for scope in reversed(self.ctes):
            if key in scope:
                return self.plan_query(scope[key]).with_alias(alias or name)
        if key in self.catalog.views:
            return self.plan_query(self.catalog.views[key]).with_alias(alias or name)
        table = self.catalog.tables.get(key)
        if table is None:
            known = ", ".join(self.catalog.names()) or "none"
            self.source.error(SqlValidationError, f"unknown table {name!r}; tables: {known}", node)
        return self.source_rel(table, alias or table.name)

    def source_rel(self, table: TableDef, qualifier: str) -> Rel:
        """Read ``table``: its connector's rows, event time, watermarks and computed columns."""
        physical = table.physical
        phys_names = [c.name.lower() for c in physical]
        timestamp = watermarks = None
        wm_col = table.watermark_column.lower() if table.watermark_column else None
        scope = Scope([Field(c.name, c.type, qualifier) for c in physical])
        if wm_col is not None:
            if wm_col in phys_names:
                timestamp = itemgetter(phys_names.index(wm_col))
            else:
                computed = next(c for c in table.columns if c.name.lower() == wm_col)
                timestamp = self.compiler(scope).build(
                    [self.compiler(scope).compile(computed.computed).src], as_tuple=False, name="sql_rowtime"
                )
            watermarks = WatermarkStrategy.for_bounded_out_of_orderness(table.watermark_delay_ms or 0)
        stream = build_source(self.env, table, timestamp, watermarks)
        if table.stream is not None:
            stream = self.bind(stream)
        if table.stream is not None and watermarks is not None:
            stream = stream.assign_timestamps_and_watermarks(watermarks, timestamp)
        fields = list(scope.fields)
        extra = [c for c in table.columns if c.computed is not None or c.proctime]
        if extra:
            compiler = self.compiler(scope)
            srcs = [f"r[{i}]" for i in range(len(physical))]
            clock = self.env.clock
            compiler.namespace["_now"] = clock.now_ms
            for c in extra:
                if c.proctime:
                    srcs.append("_now()")
                    fields.append(Field(c.name, SqlType("TIMESTAMP_LTZ", 3, False, proctime=True), qualifier))
                else:
                    code = compiler.compile(c.computed)
                    srcs.append(code.src)
                    fields.append(Field(c.name, code.type, qualifier))
            stream = stream.map(compiler.build(srcs, name="sql_computed")).name(f"computed:{table.name}")
        # Order fields as the table declares its columns.
        order = [
            next(i for i, f in enumerate(fields) if f.name.lower() == c.name.lower()) for c in table.columns
        ]
        if order != list(range(len(fields))):
            stream = stream.map(itemgetter(*order) if len(order) > 1 else lambda r, i=order[0]: (r[i],))
            fields = [fields[i] for i in order]
        time_col = None
        if wm_col is not None:
            time_col = [f.name.lower() for f in fields].index(wm_col)
            f = fields[time_col]
            fields[time_col] = Field(
                f.name, SqlType(f.type.name, f.type.precision, f.type.nullable, rowtime=True), f.qualifier
            )
        return Rel(stream, fields, time_col)

    def from_item(self, node: exp.Expression) -> Rel:
        """The relation of one ``FROM`` item."""
        alias = _alias(node)
        if isinstance(node, exp.Table):
            inner = node.this
            if node.args.get("version") is not None:
                self.unsupported("FOR SYSTEM_TIME AS OF is supported in a JOIN (a lookup join) only", node)
            if isinstance(inner, exp.Anonymous) and inner.name.upper() == "TABLE":
                call = inner.expressions[0] if inner.expressions else None
                if isinstance(call, exp.Anonymous) and call.name.upper() in TVFS:
                    return window_tvf(self, call, alias)
                what = call.name if isinstance(call, exp.Anonymous) else inner.sql()
                self.unsupported(
                    f"the table function {what} is not supported in FROM; window TVFs are "
                    f"{', '.join(TVFS[:4])} and "
                    "user table functions are joined with LATERAL TABLE(...)",
                    inner,
                )
            if isinstance(inner, exp.Anonymous):
                self.unsupported(
                    f"the table function {inner.name} is not supported here; "
                    "write TABLE(TUMBLE(...)) or LATERAL TABLE(...)",
                    inner,
                )
            if node.args.get("db"):
                self.unsupported("catalog and database qualifiers of table names are not supported", node)
            return self.table_rel(node.name, alias, node)
        if isinstance(node, exp.Subquery):
            return self.plan_query(node.this).with_alias(alias)
        if isinstance(node, exp.Values):
            self.unsupported("VALUES in FROM is not supported; use t_env.from_elements(rows, schema)", node)
        self.unsupported(f"{type(node).__name__} in FROM is not supported", node)
        raise AssertionError  # pragma: no cover

    # -- queries ---------------------------------------------------------------------------------
    def plan_query(self, node: exp.Expression) -> Rel:
        """Plan a ``SELECT``, ``UNION ALL`` or parenthesised query."""
        with_ = node.args.get("with_") or node.args.get("with")
        if with_ is not None:
            if with_.args.get("recursive"):
                self.unsupported("WITH RECURSIVE is not supported", with_)
            self.ctes.append({cte.alias.lower(): cte.this for cte in with_.expressions})
            try:
                return self._query(node)
            finally:
                self.ctes.pop()
        return self._query(node)

    def _query(self, node: exp.Expression) -> Rel:
        if isinstance(node, exp.Subquery):
            return self.plan_query(node.this)
        if isinstance(node, exp.Union):
            return self._union(node)
        if isinstance(node, (exp.Intersect, exp.Except)):
            self.unsupported(f"{type(node).__name__.upper()} is not supported; UNION ALL is", node)
        if not isinstance(node, exp.Select):
            self.unsupported(f"{type(node).__name__} is not a query streamcore can plan", node)
        return self._select(node)

    def _union(self, node: exp.Union) -> Rel:
        if node.args.get("distinct"):
            self.unsupported("UNION (distinct) is not supported; UNION ALL is", node)
        left, right = self.plan_query(node.this), self.plan_query(node.expression)
        if len(left.fields) != len(right.fields):
            self.source.error(
                SqlValidationError, f"UNION ALL of {len(left.fields)} and {len(right.fields)} columns", node
            )
        fields = []
        for a, b in zip(left.fields, right.fields, strict=True):
            t = common_type(a.type, b.type)
            if t is None:
                self.source.error(
                    SqlValidationError,
                    f"UNION ALL column {a.name!r}: {a.type.name} and {b.type.name} do not mix",
                    node,
                )
            fields.append(Field(a.name, t))
        if left.updating or right.updating:
            self.unsupported("UNION ALL of updating results is not supported", node)
        time_col = left.time_col if left.time_col is not None and left.time_col == right.time_col else None
        if time_col is not None:
            f = fields[time_col]
            fields[time_col] = Field(f.name, SqlType(f.type.name, 3, f.type.nullable, rowtime=True))
        return Rel(left.stream.union(right.stream), fields, time_col)

    def _select(self, node: exp.Select) -> Rel:
        for arg, what in (
            ("distinct", "SELECT DISTINCT"),
            ("order", "ORDER BY"),
            ("limit", "LIMIT"),
            ("offset", "OFFSET"),
            ("qualify", "QUALIFY"),
        ):
            if node.args.get(arg) is not None:
                self.unsupported(
                    f"{what} is not supported on a stream (it would need the whole input); "
                    "for the first N rows per group use ROW_NUMBER() ... WHERE rn <= N",
                    node.args[arg],
                )
        frm = node.args.get("from_") or node.args.get("from")
        if frm is None:
            self.unsupported("SELECT without FROM is not supported; use t_env.from_elements", node)

        where = node.args.get("where")
        preds = conjuncts(where.this) if where else []
        topn = topn_limit(self, node) if not node.args.get("joins") else None
        if topn is not None:
            _rn, self.topn, preds = topn
            try:
                rel = self.from_item(frm.this)
            finally:
                self.topn = None
        else:
            rel = self.from_item(frm.this)
        rel, remaining = plan_joins(self, rel, node.args.get("joins") or [], preds)
        if remaining:
            if rel.window is not None:
                base = Rel(rel.stream, rel.fields[: rel.width], rel.time_col)
                rel = Rel(
                    self._filter(base, remaining).stream,
                    rel.fields,
                    rel.time_col,
                    window=rel.window,
                    width=rel.width,
                )
            else:
                rel = self._filter(rel, remaining)
        return self._aggregate_and_project(rel, node)

    def _filter(self, rel: Rel, preds: list[exp.Expression]) -> Rel:
        if rel.updating:
            self.unsupported("WHERE over an updating result is not supported", preds[0])
        c = self.compiler(rel.scope())
        cond = preds[0] if len(preds) == 1 else exp.and_(*preds)
        stream = rel.stream.filter(c.predicate(cond)).name("where")
        return Rel(stream, rel.fields, rel.time_col, rel.updating, key=rel.key)

    def _aggregate_and_project(self, rel: Rel, node: exp.Select) -> Rel:
        udafs = self.catalog.aggregate_functions
        items = self._expand_star(rel, node.expressions)
        group = list(node.args["group"].expressions) if node.args.get("group") is not None else []
        having = node.args.get("having")
        aggs: list[exp.Expression] = []
        for item in [*items, *([having] if having is not None else [])]:
            for sub in item.walk():
                if (
                    isinstance(sub, exp.Expression)
                    and is_aggregate(sub, udafs)
                    and not any(
                        is_aggregate(p, udafs) or isinstance(p, exp.Window) for p in _ancestors(sub, item)
                    )
                    and not isinstance(sub.parent, exp.Window)
                ):
                    aggs.append(sub)
        windows = [w for item in items for w in item.find_all(exp.Window)]
        slots: dict[str, tuple[int, SqlType]] | None = None
        if group or aggs:
            if windows:
                self.unsupported("OVER windows together with GROUP BY are not supported", windows[0])
            if rel.window is not None:
                rel, slots = plan_window_aggregate(self, rel, group, aggs, node)
            else:
                rel, slots = plan_group_aggregate(self, rel, group, aggs, node)
            if having is not None:
                c = self.compiler(rel.scope(), slots)
                rel = self._filter_slots(rel, c, having.this)
        elif rel.window is not None:
            rel = materialize_windows(self, rel, node)
        if having is not None and slots is None:
            self.unsupported("HAVING without GROUP BY or aggregates is not supported", having)
        if windows:
            return plan_over(self, rel, items, windows)
        return self.project(rel, items, slots)

    def _filter_slots(self, rel: Rel, c: ExprCompiler, cond: exp.Expression) -> Rel:
        if rel.updating:
            return filter_changes(rel, c.predicate(cond))
        return Rel(rel.stream.filter(c.predicate(cond)).name("having"), rel.fields, rel.time_col)

    def _expand_star(self, rel: Rel, items: list[exp.Expression]) -> list[exp.Expression]:
        out: list[exp.Expression] = []
        visible = rel.fields
        for item in items:
            if isinstance(item, exp.Star) or (
                isinstance(item, exp.Column) and isinstance(item.this, exp.Star)
            ):
                q = item.table if isinstance(item, exp.Column) else None
                chosen = [f for f in visible if q is None or (f.qualifier or "").lower() == q.lower()]
                if not chosen:
                    self.source.error(SqlValidationError, f"{item.sql()} names no columns", item)
                out.extend(
                    exp.column(f.name, f.qualifier) if f.qualifier else exp.column(f.name) for f in chosen
                )
            else:
                out.append(item)
        return out

    def project(
        self, rel: Rel, items: list[exp.Expression], slots: dict[str, tuple[int, SqlType]] | None
    ) -> Rel:
        """The select list: one generated function per row (skipped when it is the identity)."""
        c = self.compiler(rel.scope(), slots)
        codes = [c.compile(i) for i in items]
        names = [self._output_name(i, j) for j, i in enumerate(items)]
        fields, time_col = [], None
        for j, (code, name) in enumerate(zip(codes, names, strict=True)):
            t = code.type
            if time_col is None and rel.time_col is not None and code.src == f"r[{rel.time_col}]":
                time_col = j
                t = rel.fields[rel.time_col].type
            fields.append(Field(name, t))
        srcs = [code.src for code in codes]
        if rel.updating:
            return project_changes(rel, c.build(srcs, name="sql_select"), fields, srcs)
        if srcs == [f"r[{i}]" for i in range(len(rel.fields))]:
            return Rel(rel.stream, fields, time_col)
        if rel.fuse is not None and rel.fuse.fuse(srcs, c.namespace):
            return Rel(rel.stream, fields, time_col)
        stream = rel.stream.map(c.build(srcs, name="sql_select")).name("select")
        return Rel(stream, fields, time_col)

    @staticmethod
    def _output_name(item: exp.Expression, j: int) -> str:
        if isinstance(item, exp.Alias):
            return item.alias
        if isinstance(item, exp.Column):
            return item.name
        return f"EXPR${j}"


def _ancestors(node: exp.Expression, stop: exp.Expression) -> list[exp.Expression]:
    out = []
    p = node.parent
    while p is not None and p is not stop:
        out.append(p)
        p = p.parent
    if p is stop and p is not node:
        out.append(p)
    return out
