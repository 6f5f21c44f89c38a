"""OpenLineage run events of a job, through the ``openlineage-python`` client.

``env.enable_lineage(transport)`` adds a :class:`LineageListener` to every run. It emits:

* ``START`` when the job starts (after a restore, if any), with every input and output
  dataset;
* ``RUNNING`` after each completed checkpoint, with the run facet ``streamcore_checkpoint``
  (``checkpointId``, ``durationMs``, ``sizeBytes``) and a first restart's failure, if any;
* ``COMPLETE`` when the job finishes or is stopped (with the savepoint, if one was taken);
* ``FAIL`` when it fails for good, with an ``errorMessage`` facet.

Every event of one run shares its ``runId``; the job is ``namespace``/job name, with a
``jobType`` facet (``STREAMING`` when a source is unbounded, else ``BATCH``; integration
``STREAMCORE``). Datasets follow OpenLineage's naming: a Kafka topic is namespace
``kafka://<first bootstrap server>``, name ``<topic>``; a file sink is namespace ``file``,
name its absolute directory. A source, sink or operator of any other kind names its own
datasets with a ``lineage_datasets()`` method returning ``[(namespace, name), ...]`` (a
lookup join names its database table that way); in-memory collections and generators
have none.

Transports: ``"console"`` (the client's console transport: INFO log lines), a file path
(one JSON event per line, appended), an ``http(s)://`` URL (the client's HTTP transport,
``/api/v1/lineage``), or any ``openlineage.client.transport.Transport``. Emitting never
fails the job: errors are logged as warnings.
"""

from __future__ import annotations

import datetime as dt
import logging
import uuid
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from streamcore.errors import ConfigurationError
from streamcore.runtime.executor import JobExecutor
from streamcore.runtime.run import JobRun, RunListener, checkpoint_stats, completed_checkpoints

__all__ = ["LineageConfig", "LineageListener", "datasets"]

logger = logging.getLogger("streamcore.lineage")

PRODUCER = "https://github.com/streamcore/streamcore"


@dataclass(frozen=True)
class LineageConfig:
    """Where lineage events go (``env.enable_lineage``)."""

    transport: Any = "console"
    namespace: str = "streamcore"

    def __post_init__(self) -> None:
        if not isinstance(self.namespace, str) or not self.namespace:
            msg = f"lineage namespace must be a non-empty str, got {self.namespace!r}"
            raise ConfigurationError(msg)
        t = self.transport
        if isinstance(t, (str, Path)):
            if not str(t):
                msg = "enable_lineage() transport must be 'console', a file path, a URL or a Transport"
                raise ConfigurationError(msg)
        elif not hasattr(t, "emit"):
            msg = (
                f"enable_lineage() transport must be 'console', a file path, an http(s):// URL or an "
                f"openlineage Transport, got {type(t).__name__}"
            )
            raise ConfigurationError(msg)

    def client(self) -> Any:
        """An ``OpenLineageClient`` with the configured transport."""
        from openlineage.client import OpenLineageClient

        t = self.transport
        if isinstance(t, (str, Path)):
            text = str(t)
            if text == "console":
                from openlineage.client.transport.console import ConsoleConfig, ConsoleTransport

                t = ConsoleTransport(ConsoleConfig())
            elif text.startswith(("http://", "https://")):
                from openlineage.client.transport.http import HttpConfig, HttpTransport

                t = HttpTransport(HttpConfig(url=text))
            else:
                from openlineage.client.transport.file import FileConfig, FileTransport

                Path(text).parent.mkdir(parents=True, exist_ok=True)
                t = FileTransport(FileConfig(log_file_path=text, append=True))
        return OpenLineageClient(transport=t)


def _kafka_namespace(bootstrap: str) -> str:
    first = bootstrap.split(",")[0].strip()
    return f"kafka://{first}"


def datasets(component: Any) -> list[tuple[str, str]]:
    """``[(namespace, name)]`` of the datasets a source, sink or operator reads or writes."""
    own = getattr(component, "lineage_datasets", None)
    if callable(own):
        return [(str(ns), str(name)) for ns, name in own()]
    bootstrap = getattr(component, "bootstrap_servers", None)
    if isinstance(bootstrap, str):
        topics = getattr(component, "topics", None) or [getattr(component, "topic", None)]
        return [(_kafka_namespace(bootstrap), t) for t in topics if t]
    if type(component).__name__ == "FileSink":
        return [("file", str(Path(component.directory).resolve()))]
    return []


