"""The interval join: Flink's semantics against a brute-force oracle, lateness, cleanup, probe accounting."""

from __future__ import annotations

import doctest
import random
import tempfile
from collections import Counter
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

import streamcore as sc
from streamcore.errors import ConfigurationError, KeySelectorError, TimestampError, UserFunctionError
from streamcore.operators import interval_join as interval_join_module
from streamcore.operators.base import OperatorRuntime, SnapshotContext, StreamOperator
from streamcore.operators.interval_join import IntervalJoinOperator
from streamcore.serde import msgpack_dumps, msgpack_loads
from streamcore.state.factory import StateBackendFactory
from streamcore.time import MAX_TIMESTAMP, MIN_TIMESTAMP, ManualClock

BACKENDS = ["heap", "rocksdb"]
SCANS = ["range", "prefix"]

# An element is (id, key, ts); left ids and right ids never collide.
Element = tuple[int, Any, int]
RIGHT_ID = 100_000


def _key(e: Element) -> Any:
    return e[1]


def _ts(e: Element) -> int:
    return e[2]


def _pair(left: Element, right: Element, ctx: Any) -> list[tuple[int, int, int, int, int]]:
    return [(left[0], right[0], ctx.get_left_timestamp(), ctx.get_right_timestamp(), ctx.timestamp())]


def oracle(lefts: list[Element], rights: list[Element], lower: int, upper: int) -> Counter[tuple[Any, ...]]:
    """The brute-force join with inclusive bounds: what the operator must emit, as a multiset."""
    return Counter(
        (le[0], r[0], le[2], r[2], max(le[2], r[2]))
        for le in lefts
        for r in rights
        if le[1] == r[1] and le[2] + lower <= r[2] <= le[2] + upper
    )


def effective(lower: int, upper: int, lower_excl: bool, upper_excl: bool) -> tuple[int, int]:
    return lower + lower_excl, upper - upper_excl


@contextmanager
def state_dir(backend: str) -> Iterator[str | None]:
    if backend == "heap":
        yield None
    else:
        with tempfile.TemporaryDirectory(prefix="sc-ij-test-") as tmp:
            yield tmp


def run_engine(
    lefts: list[Element],
    rights: list[Element],
    lower: int,
    upper: int,
    *,
    backend: str = "heap",
    scan: str = "range",
    lower_excl: bool = False,
    upper_excl: bool = False,
    batch_size: int = 1024,
    disorder: int | None = None,
    late_tags: bool = False,
    right_first: bool = False,
    fn: Any = _pair,
    buffer_cache_entries: int | None = None,
) -> dict[str, Any]:
    """Run the join through the engine; returns outputs, their timestamps, late side outputs, metrics."""
    with state_dir(backend) as tmp:
        env = sc.StreamEnvironment(state_backend=backend, state_dir=tmp, batch_size=batch_size)
        wm = None if disorder is None else sc.WatermarkStrategy.for_bounded_out_of_orderness(disorder)
        if right_first:
            rs = env.from_collection(rights, timestamp=_ts, watermarks=wm, name="rights")
            ls = env.from_collection(lefts, timestamp=_ts, watermarks=wm, name="lefts")
        else:
            ls = env.from_collection(lefts, timestamp=_ts, watermarks=wm, name="lefts")
            rs = env.from_collection(rights, timestamp=_ts, watermarks=wm, name="rights")
        builder = ls.key_by(_key).interval_join(rs.key_by(_key)).between(lower, upper).scan(scan)
        if buffer_cache_entries is not None:
            builder = builder.buffer_cache_entries(buffer_cache_entries)
        if lower_excl:
            builder = builder.lower_bound_exclusive()
        if upper_excl:
            builder = builder.upper_bound_exclusive()
        tag_l, tag_r = sc.OutputTag("late-left"), sc.OutputTag("late-right")
        if late_tags:
            builder = builder.side_output_left_late_data(tag_l).side_output_right_late_data(tag_r)
        joined = builder.process(fn).uid("join")
        out = sc.CollectSink()
        joined.sink_to(out)
        late_l, late_r = sc.CollectSink(), sc.CollectSink()
        if late_tags:
            joined.get_side_output(tag_l).sink_to(late_l)
            joined.get_side_output(tag_r).sink_to(late_r)
        result = env.execute("interval-join-test")
    return {
        "out": out.results,
        "ts": out.timestamps,
        "late_left": late_l.results,
        "late_right": late_r.results,
        "metrics": result.metrics["join"],
    }


