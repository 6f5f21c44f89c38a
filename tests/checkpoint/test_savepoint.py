"""Savepoints: self-contained, canonical, restorable into either backend."""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

import pytest

import streamcore as sc
from streamcore.checkpoint.savepoint import write_savepoint
from streamcore.checkpoint.storage import read_metadata
from streamcore.time import WatermarkStrategy
from tests.checkpoint.jobs import CountFn, RecordingSink, TimerFn, sink_image

N = 1500


def _env(
    tmp: Path, backend: str, sink: RecordingSink, fn: Any, *, slow: bool, checkpoints: bool
) -> sc.StreamEnvironment:
    env = sc.StreamEnvironment(state_backend=backend, state_dir=tmp / f"state-{backend}", batch_size=10)
    if checkpoints:
        env.enable_checkpointing(tmp / "chk", every_records=200)

    def pace(v: int) -> int:
        if slow:
            time.sleep(0.0002)
        return v

    (
        env.from_generator(
            lambda s, o: o + (o * 13) % 3,
            count=N,
            timestamp=lambda v: v,
            watermarks=WatermarkStrategy.for_bounded_out_of_orderness(3),
            name="numbers",
        )
        .map(pace)
        .uid("pace")
        .key_by(lambda v: v % 11)
        .process(fn)
        .uid("fn")
        .sink_to(sink)
        .uid("out")
    )
    return env


def _wait_for_output(sink: RecordingSink, n: int = 20, timeout: float = 30.0) -> None:
    deadline = time.monotonic() + timeout
    while len(sink.results) < n and time.monotonic() < deadline:
        time.sleep(0.005)


@pytest.mark.parametrize(
    ("source", "target"), [("heap", "rocksdb"), ("rocksdb", "heap"), ("rocksdb", "rocksdb")]
)
@pytest.mark.parametrize("fn_type", [CountFn, TimerFn])
def test_savepoint_restores_into_either_backend(
    tmp_path: Path, source: str, target: str, fn_type: type
) -> None:
    sink = RecordingSink()
    handle = _env(tmp_path, source, sink, fn_type(), slow=True, checkpoints=True).execute_async("sp-job")
    _wait_for_output(sink)
    path = Path(handle.trigger_savepoint(tmp_path / "savepoints"))
    handle.wait(60)
    full = sink.results
    meta = read_metadata(path)
    assert meta["kind"] == "savepoint" and meta["canonical"] and meta["native"] is None
    assert not list(path.glob("db"))
    emitted = sink_image(path)["emitted"]
    assert 0 < emitted < len(full)
    rest = RecordingSink()
    _env(tmp_path, target, rest, fn_type(), slow=False, checkpoints=False).execute(
        "sp-job", restore_from=str(path)
    )
    assert full[:emitted] + rest.results == full


def test_stop_with_savepoint_and_resume(tmp_path: Path) -> None:
    sink = RecordingSink()
    handle = _env(tmp_path, "rocksdb", sink, CountFn(), slow=True, checkpoints=True).execute_async("stopper")
    _wait_for_output(sink)
    result = handle.stop(savepoint=True)
    assert result.stopped and result.savepoint is not None
    assert Path(result.savepoint).parent == tmp_path / "chk" / "savepoints"
    rest = RecordingSink()
    _env(tmp_path, "heap", rest, CountFn(), slow=False, checkpoints=False).execute(
        "another-name", restore_from=result.savepoint
    )
    whole = RecordingSink()
    _env(tmp_path / "whole", "heap", whole, CountFn(), slow=False, checkpoints=False).execute("whole")
    assert sink.results + rest.results == whole.results


def test_savepoint_without_checkpointing_and_unique_names(tmp_path: Path) -> None:
    sink = RecordingSink()
    env = _env(tmp_path, "heap", sink, CountFn(), slow=True, checkpoints=False)
    handle = env.execute_async("no-checkpoints")
    first = handle.trigger_savepoint(tmp_path / "sp")
    second = handle.trigger_savepoint(tmp_path / "sp")
    handle.wait(60)
    assert first != second and Path(first).name == "sp-1" and Path(second).name == "sp-2"
    assert not [p for p in (tmp_path / "sp").iterdir() if p.name.startswith(".")]


def test_failed_savepoint_leaves_nothing(tmp_path: Path) -> None:
    from streamcore.errors import CheckpointError

    class Executor:
        job_name = "x"

        def snapshot(self, *_a: Any, **_k: Any) -> Any:
            raise OSError("disk full")

    with pytest.raises(CheckpointError, match="disk full"):
        write_savepoint(Executor(), tmp_path, savepoint_id=3)
    assert list(tmp_path.iterdir()) == []
