"""Values of every kind survive a job's state on both backends and a heap checkpoint restored into RocksDB."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

import streamcore as sc
from streamcore.windowing import EventTimeSessionWindows

NASTY = [
    2**70,
    -(2**64) - 1,
    (1, ("a", 2**80)),
    [(2**65, None), {"k": (True, 1.5)}],
    {(1, 2): [b"\x00\xff", float("inf")]},
    (),
    "",
    -0.0,
]


def _shape(value: Any) -> Any:
    if isinstance(value, (list, tuple)):
        return (type(value).__name__, [_shape(v) for v in value])
    if isinstance(value, dict):
        return ("dict", [(_shape(k), _shape(v)) for k, v in value.items()])
    return (type(value).__name__, repr(value))


@pytest.mark.parametrize("backend", ["heap", "rocksdb"])
def test_session_window_reduce_keeps_big_ints_inside_tuples(backend: str, tmp_path: Path) -> None:
    # Regression: aggregates and serde both used msgpack extension code 1; a reduce result
    # holding an int beyond 64 bits inside a tuple came back from RocksDB as ExtType(2).
    env = sc.StreamEnvironment(state_backend=backend, state_dir=tmp_path / "state")
    rows = [("a", 1, 2**70), ("a", 3, 5), ("b", 2, -(2**66)), ("a", 40, 1)]
    out = (
        env.from_collection(rows, timestamp=lambda r: r[1])
        .key_by(lambda r: r[0])
        .window(EventTimeSessionWindows.with_gap(10))
        .reduce(lambda x, y: (x[0], max(x[1], y[1]), x[2] + y[2]))
        .execute_and_collect()
    )
    assert sorted(out) == [("a", 3, 2**70 + 5), ("a", 40, 1), ("b", 2, -(2**66))]


PROBE = "probe"


class Keep(sc.KeyedProcessFunction):
    """Stores each key's value in value, list and map state; a probe emits what is stored."""

    def open(self, ctx: Any) -> None:
        self.value = ctx.get_state(sc.ValueStateDescriptor("value"))
        self.items = ctx.get_state(sc.ListStateDescriptor("items"))
        self.by = ctx.get_state(sc.MapStateDescriptor("by"))

    def process_element(self, row: Any, ctx: Any) -> Any:
        key, value = row
        if value == PROBE:
            return [(key, self.value.value(), self.items.get(), self.by.get(("u", key)))]
        self.value.update(value)
        self.items.add(value)
        self.by.put(("u", key), value)
        return []


def _run(backend: str, tmp_path: Path, rows: list[Any], restore_from: Any = None) -> list[Any]:
    env = sc.StreamEnvironment(state_backend=backend, state_dir=tmp_path / f"state-{backend}")
    env.enable_checkpointing(tmp_path / f"chk-{backend}", every_records=1_000_000)
    return (
        env.from_collection(rows, name="rows")
        .key_by(lambda r: r[0])
        .process(Keep())
        .uid("keep")
        .execute_and_collect("values", restore_from=restore_from)
    )


def test_a_heap_checkpoint_restores_every_value_into_rocksdb(tmp_path: Path) -> None:
    rows = list(enumerate(NASTY))
    probes = [(i, PROBE) for i in range(len(NASTY))]
    assert _run("heap", tmp_path, rows) == []
    # The restored source position skips ``rows``: only the probes are read.
    out = _run("rocksdb", tmp_path, rows + probes, restore_from=tmp_path / "chk-heap")
    assert [_shape(o) for o in out] == [_shape((i, v, [v], v)) for i, v in enumerate(NASTY)]
