"""One small error hierarchy for everything pollama reports to a client.

Each error carries the HTTP status Ollama uses for the same situation (``api/types.go``
``StatusError``, the handlers in ``server/routes.go``) as ``status_hint``, in the manner of
h11's ``ProtocolError.error_status_hint``. Adapters turn any ``PollamaError`` into
``{"error": message}`` with that status; anything else reaching an adapter is a bug in
pollama, never a client's fault.

Whose fault it is, as h11 splits ``RemoteProtocolError`` from ``LocalProtocolError``:
``RemoteError`` (4xx) means the peer that made the request sent something wrong;
``LocalError`` (5xx) means pollama, or something it runs or owns (a runner, the store), failed.
The same fault can be either: a damaged GGUF file a client uploads is a ``GGUFError`` (400),
one in the store is the server's ``StoreError`` (500).

Foreign exceptions (anyio's, httpx's, OSError, llama.cpp's) never travel: each edge maps the
ones it can meet into these types once, where it calls the foreign code, with
``map_exceptions`` (httpcore's ``_exceptions.map_exceptions``).

Every error type pollama defines lives in this module; the modules that raise them import
them from here.
"""

from __future__ import annotations

import contextlib
import json
from collections.abc import Callable, Iterator, Mapping
from enum import Enum
from typing import Any

__all__ = [
    "RUNNER_TERMINATED", "BadRequest", "ClientDisconnected", "ErrorCode", "ExceptionTypes",
    "FramingError", "GGUFError", "GenerationError", "LocalError", "MethodNotAllowed",
    "ModelfileError", "NDJSONError", "NoRoute", "NotFound", "PayloadTooLarge", "PollamaError",
    "QuantizeProtocolError", "RegistryError", "RemoteError", "RequestTimeout", "RunnerError",
    "RunnerProtocolError", "RunnerTerminated", "SSEError", "SafetensorsError", "SchedulerError",
    "ServerBusy", "StoreError",
    "TemplateError", "TraceError", "map_exceptions"
]


class PollamaError(Exception):
    """Base of every error pollama shows a client as ``{"error": "..."}``."""

    status_hint: int = 500
    plain_text: bool = False  # answered as bare text/plain, as gin answers unrouted requests

    def __init__(self, message: str, *, status_hint: int | None = None) -> None:
        super().__init__(message)
        self.message = message
        if status_hint is not None:
            self.status_hint = status_hint


class RemoteError(PollamaError):
    """The peer that made the request is at fault (4xx): h11's ``RemoteProtocolError``."""

    status_hint = 400


class LocalError(PollamaError):
    """pollama, or what it runs or owns, failed (5xx): h11's ``LocalProtocolError``."""

    status_hint = 500


class BadRequest(RemoteError):
    """The client sent something malformed or invalid (400)."""

    status_hint = 400


class NotFound(RemoteError):
    """The named thing (model, blob, route) does not exist (404)."""

    status_hint = 404


class NoRoute(NotFound):
    """No route has this path: gin's bare ``404 page not found``."""

    plain_text = True


class MethodNotAllowed(RemoteError):
    """The path exists, the method does not: gin's bare ``405 method not allowed``."""

    status_hint = 405
    plain_text = True


class RunnerError(LocalError):
    """The inference runner failed (crash, load failure): 500 as Ollama does."""

    status_hint = 500


class StoreError(LocalError):
    """The model store is inconsistent or unwritable."""

    status_hint = 500


class TemplateError(BadRequest):
    """A prompt template failed to parse or render (400, Ollama's ``template error: ...``):
    a Modelfile's Go TEMPLATE (``detail`` is Go's own error text) or a GGUF's jinja
    ``tokenizer.chat_template``."""

    def __init__(self, detail: str) -> None:
        super().__init__(f"template error: {detail}")
        self.detail = detail


# ---------------------------------------------------------------------------------------------
# The rest of pollama's error types (issue 14: one hierarchy), and the mapping helper.

RUNNER_TERMINATED = "llama runner process has terminated"  # Ollama's words for a dead runner


class RunnerTerminated(RunnerError):
    """The runner process exited (crashed, killed) or its pipe broke; ``reason`` is Ollama's
    ``llama runner process has terminated: exit status N: ...`` when the exit is known."""

    def __init__(self, reason: str = "") -> None:
        super().__init__(reason or RUNNER_TERMINATED)


class RequestTimeout(RemoteError):
    """The client stopped sending its request body (408)."""

    status_hint = 408


class PayloadTooLarge(RemoteError):
    """A request body beyond its route's bound (413; core.limits)."""

    status_hint = 413


class SchedulerError(LocalError):
    """An event the scheduler cannot take (a bug in the adapter), e.g. a duplicate request id."""

    status_hint = 500


