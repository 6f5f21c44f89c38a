"""User function base classes (PyFlink names) and the side-output tag.

Subclass one and override what you need. ``process_element`` may be a generator
(``yield`` outputs), return a list (or another collection or iterator) of outputs, or
return ``None`` for no output. A tuple, dict, str or bytes is one value, never a
collection of outputs: returning one from a function class is an error (return
``[value]``); a plain callable given where a function is expected (an interval join's
``process(lambda left, right, ctx: ...)``) returns one output that way. Outputs carry
the input element's timestamp; outputs of an event-time timer carry the timer's
timestamp.

Every function gets one context object: in ``open(ctx)`` use it to fetch state
handles; in ``process_element``/``on_timer`` it also knows the current element's
timestamp, the current key and the timer service. No method of a function is ever
called concurrently with another.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import Any

from streamcore.errors import ConfigurationError, UserFunctionError

__all__ = [
    "AsyncFunction",
    "AsyncFunctionContext",
    "AsyncRetryStrategy",
    "CoProcessFunction",
    "Context",
    "Function",
    "KeyedCoProcessFunction",
    "KeyedProcessFunction",
    "OutputTag",
    "ProcessFunction",
    "ProcessJoinFunction",
    "TimerService",
    "one_value_error",
]

#: Iterable types that are one value: a function returning one of them returned one value,
#: never a collection of outputs to split.
ONE_VALUE_TYPES = (tuple, dict, str, bytes, bytearray)


def one_value_error(fn: Any, what: str, operator_uid: str, value: Any) -> UserFunctionError:
    """The error for ``fn`` (called as ``what``) returning a tuple/dict/str/bytes where outputs are due."""
    kind = type(value).__name__
    msg = (
        f"{what} {function_name(fn)} of operator {operator_uid!r} returned a {kind}: a {kind} is one "
        f"value, not a collection of outputs, and is never split into its items. Return a list of "
        f"outputs ([value] for one), yield each output, or return None for none"
    )
    return UserFunctionError(msg)


class OutputTag:
    """Names a side output; ``ctx.output(tag, value)`` sends to it, ``get_side_output(tag)`` reads it.

    >>> late = OutputTag("late")
    >>> late.name
    'late'
    """

    __slots__ = ("name",)

    def __init__(self, name: str) -> None:
        if not isinstance(name, str) or not name:
            msg = f"OutputTag needs a non-empty str name, got {name!r}"
            raise ConfigurationError(msg)
        self.name = name

    def __eq__(self, other: object) -> bool:
        return isinstance(other, OutputTag) and other.name == self.name

    def __hash__(self) -> int:
        return hash(("OutputTag", self.name))

    def __repr__(self) -> str:
        return f"OutputTag({self.name!r})"


class TimerService:
    """Timers and time of the current key (what ``ctx.timer_service()`` returns)."""

    def current_watermark(self) -> int:
        """The operator's current event-time watermark."""
        raise NotImplementedError

    def current_processing_time(self) -> int:
        """The job clock's time in milliseconds."""
        raise NotImplementedError

    def register_event_time_timer(self, timestamp: int) -> None:
        """Call ``on_timer`` for the current key when the watermark passes ``timestamp``."""
        raise NotImplementedError

    def register_processing_time_timer(self, timestamp: int) -> None:
        """Call ``on_timer`` for the current key when the clock reaches ``timestamp``."""
        raise NotImplementedError

    def delete_event_time_timer(self, timestamp: int) -> None:
        """Cancel an event-time timer of the current key."""
        raise NotImplementedError

    def delete_processing_time_timer(self, timestamp: int) -> None:
        """Cancel a processing-time timer of the current key."""
        raise NotImplementedError


class Context:
    """What a function sees: element timestamp, current key, timers, state, side outputs."""

    def timestamp(self) -> int | None:
        """The current element's (or firing timer's) timestamp."""
        raise NotImplementedError

    def get_current_key(self) -> Any:
        """The current key (keyed functions only)."""
        raise NotImplementedError

    def timer_service(self) -> TimerService:
        """The timer service (registering timers needs a keyed stream)."""
        raise NotImplementedError

    def output(self, tag: OutputTag, value: Any) -> None:
        """Emit ``value`` to the side output ``tag``."""
        raise NotImplementedError

    def get_state(self, descriptor: Any) -> Any:
        """The state handle for ``descriptor`` (keyed functions only)."""
        raise NotImplementedError


