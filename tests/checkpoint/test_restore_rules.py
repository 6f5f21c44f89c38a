"""Restore rules: stateless operators come and go freely; watermarks are restored; a corrupt newest
checkpoint never silently duplicates exactly-once output."""

from __future__ import annotations

import logging
import os
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pytest

import streamcore as sc
from streamcore.checkpoint import RestoreFrom
from streamcore.checkpoint.storage import CheckpointStorage, read_metadata
from streamcore.errors import CorruptCheckpointError, RestoreError
from streamcore.sinks.file import FileSink
from tests.checkpoint.crash_job import ROOT, expected_lines, read_output
from tests.checkpoint.jobs import CountFn, RecordingSink, build_job, make_env, sink_image

DATA = [(i * 37) % 101 for i in range(300)]


def _complete(chk: Path) -> list[Path]:
    return [c.path for c in CheckpointStorage(chk).list() if c.complete]


def _count_job(
    tmp: Path, *, extra_stateless: bool = False, extra_stateful: bool = False, keep_count: bool = True
):
    env = make_env(tmp, "heap", every=None, batch_size=10)
    sink = RecordingSink()
    stream = env.from_collection(DATA, name="numbers")
    if extra_stateless:
        stream = stream.map(lambda v: v).uid("identity").filter(lambda v: True).uid("all")
    keyed = stream.key_by(lambda v: v % 5)
    out = keyed.process(CountFn()).uid("count") if keep_count else keyed.map(lambda v: (v,)).uid("plain")
    if extra_stateful:
        out = out.key_by(lambda r: r[0]).reduce(lambda a, b: b).uid("latest")
    out.sink_to(sink).uid("out")
    return env, sink


def test_adding_or_removing_stateless_operators_needs_no_flag(tmp_path: Path) -> None:
    env, _ = _count_job(tmp_path)
    env.enable_checkpointing(tmp_path / "chk", every_records=100)
    env.execute("job")
    newest = _complete(tmp_path / "chk")[-1]
    env2, sink = _count_job(tmp_path, extra_stateless=True)
    env2.execute("job", restore_from=str(newest))  # two stateless operators more: fine
    assert sink.results == []  # restored at the end of the input
    meta = read_metadata(newest)
    assert meta["operators"]["count"]["stateful"] and not meta["operators"].get("identity")


def test_a_stateful_operator_on_one_side_only_is_an_error_that_lists_it(tmp_path: Path) -> None:
    env, _ = _count_job(tmp_path)
    env.enable_checkpointing(tmp_path / "chk", every_records=100)
    env.execute("job")
    newest = _complete(tmp_path / "chk")[-1]
    env2, _ = _count_job(tmp_path, extra_stateful=True)
    with pytest.raises(RestoreError, match=r"stateful uids \['latest'\].*allow_non_restored_state"):
        env2.execute("job", restore_from=str(newest))
    env3, _ = _count_job(tmp_path, keep_count=False)
    with pytest.raises(RestoreError, match=r"has state of uids \['count'\]"):
        env3.execute("job", restore_from=str(newest))
    env4, _ = _count_job(tmp_path, extra_stateful=True)
    env4.execute("job", restore_from=RestoreFrom(newest, allow_non_restored_state=True))


@pytest.mark.parametrize("backend", ["heap", "rocksdb"])
def test_an_element_late_before_a_checkpoint_stays_late_after_restoring_it(
    tmp_path: Path, backend: str
) -> None:
    # Found by a random hypothesis seed: ts 1 arrives after the watermark passed it (8 - 5 - 1 = 2).
    # Uninterrupted, it is dropped as late; a restore from the checkpoint between the two must
    # drop it too, so operator watermarks are part of the checkpoint.
    data = [8, 1]

    def run(every: int | None, **kw: Any) -> list[Any]:
        env = make_env(tmp_path, backend, every=every, batch_size=1)
        sink = RecordingSink()
        build_job(env, data, "timers", 1, sink)
        env.execute("job", **kw)
        return sink.results

    full = run(1)
    assert full == [(0, 18, 8)]
    first = _complete(tmp_path / "chk")[0]
    assert sink_image(first)["emitted"] == 0
    assert run(None, restore_from=str(first)) == full


