"""The sink contract and the simple at-least-once sinks.

A :class:`Sink` receives batches. Sinks that take part in checkpoints implement
:meth:`Sink.snapshot_state` (called while the checkpoint is taken: flush or
pre-commit here) and :meth:`Sink.notify_checkpoint_complete` (commit here);
:class:`streamcore.sinks.two_phase.TwoPhaseCommitSink` builds exactly-once delivery on
them.
"""

from __future__ import annotations

import sys
import threading
from collections.abc import Callable
from typing import Any, TextIO

from streamcore.errors import ConfigurationError, StreamcoreError
from streamcore.operators.base import SnapshotContext, StreamOperator, call_user, user_error

__all__ = ["CallableSink", "CollectSink", "PrintSink", "Sink", "SinkOperator"]


class Sink:
    """Base of every sink. Override :meth:`write_batch` (or :meth:`write`)."""

    #: whether the sink makes every record visible exactly once, tied to checkpoints
    #: (two-phase commit). A restore from an older checkpoint than the newest would make
    #: such a sink write again what it had committed, so the restore refuses to fall back
    #: past a corrupt checkpoint for jobs with one unless told to.
    exactly_once = False

    def open(self, operator_uid: str) -> None:
        """Called once before the first batch."""

    def write(self, value: Any, timestamp: int | None) -> None:
        """Write one record (the default :meth:`write_batch` calls this per record)."""
        raise NotImplementedError(f"{type(self).__name__} must implement write() or write_batch()")

    def write_batch(self, values: list[Any], timestamps: list[int] | None) -> None:
        """Write a batch of records."""
        tss = timestamps if timestamps is not None else [None] * len(values)
        for v, ts in zip(values, tss, strict=True):
            self.write(v, ts)

    def snapshot_state(self, checkpoint_id: int) -> Any:
        """A checkpoint is being taken: flush or pre-commit; return state to store (msgpack-able)."""
        return None

    def restore_state(self, image: Any) -> None:
        """Restore what :meth:`snapshot_state` returned (commit what was pending)."""

    def notify_checkpoint_complete(self, checkpoint_id: int) -> None:
        """The checkpoint is durable: commit what it covers."""

    def finish(self) -> None:
        """End of a bounded input: make everything written visible."""

    def close(self) -> None:
        """Release resources (also after failures)."""

    def metrics(self) -> dict[str, Any]:
        """The sink's own figures (delivery errors, transactions), merged into job metrics."""
        return {}


class CollectSink(Sink):
    """Collects every record in ``results`` (in emission order); for tests and notebooks.

    >>> sink = CollectSink()
    >>> sink.write_batch([1, 2], None)
    >>> sink.results
    [1, 2]
    """

    def __init__(self) -> None:
        self.results: list[Any] = []
        self.timestamps: list[int | None] = []
        self._lock = threading.Lock()

    def write_batch(self, values: list[Any], timestamps: list[int] | None) -> None:
        """Append the batch."""
        with self._lock:
            self.results.extend(values)
            self.timestamps.extend(timestamps if timestamps is not None else [None] * len(values))


class PrintSink(Sink):
    """Prints every record on its own line, as Flink does: ``PrintSink("wc")`` prints ``wc> ('to', 1)``.

    Args:
        identifier: printed before each record as ``identifier> `` (nothing when empty).
        stream: where to print (``sys.stdout`` when None).
        prefix: printed verbatim before each record instead of ``identifier> ``.

    >>> PrintSink("wc").write_batch([("to", 1)], None)
    wc> ('to', 1)
    >>> PrintSink(prefix="- ").write_batch([1], None)
    - 1
    """

    def __init__(
        self, identifier: str = "", stream: TextIO | None = None, *, prefix: str | None = None
    ) -> None:
        if not isinstance(identifier, str) or (prefix is not None and not isinstance(prefix, str)):
            msg = f"PrintSink takes a str identifier (and prefix), got {identifier!r}, {prefix!r}"
            raise ConfigurationError(msg)
        self.identifier = identifier
        self.prefix = prefix if prefix is not None else (f"{identifier}> " if identifier else "")
        self.stream = stream

    def write_batch(self, values: list[Any], timestamps: list[int] | None) -> None:
        """Print the batch."""
        stream = self.stream or sys.stdout
        p = self.prefix
        stream.write("".join(f"{p}{v}\n" for v in values))


class CallableSink(Sink):
    """Calls ``fn(value)`` for every record (what ``sink_to(callable)`` builds)."""

    def __init__(self, fn: Callable[[Any], Any]) -> None:
        if not callable(fn):
            msg = f"sink_to() takes a Sink or a callable, got {type(fn).__name__}"
            raise ConfigurationError(msg)
        self.fn = fn

    def write_batch(self, values: list[Any], timestamps: list[int] | None) -> None:
        """Call ``fn`` per record."""
        fn = self.fn
        for v in values:
            fn(v)


class SinkOperator(StreamOperator):
    """Hands batches to a :class:`Sink` and forwards its checkpoint hooks."""

    def __init__(self, name: str, uid: str, sink: Sink) -> None:
        super().__init__(name, uid)
        self.sink = sink
        self.stateful = type(sink).snapshot_state is not Sink.snapshot_state

    def open(self) -> None:
        """Open the sink under the operator's uid, qualified by the task when the job has several.

        The name is what the sink derives its resources from (part file names,
        transactional ids), so two tasks of one sink never share one.
        """
        task_id = self.runtime.task_id if self.runtime is not None else None
        name = self.uid if task_id is None else f"{self.uid}.task-{task_id}"
        call_user(self, self.sink, "open of sink", self.sink.open, name)

    def process_batch(self, values: list[Any], timestamps: list[int] | None, side: int) -> None:
        """Write the batch."""
        self.records_in += len(values)
        try:
            self.sink.write_batch(values, timestamps)
        except StreamcoreError:
            raise
        except Exception as exc:
            raise user_error(self, self.sink, "sink", exc) from exc

    def process_watermark(self, watermark: int) -> None:
        """Sinks end the dataflow: nothing to forward."""

    def snapshot_state(self, ctx: SnapshotContext) -> Any:
        """The sink's state for the checkpoint being taken."""
        return self.sink.snapshot_state(ctx.checkpoint_id)

    def restore_state(self, image: Any) -> None:
        """Restore the sink."""
        self.sink.restore_state(image)

    def notify_checkpoint_complete(self, checkpoint_id: int) -> None:
        """Let the sink commit."""
        self.sink.notify_checkpoint_complete(checkpoint_id)

    def finish(self) -> None:
        """End of input."""
        call_user(self, self.sink, "finish of sink", self.sink.finish)

    def close(self) -> None:
        """Close the sink."""
        call_user(self, self.sink, "close of sink", self.sink.close)

    def metrics(self) -> dict[str, Any]:
        """The operator's counters and the sink's own figures."""
        figures = super().metrics()
        sink_figures = self.sink.metrics()
        if sink_figures:
            figures["sink"] = sink_figures
        return figures
