"""Joins: interval joins, lookup joins, ``LATERAL TABLE`` and (when available) regular joins.

* **Interval join**: two event-time streams joined on equal keys with bounds between
  their time attributes (``a.ts BETWEEN b.ts - INTERVAL '20' MINUTE AND b.ts``, or the
  same with ``>=``/``<=``/``>``/``<``) is ``a.key_by(k).interval_join(b.key_by(k))
  .between(lower, upper)``, the range-seeking join: right rows with
  ``left.ts + lower <= right.ts <= left.ts + upper`` (strict bounds move by 1 ms).
* **Lookup join**: ``JOIN dim FOR SYSTEM_TIME AS OF o.proc_time AS d ON o.k = d.k`` with
  ``dim`` a ``jdbc`` table is :meth:`~streamcore.DataStream.lookup_join` with the
  table's cache options; ``LEFT JOIN`` keeps rows without a dimension row.
* **LATERAL TABLE(f(...)) AS T(c, ...)**: a registered table function, one output row per
  row it yields (``LEFT JOIN LATERAL ... ON TRUE`` keeps rows it yields none for).

A joined row is the left tuple followed by the right tuple. Conditions that are not
join keys or time bounds filter the joined rows.
"""

from __future__ import annotations

from typing import Any

from sqlglot import exp

from streamcore.errors import SqlValidationError
from streamcore.sql.connectors import build_lookup
from streamcore.sql.expressions import Field, Scope, interval_ms
from streamcore.sql.relations import PlannerLike, Rel, conjuncts
from streamcore.sql.types import SqlType
from streamcore.sql.updating import plan_regular_join

__all__ = ["plan_joins"]


def _sides(node: exp.Expression, left: Scope, right: Scope) -> set[str]:
    """Which inputs (``"l"``, ``"r"``) the columns of ``node`` come from."""
    out = set()
    for col in node.find_all(exp.Column):
        in_l = bool(left.lookup(col.name, col.table or None))
        in_r = bool(right.lookup(col.name, col.table or None))
        if in_l and in_r and not col.table:
            out.add("?")
        elif in_l:
            out.add("l")
        elif in_r:
            out.add("r")
    return out


def plan_joins(
    planner: PlannerLike, rel: Rel, joins: list[exp.Join], preds: list[exp.Expression]
) -> tuple[Rel, list[Any]]:
    """Join ``rel`` with each of ``joins`` in order; returns the result and the predicates left over."""
    for join in joins:
        if rel.window is not None:
            planner.unsupported("joining a window TVF before its aggregation is not supported", join)
        side = (join.args.get("side") or "").upper()
        kind = (join.args.get("kind") or "").upper()
        if join.args.get("using"):
            planner.unsupported("JOIN ... USING is not supported; write ON a.k = b.k", join)
        target = join.this
        if isinstance(target, exp.Lateral):
            rel = _lateral(planner, rel, target, side, join)
            continue
        if kind in ("SEMI", "ANTI") or (kind == "CROSS" and not isinstance(target, exp.Lateral)):
            planner.unsupported(f"{kind} JOIN is not supported", join)
        on = conjuncts(join.args.get("on"))
        if isinstance(target, exp.Table) and target.args.get("version") is not None:
            rel, rest = _lookup(planner, rel, target, side, on, join)
            preds = [*preds, *rest]
            continue
        right = planner.from_item(target)
        if right.window is not None:
            planner.unsupported("joining a window TVF before its aggregation is not supported", target)
        # Conditions of a comma join live in WHERE: take those over both sides.
        pool = on if on or side else [p for p in preds if _sides(p, rel.scope(), right.scope()) == {"l", "r"}]
        if not (on or side):
            preds = [p for p in preds if p not in pool]
        rel, rest = _two_streams(planner, rel, right, side, pool, join)
        preds = [*preds, *rest]
    return rel, preds


def _time_term(node: exp.Expression, rel_l: Rel, rel_r: Rel, planner: PlannerLike) -> tuple[str, int] | None:
    """``(side, offset_ms)`` when ``node`` is a time attribute plus or minus an interval constant."""
    offset = 0
    while isinstance(node, (exp.Add, exp.Sub)) and isinstance(node.expression, exp.Interval):
        ms = interval_ms(node.expression, planner.source)
        offset += ms if isinstance(node, exp.Add) else -ms
        node = node.this
    if isinstance(node, exp.Paren):
        return _time_term(node.this, rel_l, rel_r, planner)
    if not isinstance(node, exp.Column):
        return None
    sl, sr = (
        rel_l.scope().lookup(node.name, node.table or None),
        rel_r.scope().lookup(node.name, node.table or None),
    )
    if len(sl) == 1 and not sr and sl[0] == rel_l.time_col:
        return ("l", offset)
    if len(sr) == 1 and not sl and sr[0] == rel_r.time_col:
        return ("r", offset)
    return None


