"""``execute_and_collect(limit=n)``: the job's output as an iterator that stops the job when closed.

The job runs in a background thread (``execute_async``); its temporary sink hands records
over through a bounded queue (a full queue holds the job back, as a slow consumer does).
The iterator ends after ``limit`` records, at the end of a bounded job, or when closed; in
every case the job is stopped and waited for, and a job failure is raised from ``next()``.
"""

from __future__ import annotations

import queue
import threading
from collections.abc import Callable, Iterator
from typing import Any

from streamcore.sinks.base import Sink

__all__ = ["CollectIterator", "QueueSink"]

#: records the queue between the job and the iterator holds.
QUEUE_SIZE = 10_000


class QueueSink(Sink):
    """Puts every record into a bounded queue; drops them once the reader has closed."""

    def __init__(self) -> None:
        self.queue: queue.Queue[Any] = queue.Queue(QUEUE_SIZE)
        self.closed = threading.Event()

    def write_batch(self, values: list[Any], timestamps: list[int] | None) -> None:
        """Hand the batch over, waiting while the queue is full (unless the reader closed)."""
        put = self.queue.put
        for v in values:
            while not self.closed.is_set():
                try:
                    put(v, timeout=0.1)
                    break
                except queue.Full:
                    continue


class CollectIterator(Iterator[Any]):
    """The records of a running job; :meth:`close` (or the end of a ``with`` block) stops it.

    Args:
        handle: the running job's :class:`~streamcore.runtime.job.JobHandle`.
        sink: the job's :class:`QueueSink`.
        limit: records to return at most (``None``: until the job ends).
        cleanup: called once after the job ended (removes the temporary sink from the graph).
    """

    def __init__(self, handle: Any, sink: QueueSink, limit: int | None, cleanup: Callable[[], None]) -> None:
        self._handle = handle
        self._sink = sink
        self._limit = limit
        self._cleanup = cleanup
        self._count = 0
        self._closed = False

    def __iter__(self) -> CollectIterator:
        return self

    def __next__(self) -> Any:
        if self._closed:
            raise StopIteration
        if self._limit is not None and self._count >= self._limit:
            self.close()
            raise StopIteration
        get = self._sink.queue.get
        while True:
            try:
                value = get(timeout=0.05)
            except queue.Empty:
                if self._handle.done() and self._sink.queue.empty():
                    self.close()  # raises the job's error, if it failed
                    raise StopIteration from None
                continue
            self._count += 1
            return value

    def close(self) -> None:
        """Stop the job (if still running) and wait for it; raises its error if it failed."""
        if self._closed:
            return
        self._closed = True
        self._sink.closed.set()
        try:
            if self._handle.done():
                self._handle.wait()
            else:
                self._handle.stop()
        finally:
            self._cleanup()

    def __enter__(self) -> CollectIterator:
        return self

    def __exit__(self, *exc: Any) -> None:
        self.close()
