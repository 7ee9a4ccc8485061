"""Shaping /api/generate and /api/chat responses, in Ollama's wire order (Ollama's server/routes.go
GenerateHandler and ChatHandler).

Metric fields are Go ``omitempty``: absent when zero. Durations are integer nanoseconds.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

__all__ = [
    "Final", "Metrics", "chat_chunk", "chat_final", "debug_render", "error_body", "generate_chunk",
    "generate_final", "load_response", "ps_entry", "tag_entry"
]


@dataclass(frozen=True, slots=True, kw_only=True)
class Metrics:
    total_duration: int = 0
    load_duration: int = 0
    prompt_eval_count: int = 0
    prompt_eval_duration: int = 0
    eval_count: int = 0
    eval_duration: int = 0

    def fields(self) -> dict[str, int]:
        out: dict[str, int] = {}
        for key in ("total_duration", "load_duration", "prompt_eval_count",
                    "prompt_eval_duration", "eval_count", "eval_duration"):
            value = getattr(self, key)
            if value:
                out[key] = value
        return out


@dataclass(frozen=True, slots=True, kw_only=True)
class Final:
    """What the end of a generation contributes to the last chunk."""

    done_reason: str
    metrics: Metrics = field(default_factory=Metrics)
    context: Sequence[int] | None = None


def _message(text: str, thinking: str,
             tool_calls: list[dict[str, Any]] | None) -> dict[str, Any]:
    msg: dict[str, Any] = {"role": "assistant", "content": text}
    if thinking:
        msg["thinking"] = thinking
    if tool_calls:
        msg["tool_calls"] = tool_calls
    return msg


def _generate_head(model: str, created_at: str, text: str, thinking: str,
                   done: bool) -> dict[str, Any]:
    """The fields every /api/generate line starts with, in Ollama's order."""
    out: dict[str, Any] = {"model": model, "created_at": created_at, "response": text}
    if thinking:
        out["thinking"] = thinking
    out["done"] = done
    return out


def generate_chunk(model: str, created_at: str, text: str,
                   logprobs: list[dict[str, Any]] | None = None, *,
                   thinking: str = "") -> dict[str, Any]:
    out = _generate_head(model, created_at, text, thinking, done=False)
    if logprobs:
        out["logprobs"] = logprobs
    return out


def generate_final(model: str, created_at: str, final: Final, text: str = "",
                   logprobs: list[dict[str, Any]] | None = None, *,
                   thinking: str = "") -> dict[str, Any]:
    out = _generate_head(model, created_at, text, thinking, done=True)
    out["done_reason"] = final.done_reason
    if final.context:
        out["context"] = list(final.context)
    out.update(final.metrics.fields())
    if logprobs:
        out["logprobs"] = logprobs  # GenerateResponse: logprobs come after the metrics
    return out


def chat_chunk(model: str, created_at: str, text: str,
               logprobs: list[dict[str, Any]] | None = None, *, thinking: str = "",
               tool_calls: list[dict[str, Any]] | None = None) -> dict[str, Any]:
    out: dict[str, Any] = {
        "model": model, "created_at": created_at,
        "message": _message(text, thinking, tool_calls), "done": False,
    }
    if logprobs:
        out["logprobs"] = logprobs
    return out


def chat_final(model: str, created_at: str, final: Final, text: str = "",
               logprobs: list[dict[str, Any]] | None = None, *, thinking: str = "",
               tool_calls: list[dict[str, Any]] | None = None) -> dict[str, Any]:
    out: dict[str, Any] = {
        "model": model, "created_at": created_at,
        "message": _message(text, thinking, tool_calls), "done": True,
        "done_reason": final.done_reason,
    }
    if logprobs:
        out["logprobs"] = logprobs  # ChatResponse: logprobs come before the metrics
    out.update(final.metrics.fields())
    return out


def load_response(model: str, created_at: str, *, chat: bool, reason: str) -> dict[str, Any]:
    """Answer to an empty prompt/messages: the model was loaded (or unloaded)."""
    if chat:
        return {"model": model, "created_at": created_at,
                "message": {"role": "assistant", "content": ""}, "done": True,
                "done_reason": reason}
    return {"model": model, "created_at": created_at, "response": "", "done": True,
            "done_reason": reason}


def debug_render(model: str, created_at: str, rendered: str, *, chat: bool,
                 image_count: int = 0) -> dict[str, Any]:
    """Answer to ``_debug_render_only``: the prompt that would have been run."""
    out: dict[str, Any] = {"model": model, "created_at": created_at}
    if chat:
        out["message"] = {"role": "assistant", "content": ""}
    else:
        out["response"] = ""
    out["done"] = True
    out["_debug_info"] = {"rendered_template": rendered, "image_count": image_count}
    return out


def error_body(message: str) -> dict[str, str]:
    return {"error": message}


# ---------------------------------------------------------------------------------------------
# Listings (Ollama's server/routes.go ListHandler, PsHandler, ShowHandler)


def tag_entry(name: str, *, modified_at: str, size: int, digest: str,
              details: Mapping[str, Any], context_length: int = 0,
              embedding_length: int = 0) -> dict[str, Any]:
    """One model of /api/tags; ``name`` is the shortest display name."""
    shown = dict(details)
    if context_length:
        shown["context_length"] = context_length
    if embedding_length:
        shown["embedding_length"] = embedding_length
    return {"name": name, "model": name, "modified_at": modified_at, "size": size,
            "digest": digest, "details": shown}


def ps_entry(name: str, *, size: int, digest: str, details: Mapping[str, Any],
             expires_at: str, size_vram: int, context_length: int,
             node: Mapping[str, str] | None = None) -> dict[str, Any]:
    """One loaded model of /api/ps. On a cluster, ``node`` (pollama's own field, which Ollama
    clients ignore) says where it runs: ``{"id": ray node id, "address": its IP}``."""
    entry = {"name": name, "model": name, "size": size, "digest": digest,
             "details": dict(details), "expires_at": expires_at, "size_vram": size_vram,
             "context_length": context_length}
    if node is not None:
        entry["node"] = dict(node)
    return entry

