"""``StreamTableEnvironment``: SQL over a :class:`~streamcore.StreamEnvironment` (PyFlink's names).

>>> import streamcore as sc
>>> env = sc.StreamEnvironment()
>>> t_env = sc.StreamTableEnvironment.create(env)
>>> t_env.create_temporary_view("orders", t_env.from_elements(
...     [(1, "lyon", 30), (2, "oslo", 12), (3, "lyon", 5)], ["id", "city", "amount"]))
>>> t_env.sql_query("SELECT id, UPPER(city) AS city FROM orders WHERE amount > 10").execute().collect()
[(1, 'LYON'), (2, 'OSLO')]

Each ``INSERT INTO`` and each ``Table.execute()`` is its own job, as in Flink: it runs on
a copy of the environment (same configuration, state backend and checkpoints) whose
graph holds only what that statement reads and writes. ``to_data_stream`` instead adds
the query to the environment's own graph, to be run with the rest of it.
"""

from __future__ import annotations

import copy
import itertools
from collections.abc import Callable, Iterable, Sequence
from typing import Any

from sqlglot import exp

from streamcore.changelog import Change, RowKind
from streamcore.datastream import DataStream
from streamcore.errors import SqlConnectorError, SqlUnsupportedError, SqlValidationError
from streamcore.sql.catalog import Catalog, ColumnDef, TableDef
from streamcore.sql.connectors import build_sink, check_options, parse_duration_ms
from streamcore.sql.expressions import datatype, interval_ms
from streamcore.sql.parser import Parsed, SqlText, Watermark, parse_expression, parse_script
from streamcore.sql.planner import Planner
from streamcore.sql.relations import Rel
from streamcore.sql.types import STRING, Schema, SqlType, assignable

__all__ = ["StreamTableEnvironment", "Table", "TableResult"]

#: ``SET`` keys and what they do.
CONFIG_KEYS = {
    "table.exec.state.ttl": "idle state retention of GROUP BY and regular joins ('1 h'; '0' = forever)",
    "execution.checkpointing.interval": "checkpoint every interval ('10 s'); needs a checkpoint dir",
    "execution.checkpointing.dir": "where checkpoints go",
    "state.checkpoints.dir": "where checkpoints go (Flink's older name)",
    "execution.savepoint.path": "restore the next INSERT job from this checkpoint or savepoint",
    "parallelism.default": "1: one process runs a job; scale out with more processes of it",
    "table.exec.resource.default-parallelism": "as parallelism.default",
    "pipeline.name": "the name of the next jobs",
}


class TableResult:
    """The result of :meth:`StreamTableEnvironment.execute_sql`: a running job, rows, or ``OK``."""

    def __init__(
        self, *, handle: Any = None, rows: Callable[[], list[Any]] | None = None, kind: str = "OK"
    ) -> None:
        self._handle = handle
        self._rows = rows
        self.kind = kind

    def get_job_client(self) -> Any:
        """The :class:`~streamcore.JobHandle` of an ``INSERT`` job (``None`` for other statements)."""
        return self._handle

    def wait(self, timeout_ms: int | None = None) -> Any:
        """Wait for the ``INSERT`` job to finish (bounded inputs); returns its ``JobResult``."""
        if self._handle is None:
            return None
        return self._handle.wait(None if timeout_ms is None else timeout_ms / 1000)

    def collect(self) -> list[Any]:
        """The rows of a query (tuples; ``Change`` records for an updating one), run to the end."""
        if self._rows is None:
            return []
        return self._rows()

    def print(self) -> None:
        """Print the rows (or ``OK``)."""
        if self._rows is None:
            print(self.kind)
            return
        for r in self.collect():
            print(r if isinstance(r, Change) else Change(RowKind.INSERT, r))


