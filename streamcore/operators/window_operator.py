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

* the *aligned* fast path (:class:`~streamcore.operators.window_aligned.AlignedWindows`,
  a strategy the operator owns), for tumbling and sliding event-time windows with the
  default trigger: batches are folded per window and windows fire for all their keys
  at once;
* its *sliced* variant (:class:`~streamcore.operators.window_sliced.SlicedWindows`) for
  sliding windows of an order-insensitive aggregate: contents per key and slice of
  ``gcd(size, slide)``, merged when a window fires (``slicing=False`` turns it off);
* the *session slots* path (:class:`~streamcore.operators.window_sessions.SessionSlots`)
  for event-time sessions with a fixed gap, an aggregate and the default trigger: each
  key's sessions in one state value, merged in memory a batch at a time, fired by
  watermark without timers (``session_slots=False`` turns it off);
* the *general* path, here, for everything else (custom triggers, count,
  processing-time and session windows, evictors): element by element through the
  trigger, with one timer per key and window, as Flink's window operator does.

Contents are kept by :mod:`streamcore.operators.window_contents` through the state
layer's bulk operations (the same code on every backend), session windows' state
windows by :mod:`streamcore.operators.window_merging`; fired contents become outputs
through :class:`~streamcore.operators.window_functions.WindowEvaluator`.
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
from streamcore.functions import Function
from streamcore.operators.base import call_user, user_error
from streamcore.operators.keyed import KeyedOperator
from streamcore.operators.window_aligned import AlignedWindows
from streamcore.operators.window_contents import AccumulatorContents, ElementContents, make_folder
from streamcore.operators.window_functions import WindowContext, WindowEvaluator
from streamcore.operators.window_merging import SESSIONS_STATE, MergingWindowSet
from streamcore.operators.window_sessions import SessionSlots, slots_apply
from streamcore.operators.window_sliced import SLICES_STATE, SlicedWindows, sliceable, slices_per_window
from streamcore.time import MAX_TIMESTAMP
from streamcore.windowing import (
    AlignedWindowAssigner,
    EventTimeTrigger,
    Evictor,
    GlobalWindow,
    MergingWindowAssigner,
    TimeWindow,
    Trigger,
    TriggerContext,
    TriggerResult,
    WindowAssigner,
)

__all__ = ["WindowOperator"]

_CONTINUE = TriggerResult.CONTINUE
#: Accumulators of aligned windows a serializing backend caches in front of its store
#: (:meth:`~streamcore.state.handles.ValueState.hold_live_values`).
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


