"""Window triggers and evictors (PyFlink names): configuration only.

A *trigger* decides when a window's contents are evaluated (fired) and when they are
dropped (purged), from event time, processing time, element counts or the end of input;
an *evictor* drops elements before evaluation. Like the assigners of
:mod:`streamcore.windowing`, they are immutable configuration shared by every key and
window: per-window trigger state and timers live in the window operator's keyed state,
reached through a :class:`TriggerContext`.
"""

from __future__ import annotations

from enum import Enum
from operator import add
from typing import Any

from streamcore.errors import ConfigurationError
from streamcore.state.descriptors import ReducingStateDescriptor

__all__ = [
    "ContinuousEventTimeTrigger",
    "CountEvictor",
    "CountTrigger",
    "EndOfStreamTrigger",
    "EventTimeTrigger",
    "Evictor",
    "NeverTrigger",
    "ProcessingTimeTrigger",
    "PurgingTrigger",
    "Trigger",
    "TriggerContext",
    "TriggerResult",
    "positive_ms",
]


def positive_ms(value: Any, what: str) -> int:
    """``value`` if it is an int of milliseconds > 0; else a ConfigurationError naming ``what``."""
    if type(value) is not int or value <= 0:
        msg = f"{what} must be an int of milliseconds > 0, got {value!r}; use streamcore.time.seconds(...)"
        raise ConfigurationError(msg)
    return value


class TriggerResult(Enum):
    """What a trigger asks the window operator to do with a window."""

    CONTINUE = (False, False)
    FIRE = (True, False)
    PURGE = (False, True)
    FIRE_AND_PURGE = (True, True)

    def is_fire(self) -> bool:
        """Evaluate the window function over the contents and emit the result."""
        return self.value[0]

    def is_purge(self) -> bool:
        """Drop the window's contents (not its trigger state or timers)."""
        return self.value[1]


class TriggerContext:
    """What a trigger may use: time, timers and state of the current key and window.

    The window operator passes one to every trigger call; timers and state are scoped
    to the key and window the call is about. In ``on_merge``, ``merge_partitioned_state``
    folds the state of the merged windows into the new one.
    """

    def get_current_watermark(self) -> int:
        """The operator's event-time watermark."""
        raise NotImplementedError

    def get_current_processing_time(self) -> int:
        """The job clock's time."""
        raise NotImplementedError

    def register_event_time_timer(self, time: int) -> None:
        """Call ``on_event_time`` once the watermark reaches ``time``."""
        raise NotImplementedError

    def register_processing_time_timer(self, time: int) -> None:
        """Call ``on_processing_time`` once the clock reaches ``time``."""
        raise NotImplementedError

    def delete_event_time_timer(self, time: int) -> None:
        """Cancel an event-time timer of this key and window."""
        raise NotImplementedError

    def delete_processing_time_timer(self, time: int) -> None:
        """Cancel a processing-time timer of this key and window."""
        raise NotImplementedError

    def get_partitioned_state(self, descriptor: Any) -> Any:
        """The state handle for ``descriptor``, scoped to this key and window."""
        raise NotImplementedError

    def merge_partitioned_state(self, descriptor: Any) -> None:
        """In ``on_merge`` only: fold the merged windows' reducing state into this window's."""
        raise NotImplementedError


