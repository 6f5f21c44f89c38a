"""A job on several worker processes (a consumer group assigns their tasks) equals the one-process run.

The librdkafka mock cluster runs in the test process and serves the consumer group to
the worker processes over loopback; each worker is a real process running
``tests/scaleout/worker.py``. Outputs go through an exactly-once FileSink; a worker's
tasks checkpoint into one shared directory, where the next owner of a task restores
from. What the mock cannot show: it delivers aborted transactions to ``read_committed``
readers, so repartition topics here are exactly-once through the readers' dropping of
replayed sequence numbers alone (on a real broker, transactions hide them as well).
"""

from __future__ import annotations

import random
import signal
import time
from pathlib import Path

import pytest

from tests.checkpoint.crash_job import read_output
from tests.scaleout.support import (
    Worker,
    create_topics,
    oracle,
    produce_join_input,
    produce_window_input,
)

pytestmark = [pytest.mark.kafka, pytest.mark.slow]


@pytest.fixture
def cluster():
    from streamcore.testing.kafka_mock import MockKafkaCluster

    with MockKafkaCluster(num_brokers=3) as c:
        c.set_group_timing(session_timeout_ms=2_000, heartbeat_interval_ms=200)
        yield c


def _inputs(cluster, job: str, records: int) -> None:
    create_topics(cluster, job)
    if job == "window":
        produce_window_input(cluster.bootstrap_servers, records)
    else:
        produce_join_input(cluster.bootstrap_servers, records // 6)


@pytest.mark.parametrize("job", ["window", "join"])
def test_three_workers_equal_one_process(cluster, tmp_path: Path, job: str) -> None:
    _inputs(cluster, job, 6_000)
    expected = oracle(cluster.bootstrap_servers, job, tmp_path)
    assert expected, "the oracle produced nothing"
    workers = [Worker(cluster.bootstrap_servers, tmp_path, job) for _ in range(3)]
    read = sum(w.wait() for w in workers)
    got = sorted(read_output(tmp_path / "out"))
    assert got == expected
    assert read >= 6_000 if job == "window" else read > 0


# The join throttles only its clicks (one per five impressions): every click sleeps, so it
# runs about as long as the window job, whose every fourth event sleeps.
@pytest.mark.parametrize(("job", "kills_wanted", "throttle"), [("window", 12, "4"), ("join", 8, "1")])
def test_killed_workers_lose_and_duplicate_nothing(
    cluster, tmp_path: Path, job: str, kills_wanted: int, throttle: str
) -> None:
    """SIGKILL a random worker at random moments, start a replacement each time (20 kills in all)."""
    _inputs(cluster, job, 16_000)
    expected = oracle(cluster.bootstrap_servers, job, tmp_path)
    rng = random.Random(11)
    extra = ("--throttle", throttle, "--takeover-s", "2")
    workers = [Worker(cluster.bootstrap_servers, tmp_path, job, *extra) for _ in range(3)]
    for w in workers:
        w.wait_running()
    kills = 0
    while kills < kills_wanted:
        time.sleep(rng.uniform(0.3, 1.5))
        alive = [w for w in workers if w.proc.poll() is None]
        if len(alive) < 2:
            break
        victim = rng.choice(alive)
        victim.kill()
        workers.remove(victim)
        kills += 1
        workers.append(Worker(cluster.bootstrap_servers, tmp_path, job, *extra))
    assert kills == kills_wanted, f"only {kills} kills before the job ended: give it more input"
    for w in workers:
        w.wait(240)
    got = read_output(tmp_path / "out")
    assert len(got) == len(set(got)), "duplicated lines"
    assert sorted(got) == expected


def test_scaling_one_three_two_hands_over_without_replay(cluster, tmp_path: Path) -> None:
    """1 worker, then 3, then one leaves cleanly (SIGTERM): nothing read twice, output exact."""
    job = "window"
    _inputs(cluster, job, 8_000)
    expected = oracle(cluster.bootstrap_servers, job, tmp_path)
    # A generous take-over wait: a loaded machine must not turn a clean hand-over into a
    # replay from an older checkpoint (the liveness fallback takeover_s exists for).
    extra = ("--throttle", "3", "--takeover-s", "30")
    first = Worker(cluster.bootstrap_servers, tmp_path, job, *extra)
    first.wait_running()
    time.sleep(1.0)
    more = [Worker(cluster.bootstrap_servers, tmp_path, job, *extra) for _ in range(2)]
    for w in more:
        w.wait_running()
    time.sleep(2.0)
    leaving = more[0]
    leaving.proc.send_signal(signal.SIGTERM)
    read = sum(w.wait(240) for w in [first, *more])
    assert sorted(read_output(tmp_path / "out")) == expected
    # Clean hand-overs continue from the final checkpoint: every record is read once from the
    # source topic and once from the repartition topic, none twice.
    assert read == 2 * 8_000


def test_tasks_move_through_object_storage(cluster, tmp_path: Path) -> None:
    """Checkpoints in S3 (moto's server): a killed worker's tasks restore on the others from there."""
    from tests.s3_server import make_bucket, s3_server

    job = "window"
    _inputs(cluster, job, 8_000)
    expected = oracle(cluster.bootstrap_servers, job, tmp_path)
    with s3_server() as options:
        make_bucket(options, "jobs")
        endpoint = options["client_kwargs"]["endpoint_url"]
        extra = ("--throttle", "4", "--takeover-s", "2", "--checkpoints", "s3://jobs/window")
        extra = (*extra, "--s3-endpoint", endpoint)
        workers = [Worker(cluster.bootstrap_servers, tmp_path, job, *extra) for _ in range(2)]
        for w in workers:
            w.wait_running()
        time.sleep(2.0)
        workers[0].kill()
        workers.append(Worker(cluster.bootstrap_servers, tmp_path, job, *extra))
        for w in workers[1:]:
            w.wait(240)
    got = read_output(tmp_path / "out")
    assert len(got) == len(set(got)) and sorted(got) == expected