class ServerBusy(LocalError):
    """The server holds all it may at once: queue, request bodies in memory (503)."""

    status_hint = 503


class ClientDisconnected(Exception):
    """The client closed its connection: nobody is left to answer, so this is not a
    ``PollamaError``. Raised by the HTTP adapter's writes and body reads; it unwinds the
    request's work."""


class ModelfileError(BadRequest):
    """A Modelfile that cannot be parsed or mapped (400).

    ``message`` is Ollama's text (with ``(line N): `` where Ollama puts it); ``line`` is the
    1-based line of the command at fault whenever known, even if the message does not say it.
    """

    def __init__(self, message: str, *, line: int | None = None) -> None:
        super().__init__(message)
        self.line = line


class GGUFError(BadRequest):
    """Bytes that are not a valid GGUF header (core.gguf). A client's file: 400; a file in
    the store is mapped to ``StoreError`` where it is read (adapters/gguf_file.py)."""


class SafetensorsError(BadRequest):
    """A safetensors file whose header breaks the format (core.safetensors): 400, naming the
    file and the tensor."""


class NDJSONError(RemoteError):
    """The peer sent a line that is not one JSON value, or a line too long to buffer."""


class SSEError(RemoteError):
    """The peer sent an event too large to buffer."""


class FramingError(RemoteError):
    """The peer's byte stream is not LSP-framed messages (or a message is too large)."""


class TraceError(RemoteError):
    """A scheduler trace file that cannot be replayed (core.trace)."""


class GenerationError(LocalError):
    """An event that does not belong in the generation machine's phase: an adapter bug."""


class RunnerProtocolError(LocalError):
    """A message on the runner pipe is not part of this protocol (a bug or a crashed peer)."""


class QuantizeProtocolError(LocalError):
    """The quantize runner wrote something that is not one of its events."""


class ErrorCode(Enum):
    """OCI distribution-spec error codes, with the status each is sent with here."""

    BLOB_UNKNOWN = ("BLOB_UNKNOWN", 404, "blob unknown to registry")
    BLOB_UPLOAD_INVALID = ("BLOB_UPLOAD_INVALID", 400, "blob upload invalid")
    BLOB_UPLOAD_UNKNOWN = ("BLOB_UPLOAD_UNKNOWN", 404, "blob upload unknown to registry")
    DIGEST_INVALID = ("DIGEST_INVALID", 400, "provided digest did not match uploaded content")
    MANIFEST_BLOB_UNKNOWN = ("MANIFEST_BLOB_UNKNOWN", 400,
                             "manifest references a manifest or blob unknown to registry")
    MANIFEST_INVALID = ("MANIFEST_INVALID", 400, "manifest invalid")
    MANIFEST_UNKNOWN = ("MANIFEST_UNKNOWN", 404, "manifest unknown to registry")
    NAME_INVALID = ("NAME_INVALID", 400, "invalid repository name")
    NAME_UNKNOWN = ("NAME_UNKNOWN", 404, "repository name not known to registry")
    SIZE_INVALID = ("SIZE_INVALID", 400, "provided length did not match content length")
    UNSUPPORTED = ("UNSUPPORTED", 400, "the operation is unsupported")
    RANGE_INVALID = ("RANGE_INVALID", 416, "requested range not satisfiable")
    UNKNOWN = ("UNKNOWN", 500, "unknown error")

    @property
    def code(self) -> str:
        return self.value[0]

    @property
    def status(self) -> int:
        return self.value[1]

    @property
    def default_message(self) -> str:
        return self.value[2]


class RegistryError(PollamaError):
    """A ``/v2/`` request failure, sent as ``{"errors":[{"code","message","detail"}]}``."""

    def __init__(self, code: ErrorCode, message: str | None = None,
                 detail: object = None) -> None:
        super().__init__(message or code.default_message, status_hint=code.status)
        self.code = code
        self.detail = detail

    def body(self) -> bytes:
        err: dict[str, object] = {"code": self.code.code, "message": self.message}
        if self.detail is not None:
            err["detail"] = self.detail
        return json.dumps({"errors": [err]}, separators=(",", ":")).encode()


ExceptionTypes = type[BaseException] | tuple[type[BaseException], ...]


@contextlib.contextmanager
def map_exceptions(mapping: Mapping[ExceptionTypes, Callable[[Any], BaseException]]
                   ) -> Iterator[None]:
    """Re-raise a foreign exception as the error ``mapping`` makes of it (the first entry
    whose types match, in order); anything else passes unchanged. httpcore's helper: an edge
    wraps its calls into foreign code in this once, instead of an ``except`` per call."""
    try:
        yield
    except Exception as exc:
        for types, make in mapping.items():
            if isinstance(exc, types):
                raise make(exc) from exc
        raise
