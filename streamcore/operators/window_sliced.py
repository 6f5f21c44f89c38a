"""Sliding event-time windows by slices: each element updates one accumulator, not ``size/slide``.

A window ``size`` long sliding by ``slide`` puts every element into ``size/slide``
windows; folding it into each costs that many updates. As Flink SQL's slicing window
aggregation does, :class:`SlicedWindows` cuts time into *slices* of
``gcd(size, slide)`` (aligned on the assigner's offset): an element is folded into the
one accumulator of its key and slice, and a window that fires merges the accumulators of
its ``size/gcd`` slices (a copy of the first, then ``merge`` of the others; ``merge``
mutates its first argument only). Accumulators live in keyed state ``window-slices``,
one per (key, slice) with ``(slice start, slice end)`` as namespace, so snapshots and
both backends cover them unchanged.

It serves an aligned sliding window only when the result cannot tell the difference:
an incremental aggregate whose result does not depend on the order of adds and merges
(:attr:`~streamcore.aggregates.base.AggregateFunction.order_insensitive`; sums of floats
may differ in the last bits), no evictor, the default event-time trigger. Everything
else keeps :mod:`streamcore.operators.window_aligned` (``WindowOperator(slicing=False)``
asks for it).

Semantics are the aligned path's, window by window:

* a window fires when the watermark reaches its ``max_timestamp``, for every key with
  contents in one of its slices, all keys at once;
* an element later than some of its windows' firing but within the allowed lateness is
  added to its slice and fires each such window again at once for its key;
* a slice is dropped when the last window containing it has passed
  ``max_timestamp + allowed_lateness``;
* the index (keys per slice, windows waiting to fire, fired windows kept for late
  elements) goes into the operator's snapshot; its rows of keys carry key groups.

Firing reads each slice once for all its windows: accumulators read for one firing stay
in memory (``_loaded``) until the slice is written or dropped, and the merge of
``combine(...)`` of count/sum/min/max/avg members is one generated loop.
"""

from __future__ import annotations

import heapq
import math
from collections.abc import Callable
from itertools import compress
from typing import Any

from streamcore.aggregates.base import AggregateFunction
from streamcore.errors import StateError
from streamcore.operators.window_contents import AccumulatorContents, _ColumnFolder
from streamcore.operators.window_functions import WindowEvaluator
from streamcore.state.api import KeyContext
from streamcore.windowing import AlignedWindowAssigner, TimeWindow

__all__ = ["SLICES_STATE", "SlicedWindows", "make_merger", "sliceable", "slices_per_window"]

SLICES_STATE = "window-slices"

#: ``combine(dicts) -> {key: merged accumulator}``: merges per key, never changing its inputs.
Merger = Callable[[list[dict[Any, Any]]], dict[Any, Any]]


def sliceable(agg: AggregateFunction[Any, Any, Any] | None, assigner: Any) -> bool:
    """Whether ``agg`` over ``assigner`` may be aggregated by slices (see the module docstring)."""
    return (
        agg is not None
        and isinstance(assigner, AlignedWindowAssigner)
        and assigner.size != assigner.slide
        and bool(getattr(agg, "order_insensitive", False))
    )


def slices_per_window(assigner: AlignedWindowAssigner) -> int:
    """How many slices (of ``gcd(size, slide)``) a window of ``assigner`` spans."""
    return assigner.size // math.gcd(assigner.size, assigner.slide)


# -- merging accumulators of slices -------------------------------------------------------------
_MERGES = {
    "count": ["a[{j}] += b[{j}]"],
    "sum": ["a[{j}] += b[{j}]"],
    "min": [
        "x = b[{j}]",
        "if x is not None:",
        "    c = a[{j}]",
        "    if c is None or x[0] < c[0]:",
        "        a[{j}] = x",
    ],
    "max": [
        "x = b[{j}]",
        "if x is not None:",
        "    c = a[{j}]",
        "    if c is None or x[0] > c[0]:",
        "        a[{j}] = x",
    ],
    "avg": ["x = b[{j}]", "c = a[{j}]", "a[{j}] = (c[0] + x[0], c[1] + x[1])"],
}


