"""Stable key hashing into key groups: the unit of state ownership (Flink's max parallelism).

A key group is ``hash(encode_key(key)) % max_parallelism`` where the hash is CRC-32
mixed by a multiplicative finaliser. It never uses Python's ``hash()``, which is salted
per process, so a key lands in the same key group in every process and every run:
checkpoints written by one process restore in another, and later, key groups can move
between processes.
"""

from __future__ import annotations

import zlib
from typing import Any

from streamcore.errors import ConfigurationError
from streamcore.serde import encode_key

__all__ = [
    "DEFAULT_MAX_PARALLELISM",
    "MAX_MAX_PARALLELISM",
    "KeyGroupRange",
    "check_max_parallelism",
    "key_group_for",
    "key_group_for_encoded",
]

DEFAULT_MAX_PARALLELISM = 128
MAX_MAX_PARALLELISM = 1 << 15
_crc32 = zlib.crc32


def key_group_for_encoded(encoded_key: bytes, max_parallelism: int) -> int:
    """Key group of a key already encoded with :func:`streamcore.serde.encode_key`."""
    h = (_crc32(encoded_key) * 0x9E3779B1) & 0xFFFFFFFF
    return (h >> 8) % max_parallelism


def key_group_for(key: Any, max_parallelism: int = DEFAULT_MAX_PARALLELISM) -> int:
    """Return the key group of ``key``: stable across processes and runs.

    Raises:
        KeyEncodingError: the key is of a type with no stable encoding.

    >>> key_group_for("user-1", 128) == key_group_for("user-1", 128)
    True
    >>> 0 <= key_group_for(42, 128) < 128
    True
    """
    return key_group_for_encoded(encode_key(key), max_parallelism)


def check_max_parallelism(max_parallelism: int) -> int:
    """Validate a max parallelism (number of key groups); returns it."""
    if type(max_parallelism) is not int or not 1 <= max_parallelism <= MAX_MAX_PARALLELISM:
        msg = f"max_parallelism must be an int in [1, {MAX_MAX_PARALLELISM}], got {max_parallelism!r}"
        raise ConfigurationError(msg)
    return max_parallelism


class KeyGroupRange:
    """An inclusive range of key groups ``[start, end]`` owned by one process."""

    __slots__ = ("end", "start")

    def __init__(self, start: int, end: int) -> None:
        if start > end or start < 0:
            msg = f"invalid key group range [{start}, {end}]"
            raise ConfigurationError(msg)
        self.start = start
        self.end = end

    @classmethod
    def all(cls, max_parallelism: int) -> KeyGroupRange:
        """The range of every key group of a job with this max parallelism."""
        return cls(0, max_parallelism - 1)

    def __contains__(self, key_group: object) -> bool:
        return isinstance(key_group, int) and self.start <= key_group <= self.end

    def __iter__(self):
        return iter(range(self.start, self.end + 1))

    def __len__(self) -> int:
        return self.end - self.start + 1

    def __eq__(self, other: object) -> bool:
        return isinstance(other, KeyGroupRange) and (self.start, self.end) == (other.start, other.end)

    def __hash__(self) -> int:
        return hash((self.start, self.end))

    def __repr__(self) -> str:
        return f"KeyGroupRange({self.start}, {self.end})"
