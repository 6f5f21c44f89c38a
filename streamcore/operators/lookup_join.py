"""Lookup joins: enrich each element with the row of its key from a dimension store.

A :class:`LookupJoinOperator` is an :class:`~streamcore.operators.async_wait.AsyncWaitOperator`
whose requests are batched key loads instead of one call per element:

1. For each batch, the key function gives every element's key (on the job thread).
2. Cache hits (:class:`~streamcore.lookup.cache.LookupCacheTable`) are answered at once,
   without a round trip; they still leave in the order the mode demands (an ordered join
   emits a hit only after every earlier element).
3. The other keys are deduplicated, also against loads already in flight (an element
   whose key is being loaded waits for that load), and the new ones go to the lookup in
   chunks of ``lookup.max_batch_keys``: one query per round trip.
4. A completed load (on the job thread) fills the cache and answers every element
   waiting for its keys: ``join(value, row)`` per element; a key without a row is dropped
   (``how="inner"``) or joined with ``None`` (``how="left"``).

Order. With ``ordered=True`` results leave in input order (the async operator's ordered
queue). ``DataStream.lookup_join`` uses it only for ``key_by_lookup_key=False``; keyed by
the lookup key (the default) it uses the unordered queue, which for a lookup join keeps
the input order *per key* (Flink's key-ordered async lookup): an element whose key has a
load in flight waits for that load and is answered after the earlier elements of its key
in arrival order, and a hit can only follow the load that filled the cache, so elements
of one key never pass each other, while a hit does not wait for another key's load.
Either way no result crosses a watermark.

Checkpoints, watermarks, timeouts and retries are the async operator's: the elements
still in the operator are stored and loaded again after a restore (the cache is not
stored, and a restore starts with it empty). A load that times out on every attempt fails the job with
:class:`~streamcore.errors.AsyncTimeoutError`; one that fails (the store is down, the
query is wrong, the result has the wrong shape) with
:class:`~streamcore.errors.LookupStoreError`. Both name the operator and the store.
Counters (``metrics()["lookup"]``): cache hits and misses, misses that joined a load
already in flight for their key (``coalesced``), loads (round trips), load time, keys
asked for and rows returned.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Coroutine, Mapping
from typing import Any

from streamcore.errors import (
    AsyncTimeoutError,
    ConfigurationError,
    KeySelectorError,
    LookupStoreError,
    StreamcoreError,
)
from streamcore.functions import AsyncRetryStrategy, function_name
from streamcore.lookup.base import Lookup
from streamcore.lookup.cache import MISS, LookupCache
from streamcore.operators.async_wait import DONE, TIMED_OUT, AsyncWaitOperator, _Element, check_async_options
from streamcore.operators.base import user_error
from streamcore.operators.event_loop import EventLoopThread

__all__ = ["HOW", "LookupJoinOperator", "lookup_join_factory"]

#: the join kinds.
HOW = ("inner", "left")


class LookupJoinOperator(AsyncWaitOperator):
    """Joins each element with ``lookup``'s row for ``key_fn(element)``; see the module docstring.

    Args:
        lookup: the dimension store.
        key_fn: the lookup key of an element (hashable).
        join: ``join(value, row) -> output``; ``row`` is ``None`` for a left join's misses.
        how: ``"inner"`` or ``"left"``.
        cache: rows to keep between loads, or ``None``.
    """

    invoke_what = "lookup"

    def __init__(
        self,
        name: str,
        uid: str,
        lookup: Lookup,
        key_fn: Callable[[Any], Any],
        join: Callable[[Any, Any], Any],
        *,
        how: str = "inner",
        cache: LookupCache | None = None,
        ordered: bool = True,
        timeout_ms: int = 30_000,
        capacity: int = 10_000,
        retry: AsyncRetryStrategy | None = None,
    ) -> None:
        super().__init__(
            name, uid, lookup, ordered=ordered, timeout_ms=timeout_ms, capacity=capacity, retry=retry
        )
        if how not in HOW:
            msg = f"lookup join {uid!r}: how must be one of {HOW}, got {how!r}"
            raise ConfigurationError(msg)
        self.lookup = lookup
        self.key_fn = key_fn
        self.join = join
        self.how = how
        self.cache_config = cache
        self._cache = cache.build() if cache is not None else None
        self._waiting: dict[Any, list[_Element]] = {}
        self._clock: Any = None
        self.loads = 0
        self.load_time_s = 0.0
        self.keys_loaded = 0
        self.rows_loaded = 0
        self.misses = 0
        self.coalesced = 0

    def setup(self, runtime: Any) -> None:
        """Keep the clock (cache expiry is in processing time)."""
        super().setup(runtime)
        self._clock = runtime.clock

    def _open_coro(self) -> Coroutine[Any, Any, Any]:
        return self.lookup.open()

    def _close_coro(self) -> Coroutine[Any, Any, Any]:
        return self.lookup.close()

    def _run_lifecycle(
        self, loop: EventLoopThread, coro: Callable[[], Coroutine[Any, Any, Any]], what: str
    ) -> None:
        try:
            super()._run_lifecycle(loop, coro, what)
        except StreamcoreError:
            raise
        except Exception as exc:  # a custom lookup's own exception (user_error named it as a function)
            where = self.lookup.describe()
            msg = f"operator {self.uid!r}: {what} of {where} failed: {type(exc).__name__}: {exc}"
            raise LookupStoreError(msg) from exc

    # -- requests ---------------------------------------------------------------------------
    def _submit(self, entries: list[_Element]) -> None:
        """Answer cache hits now; load the other keys, deduplicated, a chunk per round trip."""
        kf = self.key_fn
        try:
            keys = [kf(e.value) for e in entries]
        except StreamcoreError:
            raise
        except Exception as exc:
            msg = (
                f"lookup key function {function_name(kf)} of operator {self.uid!r} raised "
                f"{type(exc).__name__}: {exc}; make it return the lookup key of every element"
            )
            raise KeySelectorError(msg) from exc
        cache = self._cache
        waiting = self._waiting
        new: list[Any] = []
        if cache is not None:
            now = self._clock.now_ms()
            get = cache.get
            resolve = self._resolve
            for e, k in zip(entries, keys, strict=True):
                try:
                    row = get(k, now)
                except TypeError as exc:
                    raise self._unhashable(k) from exc
                if row is not MISS:
                    resolve(e, row)
                    continue
                w = waiting.get(k)
                if w is None:
                    waiting[k] = [e]
                    new.append(k)
                else:
                    w.append(e)
                    self.coalesced += 1
        else:
            for e, k in zip(entries, keys, strict=True):
                try:
                    w = waiting.get(k)
                except TypeError as exc:
                    raise self._unhashable(k) from exc
                if w is None:
                    waiting[k] = [e]
                    new.append(k)
                else:
                    w.append(e)
                    self.coalesced += 1
            self.misses += len(entries)
        if new:
            size = self.lookup.max_batch_keys
            chunks = [new[i : i + size] for i in range(0, len(new), size)]
            self.requests += len(chunks)
            assert self._loop is not None
            self._loop.post(self._start_loads, chunks)

    def _unhashable(self, key: Any) -> KeySelectorError:
        msg = (
            f"lookup key function {function_name(self.key_fn)} of operator {self.uid!r} returned an "
            f"unhashable {type(key).__name__} ({key!r:.80}); return an int, str or tuple"
        )
        return KeySelectorError(msg)

    def _start_loads(self, chunks: list[list[Any]]) -> None:
        import asyncio

        loop = asyncio.get_running_loop()
        tasks = self._tasks
        for keys in chunks:
            t = loop.create_task(self._load(keys))
            tasks.add(t)
            t.add_done_callback(tasks.discard)

    async def _load(self, keys: list[Any]) -> None:
        started = time.perf_counter()
        fetch = self.lookup.fetch
        outcome = await self._attempts(lambda: fetch(keys))
        self._completions.put((self._load_done, keys, outcome, time.perf_counter() - started))

    # -- completions (job thread) ----------------------------------------------------------------
    def _load_done(self, keys: list[Any], outcome: tuple[int, Any, int], seconds: float) -> None:
        kind, rows, attempts = outcome
        self.loads += 1
        self.load_time_s += seconds
        self.keys_loaded += len(keys)
        where = self.lookup.describe()
        if kind == TIMED_OUT:
            self.timeouts += 1
            msg = (
                f"operator {self.uid!r}: a lookup of {len(keys)} key(s) in {where} timed out on all "
                f"{attempts} attempt(s) of {self.timeout_ms} ms; check the store, raise timeout_ms, or retry "
                "with an AsyncRetryStrategy (restoring the latest checkpoint issues in-flight elements again)"
            )
            raise AsyncTimeoutError(msg)
        if kind != DONE:
            raise self._store_error(rows, attempts)
        if not isinstance(rows, Mapping):
            msg = (
                f"operator {self.uid!r}: {where}.fetch returned a {type(rows).__name__}, not a mapping "
                "{key: row} of the keys it was asked for"
            )
            raise LookupStoreError(msg)
        asked = set(keys)
        if not rows.keys() <= asked:
            extra = [k for k in rows if k not in asked][:5]
            msg = (
                f"operator {self.uid!r}: {where}.fetch returned rows for keys it was not asked for "
                f"({extra!r}); return only rows of the requested keys"
            )
            raise LookupStoreError(msg)
        self.rows_loaded += len(rows)
        cache = self._cache
        now = self._clock.now_ms() if cache is not None else 0
        waiting = self._waiting
        resolve = self._resolve
        get = rows.get
        for k in keys:
            row = get(k)
            if cache is not None:
                cache.put(k, row, now)
            for e in waiting.pop(k):
                resolve(e, row)

    def _store_error(self, exc: BaseException, attempts: int) -> StreamcoreError:
        tries = f" (attempt {attempts} of {self.retry.max_attempts})" if attempts > 1 else ""
        if isinstance(exc, StreamcoreError):
            err = type(exc)(f"operator {self.uid!r}: {exc}{tries}")
        else:
            err = LookupStoreError(
                f"operator {self.uid!r}: a lookup in {self.lookup.describe()} raised {type(exc).__name__}: "
                f"{exc}{tries}; check the store, or retry with an AsyncRetryStrategy"
            )
        err.__cause__ = exc
        return err

    def _resolve(self, e: _Element, row: Any) -> None:
        if row is None and self.how == "inner":
            e.outputs = []
        else:
            try:
                e.outputs = [self.join(e.value, row)]
            except StreamcoreError:
                raise
            except Exception as exc:
                raise user_error(self, self.join, "join function", exc) from exc
        self._queue.complete(e)

    # -- observability ---------------------------------------------------------------------------
    def lineage_datasets(self) -> list[tuple[str, str]]:
        """The dimension tables the join reads (``streamcore.lineage.datasets`` asks for them)."""
        return list(self.lookup.lineage_datasets())

    def metrics(self) -> dict[str, Any]:
        """The async counters plus cache hits/misses, loads, load time, keys and rows."""
        m = super().metrics()
        cache = self._cache
        hits = cache.hits if cache is not None else 0
        misses = cache.misses if cache is not None else self.misses
        m["lookup"] = {
            "store": self.lookup.describe(),
            "hits": hits,
            "misses": misses,
            "hit_ratio": hits / (hits + misses) if hits + misses else 0.0,
            "coalesced": self.coalesced,
            "loads": self.loads,
            "load_time_ms": self.load_time_s * 1000,
            "keys_loaded": self.keys_loaded,
            "rows": self.rows_loaded,
            "cache": cache.metrics() if cache is not None else None,
        }
        return m


def lookup_join_factory(
    lookup: Any,
    on: Any,
    *,
    cache: Any,
    key_by_lookup_key: Any,
    how: Any,
    join: Any,
    timeout_ms: Any,
    capacity: Any,
    retry: Any,
) -> Callable[[str, str], LookupJoinOperator]:
    """Validate the arguments of ``DataStream.lookup_join``; the factory of the operator.

    Raises:
        ConfigurationError: a bad lookup, key function, cache, join kind, join function or option.
    """
    if not isinstance(lookup, Lookup):
        msg = (
            "lookup_join() takes a Lookup (SQLiteLookup, PostgresLookup, RedisLookup or a subclass of "
            f"streamcore.Lookup), got {type(lookup).__name__}"
        )
        raise ConfigurationError(msg)
    if not callable(on):
        msg = f"lookup_join(on=...) takes a callable element -> lookup key, got {type(on).__name__}"
        raise ConfigurationError(msg)
    if cache is not None and not isinstance(cache, LookupCache):
        msg = f"lookup_join(cache=...) takes a LookupCache or None, got {type(cache).__name__}"
        raise ConfigurationError(msg)
    if how not in HOW:
        msg = f"lookup_join(how=...) takes one of {HOW}, got {how!r}"
        raise ConfigurationError(msg)
    if not isinstance(key_by_lookup_key, bool):
        msg = f"lookup_join(key_by_lookup_key=...) takes a bool, got {key_by_lookup_key!r}"
        raise ConfigurationError(msg)
    if join is None:
        from streamcore.lookup.base import merge_row

        join = merge_row
    elif not callable(join):
        msg = f"lookup_join(join=...) takes a callable (value, row) -> output, got {type(join).__name__}"
        raise ConfigurationError(msg)
    check_async_options(timeout_ms, capacity, retry, "lookup_join()")
    joiner = join

    def factory(name: str, uid: str) -> LookupJoinOperator:
        return LookupJoinOperator(
            name,
            uid,
            lookup,
            on,
            joiner,
            how=how,
            cache=cache,
            ordered=not key_by_lookup_key,
            timeout_ms=timeout_ms,
            capacity=capacity,
            retry=retry,
        )

    return factory
