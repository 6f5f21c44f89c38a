"""Updating results: unbounded ``GROUP BY``, regular joins and TopN, as changelogs.

Their records are :class:`~streamcore.changelog.Change` rows (``+I -U +U -D``). An
unbounded ``GROUP BY`` is :meth:`~streamcore.KeyedStream.group_aggregate` with the same
SQL aggregates as windows (retracting when its input is itself updating); filters and
projections over an updating result apply to the row of each change.

Regular joins and ``ROW_NUMBER()`` TopN are planned onto their operators when this
streamcore has them (``DataStream.regular_join``, ``KeyedStream.top_n``); otherwise they
are refused by name.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from sqlglot import exp

from streamcore.aggregates import Count, combine
from streamcore.changelog import Change
from streamcore.errors import SqlValidationError
from streamcore.sql.aggregates import plan_aggregate
from streamcore.sql.expressions import Field, Scope
from streamcore.sql.relations import PlannerLike, Rel, conjuncts
from streamcore.sql.types import SqlType

__all__ = ["filter_changes", "plan_group_aggregate", "plan_over", "plan_regular_join", "project_changes"]


def _state_ttl(planner: PlannerLike) -> int | None:
    from streamcore.sql.connectors import parse_duration_ms

    ttl = planner.catalog.config.get("table.exec.state.ttl")
    if ttl is None:
        return None
    ms = parse_duration_ms(ttl, "SET 'table.exec.state.ttl'")
    return ms or None


def plan_group_aggregate(
    planner: PlannerLike,
    rel: Rel,
    group: list[exp.Expression],
    aggs: list[exp.Expression],
    node: exp.Expression,
) -> tuple[Rel, dict[str, tuple[int, SqlType]]]:
    """``GROUP BY keys`` without a window: ``key_by(keys).group_aggregate(combine(...))``."""
    compiler = planner.compiler(rel.scope())
    codes = [compiler.compile(g) for g in group]
    nk = len(group)
    if nk == 0:
        key_fn: Any = _constant_key
    elif nk == 1:
        key_fn = compiler.build([codes[0].src], as_tuple=False, name="sql_key")
    else:
        key_fn = compiler.build([c.src for c in codes], name="sql_key")
    slots: dict[str, tuple[int, SqlType]] = {}
    fields: list[Field] = []
    for j, (g, c) in enumerate(zip(group, codes, strict=True)):
        fields.append(Field(g.name if isinstance(g, exp.Column) else f"EXPR${j}", c.type))
        slots[g.sql()] = (j, c.type)
        if isinstance(g, exp.Column):
            slots.setdefault(g.name, (j, c.type))
    members: dict[str, Any] = {}
    results: list[str] = []
    for a in aggs:
        if a.sql() in slots:
            continue
        m, res, t = plan_aggregate(
            a, compiler, planner.catalog.aggregate_functions, f"a{len(results)}", retract=rel.updating
        )
        members.update(m)
        slots[a.sql()] = (len(fields), t)
        fields.append(Field(f"EXPR${len(fields)}", t))
        results.append(res)
    if not members:
        members["_rows"] = Count()
    key_src = [] if nk == 0 else ["key"] if nk == 1 else [f"key[{j}]" for j in range(nk)]
    ns: dict[str, Any] = {}
    text = f"def group_row(key, res):\n    return ({', '.join([*key_src, *results])},)\n"
    exec(compile(text, "<streamcore sql group_row>", "exec"), ns)
    stream = rel.stream.key_by(key_fn).group_aggregate(
        combine(**members), result=ns["group_row"], state_ttl_ms=_state_ttl(planner), name="group_aggregate"
    )
    return Rel(stream, fields, None, updating=True, key=list(range(nk))), slots


def _constant_key(row: Any) -> int:
    return 0


def filter_changes(rel: Rel, pred: Callable[[Any], bool]) -> Rel:
    """A filter over the rows of a changelog."""
    stream = rel.stream.filter(lambda c: pred(c.row)).name("having")
    return Rel(stream, rel.fields, None, True, key=rel.key)


def project_changes(rel: Rel, proj: Callable[[Any], Any], fields: list[Field], srcs: list[str]) -> Rel:
    """A projection of the rows of a changelog (the kinds unchanged)."""
    key = [srcs.index(f"r[{k}]") for k in rel.key if f"r[{k}]" in srcs]
    if srcs == [f"r[{i}]" for i in range(len(rel.fields))]:
        return Rel(rel.stream, fields, None, True, key=rel.key)
    stream = rel.stream.map(lambda c: Change(c.kind, proj(c.row))).name("select")
    return Rel(stream, fields, None, True, key=key if len(key) == len(rel.key) else [])


def plan_regular_join(
    planner: PlannerLike,
    left: Rel,
    right: Rel,
    side: str,
    lkeys: list[exp.Expression],
    rkeys: list[exp.Expression],
    rest: list[exp.Expression],
    node: exp.Expression,
) -> tuple[Rel, list]:
    """A join without time bounds: ``regular_join`` (an updating result), when available."""
    if not hasattr(left.stream, "regular_join"):
        planner.unsupported(
            "regular joins (without time bounds between two event-time attributes) are not supported by this "
            "streamcore yet; write an interval join (a.ts BETWEEN b.ts - INTERVAL ... AND b.ts) or a lookup "
            "join (JOIN dim FOR SYSTEM_TIME AS OF o.proc_time)",
            node,
        )
    if not lkeys:
        planner.unsupported("a join needs at least one equality between the two tables", node)
    how = {"": "inner", "LEFT": "left", "RIGHT": "right", "FULL": "full"}.get(side)
    if how is None:
        planner.unsupported(f"{side} JOIN is not supported", node)
    condition = None
    if rest:
        # The non-equi part of ON decides which rows of equal keys match (for outer joins a
        # filter after the join would not be the same).
        both = planner.compiler(Scope([*left.scope().fields, *right.scope().fields]))
        cond = rest[0] if len(rest) == 1 else exp.and_(*rest)
        pred = both.predicate(cond)

        def condition(left_row: tuple[Any, ...], right_row: tuple[Any, ...]) -> bool:
            return pred(left_row + right_row)

    lc, rc = planner.compiler(left.scope()), planner.compiler(right.scope())
    lk = null_safe_key(lc, [lc.compile(k).src for k in lkeys], "left")
    rk = null_safe_key(rc, [rc.compile(k).src for k in rkeys], "right")
    stream = left.stream.regular_join(
        right.stream,
        lk,
        rk,
        how,
        left_width=len(left.fields),
        right_width=len(right.fields),
        state_ttl_ms=_state_ttl(planner),
        condition=condition,
        name="regular_join",
    )
    nullable_l, nullable_r = how in ("right", "full"), how in ("left", "full")
    fields = [
        Field(f.name, f.type.with_nullable(nullable_l) if nullable_l else f.type.plain(), f.qualifier)
        for f in left.fields
    ]
    fields += [
        Field(f.name, f.type.with_nullable(nullable_r) if nullable_r else f.type.plain(), f.qualifier)
        for f in right.fields
    ]
    return Rel(stream, fields, None, updating=True), []


def null_safe_key(compiler: Any, srcs: list[str], side: str) -> Callable[[Any], Any]:
    """A join key function under which a row with a NULL key matches nothing (``NULL = NULL`` is not true).

    Such a row is keyed by ``(marker of its side, *row)``: never equal to a key of the other
    side, and the same when the row is retracted.
    """
    compiler.namespace["_null_side"] = f"\x00NULL-{side}"
    if len(srcs) == 1:
        src = f"(_k if (_k := {srcs[0]}) is not None else (_null_side, *r))"
    else:
        src = f"(_k if None not in (_k := ({', '.join(srcs)},)) else (_null_side, *r))"
    return compiler.build([src], as_tuple=False, name="join_key")


def topn_limit(planner: PlannerLike, node: exp.Select) -> tuple[str, int, list[exp.Expression]] | None:
    """``(rn alias, N, other conditions)`` when ``node`` reads a ROW_NUMBER subquery ``WHERE rn <= N``."""
    frm = node.args.get("from_") or node.args.get("from")
    inner = frm.this if frm is not None else None
    if not isinstance(inner, exp.Subquery) or not isinstance(inner.this, exp.Select):
        return None
    aliases = [
        i.alias.lower()
        for i in inner.this.expressions
        if isinstance(i, exp.Alias)
        and isinstance(i.this, exp.Window)
        and isinstance(i.this.this, exp.RowNumber)
    ]
    where = node.args.get("where")
    if len(aliases) != 1 or where is None:
        return None
    alias, limit, rest = aliases[0], None, []
    for c in conjuncts(where.this):
        col, lit = c.this, c.expression
        if (
            isinstance(c, (exp.LTE, exp.LT, exp.EQ))
            and isinstance(col, exp.Column)
            and col.name.lower() == alias
            and isinstance(lit, exp.Literal)
            and not lit.is_string
            and limit is None
        ):
            n = int(lit.this)
            limit = n - 1 if isinstance(c, exp.LT) else n
            if isinstance(c, exp.EQ) and n != 1:
                planner.unsupported("WHERE rn = N is supported for N = 1 only; write rn <= N", c)
            continue
        rest.append(c)
    if limit is None:
        return None
    if limit < 1:
        planner.source.error(SqlValidationError, "the TopN limit must be at least 1", where)
    return alias, limit, rest


def plan_over(planner: PlannerLike, rel: Rel, items: list[exp.Expression], windows: list[exp.Window]) -> Rel:
    """``ROW_NUMBER() OVER (PARTITION BY p ORDER BY o) AS rn`` under ``WHERE rn <= N``: TopN.

    Over a window aggregation partitioned by ``window_start, window_end`` it is window TopN
    (``window_top_n``: final, append-only rows when the window closes); otherwise ``top_n``,
    an updating result whose ranks change as rows arrive (``-U/+U``).
    """
    w = windows[0]
    if not isinstance(w.this, exp.RowNumber):
        planner.unsupported(
            f"OVER aggregates ({w.this.sql()} OVER ...) are not supported; "
            "ROW_NUMBER() OVER (PARTITION BY ... ORDER BY ...) followed by WHERE rn <= N (TopN) is",
            w,
        )
    limit = planner.topn
    if limit is None or len(windows) != 1:
        planner.unsupported(
            "ROW_NUMBER() is supported as TopN only: SELECT ... FROM (SELECT ..., ROW_NUMBER() "
            "OVER (...) AS rn FROM t) WHERE rn <= N",
            w,
        )
    planner.topn = None
    compiler = planner.compiler(rel.scope())
    parts = list(w.args.get("partition_by") or [])
    order = w.args.get("order")
    keys = list(order.expressions) if order is not None else []
    if not keys:
        planner.unsupported("ROW_NUMBER() needs ORDER BY", w)
    desc = {bool(k.args.get("desc")) for k in keys}
    if len(desc) != 1:
        planner.unsupported("TopN with mixed ASC and DESC sort keys is not supported", order)
    descending = desc.pop()
    # NULLs sort last either way: (flag, value) with the flag ordering NULLs after values.
    flag = "is not None" if descending else "is None"
    sort_srcs = []
    for k in keys:
        src = compiler.compile(k.this).src
        sort_srcs.append(f"((_s := {src}) {flag}, _s)")
    sort_key = compiler.build(sort_srcs, as_tuple=len(sort_srcs) > 1, name="topn_sort")
    part_srcs = [compiler.compile(p).src for p in parts]
    key_fn = compiler.build(part_srcs, name="topn_key") if part_srcs else _constant_key
    names = [f.name.lower() for f in rel.fields]
    part_names = {p.name.lower() for p in parts if isinstance(p, exp.Column)}
    width = len(rel.fields)
    rank_field = Field("rn", SqlType("BIGINT", nullable=False))
    windowed = not rel.updating and {"window_start", "window_end"} <= part_names and "window_end" in names
    if windowed:
        end = names.index("window_end")
        stream = rel.stream.key_by(key_fn).window_top_n(
            limit, sort_key, lambda r, i=end: r[i], descending=descending, name="window_top_n"
        )
        ranked = Rel(
            stream, [*rel.fields, rank_field], names.index("window_time") if "window_time" in names else None
        )
    else:
        stream = rel.stream.key_by(key_fn).top_n(
            limit, sort_key, descending=descending, append_only=not rel.updating, name="top_n"
        )
        ranked = Rel(stream, [*rel.fields, rank_field], None, updating=True, key=[width])
    slots = {w.sql(): (width, rank_field.type)}
    out = [i.this if isinstance(i, exp.Alias) and isinstance(i.this, exp.Window) else i for i in items]
    named = [
        exp.alias_(o, i.alias) if isinstance(i, exp.Alias) and o is not i else i
        for o, i in zip(out, items, strict=True)
    ]
    return planner.project(ranked, named, slots)
