"""AsyncWaitOperator by hand: ordering, watermarks as barriers, capacity, timeouts, retries, restore.

Requests sleep for random per-element delays on the operator's event loop, so results
complete out of input order; the properties hold whatever the delays.
"""

from __future__ import annotations

import asyncio
import threading
import time
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

import streamcore as sc
from streamcore.errors import AsyncTimeoutError, ConfigurationError, UserFunctionError
from streamcore.operators.async_wait import AsyncWaitOperator
from streamcore.operators.base import StreamOperator
from streamcore.testing import OperatorHarness


class Log(StreamOperator):
    """Records elements and watermarks in one sequence: ``("e", value, ts)`` / ``("w", wm)``."""

    def __init__(self) -> None:
        super().__init__("log", "log")
        self.events: list[tuple[Any, ...]] = []

    def process_batch(self, values: list[Any], timestamps: list[int] | None, side: int) -> None:
        tss = timestamps if timestamps is not None else [None] * len(values)
        self.events.extend(("e", v, t) for v, t in zip(values, tss, strict=True))

    def receive_watermark(self, edge: int, watermark: int) -> None:
        self.events.append(("w", watermark))

    def receive_idle(self, edge: int, idle: bool) -> None:
        self.events.append(("idle", idle))


class Delayed(sc.AsyncFunction):
    """``[value * 10]`` after ``delays[value]`` seconds; tracks how many requests run at once."""

    def __init__(self, delays: dict[int, float] | None = None) -> None:
        self.delays = delays or {}
        self.running = 0
        self.max_running = 0
        self.calls: list[int] = []
        self.opened = self.closed = False

    async def open(self, ctx: Any) -> None:
        self.opened = True
        self.ctx = ctx

    async def async_invoke(self, value: int) -> list[int]:
        self.calls.append(value)
        self.running += 1
        self.max_running = max(self.max_running, self.running)
        try:
            await asyncio.sleep(self.delays.get(value, 0.0))
        finally:
            self.running -= 1
        return [value * 10]

    async def close(self) -> None:
        self.closed = True


def harness(
    fn: Any,
    *,
    ordered: bool,
    capacity: int = 100,
    timeout_ms: int = 5_000,
    restore_image: Any = None,
    **kw: Any,
) -> Any:
    op = AsyncWaitOperator(
        "async", "async", fn, ordered=ordered, capacity=capacity, timeout_ms=timeout_ms, **kw
    )
    h = OperatorHarness(op, restore_image=restore_image)
    log = Log()
    op.output.connect(log, 0, 0)
    return h, log


# Events: ("e", delay) elements (ids 0, 1, ... in order, ts = id) and ("w",) watermarks.
events_strategy = st.lists(
    st.one_of(
        st.tuples(st.just("e"), st.sampled_from([0.0, 0.0005, 0.001, 0.003, 0.008])),
        st.tuples(st.just("w")),
    ),
    min_size=1,
    max_size=40,
)


def drive(h: OperatorHarness, events: list[tuple[Any, ...]], start_id: int = 0) -> tuple[list[Any], int]:
    """Push ``events``; returns the input sequence (("e", id, ts) / ("w", wm)) and the next id."""
    seq: list[Any] = []
    i = start_id
    wm = -1
    for ev in events:
        if ev[0] == "e":
            h.process_element(i, i)
            seq.append(("e", i, i))
            i += 1
        else:
            wm = max(wm + 1, i - 1)
            h.process_watermark(wm)
            seq.append(("w", wm))
    return seq, i


def delays_of(events: list[tuple[Any, ...]]) -> dict[int, float]:
    out = {}
    i = 0
    for ev in events:
        if ev[0] == "e":
            out[i] = ev[1]
            i += 1
    return out


def expected_output(seq: list[Any]) -> list[Any]:
    return [("e", x[1] * 10, x[2]) if x[0] == "e" else x for x in seq]


@given(events_strategy)
def test_ordered_wait_emits_in_input_order_with_watermarks_in_place(events: list[tuple[Any, ...]]) -> None:
    h, log = harness(Delayed(delays_of(events)), ordered=True)
    with h:
        seq, _ = drive(h, events)
        h.operator.finish()
    assert log.events == expected_output(seq)


