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
import json
from pathlib import Path
from typing import Any

from streamcore.errors import ConfigurationError, RestoreError
from streamcore.graph import StreamGraph

__all__ = [
    "GroupSpec",
    "group_spec",
    "job_description",
    "task_dir",
    "task_restore_from",
    "write_or_check_job_description",
]


def task_dir(root: Path, task_id: str) -> Path:
    """Where task ``task_id`` keeps its state or checkpoints under ``root``."""
    return Path(root) / f"task-{task_id}"


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


def write_or_check_job_description(root: Path, description: dict[str, Any]) -> None:
    """Store the job description in ``root/_job`` the first time; afterwards, check it matches.

    Raises:
        RestoreError: the stored description differs (another program, or another job).
    """
    from streamcore.checkpoint.storage import atomic_write

    root = Path(root)
    path = root / "_job"
    if path.exists():
        stored = json.loads(path.read_text(encoding="utf-8"))
        if stored != description:
            diff = [k for k in description if stored.get(k) != description[k]]
            msg = (
                f"{root} belongs to a job whose {', '.join(diff)} differ from this program's "
                f"(stored {[stored.get(k) for k in diff]}, here {[description[k] for k in diff]}): every "
                "process of a consumer-group job must run the same program; give another job its own "
                "checkpoint storage and group_id"
            )
            raise RestoreError(msg)
        return
    root.mkdir(parents=True, exist_ok=True)
    atomic_write(path, json.dumps(description, sort_keys=True).encode())


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
