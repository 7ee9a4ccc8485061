"""The protocol between ``pollama serve`` and a runner process.

Transport: the runner's stdin carries server→runner messages, its stdout runner→server
messages, each one NDJSON line (``core.ndjson``); stderr is the runner's log. Every message names
the request it belongs to by ``id`` (an int chosen by the server, unique per runner), so many
requests can be in flight on one runner at once and each can be cancelled on its own. This is the
shape continuous batching needs: the runner may interleave ``Token`` events of different ids.

Server → runner (commands)::

    Load(id, model_path, num_ctx, num_batch, num_gpu, num_thread, use_mmap, seed,
         num_parallel, ...)
        → Loaded(id, n_ctx, n_ctx_train, n_vocab, n_embd, chat_template, bos_token, eos_token)
          | Failed(id, message)
    Complete(id, prompt, context, options, format)
                                → Token(id, text)* then Done(id, ...)
                                  | Failed(id, message, status)
    Cancel(id, target)          → the target ends with Done(done_reason="cancel")
    Embed(id, inputs, truncate, num_ctx)
                                → Embeddings(id, embeddings, prompt_eval_count) | Failed
    Tokenize(id, text)          → Tokens(id, tokens) | Failed
    Shutdown(id)                → the runner exits 0 after finishing nothing further

``context`` on Complete is a list of token ids prepended before the tokenised prompt (the
deprecated ``context`` of /api/generate). Runtime ``options`` are the keys of core.options with
phase RUNTIME. Durations in Done are integer nanoseconds measured by the runner.
"""

from __future__ import annotations

from dataclasses import dataclass, field, fields
from typing import Any, Union

from . import ndjson
from .errors import NDJSONError, RunnerProtocolError

__all__ = [
    "RUNNER_KINDS", "SERVER_KINDS", "Cancel", "Complete", "Done", "Embed", "Embeddings", "Failed",
    "Load", "Loaded", "Message", "RunnerCodec", "RunnerMessage", "ServerMessage", "Shutdown",
    "Token", "Tokenize", "Tokens", "from_wire", "to_wire"
]


@dataclass(frozen=True, slots=True, kw_only=True)
class Load:
    id: int
    model_path: str
    num_ctx: int = 4096
    num_batch: int = 512
    num_gpu: int = -1
    num_thread: int = 0
    use_mmap: bool | None = None
    seed: int = -1
    embedding: bool = False
    adapters: list[str] = field(default_factory=list)  # LoRA GGUF paths, applied at load
    projectors: list[str] = field(default_factory=list)  # vision projector (mmproj) GGUF paths
    flash_attention: int = -1  # -1 auto, 0 off, 1 on (POLLAMA_FLASH_ATTENTION)
    # Sequences decoded together (POLLAMA_NUM_PARALLEL): the context holds num_ctx positions
    # for each, num_ctx × num_parallel in all, as Ollama sizes it.
    num_parallel: int = 1

    def __post_init__(self) -> None:
        if self.num_parallel < 1:
            raise RunnerProtocolError(f"invalid num_parallel {self.num_parallel!r}")


@dataclass(frozen=True, slots=True, kw_only=True)
class Complete:
    id: int
    prompt: str
    context: list[int] | None = None
    options: dict[str, Any] = field(default_factory=dict)
    format: Any = None  # None, "json", or a JSON-schema object: constrains output by grammar
    logprobs: bool = False
    top_logprobs: int = 0
    shift: bool = True  # at a full context: shift it (drop old tokens) rather than stop
    # With tools: the request's tools and the template's tool-call format (core.tools), so the
    # runner can constrain decoding to text or one well-formed call.
    tools: list[dict[str, Any]] | None = None
    tool_format: dict[str, Any] | None = None
    tools_required: bool = False  # the grammar admits only a call, no free text
    # Base64 images; the prompt places image i where it says ``[img-i]`` (Ollama's server/routes.go
    # GenerateHandler).
    images: list[str] = field(default_factory=list)


@dataclass(frozen=True, slots=True, kw_only=True)
class Embed:
    id: int
    inputs: list[str]
    truncate: bool = True
    # The limit (core.embed.fit): the request's num_ctx for /api/embed, 0 when it asked none
    # (the runner's context); None for the legacy /api/embeddings, which has no limit of its own.
    num_ctx: int | None = 0


@dataclass(frozen=True, slots=True, kw_only=True)
class Cancel:
    id: int
    target: int


@dataclass(frozen=True, slots=True, kw_only=True)
class Tokenize:
    id: int
    text: str


@dataclass(frozen=True, slots=True, kw_only=True)
class Shutdown:
    id: int


@dataclass(frozen=True, slots=True, kw_only=True)
class Loaded:
    id: int
    n_ctx: int
    n_ctx_train: int
    n_vocab: int
    n_embd: int
    chat_template: str = ""  # GGUF tokenizer.chat_template as llama.cpp read it
    bos_token: str = ""
    eos_token: str = ""


@dataclass(frozen=True, slots=True, kw_only=True)
class Token:
    id: int
    text: str
    # With Complete.logprobs: one entry per token this text came from, in Ollama's shape
    # {"token", "logprob", "bytes", "top_logprobs": [{"token", "logprob", "bytes"}]}.
    logprobs: list[dict[str, Any]] | None = None


