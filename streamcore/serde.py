"""Every byte layout streamcore writes: value serde and order-preserving key encoding.

Values are msgpack with two extension types, tuples and ints beyond 64 bits (the table
is in :func:`msgpack_dumps`); it is the only value codec (state, accumulators,
checkpoints). Keys (the key of a keyed stream, map-state user keys,
namespaces, timestamps) use an order-preserving, self-delimiting encoding so that
byte order equals value order and a range of values is a range of keys:

============  ======  =================================================================
type          tag     body
============  ======  =================================================================
None          0x05    (empty)
int / bool    0x10    8 bytes big-endian of ``value + 2**63`` (int64 range)
float         0x18    IEEE-754 double, sign bit flipped (negatives: all bits inverted)
str           0x20    UTF-8, ``0x00`` escaped as ``0x00 0xFF``, terminated by ``0x00``
bytes         0x28    raw, ``0x00`` escaped as ``0x00 0xFF``, terminated by ``0x00``
tuple         0x30    encoded elements, terminated by ``0x00`` (below every tag)
============  ======  =================================================================

Values that compare equal in Python encode equally (``True`` and ``1``, ``2.0`` and
``2``), so the heap backend (Python dicts) and the RocksDB backend (bytes) agree on
what "the same key" is. Within one type, ``a < b`` iff ``encode_key(a) < encode_key(b)``;
across types, order is by tag. No encoding is a prefix of another's.

Timestamps inside composite keys are 8 bytes big-endian of ``ts + 2**63`` (see
:func:`encode_ts`), so that negative times sort before positive ones.

The RocksDB state key of a keyed state entry is::

    key_group (2 bytes, big-endian) + encode_key(key) + namespace bytes (+ user key / ts / seq)
"""

from __future__ import annotations

import json
import struct
import threading
from collections.abc import Callable
from typing import Any

import msgpack

from streamcore.changelog import Change, RowKind
from streamcore.errors import KeyEncodingError, SerializationError

__all__ = [
    "KEY_GROUP_BYTES",
    "MAX_INT64",
    "MIN_INT64",
    "decode_key",
    "decode_ts",
    "encode_key",
    "encode_key_group",
    "encode_seq",
    "encode_ts",
    "encode_ts_seq",
    "find_unencodable",
    "json_dumps",
    "json_loads",
    "msgpack_dumps",
    "msgpack_loads",
]

MIN_INT64 = -(2**63)
MAX_INT64 = 2**63 - 1
_OFFSET = 2**63
KEY_GROUP_BYTES = 2

_TAG_NONE = 0x05
_TAG_INT = 0x10
_TAG_FLOAT = 0x18
_TAG_STR = 0x20
_TAG_BYTES = 0x28
_TAG_TUPLE = 0x30
_END = b"\x00"

_pack_q = struct.Struct(">Q").pack
_unpack_q = struct.Struct(">Q").unpack_from
_pack_h = struct.Struct(">H").pack
_pack_qq = struct.Struct(">QQ").pack
_pack_d = struct.Struct(">d").pack
_unpack_d = struct.Struct(">d").unpack

_INT_TAG = bytes([_TAG_INT])
_STR_TAG = bytes([_TAG_STR])
_BYTES_TAG = bytes([_TAG_BYTES])
_NONE_ENC = bytes([_TAG_NONE])


def encode_ts(ts: int) -> bytes:
    """Encode a millisecond timestamp as 8 order-preserving bytes (``ts + 2**63``, big-endian)."""
    return _pack_q(ts + _OFFSET)


def decode_ts(data: bytes, offset: int = 0) -> int:
    """Decode 8 bytes written by :func:`encode_ts` starting at ``offset``."""
    return _unpack_q(data, offset)[0] - _OFFSET


def encode_ts_seq(ts: int, seq: int) -> bytes:
    """``encode_ts(ts) + encode_seq(seq)`` in one pack (the suffix of every buffered entry)."""
    return _pack_qq(ts + _OFFSET, seq)


def encode_seq(seq: int) -> bytes:
    """Encode a non-negative sequence number (tie-breaker for equal timestamps) as 8 bytes."""
    return _pack_q(seq)


def encode_key_group(key_group: int) -> bytes:
    """Encode a key group as 2 bytes big-endian (the first bytes of every RocksDB state key)."""
    return _pack_h(key_group)


def _escape(raw: bytes) -> bytes:
    if b"\x00" in raw:
        raw = raw.replace(b"\x00", b"\x00\xff")
    return raw + _END


