"""Async I/O in a synchronous dataflow: Flink's ``AsyncWaitOperator``.

Why this shape:

* **One event loop per operator, in a helper thread** (:class:`EventLoopThread`).
  ``AsyncFunction.async_invoke`` runs there, so many requests are in flight while the
  job's thread goes on reading and processing batches. The job thread blocks only when
  ``capacity`` elements are in the operator (in flight, or done but not yet allowed out),
  as Flink's does.
* **The loop never touches the operator.** The operator contract is single-threaded
  (no method is ever called concurrently), so the loop's only way back is a thread-safe
  queue of completions; the job thread drains it in ``process_batch``,
  ``process_watermark``, ``on_processing_time`` (between batches, also while sources are
  idle), before ``snapshot_state`` and in ``finish``, and only then updates the queue of
  elements and emits. User ``timeout`` handlers and output checks run on the job thread.
* **Ordering exactly as Flink's stream element queues.** ``ordered`` (:class:`OrderedQueue`):
  results leave in input order. ``unordered`` (:class:`UnorderedQueue`): results leave as
  soon as they complete, but a watermark is a barrier: elements are grouped into segments
  between watermarks, only the first segment may emit, and its watermark is emitted when
  the segment is empty. So results between two watermarks may reorder, no result crosses
  a watermark, and a watermark waits for every earlier element.
* **Checkpoints hold the in-flight elements.** ``snapshot_state`` first emits whatever may
  leave, then stores every element still in the queue (value and timestamp, in queue
  order, done or not) and the watermarks queued between them. A restore puts the same
  queue back and issues every element again, so nothing is lost, and results emitted
  before the checkpoint are not in it, so nothing is emitted twice. Requests still
  running when the checkpoint is taken keep running; their results belong after it.
* **Timeouts and retries per element.** ``timeout_ms`` bounds each attempt;
  :class:`~streamcore.functions.AsyncRetryStrategy` decides whether a failed, timed-out
  or rejected attempt is tried again and how long to wait. When every attempt timed out,
  ``AsyncFunction.timeout(value)`` gives fallback outputs, or the default raises
  :class:`~streamcore.errors.AsyncTimeoutError` naming the operator. An exception on the
  last attempt fails the job with a :class:`~streamcore.errors.UserFunctionError`;
  restoring from the latest checkpoint issues the in-flight elements again.

Outputs carry their input element's timestamp. :class:`AsyncWaitOperator` submits one
request per element; subclasses (the lookup join) override :meth:`AsyncWaitOperator._submit`
to answer some elements at once (cache hits) and batch the others.
"""

from __future__ import annotations

import asyncio
import inspect
import queue
from collections import deque
from collections.abc import Callable, Coroutine
from typing import Any

from streamcore.errors import (
    AsyncTimeoutError,
    ConfigurationError,
    JobError,
    RestoreError,
    StreamcoreError,
    UserFunctionError,
)
from streamcore.functions import (
    ONE_VALUE_TYPES,
    AsyncFunction,
    AsyncFunctionContext,
    AsyncRetryStrategy,
    function_name,
    one_value_error,
)
from streamcore.operators.base import SnapshotContext, StreamOperator, user_error
from streamcore.operators.event_loop import EventLoopThread

__all__ = ["AsyncWaitOperator", "OrderedQueue", "UnorderedQueue", "async_wait_factory", "check_async_options"]

#: outcome kinds of a request (:meth:`AsyncWaitOperator._attempts`).
DONE, FAILED, TIMED_OUT = 0, 1, 2
#: how long ``open``/``close`` of the function may take on the loop.
LIFECYCLE_TIMEOUT_S = 120.0
#: how often a job thread waiting for completions checks that the loop is still alive.
_WAIT_POLL_S = 0.5


def check_async_options(timeout_ms: Any, capacity: Any, retry: Any, what: str) -> None:
    """Validate the options every async operator takes.

    Raises:
        ConfigurationError: a non-positive ``timeout_ms``/``capacity`` or a bad ``retry``.
    """
    if type(timeout_ms) is not int or timeout_ms <= 0:
        msg = f"{what}: timeout_ms must be an int of milliseconds > 0, got {timeout_ms!r}"
        raise ConfigurationError(msg)
    if type(capacity) is not int or capacity < 1:
        msg = f"{what}: capacity (elements in flight at once) must be an int >= 1, got {capacity!r}"
        raise ConfigurationError(msg)
    if retry is not None and not isinstance(retry, AsyncRetryStrategy):
        msg = f"{what}: retry must be an AsyncRetryStrategy or None, got {type(retry).__name__}"
        raise ConfigurationError(msg)


