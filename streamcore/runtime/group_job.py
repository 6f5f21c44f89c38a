"""Assembling a job that runs as tasks a Kafka consumer group assigns (``assignment="group"``).

Every process that runs the job runs the same program; the group decides which tasks
each runs (:mod:`streamcore.runtime.kafka_group`). Each task keeps what a job in one
process keeps, under its own name in the storage every process shares:

* state in ``<state_dir>/task-<p>`` (local to the process: rebuilt from checkpoints);
* checkpoints in ``<checkpoint_dir>/task-<p>`` (shared: a file system every machine
  mounts, or object storage), where the next owner of the task restores from;
* a job description, ``<checkpoint_dir>/_job``, written by the first process: a process
  whose program differs (other operator uids, other topics) refuses to start, because
  it would restore state it does not understand.

A task always continues from its latest completed checkpoint when one exists, also
without ``restore_from``: a task that moved to another process must not start over.
"""

from __future__ import annotations

import dataclasses
import importlib
import json
import re
from pathlib import Path
from typing import Any

from streamcore.errors import ConfigurationError, RestoreError
from streamcore.graph import StreamGraph

__all__ = [
    "GroupSpec",
    "ensure_topics",
    "group_spec",
    "job_description",
    "repartition_topic",
    "task_dir",
    "task_restore_from",
    "with_repartitions",
    "write_or_check_job_description",
]


def task_dir(root: Path, task_id: str) -> Path:
    """Where task ``task_id`` keeps its state or checkpoints under ``root``."""
    return Path(root) / f"task-{task_id}"


def task_config(config: Any, task_id: str) -> Any:
    """The checkpoint configuration of one task: ``task-<id>`` under the job's directory (and URL)."""
    remote = None if config.remote is None else f"{config.remote.rstrip('/')}/task-{task_id}"
    return dataclasses.replace(config, directory=task_dir(config.directory, task_id), remote=remote)


@dataclasses.dataclass(frozen=True)
class GroupSpec:
    """The consumer group of a job and its topics (every source's topics)."""

    bootstrap_servers: str
    group_id: str
    topics: list[str]
    config: dict[str, Any]


def group_spec(graph: StreamGraph) -> GroupSpec | None:
    """The job's consumer group when its sources use ``assignment="group"``, else ``None``.

    Raises:
        ConfigurationError: group mode with a source that is not a group-mode Kafka source,
            or sources of different clusters or groups.
    """
    sources = [n for n in graph.nodes if n.kind == "source"]
    grouped = [n for n in sources if getattr(n.source, "assignment", "static") == "group"]
    if not grouped:
        return None
    others = [n.name for n in sources if n not in grouped]
    if others:
        msg = (
            f"sources {others} are not Kafka sources with assignment='group', but {grouped[0].name!r} is: "
            "a job whose tasks a consumer group assigns reads every source by partition; give each "
            "source assignment='group' (or read these streams in another job)"
        )
        raise ConfigurationError(msg)
    first = grouped[0].source
    for n in grouped[1:]:
        src = n.source
        if (src.bootstrap_servers, src.group_id) != (first.bootstrap_servers, first.group_id):
            msg = (
                f"source {n.name!r} uses cluster {src.bootstrap_servers!r} and group {src.group_id!r}, "
                f"source {grouped[0].name!r} {first.bootstrap_servers!r} and {first.group_id!r}: the "
                "sources of a consumer-group job share one cluster and one group_id"
            )
            raise ConfigurationError(msg)
    topics = sorted({t for n in grouped for t in n.source.topics})
    security = {k: v for k, v in first.config.items() if k.startswith(("security.", "sasl.", "ssl."))}
    return GroupSpec(first.bootstrap_servers, first.group_id, topics, security)


def job_description(job_name: str, graph: StreamGraph, spec: GroupSpec) -> dict[str, Any]:
    """What every process of the job must agree on: name, uids (with kinds), topics, group."""
    graph.resolve_uids()
    return {
        "job": job_name,
        "group": spec.group_id,
        "topics": spec.topics,
        "uids": sorted(f"{n.kind}:{n.resolved_uid}" for n in graph.nodes),
    }