# -- the harness: the operator driven directly ---------------------------------------------


class Collect(StreamOperator):
    """Captures what an operator emits on one edge."""

    def __init__(self) -> None:
        super().__init__("collect", "collect")
        self.values: list[Any] = []
        self.timestamps: list[Any] = []

    def process_batch(self, values: list[Any], timestamps: list[int] | None, side: int) -> None:
        self.values.extend(values)
        self.timestamps.extend(timestamps if timestamps is not None else [None] * len(values))


class Harness:
    """An :class:`IntervalJoinOperator` on a real backend, fed batch by batch."""

    def __init__(self, backend: str, tmp: str | None, lower: int, upper: int, **kw: Any) -> None:
        self.factory = StateBackendFactory(backend, tmp, ManualClock())
        self.factory.open()
        self.op = IntervalJoinOperator(
            "join",
            "join",
            kw.pop("fn", _pair),
            [_key, _key],
            lower,
            upper,
            late_tags=("late-l", "late-r"),
            **kw,
        )
        self.op.setup(OperatorRuntime(self.factory.clock, 128, self.factory))
        self.edges = [self.op.add_input_edge(), self.op.add_input_edge()]
        self.out, self.late = Collect(), [Collect(), Collect()]
        self.op.output.connect(self.out, 0, self.out.add_input_edge())
        for side, tag in enumerate(("late-l", "late-r")):
            self.op.output.connect(self.late[side], 0, self.late[side].add_input_edge(), tag)

    def open(self) -> Harness:
        self.op.open()
        return self

    def push(self, side: int, elements: list[Element]) -> None:
        self.op.process_batch(list(elements), [e[2] for e in elements], side)

    def watermark(self, wm: int, side: int | None = None) -> None:
        for s in (0, 1) if side is None else (side,):
            self.op.receive_watermark(self.edges[s], wm)

    def buffered(self) -> dict[str, list[tuple[Any, int]]]:
        """The buffers' contents per side, as sorted (key, ts) pairs, read from the backend."""
        image = self.op.backend.snapshot(True)["time_ordered"]
        return {side: sorted((row[0], row[1]) for row in image.get(side, [])) for side in ("left", "right")}

    def close(self) -> None:
        self.op.close()
        self.factory.close()


@contextmanager
def harness(backend: str, lower: int, upper: int, **kw: Any) -> Iterator[Harness]:
    with state_dir(backend) as tmp:
        h = Harness(backend, tmp, lower, upper, **kw)
        try:
            yield h.open()
        finally:
            h.close()


# -- hypothesis strategies -------------------------------------------------------------------


@st.composite
def arrivals(draw: st.DrawFn, id_base: int, n_keys: int, span: int, jitter_max: int) -> list[Element]:
    """Elements in arrival order: sorted by ts + jitter, so each is at most ``jitter_max`` late."""
    raw = draw(
        st.lists(st.tuples(st.integers(0, n_keys - 1), st.integers(-20, span)), min_size=1, max_size=40)
    )
    # Jitter at the maximum often: such elements arrive exactly at the watermark's edge.
    jitter_st = st.integers(0, jitter_max) | st.just(jitter_max)
    jitter = draw(st.lists(jitter_st, min_size=len(raw), max_size=len(raw)))
    elements = [(id_base + i, k, ts) for i, (k, ts) in enumerate(raw)]
    order = sorted(range(len(elements)), key=lambda i: (elements[i][2] + jitter[i], i))
    return [elements[i] for i in order]


@st.composite
def join_cases(draw: st.DrawFn, late: bool = False) -> dict[str, Any]:
    n_keys = draw(st.sampled_from([1, 2, 3, 40]))
    span = draw(st.sampled_from([10, 30, 400]))
    disorder = draw(st.integers(0, 15))
    # Within the bound, no element is late; beyond it, some are.
    jitter_max = disorder + draw(st.integers(1, 40)) if late else disorder
    bound = st.integers(-4, 4) | st.integers(-25, 25)
    lower, upper = sorted((draw(bound), draw(bound)))
    return {
        "lefts": draw(arrivals(0, n_keys, span, jitter_max)),
        "rights": draw(arrivals(RIGHT_ID, n_keys, span, jitter_max)),
        "lower": lower,
        "upper": upper,
        "lower_excl": draw(st.booleans()),
        "upper_excl": draw(st.booleans()),
        "batch_size": draw(st.one_of(st.integers(1, 8), st.integers(1, 1024))),
        "disorder": disorder,
        # RocksDB's recent tier: written through, spilled often, or the default (kept in memory).
        "buffer_cache_entries": draw(st.sampled_from([0, 2, None])),
    }