def _bound(
    node: exp.Expression, rel_l: Rel, rel_r: Rel, planner: PlannerLike
) -> list[tuple[str, int]] | None:
    """Bounds on ``right.ts - left.ts`` stated by ``node``: ``[("lo"|"hi", ms), ...]``, or None."""
    if isinstance(node, exp.Between):
        lo = exp.GTE(this=node.this, expression=node.args["low"])
        hi = exp.LTE(this=node.this, expression=node.args["high"])
        a, b = _bound(lo, rel_l, rel_r, planner), _bound(hi, rel_l, rel_r, planner)
        return a + b if a is not None and b is not None else None
    if not isinstance(node, (exp.GT, exp.GTE, exp.LT, exp.LTE)):
        return None
    a = _time_term(node.this, rel_l, rel_r, planner)
    b = _time_term(node.expression, rel_l, rel_r, planner)
    if a is None or b is None or a[0] == b[0]:
        return None
    strict = isinstance(node, (exp.GT, exp.LT))
    greater = isinstance(node, (exp.GT, exp.GTE))  # a > b
    if a[0] == "r":  # flip to l-side first: a op b  <=>  b op' a
        a, b, greater = b, a, not greater
    # l.ts + a_off (>|<) r.ts + b_off  =>  r.ts - l.ts (<|>) a_off - b_off
    diff = a[1] - b[1]
    if greater:
        return [("hi", diff - 1 if strict else diff)]
    return [("lo", diff + 1 if strict else diff)]


def _two_streams(
    planner: PlannerLike, left: Rel, right: Rel, side: str, conds: list[exp.Expression], node: exp.Expression
) -> tuple[Rel, list[exp.Expression]]:
    ls, rs = left.scope(), right.scope()
    lkeys, rkeys, bounds, rest, bound_conds = [], [], [], [], []
    for c in conds:
        if isinstance(c, exp.EQ):
            a, b = _sides(c.this, ls, rs), _sides(c.expression, ls, rs)
            if a == {"l"} and b == {"r"}:
                lkeys.append(c.this)
                rkeys.append(c.expression)
                continue
            if a == {"r"} and b == {"l"}:
                lkeys.append(c.expression)
                rkeys.append(c.this)
                continue
        if left.time_col is not None and right.time_col is not None:
            b2 = _bound(c, left, right, planner)
            if b2 is not None:
                bounds.extend(b2)
                bound_conds.append(c)
                continue
        rest.append(c)
    los = [v for k, v in bounds if k == "lo"]
    his = [v for k, v in bounds if k == "hi"]
    if not los or not his or left.updating or right.updating:
        # Not an interval join: time comparisons are ordinary conditions of a regular join.
        return plan_regular_join(planner, left, right, side, lkeys, rkeys, [*rest, *bound_conds], node)
    if side:
        planner.unsupported(f"{side} OUTER interval joins are not supported; an inner interval join is", node)
    if not lkeys:
        planner.unsupported(
            "an interval join needs at least one equality between the two tables (its key)", node
        )
    lower, upper = max(los), min(his)
    if lower > upper:
        planner.source.error(SqlValidationError, "the time bounds of this join admit no pair of rows", node)
    lc, rc = planner.compiler(ls), planner.compiler(rs)
    lk = lc.build([lc.compile(k).src for k in lkeys], as_tuple=len(lkeys) > 1, name="join_key")
    rk = rc.build([rc.compile(k).src for k in rkeys], as_tuple=len(rkeys) > 1, name="join_key")
    # NULL = NULL is not true: rows with a NULL key join nothing (no filter for NOT NULL keys).
    lstream, rstream = left.stream, right.stream
    lcodes, rcodes = [lc.compile(k) for k in lkeys], [rc.compile(k) for k in rkeys]
    if any(c.type.nullable for c in lcodes):
        lstream = lstream.filter(
            lc.build([" and ".join(f"({c.src}) is not None" for c in lcodes)], as_tuple=False)
        )
    if any(c.type.nullable for c in rcodes):
        rstream = rstream.filter(
            rc.build([" and ".join(f"({c.src}) is not None" for c in rcodes)], as_tuple=False)
        )
    stream = (
        lstream.key_by(lk)
        .interval_join(rstream.key_by(rk))
        .between(lower, upper)
        .process(_concat)
        .name("interval_join")
    )
    fields = [*left.fields, *right.fields]
    # The join's rows carry the later of the two times; neither column is that time in general.
    fields = [Field(f.name, f.type.plain(), f.qualifier) for f in fields]
    return Rel(stream, fields, None), rest


def _concat(left: tuple[Any, ...], right: tuple[Any, ...], ctx: Any) -> tuple[Any, ...]:
    return left + right


