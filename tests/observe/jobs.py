"""A small unbounded job for observation tests, and helpers to wait on its REST API."""

from __future__ import annotations

import dataclasses
import json
import time
import urllib.request
from collections.abc import Callable
from pathlib import Path
from typing import Any

import streamcore as sc


def words(split: int, offset: int) -> tuple[str, int, int]:
    """An endless stream of words with event times 10 ms apart."""
    if offset % 64 == 0:
        time.sleep(0.002)  # keep it from racing ahead: the dashboard has rates to show
    return ("to" if offset % 3 else "be", 1, 1_000_000 + offset * 10)


def build(env: sc.StreamEnvironment, checkpoints: Path | None) -> None:
    """words -> key_by(word) -> sum -> sink (and a late side of nothing)."""
    wm = sc.WatermarkStrategy.for_bounded_out_of_orderness(100)
    src = env.from_generator(words, num_splits=2, timestamp=lambda w: w[2], watermarks=wm, name="words")
    src.key_by(lambda w: w[0]).sum(1).name("counts").sink_to(lambda v: None)
    if checkpoints is not None:
        env.enable_checkpointing(checkpoints, every_records=2_000)


def running_job(
    tmp_path: Path, *, port: int | None = 0, pushgateway: str | None = None, **metrics: Any
) -> sc.JobHandle:
    env = sc.StreamEnvironment(batch_size=64)
    build(env, tmp_path / "checkpoints")
    env.enable_metrics(port=port, pushgateway=pushgateway, **metrics)
    env.metrics_config = dataclasses.replace(env.metrics_config, publish_ms=50)
    return env.execute_async("observed")


def get_json(url: str) -> Any:
    with urllib.request.urlopen(url, timeout=10) as resp:
        return json.loads(resp.read())


def wait_for(what: str, probe: Callable[[], Any], timeout_s: float = 30.0) -> Any:
    """Poll ``probe`` until it returns something truthy (hang guard: ``timeout_s``)."""
    deadline = time.monotonic() + timeout_s
    while True:
        value = probe()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        time.sleep(0.05)


def wait_progress(base: str, records: int = 2_000, checkpoints: int = 1) -> dict[str, Any]:
    """Wait until the job has read ``records`` and completed ``checkpoints``; returns the overview."""

    def probe() -> Any:
        snap = get_json(base + "api/v1/overview")
        cps = snap.get("checkpoints") or {}
        ok = snap["job"].get("records_read", 0) >= records and cps.get("completed", 0) >= checkpoints
        return snap if ok else None

    return wait_for(f"{records} records and {checkpoints} checkpoints", probe)
