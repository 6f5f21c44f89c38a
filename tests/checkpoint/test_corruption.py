"""Corrupt, incomplete and foreign checkpoints: clear errors naming the file; `latest` falls back."""

from __future__ import annotations

import logging
import shutil
from pathlib import Path

import pytest

from streamcore.checkpoint import RestoreFrom
from streamcore.checkpoint.snapshot import validate_files
from streamcore.checkpoint.storage import CheckpointStorage, read_metadata
from streamcore.errors import CheckpointError, CorruptCheckpointError, RestoreError
from tests.checkpoint.jobs import RecordingSink, build_job, make_env, sink_image

DATA = [(i * 37) % 101 for i in range(300)]


def _run(tmp: Path, backend: str, every: int | None = 40, retain: int = 100, job: str = "test-job", **kw):
    env = make_env(tmp, backend, every=every, batch_size=10, retain=retain)
    sink = RecordingSink()
    build_job(env, DATA, "count", 5, sink)
    result = env.execute(job, **kw)
    return sink.results, result


def _complete(tmp: Path) -> list[Path]:
    return [c.path for c in CheckpointStorage(tmp / "chk").list() if c.complete]


@pytest.mark.parametrize("backend", ["heap", "rocksdb"])
def test_truncated_metadata_is_named_and_latest_falls_back(tmp_path: Path, backend: str, caplog) -> None:
    full, _ = _run(tmp_path, backend, every=40)
    newest, previous = _complete(tmp_path)[-1], _complete(tmp_path)[-2]
    meta = newest / "_metadata"
    meta.write_bytes(meta.read_bytes()[:-7])
    with pytest.raises(CorruptCheckpointError, match=str(meta)):
        _run(tmp_path, backend, every=None, restore_from=str(newest))
    with caplog.at_level(logging.WARNING, logger="streamcore.checkpoint"):
        rest, _ = _run(tmp_path, backend, every=None, restore_from=RestoreFrom(tmp_path / "chk"))
    assert "skipping corrupt checkpoint" in caplog.text and newest.name in caplog.text
    assert full[: sink_image(previous)["emitted"]] + rest == full


def test_missing_shared_file_is_named_falls_back_and_deletes_nothing_retained(tmp_path: Path, caplog) -> None:
    full, _ = _run(tmp_path, "rocksdb", every=40, retain=3)
    *_, previous, newest = _complete(tmp_path)
    meta = read_metadata(newest)
    previous_refs = set(read_metadata(previous)["shared"])
    only_newest = [s for s in meta["shared"] if s not in previous_refs]
    assert only_newest, "the newest checkpoint added no shared file"
    victim = tmp_path / "chk" / "shared" / only_newest[0]
    victim.unlink()
    with pytest.raises(CorruptCheckpointError, match=only_newest[0]):
        _run(tmp_path, "rocksdb", every=None, restore_from=str(newest))
    emitted = sink_image(previous)["emitted"]
    with caplog.at_level(logging.WARNING, logger="streamcore.checkpoint"):
        rest, _ = _run(tmp_path, "rocksdb", every=1000, retain=3, restore_from="latest")
    assert "skipping corrupt checkpoint" in caplog.text and only_newest[0] in caplog.text
    assert full[:emitted] + rest == full
    # The damaged checkpoint is still retained (newest but one) and every other retained one is whole.
    retained = _complete(tmp_path)
    assert newest in retained and previous in retained and len(retained) == 3
    for path in retained:
        if path != newest:
            validate_files(read_metadata(path), path)
    # Retention kept exactly what the retained checkpoints reference.
    refs = {name for path in retained for name in read_metadata(path)["shared"]}
    assert {p.name for p in (tmp_path / "chk" / "shared").iterdir()} == refs - {only_newest[0]}


@pytest.mark.parametrize("backend", ["heap", "rocksdb"])
def test_altered_operator_file_fails_its_checksum(tmp_path: Path, backend: str) -> None:
    _run(tmp_path, backend)
    newest = _complete(tmp_path)[-1]
    state_file = newest / read_metadata(newest)["operators"]["count"]["file"]
    data = bytearray(state_file.read_bytes())
    data[-1] ^= 0xFF
    state_file.write_bytes(bytes(data))
    with pytest.raises(CorruptCheckpointError, match="checksum") as err:
        _run(tmp_path, backend, every=None, restore_from=str(newest))
    assert str(state_file) in str(err.value)


