"""Stopping a running job: a final checkpoint (sinks commit), or a savepoint."""

from __future__ import annotations

import streamcore as sc


def endless(split: int, offset: int) -> int:
    return offset


def test_stop_with_a_final_checkpoint_commits_the_sink(tmp_path):
    env = sc.StreamEnvironment(batch_size=50)
    env.enable_checkpointing(tmp_path / "ck", every_records=10**9)  # only the final one
    env.from_generator(endless, name="numbers").sink_to(sc.FileSink(tmp_path / "out"))
    handle = env.execute_async("stopper")
    while handle.metrics().get("numbers", {}).get("records_out", 0) < 500:
        pass
    result = handle.stop(final_checkpoint=True, timeout=60)
    assert result.stopped and result.checkpoints == [1]
    committed = sorted(
        int(x)
        for f in (tmp_path / "out").iterdir()
        if not f.name.startswith(".")
        for x in f.read_text().split()
    )
    assert committed == list(range(result.records_read))


def test_stop_without_final_checkpoint_commits_nothing_new(tmp_path):
    env = sc.StreamEnvironment(batch_size=50)
    env.enable_checkpointing(tmp_path / "ck", every_records=10**9)
    env.from_generator(endless, name="numbers").sink_to(sc.FileSink(tmp_path / "out"))
    handle = env.execute_async("stopper")
    while handle.metrics().get("numbers", {}).get("records_out", 0) < 500:
        pass
    result = handle.stop(timeout=60)
    assert result.stopped and result.checkpoints == []
    assert not [f for f in (tmp_path / "out").iterdir() if not f.name.startswith(".")]