class Table:
    """A query (or a registered table) of a :class:`StreamTableEnvironment`, planned when it is used.

    ``str(table)`` registers it under a generated name, so it can be used in SQL text:
    ``t_env.sql_query(f"SELECT * FROM {table}")``.
    """

    def __init__(self, t_env: StreamTableEnvironment, query: exp.Expression, source: SqlText) -> None:
        self._t_env = t_env
        self._query = query
        self._source = source
        self._name: str | None = None

    def execute(self) -> TableResult:
        """Run the query as its own job; ``.collect()`` gives its rows."""
        return TableResult(rows=lambda: self._t_env._collect(self), kind="SUCCESS_WITH_CONTENT")

    def execute_insert(self, table_name: str) -> TableResult:
        """``INSERT INTO table_name`` this query."""
        return self._t_env._insert(table_name, self, None)

    def explain(self) -> str:
        """The plan of the query (see :meth:`StreamTableEnvironment.explain_sql`)."""
        return self._t_env._explain(self)

    def get_schema(self) -> list[tuple[str, SqlType]]:
        """The result's columns and types."""
        env = self._t_env._job_env()
        rel = self._t_env._plan(self, env)
        return [(f.name, f.type) for f in rel.fields]

    def print_schema(self) -> None:
        """Print the result's columns and types."""
        for name, t in self.get_schema():
            print(f"{name}: {t}")

    def __str__(self) -> str:
        if self._name is None:
            self._name = f"UnnamedTable${next(self._t_env._unnamed)}"
            self._t_env.create_temporary_view(self._name, self)
        return self._name


