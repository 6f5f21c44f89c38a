"""Reading checkpoints and savepoints offline, without running the job (like Flink's State Processor API).

>>> rows = read_state("checkpoints/chk-12", "count", "count")      # doctest: +SKIP
>>> for key, namespace, value in rows: ...                          # doctest: +SKIP

* :func:`list_checkpoints`: every checkpoint and savepoint of a checkpoint directory.
* :func:`inspect`: what a checkpoint or savepoint holds: operators, states, sizes,
  source positions, shared files.
* :func:`read_operator_image`: an operator's canonical image (rows of every state,
  timers, buffers), whichever backend wrote it.
* :func:`read_state`: the rows of one state as ``(key, namespace, value)``.

Native RocksDB checkpoints are read by assembling their files into a temporary
database (hard links), opened read-only.
"""

from __future__ import annotations

import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from streamcore.checkpoint.restore import load_operator_image, resolve_path
from streamcore.checkpoint.snapshot import materialize_native, validate_files
from streamcore.checkpoint.storage import (
    METADATA_FILE,
    SAVEPOINT_PREFIX,
    SAVEPOINTS_DIR,
    CheckpointStorage,
    join_operator_image,
    parse_id,
    read_metadata,
    read_sections,
)
from streamcore.errors import CorruptCheckpointError, RestoreError, StreamcoreError

__all__ = ["inspect", "list_checkpoints", "read_operator_image", "read_state"]


def _open(path: str | Path) -> tuple[Path, dict[str, Any]]:
    directory, is_root = resolve_path(path)
    if is_root:
        complete = [c for c in CheckpointStorage(directory).list() if c.complete]
        if not complete:
            msg = f"{directory} holds no complete checkpoint"
            raise RestoreError(msg)
        directory = complete[-1].path
    return directory, read_metadata(directory)


def list_checkpoints(directory: str | Path) -> list[dict[str, Any]]:
    """Every ``chk-<id>`` (and ``savepoints/sp-<id>``) of a checkpoint directory, oldest first.

    Each entry has ``id``, ``kind``, ``path``, ``status`` (``complete``, ``incomplete``: no
    metadata, ``corrupt``: the metadata fails validation, with ``error``), and for readable
    ones ``job``, ``created_ms``, ``backend``, ``size_bytes``, ``shared_files``.
    """
    root = Path(directory)
    if not root.is_dir():
        msg = f"{root} is not a directory"
        raise RestoreError(msg)
    found: list[tuple[str, int, Path, bool]] = [
        ("checkpoint", c.id, c.path, c.complete) for c in CheckpointStorage(root).list()
    ]
    sp_root = root / SAVEPOINTS_DIR
    if sp_root.is_dir():
        for p in sorted(sp_root.iterdir()):
            sid = parse_id(p.name, SAVEPOINT_PREFIX)
            if sid is not None and p.is_dir():
                found.append(("savepoint", sid, p, (p / METADATA_FILE).exists()))
    out = []
    for kind, cid, path, complete in found:
        entry: dict[str, Any] = {"id": cid, "kind": kind, "path": str(path)}
        if not complete:
            entry["status"] = "incomplete"
        else:
            try:
                meta = read_metadata(path)
            except CorruptCheckpointError as exc:
                entry.update(status="corrupt", error=str(exc))
            else:
                stats = meta.get("stats", {})
                entry.update(
                    status="complete",
                    job=meta.get("job"),
                    created_ms=meta.get("created_ms"),
                    backend=meta.get("backend"),
                    size_bytes=stats.get("size_bytes"),
                    shared_files=len(meta.get("shared", ())),
                )
        out.append(entry)
    return out


def inspect(path: str | Path, *, validate: bool = True) -> dict[str, Any]:
    """A summary of a checkpoint or savepoint: operators, states, sizes, source positions, files.

    With ``validate``, every file is checked (sizes, checksums) and ``valid``/``error`` say how it went.
    """
    directory, meta = _open(path)
    report: dict[str, Any] = {
        "path": str(directory),
        "kind": meta["kind"],
        "id": meta["id"],
        "job": meta.get("job"),
        "created_ms": meta.get("created_ms"),
        "backend": meta.get("backend"),
        "canonical": meta.get("canonical"),
        "max_parallelism": meta.get("max_parallelism"),
        "stats": meta.get("stats", {}),
        "sources": meta["sources"],
        "operators": {},
        "native_files": (meta.get("native") or {}).get("files", []),
        "shared_files": list(meta.get("shared", ())),
    }
    for uid, entry in meta["operators"].items():
        op: dict[str, Any] = {
            "type": entry.get("type"),
            "file": entry.get("file"),
            "size": entry.get("size", 0),
        }
        states: dict[str, Any] = {}
        described = (entry.get("states") or {}).get("states", {})
        for name, info in described.items():
            states[name] = {"kind": info["kind"], "ttl": info["ttl"]}
        for kind, name, kg, _off, length in entry.get("sections", ()):
            if kind == "head":
                continue
            label = name if kind == "state" else f"{kind}/{name}"
            st = states.setdefault(label, {"kind": kind})
            st["bytes"] = st.get("bytes", 0) + length
            st.setdefault("key_groups", []).append(kg)
        for st in states.values():
            if "key_groups" in st:
                st["key_groups"] = len(set(st["key_groups"]))
        op["states"] = states
        report["operators"][uid] = op
    if validate:
        try:
            validate_files(meta, directory)
            report["valid"] = True
        except CorruptCheckpointError as exc:
            report.update(valid=False, error=str(exc))
    return report


