"""Jobs and helpers shared by the checkpoint tests."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import streamcore as sc
from streamcore.checkpoint.restore import load_operator_image
from streamcore.checkpoint.storage import read_metadata
from streamcore.sinks.base import Sink
from streamcore.time import WatermarkStrategy


class RecordingSink(Sink):
    """Collects records; its checkpointed state is how many it had, so a restored run can be spliced."""

    def __init__(self) -> None:
        self.results: list[Any] = []

    def write_batch(self, values: list[Any], timestamps: list[int] | None) -> None:
        self.results.extend(values)

    def snapshot_state(self, checkpoint_id: int) -> Any:
        return {"emitted": len(self.results)}


class CountFn(sc.KeyedProcessFunction):
    """Per key: a count (value state), the last three values (list state), value histogram (map state)."""

    def open(self, ctx: Any) -> None:
        self.count = ctx.get_state(sc.ValueStateDescriptor("count"))
        self.recent = ctx.get_state(sc.ListStateDescriptor("recent"))
        self.seen = ctx.get_state(sc.MapStateDescriptor("seen"))

    def process_element(self, value: Any, ctx: Any) -> Any:
        n = (self.count.value() or 0) + 1
        self.count.update(n)
        recent = [*self.recent.get(), value][-3:]
        self.recent.update(recent)
        bucket = value % 5
        self.seen.put(bucket, (self.seen.get(bucket) or 0) + 1)
        return [(ctx.get_current_key(), value, n, tuple(recent), self.seen.get(bucket))]


class TimerFn(sc.KeyedProcessFunction):
    """Sums values per key and emits the sum 10 ms of event time after the first value (a timer)."""

    def open(self, ctx: Any) -> None:
        self.total = ctx.get_state(sc.ValueStateDescriptor("total"))

    def process_element(self, value: Any, ctx: Any) -> Any:
        current = self.total.value()
        if current is None:
            ctx.timer_service().register_event_time_timer(ctx.timestamp() + 10)
        self.total.update((current or 0) + value)
        return None

    def on_timer(self, timestamp: int, ctx: Any) -> Any:
        total = self.total.value()
        self.total.clear()
        return [(ctx.get_current_key(), timestamp, total)]


def build_job(env: sc.StreamEnvironment, data: list[int], shape: str, keys: int, sink: Sink) -> None:
    """Add one of the test job shapes to ``env``."""
    src = env.from_collection(
        data,
        timestamp=lambda v: v,
        watermarks=WatermarkStrategy.for_bounded_out_of_orderness(5) if shape in ("timers", "join") else None,
        name="numbers",
    )
    keyed = src.key_by(lambda v: v % keys)
    if shape == "count":
        out = keyed.process(CountFn()).uid("count")
    elif shape == "reduce":
        out = (
            src.map(lambda v: v * 3)
            .uid("triple")
            .key_by(lambda v: v % keys)
            .reduce(lambda a, b: a + b)
            .uid("sum")
        )
    elif shape == "timers":
        out = keyed.process(TimerFn()).uid("timers")
    elif shape == "join":
        # Multiples of 8 join the other values of the same key within [-7, +3] of event time
        # (the "timers" data are multiples of 4: 16n + 8 joins 16n + 4).
        lefts = src.filter(lambda v: v % 8 == 0).uid("lefts").key_by(lambda v: v // 16 % keys)
        rights = src.filter(lambda v: v % 8 != 0).uid("rights").key_by(lambda v: v // 16 % keys)
        out = (
            lefts.interval_join(rights)
            .between(-7, 3)
            .process(lambda left, right, ctx: (left, right, ctx.timestamp()))
            .uid("join")
        )
    else:  # pragma: no cover
        raise ValueError(shape)
    out.sink_to(sink).uid("out")


def make_env(
    tmp: Path, backend: str, *, every: int | None, batch_size: int, retain: int = 100
) -> sc.StreamEnvironment:
    """An environment with synchronous checkpoints into ``tmp/chk`` (deterministic for tests)."""
    from dataclasses import replace

    env = sc.StreamEnvironment(state_backend=backend, state_dir=tmp / "state", batch_size=batch_size)
    if every is not None:
        env.enable_checkpointing(tmp / "chk", every_records=every, retain=retain)
        env.checkpoint_config = replace(env.checkpoint_config, asynchronous=False)
    return env


def sink_image(checkpoint: Path, uid: str = "out") -> Any:
    """The image a sink stored in a checkpoint."""
    meta = read_metadata(checkpoint)
    return load_operator_image(checkpoint, meta["operators"][uid])


def run(env_factory: Callable[[], tuple[sc.StreamEnvironment, RecordingSink]], **kw: Any) -> list[Any]:
    """Run a job from a factory and return what its recording sink saw."""
    env, sink = env_factory()
    env.execute("test-job", **kw)
    return sink.results
