"""The pieces of KafkaSink's write-ahead recovery that need no cluster: log, markers, names, settings."""

from __future__ import annotations

import pytest

from streamcore.serde import msgpack_dumps, msgpack_loads
from streamcore.sinks.kafka_write_ahead import (
    check_topic_name,
    consumer_settings,
    logged_batches,
    logged_records,
    marker_identity,
    marker_partition,
    marker_record,
    pack_batch,
    parse_marker,
)


def test_logged_records_come_back_as_produced():
    handle = {
        "log": [
            pack_batch([b"v1", b"v2"], [b"k1", None], [10, -1]),
            pack_batch(["text"], None, None),
        ]
    }
    handle = msgpack_loads(msgpack_dumps(handle))  # as a checkpoint stores it
    assert logged_records(handle) == [(b"v1", b"k1", 10), (b"v2", None, -1), ("text", None, None)]
    assert [len(values) for values, _keys, _ts, _parts in logged_batches(handle)] == [2, 1]
    assert logged_records({"tid": "t-0", "seq": 1, "records": 0}) == []  # written without write_ahead


def test_a_marker_names_its_transaction_and_only_its_key_matches():
    key, value = marker_record("tx-a", "r1", 7, 3)
    assert key == b"tx-a"
    assert parse_marker(key, value) == ("tx-a", "r1", 7)
    handle = {"seq": 7, "marker": {"prefix": "tx-a", "run": "r1", "topic": "m", "partition": 0, "from": 0}}
    assert marker_identity(handle) == parse_marker(key, value)
    assert parse_marker(b"tx-b", value) is None  # another sink's key with this body: not a marker
    assert parse_marker(key, b"not json") is None
    assert parse_marker(key, b'{"prefix":"tx-a","seq":7}') is None  # no run
    assert parse_marker(None, value) is None


def test_marker_partition_is_within_the_topic():
    assert marker_partition("tx-a", 1) == 0
    spread = {marker_partition(f"tx-{i}", 4) for i in range(50)}
    assert spread == {0, 1, 2, 3}
    assert marker_partition("tx-a", 4) == marker_partition("tx-a", 4)


@pytest.mark.parametrize(
    ("name", "legal"),
    [
        ("out.streamcore-commits", True),
        ("A_b-9", True),
        ("x" * 249, True),
        ("x" * 250, False),
        ("", False),
        ("..", False),
        ("has space", False),
        ("slash/ed", False),
        (5, False),
    ],
)
def test_check_topic_name(name, legal):
    why = check_topic_name(name, "marker_topic")
    assert (why is None) == legal
    if not legal:
        assert why is not None and why.startswith("marker_topic")


def test_consumer_settings_keep_connection_and_security_only():
    config = {
        "security.protocol": "SASL_SSL",
        "sasl.mechanisms": "PLAIN",
        "sasl.username": "u",
        "ssl.ca.location": "/ca.pem",
        "client.id": "job-1",
        "socket.timeout.ms": 1_000,
        "linger.ms": 20,
        "batch.num.messages": 10_000,
        "compression.type": "lz4",
    }
    assert consumer_settings(config) == {
        "security.protocol": "SASL_SSL",
        "sasl.mechanisms": "PLAIN",
        "sasl.username": "u",
        "ssl.ca.location": "/ca.pem",
        "client.id": "job-1",
        "socket.timeout.ms": 1_000,
    }
