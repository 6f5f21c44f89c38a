"""The job's HTTP endpoint: ``/metrics``, the dashboard at ``/`` and the REST API under ``/api/v1``.

A standard-library ``ThreadingHTTPServer`` in a daemon thread of the job's process. It
reads only the latest status snapshot and the Prometheus registry, and reaches the job
only through its :class:`~streamcore.runtime.executor.JobControl` (savepoint and stop
requests are served by the job's thread between batches).

==========  ===========================  ========================================================
method      path                         answer (JSON unless noted)
==========  ===========================  ========================================================
GET         ``/``                        the dashboard (HTML; refreshes itself every second)
GET         ``/metrics``                 Prometheus text exposition
GET         ``/api/v1/overview``         everything the dashboard shows (job, vertices, edges...)
GET         ``/api/v1/job``              name, state, attempt, restarts, uptime, records read
GET         ``/api/v1/vertices``         operators and sources with per-task figures; edges; tasks
GET         ``/api/v1/checkpoints``      counts, last checkpoint, history, restore time
GET         ``/api/v1/metrics``          every live figure, by operator uid (as ``JobHandle.metrics()``)
POST        ``/api/v1/savepoints``       take a savepoint; body ``{"directory": ...}`` (optional);
                                         answers ``{"path": ...}`` once it is written
POST        ``/api/v1/stop``             stop the job; body ``{"savepoint": bool, "directory": ...}``;
                                         answers ``{"stopping": true, "savepoint": path or null}``
==========  ===========================  ========================================================

Errors answer ``{"error": message}`` with status 400 (bad request), 404, 405, 409 (the job
has ended) or 500 (the savepoint failed).
"""

from __future__ import annotations

import json
import logging
import threading
from http import HTTPStatus
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from importlib import resources
from typing import Any

__all__ = ["API_PREFIX", "JobHTTPServer", "api_error"]

API_PREFIX = "/api/v1"

logger = logging.getLogger("streamcore.observe")


class _ApiError(Exception):
    def __init__(self, status: HTTPStatus, message: str) -> None:
        super().__init__(message)
        self.status = status


class _Handler(BaseHTTPRequestHandler):
    server: JobHTTPServer
    protocol_version = "HTTP/1.1"

    def log_message(self, format: str, *args: Any) -> None:
        logger.debug("http %s - %s", self.address_string(), format % args)

    # -- dispatch -------------------------------------------------------------------------------
    def do_GET(self) -> None:
        path = self.path.split("?", 1)[0].rstrip("/") or "/"
        try:
            if path in ("/", "/index.html"):
                self._send(HTTPStatus.OK, self.server.dashboard(), "text/html; charset=utf-8")
            elif path == "/metrics":
                from prometheus_client import CONTENT_TYPE_LATEST

                self._send(HTTPStatus.OK, self.server.service.metrics.text(), CONTENT_TYPE_LATEST)
            elif path.startswith(API_PREFIX):
                self._json(HTTPStatus.OK, self.server.service.api_get(path[len(API_PREFIX) :]))
            else:
                raise _ApiError(HTTPStatus.NOT_FOUND, f"no such page {path!r}; see {API_PREFIX}/overview")
        except _ApiError as exc:
            self._json(exc.status, {"error": str(exc)})

    def do_POST(self) -> None:
        path = self.path.split("?", 1)[0].rstrip("/")
        try:
            length = int(self.headers.get("Content-Length") or 0)
            raw = self.rfile.read(length) if length else b""
            try:
                body = json.loads(raw) if raw.strip() else {}
            except ValueError as exc:
                raise _ApiError(HTTPStatus.BAD_REQUEST, f"the request body is not JSON: {exc}") from exc
            if not isinstance(body, dict):
                raise _ApiError(HTTPStatus.BAD_REQUEST, "the request body must be a JSON object")
            if not path.startswith(API_PREFIX):
                raise _ApiError(HTTPStatus.NOT_FOUND, f"no such endpoint {path!r}")
            self._json(HTTPStatus.OK, self.server.service.api_post(path[len(API_PREFIX) :], body))
        except _ApiError as exc:
            self._json(exc.status, {"error": str(exc)})

    # -- answers ----------------------------------------------------------------------------------
    def _json(self, status: HTTPStatus, payload: Any) -> None:
        self._send(status, json.dumps(payload, default=str).encode(), "application/json")

    def _send(self, status: HTTPStatus, body: bytes, content_type: str) -> None:
        self.send_response(status)
        self.send_header("Content-Type", content_type)
        self.send_header("Content-Length", str(len(body)))
        self.send_header("Cache-Control", "no-store")
        self.end_headers()
        self.wfile.write(body)


class JobHTTPServer(ThreadingHTTPServer):
    """Serves one job run on ``(host, port)``; port 0 picks a free port (see :attr:`url`).

    ``service`` answers the API (:class:`streamcore.observe.service.JobService`).
    """

    daemon_threads = True

    def __init__(self, host: str, port: int, service: Any) -> None:
        self.service = service
        self._page: bytes | None = None
        super().__init__((host, port), _Handler)
        self._thread: threading.Thread | None = None

    @property
    def url(self) -> str:
        """``http://host:port`` of the server."""
        host, port = self.server_address[:2]
        return f"http://{host}:{port}"

    def dashboard(self) -> bytes:
        """The dashboard page (shipped in ``streamcore/observe/static``)."""
        if self._page is None:
            self._page = (resources.files("streamcore.observe") / "static" / "dashboard.html").read_bytes()
        return self._page

    def start(self) -> None:
        """Serve in a daemon thread."""
        self._thread = threading.Thread(
            target=self.serve_forever, kwargs={"poll_interval": 0.1}, name="streamcore-http", daemon=True
        )
        self._thread.start()

    def stop(self) -> None:
        """Stop serving and close the socket."""
        if self._thread is not None:
            self.shutdown()
            self._thread.join(5)
            self._thread = None
        self.server_close()


def api_error(status: int, message: str) -> Exception:
    """An error the API answers with ``status`` and ``{"error": message}``."""
    return _ApiError(HTTPStatus(status), message)
