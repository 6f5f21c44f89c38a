"""User window functions (PyFlink names), the context they see, and how firings call them.

Every kind of window function is bound to one internal signature,
``call(key, window, value)``, where ``value`` is the aggregate's result or the list of
the window's elements; plain callables return one output per firing.
:class:`WindowEvaluator` turns the contents of fired windows into outputs through it,
one window of one key or one window of many keys at a time.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Sequence
from typing import Any

from streamcore.errors import ConfigurationError, StateError
from streamcore.functions import Function, OutputTag
from streamcore.operators.basic import SideOutputs

__all__ = [
    "AllWindowFunction",
    "ProcessAllWindowFunction",
    "ProcessWindowFunction",
    "WindowContext",
    "WindowEvaluator",
    "WindowFunction",
    "bind_user_fn",
    "plain",
    "to_keyed",
]


# -- user functions ----------------------------------------------------------------------------
class ProcessWindowFunction(Function):
    """Evaluates a fired window of one key, with its elements (or its aggregate) and a context.

    ``context.window()`` is the window (``.start``, ``.end``, ``.max_timestamp()``);
    ``context.current_watermark()``, ``context.window_state()`` (state of this key and
    window) and ``context.global_state()`` (state of this key), ``context.output(tag, v)``.

    >>> class Span(ProcessWindowFunction):
    ...     def process(self, key, context, elements):
    ...         yield key, context.window().start, len(elements)
    """

    def process(self, key: Any, context: Any, elements: Sequence[Any]) -> Iterable[Any] | None:
        """Called per firing; yield or return outputs."""
        raise NotImplementedError(f"{type(self).__name__} must implement process(key, context, elements)")

    def clear(self, context: Any) -> None:
        """The window's state is being dropped: clear what you kept in ``context.window_state()``."""


class WindowFunction(Function):
    """``apply(key, window, inputs)``: a window function without a context."""

    def apply(self, key: Any, window: Any, inputs: Sequence[Any]) -> Iterable[Any] | None:
        """Called per firing; yield or return outputs."""
        raise NotImplementedError(f"{type(self).__name__} must implement apply(key, window, inputs)")


class ProcessAllWindowFunction(Function):
    """The :class:`ProcessWindowFunction` of ``window_all``: ``process(context, elements)``."""

    def process(self, context: Any, elements: Sequence[Any]) -> Iterable[Any] | None:
        """Called per firing; yield or return outputs."""
        raise NotImplementedError(f"{type(self).__name__} must implement process(context, elements)")

    def clear(self, context: Any) -> None:
        """The window's state is being dropped."""


class AllWindowFunction(Function):
    """The :class:`WindowFunction` of ``window_all``: ``apply(window, inputs)``."""

    def apply(self, window: Any, inputs: Sequence[Any]) -> Iterable[Any] | None:
        """Called per firing; yield or return outputs."""
        raise NotImplementedError(f"{type(self).__name__} must implement apply(window, inputs)")


class _StateStore:
    """``context.window_state()`` / ``global_state()``: state handles bound to a namespace."""

    __slots__ = ("_backend", "_ns")

    def __init__(self, backend: Any, ns: Any) -> None:
        self._backend = backend
        self._ns = ns

    def get_state(self, descriptor: Any) -> Any:
        """The handle for ``descriptor`` in this scope (fetch it again in every call)."""
        handle = self._backend.get_state(descriptor)
        handle.set_namespace(self._ns)
        return handle

    get_list_state = get_state
    get_map_state = get_state
    get_reducing_state = get_state


