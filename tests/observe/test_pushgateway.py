"""Pushing to a real Pushgateway (Debian's prometheus-pushgateway, started by a fixture)."""

from __future__ import annotations

import urllib.request

import pytest
from prometheus_client.parser import text_string_to_metric_families

from tests.observe.jobs import running_job, wait_for

pytestmark = pytest.mark.pushgateway


def gateway_series(gateway: str) -> dict[str, list[object]]:
    with urllib.request.urlopen(f"http://{gateway}/metrics", timeout=10) as resp:
        text = resp.read().decode()
    out: dict[str, list[object]] = {}
    for fam in text_string_to_metric_families(text):
        out.setdefault(fam.name, []).extend(fam.samples)
    return out


def pushed_records(gateway: str) -> float:
    for s in gateway_series(gateway).get("streamcore_records_out", []):
        if (
            s.name.endswith("_total")
            and s.labels.get("operator") == "words"
            and s.labels.get("job") == "pushed"
        ):
            return float(s.value)
    return 0.0


def test_metrics_are_pushed_and_the_group_is_deleted_at_a_clean_end(tmp_path, pushgateway):
    handle = running_job(
        tmp_path,
        port=None,
        pushgateway=pushgateway,
        every_ms=100,
        job="pushed",
        grouping_key={"instance": "t1"},
    )
    try:
        wait_for("records pushed to the Pushgateway", lambda: pushed_records(pushgateway) >= 500)
        series = gateway_series(pushgateway)
        sample = next(s for s in series["streamcore_records_out"] if s.labels.get("job") == "pushed")
        assert sample.labels["instance"] == "t1" and sample.labels["task"] == "0"
        assert sample.labels["job_name"] == "observed"
        assert any(s.labels.get("job") == "pushed" for s in series["streamcore_busy_ratio"])
    finally:
        handle.stop()
    assert handle.dashboard_url is None  # port=None: push only
    assert pushed_records(pushgateway) == 0.0  # deleted on the clean end


def test_a_failed_job_leaves_its_last_push(tmp_path, pushgateway):
    import streamcore as sc

    env = sc.StreamEnvironment(batch_size=10)

    def explode(x: int) -> int:
        if x == 50:
            raise ValueError("boom")
        return x

    env.from_collection(range(100), name="words").map(explode).sink_to(lambda v: None)
    env.enable_metrics(port=None, pushgateway=pushgateway, job="pushed", grouping_key={"instance": "t2"})
    with pytest.raises(sc.StreamcoreError, match="boom"):
        env.execute("failing")
    restarts = [
        s for s in gateway_series(pushgateway)["streamcore_job_restarts"] if s.labels["instance"] == "t2"
    ]
    assert restarts and restarts[0].labels["job_name"] == "failing"


def test_both_port_and_pushgateway(tmp_path, pushgateway):
    handle = running_job(tmp_path, port=0, pushgateway=pushgateway, every_ms=100, job="pushed")
    try:
        wait_for("pushed", lambda: pushed_records(pushgateway) > 0)
        with urllib.request.urlopen(handle.dashboard_url + "metrics", timeout=10) as resp:
            assert b"streamcore_records_out_total" in resp.read()
    finally:
        handle.stop()
