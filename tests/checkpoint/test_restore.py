"""Restore equals an uninterrupted run: from every checkpoint, random jobs and inputs, both backends."""

from __future__ import annotations

import tempfile
from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st

from streamcore.checkpoint.storage import CheckpointStorage
from tests.checkpoint.jobs import RecordingSink, build_job, make_env, sink_image

BACKENDS = ["heap", "rocksdb"]
SHAPES = ["count", "reduce", "timers", "join"]


def _run(
    tmp: Path, backend: str, data: list[int], shape: str, keys: int, batch: int, every: int | None, **kw
):
    env = make_env(tmp, backend, every=every, batch_size=batch)
    sink = RecordingSink()
    build_job(env, data, shape, keys, sink)
    result = env.execute("test-job", **kw)
    return sink.results, result


def _check_all_restores(tmp: Path, backend: str, data, shape, keys, batch, every, pick=None) -> int:
    full, result = _run(tmp, backend, data, shape, keys, batch, every)
    assert result.checkpoints, "the job took no checkpoint"
    reference, _ = _run(tmp / "plain", backend, data, shape, keys, batch, None)
    assert full == reference, "checkpointing changed the output"
    stored = [c for c in CheckpointStorage(tmp / "chk").list() if c.complete]
    assert [c.id for c in stored] == result.checkpoints
    chosen = stored if pick is None else [stored[pick % len(stored)]]
    for c in chosen:
        emitted = sink_image(c.path)["emitted"]
        rest, _ = _run(tmp, backend, data, shape, keys, batch, None, restore_from=str(c.path))
        assert full[:emitted] + rest == full, f"restore from {c.path.name} diverged"
    return len(chosen)


@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize("shape", SHAPES)
def test_restore_from_every_checkpoint_equals_uninterrupted(tmp_path: Path, backend: str, shape: str) -> None:
    data = [(i * 7919) % 1000 for i in range(400)]
    if shape in ("timers", "join"):
        data = [i + (i * 31) % 4 for i in range(400)]  # out of order within the watermark bound
    n = _check_all_restores(tmp_path, backend, data, shape, keys=7, batch=16, every=50)
    assert n >= 6


@given(
    data=st.lists(st.integers(0, 500), max_size=150),
    shape=st.sampled_from(SHAPES),
    keys=st.integers(1, 9),
    batch=st.integers(1, 17),
    every=st.integers(1, 60),
    backend=st.sampled_from(BACKENDS),
    pick=st.integers(0, 1000),
)
def test_random_job_restored_at_random_checkpoint_equals_uninterrupted(
    data: list[int], shape: str, keys: int, batch: int, every: int, backend: str, pick: int
) -> None:
    with tempfile.TemporaryDirectory() as tmp:
        _check_all_restores(Path(tmp), backend, data, shape, keys, batch, every, pick=pick)


@pytest.mark.parametrize("backend", BACKENDS)
def test_latest_picks_newest_and_starts_fresh_without_checkpoints(tmp_path: Path, backend: str) -> None:
    data = list(range(100))
    _, result = _run(tmp_path, backend, data, "count", 3, 10, 30, restore_from="latest")
    assert result.checkpoints[0] == 1  # a fresh start
    again, result2 = _run(tmp_path, backend, data, "count", 3, 10, 30, restore_from="latest")
    assert again == []  # restored from the final checkpoint: nothing left to read
    assert result2.checkpoints == [result.checkpoints[-1] + 1]


@pytest.mark.parametrize("backend", BACKENDS)
def test_restored_join_cleans_up_what_it_buffered_before_the_checkpoint(tmp_path: Path, backend: str) -> None:
    """The expiry index is rebuilt from the restored buffers: nothing buffered before is left behind."""
    from streamcore.checkpoint.reader import read_operator_image

    data = [i + (i * 31) % 4 for i in range(400)]
    _run(tmp_path, backend, data, "join", 7, 16, 50)
    stored = [c for c in CheckpointStorage(tmp_path / "chk").list() if c.complete]
    middle = stored[len(stored) // 2]
    before = read_operator_image(middle.path, "join")["keyed"]["time_ordered"]
    assert sum(len(rows) for rows in before.values()) > 0, "the checkpoint should hold buffered elements"
    again = tmp_path / "again"
    env = make_env(again, backend, every=10_000, batch_size=16)
    build_job(env, data, "join", 7, RecordingSink())
    result = env.execute("test-job", restore_from=str(middle.path))
    final = [c for c in CheckpointStorage(again / "chk").list() if c.complete][-1]
    after = read_operator_image(final.path, "join")["keyed"]["time_ordered"]
    assert after == {"left": [], "right": []}
    removed = result.metrics["join"]["removed_per_side"]
    assert sum(removed) >= sum(len(rows) for rows in before.values())
