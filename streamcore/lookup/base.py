"""The ``Lookup`` protocol: a dimension store read a batch of keys per round trip.

A lookup join (``DataStream.lookup_join``) asks its :class:`Lookup` for the rows of the
keys it has not cached, all keys of a batch at once, deduplicated: one query per round
trip (``WHERE key = ANY(...)``, ``MGET``, ``IN (...)``) instead of one per element. The
operator calls every method on its own asyncio event loop (in a helper thread), so a
lookup may use any asyncio client; a blocking client (sqlite3) runs in a worker thread.

Write a custom store by subclassing :class:`Lookup`. Create connections in :meth:`open`,
not in ``__init__``: a job that runs several tasks copies the lookup for each task
before opening it.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from typing import Any

from streamcore.errors import ConfigurationError

__all__ = ["Lookup", "merge_row", "quote_identifier", "redact_dsn"]


class Lookup:
    """A dimension store: ``fetch(keys)`` returns the rows of the keys it holds.

    Subclasses implement :meth:`fetch` (and usually :meth:`open`/:meth:`close`).
    ``max_batch_keys`` caps the keys of one round trip; more keys make several requests.

    >>> import asyncio
    >>> class Squares(Lookup):
    ...     async def fetch(self, keys):
    ...         return {k: {"square": k * k} for k in keys if k >= 0}
    >>> asyncio.run(Squares().fetch([2, -1]))
    {2: {'square': 4}}
    """

    #: keys per round trip at most.
    max_batch_keys = 1_000

    async def open(self) -> None:
        """Connect (on the operator's event loop). Raise ``LookupStoreError`` naming the store on failure."""

    async def fetch(self, keys: list[Any]) -> Mapping[Any, Any]:
        """The rows of ``keys`` (distinct) as ``{key: row}``; a key without a row is left out."""
        raise NotImplementedError(f"{type(self).__name__} must implement async def fetch(keys)")

    async def close(self) -> None:
        """Release connections (called once, also after failures or a failed ``open``)."""

    def describe(self) -> str:
        """A readable name of the store for error messages (no passwords)."""
        return type(self).__name__

    def lineage_datasets(self) -> list[tuple[str, str]]:
        """``[(namespace, name)]`` of the tables it reads (OpenLineage naming); none by default."""
        return []


def merge_row(value: Any, row: Any) -> Any:
    """The default output of a lookup join for element ``value`` and its dimension ``row``.

    Dict elements and dict rows merge into one dict (the row's fields win on equal names);
    a dict element without a row (``how="left"``) is emitted unchanged; anything else
    becomes the pair ``(value, row)``.

    >>> merge_row({"order": 1, "shop_id": 7}, {"shop_id": 7, "city": "Lyon"})
    {'order': 1, 'shop_id': 7, 'city': 'Lyon'}
    >>> merge_row({"order": 2, "shop_id": 8}, None)
    {'order': 2, 'shop_id': 8}
    >>> merge_row(5, "five")
    (5, 'five')
    """
    if type(value) is dict:
        if type(row) is dict:
            return {**value, **row}
        if row is None:
            return value
    return (value, row)


_IDENT = re.compile(r"^[A-Za-z_][A-Za-z0-9_$]*(\.[A-Za-z_][A-Za-z0-9_$]*)?$")


def quote_identifier(name: Any, what: str, store: str) -> str:
    """``name`` (``col`` or ``schema.table``) double-quoted for SQL, after checking it is a plain name.

    Raises:
        ConfigurationError: not a plain identifier (keeps SQL injection out of table/column names).
    """
    if not isinstance(name, str) or not _IDENT.match(name):
        msg = (
            f"{store}: {what} must be a plain SQL name (letters, digits, '_', optionally schema.name), "
            f"got {name!r}; pass query=... for anything else"
        )
        raise ConfigurationError(msg)
    return ".".join(f'"{part}"' for part in name.split("."))


_URL_PASSWORD = re.compile(r"(://[^:/@]*:)[^@]*@")
_KV_PASSWORD = re.compile(r"(password\s*=\s*)('(?:[^'\\]|\\.)*'|\S+)", re.IGNORECASE)


def redact_dsn(dsn: str) -> str:
    """``dsn`` with its password replaced by ``***`` (URL and key=value forms).

    >>> redact_dsn("postgresql://app:s3cret@127.0.0.1:5432/shop")
    'postgresql://app:***@127.0.0.1:5432/shop'
    >>> redact_dsn("host=127.0.0.1 password=s3cret dbname=shop")
    'host=127.0.0.1 password=*** dbname=shop'
    """
    return _KV_PASSWORD.sub(r"\1***", _URL_PASSWORD.sub(r"\1***@", dsn))
