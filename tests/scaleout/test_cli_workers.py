"""``streamcore run JOB --workers N``: N supervised worker processes of one consumer-group job."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from tests.scaleout.worker import ROOT

pytestmark = [pytest.mark.kafka, pytest.mark.slow]

EXAMPLE = ROOT / "examples" / "kafka_ad_click_join.py"


def _example():
    sys.path.insert(0, str(ROOT / "examples"))
    try:
        import kafka_ad_click_join as ex
    finally:
        sys.path.remove(str(ROOT / "examples"))
    return ex


def _brute_force_pairs(imps, clicks, window_ms: int) -> int:
    by_ad: dict[int, list[int]] = {}
    for i in imps:
        by_ad.setdefault(i["ad_id"], []).append(i["ts"])
    return sum(1 for c in clicks for ts in by_ad.get(c["ad_id"], ()) if c["ts"] - window_ms <= ts <= c["ts"])


def _run(args: list[str], env: dict[str, str], timeout: float = 240) -> subprocess.CompletedProcess[str]:
    cmd = [sys.executable, "-m", "streamcore.cli", "run", *args]
    return subprocess.run(cmd, capture_output=True, text=True, env=env, timeout=timeout, check=False)


def test_two_workers_run_the_example_job_to_the_end(tmp_path: Path) -> None:
    from streamcore.testing.kafka_mock import MockKafkaCluster
    from streamcore.time import minutes

    ex = _example()
    with MockKafkaCluster(num_brokers=3) as cluster:
        cluster.set_group_timing(session_timeout_ms=2_000, heartbeat_interval_ms=200)
        names = ex.create_topics(cluster.bootstrap_servers, cluster, suffix="cli")
        imps = ex.impressions(6_000, 500)
        clicks = ex.clicks(1_200, 6_000 * ex.IMPRESSION_EVERY, imps)
        ex.produce(cluster.bootstrap_servers, names["impressions"], imps)
        ex.produce(cluster.bootstrap_servers, names["clicks"], clicks)
        env = dict(os.environ)
        env.update(
            STREAMCORE_KAFKA_BOOTSTRAP=cluster.bootstrap_servers,
            STREAMCORE_TOPIC_SUFFIX="cli",
            PYTHONPATH=os.pathsep.join(filter(None, [str(ROOT), env.get("PYTHONPATH")])),
        )
        done = _run(
            [
                str(EXAMPLE),
                "--workers",
                "2",
                "--checkpoints",
                str(tmp_path / "chk"),
                "--state-backend",
                "rocksdb",
            ],
            env,
        )
        assert done.returncode == 0, done.stderr[-3000:]
        assert "started 2 workers" in done.stderr
        assert (
            done.stderr.count("streamcore: job 'kafka-ad-click-join' finished") == 2
        )  # each worker's summary
        # Without kills nothing was aborted, so what the mock shows is what a read_committed reader sees.
        written = ex.count_committed(cluster.bootstrap_servers, names["ad-clicks-joined"])
    assert written == _brute_force_pairs(imps, clicks, minutes(20))


def test_workers_need_a_consumer_group_job(tmp_path: Path) -> None:
    env = dict(os.environ, PYTHONPATH=str(ROOT))
    done = _run([str(ROOT / "examples" / "wordcount_job.py"), "--workers", "2"], env, timeout=60)
    assert done.returncode == 1
    assert "assignment='group'" in done.stderr and "each worker would read everything" in done.stderr