# -- the property tests ------------------------------------------------------------------------


@pytest.mark.parametrize("scan", SCANS)
@pytest.mark.parametrize("backend", BACKENDS)
@given(case=join_cases())
def test_output_equals_brute_force_join(backend: str, scan: str, case: dict[str, Any]) -> None:
    lo, hi = effective(case["lower"], case["upper"], case["lower_excl"], case["upper_excl"])
    if lo > hi:
        with pytest.raises(ConfigurationError, match="empty"):
            run_engine(
                [],
                [],
                case["lower"],
                case["upper"],
                lower_excl=case["lower_excl"],
                upper_excl=case["upper_excl"],
            )
        return
    run = run_engine(**case, backend=backend, scan=scan)
    assert Counter(run["out"]) == oracle(case["lefts"], case["rights"], lo, hi)
    # Every output carries max(left.ts, right.ts) as its timestamp.
    assert run["ts"] == [o[4] for o in run["out"]]
    m = run["metrics"]
    assert m["late_per_side"] == [0, 0]
    assert m["buffered_per_side"] == [0, 0]
    assert m["removed_per_side"][0] <= len(case["lefts"]) and m["removed_per_side"][1] <= len(case["rights"])
    assert m["matches"] == len(run["out"])
    if scan == "range":
        assert m["entries_scanned"] == m["matches"]
    else:
        assert m["entries_scanned"] == m["key_entries"]
    assert m["matches"] <= m["key_entries"]


@pytest.mark.parametrize("backend", BACKENDS)
@given(case=join_cases(late=True))
def test_late_elements_go_to_side_outputs_and_never_join(backend: str, case: dict[str, Any]) -> None:
    case["lower_excl"] = case["upper_excl"] = False
    run = run_engine(**case, backend=backend, late_tags=True)
    late_l, late_r = run["late_left"], run["late_right"]
    assert run["metrics"]["late_per_side"] == [len(late_l), len(late_r)]
    on_time_l = [e for e in case["lefts"] if e not in late_l]
    on_time_r = [e for e in case["rights"] if e not in late_r]
    assert Counter(run["out"]) == oracle(on_time_l, on_time_r, case["lower"], case["upper"])
    assert run["metrics"]["buffered_per_side"] == [0, 0]


@pytest.mark.parametrize("backend", BACKENDS)
@given(case=join_cases(), data=st.data())
def test_watermarks_remove_exactly_what_can_no_longer_join(
    backend: str, case: dict[str, Any], data: Any
) -> None:
    """Harness: after every watermark W, each buffered element can still join an element at or after W."""
    lower, upper = case["lower"], case["upper"]
    lefts, rights, disorder = case["lefts"], case["rights"], case["disorder"]
    # "tightest": each side's watermark is the smallest timestamp still to come on it, the
    # most aggressive watermark that leaves nothing late (late = ts < watermark), so elements
    # arrive at exactly the watermark. "bounded": what bounded out-of-orderness emits.
    tightest = data.draw(st.booleans())
    with harness(backend, lower, upper, buffer_cache_entries=case["buffer_cache_entries"]) as h:
        queues = [list(lefts), list(rights)]
        max_ts = [MIN_TIMESTAMP, MIN_TIMESTAMP]
        if tightest:
            for side in (0, 1):
                h.watermark(min((e[2] for e in queues[side]), default=MAX_TIMESTAMP - 1), side)
        while queues[0] or queues[1]:
            side = data.draw(st.sampled_from([s for s in (0, 1) if queues[s]]))
            n = data.draw(st.integers(1, 6))
            batch, queues[side] = queues[side][:n], queues[side][n:]
            h.push(side, batch)
            max_ts[side] = max([max_ts[side]] + [e[2] for e in batch])
            if tightest:
                h.watermark(min((e[2] for e in queues[side]), default=MAX_TIMESTAMP - 1), side)
            elif max_ts[side] > MIN_TIMESTAMP:
                h.watermark(max_ts[side] - disorder - data.draw(st.integers(0, 1)), side)
            wm = h.op.current_watermark
            buffered = h.buffered()
            assert all(ts + upper >= wm for _, ts in buffered["left"]), (wm, buffered)
            assert all(ts - lower >= wm for _, ts in buffered["right"]), (wm, buffered)
        h.watermark(MAX_TIMESTAMP)
        assert h.buffered() == {"left": [], "right": []}
        assert h.op.buffered_per_side == [0, 0]
        assert Counter(h.out.values) == oracle(lefts, rights, lower, upper)


