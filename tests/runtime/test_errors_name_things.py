"""Failures name the operator, the state or function, and say truthfully what happens next."""

from __future__ import annotations

import logging
import pickle
from pathlib import Path
from typing import Any

import pytest

import streamcore as sc
from streamcore.errors import CheckpointError, SerializationError, UserFunctionError


class PickleSerializer:
    dumps = staticmethod(pickle.dumps)
    loads = staticmethod(pickle.loads)


class Dedup(sc.KeyedProcessFunction):
    """Keeps a set per key: msgpack cannot store it; a pickle serializer can."""

    def __init__(self, serializer: Any = None) -> None:
        self.serializer = serializer

    def open(self, ctx: Any) -> None:
        self.seen = ctx.get_state(sc.ValueStateDescriptor("seen", serializer=self.serializer))

    def process_element(self, v: Any, ctx: Any) -> Any:
        if v < 0:  # a probe: what is stored
            return [(ctx.get_current_key(), sorted(self.seen.value() or ()))]
        seen = self.seen.value() or set()
        seen.add(v)
        self.seen.update(seen)
        return []


def _dedup_env(tmp: Path, backend: str, every: int = 5) -> sc.StreamEnvironment:
    env = sc.StreamEnvironment(state_backend=backend, state_dir=tmp / f"state-{backend}")
    env.enable_checkpointing(tmp / "chk", every_records=every)
    return env


def test_an_unserializable_heap_state_names_operator_state_type_and_what_happens_next(tmp_path: Path) -> None:
    env = _dedup_env(tmp_path, "heap")
    env.from_collection(list(range(20))).key_by(lambda v: v % 2).process(Dedup()).uid("dedup").sink_to(print)
    with pytest.raises(CheckpointError) as err:
        env.execute("dedup")
    text = str(err.value)
    assert "operator 'dedup'" in text and "state 'seen'" in text and "type set" in text
    assert "serializer=" in text and "starts from the beginning" in text
    assert "restarts" not in text  # nothing restarts the job by itself


def test_an_unserializable_rocksdb_value_names_operator_state_and_type(tmp_path: Path) -> None:
    env = _dedup_env(tmp_path, "rocksdb")
    env.from_collection([1]).key_by(lambda v: v).process(Dedup()).uid("dedup").sink_to(print)
    with pytest.raises(
        SerializationError, match=r"operator 'dedup': state 'seen' cannot store a value of type set"
    ):
        env.execute("dedup")


@pytest.mark.parametrize("source", ["heap", "rocksdb"])
@pytest.mark.parametrize("target", ["heap", "rocksdb"])
def test_a_custom_serializer_carries_any_value_through_checkpoints(
    source: str, target: str, tmp_path: Path
) -> None:
    if source == "rocksdb" and target == "heap":
        pytest.skip("a native RocksDB checkpoint restores into RocksDB only (savepoints cross backends)")
    rows = list(range(10))
    env2 = sc.StreamEnvironment(state_backend=source, state_dir=tmp_path / "b")
    env2.enable_checkpointing(tmp_path / "chk", every_records=1_000)
    env2.from_collection(rows, name="rows").key_by(lambda v: v % 2).process(Dedup(PickleSerializer())).uid(
        "dedup"
    ).sink_to(lambda v: None)
    env2.execute("dedup")  # the final checkpoint: canonical on heap, native on RocksDB
    from streamcore.checkpoint.storage import CheckpointStorage

    newest = [c.path for c in CheckpointStorage(tmp_path / "chk").list() if c.complete][-1]
    env3 = sc.StreamEnvironment(state_backend=target, state_dir=tmp_path / "c")
    probes = [-1, -2]
    out = (
        env3.from_collection([*rows, *probes], name="rows")
        .key_by(lambda v: v % 2)
        .process(Dedup(PickleSerializer()))
        .uid("dedup")
        .execute_and_collect("dedup", restore_from=newest)
    )
    assert sorted(out) == [(0, [0, 2, 4, 6, 8]), (1, [1, 3, 5, 7, 9])]