class Trigger:
    """Decides when a window fires and when it is purged. Subclass it for custom rules.

    Triggers are configuration, shared by all keys and windows: per-window data goes in
    ``ctx.get_partitioned_state(...)`` and timers, never in attributes.
    """

    def on_element(
        self, element: Any, timestamp: int | None, window: Any, ctx: TriggerContext
    ) -> TriggerResult:
        """Called for every element added to ``window``."""
        raise NotImplementedError(f"{type(self).__name__} must implement on_element")

    def on_event_time(self, time: int, window: Any, ctx: TriggerContext) -> TriggerResult:
        """An event-time timer of this window fired."""
        return TriggerResult.CONTINUE

    def on_processing_time(self, time: int, window: Any, ctx: TriggerContext) -> TriggerResult:
        """A processing-time timer of this window fired."""
        return TriggerResult.CONTINUE

    def can_merge(self) -> bool:
        """Whether this trigger supports merging (session) windows."""
        return False

    def on_merge(self, window: Any, ctx: TriggerContext) -> None:
        """Windows were merged into ``window``: re-register timers, merge state."""
        msg = f"{type(self).__name__} does not support merging windows"
        raise ConfigurationError(msg)

    def clear(self, window: Any, ctx: TriggerContext) -> None:
        """The window is gone: delete its timers and state."""

    def __repr__(self) -> str:
        return f"{type(self).__name__}()"


class EventTimeTrigger(Trigger):
    """Fires once the watermark passes the window's end (the default of event-time windows).

    An element arriving for a window that already fired (within the allowed lateness)
    fires it again at once, with the updated contents.
    """

    @staticmethod
    def create() -> EventTimeTrigger:
        """The trigger."""
        return EventTimeTrigger()

    def on_element(
        self, element: Any, timestamp: int | None, window: Any, ctx: TriggerContext
    ) -> TriggerResult:
        """Fire late windows at once; otherwise wait for the watermark."""
        if window.max_timestamp() <= ctx.get_current_watermark():
            return TriggerResult.FIRE
        ctx.register_event_time_timer(window.max_timestamp())
        return TriggerResult.CONTINUE

    def on_event_time(self, time: int, window: Any, ctx: TriggerContext) -> TriggerResult:
        """Fire at the window's end."""
        return TriggerResult.FIRE if time == window.max_timestamp() else TriggerResult.CONTINUE

    def can_merge(self) -> bool:
        """Yes."""
        return True

    def on_merge(self, window: Any, ctx: TriggerContext) -> None:
        """Wait for the merged window's end (unless the watermark already passed it)."""
        if window.max_timestamp() > ctx.get_current_watermark():
            ctx.register_event_time_timer(window.max_timestamp())

    def clear(self, window: Any, ctx: TriggerContext) -> None:
        """Delete the end-of-window timer."""
        ctx.delete_event_time_timer(window.max_timestamp())


class ProcessingTimeTrigger(Trigger):
    """Fires when the job clock reaches the window's end (the default of processing-time windows)."""

    @staticmethod
    def create() -> ProcessingTimeTrigger:
        """The trigger."""
        return ProcessingTimeTrigger()

    def on_element(
        self, element: Any, timestamp: int | None, window: Any, ctx: TriggerContext
    ) -> TriggerResult:
        """Register the end-of-window timer."""
        ctx.register_processing_time_timer(window.max_timestamp())
        return TriggerResult.CONTINUE

    def on_processing_time(self, time: int, window: Any, ctx: TriggerContext) -> TriggerResult:
        """Fire."""
        return TriggerResult.FIRE

    def can_merge(self) -> bool:
        """Yes."""
        return True

    def on_merge(self, window: Any, ctx: TriggerContext) -> None:
        """Wait for the merged window's end."""
        if window.max_timestamp() > ctx.get_current_processing_time():
            ctx.register_processing_time_timer(window.max_timestamp())

    def clear(self, window: Any, ctx: TriggerContext) -> None:
        """Delete the end-of-window timer."""
        ctx.delete_processing_time_timer(window.max_timestamp())