class StreamTableEnvironment:
    """SQL over a :class:`~streamcore.StreamEnvironment`: DDL, queries, ``INSERT INTO``, UDFs.

    Create it with :meth:`create`. Supported SQL is described in :mod:`streamcore.sql`;
    everything else raises a :class:`~streamcore.errors.SqlError` naming the feature,
    with the line and column of the offending text.
    """

    def __init__(self, env: Any) -> None:
        self.env = env
        self.catalog = Catalog()
        self._restore_from: str | None = None
        # Numbers anonymous tables per environment, so that a job built again by the same
        # program gets the same operator names and uids (restores depend on them).
        self._unnamed = itertools.count()

    @staticmethod
    def create(env: Any) -> StreamTableEnvironment:
        """A table environment over ``env`` (PyFlink's ``StreamTableEnvironment.create``)."""
        from streamcore.environment import StreamEnvironment

        if not isinstance(env, StreamEnvironment):
            msg = f"StreamTableEnvironment.create() takes a StreamEnvironment, got {type(env).__name__}"
            raise SqlValidationError(msg)
        return StreamTableEnvironment(env)

    # -- statements ----------------------------------------------------------------------------
    def execute_sql(self, statement: str) -> TableResult:
        """Run one statement (or several separated by ``;``; the last one's result is returned).

        ``CREATE TABLE`` (columns, computed columns, ``PROCTIME()``, ``WATERMARK FOR``,
        ``PRIMARY KEY ... NOT ENFORCED``, ``WITH`` options), ``CREATE [TEMPORARY] VIEW``,
        ``DROP TABLE/VIEW``, ``SET 'key' = 'value'``, ``INSERT INTO`` (a job, started now;
        ``.wait()`` waits for it) and ``SELECT`` (``.collect()`` runs it).

        >>> import streamcore as sc
        >>> t_env = sc.StreamTableEnvironment.create(sc.StreamEnvironment())
        >>> _ = t_env.execute_sql(
        ...     "CREATE TABLE words (word STRING) WITH ('connector' = 'datagen', 'number-of-rows' = '3', "
        ...     "'fields.word.kind' = 'sequence', 'fields.word.start' = '7', 'fields.word.end' = '9'); "
        ...     "CREATE TABLE out (word STRING, n INT) WITH ('connector' = 'print')")
        >>> _ = t_env.execute_sql("INSERT INTO out SELECT word || '!', CHAR_LENGTH(word) FROM words").wait()
        +I(7!, 1)
        +I(8!, 1)
        +I(9!, 1)
        """
        result = TableResult()
        for parsed in parse_script(statement):
            result = self._statement(parsed)
        return result

    def _statement(self, p: Parsed) -> TableResult:
        ast, src = p.ast, p.source
        if isinstance(ast, exp.Create):
            kind = (ast.args.get("kind") or "").upper()
            if kind == "TABLE":
                self._create_table(p)
                return TableResult()
            if kind == "VIEW":
                name = ast.this.name
                query = ast.expression
                self._plan(Table(self, query, src), self._job_env())  # validates now
                self.catalog.views[name.lower()] = query
                return TableResult()
            if kind == "FUNCTION":
                src.error(
                    SqlUnsupportedError,
                    "CREATE FUNCTION is not supported; register Python functions with "
                    "t_env.create_temporary_function(name, fn)",
                    ast,
                )
            src.error(
                SqlUnsupportedError, f"CREATE {kind} is not supported; CREATE TABLE and CREATE VIEW are", ast
            )
        if isinstance(ast, exp.Drop):
            name = ast.this.name.lower()
            found = self.catalog.tables.pop(name, None) or self.catalog.views.pop(name, None)
            if found is None and not ast.args.get("exists"):
                src.error(SqlValidationError, f"unknown table {ast.this.name!r}", ast.this)
            return TableResult()
        if isinstance(ast, exp.Set):
            for item in ast.expressions:
                self._set(item, src)
            return TableResult()
        if isinstance(ast, exp.Insert):
            if ast.args.get("overwrite"):
                src.error(SqlUnsupportedError, "INSERT OVERWRITE is not supported; INSERT INTO is", ast)
            target = ast.this
            columns = None
            if isinstance(target, exp.Schema):
                columns = [c.name for c in target.expressions]
                target = target.this
            return self._insert(target.name, Table(self, ast.expression, src), columns, node=target)
        if isinstance(ast, (exp.Select, exp.Union, exp.Subquery)):
            return Table(self, ast, src).execute()
        what = type(ast).__name__.upper()
        src.error(
            SqlUnsupportedError,
            f"the statement {what} is not supported; supported: CREATE TABLE, CREATE "
            "VIEW, DROP, SET, INSERT INTO, SELECT",
            ast,
        )
        raise AssertionError  # pragma: no cover

    def _set(self, item: exp.Expression, src: SqlText) -> None:
        eq = item.this
        if not isinstance(eq, exp.EQ):
            src.error(SqlUnsupportedError, "SET needs 'key' = 'value'", item)
        key = (
            eq.this.name if isinstance(eq.this, (exp.Literal, exp.Column, exp.Identifier)) else eq.this.sql()
        )
        value = (
            eq.expression.name
            if isinstance(eq.expression, (exp.Literal, exp.Column))
            else eq.expression.sql()
        )
        if key not in CONFIG_KEYS:
            src.error(
                SqlConnectorError,
                f"unknown setting {key!r}; valid keys: {', '.join(sorted(CONFIG_KEYS))}",
                eq.this,
            )
        if key in ("parallelism.default", "table.exec.resource.default-parallelism") and value != "1":
            src.error(
                SqlUnsupportedError,
                f"{key} = {value!r}: one process runs a job with one thread; scale out "
                "by running more processes of the job (its tasks are assigned by a consumer group)",
                eq,
            )
        if key == "table.exec.state.ttl":
            parse_duration_ms(value, f"SET {key!r}")
        self.catalog.config[key] = value
        if key == "execution.savepoint.path":
            self._restore_from = value
        if key in (
            "execution.checkpointing.interval",
            "execution.checkpointing.dir",
            "state.checkpoints.dir",
        ):
            self._configure_checkpoints(src, eq)

    def _configure_checkpoints(self, src: SqlText, node: exp.Expression) -> None:
        cfg = self.catalog.config
        interval = cfg.get("execution.checkpointing.interval")
        directory = cfg.get("execution.checkpointing.dir", cfg.get("state.checkpoints.dir"))
        if interval is None or directory is None:
            return
        ms = parse_duration_ms(interval, "SET 'execution.checkpointing.interval'")
        self.env.enable_checkpointing(directory, every_records=None, every_ms=ms)

    def _create_table(self, p: Parsed) -> None:
        ast, src = p.ast, p.source
        schema = ast.this
        if ast.expression is not None:
            src.error(
                SqlUnsupportedError,
                "CREATE TABLE ... AS SELECT is not supported; CREATE TABLE then INSERT INTO",
                ast.expression,
            )
        if not isinstance(schema, exp.Schema):
            src.error(SqlValidationError, "CREATE TABLE needs a column list", ast)
        name = schema.this.name
        columns: list[ColumnDef] = []
        pk: list[str] = []
        for item in schema.expressions:
            if isinstance(item, exp.ColumnDef):
                columns.append(self._column(item, src))
                for cons in item.args.get("constraints") or []:
                    if isinstance(cons.args.get("kind"), exp.PrimaryKeyColumnConstraint):
                        pk.append(item.name)
            elif isinstance(item, exp.PrimaryKey):
                pk.extend(i.name for i in item.expressions)
            else:
                src.error(
                    SqlUnsupportedError, f"{type(item).__name__} in CREATE TABLE is not supported", item
                )
        options: dict[str, str] = {}
        props = ast.args.get("properties")
        for prop in props.expressions if props is not None else []:
            if isinstance(prop, exp.Property) and isinstance(prop.this, exp.Literal):
                options[prop.this.name] = prop.args["value"].name
            elif isinstance(prop, exp.TemporaryProperty):
                continue
            else:
                src.error(
                    SqlUnsupportedError,
                    f"the table property {prop.sql()!r} is not supported; write WITH ('key' = 'value', ...)",
                    prop,
                )
        table = TableDef(name, columns, options=options, primary_key=pk)
        if p.watermark is not None:
            self._watermark(table, p.watermark, src)
        try:
            check_options(table)
        except SqlConnectorError as exc:
            line, col, _ = src.locate(props)
            raise SqlConnectorError(
                str(exc), line=line, column=col, text=props.sql() if props else ""
            ) from None
        self.catalog.add_table(table, if_not_exists=bool(ast.args.get("exists")))

    def _column(self, item: exp.ColumnDef, src: SqlText) -> ColumnDef:
        computed = None
        nullable = True
        for cons in item.args.get("constraints") or []:
            kind = cons.args.get("kind")
            if isinstance(kind, exp.ComputedColumnConstraint):
                computed = kind.this
            elif isinstance(kind, exp.NotNullColumnConstraint):
                nullable = bool(kind.args.get("allow_null"))
        if computed is not None:
            if isinstance(computed, exp.Anonymous) and computed.name.upper() == "PROCTIME":
                return ColumnDef(item.name, SqlType("TIMESTAMP_LTZ", 3, False, proctime=True), proctime=True)
            return ColumnDef(item.name, STRING, computed=computed)
        kind = item.args.get("kind")
        if kind is None:
            src.error(SqlValidationError, f"column {item.name!r} needs a type", item)
        try:
            t = datatype(kind)
        except SqlValidationError as exc:
            src.error(SqlUnsupportedError, str(exc), kind)
        return ColumnDef(item.name, t.with_nullable(nullable) if not nullable else t)

    def _watermark(self, table: TableDef, wm: Watermark, src: SqlText) -> None:
        e = wm.expression
        names = [c.name.lower() for c in table.columns]
        if wm.column.lower() not in names:
            src.error(SqlValidationError, f"WATERMARK FOR {wm.column}: no such column", e)
        col = table.columns[names.index(wm.column.lower())]
        if col.computed is None and not col.type.is_time:
            src.error(
                SqlValidationError,
                f"WATERMARK FOR {wm.column}: the column must be a TIMESTAMP, it is {col.type.name}",
                e,
            )
        if isinstance(e, exp.Column) and e.name.lower() == wm.column.lower():
            delay = 0
        elif (
            isinstance(e, exp.Sub)
            and isinstance(e.this, exp.Column)
            and e.this.name.lower() == wm.column.lower()
            and isinstance(e.expression, exp.Interval)
        ):
            delay = interval_ms(e.expression, src)
        else:
            src.error(
                SqlUnsupportedError,
                f"the watermark expression {e.sql()!r} is not supported; write "
                f"WATERMARK FOR {wm.column} AS {wm.column} - INTERVAL 'n' SECOND (or AS {wm.column})",
                e,
            )
        table.watermark_column = col.name
        table.watermark_delay_ms = delay

    # -- tables from Python ------------------------------------------------------------------------
    def from_elements(
        self, elements: Iterable[Sequence[Any]], schema: Schema | Sequence[str] | None = None
    ) -> Table:
        """A bounded table of ``elements`` (tuples, or dicts keyed by column name).

        ``schema``: a :class:`~streamcore.sql.types.Schema`, or a list of column names
        (types inferred from the first row), or ``None`` (names ``_1, _2, ...``).
        """
        rows = list(elements)
        table = self._python_table(schema, rows[0] if rows else None)
        names = [c.name for c in table.physical]
        table.rows = [tuple(r[n] for n in names) if isinstance(r, dict) else tuple(r) for r in rows]
        return self._anonymous(table)

    def from_data_stream(
        self, data_stream: DataStream, schema: Schema | Sequence[str] | None = None
    ) -> Table:
        """A table over a DataStream of tuples (in column order) or dicts keyed by column name.

        With a schema watermark, the stream gets timestamps from that column and a
        bounded-out-of-orderness watermark; otherwise it keeps its own.
        """
        if not isinstance(data_stream, DataStream):
            msg = f"from_data_stream() takes a DataStream, got {type(data_stream).__name__}"
            raise SqlValidationError(msg)
        table = self._python_table(schema, None)
        names = [c.name for c in table.physical]
        table.stream = data_stream.map(
            lambda r: tuple(r[n] for n in names) if isinstance(r, dict) else tuple(r)
        ).name("from_data_stream")
        return self._anonymous(table)

    def _python_table(self, schema: Any, first: Any) -> TableDef:
        if isinstance(schema, Schema):
            cols = [ColumnDef(n, t) for n, t in schema.columns]
            table = TableDef("", cols)
            if schema.watermark_column is not None:
                text = SqlText(f"SELECT {schema.watermark_expr}")
                parsed = parse_expression(text.text, 7, len(text.text) - 1, text)
                self._watermark(table, Watermark(schema.watermark_column, parsed), text)
            return table
        if schema is None:
            width = len(first) if first is not None else 0
            specs = [f"_{i + 1}" for i in range(width)] if not isinstance(first, dict) else list(first)
        else:
            specs = list(schema)
        cols = []
        for i, spec in enumerate(specs):
            name, _, type_text = str(spec).strip().partition(" ")
            if type_text:
                t = SqlType.parse(type_text)
            elif first is not None:
                t = _infer(first[name] if isinstance(first, dict) else first[i])
            else:
                msg = (
                    f"column {name!r} needs a type: pass a Schema, or 'name TYPE' strings "
                    "(e.g. ['city STRING', 'amount BIGINT'])"
                )
                raise SqlValidationError(msg)
            cols.append(ColumnDef(name, t))
        return TableDef("", cols)

    def _anonymous(self, table: TableDef) -> Table:
        table.name = f"UnnamedTable${next(self._unnamed)}"
        self.catalog.tables[table.name.lower()] = table
        return Table(self, exp.select("*").from_(exp.to_table(table.name, quoted=True)), SqlText(""))

    def create_temporary_view(self, name: str, table: Table) -> None:
        """Register ``table`` under ``name`` for SQL."""
        if not isinstance(table, Table):
            msg = f"create_temporary_view() takes a Table, got {type(table).__name__}"
            raise SqlValidationError(msg)
        self.catalog.views[name.lower()] = table._query

    def from_path(self, name: str) -> Table:
        """The registered table or view ``name`` as a :class:`Table`."""
        return self.sql_query(f"SELECT * FROM {name}")

    def create_temporary_function(self, name: str, function: Any) -> None:
        """Register a user function under ``name`` (case-insensitive).

        * an :class:`~streamcore.aggregates.AggregateFunction`: an aggregate (``SELECT f(x) ... GROUP BY``);
        * a callable with ``table_function = True`` (see :func:`udtf`): a table function
          for ``LATERAL TABLE(f(...))``, yielding tuples (or single values);
        * any other callable: a scalar function (called with non-NULL and NULL arguments alike).

        A ``result_type`` attribute (a :class:`~streamcore.sql.types.SqlType`, or
        ``result_types`` for table functions) gives the result's SQL type (default STRING).
        """
        from streamcore.aggregates import AggregateFunction

        key = name.lower()
        if isinstance(function, AggregateFunction):
            self.catalog.aggregate_functions[key] = function
        elif getattr(function, "table_function", False):
            self.catalog.table_functions[key] = function
        elif callable(function):
            self.catalog.scalar_functions[key] = function
        else:
            msg = f"create_temporary_function({name!r}, ...) takes a callable or an AggregateFunction"
            raise SqlValidationError(msg)

    create_temporary_system_function = create_temporary_function

    # -- queries ----------------------------------------------------------------------------------
    def sql_query(self, query: str) -> Table:
        """A :class:`Table` of a ``SELECT`` (planned when it is used)."""
        parsed = parse_script(query)
        if len(parsed) != 1 or not isinstance(parsed[0].ast, (exp.Query, exp.Subquery)):
            parsed[0].source.error(
                SqlValidationError, "sql_query() takes one SELECT; use execute_sql for others", parsed[0].ast
            )
        table = Table(self, parsed[0].ast, parsed[0].source)
        self._plan(table, self._job_env())  # errors now, not when the table is used
        return table

    def to_data_stream(self, table: Table) -> DataStream:
        """The rows of an append-only query as a DataStream of tuples, in this environment's graph."""
        rel = self._plan(table, self.env)
        if rel.updating:
            msg = (
                "the query produces an updating result (+I/-U/+U/-D): read it with to_changelog_stream(), "
                "or make it append-only (window aggregations are)"
            )
            raise SqlUnsupportedError(msg)
        return rel.stream

    def to_changelog_stream(self, table: Table) -> DataStream:
        """The query's changelog: a DataStream of ``Change`` records (all ``+I`` if append-only)."""
        rel = self._plan(table, self.env)
        if rel.updating:
            return rel.stream
        return rel.stream.map(lambda row: Change(RowKind.INSERT, row)).name("to_changelog")

    to_append_stream = to_data_stream
    to_retract_stream = to_changelog_stream

    def explain_sql(self, statement: str) -> str:
        """The plan of a ``SELECT`` or ``INSERT INTO``: its columns and its operators.

        >>> import streamcore as sc
        >>> t_env = sc.StreamTableEnvironment.create(sc.StreamEnvironment())
        >>> t_env.create_temporary_view("t", t_env.from_elements([(1, "a")], ["k", "v"]))
        >>> print(t_env.explain_sql("SELECT k + 1 AS k1 FROM t").splitlines()[1])
        k1 BIGINT
        """
        parsed = parse_script(statement)[-1]
        ast = parsed.ast.expression if isinstance(parsed.ast, exp.Insert) else parsed.ast
        return self._explain(Table(self, ast, parsed.source))

    # -- internals ----------------------------------------------------------------------------------
    def _job_env(self) -> Any:
        """A copy of the environment (same configuration) with a copy of its graph, for one job."""
        job = copy.copy(self.env)
        job.graph = self.env.graph.copy()
        job.sql_origin = self.env
        return job

    def _plan(self, table: Table, env: Any) -> Rel:
        planner = Planner(env, self.catalog, table._source)
        planner.bind = lambda ds: _rebind(ds, env)  # type: ignore[attr-defined]
        return planner.plan_query(table._query)

    def _explain(self, table: Table) -> str:
        from streamcore.sinks.base import CollectSink

        env = self._job_env()
        rel = self._plan(table, env)
        _prune(env.graph, rel.stream.sink_to(CollectSink())._node)
        cols = ", ".join(f"{f.name} {f.type!r}" for f in rel.fields)
        kind = "updating (+I/-U/+U/-D)" if rel.updating else "append-only"
        return f"== Result ==\n{cols}\n{kind}\n\n== Physical plan ==\n{env.explain()}"

    def _collect(self, table: Table) -> list[Any]:
        env = self._job_env()
        rel = self._plan(table, env)
        from streamcore.sinks.base import CollectSink

        sink = CollectSink()
        node = rel.stream.sink_to(sink)._node
        _prune(env.graph, node)
        env.execute(self.catalog.config.get("pipeline.name", "sql-query"))
        return list(sink.results)

    def _insert(self, name: str, table: Table, columns: list[str] | None, node: Any = None) -> TableResult:
        src = table._source
        target = self.catalog.tables.get(name.lower())
        if target is None:
            src.error(
                SqlValidationError, f"unknown table {name!r}; tables: {', '.join(self.catalog.names())}", node
            )
        env = self._job_env()
        rel = self._plan(table, env)
        physical = target.physical
        if columns is not None:
            by_name = {c.name.lower(): c for c in physical}
            missing = [c for c in columns if c.lower() not in by_name]
            if missing:
                src.error(SqlValidationError, f"table {name!r} has no column(s) {missing}", node)
            sink_cols = [by_name[c.lower()] for c in columns]
            if len(sink_cols) != len(physical):
                src.error(
                    SqlUnsupportedError,
                    "INSERT INTO with a partial column list is not supported; list every column",
                    node,
                )
        else:
            sink_cols = physical
        if len(rel.fields) != len(sink_cols):
            src.error(
                SqlValidationError,
                f"INSERT INTO {name}: the query has {len(rel.fields)} columns "
                f"({', '.join(f.name for f in rel.fields)}), the table {len(sink_cols)} "
                f"({', '.join(c.name for c in sink_cols)})",
                table._query,
            )
        bad = [(f, c) for f, c in zip(rel.fields, sink_cols, strict=True) if not assignable(f.type, c.type)]
        if bad:
            detail = "; ".join(
                f"query column {f.name!r} is {f.type.name}, table column {c.name!r} is {c.type.name}"
                for f, c in bad
            )
            src.error(
                SqlValidationError,
                f"INSERT INTO {name}: type mismatch: {detail}; CAST the query columns",
                table._query,
            )
        stream = rel.stream
        if columns is not None:
            order = [[c.name.lower() for c in sink_cols].index(c.name.lower()) for c in physical]
            stream = stream.map(lambda r: tuple(r[i] for i in order))
        sink, prepare = build_sink(
            target, [c.name for c in physical], [c.type for c in physical], rel.updating
        )
        keep = getattr(sink, "sql_filter", None)
        if keep is not None:
            stream = stream.filter(keep)
        if prepare is not None:
            stream = stream.map(prepare)
        sink_node = stream.sink_to(sink).uid(f"sink-{target.name}")._node
        _prune(env.graph, sink_node)
        job_name = self.catalog.config.get("pipeline.name", f"insert-into-{target.name}")
        restore, self._restore_from = self._restore_from, None
        self.catalog.config.pop("execution.savepoint.path", None)
        handle = env.execute_async(job_name, restore_from=restore)
        return TableResult(handle=handle)


