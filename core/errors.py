"""One small error hierarchy for everything pollama reports to a client.

Each error carries the HTTP status Ollama uses for the same situation (reference §1.15) as
``status_hint``, in the manner of h11's ``ProtocolError.error_status_hint``. Adapters turn any
``PollamaError`` into ``{"error": message}`` with that status; anything else reaching an
adapter is a bug in pollama, never a client's fault.
"""

from __future__ import annotations


class PollamaError(Exception):
    """Base of every error pollama shows a client as ``{"error": "..."}``."""

    status_hint: int = 500
    plain_text: bool = False  # answered as bare text/plain, as gin answers unrouted requests

    def __init__(self, message: str, *, status_hint: int | None = None) -> None:
        super().__init__(message)
        self.message = message
        if status_hint is not None:
            self.status_hint = status_hint


class BadRequest(PollamaError):
    """The client sent something malformed or invalid (400)."""

    status_hint = 400


class NotFound(PollamaError):
    """The named thing (model, blob, route) does not exist (404)."""

    status_hint = 404


class NoRoute(NotFound):
    """No route has this path: gin's bare ``404 page not found``."""

    plain_text = True


class MethodNotAllowed(PollamaError):
    """The path exists, the method does not: gin's bare ``405 method not allowed``."""

    status_hint = 405
    plain_text = True


class ServiceUnavailable(PollamaError):
    """Server busy or a runner refused work (503)."""

    status_hint = 503


class RunnerError(PollamaError):
    """The inference runner failed (crash, load failure): 500 as Ollama does."""

    status_hint = 500


class StoreError(PollamaError):
    """The model store is inconsistent or unwritable."""

    status_hint = 500


class TemplateError(BadRequest):
    """A prompt template failed to parse or render (400, Ollama's ``template error: ...``):
    a Modelfile's Go TEMPLATE (``detail`` is Go's own error text) or a GGUF's jinja
    ``tokenizer.chat_template``."""

    def __init__(self, detail: str) -> None:
        super().__init__(f"template error: {detail}")
        self.detail = detail