def _column_merger(folder: _ColumnFolder) -> Merger:
    """A generated merge of combined accumulators whose slots all hold immutable values."""
    body = []
    for j, kind, _, _ in folder.simple:
        body.extend("                " + line.format(j=j) for line in _MERGES[kind])
    source = "\n".join(
        [
            "def combine(dicts):",
            "    out = {k: a.copy() for k, a in dicts[0].items()}",
            "    get = out.get",
            "    for d in dicts[1:]:",
            "        for k, b in d.items():",
            "            a = get(k)",
            "            if a is None:",
            "                out[k] = b.copy()",
            "            else:",
            *body,
            "    return out",
        ]
    )
    namespace: dict[str, Any] = {}
    exec(compile(source, "<streamcore slice merge>", "exec"), namespace)
    return namespace["combine"]  # type: ignore[no-any-return]


class _Running:
    """Subtraction of slices for ``combine(...)`` of count/sum/avg members (with a count or avg).

    After a window fires, its merged accumulators become the running accumulators of the
    next window: the slices leaving are subtracted, the slices entering are added when
    that window fires; a key whose count drops to 0 leaves. Subtraction is exact for
    ints only: a key whose sums are not ints (floats) is taken out and merged afresh
    from its slices (``dirty``).
    """

    __slots__ = ("add_into", "subtract")

    def __init__(self, folder: _ColumnFolder) -> None:
        merge_body, sub_body, checks = [], [], []
        count_test = None
        for j, kind, _, _ in folder.simple:
            merge_body.extend("                " + line.format(j=j) for line in _MERGES[kind])
            if kind in ("count", "sum"):
                sub_body.append(f"        a[{j}] -= b[{j}]")
            else:  # avg
                sub_body.extend(
                    [
                        f"        x = a[{j}]",
                        f"        y = b[{j}]",
                        f"        a[{j}] = (x[0] - y[0], x[1] - y[1])",
                    ]
                )
            if kind == "sum":
                checks.append(f"type(a[{j}]) is not int")
            elif kind == "avg":
                checks.append(f"type(a[{j}][0]) is not int")
            if count_test is None and kind in ("count", "avg"):
                count_test = f"a[{j}] == 0" if kind == "count" else f"a[{j}][1] == 0"
        assert count_test is not None
        check = " or ".join(checks) or "False"
        source = "\n".join(
            [
                "def add_into(out, dicts):",
                "    get = out.get",
                "    for d in dicts:",
                "        for k, b in d.items():",
                "            a = get(k)",
                "            if a is None:",
                "                out[k] = b.copy()",
                "            else:",
                *merge_body,
                "def subtract(out, d, dirty):",
                "    get = out.get",
                "    for k, b in d.items():",
                "        a = get(k)",
                "        if a is None:",
                "            continue",
                f"        if {check}:",
                "            del out[k]",
                "            dirty.add(k)",
                "            continue",
                *sub_body,
                f"        if {count_test}:",
                "            del out[k]",
            ]
        )
        namespace: dict[str, Any] = {}
        exec(compile(source, "<streamcore slice running>", "exec"), namespace)
        self.add_into: Callable[[dict[Any, Any], list[dict[Any, Any]]], None] = namespace["add_into"]
        self.subtract: Callable[[dict[Any, Any], dict[Any, Any], set[Any]], None] = namespace["subtract"]

    @staticmethod
    def applies(folder: Any) -> bool:
        """Whether ``folder`` is a column folder of count/sum/avg members with a count or avg."""
        if not isinstance(folder, _ColumnFolder) or folder.complex:
            return False
        kinds = {kind for _, kind, _, _ in folder.simple}
        return kinds <= {"count", "sum", "avg"} and bool(kinds & {"count", "avg"})


