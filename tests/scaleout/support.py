"""A mock Kafka cluster with the scale-out tests' topics, worker processes, and the one-process oracle."""

from __future__ import annotations

import json
import os
import random
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import Any

from tests.checkpoint.crash_job import read_output
from tests.scaleout.worker import ROOT

PARTITIONS = 8


def produce_window_input(bootstrap: str, n: int, seed: int = 1) -> None:
    """``events``: records round robin over the partitions, event time rising with jitter < 300 ms."""
    from confluent_kafka import Producer

    rng = random.Random(seed)
    p = Producer({"bootstrap.servers": bootstrap, "linger.ms": 5})
    for i in range(n):
        part = i % PARTITIONS
        ts = (i // PARTITIONS) * 25 + rng.randint(0, 250)
        rec = {"i": i, "page": rng.randint(0, 30), "v": rng.randint(1, 9), "ts": ts}
        p.produce("events", json.dumps(rec).encode(), partition=part)
        if i % 1000 == 0:
            p.poll(0)
    p.flush(30)


def produce_join_input(bootstrap: str, n_clicks: int, seed: int = 2) -> None:
    """``imps`` and ``clicks`` partitioned by ad, five impressions per click, rising event time."""
    from confluent_kafka import Producer

    rng = random.Random(seed)
    p = Producer({"bootstrap.servers": bootstrap, "linger.ms": 5})
    for i in range(n_clicks * 5):
        ad = rng.randint(0, 40)
        rec = {"i": i, "id": f"imp{i}", "ad": ad, "ts": i * 20 + rng.randint(0, 250)}
        p.produce("imps", json.dumps(rec).encode(), partition=ad % PARTITIONS)
    for i in range(n_clicks):
        ad = rng.randint(0, 40)
        rec = {"i": i, "id": f"click{i}", "ad": ad, "ts": i * 100 + rng.randint(0, 250)}
        p.produce("clicks", json.dumps(rec).encode(), partition=ad % PARTITIONS)
    p.flush(30)


def create_topics(cluster: Any, job: str) -> None:
    """The input topics and the repartition (+ commit-marker) topics the jobs need."""
    for topic in ("events", "clicks", "imps"):
        cluster.create_topic(topic, PARTITIONS)
    if job == "window":
        cluster.create_topic("scaleout-window-per-page-repartition", PARTITIONS)
        cluster.create_topic("scaleout-window-per-page-repartition.streamcore-commits", 1)


def oracle(bootstrap: str, job: str, work: Path) -> list[str]:
    """The output of the job run in this process, reading every partition (sorted lines)."""
    import streamcore as sc
    from tests.scaleout.worker import build

    env = sc.StreamEnvironment(state_backend="heap")
    build(env, bootstrap, job, "static", work / "oracle-out", 0)
    env.execute(f"oracle-{job}")
    return sorted(read_output(work / "oracle-out"))


class Worker:
    """One worker process of a group job."""

    def __init__(self, bootstrap: str, work: Path, job: str, *extra: str) -> None:
        env = dict(os.environ)
        env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(ROOT), env.get("PYTHONPATH")]))
        cmd = [
            sys.executable,
            str(ROOT / "tests" / "scaleout" / "worker.py"),
            bootstrap,
            str(work),
            job,
            "group",
        ]
        self.proc = subprocess.Popen(
            [*cmd, *extra], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env
        )
        self.stdout: list[str] = []
        self.stderr: list[str] = []
        self._threads = [
            threading.Thread(target=self._drain, args=(self.proc.stdout, self.stdout), daemon=True),
            threading.Thread(target=self._drain, args=(self.proc.stderr, self.stderr), daemon=True),
        ]
        for t in self._threads:
            t.start()

    @staticmethod
    def _drain(stream: Any, into: list[str]) -> None:
        for line in stream:
            into.append(line)

    def wait_running(self, timeout: float = 60) -> None:
        deadline = time.monotonic() + timeout
        while "RUNNING\n" not in self.stdout:
            if self.proc.poll() is not None or time.monotonic() > deadline:
                raise AssertionError(f"worker did not start: {''.join(self.stderr)[-3000:]}")
            time.sleep(0.01)

    def kill(self) -> None:
        self.proc.kill()
        self.proc.wait()
        self._close()

    def _close(self) -> None:
        for t in self._threads:
            t.join(5)
        for stream in (self.proc.stdout, self.proc.stderr):
            if stream is not None:
                stream.close()

    def wait(self, timeout: float = 120) -> int:
        """Wait for the end; returns the records it read. Fails with the worker's stderr otherwise."""
        rc = self.proc.wait(timeout)
        self._close()
        done = [line for line in self.stdout if line.startswith("DONE")]
        if rc != 0 or not done:
            raise AssertionError(f"worker exited {rc}: {''.join(self.stderr)[-4000:]}")
        return int(done[-1].split()[1])
