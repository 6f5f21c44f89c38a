"""Where a window operator keeps window contents, and how it folds a batch into them.

Contents live in keyed state, one entry per (key, window) with the window's
``(start, end)`` (``None`` for the global window) as namespace, so both backends and
checkpoints cover them unchanged:

* :class:`AccumulatorContents`: one accumulator of an :class:`AggregateFunction` in a
  value state (``aggregate``, ``reduce``), held live
  (:meth:`~streamcore.state.handles.ValueState.hold_live_values`): snapshots and the
  RocksDB backend store what ``serialize_accumulator`` returns, and on RocksDB a
  write-back cache of live accumulators sits in front of the database;
* :class:`ElementContents`: the elements in a list state (``process``, ``apply``, evictors).

Per-key methods act on the key current in the key context; bulk methods (``fold``,
``get_many``, ``clear_many``) take keys and go through the state's bulk operations,
the same code on every backend.

Folding a batch of one window: values are grouped by key so that an aggregate sees one
``add_batch`` per key instead of one ``add`` per value, except for
:func:`~streamcore.aggregates.combine` of count/sum/min/max/avg members, which are
updated column-wise in place (one loop per member over the batch, no call per value).
"""

from __future__ import annotations

from collections.abc import Callable, Container, Sequence
from operator import itemgetter
from typing import Any

from streamcore.aggregates.base import AggregateFunction, field_getter
from streamcore.aggregates.basic import Avg, Count, Max, Min, Sum
from streamcore.aggregates.combine import CombinedAggregate
from streamcore.state.api import KeyedStateBackend
from streamcore.state.descriptors import ListStateDescriptor, ValueStateDescriptor

__all__ = ["ACC_STATE", "LIST_STATE", "AccumulatorContents", "ElementContents", "make_folder"]

ACC_STATE = "window-contents"
LIST_STATE = "window-elements"

_MISSING = object()
# Groups of at most this many values of one key are folded with add(); larger ones with add_batch().
_SMALL_GROUP = 3


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
            kind = _simple_kind(f)
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


def _simple_kind(f: AggregateFunction[Any, Any, Any]) -> str | None:
    """The fused-kernel kind of a member, None for members folded by their own ``add``
    (a retractable Min/Max keeps a multiset, not the 1-tuple the kernel updates)."""
    if getattr(f, "retractable", False):
        return None
    return _SIMPLE_KINDS.get(type(f))


def make_folder(agg: AggregateFunction[Any, Any, Any]) -> _GenericFolder | _ColumnFolder:
    """The fastest exact way to fold batches into ``agg``'s accumulators."""
    if type(agg) is CombinedAggregate and any(_simple_kind(f) for f in agg.functions.values()):
        return _ColumnFolder(agg)
    return _GenericFolder(agg)


# -- contents ----------------------------------------------------------------------------------
class _AccumulatorCodec:
    """An aggregate's accumulators, stored as ``serialize_accumulator`` returns them."""

    __slots__ = ("decode", "encode")

    def __init__(self, agg: AggregateFunction[Any, Any, Any]) -> None:
        self.encode = agg.serialize_accumulator
        self.decode = agg.deserialize_accumulator


class AccumulatorContents:
    """One accumulator per (key, window) in a value state holding live accumulators.

    ``get`` returns ``None`` for a window without contents. ``cache_entries`` sizes the
    write-back cache a serializing backend keeps in front of its store (0: none); the
    backend writes it back before every snapshot. ``name`` names the keyed state (sliced
    windows keep slices, not windows, under their own name).
    """

    def __init__(
        self,
        agg: AggregateFunction[Any, Any, Any],
        backend: KeyedStateBackend,
        cache_entries: int = 0,
        name: str = ACC_STATE,
    ) -> None:
        self.agg = agg
        self.folder = make_folder(agg)
        self.state = backend.get_state(ValueStateDescriptor(name))
        self.state.hold_live_values(_AccumulatorCodec(agg), cache_entries)

    def results(self, accs: Sequence[Any]) -> list[Any]:
        """The aggregate's result of every accumulator in ``accs``."""
        return self.folder.results(accs)

    # per current key
    def add(self, ns: Any, values: Sequence[Any]) -> None:
        """Fold ``values`` into the current key's window ``ns``."""
        st = self.state
        st.set_namespace(ns)
        acc = st.value()
        if acc is None:
            acc = self.agg.create_accumulator()
        if len(values) <= _SMALL_GROUP:
            add = self.agg.add
            for v in values:
                acc = add(v, acc)
        else:
            acc = self.agg.add_batch(values, acc)
        st.update(acc)

    def get(self, ns: Any) -> Any:
        """The current key's accumulator of window ``ns``, or ``None``."""
        self.state.set_namespace(ns)
        return self.state.value()

    def clear(self, ns: Any) -> None:
        """Drop the current key's window ``ns``."""
        self.state.set_namespace(ns)
        self.state.clear()

    def merge(self, target: Any, sources: list[Any]) -> None:
        """Merge the current key's windows ``sources`` into ``target`` (session windows)."""
        st = self.state
        st.set_namespace(target)
        acc = st.value()
        merge = self.agg.merge
        for ns in sources:
            st.set_namespace(ns)
            other = st.value()
            if other is not None:
                acc = other if acc is None else merge(acc, other)
                st.clear()
        if acc is not None:
            st.set_namespace(target)
            st.update(acc)

    # bulk
    def fold(
        self, ns: Any, keys: Sequence[Any], values: Sequence[Any], known: Container[Any] | None = None
    ) -> list[Any]:
        """Fold a batch of window ``ns`` (``keys[i]`` is the key of ``values[i]``); returns the new keys.

        ``known``, when given, holds every key that may have contents in the window: the
        others are not looked up.
        """
        return self.state.fold_many(ns, keys, values, self.folder.fold, known=known)

    def get_many(self, ns: Any, keys: Sequence[Any], clear: bool = False) -> list[Any]:
        """The accumulators of ``keys`` in window ``ns`` (``None`` where empty); ``clear`` drops them."""
        return self.state.get_many(ns, keys, clear=clear)

    def clear_many(self, ns: Any, keys: Sequence[Any]) -> None:
        """Drop window ``ns`` of every key in ``keys``."""
        self.state.clear_many(ns, keys)


class ElementContents:
    """The elements of each (key, window) in a list state, in arrival order."""

    def __init__(self, backend: KeyedStateBackend) -> None:
        self.state = backend.get_state(ListStateDescriptor(LIST_STATE))

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
        self, ns: Any, keys: Sequence[Any], values: Sequence[Any], known: Container[Any] | None = None
    ) -> list[Any]:
        """Append a batch of window ``ns``; returns its keys (a superset of those without elements before)."""
        self.state.add_many(ns, keys, values)
        return list(dict.fromkeys(keys))

    def get_many(self, ns: Any, keys: Sequence[Any], clear: bool = False) -> list[Any]:
        """Copies of the element lists of ``keys`` in ``ns`` (``None``: empty); ``clear`` drops them."""
        return [lst or None for lst in self.state.get_many(ns, keys, clear=clear)]

    def clear_many(self, ns: Any, keys: Sequence[Any]) -> None:
        """Drop window ``ns`` of every key in ``keys``."""
        self.state.clear_many(ns, keys)
