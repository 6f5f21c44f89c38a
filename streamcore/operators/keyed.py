"""What every keyed operator shares: keys, key groups, state backend, timers, lateness.

A keyed operator computes the key of each element with its key selector (one per
input side), makes it current on a :class:`KeyContext` shared with its state backend,
then calls user code. Elements whose timestamp is below the operator's watermark are
late: counted, and sent to the late-data side output when one is configured.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

from streamcore.errors import KeyEncodingError, KeySelectorError, StreamcoreError
from streamcore.functions import TimerService, function_name
from streamcore.operators.base import OperatorRuntime, SnapshotContext, StreamOperator
from streamcore.state.api import KeyContext, KeyedStateBackend
from streamcore.time import MIN_TIMESTAMP

__all__ = ["KeyedOperator", "KeyedTimerService"]

#: how many batches between two incremental TTL cleanups.
CLEANUP_EVERY_BATCHES = 16
#: entries of TTL'd state examined per cleanup (a few milliseconds; a full pass over the
#: state is spread over many cleanups, as Flink's incremental cleanup does).
CLEANUP_BUDGET = 4_096


class KeyedTimerService(TimerService):
    """The user-facing timer service of a keyed operator (namespace ``None``)."""

    __slots__ = ("_op", "_svc")

    def __init__(self, op: KeyedOperator) -> None:
        self._op = op
        self._svc = op.timers

    def current_watermark(self) -> int:
        """The operator's watermark."""
        return self._op.current_watermark

    def current_processing_time(self) -> int:
        """The job clock's time."""
        return self._op.clock_now()

    def register_event_time_timer(self, timestamp: int) -> None:
        """Fire ``on_timer`` for the current key once the watermark passes ``timestamp``."""
        self._svc.register_event_time_timer(timestamp)

    def register_processing_time_timer(self, timestamp: int) -> None:
        """Fire ``on_timer`` for the current key once the clock reaches ``timestamp``."""
        self._svc.register_processing_time_timer(timestamp)

    def delete_event_time_timer(self, timestamp: int) -> None:
        """Cancel an event-time timer of the current key."""
        self._svc.delete_event_time_timer(timestamp)

    def delete_processing_time_timer(self, timestamp: int) -> None:
        """Cancel a processing-time timer of the current key."""
        self._svc.delete_processing_time_timer(timestamp)


