"""Histogram percentiles and Prometheus exposition of a finished job's metrics."""

from __future__ import annotations

from prometheus_client.parser import text_string_to_metric_families

import streamcore as sc
from streamcore.metrics import Histogram, to_prometheus


def test_histogram():
    h = Histogram(limit=100)
    assert h.snapshot()["p99"] == 0
    for v in range(1, 1001):
        h.observe(v)
    snap = h.snapshot()
    assert snap["count"] == 1000 and snap["max"] == 1000 and 950 <= snap["p50"] <= 1000


def test_prometheus_text_of_a_finished_job(tmp_path):
    env = sc.StreamEnvironment()
    env.enable_checkpointing(tmp_path / "ck", every_records=1)
    env.from_collection([1, 2, 3], name="numbers").map(lambda x: x).sink_to(lambda v: None)
    result = env.execute("prom")
    fams = {f.name: f for f in text_string_to_metric_families(to_prometheus(result.metrics, job="prom"))}
    assert fams["streamcore_records_out"].type == "counter"
    out = {
        s.labels["operator"]: s.value
        for s in fams["streamcore_records_out"].samples
        if s.name.endswith("_total")
    }
    assert out["numbers"] == 3
    done = {
        s.labels["status"]: s.value
        for s in fams["streamcore_checkpoints"].samples
        if s.name.endswith("_total")
    }
    assert done["completed"] == len(result.checkpoints)
    # one series per operator and label set, never one per checkpoint-history entry
    names = [s.name for f in fams.values() for s in f.samples]
    assert not any(n.startswith("streamcore_0") or "history" in n for n in names)
