"""The content-addressed model store on disk (reference §4.2), under ``POLLAMA_MODELS``.

    blobs/sha256-<hex>                          content-addressed, written once, verified
    manifests/<host>/<namespace>/<model>/<tag>  JSON manifest

Every write goes to a temp file, is fsynced and renamed, so a crash never leaves a half-written
blob or manifest under its final name. Names reach the filesystem only through
``core.names.Name.manifest_parts()`` (validated parts) and digests only as 64 hex characters.
"""

from __future__ import annotations

import hashlib
import os
import tempfile
from collections.abc import Iterator
from dataclasses import dataclass

from pollama.core import manifest as mf
from pollama.core.errors import BadRequest, NotFound, PollamaError
from pollama.core.registry import unused_after_pull as unused_after_replace
from pollama.core.names import Name, blob_filename, digest_str

from .files import atomic_write, fsync_dir


@dataclass(frozen=True, slots=True)
class StoredModel:
    name: Name  # as spelled on disk
    manifest: mf.Manifest
    manifest_digest: str  # sha256 hex of the manifest bytes
    modified_ns: int


class BlobWriter:
    """Stream bytes into a temp file next to the blobs, hashing as it goes."""

    def __init__(self, store: Store) -> None:
        os.makedirs(store.blobs_dir, exist_ok=True)
        fd, self._tmp = tempfile.mkstemp(dir=store.blobs_dir, prefix=".tmp-blob-")
        self._file = os.fdopen(fd, "wb")
        self._hash = hashlib.sha256()
        self._store = store
        self.size = 0

    def write(self, data: bytes) -> None:
        self._hash.update(data)
        self._file.write(data)
        self.size += len(data)

    def commit(self, expected_hex: str | None = None, *, shown: str | None = None) -> str:
        """fsync and rename into place; a digest mismatch discards the data."""
        got = self._hash.hexdigest()
        try:
            self._file.flush()
            os.fsync(self._file.fileno())
            self._file.close()
            if expected_hex is not None and got != expected_hex:
                raise BadRequest(
                    f'digest mismatch, expected "{shown or digest_str(expected_hex)}", '
                    f'got "{digest_str(got)}"'
                )
            os.chmod(self._tmp, 0o644)
            os.replace(self._tmp, self._store.blob_path(got))
            fsync_dir(self._store.blobs_dir)
        except BaseException:
            self.abort()
            raise
        return got

    def abort(self) -> None:
        if not self._file.closed:
            self._file.close()
        try:
            os.unlink(self._tmp)
        except FileNotFoundError:
            pass