# -- a corrupt newest checkpoint and exactly-once sinks ----------------------------------------------------
def _file_job(tmp: Path, n: int, every: int) -> tuple[sc.StreamEnvironment, Path]:
    env = sc.StreamEnvironment(batch_size=10)
    env.enable_checkpointing(tmp / "chk", every_records=every, retain=5)
    out = tmp / "out"
    env.from_collection(list(range(n)), name="numbers").key_by(lambda v: v % 3).process(CountFn()).uid(
        "count"
    ).map(lambda r: f"{r[0]},{r[1]}").uid("fmt").sink_to(FileSink(out)).uid("files")
    return env, out


def _corrupt_newest(chk: Path) -> Path:
    newest = _complete(chk)[-1]
    entry = read_metadata(newest)["operators"]["count"]
    victim = newest / entry["file"]
    victim.write_bytes(victim.read_bytes()[:-5])
    return victim


def test_a_corrupt_newest_checkpoint_is_an_error_for_exactly_once_sinks(tmp_path: Path, caplog: Any) -> None:
    env, out = _file_job(tmp_path, 200, every=50)
    env.execute("files")
    victim = _corrupt_newest(tmp_path / "chk")
    before = read_output(out)
    env2, _ = _file_job(tmp_path, 200, every=50)
    with pytest.raises(CorruptCheckpointError) as err:
        env2.execute("files", restore_from="latest")
    assert (
        str(victim) in str(err.value) and "['files']" in str(err.value) and "fall_back=True" in str(err.value)
    )
    assert read_output(out) == before  # nothing was written
    # Opting in restores the previous checkpoint, with a warning that names the cost.
    env3, _ = _file_job(tmp_path, 200, every=50)
    with caplog.at_level(logging.WARNING, logger="streamcore.checkpoint"):
        env3.execute("files", restore_from=RestoreFrom("latest", fall_back=True))
    assert "write again the records they committed" in caplog.text
    assert set(read_output(out)) == set(before)  # nothing lost


def _crash_cmd(tmp: Path, *extra: str) -> list[str]:
    return [
        sys.executable,
        str(ROOT / "tests" / "checkpoint" / "crash_job.py"),
        "--backend",
        "heap",
        "--out",
        str(tmp / "out"),
        "--checkpoints",
        str(tmp / "checkpoints"),
        "--state",
        str(tmp / "state"),
        "--records",
        "20000",
        "--every",
        "300",
        *extra,
    ]


@pytest.mark.slow
def test_sigkill_then_a_corrupt_newest_checkpoint_never_duplicates_silently(tmp_path: Path) -> None:
    env = dict(
        os.environ, PYTHONPATH=os.pathsep.join(filter(None, [str(ROOT), os.environ.get("PYTHONPATH")]))
    )
    proc = subprocess.Popen(
        _crash_cmd(tmp_path), stdout=subprocess.PIPE, stderr=subprocess.PIPE, env=env, text=True
    )
    assert proc.stdout is not None and proc.stdout.readline().strip() == "RUNNING"
    deadline = time.monotonic() + 60
    while len(_complete(tmp_path / "checkpoints")) < 2 and time.monotonic() < deadline:
        time.sleep(0.01)
    proc.send_signal(signal.SIGKILL)
    proc.communicate()
    chk = tmp_path / "checkpoints"
    assert len(_complete(chk)) >= 2
    state_file = _corrupt_newest(chk)
    committed = read_output(tmp_path / "out")
    # Step 1: the restart refuses, names the file, and writes nothing.
    again = subprocess.run(
        _crash_cmd(tmp_path), capture_output=True, text=True, env=env, timeout=120, check=False
    )
    assert again.returncode != 0 and str(state_file) in again.stderr and "fall_back=True" in again.stderr
    assert read_output(tmp_path / "out") == committed
    assert len(set(committed)) == len(committed)
    # Step 2: with the opt-in, the job finishes from the previous checkpoint: nothing is lost, and
    # the duplicates are exactly the lines committed after that checkpoint.
    done = subprocess.run(
        _crash_cmd(tmp_path, "--fall-back"), capture_output=True, text=True, env=env, timeout=120, check=False
    )
    assert done.returncode == 0 and "DONE" in done.stdout, done.stderr[-2000:]
    lines = read_output(tmp_path / "out")
    assert set(lines) == set(expected_lines(20_000, 97))
    assert "write again the records they committed" in done.stderr
