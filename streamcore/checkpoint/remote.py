"""Checkpoints in object storage (``s3://...``, any fsspec URL), mirrored from a local staging copy.

Checkpoints are always written locally first, exactly as into a checkpoint directory
(:mod:`streamcore.checkpoint.snapshot`): files, then the metadata. With a remote
checkpoint URL, the writer thread then uploads the checkpoint before it counts as
complete: shared files the store does not hold yet (RocksDB SSTs: each is uploaded
once and referenced by every later checkpoint that keeps it), the private files, and
the metadata last (a single object PUT: it appears whole or not at all). The store is
the source of truth; the local staging copy is a cache:

* a restore downloads the store's complete checkpoints (their shared files once) into
  the staging directory and restores from there as from a local directory;
* retention keeps the store's newest ``retain`` checkpoints (and one a running job
  restored and still builds on) and deletes shared objects none of them references;
* small records (a consumer-group task's owner record, the job description) live in
  the store as single objects.

fsspec (with s3fs for ``s3://``) is used because one API then covers S3 and every
S3-compatible store, GCS, Azure and plain paths, with credentials and endpoints passed
as storage options; it is imported only when a remote URL is used.
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

from streamcore.checkpoint.storage import (
    CHECKPOINT_PREFIX,
    METADATA_FILE,
    SHARED_DIR,
    decode_metadata,
    parse_id,
)
from streamcore.errors import CheckpointError, ConfigurationError

__all__ = ["RemoteStore", "is_remote"]

logger = logging.getLogger("streamcore.checkpoint")


def is_remote(location: Any) -> bool:
    """Whether ``location`` names object storage (a URL with a scheme other than ``file``)."""
    text = str(location)
    return "://" in text and not text.startswith("file://")


class RemoteStore:
    """One checkpoint root in object storage.

    Args:
        url: ``s3://bucket/prefix`` (or any fsspec URL).
        options: fsspec storage options (``key``, ``secret``, ``client_kwargs``...).

    Raises:
        ConfigurationError: no fsspec implementation for the URL's scheme.
    """

    def __init__(self, url: str, options: dict[str, Any] | None = None) -> None:
        try:
            import fsspec
        except ImportError as exc:  # pragma: no cover - a declared dependency
            msg = "remote checkpoint storage needs fsspec (pip install fsspec s3fs)"
            raise ConfigurationError(msg) from exc
        self.url = url.rstrip("/")
        self.options = dict(options or {})
        try:
            self.fs, self.root = fsspec.core.url_to_fs(self.url, **self.options)
        except (ImportError, ValueError) as exc:
            msg = f"no storage implementation for {url!r} ({exc}); for s3:// install s3fs"
            raise ConfigurationError(msg) from exc
        self.root = self.root.rstrip("/")
        self._shared: set[str] | None = None
        self._shared_of: dict[int, list[str]] = {}

    def child(self, name: str) -> RemoteStore:
        """The store under ``<url>/<name>`` (a task's part of a consumer-group job)."""
        return RemoteStore(f"{self.url}/{name}", self.options)

    def _path(self, *parts: str) -> str:
        return "/".join([self.root, *parts])

    def _fail(self, what: str, exc: BaseException) -> CheckpointError:
        return CheckpointError(f"checkpoint storage {self.url}: {what} failed: {type(exc).__name__}: {exc}")

    # -- small records --------------------------------------------------------------------------
    def read(self, name: str) -> bytes | None:
        """The object ``name`` under the root, or ``None``."""
        try:
            return bytes(self.fs.cat_file(self._path(name)))
        except FileNotFoundError:
            return None
        except Exception as exc:
            raise self._fail(f"reading {name}", exc) from exc

    def write(self, name: str, data: bytes) -> None:
        """Put the object ``name`` (whole or not at all)."""
        try:
            self.fs.pipe_file(self._path(name), data)
        except Exception as exc:
            raise self._fail(f"writing {name}", exc) from exc

    def check_writable(self) -> None:
        """Write and delete a probe object.

        Raises:
            CheckpointError: the store cannot be reached or written (names the URL).
        """
        probe = "_streamcore-probe"
        self.write(probe, b"ok")
        try:
            self.fs.rm_file(self._path(probe))
        except Exception as exc:
            raise self._fail("deleting a probe object", exc) from exc

    # -- checkpoints ----------------------------------------------------------------------------
    def complete_ids(self) -> list[int]:
        """Ids of the checkpoints whose metadata the store holds, oldest first."""
        try:
            entries = self.fs.ls(self.root, detail=False) if self.fs.exists(self.root) else []
        except FileNotFoundError:
            return []
        except Exception as exc:
            raise self._fail("listing checkpoints", exc) from exc
        ids = []
        for entry in entries:
            cid = parse_id(entry.rstrip("/").rsplit("/", 1)[-1], CHECKPOINT_PREFIX)
            if cid is not None and self.fs.exists(self._path(f"{CHECKPOINT_PREFIX}{cid}", METADATA_FILE)):
                ids.append(cid)
        return sorted(ids)

    def _shared_names(self) -> set[str]:
        if self._shared is None:
            try:
                found = self.fs.ls(self._path(SHARED_DIR), detail=False)
            except FileNotFoundError:
                found = []
            except Exception as exc:
                raise self._fail("listing shared files", exc) from exc
            self._shared = {p.rsplit("/", 1)[-1] for p in found}
        return self._shared

    def upload(self, directory: Path, meta: dict[str, Any]) -> int:
        """Upload the local checkpoint ``directory`` (its metadata last); returns the bytes uploaded.

        Raises:
            CheckpointError: an upload failed (the checkpoint does not count as complete).
        """
        uploaded = 0
        shared_local = directory.parent / SHARED_DIR
        known = self._shared_names()
        try:
            for name in meta.get("shared", ()):
                if name not in known:
                    self.fs.put_file(str(shared_local / name), self._path(SHARED_DIR, name))
                    uploaded += (shared_local / name).stat().st_size
                    known.add(name)
            private = sorted(p for p in directory.rglob("*") if p.is_file() and p.name != METADATA_FILE)
            for path in private:
                rel = path.relative_to(directory).as_posix()
                self.fs.put_file(str(path), self._path(directory.name, rel))
                uploaded += path.stat().st_size
            # Last: the metadata makes the checkpoint exist in the store too.
            self.fs.put_file(str(directory / METADATA_FILE), self._path(directory.name, METADATA_FILE))
        except CheckpointError:
            raise
        except Exception as exc:
            raise self._fail(f"uploading {directory.name}", exc) from exc
        self._shared_of[int(meta["id"])] = list(meta.get("shared", ()))
        return uploaded

    def _metadata(self, cid: int) -> dict[str, Any]:
        path = self._path(f"{CHECKPOINT_PREFIX}{cid}", METADATA_FILE)
        return decode_metadata(bytes(self.fs.cat_file(path)), f"{self.url}/{CHECKPOINT_PREFIX}{cid}")

    def prune(self, retain: int, pinned: int | None = None) -> None:
        """Keep the newest ``retain`` checkpoints (and ``pinned``); delete the others and unused shared files.

        Failures are logged, never raised: a later checkpoint retries.
        """
        try:
            ids = self.complete_ids()
            keep = set(ids[-retain:])
            if pinned is not None and pinned in ids:
                keep.add(pinned)
            for cid in ids:
                if cid not in keep:
                    self.fs.rm(self._path(f"{CHECKPOINT_PREFIX}{cid}"), recursive=True)
                    self._shared_of.pop(cid, None)
            referenced: set[str] = set()
            for cid in keep:
                if cid not in self._shared_of:
                    self._shared_of[cid] = list(self._metadata(cid).get("shared", ()))
                referenced.update(self._shared_of[cid])
            for name in sorted(self._shared_names() - referenced):
                self.fs.rm_file(self._path(SHARED_DIR, name))
                self._shared_names().discard(name)
        except Exception as exc:
            logger.warning("checkpoint retention in %s failed (retried next time): %s", self.url, exc)

    def download(self, root: Path) -> list[int]:
        """Download every complete checkpoint (shared files once) into the local directory ``root``.

        Local copies of the same size are kept. Returns the ids downloaded.

        Raises:
            CheckpointError: the store cannot be read.
        """
        ids = self.complete_ids()
        shared_local = Path(root) / SHARED_DIR
        shared_local.mkdir(parents=True, exist_ok=True)
        try:
            for cid in ids:
                name = f"{CHECKPOINT_PREFIX}{cid}"
                target = Path(root) / name
                if (target / METADATA_FILE).exists():
                    continue
                meta = self._metadata(cid)
                for shared in meta.get("shared", ()):
                    local = shared_local / shared
                    if not local.exists():
                        self.fs.get_file(self._path(SHARED_DIR, shared), str(local))
                tmp = Path(root) / f".{name}.downloading"
                self.fs.get(self._path(name) + "/", str(tmp) + "/", recursive=True)
                tmp.rename(target)
        except Exception as exc:
            raise self._fail("downloading checkpoints", exc) from exc
        return ids