class Function:
    """Lifecycle shared by every user function."""

    def open(self, ctx: Context) -> None:
        """Called once before the first element: fetch state handles here."""

    def close(self) -> None:
        """Called once after the last element."""


class ProcessFunction(Function):
    """A function over a non-keyed stream."""

    def process_element(self, value: Any, ctx: Context) -> Iterable[Any] | None:
        """Called per element; yield or return outputs."""
        raise NotImplementedError(f"{type(self).__name__} must implement process_element(value, ctx)")


class KeyedProcessFunction(Function):
    """A function over a keyed stream, with keyed state and timers.

    >>> class Count(KeyedProcessFunction):
    ...     def open(self, ctx):
    ...         from streamcore.state import ValueStateDescriptor
    ...         self.n = ctx.get_state(ValueStateDescriptor("n", default=0))
    ...     def process_element(self, value, ctx):
    ...         self.n.update(self.n.value() + 1)
    ...         yield ctx.get_current_key(), self.n.value()
    """

    def process_element(self, value: Any, ctx: Context) -> Iterable[Any] | None:
        """Called per element with the element's key current."""
        raise NotImplementedError(f"{type(self).__name__} must implement process_element(value, ctx)")

    def on_timer(self, timestamp: int, ctx: Context) -> Iterable[Any] | None:
        """Called when a timer of the current key fires."""
        return None


class CoProcessFunction(Function):
    """A function over two connected streams."""

    def process_element1(self, value: Any, ctx: Context) -> Iterable[Any] | None:
        """Called per element of the first stream."""
        raise NotImplementedError(f"{type(self).__name__} must implement process_element1(value, ctx)")

    def process_element2(self, value: Any, ctx: Context) -> Iterable[Any] | None:
        """Called per element of the second stream."""
        raise NotImplementedError(f"{type(self).__name__} must implement process_element2(value, ctx)")


class KeyedCoProcessFunction(CoProcessFunction):
    """A function over two connected keyed streams, with keyed state and timers."""

    def on_timer(self, timestamp: int, ctx: Context) -> Iterable[Any] | None:
        """Called when a timer of the current key fires."""
        return None


class ProcessJoinFunction(Function):
    """Called for every joined pair of an interval join."""

    def process_element(self, left: Any, right: Any, ctx: Any) -> Iterable[Any] | None:
        """Called per joined pair; ``ctx`` has left/right timestamps and ``output``."""
        raise NotImplementedError(f"{type(self).__name__} must implement process_element(left, right, ctx)")


class AsyncFunctionContext:
    """What an :class:`AsyncFunction`'s ``open(ctx)`` gets: which operator, job and task it serves."""

    __slots__ = ("job_name", "operator_uid", "task_id")

    def __init__(self, operator_uid: str, job_name: str, task_id: str | None) -> None:
        self.operator_uid = operator_uid
        self.job_name = job_name
        self.task_id = task_id


class AsyncFunction:
    """A function that enriches elements with asynchronous I/O (Flink's ``AsyncFunction``).

    Used by ``AsyncDataStream.ordered_wait`` / ``unordered_wait``. Every method except
    :meth:`timeout` runs on one asyncio event loop that the operator owns (in a helper
    thread), so ``open`` can create any asyncio client (a connection pool) and
    ``async_invoke`` can await it; many invocations are in flight at once, up to the
    operator's ``capacity``. Keep all I/O state on ``self``; never touch streamcore state
    from these methods. ``open`` and ``close`` may also be plain (non-async) methods.

    ``async_invoke(value)`` returns the element's outputs: a list (or another iterable),
    or ``None`` for none. A tuple, dict, str or bytes is one value and is an error (return
    ``[value]``). Outputs carry the input element's timestamp.

    >>> class Double(AsyncFunction):
    ...     async def async_invoke(self, value):
    ...         return [value * 2]
    """

    async def open(self, ctx: AsyncFunctionContext) -> None:
        """Called once on the event loop before the first element: open clients and pools here."""

    async def async_invoke(self, value: Any) -> Iterable[Any] | None:
        """Called per element on the event loop; return its outputs (a list) or ``None``."""
        raise NotImplementedError(f"{type(self).__name__} must implement async def async_invoke(value)")

    def timeout(self, value: Any) -> Iterable[Any] | None:
        """Called on the job's thread when every attempt of ``value`` timed out; return fallback outputs.

        The default raises :class:`~streamcore.errors.AsyncTimeoutError` naming the operator
        (the operator detects that this method was not overridden).
        """
        raise NotImplementedError

    async def close(self) -> None:
        """Called once on the event loop after the last element (also after failures)."""


