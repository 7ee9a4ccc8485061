"""The content-addressed model store on disk (Ollama's server/modelpath.go), under
``POLLAMA_MODELS``.

    blobs/sha256-<hex>                          content-addressed, written once, verified
    manifests/<host>/<namespace>/<model>/<tag>  JSON manifest
    tmp/                                        scratch (library pulls), emptied at startup
    .pollama.lock                               flock: shared by ``serve``, exclusive for cleanup

Every write goes to a temp file, is fsynced and renamed, so a crash never leaves a half-written
blob or manifest under its final name. Names reach the filesystem only through
``core.names.Name.manifest_parts()`` (validated parts) and digests only as 64 hex characters.
"""

from __future__ import annotations

import fcntl
import hashlib
import os
import shutil
import tempfile
import threading
from collections.abc import Iterator, Mapping
from dataclasses import dataclass

from pollama.core import store_check as sc
from pollama.core.errors import BadRequest, NotFound, PollamaError
from pollama.core.manifest import Layer, Manifest, parse_manifest
from pollama.core.names import Name, blob_filename, digest_str
from pollama.core.registry import unused_after_pull as unused_after_replace

from .files import atomic_write, fsync_dir


@dataclass(frozen=True, slots=True)
class StoredModel:
    name: Name  # as spelled on disk
    manifest: Manifest
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


_MUTEXES: dict[str, threading.RLock] = {}
_MUTEXES_GUARD = threading.Lock()


def _mutex(root: str) -> threading.RLock:
    """One lock per store directory in this process (however many ``Store`` objects name it)."""
    key = os.path.realpath(root)
    with _MUTEXES_GUARD:
        return _MUTEXES.setdefault(key, threading.RLock())


class Store:
    def __init__(self, root: str) -> None:
        self.root = root
        self.blobs_dir = os.path.join(root, "blobs")
        self.manifests_dir = os.path.join(root, "manifests")
        self.tmp_dir = os.path.join(root, "tmp")
        self.lock_path = os.path.join(root, ".pollama.lock")
        # Held while manifests change and while blobs are written for a manifest about to be
        # written: "which blobs did the old manifest use that nothing uses now" is only right
        # when no other replace runs in between (90 concurrent creates of one name left 69
        # orphan blobs without it).
        self.mutation = _mutex(root)

    def scratch_dir(self, prefix: str) -> tempfile.TemporaryDirectory[str]:
        """A temp directory inside the store (not the system temp dir), so what a killed server
        leaves in it is found and removed by the next start."""
        os.makedirs(self.tmp_dir, exist_ok=True)
        return tempfile.TemporaryDirectory(dir=self.tmp_dir, prefix=prefix)

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

    def put_layer(self, media_type: str, data: bytes) -> Layer:
        hex_digest, size = self.put_bytes(data)
        return Layer(media_type=media_type, digest=digest_str(hex_digest), size=size)

    # -- manifests ----------------------------------------------------------------------------
    def _manifest_path(self, name: Name) -> str:
        return os.path.join(self.manifests_dir, *name.manifest_parts())

    def find(self, name: Name) -> Name | None:
        """The stored spelling of ``name`` (names match case-insensitively, Ollama's
        types/model/name.go)."""
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
            manifest=parse_manifest(data),
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

    def write_manifest(self, name: Name, manifest: Manifest) -> Name:
        """Write (or replace) the manifest; an existing differently-cased name keeps its case."""
        with self.mutation:
            for layer in (manifest.config, *manifest.layers):
                if not self.has_blob(layer.hex):
                    raise BadRequest(f"missing blob {layer.digest}")
            target = self.find(name) or name
            atomic_write(self._manifest_path(target), manifest.to_json())
            return target

    def replace_manifest(self, name: Name, manifest: Manifest) -> frozenset[str]:
        """Write ``manifest`` under ``name``; then remove the blobs the old manifest of that name
        used that no manifest references any more (Ollama's "removing unused layers").

        Returns the hex digests removed.
        """
        with self.mutation:
            try:
                old: Manifest | None = self.get(name).manifest
            except (PollamaError, OSError):
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
        with self.mutation:
            return self._delete(name)

    def _delete(self, name: Name) -> list[str]:
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

    # -- maintenance: startup cleanup and ``pollama doctor`` (decisions in core.store_check) ---
    def listing(self) -> sc.Listing:
        """Everything the store check looks at: the top of ``blobs/`` and ``tmp/``, temp files
        and empty directories under ``manifests/``, and the bytes of every manifest."""
        entries: list[sc.Entry] = []
        for area, directory in ((sc.Area.BLOBS, self.blobs_dir), (sc.Area.TMP, self.tmp_dir)):
            try:
                scan = list(os.scandir(directory))
            except (FileNotFoundError, NotADirectoryError):
                continue
            for de in sorted(scan, key=lambda d: d.name):
                try:
                    st = de.stat(follow_symlinks=False)
                    is_dir = de.is_dir(follow_symlinks=False)
                except FileNotFoundError:
                    continue
                entries.append(sc.Entry(area=area, path=de.name, mtime_ns=st.st_mtime_ns,
                                        size=_tree_size(de.path) if is_dir else st.st_size,
                                        is_dir=is_dir))
        manifests: list[sc.ManifestFile] = []
        empty: dict[str, bool] = {}
        root = self.manifests_dir
        for dirpath, dirs, files in os.walk(root, topdown=False):
            rel_dir = os.path.relpath(dirpath, root)
            empty[dirpath] = not files and all(empty.get(os.path.join(dirpath, d), False)
                                               for d in dirs)
            if empty[dirpath] and dirpath != root:
                entries.append(sc.Entry(area=sc.Area.MANIFESTS, is_dir=True,
                                        path=rel_dir.replace(os.sep, "/")))
            for f in sorted(files):
                path = os.path.join(dirpath, f)
                rel = os.path.relpath(path, root).replace(os.sep, "/")
                if f.startswith(sc.TEMP_PREFIX):
                    try:
                        st = os.lstat(path)
                    except FileNotFoundError:
                        continue
                    entries.append(sc.Entry(area=sc.Area.MANIFESTS, path=rel, size=st.st_size,
                                            mtime_ns=st.st_mtime_ns))
                elif not f.startswith("."):
                    manifests.append(_read_manifest_file(path, rel))
        return sc.Listing(entries=tuple(entries), manifests=tuple(manifests))

    def _area_dir(self, area: sc.Area) -> str:
        return {sc.Area.BLOBS: self.blobs_dir, sc.Area.MANIFESTS: self.manifests_dir,
                sc.Area.TMP: self.tmp_dir}[area]

    def check(self, *, now_ns: int, dry_run: bool = False, prune_blobs: bool = True,
              partial_max_age_ns: int = sc.PARTIAL_MAX_AGE_NS) -> CheckResult:
        """List the store, plan (core.store_check) and, unless ``dry_run``, remove. Only call
        this with the store to yourself (``StoreLock.try_exclusive``)."""
        with self.mutation:
            plan = sc.plan(self.listing(), now_ns=now_ns, prune_blobs=prune_blobs,
                           partial_max_age_ns=partial_max_age_ns)
            if dry_run:
                return CheckResult(plan=plan, dry_run=True)
            removed: list[sc.Action] = []
            failed: list[tuple[sc.Action, str]] = []
            for action in plan.remove:
                entry = action.entry
                path = os.path.join(self._area_dir(entry.area), *entry.path.split("/"))
                try:
                    if entry.is_dir and action.reason is sc.Reason.EMPTY_DIR:
                        os.rmdir(path)
                    elif entry.is_dir:
                        shutil.rmtree(path)
                    else:
                        os.unlink(path)
                except FileNotFoundError:
                    pass
                except OSError as exc:
                    failed.append((action, exc.strerror or str(exc)))
                    continue
                removed.append(action)
            for directory in (self.blobs_dir, self.tmp_dir):
                fsync_dir(directory)
            return CheckResult(plan=plan, removed=tuple(removed), failed=tuple(failed))