class WindowContext:
    """The ``context`` of process window functions.

    ``op`` is the window operator (its ``uid``, ``backend``, ``current_watermark``,
    ``clock_now()`` and ``output``); ``per_window_state`` is false for merging (session)
    windows, whose per-window state could not follow a merge.
    """

    __slots__ = ("_op", "_per_window_state", "_side", "win")

    def __init__(self, op: Any, per_window_state: bool = True) -> None:
        self._op = op
        self._per_window_state = per_window_state
        self._side = SideOutputs(op)
        self.win: Any = None

    def window(self) -> Any:
        """The window being evaluated."""
        return self.win

    def current_watermark(self) -> int:
        """The operator's watermark."""
        return self._op.current_watermark

    def current_processing_time(self) -> int:
        """The job clock's time."""
        return self._op.clock_now()

    def window_state(self) -> _StateStore:
        """State of the current key and this window (cleared by you in ``clear``).

        Raises:
            StateError: session (merging) windows, whose per-window state could not follow a merge.
        """
        if not self._per_window_state:
            msg = (
                f"operator {self._op.uid!r}: per-window state is not supported for merging (session) "
                "windows; use context.global_state()"
            )
            raise StateError(msg)
        return _StateStore(self._op.backend, self.win.namespace() if self.win is not None else None)

    def global_state(self) -> _StateStore:
        """State of the current key across windows."""
        return _StateStore(self._op.backend, None)

    def get_state(self, descriptor: Any) -> Any:
        """Same as ``global_state().get_state(descriptor)`` (for ``open``)."""
        return self.global_state().get_state(descriptor)

    def output(self, tag: OutputTag, value: Any) -> None:
        """Emit to a side output, with the window's max timestamp."""
        self._side.add(tag, value, self.win.max_timestamp() if self.win is not None else None)

    def flush_side_outputs(self) -> None:
        """Emit what :meth:`output` buffered (the operator calls it after each main output)."""
        self._side.flush()


class WindowEvaluator:
    """Turns the contents of fired windows into outputs: the aggregate's result, then the window function.

    Contents are an accumulator (``results`` maps many to their results at once), a list
    of elements aggregated at firing time (``agg`` without ``results``: an evictor kept
    the elements), or the elements themselves. Without a window function the result (or
    the elements) is the output. ``set_key`` makes a key current, for window functions
    that read keyed state. ``fired`` counts firings (one per key and window).
    """

    __slots__ = (
        "_agg",
        "_call",
        "_clears",
        "_ctx",
        "_fn",
        "_needs_key",
        "_plain",
        "_results",
        "_set_key",
        "fired",
    )

    def __init__(
        self,
        agg: Any,
        window_fn: Any,
        results: Callable[[Sequence[Any]], list[Any]] | None,
        ctx: WindowContext,
        set_key: Callable[[Any], None],
    ) -> None:
        self._agg = agg
        self._fn = window_fn
        self._results = results
        self._ctx = ctx
        self._set_key = set_key
        self._call = None if window_fn is None else bind_user_fn(window_fn, agg is not None, ctx)
        # A plain callable fn(key, window, value) -> output: called directly on bulk firings.
        self._plain = getattr(window_fn, "plain", None)
        self._needs_key = isinstance(window_fn, (ProcessWindowFunction, WindowFunction))
        self._clears = isinstance(window_fn, ProcessWindowFunction) and (
            type(window_fn).clear is not ProcessWindowFunction.clear
        )
        self.fired = 0

    @property
    def needs_key(self) -> bool:
        """Whether the window function must run with its key current (it may read keyed state)."""
        return self._needs_key

    @property
    def clears_state(self) -> bool:
        """Whether :meth:`clear_state` calls the window function (it overrides ``clear``)."""
        return self._clears

    def evaluate(self, key: Any, window: Any, contents: Any, out: list[Any]) -> None:
        """Append the outputs of one firing of ``window`` of ``key`` (the current key)."""
        self.fired += 1
        agg = self._agg
        if self._results is not None:
            value = self._results((contents,))[0]
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

    def evaluate_many(
        self, keys: Sequence[Any], window: Any, contents: Sequence[Any], out: list[Any]
    ) -> None:
        """Append the outputs of ``window`` fired for every key of ``keys`` (``contents`` in the same order).

        Results of accumulators are computed for all keys at once, and a plain window
        function is called without making each key current.
        """
        if self._results is not None and not self._needs_key:
            self.fired += len(keys)
            results = self._results(contents)
            fn = self._plain
            if self._call is None:
                out.extend(results)
            elif fn is not None:
                out.extend([fn(k, window, r) for k, r in zip(keys, results, strict=True)])
            else:
                call = self._call
                for k, r in zip(keys, results, strict=True):
                    res = call(k, window, r)
                    if res is not None:
                        out.extend(res)
            return
        set_key = self._set_key
        needs_key = self._needs_key
        evaluate = self.evaluate
        for key, c in zip(keys, contents, strict=True):
            if needs_key:
                set_key(key)
            evaluate(key, window, c, out)

    def evaluate_each(
        self,
        keys: Sequence[Any],
        windows: Sequence[Any],
        contents: Sequence[Any],
        out: list[Any],
        out_ts: list[int],
    ) -> None:
        """Append the outputs of firings ``(keys[i], windows[i], contents[i])`` (accumulators).

        As :meth:`evaluate_many`, with a window per firing (session windows differ per
        key); every output's timestamp, its window's max timestamp, goes to ``out_ts``.
        """
        if self._results is not None and not self._needs_key:
            fn = self._plain
            if self._call is None or fn is not None:  # one output per firing
                self.fired += len(keys)
                results = self._results(contents)
                if fn is None:
                    out.extend(results)
                else:
                    out.extend([fn(k, w, r) for k, w, r in zip(keys, windows, results, strict=True)])
                out_ts.extend([w.end - 1 for w in windows])
                return
        set_key = self._set_key
        needs_key = self._needs_key
        evaluate = self.evaluate
        for key, w, c in zip(keys, windows, contents, strict=True):
            if needs_key:
                set_key(key)
            n = len(out)
            evaluate(key, w, c, out)
            out_ts.extend([w.max_timestamp()] * (len(out) - n))

    def clear_state(self, keys: Sequence[Any], window: Any) -> None:
        """``window`` is dropped for ``keys``: let the window function clear its per-window state."""
        if not self._clears:
            return
        ctx = self._ctx
        ctx.win = window
        clear = self._fn.clear
        set_key = self._set_key
        for key in keys:
            set_key(key)
            clear(ctx)


