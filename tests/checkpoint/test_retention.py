"""Retention and incremental RocksDB checkpoints: shared/ holds exactly what retained checkpoints use."""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path
from typing import Any

import pytest

import streamcore as sc
from streamcore.checkpoint.snapshot import validate_files
from streamcore.checkpoint.storage import CheckpointStorage, read_metadata


class Churn(sc.KeyedProcessFunction):
    def open(self, ctx: Any) -> None:
        self.v = ctx.get_state(sc.ValueStateDescriptor("v"))

    def process_element(self, value: int, ctx: Any) -> Any:
        self.v.update(value)
        return None


def _job(tmp: Path, *, retain: int, incremental: bool = True, records: int = 3000, restore: Any = None):
    env = sc.StreamEnvironment(state_backend="rocksdb", state_dir=tmp / "state", batch_size=50)
    env.enable_checkpointing(tmp / "chk", every_records=100, retain=retain, incremental=incremental)
    env.checkpoint_config = replace(env.checkpoint_config, asynchronous=False)
    env.from_generator(lambda s, o: o, count=records).key_by(lambda v: v % 500).process(Churn()).uid(
        "churn"
    ).sink_to(lambda v: None)
    return env, env.execute("retention", restore_from=restore)


def _retained(tmp: Path) -> list[Path]:
    return [c.path for c in CheckpointStorage(tmp / "chk").list()]


@pytest.mark.parametrize("retain", [1, 3])
def test_shared_holds_exactly_what_retained_checkpoints_reference(tmp_path: Path, retain: int) -> None:
    _, result = _job(tmp_path, retain=retain)
    assert len(result.checkpoints) >= 25
    retained = _retained(tmp_path)
    assert [int(p.name[4:]) for p in retained] == result.checkpoints[-retain:]
    refs = set()
    for path in retained:
        meta = read_metadata(path)
        validate_files(meta, path)
        refs |= set(meta["shared"])
    assert {p.name for p in (tmp_path / "chk" / "shared").iterdir()} == refs


def test_incremental_checkpoints_reuse_shared_files_and_survive_restarts(tmp_path: Path) -> None:
    _, result = _job(tmp_path, retain=3, records=1500)
    history = result.metrics["checkpoints"]["history"]
    # Later checkpoints write less than the whole state: unchanged SST files are reused.
    assert any(h["incremental_bytes"] < h["size_bytes"] for h in history[1:])
    a, b = (set(read_metadata(p)["shared"]) for p in _retained(tmp_path)[-2:])
    assert a & b
    # A restart continues the chain of the restored checkpoint and keeps retention exact.
    _, again = _job(tmp_path, retain=3, records=3000, restore="latest")
    assert again.checkpoints[0] == result.checkpoints[-1] + 1
    refs = {n for p in _retained(tmp_path) for n in read_metadata(p)["shared"]}
    assert {p.name for p in (tmp_path / "chk" / "shared").iterdir()} == refs


def test_full_checkpoints_keep_everything_private(tmp_path: Path) -> None:
    _job(tmp_path, retain=2, incremental=False, records=600)
    assert not list((tmp_path / "chk" / "shared").iterdir())
    for path in _retained(tmp_path):
        meta = read_metadata(path)
        ssts = [f for f in meta["native"]["files"] if f["name"].endswith(".sst")]
        assert ssts and all("crc32" in f for f in ssts)
        validate_files(meta, path)


def test_savepoints_are_never_deleted_by_retention(tmp_path: Path) -> None:
    import time

    env = sc.StreamEnvironment(state_backend="rocksdb", state_dir=tmp_path / "state", batch_size=20)
    env.enable_checkpointing(tmp_path / "chk", every_records=100, retain=1)
    env.from_generator(lambda s, o: o, count=2000).map(lambda v: (time.sleep(0.0002), v)[1]).key_by(
        lambda v: v % 50
    ).process(Churn()).uid("churn").sink_to(lambda v: None)
    handle = env.execute_async("savepoints")
    path = handle.trigger_savepoint()
    result = handle.wait(60)
    assert len(result.checkpoints) > 3
    assert Path(path).parent == tmp_path / "chk" / "savepoints"
    validate_files(read_metadata(Path(path)), Path(path))
    assert len(_retained(tmp_path)) == 1
