"""What store maintenance removes and reports (startup cleanup and ``pollama doctor``).

Pure decisions: the adapter (``adapters.store``) lists the store into a :class:`Listing`, passes
the wall clock as ``now_ns``, and executes the :class:`Plan` this module returns.

What a crash (kill -9, power loss) can leave, and what happens to it:

    blobs/.tmp-*                  a blob write, upload session or quantization that never
                                  finished (``BlobWriter``, ``atomic_write``): removed
    manifests/**/.tmp-*           a manifest write that never finished: removed
    tmp/*                         the store's scratch area (library pulls): removed
    blobs/sha256-<hex>-partial*   a registry pull to resume: kept, unless stale (older than
                                  ``partial_max_age_ns``), useless (parts without their plan)
                                  or finished (the blob is present)
    blobs/sha256-<hex>            a blob no manifest references: removed (Ollama's
                                  ``PruneLayers`` at startup), unless ``prune_blobs`` is False
                                  (``POLLAMA_NOPRUNE``, as ``OLLAMA_NOPRUNE``)
    manifests/<host>/<ns>/<model> empty directories: removed (Ollama's ``PruneDirectory``)

Manifests are never removed: one that cannot be parsed, names a blob that is missing or of
another size, or has no model layer is reported as broken. Blobs referenced by a manifest that
cannot be parsed are kept all the same (every ``sha256:<hex>`` in its text counts as a
reference), and if a manifest could not be read at all no blob is pruned: pruning must never
guess. Anything else found in ``blobs/`` is left alone.

The plan assumes nothing else writes to the store while it runs: the adapter only executes it
under the store's exclusive lock (at server startup, before connections are accepted, or in
``pollama doctor`` while no server holds the store).
"""

from __future__ import annotations

import enum
import hashlib
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

from .errors import BadRequest, StoreError
from .humanize import human_bytes
from .manifest import MEDIA_TYPE_MODEL, Manifest, parse_config, parse_manifest
from .names import Name

__all__ = [
    "DAY_NS", "PARTIAL_MAX_AGE_NS", "TEMP_PREFIX", "Action", "Area", "Broken", "Entry", "Listing",
    "ManifestFile", "Plan", "Problem", "ProblemKind", "Reason", "env_flag", "manifest_problems",
    "plan", "referenced_digests", "summary"
]

DAY_NS = 24 * 3600 * 1_000_000_000
PARTIAL_MAX_AGE_NS = DAY_NS  # a pull untouched for a day is not coming back

TEMP_PREFIX = ".tmp-"
_BLOB_RE = re.compile(r"sha256-([0-9a-f]{64})")
_PARTIAL_RE = re.compile(r"sha256-([0-9a-f]{64})-partial(?:-(0|[1-9][0-9]{0,5}))?")
_DIGEST_TEXT_RE = re.compile(rb"sha256[:-]([0-9a-fA-F]{64})")


class Area(enum.Enum):
    """The directory of the store an entry is in."""

    BLOBS = "blobs"
    MANIFESTS = "manifests"
    TMP = "tmp"


class Reason(enum.Enum):
    """Why an entry is removed (or, for ``Kept``, why it stays)."""

    TEMP = "unfinished write"
    SCRATCH = "leftover temporary download"
    PARTIAL_STALE = "stale partial download"
    PARTIAL_DONE = "partial download of a blob already present"
    PARTIAL_ORPHAN = "partial download without its plan"
    UNREFERENCED = "unreferenced blob"
    EMPTY_DIR = "empty manifest directory"
    PARTIAL_RESUMABLE = "resumable partial download"
    NOPRUNE = "unreferenced blob kept (NOPRUNE)"
    UNSURE = "unreferenced blob kept (a manifest could not be read)"


@dataclass(frozen=True, slots=True, kw_only=True)
class Entry:
    """One file or directory: ``path`` is relative to its area, ``/``-separated. ``size`` is
    the bytes it holds (for a directory, everything under it)."""

    area: Area
    path: str
    size: int = 0
    mtime_ns: int = 0
    is_dir: bool = False

    def __post_init__(self) -> None:
        if not isinstance(self.area, Area):
            raise ValueError(f"area must be an Area, not {self.area!r}")
        parts = self.path.split("/")
        if not self.path or any(p in ("", ".", "..") for p in parts):
            raise ValueError(f"invalid relative path {self.path!r}")
        if self.size < 0:
            raise ValueError(f"negative size {self.size!r}")

    @property
    def name(self) -> str:
        return self.path.rsplit("/", 1)[-1]

    def display(self) -> str:
        return f"{self.area.value}/{self.path}"


@dataclass(frozen=True, slots=True, kw_only=True)
class ManifestFile:
    """A file under ``manifests/`` (not a temp file): its bytes, or why they could not be
    read (``error``)."""

    path: str
    data: bytes = b""
    error: str | None = None


