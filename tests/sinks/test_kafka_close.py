"""KafkaSink.close() is bounded: a cluster that never answers, stops, or fenced the producer cannot hang it.

Each scenario runs the sink's calls in a helper thread with a wall-clock limit
(:func:`within`): the sink's own timeout plus a generous slack for a busy machine. The
limit is a hang guard, not a speed check: without the bound, closing a sink whose
cluster stopped mid-transaction blocks forever inside librdkafka, where no signal can
interrupt it.
"""

from __future__ import annotations

import logging
import socket
import threading
import time
from collections.abc import Callable, Iterator
from typing import Any, TypeVar

import pytest

from streamcore.errors import ConfigurationError, ConnectorError
from streamcore.sinks.kafka import KafkaSink
from streamcore.testing.kafka_mock import MockKafkaCluster
from tests.sinks.kafka_support import FAST, read_all, sink

pytestmark = pytest.mark.kafka

confluent_kafka = pytest.importorskip("confluent_kafka")

T = TypeVar("T")

#: the sinks' flush_timeout_s and close_timeout_s in these tests.
TIMEOUT_S = 1.0

#: added to a timeout for the hang guard: thread start-up, scheduling on a loaded machine.
SLACK_S = 4.0

#: the hang guard of calls whose own bound is TIMEOUT_S.
BOUND_S = TIMEOUT_S + SLACK_S


def within(fn: Callable[[], T], limit: float = BOUND_S) -> T:
    """``fn()``, run in a helper thread; the test fails if it has not returned after ``limit`` seconds."""
    outcome: list[Any] = []

    def run() -> None:
        try:
            outcome.append((True, fn()))
        except BaseException as exc:
            outcome.append((False, exc))

    worker = threading.Thread(target=run, name=f"bounded-{getattr(fn, '__name__', 'call')}", daemon=True)
    worker.start()
    worker.join(limit)
    if worker.is_alive():
        pytest.fail(f"{getattr(fn, '__qualname__', fn)} still blocked after {limit}s: it hangs")
    ok, value = outcome[0]
    if not ok:
        raise value
    return value


@pytest.fixture
def silent_broker() -> Iterator[str]:
    """``host:port`` of a loopback listener that accepts connections and never answers them.

    What a client sees of a broker behind a network cut, or of a process that stopped
    without closing its sockets: connections open, requests go out, nothing comes back.
    """
    server = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    server.bind(("127.0.0.1", 0))
    server.listen(16)
    server.settimeout(0.05)
    accepted: list[socket.socket] = []
    stop = threading.Event()

    def accept() -> None:
        while not stop.is_set():
            try:
                conn, _addr = server.accept()
            except (TimeoutError, OSError):
                continue
            accepted.append(conn)

    acceptor = threading.Thread(target=accept, name="silent-broker", daemon=True)
    acceptor.start()
    try:
        yield f"127.0.0.1:{server.getsockname()[1]}"
    finally:
        stop.set()
        acceptor.join(5)
        for conn in accepted:
            conn.close()
        server.close()


# -- a cluster that never answers -------------------------------------------------------------------
def test_at_least_once_sink_gives_up_on_a_cluster_that_never_answers(silent_broker, caplog):
    s = KafkaSink(silent_broker, "out", flush_timeout_s=TIMEOUT_S, close_timeout_s=TIMEOUT_S)
    try:
        s.open("out")
        s.write_batch([{"i": i} for i in range(10)], None)
        with pytest.raises(ConnectorError, match=r"not acknowledged within 1.0s at the end of input"):
            within(s.finish)
    finally:
        with caplog.at_level(logging.WARNING, logger="streamcore.kafka"):
            within(s.close)
    assert "were still queued after close_timeout_s=1.0s; dropping them" in caplog.text
    assert s.metrics()["in_flight"] == 0


def test_exactly_once_sink_gives_up_on_a_cluster_that_never_answers(silent_broker):
    s = KafkaSink(
        silent_broker,
        "out",
        delivery="exactly_once",
        transactional_id_prefix="tx-silent",
        flush_timeout_s=TIMEOUT_S,
        close_timeout_s=TIMEOUT_S,
    )
    try:
        with pytest.raises(ConnectorError, match=r"initialising transactions of 'tx-silent-0'.*reachable"):
            within(lambda: s.open("out"))
    finally:
        within(s.close)


