"""One asyncio event loop in a helper thread, owned by one operator.

The job's thread runs the dataflow synchronously; async I/O (``AsyncFunction``,
lookup joins) needs an event loop that keeps running while the job thread is busy
elsewhere. :class:`EventLoopThread` starts a private loop in a daemon thread; the job
thread talks to it only through thread-safe calls (:meth:`post`, :meth:`call`), and the
loop talks back only through a queue the operator drains. Stopping cancels every task
still running, shuts async generators and the default executor down and closes the
loop, so no "task was destroyed but it is pending" warning escapes.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import threading
from collections.abc import Callable, Coroutine
from typing import Any

__all__ = ["EventLoopThread"]


class EventLoopThread:
    """A private asyncio loop running in a daemon thread named ``name``."""

    def __init__(self, name: str) -> None:
        self.name = name
        self.loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self._run, name=name, daemon=True)
        self._started = threading.Event()

    def start(self) -> None:
        """Start the thread; returns once the loop runs."""
        self._thread.start()
        self._started.wait()

    @property
    def alive(self) -> bool:
        """Whether the loop's thread is running."""
        return self._thread.is_alive()

    def _run(self) -> None:
        loop = self.loop
        asyncio.set_event_loop(loop)
        loop.call_soon(self._started.set)
        try:
            loop.run_forever()
        finally:
            try:
                tasks = asyncio.all_tasks(loop)
                for t in tasks:
                    t.cancel()
                if tasks:
                    loop.run_until_complete(asyncio.gather(*tasks, return_exceptions=True))
                loop.run_until_complete(loop.shutdown_asyncgens())
                loop.run_until_complete(loop.shutdown_default_executor())
            finally:
                loop.close()

    def post(self, fn: Callable[..., Any], *args: Any) -> None:
        """Run ``fn(*args)`` on the loop soon (thread-safe; never blocks)."""
        self.loop.call_soon_threadsafe(fn, *args)

    def call(self, coro: Coroutine[Any, Any, Any], timeout_s: float | None) -> Any:
        """Run ``coro`` on the loop and wait for its result (or exception).

        Raises:
            TimeoutError: it did not finish within ``timeout_s`` (it is cancelled).
        """
        fut = asyncio.run_coroutine_threadsafe(coro, self.loop)
        try:
            return fut.result(timeout_s)
        except concurrent.futures.TimeoutError:
            fut.cancel()
            raise TimeoutError(f"did not finish within {timeout_s} s") from None

    def cancel_tasks(self, tasks: set[asyncio.Task[Any]], timeout_s: float) -> None:
        """Cancel ``tasks`` (a set only the loop touches) and wait (up to ``timeout_s``) until they are done.

        Only the caller's own tasks: clients' background tasks (pool workers) must live on
        until the clients are closed.
        """

        async def cancel() -> None:
            pending = list(tasks)
            for t in pending:
                t.cancel()
            if pending:
                await asyncio.gather(*pending, return_exceptions=True)

        if self.alive:
            self.call(cancel(), timeout_s)

    def stop(self, timeout_s: float = 10.0) -> None:
        """Stop the loop and join its thread (idempotent)."""
        if self._thread.is_alive():
            self.loop.call_soon_threadsafe(self.loop.stop)
            self._thread.join(timeout_s)
        elif not self._thread.ident and not self.loop.is_closed():
            self.loop.close()  # never started
