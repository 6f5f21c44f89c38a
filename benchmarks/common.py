"""Shared helpers of the benchmark scripts: timing, memory, percentiles, JSON output."""

from __future__ import annotations

import argparse
import json
import resource
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from streamcore.sinks.base import Sink  # noqa: E402  (after the path set-up above)


class CountSink(Sink):
    """Counts what it receives, and keeps it when asked (to compare outputs with a floor's)."""

    def __init__(self, keep: bool = False) -> None:
        self.count = 0
        self.keep = keep
        self.results: list[Any] = []

    def write_batch(self, values: list[Any], timestamps: list[int] | None) -> None:
        """Count (and keep) the batch."""
        self.count += len(values)
        if self.keep:
            self.results.extend(values)


def parser(description: str) -> argparse.ArgumentParser:
    """An argument parser with the two flags every benchmark takes."""
    p = argparse.ArgumentParser(description=description)
    p.add_argument("--quick", action="store_true", help="a seconds-long smoke run (CI)")
    p.add_argument("--json", action="store_true", help="print one JSON object as the last line")
    return p


def timed(fn: Callable[[], Any]) -> tuple[float, Any]:
    """Run ``fn`` once; return (seconds, result)."""
    start = time.perf_counter()
    result = fn()
    return time.perf_counter() - start, result


def best_of(n: int, fn: Callable[[], Any]) -> tuple[float, Any]:
    """The fastest of ``n`` runs (less noise from the other core's work)."""
    best = None
    result = None
    for _ in range(n):
        t, result = timed(fn)
        best = t if best is None else min(best, t)
    assert best is not None
    return best, result


def peak_rss_mb() -> float:
    """Peak resident memory of this process so far, in MiB."""
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def percentile(sorted_values: list[float], q: float) -> float:
    """The ``q`` percentile (0..100) of already sorted values (nearest rank)."""
    if not sorted_values:
        return 0.0
    idx = min(len(sorted_values) - 1, max(0, round(q / 100 * len(sorted_values) + 0.5) - 1))
    return sorted_values[idx]


def report(figures: dict[str, Any], as_json: bool) -> None:
    """Print figures readably, then (with ``--json``) one JSON object as the last line."""
    width = max(len(k) for k in figures)
    for k, v in figures.items():
        if isinstance(v, float):
            v = f"{v:,.3f}" if abs(v) < 100 else f"{v:,.0f}"
        elif isinstance(v, int):
            v = f"{v:,}"
        print(f"  {k:<{width}}  {v}")
    if as_json:
        print(json.dumps(figures, sort_keys=True))