# -- a cluster that stops mid-transaction ---------------------------------------------------------------
def test_close_returns_when_the_cluster_stops_mid_transaction(caplog):
    cluster = MockKafkaCluster(num_brokers=3)
    try:
        cluster.create_topic("out", 2)
        s = KafkaSink(
            cluster.bootstrap_servers,
            "out",
            delivery="exactly_once",
            transactional_id_prefix="tx-stop",
            config=FAST,
            close_timeout_s=TIMEOUT_S,
        )
        s.open("out")
        s.write_batch(list(range(10)), None)
        s.snapshot_state(1)  # tx-stop-0 is pre-committed; checkpoint 1 never completes
        s.write_batch([10, 11, 12], None)  # into tx-stop-1, open
        # Once the brokers hold them (the mock shows open transactions), aborting needs the coordinator.
        deadline = time.monotonic() + 30
        while len(read_all(cluster.bootstrap_servers, "out", 2)) < 13 and time.monotonic() < deadline:
            time.sleep(0.01)
    finally:
        cluster.close()
    with caplog.at_level(logging.WARNING, logger="streamcore.kafka"):
        within(s.close)
    assert "gave up aborting the open transaction of 'tx-stop-1' (3 records)" in caplog.text
    assert "gave up aborting the open transaction of 'tx-stop-0' (10 records)" in caplog.text
    assert "no time was left" in caplog.text  # one close_timeout_s for the whole sink


def test_at_least_once_close_returns_when_the_cluster_stops_with_records_queued(caplog):
    cluster = MockKafkaCluster(num_brokers=1)
    try:
        cluster.create_topic("out", 1)
        linger = {"linger.ms": 60_000}
        s = KafkaSink(cluster.bootstrap_servers, "out", config=linger, close_timeout_s=TIMEOUT_S)
        s.open("out")
        s.write_batch(list(range(20)), None)  # held back by linger.ms
    finally:
        cluster.close()
    with caplog.at_level(logging.WARNING, logger="streamcore.kafka"):
        within(s.close)
    assert "dropping them" in caplog.text


# -- a fenced producer ---------------------------------------------------------------------------------
def test_close_after_fencing_skips_the_abort(cluster, caplog):
    cluster.create_topic("out", 1)
    s = sink(
        cluster,
        delivery="exactly_once",
        transactional_id_prefix="tx-fenced",
        write_ahead=False,
        config=FAST,
        close_timeout_s=TIMEOUT_S,
    )
    try:
        s.open("out")
        # The broker answers the transaction's next Produce as it would after a newer producer
        # with the same transactional.id started: the old one is fenced, fatally.
        cluster.push_request_errors(0, [confluent_kafka.KafkaError.INVALID_PRODUCER_EPOCH] * 3)
        s.write_batch(["a", "b", "c"], None)
        with pytest.raises(ConnectorError, match=r"_FENCED.*another producer initialised the same"):
            within(lambda: s.snapshot_state(1))
    finally:
        with caplog.at_level(logging.WARNING, logger="streamcore.kafka"):
            within(s.close)  # does not raise: the job already failed, the abort is skipped
    assert "not aborting the open transaction of 'tx-fenced-0' (3 records)" in caplog.text
    assert "_FENCED" in caplog.text
    assert "gave up" not in caplog.text


def test_a_fenced_producer_refuses_new_work_clearly(cluster, sinks):
    cluster.create_topic("out", 1)
    kw: dict[str, Any] = {"transactional_id_prefix": "tx-f2", "write_ahead": False, "config": FAST}
    s = sink(cluster, delivery="exactly_once", **kw)
    sinks.append(s)
    s.open("out")
    cluster.push_request_errors(0, [confluent_kafka.KafkaError.INVALID_PRODUCER_EPOCH] * 3)
    s.write_batch([1], None)
    with pytest.raises(ConnectorError, match="_FENCED"):
        within(lambda: s.snapshot_state(1))
    with pytest.raises(ConnectorError, match=r"producer 'tx-f2-0' of topic 'out' hit a fatal error: _FENCED"):
        s.write_batch([2], None)


# -- configuration -----------------------------------------------------------------------------------------
@pytest.mark.parametrize("bad", [0, -1, "5", True, None])
def test_close_timeout_must_be_positive_seconds(bad):
    with pytest.raises(ConfigurationError, match=r"close_timeout_s must be a number of seconds > 0"):
        KafkaSink("localhost:9092", "out", close_timeout_s=bad)


def test_close_timeout_defaults_to_ten_seconds():
    assert KafkaSink("localhost:9092", "out").close_timeout_s == 10.0
