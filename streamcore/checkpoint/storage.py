"""Checkpoint storage: the directory layout, durable writes, and every byte format of a checkpoint.

Layout of a checkpoint directory::

    <dir>/shared/                 files shared by incremental checkpoints (RocksDB SST files)
    <dir>/chk-<id>/               files private to one checkpoint
    <dir>/chk-<id>/_metadata      written last, atomically: a checkpoint without it does not exist
    <dir>/savepoints/sp-<id>/     self-contained savepoints (never deleted by retention)

Durability: a file is written to a temporary name, flushed, ``fsync``-ed, renamed into
place, and its directory is ``fsync``-ed (:func:`atomic_write`). Files inside a
checkpoint that is still being built only need ``fsync`` (:func:`write_durable`): they
count only once the metadata, written last, names them.

Metadata file: ``b"SCMD"``, format version (2 bytes), CRC-32 of the payload (4 bytes),
payload length (8 bytes), then the payload in msgpack. A truncated or altered file fails
validation with :class:`CorruptCheckpointError` naming it.

Operator state file: ``b"SCST"``, format version (2 bytes), then msgpack frames. The
metadata lists the frames as *sections* ``[kind, name, key_group, offset, length]``:
one ``head`` frame (the operator image without its rows), then one frame per keyed
state, timer kind or time-ordered buffer **and key group**, so that a reader can load
one state, or the key groups it owns, without decoding the rest.
"""

from __future__ import annotations

import os
import shutil
import struct
import tempfile
import zlib
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from streamcore.errors import CorruptCheckpointError, SerializationError
from streamcore.keygroups import key_group_for
from streamcore.serde import find_unencodable, msgpack_dumps, msgpack_loads

__all__ = [
    "FORMAT_VERSION",
    "METADATA_FILE",
    "CheckpointStorage",
    "StoredCheckpoint",
    "atomic_write",
    "crc32_file",
    "decode_metadata",
    "encode_metadata",
    "encode_operator_image",
    "fsync_path",
    "join_operator_image",
    "read_metadata",
    "read_sections",
    "remove_checkpoint_dir",
    "write_durable",
]

FORMAT_VERSION = 2
METADATA_FILE = "_metadata"
SHARED_DIR = "shared"
SAVEPOINTS_DIR = "savepoints"
CHECKPOINT_PREFIX = "chk-"
SAVEPOINT_PREFIX = "sp-"

_META_MAGIC = b"SCMD"
_STATE_MAGIC = b"SCST"
_META_HEADER = struct.Struct(">4sHIQ")
_STATE_HEADER = struct.Struct(">4sH")
_CHUNK = 1 << 20


# -- durable writes ------------------------------------------------------------------------
def fsync_path(path: Path) -> None:
    """``fsync`` a file, or a directory so that renames and new entries in it survive a crash."""
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def write_durable(path: Path, data: bytes) -> None:
    """Write ``data`` to ``path`` and ``fsync`` it (the caller fsyncs the directory)."""
    with open(path, "wb") as f:
        f.write(data)
        f.flush()
        os.fsync(f.fileno())


def atomic_write(path: Path, data: bytes) -> None:
    """Replace ``path`` by ``data`` atomically: temp file, fsync, rename, fsync of the directory."""
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        try:
            os.unlink(tmp)
        except OSError:
            pass
        raise
    fsync_path(path.parent)


def crc32_file(path: Path) -> int:
    """CRC-32 of a file's content, read in 1 MiB chunks."""
    crc = 0
    with open(path, "rb") as f:
        while chunk := f.read(_CHUNK):
            crc = zlib.crc32(chunk, crc)
    return crc


def link_or_copy(src: Path, dst: Path) -> bool:
    """Hard-link ``src`` to ``dst``, or copy it where the file system refuses; True if linked."""
    try:
        os.link(src, dst)
        return True
    except OSError:
        shutil.copyfile(src, dst)
        return False


# -- metadata ---------------------------------------------------------------------------------
def encode_metadata(meta: dict[str, Any]) -> bytes:
    """The bytes of a metadata file (header with version, checksum and length, then msgpack)."""
    payload = msgpack_dumps(meta)
    return _META_HEADER.pack(_META_MAGIC, FORMAT_VERSION, zlib.crc32(payload), len(payload)) + payload


