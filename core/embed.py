"""/api/embed and /api/embeddings: request checks and vector shaping (reference §1.3, §1.4)."""

from __future__ import annotations

import math
import struct
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

from . import options as opts
from .errors import BadRequest
from .requests import _object, _model_field, parse_keep_alive


@dataclass(frozen=True, slots=True, kw_only=True)
class EmbedRequest:
    model: str
    inputs: tuple[str, ...] = ()
    truncate: bool = True
    dimensions: int = 0
    keep_alive: int | None = None
    options: dict[str, Any] = field(default_factory=dict)


def parse_embed(body: Any) -> EmbedRequest:
    obj = _object(body, "EmbedRequest")
    raw = obj.get("input")
    if raw is None or raw == "":
        inputs: tuple[str, ...] = ()
    elif isinstance(raw, str):
        inputs = (raw,)
    elif isinstance(raw, list) and all(isinstance(x, str) for x in raw):
        inputs = tuple(raw)
    else:
        raise BadRequest("invalid input type")
    dims = obj.get("dimensions") or 0
    if isinstance(dims, bool) or not isinstance(dims, (int, float)):
        raise BadRequest("json: cannot unmarshal into Go struct field EmbedRequest.dimensions "
                         "of type int")
    truncate = obj.get("truncate")
    return EmbedRequest(
        model=str(obj.get("model") or ""),
        inputs=inputs,
        truncate=True if truncate is None else bool(truncate),
        dimensions=int(dims),
        keep_alive=parse_keep_alive(obj.get("keep_alive"), "EmbedRequest"),
        options=opts.validate(obj.get("options"), struct="EmbedRequest"),
    )


@dataclass(frozen=True, slots=True, kw_only=True)
class LegacyEmbedRequest:
    model: str
    prompt: str = ""
    keep_alive: int | None = None
    options: dict[str, Any] = field(default_factory=dict)


def parse_embeddings(body: Any) -> LegacyEmbedRequest:
    obj = _object(body, "EmbeddingRequest")
    model = _model_field(obj)
    if not model:
        raise BadRequest("model is required")
    return LegacyEmbedRequest(model=model, prompt=str(obj.get("prompt") or ""),
                              keep_alive=parse_keep_alive(obj.get("keep_alive"),
                                                          "EmbeddingRequest"),
                              options=opts.validate(obj.get("options"),
                                                    struct="EmbeddingRequest"))


def normalize(vec: Sequence[float]) -> list[float]:
    norm = math.sqrt(sum(v * v for v in vec))
    if norm == 0:
        return list(vec)
    return [_f32(v / norm) for v in vec]


def shape(vec: Sequence[float], dimensions: int) -> list[float]:
    """L2-normalise; with ``0 < dimensions < len`` truncate first, then re-normalise."""
    if any(not math.isfinite(v) for v in vec):
        raise BadRequest("embedding contains NaN or Inf values")
    if 0 < dimensions < len(vec):
        vec = vec[:dimensions]
    return normalize(vec)


def _f32(v: float) -> float:
    """Round to float32 precision and its shortest decimal, as Go prints a float32."""
    f = struct.unpack("<f", struct.pack("<f", v))[0]
    for digits in range(6, 10):
        text = f"{f:.{digits}g}"
        if struct.unpack("<f", struct.pack("<f", float(text)))[0] == f:
            return float(text)
    return float(f)


def pack_batches(seqs: Sequence[Sequence[int]], max_tokens: int,
                 max_seqs: int) -> list[list[Sequence[int]]]:
    """Split token sequences, in order, into groups that each fit one decode: at most
    ``max_tokens`` tokens and ``max_seqs`` sequences per group. A sequence longer than
    ``max_tokens`` (the caller truncates or refuses those first) gets a group of its own."""
    groups: list[list[Sequence[int]]] = []
    size = 0
    for toks in seqs:
        if not groups or size + len(toks) > max_tokens or len(groups[-1]) >= max(1, max_seqs):
            groups.append([])
            size = 0
        groups[-1].append(toks)
        size += len(toks)
    return groups
