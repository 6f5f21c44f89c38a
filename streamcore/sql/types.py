"""SQL data types: their names, their Python values, casts, and the ``DataTypes``/``Schema`` builders.

A row is a tuple of Python values in schema order. Each SQL type has one Python
representation, chosen so that rows stay cheap and event time needs no conversion:

========================================  ==========================================
SQL type                                  Python value
========================================  ==========================================
``TINYINT SMALLINT INT BIGINT``           ``int``
``FLOAT DOUBLE DECIMAL(p, s)``            ``float`` (``DECIMAL`` is not exact here)
``STRING VARCHAR CHAR``                   ``str``
``BOOLEAN``                               ``bool``
``TIMESTAMP(p) TIMESTAMP_LTZ(p)``         ``int`` milliseconds since the epoch (UTC)
``DATE``                                  ``int`` days since the epoch
``BYTES VARBINARY``                       ``bytes``
========================================  ==========================================

Timestamps are int milliseconds because that is event time everywhere in streamcore: a
row's rowtime column *is* its record timestamp. Connectors convert ISO strings at the
edge, and ``DATE_FORMAT`` turns a timestamp into text. ``NULL`` is ``None``.

>>> SqlType.parse("TIMESTAMP(3)")
TIMESTAMP(3)
>>> caster(SqlType.parse("STRING"), SqlType.parse("BIGINT"))("42")
42
"""

from __future__ import annotations

import datetime as _dt
from collections.abc import Callable
from dataclasses import dataclass, replace
from typing import Any

from streamcore.errors import SqlValidationError

__all__ = ["DataTypes", "Schema", "SqlType", "caster", "parse_timestamp"]

INTEGER_TYPES = frozenset({"TINYINT", "SMALLINT", "INT", "BIGINT"})
FLOAT_TYPES = frozenset({"FLOAT", "DOUBLE", "DECIMAL"})
NUMERIC_TYPES = INTEGER_TYPES | FLOAT_TYPES
TIME_TYPES = frozenset({"TIMESTAMP", "TIMESTAMP_LTZ"})
_ALIASES = {
    "INTEGER": "INT",
    "LONG": "BIGINT",
    "TEXT": "STRING",
    "VARCHAR": "STRING",
    "CHAR": "STRING",
    "NCHAR": "STRING",
    "NVARCHAR": "STRING",
    "BOOL": "BOOLEAN",
    "REAL": "FLOAT",
    "DOUBLE PRECISION": "DOUBLE",
    "NUMERIC": "DECIMAL",
    "DEC": "DECIMAL",
    "DATETIME": "TIMESTAMP",
    "TIMESTAMPLTZ": "TIMESTAMP_LTZ",
    "TIMESTAMPTZ": "TIMESTAMP_LTZ",
    "BINARY": "BYTES",
    "VARBINARY": "BYTES",
    "BLOB": "BYTES",
    "UBIGINT": "BIGINT",
    "UINT": "INT",
    "USMALLINT": "SMALLINT",
    "UTINYINT": "TINYINT",
}
KNOWN_TYPES = NUMERIC_TYPES | TIME_TYPES | {"STRING", "BOOLEAN", "DATE", "BYTES", "NULL"}
_EPOCH = _dt.datetime(1970, 1, 1, tzinfo=_dt.UTC)
_MS = _dt.timedelta(milliseconds=1)
_INT_RANK = {"TINYINT": 0, "SMALLINT": 1, "INT": 2, "BIGINT": 3}


@dataclass(frozen=True)
class SqlType:
    """A SQL type: its base ``name`` (``BIGINT``, ``STRING``, ``TIMESTAMP``...), precision, nullability.

    ``rowtime`` marks the event-time attribute of a table (the column its watermark is
    declared on): its value is the record's timestamp.
    """

    name: str
    precision: int | None = None
    nullable: bool = True
    rowtime: bool = False
    proctime: bool = False

    @staticmethod
    def parse(text: str) -> SqlType:
        """The type named by ``text`` (``"BIGINT"``, ``"TIMESTAMP(3)"``, ``"STRING NOT NULL"``)."""
        t = text.strip().upper()
        nullable = True
        if t.endswith("NOT NULL"):
            nullable, t = False, t[: -len("NOT NULL")].strip()
        precision = None
        if "(" in t and t.endswith(")"):
            base, _, args = t[:-1].partition("(")
            t = base.strip()
            first = args.split(",")[0].strip()
            precision = int(first) if first.isdigit() else None
        name = _ALIASES.get(t, t)
        if name not in KNOWN_TYPES:
            msg = f"unknown SQL type {text!r}; supported: {', '.join(sorted(KNOWN_TYPES - {'NULL'}))}"
            raise SqlValidationError(msg, text=text)
        return SqlType(name, precision if name in TIME_TYPES | {"DECIMAL"} else None, nullable)

    @property
    def is_numeric(self) -> bool:
        """Integer or floating point."""
        return self.name in NUMERIC_TYPES

    @property
    def is_integer(self) -> bool:
        """One of the integer types."""
        return self.name in INTEGER_TYPES

    @property
    def is_time(self) -> bool:
        """A timestamp (int milliseconds)."""
        return self.name in TIME_TYPES

    def with_nullable(self, nullable: bool) -> SqlType:
        """This type, nullable or not (and no longer a time attribute)."""
        return replace(self, nullable=nullable, rowtime=False, proctime=False)

    def plain(self) -> SqlType:
        """This type without the time-attribute marks (what an expression over it yields)."""
        return replace(self, rowtime=False, proctime=False) if self.rowtime or self.proctime else self

    def __repr__(self) -> str:
        p = f"({self.precision})" if self.precision is not None else ""
        nn = " NOT NULL" if not self.nullable else ""
        attr = " *ROWTIME*" if self.rowtime else " *PROCTIME*" if self.proctime else ""
        return f"{self.name}{p}{nn}{attr}"


