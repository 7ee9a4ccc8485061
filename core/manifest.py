"""Image manifests (Docker schema v2 as Ollama writes them) and the config blob (Ollama's
server/manifest.go).

A manifest names a config blob and an ordered list of layers, each by ``sha256:<hex>`` digest,
media type and size. Bytes in, values out: the store adapter reads the file and hands the bytes
to :func:`parse_manifest`; :meth:`Manifest.to_json` gives the bytes to write.

Serialisation mirrors Go's ``encoding/json`` (what Ollama uses), so a manifest we write is byte
for byte what Ollama would write for the same values: struct field order, no whitespace,
``omitempty`` fields left out when empty, ``<`` ``>`` ``&`` U+2028 U+2029 escaped as ``\\uXXXX``,
other non-ASCII left as UTF-8, ill-formed text replaced by U+FFFD.

Parsing a manifest is strict (it decides which blobs exist and which may be pruned), parsing a
config blob is lenient (it only feeds ``/api/show`` details). Neither raises anything but
``StoreError`` for any input bytes.
"""

from __future__ import annotations

import json
import re
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from . import jsonwire
from .errors import BadRequest, StoreError
from .names import digest_str, parse_digest

__all__ = [
    "MEDIA_TYPE_ADAPTER", "MEDIA_TYPE_CONFIG", "MEDIA_TYPE_DRAFT", "MEDIA_TYPE_EMBED",
    "MEDIA_TYPE_JSON", "MEDIA_TYPE_LICENSE", "MEDIA_TYPE_MANIFEST", "MEDIA_TYPE_MANIFEST_LIST",
    "MEDIA_TYPE_MESSAGES", "MEDIA_TYPE_MODEL", "MEDIA_TYPE_PARAMS", "MEDIA_TYPE_PROJECTOR",
    "MEDIA_TYPE_PROMPT", "MEDIA_TYPE_SYSTEM", "MEDIA_TYPE_TEMPLATE", "MEDIA_TYPE_TENSOR",
    "ConfigV2", "Layer", "Manifest", "go_json_dumps", "parse_config", "parse_manifest"
]

MEDIA_TYPE_MANIFEST = "application/vnd.docker.distribution.manifest.v2+json"
MEDIA_TYPE_MANIFEST_LIST = "application/vnd.ollama.manifest.list.v2+json"  # HEAD; unsupported
MEDIA_TYPE_CONFIG = "application/vnd.docker.container.image.v1+json"

_IMAGE = "application/vnd.ollama.image."
MEDIA_TYPE_MODEL = _IMAGE + "model"
MEDIA_TYPE_PROJECTOR = _IMAGE + "projector"
MEDIA_TYPE_ADAPTER = _IMAGE + "adapter"
MEDIA_TYPE_TEMPLATE = _IMAGE + "template"
MEDIA_TYPE_PROMPT = _IMAGE + "prompt"  # legacy spelling of MEDIA_TYPE_TEMPLATE
MEDIA_TYPE_SYSTEM = _IMAGE + "system"
MEDIA_TYPE_PARAMS = _IMAGE + "params"
MEDIA_TYPE_MESSAGES = _IMAGE + "messages"
MEDIA_TYPE_LICENSE = _IMAGE + "license"
MEDIA_TYPE_EMBED = _IMAGE + "embed"  # deprecated, ignored by Ollama
MEDIA_TYPE_TENSOR = _IMAGE + "tensor"  # HEAD: safetensors tensor layer
MEDIA_TYPE_JSON = _IMAGE + "json"  # HEAD: safetensors config file layer
MEDIA_TYPE_DRAFT = _IMAGE + "draft"  # HEAD: draft model

_MAX_INT64 = 2**63 - 1
_CANONICAL_DIGEST_RE = re.compile(r"sha256:[0-9a-f]{64}")


# --- Go encoding/json compatible output ---------------------------------------------------

def go_json_dumps(value: object) -> bytes:
    """Encode ``value`` as Go's ``json.Marshal`` would (see ``core.jsonwire.dumps``)."""
    return jsonwire.dumps(value)


def _reject_constant(name: str) -> Any:
    raise ValueError(f"invalid JSON literal {name}")