def read_operator_image(path: str | Path, operator_uid: str) -> Any:
    """The canonical image of one operator (``{"keyed": {...}, "operator": ...}`` for keyed ones).

    Raises:
        RestoreError: no such operator in the checkpoint.
        CorruptCheckpointError: a file fails validation.
    """
    directory, meta = _open(path)
    entry = _entry(meta, directory, operator_uid)
    image = None if entry.get("file") is None else load_operator_image(directory, entry)
    keyed = image.get("keyed") if isinstance(image, dict) else None
    if isinstance(keyed, dict) and "native" in keyed:
        image = dict(image)
        image["keyed"] = _native_canonical(meta, directory, operator_uid, entry, keyed.get("restored_rows"))
    return image


def read_state(
    path: str | Path, operator_uid: str, state_name: str, *, raw: bool = False
) -> Iterator[tuple[Any, Any, Any]]:
    """The rows of keyed state ``state_name`` of operator ``operator_uid``: ``(key, namespace, value)``.

    Values are what the state handle returns: a value, a list for list state, a dict for
    map state. TTL'd entries are unwrapped (expired ones included) unless ``raw``.

    Raises:
        RestoreError: no such operator or state.
        CorruptCheckpointError: a file fails validation.
    """
    directory, meta = _open(path)
    entry = _entry(meta, directory, operator_uid)
    info = ((entry.get("states") or {}).get("states") or {}).get(state_name, {})
    if entry.get("file") is None:
        _no_state(operator_uid, state_name, [])
    sections = read_sections(
        directory / entry["file"],
        entry["sections"],
        lambda kind, name, kg: kind == "state" and name == state_name,
        size=entry["size"],
        crc32=entry["crc32"],
    )
    image = join_operator_image(sections)
    keyed = image.get("keyed") if isinstance(image, dict) else None
    if not isinstance(keyed, dict):
        _no_state(operator_uid, state_name, [])
    if "native" in keyed:
        keyed = _native_canonical(meta, directory, operator_uid, entry, keyed.get("restored_rows"))
    states = keyed.get("states", {})
    if state_name not in states:
        _no_state(operator_uid, state_name, sorted(states))
    st = states[state_name]
    storage = st.get("storage", st.get("kind"))
    ttl = bool(info.get("ttl")) and not raw
    for _kg, key, ns, payload in st["rows"]:
        if storage == "map":
            value: Any = {k: (v[1] if ttl else v) for k, v in payload}
        elif storage == "list":
            value = [v[1] for v in payload] if ttl else list(payload)
        else:
            value = payload[1] if ttl else payload
        yield key, ns, value


def _entry(meta: dict[str, Any], directory: Path, uid: str) -> dict[str, Any]:
    entry = meta["operators"].get(uid)
    if entry is None:
        msg = f"{directory} has no operator {uid!r}; it has {sorted(meta['operators'])}"
        raise RestoreError(msg)
    return entry


def _no_state(uid: str, name: str, known: list[str]) -> None:
    msg = f"operator {uid!r} has no keyed state {name!r} in this checkpoint; it has {known}"
    raise RestoreError(msg)


class _RawBytes:
    """Serializer that leaves values as bytes (states with a custom serializer)."""

    @staticmethod
    def dumps(value: Any) -> bytes:
        return value  # type: ignore[no-any-return]

    @staticmethod
    def loads(data: bytes) -> Any:
        return data


def _native_canonical(
    meta: dict[str, Any],
    directory: Path,
    uid: str,
    entry: dict[str, Any],
    restored_rows: dict[str, Any] | None = None,
) -> dict[str, Any]:
    """Canonical rows of one operator from a native RocksDB checkpoint, read from a temporary copy."""
    from streamcore.state.api import KeyContext
    from streamcore.state.descriptors import ListStateDescriptor, MapStateDescriptor, ValueStateDescriptor
    from streamcore.state.rocksdb.backend import RocksDBKeyedStateBackend
    from streamcore.state.rocksdb.db import RocksDBDatabase
    from streamcore.time import SystemClock

    described = entry.get("states") or {"states": {}, "timers": [], "time_ordered": []}
    descriptors = {"value": ValueStateDescriptor, "reducing": ValueStateDescriptor}
    descriptors.update(list=ListStateDescriptor, map=MapStateDescriptor)
    with tempfile.TemporaryDirectory(prefix="streamcore-read-") as tmp:
        target = Path(tmp) / "db"
        materialize_native(meta, directory, target)
        try:
            db = RocksDBDatabase.open_read_only(target)
        except StreamcoreError as exc:
            msg = f"cannot open the RocksDB files of {directory}: {exc}"
            raise CorruptCheckpointError(msg) from exc
        try:
            backend = RocksDBKeyedStateBackend(uid, KeyContext(meta["max_parallelism"]), SystemClock(), db)
            for name, info in described["states"].items():
                ser = None if info.get("msgpack", True) else _RawBytes()
                backend.get_state(descriptors[info["storage"]](name, serializer=ser))
            for name in described["timers"]:
                backend.timer_service(name)
            for name in described["time_ordered"]:
                backend.time_ordered_state(name)
            image = backend.snapshot(canonical=True)
            for name, info in described["states"].items():
                image["states"][name]["kind"] = info["kind"]
            # States restored into this run but not registered by it are carried as canonical rows.
            for name, st in (restored_rows or {}).items():
                image["states"].setdefault(name, st)
            return image
        finally:
            db.close()
