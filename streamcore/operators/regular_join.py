"""The regular join: an unbounded equi-join of two (possibly updating) streams, inner or outer.

``left.regular_join(right, left_key, right_key, how)`` keeps every row of both inputs
(until ``state_ttl_ms`` expires it) and emits the changelog of the join result, as
Flink's ``StreamingJoinOperator`` does: a joined row is ``+I`` when it appears and ``-D``
when either of its rows is retracted. An outer join also emits a row of one side padded
with ``None`` for the other side while it has no match: ``+I`` when the row arrives
unmatched, ``-D`` when its first match arrives, ``+I`` again when its last match is
retracted.

Inputs are :class:`~streamcore.changelog.Change` records or plain rows (``+I``); the key
selectors see the rows. ``+I``/``+U`` rows are added, ``-U``/``-D`` rows retracted.

>>> import streamcore as sc
>>> from streamcore.changelog import apply_changelog
>>> env = sc.StreamEnvironment()
>>> orders = env.from_collection([("o1", "shop-1"), ("o2", "shop-9")])
>>> shops = env.from_collection([("shop-1", "Lyon")])
>>> joined = orders.regular_join(shops, lambda o: o[1], lambda s: s[0], "left", right_width=2)
>>> sorted(apply_changelog(joined.execute_and_collect()))  # o1 may be padded first, then retracted
[('o1', 'shop-1', 'shop-1', 'Lyon'), ('o2', 'shop-9', None, None)]
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from streamcore.changelog import Change, RowKind
from streamcore.errors import ChangelogError, ConfigurationError, KeyEncodingError, StreamcoreError
from streamcore.operators.base import user_error
from streamcore.operators.changelog_base import ChangelogOperator
from streamcore.operators.group_aggregate import check_ttl
from streamcore.serde import encode_key
from streamcore.state.descriptors import MapStateDescriptor

__all__ = ["JOIN_TYPES", "RegularJoinOperator", "concat_rows", "regular_join_factory"]

#: the join types: which sides are outer (padded with ``None`` while unmatched).
JOIN_TYPES = {"inner": (False, False), "left": (True, False), "right": (False, True), "full": (True, True)}
#: names of the two map states (row -> [row, count, matches]), left input first.
SIDE_STATES = ("left", "right")
_SIDE_NAMES = ("left", "right")

_INSERT, _UPDATE_AFTER, _DELETE = RowKind.INSERT, RowKind.UPDATE_AFTER, RowKind.DELETE


def concat_rows(left_row: tuple[Any, ...], right_row: tuple[Any, ...]) -> tuple[Any, ...]:
    """The default output row of a join: the left row's fields, then the right row's."""
    return left_row + right_row


class RegularJoinOperator(ChangelogOperator):
    """Joins two keyed inputs on equal keys without a time bound, with retraction and outer joins.

    State per side and key: a map state ``row -> [row, count, matches]``. ``count`` is how
    many copies of the row the side holds (equal rows are one entry); ``matches``, kept
    for an outer side only (Flink's ``OuterJoinRecordStateView``), is how many rows of the
    other side it joins with, so the operator knows when the row becomes unmatched (its
    padded row is due again) without a second scan. Rows are map-state user keys, so
    their fields must have a key encoding (int, str, bytes, float, bool, None, tuples of
    these); rows that compare equal (``1`` and ``1.0``) are one entry, and the row first
    stored is the one emitted.

    For an element of one side, with ``others`` the rows the other side holds for the key:

    ``others`` are the rows the other side holds for the key that satisfy ``condition(left_row,
    right_row)`` when one is given (SQL's non-equi part of ``ON``: an outer row joined by none
    of them is padded).

    * added: stored; if ``others`` is empty and this side is outer, ``+I`` of it padded;
      otherwise, for each other row, ``-D`` of the other row padded when the other side is
      outer and the row had no match yet, then ``+I`` of the joined row (once per copy).
    * retracted: removed (a row the side does not hold raises :class:`ChangelogError`,
      unless ``state_ttl_ms`` is set and it may have expired: then it is ignored and
      counted in ``retractions_ignored``); if ``others`` is empty and this side is outer,
      ``-D`` of it padded; otherwise for each other row ``-D`` of the joined row, then
      ``+I`` of the other row padded when it lost its last match on an outer side.

    Outputs are ``+I`` and ``-D`` only (as Flink's join), each carrying the timestamp of
    the input element that caused it. No element is late; watermarks pass through.
    """

    def __init__(
        self,
        name: str,
        uid: str,
        key_selectors: list[Callable[[Any], Any]],
        how: str = "inner",
        combine: Callable[[tuple[Any, ...], tuple[Any, ...]], tuple[Any, ...]] | None = None,
        *,
        left_width: int | None = None,
        right_width: int | None = None,
        state_ttl_ms: int | None = None,
        condition: Callable[[tuple[Any, ...], tuple[Any, ...]], bool] | None = None,
    ) -> None:
        if len(key_selectors) != 2:
            msg = f"a regular join has two inputs, got {len(key_selectors)} key selectors"
            raise ConfigurationError(msg)
        super().__init__(name, uid, key_selectors)
        if how not in JOIN_TYPES:
            msg = f"regular_join(how={how!r}): how must be one of {', '.join(map(repr, JOIN_TYPES))}"
            raise ConfigurationError(msg)
        if combine is not None and not callable(combine):
            msg = f"regular_join(combine=...) takes a callable combine(left_row, right_row), got {combine!r}"
            raise ConfigurationError(msg)
        if condition is not None and not callable(condition):
            msg = (
                "regular_join(condition=...) takes a callable condition(left_row, right_row) -> bool, "
                f"got {condition!r}"
            )
            raise ConfigurationError(msg)
        self.condition = condition
        self.how = how
        self.outer = JOIN_TYPES[how]
        widths = (left_width, right_width)
        for side, width in enumerate(widths):
            if width is not None and (type(width) is not int or width < 0):
                msg = f"regular_join({_SIDE_NAMES[side]}_width=...) takes an int >= 0, got {width!r}"
                raise ConfigurationError(msg)
            # side 1-side is outer: its unmatched rows are padded with this side's width of Nones
            if self.outer[1 - side] and width is None:
                msg = (
                    f"regular_join(how={how!r}) pads unmatched {_SIDE_NAMES[1 - side]} rows with None for "
                    f"the {_SIDE_NAMES[side]} row's fields: pass {_SIDE_NAMES[side]}_width=<number of fields>"
                )
                raise ConfigurationError(msg)
        self.nulls = tuple(None if w is None else (None,) * w for w in widths)
        self.combine = combine or concat_rows
        self.ttl = check_ttl(state_ttl_ms, "regular_join()")

    def open(self) -> None:
        """Fetch the two map states."""
        get = self.backend.get_state
        self.states = [get(MapStateDescriptor(name, ttl=self.ttl)) for name in SIDE_STATES]

    def wrap_key_error(self, exc: KeyEncodingError, side: int) -> KeyEncodingError:
        """Name the operator, the input and what a join key and a row may hold."""
        msg = (
            f"operator {self.uid!r} (regular_join, {_SIDE_NAMES[side]} input): {exc}; the join key and "
            "every field of a row must be int, str, bytes, float, bool, None or a tuple of these"
        )
        return KeyEncodingError(msg)

    def blamed(self) -> tuple[Callable[..., Any], str]:
        """Failures inside the join are the ``combine`` function's."""
        return self.combine, "combine"

    def _joined(self, side: int, row: tuple[Any, ...], other_row: tuple[Any, ...]) -> tuple[Any, ...]:
        return self.combine(row, other_row) if side == 0 else self.combine(other_row, row)

    def _padded(self, side: int, row: tuple[Any, ...]) -> tuple[Any, ...]:
        nulls = self.nulls[1 - side]
        return self.combine(row, nulls) if side == 0 else self.combine(nulls, row)  # type: ignore[arg-type]

    def process_element(self, value: Any, key: Any, side: int, out: list[Change]) -> None:
        if isinstance(value, Change):
            kind, row = value
        else:
            kind, row = _INSERT, value
        mine, other = self.states[side], self.states[1 - side]
        my_outer, other_outer = self.outer[side], self.outer[1 - side]
        others = list(other.items())
        cond = self.condition
        if cond is not None and others:
            try:
                if side == 0:
                    others = [item for item in others if cond(row, item[1][0])]
                else:
                    others = [item for item in others if cond(item[1][0], row)]
            except StreamcoreError:
                raise
            except Exception as exc:
                raise user_error(self, cond, "condition", exc) from exc
        append = out.append
        if kind in (_INSERT, _UPDATE_AFTER):
            try:
                entry = mine.get(row)
            except TypeError:  # the heap's dict: an unhashable field (RocksDB raises KeyEncodingError)
                entry = None
            if entry is None:
                encode_key(row)  # a new row: fail alike on both backends when it cannot be a state key
                entry = [row, 0, sum(e[1] for _, e in others) if my_outer else 0]
            entry[1] += 1
            mine.put(row, entry)
            if not others:
                if my_outer:
                    append(Change(_INSERT, self._padded(side, row)))
                return
            for user_key, (other_row, copies, matches) in others:
                if other_outer:
                    if matches == 0:
                        padded = Change(_DELETE, self._padded(1 - side, other_row))
                        out.extend([padded] * copies)
                    other.put(user_key, [other_row, copies, matches + 1])
                joined = Change(_INSERT, self._joined(side, row, other_row))
                out.extend([joined] * copies)
            return
        entry = mine.get(row)
        if entry is None:
            if self.ttl is not None:
                self.retractions_ignored += 1
                return
            msg = (
                f"operator {self.uid!r} (regular_join) got {Change(kind, row)} on its "
                f"{_SIDE_NAMES[side]} input for key {key!r}, which that side does not hold: the input "
                "changelog retracts a row it never inserted (set state_ttl_ms if the row may have expired)"
            )
            raise ChangelogError(msg)
        row = entry[0]
        if entry[1] == 1:
            mine.remove(row)
        else:
            entry[1] -= 1
            mine.put(row, entry)
        if not others:
            if my_outer:
                append(Change(_DELETE, self._padded(side, row)))
            return
        for user_key, (other_row, copies, matches) in others:
            joined = Change(_DELETE, self._joined(side, row, other_row))
            out.extend([joined] * copies)
            if other_outer:
                other.put(user_key, [other_row, copies, matches - 1])
                if matches == 1:
                    padded = Change(_INSERT, self._padded(1 - side, other_row))
                    out.extend([padded] * copies)


def regular_join_factory(
    key_selectors: list[Callable[[Any], Any]],
    how: str,
    combine: Callable[[tuple[Any, ...], tuple[Any, ...]], tuple[Any, ...]] | None,
    left_width: int | None,
    right_width: int | None,
    state_ttl_ms: int | None,
    condition: Callable[[tuple[Any, ...], tuple[Any, ...]], bool] | None = None,
) -> Callable[[str, str], RegularJoinOperator]:
    """Validate the configuration now (when the job is built), return the operator's factory."""

    def factory(name: str, uid: str) -> RegularJoinOperator:
        return RegularJoinOperator(
            name,
            uid,
            key_selectors,
            how,
            combine,
            left_width=left_width,
            right_width=right_width,
            state_ttl_ms=state_ttl_ms,
            condition=condition,
        )

    factory("check", "check")
    return factory