def _load_json(data: bytes, what: str) -> Any:
    """Decode JSON bytes as Go would (invalid UTF-8 inside strings becomes U+FFFD, a BOM or
    NaN is a syntax error). Any failure is a StoreError."""
    if not isinstance(data, (bytes, bytearray, memoryview)):
        raise StoreError(f"invalid {what}: expected bytes")
    try:
        text = bytes(data).decode("utf-8", errors="replace")
        return json.loads(text, parse_constant=_reject_constant)
    except (ValueError, RecursionError) as exc:  # JSONDecodeError is a ValueError
        raise StoreError(f"invalid {what}: {_short(exc)}") from None


def _short(exc: BaseException) -> str:
    msg = str(exc) or type(exc).__name__
    return msg if len(msg) <= 200 else msg[:200] + "..."


# --- Manifest ------------------------------------------------------------------------------


def _bad(msg: str) -> StoreError:
    return StoreError(f"invalid manifest: {msg}")


@dataclass(frozen=True, slots=True, kw_only=True)
class Layer:
    """One blob reference. ``digest`` is the canonical ``sha256:<64 lower-case hex>``;
    ``from_`` (JSON ``from``) names the parent model/blob; ``name`` (HEAD) is the tensor name
    of a safetensors tensor layer. Both are omitted from JSON when ``None``."""

    media_type: str
    digest: str
    size: int
    from_: str | None = None
    name: str | None = None

    def __post_init__(self) -> None:
        if not isinstance(self.media_type, str) or not self.media_type:
            raise _bad("layer mediaType must be a non-empty string")
        if not isinstance(self.digest, str) or not _CANONICAL_DIGEST_RE.fullmatch(self.digest):
            raise _bad(f"layer digest {self.digest!r} is not sha256:<64 lower-case hex>")
        if (
            not isinstance(self.size, int)
            or isinstance(self.size, bool)
            or not 0 <= self.size <= _MAX_INT64
        ):
            raise _bad(f"layer size {self.size!r} is not a non-negative int64")
        for key, value in (("from", self.from_), ("name", self.name)):
            if value is not None and (not isinstance(value, str) or not value):
                raise _bad(f"layer {key} must be a non-empty string or absent")

    @property
    def hex(self) -> str:
        """The digest's hex part (what :func:`~pollama.core.names.blob_filename` takes)."""
        return self.digest[len("sha256:") :]

    def to_dict(self) -> dict[str, object]:
        out: dict[str, object] = {
            "mediaType": self.media_type,
            "digest": self.digest,
            "size": self.size,
        }
        if self.from_ is not None:
            out["from"] = self.from_
        if self.name is not None:
            out["name"] = self.name
        return out


@dataclass(frozen=True, slots=True, kw_only=True)
class Manifest:
    """A schema-v2 manifest: config blob plus ordered layers."""

    config: Layer
    layers: tuple[Layer, ...]
    media_type: str = MEDIA_TYPE_MANIFEST

    def __post_init__(self) -> None:
        if not isinstance(self.config, Layer):
            raise _bad("config must be a Layer")
        if not isinstance(self.layers, tuple) or not all(
            isinstance(layer, Layer) for layer in self.layers
        ):
            raise _bad("layers must be a tuple of Layer")
        if not isinstance(self.media_type, str) or not self.media_type:
            raise _bad("mediaType must be a non-empty string")
        if self.media_type == MEDIA_TYPE_MANIFEST_LIST:
            raise _bad("manifest lists are not supported")

    def to_json(self) -> bytes:
        """Compact Go-style JSON: schemaVersion, mediaType, config, layers."""
        return go_json_dumps(
            {
                "schemaVersion": 2,
                "mediaType": self.media_type,
                "config": self.config.to_dict(),
                "layers": [layer.to_dict() for layer in self.layers],
            }
        )

    def layers_of(self, media_type: str) -> tuple[Layer, ...]:
        """Layers with exactly this media type, in manifest order. (Callers wanting the
        template should also look at the legacy ``MEDIA_TYPE_PROMPT``.)"""
        return tuple(layer for layer in self.layers if layer.media_type == media_type)

    def all_digests(self) -> frozenset[str]:
        """Hex digests of every blob this manifest keeps alive (config and layers)."""
        return frozenset(layer.hex for layer in (self.config, *self.layers))

    def total_size(self) -> int:
        """Sum of config and layer sizes, as upstream ``Manifest.Size`` (duplicates counted)."""
        return self.config.size + sum(layer.size for layer in self.layers)