@dataclass(frozen=True)
class AsyncRetryStrategy:
    """When and how often an async request is tried again (Flink's ``AsyncRetryStrategies``).

    An attempt fails when it raises an exception that ``retry_on_exception`` accepts
    (default: any ``Exception``), times out (``retry_on_timeout``), or returns a result that
    ``retry_on_result`` accepts (default: never). The ``n``-th retry waits
    ``min(initial_delay_ms * multiplier ** (n - 1), max_delay_ms)``. The predicates run on
    the operator's event loop: keep them pure.

    >>> AsyncRetryStrategy.fixed_delay(3, 50).delay_ms(2)
    50
    >>> AsyncRetryStrategy.exponential_backoff(5, 10, 1_000, 2.0).delay_ms(3)
    40
    """

    max_attempts: int = 3
    initial_delay_ms: int = 100
    max_delay_ms: int = 10_000
    multiplier: float = 2.0
    retry_on_exception: Callable[[BaseException], bool] | None = None
    retry_on_result: Callable[[Any], bool] | None = None
    retry_on_timeout: bool = True

    def __post_init__(self) -> None:
        if type(self.max_attempts) is not int or self.max_attempts < 1:
            msg = f"AsyncRetryStrategy max_attempts must be an int >= 1, got {self.max_attempts!r}"
            raise ConfigurationError(msg)
        for name in ("initial_delay_ms", "max_delay_ms"):
            v = getattr(self, name)
            if type(v) is not int or v < 0:
                msg = f"AsyncRetryStrategy {name} must be an int of milliseconds >= 0, got {v!r}"
                raise ConfigurationError(msg)
        if not isinstance(self.multiplier, (int, float)) or self.multiplier < 1:
            msg = f"AsyncRetryStrategy multiplier must be a number >= 1, got {self.multiplier!r}"
            raise ConfigurationError(msg)
        for name in ("retry_on_exception", "retry_on_result"):
            fn = getattr(self, name)
            if fn is not None and not callable(fn):
                msg = f"AsyncRetryStrategy {name} must be a callable or None, got {type(fn).__name__}"
                raise ConfigurationError(msg)

    @classmethod
    def no_retry(cls) -> AsyncRetryStrategy:
        """One attempt only."""
        return cls(max_attempts=1)

    @classmethod
    def fixed_delay(cls, max_attempts: int, delay_ms: int, **predicates: Any) -> AsyncRetryStrategy:
        """Up to ``max_attempts`` attempts, ``delay_ms`` apart."""
        return cls(max_attempts, delay_ms, delay_ms, 1.0, **predicates)

    @classmethod
    def exponential_backoff(
        cls,
        max_attempts: int,
        initial_delay_ms: int,
        max_delay_ms: int,
        multiplier: float = 2.0,
        **predicates: Any,
    ) -> AsyncRetryStrategy:
        """Up to ``max_attempts`` attempts; the waits grow by ``multiplier`` up to ``max_delay_ms``."""
        return cls(max_attempts, initial_delay_ms, max_delay_ms, multiplier, **predicates)

    def delay_ms(self, retry: int) -> int:
        """The wait before retry number ``retry`` (1 for the second attempt)."""
        return int(min(self.initial_delay_ms * self.multiplier ** (retry - 1), self.max_delay_ms))

    def retries_exception(self, exc: BaseException) -> bool:
        """Whether an attempt that raised ``exc`` is tried again (attempts permitting)."""
        pred = self.retry_on_exception
        return isinstance(exc, Exception) if pred is None else bool(pred(exc))

    def retries_result(self, result: Any) -> bool:
        """Whether an attempt that returned ``result`` is tried again (attempts permitting)."""
        pred = self.retry_on_result
        return pred is not None and bool(pred(result))


def function_name(fn: Any) -> str:
    """A readable name of a user function for error messages."""
    if hasattr(fn, "__qualname__"):
        return fn.__qualname__
    return type(fn).__qualname__