class _Element:
    """One input element inside the operator: ``outputs`` is ``None`` until its request completed."""

    __slots__ = ("outputs", "segment", "timestamp", "value")

    def __init__(self, value: Any, timestamp: int | None) -> None:
        self.value = value
        self.timestamp = timestamp
        self.outputs: list[Any] | None = None
        self.segment: _Segment | None = None


class OrderedQueue:
    """Elements and watermarks leave in arrival order; an element leaves once it is done."""

    def __init__(self) -> None:
        self._items: deque[Any] = deque()
        #: elements in the queue (done or not): what ``capacity`` bounds.
        self.elements = 0

    def add(self, element: _Element) -> None:
        """Append an element."""
        self._items.append(element)
        self.elements += 1

    def add_watermark(self, watermark: int) -> None:
        """Append a watermark (it leaves after every element before it)."""
        self._items.append(watermark)

    def complete(self, element: _Element) -> None:
        """``element`` is done (its ``outputs`` are set)."""

    def pop_ready(self) -> list[Any]:
        """Remove and return what may leave now: elements and watermarks (ints), in order."""
        items = self._items
        out: list[Any] = []
        while items:
            head = items[0]
            if type(head) is int:
                out.append(items.popleft())
            elif head.outputs is not None:
                out.append(items.popleft())
                self.elements -= 1
            else:
                break
        return out

    def image(self) -> list[list[Any]]:
        """Everything still queued, in order: ``[0, value, ts]`` per element, ``[1, wm]`` per watermark."""
        return [[1, x] if type(x) is int else [0, x.value, x.timestamp] for x in self._items]


class _Segment:
    """Elements between two watermarks (the closing one, when it arrived, in ``watermark``)."""

    __slots__ = ("pending", "ready", "watermark")

    def __init__(self) -> None:
        self.pending: dict[_Element, None] = {}
        self.ready: list[_Element] = []
        self.watermark: int | None = None


class UnorderedQueue:
    """Elements leave as they complete, but never across a watermark (Flink's unordered queue).

    Segments are separated by watermarks. Done elements of the first segment leave at
    once; done elements of later segments wait until every segment before theirs is
    empty; a segment's closing watermark leaves when the segment is empty.
    """

    def __init__(self) -> None:
        self._segments: deque[_Segment] = deque()
        self.elements = 0

    def add(self, element: _Element) -> None:
        """Add an element to the open (last) segment."""
        segs = self._segments
        if not segs or segs[-1].watermark is not None:
            segs.append(_Segment())
        seg = segs[-1]
        seg.pending[element] = None
        element.segment = seg
        self.elements += 1

    def add_watermark(self, watermark: int) -> None:
        """Close the open segment with ``watermark``."""
        segs = self._segments
        if segs and segs[-1].watermark is None:
            segs[-1].watermark = watermark
        else:
            seg = _Segment()
            seg.watermark = watermark
            segs.append(seg)

    def complete(self, element: _Element) -> None:
        """``element`` is done: it may leave once its segment is first."""
        seg = element.segment
        assert seg is not None
        del seg.pending[element]
        seg.ready.append(element)

    def pop_ready(self) -> list[Any]:
        """Remove and return what may leave now: done elements of the first segment, closed watermarks."""
        segs = self._segments
        out: list[Any] = []
        while segs:
            head = segs[0]
            if head.ready:
                out.extend(head.ready)
                self.elements -= len(head.ready)
                head.ready = []
            if head.pending or head.watermark is None:
                break
            segs.popleft()
            out.append(head.watermark)
        return out

    def image(self) -> list[list[Any]]:
        """Everything still queued, segment by segment: elements, then the closing watermark."""
        rows: list[list[Any]] = []
        for seg in self._segments:
            rows.extend([0, e.value, e.timestamp] for e in seg.ready)
            rows.extend([0, e.value, e.timestamp] for e in seg.pending)
            if seg.watermark is not None:
                rows.append([1, seg.watermark])
        return rows


