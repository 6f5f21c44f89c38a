"""Process functions: keyed process, co-process (keyed and not), and reduce over them."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from streamcore.errors import ConfigurationError, KeyEncodingError, StreamcoreError
from streamcore.functions import (
    ONE_VALUE_TYPES,
    CoProcessFunction,
    KeyedCoProcessFunction,
    KeyedProcessFunction,
    OutputTag,
    TimerService,
    one_value_error,
)
from streamcore.operators.base import StreamOperator, call_user, user_error
from streamcore.operators.basic import NonKeyedContext, SideOutputs, collect_outputs
from streamcore.operators.keyed import KeyedOperator, KeyedTimerService
from streamcore.state.descriptors import ValueStateDescriptor

__all__ = [
    "CoProcessOperator",
    "KeyedCoProcessOperator",
    "KeyedProcessOperator",
    "ReduceFunction",
]


class KeyedProcessContext:
    """The context of keyed functions: timestamp, current key, timers, state, side outputs."""

    __slots__ = ("_backend", "_kc", "_op", "_side", "_timers", "ts")

    def __init__(self, op: KeyedOperator, side_outputs: SideOutputs) -> None:
        self._op = op
        self._kc = op.key_context
        self._backend = op.backend
        self._timers = KeyedTimerService(op)
        self._side = side_outputs
        self.ts: int | None = None

    def timestamp(self) -> int | None:
        """The element's (or firing event-time timer's) timestamp."""
        return self.ts

    def get_current_key(self) -> Any:
        """The current key."""
        return self._kc.key  # type: ignore[union-attr]

    def timer_service(self) -> TimerService:
        """Timers of the current key."""
        return self._timers

    def output(self, tag: OutputTag, value: Any) -> None:
        """Emit to a side output."""
        self._side.add(tag, value, self.ts)

    def get_state(self, descriptor: Any) -> Any:
        """The state handle for ``descriptor``."""
        return self._backend.get_state(descriptor)

    get_list_state = get_state
    get_map_state = get_state
    get_reducing_state = get_state


class _KeyedFunctionOperator(KeyedOperator):
    """Shared by keyed process and keyed co-process: context, open/close, timers."""

    def __init__(self, name: str, uid: str, fn: Any, key_selectors: list[Any], late_tags: list[Any]) -> None:
        super().__init__(name, uid, key_selectors, late_tags)
        self.fn = fn

    def open(self) -> None:
        """Build the context and open the user function."""
        self.side_outputs = SideOutputs(self)
        self.ctx = KeyedProcessContext(self, self.side_outputs)
        call_user(self, self.fn, "open of", self.fn.open, self.ctx)

    def close(self) -> None:
        """Close the user function."""
        call_user(self, self.fn, "close of", self.fn.close)

    def _run(
        self, pe: Callable[[Any, Any], Any], values: list[Any], timestamps: list[int] | None, side: int
    ) -> None:
        keys = self.extract_keys(values, side)
        values, timestamps, keys = self.drop_late(values, timestamps, keys, side)
        self.records_in += len(values)
        ctx = self.ctx
        kc = self.key_context
        assert kc is not None
        out: list[Any] = []
        self.backend.begin_batch()
        try:
            key_bytes = kc.key_bytes_batch(keys)
            if timestamps is None:
                out_ts = None
                extend = out.extend
                for v, k, kb in zip(values, keys, key_bytes, strict=True):
                    kc.key = k
                    kc.key_bytes = kb
                    res = pe(v, ctx)
                    if res is not None:
                        if type(res) is not list and isinstance(res, ONE_VALUE_TYPES):
                            raise one_value_error(self.fn, "process_element of", self.uid, res)
                        extend(res)
            else:
                out_ts = []
                append = out.append
                ts_append = out_ts.append
                for v, k, kb, ts in zip(values, keys, key_bytes, timestamps, strict=True):
                    kc.key = k
                    kc.key_bytes = kb
                    ctx.ts = ts
                    res = pe(v, ctx)
                    if res is not None:
                        if type(res) is not list and isinstance(res, ONE_VALUE_TYPES):
                            raise one_value_error(self.fn, "process_element of", self.uid, res)
                        for o in res:
                            append(o)
                            ts_append(ts)
        except KeyEncodingError as exc:
            raise self.key_error(exc, side) from exc
        except StreamcoreError:
            raise
        except Exception as exc:
            raise user_error(self, self.fn, getattr(pe, "__name__", "process_element") + " of", exc) from exc
        finally:
            self.backend.end_batch()
        self.records_out += len(out)
        self.output.emit(out, out_ts)
        self.side_outputs.flush()
        self.cleanup_state_incrementally()

    def on_event_timer(self, timestamp: int, namespace: Any, out: list[Any], out_ts: list[Any]) -> None:
        """Call the function's ``on_timer`` with the timer's timestamp as the context timestamp."""
        self.ctx.ts = timestamp
        try:
            res = self.fn.on_timer(timestamp, self.ctx)
            collect_outputs(res, timestamp, out, out_ts, self.fn, "on_timer of", self.uid)
        except StreamcoreError:
            raise
        except Exception as exc:
            raise user_error(self, self.fn, "on_timer of", exc) from exc

    def on_processing_timer(self, timestamp: int, namespace: Any, out: list[Any]) -> None:
        """Call ``on_timer``; the context timestamp is ``None`` (processing time has no event time)."""
        self.ctx.ts = None
        try:
            res = self.fn.on_timer(timestamp, self.ctx)
            collect_outputs(res, None, out, None, self.fn, "on_timer of", self.uid)
        except StreamcoreError:
            raise
        except Exception as exc:
            raise user_error(self, self.fn, "on_timer of", exc) from exc

    def flush_side_outputs(self) -> None:
        """Emit side outputs of timer callbacks."""
        self.side_outputs.flush()


class KeyedProcessOperator(_KeyedFunctionOperator):
    """Runs a :class:`KeyedProcessFunction`: state and timers per key."""

    def __init__(
        self,
        name: str,
        uid: str,
        fn: KeyedProcessFunction,
        key_selector: Callable[[Any], Any],
        late_tag: str | None = None,
    ) -> None:
        if not isinstance(fn, KeyedProcessFunction):
            msg = f"KeyedStream.process() takes a KeyedProcessFunction, got {type(fn).__name__}"
            raise ConfigurationError(msg)
        super().__init__(name, uid, fn, [key_selector], [late_tag])

    def process_batch(self, values: list[Any], timestamps: list[int] | None, side: int) -> None:
        """Call ``process_element`` per element with its key current."""
        self._run(self.fn.process_element, values, timestamps, 0)


class KeyedCoProcessOperator(_KeyedFunctionOperator):
    """Runs a :class:`KeyedCoProcessFunction` over two keyed inputs sharing state and timers."""

    def __init__(
        self, name: str, uid: str, fn: KeyedCoProcessFunction, key_selectors: list[Callable[[Any], Any]]
    ) -> None:
        if not isinstance(fn, KeyedCoProcessFunction):
            msg = f"connected keyed streams take a KeyedCoProcessFunction, got {type(fn).__name__}"
            raise ConfigurationError(msg)
        super().__init__(name, uid, fn, key_selectors, [None, None])

    def process_batch(self, values: list[Any], timestamps: list[int] | None, side: int) -> None:
        """``process_element1`` for input 0, ``process_element2`` for input 1."""
        pe = self.fn.process_element1 if side == 0 else self.fn.process_element2
        self._run(pe, values, timestamps, side)


class CoProcessOperator(StreamOperator):
    """Runs a :class:`CoProcessFunction` over two non-keyed inputs."""

    def __init__(self, name: str, uid: str, fn: CoProcessFunction) -> None:
        super().__init__(name, uid)
        if not isinstance(fn, CoProcessFunction):
            msg = f"connected streams take a CoProcessFunction, got {type(fn).__name__}"
            raise ConfigurationError(msg)
        self.fn = fn
        self.side_outputs = SideOutputs(self)
        self.ctx = NonKeyedContext(self, self.side_outputs)

    def open(self) -> None:
        """Open the user function."""
        call_user(self, self.fn, "open of", self.fn.open, self.ctx)

    def process_batch(self, values: list[Any], timestamps: list[int] | None, side: int) -> None:
        """``process_element1`` for input 0, ``process_element2`` for input 1."""
        pe = self.fn.process_element1 if side == 0 else self.fn.process_element2
        ctx = self.ctx
        out: list[Any] = []
        out_ts: list[Any] | None = None if timestamps is None else []
        tss = timestamps if timestamps is not None else [None] * len(values)
        try:
            for v, ts in zip(values, tss, strict=True):
                ctx.ts = ts
                res = pe(v, ctx)
                if res is not None:
                    collect_outputs(res, ts, out, out_ts, self.fn, f"{pe.__name__} of", self.uid)
        except StreamcoreError:
            raise
        except Exception as exc:
            raise user_error(self, self.fn, pe.__name__ + " of", exc) from exc
        self.records_in += len(values)
        self.records_out += len(out)
        self.output.emit(out, out_ts)
        self.side_outputs.flush()

    def close(self) -> None:
        """Close the user function."""
        call_user(self, self.fn, "close of", self.fn.close)


class ReduceFunction(KeyedProcessFunction):
    """``KeyedStream.reduce(fn)``: emits the running fold of each key after every element."""

    def __init__(self, reduce_fn: Callable[[Any, Any], Any]) -> None:
        if not callable(reduce_fn):
            msg = "reduce() takes a callable reduce_fn(accumulated, value)"
            raise ConfigurationError(msg)
        self.reduce_fn = reduce_fn

    def open(self, ctx: Any) -> None:
        """Fetch the per-key accumulator."""
        self.acc = ctx.get_state(ValueStateDescriptor("reduce"))

    def process_element(self, value: Any, ctx: Any) -> Any:
        """Fold and emit."""
        acc = self.acc
        current = acc.value()
        new = value if current is None else self.reduce_fn(current, value)
        acc.update(new)
        return [new]
