"""The crash test: SIGKILL a real job process at random moments; restarts lose and duplicate nothing."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from tests.checkpoint.crash_job import run_crash_test

KILLS = int(os.environ.get("STREAMCORE_CRASH_KILLS", "20"))


@pytest.mark.slow
@pytest.mark.parametrize("backend", ["rocksdb", "heap"])
def test_sigkill_at_random_moments_loses_and_duplicates_nothing(tmp_path: Path, backend: str) -> None:
    kills = KILLS if backend == "rocksdb" else max(5, KILLS // 4)
    report = run_crash_test(tmp_path, kills=kills, backend=backend, seed=7)
    assert report["kills"] == kills, report
    assert report["kills_during_checkpoint"] >= 1, report
    assert report["lost"] == 0 and report["duplicated"] == 0, report
    assert report["lines"] == report["records"] and not report["leftover_files"], report
    assert not report["incomplete_checkpoints"] and not report["missing_shared_files"], report
    assert not report["unreferenced_shared_files"], report