def _encode_into(key: Any, out: list[bytes]) -> None:
    t = type(key)
    if t is str:
        out.append(_STR_TAG)
        out.append(_escape(key.encode("utf-8", "surrogatepass")))
    elif t is int or t is bool:
        if not MIN_INT64 <= key <= MAX_INT64:
            msg = f"int key {key} is outside the int64 range; encode it as a str or bytes key instead"
            raise KeyEncodingError(msg)
        out.append(_INT_TAG)
        out.append(_pack_q(key + _OFFSET))
    elif t is tuple:
        out.append(b"\x30")
        for item in key:
            _encode_into(item, out)
        out.append(_END)
    elif t is bytes:
        out.append(_BYTES_TAG)
        out.append(_escape(key))
    elif t is float:
        if key != key:
            msg = "float key NaN has no order and is never equal to itself; use a different key"
            raise KeyEncodingError(msg)
        if key.is_integer() and MIN_INT64 <= key <= MAX_INT64:
            _encode_into(int(key), out)
            return
        (bits,) = struct.unpack(">Q", _pack_d(key))
        bits = bits ^ 0xFFFFFFFFFFFFFFFF if bits >> 63 else bits | (1 << 63)
        out.append(b"\x18")
        out.append(_pack_q(bits))
    elif key is None:
        out.append(_NONE_ENC)
    elif isinstance(key, (str, int, bytes, float, tuple)):
        # Subclasses (IntEnum, str enums, namedtuples) encode as their base value.
        for base in (bool, int, str, bytes, float, tuple):
            if isinstance(key, base):
                _encode_into(base(key) if base is not tuple else tuple(key), out)
                return
    else:
        msg = (
            f"key of type {t.__name__} has no stable byte encoding; key functions must return "
            "int, str, bytes, float, bool, None or a tuple of these"
        )
        raise KeyEncodingError(msg)


def encode_key(key: Any) -> bytes:
    """Encode a key to order-preserving, self-delimiting bytes.

    Raises:
        KeyEncodingError: the key is not int/str/bytes/float/bool/None or a tuple of these,
            is a NaN, or an int outside int64.

    >>> encode_key(-1) < encode_key(0) < encode_key(1)
    True
    >>> encode_key(("a", 1)) < encode_key(("a", 2)) < encode_key(("b",))
    True
    """
    t = type(key)
    if t is str:
        raw = key.encode("utf-8", "surrogatepass")
        if b"\x00" in raw:
            raw = raw.replace(b"\x00", b"\x00\xff")
        return _STR_TAG + raw + _END
    if t is int and MIN_INT64 <= key <= MAX_INT64:
        return _INT_TAG + _pack_q(key + _OFFSET)
    out: list[bytes] = []
    _encode_into(key, out)
    return b"".join(out)


def _decode_escaped(data: bytes, pos: int) -> tuple[bytes, int]:
    parts = []
    while True:
        end = data.index(b"\x00", pos)
        parts.append(data[pos:end])
        if end + 1 < len(data) and data[end + 1] == 0xFF:
            parts.append(b"\x00")
            pos = end + 2
            continue
        return b"".join(parts), end + 1


def _decode_at(data: bytes, pos: int) -> tuple[Any, int]:
    tag = data[pos]
    pos += 1
    if tag == _TAG_INT:
        return _unpack_q(data, pos)[0] - _OFFSET, pos + 8
    if tag == _TAG_STR:
        raw, pos = _decode_escaped(data, pos)
        return raw.decode("utf-8", "surrogatepass"), pos
    if tag == _TAG_BYTES:
        return _decode_escaped(data, pos)
    if tag == _TAG_NONE:
        return None, pos
    if tag == _TAG_FLOAT:
        bits = _unpack_q(data, pos)[0]
        bits = bits ^ (1 << 63) if bits >> 63 else bits ^ 0xFFFFFFFFFFFFFFFF
        return _unpack_d(_pack_q(bits))[0], pos + 8
    if tag == _TAG_TUPLE:
        items = []
        while data[pos] != 0:
            item, pos = _decode_at(data, pos)
            items.append(item)
        return tuple(items), pos + 1
    msg = f"bytes at offset {pos - 1} are not an encoded key (unknown tag 0x{tag:02x})"
    raise KeyEncodingError(msg)


def decode_key(data: bytes, offset: int = 0) -> tuple[Any, int]:
    """Decode one key written by :func:`encode_key`; returns ``(key, offset after it)``."""
    return _decode_at(data, offset)


# -- values: msgpack with two extension types ----------------------------------------------------
_EXT_TUPLE = 1
_EXT_BIGINT = 2
_EXT_CHANGE = 3
#: ints msgpack encodes natively (int64 and uint64); the others use the big-int extension.
_MIN_MSGPACK_INT = -(2**63)
_MAX_MSGPACK_INT = 2**64 - 1


