"""The native API route table (Ollama's server/routes.go GenerateRoutes) and matching, like gin's
router.

Unknown path ⇒ 404 ``404 page not found`` (text/plain); known path, wrong method ⇒ 405
``405 method not allowed``. ``HEAD`` is allowed exactly where the table lists it.
"""

from __future__ import annotations

from dataclasses import dataclass

from .errors import MethodNotAllowed, NoRoute

__all__ = ["ROUTES", "Match", "dialect", "match", "pattern_of"]

# (path pattern, methods, handler name). ``:param`` matches one path segment.
ROUTES: tuple[tuple[str, frozenset[str], str], ...] = (
    ("/", frozenset({"GET", "HEAD"}), "root"),
    ("/api/version", frozenset({"GET", "HEAD"}), "version"),
    ("/api/tags", frozenset({"GET", "HEAD"}), "tags"),
    ("/api/generate", frozenset({"POST"}), "generate"),
    ("/api/chat", frozenset({"POST"}), "chat"),
    ("/api/embed", frozenset({"POST"}), "embed"),
    ("/api/embeddings", frozenset({"POST"}), "embeddings"),
    ("/api/blobs/:digest", frozenset({"HEAD", "POST"}), "blob"),
    ("/api/create", frozenset({"POST"}), "create"),
    ("/api/pull", frozenset({"POST"}), "pull"),
    ("/api/ps", frozenset({"GET"}), "ps"),
    ("/api/show", frozenset({"POST"}), "show"),
    ("/api/copy", frozenset({"POST"}), "copy"),
    ("/api/delete", frozenset({"DELETE"}), "delete"),
    ("/api/push", frozenset({"POST"}), "push"),
    # JSON-RPC 2.0 over WebSocket (core.jsonrpc) and the web chat page that speaks it.
    ("/api/ws", frozenset({"GET"}), "websocket"),
    ("/ui", frozenset({"GET", "HEAD"}), "ui"),
    # Prometheus text exposition (beyond Ollama), behind the same access rules as the API.
    ("/metrics", frozenset({"GET", "HEAD"}), "metrics"),
    # OpenAI- and Anthropic-compatible front doors (Ollama's openai/openai.go), on the same
    # generation core.
    ("/v1/chat/completions", frozenset({"POST"}), "openai_chat"),
    ("/v1/completions", frozenset({"POST"}), "openai_completions"),
    ("/v1/embeddings", frozenset({"POST"}), "openai_embeddings"),
    ("/v1/models", frozenset({"GET"}), "openai_models"),
    ("/v1/models/:model", frozenset({"GET"}), "openai_model"),
    ("/v1/responses", frozenset({"POST"}), "openai_responses"),
    ("/v1/messages", frozenset({"POST"}), "anthropic_messages"),
    ("/v1/messages/count_tokens", frozenset({"POST"}), "anthropic_count_tokens"),
    # pollama as a registry (OCI distribution protocol, adapters/registry_server.py). The upload
    # routes come before blobs/:digest, which has as many segments.
    ("/v2", frozenset({"GET", "HEAD"}), "registry_base"),
    ("/v2/:namespace/:model/manifests/:reference", frozenset({"GET", "HEAD", "PUT"}),
     "registry_manifest"),
    ("/v2/:namespace/:model/blobs/uploads", frozenset({"POST"}), "registry_upload_start"),
    ("/v2/:namespace/:model/blobs/uploads/:upload", frozenset({"GET", "PATCH", "PUT", "DELETE"}),
     "registry_upload"),
    ("/v2/:namespace/:model/blobs/:digest", frozenset({"GET", "HEAD"}), "registry_blob"),
)


def dialect(handler: str) -> str:
    """Which API's error shape a handler answers in: ``openai``, ``anthropic``, ``registry``
    (OCI) or ``native`` (``{"error": "..."}``)."""
    for prefix in ("openai", "anthropic", "registry"):
        if handler.startswith(prefix + "_"):
            return prefix
    return "native"


@dataclass(frozen=True, slots=True, kw_only=True)
class Match:
    handler: str
    params: dict[str, str]
    pattern: str = ""  # the route template, e.g. ``/api/blobs/:digest`` (a bounded label)


def _match_path(pattern: str, path: str) -> dict[str, str] | None:
    p_parts = pattern.strip("/").split("/")
    parts = path.strip("/").split("/")
    if pattern == "/":
        return {} if path == "/" else None
    if len(p_parts) != len(parts):
        return None
    params: dict[str, str] = {}
    for pp, part in zip(p_parts, parts):
        if pp.startswith(":"):
            if not part:
                return None
            params[pp[1:]] = part
        elif pp != part:
            return None
    return params


def _path(target: str) -> str:
    path = target.split("?", 1)[0]
    if path != "/" and path.endswith("/"):
        path = path.rstrip("/") or "/"
    return path


def pattern_of(target: str) -> str | None:
    """The template of the first route whose path matches ``target``, whatever the method:
    what metrics and logs name a request by (never the raw path, which clients choose)."""
    path = _path(target)
    for pattern, _, _ in ROUTES:
        if _match_path(pattern, path) is not None:
            return pattern
    return None


def match(method: str, target: str) -> Match:
    path = _path(target)
    allowed = False
    for pattern, methods, handler in ROUTES:
        params = _match_path(pattern, path)
        if params is None:
            continue
        if method in methods:
            return Match(handler=handler, params=params, pattern=pattern)
        allowed = True
    if allowed:
        raise MethodNotAllowed("405 method not allowed")
    raise NoRoute("404 page not found")