# -- bound combinations: one test each, named by its condition ----------------------------------

LEFT_AT_100 = [(1, "k", 100)]
RIGHTS_90_TO_110 = [(RIGHT_ID + ts, "k", ts) for ts in range(90, 111)]


def joined_right_timestamps(backend: str, right_first: bool, lower: int, upper: int, **kw: Any) -> list[int]:
    run = run_engine(
        LEFT_AT_100, RIGHTS_90_TO_110, lower, upper, backend=backend, right_first=right_first, **kw
    )
    return sorted(o[3] for o in run["out"])


bound_params = pytest.mark.parametrize(
    ("backend", "right_first"), [(b, rf) for b in BACKENDS for rf in (False, True)]
)


@bound_params
def test_inclusive_bounds_join_at_both_edges(backend: str, right_first: bool) -> None:
    assert joined_right_timestamps(backend, right_first, -3, 2) == list(range(97, 103))


@bound_params
def test_exclusive_lower_bound_drops_the_lower_edge(backend: str, right_first: bool) -> None:
    got = joined_right_timestamps(backend, right_first, -3, 2, lower_excl=True)
    assert got == list(range(98, 103))


@bound_params
def test_exclusive_upper_bound_drops_the_upper_edge(backend: str, right_first: bool) -> None:
    got = joined_right_timestamps(backend, right_first, -3, 2, upper_excl=True)
    assert got == list(range(97, 102))


@bound_params
def test_both_bounds_exclusive_keep_only_the_interior(backend: str, right_first: bool) -> None:
    got = joined_right_timestamps(backend, right_first, -3, 2, lower_excl=True, upper_excl=True)
    assert got == list(range(98, 102))


@bound_params
def test_zero_width_interval_joins_equal_timestamps_only(backend: str, right_first: bool) -> None:
    assert joined_right_timestamps(backend, right_first, 0, 0) == [100]


@bound_params
def test_negative_interval_joins_only_earlier_rights(backend: str, right_first: bool) -> None:
    assert joined_right_timestamps(backend, right_first, -8, -5) == [92, 93, 94, 95]


@bound_params
def test_positive_interval_joins_only_later_rights(backend: str, right_first: bool) -> None:
    assert joined_right_timestamps(backend, right_first, 4, 7) == [104, 105, 106, 107]


@bound_params
def test_exclusive_bounds_one_apart_from_zero_leave_a_single_point(backend: str, right_first: bool) -> None:
    got = joined_right_timestamps(backend, right_first, -1, 1, lower_excl=True, upper_excl=True)
    assert got == [100]


@bound_params
def test_interval_beyond_every_right_joins_nothing(backend: str, right_first: bool) -> None:
    assert joined_right_timestamps(backend, right_first, 50, 60) == []


@pytest.mark.parametrize("backend", BACKENDS)
def test_duplicates_of_key_and_timestamp_all_join(backend: str) -> None:
    lefts = [(1, "k", 10), (2, "k", 10)]
    rights = [(RIGHT_ID + 1, "k", 10), (RIGHT_ID + 2, "k", 10), (RIGHT_ID + 3, "k", 10)]
    run = run_engine(lefts, rights, 0, 0, backend=backend)
    assert sorted((o[0], o[1]) for o in run["out"]) == [(le[0], r[0]) for le in lefts for r in rights]


@pytest.mark.parametrize("backend", BACKENDS)
def test_different_keys_never_join(backend: str) -> None:
    lefts = [(1, "a", 10), (2, ("t", 1), 10), (3, 7, 10)]
    rights = [(RIGHT_ID + 1, "b", 10), (RIGHT_ID + 2, ("t", 2), 10), (RIGHT_ID + 3, 7, 10)]
    run = run_engine(lefts, rights, -5, 5, backend=backend)
    assert [(o[0], o[1]) for o in run["out"]] == [(3, RIGHT_ID + 3)]


