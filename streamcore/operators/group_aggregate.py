"""The unbounded group aggregate: ``GROUP BY`` over a (possibly updating) stream, with retraction.

``stream.key_by(k).group_aggregate(agg)`` keeps, per key, an accumulator of ``agg`` over
the rows of the key's group and emits the changelog of the result table, as Flink's
``GroupAggFunction`` does (one output per input record, no mini-batching):

* the group's first row: ``+I(new)``;
* a later ``+I``/``+U`` row (added) or ``-U``/``-D`` row (retracted): ``-U(old), +U(new)``,
  or nothing when the result row did not change;
* the group's last row retracted: ``-D(old)``, and the group's state is cleared.

The key selector sees the row of each element (never the :class:`~streamcore.changelog.Change`
wrapping it), so ``-U`` and ``+U`` of a row reach the same group.

>>> import streamcore as sc
>>> from streamcore.aggregates import Count, Sum, combine
>>> from streamcore.changelog import Change, RowKind
>>> env = sc.StreamEnvironment()
>>> rows = [("a", 1), ("b", 5), ("a", 2), Change(RowKind.DELETE, ("b", 5))]
>>> out = (env.from_collection(rows).key_by(lambda r: r[0])
...        .group_aggregate(combine(n=Count(), total=Sum(lambda r: r[1])))
...        .execute_and_collect())
>>> [str(c) for c in out]
['+I(a, 1, 1)', '+I(b, 1, 5)', '-U(a, 1, 1)', '+U(a, 2, 3)', '-D(b, 1, 5)']
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from streamcore.aggregates.base import AggregateFunction
from streamcore.changelog import Change, RowKind
from streamcore.errors import ChangelogError, ConfigurationError, StreamcoreError
from streamcore.functions import function_name
from streamcore.operators.base import user_error
from streamcore.operators.changelog_base import ChangelogOperator
from streamcore.state.descriptors import StateTtlConfig, ValueStateDescriptor

__all__ = ["GroupAggregateOperator", "default_result", "group_aggregate_factory"]

#: the name of the one value state of a group: ``[row_count, serialized_accumulator, last_row]``.
GROUP_STATE = "group"

_INSERT, _UPDATE_BEFORE, _UPDATE_AFTER, _DELETE = (
    RowKind.INSERT,
    RowKind.UPDATE_BEFORE,
    RowKind.UPDATE_AFTER,
    RowKind.DELETE,
)


class _GroupCodec:
    """A group's value ``[row_count, accumulator, last_row]`` and its stored form (the
    accumulator as ``serialize_accumulator`` returns it)."""

    __slots__ = ("agg",)

    def __init__(self, agg: AggregateFunction[Any, Any, Any]) -> None:
        self.agg = agg

    def encode(self, value: list[Any]) -> list[Any]:
        return [value[0], self.agg.serialize_accumulator(value[1]), value[2]]

    def decode(self, stored: list[Any]) -> list[Any]:
        return [stored[0], self.agg.deserialize_accumulator(stored[1]), stored[2]]


def default_result(key: Any, agg_result: Any) -> tuple[Any, ...]:
    """The default output row: the key's fields, then the aggregate's.

    A tuple key contributes its elements, any other key itself; a dict result (from
    :func:`~streamcore.aggregates.combine`) contributes its values in member order, a tuple
    result its elements, any other result itself.

    >>> default_result(("a", 1), {"n": 2, "total": 7})
    ('a', 1, 2, 7)
    >>> default_result("a", 3)
    ('a', 3)
    """
    head = key if type(key) is tuple else (key,)
    if type(agg_result) is dict:
        return (*head, *agg_result.values())
    if type(agg_result) is tuple:
        return (*head, *agg_result)
    return (*head, agg_result)


def check_ttl(state_ttl_ms: int | None, what: str) -> StateTtlConfig | None:
    """The processing-time TTL config of ``state_ttl_ms`` (None: state lives forever)."""
    if state_ttl_ms is None:
        return None
    if type(state_ttl_ms) is not int or state_ttl_ms <= 0:
        msg = f"{what}: state_ttl_ms must be a positive int of milliseconds or None, got {state_ttl_ms!r}"
        raise ConfigurationError(msg)
    return StateTtlConfig(state_ttl_ms, "processing")


class GroupAggregateOperator(ChangelogOperator):
    """Aggregates the rows of each key's group and emits the changelog of the result rows.

    State per key: one value ``[row_count, accumulator, last_row]`` (the heap backend holds
    it as live objects, RocksDB serializes the accumulator with the aggregate's hooks). ``row_count`` counts
    the group's rows (additions minus retractions) apart from the accumulator, so a group
    whose count reaches 0 is deleted (``-D`` of ``last_row``) whatever the aggregate's
    result would be; ``last_row`` is the row last emitted, so ``-U``/``-D`` always retract
    exactly what downstream holds.

    Retracting a row from a group that has none raises :class:`ChangelogError`, unless
    ``state_ttl_ms`` is set: then the group may have expired, and the retraction is
    ignored and counted (``retractions_ignored``), as Flink does with
    ``table.exec.state.ttl``. State expires ``state_ttl_ms`` of processing time after the
    group's last change; a group that expired starts again with ``+I``.

    Watermarks pass through; no element is late (the result does not depend on time).
    Output records carry the timestamp of the input record that caused them.
    """

    def __init__(
        self,
        name: str,
        uid: str,
        agg: AggregateFunction[Any, Any, Any],
        key_selector: Callable[[Any], Any],
        result: Callable[[Any, Any], tuple[Any, ...]] | None = None,
        state_ttl_ms: int | None = None,
    ) -> None:
        super().__init__(name, uid, [key_selector])
        if not isinstance(agg, AggregateFunction):
            msg = (
                "group_aggregate() takes an AggregateFunction (combine(...) for several), "
                f"got {type(agg).__name__}"
            )
            raise ConfigurationError(msg)
        if result is not None and not callable(result):
            msg = (
                "group_aggregate(result=...) takes a callable result(key, agg_result) -> tuple, "
                f"got {result!r}"
            )
            raise ConfigurationError(msg)
        self.agg = agg
        self.result_fn = result or default_result
        self.ttl = check_ttl(state_ttl_ms, "group_aggregate()")

    def open(self) -> None:
        """Fetch the group state: live values (the heap holds accumulators as objects) unless TTL'd."""
        self.state = self.backend.get_state(ValueStateDescriptor(GROUP_STATE, ttl=self.ttl))
        codec = _GroupCodec(self.agg)
        if self.ttl is None:
            self.state.hold_live_values(codec)
            self._decode: Callable[[Any], Any] | None = None
            self._encode: Callable[[Any], Any] | None = None
        else:  # TTL'd state stores [expires_at, value]: encode and decode here
            self._decode, self._encode = codec.decode, codec.encode

    def process_element(self, value: Any, key: Any, side: int, out: list[Change]) -> None:
        """Fold ``value`` into its group; append the group's change."""
        if isinstance(value, Change):
            kind, row = value
        else:
            kind, row = _INSERT, value
        agg = self.agg
        stored = self.state.value()
        adding = kind in (_INSERT, _UPDATE_AFTER)
        if stored is None:
            if not adding:
                if self.ttl is not None:
                    self.retractions_ignored += 1
                    return
                msg = (
                    f"operator {self.uid!r} (group_aggregate) got {Change(kind, row)} for key {key!r}, "
                    "whose group holds no rows: the input changelog retracts a row it never inserted "
                    "(set state_ttl_ms if the group may have expired)"
                )
                raise ChangelogError(msg)
            count, acc, last = 0, agg.create_accumulator(), None
        else:
            count, acc, last = stored if self._decode is None else self._decode(stored)
        try:
            if adding:
                acc = agg.add(row, acc)
                count += 1
            else:
                acc = agg.retract(row, acc)
                count -= 1
            if count == 0:
                self.state.clear()
                out.append(Change(_DELETE, last))
                return
            new = self.result_fn(key, agg.get_result(acc))
        except NotImplementedError as exc:
            msg = f"operator {self.uid!r} (group_aggregate) got the retraction {Change(kind, row)}, but {exc}"
            raise ConfigurationError(msg) from exc
        except StreamcoreError:
            raise
        except Exception as exc:
            fn = self.result_fn if self.result_fn is not default_result else agg
            raise user_error(self, fn, "aggregate/result", exc) from exc
        if type(new) is not tuple:
            msg = (
                f"result {function_name(self.result_fn)} of operator {self.uid!r} returned "
                f"{type(new).__name__} {new!r}; it must return the output row as a tuple"
            )
            raise ConfigurationError(msg)
        value = [count, acc, new]
        self.state.update(value if self._encode is None else self._encode(value))
        if last is None:
            out.append(Change(_INSERT, new))
        elif new != last:
            out.append(Change(_UPDATE_BEFORE, last))
            out.append(Change(_UPDATE_AFTER, new))


def group_aggregate_factory(
    agg: AggregateFunction[Any, Any, Any],
    key_selector: Callable[[Any], Any],
    result: Callable[[Any, Any], tuple[Any, ...]] | None,
    state_ttl_ms: int | None,
) -> Callable[[str, str], GroupAggregateOperator]:
    """Validate the configuration now (when the job is built), return the operator's factory."""
    GroupAggregateOperator("check", "check", agg, key_selector, result, state_ttl_ms)

    def factory(name: str, uid: str) -> GroupAggregateOperator:
        return GroupAggregateOperator(name, uid, agg, key_selector, result, state_ttl_ms)

    return factory
