"""TopN per partition: the changelog of each key's n first rows (SQL's ``ROW_NUMBER() ... <= n``).

``stream.key_by(partition).top_n(n, sort_key)`` keeps the rows of each partition key in
order and emits the changelog of the partition's first ``n`` rows, as Flink's
``AppendOnlyTopNFunction`` / ``RetractableTopNFunction`` do. Order: ascending
``sort_key(row)`` (descending with ``descending=True``), ties by arrival order (the row
that arrived first ranks first). A retracted row removes the earliest-arrived copy of
an equal row.

* ``row_number=True``: each output row is ``row + (rank,)`` (rank from 1). A row entering
  at rank r shifts ranks r..n: ``-U/+U`` for every rank whose row changed, ``+I`` for a rank
  that was empty; a row leaving does the reverse, ``-D`` for a rank left empty.
* ``row_number=False``: output rows are the rows themselves; only rows entering (``+I``)
  or leaving (``-D``) the top n are emitted.

>>> import streamcore as sc
>>> env = sc.StreamEnvironment()
>>> scores = [("eu", "ann", 7), ("eu", "bob", 9), ("eu", "cy", 8)]
>>> out = (env.from_collection(scores).key_by(lambda r: r[0])
...        .top_n(2, lambda r: r[2], descending=True).execute_and_collect())
>>> for change in out:
...     print(change)
+I(eu, ann, 7, 1)
-U(eu, ann, 7, 1)
+U(eu, bob, 9, 1)
+I(eu, ann, 7, 2)
-U(eu, ann, 7, 2)
+U(eu, cy, 8, 2)

:class:`WindowTopNOperator` is the event-time variant over window results: see
:meth:`~streamcore.datastream.KeyedStream.window_top_n`.
"""

from __future__ import annotations

from bisect import bisect_left, bisect_right
from collections.abc import Callable
from typing import Any

from streamcore.changelog import Change, RowKind
from streamcore.errors import ChangelogError, ConfigurationError, KeyEncodingError, StreamcoreError
from streamcore.operators.base import user_error
from streamcore.operators.changelog_base import ChangelogOperator
from streamcore.operators.keyed import KeyedOperator
from streamcore.state.descriptors import ValueStateDescriptor

__all__ = ["TopNOperator", "WindowTopNOperator", "top_n_factory", "window_top_n_factory"]

#: the value state of a partition (TopN) or of a partition's window (window TopN):
#: ``[next_seq, [[seq, row], ...]]``, the entries in rank order.
RANK_STATE = "rank"

_INSERT, _UPDATE_BEFORE, _UPDATE_AFTER, _DELETE = (
    RowKind.INSERT,
    RowKind.UPDATE_BEFORE,
    RowKind.UPDATE_AFTER,
    RowKind.DELETE,
)


class _Descending:
    """Reverses the order of a sort key (any comparable value: str, tuples...)."""

    __slots__ = ("value",)

    def __init__(self, value: Any) -> None:
        self.value = value

    def __lt__(self, other: _Descending) -> bool:
        return other.value < self.value

    def __eq__(self, other: object) -> bool:
        return isinstance(other, _Descending) and self.value == other.value

    __hash__ = None  # type: ignore[assignment]


def check_n(n: Any, what: str) -> int:
    """Validate the ``n`` of a TopN: an int >= 1."""
    if type(n) is not int or n < 1:
        msg = f"{what} takes n as an int >= 1 (the number of rows kept per partition), got {n!r}"
        raise ConfigurationError(msg)
    return n


def _check_fn(fn: Any, what: str) -> None:
    if not callable(fn):
        msg = f"{what} takes a callable, got {type(fn).__name__}"
        raise ConfigurationError(msg)