def _text_field(obj: Mapping[str, Any], key: str, *, required: bool, where: str) -> str | None:
    value = obj.get(key)
    if value is None:
        if required:
            raise _bad(f"{where} {key} missing")
        return None
    if not isinstance(value, str):
        raise _bad(f"{where} {key} must be a string")
    if not value:
        if required:
            raise _bad(f"{where} {key} is empty")
        return None  # Go omitempty: "" and absent are the same thing
    return jsonwire.go_text(value)


def _parse_layer(obj: object, where: str) -> Layer:
    if not isinstance(obj, dict):
        raise _bad(f"{where} must be an object")
    media_type = _text_field(obj, "mediaType", required=True, where=where)
    raw_digest = obj.get("digest")
    try:
        if not isinstance(raw_digest, str):
            raise BadRequest("invalid digest format")
        digest = digest_str(parse_digest(raw_digest))
    except BadRequest:
        raise _bad(f"{where} digest {_short_repr(raw_digest)} is invalid") from None
    size = obj.get("size")
    if not isinstance(size, int) or isinstance(size, bool) or not 0 <= size <= _MAX_INT64:
        raise _bad(f"{where} size {_short_repr(size)} is not a non-negative integer")
    assert media_type is not None
    return Layer(
        media_type=media_type,
        digest=digest,
        size=size,
        from_=_text_field(obj, "from", required=False, where=where),
        name=_text_field(obj, "name", required=False, where=where),
    )


def _short_repr(value: object) -> str:
    text = repr(value)
    return text if len(text) <= 80 else text[:80] + "..."


def parse_manifest(data: bytes) -> Manifest:
    """Parse and validate manifest bytes.

    Requires ``schemaVersion`` 2, a non-empty ``mediaType`` (not a manifest list), a config
    layer and a ``layers`` array (``null`` reads as empty, as in Go). Digests may use either
    separator and either case and are normalised to ``sha256:<lower hex>``; sizes must be
    non-negative integers. Unknown keys are ignored (Go does too). Any problem raises
    ``StoreError("invalid manifest: ...")``.
    """
    obj = _load_json(data, "manifest")
    if not isinstance(obj, dict):
        raise _bad("not a JSON object")
    version = obj.get("schemaVersion")
    if not isinstance(version, int) or isinstance(version, bool) or version != 2:
        raise _bad(f"unsupported schemaVersion {_short_repr(version)}")
    media_type = obj.get("mediaType")
    if not isinstance(media_type, str) or not media_type:
        raise _bad("mediaType missing")
    if media_type == MEDIA_TYPE_MANIFEST_LIST:
        raise _bad("manifest lists are not supported")
    config = _parse_layer(obj.get("config"), "config")
    raw_layers = obj.get("layers")
    if raw_layers is None:
        raw_layers = []
    if not isinstance(raw_layers, list):
        raise _bad("layers must be an array")
    layers = tuple(_parse_layer(item, f"layers[{i}]") for i, item in enumerate(raw_layers))
    return Manifest(config=config, layers=layers, media_type=jsonwire.go_text(media_type))


# --- Config blob ---------------------------------------------------------------------------


