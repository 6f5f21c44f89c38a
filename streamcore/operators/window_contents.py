"""Where a window operator keeps window contents, and how it folds a batch into them.

Contents live in keyed state, one entry per (key, window) with the window's
``(start, end)`` (``None`` for the global window) as namespace, so both backends and
checkpoints cover them unchanged:

* :class:`AccumulatorContents`: one accumulator of an :class:`AggregateFunction` in a
  value state (``aggregate``, ``reduce``);
* :class:`ElementContents`: the elements in a list state (``process``, ``apply``, evictors).

On the heap backend the state holds *live* accumulators (Python objects) and a whole
namespace is folded through the backend's per-namespace dict in one pass; accumulators
are serialized only when a snapshot is taken (:meth:`AccumulatorContents.export_rows`).
On other backends every (key, window) touched by a batch is read once, folded, and
written once, in serialized form (``serialize_accumulator``).

Folding a batch of one window: values are grouped by key so that an aggregate sees one
``add_batch`` per key instead of one ``add`` per value, except for
:func:`~streamcore.aggregates.combine` of count/sum/min/max/avg members, which are
updated column-wise in place (one loop per member over the batch, no call per value).
"""

from __future__ import annotations

from collections.abc import Callable, Container, Sequence
from itertools import islice
from operator import itemgetter
from typing import Any

from streamcore.aggregates.base import AggregateFunction, field_getter
from streamcore.aggregates.basic import Avg, Count, Max, Min, Sum
from streamcore.aggregates.combine import CombinedAggregate
from streamcore.state.api import KeyContext, KeyedStateBackend
from streamcore.state.descriptors import ListStateDescriptor, ValueStateDescriptor
from streamcore.state.heap import HeapListState, HeapValueState

__all__ = ["ACC_STATE", "LIST_STATE", "AccumulatorContents", "ElementContents", "make_folder"]

ACC_STATE = "window-contents"
LIST_STATE = "window-elements"

_MISSING = object()
# Groups of at most this many values of one key are folded with add(); larger ones with add_batch().
_SMALL_GROUP = 3


def _live_table(handle: Any) -> dict[Any, Any]:
    """The heap backend's ``{key: value}`` dict of the handle's current namespace.

    Folding through it (:meth:`streamcore.state.heap.HeapValueState.namespace_table`)
    saves a key switch per value.
    """
    return handle.namespace_table()  # type: ignore[no-any-return]


def _drop(table: dict[Any, Any], keys: Sequence[Any]) -> None:
    """Remove ``keys`` from a live namespace dict (at once when they are all of it)."""
    if len(table) == len(keys):
        table.clear()
    else:
        pop = table.pop
        for k in keys:
            pop(k, None)


def _group_by_key(keys: Sequence[Any], values: Sequence[Any]) -> dict[Any, list[Any]]:
    groups: dict[Any, list[Any]] = {}
    get = groups.get
    for k, v in zip(keys, values, strict=True):
        g = get(k)
        if g is None:
            groups[k] = [v]
        else:
            g.append(v)
    return groups


# -- folders: fold a batch into a dict of accumulators ----------------------------------------
class _GenericFolder:
    """Any aggregate: per key, ``add`` for a few values, ``add_batch`` for more."""

    __slots__ = ("agg", "new_acc")

    def __init__(self, agg: AggregateFunction[Any, Any, Any]) -> None:
        self.agg = agg
        self.new_acc = agg.create_accumulator

    def fold(
        self, table: dict[Any, Any], keys: Sequence[Any], values: Sequence[Any], new_keys: list[Any]
    ) -> None:
        add, add_batch, new_acc = self.agg.add, self.agg.add_batch, self.new_acc
        get = table.get
        for k, vs in _group_by_key(keys, values).items():
            acc = get(k, _MISSING)
            if acc is _MISSING:
                acc = new_acc()
                new_keys.append(k)
            if len(vs) <= _SMALL_GROUP:
                for v in vs:
                    acc = add(v, acc)
            else:
                acc = add_batch(vs, acc)
            table[k] = acc

    def results(self, accs: Sequence[Any]) -> list[Any]:
        """``get_result`` of every accumulator."""
        return list(map(self.agg.get_result, accs))


def _column(
    field: Any, getter: Callable[[Any], Any] | None, values: Sequence[Any], dicts: bool
) -> Sequence[Any]:
    """The member's input of every value: a C-level itemgetter when every value is a dict."""
    if getter is None:
        return values
    if dicts and isinstance(field, str):
        return list(map(itemgetter(field), values))
    return list(map(getter, values))


