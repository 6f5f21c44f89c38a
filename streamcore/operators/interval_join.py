"""The interval join: pairs of two keyed streams whose timestamps lie within a relative interval.

``left.key_by(k).interval_join(right.key_by(k)).between(lower, upper)`` joins every left
element ``l`` with every right element ``r`` of the same key where
``l.ts + lower <= r.ts <= l.ts + upper``. Each side buffers its elements in a
time-ordered state (RocksDB key ``keyGroup + joinKey + ts + seq``); an arriving element
probes the other side's buffer over exactly its interval, so a probe reads the entries
that join and nothing else.

>>> import streamcore as sc
>>> env = sc.StreamEnvironment()
>>> clicks = env.from_collection([("ad1", 10), ("ad2", 50)], timestamp=lambda c: c[1])
>>> imps = env.from_collection([("ad1", 5), ("ad1", 12), ("ad2", 20)], timestamp=lambda i: i[1])
>>> (clicks.key_by(lambda c: c[0])
...     .interval_join(imps.key_by(lambda i: i[0]))
...     .between(-10, 0)
...     .process(lambda click, imp, ctx: [(click[1], imp[1], ctx.timestamp())])
...     .execute_and_collect())
[(10, 5, 10)]
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from streamcore.errors import ConfigurationError, KeyEncodingError, StreamcoreError, TimestampError
from streamcore.functions import (
    ONE_VALUE_TYPES,
    OutputTag,
    ProcessJoinFunction,
    function_name,
    one_value_error,
)
from streamcore.operators.base import OperatorRuntime, call_user, user_error
from streamcore.operators.basic import SideOutputs
from streamcore.operators.keyed import KeyedOperator
from streamcore.state.time_index import TimeIndex
from streamcore.time import MAX_TIMESTAMP, MIN_TIMESTAMP

__all__ = [
    "DEFAULT_BUFFER_CACHE_ENTRIES",
    "SCAN_MODES",
    "IntervalJoinContext",
    "IntervalJoinOperator",
    "check_bound",
]

#: how a probe reads the other side's buffer: the exact time range, or every entry of the key.
SCAN_MODES = ("range", "prefix")
#: elements of each side the RocksDB buffer keeps in memory (its recent tier); the heap holds all.
DEFAULT_BUFFER_CACHE_ENTRIES = 65_536

#: names of the two buffers (time-ordered states), left input first.
BUFFER_NAMES = ("left", "right")


def check_bound(value: Any, what: str) -> int:
    """Validate one interval-join bound: an int of milliseconds in the 64-bit range."""
    if type(value) is not int:
        msg = (
            f"interval join {what} must be an int of milliseconds (use streamcore.time.minutes(...) "
            f"and friends), got {value!r} ({type(value).__name__})"
        )
        raise ConfigurationError(msg)
    if not MIN_TIMESTAMP <= value <= MAX_TIMESTAMP:
        msg = f"interval join {what} {value} is outside the range of 64-bit millisecond timestamps"
        raise ConfigurationError(msg)
    return value


class _CallableJoin(ProcessJoinFunction):
    """Adapts a plain ``fn(left, right, ctx)`` to :class:`ProcessJoinFunction`."""

    def __init__(self, fn: Callable[[Any, Any, Any], Any]) -> None:
        self.fn = fn
        self.__qualname__ = function_name(fn)

    def process_element(self, left: Any, right: Any, ctx: Any) -> Any:
        """Call the wrapped function."""
        return self.fn(left, right, ctx)


class IntervalJoinContext:
    """What the join function sees for one pair: both timestamps, the key, outputs.

    ``timestamp()`` is the pair's output timestamp, the later of the two. ``emit(value)``
    adds ``value`` to the main output (as returning or yielding it does);
    ``output(tag, value)`` sends it to a side output. Both carry ``timestamp()``.
    """

    __slots__ = ("_kc", "_out", "_out_ts", "_side", "left_ts", "right_ts", "ts")

    def __init__(self, op: IntervalJoinOperator, side_outputs: SideOutputs) -> None:
        self._kc = op.key_context
        self._side = side_outputs
        self._out: list[Any] = []
        self._out_ts: list[Any] = []
        self.left_ts = MIN_TIMESTAMP
        self.right_ts = MIN_TIMESTAMP
        self.ts = MIN_TIMESTAMP

    def bind_outputs(self, out: list[Any], out_ts: list[Any]) -> None:
        """Where :meth:`emit` appends (the operator's output lists of the current batch)."""
        self._out = out
        self._out_ts = out_ts

    def get_left_timestamp(self) -> int:
        """The timestamp of the left element of the pair."""
        return self.left_ts

    def get_right_timestamp(self) -> int:
        """The timestamp of the right element of the pair."""
        return self.right_ts

    def timestamp(self) -> int:
        """The output timestamp of the pair: ``max(left_ts, right_ts)``."""
        return self.ts

    def get_current_key(self) -> Any:
        """The join key of the pair."""
        return self._kc.key  # type: ignore[union-attr]

    def emit(self, value: Any) -> None:
        """Emit ``value`` on the main output with the pair's timestamp."""
        self._out.append(value)
        self._out_ts.append(self.ts)

    def output(self, tag: OutputTag, value: Any) -> None:
        """Emit ``value`` to the side output ``tag`` with the pair's timestamp."""
        self._side.add(tag, value, self.ts)


class IntervalJoinOperator(KeyedOperator):
    """Joins a left and a right keyed input on equal keys within a relative time interval.

    Emitted pairs (Flink's interval join semantics): with ``lower``/``upper`` the bounds
    after normalisation (an exclusive lower bound becomes ``lower + 1``, an exclusive upper
    bound ``upper - 1``, so both are inclusive), the join function is called exactly once
    for every pair ``(l, r)`` of a left element ``l`` and a right element ``r`` such that

    * ``l`` and ``r`` have equal keys,
    * ``l.ts + lower <= r.ts <= l.ts + upper``, and
    * neither element was late: an element whose timestamp is below the operator's
      watermark when it arrives is dropped (counted per side) or sent to the late-data
      side output of its side, and joins nothing.

    Nothing else is ever passed to the join function. Every output of a pair carries the
    timestamp ``max(l.ts, r.ts)``; duplicates (equal keys and timestamps) are separate
    elements and each joins. With no late input, the outputs are exactly those of the
    brute-force join of the two inputs.

    How: each side buffers its elements in a time-ordered state. An arriving left element
    at ``ts`` probes the right buffer over ``[ts + lower, ts + upper]``; an arriving right
    element probes the left buffer over ``[ts - upper, ts - lower]`` (the same routine with
    negated bounds), then each is buffered. A pair is therefore emitted when its later
    arrival probes, and only then. ``scan="prefix"`` reads every entry of the key and
    filters by time instead (the naive probe, kept for benchmarks).

    Cleanup, by time: a future element of the other side has ``ts >= watermark``, so a
    buffered element of side ``s`` at ``ts`` can still join while ``ts + hi_s >= watermark``
    (``hi_s`` is ``upper`` for the left side, ``-lower`` for the right). Each side keeps an
    expiry index, the sorted list of ``(ts, seq, key)`` of its buffered elements; when the
    watermark advances, the prefix it made unjoinable is cut off and those entries are
    deleted by their exact ``(ts, seq)``, so nothing is ever scanned to find expired
    entries, and the tombstones lie below every later probe's range. An element that
    cannot join anything in the future is probed but not buffered. The final watermark (end
    of input) empties both buffers. A key the other side holds nothing for is not probed at all
    (the buffer's per-key counts). The index is rebuilt from the buffers on restore, so
    checkpoints never carry it.

    Metrics: ``probes`` (reads of the other buffer; ``probes_skipped`` counts elements whose
    key the other side holds nothing for), ``entries_scanned`` (entries the probes read),
    ``matches`` (pairs found), their per-probe ratios, ``key_entries_per_probe`` (live
    entries of the probed keys: what a prefix scan reads), ``late_per_side``,
    ``buffered_per_side`` and ``removed_per_side``.
    """

    def __init__(
        self,
        name: str,
        uid: str,
        fn: ProcessJoinFunction | Callable[[Any, Any, Any], Any],
        key_selectors: list[Callable[[Any], Any]],
        lower: int,
        upper: int,
        *,
        lower_inclusive: bool = True,
        upper_inclusive: bool = True,
        late_tags: tuple[str | None, str | None] = (None, None),
        scan: str = "range",
        buffer_cache_entries: int | None = None,
    ) -> None:
        if len(key_selectors) != 2:
            msg = f"an interval join has two inputs, got {len(key_selectors)} key selectors"
            raise ConfigurationError(msg)
        super().__init__(name, uid, key_selectors, list(late_tags))
        lower = check_bound(lower, "lower bound")
        upper = check_bound(upper, "upper bound")
        # Normalise once: from here on both bounds are inclusive.
        if not lower_inclusive:
            lower += 1
        if not upper_inclusive:
            upper -= 1
        if lower > upper:
            msg = (
                f"interval join {uid!r}: lower bound {lower} > upper bound {upper} "
                "(after making exclusive bounds inclusive) joins nothing; use between(lower, upper) "
                "with lower <= upper"
            )
            raise ConfigurationError(msg)
        if scan not in SCAN_MODES:
            msg = f"interval join scan mode must be one of {SCAN_MODES}, got {scan!r}"
            raise ConfigurationError(msg)
        if isinstance(fn, ProcessJoinFunction):
            self.fn: ProcessJoinFunction = fn
        elif callable(fn):
            self.fn = _CallableJoin(fn)
        else:
            msg = f"interval join process() takes a ProcessJoinFunction or callable, got {type(fn).__name__}"
            raise ConfigurationError(msg)
        self.lower = lower
        self.upper = upper
        self.scan = scan
        self.buffer_cache_entries = (
            DEFAULT_BUFFER_CACHE_ENTRIES if buffer_cache_entries is None else buffer_cache_entries
        )
        # Per side: probe offsets (lo, hi) relative to the arriving element's timestamp.
        # hi is also how far ahead of its own timestamp an element can still join.
        self._offsets = ((lower, upper), (-upper, -lower))
        self.probes = 0
        self.probes_skipped = 0
        self.probe_key_entries = 0
        self.matches = 0
        self.probe_entries_scanned = 0
        self.buffered_per_side = [0, 0]
        self.removed_per_side = [0, 0]
        # The expiry index of each side: ``(ts, seq, key)`` of every buffered element, in
        # time order. Cleanup cuts off the prefix the watermark expired.
        self._expiry = (TimeIndex(), TimeIndex())

    # -- lifecycle ----------------------------------------------------------------------
    def setup(self, runtime: OperatorRuntime) -> None:
        """Create the two buffers (before a restore loads them)."""
        super().setup(runtime)
        cache = self.buffer_cache_entries
        self._buffers = tuple(self.backend.time_ordered_state(n, cache_entries=cache) for n in BUFFER_NAMES)

    def open(self) -> None:
        """Build the context and open the join function."""
        self.side_outputs = SideOutputs(self)
        self.ctx = IntervalJoinContext(self, self.side_outputs)
        self._pe = self.fn.fn if isinstance(self.fn, _CallableJoin) else self.fn.process_element
        call_user(self, self.fn, "open of", self.fn.open, self.ctx)

    def close(self) -> None:
        """Close the join function."""
        call_user(self, self.fn, "close of", self.fn.close)

    # -- elements ------------------------------------------------------------------------
    def process_batch(self, values: list[Any], timestamps: list[int] | None, side: int) -> None:
        """Probe the other side's buffer with every element of the batch, then buffer it."""
        if timestamps is None:
            msg = (
                f"interval join {self.uid!r} needs event-time timestamps on input {BUFFER_NAMES[side]}; "
                "give its source a timestamp assigner (timestamp=...)"
            )
            raise TimestampError(msg)
        keys = self.extract_keys(values, side)
        values, timestamps, keys = self.drop_late(values, timestamps, keys, side)
        if not values:
            return
        self.records_in += len(values)
        out: list[Any] = []
        out_ts: list[int] = []
        ctx = self.ctx
        ctx.bind_outputs(out, out_ts)
        self.backend.begin_batch()
        try:
            self._join_side(values, timestamps, keys, side, out, out_ts)  # type: ignore[arg-type]
        except KeyEncodingError as exc:
            raise self.key_error(exc, side) from exc
        except StreamcoreError:
            raise
        except Exception as exc:
            raise user_error(self, self.fn, "process_element of", exc) from exc
        finally:
            self.backend.end_batch()
        self.records_out += len(out)
        self.output.emit(out, out_ts)
        self.side_outputs.flush()

    def _join_side(
        self,
        values: list[Any],
        timestamps: list[int],
        keys: list[Any],
        side: int,
        out: list[Any],
        out_ts: list[int],
    ) -> None:
        """The one routine of both sides: probe ``[ts + lo, ts + hi]`` of the other buffer, then buffer.

        For the right side ``(lo, hi) = (-upper, -lower)``, and pairs are passed to the
        join function left first. A key the other side holds nothing for is not probed.
        """
        lo_off, hi_off = self._offsets[side]
        own = self._buffers[side]
        other = self._buffers[1 - side]
        is_left = side == 0
        probe = other.range
        if self.scan == "prefix":
            scan_key = other.scan_prefix

            def probe(lo: int, hi: int) -> list[tuple[int, Any]]:
                return [e for e in scan_key() if lo <= e[0] <= hi]

        n_in = len(values)
        kc = self.key_context
        assert kc is not None
        key_bytes = kc.key_bytes_batch(keys)
        # Entries the other side holds per key: a key it holds nothing for is not probed.
        held_counts = other.counts(keys)
        pe = self._pe
        # A plain callable's tuple, dict, str, bytes or scalar is one output; a class must return outputs.
        one_value_is_output = isinstance(self.fn, _CallableJoin)
        ctx = self.ctx
        append = out.append
        ts_append = out_ts.append
        # Timestamps near the ends of the 64-bit range need clamped probe bounds.
        clamp = min(timestamps) + lo_off < MIN_TIMESTAMP or max(timestamps) + hi_off > MAX_TIMESTAMP
        scanned_before = other.entries_scanned
        probes = 0
        key_entries = 0
        matches = 0
        # Probe first, then buffer the whole batch: an element probes only the *other*
        # buffer, so its own side's additions of this batch cannot change what it finds.
        for v, k, kb, ts, held in zip(values, keys, key_bytes, timestamps, held_counts, strict=True):
            if not held:
                continue
            kc.key = k
            kc.key_bytes = kb
            probes += 1
            key_entries += held
            lo = ts + lo_off
            hi = ts + hi_off
            if clamp:
                lo = max(lo, MIN_TIMESTAMP)
                hi = min(hi, MAX_TIMESTAMP)
            rows = probe(lo, hi)
            if rows:
                matches += len(rows)
                for ots, ov in rows:
                    t = ts if ts >= ots else ots
                    ctx.ts = t
                    if is_left:
                        ctx.left_ts = ts
                        ctx.right_ts = ots
                        res = pe(v, ov, ctx)
                    else:
                        ctx.left_ts = ots
                        ctx.right_ts = ts
                        res = pe(ov, v, ctx)
                    if res is not None:
                        if type(res) is not list and (
                            isinstance(res, ONE_VALUE_TYPES) or not hasattr(res, "__iter__")
                        ):
                            if not one_value_is_output:
                                raise one_value_error(self.fn, "process_element of", self.uid, res)
                            append(res)
                            ts_append(t)
                            continue
                        for o in res:
                            append(o)
                            ts_append(t)
        # An element can join future elements of the other side (ts >= watermark) only
        # while ts + hi_off >= watermark: earlier ones were probed but are not buffered.
        keep_from = self.current_watermark - hi_off
        if min(timestamps) < keep_from:
            keep = [i for i, ts in enumerate(timestamps) if ts >= keep_from]
            keys = [keys[i] for i in keep]
            key_bytes = [key_bytes[i] for i in keep]
            timestamps = [timestamps[i] for i in keep]
            values = [values[i] for i in keep]
        seqs = own.add_batch(keys, key_bytes, timestamps, values)
        self._expiry[side].add_many(timestamps, seqs, keys)
        buffered = len(seqs)
        self.probes += probes
        self.probes_skipped += n_in - probes
        self.probe_key_entries += key_entries
        self.matches += matches
        self.probe_entries_scanned += other.entries_scanned - scanned_before
        self.buffered_per_side[side] += buffered

    # -- cleanup -------------------------------------------------------------------------
    def on_watermark(self, watermark: int) -> None:
        """Remove every buffered element that can no longer join.

        Each is deleted by its exact ``(ts, seq)`` (a point tombstone on RocksDB): nothing is read.
        """
        for side in (0, 1):
            index = self._expiry[side]
            if not index:
                continue
            # Elements with ts + hi < watermark can join nothing more; at the end of input, none can.
            hi = self._offsets[side][1]
            if watermark >= MAX_TIMESTAMP:
                expired = index.pop_all()
            else:
                cut = max(watermark - hi - 1, MIN_TIMESTAMP)
                if index.first_ts() > cut:  # type: ignore[operator]
                    continue
                expired = index.pop_until(cut)
            n = len(expired)
            self.backend.begin_batch()
            try:
                self._buffers[side].remove_entries(expired)
            finally:
                self.backend.end_batch()
            self.buffered_per_side[side] -= n
            self.removed_per_side[side] += n

    # -- checkpoints ---------------------------------------------------------------------
    def restore_operator_state(self, image: Any) -> None:
        """Rebuild the expiry index from the restored buffers.

        The index is derived state: every buffered entry's ``(ts, seq, key)`` is in the
        buffers' keys, so checkpoints do not carry it (a RocksDB checkpoint stays
        incremental however large the buffers), and a restore that keeps only some key
        groups rebuilds exactly their part. ``image`` (the index written by earlier
        versions, if any) is ignored.
        """
        for side in (0, 1):
            index = self._expiry[side]
            index.load(self._buffers[side].index_entries())
            self.buffered_per_side[side] = len(index)

    def metrics(self) -> dict[str, Any]:
        """Probes, entries scanned and matches (totals and per probe), late and buffered per side."""
        m = super().metrics()
        probes = self.probes
        m.update(
            {
                "probes": probes,
                "probes_skipped": self.probes_skipped,
                "entries_scanned": self.probe_entries_scanned,
                "matches": self.matches,
                "entries_scanned_per_probe": self.probe_entries_scanned / probes if probes else 0.0,
                "matches_per_probe": self.matches / probes if probes else 0.0,
                # What a prefix scan reads: every live entry the other side holds for the key.
                "key_entries": self.probe_key_entries,
                "key_entries_per_probe": self.probe_key_entries / probes if probes else 0.0,
                "buffered_per_side": list(self.buffered_per_side),
                "removed_per_side": list(self.removed_per_side),
                "scan": self.scan,
                "bounds": [self.lower, self.upper],
            }
        )
        return m
