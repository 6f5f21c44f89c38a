"""SQLite as a dimension store: the embedded default that needs no server.

``sqlite3`` (standard library) blocks, so the connection lives in one worker thread of
its own and every query runs there; the operator's event loop awaits it. The database
is opened read-only. The keys of a round trip go into one ``WHERE key IN (?, ?, ...)``
(at most 500 per query, below SQLite's bound on parameters).
"""

from __future__ import annotations

import asyncio
import os
import sqlite3
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

from streamcore.errors import ConfigurationError, LookupStoreError
from streamcore.lookup.base import Lookup, quote_identifier

__all__ = ["SQLiteLookup"]


class SQLiteLookup(Lookup):
    """Rows of ``table`` by ``key`` from the SQLite database at ``path`` (read-only).

    Args:
        path: the database file (it must exist).
        table: the dimension table; with ``key`` the query is
            ``SELECT columns FROM table WHERE key IN (...)``.
        key: the column holding the lookup key (unique per row).
        columns: the columns to read (default: all).
        query: instead of ``table``, a query with ``{keys}`` where the parameter list goes,
            e.g. ``"SELECT s.*, c.city FROM shops s JOIN cities c USING (city_id)
            WHERE s.shop_id IN ({keys})"``;
            ``key`` names the result column holding the key.
    """

    max_batch_keys = 500

    def __init__(
        self,
        path: str | os.PathLike[str],
        table: str | None = None,
        key: str | None = None,
        *,
        columns: list[str] | None = None,
        query: str | None = None,
    ) -> None:
        self.path = Path(path)
        if not isinstance(key, str) or not key:
            msg = f"SQLiteLookup({str(path)!r}) needs key=<column holding the lookup key>"
            raise ConfigurationError(msg)
        self.key = key
        if query is not None:
            if not isinstance(query, str) or "{keys}" not in query:
                msg = f"SQLiteLookup query must be a str with {{keys}} where the keys go, got {query!r}"
                raise ConfigurationError(msg)
            self._template = query
        else:
            where = self.describe()
            t = quote_identifier(table, "table", where)
            k = quote_identifier(key, "key", where)
            cols = "*" if not columns else ", ".join(quote_identifier(c, "column", where) for c in columns)
            if columns and key not in columns:
                cols = f"{k}, {cols}"
            self._template = f"SELECT {cols} FROM {t} WHERE {k} IN ({{keys}})"
        self.table = table
        self._conn: sqlite3.Connection | None = None
        self._pool: ThreadPoolExecutor | None = None
        self._key_index: int | None = None

    def describe(self) -> str:
        """``SQLiteLookup('<path>')``."""
        return f"SQLiteLookup({str(self.path)!r})"

    def lineage_datasets(self) -> list[tuple[str, str]]:
        """``("sqlite://<absolute path>", table)`` (the query's tables are not parsed)."""
        return [(f"sqlite://{self.path.resolve()}", self.table or "query")]

    def _sql(self, n: int) -> str:
        return self._template.replace("{keys}", ", ".join("?" * n))

    async def open(self) -> None:
        """Open the database read-only in a worker thread and check the query once."""
        self._pool = ThreadPoolExecutor(max_workers=1, thread_name_prefix="streamcore-sqlite")
        await asyncio.get_running_loop().run_in_executor(self._pool, self._connect)

    def _connect(self) -> None:
        if not self.path.is_file():
            msg = f"{self.describe()}: the database file does not exist; create it or fix the path"
            raise LookupStoreError(msg)
        try:
            self._conn = sqlite3.connect(f"{self.path.resolve().as_uri()}?mode=ro", uri=True)
            self._query([None])
        except sqlite3.Error as exc:
            msg = f"{self.describe()}: {self._sql(1)!r} failed: {exc}; check the table, key and columns"
            raise LookupStoreError(msg) from exc

    def _query(self, keys: list[Any]) -> dict[Any, Any]:
        assert self._conn is not None
        cur = self._conn.execute(self._sql(len(keys)), keys)
        cols = [d[0] for d in cur.description]
        if self._key_index is None:
            if self.key not in cols:
                msg = f"{self.describe()}: the query returns no column {self.key!r} (columns: {cols})"
                raise LookupStoreError(msg)
            self._key_index = cols.index(self.key)
        ki = self._key_index
        rows: dict[Any, Any] = {}
        for r in cur:
            k = r[ki]
            if k in rows:
                msg = (
                    f"{self.describe()}: key {k!r} has more than one row; a lookup join needs one row per "
                    "key (make the key unique, or aggregate in query=...)"
                )
                raise LookupStoreError(msg)
            rows[k] = dict(zip(cols, r, strict=True))
        return rows

    def _fetch(self, keys: list[Any]) -> dict[Any, Any]:
        try:
            return self._query(keys)
        except sqlite3.Error as exc:
            msg = f"{self.describe()}: query failed: {exc}"
            raise LookupStoreError(msg) from exc

    async def fetch(self, keys: list[Any]) -> dict[Any, Any]:
        """One ``IN (...)`` query for ``keys`` in the worker thread."""
        assert self._pool is not None
        return await asyncio.get_running_loop().run_in_executor(self._pool, self._fetch, keys)

    async def close(self) -> None:
        """Close the connection (in its thread) and stop the thread."""
        pool, self._pool = self._pool, None
        if pool is None:
            return
        conn, self._conn = self._conn, None
        try:
            if conn is not None:
                await asyncio.get_running_loop().run_in_executor(pool, conn.close)
        finally:
            pool.shutdown(wait=True)