def _segments(events: list[Any]) -> list[tuple[set[Any], Any]]:
    """Split a sequence at watermarks: [(elements before, the watermark), ..., (rest, None)]."""
    out: list[tuple[set[Any], Any]] = []
    cur: set[Any] = set()
    for ev in events:
        if ev[0] == "w":
            out.append((cur, ev[1]))
            cur = set()
        else:
            cur.add(ev[1:])
    out.append((cur, None))
    return out


@given(events_strategy)
def test_unordered_wait_never_moves_a_result_across_a_watermark(events: list[tuple[Any, ...]]) -> None:
    h, log = harness(Delayed(delays_of(events)), ordered=False)
    with h:
        seq, _ = drive(h, events)
        h.operator.finish()
    # The same watermarks, and between two of them exactly the results of the elements
    # that arrived between them (in any order).
    assert _segments(log.events) == _segments(expected_output(seq))


class Gated(sc.AsyncFunction):
    """Elements in ``held`` wait until the gate opens; the others answer at once."""

    def __init__(self, held: set[int] | None = None) -> None:
        self.held = held
        self.running = 0
        self.max_running = 0

    async def open(self, ctx: Any) -> None:
        self.gate = asyncio.Event()

    async def async_invoke(self, value: int) -> list[int]:
        self.running += 1
        self.max_running = max(self.max_running, self.running)
        try:
            if self.held is None or value in self.held:
                await self.gate.wait()
        finally:
            self.running -= 1
        return [value * 10]


def wait_for(cond: Any, h: OperatorHarness) -> None:
    """Emit completions between "batches" until ``cond()`` (a hang guard, not a timing assertion)."""
    deadline = time.monotonic() + 30
    while not cond():
        assert time.monotonic() < deadline, "hang guard"
        time.sleep(0.002)
        h.operator.on_processing_time(0)


def test_unordered_wait_lets_fast_results_overtake_slow_ones() -> None:
    fn = Gated(held={0})
    h, log = harness(fn, ordered=False)
    with h:
        h.process_elements([0, 1, 2], [0, 1, 2])
        wait_for(lambda: len(log.events) == 2, h)
        assert [e[1] for e in log.events] == [10, 20]
        h.operator._loop.post(fn.gate.set)
        h.operator.finish()
    assert [e[1] for e in log.events] == [10, 20, 0]


