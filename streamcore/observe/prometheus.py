"""The job's metrics in Prometheus form, through ``prometheus_client``.

:class:`JobMetrics` owns one ``CollectorRegistry`` per job run. Counters and gauges are
read from the latest status snapshot (:class:`~streamcore.observe.status.JobObserver`) when
Prometheus scrapes (or the Pushgateway pusher collects); histograms are observed as
events happen (a checkpoint completes, a sink receives a batch). Every series carries the
labels ``job_name`` and ``task``; operator series add ``operator`` (the uid), and only
bounded label sets are used (operators, states, splits, checkpoint status). Names follow
Flink's metric set in Prometheus style:

==========================================  =========  ==========================================
name                                        type       labels (besides job_name, task)
==========================================  =========  ==========================================
``streamcore_records_in_total``             counter    operator
``streamcore_records_out_total``            counter    operator (sources: records read)
``streamcore_late_records_dropped_total``   counter    operator (late and not sent to a side output)
``streamcore_current_input_watermark_ms``   gauge      operator
``streamcore_watermark_lag_ms``             gauge      operator (wall clock - watermark)
``streamcore_split_watermark_ms``           gauge      operator, split
``streamcore_split_watermark_lag_ms``       gauge      operator, split
``streamcore_source_lag_records``           gauge      operator, split (Kafka: high watermark - position)
``streamcore_buffered_records``             gauge      operator (join buffers, pending windows)
``streamcore_state_entries``                gauge      operator, state
``streamcore_state_bytes``                  gauge      operator, state (RocksDB: SST + memtable bytes)
``streamcore_busy_ratio``                   gauge      operator
``streamcore_backpressured_ratio``          gauge      operator
``streamcore_checkpoints_total``            counter    status = completed | failed
``streamcore_checkpoint_in_progress``       gauge
``streamcore_rate_coordinator_pauses_total``  counter
``streamcore_rate_coordinator_paused_splits``  gauge
``streamcore_job_restarts_total``           counter    (restarts of the process running the task)
``streamcore_job_uptime_seconds``           gauge
``streamcore_last_checkpoint_restore_seconds``  gauge  (one value per restore, so a gauge)
``streamcore_checkpoint_duration_seconds``  histogram  trigger to metadata written
``streamcore_checkpoint_size_bytes``        histogram  full size of each checkpoint
``streamcore_checkpoint_incremental_bytes``  histogram  bytes each checkpoint wrote
``streamcore_checkpoint_pause_seconds``     histogram  the synchronous part (the job paused)
``streamcore_latency_seconds``              histogram  operator (sinks): event-time latency
==========================================  =========  ==========================================
"""

from __future__ import annotations

from typing import Any

__all__ = ["JobMetrics"]

_PREFIX = "streamcore_"
_DURATION_BUCKETS = (0.001, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 120, 300)
_SIZE_BUCKETS = tuple(float(4**n * 1024) for n in range(12))  # 1 KiB .. 4 GiB
_LATENCY_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 300, 900, 3600, 86400)


