"""The aggregate function contract the window operator calls, and helpers its implementations share.

An :class:`AggregateFunction` folds the values of one window (of one key) into an
*accumulator* and turns it into a result, in four steps named as in Flink/PyFlink:
``create_accumulator``, ``add``, ``merge`` (session windows merge, and so do partial
aggregates) and ``get_result``. Three hooks serve the window operator:

* ``add_batch(values, acc)``: the operator hands over every value of a batch that falls
  into one window at once, so per-record Python overhead is paid once per batch; the
  default loops over ``add``, functions that can vectorise override it.
* ``serialize_accumulator(acc)`` / ``deserialize_accumulator(obj)``: keyed state stores
  accumulators with streamcore's one value codec (:func:`streamcore.serde.msgpack_dumps`),
  so every accumulator must survive ``msgpack_dumps`` / ``msgpack_loads`` through these
  hooks. The default is identity, right for None, bools, ints of any size, floats, strs,
  bytes, and tuples, lists and dicts of these; sets and objects need the hooks.

Accumulators may be mutated in place: ``add``, ``add_batch`` and ``merge`` may change
``acc`` (and ``merge`` its first argument) and return it, so callers must always use the
returned accumulator and must not use the arguments again. ``merge`` never changes its
second argument.

Retraction (updating streams): an unbounded ``GROUP BY`` over a changelog must take a row
back out of its group when the row is deleted or updated. ``retract(value, acc)`` undoes
one ``add(value, acc)``; functions that can do this set :attr:`AggregateFunction.supports_retract`.
The default ``retract`` raises ``NotImplementedError`` naming the function. Count, Sum and
Avg retract; Min, Max and DistinctCount retract when built with ``retractable=True``
(their accumulator is then a value -> count multiset); ``combine(...)`` retracts when
every member does. The caller never retracts a value that was not added.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Callable, Mapping, Sequence
from typing import Any, Generic, TypeVar

from streamcore.errors import ChangelogError, ConfigurationError

__all__ = [
    "AggregateFunction",
    "Field",
    "ReduceAggregate",
    "field_getter",
    "multiset_merge",
    "multiset_retract",
]

IN = TypeVar("IN")
ACC = TypeVar("ACC")
OUT = TypeVar("OUT")

Field = str | Callable[[Any], Any] | None
"""Where a function finds its input: a dict key or attribute name, a callable, or None (the value itself)."""


class AggregateFunction(ABC, Generic[IN, ACC, OUT]):
    """Incrementally aggregates the values of a window into an accumulator, then a result.

    Implementations are configuration: immutable and shared by every key and window; the
    per-window data lives in the accumulators they create.

    >>> class Longest(AggregateFunction):
    ...     def create_accumulator(self):
    ...         return ""
    ...     def add(self, value, acc):
    ...         return value if len(value) > len(acc) else acc
    ...     def merge(self, a, b):
    ...         return b if len(b) > len(a) else a
    ...     def get_result(self, acc):
    ...         return acc
    >>> f = Longest()
    >>> f.get_result(f.add_batch(["a", "abc", "ab"], f.create_accumulator()))
    'abc'
    """

    __slots__ = ()

    #: Whether the result is the same whatever the order values are added and merged in
    #: (``merge`` of partial accumulators included): then a sliding window may aggregate
    #: slices of time and merge them when it fires
    #: (:mod:`streamcore.operators.window_sliced`). False unless a function says so.
    order_insensitive: bool = False
    #: whether :meth:`retract` works (an unbounded group aggregate over an updating stream needs it).
    supports_retract: bool = False

    @abstractmethod
    def create_accumulator(self) -> ACC:
        """A new, empty accumulator (the state of a window that has seen nothing)."""

    @abstractmethod
    def add(self, value: IN, accumulator: ACC) -> ACC:
        """Fold one value into the accumulator; returns the (possibly same) accumulator."""

    @abstractmethod
    def merge(self, a: ACC, b: ACC) -> ACC:
        """Combine two accumulators, as if ``b``'s values had been added after ``a``'s."""

    @abstractmethod
    def get_result(self, accumulator: ACC) -> OUT:
        """The aggregate of everything folded into the accumulator."""

    def add_batch(self, values: Sequence[IN], accumulator: ACC) -> ACC:
        """Fold a batch of values, in order; the same as calling :meth:`add` for each."""
        add = self.add
        for value in values:
            accumulator = add(value, accumulator)
        return accumulator

    def retract(self, value: IN, accumulator: ACC) -> ACC:
        """Take one earlier added ``value`` back out of the accumulator; returns the accumulator.

        Raises:
            NotImplementedError: the function cannot retract (:attr:`supports_retract` is False).
        """
        msg = (
            f"aggregate {self!r} cannot retract values, so it cannot aggregate an updating stream; "
            "use one that can (Count, Sum, Avg, Min/Max/DistinctCount(..., retractable=True))"
        )
        raise NotImplementedError(msg)

    def serialize_accumulator(self, accumulator: ACC) -> Any:
        """A form of the accumulator that :func:`streamcore.serde.msgpack_dumps` encodes (default: itself)."""
        return accumulator

    def deserialize_accumulator(self, obj: Any) -> ACC:
        """The accumulator back from what :meth:`serialize_accumulator` returned, after the codec."""
        return obj

    def __repr__(self) -> str:
        return f"{type(self).__name__}()"


def field_getter(field: Field) -> Callable[[Any], Any] | None:
    """Turn a field spec into a function extracting it from a value; None means "the value itself".

    A str reads ``value[field]`` from mappings and ``getattr(value, field)`` from anything else.
    A missing key or attribute raises the usual ``KeyError`` / ``AttributeError``.

    >>> field_getter("x")({"x": 1})
    1
    """
    if field is None:
        return None
    if isinstance(field, str):
        name = field

        def get(value: Any) -> Any:
            if type(value) is dict or isinstance(value, Mapping):
                return value[name]
            return getattr(value, name)

        get.__name__ = f"get_{name}"
        return get
    if callable(field):
        return field
    msg = f"field must be a str (key or attribute), a callable or None, got {type(field).__name__}"
    raise ConfigurationError(msg)


class ReduceAggregate(AggregateFunction[Any, "tuple[Any] | None", Any]):
    """Adapts a two-argument reduce function (as in Flink's ``ReduceFunction``) to an aggregate.

    The result is ``reduce_fn(...reduce_fn(v1, v2)..., vn)``, or None for an empty window.
    ``reduce_fn`` must be associative, because merging windows applies it to partial results.
    The accumulator is None or a 1-tuple holding the running result.

    >>> f = ReduceAggregate(lambda a, b: a + b)
    >>> f.get_result(f.add_batch([1, 2, 3], f.create_accumulator()))
    6
    """

    __slots__ = ("reduce_fn",)

    def __init__(self, reduce_fn: Callable[[Any, Any], Any]) -> None:
        if not callable(reduce_fn):
            msg = f"ReduceAggregate needs a callable (a, b) -> c, got {type(reduce_fn).__name__}"
            raise ConfigurationError(msg)
        self.reduce_fn = reduce_fn

    def create_accumulator(self) -> tuple[Any] | None:
        return None

    def add(self, value: Any, accumulator: tuple[Any] | None) -> tuple[Any]:
        return (value,) if accumulator is None else (self.reduce_fn(accumulator[0], value),)

    def add_batch(self, values: Sequence[Any], accumulator: tuple[Any] | None) -> tuple[Any] | None:
        fn = self.reduce_fn
        it = iter(values)
        if accumulator is None:
            for first in it:
                accumulator = (first,)
                break
            else:
                return None
        result = accumulator[0]
        for value in it:
            result = fn(result, value)
        return (result,)

    def merge(self, a: tuple[Any] | None, b: tuple[Any] | None) -> tuple[Any] | None:
        if a is None:
            return b
        if b is None:
            return a
        return (self.reduce_fn(a[0], b[0]),)

    def get_result(self, accumulator: tuple[Any] | None) -> Any:
        return None if accumulator is None else accumulator[0]

    def __repr__(self) -> str:
        return f"ReduceAggregate({getattr(self.reduce_fn, '__name__', self.reduce_fn)!r})"


# -- value -> count multisets: the accumulators of retractable Min/Max/DistinctCount --------
def multiset_retract(
    owner: AggregateFunction[Any, Any, Any], counts: dict[Any, int], value: Any
) -> dict[Any, int]:
    """Take one ``value`` out of ``counts`` (in place); a value it does not hold is a changelog error.

    Raises:
        ChangelogError: ``value`` was never added to ``owner``'s accumulator, or retracted already.
    """
    n = counts.get(value, 0)
    if n <= 0:
        msg = f"{owner!r} retracts {value!r}, which it never added (or retracted already)"
        raise ChangelogError(msg)
    if n == 1:
        del counts[value]
    else:
        counts[value] = n - 1
    return counts


def multiset_merge(a: dict[Any, int], b: dict[Any, int]) -> dict[Any, int]:
    """Add the counts of ``b`` into ``a`` (in place)."""
    for v, n in b.items():
        a[v] = a.get(v, 0) + n
    return a
