"""The window operator: assigns elements to windows per key, keeps contents, fires by trigger.

Users build it with ``key_by(...).window(assigner)`` (:class:`streamcore.datastream.WindowedStream`):

>>> import streamcore as sc
>>> from streamcore.windowing import TumblingEventTimeWindows
>>> from streamcore.aggregates import Sum
>>> env = sc.StreamEnvironment()
>>> clicks = env.from_collection([("a", 1), ("b", 3), ("a", 12)], timestamp=lambda c: c[1])
>>> (clicks.key_by(lambda c: c[0]).window(TumblingEventTimeWindows.of(10))
...     .aggregate(Sum(lambda c: 1), lambda key, window, n: (key, window.start, n))
...     .execute_and_collect())
[('a', 0, 1), ('b', 0, 1), ('a', 10, 1)]

Semantics (Flink's): an element goes to every window its assigner gives it. An
event-time window fires when the watermark reaches ``window.max_timestamp()``
(``end - 1``); results carry that timestamp. Its state is kept until the watermark
reaches ``max_timestamp() + allowed_lateness``: an element arriving in between is added
and fires the window again at once, emitting an *updated* result for that key and
window (downstream sees the earlier result and then the update). An element is late
when every window it belongs to is past that point: it goes to the late-data side
output, or is dropped and counted (``late_records``). Session windows merge, with
their contents (``merge`` of accumulators, concatenation of element lists) and timers.

Processing-time windows fire on the job clock, with the window's ``max_timestamp()``
as the result's timestamp; the end of a bounded input does not fire them. Count
windows live in the global window, whose results carry ``MAX_TIMESTAMP``; a partial
count window at the end of the input is not emitted. Both as in Flink.

``aggregate(f)`` emits ``f.get_result(acc)`` only; pass a window function
(``aggregate(f, lambda key, window, result: ...)``) to attach the key and the window.
Keyed operators before a window drop elements behind their own watermark, so assign
watermarks after such operators when the window should see late elements.

Two paths share one state layout (contents per key, with the window as namespace):

* the *aligned* fast path (:mod:`streamcore.operators.window_aligned`), for tumbling and
  sliding event-time windows with the default trigger: batches are folded per window
  and windows fire for all their keys at once;
* the *general* path, here, for everything else (custom triggers, count,
  processing-time and session windows, evictors): element by element through the
  trigger, with one timer per key and window, as Flink's window operator does.

Contents are kept by :mod:`streamcore.operators.window_contents`, session windows'
state windows by :mod:`streamcore.operators.window_merging`.
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Iterator
from typing import Any

from streamcore.aggregates.base import AggregateFunction
from streamcore.errors import (
    ConfigurationError,
    KeyEncodingError,
    StateError,
    StreamcoreError,
    TimestampError,
    UserFunctionError,
)
from streamcore.functions import _Function
from streamcore.operators.base import user_error
from streamcore.operators.keyed import KeyedOperator
from streamcore.operators.window_aligned import AlignedWindowsMixin
from streamcore.operators.window_contents import ACC_STATE, AccumulatorContents, ElementContents
from streamcore.operators.window_functions import (
    ProcessWindowFunction,
    WindowContext,
    WindowFunction,
    bind_user_fn,
)
from streamcore.operators.window_merging import MergingWindowSet
from streamcore.time import MAX_TIMESTAMP
from streamcore.windowing import (
    EventTimeTrigger,
    Evictor,
    GlobalWindow,
    MergingWindowAssigner,
    TimeWindow,
    Trigger,
    TriggerContext,
    TriggerResult,
    WindowAssigner,
    _AlignedWindows,
)

__all__ = ["WindowOperator"]

_CONTINUE = TriggerResult.CONTINUE
#: Accumulators of aligned windows cached in front of a non-heap backend (see AccumulatorContents).
DEFAULT_CACHE_ENTRIES = 16_384


# -- contexts -----------------------------------------------------------------------------
class _AssignerContext:
    __slots__ = ("_op",)

    def __init__(self, op: WindowOperator) -> None:
        self._op = op

    def get_current_processing_time(self) -> int:
        return self._op.clock_now()


class _TriggerContext(TriggerContext):
    """Timers and state of the current key and ``self.ns`` (``merged``: in ``on_merge``)."""

    __slots__ = ("_op", "merged", "ns")

    def __init__(self, op: WindowOperator) -> None:
        self._op = op
        self.ns: Any = None
        self.merged: list[Any] = []

    def get_current_watermark(self) -> int:
        return self._op.current_watermark

    def get_current_processing_time(self) -> int:
        return self._op.clock_now()

    def register_event_time_timer(self, time: int) -> None:
        self._op.timers.register_event_time_timer(time, self.ns)

    def register_processing_time_timer(self, time: int) -> None:
        self._op.timers.register_processing_time_timer(time, self.ns)

    def delete_event_time_timer(self, time: int) -> None:
        self._op.timers.delete_event_time_timer(time, self.ns)

    def delete_processing_time_timer(self, time: int) -> None:
        self._op.timers.delete_processing_time_timer(time, self.ns)

    def get_partitioned_state(self, descriptor: Any) -> Any:
        handle = self._op.backend.get_state(descriptor)
        handle.set_namespace(self.ns)
        return handle

    def merge_partitioned_state(self, descriptor: Any) -> None:
        if getattr(descriptor, "kind", None) != "reducing":
            msg = f"merge_partitioned_state() merges ReducingStateDescriptor state, got {descriptor!r}"
            raise ConfigurationError(msg)
        handle = self._op.backend.get_state(descriptor)
        found = []
        for ns in self.merged:
            handle.set_namespace(ns)
            value = handle.get()
            if value is not None:
                found.append(value)
                handle.clear()
        handle.set_namespace(self.ns)
        for value in found:
            handle.add(value)


class WindowOperator(AlignedWindowsMixin, KeyedOperator):
    """Assigns elements to windows per key, keeps their contents, fires them by trigger.

    Exactly one of ``aggregate`` (incremental: one accumulator per key and window) or
    ``window_fn`` over elements is the core; ``aggregate`` with ``window_fn`` passes the
    aggregate's result to the window function; an ``evictor`` keeps elements and
    aggregates them at firing time. See the module docstring for the semantics.
    """

    def __init__(
        self,
        name: str,
        uid: str,
        key_selector: Callable[[Any], Any],
        assigner: WindowAssigner,
        *,
        trigger: Trigger | None = None,
        evictor: Evictor | None = None,
        allowed_lateness: int = 0,
        late_tag: str | None = None,
        aggregate: AggregateFunction[Any, Any, Any] | None = None,
        window_fn: Any = None,
        fast_path: bool = True,
        cache_entries: int | None = None,
    ) -> None:
        super().__init__(name, uid, [key_selector])
        if aggregate is None and window_fn is None:
            msg = "a window needs an aggregate function or a window function"
            raise ConfigurationError(msg)
        self.assigner = assigner
        self.trigger = trigger if trigger is not None else assigner.get_default_trigger()
        self.evictor = evictor if evictor is not None else assigner.get_default_evictor()
        self.allowed_lateness = allowed_lateness
        self.late_tag = late_tag
        self.agg = aggregate
        self.window_fn = window_fn
        self._event_time = assigner.is_event_time()
        self._merging = isinstance(assigner, MergingWindowAssigner)
        self._acc_mode = aggregate is not None and self.evictor is None
        self._aligned = (
            fast_path
            and isinstance(assigner, _AlignedWindows)
            and self._event_time
            and type(self.trigger) is EventTimeTrigger
            and self.evictor is None
        )
        self._has_clear = isinstance(window_fn, ProcessWindowFunction) and (
            type(window_fn).clear is not ProcessWindowFunction.clear
        )
        self._needs_key = isinstance(window_fn, (ProcessWindowFunction, WindowFunction))
        # A plain callable fn(key, window, value) -> output, called directly on bulk firings.
        self._plain_fn = getattr(window_fn, "plain", None)
        self._init_aligned()
        self.windows_fired = 0
        self.cache_entries = DEFAULT_CACHE_ENTRIES if cache_entries is None else cache_entries

    # -- lifecycle ---------------------------------------------------------------------
    def setup(self, runtime: Any) -> None:
        """Create the keyed state of contents (and of sessions) on the operator's backend."""
        super().setup(runtime)
        kc = self.key_context
        assert kc is not None
        if self._acc_mode:
            cache = self.cache_entries if self._aligned else 0
            self._contents: Any = AccumulatorContents(self.agg, self.backend, kc, cache)  # type: ignore[arg-type]
        else:
            self._contents = ElementContents(self.backend, kc)
        self._sessions = MergingWindowSet(self.backend, self.assigner) if self._merging else None  # type: ignore[arg-type]

    def open(self) -> None:
        """Build the contexts and open the window function."""
        self._ctx = WindowContext(self)
        self._tctx = _TriggerContext(self)
        self._actx = _AssignerContext(self)
        fn = self.window_fn
        self._call = None if fn is None else bind_user_fn(fn, self.agg is not None, self._ctx)
        if isinstance(fn, _Function):
            try:
                fn.open(self._ctx)  # type: ignore[arg-type]
            except StreamcoreError:
                raise
            except Exception as exc:
                raise user_error(self, fn, "open of", exc) from exc

    def close(self) -> None:
        """Close the window function."""
        if isinstance(self.window_fn, _Function):
            self.window_fn.close()

    def _fail(self, exc: Exception) -> Exception:
        """The error to raise for ``exc`` raised while running user code of this operator."""
        if isinstance(exc, KeyEncodingError):
            return self.key_error(exc)
        if isinstance(exc, StreamcoreError):
            return exc
        fn = self.window_fn if self.window_fn is not None else self.agg
        return user_error(self, fn, "window function", exc)

    @contextlib.contextmanager
    def _user_code_batch(self) -> Iterator[None]:
        """One write batch around user code; its errors become clear streamcore errors."""
        self.backend.begin_batch()
        try:
            yield
        except Exception as exc:
            err = self._fail(exc)
            if err is exc:
                raise
            raise err from exc
        finally:
            self.backend.end_batch()

    def _emit(self, out: list[Any], out_ts: list[int]) -> None:
        self.records_out += len(out)
        self.output.emit(out, out_ts)
        self._ctx._side.flush()

    # -- elements ------------------------------------------------------------------------
    def process_batch(self, values: list[Any], timestamps: list[int] | None, side: int) -> None:
        """Assign the batch to windows, fold it into their contents, fire what triggers say."""
        keys = self.extract_keys(values)
        self.records_in += len(values)
        out: list[Any] = []
        out_ts: list[int] = []
        late: list[int] = []
        with self._user_code_batch():
            if self._aligned:
                if timestamps is None:
                    msg = (
                        f"operator {self.uid!r}: event-time windows need element timestamps; pass "
                        "timestamp=... to the source or call assign_timestamps_and_watermarks(...)"
                    )
                    raise TimestampError(msg)
                self._batch_aligned(values, timestamps, keys, out, out_ts, late)
            else:
                self._batch_general(values, timestamps, keys, out, out_ts, late)
        self._emit(out, out_ts)
        if late:
            late.sort()  # the general path visits the batch key by key: back to arrival order
            self.late_records += len(late)
            self.late_per_side[0] += len(late)
            if self.late_tag is not None:
                assert timestamps is not None
                self.output.emit_side(self.late_tag, [values[i] for i in late], [timestamps[i] for i in late])
        self.cleanup_state_incrementally()

    def _cleanup_time(self, window: Any) -> int:
        """When a window's state goes: ``max_timestamp + allowed_lateness`` (event time)."""
        end = window.max_timestamp()
        if self._event_time:
            return min(end + self.allowed_lateness, MAX_TIMESTAMP)
        return end

    def _register_cleanup(self, window: Any, ns: Any) -> None:
        at = self._cleanup_time(window)
        if at >= MAX_TIMESTAMP:
            return  # the end of time: no cleanup timer (global windows)
        if self._event_time:
            self.timers.register_event_time_timer(at, ns)
        else:
            self.timers.register_processing_time_timer(at, ns)

    def _delete_cleanup(self, window: Any, ns: Any) -> None:
        at = self._cleanup_time(window)
        if at >= MAX_TIMESTAMP:
            return
        if self._event_time:
            self.timers.delete_event_time_timer(at, ns)
        else:
            self.timers.delete_processing_time_timer(at, ns)

    def _evaluate(self, key: Any, window: Any, contents: Any, out: list[Any]) -> None:
        """Append the outputs of a firing of ``window`` of ``key`` with ``contents``."""
        agg = self.agg
        if self._acc_mode:
            value = self._contents.results((contents,))[0]
        elif agg is not None:
            value = agg.get_result(agg.add_batch(contents, agg.create_accumulator()))
        else:
            value = contents
        call = self._call
        if call is None:
            out.append(value)
            return
        res = call(key, window, value)
        if res is not None:
            out.extend(res)

    def _fire(self, key: Any, window: Any, state_ns: Any, out: list[Any], out_ts: list[int]) -> None:
        """Fire ``window`` of the current key (contents in ``state_ns``)."""
        contents = self._contents.get(state_ns)
        if contents is None:
            return
        if self.evictor is not None:
            kept = self.evictor.evict_before(contents, window)
            if len(kept) != len(contents):
                self._contents.replace(state_ns, kept)
            contents = kept
        n = len(out)
        self._evaluate(key, window, contents, out)
        self.windows_fired += 1
        out_ts.extend([window.max_timestamp()] * (len(out) - n))

    def _clear_user_state(self, window: Any) -> None:
        if self._has_clear:
            self._ctx.win = window
            self.window_fn.clear(self._ctx)

    # -- general path: element by element through the trigger --------------------------------
    def _batch_general(
        self,
        values: list[Any],
        timestamps: list[int] | None,
        keys: list[Any],
        out: list[Any],
        out_ts: list[int],
        late: list[int],
    ) -> None:
        wm = self.current_watermark
        event = self._event_time
        lateness = self.allowed_lateness
        sessions = self._sessions
        contents = self._contents
        trigger = self.trigger
        tctx = self._tctx
        assign = self.assigner.assign_windows
        actx = self._actx
        cleanup_time = self._cleanup_time
        set_key = self.key_context.set_current_key  # type: ignore[union-attr]
        groups: dict[Any, list[int]] = {}
        for i, k in enumerate(keys):
            g = groups.get(k)
            if g is None:
                groups[k] = [i]
            else:
                g.append(i)
        for key, idxs in groups.items():
            set_key(key)
            if sessions is not None:
                sessions.load()
            # Values not yet added, per window: added in one call before the window fires or at the end.
            buffered: dict[Any, list[Any]] = {}
            registered: set[Any] = set()
            for i in idxs:
                value = values[i]
                ts = timestamps[i] if timestamps is not None else None
                skipped = True
                try:
                    windows = assign(value, ts, actx)
                except StreamcoreError:
                    raise
                except Exception as exc:
                    msg = (
                        f"window assigner {self.assigner!r} of operator {self.uid!r} raised "
                        f"{type(exc).__name__}: {exc}; fix its function or filter the input before it"
                    )
                    raise UserFunctionError(msg) from exc
                for window in windows:
                    if sessions is not None:
                        window = sessions.add_window(window, self._on_merge)
                        ns = (window.start, window.end)
                        if event and cleanup_time(window) <= wm:
                            sessions.retire(ns)
                            continue
                        state_ns = sessions.state_window(ns)
                        contents.add(state_ns, [value])
                    else:
                        if event and cleanup_time(window) <= wm:
                            continue
                        ns = state_ns = window.namespace()
                        buf = buffered.get(ns)
                        if buf is None:
                            buffered[ns] = [value]
                        else:
                            buf.append(value)
                    skipped = False
                    tctx.ns = ns
                    result = trigger.on_element(value, ts, window, tctx)
                    if result is not _CONTINUE:
                        pending = buffered.pop(state_ns, None)
                        if pending:
                            contents.add(state_ns, pending)
                        if result.is_fire():
                            self._fire(key, window, state_ns, out, out_ts)
                        if result.is_purge():
                            contents.clear(state_ns)
                    if ns not in registered:
                        registered.add(ns)
                        self._register_cleanup(window, ns)
                if skipped and event and ts is not None and ts + lateness <= wm:
                    late.append(i)
            for ns, pending in buffered.items():
                contents.add(ns, pending)
            if sessions is not None:
                sessions.persist()

    def _on_merge(
        self, merged: TimeWindow, members: list[TimeWindow], target: Any, folded: list[Any]
    ) -> None:
        """Session windows ``members`` became ``merged``: merge trigger state, timers and contents."""
        if self._event_time and self._cleanup_time(merged) <= self.current_watermark:
            msg = f"operator {self.uid!r}: merging produced window {merged} that is already late"
            raise StateError(msg)
        tctx = self._tctx
        tctx.ns = (merged.start, merged.end)
        tctx.merged = [(m.start, m.end) for m in members]
        self.trigger.on_merge(merged, tctx)
        tctx.merged = []
        for m in members:
            mns = (m.start, m.end)
            tctx.ns = mns
            self.trigger.clear(m, tctx)
            self._delete_cleanup(m, mns)
        if folded:
            self._contents.merge(target, sorted(folded))

    def _window_of(self, ns: Any) -> Any:
        return GlobalWindow() if ns is None else TimeWindow(ns[0], ns[1])

    def _on_timer(self, ts: int, ns: Any, out: list[Any], out_ts: list[int], event_timer: bool) -> None:
        window = self._window_of(ns)
        sessions = self._sessions
        if sessions is not None:
            sessions.load()
            state_ns = sessions.state_window(ns)
            if state_ns is None:
                return  # the window was merged into another one; its timers are stale
        else:
            state_ns = ns
        tctx = self._tctx
        tctx.ns = ns
        if event_timer:
            result = self.trigger.on_event_time(ts, window, tctx)
        else:
            result = self.trigger.on_processing_time(ts, window, tctx)
        key = self.key_context.key  # type: ignore[union-attr]
        if result.is_fire():
            self._fire(key, window, state_ns, out, out_ts)
        if result.is_purge():
            self._contents.clear(state_ns)
        if event_timer == self._event_time and ts == self._cleanup_time(window):
            self._contents.clear(state_ns)
            tctx.ns = ns
            self.trigger.clear(window, tctx)
            self._clear_user_state(window)
            if sessions is not None:
                sessions.retire(ns)
        if sessions is not None:
            sessions.persist()

    def on_event_timer(self, timestamp: int, namespace: Any, out: list[Any], out_ts: list[Any]) -> None:
        """An event-time timer of the current key and window ``namespace`` fired."""
        try:
            self._on_timer(timestamp, namespace, out, out_ts, True)
        except Exception as exc:
            err = self._fail(exc)
            if err is exc:
                raise
            raise err from exc

    def on_processing_time(self, now: int) -> None:
        """Fire processing-time timers due at ``now``; results carry their window's max timestamp."""
        nxt = self.timers.next_processing_time()
        if nxt is None or nxt > now:
            return
        pop = self.timers.pop_processing_timer
        set_key = self.key_context.set_current_key  # type: ignore[union-attr]
        out: list[Any] = []
        out_ts: list[int] = []
        with self._user_code_batch():
            timer = pop(now)
            while timer is not None:
                ts, key, ns = timer
                set_key(key)
                self._on_timer(ts, ns, out, out_ts, False)
                timer = pop(now)
        self._emit(out, out_ts)

    def flush_side_outputs(self) -> None:
        """Emit side outputs of window functions called by timers."""
        self._ctx._side.flush()

    # -- checkpoints ------------------------------------------------------------------------------
    def snapshot_state(self, canonical: bool = False) -> Any:
        """Keyed state (accumulators serialized) plus the fast path's index of pending windows."""
        if self._contents.cache_entries:
            self.backend.begin_batch()
            try:
                self._contents.flush()
            finally:
                self.backend.end_batch()
        image = super().snapshot_state(canonical)
        keyed = image.get("keyed")
        states = keyed.get("states") if isinstance(keyed, dict) else None
        if states and ACC_STATE in states and self._contents.live:
            st = dict(states[ACC_STATE])
            st["rows"] = self._contents.export_rows(st["rows"])
            image = {**image, "keyed": {**keyed, "states": {**states, ACC_STATE: st}}}  # type: ignore[dict-item]
        return image

    def restore_state(self, image: Any) -> None:
        """Load an image of either backend (accumulators deserialized on the heap backend)."""
        if image is None:
            return
        keyed = image.get("keyed")
        states = keyed.get("states") if isinstance(keyed, dict) else None
        if states and ACC_STATE in states and self._contents.live:
            st = dict(states[ACC_STATE])
            st["rows"] = self._contents.import_rows(st["rows"])
            image = {**image, "keyed": {**keyed, "states": {**states, ACC_STATE: st}}}
        super().restore_state(image)

    def metrics(self) -> dict[str, Any]:
        """Counters plus fired windows and (fast path) pending windows."""
        m = super().metrics()
        m["windows_fired"] = self.windows_fired
        if self._aligned:
            m["pending_windows"] = sum(len(k) for k in self._pending.values())
        return m