class _Ranked(KeyedOperator):
    """Shared by TopN and window TopN: the rank order of entries ``[seq, row]``."""

    def __init__(
        self,
        name: str,
        uid: str,
        key_selector: Callable[[Any], Any],
        n: int,
        sort_key: Callable[[Any], Any],
        descending: bool,
        late_tag: str | None = None,
    ) -> None:
        super().__init__(name, uid, [key_selector], [late_tag])
        self.n = check_n(n, f"{type(self).__name__}")
        _check_fn(sort_key, "sort_key")
        self.sort_key = sort_key
        self.descending = bool(descending)

    def order(self, entry: list[Any]) -> tuple[Any, int]:
        """The rank order of an entry ``[seq, row]``: sort key (reversed when descending), then arrival."""
        sk = self.sort_key(entry[1])
        return (_Descending(sk) if self.descending else sk, entry[0])

    def insert(self, entries: list[list[Any]], entry: list[Any]) -> int:
        """Insert ``entry`` (the newest: its seq is the largest) in rank order; returns its index."""
        pos = bisect_right(entries, self.order(entry), key=self.order)
        entries.insert(pos, entry)
        return pos

    def find(self, entries: list[list[Any]], row: tuple[Any, ...]) -> int:
        """The index of the earliest-arrived entry holding a row equal to ``row``, or -1."""
        sk = self.sort_key(row)
        probe = (_Descending(sk) if self.descending else sk, -1)
        order = self.order
        i = bisect_left(entries, probe, key=order)
        while i < len(entries) and order(entries[i])[0] == probe[0]:
            if entries[i][1] == row:
                return i
            i += 1
        return -1


class TopNOperator(_Ranked, ChangelogOperator):
    """Keeps the rows of each partition key in rank order and emits the changelog of its top n.

    State per partition key: one value ``[next_seq, entries]`` with the entries ``[seq, row]``
    in rank order (``seq`` numbers the partition's arrivals, the tie-breaker). With
    retractions in the input every row is kept, since a retraction in the top n promotes
    the row after it; with ``append_only=True`` (the input has no retractions, as Flink's
    ``AppendOnlyTopNFunction`` knows from the planner) only the top n rows are kept and
    a retraction raises :class:`ChangelogError`.

    Outputs carry the timestamp of the input element that caused them; no element is
    late and watermarks pass through.
    """

    def __init__(
        self,
        name: str,
        uid: str,
        key_selector: Callable[[Any], Any],
        n: int,
        sort_key: Callable[[Any], Any],
        *,
        descending: bool = False,
        row_number: bool = True,
        append_only: bool = False,
    ) -> None:
        super().__init__(name, uid, key_selector, n, sort_key, descending)
        self.row_number = bool(row_number)
        self.append_only = bool(append_only)

    def open(self) -> None:
        """Fetch the partition state."""
        self.state = self.backend.get_state(ValueStateDescriptor(RANK_STATE))

    def blamed(self) -> tuple[Callable[..., Any], str]:
        """Failures while ranking are the ``sort_key`` function's."""
        return self.sort_key, "sort_key"

    def process_element(self, value: Any, key: Any, side: int, out: list[Change]) -> None:
        """Rank ``value`` into its partition; append the changes of the top n."""
        if isinstance(value, Change):
            kind, row = value
        else:
            kind, row = _INSERT, value
        n = self.n
        stored = self.state.value()
        next_seq, entries = (0, []) if stored is None else stored
        if kind in (_INSERT, _UPDATE_AFTER):
            entry = [next_seq, row]
            if self.append_only and len(entries) >= n and not self.order(entry) < self.order(entries[-1]):
                return  # cannot enter the top n, and will never be needed: not kept
            before = [e[1] for e in entries[:n]]
            pos = self.insert(entries, entry)
            if self.append_only:
                del entries[n:]
            self.state.update([next_seq + 1, entries])
            if pos < n:
                self._emit_changes(before, entries, pos, out)
            return
        if self.append_only:
            msg = (
                f"operator {self.uid!r} (top_n, append_only=True) got the retraction {Change(kind, row)} "
                f"for partition {key!r}; build it with append_only=False for an updating input"
            )
            raise ChangelogError(msg)
        pos = self.find(entries, row)
        if pos < 0:
            msg = (
                f"operator {self.uid!r} (top_n) got {Change(kind, row)} for partition {key!r}, which holds "
                "no such row: the input changelog retracts a row it never inserted"
            )
            raise ChangelogError(msg)
        before = [e[1] for e in entries[:n]]
        del entries[pos]
        if entries:
            self.state.update([next_seq, entries])
        else:
            self.state.clear()
        if pos < n:
            self._emit_changes(before, entries, pos, out)

    def _emit_changes(self, before: list[Any], entries: list[list[Any]], pos: int, out: list[Change]) -> None:
        """Emit the difference of the top n rows ``before`` and now, from rank ``pos + 1`` on."""
        n = self.n
        after = [e[1] for e in entries[:n]]
        if not self.row_number:
            gone, came = before[pos:], after[pos:]
            # one row moved in or out; the rest only shifted: emit the difference of the two multisets
            for row in gone:
                if row in came:
                    came.remove(row)
                else:
                    out.append(Change(_DELETE, row))
            out.extend(Change(_INSERT, row) for row in came)
            return
        for i in range(pos, max(len(before), len(after))):
            rank = (i + 1,)
            if i >= len(before):
                out.append(Change(_INSERT, after[i] + rank))
            elif i >= len(after):
                out.append(Change(_DELETE, before[i] + rank))
            elif before[i] != after[i]:
                out.append(Change(_UPDATE_BEFORE, before[i] + rank))
                out.append(Change(_UPDATE_AFTER, after[i] + rank))


