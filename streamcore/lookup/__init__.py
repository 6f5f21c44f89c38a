"""Dimension lookups for lookup joins: the ``Lookup`` protocol, stores, and the cache.

``SQLiteLookup`` (standard library, no server), ``PostgresLookup`` (psycopg 3, pooled)
and ``RedisLookup`` (redis-py asyncio) read a batch of keys per round trip;
``LookupCache`` configures the rows a lookup join keeps. psycopg and redis-py are
imported only when such a lookup opens.
"""

from streamcore.lookup.base import Lookup, merge_row
from streamcore.lookup.cache import LookupCache, LookupCacheTable
from streamcore.lookup.postgres import PostgresLookup
from streamcore.lookup.redis import RedisLookup
from streamcore.lookup.sqlite import SQLiteLookup

__all__ = [
    "Lookup",
    "LookupCache",
    "LookupCacheTable",
    "PostgresLookup",
    "RedisLookup",
    "SQLiteLookup",
    "merge_row",
]
