"""PostgreSQL as a dimension store, through psycopg 3's asyncio API and a connection pool.

The keys of a round trip go into one ``WHERE key = ANY(%s)`` (an array parameter, so
one statement text serves any number of keys and the server can prepare it). Several
round trips run at once over the pool (``pool_size`` connections). ``open`` connects
once directly first, so a server that is down or a wrong DSN fails the job at start
with the server's own message (and the DSN without its password), then opens the pool
and checks the query. Connections are checked when taken from the pool, so a restarted
server costs a reconnect, not a failed lookup. psycopg is imported only here, when a
lookup opens.
"""

from __future__ import annotations

import math
from typing import Any

from streamcore.errors import ConfigurationError, LookupStoreError
from streamcore.lookup.base import Lookup, quote_identifier, redact_dsn

__all__ = ["PostgresLookup"]


class PostgresLookup(Lookup):
    """Rows of ``table`` by ``key`` from PostgreSQL at ``dsn``.

    Args:
        dsn: a libpq connection string or URL.
        table: the dimension table (``schema.table`` allowed); the query is
            ``SELECT columns FROM table WHERE key = ANY(%s)``.
        key: the column holding the lookup key (unique per row).
        columns: the columns to read (default: all).
        query: instead of ``table``, a query with one ``%s`` that receives the array of keys;
            ``key`` names the result column holding the key.
        pool_size: connections at most (round trips in flight at once).
        connect_timeout_s: how long ``open`` waits for the server.
    """

    def __init__(
        self,
        dsn: str,
        table: str | None = None,
        key: str | None = None,
        *,
        columns: list[str] | None = None,
        query: str | None = None,
        pool_size: int = 4,
        connect_timeout_s: float = 5.0,
    ) -> None:
        if not isinstance(dsn, str) or not dsn:
            msg = f"PostgresLookup needs a DSN string, got {dsn!r}"
            raise ConfigurationError(msg)
        self.dsn = dsn
        if not isinstance(key, str) or not key:
            msg = f"{self.describe()} needs key=<column holding the lookup key>"
            raise ConfigurationError(msg)
        if type(pool_size) is not int or pool_size < 1:
            msg = f"{self.describe()}: pool_size must be an int >= 1, got {pool_size!r}"
            raise ConfigurationError(msg)
        self.key = key
        self.table = table
        self.pool_size = pool_size
        self.connect_timeout_s = float(connect_timeout_s)
        if query is not None:
            if not isinstance(query, str) or query.count("%s") != 1:
                msg = f"{self.describe()}: query needs exactly one %s (the array of keys), got {query!r}"
                raise ConfigurationError(msg)
            self._sql = query
            self._check_sql = None
        else:
            where = self.describe()
            t = quote_identifier(table, "table", where)
            k = quote_identifier(key, "key", where)
            cols = "*" if not columns else ", ".join(quote_identifier(c, "column", where) for c in columns)
            if columns and key not in columns:
                cols = f"{k}, {cols}"
            self._sql = f"SELECT {cols} FROM {t} WHERE {k} = ANY(%s)"
            self._check_sql = f"SELECT {cols} FROM {t} LIMIT 0"
        self._pool: Any = None

    def describe(self) -> str:
        """``PostgresLookup('<dsn without password>')``."""
        return f"PostgresLookup({redact_dsn(self.dsn)!r})"

    def lineage_datasets(self) -> list[tuple[str, str]]:
        """``("postgres://host:port", "database.table")`` (OpenLineage's naming; no credentials)."""
        from urllib.parse import urlsplit

        host, port, db = "localhost", 5432, ""
        if "://" in self.dsn:
            u = urlsplit(self.dsn)
            host, port, db = u.hostname or host, u.port or port, u.path.lstrip("/")
        else:
            kv = dict(part.split("=", 1) for part in self.dsn.split() if "=" in part)
            host, port, db = kv.get("host", host), int(kv.get("port", port)), kv.get("dbname", "")
        return [(f"postgres://{host}:{port}", f"{db}.{self.table or 'query'}")]

    async def open(self) -> None:
        """Connect once (clear error when the server is down), open the pool, check the query."""
        try:
            import psycopg
            from psycopg_pool import AsyncConnectionPool
        except ImportError as exc:  # pragma: no cover - a declared dependency
            msg = f"{self.describe()} needs psycopg 3 and psycopg-pool: pip install psycopg psycopg-pool"
            raise ConfigurationError(msg) from exc
        timeout = max(1, math.ceil(self.connect_timeout_s))
        try:
            conn = await psycopg.AsyncConnection.connect(self.dsn, connect_timeout=timeout, autocommit=True)
        except psycopg.Error as exc:
            msg = (
                f"{self.describe()}: cannot connect: {str(exc).strip()}; start the server, or fix the DSN "
                "(host, port, user, database)"
            )
            raise LookupStoreError(msg) from exc
        try:
            if self._check_sql is not None:
                await conn.execute(self._check_sql)
        except psycopg.Error as exc:
            msg = f"{self.describe()}: {self._check_sql!r} failed: {str(exc).strip()}; check the table"
            raise LookupStoreError(msg) from exc
        finally:
            await conn.close()
        pool = AsyncConnectionPool(
            self.dsn,
            min_size=1,
            max_size=self.pool_size,
            open=False,
            kwargs={"autocommit": True, "connect_timeout": timeout},
            check=AsyncConnectionPool.check_connection,
            timeout=self.connect_timeout_s,
            name=f"streamcore-lookup-{id(self):x}",
        )
        self._pool = pool
        try:
            await pool.open(wait=True, timeout=self.connect_timeout_s)
        except Exception as exc:
            msg = f"{self.describe()}: the connection pool did not open: {exc}"
            raise LookupStoreError(msg) from exc

    async def fetch(self, keys: list[Any]) -> dict[Any, Any]:
        """One ``= ANY(%s)`` query for ``keys`` over a pooled connection."""
        import psycopg

        pool = self._pool
        assert pool is not None
        try:
            async with pool.connection() as conn:
                cur = await conn.execute(self._sql, [list(keys)])
                records = await cur.fetchall()
                desc = cur.description
        except psycopg.Error as exc:
            msg = f"{self.describe()}: query failed: {str(exc).strip()}"
            raise LookupStoreError(msg) from exc
        cols = [d.name for d in desc or ()]
        if self.key not in cols:
            msg = f"{self.describe()}: the query returns no column {self.key!r} (columns: {cols})"
            raise LookupStoreError(msg)
        ki = cols.index(self.key)
        rows: dict[Any, Any] = {}
        for r in records:
            k = r[ki]
            if k in rows:
                msg = (
                    f"{self.describe()}: key {k!r} has more than one row; a lookup join needs one row per "
                    "key (make the key unique, or aggregate in query=...)"
                )
                raise LookupStoreError(msg)
            rows[k] = dict(zip(cols, r, strict=True))
        return rows

    async def close(self) -> None:
        """Close the pool."""
        pool, self._pool = self._pool, None
        if pool is not None:
            await pool.close()
