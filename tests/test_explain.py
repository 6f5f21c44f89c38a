"""env.explain() and `streamcore explain`: operators, keys, state, windows, sources, sinks, masked secrets."""

from __future__ import annotations

import json

import streamcore as sc
from streamcore.cli import main


class Count(sc.KeyedProcessFunction):
    def open(self, ctx):
        self.n = ctx.get_state(sc.ValueStateDescriptor("n", sc.Types.INT()))
        self.seen = ctx.get_map_state(sc.MapStateDescriptor("seen", sc.Types.STRING(), sc.Types.INT()))

    def process_element(self, value, ctx):
        yield value


JOB = """
import streamcore as sc

def build_job(env):
    secret = {"sasl.password": "hunter2", "sasl.mechanism": "PLAIN"}
    clicks = env.from_source(sc.KafkaSource("broker:9092", "clicks", config=secret), name="clicks")
    windows = clicks.key_by(lambda c: c["user"]).window(sc.TumblingEventTimeWindows.of(60_000))
    tls = {"ssl.key.password": "s3cret"}
    sink = sc.KafkaSink("broker:9092", "counts", delivery="exactly_once", config=tls)
    windows.sum("n").uid("per-minute").sink_to(sink)
"""


def test_explain_names_keys_state_windows_and_masks_secrets(tmp_path, capsys):
    env = sc.StreamEnvironment(state_backend="rocksdb", state_dir=tmp_path / "state")
    env.enable_checkpointing(tmp_path / "ck", every_ms=5_000)
    env.set_restart_strategy(sc.fixed_delay(3, 1_000))
    src = env.from_collection([{"k": 1}], name="events")
    src.key_by(lambda e: e["k"]).process(Count()).uid("counter").print("out")
    text = env.explain()
    assert (
        "state backend rocksdb" in text
        and f"checkpoints in {tmp_path / 'ck'} every 100000 records or 5000 ms" in text
    )
    assert "restarts: fixed delay: 3 restarts, 1000 ms apart" in text
    assert "keyed_process [keyed_process] uid=counter <- events: KeyedProcessOperator" in text
    assert "key: key_by(<lambda>)" in text
    assert "state n: value (rocksdb)" in text and "state seen: map (rocksdb)" in text
    assert "PrintSink" in text and "identifier='out'" in text

    job = tmp_path / "job.py"
    job.write_text(JOB)
    assert main(["explain", str(job)]) == 0
    out = capsys.readouterr().out
    assert "hunter2" not in out and "s3cret" not in out and "'sasl.password': '***'" in out
    assert "'sasl.mechanism': 'PLAIN'" in out
    assert "window: TumblingEventTimeWindows" in out and "uid=per-minute" in out
    assert "delivery: exactly once" in out and "unbounded, watermarks: none" in out
    assert main(["explain", str(job), "--json"]) == 0
    plan = json.loads(capsys.readouterr().out)
    assert [n["uid"] for n in plan["nodes"]] == ["clicks", "per-minute", "sink"]
    assert plan["nodes"][0]["config"]["config"]["sasl.password"] == "***"