@dataclass(frozen=True, slots=True, kw_only=True)
class ConfigV2:
    """The config blob (upstream ``model.ConfigV2``), referenced by the manifest's config.

    ``model_type`` is shown as parameter size, ``file_type`` as quantization level.
    ``diff_ids`` is ``rootfs.diff_ids`` (the layer digests, ``sha256:<hex>``), which Ollama
    always writes as ``"rootfs":{"type":"layers","diff_ids":[...]}``. The HEAD-only string
    fields (``renderer``, ``parser``, ...) are omitted from JSON when empty, as are
    ``context_length``/``embedding_length`` when ``None`` or 0 (Go ``omitempty``).
    """

    model_format: str = ""
    model_family: str = ""
    model_families: tuple[str, ...] = ()
    model_type: str = ""
    file_type: str = ""
    renderer: str = ""
    parser: str = ""
    requires: str = ""
    remote_host: str = ""
    remote_model: str = ""
    capabilities: tuple[str, ...] = ()
    context_length: int | None = None
    embedding_length: int | None = None
    base_name: str = ""
    architecture: str = "amd64"
    os: str = "linux"
    diff_ids: tuple[str, ...] = ()

    def __post_init__(self) -> None:
        for key in _CONFIG_STR_FIELDS:
            if not isinstance(getattr(self, key), str):
                raise StoreError(f"invalid config: {key} must be a string")
        for key in _CONFIG_LIST_FIELDS:
            value = getattr(self, key)
            if not isinstance(value, tuple) or not all(isinstance(v, str) for v in value):
                raise StoreError(f"invalid config: {key} must be a tuple of strings")
        for key in _CONFIG_INT_FIELDS:
            value = getattr(self, key)
            if value is not None and (
                not isinstance(value, int) or isinstance(value, bool) or value < 0
            ):
                raise StoreError(f"invalid config: {key} must be a non-negative int or None")

    def to_json(self) -> bytes:
        """Go field order; ``model_families`` is ``null`` when empty (Go nil slice).

        ``json.Encoder.Encode``, which Ollama uses for the blob, appends ``\\n``; callers
        wanting byte-identical blobs add it themselves."""
        out: dict[str, object] = {
            "model_format": self.model_format,
            "model_family": self.model_family,
            "model_families": list(self.model_families) or None,
            "model_type": self.model_type,
            "file_type": self.file_type,
        }
        for key in ("renderer", "parser", "requires", "remote_host", "remote_model"):
            if getattr(self, key):
                out[key] = getattr(self, key)
        if self.capabilities:
            out["capabilities"] = list(self.capabilities)
        if self.context_length:
            out["context_length"] = self.context_length
        if self.embedding_length:
            out["embedding_length"] = self.embedding_length
        if self.base_name:
            out["base_name"] = self.base_name
        out["architecture"] = self.architecture
        out["os"] = self.os
        out["rootfs"] = {"type": "layers", "diff_ids": list(self.diff_ids)}
        return go_json_dumps(out)


_CONFIG_STR_FIELDS = (
    "model_format",
    "model_family",
    "model_type",
    "file_type",
    "renderer",
    "parser",
    "requires",
    "remote_host",
    "remote_model",
    "base_name",
    "architecture",
    "os",
)
_CONFIG_LIST_FIELDS = ("model_families", "capabilities", "diff_ids")
_CONFIG_INT_FIELDS = ("context_length", "embedding_length")


def _lenient_str(value: object, default: str = "") -> str:
    return jsonwire.go_text(value) if isinstance(value, str) else default


def _lenient_strs(value: object) -> tuple[str, ...]:
    if isinstance(value, list) and all(isinstance(v, str) for v in value):
        return tuple(jsonwire.go_text(v) for v in value)
    return ()


def _lenient_int(value: object) -> int | None:
    if isinstance(value, int) and not isinstance(value, bool) and 0 < value <= _MAX_INT64:
        return value
    return None


def parse_config(data: bytes) -> ConfigV2:
    """Parse a config blob leniently: missing or mistyped fields take their defaults
    (``architecture``/``os`` default to ``""`` when absent, as Go's zero value). Only bytes
    that are not a JSON object raise ``StoreError``."""
    obj = _load_json(data, "config")
    if not isinstance(obj, dict):
        raise StoreError("invalid config: not a JSON object")
    rootfs = obj.get("rootfs")
    diff_ids = _lenient_strs(rootfs.get("diff_ids")) if isinstance(rootfs, dict) else ()
    return ConfigV2(
        model_format=_lenient_str(obj.get("model_format")),
        model_family=_lenient_str(obj.get("model_family")),
        model_families=_lenient_strs(obj.get("model_families")),
        model_type=_lenient_str(obj.get("model_type")),
        file_type=_lenient_str(obj.get("file_type")),
        renderer=_lenient_str(obj.get("renderer")),
        parser=_lenient_str(obj.get("parser")),
        requires=_lenient_str(obj.get("requires")),
        remote_host=_lenient_str(obj.get("remote_host")),
        remote_model=_lenient_str(obj.get("remote_model")),
        capabilities=_lenient_strs(obj.get("capabilities")),
        context_length=_lenient_int(obj.get("context_length")),
        embedding_length=_lenient_int(obj.get("embedding_length")),
        base_name=_lenient_str(obj.get("base_name")),
        architecture=_lenient_str(obj.get("architecture")),
        os=_lenient_str(obj.get("os")),
        diff_ids=diff_ids,
    )
