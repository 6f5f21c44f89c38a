"""A process that just joined a consumer-group job waits ``initial_assignment_delay_s`` before it
opens its first tasks, so that processes starting together each open only their own share."""

from __future__ import annotations

import time
from typing import Any

import pytest

from streamcore.errors import ConfigurationError
from streamcore.runtime.kafka_group import KafkaGroupMembership

pytestmark = pytest.mark.kafka

DELAY_S = 4.0


@pytest.fixture
def cluster():
    from streamcore.testing.kafka_mock import MockKafkaCluster

    with MockKafkaCluster(num_brokers=1) as c:
        c.set_group_timing(session_timeout_ms=3_000, heartbeat_interval_ms=100)
        c.create_topic("four", 4)
        yield c


class Member:
    """A membership and the tasks its callbacks started and handed over."""

    def __init__(self, bootstrap: str) -> None:
        self.m = KafkaGroupMembership(bootstrap, "g", ["four"], initial_delay_s=DELAY_S)
        self.started: list[str] = []
        self.started_at: float | None = None
        self.handed: list[str] = []

    def _assign(self, ids: list[str]) -> list[str]:
        self.started += ids
        self.started_at = self.started_at or time.monotonic()
        return ids

    def poll(self) -> None:
        self.m.poll(self._assign, self.handed.extend)


def _poll_until(members: list[Member], done: Any, timeout_s: float = 30.0) -> None:
    deadline = time.monotonic() + timeout_s
    while not done():
        assert time.monotonic() < deadline, [(m.m.assigned, m.started) for m in members]
        for m in members:
            m.poll()
        time.sleep(0.01)


def test_tasks_moved_during_the_delay_are_never_opened_nor_handed_over(cluster) -> None:
    a, b = Member(cluster.bootstrap_servers), Member(cluster.bootstrap_servers)
    try:
        joined = time.monotonic()
        a.m.start()
        _poll_until([a], lambda: len(a.m.assigned) == 4)
        assert a.started == []  # assigned every task, opened none yet
        b.m.start()
        _poll_until([a, b], lambda: a.m.assigned and b.m.assigned and len(a.m.assigned | b.m.assigned) == 4)
        assert a.started == b.started == []
        _poll_until([a, b], lambda: a.started and b.started)
        assert a.started_at is not None and a.started_at - joined >= DELAY_S
        assert sorted(a.started) == sorted(str(p) for p in a.m.assigned)
        assert sorted(b.started) == sorted(str(p) for p in b.m.assigned)
        assert sorted(a.started + b.started) == ["0", "1", "2", "3"]
        assert a.handed == b.handed == []  # nothing opened twice, nothing handed over
    finally:
        a.m.close()
        b.m.close()


def test_without_a_delay_the_first_assignment_starts_at_once(cluster) -> None:
    a = Member(cluster.bootstrap_servers)
    a.m.initial_delay_s = 0.0
    try:
        a.m.start()
        _poll_until([a], lambda: len(a.started) == 4, timeout_s=10.0)
    finally:
        a.m.close()


@pytest.mark.parametrize("bad", [-1, "1", True, None])
def test_a_bad_delay_is_refused_by_name(bad: Any) -> None:
    with pytest.raises(ConfigurationError, match="initial_assignment_delay_s"):
        KafkaGroupMembership("localhost:1", "g", ["t"], initial_delay_s=bad)
