"""Busy and backpressured time in a synchronous chain, on a fake clock."""

from __future__ import annotations

from types import SimpleNamespace

from streamcore.observe.timing import BusyTimer


class Clock:
    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now


class Op:
    """Spends ``own`` seconds, then pushes the batch downstream."""

    def __init__(self, uid: str, clock: Clock, own: float, downstream: Op | None = None, sink: bool = False):
        self.uid, self.clock, self.own, self.downstream = uid, clock, own, downstream
        if sink:
            self.sink = object()

    def process_batch(self, values, timestamps, side):
        self.clock.now += self.own
        if self.downstream is not None:
            self.downstream.process_batch(values, timestamps, side)

    def process_watermark(self, watermark):
        pass


class Source:
    def __init__(self, uid: str, clock: Clock, own: float, first: Op) -> None:
        self.uid, self.clock, self.own, self.first = uid, clock, own, first

    def poll(self, split, n):
        self.clock.now += self.own
        self.first.process_batch([1] * n, [0] * n, 0)
        return n


def test_busy_is_own_time_and_backpressure_is_time_spent_downstream():
    clock = Clock()
    sink = Op("sink", clock, 3.0, sink=True)
    mid = Op("mid", clock, 2.0, sink)
    src = Source("src", clock, 1.0, mid)
    latencies: list[tuple[str, float]] = []
    timer = BusyTimer(lambda uid, s: latencies.append((uid, s)), clock=clock)
    timer.instrument(SimpleNamespace(sources=[src], operators=[mid, sink]))
    timer.instrument(SimpleNamespace(sources=[src], operators=[mid, sink]))  # idempotent
    for _ in range(2):
        src.poll(None, 16)
    assert timer.busy == {"src": 2.0, "mid": 4.0, "sink": 6.0}
    assert timer.backpressured == {"src": 10.0, "mid": 6.0, "sink": 0.0}
    assert {uid for uid, _ in latencies} == {"sink"} and len(latencies) == 16  # 8 samples per batch