def decode_metadata(data: bytes, path: Path | str) -> dict[str, Any]:
    """Validate and decode a metadata file's bytes.

    Raises:
        CorruptCheckpointError: wrong magic, unknown version, truncated, or bad checksum.
    """
    if len(data) < _META_HEADER.size:
        msg = f"checkpoint metadata {path} is truncated ({len(data)} bytes); the checkpoint is unusable"
        raise CorruptCheckpointError(msg)
    magic, version, crc, length = _META_HEADER.unpack_from(data)
    if magic != _META_MAGIC:
        msg = f"{path} is not streamcore checkpoint metadata (bad magic {magic!r})"
        raise CorruptCheckpointError(msg)
    if version > FORMAT_VERSION:
        msg = (
            f"checkpoint metadata {path} has format version {version}; "
            f"this streamcore reads versions up to {FORMAT_VERSION}: upgrade streamcore"
        )
        raise CorruptCheckpointError(msg)
    payload = data[_META_HEADER.size :]
    if len(payload) != length:
        msg = f"checkpoint metadata {path} is truncated: {len(payload)} of {length} payload bytes"
        raise CorruptCheckpointError(msg)
    if zlib.crc32(payload) != crc:
        msg = f"checkpoint metadata {path} fails its checksum; the file is corrupted"
        raise CorruptCheckpointError(msg)
    try:
        meta = msgpack_loads(payload)
    except Exception as exc:
        msg = f"checkpoint metadata {path} cannot be decoded: {exc}"
        raise CorruptCheckpointError(msg) from exc
    if not isinstance(meta, dict) or "kind" not in meta:
        msg = f"checkpoint metadata {path} has no checkpoint description"
        raise CorruptCheckpointError(msg)
    if version == 1:
        # Version 1 named the native files after RocksDB, their only producer, and kept no watermarks.
        rocks = meta.pop("rocksdb", None)
        meta["native"] = {"backend": "rocksdb", **rocks} if rocks else None
        meta.setdefault("watermarks", {})
    return meta


def read_metadata(checkpoint_dir: Path) -> dict[str, Any]:
    """Read and validate ``<checkpoint_dir>/_metadata``.

    Raises:
        CorruptCheckpointError: the file is missing or fails validation.
    """
    path = checkpoint_dir / METADATA_FILE
    try:
        data = path.read_bytes()
    except FileNotFoundError as exc:
        msg = f"{path} does not exist: {checkpoint_dir} is not a complete checkpoint or savepoint"
        raise CorruptCheckpointError(msg) from exc
    except OSError as exc:
        msg = f"cannot read checkpoint metadata {path}: {exc}"
        raise CorruptCheckpointError(msg) from exc
    return decode_metadata(data, path)


# -- operator state files ----------------------------------------------------------------------
def _group(rows: Iterable[Any], kg_of: Callable[[Any], int]) -> dict[int, list[Any]]:
    groups: dict[int, list[Any]] = {}
    for row in rows:
        kg = kg_of(row)
        g = groups.get(kg)
        if g is None:
            groups[kg] = [row]
        else:
            g.append(row)
    return groups


