"""The logical dataflow graph: nodes with operator factories, edges, and stable uids.

The fluent API (:mod:`streamcore.datastream`) only records :class:`Transformation`
nodes; nothing runs until ``execute``. Each run builds fresh operator objects from the
nodes' factories (:func:`streamcore.runtime.executor.build_plan`), so an environment can
execute several times. Every operator gets a stable ``uid`` (the name of its state in
checkpoints): the one set with ``.uid(...)``, or one derived from its name and position
among equally named nodes.
"""

from __future__ import annotations

import dataclasses
import re
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, Generic, Protocol, TypeVar

from streamcore.errors import GraphError
from streamcore.operators.base import StreamOperator
from streamcore.time import Clock

__all__ = ["GraphOwner", "PhysicalPlan", "StreamGraph", "Transformation", "validate_uid"]

_UID_RE = re.compile(r"^[A-Za-z0-9_.:@+-][A-Za-z0-9_.:@+ -]{0,199}$")


def validate_uid(uid: Any) -> str:
    """Check that ``uid`` can name state in checkpoints (letters, digits, ``_.:@+-`` and spaces)."""
    if not isinstance(uid, str) or not _UID_RE.match(uid) or uid.strip() != uid:
        msg = (
            f"operator uid {uid!r} is invalid: use 1-200 letters, digits, spaces or '_.:@+-', "
            "without leading or trailing spaces"
        )
        raise GraphError(msg)
    return uid


@dataclass(eq=False)
class Transformation:
    """One node of the logical graph."""

    id: int
    kind: str
    name: str
    inputs: list[tuple[Transformation, int, str | None]]
    factory: Callable[[str, str], StreamOperator] | None = None
    uid: str | None = None
    source: Any = None
    watermarks: Any = None
    timestamp_fn: Callable[[Any], int] | None = None
    resolved_uid: str = ""
    attrs: dict[str, Any] = field(default_factory=dict)


class StreamGraph:
    """The nodes of one environment, in creation order (which is a topological order)."""

    def __init__(self) -> None:
        self.nodes: list[Transformation] = []

    def add(
        self,
        kind: str,
        name: str,
        inputs: list[tuple[Transformation, int, str | None]],
        factory: Callable[[str, str], StreamOperator] | None = None,
        **kw: Any,
    ) -> Transformation:
        """Append a node."""
        node = Transformation(len(self.nodes), kind, name, inputs, factory, **kw)
        self.nodes.append(node)
        return node

    def remove(self, node: Transformation) -> None:
        """Remove a node nothing reads from (``execute_and_collect``'s temporary sink)."""
        self.nodes = [n for n in self.nodes if n is not node]

    def copy(self) -> StreamGraph:
        """A graph of copied nodes (same factories and sources) that can be rewritten freely."""
        out = StreamGraph()
        twins: dict[int, Transformation] = {}
        for n in self.nodes:
            twin = dataclasses.replace(
                n,
                inputs=[(twins[p.id], side, tag) for p, side, tag in n.inputs],
                attrs=dict(n.attrs),
            )
            twins[n.id] = twin
            out.nodes.append(twin)
        return out

    def insert(self, node: Transformation, before: Transformation | None = None) -> Transformation:
        """Put ``node`` before ``before`` (at the end when ``None``) and renumber: order stays topological."""
        if before is None:
            self.nodes.append(node)
        else:
            self.nodes.insert(self.nodes.index(before), node)
        for i, n in enumerate(self.nodes):
            n.id = i
        return node

    def resolve_uids(self) -> None:
        """Give every node its uid; explicit uids must be unique.

        Raises:
            GraphError: two nodes share an explicit uid.
        """
        seen: dict[str, Transformation] = {}
        for n in self.nodes:
            if n.uid is not None:
                if n.uid in seen:
                    msg = (
                        f"uid {n.uid!r} is used by two operators ({seen[n.uid].name!r} and {n.name!r}); "
                        "uids must be unique"
                    )
                    raise GraphError(msg)
                seen[n.uid] = n
        counts: dict[str, int] = {}
        for n in self.nodes:
            if n.uid is not None:
                n.resolved_uid = n.uid
                continue
            base = re.sub(r"[^A-Za-z0-9_.:@+-]", "_", n.name) or n.kind
            counts[base] = counts.get(base, 0) + 1
            uid = base if counts[base] == 1 else f"{base}-{counts[base]}"
            while uid in seen:
                counts[base] += 1
                uid = f"{base}-{counts[base]}"
            seen[uid] = n
            n.resolved_uid = uid


class GraphOwner(Protocol):
    """What the fluent API needs of its environment: the graph it adds to, the clock, a way to run.

    :class:`streamcore.environment.StreamEnvironment` is the one implementation; the API
    depends on this protocol instead, so the environment can sit above it.
    """

    graph: StreamGraph
    clock: Clock

    def execute(self, job_name: str = ..., restore_from: Any = None) -> Any:
        """Run the job built on :attr:`graph`."""

    def execute_async(self, job_name: str = ..., restore_from: Any = None) -> Any:
        """Run the job built on :attr:`graph` in the background; returns its handle."""


@dataclass
class PhysicalPlan:
    """The operators of one run: source tasks, then operators in topological order."""

    sources: list[Any]
    operators: list[StreamOperator]
    by_uid: dict[str, Any]


#: the stream type a builder's result has (:class:`streamcore.datastream.DataStream`).
S_co = TypeVar("S_co", covariant=True)


class TwoInputs(Protocol, Generic[S_co]):
    """Two connected streams, as the interval join builder sees them."""

    def transform(self, kind: str, factory: Callable[[str, str], Any]) -> S_co:
        """Add a two-input operator made by ``factory``; the stream of its outputs."""
        ...


class KeyedInput(Protocol, Generic[S_co]):
    """A keyed stream, as the window and interval join builders see it.

    :class:`streamcore.datastream.KeyedStream` is the one implementation; the builders
    depend on this protocol so that the stream module can import them, not the reverse.
    """

    key_selector: Callable[[Any], Any]

    def transform(self, kind: str, factory: Callable[[str, str], Any]) -> S_co:
        """Add a one-input operator made by ``factory``; the stream of its outputs."""
        ...

    def connect(self, other: Any) -> TwoInputs[S_co]:
        """Connect with ``other`` for a two-input operator."""
        ...
