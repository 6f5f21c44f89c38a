"""The /metrics endpoint: scraped over loopback, parsed with prometheus_client's parser."""

from __future__ import annotations

import socket
import urllib.request

import pytest
from prometheus_client.parser import text_string_to_metric_families

import streamcore as sc
from streamcore.errors import ConfigurationError
from tests.observe.jobs import running_job, wait_progress


def scrape(url: str) -> dict[str, object]:
    with urllib.request.urlopen(url + "metrics", timeout=10) as resp:
        assert resp.headers["Content-Type"].startswith("text/plain")
        text = resp.read().decode()
    return {f.name: f for f in text_string_to_metric_families(text)}


def samples(families: dict[str, object], name: str) -> list[object]:
    return list(families[name].samples)  # type: ignore[attr-defined]


def test_metrics_have_flink_names_proper_types_and_task_labels(tmp_path):
    handle = running_job(tmp_path)
    try:
        base = handle.dashboard_url
        assert base.startswith("http://127.0.0.1:")
        wait_progress(base, records=3_000, checkpoints=2)
        fams = scrape(base)
    finally:
        handle.stop()
    types = {
        "streamcore_records_in": "counter",
        "streamcore_records_out": "counter",
        "streamcore_late_records_dropped": "counter",
        "streamcore_current_input_watermark_ms": "gauge",
        "streamcore_watermark_lag_ms": "gauge",
        "streamcore_split_watermark_ms": "gauge",
        "streamcore_state_entries": "gauge",
        "streamcore_busy_ratio": "gauge",
        "streamcore_backpressured_ratio": "gauge",
        "streamcore_checkpoints": "counter",
        "streamcore_job_restarts": "counter",
        "streamcore_checkpoint_duration_seconds": "histogram",
        "streamcore_checkpoint_size_bytes": "histogram",
        "streamcore_checkpoint_pause_seconds": "histogram",
        "streamcore_latency_seconds": "histogram",
    }
    for name, kind in types.items():
        assert name in fams, name
        assert fams[name].type == kind, (name, fams[name].type)  # type: ignore[attr-defined]
    read = {
        s.labels["operator"]: s for s in samples(fams, "streamcore_records_out") if s.name.endswith("_total")
    }
    assert read["words"].labels["task"] == "0" and read["words"].labels["job_name"] == "observed"
    assert read["words"].value >= 3_000
    rin = {s.labels["operator"]: s.value for s in samples(fams, "streamcore_records_in")}
    assert rin["counts"] > 0 and rin["sink"] > 0
    splits = {s.labels["split"] for s in samples(fams, "streamcore_split_watermark_ms")}
    assert splits == {"generator-0", "generator-1"}
    states = {
        (s.labels["operator"], s.labels["state"]): s.value for s in samples(fams, "streamcore_state_entries")
    }
    assert states[("counts", "reduce")] == 2  # "to" and "be"
    done = {
        s.labels["status"]: s.value
        for s in samples(fams, "streamcore_checkpoints")
        if s.name.endswith("_total")
    }
    assert done["completed"] >= 2 and done["failed"] == 0
    counts = [s for s in samples(fams, "streamcore_checkpoint_duration_seconds") if s.name.endswith("_count")]
    assert counts and counts[0].value >= 2 and counts[0].labels["task"] == "0"
    for s in samples(fams, "streamcore_busy_ratio") + samples(fams, "streamcore_backpressured_ratio"):
        assert 0.0 <= s.value <= 1.0
    latency = [s for s in samples(fams, "streamcore_latency_seconds") if s.name.endswith("_count")]
    assert latency and latency[0].labels["operator"] == "sink" and latency[0].value > 0
    # Nothing per checkpoint-history entry; every series carries job_name and task labels.
    for fam in fams.values():
        for s in fam.samples:  # type: ignore[attr-defined]
            assert "scope" not in s.labels and "id" not in s.labels
            assert s.labels.get("task") == "0" and s.labels.get("job_name") == "observed", s


def test_counters_stay_monotonic_after_the_job_ends(tmp_path):
    handle = running_job(tmp_path)
    base = handle.dashboard_url
    wait_progress(base, records=1_000, checkpoints=1)
    service = next(x for x in handle._executor.listeners if hasattr(x, "metrics"))
    handle.stop()
    final = {f.name: f for f in text_string_to_metric_families(service.metrics.text().decode())}
    out = {
        s.labels["operator"]: s.value
        for s in final["streamcore_records_out"].samples
        if s.name.endswith("_total")
    }
    result_read = handle.wait().records_read
    assert out["words"] == result_read


def test_port_in_use_is_a_clear_error(tmp_path):
    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        port = busy.getsockname()[1]
        env = sc.StreamEnvironment()
        env.from_collection([1]).sink_to(lambda v: None)
        env.enable_metrics(port=port)
        with pytest.raises(ConfigurationError, match=f"cannot serve metrics on 127.0.0.1:{port}.*port=0"):
            env.execute("busy")


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        ({"port": None}, "needs port=... .*or pushgateway"),
        ({"port": 70_000}, "port must be an int 0-65535"),
        ({"port": 0, "every_ms": 0}, "every_ms must be an int >= 1"),
        ({"port": 0, "pushgateway": ""}, "pushgateway must be 'host:port'"),
    ],
)
def test_bad_metrics_configuration(kwargs, match):
    with pytest.raises(ConfigurationError, match=match):
        sc.StreamEnvironment().enable_metrics(**kwargs)


def test_a_job_without_enable_metrics_serves_nothing():
    env = sc.StreamEnvironment()
    env.from_collection([1, 2]).sink_to(lambda v: None)
    handle = env.execute_async("quiet")
    assert handle.wait(30).records_read == 2
    assert handle.dashboard_url is None


def test_pushgateway_alone_pushes_instead_of_serving():
    env = sc.StreamEnvironment()
    env.enable_metrics(pushgateway="127.0.0.1:9")
    assert env.metrics_config.port is None
    env.enable_metrics()
    assert env.metrics_config.port == 9249 and env.metrics_config.pushgateway is None
    env.enable_metrics(port=0, pushgateway="127.0.0.1:9")
    assert env.metrics_config.port == 0