@pytest.mark.parametrize("backend", BACKENDS)
def test_timestamps_at_the_ends_of_the_64_bit_range(backend: str) -> None:
    lefts = [(1, "k", MIN_TIMESTAMP), (2, "k", MAX_TIMESTAMP - 1)]
    rights = [(RIGHT_ID + 1, "k", MIN_TIMESTAMP + 3), (RIGHT_ID + 2, "k", MAX_TIMESTAMP)]
    run = run_engine(lefts, rights, -10, 10, backend=backend)
    assert sorted((o[0], o[1]) for o in run["out"]) == [(1, RIGHT_ID + 1), (2, RIGHT_ID + 2)]
    assert run["metrics"]["buffered_per_side"] == [0, 0]


# -- configuration errors ------------------------------------------------------------------------


def _builder() -> Any:
    env = sc.StreamEnvironment()
    a = env.from_collection([(1, "k", 1)], timestamp=_ts)
    b = env.from_collection([(2, "k", 1)], timestamp=_ts)
    return a.key_by(_key).interval_join(b.key_by(_key))


def test_between_with_lower_above_upper_is_a_configuration_error() -> None:
    with pytest.raises(ConfigurationError, match=r"between\(5, 1\)"):
        _builder().between(5, 1)


@pytest.mark.parametrize("bounds", [(1.5, 2), (True, 2), ("1", 2), (0, None), (0, 2**63)])
def test_bounds_must_be_int_milliseconds(bounds: tuple[Any, Any]) -> None:
    with pytest.raises(ConfigurationError, match="bound"):
        _builder().between(*bounds)


@pytest.mark.parametrize(
    ("lower", "upper", "lower_excl", "upper_excl"),
    [(0, 0, True, False), (0, 0, False, True), (0, 1, True, True)],
)
def test_exclusive_bounds_that_leave_an_empty_interval_are_rejected_at_build_time(
    lower: int, upper: int, lower_excl: bool, upper_excl: bool
) -> None:
    builder = _builder().between(lower, upper)
    if lower_excl:
        builder.lower_bound_exclusive()
    if upper_excl:
        builder.upper_bound_exclusive()
    with pytest.raises(ConfigurationError, match="empty"):
        builder.process(_pair)


def test_process_needs_between_a_function_and_a_known_scan_mode() -> None:
    with pytest.raises(ConfigurationError, match="between"):
        _builder().process(_pair)
    with pytest.raises(ConfigurationError, match="ProcessJoinFunction"):
        _builder().between(0, 1).process(42)
    with pytest.raises(ConfigurationError, match="scan"):
        _builder().scan("full")
    with pytest.raises(ConfigurationError, match="OutputTag"):
        _builder().side_output_left_late_data("late")
    for bad in (-1, 1.5, "many"):
        with pytest.raises(ConfigurationError, match="buffer_cache_entries"):
            _builder().buffer_cache_entries(bad)  # type: ignore[arg-type]


def test_interval_join_takes_a_keyed_stream() -> None:
    env = sc.StreamEnvironment()
    a = env.from_collection([1]).key_by(lambda x: x)
    with pytest.raises(ConfigurationError, match="KeyedStream"):
        a.interval_join(env.from_collection([1]))


def test_operator_normalises_exclusive_bounds_once() -> None:
    op = IntervalJoinOperator(
        "j", "j", _pair, [_key, _key], -3, 2, lower_inclusive=False, upper_inclusive=False
    )
    assert (op.lower, op.upper) == (-2, 1)
    with pytest.raises(ConfigurationError, match="lower bound"):
        IntervalJoinOperator("j", "j", _pair, [_key, _key], 1, 1, upper_inclusive=False)


# -- lateness ------------------------------------------------------------------------------------


@pytest.mark.parametrize("backend", BACKENDS)
def test_late_elements_without_a_side_output_are_dropped_and_counted(backend: str) -> None:
    with harness(backend, -5, 5) as h:
        h.push(0, [(1, "k", 100)])
        h.watermark(100)
        h.push(1, [(RIGHT_ID + 1, "k", 99), (RIGHT_ID + 2, "k", 100)])  # 99 is late
        h.push(0, [(2, "k", 50)])  # late
        assert [(o[0], o[1]) for o in h.out.values] == [(1, RIGHT_ID + 2)]
        assert h.op.late_per_side == [1, 1]
        assert h.late[0].values == [(2, "k", 50)] and h.late[1].values == [(RIGHT_ID + 1, "k", 99)]


