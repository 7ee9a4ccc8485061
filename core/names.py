"""Ollama model names and blob digests (Ollama's types/model/name.go; server/modelpath.go;
server/routes.go CreateBlobHandler).

A model name is ``[scheme://][host/][namespace/]model[:tag]``, parsed right to left the way
Ollama's ``types/model.ParseNameBare`` does:

1. the tag is whatever follows the last ``:``, but only if that ``:`` comes after the last
   ``/`` (so ``localhost:5000/ns/m`` has no explicit tag and gets ``latest``);
2. the model is what follows the last ``/`` (or the whole rest if there is none);
3. the namespace is what follows the next ``/`` to the left (or the whole rest);
4. whatever remains is the host, optionally prefixed with ``scheme://``. As upstream, a scheme
   is only recognised in front of an explicit host: ``https://m`` is not a name.

A separator with an empty side makes the name invalid (``m:``, ``/m``, ``h//m``). Missing
parts are filled with ``registry.ollama.ai`` / ``library`` / ``latest``. Every part is then
checked against the grammar below; because the first character must be ASCII alnum or ``_``
and only ``[A-Za-z0-9_.:-]`` may follow, no part can be ``.``/``..`` or hold a path separator,
NUL or any non-ASCII character, so :meth:`Name.manifest_parts` is safe to join under
``manifests/``. ``@digest`` appears in upstream's grammar comment but is not parsed by Ollama
(v0.12, HEAD): an ``@`` simply makes a part invalid.

Names compare case-insensitively against the store, part by part (``Name.equal_fold``); the
stored spelling wins, which is the store adapter's business, not this module's.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from .errors import BadRequest

__all__ = [
    "DEFAULT_HOST", "DEFAULT_NAMESPACE", "DEFAULT_TAG", "INVALID_DIGEST", "INVALID_NAME", "Name",
    "blob_filename", "digest_str", "is_valid_name", "parse_digest", "parse_name",
    "parse_name_with_scheme"
]

DEFAULT_HOST = "registry.ollama.ai"
DEFAULT_NAMESPACE = "library"
DEFAULT_TAG = "latest"

INVALID_NAME = "invalid model name"
INVALID_DIGEST = "invalid digest format"

# Part grammar (upstream isValidPart/isValidLen). Explicit ASCII classes: `\w` would admit
# Unicode letters. Used with fullmatch, so a trailing newline cannot sneak past `$`.
_HOST_RE = re.compile(r"[A-Za-z0-9_][A-Za-z0-9_.:-]{0,349}")
_NAMESPACE_RE = re.compile(r"[A-Za-z0-9_][A-Za-z0-9_-]{0,79}")
_MODEL_RE = re.compile(r"[A-Za-z0-9_][A-Za-z0-9_.-]{0,79}")
_TAG_RE = _MODEL_RE
# RFC 3986 scheme syntax. Upstream accepts any text before "://" and drops it; we are stricter
# so that nothing odd reaches the registry client. Policy (http needs insecure) is the caller's.
_SCHEME_RE = re.compile(r"[A-Za-z][A-Za-z0-9+.-]{0,31}")

_DIGEST_RE = re.compile(r"sha256[:-]([0-9a-fA-F]{64})")
_HEX_RE = re.compile(r"[0-9a-f]{64}")


def _valid(pattern: re.Pattern[str], part: object) -> bool:
    return isinstance(part, str) and pattern.fullmatch(part) is not None


@dataclass(frozen=True, slots=True, kw_only=True)
class Name:
    """A fully qualified, valid model name. Construct with :func:`parse_name` or directly
    (``Name(host=..., namespace=..., model=..., tag=...)``); every part is validated."""

    host: str
    namespace: str
    model: str
    tag: str

    def __post_init__(self) -> None:
        if not (
            _valid(_HOST_RE, self.host)
            and _valid(_NAMESPACE_RE, self.namespace)
            and _valid(_MODEL_RE, self.model)
            and _valid(_TAG_RE, self.tag)
        ):
            raise BadRequest(INVALID_NAME)

    def display_shortest(self) -> str:
        """Ollama's ``DisplayShortest``: drop the default host (case-insensitively) and then a
        ``library`` namespace; always ``model:tag``. A non-default host keeps the namespace."""
        if self.host.lower() != DEFAULT_HOST:
            return f"{self.host}/{self.namespace}/{self.model}:{self.tag}"
        if self.namespace.lower() != DEFAULT_NAMESPACE:
            return f"{self.namespace}/{self.model}:{self.tag}"
        return f"{self.model}:{self.tag}"

    def display_full(self) -> str:
        """``host/namespace/model:tag``; :func:`parse_name` of it gives back this Name."""
        return f"{self.host}/{self.namespace}/{self.model}:{self.tag}"

    def __str__(self) -> str:
        return self.display_full()

    def manifest_parts(self) -> tuple[str, str, str, str]:
        """Path components of the manifest file under ``manifests/`` (Ollama's
        server/modelpath.go), as spelled."""
        return (self.host, self.namespace, self.model, self.tag)

    @classmethod
    def from_manifest_parts(cls, parts: tuple[str, ...] | list[str]) -> Name:
        """Inverse of :meth:`manifest_parts`, for listing ``manifests/`` exactly 4 levels deep.
        Raises BadRequest unless there are exactly four valid parts."""
        if len(parts) != 4:
            raise BadRequest(INVALID_NAME)
        host, namespace, model, tag = parts
        return cls(host=host, namespace=namespace, model=model, tag=tag)

    def fold_key(self) -> tuple[str, str, str, str]:
        """Lower-cased parts: a dict key under which names that ``equal_fold`` collide."""
        return (self.host.lower(), self.namespace.lower(), self.model.lower(), self.tag.lower())

    def equal_fold(self, other: Name) -> bool:
        """Case-insensitive equality, part by part (upstream ``Name.EqualFold``). Parts are
        ASCII by construction, so ``str.lower`` is exactly Go's ``strings.EqualFold`` here."""
        return self.fold_key() == other.fold_key()