class _ColumnFolder:
    """``combine(...)`` with count/sum/min/max/avg members (any others are folded per key).

    The combined accumulator is a list with one slot per member; simple members' slots
    hold immutable values (int, number, ``None``/1-tuple, ``(sum, count)``) that are
    replaced in place by one generated loop over the batch (:func:`_fused_kernel`),
    applying exactly the operations of the members' ``add``.
    """

    __slots__ = ("agg", "complex", "finish", "kernel", "names", "new_acc", "simple", "to_dict")

    def __init__(self, agg: CombinedAggregate) -> None:
        self.agg = agg
        self.simple: list[tuple[int, str, Any, Any]] = []
        self.complex: list[tuple[int, AggregateFunction[Any, Any, Any]]] = []
        for j, f in enumerate(agg.functions.values()):
            kind = _SIMPLE_KINDS.get(type(f))
            if kind is None:
                self.complex.append((j, f))
            else:
                field = getattr(f, "field", None)
                self.simple.append((j, kind, field, field_getter(field)))
        self.kernel = _fused_kernel([(j, kind) for j, kind, _, _ in self.simple])
        self.names = agg.names
        self.to_dict = _dict_builder(agg.names)
        # Members whose result is not their accumulator (count and sum results are).
        self.finish = [
            (j, f.get_result) for j, f in enumerate(agg.functions.values()) if type(f) not in (Count, Sum)
        ]
        if self.complex:
            self.new_acc = agg.create_accumulator
        else:
            # Every slot of a fresh accumulator is immutable: copying a template is enough.
            self.new_acc = agg.create_accumulator().copy

    def fold(
        self, table: dict[Any, Any], keys: Sequence[Any], values: Sequence[Any], new_keys: list[Any]
    ) -> None:
        dicts = set(map(type, values)) == {dict}
        cols = [
            _column(field, getter, values, dicts) for _, kind, field, getter in self.simple if kind != "count"
        ]
        self.kernel(table, keys, cols, self.new_acc, new_keys)
        if self.complex:
            for k, vs in _group_by_key(keys, values).items():
                a = table[k]
                for j, f in self.complex:
                    if len(vs) <= _SMALL_GROUP:
                        acc = a[j]
                        for v in vs:
                            acc = f.add(v, acc)
                        a[j] = acc
                    else:
                        a[j] = f.add_batch(vs, a[j])

    def results(self, accs: Sequence[Any]) -> list[dict[str, Any]]:
        """``get_result`` of every accumulator: ``{name: member result}``, built without a call per member."""
        to_dict = self.to_dict
        if not self.finish:
            return [to_dict(a) for a in accs]
        out = []
        for a in accs:
            vals = list(a)
            for j, get_result in self.finish:
                vals[j] = get_result(vals[j])
            out.append(to_dict(vals))
        return out


# The in-place update of slot {j} by one input {x}, per simple member kind (same operations as its add()).
_UPDATES = {
    "count": ["a[{j}] += 1"],
    "sum": ["a[{j}] += {x}"],
    "min": ["cur = a[{j}]", "if cur is None or {x} < cur[0]:", "    a[{j}] = ({x},)"],
    "max": ["cur = a[{j}]", "if cur is None or {x} > cur[0]:", "    a[{j}] = ({x},)"],
    "avg": ["cur = a[{j}]", "a[{j}] = (cur[0] + {x}, cur[1] + 1)"],
}


def _fused_kernel(members: list[tuple[int, str]]) -> Callable[..., None]:
    """One loop over a batch updating every simple member's slot of each value's accumulator.

    ``kernel(table, keys, cols, new_acc, new_keys)``: ``cols`` holds the input column of
    each non-count member, in member order. Generated because a loop over members per
    value costs more than the updates themselves; the source holds slot indices only.
    """
    inputs = [j for j, kind in members if kind != "count"]
    body = []
    for j, kind in members:
        body.extend("        " + line.format(j=j, x=f"x{j}") for line in _UPDATES[kind])
    loop = f"for k, {', '.join(f'x{j}' for j in inputs)} in zip(keys, *cols):" if inputs else "for k in keys:"
    source = "\n".join(
        [
            "def kernel(table, keys, cols, new_acc, new_keys):",
            "    get = table.get",
            "    fresh = new_keys.append",
            f"    {loop}",
            "        a = get(k)",
            "        if a is None:",
            "            a = table[k] = new_acc()",
            "            fresh(k)",
            *body,
        ]
    )
    namespace: dict[str, Any] = {}
    exec(compile(source, "<streamcore window fold>", "exec"), namespace)
    return namespace["kernel"]  # type: ignore[no-any-return]