class AsyncWaitOperator(StreamOperator):
    """Runs an :class:`~streamcore.functions.AsyncFunction` per element, ``capacity`` at a time.

    Args:
        fn: the async function.
        ordered: emit results in input order (``ordered_wait``), or as they complete but
            never across a watermark (``unordered_wait``).
        timeout_ms: bound of each attempt of a request.
        capacity: elements in the operator at once (in flight or waiting to leave).
        retry: when to try a request again (default: never).
    """

    stateful = True
    needs_processing_time = True
    #: what the function is called in error messages.
    invoke_what = "async_invoke"

    def __init__(
        self,
        name: str,
        uid: str,
        fn: Any,
        *,
        ordered: bool = True,
        timeout_ms: int = 30_000,
        capacity: int = 100,
        retry: AsyncRetryStrategy | None = None,
    ) -> None:
        super().__init__(name, uid)
        check_async_options(timeout_ms, capacity, retry, f"operator {uid!r}")
        self.fn = fn
        self.ordered = ordered
        self.timeout_ms = timeout_ms
        self.capacity = capacity
        self.retry = retry or AsyncRetryStrategy.no_retry()
        self._queue: OrderedQueue | UnorderedQueue = OrderedQueue() if ordered else UnorderedQueue()
        self._completions: queue.SimpleQueue[tuple[Any, ...]] = queue.SimpleQueue()
        self._loop: EventLoopThread | None = None
        self._restored: list[list[Any]] | None = None
        self._tasks: set[asyncio.Task[Any]] = set()  # touched on the loop only
        self._idle_pending = False
        self._user_timeout = callable(getattr(fn, "timeout", None)) and (
            getattr(type(fn), "timeout", None) is not AsyncFunction.timeout
        )
        self.requests = 0
        self.retries = 0
        self.timeouts = 0
        self.waits = 0
        self.max_in_flight = 0

    # -- lifecycle -----------------------------------------------------------------------
    def open(self) -> None:
        """Start the event loop, open the function on it, issue restored elements again."""
        self._loop = EventLoopThread(f"streamcore-async-{self.uid}")
        self._loop.start()
        self._run_lifecycle(self._loop, self._open_coro, "open")
        if self._restored:
            self._reissue(self._restored)
        self._restored = None

    def _open_coro(self) -> Coroutine[Any, Any, Any]:
        assert self.runtime is not None
        ctx = AsyncFunctionContext(self.uid, self.runtime.job_name, self.runtime.task_id)
        return _maybe_await(self.fn.open, ctx)

    def _close_coro(self) -> Coroutine[Any, Any, Any]:
        return _maybe_await(self.fn.close)

    def _run_lifecycle(
        self, loop: EventLoopThread, coro: Callable[[], Coroutine[Any, Any, Any]], what: str
    ) -> None:
        try:
            loop.call(coro(), LIFECYCLE_TIMEOUT_S)
        except StreamcoreError as exc:
            raise type(exc)(f"operator {self.uid!r}: {what} failed: {exc}") from exc
        except Exception as exc:
            raise user_error(self, self.fn, f"{what} of", exc) from exc

    def close(self) -> None:
        """Cancel requests still running, close the function on the loop, stop the loop."""
        loop, self._loop = self._loop, None
        if loop is None:
            return
        try:
            if loop.alive:
                loop.cancel_tasks(self._tasks, LIFECYCLE_TIMEOUT_S)
                self._run_lifecycle(loop, self._close_coro, "close")
        finally:
            loop.stop()

    def finish(self) -> None:
        """End of input: wait for every element in flight and emit it (and the queued watermarks)."""
        self._drain()
        while self._queue.elements:
            self._wait_for_completions()

    # -- input -----------------------------------------------------------------------------
    def process_batch(self, values: list[Any], timestamps: list[int] | None, side: int) -> None:
        """Queue and submit the batch, ``capacity`` permitting; emit what may leave."""
        n = len(values)
        self.records_in += n
        tss: list[Any] = timestamps if timestamps is not None else [None] * n
        q = self._queue
        i = 0
        while i < n:
            room = self.capacity - q.elements
            if room <= 0:
                self._drain()  # elements answered at once (cache hits) may leave without waiting
                if self.capacity - q.elements <= 0:
                    self.waits += 1
                    self._wait_for_completions()
                continue
            j = min(n, i + room)
            entries = [_Element(v, t) for v, t in zip(values[i:j], tss[i:j], strict=True)]
            for e in entries:
                q.add(e)
            if q.elements > self.max_in_flight:
                self.max_in_flight = q.elements
            self._submit(entries)
            i = j
        self._drain()

    def process_watermark(self, watermark: int) -> None:
        """Queue the watermark behind every earlier element; emit what may leave."""
        self._queue.add_watermark(watermark)
        self._drain()

    def process_idle(self, idle: bool) -> None:
        """Tell downstream the input is idle only once every element in flight has left.

        Otherwise a downstream operator would drop this input from its watermark and could
        advance past results still to come (Flink holds the status back the same way).
        """
        if idle and self._queue.elements:
            self._idle_pending = True
            return
        self._idle_pending = False
        self.output.emit_idle(idle)

    def on_processing_time(self, now: int) -> None:
        """Between batches (also while sources are idle): emit what completed meanwhile."""
        if not self._completions.empty():
            self._drain()

    # -- checkpoints ----------------------------------------------------------------------
    def snapshot_state(self, ctx: SnapshotContext) -> Any:
        """Emit what may leave, then store every element still queued and the watermarks between them."""
        self._drain()
        return {"ordered": self.ordered, "queue": self._queue.image()}

    def restore_state(self, image: Any) -> None:
        """Keep the queued elements of the image; :meth:`open` issues them again."""
        if image is None:
            return
        rows = image.get("queue") if isinstance(image, dict) else None
        if not isinstance(rows, list):
            msg = (
                f"operator {self.uid!r}: the restored state is not an async operator's queue; restore "
                "the checkpoint into the job that wrote it, or give this operator another uid"
            )
            raise RestoreError(msg)
        self._restored = rows

    def _reissue(self, rows: list[list[Any]]) -> None:
        q = self._queue
        entries = []
        for row in rows:
            if row[0] == 1:
                q.add_watermark(row[1])
            else:
                e = _Element(row[1], row[2])
                q.add(e)
                entries.append(e)
        if entries:
            self._submit(entries)

    # -- requests (loop side) -------------------------------------------------------------
    def _submit(self, entries: list[_Element]) -> None:
        """Start a request per element on the loop (job thread; never blocks)."""
        assert self._loop is not None
        self.requests += len(entries)
        self._loop.post(self._start_invocations, entries)

    def _start_invocations(self, entries: list[_Element]) -> None:
        loop = asyncio.get_running_loop()
        tasks = self._tasks
        for e in entries:
            t = loop.create_task(self._invoke(e))
            tasks.add(t)
            t.add_done_callback(tasks.discard)

    async def _invoke(self, element: _Element) -> None:
        fn = self.fn
        value = element.value
        outcome = await self._attempts(lambda: fn.async_invoke(value))
        self._completions.put((self._element_done, element, outcome))

    async def _attempts(self, call: Callable[[], Any]) -> tuple[int, Any, int]:
        """``call()`` under the timeout and retry strategy: ``(DONE|FAILED|TIMED_OUT, payload, attempts)``."""
        retry = self.retry
        timeout_s = self.timeout_ms / 1000
        attempt = 0
        while True:
            attempt += 1
            last = attempt >= retry.max_attempts
            try:
                try:
                    result = await asyncio.wait_for(call(), timeout_s)
                except TimeoutError:
                    if last or not retry.retry_on_timeout:
                        return (TIMED_OUT, None, attempt)
                except asyncio.CancelledError:
                    raise
                except Exception as exc:
                    if last or not retry.retries_exception(exc):
                        return (FAILED, exc, attempt)
                else:
                    if last or not retry.retries_result(result):
                        return (DONE, result, attempt)
            except asyncio.CancelledError:
                raise
            except Exception as exc:  # a retry predicate raised
                return (FAILED, exc, attempt)
            self.retries += 1
            await asyncio.sleep(retry.delay_ms(attempt) / 1000)

    # -- completions (job thread) ----------------------------------------------------------
    def _element_done(self, element: _Element, outcome: tuple[int, Any, int]) -> None:
        kind, payload, attempts = outcome
        fn = self.fn
        if kind == DONE:
            res = payload
        elif kind == TIMED_OUT:
            self.timeouts += 1
            res = self._on_timeout(element.value, attempts)
        else:
            tries = f" (attempt {attempts} of {self.retry.max_attempts})" if attempts > 1 else ""
            msg = (
                f"{self.invoke_what} {function_name(fn)} of operator {self.uid!r} raised "
                f"{type(payload).__name__}: {payload}{tries}; fix the function, or retry such failures with "
                "an AsyncRetryStrategy (restoring the latest checkpoint issues in-flight elements again)"
            )
            raise UserFunctionError(msg) from payload
        element.outputs = self._outputs_of(res, element.value)
        self._queue.complete(element)

    def _on_timeout(self, value: Any, attempts: int) -> Any:
        fn = self.fn
        if not self._user_timeout:
            msg = (
                f"{self.invoke_what} {function_name(fn)} of operator {self.uid!r} timed out on all "
                f"{attempts} attempt(s) of {self.timeout_ms} ms for element {value!r:.100}; raise "
                "timeout_ms, retry with an AsyncRetryStrategy, or override timeout(value) to emit a fallback"
            )
            raise AsyncTimeoutError(msg)
        try:
            return fn.timeout(value)
        except StreamcoreError:
            raise
        except Exception as exc:
            raise user_error(self, fn, "timeout of", exc) from exc

    def _outputs_of(self, res: Any, value: Any) -> list[Any]:
        if res is None:
            return []
        if type(res) is list:
            return res
        if isinstance(res, ONE_VALUE_TYPES):
            raise one_value_error(self.fn, f"{self.invoke_what} of", self.uid, res)
        try:
            return list(res)
        except Exception as exc:
            raise user_error(self, self.fn, f"{self.invoke_what} of", exc) from exc

    def _apply_completions(self) -> None:
        get = self._completions.get_nowait
        while True:
            try:
                item = get()
            except queue.Empty:
                return
            item[0](*item[1:])

    def _wait_for_completions(self) -> None:
        """Block until at least one completion arrived; apply it and every other one; emit."""
        loop = self._loop
        while True:
            try:
                item = self._completions.get(timeout=_WAIT_POLL_S)
                break
            except queue.Empty:
                if loop is None or not loop.alive:
                    msg = f"operator {self.uid!r}: its event loop stopped with elements in flight"
                    raise JobError(msg) from None
        item[0](*item[1:])
        self._drain()

    def _drain(self) -> None:
        """Apply every completion that arrived, then emit what may leave, in order."""
        self._apply_completions()
        ready = self._queue.pop_ready()
        if not ready:
            return
        out: list[Any] = []
        out_ts: list[Any] = []
        emit = self._emit
        for item in ready:
            if type(item) is int:
                emit(out, out_ts)
                out, out_ts = [], []
                self.output.emit_watermark(item)
                continue
            outs = item.outputs
            if outs:
                out.extend(outs)
                if len(outs) == 1:
                    out_ts.append(item.timestamp)
                else:
                    out_ts.extend([item.timestamp] * len(outs))
        emit(out, out_ts)
        if self._idle_pending and not self._queue.elements:
            self._idle_pending = False
            self.output.emit_idle(True)

    def _emit(self, out: list[Any], out_ts: list[Any]) -> None:
        if out:
            self.records_out += len(out)
            self.output.emit(out, None if out_ts[0] is None else out_ts)

    # -- observability ----------------------------------------------------------------------
    def metrics(self) -> dict[str, Any]:
        """Counters plus in-flight elements, requests, retries, timeouts, waits for capacity."""
        m = super().metrics()
        m["async"] = {
            "in_flight": self._queue.elements,
            "capacity": self.capacity,
            "max_in_flight": self.max_in_flight,
            "requests": self.requests,
            "retries": self.retries,
            "timeouts": self.timeouts,
            "capacity_waits": self.waits,
        }
        return m


