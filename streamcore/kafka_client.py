"""confluent-kafka at the boundary: lazy import, error wrapping, client config checks.

Shared by the Kafka source and sink. ``import streamcore`` never imports confluent-kafka;
every call into it that can fail runs inside :func:`kafka_errors`, which turns its
exceptions into :class:`~streamcore.errors.ConfigurationError` (bad settings) or
:class:`~streamcore.errors.ConnectorError` (everything else).
"""

from __future__ import annotations

import contextlib
import logging
from collections.abc import Iterator, Mapping
from typing import Any

from streamcore.errors import ConfigurationError, ConnectorError, StreamcoreError

__all__ = [
    "TRANSIENT_ERRORS",
    "check_client_config",
    "check_seconds",
    "error_name",
    "import_confluent_kafka",
    "kafka_errors",
]

# Client errors that librdkafka recovers from by itself (reconnects, leader changes).
TRANSIENT_ERRORS = frozenset(
    {
        "_TRANSPORT",
        "_ALL_BROKERS_DOWN",
        "_TIMED_OUT",
        "_RESOLVE",
        "_DESTROY",
        "LEADER_NOT_AVAILABLE",
        "NOT_LEADER_FOR_PARTITION",
        "NOT_LEADER_OR_FOLLOWER",
        "REQUEST_TIMED_OUT",
        "FENCED_LEADER_EPOCH",
        "UNKNOWN_LEADER_EPOCH",
        "NETWORK_EXCEPTION",
    }
)


def import_confluent_kafka() -> Any:
    """Import confluent_kafka (lazily: ``import streamcore`` never does).

    Raises:
        ConnectorError: confluent-kafka is not installed.
    """
    try:
        import confluent_kafka
    except ImportError as exc:
        msg = "the Kafka connector needs confluent-kafka: pip install 'confluent-kafka>=2.3'"
        raise ConnectorError(msg) from exc
    return confluent_kafka


def _is_invalid_config(exc: BaseException) -> bool:
    """Whether a client error means a bad setting (unknown property, invalid value)."""
    text = str(exc)
    return "configuration property" in text or "Invalid value" in text or "must be set" in text


@contextlib.contextmanager
def kafka_errors(action: str, hint: str = "") -> Iterator[None]:
    """Wrap any confluent-kafka error raised inside the block in a streamcore error.

    A bad client setting becomes a :class:`ConfigurationError`, anything else a
    :class:`ConnectorError`; ``action`` says what was being done ("consuming from ...").
    """
    try:
        yield
    except StreamcoreError:
        raise
    except Exception as exc:
        detail = f"{type(exc).__name__}: {exc}"
        suffix = f"; {hint}" if hint else ""
        if _is_invalid_config(exc):
            msg = f"{action} failed, a Kafka client setting is invalid: {detail}{suffix}"
            raise ConfigurationError(msg) from exc
        msg = f"{action} failed: {detail}{suffix}"
        raise ConnectorError(msg) from exc


def check_client_config(config: Any, owned: Mapping[str, str], who: str) -> dict[str, Any]:
    """Validate the ``config`` dict passed through to librdkafka; return a copy.

    Keys must be strings; values strings, numbers, booleans or callables (``stats_cb``).
    Keys streamcore sets itself are refused, with what to do instead. librdkafka checks
    names and values when the client is created (a :class:`ConfigurationError` then).

    Raises:
        ConfigurationError: not a mapping, a bad key or value, or a key streamcore owns.
    """
    if config is None:
        return {}
    if not isinstance(config, Mapping):
        msg = f"{who} config must be a dict of librdkafka settings, got {type(config).__name__}"
        raise ConfigurationError(msg)
    out: dict[str, Any] = {}
    for key, value in config.items():
        if not isinstance(key, str) or not key:
            msg = f"{who} config keys must be non-empty str (librdkafka property names), got {key!r}"
            raise ConfigurationError(msg)
        if key in owned:
            msg = f"{who} config must not set {key!r}: {owned[key]}"
            raise ConfigurationError(msg)
        if value is None or not (
            isinstance(value, (str, int, float, bool, logging.Logger)) or callable(value)
        ):
            msg = f"{who} config {key!r} must be a str, number, bool, callback or logger, got {value!r}"
            raise ConfigurationError(msg)
        out[key] = value
    return out


def check_seconds(value: Any, name: str, *, optional: bool = False) -> float | None:
    """``value`` as seconds > 0 (``None`` allowed when ``optional``), or a clear ConfigurationError."""
    if value is None and optional:
        return None
    if isinstance(value, bool) or not isinstance(value, (int, float)) or value <= 0:
        allowed = "a number of seconds > 0" + (" or None" if optional else "")
        msg = f"{name} must be {allowed}, got {value!r}"
        raise ConfigurationError(msg)
    return float(value)


def error_name(err: Any) -> str:
    """The symbolic name of a ``KafkaError`` (``"UNKNOWN"`` if it has none)."""
    try:
        return str(err.name())
    except Exception:
        return "UNKNOWN"
