"""The RocksDB state backend's bytes layer: database, column-family stores, option presets.

Only this package imports rocksdict. The typed keyed-state handles are built on
:class:`RocksDBStore`; operators never see this layer.
"""

from streamcore.state.rocksdb.db import RocksDBDatabase
from streamcore.state.rocksdb.options import PRESETS, RocksDBOptions, build_options
from streamcore.state.rocksdb.store import RocksDBStore, prefix_upper_bound

__all__ = [
    "PRESETS",
    "RocksDBDatabase",
    "RocksDBOptions",
    "RocksDBStore",
    "build_options",
    "prefix_upper_bound",
]
