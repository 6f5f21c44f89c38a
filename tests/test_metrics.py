"""Histogram percentiles and Prometheus exposition of real job metrics."""

from __future__ import annotations

import streamcore as sc
from streamcore.metrics import Histogram, to_prometheus


def test_histogram():
    h = Histogram(limit=100)
    assert h.snapshot()["p99"] == 0
    for v in range(1, 1001):
        h.observe(v)
    snap = h.snapshot()
    assert snap["count"] == 1000 and snap["max"] == 1000 and 950 <= snap["p50"] <= 1000


def test_prometheus_text_of_a_job():
    env = sc.StreamEnvironment()
    env.from_collection([1, 2, 3], name="numbers").map(lambda x: x).sink_to(lambda v: None)
    result = env.execute("prom")
    text = to_prometheus(result.metrics, job="prom")
    assert 'streamcore_records_out{job="prom",operator="numbers"} 3' in text
    assert "# TYPE streamcore_records_in gauge" in text
    assert 'scope="splits/collection-0"' in text
