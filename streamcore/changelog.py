"""Changelog rows: the kind of change a row carries in an updating stream (Flink's ``RowKind``).

An append-only stream carries plain values. An *updating* stream, the output of an
unbounded ``GROUP BY``, a regular join or a TopN, carries :class:`Change` records: a
row and what happened to it. Applying a changelog in order to an empty table gives the
current result: ``+I`` inserts a row, ``-U`` removes the old version of an updated row
and ``+U`` adds its new version, ``-D`` deletes a row.

>>> c = Change(RowKind.INSERT, ("shop-1", 3))
>>> str(c)
'+I(shop-1, 3)'
>>> update = [Change(RowKind.UPDATE_BEFORE, ("shop-1", 3)), Change(RowKind.UPDATE_AFTER, ("shop-1", 4))]
>>> apply_changelog([c, *update])
[('shop-1', 4)]
"""

from __future__ import annotations

import enum
from collections import Counter
from collections.abc import Callable, Iterable
from typing import Any, NamedTuple

from streamcore.errors import ChangelogError

__all__ = ["Change", "RowKind", "apply_changelog", "as_change", "row_key_selector"]


class RowKind(enum.IntEnum):
    """What a changelog row does to the result table; values as Flink's ``RowKind`` byte."""

    INSERT = 0
    UPDATE_BEFORE = 1
    UPDATE_AFTER = 2
    DELETE = 3

    @property
    def short_string(self) -> str:
        """Flink's two-character form: ``+I``, ``-U``, ``+U``, ``-D``."""
        return _SHORT[self]

    @property
    def is_addition(self) -> bool:
        """True for ``+I`` and ``+U`` (the row is in the result after this change)."""
        return self in (RowKind.INSERT, RowKind.UPDATE_AFTER)

    @classmethod
    def from_short_string(cls, text: str) -> RowKind:
        """The kind named by ``+I``, ``-U``, ``+U`` or ``-D``."""
        try:
            return _BY_SHORT[text]
        except KeyError:
            raise ChangelogError(f"unknown row kind {text!r}: expected one of +I, -U, +U, -D") from None


_SHORT = {RowKind.INSERT: "+I", RowKind.UPDATE_BEFORE: "-U", RowKind.UPDATE_AFTER: "+U", RowKind.DELETE: "-D"}
_BY_SHORT = {v: k for k, v in _SHORT.items()}


class Change(NamedTuple):
    """One changelog record: a row (a tuple of column values) and its :class:`RowKind`."""

    kind: RowKind
    row: tuple[Any, ...]

    def __str__(self) -> str:
        return f"{self.kind.short_string}({', '.join(str(v) for v in self.row)})"


def apply_changelog(changes: Iterable[Change]) -> list[tuple[Any, ...]]:
    """The table a changelog describes, as a list of rows in first-insertion order.

    Raises :class:`~streamcore.errors.ChangelogError` when a row is retracted that is not
    in the table: a changelog that does that is corrupt.
    """
    table: Counter[tuple[Any, ...]] = Counter()
    for change in changes:
        if change.kind.is_addition:
            table[change.row] += 1
        elif table[change.row] > 0:
            table[change.row] -= 1
        else:
            raise ChangelogError(f"changelog retracts {change.row!r}, which the table does not hold")
    return [row for row, n in table.items() for _ in range(n)]


def as_change(value: Any) -> Change:
    """The change a stream element stands for: a :class:`Change` itself, any other value ``+I`` of it.

    Operators over updating streams accept both, so an append-only stream of plain tuples
    needs no conversion.

    >>> str(as_change(("a", 1)))
    '+I(a, 1)'
    """
    if isinstance(value, Change):
        return value
    return Change(RowKind.INSERT, value)


class _RowKey:
    """A key selector applied to an element's row; reports the wrapped function's name and code."""

    def __init__(self, key_selector: Callable[[Any], Any]) -> None:
        self.key_selector = key_selector
        # what error messages read (streamcore.functions.function_name, the key selector's "defined at")
        self.__qualname__ = getattr(key_selector, "__qualname__", type(key_selector).__qualname__)
        code = getattr(key_selector, "__code__", None)
        if code is not None:
            self.__code__ = code

    def __call__(self, value: Any) -> Any:
        return self.key_selector(value.row if isinstance(value, Change) else value)


def row_key_selector(key_selector: Callable[[Any], Any]) -> Callable[[Any], Any]:
    """``key_selector`` applied to the row of an element (its :class:`Change`'s row, or itself).

    The key of an updating stream is a function of the row, never of its kind: ``-U`` and
    ``+U`` of one row must reach the same key.

    >>> key = row_key_selector(lambda r: r[0])
    >>> key(Change(RowKind.DELETE, ("a", 1))), key(("b", 2))
    ('a', 'b')
    """
    return _RowKey(key_selector)