def test_late_elements_are_counted_when_nothing_reads_the_side_output() -> None:
    lefts = [(1, "k", 100), (2, "k", 10)]
    run = run_engine(lefts, [(RIGHT_ID + 1, "k", 12)], -5, 5, batch_size=1, disorder=0, right_first=True)
    assert run["out"] == []
    assert run["metrics"]["late_per_side"] == [1, 0]


# -- cleanup and state ---------------------------------------------------------------------------


@pytest.mark.parametrize("backend", BACKENDS)
def test_cleanup_after_a_watermark_keeps_only_elements_that_can_still_join(backend: str) -> None:
    # between(-10, 5): a left at ts can join rights up to ts + 5, a right at ts lefts up to ts + 10.
    with harness(backend, -10, 5) as h:
        h.push(0, [(i, f"k{i % 3}", ts) for i, ts in enumerate([0, 10, 20, 30, 40])])
        h.push(1, [(RIGHT_ID + i, f"k{i % 3}", ts) for i, ts in enumerate([0, 10, 20, 30, 40])])
        h.watermark(26)
        # Left ts + 5 >= 26 -> ts >= 21; right ts + 10 >= 26 -> ts >= 16.
        assert [ts for _, ts in sorted(h.buffered()["left"], key=lambda r: r[1])] == [30, 40]
        assert [ts for _, ts in sorted(h.buffered()["right"], key=lambda r: r[1])] == [20, 30, 40]
        assert h.op.buffered_per_side == [2, 3]
        h.watermark(36)
        assert [ts for _, ts in h.buffered()["left"]] == [40]
        assert sorted(ts for _, ts in h.buffered()["right"]) == [30, 40]
        h.watermark(MAX_TIMESTAMP)
        assert h.buffered() == {"left": [], "right": []}
        assert h.op.metrics()["buffered_per_side"] == [0, 0]


@pytest.mark.parametrize("backend", BACKENDS)
def test_elements_stay_buffered_until_the_watermark_passes_their_last_partner_time(backend: str) -> None:
    # An element at exactly the watermark is not late, so a buffered element whose last
    # possible partner time equals the watermark must still be there.
    with harness(backend, -5, 5) as h:
        h.push(0, [(1, "k", 100)])  # joins rights up to 105
        h.push(1, [(RIGHT_ID + 1, "k", 90)])  # joins lefts up to 95
        h.watermark(105)
        assert h.buffered()["left"] == [("k", 100)]
        h.push(1, [(RIGHT_ID + 2, "k", 105)])
        h.push(0, [(2, "k", 105)])
        assert sorted((o[0], o[1]) for o in h.out.values) == [(1, RIGHT_ID + 2), (2, RIGHT_ID + 2)]
        h.watermark(106)
        assert ("k", 100) not in h.buffered()["left"]


@pytest.mark.parametrize("backend", BACKENDS)
def test_an_element_whose_interval_ends_at_the_watermark_is_still_buffered(backend: str) -> None:
    # between(-5, 0): a left at ts joins rights up to ts itself; at ts == watermark it still can.
    with harness(backend, -5, 0) as h:
        h.watermark(105)
        h.push(0, [(1, "k", 105)])
        assert h.buffered()["left"] == [("k", 105)]
        h.push(1, [(RIGHT_ID, "k", 105)])
        assert [(o[0], o[1]) for o in h.out.values] == [(1, RIGHT_ID)]


@pytest.mark.parametrize("backend", BACKENDS)
def test_an_element_that_can_join_nothing_more_is_not_buffered(backend: str) -> None:
    # between(-10, -5): a left at ts joins rights in [ts - 10, ts - 5], all before the watermark here.
    with harness(backend, -10, -5) as h:
        h.push(1, [(RIGHT_ID, "k", 95)])
        h.watermark(100)
        h.push(0, [(1, "k", 100)])
        assert [(o[0], o[1]) for o in h.out.values] == [(1, RIGHT_ID)]
        assert h.buffered()["left"] == []
        assert h.op.buffered_per_side[0] == 0


# -- probe accounting ----------------------------------------------------------------------------


