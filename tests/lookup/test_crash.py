"""SIGKILL during lookups with checkpointing: every order is enriched exactly once in the committed output."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.lookup.crash_lookup_job import run_crash_test


@pytest.mark.slow
@pytest.mark.parametrize("backend", ["rocksdb", "heap"])
def test_sigkill_during_lookups_loses_and_duplicates_nothing(tmp_path: Path, backend: str) -> None:
    report = run_crash_test(tmp_path, kills=4, backend=backend, seed=11)
    assert report["kills"] == 4, report
    assert report["lost"] == 0 and report["duplicated"] == 0 and report["wrong"] == 0, report
    assert report["lines"] == 6_000, report