class CountTrigger(Trigger):
    """Fires every ``n`` elements of a window (contents stay unless wrapped in :class:`PurgingTrigger`)."""

    def __init__(self, count: int) -> None:
        if type(count) is not int or count < 1:
            msg = f"CountTrigger needs an int count >= 1, got {count!r}"
            raise ConfigurationError(msg)
        self.count = count
        self._state = ReducingStateDescriptor("trigger.count", add)

    @staticmethod
    def of(count: int) -> CountTrigger:
        """Fire every ``count`` elements."""
        return CountTrigger(count)

    def on_element(
        self, element: Any, timestamp: int | None, window: Any, ctx: TriggerContext
    ) -> TriggerResult:
        """Count; fire (and restart the count) at ``n``."""
        st = ctx.get_partitioned_state(self._state)
        st.add(1)
        if st.get() >= self.count:
            st.clear()
            return TriggerResult.FIRE
        return TriggerResult.CONTINUE

    def can_merge(self) -> bool:
        """Yes: counts of merged windows add up."""
        return True

    def on_merge(self, window: Any, ctx: TriggerContext) -> None:
        """Sum the counts of the merged windows."""
        ctx.merge_partitioned_state(self._state)

    def clear(self, window: Any, ctx: TriggerContext) -> None:
        """Drop the count."""
        ctx.get_partitioned_state(self._state).clear()

    def __repr__(self) -> str:
        return f"CountTrigger.of({self.count})"


