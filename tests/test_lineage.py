"""OpenLineage events: emitted by the openlineage-python client, checked against its model and the graph."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from openlineage.client.event_v2 import InputDataset, Job, OutputDataset, Run, RunEvent, RunState

import streamcore as sc
from streamcore.errors import ConfigurationError
from streamcore.lineage import datasets


class TableSource(sc.CollectionSource):
    """A collection that says it is a database table (what a lookup or JDBC source would)."""

    def lineage_datasets(self) -> list[tuple[str, str]]:
        return [("postgres://db.example:5432", "shop.public.orders")]


def read_events(path: Path) -> list[RunEvent]:
    """Parse the file transport's lines back into the client's model (its validators run)."""
    events = []
    for line in path.read_text().splitlines():
        raw = json.loads(line)
        events.append(
            RunEvent(
                eventType=RunState(raw["eventType"]),
                eventTime=raw["eventTime"],
                run=Run(runId=raw["run"]["runId"], facets={}),
                job=Job(namespace=raw["job"]["namespace"], name=raw["job"]["name"]),
                inputs=[InputDataset(namespace=d["namespace"], name=d["name"]) for d in raw["inputs"]],
                outputs=[OutputDataset(namespace=d["namespace"], name=d["name"]) for d in raw["outputs"]],
                producer=raw["producer"],
            )
        )
        events[-1].raw = raw  # type: ignore[attr-defined]
    return events


def test_start_running_complete_with_datasets_of_the_graph(tmp_path):
    env = sc.StreamEnvironment(batch_size=100)
    env.enable_checkpointing(tmp_path / "ck", every_records=400)
    env.enable_lineage(tmp_path / "lineage.jsonl", namespace="shop")
    orders = env.from_source(TableSource(range(1_000)), name="orders")
    orders.map(lambda x: x * 2).sink_to(sc.FileSink(tmp_path / "out"))
    result = env.execute("orders-job")
    events = read_events(tmp_path / "lineage.jsonl")
    kinds = [e.eventType.value for e in events]
    assert kinds[0] == "START" and kinds[-1] == "COMPLETE"
    running = [e for e in events if e.eventType.value == "RUNNING"]
    ids = [e.raw["run"]["facets"]["streamcore_checkpoint"]["checkpointId"] for e in running]  # type: ignore[attr-defined]
    assert ids == result.checkpoints and len(ids) >= 2
    assert len({e.run.runId for e in events}) == 1
    for e in events:
        assert (e.job.namespace, e.job.name) == ("shop", "orders-job")
        assert [(d.namespace, d.name) for d in e.inputs] == [
            ("postgres://db.example:5432", "shop.public.orders")
        ]
        assert [(d.namespace, d.name) for d in e.outputs] == [("file", str((tmp_path / "out").resolve()))]
        assert e.raw["job"]["facets"]["jobType"]["processingType"] == "BATCH"  # type: ignore[attr-defined]


def test_fail_event_carries_the_error(tmp_path):
    env = sc.StreamEnvironment()
    env.enable_lineage(str(tmp_path / "lineage.jsonl"))

    def explode(x):
        raise ValueError("no good")

    env.from_collection([1]).map(explode).sink_to(lambda v: None)
    with pytest.raises(sc.StreamcoreError):
        env.execute("failing")
    events = read_events(tmp_path / "lineage.jsonl")
    assert [e.eventType.value for e in events] == ["START", "FAIL"]
    assert "no good" in events[-1].raw["run"]["facets"]["errorMessage"]["message"]  # type: ignore[attr-defined]


def test_kafka_datasets_use_the_bootstrap_namespace():
    source = sc.KafkaSource("broker-1:9092,broker-2:9092", ["clicks", "views"])
    sink = sc.KafkaSink("broker-1:9092", "enriched")
    assert datasets(source) == [("kafka://broker-1:9092", "clicks"), ("kafka://broker-1:9092", "views")]
    assert datasets(sink) == [("kafka://broker-1:9092", "enriched")]
    assert datasets(sc.CollectionSource([1])) == []


def test_console_transport_and_bad_transports(caplog):
    import logging

    env = sc.StreamEnvironment()
    env.enable_lineage("console")
    env.from_collection([1]).sink_to(lambda v: None)
    with caplog.at_level(logging.INFO, logger="openlineage"):
        env.execute("console-lineage")
    assert sum('"eventType": "START"' in r.getMessage() for r in caplog.records) == 1
    with pytest.raises(ConfigurationError, match="transport must be"):
        sc.StreamEnvironment().enable_lineage(42)