class JobMetrics:
    """A Prometheus registry for one job run.

    Args:
        job_name: the ``job_name`` label of every series.
        status: a callable returning the latest status snapshot (a dict).
    """

    def __init__(self, job_name: str, status: Any) -> None:
        from prometheus_client import CollectorRegistry, Histogram

        self.job_name = job_name
        self._status = status
        self.registry = CollectorRegistry(auto_describe=True)
        self.restore_seconds: float | None = None
        labels = ["job_name", "task"]
        self.checkpoint_duration = Histogram(
            _PREFIX + "checkpoint_duration_seconds",
            "Time from trigger to durable metadata of each completed checkpoint.",
            labels,
            buckets=_DURATION_BUCKETS,
            registry=self.registry,
        )
        self.checkpoint_pause = Histogram(
            _PREFIX + "checkpoint_pause_seconds",
            "Synchronous part of each checkpoint: the job is paused for it.",
            labels,
            buckets=_DURATION_BUCKETS,
            registry=self.registry,
        )
        self.checkpoint_size = Histogram(
            _PREFIX + "checkpoint_size_bytes",
            "Full size of each completed checkpoint (shared files included).",
            labels,
            buckets=_SIZE_BUCKETS,
            registry=self.registry,
        )
        self.checkpoint_incremental = Histogram(
            _PREFIX + "checkpoint_incremental_bytes",
            "Bytes each completed checkpoint wrote (the rest is shared with earlier ones).",
            labels,
            buckets=_SIZE_BUCKETS,
            registry=self.registry,
        )
        self.latency = Histogram(
            _PREFIX + "latency_seconds",
            "Event-time latency at sinks: wall clock on arrival minus the event timestamp (sampled).",
            [*labels, "operator"],
            buckets=_LATENCY_BUCKETS,
            registry=self.registry,
        )
        self.registry.register(_StatusCollector(self))

    # -- events ------------------------------------------------------------------------------
    def observe_checkpoint(self, stats: dict[str, Any], task: str = "0") -> None:
        """A checkpoint completed with ``stats`` (``duration_ms``, ``pause_ms``, ``size_bytes``...)."""
        labels = (self.job_name, task)
        if stats.get("duration_ms") is not None:
            self.checkpoint_duration.labels(*labels).observe(float(stats["duration_ms"]) / 1000)
        if stats.get("pause_ms") is not None:
            self.checkpoint_pause.labels(*labels).observe(float(stats["pause_ms"]) / 1000)
        if stats.get("size_bytes") is not None:
            self.checkpoint_size.labels(*labels).observe(float(stats["size_bytes"]))
        if stats.get("incremental_bytes") is not None:
            self.checkpoint_incremental.labels(*labels).observe(float(stats["incremental_bytes"]))

    def observe_latency(self, task: str, operator: str, seconds: float) -> None:
        """One sampled record reached sink ``operator`` ``seconds`` after its event time."""
        self.latency.labels(self.job_name, task, operator).observe(seconds)

    # -- exposition ---------------------------------------------------------------------------
    def text(self) -> bytes:
        """The Prometheus text exposition of every series."""
        from prometheus_client import generate_latest

        return generate_latest(self.registry)

    def snapshot(self) -> dict[str, Any]:
        """The latest status snapshot."""
        return self._status()  # type: ignore[no-any-return]


