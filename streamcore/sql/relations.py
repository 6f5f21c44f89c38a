"""What the planner's parts share: a planned relation, a pending window, the planner they call.

:class:`Rel` is a planned relation (a DataStream of row tuples and what each position
holds); :class:`WindowSpec` a window TVF waiting for its aggregation; :class:`PlannerLike`
the part of :class:`~streamcore.sql.planner.Planner` that the join, window and updating
planners call back into. They live below all of those modules, so the planner can import
its parts without its parts importing the planner.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Protocol

from sqlglot import exp

from streamcore.sql.catalog import Catalog
from streamcore.sql.expressions import ExprCompiler, Field, Scope
from streamcore.sql.parser import SqlText
from streamcore.sql.types import SqlType
from streamcore.windowing import WindowAssigner

__all__ = ["PlannerLike", "Rel", "WindowSpec", "conjuncts"]


@dataclass(frozen=True)
class WindowSpec:
    """A window TVF waiting for its aggregation: the assigner and the TVF's name."""

    kind: str
    assigner: WindowAssigner


@dataclass
class Rel:
    """A planned relation: a stream of row tuples and what each position holds."""

    stream: Any
    fields: list[Field]
    time_col: int | None = None
    updating: bool = False
    window: WindowSpec | None = None
    #: with a pending window: how many leading fields the stream's tuples hold.
    width: int = 0
    #: the columns that identify a row of an updating result (its upsert key).
    key: list[int] = field(default_factory=list)
    #: a window aggregation's generated function that a select list can be folded into.
    fuse: Any = None

    def scope(self) -> Scope:
        """The columns expressions over this relation can name."""
        return Scope(self.fields)

    def with_alias(self, alias: str | None) -> Rel:
        """The relation with its columns qualified by ``alias``."""
        if not alias:
            return self
        return Rel(
            self.stream,
            [Field(f.name, f.type, alias) for f in self.fields],
            self.time_col,
            self.updating,
            self.window,
            self.width,
            self.key,
        )


def conjuncts(node: exp.Expression | None) -> list[exp.Expression]:
    """The ``AND``-ed parts of a condition."""
    if node is None:
        return []
    if isinstance(node, exp.Paren):
        return conjuncts(node.this)
    if isinstance(node, exp.And):
        return conjuncts(node.this) + conjuncts(node.expression)
    return [node]


class PlannerLike(Protocol):
    """What the join, window and updating planners use of the planner."""

    env: Any
    catalog: Catalog
    source: SqlText
    topn: int | None

    def compiler(self, scope: Scope, slots: dict[str, tuple[int, SqlType]] | None = None) -> ExprCompiler:
        """An expression compiler over ``scope``."""
        ...

    def unsupported(self, message: str, node: exp.Expression | None) -> Any:
        """Refuse a feature by name."""
        ...

    def table_rel(self, name: str, alias: str | None, node: exp.Expression) -> Rel:
        """The relation of a table, view or ``WITH`` name."""
        ...

    def from_item(self, node: exp.Expression) -> Rel:
        """The relation of one ``FROM`` item."""
        ...

    def plan_query(self, node: exp.Expression) -> Rel:
        """Plan a query."""
        ...

    def project(
        self, rel: Rel, items: list[exp.Expression], slots: dict[str, tuple[int, SqlType]] | None
    ) -> Rel:
        """Apply a select list."""
        ...
