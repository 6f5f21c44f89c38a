"""Redis as a dimension store, through redis-py's asyncio client.

Rows are stored under ``key_prefix + str(key)``: as strings (one ``MGET`` per round trip,
each value decoded, JSON by default) or as hashes (``hash=True``: one pipeline of
``HGETALL`` per round trip, a hash per row). ``open`` pings the server, so a server that
is down fails the job at start with its URL (without the password). redis-py is
imported only here, when a lookup opens.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from typing import Any

from streamcore.errors import ConfigurationError, LookupStoreError
from streamcore.lookup.base import Lookup, redact_dsn

__all__ = ["RedisLookup"]


class RedisLookup(Lookup):
    """Rows by key from Redis at ``url``.

    Args:
        url: ``redis://[:password@]host:port/db``.
        key_prefix: prepended to ``str(key)`` to name the Redis key of a row.
        hash: rows are hashes (``HGETALL``) instead of strings (``MGET``).
        decode: turns a found value into the row: a string (default ``json.loads``) or,
            with ``hash=True``, a dict of strings (default: unchanged).
        connect_timeout_s: how long ``open`` waits for the server.
    """

    def __init__(
        self,
        url: str = "redis://127.0.0.1:6379/0",
        *,
        key_prefix: str = "",
        hash: bool = False,
        decode: Callable[[Any], Any] | None = None,
        connect_timeout_s: float = 5.0,
    ) -> None:
        if not isinstance(url, str) or not url:
            msg = f"RedisLookup needs a redis:// URL, got {url!r}"
            raise ConfigurationError(msg)
        if decode is not None and not callable(decode):
            msg = f"RedisLookup decode must be a callable or None, got {type(decode).__name__}"
            raise ConfigurationError(msg)
        self.url = url
        self.key_prefix = str(key_prefix)
        self.hash = bool(hash)
        self.decode = decode if decode is not None else (None if hash else json.loads)
        self.connect_timeout_s = float(connect_timeout_s)
        self._client: Any = None

    def describe(self) -> str:
        """``RedisLookup('<url without password>')``."""
        return f"RedisLookup({redact_dsn(self.url)!r})"

    def lineage_datasets(self) -> list[tuple[str, str]]:
        """``("redis://host:port", "<db>/<key_prefix>*")`` (no credentials)."""
        from urllib.parse import urlsplit

        u = urlsplit(self.url)
        db = u.path.lstrip("/") or "0"
        return [(f"redis://{u.hostname or 'localhost'}:{u.port or 6379}", f"{db}/{self.key_prefix}*")]

    async def open(self) -> None:
        """Create the client and ping the server."""
        try:
            import redis.asyncio as aioredis
            from redis.exceptions import RedisError
        except ImportError as exc:  # pragma: no cover - a declared dependency
            msg = f"{self.describe()} needs redis-py: pip install redis"
            raise ConfigurationError(msg) from exc
        self._client = aioredis.Redis.from_url(
            self.url, decode_responses=True, socket_connect_timeout=self.connect_timeout_s
        )
        try:
            await self._client.ping()
        except (RedisError, OSError) as exc:
            msg = f"{self.describe()}: cannot connect: {exc}; start the server, or fix the URL"
            raise LookupStoreError(msg) from exc

    async def fetch(self, keys: list[Any]) -> dict[Any, Any]:
        """One ``MGET`` (or one pipeline of ``HGETALL``) for ``keys``."""
        from redis.exceptions import RedisError

        client = self._client
        assert client is not None
        names = [self.key_prefix + str(k) for k in keys]
        try:
            if self.hash:
                pipe = client.pipeline(transaction=False)
                for name in names:
                    pipe.hgetall(name)
                values = await pipe.execute()
            else:
                values = await client.mget(names)
        except RedisError as exc:
            msg = f"{self.describe()}: {'HGETALL' if self.hash else 'MGET'} failed: {exc}"
            raise LookupStoreError(msg) from exc
        decode = self.decode
        rows: dict[Any, Any] = {}
        for k, name, v in zip(keys, names, values, strict=True):
            if v is None or (self.hash and not v):
                continue
            if decode is None:
                rows[k] = v
                continue
            try:
                rows[k] = decode(v)
            except Exception as exc:
                msg = (
                    f"{self.describe()}: the value of {name!r} cannot be decoded "
                    f"({type(exc).__name__}: {exc}); "
                    f"store rows as {'hashes' if self.hash else 'JSON strings'} or pass decode=..."
                )
                raise LookupStoreError(msg) from exc
        return rows

    async def close(self) -> None:
        """Close the client's connections."""
        client, self._client = self._client, None
        if client is not None:
            await client.aclose()