def _dict_builder(names: Sequence[str]) -> Callable[[Sequence[Any]], dict[str, Any]]:
    """``f(values) -> {names[0]: values[0], ...}`` as one generated dict display.

    Several times faster than ``dict(zip(names, values))`` per call. The names reach the
    generated code as global variables, never as source text.
    """
    body = ", ".join(f"_n{j}: a[{j}]" for j in range(len(names)))
    namespace = {f"_n{j}": name for j, name in enumerate(names)}
    return eval(f"lambda a: {{{body}}}", namespace)  # type: ignore[no-any-return]


_SIMPLE_KINDS: dict[type, str] = {Count: "count", Sum: "sum", Min: "min", Max: "max", Avg: "avg"}


def make_folder(agg: AggregateFunction[Any, Any, Any]) -> _GenericFolder | _ColumnFolder:
    """The fastest exact way to fold batches into ``agg``'s accumulators."""
    if type(agg) is CombinedAggregate and any(type(f) in _SIMPLE_KINDS for f in agg.functions.values()):
        return _ColumnFolder(agg)
    return _GenericFolder(agg)


# -- contents ----------------------------------------------------------------------------------
class _Cached:
    """The cached accumulators of one window: which differ from the backend, which the backend holds."""

    __slots__ = ("accs", "dirty", "stored")

    def __init__(self) -> None:
        self.accs: dict[Any, Any] = {}
        self.dirty: set[Any] = set()
        self.stored: set[Any] = set()