def bind_user_fn(fn: Any, aggregated: bool, ctx: WindowContext) -> Callable[[Any, Any, Any], Any]:
    """One signature for every kind of window function: ``call(key, window, result_or_elements)``."""
    if isinstance(fn, ProcessWindowFunction):
        process = fn.process

        def call(key: Any, window: Any, value: Any) -> Any:
            ctx.win = window
            return process(key, ctx, [value] if aggregated else value)

        return call
    if isinstance(fn, WindowFunction):
        apply = fn.apply
        if aggregated:
            return lambda key, window, value: apply(key, window, [value])
        return apply
    return fn  # type: ignore[no-any-return]


def plain(fn: Any) -> Any:
    """Window functions as given; plain callables wrapped so that outputs are iterables."""
    if fn is None or isinstance(fn, (ProcessWindowFunction, WindowFunction)):
        return fn

    def call(key: Any, window: Any, value: Any) -> tuple[Any]:
        return (fn(key, window, value),)

    call.__qualname__ = getattr(fn, "__qualname__", "window_function")
    call.plain = fn  # type: ignore[attr-defined]
    return call


# -- window_all: functions of one-key windows -----------------------------------------------------------
class _AllProcess(ProcessWindowFunction):
    def __init__(self, fn: ProcessAllWindowFunction) -> None:
        self.fn = fn

    def open(self, ctx: Any) -> None:
        self.fn.open(ctx)

    def close(self) -> None:
        self.fn.close()

    def process(self, key: Any, context: Any, elements: Sequence[Any]) -> Iterable[Any] | None:
        return self.fn.process(context, elements)

    def clear(self, context: Any) -> None:
        self.fn.clear(context)


class _AllApply(WindowFunction):
    def __init__(self, fn: AllWindowFunction) -> None:
        self.fn = fn

    def open(self, ctx: Any) -> None:
        self.fn.open(ctx)

    def close(self) -> None:
        self.fn.close()

    def apply(self, key: Any, window: Any, inputs: Sequence[Any]) -> Iterable[Any] | None:
        return self.fn.apply(window, inputs)


def to_keyed(fn: Any) -> Any:
    """A ``window_all`` function (all-window class or ``fn(window, value)``) as a keyed window function."""
    if fn is None:
        return None
    if isinstance(fn, ProcessAllWindowFunction):
        return _AllProcess(fn)
    if isinstance(fn, AllWindowFunction):
        return _AllApply(fn)
    if callable(fn):

        def call(key: Any, window: Any, value: Any) -> Any:
            return fn(window, value)

        call.__qualname__ = getattr(fn, "__qualname__", "window_function")
        return call
    msg = (
        "window_all functions are ProcessAllWindowFunction, AllWindowFunction or a callable "
        f"(window, value) -> output, got {type(fn).__name__}"
    )
    raise ConfigurationError(msg)