def _split_image(image: Any, max_parallelism: int) -> tuple[Any, list[tuple[str, str, int, list[Any]]]]:
    """The image without its row lists, and the rows as (kind, name, key_group, rows) sections."""
    if not isinstance(image, dict) or not isinstance(image.get("keyed"), dict):
        return image, []
    cache: dict[Any, int] = {}

    def kg_of_key(key: Any) -> int:
        kg = cache.get(key)
        if kg is None:
            kg = cache[key] = key_group_for(key, max_parallelism)
        return kg

    keyed = dict(image["keyed"])
    sections: list[tuple[str, str, int, list[Any]]] = []
    states = keyed.get("states")
    if isinstance(states, dict):
        head_states = {}
        for name, st in states.items():
            if isinstance(st, dict) and isinstance(st.get("rows"), list):
                head_states[name] = {**st, "rows": []}
                for kg, rows in _group(st["rows"], lambda r: r[0]).items():
                    sections.append(("state", name, kg, rows))
            else:
                head_states[name] = st
        keyed["states"] = head_states
    timers = keyed.get("timers")
    if isinstance(timers, dict):
        head_timers = {}
        for name, t in timers.items():
            if not isinstance(t, dict):
                head_timers[name] = t
                continue
            head_timers[name] = {
                **t,
                **{w: [] for w in ("event", "processing") if isinstance(t.get(w), list)},
            }
            for which in ("event", "processing"):
                if isinstance(t.get(which), list):
                    for kg, rows in _group(t[which], lambda r: kg_of_key(r[1])).items():
                        sections.append((f"timers.{which}", name, kg, rows))
        keyed["timers"] = head_timers
    buffers = keyed.get("time_ordered")
    if isinstance(buffers, dict):
        head_buffers = {}
        for name, rows_all in buffers.items():
            if not isinstance(rows_all, list):
                head_buffers[name] = rows_all
                continue
            head_buffers[name] = []
            for kg, rows in _group(rows_all, lambda r: kg_of_key(r[0])).items():
                sections.append(("buffer", name, kg, rows))
        keyed["time_ordered"] = head_buffers
    head = dict(image)
    head["keyed"] = keyed
    return head, sections


def encode_operator_image(
    image: Any, max_parallelism: int, operator_uid: str = "?"
) -> tuple[bytes, list[list[Any]]]:
    """The bytes of an operator state file and its section index ``[kind, name, kg, offset, length]``.

    Raises:
        SerializationError: a value of the image cannot be encoded; names the operator, the
            state (or buffer, or the operator's own state) and the value's type.
    """
    head, sections = _split_image(image, max_parallelism)
    parts = [_STATE_HEADER.pack(_STATE_MAGIC, FORMAT_VERSION)]
    offset = _STATE_HEADER.size
    index: list[list[Any]] = []
    for kind, name, kg, rows in [("head", "", -1, head), *sorted(sections, key=lambda s: (s[0], s[1], s[2]))]:
        try:
            frame = msgpack_dumps(rows)
        except SerializationError as exc:
            raise _unencodable_error(operator_uid, kind, name, rows) from exc
        parts.append(frame)
        index.append([kind, name, kg, offset, len(frame)])
        offset += len(frame)
    return b"".join(parts), index


def _unencodable_error(uid: str, kind: str, name: str, rows: Any) -> SerializationError:
    bad = find_unencodable(rows)
    what = {"state": f"state {name!r}", "buffer": f"buffer {name!r}", "head": "its own state"}.get(
        kind, f"timers {name!r}"
    )
    culprit = f"a value of type {type(bad).__name__} ({bad!r:.80})" if bad is not None else "a value"
    hint = (
        "store values made of None, bool, int, float, str, bytes, and tuples, lists and dicts of these "
        "(a set as a sorted list, an object as a dict), or give the state descriptor serializer=... "
        "(an object with dumps(value) -> bytes and loads(bytes) -> value, such as pickle)"
        if kind == "state"
        else "keep it to None, bool, int, float, str, bytes, and tuples, lists and dicts of these"
    )
    msg = f"operator {uid!r}: {what} holds {culprit} that a checkpoint cannot store; {hint}"
    return SerializationError(msg)


