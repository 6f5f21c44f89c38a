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
from typing import TYPE_CHECKING, Any

from sqlglot import exp

from streamcore.aggregates import Count, combine
from streamcore.changelog import Change
from streamcore.sql.aggregates import plan_aggregate
from streamcore.sql.expressions import Field
from streamcore.sql.types import SqlType

if TYPE_CHECKING:
    from streamcore.sql.planner import Planner, Rel

__all__ = ["filter_changes", "plan_group_aggregate", "plan_over", "plan_regular_join", "project_changes"]


def _state_ttl(planner: Planner) -> int | None:
    from streamcore.sql.connectors import parse_duration_ms

    ttl = planner.catalog.config.get("table.exec.state.ttl")
    if ttl is None:
        return None
    ms = parse_duration_ms(ttl, "SET 'table.exec.state.ttl'")
    return ms or None


def plan_group_aggregate(
    planner: Planner, rel: Rel, group: list[exp.Expression], aggs: list[exp.Expression], node: exp.Expression
) -> tuple[Rel, dict[str, tuple[int, SqlType]]]:
    """``GROUP BY keys`` without a window: ``key_by(keys).group_aggregate(combine(...))``."""
    from streamcore.sql.planner import Rel

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
    from streamcore.sql.planner import Rel

    stream = rel.stream.filter(lambda c: pred(c.row)).name("having")
    return Rel(stream, rel.fields, None, True, key=rel.key)


def project_changes(rel: Rel, proj: Callable[[Any], Any], fields: list[Field], srcs: list[str]) -> Rel:
    """A projection of the rows of a changelog (the kinds unchanged)."""
    from streamcore.sql.planner import Rel

    key = [srcs.index(f"r[{k}]") for k in rel.key if f"r[{k}]" in srcs]
    if srcs == [f"r[{i}]" for i in range(len(rel.fields))]:
        return Rel(rel.stream, fields, None, True, key=rel.key)
    stream = rel.stream.map(lambda c: Change(c.kind, proj(c.row))).name("select")
    return Rel(stream, fields, None, True, key=key if len(key) == len(rel.key) else [])


def plan_regular_join(
    planner: Planner,
    left: Rel,
    right: Rel,
    side: str,
    lkeys: list[exp.Expression],
    rkeys: list[exp.Expression],
    rest: list[exp.Expression],
    node: exp.Expression,
) -> tuple[Rel, list]:
    """A join without time bounds: ``regular_join`` (an updating result), when available."""
    from streamcore.sql.planner import Rel

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
    if side and rest:
        planner.unsupported("an outer join condition other than key equalities is not supported", rest[0])
    lc, rc = planner.compiler(left.scope()), planner.compiler(right.scope())
    lk = lc.build([lc.compile(k).src for k in lkeys], as_tuple=len(lkeys) > 1, name="join_key")
    rk = rc.build([rc.compile(k).src for k in rkeys], as_tuple=len(rkeys) > 1, name="join_key")
    nl, nr = (None,) * len(left.fields), (None,) * len(right.fields)

    def combine_rows(a: Any, b: Any) -> tuple[Any, ...]:
        return (a if a is not None else nl) + (b if b is not None else nr)

    stream = left.stream.regular_join(
        right.stream, lk, rk, how, combine=combine_rows, state_ttl_ms=_state_ttl(planner)
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
    return Rel(stream, fields, None, updating=True), rest


def plan_over(planner: Planner, rel: Rel, items: list[exp.Expression], windows: list[exp.Window]) -> Rel:
    """``ROW_NUMBER() OVER (PARTITION BY ... ORDER BY ...)``: only as TopN, when available."""
    w = windows[0]
    if not isinstance(w.this, exp.RowNumber):
        planner.unsupported(
            f"OVER aggregates ({w.this.sql()} OVER ...) are not supported; "
            "ROW_NUMBER() OVER (PARTITION BY ... "
            "ORDER BY ...) followed by WHERE rn <= N (TopN) is",
            w,
        )
    planner.unsupported(
        "ROW_NUMBER() (TopN) is not supported by this streamcore yet: it needs the top_n operator", w
    )
    raise AssertionError  # pragma: no cover
