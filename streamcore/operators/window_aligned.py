"""The fast path of the window operator: tumbling and sliding event-time windows, fired per window.

With the default event-time trigger, when a window fires depends on the window alone,
never on the key. So instead of one timer per (key, window) the operator keeps an index
of the (key, window) pairs with contents, and fires a window for all its keys at once:

* a batch is grouped by window and folded per window
  (:meth:`~streamcore.operators.window_contents.AccumulatorContents.fold`);
* ``_pending`` holds, per window, the keys waiting for the watermark; ``_retained`` the
  keys of fired windows kept for late elements until ``max_timestamp + allowed_lateness``;
  two heaps order the windows by firing and by cleanup time;
* an element later than its window's firing but within the lateness is added and fires
  that key's window again at once, as the event-time trigger does;
* the index goes into the operator's snapshot as ``[key_group, key, start, end, fired]``
  rows, so it follows the keys when key groups move.

:class:`AlignedWindows` is a strategy the window operator owns; it is given its
collaborators (assigner, lateness, contents, key context, evaluator) and nothing else.
"""

from __future__ import annotations

import heapq
from itertools import compress
from typing import Any

from streamcore.operators.window_contents import AccumulatorContents, ElementContents
from streamcore.operators.window_functions import WindowEvaluator
from streamcore.state.api import KeyContext
from streamcore.windowing import AlignedWindowAssigner, TimeWindow

__all__ = ["AlignedWindows"]


