"""Test support for window operators: a harness that drives one operator, and reference oracles.

The harness pushes batches and watermarks into a :class:`WindowOperator` exactly as the
runtime does, and collects its main and late outputs. The oracles re-implement the
documented semantics element by element with plain dicts, so the operator (both its
paths, both backends) can be compared with them on random inputs.
"""

from __future__ import annotations

import importlib.util
from collections import Counter
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from hypothesis import settings

from streamcore.operators.base import OperatorRuntime, SnapshotContext, StreamOperator
from streamcore.operators.window_operator import WindowOperator
from streamcore.state.factory import StateBackendFactory
from streamcore.time import MAX_TIMESTAMP, MIN_TIMESTAMP, Clock, ManualClock

BACKENDS = ["heap", "rocksdb"]
LATE = "late"
#: RocksDB examples cost a database and column families each: a quarter of the profile's examples.
ROCKSDB_SETTINGS = settings(max_examples=max(5, settings.default.max_examples // 4))


def rocksdb_available() -> bool:
    """Whether the RocksDB keyed backend module exists yet."""
    return importlib.util.find_spec("streamcore.state.rocksdb.backend") is not None


def skip_without(backend: str) -> None:
    """Skip a RocksDB case while its backend is not there."""
    if backend == "rocksdb" and not rocksdb_available():
        pytest.skip("streamcore.state.rocksdb.backend is not available yet")


class Collector(StreamOperator):
    """The end of a test dataflow: records values, timestamps and watermarks."""

    def __init__(self, name: str = "collect") -> None:
        super().__init__(name, name)
        self.values: list[Any] = []
        self.timestamps: list[Any] = []

    def process_batch(self, values: list[Any], timestamps: list[int] | None, side: int) -> None:
        self.values.extend(values)
        self.timestamps.extend(timestamps if timestamps is not None else [None] * len(values))

    def process_watermark(self, watermark: int) -> None:
        pass


class Harness:
    """One window operator on a fresh backend, fed by hand.

    ``make_op()`` builds the operator; ``state_dir`` is needed for RocksDB.
    """

    def __init__(
        self,
        make_op: Callable[[], WindowOperator],
        backend: str = "heap",
        state_dir: Path | None = None,
        clock: Clock | None = None,
    ) -> None:
        skip_without(backend)
        self.clock = clock or ManualClock(0)
        self.factory = StateBackendFactory(backend, state_dir, self.clock)
        self.factory.open()
        self.op = make_op()
        self.op.setup(OperatorRuntime(self.clock, 128, self.factory))
        self._edge = self.op.add_input_edge()
        self.out = Collector()
        self.late = Collector("late")
        self.op.output.connect(self.out, 0, self.out.add_input_edge())
        self.op.output.connect(self.late, 0, self.late.add_input_edge(), LATE)
        self.watermark = MIN_TIMESTAMP

    def open(self, image: Any = None) -> Harness:
        if image is not None:
            self.op.restore_state(image)
        self.op.open()
        return self

    def push(self, values: list[Any], timestamps: list[int] | None) -> None:
        self.op.process_batch(list(values), None if timestamps is None else list(timestamps), 0)

    def advance(self, watermark: int) -> None:
        if watermark > self.watermark:
            self.watermark = watermark
        self.op.receive_watermark(self._edge, watermark)

    def processing_time(self, now: int) -> None:
        self.op.on_processing_time(now)

    def snapshot(self) -> Any:
        return self.op.snapshot_state(SnapshotContext(1, canonical=True))

    def close(self) -> None:
        self.op.close()
        self.factory.close()

    def assert_empty(self) -> None:
        """After the end of input: no window contents, sessions, trigger state or timers are left."""
        image = self.op.snapshot_state(SnapshotContext(1, canonical=True))
        left = {name: st["rows"] for name, st in image["keyed"]["states"].items() if st["rows"]}
        assert left == {}, left
        assert not any(t for svc in image["keyed"]["timers"].values() for t in svc.values()), image["keyed"][
            "timers"
        ]
        assert not (image["operator"] or {}).get("windows"), image["operator"]

    def outputs(self) -> list[tuple[Any, Any]]:
        return list(zip(self.out.values, self.out.timestamps, strict=True))


def run_ops(harness: Harness, ops: list[tuple[str, Any]]) -> None:
    """Apply ``("batch", [(key, ts, value)...])`` and ``("wm", watermark)`` operations."""
    for kind, arg in ops:
        if kind == "batch":
            harness.push([(k, ts, v) for k, ts, v in arg], [ts for _, ts, _ in arg])
        else:
            harness.advance(arg)


def source_ops(records: list[tuple[Any, int, Any]], batch_size: int, bound: int) -> list[tuple[str, Any]]:
    """What a collection source with bounded out-of-orderness feeds downstream: batches, watermarks, MAX."""
    ops: list[tuple[str, Any]] = []
    wm = MIN_TIMESTAMP
    max_ts = MIN_TIMESTAMP + bound + 1
    for i in range(0, len(records), batch_size):
        batch = records[i : i + batch_size]
        ops.append(("batch", batch))
        max_ts = max(max_ts, *(ts for _, ts, _ in batch))
        if max_ts - bound - 1 > wm:
            wm = max_ts - bound - 1
            ops.append(("wm", wm))
    ops.append(("wm", MAX_TIMESTAMP))
    return ops


def aligned_oracle(
    ops: list[tuple[str, Any]], size: int, slide: int, offset: int, lateness: int
) -> tuple[Counter[Any], list[Any]]:
    """Firings ``(key, start, end, values_in_arrival_order, timestamp)`` and late values (aligned)."""
    state: dict[tuple[Any, int], list[Any]] = {}
    pending: set[tuple[Any, int]] = set()
    fired: Counter[Any] = Counter()
    late: list[Any] = []
    wm = MIN_TIMESTAMP
    for kind, arg in ops:
        if kind == "batch":
            for key, ts, value in arg:
                start = ts - (ts - offset) % slide
                kept = False
                while start > ts - size:
                    end_ts = start + size - 1
                    if end_ts + lateness > wm:
                        kept = True
                        contents = state.setdefault((key, start), [])
                        contents.append(value)
                        if end_ts <= wm:
                            fired[(key, start, start + size, tuple(contents), end_ts)] += 1
                        else:
                            pending.add((key, start))
                    start -= slide
                if not kept:
                    late.append((key, ts, value))
        else:
            wm = max(wm, arg)
            for key, start in sorted(pending, key=lambda ks: ks[1]):
                if start + size - 1 <= wm:
                    fired[(key, start, start + size, tuple(state[(key, start)]), start + size - 1)] += 1
                    pending.discard((key, start))
            for key, start in list(state):
                if start + size - 1 + lateness <= wm:
                    del state[(key, start)]
    return fired, late


def session_oracle(
    ops: list[tuple[str, Any]], gap: int | Callable[[Any], int], lateness: int
) -> tuple[Counter[Any], list[Any]]:
    """Firings ``(key, start, end, sorted_values, timestamp)`` and late values of event-time sessions.

    ``gap`` is the session gap, or a function of the element ``(key, ts, value)`` (dynamic gaps).
    """
    gap_of = gap if callable(gap) else lambda _element: gap
    sessions: dict[Any, list[list[Any]]] = {}  # key -> [[start, end, values, armed]]
    fired: Counter[Any] = Counter()
    late: list[Any] = []
    wm = MIN_TIMESTAMP
    for kind, arg in ops:
        if kind == "batch":
            for key, ts, value in arg:
                windows = sessions.setdefault(key, [])
                start, end = ts, ts + gap_of((key, ts, value))
                touching = [w for w in windows if w[0] <= end and w[1] >= start]
                for w in touching:
                    start, end = min(start, w[0]), max(end, w[1])
                if end - 1 + lateness <= wm:
                    late.append((key, ts, value))
                    continue
                values = [v for w in touching for v in w[2]] + [value]
                for w in touching:
                    windows.remove(w)
                # A session waits for the watermark iff its end is still ahead of it (the
                # trigger registers its timer on every element and merge, and deletes the
                # timers of merged windows); otherwise the element fires it at once.
                windows.append([start, end, values, end - 1 > wm])
                if end - 1 <= wm:
                    fired[(key, start, end, tuple(sorted(values)), end - 1)] += 1
        else:
            wm = max(wm, arg)
            for key, windows in sessions.items():
                for w in sorted(windows, key=lambda w: w[1]):
                    if w[3] and w[1] - 1 <= wm:
                        fired[(key, w[0], w[1], tuple(sorted(w[2])), w[1] - 1)] += 1
                        w[3] = False
                sessions[key] = [w for w in windows if w[1] - 1 + lateness > wm]
    return fired, late


def run_with_restore(
    make: Callable[[], WindowOperator],
    before: str,
    after: str,
    ops: list[tuple[str, Any]],
    cut: int,
    directory: Path,
    *,
    assert_empty: bool = False,
) -> tuple[list[tuple[Any, Any]], list[Any]]:
    """Run ``ops[:cut]`` on backend ``before``, restore its snapshot on ``after``, run the rest.

    The snapshot goes through msgpack, as a checkpoint does; the second harness sees the
    first one's watermark again (sources re-emit it). Returns the outputs and the late
    values of both harnesses, in order.
    """
    from streamcore import serde

    first = Harness(make, before, directory / "first").open()
    run_ops(first, ops[:cut])
    image = serde.msgpack_loads(serde.msgpack_dumps(first.snapshot()))
    outputs = first.outputs()
    late = list(first.late.values)
    watermark = first.watermark
    first.close()
    second = Harness(make, after, directory / "second").open(image)
    if watermark > MIN_TIMESTAMP:
        second.advance(watermark)  # windows that fired before the restore must not fire again
    run_ops(second, ops[cut:])
    outputs += second.outputs()
    late.extend(second.late.values)
    if assert_empty:
        second.assert_empty()
    second.close()
    return outputs, late


def check_against_oracle(
    make: Callable[[], WindowOperator],
    backend: str,
    ops: list[tuple[str, Any]],
    expected: Counter[Any],
    expected_late: list[Any],
    strategy: type,
    directory: Path,
) -> None:
    """Run ``ops`` on one harness whose window strategy is a ``strategy``; compare with the oracle.

    Outputs are compared as a multiset of ``(*value, timestamp)``, late elements in arrival
    order; the operator must hold no state, timer or window at the end.
    """
    h = Harness(make, backend, directory).open()
    assert isinstance(h.op._aligned_windows, strategy)
    run_ops(h, ops)
    assert Counter((*v, ts) for v, ts in h.outputs()) == expected
    assert h.late.values == expected_late  # arrival order
    assert h.op.late_records == len(expected_late)
    h.assert_empty()
    h.close()
