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

from collections.abc import Iterable
from typing import Any

from streamcore.errors import ConfigurationError, UserFunctionError

__all__ = [
    "CoProcessFunction",
    "Context",
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


class _Function:
    """Lifecycle shared by every user function."""

    def open(self, ctx: Context) -> None:
        """Called once before the first element: fetch state handles here."""

    def close(self) -> None:
        """Called once after the last element."""


class ProcessFunction(_Function):
    """A function over a non-keyed stream."""

    def process_element(self, value: Any, ctx: Context) -> Iterable[Any] | None:
        """Called per element; yield or return outputs."""
        raise NotImplementedError(f"{type(self).__name__} must implement process_element(value, ctx)")


class KeyedProcessFunction(_Function):
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


class CoProcessFunction(_Function):
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


class ProcessJoinFunction(_Function):
    """Called for every joined pair of an interval join."""

    def process_element(self, left: Any, right: Any, ctx: Any) -> Iterable[Any] | None:
        """Called per joined pair; ``ctx`` has left/right timestamps and ``output``."""
        raise NotImplementedError(f"{type(self).__name__} must implement process_element(left, right, ctx)")


def function_name(fn: Any) -> str:
    """A readable name of a user function for error messages."""
    if hasattr(fn, "__qualname__"):
        return fn.__qualname__
    return type(fn).__qualname__