@dataclass(frozen=True, slots=True, kw_only=True)
class Done:
    id: int
    done_reason: str  # "stop" | "length" | "cancel"
    prompt_eval_count: int = 0  # the whole prompt, as Ollama's numPromptInputs
    prompt_cached: int = 0  # leading prompt tokens found in the runner's cache (not evaluated)
    prompt_eval_duration: int = 0
    eval_count: int = 0
    eval_duration: int = 0
    context: list[int] = field(default_factory=list)

    def __post_init__(self) -> None:
        if self.done_reason not in ("stop", "length", "cancel"):
            raise RunnerProtocolError(f"invalid done_reason {self.done_reason!r}")


@dataclass(frozen=True, slots=True, kw_only=True)
class Tokens:
    id: int
    tokens: list[int]


@dataclass(frozen=True, slots=True, kw_only=True)
class Embeddings:
    id: int
    embeddings: list[list[float]]  # raw pooled vectors, float32 values
    prompt_eval_count: int = 0


@dataclass(frozen=True, slots=True, kw_only=True)
class Failed:
    id: int
    message: str
    status: int = 500  # the HTTP status the failure maps to (400: the request was unusable)


ServerMessage = Union[Load, Complete, Embed, Cancel, Tokenize, Shutdown]
RunnerMessage = Union[Loaded, Token, Done, Tokens, Embeddings, Failed]
Message = Union[ServerMessage, RunnerMessage]

_KINDS: dict[str, type[Any]] = {
    "load": Load, "complete": Complete, "embed": Embed, "cancel": Cancel, "tokenize": Tokenize,
    "shutdown": Shutdown, "loaded": Loaded, "token": Token, "done": Done, "tokens": Tokens,
    "embeddings": Embeddings, "failed": Failed,
}
_NAMES = {cls: name for name, cls in _KINDS.items()}
SERVER_KINDS = (Load, Complete, Embed, Cancel, Tokenize, Shutdown)
RUNNER_KINDS = (Loaded, Token, Done, Tokens, Embeddings, Failed)


def to_wire(msg: Message) -> dict[str, Any]:
    out: dict[str, Any] = {"type": _NAMES[type(msg)]}
    for name, _ in _SCHEMA[type(msg)]:
        out[name] = getattr(msg, name)  # shallow: the JSON encoder walks lists itself
    return out


def from_wire(obj: Any) -> Message:
    """Build a message from a decoded JSON object, checking field names and types."""
    if not isinstance(obj, dict):
        raise RunnerProtocolError("runner message is not an object")
    kind = obj.get("type")
    cls = _KINDS.get(kind) if isinstance(kind, str) else None
    if cls is None:
        raise RunnerProtocolError(f"unknown runner message type {kind!r}")
    schema = _SCHEMA[cls]
    kwargs = {name: obj[name] for name, _ in schema if name in obj}
    try:
        msg = cls(**kwargs)
    except TypeError as exc:
        raise RunnerProtocolError(f"bad {kind} message: {exc}") from None
    for name, ok in schema:
        if not ok(getattr(msg, name)):
            raise RunnerProtocolError(f"bad {cls.__name__}.{name}: {getattr(msg, name)!r}")
    return msg  # type: ignore[no-any-return]


def _is_int(v: Any) -> bool:
    return isinstance(v, int) and not isinstance(v, bool)


def _is_number(v: Any) -> bool:
    return isinstance(v, (int, float)) and not isinstance(v, bool)


def _optional(check: Any) -> Any:
    return lambda v: v is None or check(v)


def _list_of(check: Any) -> Any:
    return lambda v: isinstance(v, list) and all(check(x) for x in v)


# Each field type used by a message, and how a decoded value is checked against it.
_CHECKS: dict[str, Any] = {
    "int": _is_int,
    "str": lambda v: isinstance(v, str),
    "bool": lambda v: isinstance(v, bool),
    "int | None": _optional(_is_int),
    "bool | None": _optional(lambda v: isinstance(v, bool)),
    "list[int]": _list_of(_is_int),
    "list[int] | None": _optional(_list_of(_is_int)),
    "dict[str, Any]": lambda v: isinstance(v, dict),
    "dict[str, Any] | None": _optional(lambda v: isinstance(v, dict)),
    "Any": lambda v: True,
    "list[dict[str, Any]] | None": _optional(_list_of(lambda v: isinstance(v, dict))),
    "list[str]": _list_of(lambda v: isinstance(v, str)),
    "list[list[float]]": _list_of(_list_of(_is_number)),
}
# Per message class: its fields in order, each with its check (a new field type must be
# added to _CHECKS: the KeyError is raised at import).
_SCHEMA: dict[type, tuple[tuple[str, Any], ...]] = {
    cls: tuple((f.name, _CHECKS[str(f.type)]) for f in fields(cls)) for cls in _NAMES
}


class RunnerCodec:
    """Frame messages on a byte stream: ``send()`` gives bytes, ``next_event()`` gives messages."""

    def __init__(self, *, accept: tuple[type[Any], ...]) -> None:
        self._reader = ndjson.NDJSONReader()
        self._accept = accept

    def receive_data(self, data: bytes) -> None:
        self._reader.receive_data(data)

    def next_event(self) -> Message | object | None:
        """A message, ``ndjson.NEED_DATA``, or ``None`` when the peer closed the stream."""
        try:
            obj = self._reader.next_event()
        except NDJSONError as exc:
            raise RunnerProtocolError(str(exc)) from None
        if obj is ndjson.NEED_DATA or obj is None:
            result: Message | object | None = obj
            return result
        msg: Message = from_wire(obj)
        if type(msg) not in self._accept:
            raise RunnerProtocolError(f"unexpected {type(msg).__name__} on this side of the pipe")
        return msg

    @staticmethod
    def send(msg: Message) -> bytes:
        return ndjson.encode(to_wire(msg))