@dataclass(frozen=True, slots=True, kw_only=True)
class Listing:
    """What the adapter found: every entry of ``blobs/`` and ``tmp/`` (top level), temp files
    and empty directories under ``manifests/``, and every manifest file."""

    entries: tuple[Entry, ...] = ()
    manifests: tuple[ManifestFile, ...] = ()


@dataclass(frozen=True, slots=True, kw_only=True)
class Action:
    entry: Entry
    reason: Reason


@dataclass(frozen=True, slots=True, kw_only=True)
class Broken:
    """A manifest that cannot be used; ``name`` is its model name when the path is one."""

    path: str
    name: str
    problems: tuple[Problem, ...]


@dataclass(frozen=True, slots=True, kw_only=True)
class Plan:
    remove: tuple[Action, ...] = ()
    keep: tuple[Action, ...] = ()
    broken: tuple[Broken, ...] = ()

    @property
    def removed_bytes(self) -> int:
        return sum(a.entry.size for a in self.remove)

    def count(self, reason: Reason) -> int:
        return sum(1 for a in (*self.remove, *self.keep) if a.reason is reason)


# --- decisions ---------------------------------------------------------------------------


def referenced_digests(data: bytes) -> frozenset[str]:
    """Hex digests a manifest keeps alive. A manifest that does not parse still protects every
    ``sha256:<hex>`` written in it: a damaged manifest is the user's to repair, not a reason to
    lose the blobs it names."""
    try:
        return parse_manifest(data).all_digests()
    except StoreError:
        return frozenset(m.group(1).decode().lower() for m in _DIGEST_TEXT_RE.finditer(data))


class ProblemKind(enum.Enum):
    MISSING_BLOB = "missing blob"
    SIZE_MISMATCH = "size mismatch"
    NO_MODEL_LAYER = "no model layer"
    BAD_CONFIG = "bad config"
    UNREADABLE = "unreadable manifest"


@dataclass(frozen=True, slots=True, kw_only=True)
class Problem:
    """One reason a manifest cannot be used; ``digest`` (``sha256:<hex>``) names the blob."""

    kind: ProblemKind
    message: str
    digest: str | None = None

    def __str__(self) -> str:
        return self.message


def manifest_problems(manifest: Manifest, blob_sizes: Mapping[str, int],
                      config: bytes | None = None) -> tuple[Problem, ...]:
    """Why ``manifest`` cannot be used, given the sizes of the blobs present (hex -> bytes):
    a missing blob, a blob of another size than the manifest says, no model layer (nothing to
    run: ``/api/show`` and generation need one), and, when the config blob's bytes are given,
    a config whose digest does not match or that is not a JSON object."""
    out: list[Problem] = []
    seen: set[str] = set()
    for layer in (manifest.config, *manifest.layers):
        if layer.hex in seen:
            continue
        seen.add(layer.hex)
        size = blob_sizes.get(layer.hex)
        if size is None:
            out.append(Problem(kind=ProblemKind.MISSING_BLOB, digest=layer.digest,
                               message=f"blob {layer.digest} is missing"))
        elif size != layer.size:
            out.append(Problem(kind=ProblemKind.SIZE_MISMATCH, digest=layer.digest,
                               message=f"blob {layer.digest} has {size} bytes, the manifest "
                                       f"says {layer.size}"))
    if not manifest.layers_of(MEDIA_TYPE_MODEL):
        out.append(Problem(kind=ProblemKind.NO_MODEL_LAYER,
                           message=f"no model layer ({MEDIA_TYPE_MODEL})"))
    if config is not None and not out:
        if hashlib.sha256(config).hexdigest() != manifest.config.hex:
            out.append(Problem(kind=ProblemKind.BAD_CONFIG, digest=manifest.config.digest,
                               message=f"config blob {manifest.config.digest} does not match "
                                       "its digest"))
        else:
            try:
                parse_config(config)
            except StoreError as exc:
                out.append(Problem(kind=ProblemKind.BAD_CONFIG, digest=manifest.config.digest,
                                   message=exc.message))
    return tuple(out)


def _display_name(path: str) -> str:
    try:
        return Name.from_manifest_parts(path.split("/")).display_shortest()
    except BadRequest:
        return path


