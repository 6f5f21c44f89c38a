"""The per-key set of merging (session) windows and where each one keeps its state.

When windows merge, their contents must be merged too. Moving contents on every
extension of a session would copy a growing list once per element, so (as Flink does)
each window maps to a *state window*: the namespace its contents actually live in. A
new window that merges into existing ones takes over the state window of the earliest
of them; the other merged state windows are folded into it once, by the operator's
merge callback. The mapping of the current key lives in a value state (namespace
``None``) as rows ``[start, end, state_start, state_end]``.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from streamcore.state.api import KeyedStateBackend
from streamcore.state.descriptors import ValueStateDescriptor
from streamcore.windowing import MergingWindowAssigner, TimeWindow

__all__ = ["SESSIONS_STATE", "MergeCallback", "MergingWindowSet"]

SESSIONS_STATE = "window-sessions"

Ns = tuple[int, int]
#: ``(merged window, windows merged into it, its state window, state windows to fold into that)``.
MergeCallback = Callable[[TimeWindow, list[TimeWindow], Ns, list[Ns]], None]


class MergingWindowSet:
    """Windows of the current key and their state windows; ``load`` it after switching keys."""

    def __init__(self, backend: KeyedStateBackend, assigner: MergingWindowAssigner) -> None:
        self.state = backend.get_state(ValueStateDescriptor(SESSIONS_STATE))
        self.assigner = assigner
        self.mapping: dict[Ns, Ns] = {}
        self._dirty = False

    def load(self) -> None:
        """Read the current key's windows."""
        self.state.set_namespace(None)
        rows = self.state.value()
        self.mapping = {(r[0], r[1]): (r[2], r[3]) for r in rows} if rows else {}
        self._dirty = False

    def persist(self) -> None:
        """Write the current key's windows back if they changed."""
        if self._dirty:
            self.state.set_namespace(None)
            rows = [[s, e, ss, se] for (s, e), (ss, se) in sorted(self.mapping.items())]
            self.state.update(rows or None)
            self._dirty = False

    def state_window(self, ns: Ns) -> Ns | None:
        """Where window ``ns`` keeps its contents (``None``: not a window of this key anymore)."""
        return self.mapping.get(ns)

    def retire(self, ns: Ns) -> None:
        """Forget window ``ns`` (its state was cleared, or it was late)."""
        if self.mapping.pop(ns, None) is not None:
            self._dirty = True

    def add_window(self, new: TimeWindow, on_merge: MergeCallback) -> TimeWindow:
        """Add ``new``, merging it with the windows it touches; returns the window it ended up in.

        ``on_merge`` is called for every merge that changes an existing window, before
        the mapping is used again, so the operator can merge trigger state, timers and
        contents.
        """
        mapping = self.mapping
        new_ns = (new.start, new.end)
        windows = [TimeWindow(s, e) for s, e in mapping]
        windows.append(new)
        result = new
        merged_new = False
        merges = self.assigner.merge_windows(windows)
        for merged, members in merges:
            members = list(members)
            if new in members:
                members.remove(new)
                merged_new = True
                result = merged
            if not members:
                continue
            merged_ns = (merged.start, merged.end)
            # The earliest merged window's state window survives; the others fold into it.
            target = mapping[(members[0].start, members[0].end)]
            folded = []
            for m in members:
                sw = mapping.pop((m.start, m.end), None)
                if sw is not None and sw != target:
                    folded.append(sw)
            mapping[merged_ns] = target
            self._dirty = True
            if not (len(members) == 1 and members[0] == merged):
                on_merge(merged, members, target, folded)
        if not merges or (result == new and not merged_new):
            mapping[new_ns] = new_ns
            self._dirty = True
        return result

    def rows(self) -> list[Any]:
        """The mapping as stored (for tests)."""
        return sorted([*k, *v] for k, v in self.mapping.items())