def make_merger(agg: AggregateFunction[Any, Any, Any], folder: Any) -> Merger:
    """The fastest exact merge of slice accumulators of ``agg`` (``folder`` folds its batches)."""
    if isinstance(folder, _ColumnFolder) and not folder.complex:
        return _column_merger(folder)
    create, merge = agg.create_accumulator, agg.merge

    def combine(dicts: list[dict[Any, Any]]) -> dict[Any, Any]:
        out: dict[Any, Any] = {}
        get = out.get
        missing = out  # never an accumulator
        for d in dicts:
            for k, b in d.items():
                a = get(k, missing)
                # merge() into a fresh accumulator copies b: b stays as the slice holds it.
                out[k] = merge(create() if a is missing else a, b)
        return out

    return combine


# -- the strategy --------------------------------------------------------------------------------
class SlicedWindows:
    """Sliding event-time windows of an order-insensitive aggregate, kept as slices.

    The interface of :class:`~streamcore.operators.window_aligned.AlignedWindows`:
    :meth:`process_batch` per input batch; :meth:`due` and :meth:`fire` per watermark;
    :meth:`snapshot` and :meth:`restore` for the index. Callers open the write batch and
    turn user code errors into operator errors.
    """

    def __init__(
        self,
        assigner: AlignedWindowAssigner,
        allowed_lateness: int,
        contents: AccumulatorContents,
        key_context: KeyContext,
        evaluator: WindowEvaluator,
    ) -> None:
        self._size, self._slide, self._offset = assigner.size, assigner.slide, assigner.offset
        self._g = math.gcd(self._size, self._slide)
        self._lateness = allowed_lateness
        self._contents = contents
        self._kc = key_context
        self._evaluator = evaluator
        self._merge = make_merger(contents.agg, contents.folder)
        # Running accumulators of the next window (count/sum/avg): see _Running.
        self._running = _Running(contents.folder) if _Running.applies(contents.folder) else None
        self._run: dict[Any, Any] | None = None
        self._run_start = 0
        self._dirty: set[Any] = set()
        self._slices: dict[int, dict[Any, None]] = {}  # slice start -> keys with contents
        self._loaded: dict[int, dict[Any, Any]] = {}  # slice start -> {key: accumulator} as read
        self._slice_heap: list[tuple[int, int]] = []  # (when the slice goes, slice start)
        self._scheduled: set[int] = set()  # starts of windows waiting to fire
        self._fire_heap: list[tuple[int, int]] = []  # (max timestamp, start)
        self._retained: set[int] = set()  # fired windows kept for late elements
        self._cleanup_heap: list[tuple[int, int]] = []
        # Keys to fire a retained window for again: elements for it came before the first
        # watermark after a restore.
        self._again: dict[int, dict[Any, None]] = {}

    def pending_windows(self) -> int:
        """Windows waiting for the watermark (all keys)."""
        return len(self._scheduled) + len(self._again)

    # -- geometry ------------------------------------------------------------------------------
    def _windows_of(self, ss: int) -> range:
        """Starts of the windows containing the slice starting at ``ss``, latest first."""
        last = ss - (ss - self._offset) % self._slide
        return range(last, ss + self._g - self._size - 1, -self._slide)

    def _slices_of(self, start: int) -> range:
        """Starts of the slices of the window starting at ``start``."""
        return range(start, start + self._size, self._g)

    # -- elements --------------------------------------------------------------------------------
    def process_batch(
        self,
        values: list[Any],
        timestamps: list[int],
        keys: list[Any],
        wm: int,
        out: list[Any],
        out_ts: list[int],
        late: list[int],
    ) -> None:
        """Fold a batch into its slices at watermark ``wm``; append late indices to ``late``.

        Elements of fired windows within the allowed lateness fire those windows again
        for their key, appending to ``out``/``out_ts``.
        """
        g, offset, size = self._g, self._offset, self._size
        slices = [t - (t - offset) % g for t in timestamps]
        fired_upto = wm - size + 1  # windows starting at or before this have fired
        # A window of a slice starts at or after (slice start + g - size).
        if min(slices) + g - size > fired_upto and max(self._retained, default=fired_upto) <= fired_upto:
            self._fold(slices, keys, values, fired_upto)
            return
        dropped_upto = fired_upto - self._lateness  # ... and at or before this, are gone
        retained = self._retained
        on_time: list[bool] = []
        special: list[tuple[int, list[int], list[int]]] = []
        for i, ss in enumerate(slices):
            windows = self._windows_of(ss)
            if windows[0] <= dropped_upto:
                late.append(i)
                on_time.append(False)
                continue
            refire = [w for w in windows if dropped_upto < w <= fired_upto]
            again = [w for w in windows if w > fired_upto and w in retained]
            if refire or again:
                special.append((i, refire, again))
                on_time.append(False)
            else:
                on_time.append(True)
        if any(on_time):
            self._fold(
                list(compress(slices, on_time)),
                list(compress(keys, on_time)),
                list(compress(values, on_time)),
                fired_upto,
            )
        if special:
            self._late_within_lateness(special, slices, keys, values, fired_upto, out, out_ts)

    def _fold(self, slices: list[int], keys: list[Any], values: list[Any], fired_upto: int) -> None:
        """Fold elements none of whose windows has fired and is kept into their slices, slice by slice."""
        contents = self._contents
        index = self._slices
        g = self._g
        for ss, (ks, vs) in _group_by_slice(slices, keys, values).items():
            if self._run is not None and ss < self._run_start + self._size - self._slide:
                # A slice of a fired (and dropped) window that the running accumulators hold.
                self._run = None
            known = index.get(ss)
            if known is None:
                known = self._new_slice(ss, fired_upto)
            self._loaded.pop(ss, None)
            new_keys = contents.fold((ss, ss + g), ks, vs, known)
            if new_keys:
                known.update(dict.fromkeys(new_keys))

    def _new_slice(self, ss: int, fired_upto: int) -> dict[Any, None]:
        """Index a slice that gets its first contents; schedule its windows that are still open."""
        known: dict[Any, None] = {}
        self._slices[ss] = known
        windows = self._windows_of(ss)
        heapq.heappush(self._slice_heap, (windows[0] + self._size - 1 + self._lateness, ss))
        scheduled, retained = self._scheduled, self._retained
        for w in windows:
            if w > fired_upto and w not in scheduled and w not in retained:
                scheduled.add(w)
                heapq.heappush(self._fire_heap, (w + self._size - 1, w))
        return known

    def _late_within_lateness(
        self,
        special: list[tuple[int, list[int], list[int]]],
        slices: list[int],
        keys: list[Any],
        values: list[Any],
        fired_upto: int,
        out: list[Any],
        out_ts: list[int],
    ) -> None:
        """Elements of fired windows: add one by one, firing those windows again for the element's key."""
        g, size = self._g, self._size
        set_key = self._kc.set_current_key
        contents = self._contents
        evaluate = self._evaluator.evaluate
        self._run = None  # slices of fired windows change: running accumulators no longer hold
        self._dirty.clear()
        for i, refire, again in special:
            key = keys[i]
            ss = slices[i]
            set_key(key)
            known = self._slices.get(ss)
            if known is None:
                known = self._new_slice(ss, fired_upto)
            known[key] = None
            self._loaded.pop(ss, None)
            contents.add((ss, ss + g), [values[i]])
            for w in refire:
                n = len(out)
                evaluate(key, TimeWindow(w, w + size), self._merged_of_current_key(w), out)
                out_ts.extend([w + size - 1] * (len(out) - n))
                self._retain(w)
            for w in again:
                self._again.setdefault(w, {})[key] = None
                heapq.heappush(self._fire_heap, (w + size - 1, w))

    def _merged_of_current_key(self, start: int) -> Any:
        """The current key's accumulator of the window starting at ``start``: its slices merged."""
        g = self._g
        contents = self._contents
        parts = []
        for ss in self._slices_of(start):
            if ss in self._slices:
                acc = contents.get((ss, ss + g))
                if acc is not None:
                    parts.append({0: acc})
        merged = self._merge(parts) if parts else {}
        return merged.get(0)

    def _retain(self, start: int) -> None:
        if start not in self._retained:
            self._retained.add(start)
            heapq.heappush(self._cleanup_heap, (start + self._size - 1 + self._lateness, start))

    # -- watermarks --------------------------------------------------------------------------------
    def due(self, watermark: int) -> bool:
        """Whether ``watermark`` fires a window or drops a window or slice."""
        for heap in (self._fire_heap, self._cleanup_heap, self._slice_heap):
            if heap and heap[0][0] <= watermark:
                return True
        return False

    def fire(self, watermark: int, out: list[Any], out_ts: list[int]) -> None:
        """Fire every window the watermark passed, for all its keys; drop what is past its lateness."""
        heap = self._fire_heap
        lateness, size = self._lateness, self._size
        evaluator = self._evaluator
        while heap and heap[0][0] <= watermark:
            max_ts, start = heapq.heappop(heap)
            window = TimeWindow(start, start + size)
            if start in self._retained:
                # Fired before a restore; fire again for the keys that got elements since.
                again = self._again.pop(start, None)
                if again:
                    self._fire_keys(list(again), window, out, out_ts)
                continue
            if start not in self._scheduled:
                continue
            self._scheduled.discard(start)
            merged = self._merged(start)
            if not merged:
                self._run = None
                continue
            n = len(out)
            keys = list(merged)
            evaluator.evaluate_many(keys, window, list(merged.values()), out)
            out_ts.extend([max_ts] * (len(out) - n))
            if max_ts + lateness <= watermark:
                evaluator.clear_state(keys, window)
            else:
                self._retain(start)
            self._roll(start, merged)
        heap = self._cleanup_heap
        while heap and heap[0][0] <= watermark:
            _, start = heapq.heappop(heap)
            self._retained.discard(start)
            self._again.pop(start, None)
            if evaluator.clears_state:
                evaluator.clear_state(self._keys_of(start), TimeWindow(start, start + size))
        heap = self._slice_heap
        g = self._g
        while heap and heap[0][0] <= watermark:
            _, ss = heapq.heappop(heap)
            self._loaded.pop(ss, None)
            keys_in = self._slices.pop(ss, None)
            if keys_in:
                self._contents.clear_many((ss, ss + g), list(keys_in))

    def _merged(self, start: int) -> dict[Any, Any]:
        """``{key: accumulator}`` of the window starting at ``start``, from the running ones if they fit."""
        run, slices, load = self._run, self._slices, self._load
        if run is None or self._run_start != start:
            self._dirty.clear()
            return self._merge([load(ss) for ss in self._slices_of(start) if ss in slices])
        assert self._running is not None
        entering = range(start + self._size - self._slide, start + self._size, self._g)
        self._running.add_into(run, [load(ss) for ss in entering if ss in slices])
        dirty = self._dirty
        if dirty:  # keys taken out of the running accumulators: merged afresh
            parts = [
                {k: d[k] for k in dirty if k in d}
                for d in (load(ss) for ss in self._slices_of(start) if ss in slices)
            ]
            run.update(self._merge(parts))
            dirty.clear()
        return run

    def _roll(self, start: int, merged: dict[Any, Any]) -> None:
        """Turn the accumulators of the window that fired into the next window's running ones."""
        running = self._running
        if running is None:
            return
        slices = self._slices
        dirty = self._dirty
        for ss in range(start, start + self._slide, self._g):
            if ss in slices:
                running.subtract(merged, self._load(ss), dirty)
        self._run = merged
        self._run_start = start + self._slide

    def _load(self, ss: int) -> dict[Any, Any]:
        """``{key: accumulator}`` of slice ``ss``, read once and kept until it is written or dropped."""
        got = self._loaded.get(ss)
        if got is None:
            keys = list(self._slices[ss])
            accs = self._contents.get_many((ss, ss + self._g), keys)
            got = {k: a for k, a in zip(keys, accs, strict=True) if a is not None}
            self._loaded[ss] = got
        return got

    def _keys_of(self, start: int) -> list[Any]:
        """Keys with contents in the window starting at ``start``."""
        keys: dict[Any, None] = {}
        for ss in self._slices_of(start):
            keys.update(self._slices.get(ss, {}))
        return list(keys)

    def _fire_keys(self, keys: list[Any], window: TimeWindow, out: list[Any], out_ts: list[int]) -> None:
        set_key = self._kc.set_current_key
        evaluate = self._evaluator.evaluate
        for key in keys:
            set_key(key)
            acc = self._merged_of_current_key(window.start)
            if acc is not None:
                n = len(out)
                evaluate(key, window, acc, out)
                out_ts.extend([window.end - 1] * (len(out) - n))

    # -- checkpoints -------------------------------------------------------------------------------
    def snapshot(self) -> dict[str, Any]:
        """The index: ``slices`` ``[key_group, key, slice start]`` rows, ``scheduled`` and ``fired``
        window starts, ``again`` ``[key_group, key, window start]`` rows."""
        kg_of = self._kc.key_group_of
        return {
            "slices": [[kg_of(k), k, ss] for ss, keys in self._slices.items() for k in keys],
            "scheduled": sorted(self._scheduled),
            "fired": sorted(self._retained),
            "again": [[kg_of(k), k, w] for w, keys in self._again.items() for k in keys],
        }

    def restore(self, image: Any) -> None:
        """Rebuild the index from :meth:`snapshot`."""
        if not isinstance(image, dict) or "slices" not in image:
            msg = (
                "this checkpoint holds a sliding window's contents per window, not per slice; "
                "restore it with slicing turned off (WindowOperator(slicing=False), or "
                ".slicing(False) on the windowed stream)"
            )
            raise StateError(msg)
        for _kg, key, ss in image["slices"]:
            known = self._slices.get(ss)
            if known is None:
                known = self._slices[ss] = {}
                last = self._windows_of(ss)[0]
                heapq.heappush(self._slice_heap, (last + self._size - 1 + self._lateness, ss))
            known[key] = None
        for w in image["scheduled"]:
            if w not in self._scheduled:
                self._scheduled.add(w)
                heapq.heappush(self._fire_heap, (w + self._size - 1, w))
        for w in image["fired"]:
            self._retain(w)
        for _kg, key, w in image["again"]:
            if w not in self._again:
                heapq.heappush(self._fire_heap, (w + self._size - 1, w))
            self._again.setdefault(w, {})[key] = None


def _group_by_slice(slices: list[int], keys: list[Any], values: list[Any]) -> dict[int, Any]:
    """``{slice start: (keys, values)}``, in arrival order within each slice."""
    distinct = set(slices)
    if len(distinct) == 1:
        return {slices[0]: (keys, values)}
    out: dict[int, Any] = {}
    if len(distinct) <= 4:  # usual: a batch spans a slice boundary or two
        for ss in sorted(distinct):
            mask = [s == ss for s in slices]
            out[ss] = (list(compress(keys, mask)), list(compress(values, mask)))
        return out
    for s, k, v in zip(slices, keys, values, strict=True):
        grp = out.get(s)
        if grp is None:
            out[s] = ([k], [v])
        else:
            grp[0].append(k)
            grp[1].append(v)
    return out
