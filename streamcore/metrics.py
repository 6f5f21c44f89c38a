"""Metrics: a histogram for latencies and Prometheus text exposition of job metrics.

Operators keep plain integer counters on their hot paths (an attribute increment per
batch); ``JobHandle.metrics()`` and ``JobResult.metrics`` collect them into a nested
dict ``{operator_uid: {name: value, ...}}``. :func:`to_prometheus` renders that dict in
the Prometheus text format, one gauge per numeric leaf, labelled by operator and by
any nested names (splits, states).
"""

from __future__ import annotations

import math
import re
from collections.abc import Iterator
from typing import Any

__all__ = ["Histogram", "to_prometheus"]

_NAME_RE = re.compile(r"[^a-zA-Z0-9_]")


class Histogram:
    """Keeps observed values (bounded reservoir) and answers percentiles.

    >>> h = Histogram()
    >>> for v in range(1, 101):
    ...     h.observe(v)
    >>> h.percentile(50), h.percentile(99), h.count
    (50, 99, 100)
    """

    __slots__ = ("_values", "count", "limit", "total")

    def __init__(self, limit: int = 10_000) -> None:
        self._values: list[float] = []
        self.limit = limit
        self.count = 0
        self.total = 0.0

    def observe(self, value: float) -> None:
        """Record one value (the oldest half is dropped when the reservoir is full)."""
        self.count += 1
        self.total += value
        if len(self._values) >= self.limit:
            del self._values[: self.limit // 2]
        self._values.append(value)

    def percentile(self, q: float) -> float:
        """The ``q`` percentile (0..100, nearest rank) of the retained values; 0 when empty."""
        if not self._values:
            return 0
        ordered = sorted(self._values)
        rank = max(1, math.ceil(q / 100 * len(ordered)))
        return ordered[min(rank, len(ordered)) - 1]

    def snapshot(self) -> dict[str, float]:
        """count, mean, p50, p99, max."""
        if not self._values:
            return {"count": self.count, "mean": 0, "p50": 0, "p99": 0, "max": 0}
        return {
            "count": self.count,
            "mean": self.total / self.count,
            "p50": self.percentile(50),
            "p99": self.percentile(99),
            "max": max(self._values),
        }


def _leaves(obj: Any, path: tuple[str, ...]) -> Iterator[tuple[tuple[str, ...], float]]:
    if isinstance(obj, (int, float)):  # bools are ints
        yield path, float(obj)
    elif isinstance(obj, dict):
        for k, v in obj.items():
            yield from _leaves(v, (*path, str(k)))
    elif isinstance(obj, (list, tuple)):
        for i, v in enumerate(obj):
            yield from _leaves(v, (*path, str(i)))


def _escape(value: str) -> str:
    return value.replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n")


def to_prometheus(metrics: dict[str, Any], prefix: str = "streamcore", job: str | None = None) -> str:
    """Render job metrics in the Prometheus text format.

    The first level of ``metrics`` is the operator uid (label ``operator``); the last
    path element is the metric name; anything between becomes a ``scope`` label.

    >>> print(to_prometheus({"orders": {"records_out": 3}}, job="j"), end="")
    # TYPE streamcore_records_out gauge
    streamcore_records_out{job="j",operator="orders"} 3
    """
    series: dict[str, list[str]] = {}
    for op, values in metrics.items():
        for path, value in _leaves(values, ()):
            if not path:
                continue
            name = f"{prefix}_{_NAME_RE.sub('_', path[-1])}"
            labels = [f'operator="{_escape(op)}"']
            if job is not None:
                labels.insert(0, f'job="{_escape(job)}"')
            if len(path) > 1:
                labels.append(f'scope="{_escape("/".join(path[:-1]))}"')
            shown = int(value) if value.is_integer() and abs(value) < 2**53 else value
            series.setdefault(name, []).append(f"{name}{{{','.join(labels)}}} {shown}")
    lines = []
    for name in sorted(series):
        lines.append(f"# TYPE {name} gauge")
        lines.extend(series[name])
    return "\n".join(lines) + ("\n" if lines else "")
