"""RocksDB option presets and the one block cache a database shares between its column families.

:func:`build_options` returns a :class:`RocksDBOptions`: one ``rocksdict.Options`` used
for the database *and* for every column family (plus one variant for short-lived column
families, below), whose block-based table factories point at one ``rocksdict.Cache``.
Creating options (or a cache) per column family multiplies memory by the number of
column families (Quix Streams issue #1137), so nothing in this package ever does.

Presets:

``"default"``
    RocksDB's defaults plus a shared block cache, whole-key bloom filters and LZ4.
    Right for tests and state that fits in memory.
``"large-state"``
    Tuned to cut compaction I/O when state is much larger than memory: larger write
    buffers, merged before flushing, and larger target files (fewer, larger flushes and
    files), level compaction with dynamic level bytes (bounded space amplification), one
    memtable budget across all column families, whole-key bloom filters whose blocks live
    in the cache (L0 ones pinned), LZ4 above the bottommost level and ZSTD at it (most
    bytes live there and are rewritten least often), and compaction of files dense with
    deletions (interval-join buffers and timers delete in bulk).

Short-lived column families (time-ordered buffers, whose entries are deleted once the
watermark passes them: see :func:`is_short_lived`) get their own options under either
preset, equal but for a small memtable (:data:`BUFFER_WRITE_BUFFER_BYTES`). Inserting
into a large memtable's skiplist at random keys costs a cache miss per level: on the
interval-join benchmark a 64 MiB memtable spent about 1.7 µs per write, a 4 MiB one
about 0.8 µs (and 0.16 µs for keys written in order). The entries die young anyway, so
flushing small memtables early costs little.

Knobs rocksdict 0.3.29 does not expose, hence not set: ``compaction_pri``,
``periodic_compaction_seconds``, ``ttl``, ``optimize_filters_for_memory``, ribbon
filters. Deliberately not set: a prefix extractor (prefix bloom), because it makes
iterators prefix-bounded unless every read sets ``total_order_seek`` and state scans
cross prefixes (key-group ranges, savepoints); and charging memtables to the block cache
(``WriteBufferManager.new_write_buffer_manager_with_cache``), which would let a burst of
writes evict the read working set; memtables have their own budget instead.

``raw_mode`` is always on: streamcore stores bytes it encoded itself (see
:mod:`streamcore.serde`), never rocksdict's pickled Python objects.
"""

from __future__ import annotations

import os
from dataclasses import dataclass

import rocksdict

from streamcore.errors import ConfigurationError

__all__ = [
    "BUFFER_SEGMENT",
    "BUFFER_WRITE_BUFFER_BYTES",
    "DEFAULT_BLOCK_CACHE_BYTES",
    "LARGE_STATE_BLOCK_CACHE_BYTES",
    "PRESETS",
    "RocksDBOptions",
    "build_options",
    "check_raw_mode",
    "is_short_lived",
]

PRESETS = ("default", "large-state")
DEFAULT_BLOCK_CACHE_BYTES = 64 << 20
LARGE_STATE_BLOCK_CACHE_BYTES = 512 << 20

_MiB = 1 << 20

#: memtable size of short-lived column families (time-ordered buffers).
BUFFER_WRITE_BUFFER_BYTES = 4 * _MiB

#: the path segment that marks a column family name as short-lived (``uid/~buffer/name``).
BUFFER_SEGMENT = "~buffer"


def is_short_lived(name: str) -> bool:
    """Whether column family ``name`` holds a time-ordered buffer (a ``~buffer`` path segment).

    >>> is_short_lived("join/~buffer/left"), is_short_lived("join/counts")
    (True, False)
    """
    return BUFFER_SEGMENT in name.split("/")


_RAW_ONLY_MESSAGE = "raw mode only support bytes"


@dataclass(frozen=True, slots=True)
class RocksDBOptions:
    """Options for one database: used for the database and for every column family.

    Attributes:
        options: the ``rocksdict.Options`` (raw mode) of the database and of each column family.
        buffer_options: the options of short-lived column families (:func:`is_short_lived`):
            ``options`` with a small memtable, the same block cache. ``None`` for
            caller-supplied options, which then apply to every column family.
        block_cache: the single block cache every column family reads through, or ``None``
            when the caller supplied their own ``rocksdict.Options`` (their table settings
            are used as given).
        preset: the preset name, or ``"custom"`` for caller-supplied options.
    """

    options: rocksdict.Options
    block_cache: rocksdict.Cache | None
    preset: str
    buffer_options: rocksdict.Options | None = None

    def for_column_family(self, name: str) -> rocksdict.Options:
        """The options column family ``name`` is created or opened with."""
        if self.buffer_options is not None and is_short_lived(name):
            return self.buffer_options
        return self.options