class _StatusCollector:
    """Counters and gauges read from the latest status snapshot at collection time."""

    def __init__(self, metrics: JobMetrics) -> None:
        self._metrics = metrics

    def describe(self) -> list[Any]:
        return []

    def collect(self) -> Any:
        from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily

        snap = self._metrics.snapshot()
        job = self._metrics.job_name
        op_labels = ["job_name", "task", "operator"]
        split_labels = [*op_labels, "split"]
        state_labels = [*op_labels, "state"]

        def counter(name: str, doc: str, labels: list[str]) -> Any:
            return CounterMetricFamily(_PREFIX + name, doc, labels=labels)

        def gauge(name: str, doc: str, labels: list[str]) -> Any:
            return GaugeMetricFamily(_PREFIX + name, doc, labels=labels)

        rin = counter("records_in", "Records an operator received.", op_labels)
        rout = counter("records_out", "Records an operator emitted (sources: records read).", op_labels)
        late = counter("late_records_dropped", "Late records dropped (not sent to a side output).", op_labels)
        wm = gauge("current_input_watermark_ms", "The operator's watermark, ms since the epoch.", op_labels)
        lag = gauge("watermark_lag_ms", "Wall clock minus the operator's watermark.", op_labels)
        swm = gauge("split_watermark_ms", "Watermark of a source split.", split_labels)
        slag = gauge("split_watermark_lag_ms", "Wall clock minus a source split's watermark.", split_labels)
        srclag = gauge("source_lag_records", "Records not yet read from a split (Kafka).", split_labels)
        buffered = gauge(
            "buffered_records", "Records an operator holds (join buffers, pending windows).", op_labels
        )
        entries = gauge("state_entries", "Entries (keys) of a keyed state.", state_labels)
        sbytes = gauge(
            "state_bytes", "Bytes of a keyed state (RocksDB: SST files and memtables).", state_labels
        )
        busy = gauge("busy_ratio", "Fraction of wall time the operator worked on its own input.", op_labels)
        back = gauge(
            "backpressured_ratio", "Fraction of wall time the operator waited for downstream.", op_labels
        )
        for v in snap.get("vertices", ()):
            uid = v["uid"]
            for tid, fig in v.get("tasks", {}).items():
                labels = [job, tid, uid]
                rin.add_metric(labels, fig.get("records_in") or 0)
                rout.add_metric(labels, fig.get("records_out") or 0)
                late.add_metric(labels, fig.get("late_records_dropped") or 0)
                if fig.get("watermark") is not None:
                    wm.add_metric(labels, fig["watermark"])
                    lag.add_metric(labels, fig["watermark_lag_ms"])
                for sid, s in (fig.get("splits") or {}).items():
                    if s.get("watermark") is not None:
                        swm.add_metric([*labels, sid], s["watermark"])
                        slag.add_metric([*labels, sid], s["watermark_lag_ms"])
                    if s.get("lag_records") is not None:
                        srclag.add_metric([*labels, sid], s["lag_records"])
                if fig.get("buffered_records") is not None:
                    buffered.add_metric(labels, fig["buffered_records"])
                for state, st in (fig.get("state") or {}).items():
                    if "entries" in st:
                        entries.add_metric([*labels, state], st["entries"])
                    if "bytes" in st:
                        sbytes.add_metric([*labels, state], st["bytes"])
                busy.add_metric(labels, fig.get("busy_ratio") or 0.0)
                back.add_metric(labels, fig.get("backpressured_ratio") or 0.0)
        yield from (rin, rout, late, wm, lag, swm, slag, srclag, buffered, entries, sbytes, busy, back)

        tasks = [t["id"] for t in snap.get("tasks", ())] or ["0"]
        job_info = snap.get("job", {})
        restarts = counter(
            "job_restarts",
            "Restarts of the job's process after failures (restart strategy).",
            ["job_name", "task"],
        )
        uptime = gauge("job_uptime_seconds", "Seconds since the job started.", ["job_name", "task"])
        for tid in tasks:  # one series per task the process runs, so every series has a task label
            restarts.add_metric([job, tid], job_info.get("restarts") or 0)
            uptime.add_metric([job, tid], job_info.get("duration_s") or 0.0)
        yield from (restarts, uptime)

        cps = snap.get("checkpoints")
        if cps is not None:
            total = counter("checkpoints", "Checkpoints by outcome.", ["job_name", "task", "status"])
            inprog = gauge(
                "checkpoint_in_progress", "1 while a checkpoint is being written.", ["job_name", "task"]
            )
            for tid in tasks:
                total.add_metric([job, tid, "completed"], cps.get("completed") or 0)
                total.add_metric([job, tid, "failed"], cps.get("failed") or 0)
                inprog.add_metric([job, tid], 1 if cps.get("in_progress") else 0)
            yield from (total, inprog)
        restore = self._metrics.restore_seconds
        if restore is not None:
            g = gauge(
                "last_checkpoint_restore_seconds", "How long the last restore took.", ["job_name", "task"]
            )
            for tid in tasks:
                g.add_metric([job, tid], restore)
            yield g
        rc = snap.get("rate_coordinator")
        if rc is not None:
            pauses = counter(
                "rate_coordinator_pauses", "Splits paused by rate coordination.", ["job_name", "task"]
            )
            paused = gauge(
                "rate_coordinator_paused_splits", "Splits paused right now.", ["job_name", "task", "group"]
            )
            for tid in tasks:
                pauses.add_metric([job, tid], rc.get("pauses") or 0)
                for group, g in (rc.get("groups") or {}).items():
                    paused.add_metric([job, tid, str(group)], g.get("paused_splits") or 0)
            yield from (pauses, paused)
