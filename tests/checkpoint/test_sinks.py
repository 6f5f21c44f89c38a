"""Exactly-once sinks: the two-phase-commit protocol and the file sink."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

import streamcore as sc
from streamcore.errors import UserFunctionError
from streamcore.sinks.file import FileSink
from streamcore.sinks.two_phase import TwoPhaseCommitSink


class LedgerSink(TwoPhaseCommitSink):
    """Transactions in memory; ``visible`` is what a reader would see."""

    def __init__(self, visible: list[Any] | None = None) -> None:
        super().__init__()
        self.visible: list[Any] = [] if visible is None else visible
        self.staged: dict[int, list[Any]] = {}
        self.log: list[str] = []
        self.n = 0

    def begin_transaction(self) -> Any:
        self.n += 1
        self.staged[self.n] = []
        self.log.append(f"begin {self.n}")
        return {"id": self.n}

    def write_transaction(self, transaction: Any, values: list[Any], timestamps: list[int] | None) -> None:
        self.staged.setdefault(transaction["id"], []).extend(values)

    def pre_commit(self, transaction: Any) -> None:
        self.log.append(f"pre_commit {transaction['id']}")

    def commit(self, transaction: Any) -> None:
        self.log.append(f"commit {transaction['id']}")
        self.visible.extend(self.staged.pop(transaction["id"], []))  # idempotent: a second pop is empty

    def abort(self, transaction: Any) -> None:
        self.log.append(f"abort {transaction['id']}")
        self.staged.pop(transaction["id"], None)


def test_commit_happens_only_when_the_covering_checkpoint_completes() -> None:
    s = LedgerSink()
    s.open("sink")
    s.write_batch([1, 2], None)
    image = s.snapshot_state(1)
    assert s.visible == [] and image["pending"] == [[1, {"id": 1}]] and image["current"] == {"id": 2}
    s.write_batch([3], None)
    s.snapshot_state(2)
    s.write_batch([4], None)
    s.notify_checkpoint_complete(1)
    assert s.visible == [1, 2]
    s.notify_checkpoint_complete(2)
    assert s.visible == [1, 2, 3]
    s.close()  # a stop: the open transaction is aborted
    assert s.log[-1] == "abort 3" and s.visible == [1, 2, 3]


def test_restore_commits_pending_idempotently_and_aborts_the_open_transaction() -> None:
    s = LedgerSink()
    s.open("sink")
    s.write_batch(["a"], None)
    image = s.snapshot_state(7)
    s.notify_checkpoint_complete(7)  # committed before the crash
    s.write_batch(["b"], None)
    image = s.snapshot_state(8)  # pending: the "b" transaction; killed before completion is noticed
    restored = LedgerSink(s.visible)
    restored.staged = s.staged  # the durable staging area survives the crash
    restored.restore_state(image)
    assert restored.visible == ["a", "b"]
    restored.restore_state(image)  # a second restore commits nothing twice
    assert restored.visible == ["a", "b"]
    assert "abort 3" in restored.log


def test_end_of_input_commits_at_close_without_checkpoints_and_with_final_checkpoint() -> None:
    s = LedgerSink()
    s.open("sink")
    s.write_batch([1], None)
    s.finish()
    assert s.visible == []
    s.close()
    assert s.visible == [1]
    t = LedgerSink()
    t.open("sink")
    t.write_batch([1], None)
    t.finish()
    t.snapshot_state(5)  # the final checkpoint
    t.close()  # the final checkpoint commits, not close()
    assert t.visible == []
    t.notify_checkpoint_complete(5)
    assert t.visible == [1]


def _parts(directory: Path) -> list[str]:
    return [line for p in sorted(directory.glob("part-*")) for line in p.read_text().splitlines()]


def test_file_sink_files_are_hidden_until_commit_and_leftovers_are_removed(tmp_path: Path) -> None:
    s = FileSink(tmp_path, encoder=lambda v: f"v={v}")
    s.open("my sink/1")
    s.write_batch([1, 2], None)
    s.snapshot_state(1)
    assert _parts(tmp_path) == []
    hidden = sorted(p.name for p in tmp_path.iterdir())
    assert hidden == [".part-my_sink_1-00000001.inprogress"]
    s.notify_checkpoint_complete(1)
    assert _parts(tmp_path) == ["v=1", "v=2"]
    s.write_batch([3], None)  # never checkpointed: a killed run's leftover
    image = s.snapshot_state(2)
    s.write_batch([4], None)
    s._close_file()
    again = FileSink(tmp_path, encoder=lambda v: f"v={v}")
    again.restore_state(image)
    again.open("my sink/1")
    assert _parts(tmp_path) == ["v=1", "v=2", "v=3"]
    assert not list(tmp_path.glob(".*"))
    again.write_batch([5], None)
    again.finish()
    again.close()
    assert _parts(tmp_path) == ["v=1", "v=2", "v=3", "v=5"]


class FailOnce(sc.KeyedProcessFunction):
    fail_at: int | None = None

    def open(self, ctx: Any) -> None:
        self.count = ctx.get_state(sc.ValueStateDescriptor("count"))

    def process_element(self, value: int, ctx: Any) -> Any:
        if value == FailOnce.fail_at:
            raise RuntimeError("boom")
        n = (self.count.value() or 0) + 1
        self.count.update(n)
        return [f"{value % 4},{value},{n}"]


@pytest.mark.parametrize("backend", ["heap", "rocksdb"])
@pytest.mark.parametrize("asynchronous", [False, True])
def test_failed_job_restarted_from_latest_writes_every_line_once(
    tmp_path: Path, backend: str, asynchronous: bool
) -> None:
    from dataclasses import replace

    def job(fail_at: int | None) -> sc.JobResult:
        FailOnce.fail_at = fail_at
        env = sc.StreamEnvironment(state_backend=backend, state_dir=tmp_path / "state", batch_size=10)
        env.enable_checkpointing(tmp_path / "chk", every_records=25)
        env.checkpoint_config = replace(env.checkpoint_config, asynchronous=asynchronous)
        env.from_collection(list(range(300))).key_by(lambda v: v % 4).process(FailOnce()).uid("p").sink_to(
            FileSink(tmp_path / "out")
        ).uid("files")
        return env.execute("exactly-once", restore_from="latest")

    with pytest.raises(UserFunctionError, match="boom"):
        job(fail_at=133)
    assert len(_parts(tmp_path / "out")) < 133
    job(fail_at=None)
    expected = [f"{v % 4},{v},{v // 4 + 1}" for v in range(300)]
    assert sorted(_parts(tmp_path / "out")) == sorted(expected)
    assert not list((tmp_path / "out").glob(".*"))


def test_file_sink_without_checkpointing_commits_at_the_end(tmp_path: Path) -> None:
    env = sc.StreamEnvironment()
    env.from_collection(["a", "b", "c"]).sink_to(FileSink(tmp_path))
    env.execute("plain")
    assert _parts(tmp_path) == ["a", "b", "c"]


def test_stop_with_savepoint_commits_the_last_transaction(tmp_path: Path) -> None:
    import time

    env = sc.StreamEnvironment(batch_size=5)
    env.from_generator(lambda s, o: o, count=None).map(lambda v: (time.sleep(0.0005), v)[1]).sink_to(
        FileSink(tmp_path / "out")
    )
    handle = env.execute_async("endless")
    time.sleep(0.1)
    result = handle.stop(savepoint=tmp_path / "sp")
    lines = _parts(tmp_path / "out")
    assert result.savepoint is not None and lines
    assert lines == [str(i) for i in range(len(lines))]


def test_file_sinks_sharing_a_directory_keep_their_own_files(tmp_path: Path) -> None:
    a, ab = FileSink(tmp_path), FileSink(tmp_path)
    ab.open("a-b")
    ab.write_batch(["x"], None)
    ab.snapshot_state(1)
    a.open("a")  # must not take a-b's pending file for a leftover of its own
    ab.notify_checkpoint_complete(1)
    assert _parts(tmp_path) == ["x"]
