"""INFO logs of a job's life, structured logs, and librdkafka's lines through Python logging."""

from __future__ import annotations

import io
import json
import logging
import subprocess
import sys

import pytest

import streamcore as sc
from streamcore.errors import ConfigurationError
from streamcore.logs import reset_logging


def test_info_logs_at_start_checkpoints_restore_and_end(tmp_path, caplog):
    def run(restore):
        env = sc.StreamEnvironment(batch_size=100)
        env.enable_checkpointing(tmp_path / "ck", every_records=500)
        env.from_collection(range(1_000), name="numbers").sink_to(lambda v: None)
        with caplog.at_level(logging.INFO, logger="streamcore"):
            return env.execute("logged", restore_from=restore)

    run(None)
    run("latest")
    messages = [r.getMessage() for r in caplog.records if r.name.startswith("streamcore")]
    assert any(m.startswith("job 'logged' started: state backend heap, checkpoints") for m in messages)
    completed = [m for m in messages if m.startswith("checkpoint ") and " completed in " in m]
    assert completed and all(" ms (pause " in m and " bytes, " in m for m in completed)
    assert any("restored from checkpoint" in m for m in messages)
    assert any(m.startswith("job 'logged' finished: 1000 records") for m in messages)


def test_json_logs_carry_extra_fields(tmp_path):
    buf = io.StringIO()
    env = sc.StreamEnvironment()
    env.configure_logging("INFO", json=True, stream=buf)
    try:
        env.enable_checkpointing(tmp_path / "ck", every_records=10)
        env.from_collection(range(20)).sink_to(lambda v: None)
        env.execute("json-logs")
    finally:
        reset_logging()
    records = [json.loads(line) for line in buf.getvalue().splitlines()]
    checkpoint = next(r for r in records if r.get("checkpoint_id") == 1)
    assert checkpoint["logger"] == "streamcore.checkpoint" and checkpoint["level"] == "INFO"
    assert checkpoint["job"] == "json-logs" and checkpoint["time"].endswith("Z")
    with pytest.raises(ConfigurationError, match="unknown log level 'LOUD'"):
        env.configure_logging("LOUD")


LIBRDKAFKA = """
import logging, sys
logging.basicConfig(level=logging.INFO, stream=sys.stdout, format="LOG %(name)s %(levelname)s %(message)s")
import streamcore as sc
env = sc.StreamEnvironment()
env.from_source(sc.KafkaSource("127.0.0.1:1", "t", timeout_s=1.0), name="k").sink_to(lambda v: None)
try:
    env.execute("bad-bootstrap")
except sc.StreamcoreError as e:
    print("ERROR", type(e).__name__)
"""


@pytest.mark.kafka
def test_librdkafka_lines_go_through_python_logging_not_stderr():
    proc = subprocess.run(
        [sys.executable, "-c", LIBRDKAFKA], capture_output=True, text=True, timeout=60, check=True
    )
    assert "%3|" not in proc.stderr and "FAIL" not in proc.stderr
    assert "LOG streamcore.kafka.librdkafka ERROR FAIL" in proc.stdout
    assert "ERROR ConnectorError" in proc.stdout
