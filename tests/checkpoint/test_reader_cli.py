"""The offline reader (read_state, inspect, list_checkpoints) and the `streamcore` command."""

from __future__ import annotations

import json
from dataclasses import replace
from pathlib import Path
from typing import Any

import pytest

import streamcore as sc
from streamcore.checkpoint.reader import inspect, list_checkpoints, read_operator_image, read_state
from streamcore.cli import main
from streamcore.errors import RestoreError
from tests.checkpoint.jobs import CountFn, RecordingSink

DATA = list(range(120))


class WithTtl(sc.KeyedProcessFunction):
    def open(self, ctx: Any) -> None:
        self.last = ctx.get_state(sc.ValueStateDescriptor("last", ttl=10**9))

    def process_element(self, value: int, ctx: Any) -> Any:
        self.last.update(value)
        return None


def _checkpointed(tmp: Path, backend: str) -> Path:
    env = sc.StreamEnvironment(state_backend=backend, state_dir=tmp / "state", batch_size=10)
    env.enable_checkpointing(tmp / "chk", every_records=50, retain=5)
    env.checkpoint_config = replace(env.checkpoint_config, asynchronous=False)
    src = env.from_collection(DATA, name="numbers")
    src.key_by(lambda v: v % 4).process(CountFn()).uid("count").sink_to(RecordingSink()).uid("out")
    src.key_by(lambda v: ("k", v % 2)).process(WithTtl()).uid("ttl").sink_to(RecordingSink()).uid("out2")
    env.execute("reader-job")
    return tmp / "chk"


@pytest.mark.parametrize("backend", ["heap", "rocksdb"])
def test_read_state_of_every_kind(tmp_path: Path, backend: str) -> None:
    chk = _checkpointed(tmp_path, backend)
    counts = sorted(read_state(chk, "count", "count"))
    assert counts == [(k, None, 30) for k in range(4)]
    recent = dict((k, v) for k, _, v in read_state(chk, "count", "recent"))
    assert recent[3] == [111, 115, 119]
    seen = dict((k, v) for k, _, v in read_state(chk, "count", "seen"))
    assert sum(seen[0].values()) == 30 and set(seen[0]) <= {0, 1, 2, 3, 4}
    ttl = sorted(read_state(chk, "ttl", "last"))
    assert ttl == [(("k", 0), None, 118), (("k", 1), None, 119)]
    raw = sorted(read_state(chk, "ttl", "last", raw=True))
    assert raw[0][2][1] == 118  # [expires_at, value]
    image = read_operator_image(chk, "count")
    assert set(image["keyed"]["states"]) == {"count", "recent", "seen"}


def test_reader_errors_name_what_exists(tmp_path: Path) -> None:
    chk = _checkpointed(tmp_path, "heap")
    with pytest.raises(RestoreError, match=r"no operator 'nope'.*'count'"):
        list(read_state(chk, "nope", "count"))
    with pytest.raises(RestoreError, match=r"no keyed state 'nope'.*\['count', 'recent', 'seen'\]"):
        list(read_state(chk, "count", "nope"))


def test_list_and_inspect(tmp_path: Path) -> None:
    chk = _checkpointed(tmp_path, "rocksdb")
    (chk / "chk-99").mkdir()
    rows = list_checkpoints(chk)
    assert [r["status"] for r in rows] == ["complete"] * (len(rows) - 1) + ["incomplete"]
    newest = Path(rows[-2]["path"])
    (newest / "_metadata").write_bytes(b"nonsense")
    assert list_checkpoints(chk)[-2]["status"] == "corrupt"
    report = inspect(rows[-3]["path"])
    assert report["valid"] and report["backend"] == "rocksdb" and report["job"] == "reader-job"
    assert report["sources"]["numbers"]["splits"]["collection-0"]["position"] == 100
    assert set(report["operators"]["count"]["states"]) == {"count", "recent", "seen"}
    assert report["shared_files"] and any("shared" in f for f in report["native_files"])


def test_cli(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    chk = _checkpointed(tmp_path, "heap")
    assert main(["checkpoints", "list", str(chk)]) == 0
    out = capsys.readouterr().out
    assert "complete" in out and "reader-job" in out
    assert main(["checkpoints", "inspect", str(chk)]) == 0
    out = capsys.readouterr().out
    assert "count (KeyedProcessOperator)" in out and "position 120" in out and "valid: yes" in out
    assert main(["checkpoints", "inspect", str(chk), "--json"]) == 0
    assert json.loads(capsys.readouterr().out)["kind"] == "checkpoint"
    assert main(["state", "dump", str(chk), "--operator", "ttl", "--state", "last"]) == 0
    lines = [json.loads(line) for line in capsys.readouterr().out.splitlines()]
    assert sorted(lines) == [[["k", 0], None, 118], [["k", 1], None, 119]]
    assert main(["state", "dump", str(chk), "--operator", "count", "--state", "count", "--limit", "2"]) == 0
    assert len(capsys.readouterr().out.splitlines()) == 2
    assert main(["state", "dump", str(chk), "--operator", "count", "--state", "nope"]) == 1
    assert "no keyed state 'nope'" in capsys.readouterr().err
    with pytest.raises(SystemExit) as exit_info:
        main(["checkpoints"])
    assert exit_info.value.code == 2


class _LazyCount(sc.KeyedProcessFunction):
    """Registers its state only when a value >= 0 arrives (in process_element, not open)."""

    def open(self, ctx: Any) -> None:
        self.n = None

    def process_element(self, value: int, ctx: Any) -> Any:
        if value >= 0:
            if self.n is None:
                self.n = ctx.get_state(sc.ValueStateDescriptor("n"))
            self.n.update((self.n.value() or 0) + 1)
        return None


def _lazy_job(tmp: Path, backend: str, data: list[int], chk: str, restore: Any = None) -> Path:
    env = sc.StreamEnvironment(state_backend=backend, state_dir=tmp / f"state-{chk}", batch_size=5)
    env.enable_checkpointing(tmp / chk, every_records=5, retain=10)
    env.checkpoint_config = replace(env.checkpoint_config, asynchronous=False)
    env.from_collection(data, name="numbers").key_by(lambda v: abs(v) % 3).process(_LazyCount()).uid(
        "lazy"
    ).sink_to(RecordingSink()).uid("out")
    env.execute("lazy-job", restore_from=restore)
    return list_checkpoints_complete(tmp / chk)[-1]


def list_checkpoints_complete(directory: Path) -> list[Path]:
    from streamcore.checkpoint.storage import CheckpointStorage

    return [c.path for c in CheckpointStorage(directory).list() if c.complete]


def test_reader_shows_restored_state_the_run_never_registered(tmp_path: Path) -> None:
    """Heap checkpoint -> RocksDB run that never asks for state "n": its native checkpoints still hold it."""
    first = _lazy_job(tmp_path, "heap", list(range(30)), "chk1")
    before = sorted(read_state(first, "lazy", "n"))
    assert before == [(0, None, 10), (1, None, 10), (2, None, 10)]
    # The restored sources continue at position 30: the second run reads only the -1s.
    second = _lazy_job(tmp_path, "rocksdb", list(range(30)) + [-1] * 20, "chk2", restore=str(first))
    assert "n" in read_operator_image(second, "lazy")["keyed"]["states"]
    assert sorted(read_state(second, "lazy", "n")) == before
    more = list(range(30)) + [-1] * 20 + [0, 1, 2, -1, -1]
    third = _lazy_job(tmp_path, "rocksdb", more, "chk3", restore=str(second))
    assert sorted(read_state(third, "lazy", "n")) == [(0, None, 11), (1, None, 11), (2, None, 11)]
