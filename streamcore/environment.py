"""StreamEnvironment: configure a job, build its dataflow, execute it.

>>> import streamcore as sc
>>> env = sc.StreamEnvironment(batch_size=2)
>>> words = env.from_collection(["a", "b", "a"])
>>> words.key_by(lambda w: w).reduce(lambda a, b: a + b).execute_and_collect()
['a', 'b', 'aa']
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from pathlib import Path
from typing import Any

from streamcore.datastream import DataStream
from streamcore.errors import ConfigurationError
from streamcore.graph import StreamGraph
from streamcore.keygroups import DEFAULT_MAX_PARALLELISM, check_max_parallelism
from streamcore.runtime.executor import JobControl, JobExecutor, JobResult
from streamcore.runtime.job import JobHandle
from streamcore.runtime.restart import RestartStrategy
from streamcore.runtime.run import JobRun, RunListener
from streamcore.runtime.task import Task
from streamcore.runtime.task_runner import SCHEDULING_MODES, TaskRunner
from streamcore.sources.base import Source
from streamcore.sources.collection import CollectionSource, GeneratorSource
from streamcore.state.factory import StateBackendFactory, check_backend
from streamcore.time import Clock, SystemClock, WatermarkStrategy

__all__ = ["StreamEnvironment", "StreamExecutionEnvironment"]

DEFAULT_BATCH_SIZE = 1024


class StreamEnvironment:
    """The entry point: sources, configuration, and execution of one dataflow.

    Args:
        state_backend: ``"heap"`` (Python objects; default) or ``"rocksdb"`` (needs ``state_dir``).
        state_dir: working directory of the RocksDB backend (rebuilt on every start).
        batch_size: records taken from a split at a time and pushed through the operators.
        max_parallelism: number of key groups (the unit of state ownership).
        clock: processing-time clock (``ManualClock`` in tests); wall clock by default.
        rocksdb_options: ``"default"``, ``"large-state"`` or a ``rocksdict.Options``.
    """

    def __init__(
        self,
        state_backend: str = "heap",
        state_dir: str | Path | None = None,
        batch_size: int = DEFAULT_BATCH_SIZE,
        max_parallelism: int = DEFAULT_MAX_PARALLELISM,
        clock: Clock | None = None,
        rocksdb_options: Any = "default",
    ) -> None:
        check_backend(state_backend, state_dir)
        if type(batch_size) is not int or batch_size < 1:
            msg = f"batch_size must be an int >= 1, got {batch_size!r}"
            raise ConfigurationError(msg)
        if clock is not None and not isinstance(clock, Clock):
            msg = f"clock must be a streamcore.time.Clock, got {type(clock).__name__}"
            raise ConfigurationError(msg)
        self.state_backend = state_backend
        self.state_dir = Path(state_dir) if state_dir is not None else None
        self.batch_size = batch_size
        self.max_parallelism = check_max_parallelism(max_parallelism)
        self.clock: Clock = clock or SystemClock()
        self.rocksdb_options = rocksdb_options
        self.graph = StreamGraph()
        self.checkpoint_config: Any = None
        self.rate_coordination: Any = None
        self.metrics_config: Any = None
        self.lineage_config: Any = None
        self.restart_strategy: RestartStrategy | None = None
        #: where ``enable_checkpointing(interval_ms)`` puts checkpoints (``streamcore run --checkpoints``).
        self.default_checkpoint_dir: Path | None = None
        #: seconds an unbounded job with event-time windows runs without any watermark before it warns.
        self.no_watermark_warning_s: float = 60.0
        self._batch_listeners: list[Callable[[Any], None]] = []
        self._run_listeners: list[Callable[[], RunListener]] = []
        #: how long a consumer-group task waits for its previous owner to release it.
        self.takeover_s = 10.0
        #: how long a process that just joined a consumer-group job waits before it starts the
        #: tasks of its first assignment (Kafka's ``group.initial.rebalance.delay.ms``): when
        #: several processes start together, each then opens and restores only its own share,
        #: instead of the first one opening every task and handing most of them over again.
        self.initial_assignment_delay_s = 0.0
        #: how repartition topics are written: "exactly_once" (transactions committed with the
        #: task's checkpoints) or "at_least_once" (readers still drop replays by number).
        self.repartition_delivery = "exactly_once"
        #: how each task picks the next split to read (:meth:`set_split_scheduling`).
        self.split_scheduling = "event-time"

    @classmethod
    def get_execution_environment(cls, **options: Any) -> StreamEnvironment:
        """A new environment (PyFlink's name); ``options`` are the constructor's arguments.

        >>> env = StreamExecutionEnvironment.get_execution_environment()
        >>> env.from_collection([1, 2]).map(lambda x: x * 2).execute_and_collect()
        [2, 4]
        """
        return cls(**options)

    # -- sources -------------------------------------------------------------------------
    def from_source(
        self,
        source: Source,
        *,
        timestamp: Callable[[Any], int] | None = None,
        watermarks: WatermarkStrategy | None = None,
        name: str | None = None,
    ) -> DataStream:
        """A stream read from ``source``.

        Args:
            timestamp: event time of an element (int ms); sources with native timestamps
                (Kafka) use those when this is ``None``.
            watermarks: how the source's watermark advances; with timestamps but no strategy,
                the watermark only moves at the end of a bounded input.
            name: the operator name (and default uid).
        """
        if not isinstance(source, Source):
            msg = f"from_source() takes a streamcore Source, got {type(source).__name__}"
            raise ConfigurationError(msg)
        if watermarks is not None and not isinstance(watermarks, WatermarkStrategy):
            msg = f"watermarks must be a WatermarkStrategy, got {type(watermarks).__name__}"
            raise ConfigurationError(msg)
        if timestamp is not None and not callable(timestamp):
            msg = f"timestamp must be a callable element -> int ms, got {type(timestamp).__name__}"
            raise ConfigurationError(msg)
        if name is not None and (not isinstance(name, str) or not name):
            msg = f"name must be a non-empty str, got {name!r}"
            raise ConfigurationError(msg)
        if timestamp is None and watermarks is not None:
            timestamp = watermarks.timestamp_assigner
        node = self.graph.add(
            "source", name or "source", [], None, source=source, watermarks=watermarks, timestamp_fn=timestamp
        )
        return DataStream(self, [(node, None)])

    def add_source(
        self,
        source: Source,
        source_name: str | None = None,
        watermarks: WatermarkStrategy | None = None,
        timestamp: Callable[[Any], int] | None = None,
    ) -> DataStream:
        """PyFlink's ``add_source(source, source_name)``: :meth:`from_source` with positional names."""
        return self.from_source(source, timestamp=timestamp, watermarks=watermarks, name=source_name)

    def from_collection(
        self,
        collection: Iterable[Any],
        timestamp: Callable[[Any], int] | None = None,
        watermarks: WatermarkStrategy | None = None,
        name: str | None = None,
    ) -> DataStream:
        """A bounded stream of the elements of ``collection``, in order."""
        return self.from_source(
            CollectionSource(collection),
            timestamp=timestamp,
            watermarks=watermarks,
            name=name or "collection",
        )

    def from_generator(
        self,
        fn: Callable[[int, int], Any],
        *,
        num_splits: int = 1,
        count: int | None = None,
        timestamp: Callable[[Any], int] | None = None,
        watermarks: WatermarkStrategy | None = None,
        name: str | None = None,
    ) -> DataStream:
        """A deterministic, resumable stream: ``fn(split, offset)`` for each split.

        ``count`` records per split (``None``: unbounded). Positions are offsets, so a
        restored job regenerates exactly what it had not read.
        """
        src = GeneratorSource(fn, num_splits=num_splits, count=count)
        return self.from_source(src, timestamp=timestamp, watermarks=watermarks, name=name or "generator")

    # -- configuration ------------------------------------------------------------------------
    def enable_checkpointing(
        self,
        directory: str | Path | int,
        every_records: int | None = 100_000,
        every_ms: int | None = None,
        incremental: bool = True,
        retain: int = 3,
        tolerable_failures: int = 0,
        asynchronous: bool = True,
        *,
        checkpoint_dir: str | Path | None = None,
        storage_options: dict[str, Any] | None = None,
        staging_dir: str | Path | None = None,
    ) -> StreamEnvironment:
        """Take a checkpoint every ``every_records`` records read and/or every ``every_ms``.

        ``directory`` is a path (local, or a file system every machine of the job mounts),
        or an object-storage URL such as ``s3://bucket/jobs/ad-join``: checkpoints are then
        written to ``staging_dir`` (default: ``<state_dir>/checkpoint-staging``, or a
        temporary directory) and uploaded before they count as complete.

        ``enable_checkpointing(10_000)`` (PyFlink's signature: an int interval in ms) means
        ``every_ms=10_000`` and no record count; the directory is then ``checkpoint_dir=``,
        or the one ``streamcore run --checkpoints DIR`` set; without either it raises an
        error that says what to pass.

        Args:
            incremental: RocksDB checkpoints upload only SST files the previous one lacks.
            retain: completed checkpoints kept; shared files are deleted when none uses them.
            tolerable_failures: consecutive failed checkpoints before the job fails.
            asynchronous: write files in a background thread after the synchronous pause.
            storage_options: fsspec options of an object-storage URL (credentials, endpoint).
            staging_dir: the local copy of checkpoints kept in object storage.

        See :mod:`streamcore.checkpoint` for the storage layout and guarantees.

        Raises:
            ConfigurationError: an interval without a known directory, or a bad value.
        """
        from streamcore.checkpoint.config import CheckpointConfig
        from streamcore.checkpoint.remote import is_remote

        if isinstance(directory, int) and not isinstance(directory, bool):
            interval = directory
            target = checkpoint_dir if checkpoint_dir is not None else self.default_checkpoint_dir
            if target is None:
                msg = (
                    f"enable_checkpointing({interval}) takes the interval in ms as PyFlink does, but "
                    "streamcore also needs a directory: "
                    f"enable_checkpointing({interval}, checkpoint_dir='checkpoints/') "
                    f"or enable_checkpointing('checkpoints/', every_ms={interval}) "
                    "(or run the job with `streamcore run --checkpoints DIR`)"
                )
                raise ConfigurationError(msg)
            directory = target
            every_ms, every_records = interval, None
        elif checkpoint_dir is not None:
            msg = "pass the checkpoint directory once: as the first argument or as checkpoint_dir=, not both"
            raise ConfigurationError(msg)
        if not isinstance(directory, (str, Path)):
            msg = f"enable_checkpointing() takes a directory (or an int interval in ms), got {directory!r}"
            raise ConfigurationError(msg)
        remote = None
        local = Path(directory) if not is_remote(directory) else None
        if local is None:
            remote = str(directory)
            if staging_dir is not None:
                local = Path(staging_dir)
            elif self.state_dir is not None:
                local = self.state_dir / "checkpoint-staging"
            else:
                import tempfile

                local = Path(tempfile.mkdtemp(prefix="streamcore-checkpoints-"))
        self.checkpoint_config = CheckpointConfig(
            local,
            every_records,
            every_ms,
            incremental,
            retain,
            tolerable_failures,
            asynchronous,
            remote=remote,
            storage_options=storage_options,
        )
        return self

    def enable_metrics(
        self,
        port: Any = ...,
        *,
        host: str = "127.0.0.1",
        pushgateway: str | None = None,
        every_ms: int = 10_000,
        job: str | None = None,
        grouping_key: dict[str, str] | None = None,
    ) -> StreamEnvironment:
        """Serve ``/metrics`` (Prometheus), the dashboard (``/``) and the REST API (``/api/v1``).

        ``port`` defaults to 9249, Flink's PrometheusReporter port; 0 picks a free one
        (the handle's ``dashboard_url`` and the log say which); ``None`` serves nothing.
        ``pushgateway="host:9091"`` pushes the metrics every ``every_ms`` under
        Pushgateway job ``job`` (default: the job name) instead of serving them, and
        deletes the group when the job ends cleanly; pass a ``port`` too to do both. See
        :mod:`streamcore.observe.prometheus` for the names.

        Raises:
            ConfigurationError: a bad port or interval, or neither a port nor a Pushgateway.
        """
        from streamcore.observe.service import FLINK_PROMETHEUS_PORT, MetricsConfig

        if port is ...:
            port = None if pushgateway is not None else FLINK_PROMETHEUS_PORT
        self.metrics_config = MetricsConfig(
            port=port,
            host=host,
            pushgateway=pushgateway,
            every_ms=every_ms,
            job=job,
            grouping_key=grouping_key or {},
        )
        return self

    def set_restart_strategy(self, strategy: RestartStrategy) -> StreamEnvironment:
        """Restart the job in-process after a failure, from its latest checkpoint.

        Build ``strategy`` with :func:`streamcore.fixed_delay`, :func:`streamcore.exponential_delay`
        or :func:`streamcore.no_restart` (the default). Restarts are counted in the metric
        ``streamcore_job_restarts_total`` and in ``JobResult.restarts``.
        """
        if not isinstance(strategy, RestartStrategy):
            msg = (
                f"set_restart_strategy() takes fixed_delay(attempts, delay_ms), exponential_delay(...) or "
                f"no_restart() from streamcore, got {type(strategy).__name__}"
            )
            raise ConfigurationError(msg)
        self.restart_strategy = strategy
        return self

    def enable_lineage(
        self, transport: Any = "console", *, namespace: str = "streamcore"
    ) -> StreamEnvironment:
        """Emit OpenLineage run events (START, RUNNING per checkpoint, COMPLETE, FAIL).

        ``transport`` is ``"console"`` (log them), a file path (one JSON event per line),
        an ``http(s)://`` URL of an OpenLineage endpoint, or an ``openlineage`` transport
        object. See :mod:`streamcore.lineage`.
        """
        from streamcore.lineage import LineageConfig

        self.lineage_config = LineageConfig(transport, namespace)
        return self

    def add_run_listener(self, factory: Callable[[], RunListener]) -> StreamEnvironment:
        """Add a :class:`~streamcore.runtime.run.RunListener` (built by ``factory()``) to every run."""
        if not callable(factory):
            msg = f"add_run_listener() takes a callable returning a RunListener, got {type(factory).__name__}"
            raise ConfigurationError(msg)
        self._run_listeners.append(factory)
        return self

    def explain(self) -> str:
        """The plan as text: operators, uids, keys, state, windows, sources and sinks (secrets masked).

        See :func:`streamcore.plan.explain`.
        """
        from streamcore.plan import explain

        return explain(self)

    def configure_logging(
        self, level: str | int = "INFO", *, json: bool = False, stream: Any = None
    ) -> StreamEnvironment:
        """Log the ``streamcore`` loggers (librdkafka's lines too) to ``stream`` (stderr), as text or JSON.

        See :func:`streamcore.logs.configure_logging`.
        """
        from streamcore.logs import configure_logging

        configure_logging(level, json=json, stream=stream)
        return self

    def set_source_rate_coordination(
        self, enabled: bool = True, predictive: bool = True, **options: Any
    ) -> StreamEnvironment:
        """Pause source splits whose watermark runs ahead of their alignment group.

        Applies to sources whose watermark strategy has ``with_watermark_alignment``.
        ``predictive=False`` is Flink's reactive mode, for comparison. Further
        ``options`` (``speed_smoothing``, ``min_sample_fraction``) go to
        :class:`streamcore.sources.coordinator.RateCoordinationConfig`.
        """
        import dataclasses

        from streamcore.sources.coordinator import RateCoordinationConfig

        known = {f.name for f in dataclasses.fields(RateCoordinationConfig)}
        unknown = sorted(set(options) - known)
        if unknown:
            extra = sorted(known - {"enabled", "predictive"})
            msg = f"unknown rate coordination options {unknown}; known: {extra}"
            raise ConfigurationError(msg)
        self.rate_coordination = RateCoordinationConfig(enabled=enabled, predictive=predictive, **options)
        return self

    def set_split_scheduling(self, mode: str) -> StreamEnvironment:
        """Choose how a task picks the next source split to read.

        ``"event-time"`` (the default) reads the split furthest behind in event time next,
        as Kafka Streams picks the partition with the smallest head timestamp: inputs of
        different event-time speed advance together, so joins and windows buffer little.
        ``"round-robin"`` reads every split in turn, each getting the same share of reads
        whatever its event time (splits then run apart as separate processes would, and
        only :meth:`set_source_rate_coordination` keeps them together).
        """
        if mode not in SCHEDULING_MODES:
            msg = f"split scheduling must be one of {list(SCHEDULING_MODES)}, got {mode!r}"
            raise ConfigurationError(msg)
        self.split_scheduling = mode
        return self

    # -- execution ---------------------------------------------------------------------------
    def _executor(self, job_name: str, restore_from: Any, control: JobControl | None) -> JobExecutor:
        if not isinstance(job_name, str) or not job_name:
            msg = f"job name must be a non-empty str, got {job_name!r}"
            raise ConfigurationError(msg)
        if not any(n.kind == "sink" for n in self.graph.nodes):
            msg = "the job has no sink: add one with sink_to(...), print() or execute_and_collect()"
            raise ConfigurationError(msg)
        from streamcore.runtime.group_job import group_spec

        spec = group_spec(self.graph)
        membership = None
        restore = None
        graph = self.graph
        if spec is not None:
            membership, graph = self._group_membership(job_name, spec)
        elif restore_from is not None:
            from streamcore.checkpoint.restore import plan_restore

            restore = plan_restore(
                restore_from, self.checkpoint_config, job_name, self.state_backend, self._exactly_once_sinks()
            )

        owners: dict[str, Any] = {}  # tasks waiting for their previous owner to release them

        def make_runner(task_id: str) -> TaskRunner | None:
            state_dir, config, task_restore, ownership = self.state_dir, self.checkpoint_config, restore, None
            if spec is not None:
                storage = self._task_storage(job_name, task_id, restore_from, owners)
                if storage is None:
                    return None
                state_dir, config, task_restore, ownership = storage
            factory = StateBackendFactory(self.state_backend, state_dir, self.clock, self.rocksdb_options)
            checkpointing = None
            if config is not None:
                from streamcore.checkpoint.coordinator import CheckpointCoordinator

                checkpointing = CheckpointCoordinator(
                    config, job_name, fence=ownership.check if ownership is not None else None
                )
            coordinator = None
            if self.rate_coordination is not None and self.rate_coordination.enabled:
                from streamcore.sources.coordinator import SourceRateCoordinator

                coordinator = SourceRateCoordinator(self.rate_coordination)
            task = Task(
                graph,
                job_name,
                clock=self.clock,
                max_parallelism=self.max_parallelism,
                state_factory=factory,
                rate_coordinator=coordinator,
                partition=None if spec is None else int(task_id),
                keep=(self,),
            )
            return TaskRunner(
                task_id,
                task,
                checkpointing=checkpointing,
                restore=task_restore,
                rate_coordinator=coordinator,
                ownership=ownership,
                scheduling=self.split_scheduling,
            )

        return JobExecutor(
            job_name,
            make_runner,
            clock=self.clock,
            batch_size=self.batch_size,
            membership=membership,
            control=control,
            batch_listeners=self._batch_listeners,
            checkpoint_dir=self.checkpoint_config.directory if self.checkpoint_config is not None else None,
        )

    def _group_membership(self, job_name: str, spec: Any) -> tuple[Any, Any]:
        """The consumer-group membership of a job whose sources use ``assignment="group"``, and the
        graph its tasks run (with repartition topics where a keyed input is not partitioned)."""
        from streamcore.runtime.group_job import (
            ensure_topics,
            job_description,
            source_partitions,
            task_config,
            with_repartitions,
            write_or_check_job_description,
        )
        from streamcore.runtime.kafka_group import KafkaGroupMembership
        from streamcore.runtime.ownership import records_of, task_finished

        if self.checkpoint_config is None:
            msg = (
                "a consumer-group job (KafkaSource(assignment='group')) needs enable_checkpointing(...) "
                "into a storage every process shares: tasks move between processes through it"
            )
            raise ConfigurationError(msg)
        config = self.checkpoint_config
        where = config.remote or str(config.directory)
        write_or_check_job_description(records_of(config), job_description(job_name, self.graph, spec), where)
        partitions = source_partitions(spec)
        graph, topics = with_repartitions(self.graph, job_name, spec, partitions, self.repartition_delivery)
        if topics:
            ensure_topics(spec, topics, partitions)

        def job_finished() -> bool:
            return all(task_finished(records_of(task_config(config, str(p)))) for p in range(partitions))

        membership = KafkaGroupMembership(
            spec.bootstrap_servers,
            spec.group_id,
            spec.topics,
            spec.config,
            job_finished=job_finished,
            initial_delay_s=self.initial_assignment_delay_s,
        )
        return membership, graph

    def _task_storage(
        self, job_name: str, task_id: str, restore_from: Any, owners: dict[str, Any]
    ) -> tuple[Any, Any, Any, Any] | None:
        """State directory, checkpoint configuration, restore plan and owner record of a group job's task.

        The task is owned (its previous owner released it, or died) before its latest
        checkpoint is looked up, so that checkpoint is the previous owner's last one.
        ``None`` while the previous owner still holds it (``owners`` keeps the attempt).
        """
        from streamcore.checkpoint.restore import plan_restore
        from streamcore.runtime.group_job import task_config, task_dir, task_restore_from
        from streamcore.runtime.ownership import TaskOwnership, records_of

        assert self.checkpoint_config is not None
        state_dir = task_dir(self.state_dir, task_id) if self.state_dir is not None else None
        config = task_config(self.checkpoint_config, task_id)
        if task_id not in owners:
            owners[task_id] = TaskOwnership(records_of(config), task_id, self.takeover_s)
        ownership = owners[task_id]
        if not ownership.try_acquire():
            return None
        del owners[task_id]
        restore = plan_restore(
            task_restore_from(restore_from, task_id),
            config,
            job_name,
            self.state_backend,
            self._exactly_once_sinks(),
        )
        return state_dir, config, restore, ownership

    def _exactly_once_sinks(self) -> list[str]:
        """Uids of the graph's exactly-once sinks (a restore must not duplicate their output)."""
        self.graph.resolve_uids()
        return [n.resolved_uid for n in self.graph.nodes if n.kind == "sink" and n.attrs["sink"].exactly_once]

    def add_batch_listener(self, listener: Callable[[Any], None]) -> StreamEnvironment:
        """Call ``listener(task)`` between batches of every run (instrumentation, e.g. sampling state size).

        ``task`` is the running :class:`streamcore.runtime.task.Task`: ``task.operator(uid)``
        and ``task.sources`` give live operators and split states. Keep it cheap: it runs
        after every batch on the job's thread.
        """
        if not callable(listener):
            msg = f"add_batch_listener() takes a callable task -> None, got {type(listener).__name__}"
            raise ConfigurationError(msg)
        self._batch_listeners.append(listener)
        return self

    def _job_run(self, job_name: str, restore_from: Any) -> JobRun:
        """The run of a job: attempts (restarts), metrics, lineage and warnings around the executor."""
        control = JobControl()
        listeners: list[RunListener] = []
        if self.metrics_config is not None:
            from streamcore.observe.service import JobService

            listeners.append(JobService(self.metrics_config, job_name))
        if self.lineage_config is not None:
            from streamcore.lineage import LineageListener

            listeners.append(LineageListener(self.lineage_config, self, job_name))
        from streamcore.runtime.warnings import no_watermark_listener

        warner = no_watermark_listener(self)
        if warner is not None:
            listeners.append(warner)
        listeners.extend(factory() for factory in self._run_listeners)
        cp = self.checkpoint_config
        return JobRun(
            job_name,
            lambda restore: self._executor(job_name, restore, control),
            control=control,
            restore_from=restore_from,
            restart=self.restart_strategy,
            listeners=listeners,
            clock=self.clock,
            describe={
                "state backend": self.state_backend + (f" ({self.state_dir})" if self.state_dir else ""),
                "checkpoints": cp.directory if cp is not None else "off",
            },
        )

    def execute(self, job_name: str = "streamcore-job", restore_from: Any = None) -> JobResult:
        """Run the job in this thread until its bounded sources end.

        Args:
            restore_from: ``"latest"`` (newest complete checkpoint, or a fresh start if
                none), a path to a checkpoint or savepoint, or ``None`` (fresh start).
        """
        return self._job_run(job_name, restore_from).run()

    def execute_async(self, job_name: str = "streamcore-job", restore_from: Any = None) -> JobHandle:
        """Run the job in a background thread; the handle stops it, waits for it, reads metrics."""
        run = self._job_run(job_name, restore_from)
        run.open()  # binds the metrics port before the handle returns
        return JobHandle(run)


StreamExecutionEnvironment = StreamEnvironment
"""PyFlink's name of :class:`StreamEnvironment` (an alias)."""
