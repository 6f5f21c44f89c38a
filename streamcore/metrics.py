"""Metrics: a histogram for latencies, and Prometheus text of a finished job's metrics.

Running jobs expose their metrics with ``env.enable_metrics(...)`` (see
:mod:`streamcore.observe`): an HTTP ``/metrics`` endpoint and Pushgateway pushes, through
``prometheus_client``. :func:`to_prometheus` renders the nested metrics dict of a
``JobResult`` (or ``JobHandle.metrics()``) with the same registry, names and types:
counters ``streamcore_records_in_total{job_name,task,operator}``..., gauges, no series
per checkpoint-history entry.
"""

from __future__ import annotations

import math
from typing import Any

__all__ = ["Histogram", "to_prometheus"]


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


def to_prometheus(metrics: dict[str, Any], job: str = "streamcore-job") -> str:
    """The Prometheus text exposition of a job's metrics dict (``JobResult.metrics``).

    >>> text = to_prometheus({"orders": {"records_out": 3, "watermark": 0, "splits": {}}}, job="j")
    >>> 'streamcore_records_out_total{job_name="j",operator="orders",task="0"} 3.0' in text
    True
    """
    from streamcore.observe.prometheus import JobMetrics
    from streamcore.observe.status import status_of_metrics

    snapshot = status_of_metrics(job, metrics)
    return JobMetrics(job, lambda: snapshot).text().decode()