def write_or_check_job_description(store: Any, description: dict[str, Any], where: str) -> None:
    """Store the job description as ``_job`` in ``store`` the first time; afterwards, check it matches.

    Raises:
        RestoreError: the stored description differs (another program, or another job).
    """
    raw = store.read("_job")
    if raw is not None:
        stored = json.loads(raw)
        if stored != description:
            diff = [k for k in description if stored.get(k) != description[k]]
            msg = (
                f"{where} belongs to a job whose {', '.join(diff)} differ from this program's "
                f"(stored {[stored.get(k) for k in diff]}, here {[description[k] for k in diff]}): every "
                "process of a consumer-group job must run the same program; give another job its own "
                "checkpoint storage and group_id"
            )
            raise RestoreError(msg)
        return
    store.write("_job", json.dumps(description, sort_keys=True).encode())


def task_restore_from(restore_from: Any, task_id: str) -> Any:
    """What task ``task_id`` restores from: its latest checkpoint, or its part of a savepoint root.

    Raises:
        ConfigurationError: ``restore_from`` is neither ``None``, ``"latest"`` nor a directory.
    """
    if restore_from is None or restore_from == "latest":
        return "latest"
    root = Path(restore_from)
    if root.is_dir():
        part = task_dir(root, task_id)
        return part if part.exists() else "latest"
    msg = (
        f"restore_from={restore_from!r}: a consumer-group job restores each task from its latest "
        "checkpoint ('latest') or from a savepoint directory holding task-<p>/ parts"
    )
    raise ConfigurationError(msg)


# -- repartition topics ----------------------------------------------------------------------------
_UNSAFE_TOPIC = re.compile(r"[^a-zA-Z0-9._-]+")


def repartition_topic(job_name: str, uid: str, side: int | None) -> str:
    """The name of the repartition topic in front of keyed input ``side`` of operator ``uid``."""
    name = f"{job_name}-{uid}-repartition" + ("" if side is None else f"-{side}")
    return _UNSAFE_TOPIC.sub("_", name)


def with_repartitions(
    graph: StreamGraph, job_name: str, spec: GroupSpec, partitions: int, delivery: str
) -> tuple[StreamGraph, list[str]]:
    """A copy of ``graph`` where every keyed input not declared ``partitioned`` goes through a
    repartition topic; returns it and the topics it needs (each with ``partitions`` partitions).

    The keyed operator's input edges of that side are cut: they feed a
    :class:`~streamcore.shuffle.sink.RepartitionSinkOperator` instead, and a
    :class:`~streamcore.shuffle.source.RepartitionSource` reading the topic feeds the
    operator. Both get uids derived from the operator's (``<uid>~out<side>``, ``~in<side>``),
    so their state has a stable name in checkpoints.
    """
    from streamcore.graph import Transformation
    from streamcore.shuffle.sink import RepartitionSinkOperator, repartition_sink
    from streamcore.shuffle.source import RepartitionSource

    g = graph.copy()
    g.resolve_uids()
    topics: list[str] = []
    for node in list(g.nodes):
        keyed = node.attrs.get("keyed_inputs") or {}
        for side, (key_selector, partitioned) in sorted(keyed.items()):
            if partitioned:
                continue
            topic = repartition_topic(job_name, node.resolved_uid, side if len(keyed) > 1 else None)
            topics.append(topic)
            sink = repartition_sink(spec.bootstrap_servers, topic, delivery=delivery, config=spec.config)

            factory = _repartition_factory(RepartitionSinkOperator, sink, key_selector, partitions)
            feeding = [e for e in node.inputs if e[1] == side]
            out = Transformation(
                0,
                "sink",
                f"{node.name}-repartition",
                [(p, 0, tag) for p, _, tag in feeding],
                factory,
                uid=f"{node.resolved_uid}~out{side}",
            )
            out.attrs["sink"] = sink
            g.insert(out)
            source = RepartitionSource(spec.bootstrap_servers, topic, spec.group_id, partitions, spec.config)
            read = Transformation(
                0,
                "source",
                f"{node.name}-repartitioned",
                [],
                None,
                uid=f"{node.resolved_uid}~in{side}",
                source=source,
            )
            g.insert(read, before=node)
            node.inputs = [e for e in node.inputs if e[1] != side] + [(read, side, None)]
    g.resolve_uids()
    return g, topics