class ContinuousEventTimeTrigger(Trigger):
    """Early firings: fires every ``interval`` of event time while the window is open, then at its end.

    Early firing times are aligned to multiples of ``interval`` (like windows, from the
    epoch): an element at ``ts`` schedules a firing at the next multiple after it.
    Each firing emits the window's result so far (an update; contents are kept).
    """

    def __init__(self, interval: int) -> None:
        self.interval = positive_ms(interval, "ContinuousEventTimeTrigger interval")
        self._state = ReducingStateDescriptor("trigger.fire-time", min)

    @staticmethod
    def of(interval: int) -> ContinuousEventTimeTrigger:
        """Fire every ``interval`` ms of event time."""
        return ContinuousEventTimeTrigger(interval)

    def on_element(
        self, element: Any, timestamp: int | None, window: Any, ctx: TriggerContext
    ) -> TriggerResult:
        """Register the window-end timer and, if none is pending, the next early firing."""
        end = window.max_timestamp()
        if end <= ctx.get_current_watermark():
            return TriggerResult.FIRE
        ctx.register_event_time_timer(end)
        st = ctx.get_partitioned_state(self._state)
        if st.get() is None and timestamp is not None:
            self._schedule((timestamp // self.interval + 1) * self.interval, end, st, ctx)
        return TriggerResult.CONTINUE

    def _schedule(self, at: int, end: int, st: Any, ctx: TriggerContext) -> None:
        if at < end:
            st.add(at)
            ctx.register_event_time_timer(at)

    def on_event_time(self, time: int, window: Any, ctx: TriggerContext) -> TriggerResult:
        """Fire at the window's end, and at the scheduled early firing (scheduling the next)."""
        end = window.max_timestamp()
        st = ctx.get_partitioned_state(self._state)
        scheduled = st.get()
        if scheduled is not None and scheduled == time:
            st.clear()
            self._schedule(time + self.interval, end, st, ctx)
            return TriggerResult.FIRE
        return TriggerResult.FIRE if time == end else TriggerResult.CONTINUE

    def can_merge(self) -> bool:
        """Yes: the earliest pending firing of the merged windows survives."""
        return True

    def on_merge(self, window: Any, ctx: TriggerContext) -> None:
        """Keep the earliest scheduled firing; wait for the merged window's end."""
        ctx.merge_partitioned_state(self._state)
        scheduled = ctx.get_partitioned_state(self._state).get()
        if scheduled is not None:
            ctx.register_event_time_timer(scheduled)
        if window.max_timestamp() > ctx.get_current_watermark():
            ctx.register_event_time_timer(window.max_timestamp())

    def clear(self, window: Any, ctx: TriggerContext) -> None:
        """Delete both timers and the schedule."""
        st = ctx.get_partitioned_state(self._state)
        scheduled = st.get()
        if scheduled is not None:
            ctx.delete_event_time_timer(scheduled)
        st.clear()
        ctx.delete_event_time_timer(window.max_timestamp())

    def __repr__(self) -> str:
        return f"ContinuousEventTimeTrigger.of({self.interval})"


class PurgingTrigger(Trigger):
    """Wraps a trigger so that every firing also purges the contents."""

    def __init__(self, nested: Trigger) -> None:
        if not isinstance(nested, Trigger):
            msg = f"PurgingTrigger.of() takes a Trigger, got {type(nested).__name__}"
            raise ConfigurationError(msg)
        self.nested = nested

    @staticmethod
    def of(nested: Trigger) -> PurgingTrigger:
        """Purge whenever ``nested`` fires."""
        return PurgingTrigger(nested)

    @staticmethod
    def _purging(result: TriggerResult) -> TriggerResult:
        return TriggerResult.FIRE_AND_PURGE if result.is_fire() else result

    def on_element(
        self, element: Any, timestamp: int | None, window: Any, ctx: TriggerContext
    ) -> TriggerResult:
        """Delegate; turn FIRE into FIRE_AND_PURGE."""
        return self._purging(self.nested.on_element(element, timestamp, window, ctx))

    def on_event_time(self, time: int, window: Any, ctx: TriggerContext) -> TriggerResult:
        """Delegate; turn FIRE into FIRE_AND_PURGE."""
        return self._purging(self.nested.on_event_time(time, window, ctx))

    def on_processing_time(self, time: int, window: Any, ctx: TriggerContext) -> TriggerResult:
        """Delegate; turn FIRE into FIRE_AND_PURGE."""
        return self._purging(self.nested.on_processing_time(time, window, ctx))

    def can_merge(self) -> bool:
        """As the nested trigger."""
        return self.nested.can_merge()

    def on_merge(self, window: Any, ctx: TriggerContext) -> None:
        """Delegate."""
        self.nested.on_merge(window, ctx)

    def clear(self, window: Any, ctx: TriggerContext) -> None:
        """Delegate."""
        self.nested.clear(window, ctx)

    def __repr__(self) -> str:
        return f"PurgingTrigger.of({self.nested!r})"


class NeverTrigger(Trigger):
    """Never fires: the default of :class:`GlobalWindows`, which needs an explicit trigger."""

    def on_element(
        self, element: Any, timestamp: int | None, window: Any, ctx: TriggerContext
    ) -> TriggerResult:
        """Never fire."""
        return TriggerResult.CONTINUE

    def can_merge(self) -> bool:
        """Yes (nothing to merge)."""
        return True

    def on_merge(self, window: Any, ctx: TriggerContext) -> None:
        """Nothing to do."""


class EndOfStreamTrigger(EventTimeTrigger):
    """Fires when the input ends (:meth:`GlobalWindows.create_with_end_of_stream_trigger`).

    The event-time trigger of the global window: only the final watermark reaches its end.
    """


class Evictor:
    """Drops elements of a window before its function is evaluated (the rest stays in state)."""

    def evict_before(self, elements: list[Any], window: Any) -> list[Any]:
        """The elements to keep, in order (called before evaluation)."""
        return elements


class CountEvictor(Evictor):
    """Keeps only the last ``count`` elements of a window (sliding count windows)."""

    def __init__(self, count: int) -> None:
        if type(count) is not int or count < 1:
            msg = f"CountEvictor needs an int count >= 1, got {count!r}"
            raise ConfigurationError(msg)
        self.count = count

    @staticmethod
    def of(count: int) -> CountEvictor:
        """Keep the last ``count`` elements."""
        return CountEvictor(count)

    def evict_before(self, elements: list[Any], window: Any) -> list[Any]:
        """The last ``count`` elements."""
        return elements[-self.count :] if len(elements) > self.count else elements

    def __repr__(self) -> str:
        return f"CountEvictor.of({self.count})"
