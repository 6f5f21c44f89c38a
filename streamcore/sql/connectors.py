"""Connectors of ``CREATE TABLE ... WITH ('connector' = ...)``: sources, sinks and lookups.

Every connector is built on streamcore's own sources and sinks, so SQL jobs checkpoint
and restore as DataStream jobs do:

==================  =========================================  ===================================
connector           source                                     sink
==================  =========================================  ===================================
``datagen``         :meth:`~StreamEnvironment.from_generator`  --
``filesystem``      the files under ``path`` (bounded)         :class:`~streamcore.FileSink` (exactly once)
``kafka``           :class:`~streamcore.KafkaSource`           :class:`~streamcore.KafkaSink` (append only)
``upsert-kafka``    --                                         :class:`~streamcore.KafkaSink`, keyed by the
                                                               primary key, tombstones for deletes
``print``           --                                         :class:`~streamcore.PrintSink`
``blackhole``       --                                         drops every row
``jdbc``            lookup joins only: ``SQLiteLookup`` / ``PostgresLookup`` with a ``LookupCache``
==================  =========================================  ===================================

Formats ``json``, ``csv`` and ``raw`` (one STRING/BYTES column). Timestamps are written
as ``yyyy-MM-dd HH:mm:ss.SSS`` text and read from text or int milliseconds.

An unknown option, a missing required option or a bad value raises
:class:`~streamcore.errors.SqlConnectorError` naming the option and what is valid.
"""

from __future__ import annotations

import csv
import io
import json
import random
import re
from collections.abc import Callable
from pathlib import Path
from typing import Any

from streamcore.changelog import Change, RowKind
from streamcore.errors import SqlConnectorError
from streamcore.sinks.base import PrintSink, Sink
from streamcore.sql.catalog import TableDef
from streamcore.sql.types import edge_converter, format_timestamp

__all__ = ["BlackHoleSink", "build_lookup", "build_sink", "build_source", "parse_duration_ms"]

_COMMON = {"connector"}
_FORMAT = {"format", "json.ignore-parse-errors", "json.fail-on-missing-field", "csv.field-delimiter"}
SOURCE_OPTIONS: dict[str, set[str]] = {
    "datagen": {"number-of-rows", "seed"},
    "filesystem": {
        "path",
        *_FORMAT,
        "sink.rolling-policy.file-size",
        "sink.rolling-policy.rollover-interval",
    },
    "kafka": {
        "topic",
        "properties.bootstrap.servers",
        "properties.group.id",
        "scan.startup.mode",
        "scan.startup.timestamp-millis",
        "scan.bounded.mode",
        "sink.delivery-guarantee",
        "sink.transactional-id-prefix",
        *_FORMAT,
        "value.format",
    },
    "upsert-kafka": {
        "topic",
        "properties.bootstrap.servers",
        "key.format",
        "value.format",
        "sink.delivery-guarantee",
    },
    "print": {"print-identifier", "standard-error"},
    "blackhole": set(),
    "jdbc": {
        "url",
        "table-name",
        "username",
        "password",
        "lookup.cache.max-rows",
        "lookup.cache.ttl",
        "lookup.cache.caching-missing-key",
        "lookup.cache",
        "lookup.partial-cache.max-rows",
        "lookup.partial-cache.expire-after-write",
        "lookup.partial-cache.cache-missing-key",
    },
}
CONNECTORS = sorted(SOURCE_OPTIONS)
FORMATS = ("json", "csv", "raw")
_DATAGEN_FIELD = re.compile(r"fields\.([^.]+)\.(kind|min|max|start|end|length|null-rate|values)")


def _fail(table: TableDef, message: str) -> Any:
    raise SqlConnectorError(f"table {table.name!r}: {message}")