BIGINT = SqlType("BIGINT")
INT = SqlType("INT")
DOUBLE = SqlType("DOUBLE")
STRING = SqlType("STRING")
BOOLEAN = SqlType("BOOLEAN")
TIMESTAMP = SqlType("TIMESTAMP", 3)
NULL = SqlType("NULL")


def common_type(a: SqlType, b: SqlType) -> SqlType | None:
    """The type both ``a`` and ``b`` widen to (for CASE, COALESCE, UNION ALL), or ``None``."""
    nullable = a.nullable or b.nullable
    if a.name == "NULL":
        return b.with_nullable(True)
    if b.name == "NULL":
        return a.with_nullable(True)
    if a.name == b.name:
        return a.with_nullable(nullable)
    if a.is_integer and b.is_integer:
        wider = a if _INT_RANK[a.name] >= _INT_RANK[b.name] else b
        return wider.with_nullable(nullable)
    if a.is_numeric and b.is_numeric:
        return SqlType("DOUBLE", None, nullable)
    if a.is_time and b.is_time:
        return SqlType("TIMESTAMP", 3, nullable)
    return None


def assignable(source: SqlType, target: SqlType) -> bool:
    """Whether a value of ``source`` may be written to a column of ``target`` (``INSERT INTO``)."""
    if source.name == "NULL" or source.name == target.name:
        return True
    if source.is_numeric and target.is_numeric:
        return not (source.name in FLOAT_TYPES and target.is_integer)
    return source.is_time and target.is_time


def parse_timestamp(value: Any) -> int | None:
    """An ISO-8601 timestamp string (or a datetime, or int ms) as int milliseconds since the epoch (UTC).

    >>> parse_timestamp("1970-01-01 00:00:01.5")
    1500
    """
    if value is None or type(value) is int:
        return value
    if isinstance(value, _dt.datetime):
        dt = value
    elif isinstance(value, _dt.date):
        dt = _dt.datetime(value.year, value.month, value.day)
    elif isinstance(value, str):
        text = value.strip().replace("T", " ").rstrip("Z")
        try:
            dt = _dt.datetime.fromisoformat(text)
        except ValueError:
            return None
    elif isinstance(value, float):
        return int(value)
    else:
        return None
    if dt.tzinfo is None:
        dt = dt.replace(tzinfo=_dt.UTC)
    return (dt - _EPOCH) // _MS


def _to_bool(v: Any) -> bool | None:
    if isinstance(v, str):
        low = v.strip().lower()
        return True if low == "true" else False if low == "false" else None
    return bool(v)


def _to_int(v: Any) -> int | None:
    try:
        return int(v) if not isinstance(v, str) else int(float(v)) if "." in v or "e" in v.lower() else int(v)
    except (TypeError, ValueError):
        return None


def _to_float(v: Any) -> float | None:
    try:
        return float(v)
    except (TypeError, ValueError):
        return None


def _to_string(v: Any) -> str:
    if isinstance(v, bool):
        return "TRUE" if v else "FALSE"
    return str(v)


def format_timestamp(ms: int) -> str:
    """``YYYY-MM-DD HH:MM:SS.fff`` (UTC) of int milliseconds, Flink's ``CAST(ts AS STRING)``."""
    dt = _dt.datetime.fromtimestamp(ms / 1000, tz=_dt.UTC)
    return dt.strftime("%Y-%m-%d %H:%M:%S.") + f"{ms % 1000:03d}"