def plan(listing: Listing, *, now_ns: int, partial_max_age_ns: int = PARTIAL_MAX_AGE_NS,
         prune_blobs: bool = True) -> Plan:
    """Decide what to remove, keep and report. ``now_ns`` is wall-clock nanoseconds, compared
    with the entries' ``mtime_ns``."""
    if partial_max_age_ns < 0:
        raise ValueError("partial_max_age_ns must not be negative")
    remove: list[Action] = []
    keep: list[Action] = []

    blobs: dict[str, Entry] = {}
    partials: dict[str, list[tuple[Entry, bool]]] = {}  # hex -> [(entry, is the plan)]
    for entry in listing.entries:
        if entry.area is Area.TMP:
            if "/" not in entry.path:
                remove.append(Action(entry=entry, reason=Reason.SCRATCH))
        elif entry.area is Area.MANIFESTS:
            if entry.is_dir:
                remove.append(Action(entry=entry, reason=Reason.EMPTY_DIR))
            elif entry.name.startswith(TEMP_PREFIX):
                remove.append(Action(entry=entry, reason=Reason.TEMP))
        elif "/" in entry.path:
            continue  # only the top level of blobs/ is the store's
        elif entry.name.startswith(TEMP_PREFIX):
            remove.append(Action(entry=entry, reason=Reason.TEMP))
        elif entry.is_dir:
            continue
        elif (m := _BLOB_RE.fullmatch(entry.name)) is not None:
            blobs[m.group(1)] = entry
        elif (m := _PARTIAL_RE.fullmatch(entry.name)) is not None:
            partials.setdefault(m.group(1), []).append((entry, m.group(2) is None))

    for hex_digest, found in sorted(partials.items()):
        group = [e for e, _ in found]
        has_plan = any(is_plan for _, is_plan in found)
        newest = max(e.mtime_ns for e in group)
        if hex_digest in blobs:
            reason = Reason.PARTIAL_DONE
        elif not has_plan:
            reason = Reason.PARTIAL_ORPHAN
        elif now_ns - newest > partial_max_age_ns:
            reason = Reason.PARTIAL_STALE
        else:
            keep.extend(Action(entry=e, reason=Reason.PARTIAL_RESUMABLE) for e in group)
            continue
        remove.extend(Action(entry=e, reason=reason) for e in group)

    referenced: set[str] = set()
    unsure = False
    broken: list[Broken] = []
    sizes = {h: e.size for h, e in blobs.items()}
    for file in sorted(listing.manifests, key=lambda f: f.path):
        if file.error is not None:
            unsure = True
            broken.append(Broken(path=file.path, name=_display_name(file.path), problems=(
                Problem(kind=ProblemKind.UNREADABLE, message=f"unreadable: {file.error}"),)))
            continue
        referenced |= referenced_digests(file.data)
        try:
            manifest = parse_manifest(file.data)
        except StoreError as exc:
            broken.append(Broken(path=file.path, name=_display_name(file.path), problems=(
                Problem(kind=ProblemKind.UNREADABLE, message=exc.message),)))
            continue
        problems = manifest_problems(manifest, sizes)
        if problems:
            broken.append(Broken(path=file.path, name=_display_name(file.path),
                                 problems=problems))

    for hex_digest, entry in sorted(blobs.items()):
        if hex_digest in referenced:
            continue
        if unsure:
            keep.append(Action(entry=entry, reason=Reason.UNSURE))
        elif not prune_blobs:
            keep.append(Action(entry=entry, reason=Reason.NOPRUNE))
        else:
            remove.append(Action(entry=entry, reason=Reason.UNREFERENCED))

    return Plan(remove=tuple(remove), keep=tuple(keep), broken=tuple(broken))


def env_flag(value: str) -> bool:
    """``POLLAMA_NOPRUNE`` read as Ollama's ``envconfig.Bool``: unset or empty is false, a Go
    boolean (1/t/T/TRUE/true/True, 0/f/F/FALSE/false/False) is itself, anything else is true."""
    text = value.strip().strip("\"'").strip()
    if not text:
        return False
    if text in ("0", "f", "F", "false", "FALSE", "False"):
        return False
    return True


# --- report ------------------------------------------------------------------------------


def summary(plan_: Plan, *, removed: Sequence[Action] | None = None,
            failed: Sequence[tuple[Action, str]] = ()) -> list[str]:
    """Human-readable lines: what was removed (``removed``; None for a dry run, which says
    what would be), what was kept and why, broken manifests, failures."""
    lines: list[str] = []
    done = removed is not None
    actions = list(removed) if removed is not None else list(plan_.remove)
    verb = "removed" if done else "would remove"
    for action in actions:
        lines.append(f"{verb} {action.entry.display()} ({action.reason.value}, "
                     f"{human_bytes(action.entry.size)})")
    for action in plan_.keep:
        lines.append(f"kept {action.entry.display()} ({action.reason.value}, "
                     f"{human_bytes(action.entry.size)})")
    for action, error in failed:
        lines.append(f"could not remove {action.entry.display()}: {error}")
    for b in plan_.broken:
        lines.append(f"broken manifest {b.name}: {'; '.join(map(str, b.problems))}")
    total = sum(a.entry.size for a in actions)
    lines.append(f"{verb} {len(actions)} item{'s' if len(actions) != 1 else ''} "
                 f"({human_bytes(total)}); {len(plan_.broken)} broken "
                 f"manifest{'s' if len(plan_.broken) != 1 else ''}")
    return lines
