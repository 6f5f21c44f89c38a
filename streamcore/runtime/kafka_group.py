"""Kafka's consumer-group protocol decides which process runs which task of a job.

A job whose Kafka sources have ``assignment="group"`` runs as tasks: task ``p`` reads
partition ``p`` of every source topic (they must be co-partitioned). Every process
that runs the job joins the consumer group ``group_id`` with one *membership* consumer
subscribed to one topic of the job, the driver topic (the first source topic in name
order): the group assigns the driver topic's partitions to the members, and owning
partition ``p`` means running task ``p``. Subscribing to one topic makes ownership
independent of the assignor (any assignor keeps one topic's partitions apart), and
works with the cooperative protocols: ``group.protocol=consumer`` (KIP-848, the
default here) or ``partition.assignment.strategy=cooperative-sticky`` on older brokers
(pass ``group_config={"group.protocol": "classic", ...}``). The membership consumer
never reads records: its partitions are paused as soon as they are assigned. Each
task reads its partitions with its own assigned (not subscribed) consumer, from its
own checkpoints, as a job in one process does.

Rebalances are incremental: only moved tasks are revoked. A revoked task takes a final
checkpoint inside the revocation callback, before the group hands its partition to the
next member, which restores from that checkpoint: nothing it committed is replayed.
Partitions *lost* (this member's session expired: another member may already run them)
are closed without a checkpoint, because this process may be a zombie.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Mapping, Sequence
from typing import Any

from streamcore.errors import ConfigurationError, ConnectorError
from streamcore.kafka_client import import_confluent_kafka, kafka_errors
from streamcore.runtime.membership import AssignCallback, Membership, TaskCallback

__all__ = ["KafkaGroupMembership", "check_co_partitioned"]

logger = logging.getLogger("streamcore.kafka")

#: settings of the membership consumer that streamcore decides.
GROUP_DEFAULTS: dict[str, Any] = {"group.protocol": "consumer"}


def check_co_partitioned(counts: Mapping[str, int]) -> int:
    """The common partition count of the job's source topics.

    Raises:
        ConfigurationError: the topics have different partition counts (names each count).
    """
    distinct = sorted(set(counts.values()))
    if len(distinct) != 1:
        listed = ", ".join(f"{t} has {n}" for t, n in sorted(counts.items()))
        msg = (
            f"the source topics of a consumer-group job must have the same number of partitions "
            f"(task p reads partition p of each): {listed}; repartition them to one count"
        )
        raise ConfigurationError(msg)
    return distinct[0]


class KafkaGroupMembership(Membership):
    """Membership in consumer group ``group_id``: the tasks are the driver topic's partitions.

    Args:
        bootstrap_servers: the cluster.
        group_id: the group every process of the job joins.
        topics: every source topic of the job (checked to be co-partitioned at start).
        config: more librdkafka settings of the membership consumer (security, timeouts).
        timeout_s: time limit of the metadata look-up at start.
        job_finished: whether every task of the job read all its input (a bounded job's
            processes end then, and only then: a task can move to a process until it is done).
        initial_delay_s: how long after joining the tasks assigned stay pending (not opened,
            not restored): a rebalance that moves them to a process joining meanwhile costs
            nothing then. Later assignments start at once.
    """

    dynamic = True

    def __init__(
        self,
        bootstrap_servers: str,
        group_id: str,
        topics: Sequence[str],
        config: Mapping[str, Any] | None = None,
        timeout_s: float = 10.0,
        job_finished: Callable[[], bool] | None = None,
        initial_delay_s: float = 0.0,
    ) -> None:
        if (
            not isinstance(initial_delay_s, (int, float))
            or isinstance(initial_delay_s, bool)
            or initial_delay_s < 0
        ):
            msg = f"initial_assignment_delay_s must be a number of seconds >= 0, got {initial_delay_s!r}"
            raise ConfigurationError(msg)
        self.initial_delay_s = float(initial_delay_s)
        self._start_after = 0.0
        self.job_finished = job_finished
        self.bootstrap_servers = bootstrap_servers
        self.group_id = group_id
        self.topics = sorted(set(topics))
        self.driver_topic = self.topics[0]
        self.config = {**GROUP_DEFAULTS, **(config or {})}
        self.timeout_s = timeout_s
        self.partitions = 0
        self._consumer: Any = None
        self._callbacks: tuple[TaskCallback, TaskCallback] | None = None
        self._error: BaseException | None = None
        self.assigned: set[int] = set()
        self.pending: set[int] = set()  # assigned, not started yet
        self.rebalances = 0

    def start(self) -> None:
        """Check co-partitioning, join the group and subscribe to the driver topic.

        Raises:
            ConfigurationError: topics with different partition counts, or a rejected setting.
            ConnectorError: the cluster cannot be reached, or a topic does not exist.
        """
        ck = import_confluent_kafka()
        conf = {
            **self.config,
            "bootstrap.servers": self.bootstrap_servers,
            "group.id": self.group_id,
            "enable.auto.commit": False,
            "enable.partition.eof": False,
        }
        with kafka_errors(f"joining consumer group {self.group_id!r}", "is the cluster reachable?"):
            self._consumer = ck.Consumer(conf)
        counts = {}
        with kafka_errors(f"reading the metadata of {self.topics}", "is the cluster reachable?"):
            meta = self._consumer.list_topics(timeout=self.timeout_s)
        for topic in self.topics:
            info = meta.topics.get(topic)
            if info is None or info.error is not None or not info.partitions:
                msg = f"topic {topic!r} does not exist on {self.bootstrap_servers}; create it first"
                raise ConnectorError(msg)
            counts[topic] = len(info.partitions)
        self.partitions = check_co_partitioned(counts)
        self._start_after = time.monotonic() + self.initial_delay_s
        with kafka_errors(f"subscribing to {self.driver_topic!r}"):
            self._consumer.subscribe(
                [self.driver_topic],
                on_assign=self._on_assign,
                on_revoke=self._on_revoke,
                on_lost=self._on_lost,
            )
        logger.info(
            "joined consumer group %r: %d tasks (partitions of %s)",
            self.group_id,
            self.partitions,
            self.topics,
            extra={"group": self.group_id},
        )

    # -- callbacks, run inside Consumer.poll -------------------------------------------------------
    def _run(self, which: int, ids: list[int]) -> None:
        if not ids or self._error is not None or self._callbacks is None:
            return
        try:
            self._callbacks[which]([str(p) for p in ids])
        except BaseException as exc:  # raised again after poll() returns
            self._error = exc

    def _on_assign(self, consumer: Any, parts: list[Any]) -> None:
        self.rebalances += 1
        if parts:
            consumer.pause(parts)  # membership only: tasks read with their own consumers
            ids = {p.partition for p in parts}
            self.assigned.update(ids)
            self.pending.update(ids)  # started after poll() returns: never block the group's callback
            logger.info("group %r assigned tasks %s", self.group_id, sorted(ids))

    def _drop(self, parts: list[Any]) -> list[int]:
        """Forget ``parts``; returns those that had started (pending ones simply never start)."""
        ids = {p.partition for p in parts}
        self.assigned.difference_update(ids)
        started = sorted(ids - self.pending)
        self.pending.difference_update(ids)
        return started

    def _on_revoke(self, consumer: Any, parts: list[Any]) -> None:
        self.rebalances += 1
        if parts:
            logger.info("group %r revoked tasks %s", self.group_id, sorted(p.partition for p in parts))
        self._run(0, self._drop(parts))  # hand over inside the callback: before the group moves them

    def _on_lost(self, consumer: Any, parts: list[Any]) -> None:
        if parts:
            logger.warning(
                "group %r: tasks %s were lost (this member's session expired); closing them without a "
                "checkpoint",
                self.group_id,
                sorted(p.partition for p in parts),
            )
        self._run(1, self._drop(parts))

    def poll(self, assign: AssignCallback, revoke: TaskCallback, lose: TaskCallback | None = None) -> None:
        """Serve the group's callbacks that are due, then start the assigned tasks that can start.

        Never blocks: a task whose previous owner has not released it yet stays pending.

        Raises:
            StreamcoreError: a task failed to start or to hand over.
        """
        self._callbacks = (revoke, lose or revoke)
        try:
            with kafka_errors(f"polling consumer group {self.group_id!r}"):
                msg = self._consumer.poll(0)
            if msg is not None and msg.error() is not None:
                logger.warning("consumer group %r: %s", self.group_id, msg.error())
        finally:
            self._callbacks = None
        if self._error is not None:
            error, self._error = self._error, None
            raise error
        if self.pending and (not self._start_after or time.monotonic() >= self._start_after):
            self._start_after = 0.0
            started = assign([str(p) for p in sorted(self.pending)])
            self.pending.difference_update(int(t) for t in started)

    def may_end(self, finished: Sequence[str]) -> bool:
        """A bounded job's process ends once every task of the job (not only its own) read all its input."""
        if self.pending or self.job_finished is None:
            return False
        return self.job_finished()

    def close(self) -> None:
        """Leave the group: its tasks move to the other members (after their final checkpoints)."""
        consumer, self._consumer = self._consumer, None
        if consumer is not None:
            consumer.close()
