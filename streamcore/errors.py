"""Every exception streamcore raises on purpose.

One tree, rooted at :class:`StreamcoreError`. Where a builtin fits, the error also
subclasses it (``KeyEncodingError`` is a ``TypeError``), so callers who catch the
builtin keep working. Errors from rocksdict and confluent-kafka are wrapped at the
boundary (``raise StateBackendError(...) from exc``) and never escape unwrapped.

::

    StreamcoreError
    ├── ConfigurationError (ValueError)      bad arguments when a job is built or configured
    │   ├── GraphError                        an invalid dataflow (bad uid, cycles, mixing envs)
    │   └── SqlError                          a SQL statement streamcore cannot run; line, column, text
    │       ├── SqlSyntaxError                the text does not parse
    │       ├── SqlUnsupportedError           a feature streamcore's SQL does not support (named)
    │       ├── SqlValidationError            unknown table/column/function, INSERT type mismatch
    │       └── SqlConnectorError             a bad connector option (names it and the valid values)
    ├── UserFunctionError                     a user function raised; names operator and function
    │   ├── KeySelectorError                  the key function raised or returned a bad key
    │   ├── TimestampError (TypeError)        a timestamp that is not an int
    │   └── AsyncTimeoutError (TimeoutError)  an async request timed out after its retries, unhandled
    ├── KeyEncodingError (TypeError)          a key of a type with no stable byte encoding
    ├── SerializationError (TypeError)        a state value msgpack (or your serializer) cannot encode
    ├── ChangelogError (ValueError)           an updating stream retracts a row it never inserted
    ├── StateError                            misuse of keyed state
    │   ├── StateDescriptorConflictError      one state name registered with two different types
    │   ├── NoCurrentKeyError                 keyed state used outside a keyed context
    │   └── StateBackendError                 the backend failed (rocksdb I/O, lock, corruption)
    │       └── StateDirectoryLockedError     another running job holds the state directory
    ├── CheckpointError                       a checkpoint could not be written
    │   ├── RestoreError                      a checkpoint/savepoint cannot be restored
    │   │   └── CorruptCheckpointError        metadata or a file failed validation
    │   └── TaskFencedError                   another process took a task over (this one is a zombie)
    ├── ConnectorError                        a source or sink failed (Kafka, files)
    │   ├── DeserializationError              a record could not be decoded
    │   └── LookupStoreError                  a dimension store failed (down, query error, bad result)
    └── JobError                              the job failed while running; wraps the cause
"""

from __future__ import annotations

__all__ = [
    "AsyncTimeoutError",
    "ChangelogError",
    "CheckpointError",
    "ConfigurationError",
    "ConnectorError",
    "CorruptCheckpointError",
    "DeserializationError",
    "GraphError",
    "JobError",
    "KeyEncodingError",
    "KeySelectorError",
    "LookupStoreError",
    "NoCurrentKeyError",
    "RestoreError",
    "SerializationError",
    "SqlConnectorError",
    "SqlError",
    "SqlSyntaxError",
    "SqlUnsupportedError",
    "SqlValidationError",
    "StateBackendError",
    "StateDescriptorConflictError",
    "StateDirectoryLockedError",
    "StateError",
    "StreamcoreError",
    "TaskFencedError",
    "TimestampError",
    "UserFunctionError",
]


class StreamcoreError(Exception):
    """Root of every error streamcore raises deliberately."""


class ConfigurationError(StreamcoreError, ValueError):
    """Raised when a job, source, sink or operator is configured with bad arguments."""


class GraphError(ConfigurationError):
    """Raised when the dataflow graph is invalid (duplicate uid, streams of two environments)."""


class SqlError(ConfigurationError):
    """Raised when a SQL statement cannot be run; says where (line and column) and what instead.

    Attributes:
        line: 1-based line of the offending text in the statement (``None`` if unknown).
        column: 1-based column of its first character (``None`` if unknown).
        text: the offending text.
    """

    def __init__(
        self, message: str, *, line: int | None = None, column: int | None = None, text: str = ""
    ) -> None:
        self.line = line
        self.column = column
        self.text = text
        where = f"line {line}, column {column}: " if line is not None else ""
        super().__init__(f"{where}{message}")


class SqlSyntaxError(SqlError):
    """Raised when a SQL statement does not parse (the parser's message, located, without its trace)."""


class SqlUnsupportedError(SqlError):
    """Raised when a statement uses a SQL feature streamcore does not support; the feature is named."""


class SqlValidationError(SqlError):
    """Raised for an unknown table, column or function, or an ``INSERT INTO`` whose types do not match."""


class SqlConnectorError(SqlError):
    """Raised when a table's ``WITH`` options are wrong: names the option and its valid values."""


class UserFunctionError(StreamcoreError):
    """Raised when a user function raises; the message names the operator and the function.

    The original exception is chained as ``__cause__``.
    """


class KeySelectorError(UserFunctionError):
    """Raised when a key selector raises or returns a key that cannot be used."""


class TimestampError(UserFunctionError, TypeError):
    """Raised when a timestamp assigner returns something that is not an ``int`` of milliseconds."""


class KeyEncodingError(StreamcoreError, TypeError):
    """Raised when a key has no stable byte encoding.

    Supported: int, str, bytes, float, bool, None, and tuples of these.
    """


class SerializationError(StreamcoreError, TypeError):
    """Raised when a state value cannot be serialized; names the state and the value's type."""


class ChangelogError(StreamcoreError, ValueError):
    """Raised when a changelog (an updating stream of ``+I -U +U -D`` rows) is inconsistent."""


class StateError(StreamcoreError):
    """Raised on misuse of keyed state."""


class StateDescriptorConflictError(StateError):
    """Raised when one state name is registered twice with different state types."""


class NoCurrentKeyError(StateError):
    """Raised when keyed state is read or written with no current key (outside a keyed operator)."""


class StateBackendError(StateError):
    """Raised when the state backend fails: I/O errors, corruption, a foreign directory."""


class StateDirectoryLockedError(StateBackendError):
    """Raised when the state directory is already in use by another running job."""


class CheckpointError(StreamcoreError):
    """Raised when a checkpoint or savepoint cannot be taken."""


class RestoreError(CheckpointError):
    """Raised when a job cannot be restored from a checkpoint or savepoint."""


class CorruptCheckpointError(RestoreError):
    """Raised when checkpoint metadata or one of its files fails validation; names the file."""


class TaskFencedError(CheckpointError):
    """Raised when another process took over a task this process still runs: it must stop writing."""


class ConnectorError(StreamcoreError):
    """Raised when a source or sink fails (Kafka errors are wrapped in it)."""


class DeserializationError(ConnectorError, ValueError):
    """Raised when a source record cannot be decoded; names topic, partition and offset."""


class JobError(StreamcoreError):
    """Raised by ``execute()`` when the job fails while running; the cause is chained."""


class AsyncTimeoutError(UserFunctionError, TimeoutError):
    """Raised when an async request (``AsyncFunction.async_invoke`` or a lookup) timed out on every attempt.

    An :class:`~streamcore.functions.AsyncFunction` that overrides ``timeout(value)`` handles
    its timeouts itself (e.g. emits a fallback); the default ``timeout`` raises this error,
    naming the operator, the function and the element.
    """


class LookupStoreError(ConnectorError):
    """Raised when a dimension store of a lookup join fails.

    The store was unreachable at start, a query failed, or a result had the wrong shape;
    the message names the operator, the store (a DSN without its password) and a hint.
    """
