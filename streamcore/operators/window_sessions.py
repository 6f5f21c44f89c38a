"""Event-time session windows of an incremental aggregate, merged in memory a batch and a key at a time.

The general path of the window operator merges sessions element by element through
generic state: a mapping of windows to state windows, one accumulator per state
window, a trigger timer and a cleanup timer per window, each read and written per
element. :class:`SessionSlots` keeps instead, per key, the key's open sessions as a
short list sorted by start, ``[[start, end, accumulator, armed], ...]``, in one keyed
value state ``window-session-slots`` (namespace ``None``), and:

* groups a batch by key, reads each key's sessions once, merges the key's elements into
  them in memory in arrival order, and writes them once
  (:meth:`~streamcore.state.handles.ValueState.fold_many`);
* fires by watermark without timers: an in-memory index holds, per key, the earliest
  time something happens to its sessions (a session's ``max_timestamp`` while it waits to
  fire, then ``max_timestamp + allowed_lateness`` when it goes); keys come due in bulk.

Results are the general path's (:mod:`streamcore.operators.window_merging` with the
event-time trigger), for any aggregate: an element's window ``[ts, ts + gap)`` merges
with every session it overlaps or touches; their accumulators merge in start order (the
earliest one is the target, as the general path keeps the earliest state window) and
the element is added last; an element whose merged session is past
``max_timestamp + allowed_lateness`` is late; a session whose ``max_timestamp`` the
watermark has passed fires at once for each element added within the lateness
(``armed`` false), else waits for the watermark (``armed`` true).

Used for event-time sessions with a fixed gap, an aggregate, the default trigger and
no evictor (``WindowOperator(session_slots=False)`` keeps the general path). The
index goes into the operator's snapshot as ``[key_group, key, due]`` rows. Checkpoints
of the general path's layout (``window-sessions`` and ``window-contents``) do not
restore into this one: restore them with ``session_slots=False``.
"""

from __future__ import annotations

import heapq
from bisect import insort
from collections.abc import Callable, Sequence
from typing import Any

from streamcore.aggregates.base import AggregateFunction
from streamcore.operators.window_contents import _UPDATES, _column, _ColumnFolder, make_folder
from streamcore.operators.window_functions import WindowEvaluator
from streamcore.state.api import KeyContext, KeyedStateBackend
from streamcore.state.descriptors import ValueStateDescriptor
from streamcore.windowing import EventTimeSessionWindows, EventTimeTrigger, TimeWindow

__all__ = ["SLOTS_STATE", "SessionSlots", "slots_apply"]

SLOTS_STATE = "window-session-slots"
#: The due index groups keys by ``due >> BUCKET_BITS`` (64 ms): one heap entry per bucket.
BUCKET_BITS = 6


def slots_apply(assigner: Any, trigger: Any, evictor: Any, aggregate: Any) -> bool:
    """Whether :class:`SessionSlots` serves a window of ``assigner`` with these parts."""
    return (
        isinstance(assigner, EventTimeSessionWindows)
        and assigner.gap is not None
        and type(trigger) is EventTimeTrigger
        and evictor is None
        and aggregate is not None
    )


class _SlotsCodec:
    """A key's sessions as stored: accumulators through ``serialize_accumulator``."""

    __slots__ = ("_de", "_ser")

    def __init__(self, agg: AggregateFunction[Any, Any, Any]) -> None:
        self._ser = agg.serialize_accumulator
        self._de = agg.deserialize_accumulator

    def encode(self, value: list[list[Any]]) -> Any:
        ser = self._ser
        return [[s, e, ser(acc), armed] for s, e, acc, armed in value]

    def decode(self, stored: Any) -> list[list[Any]]:
        de = self._de
        return [[s, e, de(acc), armed] for s, e, acc, armed in stored]