class AlignedWindows:
    """The aligned fast path of :class:`~streamcore.operators.window_operator.WindowOperator`.

    Interface: :meth:`process_batch` per input batch; :meth:`due` and :meth:`fire` per
    watermark; :meth:`snapshot` and :meth:`restore` for the index of pending windows
    (keyed contents are in keyed state, which the operator snapshots). Callers open the
    write batch and turn user code errors into operator errors.
    """

    def __init__(
        self,
        assigner: AlignedWindowAssigner,
        allowed_lateness: int,
        contents: AccumulatorContents | ElementContents,
        key_context: KeyContext,
        evaluator: WindowEvaluator,
    ) -> None:
        self._size, self._slide, self._offset = assigner.size, assigner.slide, assigner.offset
        self._lateness = allowed_lateness
        self._contents = contents
        self._kc = key_context
        self._evaluator = evaluator
        # (key, window) pairs waiting to fire, and fired ones kept for late elements.
        self._pending: dict[tuple[int, int], dict[Any, None]] = {}
        self._retained: dict[tuple[int, int], dict[Any, None]] = {}
        self._fire_heap: list[tuple[int, int, int]] = []
        self._cleanup_heap: list[tuple[int, int, int]] = []

    def pending_windows(self) -> int:
        """(key, window) pairs waiting for the watermark."""
        return sum(len(keys) for keys in self._pending.values())

    # -- elements ------------------------------------------------------------------------
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
        """Fold a batch into its open windows at watermark ``wm``; append late indices to ``late``.

        Elements of fired windows within the allowed lateness fire those windows again,
        appending to ``out``/``out_ts``.
        """
        size, slide, offset = self._size, self._slide, self._offset
        # Latest window of each element; it is the one that fires last.
        starts = [t - (t - offset) % slide for t in timestamps]
        fired_upto = wm - size + 1  # windows starting at or before this have fired
        # Every window of an element starts after (latest start - size).
        oldest = min(starts) if size == slide else min(starts) - size + 1
        if oldest > fired_upto:
            self._fold_new(starts, timestamps, keys, values)
            return
        dropped_upto = fired_upto - self._lateness  # ... and at or before this, are gone
        on_time: list[int] = []
        refire: list[tuple[int, int]] = []
        for i, (s, t) in enumerate(zip(starts, timestamps, strict=True)):
            if s <= dropped_upto:
                late.append(i)
                continue
            if s > fired_upto and s - slide <= t - size:
                on_time.append(i)  # the only window of the element is open: the common case
                continue
            first = True
            w = s
            while w > t - size and w > dropped_upto:
                if w <= fired_upto:
                    refire.append((i, w))
                elif first:
                    on_time.append(i)
                    first = False
                w -= slide
        if on_time:
            self._fold_new(
                [starts[i] for i in on_time],
                [timestamps[i] for i in on_time],
                [keys[i] for i in on_time],
                [values[i] for i in on_time],
                open_after=fired_upto,
            )
        if refire:
            self._refire(refire, keys, values, out, out_ts)

    def _fold_new(
        self,
        starts: list[int],
        timestamps: list[int],
        keys: list[Any],
        values: list[Any],
        open_after: int | None = None,
    ) -> None:
        """Fold elements into every one of their windows that is still open (starts after ``open_after``)."""
        size, slide = self._size, self._slide
        if size == slide:
            for start, (ks, vs) in _group_by_start(starts, keys, values).items():
                self._fold_window(start, ks, vs)
            return
        # Sliding: the j-th window of an element starts j slides before its latest one.
        n = len(starts)
        by_window: dict[int, list[int]] = {}
        for j in range(-(-size // slide)):
            d = j * slide
            ws = [s - d for s in starts] if d else starts
            mask = [
                w > t - size and (open_after is None or w > open_after)
                for w, t in zip(ws, timestamps, strict=True)
            ]
            for start, idx in _group_by_start(
                list(compress(ws, mask)), list(compress(range(n), mask)), None
            ).items():
                have = by_window.get(start)
                by_window[start] = idx if have is None else sorted(have + idx)  # keep arrival order
        for start in sorted(by_window):
            idx = by_window[start]
            self._fold_window(start, [keys[i] for i in idx], [values[i] for i in idx])

    def _fold_window(self, start: int, keys: list[Any], values: list[Any]) -> None:
        ns = (start, start + self._size)
        pending = self._pending.get(ns)
        if pending is None:
            pending = self._pending[ns] = {}
            heapq.heappush(self._fire_heap, (ns[1] - 1, ns[0], ns[1]))
        retained = self._retained.get(ns)
        # Only keys in the index can have contents in the window: the others need no read.
        new_keys = self._contents.fold(
            ns, keys, values, pending if retained is None else {**pending, **retained}
        )
        if new_keys:
            pending.update(dict.fromkeys(new_keys))
        if retained is not None:
            # A fired window that did not fire for the current watermark (after a restore): fire again.
            pending.update(dict.fromkeys(keys))

    def _refire(
        self,
        refire: list[tuple[int, int]],
        keys: list[Any],
        values: list[Any],
        out: list[Any],
        out_ts: list[int],
    ) -> None:
        """Late elements within the allowed lateness: add, and fire the window again for that key."""
        size = self._size
        set_key = self._kc.set_current_key
        contents = self._contents
        evaluate = self._evaluator.evaluate
        for i, start in refire:
            key = keys[i]
            ns = (start, start + size)
            set_key(key)
            contents.add(ns, [values[i]])
            n = len(out)
            evaluate(key, TimeWindow(start, start + size), contents.get(ns), out)
            out_ts.extend([ns[1] - 1] * (len(out) - n))
            self._retain(ns)[key] = None

    def _retain(self, ns: tuple[int, int]) -> dict[Any, None]:
        kept = self._retained.get(ns)
        if kept is None:
            kept = self._retained[ns] = {}
            heapq.heappush(self._cleanup_heap, (ns[1] - 1 + self._lateness, ns[0], ns[1]))
        return kept

    # -- watermarks ----------------------------------------------------------------------
    def due(self, watermark: int) -> bool:
        """Whether ``watermark`` fires or cleans up a window."""
        fh, ch = self._fire_heap, self._cleanup_heap
        return bool((fh and fh[0][0] <= watermark) or (ch and ch[0][0] <= watermark))

    def fire(self, watermark: int, out: list[Any], out_ts: list[int]) -> None:
        """Fire every window the watermark passed, for all its keys; drop windows past their lateness."""
        heap = self._fire_heap
        lateness = self._lateness
        while heap and heap[0][0] <= watermark:
            max_ts, start, end = heapq.heappop(heap)
            ns = (start, end)
            pending = self._pending.pop(ns, None)
            if not pending:
                continue
            keys = list(pending)
            window = TimeWindow(start, end)
            n = len(out)
            drop = max_ts + lateness <= watermark and ns not in self._retained
            self._fire_many(keys, window, ns, out, drop)
            out_ts.extend([max_ts] * (len(out) - n))
            if drop:
                self._evaluator.clear_state(keys, window)
            else:
                self._retain(ns).update(pending)
        heap = self._cleanup_heap
        while heap and heap[0][0] <= watermark:
            _, start, end = heapq.heappop(heap)
            ns = (start, end)
            kept = self._retained.pop(ns, None)
            if kept:
                keys = list(kept)
                self._contents.clear_many(ns, keys)
                self._evaluator.clear_state(keys, TimeWindow(start, end))

    def _fire_many(self, keys: list[Any], window: TimeWindow, ns: Any, out: list[Any], drop: bool) -> None:
        """Fire ``window`` for ``keys`` at once; ``drop`` clears their contents as they are read."""
        contents = self._contents.get_many(ns, keys, drop)
        if None in contents:
            keys = [k for k, c in zip(keys, contents, strict=True) if c is not None]
            contents = [c for c in contents if c is not None]
        self._evaluator.evaluate_many(keys, window, contents, out)

    # -- checkpoints ---------------------------------------------------------------------
    def snapshot(self) -> list[list[Any]]:
        """The (key, window) pairs of the index: ``[key_group, key, start, end, fired]`` rows."""
        kg_of = self._kc.key_group_of
        rows = []
        for fired, index in ((0, self._pending), (1, self._retained)):
            for (start, end), keys in index.items():
                rows.extend([kg_of(k), k, start, end, fired] for k in keys)
        return rows

    def restore(self, rows: list[list[Any]]) -> None:
        """Rebuild the index from :meth:`snapshot` rows."""
        for _kg, key, start, end, fired in rows:
            ns = (start, end)
            if fired:
                self._retain(ns)[key] = None
            else:
                pending = self._pending.get(ns)
                if pending is None:
                    pending = self._pending[ns] = {}
                    heapq.heappush(self._fire_heap, (end - 1, start, end))
                pending[key] = None


def _group_by_start(starts: list[int], keys: list[Any], values: list[Any] | None) -> dict[int, Any]:
    """``{start: (keys, values)}`` (``{start: keys}`` when ``values`` is None), in arrival order."""
    if not starts:
        return {}
    distinct = set(starts)
    if len(distinct) == 1:
        return {starts[0]: keys if values is None else (keys, values)}
    out: dict[int, Any] = {}
    if len(distinct) <= 4:  # usual: a batch spans a window boundary or two
        for start in sorted(distinct):
            mask = [s == start for s in starts]
            ks = list(compress(keys, mask))
            out[start] = ks if values is None else (ks, list(compress(values, mask)))
        return out
    if values is None:
        for s, k in zip(starts, keys, strict=True):
            g = out.get(s)
            if g is None:
                out[s] = [k]
            else:
                g.append(k)
        return out
    for s, k, v in zip(starts, keys, values, strict=True):
        g = out.get(s)
        if g is None:
            out[s] = ([k], [v])
        else:
            g[0].append(k)
            g[1].append(v)
    return out