def _lookup(
    planner: PlannerLike,
    rel: Rel,
    target: exp.Table,
    side: str,
    on: list[exp.Expression],
    node: exp.Expression,
) -> tuple[Rel, list[exp.Expression]]:
    version = target.args["version"]
    if side not in ("", "LEFT"):
        planner.unsupported(f"{side} lookup joins are not supported; inner and LEFT are", node)
    as_of = version.args.get("expression")
    if isinstance(as_of, exp.Column):
        hits = rel.scope().lookup(as_of.name, as_of.table or None)
        if len(hits) != 1 or not rel.fields[hits[0]].type.proctime:
            planner.unsupported(
                "FOR SYSTEM_TIME AS OF must name a processing-time attribute (a PROCTIME() column): "
                "event-time temporal joins are not supported",
                as_of,
            )
    alias = _alias_name(target)
    table = planner.catalog.tables.get(target.name.lower())
    if table is None:
        planner.source.error(SqlValidationError, f"unknown table {target.name!r}", target)
    dim = Scope([Field(c.name, c.type, alias) for c in table.physical])
    left_key = dim_col = None
    rest = []
    for c in on:
        if isinstance(c, exp.EQ) and left_key is None:
            for a, b in ((c.this, c.expression), (c.expression, c.this)):
                if (
                    isinstance(b, exp.Column)
                    and dim.lookup(b.name, b.table or None)
                    and not _sides(a, rel.scope(), dim) & {"r", "?"}
                ):
                    left_key, dim_col = a, dim.fields[dim.lookup(b.name, b.table or None)[0]].name
                    break
            if left_key is not None:
                continue
        rest.append(c)
    if left_key is None:
        planner.source.error(
            SqlValidationError, "a lookup join needs ON <expression> = <dimension column>", node
        )
    lookup, cache = build_lookup(table, dim_col)
    comp = planner.compiler(rel.scope())
    key_fn = comp.build([comp.compile(left_key).src], as_tuple=False, name="lookup_key")
    names = [c.name for c in table.physical]
    empty = (None,) * len(names)

    def join_row(value: tuple[Any, ...], row: Any) -> tuple[Any, ...]:
        if row is None:
            return value + empty
        return value + tuple(row.get(n) for n in names)

    stream = rel.stream.lookup_join(
        lookup, key_fn, cache=cache, how="left" if side == "LEFT" else "inner", join=join_row
    ).name(f"lookup_join:{table.name}")
    fields = [*rel.fields, *[Field(c.name, c.type.with_nullable(True), alias) for c in table.physical]]
    out = Rel(stream, fields, rel.time_col)
    if rest and side == "LEFT":
        planner.unsupported("a LEFT lookup join condition other than the key is not supported", rest[0])
    return out, rest


def _alias_name(node: exp.Expression) -> str:
    a = node.args.get("alias")
    return a.name if a is not None else node.name


def _lateral(planner: PlannerLike, rel: Rel, lateral: exp.Lateral, side: str, node: exp.Expression) -> Rel:
    call = lateral.this
    if isinstance(call, exp.Anonymous) and call.name.upper() == "TABLE" and call.expressions:
        call = call.expressions[0]
    name = call.name if isinstance(call, exp.Anonymous) else type(call).__name__
    fn = planner.catalog.table_functions.get(name.lower())
    if fn is None:
        planner.source.error(
            SqlValidationError,
            f"unknown table function {name!r}; register it with "
            "create_temporary_function(name, fn) where fn yields rows",
            call,
        )
    if side not in ("", "LEFT"):
        planner.unsupported(f"{side} JOIN LATERAL is not supported", node)
    on = node.args.get("on")
    if on is not None and not (isinstance(on, exp.Boolean) and on.this):
        planner.unsupported("JOIN LATERAL ... ON supports ON TRUE only", on)
    alias = lateral.args.get("alias")
    cols = [c.name for c in alias.columns] if alias is not None and alias.columns else []
    types: list[SqlType] = list(getattr(fn, "result_types", None) or [])
    if not cols:
        cols = [f"f{i}" for i in range(max(len(types), 1))]
    if len(types) < len(cols):
        types += [SqlType("STRING")] * (len(cols) - len(types))
    comp = planner.compiler(rel.scope())
    args = comp.build([comp.compile(a).src for a in call.expressions], name="udtf_args")
    width = len(cols)
    keep_empty = side == "LEFT"
    nulls = (None,) * width

    def explode(row: tuple[Any, ...]) -> list[tuple[Any, ...]]:
        out = [row + (x if isinstance(x, tuple) else (x,)) for x in (fn(*args(row)) or ())]
        if not out and keep_empty:
            return [row + nulls]
        return out

    qual = alias.name if alias is not None else name
    stream = rel.stream.flat_map(explode).name(f"lateral:{name}")
    fields = [*rel.fields, *[Field(c, t.with_nullable(True), qual) for c, t in zip(cols, types, strict=True)]]
    return Rel(stream, fields, rel.time_col)