def read_sections(
    path: Path,
    index: list[list[Any]],
    select: Callable[[str, str, int], bool] | None = None,
    *,
    size: int | None = None,
    crc32: int | None = None,
) -> list[tuple[str, str, int, Any]]:
    """Decode the selected sections of an operator state file (all when ``select`` is None).

    With ``size``/``crc32`` the whole file is validated first.

    Raises:
        CorruptCheckpointError: the file is missing, truncated, altered, or a frame does not decode.
    """
    try:
        data = path.read_bytes()
    except OSError as exc:
        msg = f"cannot read operator state file {path}: {exc}"
        raise CorruptCheckpointError(msg) from exc
    if size is not None and len(data) != size:
        msg = (
            f"operator state file {path} has {len(data)} bytes, the metadata says {size}: "
            "it is truncated or altered"
        )
        raise CorruptCheckpointError(msg)
    if crc32 is not None and zlib.crc32(data) != crc32:
        msg = f"operator state file {path} fails its checksum; the file is corrupted"
        raise CorruptCheckpointError(msg)
    if data[:4] != _STATE_MAGIC:
        msg = f"{path} is not a streamcore operator state file"
        raise CorruptCheckpointError(msg)
    out = []
    for kind, name, kg, offset, length in index:
        if select is not None and kind != "head" and not select(kind, name, kg):
            continue
        if offset + length > len(data):
            msg = f"operator state file {path} is truncated (section {kind} {name!r} past its end)"
            raise CorruptCheckpointError(msg)
        try:
            value = msgpack_loads(data[offset : offset + length])
        except Exception as exc:
            msg = (
                f"operator state file {path}: section {kind} {name!r} (key group {kg}) does not decode: {exc}"
            )
            raise CorruptCheckpointError(msg) from exc
        out.append((kind, name, kg, value))
    return out


def join_operator_image(sections: list[tuple[str, str, int, Any]]) -> Any:
    """Rebuild an operator image from its decoded sections (the inverse of :func:`encode_operator_image`)."""
    head: Any = None
    rest = []
    for kind, name, kg, value in sections:
        if kind == "head":
            head = value
        else:
            rest.append((kind, name, kg, value))
    if not rest:
        return head
    keyed = head["keyed"]
    buffers = keyed.get("time_ordered", {})
    for kind, name, _kg, rows in rest:
        if kind == "state":
            keyed["states"][name]["rows"].extend(rows)
        elif kind.startswith("timers."):
            keyed["timers"][name][kind[len("timers.") :]].extend(rows)
        elif kind == "buffer":
            buffers[name].extend(rows)
    return head


# -- the directory -------------------------------------------------------------------------------
@dataclass(frozen=True)
class StoredCheckpoint:
    """A ``chk-<id>`` directory found on disk; ``complete`` when its metadata exists."""

    id: int
    path: Path
    complete: bool


def parse_id(name: str, prefix: str) -> int | None:
    """The id in ``chk-<id>`` / ``sp-<id>`` names, or None."""
    if not name.startswith(prefix):
        return None
    digits = name[len(prefix) :].split("-", 1)[0]
    return int(digits) if digits.isdigit() else None


class CheckpointStorage:
    """Paths and listing of one checkpoint directory."""

    def __init__(self, root: Path | str) -> None:
        self.root = Path(root)
        self.shared = self.root / SHARED_DIR
        self.savepoints = self.root / SAVEPOINTS_DIR

    def ensure(self) -> None:
        """Create the directory and ``shared/``."""
        self.shared.mkdir(parents=True, exist_ok=True)

    def checkpoint_dir(self, checkpoint_id: int) -> Path:
        """``<root>/chk-<id>``."""
        return self.root / f"{CHECKPOINT_PREFIX}{checkpoint_id}"

    def list(self) -> list[StoredCheckpoint]:
        """Every ``chk-<id>`` directory, oldest first."""
        if not self.root.is_dir():
            return []
        found = []
        for child in self.root.iterdir():
            cid = parse_id(child.name, CHECKPOINT_PREFIX)
            if cid is None or not child.is_dir() or child.name != f"{CHECKPOINT_PREFIX}{cid}":
                continue
            found.append(StoredCheckpoint(cid, child, (child / METADATA_FILE).is_file()))
        return sorted(found, key=lambda c: c.id)

    def shared_files(self) -> set[str]:
        """Names of the files in ``shared/``."""
        if not self.shared.is_dir():
            return set()
        return {p.name for p in self.shared.iterdir() if p.is_file()}


def remove_checkpoint_dir(path: Path) -> None:
    """Delete a checkpoint directory: its metadata first, so a crash midway leaves no half checkpoint."""
    meta = path / METADATA_FILE
    try:
        meta.unlink()
        fsync_path(path)
    except FileNotFoundError:
        pass
    shutil.rmtree(path, ignore_errors=True)
