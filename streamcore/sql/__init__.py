"""Streaming SQL on streamcore's operators: ``StreamTableEnvironment`` (PyFlink's names).

SQL is parsed by sqlglot (:mod:`streamcore.sql.parser`) and compiled onto the same
DataStream operators a hand-written job uses: a window TVF is the window operator, an
interval join the range-seeking interval join, a lookup join the async lookup operator,
an unbounded ``GROUP BY`` the group aggregate. Rows are tuples in schema order;
expressions are compiled into Python functions once, when the statement is planned.

Supported:

* DDL: ``CREATE TABLE`` (types, computed columns, ``PROCTIME()``, ``WATERMARK FOR ts AS
  ts - INTERVAL ...``, ``PRIMARY KEY (...) NOT ENFORCED``, ``WITH`` connector options, see
  :mod:`streamcore.sql.connectors`), ``CREATE [TEMPORARY] VIEW``, ``DROP``, ``SET``.
* ``INSERT INTO``; ``SELECT`` with projection, ``WHERE``, ``CASE``, ``CAST``, arithmetic,
  string and time functions (:mod:`streamcore.sql.functions`), ``UNION ALL``, subqueries
  in ``FROM``, ``WITH``.
* Window TVFs ``TUMBLE``, ``HOP``, ``CUMULATE``, ``SESSION`` grouped by ``window_start,
  window_end, ...`` with ``COUNT``, ``SUM``, ``MIN``, ``MAX``, ``AVG``, ``COUNT(DISTINCT)``,
  ``APPROX_COUNT_DISTINCT`` (HyperLogLog), ``BLOOM_COUNT_DISTINCT`` and registered
  aggregates (:mod:`streamcore.sql.windows`, :mod:`streamcore.sql.aggregates`).
* Interval joins, lookup joins, ``LATERAL TABLE`` (:mod:`streamcore.sql.joins`).
* Unbounded ``GROUP BY`` producing a changelog (:mod:`streamcore.sql.updating`).

Anything else raises a :class:`~streamcore.errors.SqlError` that names the feature and
points at its line and column.
"""

from streamcore.sql.environment import StreamTableEnvironment, Table, TableResult
from streamcore.sql.types import DataTypes, Schema, SqlType

__all__ = ["DataTypes", "Schema", "SqlType", "StreamTableEnvironment", "Table", "TableResult"]