class Store:
    def __init__(self, root: str) -> None:
        self.root = root
        self.blobs_dir = os.path.join(root, "blobs")
        self.manifests_dir = os.path.join(root, "manifests")

    # -- blobs --------------------------------------------------------------------------------
    def blob_path(self, hex_digest: str) -> str:
        return os.path.join(self.blobs_dir, blob_filename(hex_digest))

    def has_blob(self, hex_digest: str) -> bool:
        return os.path.isfile(self.blob_path(hex_digest))

    def blob_size(self, hex_digest: str) -> int:
        return os.path.getsize(self.blob_path(hex_digest))

    def read_blob(self, hex_digest: str, limit: int = 16 * 1024 * 1024) -> bytes:
        with open(self.blob_path(hex_digest), "rb") as f:
            return f.read(limit)

    def blob_writer(self) -> BlobWriter:
        return BlobWriter(self)

    def put_bytes(self, data: bytes) -> tuple[str, int]:
        """Store a small blob (config, template, params); return (hex, size)."""
        hex_digest = hashlib.sha256(data).hexdigest()
        if not self.has_blob(hex_digest):
            atomic_write(self.blob_path(hex_digest), data)
        return hex_digest, len(data)

    def put_layer(self, media_type: str, data: bytes) -> mf.Layer:
        hex_digest, size = self.put_bytes(data)
        return mf.Layer(media_type=media_type, digest=digest_str(hex_digest), size=size)

    # -- manifests ----------------------------------------------------------------------------
    def _manifest_path(self, name: Name) -> str:
        return os.path.join(self.manifests_dir, *name.manifest_parts())

    def find(self, name: Name) -> Name | None:
        """The stored spelling of ``name`` (names match case-insensitively, §4.1)."""
        for stored in self._names():
            if stored.equal_fold(name):
                return stored
        return None

    def _names(self) -> Iterator[Name]:
        root = self.manifests_dir
        if not os.path.isdir(root):
            return
        for host in sorted(os.listdir(root)):
            for ns in _listdir(os.path.join(root, host)):
                for model in _listdir(os.path.join(root, host, ns)):
                    for tag in _listdir(os.path.join(root, host, ns, model)):
                        path = os.path.join(root, host, ns, model, tag)
                        if tag.startswith(".") or not os.path.isfile(path):
                            continue
                        try:
                            yield Name.from_manifest_parts((host, ns, model, tag))
                        except BadRequest:
                            continue  # not a manifest we wrote; ignore it

    def get(self, name: Name) -> StoredModel:
        stored = self.find(name)
        if stored is None:
            raise NotFound(f"model '{name.display_shortest()}' not found")
        return self._load(stored)

    def _load(self, stored: Name) -> StoredModel:
        path = self._manifest_path(stored)
        with open(path, "rb") as f:
            data = f.read()
        st = os.stat(path)
        return StoredModel(
            name=stored,
            manifest=mf.parse_manifest(data),
            manifest_digest=hashlib.sha256(data).hexdigest(),
            modified_ns=st.st_mtime_ns,
        )

    def list(self) -> list[StoredModel]:
        out = []
        for name in self._names():
            try:
                out.append(self._load(name))
            except Exception:  # a corrupt manifest must not hide the others
                continue
        out.sort(key=lambda m: m.modified_ns, reverse=True)
        return out

    def write_manifest(self, name: Name, manifest: mf.Manifest) -> Name:
        """Write (or replace) the manifest; an existing differently-cased name keeps its case."""
        for layer in (manifest.config, *manifest.layers):
            if not self.has_blob(layer.hex):
                raise BadRequest(f"missing blob {layer.digest}")
        target = self.find(name) or name
        atomic_write(self._manifest_path(target), manifest.to_json())
        return target


    def replace_manifest(self, name: Name, manifest: mf.Manifest) -> frozenset[str]:
        """Write ``manifest`` under ``name``; then remove the blobs the old manifest of that name
        used that no manifest references any more (Ollama's "removing unused layers").

        Returns the hex digests removed.
        """
        try:
            old: mf.Manifest | None = self.get(name).manifest
        except (NotFound, PollamaError, OSError):
            old = None
        self.write_manifest(name, manifest)
        unused = unused_after_replace(old, manifest, (m.manifest for m in self.list()))
        for hex_digest in unused:
            try:
                os.unlink(self.blob_path(hex_digest))
            except FileNotFoundError:
                pass
        return unused

    # -- copy / delete ------------------------------------------------------------------------
    def copy(self, source: Name, destination: Name) -> Name:
        """Copy a manifest (blobs are shared). Returns the stored destination name."""
        src = self.get(source)
        return self.write_manifest(destination, src.manifest)

    def delete(self, name: Name) -> list[str]:
        """Remove a manifest, then the blobs no other manifest references; prune empty dirs.

        Returns the hex digests of the blobs removed.
        """
        stored = self.find(name)
        if stored is None:
            raise NotFound(f"model '{name.display_shortest()}' not found")
        candidates = self._load(stored).manifest.all_digests()
        path = self._manifest_path(stored)
        os.unlink(path)
        fsync_dir(os.path.dirname(path))
        self._prune_dirs(os.path.dirname(path))
        still_used: set[str] = set()
        for other in self.list():
            still_used |= other.manifest.all_digests()
        removed = []
        for hex_digest in sorted(candidates - still_used):
            try:
                os.unlink(self.blob_path(hex_digest))
                removed.append(hex_digest)
            except FileNotFoundError:
                pass
        return removed

    def _prune_dirs(self, directory: str) -> None:
        root = os.path.abspath(self.manifests_dir)
        directory = os.path.abspath(directory)
        while directory.startswith(root + os.sep):
            try:
                os.rmdir(directory)
            except OSError:
                return
            directory = os.path.dirname(directory)


def _listdir(path: str) -> list[str]:
    try:
        return sorted(os.listdir(path))
    except (NotADirectoryError, FileNotFoundError):
        return []