@pytest.mark.parametrize("backend", BACKENDS)
def test_range_probes_read_only_the_entries_that_join(backend: str) -> None:
    rng = random.Random(3)
    rights = [(RIGHT_ID + i, rng.choice(["hot", "a", "b"]), ts) for i, ts in enumerate(range(0, 2000, 2))]
    with harness(backend, -20, 0) as h:
        h.push(1, rights)
        h.watermark(900)  # range-deletes (tombstones) every right entry with ts < 920
        for i, ts in enumerate(range(950, 2000, 37)):
            before_scanned, before_matches, before_probes = (
                h.op.probe_entries_scanned,
                h.op.matches,
                h.op.probes,
            )
            h.push(0, [(i, "hot", ts)])
            scanned = h.op.probe_entries_scanned - before_scanned
            matches = h.op.matches - before_matches
            assert h.op.probes == before_probes + 1
            assert matches == sum(1 for r in rights if r[1] == "hot" and ts - 20 <= r[2] <= ts)
            assert matches <= scanned <= matches + 1


@pytest.mark.parametrize("backend", BACKENDS)
def test_prefix_probes_read_every_entry_of_the_key(backend: str) -> None:
    rights = [(RIGHT_ID + i, "hot" if i % 2 else "cold", ts) for i, ts in enumerate(range(0, 400, 2))]
    with harness(backend, -20, 0, scan="prefix") as h:
        h.push(1, rights)
        hot = sum(1 for r in rights if r[1] == "hot")
        for i, ts in enumerate(range(100, 400, 50)):
            before_scanned, before_matches = h.op.probe_entries_scanned, h.op.matches
            h.push(0, [(i, "hot", ts)])
            assert h.op.probe_entries_scanned - before_scanned == hot
            assert h.op.matches - before_matches == sum(
                1 for r in rights if r[1] == "hot" and ts - 20 <= r[2] <= ts
            )


def test_metrics_report_probes_matches_late_and_buffered_per_side() -> None:
    lefts = [(1, "k", 10), (2, "k", 20), (3, "x", 20)]
    rights = [(RIGHT_ID + 1, "k", 12), (RIGHT_ID + 2, "k", 18)]
    m = run_engine(lefts, rights, -5, 5)["metrics"]
    # Lefts arrive first (nothing to probe), then each right probes the lefts of key "k":
    # 12 joins 10 (not 20), 18 joins 20 (not 10).
    assert (m["probes"], m["probes_skipped"], m["matches"]) == (2, 3, 2)
    assert m["entries_scanned"] == 2 and m["entries_scanned_per_probe"] == 1.0
    assert m["matches_per_probe"] == 1.0
    assert m["late_per_side"] == [0, 0] and m["buffered_per_side"] == [0, 0]
    assert m["removed_per_side"] == [3, 2] and m["scan"] == "range" and m["bounds"] == [-5, 5]


# -- the join function and its context -------------------------------------------------------------


class TaggingJoin(sc.ProcessJoinFunction):
    """Emits with ``yield`` and ``ctx.emit``, and mirrors every pair to a side output."""

    tag = sc.OutputTag("pairs")

    def open(self, ctx: Any) -> None:
        self.opened = True

    def process_element(self, left: Element, right: Element, ctx: Any) -> Iterator[Any]:
        ctx.output(self.tag, (ctx.get_current_key(), left[0], right[0]))
        ctx.emit(("emitted", left[0], right[0]))
        yield ("yielded", left[0], right[0], ctx.timestamp())


@pytest.mark.parametrize("backend", BACKENDS)
def test_join_function_yields_emits_and_writes_side_outputs(backend: str) -> None:
    fn = TaggingJoin()
    with state_dir(backend) as tmp:
        env = sc.StreamEnvironment(state_backend=backend, state_dir=tmp)
        ls = env.from_collection([(1, "k", 10)], timestamp=_ts)
        rs = env.from_collection([(RIGHT_ID, "k", 13)], timestamp=_ts)
        joined = ls.key_by(_key).interval_join(rs.key_by(_key)).between(0, 5).process(fn)
        side = sc.CollectSink()
        joined.get_side_output(TaggingJoin.tag).sink_to(side)
        main = sc.CollectSink()
        joined.sink_to(main)
        env.execute()
    assert fn.opened
    assert sorted(main.results) == [("emitted", 1, RIGHT_ID), ("yielded", 1, RIGHT_ID, 13)]
    assert main.timestamps == [13, 13]
    assert side.results == [("k", 1, RIGHT_ID)] and side.timestamps == [13]