class SessionSlots:
    """The session fast path of :class:`~streamcore.operators.window_operator.WindowOperator`.

    The interface of :class:`~streamcore.operators.window_aligned.AlignedWindows`:
    :meth:`process_batch` per input batch; :meth:`due` and :meth:`fire` per watermark;
    :meth:`snapshot` and :meth:`restore` for the index of due keys. Callers open the
    write batch and turn user code errors into operator errors.
    """

    def __init__(
        self,
        gap: int,
        allowed_lateness: int,
        agg: AggregateFunction[Any, Any, Any],
        backend: KeyedStateBackend,
        key_context: KeyContext,
        evaluator: WindowEvaluator,
        cache_entries: int = 0,
    ) -> None:
        self._gap = gap
        self._lateness = allowed_lateness
        self._agg = agg
        self._kc = key_context
        self._evaluator = evaluator
        self.state = backend.get_state(ValueStateDescriptor(SLOTS_STATE))
        self.state.hold_live_values(_SlotsCodec(agg), cache_entries)
        folder = make_folder(agg)
        self._new_acc = folder.new_acc
        self._adder = _make_adder(agg, folder)
        self._due: dict[Any, int] = {}  # key -> the earliest time one of its sessions fires or goes
        # Keys by due time >> BUCKET_BITS (stale where _due differs), and a heap of those buckets.
        self._buckets: dict[int, list[Any]] = {}
        self._times: list[int] = []

    def pending_windows(self) -> int:
        """Keys with sessions (waiting to fire or kept for late elements)."""
        return len(self._due)

    def _schedule(self, key: Any, sessions: list[list[Any]]) -> None:
        """Index when ``key``'s sessions next need the watermark (they are not empty)."""
        lateness = self._lateness
        due = min([e - 1 if armed else e - 1 + lateness for _s, e, _a, armed in sessions])
        if self._due.get(key) != due:
            self._due[key] = due
            c = due >> BUCKET_BITS
            bucket = self._buckets.get(c)
            if bucket is None:
                self._buckets[c] = [key]
                heapq.heappush(self._times, c)
            else:
                bucket.append(key)

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
        """Merge a batch into its keys' sessions at watermark ``wm``; append late indices to ``late``.

        Sessions already past their ``max_timestamp`` fire at once per element added,
        appending to ``out``/``out_ts``.
        """
        groups: dict[Any, list[int]] = {}
        get = groups.get
        for i, k in enumerate(keys):
            g = get(k)
            if g is None:
                groups[k] = [i]
            else:
                g.append(i)
        gap, lateness = self._gap, self._lateness
        merge = self._agg.merge
        create = self._new_acc
        add_at = self._adder(values)
        schedule = self._schedule
        due, buckets, times = self._due, self._buckets, self._times
        heappush = heapq.heappush
        emptied: list[Any] = []
        fire_now = self._fire_now

        def fold(
            table: dict[Any, Any], ks: Sequence[Any], idx_lists: Sequence[list[int]], new_keys: list[Any]
        ) -> None:
            for k, idxs in zip(ks, idx_lists, strict=True):
                sessions = table.get(k)
                if sessions is None:
                    new_keys.append(k)
                    if len(idxs) == 1:
                        # The usual case: one element of a key without sessions opens one.
                        i = idxs[0]
                        end = timestamps[i] + gap
                        if end - 1 + lateness <= wm:
                            late.append(i)
                            table[k] = []
                            emptied.append(k)
                            continue
                        acc = add_at(create(), i)
                        armed = end - 1 > wm
                        table[k] = [[end - gap, end, acc, armed]]
                        t = end - 1 if armed else end - 1 + lateness
                        due[k] = t
                        c = t >> BUCKET_BITS
                        bucket = buckets.get(c)
                        if bucket is None:
                            buckets[c] = [k]
                            heappush(times, c)
                        else:
                            bucket.append(k)
                        if not armed:
                            fire_now(k, TimeWindow(end - gap, end), acc, out, out_ts)
                        continue
                    sessions = []
                elif len(idxs) == 1 and len(sessions) == 1:
                    # The next most usual: one element and one session of the key.
                    i = idxs[0]
                    x = sessions[0]
                    start = timestamps[i]
                    end = start + gap
                    if x[0] <= end and x[1] >= start:  # it touches the session: extend it in place
                        if x[0] < start:
                            start = x[0]
                        if x[1] > end:
                            end = x[1]
                        # Never late: the session is within its lateness and only grows.
                        x[0], x[1] = start, end
                        acc = x[2] = add_at(x[2], i)
                        armed = x[3] = end - 1 > wm
                        table[k] = sessions
                        t = end - 1 if armed else end - 1 + lateness
                        if due.get(k) != t:
                            due[k] = t
                            c = t >> BUCKET_BITS
                            bucket = buckets.get(c)
                            if bucket is None:
                                buckets[c] = [k]
                                heappush(times, c)
                            else:
                                bucket.append(k)
                        if not armed:
                            fire_now(k, TimeWindow(start, end), acc, out, out_ts)
                        continue
                for i in idxs:
                    start = timestamps[i]
                    end = start + gap
                    touching = [x for x in sessions if x[0] <= end and x[1] >= start] if sessions else None
                    if touching:
                        first = touching[0]
                        if first[0] < start:
                            start = first[0]
                        last_end = touching[-1][1]
                        if last_end > end:
                            end = last_end
                    if end - 1 + lateness <= wm:
                        late.append(i)
                        continue
                    if touching:
                        acc = touching[0][2]
                        for x in touching[1:]:
                            acc = merge(acc, x[2])
                        if len(touching) == len(sessions):
                            sessions = []
                        else:
                            gone = set(map(id, touching))
                            sessions = [x for x in sessions if id(x) not in gone]
                    else:
                        acc = create()
                    acc = add_at(acc, i)
                    armed = end - 1 > wm
                    entry = [start, end, acc, armed]
                    if not sessions or sessions[-1][0] < start:
                        sessions.append(entry)
                    else:
                        insort(sessions, entry, key=_start)
                    if not armed:
                        fire_now(k, TimeWindow(start, end), acc, out, out_ts)
                table[k] = sessions
                if sessions:
                    schedule(k, sessions)
                else:
                    emptied.append(k)
                    due.pop(k, None)

        self.state.fold_many(None, list(groups), list(groups.values()), fold, known=due)
        if emptied:
            self.state.clear_many(None, emptied)

    def _fire_now(self, key: Any, window: TimeWindow, acc: Any, out: list[Any], out_ts: list[int]) -> None:
        """Fire the session just updated (past its max timestamp) before later elements change it."""
        if self._evaluator.needs_key:
            self._kc.set_current_key(key)
        n = len(out)
        self._evaluator.evaluate(key, window, acc, out)
        out_ts.extend([window.end - 1] * (len(out) - n))

    # -- watermarks ----------------------------------------------------------------------------------
    def due(self, watermark: int) -> bool:
        """Whether a session fires or goes at ``watermark``."""
        times = self._times
        return bool(times) and times[0] << BUCKET_BITS <= watermark

    def fire(self, watermark: int, out: list[Any], out_ts: list[int]) -> None:
        """Fire every session whose max timestamp the watermark passed; drop those past their lateness."""
        times, buckets, due = self._times, self._buckets, self._due
        keys: list[Any] = []
        while times and times[0] << BUCKET_BITS <= watermark:
            c = heapq.heappop(times)
            later = []  # keys of the bucket not due yet
            for k in buckets.pop(c):
                t = due.get(k)
                if t is None or t >> BUCKET_BITS != c:
                    continue  # stale: done, or due in another bucket
                if t <= watermark:
                    del due[k]
                    keys.append(k)
                else:
                    later.append(k)
            if later:
                buckets[c] = later
                heapq.heappush(times, c)
                break  # the next bucket starts after the watermark
        if not keys:
            return
        lateness = self._lateness
        clears = self._evaluator.clears_state
        fire_keys: list[Any] = []
        fire_windows: list[TimeWindow] = []
        fire_accs: list[Any] = []
        fk, fw, fa = fire_keys.append, fire_windows.append, fire_accs.append
        kept_keys: list[Any] = []
        kept: list[list[list[Any]]] = []
        dropped: list[tuple[Any, TimeWindow]] = []
        gone_at = watermark - lateness  # sessions ending at or before this + 1 go
        for k, sessions in zip(keys, self.state.get_many(None, keys, clear=True), strict=True):
            if not sessions:
                continue
            if len(sessions) == 1 and not clears:
                x = sessions[0]
                start, end, acc, armed = x
                if armed and end <= watermark + 1:
                    fk(k)
                    fw(TimeWindow(start, end))
                    fa(acc)
                    x[3] = False
                if end - 1 > gone_at:
                    kept_keys.append(k)
                    kept.append(sessions)
                    self._schedule(k, sessions)
                continue
            keep = []
            for x in sessions:
                start, end, acc, armed = x
                if armed and end - 1 <= watermark:
                    fire_keys.append(k)
                    fire_windows.append(TimeWindow(start, end))
                    fire_accs.append(acc)
                    x[3] = False
                if end - 1 + lateness <= watermark:
                    if clears:
                        dropped.append((k, TimeWindow(start, end)))
                else:
                    keep.append(x)
            if keep:
                kept_keys.append(k)
                kept.append(keep)
                self._schedule(k, keep)
        if fire_keys:
            self._evaluator.evaluate_each(fire_keys, fire_windows, fire_accs, out, out_ts)
        for k, w in dropped:
            self._evaluator.clear_state((k,), w)
        if kept_keys:
            self.state.fold_many(None, kept_keys, kept, _put)

    # -- checkpoints -----------------------------------------------------------------------------------
    def snapshot(self) -> list[list[Any]]:
        """The index: ``[key_group, key, due]`` rows."""
        kg_of = self._kc.key_group_of
        return [[kg_of(k), k, t] for k, t in self._due.items()]

    def restore(self, rows: list[list[Any]]) -> None:
        """Rebuild the index from :meth:`snapshot` rows."""
        for _kg, key, t in rows:
            self._due[key] = t
            c = t >> BUCKET_BITS
            bucket = self._buckets.get(c)
            if bucket is None:
                self._buckets[c] = [key]
                heapq.heappush(self._times, c)
            else:
                bucket.append(key)


