"""The order-enrichment example runs end to end: on SQLite (default) and on a real PostgreSQL."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from streamcore.testing.servers import PostgresServer

EXAMPLE = Path(__file__).resolve().parents[2] / "examples" / "order_enrichment.py"


def _run(*args: str) -> str:
    proc = subprocess.run(
        [sys.executable, str(EXAMPLE), "--orders", "5000", *args], capture_output=True, text=True, timeout=120
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    return proc.stdout


def _check(out: str, store: str) -> None:
    assert "Beijing" in out and "orders/s" in out
    summary = next(line for line in out.splitlines() if line.startswith("... "))
    known = int(summary.split(";")[1].split()[0])
    assert 4_900 < known < 5_000  # a few orders name shops past the dimension table
    assert f"dim-shop: {store}(" in out and f"dim-city: {store}(" in out


def test_order_enrichment_on_sqlite() -> None:
    _check(_run(), "SQLiteLookup")


@pytest.mark.servers
def test_order_enrichment_on_postgres(postgres_server: PostgresServer) -> None:
    _check(_run("--postgres", postgres_server.dsn), "PostgresLookup")
