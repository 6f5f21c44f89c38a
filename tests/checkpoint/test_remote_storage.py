"""Checkpoints in object storage: a real S3 API (moto's server on loopback), incremental uploads,
retention, restore on another machine (an empty staging directory), and clear errors."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

import streamcore as sc
from streamcore.errors import CheckpointError
from tests.checkpoint.jobs import RecordingSink, build_job
from tests.s3_server import make_bucket, s3_server

DATA = [(i * 37) % 101 for i in range(600)]


@pytest.fixture(scope="module")
def s3():
    with s3_server() as options:
        make_bucket(options, "chk")
        yield options


def _job(tmp: Path, s3: dict[str, Any], url: str, staging: str, *, every: int | None = 100, **kw: Any):
    env = sc.StreamEnvironment(state_backend="rocksdb", state_dir=tmp / f"state-{staging}", batch_size=10)
    env.enable_checkpointing(
        url, every_records=every or 10**9, retain=2, storage_options=s3, staging_dir=tmp / staging
    )
    sink = RecordingSink()
    build_job(env, DATA, "count", 7, sink)
    result = env.execute("remote", **kw)
    return sink.results, result


def test_checkpoints_upload_incrementally_and_restore_on_another_machine(s3, tmp_path: Path) -> None:
    import s3fs

    url = "s3://chk/jobs/count"
    _full, result = _job(tmp_path, s3, url, "machine-a")
    assert len(result.checkpoints) >= 6
    fs = s3fs.S3FileSystem(**s3)
    names = {p.rsplit("/", 1)[-1] for p in fs.ls("chk/jobs/count")}
    kept = sorted(n for n in names if n.startswith("chk-"))
    assert len(kept) == 2 and "shared" in names  # retention in the store too
    newest = kept[-1]
    assert fs.exists(f"chk/jobs/count/{newest}/_metadata")
    meta_shared = {p.rsplit("/", 1)[-1] for p in fs.ls("chk/jobs/count/shared")}
    assert meta_shared, "incremental RocksDB checkpoints keep SST files in shared/"
    # Another machine: an empty staging directory; "latest" downloads from the store.
    rest, again = _job(tmp_path, s3, url, "machine-b", every=None, restore_from="latest")
    assert rest == []  # the newest checkpoint is the final one: nothing left to read
    assert again.checkpoints and again.checkpoints[0] > result.checkpoints[-1]


def test_an_unreachable_store_is_a_clear_error(tmp_path: Path) -> None:
    options = {
        "key": "k",
        "secret": "s",
        "client_kwargs": {"endpoint_url": "http://127.0.0.1:9", "region_name": "eu-west-1"},
    }
    options["config_kwargs"] = {"retries": {"max_attempts": 1}, "connect_timeout": 1}
    with pytest.raises(CheckpointError, match="s3://nowhere/job"):
        _job(tmp_path, options, "s3://nowhere/job", "staging")
