"""Stateless operators: map, filter, flat_map, and a non-keyed process function.

Each processes a whole batch with one comprehension, so per-record overhead is one
call of the user function.
"""

from __future__ import annotations

from collections.abc import Callable
from itertools import compress
from typing import Any

from streamcore.errors import ConfigurationError, StateError, StreamcoreError
from streamcore.functions import (
    ONE_VALUE_TYPES,
    Context,
    OutputTag,
    ProcessFunction,
    TimerService,
    one_value_error,
)
from streamcore.operators.base import StreamOperator, call_user, user_error

__all__ = [
    "FilterOperator",
    "FlatMapOperator",
    "MapOperator",
    "NonKeyedContext",
    "ProcessOperator",
    "SideOutputs",
    "collect_outputs",
]


class MapOperator(StreamOperator):
    """``fn(value)`` for every element; timestamps pass through."""

    def __init__(self, name: str, uid: str, fn: Callable[[Any], Any]) -> None:
        super().__init__(name, uid)
        self.fn = fn

    def process_batch(self, values: list[Any], timestamps: list[int] | None, side: int) -> None:
        """Map the batch."""
        fn = self.fn
        try:
            out = [fn(v) for v in values]
        except StreamcoreError:
            raise
        except Exception as exc:
            raise user_error(self, fn, "map function", exc) from exc
        self.records_in += len(values)
        self.records_out += len(out)
        self.output.emit(out, timestamps)


class FilterOperator(StreamOperator):
    """Keeps the elements for which ``fn(value)`` is true."""

    def __init__(self, name: str, uid: str, fn: Callable[[Any], bool]) -> None:
        super().__init__(name, uid)
        self.fn = fn

    def process_batch(self, values: list[Any], timestamps: list[int] | None, side: int) -> None:
        """Filter the batch."""
        fn = self.fn
        try:
            mask = [fn(v) for v in values]
        except StreamcoreError:
            raise
        except Exception as exc:
            raise user_error(self, fn, "filter function", exc) from exc
        out = list(compress(values, mask))
        self.records_in += len(values)
        self.records_out += len(out)
        if out:
            self.output.emit(out, None if timestamps is None else list(compress(timestamps, mask)))


class FlatMapOperator(StreamOperator):
    """``fn(value)`` returns an iterable (or ``None``); every item is emitted."""

    def __init__(self, name: str, uid: str, fn: Callable[[Any], Any]) -> None:
        super().__init__(name, uid)
        self.fn = fn

    def process_batch(self, values: list[Any], timestamps: list[int] | None, side: int) -> None:
        """Flat-map the batch."""
        fn = self.fn
        out: list[Any] = []
        out_ts: list[int] | None = None if timestamps is None else []
        try:
            if out_ts is None:
                for v in values:
                    res = fn(v)
                    if res is not None:
                        if type(res) is not list and isinstance(res, ONE_VALUE_TYPES):
                            raise one_value_error(fn, "flat_map function", self.uid, res)
                        out.extend(res)
            else:
                append = out.append
                ts_append = out_ts.append
                for v, ts in zip(values, timestamps, strict=True):  # type: ignore[arg-type]
                    res = fn(v)
                    if res is not None:
                        if type(res) is not list and isinstance(res, ONE_VALUE_TYPES):
                            raise one_value_error(fn, "flat_map function", self.uid, res)
                        for o in res:
                            append(o)
                            ts_append(ts)
        except StreamcoreError:
            raise
        except Exception as exc:
            raise user_error(self, fn, "flat_map function", exc) from exc
        self.records_in += len(values)
        self.records_out += len(out)
        self.output.emit(out, out_ts)


def collect_outputs(
    res: Any, ts: Any, out: list[Any], out_ts: list[Any] | None, fn: Any, what: str, uid: str
) -> None:
    """Append the outputs of one call of ``fn`` (a collection, iterator or None) with timestamp ``ts``.

    Raises:
        UserFunctionError: ``res`` is a tuple, dict, str or bytes (one value, not outputs).
    """
    if res is None:
        return
    if type(res) is not list and isinstance(res, ONE_VALUE_TYPES):
        raise one_value_error(fn, what, uid, res)
    if out_ts is None:
        out.extend(res)
        return
    n = len(out)
    out.extend(res)
    out_ts.extend([ts] * (len(out) - n))


