"""A SQL job restored from any of its checkpoints continues exactly as the uninterrupted run."""

from __future__ import annotations

from pathlib import Path

import pytest

import streamcore as sc
from streamcore.checkpoint.storage import CheckpointStorage
from tests.checkpoint.jobs import RecordingSink, make_env, sink_image
from tests.sql.oracle import events_table

QUERIES = {
    "window": "SELECT k, window_start, COUNT(*), SUM(x), COUNT(DISTINCT u), APPROX_COUNT_DISTINCT(u) "
    "FROM TABLE(HOP(TABLE ev, DESCRIPTOR(ts), INTERVAL '2' SECOND, INTERVAL '4' SECOND)) "
    "GROUP BY k, window_start, window_end",
    "group_by": "SELECT k, COUNT(*), MAX(x), COUNT(DISTINCT u) FROM ev WHERE x > -40 GROUP BY k",
    "interval_join": "SELECT a.k, a.x, b.x FROM ev AS a, ev AS b WHERE a.k = b.k AND a.u = b.u "
    "AND a.ts BETWEEN b.ts - INTERVAL '1' SECOND AND b.ts",
    "top_n": "SELECT k, x, rn FROM (SELECT *, ROW_NUMBER() OVER (PARTITION BY k ORDER BY x DESC) AS rn "
    "FROM ev) WHERE rn <= 2",
}
ROWS = [(i % 3, "abcde"[i * 7 % 5], (i * 37) % 100 - 50, i * 300 - (i % 4) * 500) for i in range(2, 160)]


@pytest.mark.parametrize("backend", ["heap", "rocksdb"])
@pytest.mark.parametrize("query", sorted(QUERIES))
def test_restore_from_every_checkpoint_equals_uninterrupted(tmp_path: Path, backend: str, query: str) -> None:
    sql = QUERIES[query]
    full, result = _run_any(tmp_path, backend, sql, 40)
    assert result.checkpoints, "the job took no checkpoint"
    reference, _ = _run_any(tmp_path / "plain", backend, sql, None)
    assert full == reference
    stored = [c for c in CheckpointStorage(tmp_path / "chk").list() if c.complete]
    for c in stored[:: max(1, len(stored) // 4)]:
        emitted = sink_image(c.path)["emitted"]
        rest, _ = _run_any(tmp_path, backend, sql, None, restore_from=str(c.path))
        assert full[:emitted] + rest == full, f"restore from {c.path.name} diverged"


def _run_any(tmp: Path, backend: str, query: str, every: int | None, **kw):
    env = make_env(tmp, backend, every=every, batch_size=9)
    t_env = sc.StreamTableEnvironment.create(env)
    events_table(t_env, ROWS)
    sink = RecordingSink()
    t_env.to_changelog_stream(t_env.sql_query(query)).sink_to(sink).uid("out")
    result = env.execute("sql-job", **kw)
    return sink.results, result