def _repartition_factory(cls: Any, sink: Any, key_selector: Any, partitions: int) -> Any:
    """The factory of a repartition operator: a closure, so each task copies the sink it captures."""

    def factory(name: str, uid: str) -> Any:
        return cls(name, uid, sink, key_selector, partitions)

    return factory


def ensure_topics(spec: GroupSpec, topics: list[str], partitions: int, timeout_s: float = 10.0) -> None:
    """Create the repartition topics (and the commit-marker topics of their transactional writes)
    that do not exist yet, with ``partitions`` partitions (markers: one).

    Raises:
        ConfigurationError: a topic exists with another partition count.
        ConnectorError: the cluster refused to create a topic (create it yourself with the count given).
    """
    from streamcore.errors import ConnectorError
    from streamcore.kafka_client import import_confluent_kafka, kafka_errors

    import_confluent_kafka()  # a clear error when confluent-kafka is missing
    admin_module = importlib.import_module("confluent_kafka.admin")
    admin = admin_module.AdminClient({"bootstrap.servers": spec.bootstrap_servers, **spec.config})
    wanted = {t: partitions for t in topics}
    wanted.update({f"{t}.streamcore-commits": 1 for t in topics})
    with kafka_errors("listing topics", "is the cluster reachable?"):
        existing = admin.list_topics(timeout=timeout_s).topics
    missing = []
    for topic, count in sorted(wanted.items()):
        info = existing.get(topic)
        if info is None or info.error is not None:
            missing.append(topic)
        elif len(info.partitions) != count:
            msg = (
                f"repartition topic {topic!r} has {len(info.partitions)} partitions, the job needs {count} "
                "(the source topics' count): delete it, or give the job another name"
            )
            raise ConfigurationError(msg)
    if not missing:
        return
    new = [admin_module.NewTopic(t, num_partitions=wanted[t], replication_factor=-1) for t in missing]
    futures = admin.create_topics(new, request_timeout=timeout_s)
    for topic, future in futures.items():
        try:
            future.result(timeout_s)
        except Exception as exc:
            msg = (
                f"cannot create repartition topic {topic!r} ({exc}); create it with {wanted[topic]} "
                "partitions before starting the job"
            )
            raise ConnectorError(msg) from exc


def source_partitions(spec: GroupSpec, timeout_s: float = 10.0) -> int:
    """The partition count of the job's source topics (they must agree): the job's task count.

    Raises:
        ConfigurationError: the topics are not co-partitioned.
        ConnectorError: the cluster cannot be reached, or a topic does not exist.
    """
    from streamcore.errors import ConnectorError
    from streamcore.kafka_client import import_confluent_kafka, kafka_errors
    from streamcore.runtime.kafka_group import check_co_partitioned

    import_confluent_kafka()
    admin = importlib.import_module("confluent_kafka.admin").AdminClient(
        {"bootstrap.servers": spec.bootstrap_servers, **spec.config}
    )
    with kafka_errors(f"reading the metadata of {spec.topics}", "is the cluster reachable?"):
        meta = admin.list_topics(timeout=timeout_s).topics
    counts = {}
    for topic in spec.topics:
        info = meta.get(topic)
        if info is None or info.error is not None or not info.partitions:
            msg = f"source topic {topic!r} does not exist on {spec.bootstrap_servers}; create it first"
            raise ConnectorError(msg)
        counts[topic] = len(info.partitions)
    return check_co_partitioned(counts)