def build_options(
    preset: str | rocksdict.Options | RocksDBOptions = "default",
    block_cache_bytes: int | None = None,
) -> RocksDBOptions:
    """Build the options of one database from a preset name or caller-supplied options.

    Args:
        preset: ``"default"``, ``"large-state"``, a ``rocksdict.Options`` created with
            ``raw_mode=True`` (``create_if_missing`` and ``create_missing_column_families``
            are switched on in it), or an already built :class:`RocksDBOptions` (returned
            unchanged).
        block_cache_bytes: capacity of the block cache shared by every column family;
            ``None`` takes the preset's default (64 MiB, or 512 MiB for ``"large-state"``).
            Not allowed with caller-supplied options, which carry their own table settings.

    Call it once per database: every call creates a new cache.

    Raises:
        ConfigurationError: unknown preset, a bad cache size, or options without raw mode.

    >>> build_options("large-state", block_cache_bytes=32 << 20).preset
    'large-state'
    """
    if isinstance(preset, RocksDBOptions):
        return preset
    if isinstance(preset, rocksdict.Options):
        if block_cache_bytes is not None:
            msg = (
                "block_cache_bytes cannot be combined with your own rocksdict.Options; "
                "set a block cache in your BlockBasedOptions instead"
            )
            raise ConfigurationError(msg)
        check_raw_mode(preset)
        preset.create_if_missing(True)
        preset.create_missing_column_families(True)
        return RocksDBOptions(preset, None, "custom", None)
    if preset not in PRESETS:
        msg = (
            f"unknown RocksDB options preset {preset!r}; use one of {', '.join(map(repr, PRESETS))} "
            "or pass a rocksdict.Options(raw_mode=True)"
        )
        raise ConfigurationError(msg)
    if block_cache_bytes is None:
        block_cache_bytes = (
            LARGE_STATE_BLOCK_CACHE_BYTES if preset == "large-state" else DEFAULT_BLOCK_CACHE_BYTES
        )
    if type(block_cache_bytes) is not int or block_cache_bytes <= 0:
        msg = f"block_cache_bytes must be a positive int (bytes), got {block_cache_bytes!r}"
        raise ConfigurationError(msg)

    cache = rocksdict.Cache(block_cache_bytes)
    opts = _preset_options(preset, cache)
    buffer_opts = _preset_options(preset, cache)
    buffer_opts.set_write_buffer_size(BUFFER_WRITE_BUFFER_BYTES)
    if preset == "large-state":
        buffer_opts.set_min_write_buffer_number_to_merge(1)
    return RocksDBOptions(opts, cache, preset, buffer_opts)


def _preset_options(preset: str, cache: rocksdict.Cache) -> rocksdict.Options:
    """A fresh ``rocksdict.Options`` of ``preset`` reading through ``cache``."""
    opts = rocksdict.Options(raw_mode=True)
    opts.create_if_missing(True)
    opts.create_missing_column_families(True)
    # Each open writes a new LOG file; keep a few for diagnosis, not one per run forever.
    opts.set_keep_log_file_num(4)
    opts.set_compaction_style(rocksdict.DBCompactionStyle.level())
    opts.set_level_compaction_dynamic_level_bytes(True)
    table = rocksdict.BlockBasedOptions()
    table.set_block_cache(cache)
    # Full (not block-based) whole-key filter: point gets of absent keys skip data blocks.
    table.set_bloom_filter(10, False)
    table.set_format_version(5)
    if preset == "default":
        opts.set_compression_type(rocksdict.DBCompressionType.lz4())
    else:
        jobs = max(2, min(8, os.cpu_count() or 2))
        opts.set_max_background_jobs(jobs)
        opts.set_max_subcompactions(max(1, jobs // 2))
        # Larger, fewer memtable flushes and larger files: less write amplification.
        opts.set_write_buffer_size(128 * _MiB)
        opts.set_max_write_buffer_number(4)
        opts.set_min_write_buffer_number_to_merge(2)
        # Total memtable memory across all column families of this database.
        opts.set_db_write_buffer_size(512 * _MiB)
        opts.set_level_zero_file_num_compaction_trigger(4)
        # L1 ~ what L0 holds at the trigger (4 files x 2 merged 128 MiB buffers).
        opts.set_max_bytes_for_level_base(1024 * _MiB)
        opts.set_target_file_size_base(128 * _MiB)
        opts.set_compaction_readahead_size(2 * _MiB)
        opts.set_bytes_per_sync(1 * _MiB)
        opts.set_compression_type(rocksdict.DBCompressionType.lz4())
        opts.set_bottommost_compression_type(rocksdict.DBCompressionType.zstd())
        # Enables the bottommost type above (window bits, level, strategy, dict bytes, enabled).
        opts.set_bottommost_compression_options(-14, 3, 0, 0, True)
        # Mark an SST file for compaction when 8,000 of any 10,000 consecutive entries, or half
        # of all its entries, are tombstones: bulk deletes of expired state stop costing reads.
        opts.add_compact_on_deletion_collector_factory(10_000, 8_000, 0.5)
        table.set_block_size(32 * 1024)
        table.set_cache_index_and_filter_blocks(True)
        table.set_pin_l0_filter_and_index_blocks_in_cache(True)
        table.set_pin_top_level_index_and_filter(True)
    opts.set_block_based_table_factory(table)
    return opts


def check_raw_mode(options: rocksdict.Options) -> None:
    """Raise :class:`ConfigurationError` unless ``options`` was created with ``raw_mode=True``.

    ``rocksdict.Options`` has no getter for raw mode, and opening an existing raw-mode
    database with non-raw options silently rewrites its comparator (it can no longer be
    opened in raw mode afterwards), so the check runs *before* any database is opened: an
    unopened ``SstFileWriter`` built from the options rejects a non-bytes key with
    ``KeyError('raw mode only support bytes')`` in raw mode only (in non-raw mode it
    complains that no file is open). Nothing touches the disk.
    """
    writer = rocksdict.SstFileWriter(options)
    try:
        writer[0] = 0
    except KeyError as exc:
        if _RAW_ONLY_MESSAGE in str(exc):
            return
    except Exception:
        pass
    finally:
        del writer
    msg = (
        "rocksdict.Options passed to the RocksDB state backend must be created with "
        "rocksdict.Options(raw_mode=True): streamcore stores its own encoded bytes"
    )
    raise ConfigurationError(msg)