class _NoTimers(TimerService):
    def __init__(self, op: StreamOperator) -> None:
        self._op = op

    def current_watermark(self) -> int:
        return self._op.current_watermark

    def current_processing_time(self) -> int:
        assert self._op.runtime is not None
        return self._op.runtime.clock.now_ms()

    def _keyed_only(self, *_: Any) -> None:
        msg = f"operator {self._op.uid!r}: timers need a keyed stream; call key_by(...) before process()"
        raise StateError(msg)

    register_event_time_timer = _keyed_only
    register_processing_time_timer = _keyed_only
    delete_event_time_timer = _keyed_only
    delete_processing_time_timer = _keyed_only


class SideOutputs:
    """Buffers ``ctx.output(tag, v)`` calls of one batch; flushed after the main output."""

    __slots__ = ("_buf", "_op")

    def __init__(self, op: StreamOperator) -> None:
        self._op = op
        self._buf: dict[str, tuple[list[Any], list[Any]]] = {}

    def add(self, tag: OutputTag, value: Any, ts: Any) -> None:
        """Buffer one side-output element."""
        if not isinstance(tag, OutputTag):
            msg = f"ctx.output() takes an OutputTag, got {type(tag).__name__}"
            raise ConfigurationError(msg)
        entry = self._buf.get(tag.name)
        if entry is None:
            entry = self._buf[tag.name] = ([], [])
        entry[0].append(value)
        entry[1].append(ts)

    def flush(self) -> None:
        """Emit everything buffered, per tag."""
        if not self._buf:
            return
        buf, self._buf = self._buf, {}
        for tag, (vals, tss) in buf.items():
            self._op.output.emit_side(tag, vals, None if tss and tss[0] is None else tss)


class NonKeyedContext(Context):
    """The context of non-keyed process and co-process functions: timestamp and side outputs.

    Keys, keyed state and timers raise :class:`StateError` with a hint to ``key_by``.
    """

    __slots__ = ("_op", "_side", "_timers", "ts")

    def __init__(self, op: StreamOperator, side_outputs: SideOutputs) -> None:
        self._op = op
        self.ts: int | None = None
        self._timers = _NoTimers(op)
        self._side = side_outputs

    def timestamp(self) -> int | None:
        return self.ts

    def get_current_key(self) -> Any:
        msg = f"operator {self._op.uid!r}: get_current_key() needs a keyed stream (key_by before process)"
        raise StateError(msg)

    def timer_service(self) -> TimerService:
        return self._timers

    def output(self, tag: OutputTag, value: Any) -> None:
        self._side.add(tag, value, self.ts)

    def get_state(self, descriptor: Any) -> Any:
        msg = f"operator {self._op.uid!r}: keyed state needs a keyed stream; call key_by(...) first"
        raise StateError(msg)


class ProcessOperator(StreamOperator):
    """Runs a :class:`ProcessFunction` over a non-keyed stream."""

    def __init__(self, name: str, uid: str, fn: ProcessFunction) -> None:
        super().__init__(name, uid)
        if not isinstance(fn, ProcessFunction):
            msg = f"process() on a non-keyed stream takes a ProcessFunction, got {type(fn).__name__}"
            raise ConfigurationError(msg)
        self.fn = fn
        self.side_outputs = SideOutputs(self)
        self.ctx = NonKeyedContext(self, self.side_outputs)

    def open(self) -> None:
        """Open the user function."""
        call_user(self, self.fn, "open of", self.fn.open, self.ctx)

    def process_batch(self, values: list[Any], timestamps: list[int] | None, side: int) -> None:
        """Call ``process_element`` per element."""
        ctx = self.ctx
        pe = self.fn.process_element
        out: list[Any] = []
        out_ts: list[Any] | None = None if timestamps is None else []
        try:
            for v, ts in zip(
                values, timestamps if timestamps is not None else [None] * len(values), strict=True
            ):
                ctx.ts = ts
                res = pe(v, ctx)
                if res is not None:
                    collect_outputs(res, ts, out, out_ts, self.fn, "process_element of", self.uid)
        except StreamcoreError:
            raise
        except Exception as exc:
            raise user_error(self, self.fn, "process_element of", exc) from exc
        self.records_in += len(values)
        self.records_out += len(out)
        self.output.emit(out, out_ts)
        self.side_outputs.flush()

    def close(self) -> None:
        """Close the user function."""
        call_user(self, self.fn, "close of", self.fn.close)