@pytest.mark.parametrize("backend", ["heap", "rocksdb"])
def test_savepoints_of_custom_serialized_state_restore_into_either_backend(
    backend: str, tmp_path: Path
) -> None:
    from streamcore.operators.process import KeyedProcessOperator
    from streamcore.testing import OperatorHarness

    def op() -> Any:
        return KeyedProcessOperator("dedup", "dedup", Dedup(PickleSerializer()), lambda v: v % 2)

    with OperatorHarness(op(), state_backend=backend) as h:
        h.process_elements(list(range(6)))
        image = h.snapshot(canonical=True)
    assert image["keyed"]["states"]["seen"]["encoded"] is True
    for target in ("heap", "rocksdb"):
        with OperatorHarness(op(), state_backend=target, restore_image=image) as h2:
            h2.process_elements([-2, -1])
            assert sorted(h2.values()) == [(0, [0, 2, 4]), (1, [1, 3, 5])]


def test_a_join_buffer_that_cannot_store_a_value_names_the_operator(tmp_path: Path) -> None:
    env = sc.StreamEnvironment(state_backend="rocksdb", state_dir=tmp_path / "state")
    left = env.from_collection([{"k": 1, "tags": {1, 2}}], timestamp=lambda r: 1)
    right = env.from_collection([{"k": 1}], timestamp=lambda r: 1)
    (
        left.key_by(lambda r: r["k"])
        .interval_join(right.key_by(lambda r: r["k"]))
        .between(-5, 5)
        .process(lambda a, b, ctx: None)
        .uid("tags-join")
        .sink_to(print)
    )
    with pytest.raises(
        SerializationError, match="operator 'tags-join': buffer 'left' cannot store a value of type set"
    ):
        env.execute("join")


class FailingOpen(sc.CoProcessFunction):
    def open(self, ctx: Any) -> None:
        raise RuntimeError("no connection")

    def process_element1(self, v: Any, ctx: Any) -> Any:
        return []

    def process_element2(self, v: Any, ctx: Any) -> Any:
        return []


def test_open_of_a_co_process_function_is_named() -> None:
    env = sc.StreamEnvironment()
    env.from_collection([1]).connect(env.from_collection([2])).process(FailingOpen()).uid("co").sink_to(print)
    with pytest.raises(UserFunctionError, match=r"open of FailingOpen of operator 'co' raised RuntimeError"):
        env.execute("co")


class FailingClose(sc.ProcessJoinFunction):
    def process_element(self, left: Any, right: Any, ctx: Any) -> Any:
        return [(left, right)]

    def close(self) -> None:
        raise RuntimeError("flush failed")


def _join_job(fn: Any, sink: Any = None) -> sc.StreamEnvironment:
    env = sc.StreamEnvironment()
    left = env.from_collection([1], timestamp=lambda v: v)
    right = env.from_collection([1], timestamp=lambda v: v)
    left.key_by(lambda v: v).interval_join(right.key_by(lambda v: v)).between(0, 0).process(fn).uid(
        "join"
    ).sink_to(sink or (lambda v: None))
    return env


def test_a_close_error_after_a_clean_run_is_raised_and_named() -> None:
    with pytest.raises(
        UserFunctionError, match=r"close of FailingClose of operator 'join' raised RuntimeError"
    ):
        _join_job(FailingClose()).execute("close")


def test_close_errors_after_a_failure_are_logged_and_the_failure_is_raised(caplog: Any) -> None:
    def bad_sink(v: Any) -> None:
        raise ValueError("sink down")

    with (
        caplog.at_level(logging.ERROR, logger="streamcore.runtime"),
        pytest.raises(UserFunctionError, match="sink down"),
    ):
        _join_job(FailingClose(), bad_sink).execute("both")
    assert "closing 'join' failed" in caplog.text and "flush failed" in caplog.text


def test_latest_without_a_checkpoint_directory_says_so(tmp_path: Path, caplog: Any) -> None:
    env = sc.StreamEnvironment()
    env.enable_checkpointing(tmp_path / "never", every_records=1_000)
    env.from_collection([1]).sink_to(lambda v: None)
    with caplog.at_level(logging.INFO, logger="streamcore.checkpoint"):
        env.execute("fresh", restore_from="latest")
    assert "no checkpoint directory" in caplog.text and "starts fresh" in caplog.text
    caplog.clear()
    empty = tmp_path / "empty"
    empty.mkdir()
    env.enable_checkpointing(empty, every_records=1_000)
    with caplog.at_level(logging.WARNING, logger="streamcore.checkpoint"):
        env.execute("fresh", restore_from="latest")
    assert "holds no complete checkpoint" in caplog.text
