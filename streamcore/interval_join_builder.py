"""The interval join builder: ``left.interval_join(right).between(lower, upper).process(fn)``.

:class:`IntervalJoinBuilder` validates bounds, exclusivity, late-data tags and the scan
mode, and adds an :class:`~streamcore.operators.interval_join.IntervalJoinOperator` to
the graph through ``left.connect(right).transform``.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, Generic

from streamcore.errors import ConfigurationError
from streamcore.functions import OutputTag, ProcessJoinFunction
from streamcore.graph import KeyedInput, S_co
from streamcore.operators.interval_join import SCAN_MODES, IntervalJoinOperator, check_bound

__all__ = ["IntervalJoinBuilder"]


class IntervalJoinBuilder(Generic[S_co]):
    """Configures ``left.interval_join(right)``; :meth:`process` adds the join to the graph.

    ``between(lower, upper)`` is required. Bounds are int milliseconds relative to the left
    element: a right element joins when ``left.ts + lower <= right.ts <= left.ts + upper``.
    """

    def __init__(self, left: KeyedInput[S_co], right: KeyedInput[S_co]) -> None:
        self._left = left
        self._right = right
        self._bounds: tuple[int, int] | None = None
        self._lower_inclusive = True
        self._upper_inclusive = True
        self._late: list[str | None] = [None, None]
        self._scan = "range"
        self._cache_entries: int | None = None

    def between(self, lower: int, upper: int) -> IntervalJoinBuilder[S_co]:
        """Join right elements with ``left.ts + lower <= right.ts <= left.ts + upper``.

        Raises:
            ConfigurationError: a bound is not an int, or ``lower > upper``.
        """
        lower = check_bound(lower, "lower bound")
        upper = check_bound(upper, "upper bound")
        if lower > upper:
            msg = f"between({lower}, {upper}): the lower bound must not exceed the upper bound"
            raise ConfigurationError(msg)
        self._bounds = (lower, upper)
        return self

    def lower_bound_exclusive(self, exclusive: bool = True) -> IntervalJoinBuilder[S_co]:
        """Exclude ``right.ts == left.ts + lower``."""
        self._lower_inclusive = not exclusive
        return self

    def upper_bound_exclusive(self, exclusive: bool = True) -> IntervalJoinBuilder[S_co]:
        """Exclude ``right.ts == left.ts + upper``."""
        self._upper_inclusive = not exclusive
        return self

    def _tag(self, tag: OutputTag, what: str) -> str:
        if not isinstance(tag, OutputTag):
            msg = f"{what}() takes an OutputTag, got {type(tag).__name__}"
            raise ConfigurationError(msg)
        return tag.name

    def side_output_left_late_data(self, tag: OutputTag) -> IntervalJoinBuilder[S_co]:
        """Send late left elements to side output ``tag`` instead of dropping them."""
        self._late[0] = self._tag(tag, "side_output_left_late_data")
        return self

    def side_output_right_late_data(self, tag: OutputTag) -> IntervalJoinBuilder[S_co]:
        """Send late right elements to side output ``tag`` instead of dropping them."""
        self._late[1] = self._tag(tag, "side_output_right_late_data")
        return self

    def scan(self, mode: str) -> IntervalJoinBuilder[S_co]:
        """``"range"`` (default): probes seek the exact time range; ``"prefix"``: read the whole key."""
        if mode not in SCAN_MODES:
            msg = f"scan() takes one of {SCAN_MODES}, got {mode!r}"
            raise ConfigurationError(msg)
        self._scan = mode
        return self

    def buffer_cache_entries(self, entries: int) -> IntervalJoinBuilder[S_co]:
        """How many of the newest elements each side's buffer keeps in memory on RocksDB.

        An element that expires while among them never reaches RocksDB; more of them are
        written in one sorted batch. Default ``DEFAULT_BUFFER_CACHE_ENTRIES`` (65,536 a
        side, a few MiB); ``0`` writes every element through. The heap backend holds all.
        """
        if type(entries) is not int or entries < 0:
            msg = f"buffer_cache_entries() takes an int >= 0, got {entries!r}"
            raise ConfigurationError(msg)
        self._cache_entries = entries
        return self

    def process(self, fn: ProcessJoinFunction | Callable[[Any, Any, Any], Any]) -> S_co:
        """Add the join with function ``fn`` and return the stream of its outputs.

        ``fn`` is a :class:`ProcessJoinFunction` or a callable ``fn(left, right, ctx)``;
        either returns or yields the outputs of a pair (or calls ``ctx.emit``).

        Raises:
            ConfigurationError: no ``between``, bounds empty after exclusivity, or a bad ``fn``.
        """
        if self._bounds is None:
            msg = "interval join: call between(lower, upper) before process()"
            raise ConfigurationError(msg)
        if not isinstance(fn, ProcessJoinFunction) and not callable(fn):
            msg = f"interval join process() takes a ProcessJoinFunction or callable, got {type(fn).__name__}"
            raise ConfigurationError(msg)
        lower, upper = self._bounds
        eff_lower = lower if self._lower_inclusive else lower + 1
        eff_upper = upper if self._upper_inclusive else upper - 1
        if eff_lower > eff_upper:
            msg = (
                f"interval join between({lower}, {upper}) with exclusive bounds is empty "
                f"({eff_lower} > {eff_upper} once inclusive); widen the interval or make a bound inclusive"
            )
            raise ConfigurationError(msg)
        left, right = self._left, self._right
        key_selectors = [left.key_selector, right.key_selector]
        late = (self._late[0], self._late[1])
        lower_inclusive, upper_inclusive, scan = self._lower_inclusive, self._upper_inclusive, self._scan
        cache_entries = self._cache_entries

        def factory(name: str, uid: str) -> IntervalJoinOperator:
            return IntervalJoinOperator(
                name,
                uid,
                fn,
                key_selectors,
                lower,
                upper,
                lower_inclusive=lower_inclusive,
                upper_inclusive=upper_inclusive,
                late_tags=late,
                scan=scan,
                buffer_cache_entries=cache_entries,
            )

        return left.connect(right).transform("interval_join", factory)