@given(events_strategy, st.data())
def test_restore_at_any_point_reissues_in_flight_elements_nothing_lost_or_duplicated(
    events: list[tuple[Any, ...]], data: st.DataObject
) -> None:
    ordered = data.draw(st.booleans(), label="ordered")
    cut = data.draw(st.integers(0, len(events)), label="cut")
    delays = delays_of(events)
    h1, log1 = harness(Delayed(delays), ordered=ordered)
    with h1:
        seq1, next_id = drive(h1, events[:cut])
        image = h1.snapshot()
        in_image = [row for row in image["queue"] if row[0] == 0]
    h2, log2 = harness(Delayed(delays), ordered=ordered, restore_image=image)
    with h2:
        seq2, _ = drive(h2, events[cut:], next_id)
        h2.operator.finish()
    out = [e for e in log1.events + log2.events if e[0] == "e"]
    expected = [e for e in expected_output(seq1 + seq2) if e[0] == "e"]
    assert sorted(out) == sorted(expected)  # every element exactly once
    emitted_before = {e[1] // 10 for e in log1.events if e[0] == "e"}
    assert {row[1] for row in in_image} == {x[1] for x in seq1 if x[0] == "e"} - emitted_before
    if ordered:
        assert out == expected


def test_the_job_thread_blocks_only_at_capacity() -> None:
    fn = Gated()
    h, log = harness(fn, ordered=True, capacity=7)
    with h:
        h.process_elements(list(range(5)), list(range(5)))  # nothing completes: returns below capacity
        assert h.operator.waits == 0 and log.events == []
        h.operator._loop.post(fn.gate.set)
        h.process_elements(list(range(5, 50)), list(range(5, 50)))
        h.operator.finish()
    assert fn.max_running <= 7
    assert h.operator.max_in_flight == 7 and h.operator.waits > 0
    assert [e[1] for e in log.events] == [i * 10 for i in range(50)]


def test_completions_are_emitted_between_batches_while_sources_are_idle() -> None:
    h, log = harness(Delayed(), ordered=True)
    with h:
        h.process_elements([1, 2], [1, 2])
        wait_for(lambda: len(log.events) == 2, h)
        assert [e[1] for e in log.events] == [10, 20]


def test_open_and_close_run_on_the_loop_with_a_context() -> None:
    fn = Delayed()
    h, _ = harness(fn, ordered=True)
    with h:
        assert fn.opened and fn.ctx.operator_uid == "async"
    assert fn.closed


class Slow(sc.AsyncFunction):
    def __init__(self, fallback: bool) -> None:
        self.fallback = fallback
        self.attempts = 0

    async def async_invoke(self, value: int) -> list[int]:
        self.attempts += 1
        await asyncio.sleep(10)
        return [value]

    def timeout(self, value: int) -> list[Any]:
        if not self.fallback:
            raise RuntimeError("no fallback here")
        return [("timed out", value)]


def test_a_timeout_handler_emits_a_fallback() -> None:
    fn = Slow(fallback=True)
    h, log = harness(fn, ordered=True, timeout_ms=20)
    with h:
        h.process_elements([1, 2], [1, 2])
        h.operator.finish()
    assert [e[1] for e in log.events] == [("timed out", 1), ("timed out", 2)]
    assert h.operator.timeouts == 2


def test_without_a_timeout_handler_a_timeout_fails_naming_the_operator_after_retries() -> None:
    class NoHandler(sc.AsyncFunction):
        attempts = 0

        async def async_invoke(self, value: int) -> list[int]:
            NoHandler.attempts += 1
            await asyncio.sleep(10)
            return [value]

    retry = sc.AsyncRetryStrategy.fixed_delay(3, 1)
    h, _ = harness(NoHandler(), ordered=True, timeout_ms=20, retry=retry)
    with (
        h,
        pytest.raises(AsyncTimeoutError, match=r"operator 'async' timed out on all 3 attempt\(s\) of 20 ms"),
    ):
        h.process_element(5, 5)
        h.operator.finish()
    assert NoHandler.attempts == 3


def test_a_raising_timeout_handler_is_named() -> None:
    h, _ = harness(Slow(fallback=False), ordered=True, timeout_ms=10)
    with (
        h,
        pytest.raises(
            UserFunctionError, match=r"timeout of .*Slow.* of operator 'async' raised RuntimeError"
        ),
    ):
        h.process_element(1, 1)
        h.operator.finish()


class Flaky(sc.AsyncFunction):
    """Fails the first ``failures`` attempts of every element."""

    def __init__(self, failures: int) -> None:
        self.failures = failures
        self.seen: dict[int, int] = {}
        self.lock = threading.Lock()

    async def async_invoke(self, value: int) -> list[int]:
        n = self.seen[value] = self.seen.get(value, 0) + 1
        if n <= self.failures:
            raise ConnectionError(f"attempt {n} refused")
        return [value]


def test_retries_with_backoff_recover_from_transient_failures() -> None:
    fn = Flaky(failures=2)
    retry = sc.AsyncRetryStrategy.exponential_backoff(3, 1, 10)
    h, log = harness(fn, ordered=True, retry=retry)
    with h:
        h.process_elements([1, 2, 3], [1, 2, 3])
        h.operator.finish()
    assert [e[1] for e in log.events] == [1, 2, 3]
    assert fn.seen == {1: 3, 2: 3, 3: 3} and h.operator.retries == 6


def test_retries_exhausted_fail_with_the_last_error_named() -> None:
    h, _ = harness(Flaky(failures=5), ordered=False, retry=sc.AsyncRetryStrategy.fixed_delay(2, 1))
    with (
        h,
        pytest.raises(
            UserFunctionError, match=r"async_invoke .*Flaky.* of operator 'async' raised ConnectionError"
        ),
    ):
        h.process_element(1, 1)
        h.operator.finish()


def test_retry_on_result_retries_empty_results() -> None:
    class EmptyFirst(sc.AsyncFunction):
        calls = 0

        async def async_invoke(self, value: int) -> list[int]:
            EmptyFirst.calls += 1
            return [] if EmptyFirst.calls == 1 else [value]

    retry = sc.AsyncRetryStrategy.fixed_delay(3, 1, retry_on_result=lambda r: not r)
    h, log = harness(EmptyFirst(), ordered=True, retry=retry)
    with h:
        h.process_element(7, 7)
        h.operator.finish()
    assert [e[1] for e in log.events] == [7]


def test_returning_one_value_instead_of_a_list_is_an_error() -> None:
    class Dict(sc.AsyncFunction):
        async def async_invoke(self, value: int) -> Any:
            return {"v": value}

    h, _ = harness(Dict(), ordered=True)
    with h, pytest.raises(UserFunctionError, match=r"returned a dict: a dict is one value"):
        h.process_element(1, 1)
        h.operator.finish()


def test_a_failing_open_is_named() -> None:
    class BadOpen(sc.AsyncFunction):
        async def open(self, ctx: Any) -> None:
            raise OSError("pool refused")

        async def async_invoke(self, value: int) -> list[int]:
            return [value]

    with pytest.raises(
        UserFunctionError, match=r"open of .*BadOpen.* of operator 'async' raised OSError: pool refused"
    ):
        harness(BadOpen(), ordered=True)


def test_bad_configuration_is_rejected() -> None:
    env = sc.StreamEnvironment()
    s = env.from_collection([1])
    with pytest.raises(ConfigurationError, match="takes an AsyncFunction"):
        sc.AsyncDataStream.ordered_wait(s, lambda x: x)  # type: ignore[arg-type]
    with pytest.raises(ConfigurationError, match="capacity"):
        sc.AsyncDataStream.unordered_wait(s, Delayed(), capacity=0)
    with pytest.raises(ConfigurationError, match="timeout_ms"):
        sc.AsyncDataStream.unordered_wait(s, Delayed(), timeout_ms=-1)
    with pytest.raises(ConfigurationError, match="max_attempts"):
        sc.AsyncRetryStrategy(max_attempts=0)

    class NotAsync(sc.AsyncFunction):
        def async_invoke(self, value: Any) -> Any:  # type: ignore[override]
            return [value]

    with pytest.raises(ConfigurationError, match="async def"):
        sc.AsyncDataStream.ordered_wait(s, NotAsync())


def test_the_runtime_calls_non_keyed_async_operators_between_batches(monkeypatch: pytest.MonkeyPatch) -> None:
    calls: list[int] = []
    real = AsyncWaitOperator.on_processing_time

    def spy(self: AsyncWaitOperator, now: int) -> None:
        calls.append(now)
        real(self, now)

    monkeypatch.setattr(AsyncWaitOperator, "on_processing_time", spy)
    env = sc.StreamEnvironment(batch_size=2)
    out = sc.AsyncDataStream.unordered_wait(env.from_collection(list(range(10))), Delayed(), timeout_ms=5_000)
    assert sorted(out.execute_and_collect()) == [i * 10 for i in range(10)]
    assert len(calls) >= 5  # once after every batch


def test_idleness_is_forwarded_only_after_the_elements_in_flight_left() -> None:
    fn = Gated()
    h, log = harness(fn, ordered=False)
    with h:
        h.process_elements([1, 2], [1, 2])
        h.operator.receive_idle(h.edges[0], True)
        assert log.events == []  # held back: results are still to come
        h.operator._loop.post(fn.gate.set)
        wait_for(lambda: len(log.events) == 3, h)
        assert sorted(log.events[:2]) == [("e", 10, 1), ("e", 20, 2)] and log.events[2] == ("idle", True)
        h.operator.receive_idle(h.edges[0], False)
        assert log.events[-1] == ("idle", False)
