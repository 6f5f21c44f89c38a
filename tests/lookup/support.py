"""Shared pieces of the lookup tests: dimension tables, a slowed-down lookup, the dict-join oracle."""

from __future__ import annotations

import asyncio
import random
import sqlite3
from pathlib import Path
from typing import Any

import streamcore as sc


def shop_row(shop_id: int) -> dict[str, Any]:
    """The dimension row of ``shop_id`` (every store holds these)."""
    return {"shop_id": shop_id, "city": f"city-{shop_id % 7}", "tier": shop_id % 3}


def make_sqlite(path: Path, shop_ids: list[int]) -> Path:
    """A SQLite database with table ``shops`` holding ``shop_row`` of each id."""
    with sqlite3.connect(path) as db:
        db.execute("CREATE TABLE shops (shop_id INTEGER PRIMARY KEY, city TEXT NOT NULL, tier INTEGER)")
        db.executemany("INSERT INTO shops VALUES (:shop_id, :city, :tier)", [shop_row(i) for i in shop_ids])
    db.close()
    return path


def order(i: int, shop_id: int) -> dict[str, Any]:
    """Order ``i`` of shop ``shop_id`` at event time ``i * 10``."""
    return {"order_id": i, "shop_id": shop_id, "ts": i * 10, "amount": (i * 37) % 100}


def oracle(orders: list[dict[str, Any]], dims: dict[int, dict[str, Any]], how: str) -> list[dict[str, Any]]:
    """The brute-force dict join, in input order."""
    out = []
    for o in orders:
        row = dims.get(o["shop_id"])
        if row is not None:
            out.append({**o, **row})
        elif how == "left":
            out.append(o)
    return out


class Slowed(sc.Lookup):
    """Wraps a lookup: each fetch sleeps a random delay first, and every fetch's keys are recorded."""

    def __init__(self, inner: sc.Lookup, seed: int = 0, max_delay_s: float = 0.004) -> None:
        self.inner = inner
        self.seed = seed
        self.max_delay_s = max_delay_s
        self.max_batch_keys = inner.max_batch_keys
        self.fetches: list[list[Any]] = []

    async def open(self) -> None:
        self.rng = random.Random(self.seed)
        await self.inner.open()

    async def fetch(self, keys: list[Any]) -> Any:
        self.fetches.append(list(keys))
        await asyncio.sleep(self.rng.uniform(0, self.max_delay_s))
        return await self.inner.fetch(keys)

    async def close(self) -> None:
        await self.inner.close()

    def describe(self) -> str:
        return f"Slowed({self.inner.describe()})"