def test_every_checkpoint_corrupt_is_an_error_not_a_fresh_start(tmp_path: Path) -> None:
    _run(tmp_path, "heap", retain=2)
    for path in _complete(tmp_path):
        (path / "_metadata").write_bytes(b"garbage")
    with pytest.raises(CorruptCheckpointError, match=r"no checkpoint .* passes validation"):
        _run(tmp_path, "heap", every=None, restore_from=RestoreFrom(tmp_path / "chk"))


def test_incomplete_checkpoint_is_skipped_and_removed(tmp_path: Path) -> None:
    _, result = _run(tmp_path, "heap", retain=100)
    last = _complete(tmp_path)[-1]
    partial = tmp_path / "chk" / f"chk-{result.checkpoints[-1] + 1}"
    shutil.copytree(last, partial)
    (partial / "_metadata").unlink()
    with pytest.raises(CorruptCheckpointError, match="incomplete"):
        _run(tmp_path, "heap", every=None, restore_from=str(partial))
    rest, result2 = _run(tmp_path, "heap", every=1000, restore_from="latest")
    assert rest == [] and not partial.exists()
    assert result2.checkpoints == [result.checkpoints[-1] + 2]


def test_checkpoint_of_another_job_is_refused(tmp_path: Path) -> None:
    _run(tmp_path, "heap", job="job-a")
    newest = _complete(tmp_path)[-1]
    with pytest.raises(RestoreError, match="job 'job-a', not of 'job-b'"):
        _run(tmp_path, "heap", every=None, job="job-b", restore_from=str(newest))
    with pytest.raises(RestoreError, match="job 'job-a'"):
        _run(tmp_path, "heap", job="job-b", restore_from="latest")
    with pytest.raises(CheckpointError, match="own checkpoint directory"):
        _run(tmp_path, "heap", job="job-b")
    assert _complete(tmp_path)  # nothing of job-a was deleted


def test_uid_mismatch_is_an_error_unless_allowed(tmp_path: Path) -> None:
    import streamcore as sc

    _run(tmp_path, "heap")
    newest = _complete(tmp_path)[-1]

    def renamed(**kw):
        env = make_env(tmp_path, "heap", every=None, batch_size=10)
        sink = RecordingSink()
        env.from_collection(DATA, name="numbers").key_by(lambda v: v % 5).reduce(lambda a, b: a + b).uid(
            "renamed"
        ).sink_to(sink).uid("out")
        env.execute("test-job", **kw)
        return sink.results

    with pytest.raises(RestoreError, match=r"uids \['count'\].*uids \['renamed'\].*allow_non_restored_state"):
        renamed(restore_from=str(newest))
    assert renamed(restore_from=RestoreFrom(newest, allow_non_restored_state=True)) == []
    assert isinstance(sc.StreamEnvironment, type)


def test_other_max_parallelism_is_refused(tmp_path: Path) -> None:
    import streamcore as sc

    _run(tmp_path, "heap")
    env = sc.StreamEnvironment(max_parallelism=64)
    build_job(env, DATA, "count", 5, RecordingSink())
    with pytest.raises(RestoreError, match="max_parallelism=128"):
        env.execute("test-job", restore_from=str(_complete(tmp_path)[-1]))


def test_native_rocksdb_checkpoint_into_heap_points_to_savepoints(tmp_path: Path) -> None:
    _run(tmp_path, "rocksdb")
    with pytest.raises(RestoreError, match="savepoint"):
        _run(tmp_path, "heap", every=None, restore_from=str(_complete(tmp_path)[-1]))


def test_nothing_to_restore_and_bad_arguments(tmp_path: Path) -> None:
    from streamcore.errors import ConfigurationError

    with pytest.raises(RestoreError, match="nothing to restore"):
        _run(tmp_path, "heap", restore_from=str(tmp_path / "nowhere"))
    with pytest.raises(ConfigurationError, match="latest"):
        _run(tmp_path, "heap", every=None, restore_from="latest")
    with pytest.raises(ConfigurationError, match="restore_from"):
        _run(tmp_path, "heap", restore_from=42)