#: ``adder(values)`` -> ``add_at(acc, i)``: folds ``values[i]`` into ``acc``, returns it.
Adder = Callable[[Sequence[Any]], Callable[[Any, int], Any]]


def _make_adder(agg: AggregateFunction[Any, Any, Any], folder: Any) -> Adder:
    """Per batch, a function adding its i-th value to an accumulator: for ``combine(...)`` of
    count/sum/min/max/avg, generated in-place updates of the members' slots over columns of
    the batch (the operations of the members' ``add``); else ``agg.add``."""
    if not isinstance(folder, _ColumnFolder) or folder.complex:
        add = agg.add

        def generic(values: Sequence[Any]) -> Callable[[Any, int], Any]:
            def add_at(acc: Any, i: int) -> Any:
                return add(values[i], acc)

            return add_at

        return generic
    simple = folder.simple
    inputs = [j for j, kind, _, _ in simple if kind != "count"]
    body = []
    for j, kind, _, _ in simple:
        if kind != "count":
            body.append(f"        x{j} = c{j}[i]")
        body.extend("        " + line.format(j=j, x=f"x{j}") for line in _UPDATES[kind])
    unpack = f"    {', '.join(f'c{j}' for j in inputs)}, = cols" if inputs else "    pass"
    source = "\n".join(
        ["def make(cols):", unpack, "    def add_at(a, i):", *body, "        return a", "    return add_at"]
    )
    namespace: dict[str, Any] = {}
    exec(compile(source, "<streamcore session add>", "exec"), namespace)
    make = namespace["make"]
    getters = [(field, getter) for _, kind, field, getter in simple if kind != "count"]

    def columns(values: Sequence[Any]) -> Callable[[Any, int], Any]:
        dicts = set(map(type, values)) == {dict}
        return make([_column(field, getter, values, dicts) for field, getter in getters])  # type: ignore[no-any-return]

    return columns


def _start(session: list[Any]) -> int:
    return session[0]  # type: ignore[no-any-return]


def _put(table: dict[Any, Any], keys: Sequence[Any], values: Sequence[Any], new_keys: list[Any]) -> None:
    """A fold that stores ``values[i]`` as the value of ``keys[i]``."""
    for k, v in zip(keys, values, strict=True):
        if k not in table:
            new_keys.append(k)
        table[k] = v