def caster(source: SqlType, target: SqlType) -> Callable[[Any], Any]:
    """A function converting a non-NULL value of ``source`` to ``target`` (``CAST``; ``None`` if invalid).

    Invalid input yields ``None`` (Flink's ``TRY_CAST`` behaviour) rather than failing the job.
    """
    t = target.name
    if t in INTEGER_TYPES:
        if source.is_time or source.is_integer:
            return int
        return _to_int
    if t in FLOAT_TYPES:
        return _to_float
    if t == "STRING":
        if source.is_time:
            return format_timestamp
        return _to_string
    if t == "BOOLEAN":
        return _to_bool
    if t in TIME_TYPES:
        if source.is_integer or source.is_time:
            return int
        if source.name == "DATE":
            return lambda d: d * 86_400_000
        return parse_timestamp
    if t == "DATE":
        if source.is_time:
            return lambda ms: ms // 86_400_000
        return lambda s: (parse_timestamp(s) or 0) // 86_400_000 if isinstance(s, str) else int(s)
    if t == "BYTES":
        return lambda v: v if isinstance(v, bytes) else str(v).encode()
    return lambda v: v


def edge_converter(target: SqlType) -> Callable[[Any], Any]:
    """Converts a value read by a connector (JSON, CSV, a dict) to ``target``'s representation."""
    t = target.name
    if t in TIME_TYPES:
        return parse_timestamp
    cast = caster(STRING, target)
    py = int if t in INTEGER_TYPES else float if t in FLOAT_TYPES else str if t == "STRING" else bool

    def convert(v: Any) -> Any:
        if v is None or type(v) is py:
            return v
        if v == "" and t != "STRING":
            return None
        return cast(v)

    return convert


class DataTypes:
    """PyFlink's ``DataTypes`` factory: ``DataTypes.BIGINT()``, ``DataTypes.TIMESTAMP(3)``...

    >>> DataTypes.STRING()
    STRING
    """

    @staticmethod
    def TINYINT() -> SqlType:
        """An integer."""
        return SqlType("TINYINT")

    @staticmethod
    def SMALLINT() -> SqlType:
        """An integer."""
        return SqlType("SMALLINT")

    @staticmethod
    def INT() -> SqlType:
        """An integer."""
        return SqlType("INT")

    @staticmethod
    def BIGINT() -> SqlType:
        """An integer."""
        return SqlType("BIGINT")

    @staticmethod
    def FLOAT() -> SqlType:
        """A float."""
        return SqlType("FLOAT")

    @staticmethod
    def DOUBLE() -> SqlType:
        """A float."""
        return SqlType("DOUBLE")

    @staticmethod
    def DECIMAL(precision: int = 10, scale: int = 0) -> SqlType:
        """A decimal, held as a float."""
        return SqlType("DECIMAL", precision)

    @staticmethod
    def STRING() -> SqlType:
        """Text."""
        return SqlType("STRING")

    @staticmethod
    def BOOLEAN() -> SqlType:
        """True or false."""
        return SqlType("BOOLEAN")

    @staticmethod
    def TIMESTAMP(precision: int = 3) -> SqlType:
        """A timestamp: int milliseconds since the epoch."""
        return SqlType("TIMESTAMP", precision)

    @staticmethod
    def TIMESTAMP_LTZ(precision: int = 3) -> SqlType:
        """A timestamp with local time zone: int milliseconds since the epoch."""
        return SqlType("TIMESTAMP_LTZ", precision)

    @staticmethod
    def DATE() -> SqlType:
        """A date: int days since the epoch."""
        return SqlType("DATE")

    @staticmethod
    def BYTES() -> SqlType:
        """Bytes."""
        return SqlType("BYTES")


@dataclass(frozen=True)
class Schema:
    """The columns of a table made from a DataStream (``from_data_stream``), PyFlink's builder style.

    ``watermark`` names the event-time column and the SQL expression of its watermark
    (``"ts - INTERVAL '5' SECOND"``); the stream's elements are tuples in column order,
    or dicts keyed by column name.

    >>> s = Schema.new_builder().column("id", "BIGINT").column("ts", DataTypes.TIMESTAMP(3)) \\
    ...     .watermark("ts", "ts - INTERVAL '1' SECOND").build()
    >>> [c for c, _ in s.columns]
    ['id', 'ts']
    """

    columns: tuple[tuple[str, SqlType], ...] = ()
    watermark_column: str | None = None
    watermark_expr: str | None = None

    @staticmethod
    def new_builder() -> Schema:
        """An empty schema to add columns to."""
        return Schema()

    def column(self, name: str, data_type: SqlType | str) -> Schema:
        """This schema with one more column."""
        t = SqlType.parse(data_type) if isinstance(data_type, str) else data_type
        if not isinstance(t, SqlType):
            msg = f"Schema.column({name!r}, ...) takes a DataTypes type or a type name, got {data_type!r}"
            raise SqlValidationError(msg)
        return replace(self, columns=(*self.columns, (name, t)))

    def watermark(self, column: str, expression: str) -> Schema:
        """This schema with ``column`` as event time and a watermark ``expression`` (SQL)."""
        return replace(self, watermark_column=column, watermark_expr=expression)

    def build(self) -> Schema:
        """The schema (builders are immutable; kept for PyFlink's call shape)."""
        return self