class KeyedOperator(StreamOperator):
    """Base of keyed operators (process, co-process, interval join, windows)."""

    keyed = True
    stateful = True

    def __init__(
        self,
        name: str,
        uid: str,
        key_selectors: Sequence[Callable[[Any], Any]],
        late_tags: Sequence[str | None] = (),
    ) -> None:
        super().__init__(name, uid)
        self.key_selectors = list(key_selectors)
        self.late_tags = list(late_tags) + [None] * (len(self.key_selectors) - len(late_tags))
        self.late_per_side = [0] * len(self.key_selectors)
        self.key_context: KeyContext | None = None
        self.backend: KeyedStateBackend = None  # type: ignore[assignment]
        self._batches = 0

    def setup(self, runtime: OperatorRuntime) -> None:
        """Create the key context, the keyed backend and the timer service."""
        super().setup(runtime)
        self.key_context = KeyContext(runtime.max_parallelism)
        self.backend = runtime.state_factory.create(self.uid, self.key_context)
        self.timers = self.backend.timer_service("user")
        self._clock = runtime.clock

    def clock_now(self) -> int:
        """The job clock's time."""
        return self._clock.now_ms()

    # -- per batch -------------------------------------------------------------------
    def extract_keys(self, values: list[Any], side: int = 0) -> list[Any]:
        """Keys of a batch; a raising key selector becomes :class:`KeySelectorError`."""
        kf = self.key_selectors[side]
        try:
            return [kf(v) for v in values]
        except StreamcoreError:
            raise
        except Exception as exc:
            raise self._key_selector_error(kf, values, exc) from exc

    def _key_selector_error(self, kf: Any, values: list[Any], exc: Exception) -> KeySelectorError:
        """Name the ``key_by`` (its function and where it is defined) and show the element (truncated)."""
        element = "an element"
        for v in values:  # find the element it failed on (key selectors are pure)
            try:
                kf(v)
            except Exception:
                text = repr(v)
                element = f"element {text if len(text) <= 200 else text[:197] + '...'}"
                break
        code = getattr(kf, "__code__", None)
        where = f" (defined at {code.co_filename}:{code.co_firstlineno})" if code is not None else ""
        msg = (
            f"key_by({function_name(kf)}){where} raised {type(exc).__name__}: {exc} for {element}, "
            f"feeding operator {self.uid!r}; make the key selector return a key for every element"
        )
        return KeySelectorError(msg)

    def key_error(self, exc: KeyEncodingError, side: int = 0) -> KeyEncodingError:
        """Re-word a key encoding error with the operator and key selector names."""
        kf = self.key_selectors[side]
        return KeyEncodingError(f"operator {self.uid!r}, key selector {function_name(kf)}: {exc}")

    def drop_late(
        self, values: list[Any], timestamps: list[int] | None, keys: list[Any], side: int = 0
    ) -> tuple[list[Any], list[int] | None, list[Any]]:
        """Split off late elements (``ts < watermark``): counted, or sent to the late side output."""
        wm = self.current_watermark
        if timestamps is None or wm == MIN_TIMESTAMP or min(timestamps) >= wm:
            return values, timestamps, keys
        keep = [ts >= wm for ts in timestamps]
        late_v = [v for v, k in zip(values, keep, strict=True) if not k]
        late_t = [t for t, k in zip(timestamps, keep, strict=True) if not k]
        self.late_records += len(late_v)
        self.late_per_side[side] += len(late_v)
        tag = self.late_tags[side]
        if tag is not None:
            self.output.emit_side(tag, late_v, late_t)
        return (
            [v for v, k in zip(values, keep, strict=True) if k],
            [t for t, k in zip(timestamps, keep, strict=True) if k],
            [x for x, k in zip(keys, keep, strict=True) if k],
        )

    def cleanup_state_incrementally(self) -> None:
        """Periodic housekeeping between batches: incremental TTL cleanup and empty namespaces (heap)."""
        self._batches += 1
        if self._batches % CLEANUP_EVERY_BATCHES == 0 and self.backend.has_states():
            self.backend.cleanup_expired(CLEANUP_BUDGET)

    # -- timers ------------------------------------------------------------------------
    def process_watermark(self, watermark: int) -> None:
        """Fire every event-time timer up to ``watermark`` in order, then forward it."""
        self.backend.event_time = watermark
        pop = self.timers.pop_event_timer
        timer = pop(watermark)
        if timer is not None:
            out: list[Any] = []
            out_ts: list[Any] = []
            set_key = self.key_context.set_current_key  # type: ignore[union-attr]
            self.backend.begin_batch()
            try:
                while timer is not None:
                    ts, key, ns = timer
                    set_key(key)
                    self.on_event_timer(ts, ns, out, out_ts)
                    timer = pop(watermark)
            finally:
                self.backend.end_batch()
            self.records_out += len(out)
            self.output.emit(out, out_ts)
            self.flush_side_outputs()
        self.on_watermark(watermark)
        self.output.emit_watermark(watermark)

    def on_processing_time(self, now: int) -> None:
        """Fire every processing-time timer due at ``now``; outputs carry no timestamp."""
        nxt = self.timers.next_processing_time()
        if nxt is None or nxt > now:
            return
        pop = self.timers.pop_processing_timer
        out: list[Any] = []
        set_key = self.key_context.set_current_key  # type: ignore[union-attr]
        self.backend.begin_batch()
        try:
            timer = pop(now)
            while timer is not None:
                ts, key, ns = timer
                set_key(key)
                self.on_processing_timer(ts, ns, out)
                timer = pop(now)
        finally:
            self.backend.end_batch()
        self.records_out += len(out)
        self.output.emit(out, None)
        self.flush_side_outputs()

    def on_event_timer(self, timestamp: int, namespace: Any, out: list[Any], out_ts: list[Any]) -> None:
        """An event-time timer of the current key fired; append outputs to ``out``/``out_ts``."""

    def on_processing_timer(self, timestamp: int, namespace: Any, out: list[Any]) -> None:
        """A processing-time timer of the current key fired; append outputs to ``out``."""

    def on_watermark(self, watermark: int) -> None:
        """Hook after timers fired for ``watermark`` (cleanup by watermark)."""

    def flush_side_outputs(self) -> None:
        """Emit side outputs buffered by user code (subclasses with a context override)."""

    # -- checkpoints -------------------------------------------------------------------
    def snapshot_state(self, ctx: SnapshotContext) -> Any:
        """The keyed backend's image plus the operator's own state."""
        return {"keyed": self.backend.snapshot(ctx.canonical), "operator": self.snapshot_operator_state()}

    def restore_state(self, image: Any) -> None:
        """Load an image written by :meth:`snapshot_state`."""
        if image is None:
            return
        self.backend.restore(image.get("keyed") or {})
        self.restore_operator_state(image.get("operator"))

    def snapshot_operator_state(self) -> Any:
        """Non-keyed state of the operator itself (subclasses)."""
        return None

    def restore_operator_state(self, image: Any) -> None:
        """Load what :meth:`snapshot_operator_state` returned."""

    def describe_state(self) -> dict[str, Any] | None:
        """What the keyed backend has registered (state kinds, timers, buffers)."""
        return self.backend.describe()

    def restore_watermarks(self, state: list[Any]) -> None:
        """Restore the watermarks; event-time TTL reads the operator's watermark too."""
        super().restore_watermarks(state)
        self.backend.event_time = self.current_watermark

    def metrics(self) -> dict[str, Any]:
        """Counters plus per-state figures of the backend."""
        m = super().metrics()
        m["late_per_side"] = list(self.late_per_side)
        m["event_timers"] = self.timers.num_event_timers()
        m["state"] = self.backend.metrics()
        return m
