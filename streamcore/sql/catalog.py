"""The catalog of a table environment: tables (DDL or DataStreams), views, functions, settings.

A :class:`TableDef` is configuration only: its columns, which column is event time and
how its watermark trails it, its connector options. The planner builds a fresh source
(or sink) from it for every job, as Flink's catalog does.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from sqlglot import exp

from streamcore.errors import SqlValidationError
from streamcore.sql.types import SqlType

__all__ = ["Catalog", "ColumnDef", "TableDef"]


@dataclass(frozen=True)
class ColumnDef:
    """A column: physical (read from the connector) or computed (``name AS expr``, ``PROCTIME()``)."""

    name: str
    type: SqlType
    computed: exp.Expression | None = None
    proctime: bool = False


@dataclass
class TableDef:
    """A table of the catalog.

    Attributes:
        columns: in order; rows are tuples in this order.
        watermark_column: the event-time column (its value is the record timestamp).
        watermark_delay_ms: how far the watermark trails the largest event time seen.
        options: the ``WITH`` options (``connector``, ``format``, ...).
        primary_key: the ``PRIMARY KEY (...) NOT ENFORCED`` columns.
        stream: for tables made from a DataStream: the stream of row tuples.
    """

    name: str
    columns: list[ColumnDef]
    watermark_column: str | None = None
    watermark_delay_ms: int | None = None
    options: dict[str, str] = field(default_factory=dict)
    primary_key: list[str] = field(default_factory=list)
    stream: Any = None
    rows: list[tuple[Any, ...]] | None = None

    @property
    def physical(self) -> list[ColumnDef]:
        """The columns a connector reads and writes."""
        return [c for c in self.columns if c.computed is None and not c.proctime]

    def column_index(self, name: str) -> int:
        """The position of column ``name`` (case-insensitive)."""
        for i, c in enumerate(self.columns):
            if c.name.lower() == name.lower():
                return i
        msg = (
            f"table {self.name!r} has no column {name!r}; columns: {', '.join(c.name for c in self.columns)}"
        )
        raise SqlValidationError(msg)


@dataclass
class Catalog:
    """Everything registered in a table environment, by lower-case name."""

    tables: dict[str, TableDef] = field(default_factory=dict)
    views: dict[str, exp.Expression] = field(default_factory=dict)
    scalar_functions: dict[str, Callable[..., Any]] = field(default_factory=dict)
    aggregate_functions: dict[str, Any] = field(default_factory=dict)
    table_functions: dict[str, Any] = field(default_factory=dict)
    config: dict[str, str] = field(default_factory=dict)

    def add_table(self, table: TableDef, *, if_not_exists: bool = False) -> None:
        """Register ``table``; a second table of one name is an error (unless ``if_not_exists``)."""
        key = table.name.lower()
        if key in self.tables or key in self.views:
            if if_not_exists:
                return
            msg = f"table {table.name!r} already exists; drop it first or use CREATE TABLE IF NOT EXISTS"
            raise SqlValidationError(msg)
        self.tables[key] = table

    def names(self) -> list[str]:
        """Every table and view name."""
        return sorted([t.name for t in self.tables.values()] + list(self.views))