def test_a_raising_join_function_names_the_operator_and_function() -> None:
    def boom(left: Element, right: Element, ctx: Any) -> None:
        raise RuntimeError("nope")

    with pytest.raises(UserFunctionError, match=r"boom.*'join'.*RuntimeError: nope"):
        run_engine([(1, "k", 1)], [(2, "k", 1)], 0, 0, fn=boom)


def test_a_raising_key_selector_is_a_key_selector_error() -> None:
    env = sc.StreamEnvironment()
    a = env.from_collection([(1, "k", 1)], timestamp=_ts).key_by(lambda e: e[7])
    b = env.from_collection([(2, "k", 1)], timestamp=_ts).key_by(_key)
    a.interval_join(b).between(0, 0).process(_pair).sink_to(lambda v: None)
    with pytest.raises(KeySelectorError):
        env.execute()


def test_inputs_without_timestamps_are_rejected() -> None:
    env = sc.StreamEnvironment()
    a = env.from_collection([(1, "k", 1)]).key_by(_key)
    b = env.from_collection([(2, "k", 1)]).key_by(_key)
    a.interval_join(b).between(0, 0).process(_pair).sink_to(lambda v: None)
    with pytest.raises(TimestampError, match="timestamp assigner"):
        env.execute()


# -- snapshot -> new operator -> restore -> continue ---------------------------------------------


@pytest.mark.parametrize(("first", "second"), [("heap", "heap"), ("heap", "rocksdb"), ("rocksdb", "heap")])
def test_snapshot_restore_and_continue_equals_an_uninterrupted_run(first: str, second: str) -> None:
    rng = random.Random(11)
    lefts = [(i, rng.randrange(4), ts) for i, ts in enumerate(range(0, 300, 3))]
    rights = [(RIGHT_ID + i, rng.randrange(4), ts) for i, ts in enumerate(range(1, 300, 4))]

    def feed(h: Harness, lo_ts: int, hi_ts: int) -> None:
        for start in range(lo_ts, hi_ts, 30):
            h.push(0, [e for e in lefts if start <= e[2] < start + 30])
            h.push(1, [e for e in rights if start <= e[2] < start + 30])
            h.watermark(start + 30 - 10)

    with harness(first, -12, 7) as h1:
        feed(h1, 0, 150)
        image = msgpack_loads(msgpack_dumps(h1.op.snapshot_state(SnapshotContext(1, canonical=True))))
        buffered_before = h1.buffered()
        outputs = list(h1.out.values)
    with state_dir(second) as tmp:
        h2 = Harness(second, tmp, -12, 7)
        try:
            h2.op.restore_state(image)
            h2.open()
            assert h2.buffered() == buffered_before
            assert h2.op.buffered_per_side == [len(buffered_before["left"]), len(buffered_before["right"])]
            h2.watermark(150 - 10)
            feed(h2, 150, 300)
            h2.watermark(MAX_TIMESTAMP)
            outputs += h2.out.values
            assert h2.buffered() == {"left": [], "right": []}
        finally:
            h2.close()
    assert Counter(outputs) == oracle(lefts, rights, -12, 7)


@pytest.mark.parametrize("backend", BACKENDS)
def test_restore_without_the_expiry_index_rebuilds_it_from_the_buffers(backend: str) -> None:
    lefts = [(1, "a", 10), (2, "b", 20), (3, "a", 20)]
    with harness(backend, -5, 5) as h1:
        h1.push(0, lefts)
        image = msgpack_loads(msgpack_dumps(h1.op.snapshot_state(SnapshotContext(1, canonical=True))))
    image["operator"] = None
    with state_dir(backend) as tmp:
        h2 = Harness(backend, tmp, -5, 5)
        try:
            h2.op.restore_state(image)
            h2.open()
            assert h2.op.buffered_per_side == [3, 0]
            h2.push(1, [(RIGHT_ID, "a", 15)])
            assert [(o[0], o[1]) for o in h2.out.values] == [(1, RIGHT_ID), (3, RIGHT_ID)]
            h2.watermark(MAX_TIMESTAMP)
            assert h2.buffered() == {"left": [], "right": []}
        finally:
            h2.close()


def test_module_doctests() -> None:
    failures, tests = doctest.testmod(interval_join_module)
    assert tests > 0 and failures == 0
