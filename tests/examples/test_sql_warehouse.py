"""The SQL warehouse example runs end to end and its layers agree with each other."""

from __future__ import annotations

import subprocess
import sys
from collections import defaultdict
from pathlib import Path

import pytest

EXAMPLE = Path(__file__).resolve().parents[2] / "examples" / "sql_warehouse.py"


@pytest.mark.parametrize("backend", ["heap", "rocksdb"])
def test_sql_warehouse(backend: str) -> None:
    proc = subprocess.run(
        [sys.executable, str(EXAMPLE), "--orders", "4000", "--state-backend", backend],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    lines = proc.stdout.splitlines()
    dws = [line.removeprefix("dws> +I(").rstrip(")").split(", ") for line in lines if line.startswith("dws>")]
    app = [line.removeprefix("app> +I(").rstrip(")").split(", ") for line in lines if line.startswith("app>")]
    assert {row[0] for row in dws} == {"Beijing", "Shanghai", "Chengdu", "Shenzhen"}
    for _city, _start, orders, gmv, users, users_hll in dws:
        assert 0 < int(users) <= int(orders) and int(gmv) > 0
        assert abs(int(users_hll) - int(users)) <= max(3, 0.05 * int(users))
    ranks = defaultdict(list)
    for city, start, _shop, gmv, rn in app:
        ranks[city, start].append((int(rn), int(gmv)))
    assert set(ranks) == {(row[0], row[1]) for row in dws}
    for ranked in ranks.values():
        assert [r for r, _ in sorted(ranked)] == list(range(1, len(ranked) + 1)) and len(ranked) <= 3
        gmvs = [g for _, g in sorted(ranked)]
        assert gmvs == sorted(gmvs, reverse=True)
    assert lines[-1].startswith("... 4000 orders through ODS -> DWD -> DWS -> APP")
