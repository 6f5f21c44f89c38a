"""A Kafka cluster for tests, without a broker: librdkafka's built-in mock cluster.

The machines streamcore is developed and tested on have no Kafka broker. librdkafka,
the C client inside the confluent-kafka wheel, contains a mock cluster that speaks the
real Kafka protocol on localhost TCP ports. confluent-kafka does not expose its API to
Python, so :class:`MockKafkaCluster` drives it through :mod:`ctypes`: it creates an idle
``rd_kafka_t`` handle for the cluster to live in, starts the brokers on it and hands out
their ``bootstrap.servers`` string. Any client can connect to that address: a
``confluent_kafka.Producer`` or ``Consumer`` in this process, or one in a subprocess.

Example::

    with MockKafkaCluster(num_brokers=3) as cluster:
        cluster.create_topic("clicks", partitions=4)
        producer = Producer({"bootstrap.servers": cluster.bootstrap_servers})

What the mock does well (verified against librdkafka 2.16, see ``notes/kafka_facts.md``):
produce, idempotent produce, fetch, ``assign`` and seek by offset, watermark and
timestamp lookups, offset commit and resume, and consumer groups (with
``group.protocol=consumer``).

Its limits, which a test must not mistake for bugs in streamcore:

* Retention is bounded: each partition keeps only about 5 MiB or 100,000 message
  batches and silently drops older data, so the low watermark moves up. Tests that
  need every record back must stay well below that.
* The Admin API cannot create topics (``CreateTopics`` times out); use
  :meth:`MockKafkaCluster.create_topic`. Producing to an unknown topic auto-creates
  it with the mock's default partition count.
* Transactions are only a protocol stub: ``init_transactions``, ``begin``, ``commit``
  and ``abort`` succeed, but aborted records are still delivered to
  ``isolation.level=read_committed`` consumers, offsets sent with
  ``send_offsets_to_transaction`` are not committed, and a second producer with the
  same ``transactional.id`` does not fence the first. Exactly-once behaviour can only
  be tested against a real broker (``STREAMCORE_KAFKA_BOOTSTRAP``).
* ``broker_down`` closes connections and refuses new ones but moves no partition
  leadership: partitions led by a down broker are unavailable until it is back up.

For tests of failure handling, :meth:`MockKafkaCluster.push_request_errors` makes the
cluster answer the next requests of one protocol API with given error codes (a Produce
answered with ``INVALID_PRODUCER_EPOCH`` fences a transactional producer, for example).

Importing this module does not import confluent_kafka or load librdkafka; both happen
when the first cluster is created.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import functools
import glob
import importlib
import importlib.metadata
import importlib.util
import os
import threading
from collections.abc import Sequence

from streamcore.errors import ConfigurationError, ConnectorError

__all__ = ["LIBRDKAFKA_ENV_VAR", "MockKafkaCluster", "find_librdkafka"]

LIBRDKAFKA_ENV_VAR = "STREAMCORE_LIBRDKAFKA"
"""Environment variable that, when set, names the librdkafka shared library to load."""

_RD_KAFKA_PRODUCER = 0
_RD_KAFKA_CONF_OK = 0
_ERRSTR_SIZE = 512

# Logs of the cluster's own handle: warnings and worse. Level 5 would print a notice that
# the idle handle has no bootstrap.servers, which is true and harmless.
_CLUSTER_HANDLE_CONF = {
    "client.id": "streamcore-mock-cluster",
    "log_level": "4",
}

_void_p = ctypes.c_void_p
_char_p = ctypes.c_char_p
_int = ctypes.c_int
_int16 = ctypes.c_int16
_int32 = ctypes.c_int32
_size_t = ctypes.c_size_t

# name -> (restype, argtypes), as declared in rdkafka.h and rdkafka_mock.h. Every pointer is
# declared as c_void_p: ctypes' default restype is a C int, which would cut 64-bit
# pointers in half. Enums (rd_kafka_type_t, rd_kafka_resp_err_t, rd_kafka_conf_res_t)
# are C ints.
_SIGNATURES: dict[str, tuple[object, list[object]]] = {
    "rd_kafka_err2str": (_char_p, [_int]),
    "rd_kafka_conf_new": (_void_p, []),
    "rd_kafka_conf_set": (_int, [_void_p, _char_p, _char_p, _char_p, _size_t]),
    "rd_kafka_conf_destroy": (None, [_void_p]),
    "rd_kafka_new": (_void_p, [_int, _void_p, _char_p, _size_t]),
    "rd_kafka_destroy": (None, [_void_p]),
    "rd_kafka_mock_cluster_new": (_void_p, [_void_p, _int]),
    "rd_kafka_mock_cluster_destroy": (None, [_void_p]),
    "rd_kafka_mock_cluster_bootstraps": (_char_p, [_void_p]),
    "rd_kafka_mock_topic_create": (_int, [_void_p, _char_p, _int, _int]),
    "rd_kafka_mock_broker_set_down": (_int, [_void_p, _int32]),
    "rd_kafka_mock_broker_set_up": (_int, [_void_p, _int32]),
    "rd_kafka_mock_push_request_errors_array": (None, [_void_p, _int16, _size_t, ctypes.POINTER(_int)]),
    "rd_kafka_mock_set_group_consumer_session_timeout_ms": (None, [_void_p, _int]),
    "rd_kafka_mock_set_group_consumer_heartbeat_interval_ms": (None, [_void_p, _int]),
}


def find_librdkafka() -> str:
    """Return the librdkafka shared library that confluent-kafka uses, as a path or soname.

    Looked for, in order: the file named by ``$STREAMCORE_LIBRDKAFKA``; the copy
    bundled in the installed confluent-kafka wheel (``confluent_kafka.libs/`` on Linux
    and Windows, ``confluent_kafka/.dylibs/`` on macOS); a system-wide librdkafka, as
    used by confluent-kafka builds from source. confluent_kafka itself is not imported.

    Raises:
        ConnectorError: no library was found, or ``$STREAMCORE_LIBRDKAFKA`` names a
            file that does not exist.
    """
    override = os.environ.get(LIBRDKAFKA_ENV_VAR)
    if override:
        if not os.path.isfile(override):
            msg = f"${LIBRDKAFKA_ENV_VAR} is {override!r}, which is not a file; point it at librdkafka"
            raise ConnectorError(msg)
        return override
    for path in _bundled_candidates():
        if os.path.isfile(path):
            return path
    system = ctypes.util.find_library("rdkafka")
    if system:
        return system
    msg = (
        "cannot find librdkafka: it is neither bundled with an installed confluent-kafka "
        f"nor installed system-wide; run `pip install confluent-kafka` or set ${LIBRDKAFKA_ENV_VAR}"
    )
    raise ConnectorError(msg)


def _is_librdkafka(filename: str) -> bool:
    name = os.path.basename(filename).lower()
    # librdkafka++ (the C++ wrapper) is skipped: the C symbols live in librdkafka proper.
    is_c_library = name.startswith("librdkafka") and not name.startswith("librdkafka++")
    return is_c_library and any(ext in name for ext in (".so", ".dylib", ".dll"))


def _bundled_candidates() -> list[str]:
    """Paths where a confluent-kafka wheel may keep its copy of librdkafka, best first."""
    candidates: list[str] = []
    try:
        dist = importlib.metadata.distribution("confluent-kafka")
    except importlib.metadata.PackageNotFoundError:
        dist = None
    if dist is not None:
        for file in dist.files or ():
            if _is_librdkafka(str(file)):
                candidates.append(str(dist.locate_file(file)))
    # Without a RECORD (some installers omit it) fall back to the wheel repair tools'
    # layouts next to the package directory.
    spec = importlib.util.find_spec("confluent_kafka")
    if spec is not None and spec.submodule_search_locations:
        for package_dir in spec.submodule_search_locations:
            parent = os.path.dirname(package_dir)
            for pattern in (
                os.path.join(parent, "confluent_kafka.libs", "librdkafka*"),
                os.path.join(package_dir, ".dylibs", "librdkafka*"),
                os.path.join(package_dir, "librdkafka*"),
            ):
                candidates.extend(sorted(p for p in glob.glob(pattern) if _is_librdkafka(p)))
    return candidates


@functools.cache
def _librdkafka() -> ctypes.CDLL:
    """Load librdkafka once and declare the signature of every function this module calls."""
    try:
        # Importing the client first lets the wheel set up its library search path
        # (needed on Windows), and makes ctypes share the copy the client already loaded.
        importlib.import_module("confluent_kafka")
    except ImportError:
        pass
    path = find_librdkafka()
    try:
        lib = ctypes.CDLL(path)
    except OSError as exc:
        msg = f"cannot load librdkafka from {path!r}: {exc}; reinstall confluent-kafka"
        raise ConnectorError(msg) from exc
    for name, (restype, argtypes) in _SIGNATURES.items():
        try:
            func = getattr(lib, name)
        except AttributeError as exc:
            msg = (
                f"librdkafka at {path!r} has no symbol {name}; the mock cluster needs "
                "librdkafka >= 2.0 as bundled with recent confluent-kafka wheels"
            )
            raise ConnectorError(msg) from exc
        func.restype = restype
        func.argtypes = argtypes
    return lib


def _check_int(what: str, value: object, low: int, high: int | None = None) -> None:
    """Raise ConfigurationError unless ``value`` is an int (not a bool) in ``low..high``."""
    if (
        isinstance(value, bool)
        or not isinstance(value, int)
        or value < low
        or (high is not None and value > high)
    ):
        bounds = f">= {low}" if high is None else f"in {low}..{high}"
        msg = f"{what} must be an int {bounds}, got {value!r}"
        raise ConfigurationError(msg)


def _err2str(lib: ctypes.CDLL, err: int) -> str:
    text = lib.rd_kafka_err2str(err)
    return text.decode("utf-8", "replace") if text else f"error {err}"


class MockKafkaCluster:
    """A running librdkafka mock cluster with ``num_brokers`` brokers on localhost.

    Broker ids are ``1..num_brokers``. The cluster lives until :meth:`close` (or the
    end of a ``with`` block); closing it disconnects every client. Clients in other
    processes can use it too, as long as this object stays open. See the module
    docstring for what the mock does not implement.

    Close clients before their cluster: a client that outlives it logs connection
    errors on stderr, and a consumer that still has offsets to commit (the default
    ``enable.auto.commit=true``) blocks in ``close()`` for ``session.timeout.ms``
    (45 s by default).

    Args:
        num_brokers: how many brokers to start, at least 1.

    Raises:
        ConfigurationError: ``num_brokers`` is not a positive int.
        ConnectorError: librdkafka cannot be found or loaded, or the cluster cannot
            be started.
    """

    def __init__(self, num_brokers: int = 3) -> None:
        _check_int("num_brokers", num_brokers, 1)
        self._lock = threading.Lock()
        self._rk: int | None = None
        self._mcluster: int | None = None
        self.num_brokers = num_brokers
        lib = _librdkafka()
        self._lib = lib
        self._rk = self._new_handle(lib)
        mcluster = lib.rd_kafka_mock_cluster_new(self._rk, num_brokers)
        if not mcluster:
            self.close()
            msg = f"librdkafka could not start a mock cluster with {num_brokers} brokers"
            raise ConnectorError(msg)
        self._mcluster = mcluster
        self._bootstrap_servers = lib.rd_kafka_mock_cluster_bootstraps(mcluster).decode("ascii")

    @staticmethod
    def _new_handle(lib: ctypes.CDLL) -> int:
        """Create the idle producer handle that owns the cluster's threads and sockets."""
        errstr = ctypes.create_string_buffer(_ERRSTR_SIZE)
        conf = lib.rd_kafka_conf_new()
        if not conf:
            msg = "rd_kafka_conf_new returned NULL (out of memory?)"
            raise ConnectorError(msg)
        for key, value in _CLUSTER_HANDLE_CONF.items():
            res = lib.rd_kafka_conf_set(conf, key.encode(), value.encode(), errstr, _ERRSTR_SIZE)
            if res != _RD_KAFKA_CONF_OK:
                lib.rd_kafka_conf_destroy(conf)
                msg = f"cannot set {key}={value} on the mock cluster's handle: {errstr.value.decode()}"
                raise ConnectorError(msg)
        # On success rd_kafka_new owns conf; on failure it is still ours to free.
        rk = lib.rd_kafka_new(_RD_KAFKA_PRODUCER, conf, errstr, _ERRSTR_SIZE)
        if not rk:
            lib.rd_kafka_conf_destroy(conf)
            msg = f"cannot create the mock cluster's handle: {errstr.value.decode()}"
            raise ConnectorError(msg)
        return rk

    @property
    def bootstrap_servers(self) -> str:
        """The ``bootstrap.servers`` value for clients: ``"127.0.0.1:port,..."``, one per broker."""
        return self._bootstrap_servers

    @property
    def closed(self) -> bool:
        """Whether :meth:`close` has been called."""
        return self._mcluster is None

    def _cluster(self) -> int:
        mcluster = self._mcluster
        if mcluster is None:
            msg = "the mock Kafka cluster is closed"
            raise ConnectorError(msg)
        return mcluster

    def create_topic(self, name: str, partitions: int = 1, replication_factor: int = 1) -> None:
        """Create topic ``name`` on the cluster (the Admin API cannot do it on the mock).

        Raises:
            ConfigurationError: a bad name, or counts that are not positive ints;
                ``replication_factor`` larger than the number of brokers.
            ConnectorError: the mock refused, e.g. because the topic already exists.
        """
        if not isinstance(name, str) or not name:
            msg = f"topic name must be a non-empty str, got {name!r}"
            raise ConfigurationError(msg)
        _check_int("partitions", partitions, 1)
        _check_int("replication_factor", replication_factor, 1)
        if replication_factor > self.num_brokers:
            msg = (
                f"replication_factor {replication_factor} exceeds the {self.num_brokers} brokers "
                f"of this cluster; start MockKafkaCluster(num_brokers={replication_factor})"
            )
            raise ConfigurationError(msg)
        err = self._lib.rd_kafka_mock_topic_create(
            self._cluster(), name.encode("utf-8"), partitions, replication_factor
        )
        if err:
            msg = f"cannot create topic {name!r}: {_err2str(self._lib, err)}"
            raise ConnectorError(msg)

    def broker_down(self, broker_id: int) -> None:
        """Disconnect broker ``broker_id`` (1-based) and refuse connections to it.

        Partition leadership does not move: partitions it leads stay unavailable until
        :meth:`broker_up`.
        """
        self._set_broker(broker_id, up=False)

    def broker_up(self, broker_id: int) -> None:
        """Let broker ``broker_id`` (1-based) accept connections again."""
        self._set_broker(broker_id, up=True)

    def _set_broker(self, broker_id: int, *, up: bool) -> None:
        _check_int("broker_id", broker_id, 1, self.num_brokers)
        func = self._lib.rd_kafka_mock_broker_set_up if up else self._lib.rd_kafka_mock_broker_set_down
        err = func(self._cluster(), broker_id)
        if err:
            msg = f"cannot set broker {broker_id} {'up' if up else 'down'}: {_err2str(self._lib, err)}"
            raise ConnectorError(msg)

    def push_request_errors(self, api_key: int, errors: Sequence[int]) -> None:
        """Answer the next ``len(errors)`` requests of protocol API ``api_key`` with these errors, in order.

        Whichever broker receives such a request answers it with the next error of the
        list instead of handling it; later requests are handled normally.

        Args:
            api_key: the Kafka protocol API key: 0 Produce, 1 Fetch, 3 Metadata,
                22 InitProducerId, 24 AddPartitionsToTxn, 26 EndTxn, ...
            errors: Kafka error codes, e.g. ``confluent_kafka.KafkaError.INVALID_PRODUCER_EPOCH``
                (47); 0 lets that request through.

        Raises:
            ConfigurationError: ``api_key`` or an error code is not an int in range.
            ConnectorError: the cluster is closed.
        """
        _check_int("api_key", api_key, 0, 32767)
        codes = list(errors)
        for code in codes:
            _check_int("each error code", code, -(2**31), 2**31 - 1)
        array = (_int * len(codes))(*codes)
        self._lib.rd_kafka_mock_push_request_errors_array(self._cluster(), api_key, len(codes), array)

    def set_group_timing(self, session_timeout_ms: int, heartbeat_interval_ms: int) -> None:
        """Set the broker side of ``group.protocol=consumer`` groups: session timeout and heartbeat interval.

        A member that stops heartbeating (a killed process) loses its partitions after
        ``session_timeout_ms`` (30 s by default on the mock, 45 s on real brokers); tests
        that kill group members set a few seconds.

        Raises:
            ConfigurationError: a value is not an int >= 1.
            ConnectorError: the cluster is closed.
        """
        _check_int("session_timeout_ms", session_timeout_ms, 1)
        _check_int("heartbeat_interval_ms", heartbeat_interval_ms, 1)
        cluster = self._cluster()
        self._lib.rd_kafka_mock_set_group_consumer_session_timeout_ms(cluster, session_timeout_ms)
        self._lib.rd_kafka_mock_set_group_consumer_heartbeat_interval_ms(cluster, heartbeat_interval_ms)

    def close(self) -> None:
        """Stop the brokers and free the cluster's handle. Calling it again does nothing."""
        with self._lock:
            mcluster, self._mcluster = self._mcluster, None
            rk, self._rk = self._rk, None
        # The cluster is kept by its handle, so it goes first.
        if mcluster is not None:
            self._lib.rd_kafka_mock_cluster_destroy(mcluster)
        if rk is not None:
            self._lib.rd_kafka_destroy(rk)

    def __enter__(self) -> MockKafkaCluster:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    def __del__(self) -> None:
        # A safety net for clusters nobody closed; attributes may be missing if
        # __init__ failed early, and at interpreter exit anything may already be gone.
        try:
            self.close()
        except Exception:
            pass

    def __repr__(self) -> str:
        state = "closed" if self.closed else self._bootstrap_servers
        return f"MockKafkaCluster(num_brokers={self.num_brokers}, {state})"