def _checkpoint_facet(stats: dict[str, Any]) -> Any:
    import attr
    from openlineage.client.generated.base import RunFacet

    global _CheckpointFacet
    if _CheckpointFacet is None:

        @attr.define
        class StreamcoreCheckpointRunFacet(RunFacet):  # type: ignore[misc]
            """The checkpoint a RUNNING event reports."""

            checkpointId: int
            durationMs: float | None = attr.field(default=None)
            sizeBytes: int | None = attr.field(default=None)

            @staticmethod
            def _get_schema() -> str:
                return PRODUCER + "/spec/StreamcoreCheckpointRunFacet.json"

        _CheckpointFacet = StreamcoreCheckpointRunFacet
    return _CheckpointFacet(
        checkpointId=int(stats["id"]),
        durationMs=stats.get("duration_ms"),
        sizeBytes=stats.get("size_bytes"),
        producer=PRODUCER,
    )


_CheckpointFacet: Any = None


class LineageListener(RunListener):
    """Emits the run's OpenLineage events (see the module docstring)."""

    def __init__(self, config: LineageConfig, env: Any, job_name: str) -> None:
        self.config = config
        self.job_name = job_name
        self.run_id = str(uuid.uuid4())
        self.emitted: list[Any] = []
        graph = env.graph
        graph.resolve_uids()
        self._streaming = any(n.kind == "source" and not n.source.bounded for n in graph.nodes)
        self._inputs: list[tuple[str, str]] = []
        self._outputs: list[tuple[str, str]] = []
        for n in graph.nodes:
            if n.kind == "source":
                self._inputs.extend(datasets(n.source))
            elif n.kind == "sink":
                self._outputs.extend(datasets(n.attrs["sink"]))
        self._client: Any = None
        self._seen_checkpoints: int = 0
        self._started = False

    # -- events ------------------------------------------------------------------------------
    def _emit(self, state: str, run_facets: dict[str, Any] | None = None) -> None:
        try:
            from openlineage.client.event_v2 import InputDataset, Job, OutputDataset, Run, RunEvent, RunState
            from openlineage.client.facet_v2 import job_type_job

            if self._client is None:
                self._client = self.config.client()
            event = RunEvent(
                eventType=RunState[state],
                eventTime=dt.datetime.now(dt.UTC).isoformat(),
                run=Run(runId=self.run_id, facets=run_facets or {}),
                job=Job(
                    namespace=self.config.namespace,
                    name=self.job_name,
                    facets={
                        "jobType": job_type_job.JobTypeJobFacet(
                            processingType="STREAMING" if self._streaming else "BATCH",
                            integration="STREAMCORE",
                            jobType="JOB",
                        )
                    },
                ),
                inputs=[InputDataset(namespace=ns, name=name) for ns, name in self._inputs],
                outputs=[OutputDataset(namespace=ns, name=name) for ns, name in self._outputs],
                producer=PRODUCER,
            )
            self._client.emit(event)
            self.emitted.append(event)
        except Exception as exc:
            logger.warning("OpenLineage %s event of job %r not emitted: %s", state, self.job_name, exc)

    # -- listener ----------------------------------------------------------------------------
    def attempt_started(self, run: JobRun, executor: JobExecutor) -> None:
        """START once per run (restarts go on as the same run)."""
        self._seen_checkpoints = len(completed_checkpoints(executor))
        if not self._started:
            self._started = True
            self._emit("START")

    def between_batches(self, run: JobRun, executor: JobExecutor) -> None:
        """RUNNING for every checkpoint completed since the last look."""
        if len(completed_checkpoints(executor)) != self._seen_checkpoints:
            self._running_events(executor)

    def _running_events(self, executor: JobExecutor) -> None:
        done = completed_checkpoints(executor)
        stats = checkpoint_stats(executor)
        for tid, cid in done[self._seen_checkpoints :]:
            facet = _checkpoint_facet(stats.get((tid, cid), {"id": cid}))
            self._emit("RUNNING", {"streamcore_checkpoint": facet})
        self._seen_checkpoints = len(done)

    def attempt_ended(self, run: JobRun, executor: JobExecutor, error: BaseException | None) -> None:
        """Report checkpoints completed at the end (the final one)."""
        if len(completed_checkpoints(executor)) > self._seen_checkpoints:
            self._running_events(executor)

    def run_ended(self, run: JobRun, result: Any, error: BaseException | None) -> None:
        """COMPLETE or FAIL."""
        if error is None:
            self._emit("COMPLETE")
            return
        from openlineage.client.facet_v2 import error_message_run

        self._emit(
            "FAIL",
            {
                "errorMessage": error_message_run.ErrorMessageRunFacet(
                    message=str(error), programmingLanguage="PYTHON"
                )
            },
        )
