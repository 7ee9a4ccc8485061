"""The registry protocol, both sides, as pure decisions (Ollama's server/images.go PullModel and
PushModel; server/download.go, server/upload.go).

Ollama speaks the Docker/OCI distribution protocol to its registries, and pollama speaks it to
them and *as* one, so two pollama servers can share models. This module decides; the adapters
(``adapters/registry_client.py``, ``adapters/registry_server.py``) move the bytes.

Client side
    * :func:`endpoint_for` turns a model name into the registry endpoint: scheme rules
      (``https`` unless ``insecure``, which always means plain ``http``, as Ollama's
      ``makeRequest`` does; an explicit ``http://`` without ``insecure`` is refused with
      ``insecure protocol http``), the Hugging Face host (``hf.co/<user>/<repo>:<quant>`` is an
      ordinary name served by the same protocol at ``https://hf.co/v2/``), and the URLs:
      ``/v2/<ns>/<model>/manifests/<tag>``, ``/v2/<ns>/<model>/blobs/<digest>``,
      ``POST /v2/<ns>/<model>/blobs/uploads/`` then ``PUT <Location>?digest=``.
    * :func:`plan_parts` splits a blob into contiguous byte ranges fetched in parallel, each into
      its own ``blobs/sha256-<hex>-partial-<n>`` file; the plan is kept in a JSON sidecar
      ``blobs/sha256-<hex>-partial`` (:func:`encode_plan`/:func:`decode_plan`) so a resumed pull
      uses the same ranges even if the defaults change. :func:`plan_resume` says which bytes are
      still missing given the sizes of the partial files found on disk (a killed server leaves
      a prefix of each range behind; appends are the only writes).
    * :class:`Progress` and its constructors shape the status lines Ollama streams, exactly.
    * :func:`parse_bearer_challenge` / :func:`token_url` for anonymous token auth (hf.co and
      Docker-style registries answer 401 with a ``WWW-Authenticate: Bearer`` challenge).

Server side
    * :func:`parse_repository`, :func:`parse_reference`, :func:`parse_blob_digest`,
      :func:`parse_upload_id` validate path segments (percent-decoded first, validated after),
      so only names of Ollama's grammar (types/model/name.go), 64-hex digests and 32-hex upload ids
      ever reach a filesystem path. Failures are :class:`RegistryError` with an OCI error code and
      status.
    * :func:`parse_range` (RFC 9110 single byte ranges) and :func:`content_range`.
    * :func:`served_name`: a repository ``<ns>/<model>:<tag>`` on this server *is* the local
      model ``<ns>/<model>:<tag>`` (host ``registry.ollama.ai``, shown without it), whatever
      ``Host`` the client used to reach us: the same server is often reachable under several
      names (``127.0.0.1``, ``localhost``, its LAN address), and a model pushed through one of
      them must be the model pulled through another, and be what ``pollama list`` shows.
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass

from .errors import BadRequest, ErrorCode, PollamaError, RegistryError, StoreError
from .manifest import MEDIA_TYPE_MANIFEST, Layer, Manifest, parse_manifest
from .names import DEFAULT_HOST, INVALID_DIGEST, Name, digest_str, parse_digest

__all__ = [
    "HF_HOSTS", "HF_REGISTRY_HOST", "MANIFEST_ACCEPT", "MAX_PARTS", "MIB", "MIN_PART_SIZE",
    "BearerChallenge", "ByteRange", "DigestRef", "Endpoint", "Fetch", "Part", "Progress", "Tag",
    "add_query", "blob_location", "blobs_of", "check_plan", "content_range", "decode_plan",
    "encode_plan", "endpoint_for", "is_hugging_face", "missing_blobs", "parse_bearer_challenge",
    "parse_blob_digest", "parse_content_range", "parse_manifest_body", "parse_partial_filename",
    "parse_range", "parse_reference", "parse_repository", "parse_token_response",
    "parse_upload_id", "partial_filename", "plan_parts", "plan_resume", "pulling",
    "pulling_manifest", "pushing", "pushing_manifest", "query_params", "quote",
    "registry_error_text", "removing_unused_layers", "retrieving_manifest", "served_name",
    "short_digest", "success", "token_url", "unquote", "unused_after_pull", "upload_location",
    "verifying", "writing_manifest"
]

MIB = 1024 * 1024
# Parts of at least 8 MiB, at most 8 of them: a 98 MB model is fetched as 8 ranges of ~12 MB.
# Ollama uses 16 parts of 100 MB-1 GB against a CDN; between two pollama servers on a LAN the
# serving side is one Python process, where a few connections already saturate it.
MIN_PART_SIZE = 8 * MIB
MAX_PARTS = 8

HF_HOSTS = frozenset({"hf.co", "huggingface.co"})
HF_REGISTRY_HOST = "hf.co"

MANIFEST_ACCEPT = MEDIA_TYPE_MANIFEST


# --- client: endpoints and URLs -----------------------------------------------------------


def is_hugging_face(name: Name) -> bool:
    """``hf.co/<user>/<repo>:<quant>`` (or ``huggingface.co/...``): a GGUF repository on the
    Hugging Face Hub, which serves the Ollama registry protocol for it (the tag picks the
    quantization file, ``latest`` the Hub's default, usually Q4_K_M)."""
    return name.host.lower() in HF_HOSTS


@dataclass(frozen=True, slots=True, kw_only=True)
class Endpoint:
    """Where a model lives: ``{scheme}://{host}/v2/{namespace}/{model}``."""

    scheme: str
    host: str
    namespace: str
    model: str

    def __post_init__(self) -> None:
        if self.scheme not in ("http", "https"):
            raise BadRequest(f"unsupported protocol scheme {self.scheme!r}")
        # The parts come from a validated Name; re-check so a hand-built Endpoint is safe too.
        Name(host=self.host, namespace=self.namespace, model=self.model, tag="latest")

    @property
    def origin(self) -> str:
        return f"{self.scheme}://{self.host}"

    @property
    def repository(self) -> str:
        return f"{self.namespace}/{self.model}"

    def base_url(self) -> str:
        return f"{self.origin}/v2/{self.repository}"

    def manifest_url(self, tag: str) -> str:
        if not _TAG_RE.fullmatch(tag):
            raise BadRequest("invalid model name")
        return f"{self.base_url()}/manifests/{tag}"

    def blob_url(self, hex_digest: str) -> str:
        return f"{self.base_url()}/blobs/{digest_str(hex_digest)}"

    def upload_url(self) -> str:
        """Where ``POST`` opens an upload session (the trailing slash is part of the spec)."""
        return f"{self.base_url()}/blobs/uploads/"

    def upload_commit_url(self, location: str, hex_digest: str) -> str:
        """The ``PUT`` that completes an upload: the server's ``Location`` (absolute URL,
        absolute path or relative path) with ``digest=sha256%3A<hex>`` appended to its query."""
        return add_query(self.resolve(location), "digest", digest_str(hex_digest))

    def resolve(self, location: str) -> str:
        """An absolute URL for a ``Location`` header, with our scheme rule applied to it."""
        if location.startswith(("http://", "https://")):
            _, rest = location.split("://", 1)
            return f"{self.scheme}://{rest}"
        if location.startswith("/"):
            return self.origin + location
        return self.upload_url() + location


def endpoint_for(name: Name, *, scheme: str | None = None, insecure: bool = False) -> Endpoint:
    """The registry endpoint of ``name``.

    ``scheme`` is what the user wrote before ``://`` (None when absent). As Ollama: ``insecure``
    turns every request into plain ``http``; without it, ``http`` is refused and anything else
    is ``https``. Hugging Face names go to ``hf.co`` whichever spelling was used.
    """
    if scheme is not None:
        scheme = scheme.lower()
        if scheme not in ("http", "https"):
            raise BadRequest(f"unsupported protocol scheme {scheme!r}")
        if scheme == "http" and not insecure:
            raise BadRequest("insecure protocol http")
    host = HF_REGISTRY_HOST if is_hugging_face(name) else name.host
    return Endpoint(scheme="http" if insecure else "https", host=host,
                    namespace=name.namespace, model=name.model)


_UNRESERVED = frozenset(b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-._~")


def quote(text: str) -> str:
    """Percent-encode everything but RFC 3986 unreserved characters (query values)."""
    return "".join(chr(b) if b in _UNRESERVED else f"%{b:02X}" for b in text.encode("utf-8"))


def unquote(text: str) -> str:
    """Percent-decode; malformed escapes or invalid UTF-8 raise ``BadRequest``."""
    if "%" not in text:
        return text
    out = bytearray()
    i = 0
    raw = text.encode("utf-8")
    while i < len(raw):
        if raw[i] == 0x25:  # '%'
            pair = raw[i + 1 : i + 3]
            if len(pair) != 2 or not all(c in b"0123456789abcdefABCDEF" for c in pair):
                raise BadRequest("invalid percent-encoding")
            out.append(int(pair, 16))
            i += 3
        else:
            out.append(raw[i])
            i += 1
    try:
        return out.decode("utf-8")
    except UnicodeDecodeError:
        raise BadRequest("invalid percent-encoding") from None


def add_query(url: str, key: str, value: str) -> str:
    fragment = ""
    if "#" in url:
        url, fragment = url.split("#", 1)
        fragment = "#" + fragment
    sep = "&" if "?" in url else "?"
    return f"{url}{sep}{quote(key)}={quote(value)}{fragment}"


def query_params(target: str) -> dict[str, str]:
    """The query of a request target as a dict (first value wins, ``+`` is a space).
    Undecodable pairs are skipped: a parameter we cannot read is a parameter not given."""
    if "?" not in target:
        return {}
    query = target.split("?", 1)[1].split("#", 1)[0]
    out: dict[str, str] = {}
    for pair in query.split("&"):
        if not pair:
            continue
        key, _, value = pair.partition("=")
        try:
            k, v = unquote(key.replace("+", " ")), unquote(value.replace("+", " "))
        except BadRequest:
            continue
        out.setdefault(k, v)
    return out


# --- client: token auth -------------------------------------------------------------------


@dataclass(frozen=True, slots=True, kw_only=True)
class BearerChallenge:
    realm: str
    service: str = ""
    scope: str = ""


_CHALLENGE_PARAM_RE = re.compile(
    r'\s*([A-Za-z][A-Za-z0-9_-]*)\s*=\s*(?:"((?:[^"\\]|\\.)*)"|([^\s,]*))\s*,?')


def parse_bearer_challenge(header: str) -> BearerChallenge | None:
    """``Bearer realm="...",service="...",scope="..."`` (RFC 6750); None if not a usable
    Bearer challenge (other scheme, no ``https``/``http`` realm)."""
    scheme, _, rest = header.strip().partition(" ")
    if scheme.lower() != "bearer":
        return None
    params: dict[str, str] = {}
    pos = 0
    while pos < len(rest):
        m = _CHALLENGE_PARAM_RE.match(rest, pos)
        if m is None or m.end() == pos:
            break
        value = m.group(2) if m.group(2) is not None else (m.group(3) or "")
        params.setdefault(m.group(1).lower(), re.sub(r"\\(.)", r"\1", value))
        pos = m.end()
    realm = params.get("realm", "")
    if not realm.startswith(("https://", "http://")):
        return None
    return BearerChallenge(realm=realm, service=params.get("service", ""),
                           scope=params.get("scope", ""))


def token_url(challenge: BearerChallenge) -> str:
    url = challenge.realm
    if challenge.service:
        url = add_query(url, "service", challenge.service)
    if challenge.scope:
        url = add_query(url, "scope", challenge.scope)
    return url


def parse_token_response(data: bytes) -> str:
    """The token from a token endpoint's JSON (``token`` or OAuth2 ``access_token``)."""
    try:
        obj = json.loads(data.decode("utf-8", "replace"))
    except ValueError:
        raise PollamaError("unauthorized: invalid token response") from None
    token = obj.get("token") or obj.get("access_token") if isinstance(obj, dict) else None
    if not isinstance(token, str) or not token:
        raise PollamaError("unauthorized: access denied")
    return token


# --- client: what to pull ------------------------------------------------------------------


def blobs_of(manifest: Manifest) -> tuple[Layer, ...]:
    """Every blob a manifest needs, in Ollama's order (layers, then the config), each digest
    once (a manifest may list the same blob twice, e.g. two identical licenses)."""
    seen: set[str] = set()
    out: list[Layer] = []
    for layer in (*manifest.layers, manifest.config):
        if layer.digest not in seen:
            seen.add(layer.digest)
            out.append(layer)
    return tuple(out)


def unused_after_pull(old: Manifest | None, new: Manifest,
                      still_referenced: Iterable[Manifest]) -> frozenset[str]:
    """Hex digests to delete after replacing ``old`` by ``new`` under one name (Ollama's
    ``removing unused layers``): the old manifest's blobs that neither the new manifest nor any
    other stored manifest references."""
    if old is None:
        return frozenset()
    keep = set(new.all_digests())
    for m in still_referenced:
        keep |= m.all_digests()
    return frozenset(old.all_digests() - keep)


# --- client: ranged, resumable downloads --------------------------------------------------


@dataclass(frozen=True, slots=True, kw_only=True)
class Part:
    """Bytes ``[start, end)`` of a blob, downloaded into ``sha256-<hex>-partial-<index>``."""

    index: int
    start: int
    end: int

    def __post_init__(self) -> None:
        if not (0 <= self.index and 0 <= self.start < self.end):
            raise ValueError(f"invalid part {self!r}")

    @property
    def size(self) -> int:
        return self.end - self.start


def plan_parts(size: int, *, min_part: int = MIN_PART_SIZE,
               max_parts: int = MAX_PARTS) -> tuple[Part, ...]:
    """Split ``[0, size)`` into contiguous parts: as many as fit ``min_part`` bytes each, at
    least one, at most ``max_parts``; sizes differ by at most one byte. Empty blobs need no
    download, so they get no parts."""
    if size < 0 or min_part < 1 or max_parts < 1:
        raise ValueError("size must be >= 0, min_part and max_parts >= 1")
    if size == 0:
        return ()
    n = max(1, min(max_parts, size // min_part))
    base, extra = divmod(size, n)
    parts = []
    start = 0
    for i in range(n):
        length = base + (1 if i < extra else 0)
        parts.append(Part(index=i, start=start, end=start + length))
        start += length
    return tuple(parts)


def check_plan(parts: tuple[Part, ...], size: int) -> bool:
    """Do ``parts`` cover ``[0, size)`` exactly once, in order, indexed 0..n-1?"""
    pos = 0
    for i, part in enumerate(parts):
        if part.index != i or part.start != pos:
            return False
        pos = part.end
    return pos == size


def encode_plan(hex_digest: str, size: int, parts: tuple[Part, ...]) -> bytes:
    """The ``sha256-<hex>-partial`` sidecar: which ranges the ``-partial-<n>`` files hold."""
    return json.dumps({"digest": digest_str(hex_digest), "size": size,
                       "parts": [[p.start, p.end] for p in parts]},
                      separators=(",", ":")).encode()


def decode_plan(data: bytes, hex_digest: str, size: int) -> tuple[Part, ...] | None:
    """The parts recorded in a sidecar, or None if it is unreadable or describes another blob
    (then the partial files cannot be trusted and the download starts over)."""
    try:
        obj = json.loads(data.decode("utf-8"))
    except (ValueError, UnicodeDecodeError):
        return None
    if not isinstance(obj, dict) or obj.get("digest") != digest_str(hex_digest):
        return None
    if obj.get("size") != size or not isinstance(obj.get("parts"), list):
        return None
    parts: list[Part] = []
    for i, item in enumerate(obj["parts"]):
        if (not isinstance(item, list) or len(item) != 2
                or not all(isinstance(v, int) and not isinstance(v, bool) for v in item)):
            return None
        try:
            parts.append(Part(index=i, start=item[0], end=item[1]))
        except ValueError:
            return None
    plan = tuple(parts)
    return plan if check_plan(plan, size) else None


@dataclass(frozen=True, slots=True, kw_only=True)
class Fetch:
    """What is left of one part: ``have`` bytes are in its partial file already (``restart``:
    the file is longer than the part, so it is garbage and is truncated first)."""

    part: Part
    have: int
    restart: bool = False

    @property
    def start(self) -> int:
        return self.part.start + self.have

    @property
    def remaining(self) -> int:
        return self.part.size - self.have

    def range_header(self) -> str:
        return f"bytes={self.start}-{self.part.end - 1}"


def plan_resume(parts: tuple[Part, ...], present: Mapping[int, int]) -> tuple[Fetch, ...]:
    """One :class:`Fetch` per part, given ``present[index]`` = size of its partial file (absent
    means no file). A complete part has ``remaining == 0``."""
    out = []
    for part in parts:
        have = present.get(part.index, 0)
        if have < 0 or have > part.size:
            out.append(Fetch(part=part, have=0, restart=True))
        else:
            out.append(Fetch(part=part, have=have))
    return tuple(out)


def partial_filename(hex_digest: str, index: int | None = None) -> str:
    """``sha256-<hex>-partial`` (the plan sidecar) or ``sha256-<hex>-partial-<index>``."""
    if not _HEX_RE.fullmatch(hex_digest) or (index is not None and index < 0):
        raise BadRequest(INVALID_DIGEST)
    name = f"sha256-{hex_digest}-partial"
    return name if index is None else f"{name}-{index}"


_PARTIAL_RE = re.compile(r"sha256-([0-9a-f]{64})-partial(?:-(0|[1-9][0-9]{0,5}))?")


def parse_partial_filename(filename: str) -> tuple[str, int | None] | None:
    """``(hex, index or None for the sidecar)`` for a partial-download file name, else None
    (for store maintenance: these files are not blobs and must not be served or pruned as such)."""
    m = _PARTIAL_RE.fullmatch(filename)
    if m is None:
        return None
    return m.group(1), (int(m.group(2)) if m.group(2) is not None else None)


def parse_content_range(value: str) -> tuple[int, int, int | None] | None:
    """``bytes a-b/size`` → ``(a, b + 1, size or None for *)``; None if malformed."""
    m = re.fullmatch(r"\s*bytes\s+(\d{1,19})-(\d{1,19})/(\d{1,19}|\*)\s*", value)
    if m is None:
        return None
    first, last = int(m.group(1)), int(m.group(2))
    if last < first:
        return None
    return first, last + 1, None if m.group(3) == "*" else int(m.group(3))


# --- progress lines (Ollama's server/images.go PullModel and PushModel) --------------------


@dataclass(frozen=True, slots=True, kw_only=True)
class Progress:
    """Ollama's ``ProgressResponse``: ``digest``/``total``/``completed`` are ``omitempty``."""

    status: str
    digest: str = ""
    total: int = 0
    completed: int = 0

    def to_dict(self) -> dict[str, object]:
        out: dict[str, object] = {"status": self.status}
        if self.digest:
            out["digest"] = self.digest
        if self.total:
            out["total"] = self.total
        if self.completed:
            out["completed"] = self.completed
        return out


def short_digest(hex_digest: str) -> str:
    """``digest[7:19]`` of ``sha256:<hex>``: the 12 hex characters Ollama shows."""
    return digest_str(hex_digest)[7:19]


def pulling_manifest() -> Progress:
    return Progress(status="pulling manifest")


def pulling(hex_digest: str, total: int, completed: int) -> Progress:
    return Progress(status=f"pulling {short_digest(hex_digest)}", digest=digest_str(hex_digest),
                    total=total, completed=completed)


def verifying() -> Progress:
    return Progress(status="verifying sha256 digest")


def writing_manifest() -> Progress:
    return Progress(status="writing manifest")


def removing_unused_layers() -> Progress:
    return Progress(status="removing unused layers")


def success() -> Progress:
    return Progress(status="success")


def retrieving_manifest() -> Progress:
    return Progress(status="retrieving manifest")


def pushing(hex_digest: str, total: int, completed: int) -> Progress:
    return Progress(status=f"pushing {short_digest(hex_digest)}", digest=digest_str(hex_digest),
                    total=total, completed=completed)


def pushing_manifest() -> Progress:
    return Progress(status="pushing manifest")


# --- client: error messages ----------------------------------------------------------------


def registry_error_text(status: int, body: bytes) -> str:
    """How Ollama words a failed registry request: 404 is ``file does not exist`` (Go's
    ``os.ErrNotExist``), 401 ``unauthorized: access denied``, others ``<status>: <body>``;
    an OCI error body is reduced to its first message."""
    if status == 404:
        return "file does not exist"
    if status == 401:
        return "unauthorized: access denied"
    text = body[:1000].decode("utf-8", "replace").strip()
    try:
        obj = json.loads(text)
    except ValueError:
        obj = None
    if isinstance(obj, dict):
        errors = obj.get("errors")
        if isinstance(errors, list) and errors and isinstance(errors[0], dict):
            text = str(errors[0].get("message") or errors[0].get("code") or text)
        elif isinstance(obj.get("error"), str):
            text = obj["error"]
    return f"{status}: {text}"


# --- server: OCI errors and request parsing -------------------------------------------------


_TAG_RE = re.compile(r"[A-Za-z0-9_][A-Za-z0-9_.-]{0,79}")
_HEX_RE = re.compile(r"[0-9a-f]{64}")
_UPLOAD_ID_RE = re.compile(r"[0-9a-f]{32}")


def parse_repository(namespace: str, model: str) -> tuple[str, str]:
    """Validated ``(namespace, model)`` from the path (Ollama's types/model/name.go grammar), else
    NAME_INVALID."""
    try:
        ns, m = unquote(namespace), unquote(model)
        Name(host=DEFAULT_HOST, namespace=ns, model=m, tag="latest")
    except BadRequest:
        raise RegistryError(ErrorCode.NAME_INVALID, "invalid repository name",
                            {"name": f"{namespace}/{model}"[:200]}) from None
    return ns, m


@dataclass(frozen=True, slots=True)
class Tag:
    tag: str


@dataclass(frozen=True, slots=True)
class DigestRef:
    hex: str


def parse_reference(reference: str) -> Tag | DigestRef:
    """A manifest reference: a tag (Ollama's types/model/name.go tag grammar) or a ``sha256:<hex>``
    digest (a tag cannot hold ``:``, so ``sha256-...`` is a tag)."""
    try:
        ref = unquote(reference)
    except BadRequest:
        raise RegistryError(ErrorCode.MANIFEST_INVALID, "invalid tag") from None
    if ":" in ref:
        try:
            return DigestRef(parse_digest(ref))
        except BadRequest:
            raise RegistryError(ErrorCode.DIGEST_INVALID, INVALID_DIGEST) from None
    if not _TAG_RE.fullmatch(ref):
        raise RegistryError(ErrorCode.MANIFEST_INVALID, "invalid tag",
                            {"tag": reference[:100]})
    return Tag(ref)


def parse_blob_digest(value: str) -> str:
    """The lower-case hex of a ``sha256:<hex>`` digest from a path or query, else
    DIGEST_INVALID."""
    try:
        return parse_digest(unquote(value))
    except BadRequest:
        raise RegistryError(ErrorCode.DIGEST_INVALID, INVALID_DIGEST) from None


def parse_upload_id(value: str) -> str:
    if not _UPLOAD_ID_RE.fullmatch(value):
        raise RegistryError(ErrorCode.BLOB_UPLOAD_UNKNOWN)
    return value


def served_name(namespace: str, model: str, tag: str) -> Name:
    """The local model a repository+tag on this server stands for (module docstring)."""
    try:
        return Name(host=DEFAULT_HOST, namespace=namespace, model=model, tag=tag)
    except BadRequest:
        raise RegistryError(ErrorCode.NAME_INVALID) from None


def upload_location(namespace: str, model: str, upload_id: str) -> str:
    return f"/v2/{namespace}/{model}/blobs/uploads/{parse_upload_id(upload_id)}"


def blob_location(namespace: str, model: str, hex_digest: str) -> str:
    return f"/v2/{namespace}/{model}/blobs/{digest_str(hex_digest)}"


def parse_manifest_body(data: bytes) -> Manifest:
    """A pushed manifest, or MANIFEST_INVALID with the parser's reason."""
    try:
        return parse_manifest(data)
    except StoreError as exc:
        raise RegistryError(ErrorCode.MANIFEST_INVALID, exc.message) from None


def missing_blobs(manifest: Manifest, have: Iterable[str]) -> tuple[str, ...]:
    """Digests (``sha256:<hex>``) the manifest references that are not in ``have`` (hex)."""
    present = set(have)
    return tuple(layer.digest for layer in blobs_of(manifest) if layer.hex not in present)


@dataclass(frozen=True, slots=True)
class ByteRange:
    """Bytes ``[start, end)`` of a representation of known size."""

    start: int
    end: int

    @property
    def length(self) -> int:
        return self.end - self.start


_RANGE_RE = re.compile(r"\s*bytes\s*=\s*(\d{0,19})\s*-\s*(\d{0,19})\s*")


def parse_range(header: str | None, size: int) -> ByteRange | None:
    """A single ``Range: bytes=`` spec against a blob of ``size`` bytes (RFC 9110 §14.2).

    None means "send the whole blob" (no header, a syntax we ignore, or several ranges, which
    a server may answer with the full representation). An unsatisfiable range raises
    RANGE_INVALID (sent as 416 with ``Content-Range: bytes */size``). ``last`` beyond the end
    is clamped; ``bytes=-n`` is the last ``n`` bytes.
    """
    if header is None:
        return None
    m = _RANGE_RE.fullmatch(header)
    if m is None:
        return None
    first, last = m.group(1), m.group(2)
    if not first and not last:
        return None
    if not first:  # suffix range
        n = int(last)
        if n == 0 or size == 0:
            raise RegistryError(ErrorCode.RANGE_INVALID)
        return ByteRange(max(0, size - n), size)
    start = int(first)
    end = size if not last else int(last) + 1
    if last and int(last) < start:
        return None  # invalid spec: ignored, as RFC 9110 says
    if start >= size:
        raise RegistryError(ErrorCode.RANGE_INVALID)
    return ByteRange(start, min(end, size))


def content_range(r: ByteRange, size: int) -> str:
    return f"bytes {r.start}-{r.end - 1}/{size}"