def check_options(table: TableDef) -> str:
    """Validate ``table``'s options against its connector; returns the connector name."""
    opts = table.options
    connector = opts.get("connector")
    if connector is None:
        _fail(table, f"the WITH options need 'connector'; valid connectors: {', '.join(CONNECTORS)}")
    if connector not in SOURCE_OPTIONS:
        _fail(table, f"unknown connector {connector!r}; valid connectors: {', '.join(CONNECTORS)}")
    valid = SOURCE_OPTIONS[connector] | _COMMON
    if connector == "datagen" and "rows-per-second" in opts:
        _fail(
            table,
            "option 'rows-per-second' is not supported: datagen generates rows as fast as the job "
            "reads them; bound the table with 'number-of-rows'",
        )
    for key in opts:
        if key in valid or (connector == "datagen" and _DATAGEN_FIELD.fullmatch(key)):
            continue
        if connector in ("kafka", "upsert-kafka") and key.startswith("properties."):
            continue
        _fail(
            table,
            f"unknown option {key!r} for connector {connector!r}; valid options: {', '.join(sorted(valid))}",
        )
    fmt = opts.get("format", opts.get("value.format"))
    if fmt is not None and fmt not in FORMATS:
        _fail(table, f"option 'format' = {fmt!r} is not valid; valid formats: {', '.join(FORMATS)}")
    return connector


def _require(table: TableDef, key: str) -> str:
    value = table.options.get(key)
    if value is None or value == "":
        _fail(table, f"connector {table.options.get('connector')!r} needs option {key!r}")
    return value  # type: ignore[return-value]


def _int_option(table: TableDef, key: str, default: int | None) -> int | None:
    value = table.options.get(key)
    if value is None:
        return default
    try:
        n = int(value)
    except ValueError:
        n = -1
    if n < 0:
        _fail(table, f"option {key!r} = {value!r} must be an integer >= 0")
    return n


_DURATION = re.compile(
    r"\s*(\d+)\s*(ms|milli|millis|millisecond|milliseconds|s|sec|secs|second|seconds|"
    r"min|mins|minute|minutes|m|h|hour|hours|d|day|days)?\s*",
    re.IGNORECASE,
)
_DURATION_MS = {
    "ms": 1,
    "milli": 1,
    "millis": 1,
    "millisecond": 1,
    "milliseconds": 1,
    "s": 1000,
    "sec": 1000,
    "secs": 1000,
    "second": 1000,
    "seconds": 1000,
    "min": 60_000,
    "mins": 60_000,
    "minute": 60_000,
    "minutes": 60_000,
    "m": 60_000,
    "h": 3_600_000,
    "hour": 3_600_000,
    "hours": 3_600_000,
    "d": 86_400_000,
    "day": 86_400_000,
    "days": 86_400_000,
}


def parse_duration_ms(text: str, what: str) -> int:
    """Flink's duration text (``'10 min'``, ``'30s'``, ``'1 h'``, ``'500 ms'``; bare numbers are ms).

    >>> parse_duration_ms("10 min", "ttl")
    600000
    """
    m = _DURATION.fullmatch(text)
    if m is None:
        msg = f"{what} = {text!r} is not a duration; write e.g. '500 ms', '30 s', '10 min', '1 h', '1 d'"
        raise SqlConnectorError(msg)
    return int(m.group(1)) * _DURATION_MS[(m.group(2) or "ms").lower()]


# -- formats ---------------------------------------------------------------------------------
def _decoder(table: TableDef, fmt: str) -> Callable[[Any], tuple[Any, ...]]:
    cols = table.physical
    names = [c.name for c in cols]
    convs = [edge_converter(c.type) for c in cols]
    if fmt == "json":

        def from_json(data: Any) -> tuple[Any, ...]:
            obj = json.loads(data) if isinstance(data, (bytes, str)) else data
            return tuple(conv(obj.get(n)) for conv, n in zip(convs, names, strict=True))

        return from_json
    if fmt == "csv":
        delim = table.options.get("csv.field-delimiter", ",")

        def from_csv(data: Any) -> tuple[Any, ...]:
            text = data.decode() if isinstance(data, bytes) else data
            fields = next(csv.reader([text], delimiter=delim))
            fields += [""] * (len(convs) - len(fields))
            return tuple(conv(v) for conv, v in zip(convs, fields, strict=False))

        return from_csv
    if len(cols) != 1 or cols[0].type.name not in ("STRING", "BYTES"):
        _fail(table, "format 'raw' needs exactly one STRING or BYTES column")
    if cols[0].type.name == "STRING":
        return lambda data: (data.decode() if isinstance(data, bytes) else data,)
    return lambda data: (data,)


