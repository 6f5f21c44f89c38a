"""The coordinator: triggers, ids, failures and their tolerance, cleanup, metrics; the config."""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path
from typing import Any

import pytest

import streamcore as sc
from streamcore.checkpoint import coordinator as coordinator_module
from streamcore.checkpoint.config import CheckpointConfig
from streamcore.checkpoint.storage import CheckpointStorage
from streamcore.errors import CheckpointError, ConfigurationError
from tests.checkpoint.jobs import CountFn, RecordingSink


def _env(
    tmp: Path, backend: str = "rocksdb", *, asynchronous: bool = False, **cfg: Any
) -> sc.StreamEnvironment:
    env = sc.StreamEnvironment(state_backend=backend, state_dir=tmp / "state", batch_size=10)
    env.enable_checkpointing(tmp / "chk", **cfg)
    env.checkpoint_config = replace(env.checkpoint_config, asynchronous=asynchronous)
    env.from_collection(list(range(200)), name="numbers").key_by(lambda v: v % 3).process(CountFn()).uid(
        "count"
    ).sink_to(RecordingSink()).uid("out")
    return env


def _failing_completion(monkeypatch: pytest.MonkeyPatch, fail: set[int]) -> list[int]:
    real = coordinator_module.complete_snapshot
    calls: list[int] = []

    def flaky(pending: Any, *args: Any, **kw: Any) -> Any:
        calls.append(pending.checkpoint_id)
        if pending.checkpoint_id in fail:
            # Fail half-way: some files already written and shared files added.
            real_result = real(pending, *args, **kw)
            (pending.directory / "_metadata").unlink()
            msg = f"injected failure of checkpoint {pending.checkpoint_id} ({len(real_result)} keys)"
            raise OSError(msg)
        return real(pending, *args, **kw)

    monkeypatch.setattr(coordinator_module, "complete_snapshot", flaky)
    return calls


@pytest.mark.parametrize("asynchronous", [False, True])
def test_tolerated_failures_are_cleaned_up_and_the_job_goes_on(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, asynchronous: bool
) -> None:
    _failing_completion(monkeypatch, {2, 3})
    env = _env(tmp_path, every_records=50, tolerable_failures=2, retain=10, asynchronous=asynchronous)
    result = env.execute("flaky")
    assert 2 not in result.checkpoints and 3 not in result.checkpoints and 1 in result.checkpoints
    assert result.metrics["checkpoints"]["failed"] == 2
    on_disk = [c.id for c in CheckpointStorage(tmp_path / "chk").list()]
    assert on_disk == result.checkpoints  # no partial directory left
    refs = set()
    from streamcore.checkpoint.storage import read_metadata

    for cid in on_disk:
        refs |= set(read_metadata(tmp_path / "chk" / f"chk-{cid}")["shared"])
    assert {p.name for p in (tmp_path / "chk" / "shared").iterdir()} == refs


def test_too_many_consecutive_failures_fail_the_job(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    _failing_completion(monkeypatch, {2, 3})
    env = _env(tmp_path, every_records=50, tolerable_failures=1)
    with pytest.raises(CheckpointError, match=r"checkpoint 3 .*2 consecutive failures, tolerable_failures=1"):
        env.execute("flaky")


def test_the_final_checkpoint_must_complete(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    _failing_completion(monkeypatch, {1})
    env = _env(tmp_path, every_records=10_000, tolerable_failures=5)
    with pytest.raises(CheckpointError, match="final checkpoint must complete"):
        env.execute("final")


def test_trigger_by_processing_time(tmp_path: Path) -> None:
    clock = sc.ManualClock(0)
    env = sc.StreamEnvironment(batch_size=10, clock=clock)
    env.enable_checkpointing(tmp_path / "chk", every_records=None, every_ms=100)

    def tick(v: int) -> int:
        clock.advance(7)
        return v

    env.from_collection(list(range(200))).map(tick).sink_to(RecordingSink())
    result = env.execute("timed")
    # 1400 ms of processing time in batches of 70 ms: a checkpoint every 140 ms, plus the final one.
    assert len(result.checkpoints) == 11
    assert result.checkpoints == list(range(1, len(result.checkpoints) + 1))


def test_metrics_describe_the_last_checkpoint(tmp_path: Path) -> None:
    result = _env(tmp_path, every_records=50, asynchronous=True).execute("metrics")
    m = result.metrics["checkpoints"]
    assert m["completed"] == len(result.checkpoints) and m["last_completed_id"] == result.checkpoints[-1]
    assert m["failed"] == 0 and not m["in_progress"]
    assert m["last_pause_ms"] > 0 and m["last_duration_ms"] >= m["last_pause_ms"]
    assert m["last_size_bytes"] >= m["last_incremental_bytes"] > 0
    assert m["shared_files"] >= 1
    assert [h["id"] for h in m["history"]] == result.checkpoints


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        ({"every_records": 0}, "every_records"),
        ({"every_records": None}, "needs every_records"),
        ({"every_ms": -5}, "every_ms"),
        ({"retain": 0}, "retain"),
        ({"tolerable_failures": -1}, "tolerable_failures"),
        ({"incremental": "yes"}, "incremental"),
    ],
)
def test_config_validation(kwargs: dict[str, Any], match: str) -> None:
    with pytest.raises(ConfigurationError, match=match):
        CheckpointConfig(Path("x"), **kwargs)
    env = sc.StreamEnvironment()
    with pytest.raises(ConfigurationError, match=match):
        env.enable_checkpointing("x", **kwargs)


def test_a_stopped_job_leaves_no_half_written_checkpoint(tmp_path: Path) -> None:
    import time

    env = sc.StreamEnvironment(state_backend="rocksdb", state_dir=tmp_path / "state", batch_size=10)
    env.enable_checkpointing(tmp_path / "chk", every_records=20)
    env.from_generator(lambda s, o: o, count=None).map(lambda v: (time.sleep(0.0001), v)[1]).key_by(
        lambda v: v % 7
    ).process(CountFn()).uid("count").sink_to(RecordingSink()).uid("out")
    handle = env.execute_async("stopped")
    time.sleep(0.3)
    result = handle.stop()
    stored = CheckpointStorage(tmp_path / "chk").list()
    assert stored and all(c.complete for c in stored)
    assert [c.id for c in stored] == result.checkpoints[-3:]