class WindowTopNOperator(_Ranked):
    """The top n rows of each (partition key, window end), emitted once when the window closes.

    Over an append-only stream of window results (a row carries its window's end,
    ``window_end(row)`` in ms, exclusive): rows are buffered per partition key and window
    end, keeping only the top n (ascending ``sort_key``, descending with
    ``descending=True``, ties by arrival). When the watermark reaches ``window_end - 1``
    the top rows are emitted as plain tuples ``row + (rank,)`` (rank from 1) with timestamp
    ``window_end - 1``, and the window's state is cleared (Flink's ``WindowRankOperator``).

    A row whose window has already fired (``window_end - 1 <= watermark``) is late: counted
    and dropped, or sent to the late-data side output (as every event-time operator here).
    The input must be append-only: a retraction raises :class:`ChangelogError`.
    """

    def __init__(
        self,
        name: str,
        uid: str,
        key_selector: Callable[[Any], Any],
        n: int,
        sort_key: Callable[[Any], Any],
        window_end: Callable[[Any], int],
        *,
        descending: bool = False,
        late_tag: str | None = None,
    ) -> None:
        super().__init__(name, uid, key_selector, n, sort_key, descending, late_tag)
        _check_fn(window_end, "window_end")
        self.window_end = window_end

    def open(self) -> None:
        """Fetch the per-window state."""
        self.state = self.backend.get_state(ValueStateDescriptor(RANK_STATE))

    def process_batch(self, values: list[Any], timestamps: list[int] | None, side: int) -> None:
        """Buffer each row in its window's top n (late rows aside)."""
        rows = []
        for v in values:
            if isinstance(v, Change):
                if v.kind not in (_INSERT, _UPDATE_AFTER):
                    msg = (
                        f"operator {self.uid!r} (window_top_n) got the retraction {v}: its input must be "
                        "append-only (window results); use top_n for an updating stream"
                    )
                    raise ChangelogError(msg)
                v = v.row
            rows.append(v)
        keys = self.extract_keys(rows, 0)
        try:
            ends = [self.window_end(r) for r in rows]
        except StreamcoreError:
            raise
        except Exception as exc:
            raise user_error(self, self.window_end, "window_end", exc) from exc
        for end in ends:
            if type(end) is not int:
                msg = f"window_end of operator {self.uid!r} returned {end!r}; it must return an int of ms"
                raise ConfigurationError(msg)
        rows, ends, keys = self._drop_late(rows, timestamps, ends, keys)
        self.records_in += len(rows)
        kc = self.key_context
        assert kc is not None
        state, n, order = self.state, self.n, self.order
        self.backend.begin_batch()
        try:
            key_bytes = kc.key_bytes_batch(keys)
            for row, end, k, kb in zip(rows, ends, keys, key_bytes, strict=True):
                kc.key = k
                kc.key_bytes = kb
                state.set_namespace(end)
                stored = state.value()
                if stored is None:
                    next_seq, entries = 0, []
                    self.timers.register_event_time_timer(end - 1, end)
                else:
                    next_seq, entries = stored
                entry = [next_seq, row]
                if len(entries) >= n and not order(entry) < order(entries[-1]):
                    continue  # cannot enter this window's top n
                self.insert(entries, entry)
                del entries[n:]
                state.update([next_seq + 1, entries])
        except KeyEncodingError as exc:
            raise self.key_error(exc) from exc
        except StreamcoreError:
            raise
        except Exception as exc:
            raise user_error(self, self.sort_key, "sort_key", exc) from exc
        finally:
            self.backend.end_batch()
        self.cleanup_state_incrementally()

    def _drop_late(
        self, rows: list[Any], timestamps: list[int] | None, ends: list[int], keys: list[Any]
    ) -> tuple[list[Any], list[int], list[Any]]:
        wm = self.current_watermark
        keep = [end - 1 > wm for end in ends]
        if all(keep):
            return rows, ends, keys
        late = [r for r, k in zip(rows, keep, strict=True) if not k]
        self.late_records += len(late)
        self.late_per_side[0] += len(late)
        tag = self.late_tags[0]
        if tag is not None:
            late_ts = (
                None if timestamps is None else [t for t, k in zip(timestamps, keep, strict=True) if not k]
            )
            self.output.emit_side(tag, late, late_ts)
        return (
            [r for r, k in zip(rows, keep, strict=True) if k],
            [e for e, k in zip(ends, keep, strict=True) if k],
            [x for x, k in zip(keys, keep, strict=True) if k],
        )

    def on_event_timer(self, timestamp: int, namespace: Any, out: list[Any], out_ts: list[Any]) -> None:
        """The window ``namespace`` (its end) closed: emit its top rows with their rank, clear it."""
        state = self.state
        state.set_namespace(namespace)
        stored = state.value()
        if stored is None:
            return
        for rank, (_, row) in enumerate(stored[1], 1):
            out.append((*row, rank))
            out_ts.append(timestamp)
        state.clear()


def top_n_factory(
    key_selector: Callable[[Any], Any],
    n: int,
    sort_key: Callable[[Any], Any],
    *,
    descending: bool,
    row_number: bool,
    append_only: bool,
) -> Callable[[str, str], TopNOperator]:
    """Validate the configuration now (when the job is built), return the operator's factory."""

    def factory(name: str, uid: str) -> TopNOperator:
        return TopNOperator(
            name,
            uid,
            key_selector,
            n,
            sort_key,
            descending=descending,
            row_number=row_number,
            append_only=append_only,
        )

    factory("check", "check")
    return factory


def window_top_n_factory(
    key_selector: Callable[[Any], Any],
    n: int,
    sort_key: Callable[[Any], Any],
    window_end: Callable[[Any], int],
    *,
    descending: bool,
    late_tag: str | None,
) -> Callable[[str, str], WindowTopNOperator]:
    """Validate the configuration now (when the job is built), return the operator's factory."""

    def factory(name: str, uid: str) -> WindowTopNOperator:
        return WindowTopNOperator(
            name, uid, key_selector, n, sort_key, window_end, descending=descending, late_tag=late_tag
        )

    factory("check", "check")
    return factory