def _encoder(
    table: TableDef, fmt: str, names: list[str], types: list[Any]
) -> Callable[[tuple[Any, ...]], str]:
    times = [i for i, t in enumerate(types) if t.is_time]

    def edge(row: tuple[Any, ...]) -> list[Any]:
        vals = list(row)
        for i in times:
            if vals[i] is not None:
                vals[i] = format_timestamp(vals[i])
        return vals

    if fmt == "json":
        return lambda row: json.dumps(dict(zip(names, edge(row), strict=True)), separators=(",", ":"))
    if fmt == "csv":
        delim = table.options.get("csv.field-delimiter", ",")

        def to_csv(row: tuple[Any, ...]) -> str:
            buf = io.StringIO()
            csv.writer(buf, delimiter=delim, lineterminator="").writerow(
                ["" if v is None else v for v in edge(row)]
            )
            return buf.getvalue()

        return to_csv
    if len(names) != 1:
        _fail(table, "format 'raw' needs exactly one column")
    return lambda row: "" if row[0] is None else str(row[0])


# -- sources ---------------------------------------------------------------------------------
def _datagen(table: TableDef) -> Callable[[int, int], tuple[Any, ...]]:
    opts = table.options
    seed = _int_option(table, "seed", 0) or 0
    gens: list[Callable[[random.Random, int], Any]] = []
    for col in table.physical:
        kind = opts.get(f"fields.{col.name}.kind", "random")
        t = col.type
        if kind == "sequence":
            start = int(opts.get(f"fields.{col.name}.start", "0"))
            end = opts.get(f"fields.{col.name}.end")
            if end is None:
                _fail(table, f"datagen sequence field {col.name!r} needs 'fields.{col.name}.end'")
            conv_seq = edge_converter(t)
            gens.append(lambda _rng, n, s=start, c=conv_seq: c(s + n))
            continue
        if kind != "random":
            _fail(table, f"option 'fields.{col.name}.kind' = {kind!r}; valid values: random, sequence")
        lo = opts.get(f"fields.{col.name}.min")
        hi = opts.get(f"fields.{col.name}.max")
        values = opts.get(f"fields.{col.name}.values")
        if values is not None:
            choices = [v.strip() for v in values.split(",")]
            conv = edge_converter(t)
            choices_typed = [conv(v) for v in choices]
            gens.append(lambda rng, _n, c=choices_typed: rng.choice(c))
        elif t.is_integer:
            a, b = int(lo or 0), int(hi or 1_000_000)
            gens.append(lambda rng, _n, a=a, b=b: rng.randint(a, b))
        elif t.is_numeric:
            a2, b2 = float(lo or 0), float(hi or 1.0)
            gens.append(lambda rng, _n, a=a2, b=b2: rng.uniform(a, b))
        elif t.is_time:
            gens.append(lambda _rng, n: 1_700_000_000_000 + n * 1000)
        elif t.name == "BOOLEAN":
            gens.append(lambda rng, _n: rng.random() < 0.5)
        else:
            length = int(opts.get(f"fields.{col.name}.length", "8"))
            gens.append(lambda rng, _n, k=length: "".join(rng.choices("abcdefghijklmnopqrstuvwxyz", k=k)))

    def row(split: int, offset: int) -> tuple[Any, ...]:
        rng = random.Random(seed * 1_000_003 + split * 10_007 + offset)
        return tuple(g(rng, offset) for g in gens)

    return row


def _read_files(table: TableDef, fmt: str) -> list[tuple[Any, ...]]:
    root = Path(_require(table, "path"))
    decode = _decoder(table, fmt)
    files = (
        [root]
        if root.is_file()
        else sorted(p for p in root.rglob("*") if p.is_file() and not p.name.startswith("."))
    )
    rows = []
    for f in files:
        for line in f.read_text().splitlines():
            if line.strip():
                rows.append(decode(line))
    return rows