class WindowOperator(KeyedOperator):
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
        slicing: bool = True,
        session_slots: bool = True,
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
        #: Whether the aligned fast path serves this operator (built in ``setup``).
        self.aligned = (
            fast_path
            and isinstance(assigner, AlignedWindowAssigner)
            and self._event_time
            and type(self.trigger) is EventTimeTrigger
            and self.evictor is None
        )
        #: Whether the aligned path keeps sliding windows as slices (:mod:`.window_sliced`).
        self.sliced = self.aligned and slicing and self._acc_mode and sliceable(aggregate, assigner)
        self.cache_entries = DEFAULT_CACHE_ENTRIES if cache_entries is None else cache_entries
        self._evaluator: WindowEvaluator | None = None
        #: Whether :class:`.SessionSlots` serves this (session) window operator.
        self.session_slots = (
            fast_path and session_slots and slots_apply(assigner, self.trigger, self.evictor, aggregate)
        )
        # The fast path's strategy: aligned, sliced or session slots (None: the general path).
        self._aligned_windows: AlignedWindows | SlicedWindows | SessionSlots | None = None

    @property
    def windows_fired(self) -> int:
        """Firings so far (one per key and window)."""
        return 0 if self._evaluator is None else self._evaluator.fired

    # -- lifecycle ---------------------------------------------------------------------
    def setup(self, runtime: Any) -> None:
        """Create the keyed state of contents (and of sessions), the evaluator and the aligned path."""
        super().setup(runtime)
        kc = self.key_context
        assert kc is not None
        if self.session_slots:
            # Sessions keep their accumulators in their own state (window_sessions).
            self._contents = None
            self._sessions = None
            self._ctx = WindowContext(self, per_window_state=False)
            folder = make_folder(self.agg)  # type: ignore[arg-type]
            self._evaluator = WindowEvaluator(
                self.agg, self.window_fn, folder.results, self._ctx, kc.set_current_key
            )
            self._aligned_windows = SessionSlots(
                self.assigner.gap,  # type: ignore[attr-defined]
                self.allowed_lateness,
                self.agg,  # type: ignore[arg-type]
                self.backend,
                kc,
                self._evaluator,
                self.cache_entries,
            )
            return
        if self._acc_mode:
            cache = self.cache_entries if self.aligned else 0
            if self.sliced:
                # A key has an accumulator per slice from its oldest open window's to the newest:
                # the cache holds as many slices per key as a tumbling window holds windows.
                cache *= slices_per_window(self.assigner) + 1
                self._contents: Any = AccumulatorContents(self.agg, self.backend, cache, SLICES_STATE)  # type: ignore[arg-type]
            else:
                self._contents = AccumulatorContents(self.agg, self.backend, cache)  # type: ignore[arg-type]
        else:
            self._contents = ElementContents(self.backend)
        self._sessions = MergingWindowSet(self.backend, self.assigner) if self._merging else None  # type: ignore[arg-type]
        self._ctx = WindowContext(self, per_window_state=not self._merging)
        results = self._contents.results if self._acc_mode else None
        self._evaluator = WindowEvaluator(self.agg, self.window_fn, results, self._ctx, kc.set_current_key)
        if self.sliced:
            self._aligned_windows = SlicedWindows(
                self.assigner,  # type: ignore[arg-type]
                self.allowed_lateness,
                self._contents,
                kc,
                self._evaluator,
            )
        elif self.aligned:
            self._aligned_windows = AlignedWindows(
                self.assigner,  # type: ignore[arg-type]
                self.allowed_lateness,
                self._contents,
                kc,
                self._evaluator,
            )

    def open(self) -> None:
        """Build the trigger and assigner contexts and open the window function."""
        self._tctx = _TriggerContext(self)
        self._actx = _AssignerContext(self)
        fn = self.window_fn
        if isinstance(fn, Function):
            call_user(self, fn, "open of", fn.open, self._ctx)

    def close(self) -> None:
        """Close the window function."""
        fn = self.window_fn
        if isinstance(fn, Function):
            call_user(self, fn, "close of", fn.close)

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
        self._ctx.flush_side_outputs()

    # -- elements ------------------------------------------------------------------------
    def process_batch(self, values: list[Any], timestamps: list[int] | None, side: int) -> None:
        """Assign the batch to windows, fold it into their contents, fire what triggers say."""
        keys = self.extract_keys(values)
        self.records_in += len(values)
        out: list[Any] = []
        out_ts: list[int] = []
        late: list[int] = []
        with self._user_code_batch():
            aligned = self._aligned_windows
            if aligned is not None:
                if timestamps is None:
                    msg = (
                        f"operator {self.uid!r}: event-time windows need element timestamps; pass "
                        "timestamp=... to the source or call assign_timestamps_and_watermarks(...)"
                    )
                    raise TimestampError(msg)
                aligned.process_batch(values, timestamps, keys, self.current_watermark, out, out_ts, late)
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
        self._evaluator.evaluate(key, window, contents, out)  # type: ignore[union-attr]
        out_ts.extend([window.max_timestamp()] * (len(out) - n))

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
            self._evaluator.clear_state((key,), window)  # type: ignore[union-attr]
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

    def process_watermark(self, watermark: int) -> None:
        """Fire the aligned windows the watermark passed (all keys at once), then timers; forward it."""
        aligned = self._aligned_windows
        if aligned is not None and aligned.due(watermark):
            out: list[Any] = []
            out_ts: list[int] = []
            with self._user_code_batch():
                aligned.fire(watermark, out, out_ts)
            self._emit(out, out_ts)
        super().process_watermark(watermark)

    def flush_side_outputs(self) -> None:
        """Emit side outputs of window functions called by timers."""
        self._ctx.flush_side_outputs()

    # -- checkpoints ------------------------------------------------------------------------------
    def restore_state(self, image: Any) -> None:
        """Load a snapshot; session slots refuse one of the general path's layout (canonical images).

        Raises:
            StateError: sessions of the general path (``window-sessions`` rows) restored into slots.
        """
        if self.session_slots and image:
            states = (image.get("keyed") or {}).get("states") or {}
            old = states.get(SESSIONS_STATE) if isinstance(states, dict) else None
            if isinstance(old, dict) and old.get("rows"):
                msg = (
                    f"operator {self.uid!r}: this checkpoint holds session windows in the general "
                    "path's layout (window-sessions); restore it with session slots off "
                    "(WindowOperator(session_slots=False), or .session_slots(False) on the windowed stream)"
                )
                raise StateError(msg)
        super().restore_state(image)

    def snapshot_operator_state(self) -> Any:
        """The aligned path's (key, window) pairs as ``{"windows": [[key_group, key, start, end, fired]]}``.

        The sliced path's index is ``{"slices": {...}}`` (:meth:`.SlicedWindows.snapshot`).
        Contents are keyed state: the backend snapshots them (with live accumulators
        encoded, and written back from its cache first).
        """
        aligned = self._aligned_windows
        if aligned is None:
            return None
        if isinstance(aligned, SlicedWindows):
            return {"slices": aligned.snapshot()}
        if isinstance(aligned, SessionSlots):
            return {"session-slots": aligned.snapshot()}
        return {"windows": aligned.snapshot()}

    def restore_operator_state(self, image: Any) -> None:
        """Rebuild the aligned (or sliced) path's index from :meth:`snapshot_operator_state`.

        Raises:
            StateError: the image holds the other layout (per window vs per slice).
        """
        aligned = self._aligned_windows
        if not image or aligned is None:
            return
        if isinstance(aligned, SessionSlots):
            aligned.restore(image.get("session-slots", ()))
            return
        if isinstance(aligned, SlicedWindows):
            if image.get("windows") == []:
                return  # nothing was pending in the per-window layout
            aligned.restore(image.get("slices", image))
        elif "slices" in image:
            msg = (
                f"operator {self.uid!r}: this checkpoint holds sliding windows as slices; restore it with "
                "slicing on (the default) and an order-insensitive aggregate"
            )
            raise StateError(msg)
        else:
            aligned.restore(image.get("windows", ()))

    def metrics(self) -> dict[str, Any]:
        """Counters plus fired windows and (fast path) pending windows."""
        m = super().metrics()
        m["windows_fired"] = self.windows_fired
        if self._aligned_windows is not None:
            m["pending_windows"] = self._aligned_windows.pending_windows()
        return m