def _big_int(value: int) -> msgpack.ExtType:
    return msgpack.ExtType(_EXT_BIGINT, value.to_bytes(value.bit_length() // 8 + 1, "big", signed=True))


def _msgpack_default(obj: Any) -> Any:
    # strict_types sends tuples and subclasses of builtins here, and msgpack sends ints it
    # cannot encode natively: tuples keep their type (so state read back from RocksDB
    # equals what the heap backend returns), ints keep every bit.
    if type(obj) is Change:
        return msgpack.ExtType(_EXT_CHANGE, _new_packer().pack([int(obj.kind), obj.row]))
    if isinstance(obj, tuple):
        return msgpack.ExtType(_EXT_TUPLE, _new_packer().pack(list(obj)))
    if isinstance(obj, int) and not isinstance(obj, bool):
        if _MIN_MSGPACK_INT <= obj <= _MAX_MSGPACK_INT:
            return int(obj)
        return _big_int(int(obj))
    for base in (bool, float, str, bytes, list, dict):
        if isinstance(obj, base):
            return base(obj)
    msg = f"msgpack cannot encode a value of type {type(obj).__name__}"
    raise TypeError(msg)


def _new_packer() -> msgpack.Packer:
    # A tuple's elements are packed by a packer of their own: a packer is not re-entrant.
    return msgpack.Packer(use_bin_type=True, strict_types=True, default=_msgpack_default)


def _ext_hook(code: int, data: bytes) -> Any:
    if code == _EXT_TUPLE:
        return tuple(_unpackb(data, raw=False, strict_map_key=False, ext_hook=_ext_hook))
    if code == _EXT_BIGINT:
        return int.from_bytes(data, "big", signed=True)
    if code == _EXT_CHANGE:
        kind, row = _unpackb(data, raw=False, strict_map_key=False, ext_hook=_ext_hook)
        return Change(RowKind(kind), row)
    msg = (
        f"msgpack extension type {code} was not written by streamcore (it writes {_EXT_TUPLE} for "
        f"tuples, {_EXT_BIGINT} for ints beyond 64 bits and {_EXT_CHANGE} for changelog rows); "
        "was this state written by another program?"
    )
    raise SerializationError(msg)


# A packer holds a buffer: each thread (the job's, the asynchronous checkpoint writer's)
# packs with its own.
_local = threading.local()


def _thread_packer() -> Callable[[Any], bytes]:
    packer = _new_packer()
    _local.packer = packer
    _local.pack = packer.pack
    return packer.pack  # type: ignore[no-any-return]


def msgpack_dumps(value: Any) -> bytes:
    """Serialize a value with msgpack: the one value codec of streamcore (state, checkpoints).

    Everything msgpack carries natively keeps its type (None, bool, int64/uint64, float
    including nan and inf, str, bytes, list, dict), and two extension types carry the rest:

    ======  ==================  ===============================================================
    code    Python type         payload
    ======  ==================  ===============================================================
    1       tuple               the elements, packed as a msgpack array by this codec
    2       int beyond 64 bits  two's-complement big-endian bytes, as short as the sign allows
    3       changelog.Change    ``[kind, row]`` (kind: Flink's RowKind byte), packed by this codec
    ======  ==================  ===============================================================

    Subclasses of the basic types (IntEnum, namedtuple, str enums) come back as their
    base type. Thread-safe: each thread packs with its own packer.

    Raises:
        SerializationError: the value (or something inside it) has no msgpack encoding.

    >>> msgpack_loads(msgpack_dumps((1, ["a", (2**70, None)])))
    (1, ['a', (1180591620717411303424, None)])
    """
    try:
        pack = _local.pack
    except AttributeError:
        pack = _thread_packer()
    try:
        return pack(value)  # type: ignore[no-any-return]
    except (TypeError, ValueError, OverflowError) as exc:
        _local.packer.reset()
        msg = f"msgpack cannot encode a value of type {type(value).__name__}: {exc}"
        raise SerializationError(msg) from exc


def find_unencodable(value: Any) -> Any:
    """The first value inside ``value`` (itself included) that :func:`msgpack_dumps` cannot encode.

    Returns ``None`` when everything can be encoded. Used to name the culprit in errors.

    >>> find_unencodable([1, ("a", {2, 3})])
    {2, 3}
    """
    if isinstance(value, (list, tuple)):
        for item in value:
            bad = find_unencodable(item)
            if bad is not None:
                return bad
        return None
    if isinstance(value, dict):
        for k, v in value.items():
            bad = find_unencodable(k)
            if bad is None:
                bad = find_unencodable(v)
            if bad is not None:
                return bad
        return None
    if value is None or isinstance(value, (bool, int, float, str, bytes, bytearray)):
        return None
    return value


def msgpack_loads(data: bytes) -> Any:
    """Deserialize bytes written by :func:`msgpack_dumps`.

    Raises:
        SerializationError: an extension type :func:`msgpack_dumps` does not write.
    """
    return _unpackb(data, raw=False, strict_map_key=False, ext_hook=_ext_hook)


_unpackb = msgpack.unpackb


def json_dumps(value: Any) -> bytes:
    """Serialize a value as compact UTF-8 JSON (for Kafka values and files)."""
    return json.dumps(value, separators=(",", ":")).encode()


def json_loads(data: bytes | str) -> Any:
    """Deserialize JSON bytes or text (the usual Kafka value deserializer)."""
    return json.loads(data)


Serializer = Callable[[Any], bytes]
Deserializer = Callable[[bytes], Any]