def build_source(env: Any, table: TableDef, timestamp: Callable[[Any], int] | None, watermarks: Any) -> Any:
    """A DataStream of ``table``'s physical rows (tuples)."""
    name = f"source:{table.name}"
    if table.stream is not None:
        return table.stream
    if table.rows is not None:
        return env.from_collection(table.rows, timestamp=timestamp, watermarks=watermarks, name=name)
    connector = check_options(table)
    fmt = table.options.get("format", table.options.get("value.format", "json"))
    if connector == "datagen":
        count = _int_option(table, "number-of-rows", None)
        # A sequence field ends the table at its end, as in Flink.
        for col in table.physical:
            if table.options.get(f"fields.{col.name}.kind") == "sequence":
                start = int(table.options.get(f"fields.{col.name}.start", "0"))
                length = int(table.options.get(f"fields.{col.name}.end", str(start))) - start + 1
                count = length if count is None else min(count, length)
        return env.from_generator(
            _datagen(table), count=count, timestamp=timestamp, watermarks=watermarks, name=name
        )
    if connector == "filesystem":
        rows = _read_files(table, fmt)
        return env.from_collection(rows, timestamp=timestamp, watermarks=watermarks, name=name)
    if connector == "kafka":
        from streamcore.sources.kafka import KafkaSource

        modes = {"earliest-offset": "earliest", "latest-offset": "latest", "group-offsets": "committed"}
        mode = table.options.get("scan.startup.mode", "group-offsets")
        if mode == "timestamp":
            start: Any = _int_option(table, "scan.startup.timestamp-millis", None)
            if start is None:
                _fail(table, "scan.startup.mode 'timestamp' needs 'scan.startup.timestamp-millis'")
        elif mode in modes:
            start = modes[mode]
        else:
            _fail(
                table,
                f"option 'scan.startup.mode' = {mode!r}; valid values: {', '.join([*modes, 'timestamp'])}",
            )
        bounded = table.options.get("scan.bounded.mode", "unbounded")
        if bounded not in ("unbounded", "latest-offset"):
            _fail(table, f"option 'scan.bounded.mode' = {bounded!r}; valid values: unbounded, latest-offset")
        source = KafkaSource(
            _require(table, "properties.bootstrap.servers"),
            _require(table, "topic"),
            table.options.get("properties.group.id", "streamcore-sql"),
            value_deserializer=_decoder(table, fmt),
            starting_offsets=start,
            stopping_offsets="latest" if bounded == "latest-offset" else None,
            timestamp=timestamp,
        )
        return env.from_source(source, timestamp=timestamp, watermarks=watermarks, name=name)
    _fail(
        table,
        f"connector {connector!r} cannot be read from "
        f"(it is a sink{' or a lookup table' if connector == 'jdbc' else ''})",
    )
    return None


# -- sinks -----------------------------------------------------------------------------------
class BlackHoleSink(Sink):
    """Drops every record (the ``blackhole`` connector: for benchmarks and dry runs)."""

    def write_batch(self, values: list[Any], timestamps: list[int] | None) -> None:
        """Drop the batch."""


class _ChangelogPrintSink(PrintSink):
    """Prints rows as Flink does: ``+I(a, b)``, ``-U(...)`` for updating results."""

    def write_batch(self, values: list[Any], timestamps: list[int] | None) -> None:
        super().write_batch(
            [v if isinstance(v, Change) else Change(RowKind.INSERT, v) for v in values], timestamps
        )