@dataclass(frozen=True, slots=True)
class CheckResult:
    plan: sc.Plan
    removed: tuple[sc.Action, ...] = ()
    failed: tuple[tuple[sc.Action, str], ...] = ()
    dry_run: bool = False

    @property
    def removed_bytes(self) -> int:
        return sum(a.entry.size for a in self.removed)

    def lines(self) -> list[str]:
        return sc.summary(self.plan, removed=None if self.dry_run else self.removed,
                          failed=self.failed)


class StoreLock:
    """``flock`` on ``<store>/.pollama.lock``. ``serve`` holds it shared for its lifetime; the
    store check runs only while holding it exclusively (at startup before connections are
    accepted, or in ``pollama doctor`` with no server on the store), so it never races live
    work. The descriptor is not inherited by child processes (runners, pip)."""

    def __init__(self, store: Store) -> None:
        os.makedirs(store.root, exist_ok=True)
        self._fd = os.open(store.lock_path, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o644)

    def try_exclusive(self) -> bool:
        try:
            fcntl.flock(self._fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            return False
        return True

    def share(self) -> None:
        """Hold it shared (from exclusive: waits only while a doctor holds it)."""
        fcntl.flock(self._fd, fcntl.LOCK_SH)

    def close(self) -> None:
        if self._fd >= 0:
            os.close(self._fd)
            self._fd = -1


def open_for_serving(store: Store, env: Mapping[str, str],
                     now_ns: int) -> tuple[StoreLock, list[tuple[bool, str]]]:
    """At ``serve`` startup, before connections are accepted: clean the store if no other
    process holds it (Ollama's ``PruneLayers``; ``POLLAMA_NOPRUNE`` keeps unreferenced blobs),
    then hold the lock shared for the server's lifetime. Returns the lock and log lines as
    ``(is_warning, text)``."""
    lock = StoreLock(store)
    lines: list[tuple[bool, str]] = []
    if lock.try_exclusive():
        flag = env.get("POLLAMA_NOPRUNE", env.get("OLLAMA_NOPRUNE", ""))
        result = store.check(now_ns=now_ns, prune_blobs=not sc.env_flag(flag))
        lines = [(line.startswith(("broken", "could not")), line) for line in result.lines()]
    else:
        lines = [(True, "the store is in use by another process (a server or pollama doctor): "
                        "skipping the startup cleanup")]
    lock.share()
    return lock, lines


def _read_manifest_file(path: str, rel: str) -> sc.ManifestFile:
    try:
        with open(path, "rb") as f:
            data = f.read(MAX_MANIFEST_FILE + 1)
    except OSError as exc:
        return sc.ManifestFile(path=rel, error=exc.strerror or str(exc))
    if len(data) > MAX_MANIFEST_FILE:
        return sc.ManifestFile(path=rel, error="larger than 16 MB")
    return sc.ManifestFile(path=rel, data=data)


MAX_MANIFEST_FILE = 16 * 1024 * 1024


def _tree_size(path: str) -> int:
    total = 0
    for dirpath, _dirs, files in os.walk(path):
        for f in files:
            try:
                total += os.lstat(os.path.join(dirpath, f)).st_size
            except OSError:
                pass
    return total


def _listdir(path: str) -> list[str]:
    try:
        return sorted(os.listdir(path))
    except (NotADirectoryError, FileNotFoundError):
        return []
