"""A job of changelog operators (group aggregate -> TopN, and a regular join of the input with the
aggregate) restored from every checkpoint equals the uninterrupted run, on both backends."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

import streamcore as sc
from streamcore.aggregates import Count, Max, Sum, combine
from streamcore.changelog import Change
from streamcore.checkpoint.storage import CheckpointStorage
from tests.checkpoint.jobs import RecordingSink, make_env, sink_image
from tests.operators.changelog_support import build_changelog


def _input() -> list[Any]:
    ops = [
        ("ins", i % 7, (i * 5) % 9) if i % 3 else ("upd" if i % 2 else "del", i * 13, i % 5)
        for i in range(150)
    ]
    return build_changelog(ops)


def _run(tmp: Path, backend: str, every: int | None, **kw: Any) -> tuple[list[Any], Any]:
    env = make_env(tmp, backend, every=every, batch_size=7)
    src = env.from_collection(_input(), name="changes")
    totals = (
        src.key_by(lambda r: r[0])
        .group_aggregate(
            combine(n=Count(), total=Sum(lambda r: r[1]), top=Max(lambda r: r[1], retractable=True))
        )
        .uid("agg")
    )
    best = totals.key_by(lambda r: ()).top_n(2, lambda r: r[2], descending=True).uid("top")
    joined = src.regular_join(totals, lambda r: r[0], lambda r: r[0], "left", right_width=4).uid("join")
    sink = RecordingSink()
    best.union(joined).sink_to(sink).uid("out")
    result = env.execute("changelog-job", **kw)
    return sink.results, result


@pytest.mark.parametrize("backend", ["heap", "rocksdb"])
def test_restore_from_every_checkpoint_equals_the_uninterrupted_run(tmp_path: Path, backend: str) -> None:
    full, _ = _run(tmp_path, backend, every=40)
    reference, _ = _run(tmp_path / "plain", backend, None)
    assert full == reference and all(isinstance(c, Change) for c in full)
    sc.apply_changelog(full)  # well formed
    stored = [c for c in CheckpointStorage(tmp_path / "chk").list() if c.complete]
    assert len(stored) >= 4 and len(full) > 300, (len(stored), len(full))
    for c in stored:
        emitted = sink_image(c.path)["emitted"]
        rest, _ = _run(tmp_path, backend, None, restore_from=str(c.path))
        assert full[:emitted] + rest == full, f"restore from {c.path.name} diverged"