def _infer(value: Any) -> SqlType:
    if isinstance(value, bool):
        return SqlType("BOOLEAN")
    if isinstance(value, int):
        return SqlType("BIGINT")
    if isinstance(value, float):
        return SqlType("DOUBLE")
    if isinstance(value, bytes):
        return SqlType("BYTES")
    return STRING


def _rebind(ds: DataStream, env: Any) -> DataStream:
    """``ds`` (built on the original environment) as a stream of ``env``'s copied graph."""
    origin = getattr(env, "sql_origin", None)
    if ds.environment is env or origin is None:
        return ds
    index = {id(n): i for i, n in enumerate(origin.graph.nodes)}
    producers = []
    for node, _side, tag in ds.input_edges():
        if id(node) not in index:
            msg = "a table made from a DataStream was built after the job's environment was copied"
            raise SqlValidationError(msg)
        producers.append((env.graph.nodes[index[id(node)]], tag))
    return DataStream(env, producers)


def _prune(graph: Any, keep: Any) -> None:
    """Drop every node ``keep`` does not read from (directly or not): one statement, one job."""
    needed: set[int] = set()
    todo = [keep]
    while todo:
        n = todo.pop()
        if id(n) in needed:
            continue
        needed.add(id(n))
        todo.extend(p for p, _, _ in n.inputs)
    graph.nodes = [n for n in graph.nodes if id(n) in needed]
    for i, n in enumerate(graph.nodes):
        n.id = i
