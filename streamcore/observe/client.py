"""The REST client behind ``streamcore status|savepoint|stop URL`` (standard library only).

``URL`` is what ``streamcore run`` printed as the dashboard (``http://127.0.0.1:9249/``);
``host:port`` works too.
"""

from __future__ import annotations

import json
import urllib.error
import urllib.request
from typing import Any

from streamcore.errors import ConfigurationError, JobError

__all__ = ["JobClient"]


class JobClient:
    """Talks to a running job's REST API under ``/api/v1``.

    Raises:
        ConfigurationError: a URL that is not http(s).
    """

    def __init__(self, url: str, timeout_s: float = 330.0) -> None:
        url = url.strip()
        if "://" not in url:
            url = "http://" + url
        if not url.startswith(("http://", "https://")):
            msg = f"job URL must be http(s)://host:port (as `streamcore run` prints it), got {url!r}"
            raise ConfigurationError(msg)
        self.base = url.rstrip("/") + "/api/v1"
        self.timeout_s = timeout_s

    def _call(self, method: str, path: str, body: dict[str, Any] | None = None) -> Any:
        data = json.dumps(body).encode() if body is not None else None
        req = urllib.request.Request(self.base + path, data=data, method=method)
        if data is not None:
            req.add_header("Content-Type", "application/json")
        try:
            with urllib.request.urlopen(req, timeout=self.timeout_s) as resp:
                return json.loads(resp.read())
        except urllib.error.HTTPError as exc:
            with exc:
                try:
                    detail = json.loads(exc.read()).get("error", exc.reason)
                except Exception:
                    detail = exc.reason
            msg = f"{method} {self.base}{path} answered {exc.code}: {detail}"
            raise JobError(msg) from exc
        except (urllib.error.URLError, OSError) as exc:
            reason = getattr(exc, "reason", exc)
            msg = f"cannot reach the job at {self.base}: {reason}; is it running, and is this its URL?"
            raise JobError(msg) from exc

    def job(self) -> dict[str, Any]:
        """``GET /job``."""
        return self._call("GET", "/job")  # type: ignore[no-any-return]

    def overview(self) -> dict[str, Any]:
        """``GET /overview``."""
        return self._call("GET", "/overview")  # type: ignore[no-any-return]

    def savepoint(self, directory: str | None = None) -> str:
        """Take a savepoint; returns its path."""
        body = {"directory": directory} if directory else {}
        return str(self._call("POST", "/savepoints", body)["path"])

    def stop(self, *, savepoint: bool = False, directory: str | None = None) -> dict[str, Any]:
        """Stop the job (after a savepoint, when asked)."""
        body: dict[str, Any] = {"savepoint": savepoint}
        if directory:
            body["directory"] = directory
        return self._call("POST", "/stop", body)  # type: ignore[no-any-return]