class AccumulatorContents:
    """One accumulator per (key, window) in a value state.

    Per-key methods (``add``, ``get``, ``clear``, ``merge``) act on the key current in
    the key context; bulk methods (``fold``, ``get_many``, ``clear_many``) take keys.
    ``get`` returns ``None`` for a window without contents.

    On backends other than the heap, bulk methods go through a write-back cache of up
    to ``cache_entries`` deserialized accumulators (Kafka Streams puts the same kind of
    record cache in front of RocksDB): a window that is created, updated and fired while
    cached costs no backend read, write or serialization at all. Entries are written
    back when evicted (oldest windows first) and by :meth:`flush`, which the operator
    calls before every snapshot, so snapshots and checkpoints see every accumulator in
    keyed state. Per-key methods write back and drop the key's entry first.
    """

    def __init__(
        self,
        agg: AggregateFunction[Any, Any, Any],
        backend: KeyedStateBackend,
        kc: KeyContext,
        cache_entries: int = 0,
    ) -> None:
        self.agg = agg
        self.kc = kc
        self.state = backend.get_state(ValueStateDescriptor(ACC_STATE))
        self.live = type(self.state) is HeapValueState
        self.folder = make_folder(agg)
        self._ser = agg.serialize_accumulator
        self._de = agg.deserialize_accumulator
        self.cache_entries = 0 if self.live else cache_entries
        self._cache: dict[Any, _Cached] = {}
        self._cached = 0

    def results(self, accs: Sequence[Any]) -> list[Any]:
        """The aggregate's result of every accumulator in ``accs``."""
        return self.folder.results(accs)

    # per current key
    def _load(self) -> Any:
        raw = self.state.value()
        if raw is None or self.live:
            return raw
        return self._de(raw)

    def _store(self, acc: Any) -> None:
        self.state.update(acc if self.live else self._ser(acc))

    def _uncache(self, ns: Any) -> None:
        """Write back and drop the current key's cached accumulator of window ``ns``."""
        c = self._cache.get(ns)
        if c is None:
            return
        key = self.kc.key
        acc = c.accs.pop(key, _MISSING)
        if acc is _MISSING:
            return
        self._cached -= 1
        c.stored.discard(key)
        if key in c.dirty:
            c.dirty.discard(key)
            self.state.set_namespace(ns)
            self._store(acc)

    def add(self, ns: Any, values: Sequence[Any]) -> None:
        """Fold ``values`` into the current key's window ``ns``."""
        if self._cache:
            self._uncache(ns)
        self.state.set_namespace(ns)
        acc = self._load()
        if acc is None:
            acc = self.agg.create_accumulator()
        if len(values) <= _SMALL_GROUP:
            add = self.agg.add
            for v in values:
                acc = add(v, acc)
        else:
            acc = self.agg.add_batch(values, acc)
        self._store(acc)

    def get(self, ns: Any) -> Any:
        """The current key's accumulator of window ``ns``, or ``None``."""
        if self._cache:
            self._uncache(ns)
        self.state.set_namespace(ns)
        return self._load()

    def clear(self, ns: Any) -> None:
        """Drop the current key's window ``ns``."""
        if self._cache:
            self._uncache(ns)
        self.state.set_namespace(ns)
        self.state.clear()

    def merge(self, target: Any, sources: list[Any]) -> None:
        """Merge the current key's windows ``sources`` into ``target`` (session windows)."""
        if self._cache:
            for ns in (target, *sources):
                self._uncache(ns)
        st = self.state
        st.set_namespace(target)
        acc = self._load()
        merge = self.agg.merge
        for ns in sources:
            st.set_namespace(ns)
            other = self._load()
            if other is not None:
                acc = other if acc is None else merge(acc, other)
                st.clear()
        if acc is not None:
            st.set_namespace(target)
            self._store(acc)

    # bulk
    def fold(
        self,
        ns: Any,
        keys: Sequence[Any],
        values: Sequence[Any],
        new_keys: list[Any],
        known: Container[Any] | None = None,
    ) -> None:
        """Fold a batch of window ``ns`` (``keys[i]`` is the key of ``values[i]``).

        Appends to ``new_keys`` every key that had no contents in the window before.
        ``known``, when given, holds every key that may have contents in the window:
        the others are not read from the backend.
        """
        st = self.state
        st.set_namespace(ns)
        if self.live:
            self.folder.fold(_live_table(st), keys, values, new_keys)
            return
        c = self._cache.get(ns)
        if c is None:
            c = self._cache[ns] = _Cached()
        accs = c.accs
        before = len(accs)
        set_key = self.kc.set_current_key
        de = self._de
        for k in dict.fromkeys(keys):
            if k not in accs and (known is None or k in known):
                set_key(k)
                raw = st.value()
                if raw is not None:
                    accs[k] = de(raw)
                    c.stored.add(k)
        self.folder.fold(accs, keys, values, new_keys)
        c.dirty.update(keys)
        self._cached += len(accs) - before
        if self._cached > self.cache_entries:
            self._evict(self.cache_entries - self.cache_entries // 8)

    def _evict(self, target: int) -> None:
        """Write back and drop cached accumulators, oldest windows first, until ``target`` remain."""
        st = self.state
        set_key = self.kc.set_current_key
        ser = self._ser
        for ns in list(self._cache):
            if self._cached <= target:
                return
            c = self._cache[ns]
            st.set_namespace(ns)
            accs = c.accs
            if self._cached - len(accs) >= target:
                evicted = list(accs)
            else:
                evicted = list(islice(accs, self._cached - target))
            for k in evicted:
                acc = accs.pop(k)
                if k in c.dirty:
                    set_key(k)
                    st.update(ser(acc))
            self._cached -= len(evicted)
            if accs:
                c.dirty.difference_update(evicted)
                c.stored.difference_update(evicted)
            else:
                del self._cache[ns]

    def flush(self) -> None:
        """Write every changed cached accumulator to the backend (before a snapshot); keep them cached."""
        st = self.state
        set_key = self.kc.set_current_key
        ser = self._ser
        for ns, c in self._cache.items():
            if not c.dirty:
                continue
            st.set_namespace(ns)
            accs = c.accs
            for k in c.dirty:
                set_key(k)
                st.update(ser(accs[k]))
            c.stored |= c.dirty
            c.dirty.clear()

    def get_many(self, ns: Any, keys: Sequence[Any], clear: bool = False) -> list[Any]:
        """The accumulators of ``keys`` in window ``ns`` (``None`` where empty); ``clear`` drops them."""
        st = self.state
        st.set_namespace(ns)
        if self.live:
            table = _live_table(st)
            out = list(map(table.get, keys))
            if clear:
                _drop(table, keys)
            return out
        return self._take(ns, keys, True, clear)  # type: ignore[return-value]

    def clear_many(self, ns: Any, keys: Sequence[Any]) -> None:
        """Drop window ``ns`` of every key in ``keys``."""
        st = self.state
        st.set_namespace(ns)
        if self.live:
            _drop(_live_table(st), keys)
            return
        self._take(ns, keys, False, True)

    def _take(self, ns: Any, keys: Sequence[Any], read: bool, clear: bool) -> list[Any] | None:
        """Read (from the cache or the backend) and/or drop the accumulators of ``keys`` in ``ns``."""
        st = self.state
        c = self._cache.get(ns)
        accs = c.accs if c is not None else {}
        stored = c.stored if c is not None else set()
        set_key = self.kc.set_current_key
        load = self._load
        drop = st.clear
        out: list[Any] = []
        for k in keys:
            acc = accs.get(k, _MISSING)
            if acc is _MISSING:
                set_key(k)
                if read:
                    out.append(load())
                if clear:
                    drop()
                continue
            if read:
                out.append(acc)
            if clear and k in stored:
                set_key(k)
                drop()
        if clear and c is not None:
            asked = set(keys)
            if accs.keys() <= asked:
                del self._cache[ns]
                self._cached -= len(accs)
            else:
                for k in asked:
                    if accs.pop(k, _MISSING) is not _MISSING:
                        self._cached -= 1
                c.dirty -= asked
                c.stored -= asked
        return out if read else None

    # snapshots: the heap backend's rows hold live accumulators, images hold serialized ones
    def export_rows(self, rows: list[list[Any]]) -> list[list[Any]]:
        """Snapshot rows ``[kg, key, ns, acc]`` with serialized accumulators."""
        if not self.live:
            return rows
        ser = self._ser
        return [[kg, key, ns, ser(acc)] for kg, key, ns, acc in rows]

    def import_rows(self, rows: list[list[Any]]) -> list[list[Any]]:
        """Rows of an image, with accumulators as the backend keeps them."""
        if not self.live:
            return rows
        de = self._de
        return [[kg, key, ns, de(acc)] for kg, key, ns, acc in rows]


class ElementContents:
    """The elements of each (key, window) in a list state, in arrival order."""

    #: element lists are appended with one write each: no cache in front of the backend.
    cache_entries = 0

    def __init__(self, backend: KeyedStateBackend, kc: KeyContext) -> None:
        self.kc = kc
        self.state = backend.get_state(ListStateDescriptor(LIST_STATE))
        self.live = type(self.state) is HeapListState

    def add(self, ns: Any, values: Sequence[Any]) -> None:
        """Append ``values`` to the current key's window ``ns``."""
        self.state.set_namespace(ns)
        self.state.add_all(values)

    def get(self, ns: Any) -> list[Any] | None:
        """The current key's elements of window ``ns``, or ``None`` when empty."""
        self.state.set_namespace(ns)
        return self.state.get() or None

    def replace(self, ns: Any, values: list[Any]) -> None:
        """Replace the current key's elements of window ``ns`` (after eviction)."""
        self.state.set_namespace(ns)
        self.state.update(values)

    def clear(self, ns: Any) -> None:
        """Drop the current key's window ``ns``."""
        self.state.set_namespace(ns)
        self.state.clear()

    def merge(self, target: Any, sources: list[Any]) -> None:
        """Append the elements of windows ``sources`` to ``target``, in order, and drop the sources."""
        st = self.state
        moved: list[Any] = []
        for ns in sources:
            st.set_namespace(ns)
            moved.extend(st.get())
            st.clear()
        if moved:
            st.set_namespace(target)
            st.add_all(moved)

    def fold(
        self,
        ns: Any,
        keys: Sequence[Any],
        values: Sequence[Any],
        new_keys: list[Any],
        known: Container[Any] | None = None,
    ) -> None:
        """Append a batch of window ``ns``; ``new_keys`` receives (at least) the keys that had no elements."""
        st = self.state
        st.set_namespace(ns)
        if self.live:
            table = _live_table(st)
            get = table.get
            for k, v in zip(keys, values, strict=True):
                lst = get(k)
                if lst is None:
                    table[k] = [v]
                    new_keys.append(k)
                else:
                    lst.append(v)
            return
        set_key = self.kc.set_current_key
        for k, vs in _group_by_key(keys, values).items():
            set_key(k)
            new_keys.append(k)
            st.add_all(vs)

    def get_many(self, ns: Any, keys: Sequence[Any], clear: bool = False) -> list[Any]:
        """Copies of the element lists of ``keys`` in ``ns`` (``None``: empty); ``clear`` drops them."""
        st = self.state
        st.set_namespace(ns)
        if self.live:
            table = _live_table(st)
            out = [None if lst is None else list(lst) for lst in map(table.get, keys)]
            if clear:
                _drop(table, keys)
            return out
        set_key = self.kc.set_current_key
        out = []
        for k in keys:
            set_key(k)
            out.append(st.get() or None)
            if clear:
                st.clear()
        return out

    def clear_many(self, ns: Any, keys: Sequence[Any]) -> None:
        """Drop window ``ns`` of every key in ``keys``."""
        st = self.state
        st.set_namespace(ns)
        set_key = self.kc.set_current_key
        for k in keys:
            set_key(k)
            st.clear()

    def export_rows(self, rows: list[list[Any]]) -> list[list[Any]]:
        """Rows as stored (elements are plain values)."""
        return rows

    def import_rows(self, rows: list[list[Any]]) -> list[list[Any]]:
        """Rows as stored."""
        return rows
