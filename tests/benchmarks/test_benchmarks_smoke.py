"""Every benchmark runs in --quick mode and prints the JSON keys its issue names.

Smoke tests only: they check that the scripts run and report, never how fast.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

BENCH = Path(__file__).resolve().parents[2] / "benchmarks"

REQUIRED = {
    "throughput.py": {
        "stateless_rps",
        "stateless_floor_rps",
        "stateless_ratio",
        "keyed_rps",
        "keyed_floor_rps",
        "keyed_ratio",
    },
    "state_backends.py": {"heap_rmw_rps", "rocksdb_rmw_rps", "raw_rocksdb_floor_rps", "rocksdb_rmw_ratio"},
    "prefix_vs_range.py": {"uniform", "hot"},
    "join_throughput.py": {"heap_rps", "rocksdb_rps", "floor_rps", "heap_ratio", "rocksdb_ratio", "count_ok"},
    "checkpoints.py": {
        "incremental_bytes_ratio",
        "pause_ms_p50",
        "pause_ms_p99",
        "restore_s",
        "kills",
        "lost",
        "duplicated",
    },
    "catch_up.py": {"peak_state_ratio", "catch_up_time_ratio"},
    "windows.py": {
        "tumbling_heap_ratio",
        "tumbling_rocksdb_ratio",
        "hll_rel_error",
        "bloom_fp_rate",
        "sliding_heap_ratio",
        "sliding_rocksdb_ratio",
        "session_heap_rps",
        "session_rocksdb_rps",
        "session_heap_ratio",
        "peak_rss_mb",
    },
    "kafka_throughput.py": {"ratio_to_raw"},
    "scale_out.py": {
        "rps_1",
        "rps_2",
        "speedup_2_workers",
        "rebalance_pause_ms_p50",
        "task_restore_s_p50",
        "lost",
        "duplicated",
    },
    "lookup_join.py": {
        "sync_rps",
        "async_rps",
        "async_cached_rps",
        "speedup_async",
        "speedup_cached",
        "cache_hit_ratio",
        "p99_latency_ms",
        "peak_rss_mb",
    },
    "sql_vs_datastream.py": {"window_sql_ratio", "join_sql_ratio", "results_match", "peak_rss_mb"},
}

PRESENT = sorted(name for name in REQUIRED if (BENCH / name).exists())


@pytest.mark.bench
@pytest.mark.parametrize("script", PRESENT)
def test_benchmark_quick_mode(script, tmp_path):
    proc = subprocess.run(
        [sys.executable, str(BENCH / script), "--quick", "--json"],
        capture_output=True,
        text=True,
        timeout=300,
        cwd=tmp_path,
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    last = proc.stdout.strip().splitlines()[-1]
    figures = json.loads(last)
    missing = REQUIRED[script] - set(figures)
    assert not missing, f"{script} --json lacks {sorted(missing)}"
    # Correctness figures must hold in the smoke run too (speed is for the full runs to show).
    for key in ("lost", "duplicated"):
        if key in figures:
            assert figures[key] == 0, f"{script}: {key} = {figures[key]}"
    if "results_match" in figures:
        assert figures["results_match"] is True, f"{script}: results differ"


def test_the_core_benchmarks_exist():
    assert {"throughput.py", "state_backends.py"} <= set(PRESENT)
