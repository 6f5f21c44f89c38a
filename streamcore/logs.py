"""Logging: where streamcore's loggers go, structured (JSON) logs, and librdkafka's lines.

streamcore logs through the standard :mod:`logging` module under ``streamcore.*``
(``streamcore.runtime``: job start, end, restarts; ``streamcore.checkpoint``: every
checkpoint with id, duration and size, restores; ``streamcore.coordinator``: rate
coordination engaged and released; ``streamcore.kafka``: the connector;
``streamcore.kafka.librdkafka``: librdkafka's own log lines). It configures nothing
unless asked: :func:`configure_logging` (``env.configure_logging(json=True)``, or
``streamcore run``) attaches one handler to the ``streamcore`` logger.

librdkafka writes its log lines (``%3|...|FAIL|...``) straight to stderr unless the
client gets a ``logger``: every Kafka client streamcore creates gets
:func:`librdkafka_logger`, whose filter passes each distinct line once a minute and
counts the repeats (a broker that is down is reported every few seconds otherwise).

>>> import io, json
>>> buf = io.StringIO()
>>> configure_logging("INFO", json=True, stream=buf)
>>> logging.getLogger("streamcore.runtime").info("job %r started", "wc", extra={"job": "wc"})
>>> record = json.loads(buf.getvalue())
>>> record["level"], record["logger"], record["message"], record["job"]
('INFO', 'streamcore.runtime', "job 'wc' started", 'wc')
>>> reset_logging()
"""

from __future__ import annotations

import json as _json
import logging
import sys
import threading
import time
from typing import Any, TextIO

from streamcore.errors import ConfigurationError

__all__ = ["JsonFormatter", "RepeatFilter", "configure_logging", "librdkafka_logger", "reset_logging"]

_STANDARD = set(vars(logging.LogRecord("", 0, "", 0, "", None, None))) | {"message", "asctime", "taskName"}
_HANDLER_NAME = "streamcore-configured"


class JsonFormatter(logging.Formatter):
    """One JSON object per line: time, level, logger, message, extra fields, exception."""

    def format(self, record: logging.LogRecord) -> str:
        out: dict[str, Any] = {
            "time": time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(record.created))
            + f".{int(record.msecs):03d}Z",
            "level": record.levelname,
            "logger": record.name,
            "message": record.getMessage(),
        }
        for key, value in vars(record).items():
            if key not in _STANDARD and not key.startswith("_"):
                out[key] = value if isinstance(value, (str, int, float, bool, type(None))) else repr(value)
        if record.exc_info:
            out["exception"] = self.formatException(record.exc_info)
        return _json.dumps(out, default=str)


def configure_logging(level: str | int = "INFO", *, json: bool = False, stream: TextIO | None = None) -> None:
    """Log the ``streamcore`` loggers at ``level`` to ``stream`` (stderr), as text or JSON lines.

    Calling it again replaces the handler it added before (other handlers are kept).

    Raises:
        ConfigurationError: an unknown level name.
    """
    if isinstance(level, str):
        resolved = logging.getLevelName(level.upper())
        if not isinstance(resolved, int):
            msg = f"unknown log level {level!r}; use DEBUG, INFO, WARNING or ERROR"
            raise ConfigurationError(msg)
        level = resolved
    reset_logging()
    handler = logging.StreamHandler(stream if stream is not None else sys.stderr)
    handler.set_name(_HANDLER_NAME)
    handler.setFormatter(
        JsonFormatter() if json else logging.Formatter("%(asctime)s %(levelname)-7s %(name)s: %(message)s")
    )
    root = logging.getLogger("streamcore")
    root.addHandler(handler)
    root.setLevel(level)
    root.propagate = False


def reset_logging() -> None:
    """Remove the handler :func:`configure_logging` added; the loggers propagate again."""
    root = logging.getLogger("streamcore")
    for h in list(root.handlers):
        if h.get_name() == _HANDLER_NAME:
            root.removeHandler(h)
    root.propagate = True
    root.setLevel(logging.NOTSET)


class RepeatFilter(logging.Filter):
    """Passes each distinct message once per ``interval_s``; the next pass says how many were dropped.

    >>> f = RepeatFilter(interval_s=60)
    >>> rec = lambda: logging.LogRecord("x", logging.ERROR, "", 0, "broker down", None, None)
    >>> [f.filter(rec()) for _ in range(3)]
    [True, False, False]
    """

    def __init__(self, interval_s: float = 60.0) -> None:
        super().__init__()
        self.interval_s = interval_s
        self._seen: dict[str, tuple[float, int]] = {}
        self._lock = threading.Lock()

    def filter(self, record: logging.LogRecord) -> bool:
        text = record.getMessage()
        now = time.monotonic()
        with self._lock:
            last = self._seen.get(text)
            if last is not None and now - last[0] < self.interval_s:
                self._seen[text] = (last[0], last[1] + 1)
                return False
            self._seen[text] = (now, 0)
            if len(self._seen) > 1000:
                self._seen.clear()
        if last is not None and last[1]:
            record.msg = f"{text} (repeated {last[1]} times in {self.interval_s:.0f} s)"
            record.args = None
        return True


_LIBRDKAFKA = "streamcore.kafka.librdkafka"


def librdkafka_logger() -> logging.Logger:
    """The logger every Kafka client streamcore creates gets as its ``logger`` setting."""
    logger = logging.getLogger(_LIBRDKAFKA)
    if not any(isinstance(f, RepeatFilter) for f in logger.filters):
        logger.addFilter(RepeatFilter())
    return logger
