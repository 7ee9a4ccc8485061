"""/api/embed and /api/embeddings: request checks, the token limit, vector shaping (reference
Ollama's server/routes.go EmbedHandler and EmbeddingsHandler).

The limit on one input (Ollama's EmbedHandler, server/routes.go): the context is
``min(num_ctx, trained context length)``; one slot of it is kept for a BOS token unless the input
already starts with one, and one for an EOS token unless it already ends with one (Ollama asks
``<arch>.add_bos_token`` / ``<arch>.add_eos_token``, default true, so in practice both slots are
kept). A limit of 0 or less is ``input after truncation exceeds maximum context length``, with or
without ``truncate``. A longer input is cut to the limit, or with ``truncate: false`` refused as
``the input length exceeds the context length``. The runner then refuses an input (with the
specials the model adds) that does not fit one decode; Ollama retries that input cut to the
batch size, and fails with ``input exceeds maximum context length and cannot be truncated
further`` when cutting does not shorten it. The legacy /api/embeddings applies no handler limit:
the runner's refusal is all there is.
"""

from __future__ import annotations

import math
import struct
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from . import options as opts
from .errors import BadRequest
from .requests import _object, _model_field, parse_keep_alive

__all__ = [
    "NOT_SHORTER", "NO_ROOM", "TOO_LONG", "EmbedRequest", "LegacyEmbedRequest", "TokenFacts",
    "context_limit", "fit", "normalize", "pack_batches", "parse_embed", "parse_embeddings",
    "shape", "token_limit"
]


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


# ---------------------------------------------------------------------------------------------
# The token limit of one input (see the module docstring)

NO_ROOM = "input after truncation exceeds maximum context length"
TOO_LONG = "the input length exceeds the context length"
NOT_SHORTER = "input exceeds maximum context length and cannot be truncated further"


@dataclass(frozen=True, slots=True, kw_only=True)
class TokenFacts:
    """What the limit needs to know about the loaded model and its runner."""

    n_ctx: int  # tokens one sequence may hold on the runner
    n_batch: int  # tokens one decode takes; an input is embedded in one decode
    n_ctx_train: int  # the model's trained context length; 0 when unknown
    bos: int  # tokenizer.ggml.bos_token_id, 0 when absent (as Ollama's kv.Uint reads it)
    eos: int
    reserve_bos: bool = True  # Ollama's kv.Bool("add_bos_token", true)
    reserve_eos: bool = True
    added: int = 0  # special tokens the model puts around an input (BOS/EOS per its vocab)

    def __post_init__(self) -> None:
        if self.n_ctx < 1 or self.n_batch < 1 or self.n_ctx_train < 0 or self.added < 0:
            raise ValueError(f"invalid {self!r}")

    @classmethod
    def from_metadata(cls, meta: Mapping[str, Any], *, n_ctx: int, n_batch: int,
                      n_ctx_train: int, added: int) -> TokenFacts:
        """From GGUF metadata (values as llama.cpp prints them: strings). Ollama's kv lookups
        put the architecture before a key that is not ``tokenizer.``/``general.``, so the
        reserves come from ``<arch>.add_bos_token`` (rarely present; default true), not from
        ``tokenizer.ggml.add_bos_token``."""
        arch = str(meta.get("general.architecture", ""))
        return cls(n_ctx=n_ctx, n_batch=n_batch, n_ctx_train=max(0, n_ctx_train),
                   bos=_meta_int(meta.get("tokenizer.ggml.bos_token_id")),
                   eos=_meta_int(meta.get("tokenizer.ggml.eos_token_id")),
                   reserve_bos=_meta_bool(meta.get(f"{arch}.add_bos_token"), True),
                   reserve_eos=_meta_bool(meta.get(f"{arch}.add_eos_token"), True),
                   added=added)


def _meta_int(value: Any) -> int:
    if isinstance(value, bool):
        return 0
    try:
        return int(value) if value is not None else 0
    except ValueError:
        return 0


def _meta_bool(value: Any, default: bool) -> bool:
    if isinstance(value, bool):
        return value
    if isinstance(value, str) and value.lower() in ("true", "false"):
        return value.lower() == "true"
    return default


def context_limit(num_ctx: int, facts: TokenFacts) -> int:
    """``min(num_ctx, trained context)``; ``num_ctx`` 0 (none asked) means the runner's."""
    ctx = num_ctx if num_ctx > 0 else facts.n_ctx
    return min(ctx, facts.n_ctx_train) if facts.n_ctx_train > 0 else ctx


def token_limit(tokens: Sequence[int], limit: int, facts: TokenFacts) -> int:
    """``limit`` less a slot for BOS and one for EOS the input does not already carry."""
    if tokens and tokens[0] != facts.bos and facts.reserve_bos:
        limit -= 1
    if tokens and tokens[-1] != facts.eos and facts.reserve_eos:
        limit -= 1
    return limit


def fit(tokens: Sequence[int], facts: TokenFacts, *, num_ctx: int | None,
        truncate: bool) -> list[int]:
    """The input tokens (tokenized without specials) to embed, or BadRequest.

    ``num_ctx``: the request's num_ctx for /api/embed (0: none asked); None for the legacy
    /api/embeddings, which applies no limit of its own."""
    out = list(tokens)
    limit: int | None = None
    if num_ctx is not None:
        limit = token_limit(out, context_limit(num_ctx, facts), facts)
        if limit <= 0:
            raise BadRequest(NO_ROOM)
        if len(out) > limit:
            if not truncate:
                raise BadRequest(TOO_LONG)
            out = out[:limit]
    # The runner: the input and the model's specials in one decode.
    physical = min(facts.n_ctx, facts.n_batch)
    if len(out) + facts.added <= physical:
        return out
    if not truncate:
        raise BadRequest(TOO_LONG)
    if limit is None:  # the runner itself has no retry: cut to what fits
        if physical - facts.added <= 0:
            raise BadRequest(NO_ROOM)
        return out[:physical - facts.added]
    retry = min(limit, token_limit(out, physical, facts))
    if retry <= 0:
        raise BadRequest(NO_ROOM)
    if len(out) <= retry:
        raise BadRequest(NOT_SHORTER)
    out = out[:retry]
    if len(out) + facts.added > physical:  # the retried input is refused again
        raise BadRequest(TOO_LONG)
    return out
