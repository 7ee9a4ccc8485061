"""How much one client may make the server hold: body sizes, connections, time between bytes.

The numbers are policy, decided here; ``adapters/http_server.py`` enforces them. Bodies are bound
per route: uploads (``/api/blobs``, the ``/v2`` upload routes) stream to disk and are bound only
by the store; requests that may carry images (generate, chat, create) get a large bound; every
other route a small one. Beyond its bound a request gets 413. The bytes of request bodies held
in memory at once, over all connections, are bound too (503 beyond).

Slow clients: a request head must arrive within ``header_timeout`` of its first byte (or of the
connection opening), a body must make progress at least every ``body_timeout``, and an idle
keep-alive connection is closed after ``idle_timeout``. Connections beyond ``max_connections``
wait in the kernel's backlog until one closes.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

from .errors import PayloadTooLarge

__all__ = ["LARGE", "STREAMED", "Limits", "MiB", "from_env", "too_large"]

MiB = 1024 * 1024

# Routes whose body streams to disk instead of memory.
STREAMED = frozenset({"blob", "registry_upload", "registry_upload_start"})
# Routes whose JSON may carry base64 images or large texts.
LARGE = frozenset({"generate", "chat", "create", "embed", "embeddings",
                   "openai_chat", "openai_completions", "openai_embeddings",
                   "anthropic_messages", "openai_responses"})


@dataclass(frozen=True, slots=True, kw_only=True)
class Limits:
    small_body: int = 1 * MiB
    large_body: int = 128 * MiB
    manifest_body: int = 4 * MiB
    bodies_in_flight: int = 1024 * MiB
    max_connections: int = 1024
    header_timeout: float = 30.0
    body_timeout: float = 120.0
    idle_timeout: float = 300.0

    def body_limit(self, handler: str, method: str) -> int | None:
        """The most bytes of body a request to ``handler`` may send; None: streamed to disk."""
        if handler in STREAMED or (handler == "registry_manifest" and method != "PUT"):
            return None
        if handler == "registry_manifest":
            return self.manifest_body
        if handler in LARGE:
            return self.large_body
        return self.small_body


def too_large(limit: int) -> PayloadTooLarge:
    return PayloadTooLarge(f"request body too large: the limit for this route is {limit} bytes")


def _number(get: Callable[[str], str], key: str, default: float) -> float:
    text = get(key)
    if not text:
        return default
    try:
        value = float(text)
    except ValueError:
        return default
    return value if value > 0 else default


def from_env(get: Callable[[str], str]) -> Limits:
    """``POLLAMA_MAX_BODY_MB``, ``POLLAMA_MAX_CONNECTIONS`` and the three timeouts (seconds);
    ``get(key)`` is the trimmed value of ``POLLAMA_<key>`` (or ``OLLAMA_<key>``), core.config's."""
    d = Limits()
    return Limits(
        large_body=int(_number(get, "MAX_BODY_MB", d.large_body / MiB) * MiB),
        bodies_in_flight=max(int(_number(get, "MAX_BODY_MB", d.large_body / MiB) * MiB),
                             d.bodies_in_flight),
        max_connections=int(_number(get, "MAX_CONNECTIONS", d.max_connections)),
        header_timeout=_number(get, "HEADER_TIMEOUT", d.header_timeout),
        body_timeout=_number(get, "BODY_TIMEOUT", d.body_timeout),
        idle_timeout=_number(get, "IDLE_TIMEOUT", d.idle_timeout),
    )
