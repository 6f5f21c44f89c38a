"""The REST API under /api/v1, and the streamcore status/savepoint/stop commands that use it."""

from __future__ import annotations

import json
import urllib.error
import urllib.request
from pathlib import Path

import pytest

from streamcore.cli import main
from streamcore.errors import JobError
from streamcore.observe.client import JobClient
from tests.observe.jobs import get_json, running_job, wait_progress


def post(url: str, body: object) -> tuple[int, dict]:
    req = urllib.request.Request(url, data=json.dumps(body).encode(), method="POST")
    try:
        with urllib.request.urlopen(req, timeout=30) as resp:
            return resp.status, json.loads(resp.read())
    except urllib.error.HTTPError as exc:
        with exc:
            return exc.code, json.loads(exc.read())


def test_get_endpoints_describe_the_running_job(tmp_path):
    handle = running_job(tmp_path)
    try:
        base = handle.dashboard_url
        wait_progress(base, records=1_000, checkpoints=1)
        job = get_json(base + "api/v1/job")
        vertices = get_json(base + "api/v1/vertices")
        checkpoints = get_json(base + "api/v1/checkpoints")
        metrics = get_json(base + "api/v1/metrics")
        with pytest.raises(urllib.error.HTTPError) as missing:
            urllib.request.urlopen(base + "api/v1/nothing", timeout=10)
        page = urllib.request.urlopen(base, timeout=10).read().decode()
    finally:
        handle.stop()
    assert job["name"] == "observed" and job["state"] == "RUNNING" and job["tasks"] == [{"id": "0"}]
    assert job["records_read"] >= 1_000 and job["restarts"] == 0
    assert [v["uid"] for v in vertices["vertices"]] == ["words", "counts", "sink"]
    assert {(e["from"], e["to"]) for e in vertices["edges"]} == {("words", "counts"), ("counts", "sink")}
    counts = next(v for v in vertices["vertices"] if v["uid"] == "counts")["tasks"]["0"]
    assert counts["records_in"] > 0 and counts["state"]["reduce"]["entries"] == 2
    words = next(v for v in vertices["vertices"] if v["uid"] == "words")["tasks"]["0"]
    assert set(words["splits"]) == {"generator-0", "generator-1"} and words["watermark"] > 1_000_000
    assert checkpoints["completed"] >= 1 and checkpoints["history"][0]["size_bytes"] > 0
    assert Path(checkpoints["directory"]) == tmp_path / "checkpoints"
    assert metrics["words"]["records_out"] > 0
    assert missing.value.code == 404
    missing.value.close()
    assert '<svg id="graph"' in page and "api/v1/overview" in page


def test_savepoint_and_stop_with_savepoint_over_http(tmp_path):
    handle = running_job(tmp_path)
    base = handle.dashboard_url
    wait_progress(base, records=500, checkpoints=1)
    status, answer = post(base + "api/v1/savepoints", {"directory": str(tmp_path / "sp")})
    assert status == 200 and Path(answer["path"]).parent == tmp_path / "sp"
    assert (Path(answer["path"]) / "_metadata").exists()
    assert post(base + "api/v1/savepoints", {"directory": 3})[0] == 400
    assert post(base + "api/v1/stop", {"savepoint": "yes"})[0] == 400
    status, answer = post(base + "api/v1/stop", {"savepoint": True})
    assert status == 200 and answer["stopping"] is True
    assert Path(answer["savepoint"]).parent == tmp_path / "checkpoints" / "savepoints"
    result = handle.wait(30)
    assert result.stopped and result.savepoint == answer["savepoint"]


def test_cli_commands_talk_to_a_running_job(tmp_path, capsys):
    handle = running_job(tmp_path)
    base = handle.dashboard_url
    wait_progress(base, records=500, checkpoints=1)
    assert main(["status", base]) == 0
    out = capsys.readouterr().out
    assert "job 'observed': RUNNING" in out and "counts" in out and "checkpoints:" in out
    assert main(["status", base, "--json"]) == 0
    assert json.loads(capsys.readouterr().out)["job"]["name"] == "observed"
    assert main(["savepoint", base, "--dir", str(tmp_path / "manual")]) == 0
    path = capsys.readouterr().out.strip()
    assert Path(path).parent == tmp_path / "manual"
    assert main(["stop", base]) == 0
    assert capsys.readouterr().out.strip() == "stopping"
    result = handle.wait(30)
    assert result.stopped
    # stop without a savepoint takes a final checkpoint: the last checkpoint holds the stop position.
    assert result.checkpoints
    assert main(["status", base]) == 1
    assert "cannot reach the job" in capsys.readouterr().err


def test_client_rejects_a_bad_url_and_reports_http_errors(tmp_path):
    with pytest.raises(Exception, match="http"):
        JobClient("ftp://x")
    handle = running_job(tmp_path)
    try:
        wait_progress(handle.dashboard_url, records=100, checkpoints=0)
        with pytest.raises(JobError, match="answered 400"):
            JobClient(handle.dashboard_url)._call("POST", "/stop", {"savepoint": 1})
    finally:
        handle.stop()