def parse_name_with_scheme(s: str) -> tuple[str | None, Name]:
    """Parse ``s`` into ``(scheme or None, Name)`` with defaults filled in.

    Raises ``BadRequest("invalid model name")`` for anything outside the grammar.
    """
    if not isinstance(s, str):
        raise BadRequest(INVALID_NAME)
    rest = s
    tag = DEFAULT_TAG
    colon = rest.rfind(":")
    if colon > rest.rfind("/"):
        rest, tag = rest[:colon], rest[colon + 1 :]
    # rsplit with maxsplit=2 is exactly upstream's two cutLast("/") steps: whatever is left
    # of the namespace separator (including any further "/") becomes the host candidate.
    pieces = rest.rsplit("/", 2)
    scheme: str | None = None
    host, namespace = DEFAULT_HOST, DEFAULT_NAMESPACE
    if len(pieces) == 1:
        (model,) = pieces
    elif len(pieces) == 2:
        namespace, model = pieces
    else:
        host, namespace, model = pieces
        before, sep, after = host.partition("://")
        if sep:
            if not _valid(_SCHEME_RE, before):
                raise BadRequest(INVALID_NAME)
            scheme, host = before, after
    return scheme, Name(host=host, namespace=namespace, model=model, tag=tag)


def parse_name(s: str) -> Name:
    """Parse an Ollama model name, dropping any ``scheme://`` prefix (see module docstring)."""
    return parse_name_with_scheme(s)[1]


def is_valid_name(s: str) -> bool:
    try:
        parse_name_with_scheme(s)
    except BadRequest:
        return False
    return True


def parse_digest(s: str) -> str:
    """Accept ``sha256:<hex>`` or ``sha256-<hex>`` (64 hex digits, either case; Ollama's
    server/routes.go CreateBlobHandler's ``^sha256[:-][0-9a-fA-F]{64}$``) and return the
    lower-case hex alone."""
    if isinstance(s, str):
        m = _DIGEST_RE.fullmatch(s)
        if m is not None:
            return m.group(1).lower()
    raise BadRequest(INVALID_DIGEST)


def _check_hex(hex_digest: str) -> str:
    if not _valid(_HEX_RE, hex_digest):
        raise BadRequest(INVALID_DIGEST)
    return hex_digest


def blob_filename(hex_digest: str) -> str:
    """File name of a blob under ``blobs/`` (Ollama's server/modelpath.go): ``sha256-<hex>``. Takes
    the lower-case hex as returned by :func:`parse_digest`."""
    return "sha256-" + _check_hex(hex_digest)


def digest_str(hex_digest: str) -> str:
    """The digest as written in JSON (manifests, API): ``sha256:<hex>``."""
    return "sha256:" + _check_hex(hex_digest)