async def _maybe_await(fn: Callable[..., Any], *args: Any) -> Any:
    """Call ``fn`` (async or plain) on the loop and await its result when it is awaitable."""
    res = fn(*args)
    if inspect.isawaitable(res):
        res = await res
    return res


def async_wait_factory(
    fn: Any, *, ordered: bool, timeout_ms: int, capacity: int, retry: AsyncRetryStrategy | None
) -> Callable[[str, str], AsyncWaitOperator]:
    """Validate the options of ``ordered_wait``/``unordered_wait``; the factory of the operator.

    Raises:
        ConfigurationError: ``fn`` is not an :class:`~streamcore.functions.AsyncFunction`, or bad options.
    """
    what = "ordered_wait" if ordered else "unordered_wait"
    if not isinstance(fn, AsyncFunction):
        msg = f"{what}() takes an AsyncFunction (with async def async_invoke(value)), got {type(fn).__name__}"
        raise ConfigurationError(msg)
    if not inspect.iscoroutinefunction(fn.async_invoke):
        msg = f"{what}(): {type(fn).__name__}.async_invoke must be declared with async def"
        raise ConfigurationError(msg)
    check_async_options(timeout_ms, capacity, retry, f"{what}()")

    def factory(name: str, uid: str) -> AsyncWaitOperator:
        return AsyncWaitOperator(
            name, uid, fn, ordered=ordered, timeout_ms=timeout_ms, capacity=capacity, retry=retry
        )

    return factory