def build_sink(
    table: TableDef, names: list[str], types: list[Any], updating: bool
) -> tuple[Sink, Callable[[Any], Any] | None]:
    """The sink of ``INSERT INTO table``, and a map to apply to each record before it (or ``None``)."""
    if table.stream is not None or table.rows is not None:
        _fail(table, "a table made from a DataStream or from elements cannot be written to")
    connector = check_options(table)
    fmt = table.options.get("format", table.options.get("value.format", "json"))
    if connector == "print":
        return _ChangelogPrintSink(table.options.get("print-identifier", "")), None
    if connector == "blackhole":
        return BlackHoleSink(), None
    if updating and connector != "upsert-kafka":
        _fail(
            table,
            f"connector {connector!r} accepts only append-only results, and this query produces an updating "
            "result (+I/-U/+U/-D); write it to 'upsert-kafka' or 'print', "
            "or read it with to_changelog_stream",
        )
    encode = _encoder(table, fmt, names, types)
    if connector == "filesystem":
        from streamcore.sinks.file import FileSink

        return FileSink(_require(table, "path"), encoder=encode), None
    if connector == "kafka":
        from streamcore.sinks.kafka import KafkaSink

        guarantee = table.options.get("sink.delivery-guarantee", "at-least-once")
        deliveries = {
            "at-least-once": "at_least_once",
            "exactly-once": "exactly_once",
            "none": "at_least_once",
        }
        if guarantee not in deliveries:
            _fail(
                table,
                f"option 'sink.delivery-guarantee' = {guarantee!r}; valid values: {', '.join(deliveries)}",
            )
        sink = KafkaSink(
            _require(table, "properties.bootstrap.servers"),
            _require(table, "topic"),
            value_serializer=lambda row: encode(row).encode(),
            delivery=deliveries[guarantee],
            transactional_id_prefix=table.options.get("sink.transactional-id-prefix"),
        )
        return sink, None
    if connector == "upsert-kafka":
        from streamcore.sinks.kafka import KafkaSink

        if not table.primary_key:
            _fail(table, "connector 'upsert-kafka' needs a PRIMARY KEY (...) NOT ENFORCED")
        lower = [n.lower() for n in names]
        try:
            key_idx = [lower.index(k.lower()) for k in table.primary_key]
        except ValueError:
            _fail(table, f"primary key {table.primary_key} is not among the columns {names}")
        key_names = [names[i] for i in key_idx]

        def to_record(change: Any) -> tuple[Any, Any]:
            row = change.row if isinstance(change, Change) else change
            key = json.dumps(
                dict(zip(key_names, [row[i] for i in key_idx], strict=True)), separators=(",", ":")
            )
            if isinstance(change, Change) and not change.kind.is_addition:
                return (key, None)
            return (key, encode(row))

        def keep(change: Any) -> bool:
            # -U is followed by its +U of the same key: only the +U is written.
            return not (isinstance(change, Change) and change.kind == RowKind.UPDATE_BEFORE)

        sink = KafkaSink(
            _require(table, "properties.bootstrap.servers"),
            _require(table, "topic"),
            key=lambda rec: rec[0],
            key_serializer=lambda k: k.encode(),
            value_serializer=lambda rec: None if rec[1] is None else rec[1].encode(),  # type: ignore[arg-type,return-value]
        )
        sink.sql_filter = keep  # type: ignore[attr-defined]
        return sink, to_record
    _fail(
        table,
        f"connector {connector!r} cannot be written to; "
        "sinks: blackhole, filesystem, kafka, print, upsert-kafka",
    )
    return None  # pragma: no cover


# -- lookups ---------------------------------------------------------------------------------
def build_lookup(table: TableDef, key: str) -> tuple[Any, Any]:
    """The :class:`~streamcore.lookup.Lookup` and ``LookupCache`` (or ``None``) of a ``jdbc`` table."""
    connector = check_options(table)
    if connector != "jdbc":
        _fail(table, f"a lookup join (FOR SYSTEM_TIME AS OF) needs a 'jdbc' table, this one is {connector!r}")
    from streamcore.lookup import LookupCache, PostgresLookup, SQLiteLookup

    url = _require(table, "url")
    name = table.options.get("table-name", table.name)
    columns = [c.name for c in table.physical]
    if url.startswith(("jdbc:sqlite:", "sqlite:")):
        path = url.split("sqlite:", 1)[1].removeprefix("//")
        lookup: Any = SQLiteLookup(path, name, key, columns=columns)
    elif url.startswith(("jdbc:postgresql:", "postgresql:", "postgres:")):
        dsn = url.removeprefix("jdbc:")
        lookup = PostgresLookup(dsn, name, key, columns=columns)
    else:
        _fail(table, f"option 'url' = {url!r}; valid: 'jdbc:sqlite:<path>' or 'jdbc:postgresql://host/db'")
    opts = table.options
    max_rows = opts.get("lookup.cache.max-rows", opts.get("lookup.partial-cache.max-rows"))
    ttl = opts.get("lookup.cache.ttl", opts.get("lookup.partial-cache.expire-after-write"))
    missing = opts.get(
        "lookup.cache.caching-missing-key", opts.get("lookup.partial-cache.cache-missing-key", "true")
    )
    if missing not in ("true", "false"):
        _fail(table, f"option 'lookup.cache.caching-missing-key' = {missing!r}; valid values: true, false")
    mode = opts.get("lookup.cache", "PARTIAL" if max_rows else "NONE").upper()
    if mode not in ("NONE", "PARTIAL"):
        _fail(table, f"option 'lookup.cache' = {mode!r}; valid values: NONE, PARTIAL")
    if mode == "NONE" and max_rows is None:
        return lookup, None
    rows = (
        _int_option(
            table,
            "lookup.cache.max-rows" if "lookup.cache.max-rows" in opts else "lookup.partial-cache.max-rows",
            10_000,
        )
        or 10_000
    )
    ttl_ms = parse_duration_ms(ttl, "option 'lookup.cache.ttl'") if ttl else None
    return lookup, LookupCache(max_rows=rows, ttl_ms=ttl_ms, cache_missing=missing == "true")
