"""One generation, from a parsed native request to its native response: a Sans-IO machine.

Every front door (native NDJSON, OpenAI SSE, Anthropic SSE, JSON-RPC) runs the same machine;
they differ only in how they encode the native objects it produces. The adapter owns the runner
and the clock; the machine owns every decision in between::

    gen = Generation(job)
    commands = gen.start(now)
    while not over:
        ... execute commands, observe an event ...
        commands = gen.receive(event, now)

Commands (machine → adapter)::

    CountTokens(text)   tokenize ``text`` with the model; answer TokenCount(n)
    Run(...)            start a completion on the runner; answer with its RunnerToken*,
                        then RunnerDone or RunnerFailed
    StopRun()           end the current completion (cancel it on the runner); deliver no more
                        of its events
    Emit(obj)           send this native chunk (streaming only)
    Finish(obj)         send this last native object; the generation is over
    Fail(error)         the generation is over with this error (its status before the first
                        Emit; an error line after)

Theory of operation (Ollama's server/routes.go GenerateHandler and ChatHandler; api/types.go
ThinkValue):

* Prompt. Generate renders once (``prompt.generate_prompt``). Chat renders the longest history
  that fits ``num_ctx``: ``prompt.truncation_candidates`` longest first; a candidate whose UTF-8
  length (+2 for BOS/EOS) fits needs no count, otherwise the machine asks for its token count.
  With ``truncate: false`` a prompt that does not fit is 400 ``the input length exceeds the
  context length``; when even the shortest history is too long it is run anyway (the runner keeps
  its tail).
* ``_debug_render_only`` finishes with the rendered prompt and runs nothing.
* Output. Runner text goes through an ``output.OutputPipeline`` (thinking, content, tool calls).
  Streaming emits one native chunk per piece; logprobs that arrive with no piece are held for the
  next chunk (or the final one). Without streaming, everything is gathered into one final object.
* ``format`` with thinking on: the model first reasons unconstrained; once it leaves its
  reasoning the pass is stopped (the answer it began is dropped) and a second pass continues the
  prompt through the closing tag with the grammar applied. The metrics are the answer pass's.
* ``done_reason``: the runner's, except that a cancelled completion reports ``stop``.
"""

from __future__ import annotations

import enum
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Union

from . import output, prompt, responses, thinking, tools
from .errors import BadRequest, GenerationError, PollamaError
from .requests import ChatRequest, GenerateRequest, Message, check_format

__all__ = [
    "CONTEXT_EXCEEDED", "Clock", "Command", "CountTokens", "Emit", "Event", "Fail", "Finish",
    "Generation", "Job", "Phase", "Run", "RunnerDone", "RunnerFailed", "RunnerToken", "StopRun",
    "TokenCount", "chat_history", "chat_prompt", "check_generate", "fits_without_counting",
    "load_only_kind", "render_chat", "single_object"
]

# ---------------------------------------------------------------------------------------------
# Inputs


@dataclass(frozen=True, slots=True)
class Clock:
    """The adapter's clock at an event: monotonic nanoseconds and the RFC 3339 wall time that
    goes into ``created_at``."""

    mono_ns: int
    created_at: str


@dataclass(frozen=True, slots=True, kw_only=True)
class Job:
    """Everything a generation needs to know, gathered by the adapter before it starts."""

    request: ChatRequest | GenerateRequest
    prompting: prompt.ModelPrompting
    think: thinking.ThinkSetting
    tags: thinking.ThinkingTags | None  # the model's reasoning tags, when it can think
    n_ctx: int  # the loaded runner's context size
    today: str  # YYYY-MM-DD, for templates
    started_ns: int  # monotonic time the request arrived
    load_ns: int  # time spent waiting for the runner
    runtime: Mapping[str, Any] = field(default_factory=dict)  # runtime options for the runner
    family: str = ""  # GGUF general family, for stripping old reasoning
    new_call_id: Callable[[], str] = lambda: ""  # tool-call ids (random in the adapter)

    @property
    def chat(self) -> bool:
        return isinstance(self.request, ChatRequest)


@dataclass(frozen=True, slots=True)
class TokenCount:
    count: int


@dataclass(frozen=True, slots=True)
class RunnerToken:
    text: str
    logprobs: tuple[dict[str, Any], ...] = ()


@dataclass(frozen=True, slots=True, kw_only=True)
class RunnerDone:
    done_reason: str  # "stop" | "length" | "cancel"
    prompt_eval_count: int = 0
    prompt_eval_duration: int = 0
    eval_count: int = 0
    eval_duration: int = 0
    context: tuple[int, ...] = ()


@dataclass(frozen=True, slots=True)
class RunnerFailed:
    message: str
    status: int = 500


Event = Union[TokenCount, RunnerToken, RunnerDone, RunnerFailed]

# ---------------------------------------------------------------------------------------------
# Outputs


@dataclass(frozen=True, slots=True)
class CountTokens:
    text: str


@dataclass(frozen=True, slots=True, kw_only=True)
class Run:
    prompt: str
    context: list[int] | None = None
    options: dict[str, Any] = field(default_factory=dict)
    format: Any = None
    logprobs: bool = False
    top_logprobs: int = 0
    shift: bool = True
    tools: list[dict[str, Any]] | None = None
    tool_format: dict[str, Any] | None = None
    tools_required: bool = False
    images: list[str] = field(default_factory=list)


@dataclass(frozen=True, slots=True)
class StopRun:
    pass


@dataclass(frozen=True, slots=True)
class Emit:
    obj: dict[str, Any]


@dataclass(frozen=True, slots=True)
class Finish:
    obj: dict[str, Any]


@dataclass(frozen=True, slots=True)
class Fail:
    error: PollamaError


Command = Union[CountTokens, Run, StopRun, Emit, Finish, Fail]


class Phase(enum.Enum):
    NEW = "new"
    FITTING = "fitting"  # waiting for a TokenCount
    RUNNING = "running"  # a completion is producing
    OVER = "over"


CONTEXT_EXCEEDED = "the input length exceeds the context length"


# ---------------------------------------------------------------------------------------------
# Pure pieces the machine and the golden tests share


def load_only_kind(request: ChatRequest | GenerateRequest) -> str | None:
    """An empty generate/chat only loads the model (``"load"``), or unloads it with
    ``keep_alive`` 0 (``"unload"``); None when there is something to generate."""
    if isinstance(request, ChatRequest):
        empty = not request.messages
    else:
        empty = not request.prompt and not request.images
    if not empty:
        return None
    return "unload" if request.keep_alive == 0 else "load"


def single_object(request: ChatRequest | GenerateRequest) -> bool:
    """Answers that are one JSON object even when ``stream`` is on, as Ollama sends them: a
    load/unload and a ``_debug_render_only`` prompt."""
    return request.debug_render_only or load_only_kind(request) is not None


def check_generate(request: GenerateRequest) -> None:
    """Checks /api/generate makes before it loads anything."""
    check_format(request.format)
    prompt.check_raw(request)


def chat_history(request: ChatRequest, prompting: prompt.ModelPrompting, *, family: str = ""
                 ) -> list[Message]:
    """The messages a chat prompt renders: Modelfile SYSTEM and MESSAGEs, then the request's,
    with earlier reasoning removed for the families that drop it."""
    return thinking.strip_previous_thinking(prompt.chat_messages(request, prompting), family,
                                            model_name=request.model)


def render_chat(messages: Sequence[Message], request: ChatRequest,
                prompting: prompt.ModelPrompting, *, today: str,
                think: thinking.ThinkSetting | None = None) -> str:
    """The prompt text for one candidate history (images tagged, tools offered)."""
    return prompt.render(prompt.tag_images(messages), prompting, today=today,
                         tools=request.tools, think=think)


def chat_prompt(request: ChatRequest, prompting: prompt.ModelPrompting, *, today: str,
                think: thinking.ThinkSetting | None = None, family: str = "") -> str:
    """The prompt of the whole history, the first one a chat tries: what count_tokens counts
    and the golden template tests check."""
    return render_chat(chat_history(request, prompting, family=family), request, prompting,
                       today=today, think=think)


def fits_without_counting(text: str, n_ctx: int) -> bool:
    """Every token covers at least one byte: a short prompt fits without counting (+2 for the
    BOS/EOS a tokenizer may add)."""
    return len(text.encode("utf-8")) + 2 <= n_ctx


# ---------------------------------------------------------------------------------------------
# The machine


class Generation:
    def __init__(self, job: Job) -> None:
        self.job = job
        self.phase = Phase.NEW
        self.prompt = ""  # the rendered prompt of the current pass
        self._candidates: list[list[Message]] = []
        self._kept: list[Message] = []
        self._pipeline = output.OutputPipeline()
        self._split = False  # format + thinking: the reasoning pass runs without the grammar
        self._raw: list[str] = []  # the reasoning pass's raw text
        self._stopping = False  # StopRun sent; events of the stopped pass are not expected
        self._emitted = False
        self._held: list[dict[str, Any]] = []  # streamed logprobs waiting for a chunk
        self._parts: list[str] = []
        self._thoughts: list[str] = []
        self._calls: list[dict[str, Any]] = []
        self._all_lps: list[dict[str, Any]] = []
        self._tool_format: tools.ToolFormat | None = None

    # -- entry points ------------------------------------------------------------------------
    def start(self, now: Clock) -> list[Command]:
        if self.phase is not Phase.NEW:
            raise GenerationError("generation already started")
        try:
            return self._start(now)
        except PollamaError as exc:
            return self._fail(exc)

    def receive(self, event: Event, now: Clock) -> list[Command]:
        try:
            if isinstance(event, TokenCount):
                if self.phase is not Phase.FITTING:
                    raise GenerationError(f"unexpected {event!r} in phase {self.phase.value}")
                return self._counted(event.count, now)
            if self.phase is not Phase.RUNNING:
                raise GenerationError(f"unexpected {event!r} in phase {self.phase.value}")
            if isinstance(event, RunnerToken):
                return self._token(event, now)
            if isinstance(event, RunnerDone):
                return self._done(event, now)
            if isinstance(event, RunnerFailed):
                return self._fail(PollamaError(event.message, status_hint=event.status))
        except GenerationError:
            raise
        except PollamaError as exc:
            return self._fail(exc)
        raise GenerationError(f"unknown event {event!r}")

    @property
    def emitted(self) -> bool:
        """Whether a chunk has been sent: errors from here on are error lines, not statuses."""
        return self._emitted

    # -- prompt ------------------------------------------------------------------------------
    def _start(self, now: Clock) -> list[Command]:
        job, req = self.job, self.job.request
        if isinstance(req, GenerateRequest):
            check_generate(req)
            self.prompt = prompt.generate_prompt(req, job.prompting, today=job.today,
                                                 think=job.think)
            return self._begin(now)
        check_format(req.format)
        self._candidates = prompt.truncation_candidates(
            chat_history(req, job.prompting, family=job.family))
        return self._try_next(now)

    def _try_next(self, now: Clock) -> list[Command]:
        assert isinstance(self.job.request, ChatRequest)
        self._kept = self._candidates.pop(0)
        self.prompt = render_chat(self._kept, self.job.request, self.job.prompting,
                                  today=self.job.today, think=self.job.think)
        if fits_without_counting(self.prompt, self.job.n_ctx):
            return self._begin(now)
        self.phase = Phase.FITTING
        return [CountTokens(self.prompt)]

    def _counted(self, count: int, now: Clock) -> list[Command]:
        if count <= self.job.n_ctx:
            return self._begin(now)
        assert isinstance(self.job.request, ChatRequest)
        if not self.job.request.truncate:
            raise BadRequest(CONTEXT_EXCEEDED)
        if not self._candidates:
            # even the shortest history is too long: the runner keeps its tail
            return self._begin(now)
        return self._try_next(now)

    # -- running -----------------------------------------------------------------------------
    def _images(self) -> list[str]:
        req = self.job.request
        if isinstance(req, ChatRequest):
            return prompt.images_of(self._kept)
        return list(req.images)

    def _begin(self, now: Clock) -> list[Command]:
        job, req = self.job, self.job.request
        if req.debug_render_only:
            self.phase = Phase.OVER
            return [Finish(responses.debug_render(req.model, now.created_at, self.prompt,
                                                  chat=job.chat,
                                                  image_count=len(self._images())))]
        fmt = check_format(req.format)
        think_parser = None
        raw = isinstance(req, GenerateRequest) and req.raw
        if job.tags is not None and job.think.enabled and not raw:
            think_parser = thinking.ThinkingParser.for_prompt(job.tags, self.prompt)
        tool_parser = None
        if isinstance(req, ChatRequest) and req.tools:
            p = job.prompting
            self._tool_format = tools.detect(go_template=p.go_template,
                                             chat_template=p.chat_template,
                                             bos_token=p.bos_token, eos_token=p.eos_token)
            tool_parser = tools.ToolCallParser(self._tool_format, tools.tool_names(req.tools),
                                               new_id=job.new_call_id)
        self._pipeline = output.OutputPipeline(thinking=think_parser, tools=tool_parser)
        self._split = fmt is not None and self._pipeline.thinking_tags is not None
        self.phase = Phase.RUNNING
        return [self._run(None if self._split else fmt)]

    def _run(self, fmt: Any) -> Run:
        req = self.job.request
        context = None
        if isinstance(req, GenerateRequest) and req.context:
            context = list(req.context)
        chat_tools = req.tools if isinstance(req, ChatRequest) else ()
        return Run(prompt=self.prompt, context=context, options=dict(self.job.runtime),
                   format=fmt, logprobs=req.logprobs or req.top_logprobs > 0,
                   top_logprobs=req.top_logprobs, shift=req.shift,
                   tools=list(chat_tools) or None,
                   tool_format=self._tool_format.to_json() if self._tool_format else None,
                   tools_required=isinstance(req, ChatRequest) and req.tool_choice == "required",
                   images=self._images())

    def _token(self, event: RunnerToken, now: Clock) -> list[Command]:
        pieces = self._pipeline.feed(event.text)
        restart = False
        if self._split:
            self._raw.append(event.text)
            if self._pipeline.thinking_done:
                pieces = [output.Piece(thinking=p.thinking) for p in pieces if p.thinking]
                restart = True
        out = self._pieces(pieces, list(event.logprobs), now)
        if restart:
            tags = self._pipeline.thinking_tags
            assert tags is not None
            self.prompt += thinking.through_closing_tag("".join(self._raw), tags)
            self._pipeline = self._pipeline.without_thinking()
            self._split = False
            out += [StopRun(), self._run(check_format(self.job.request.format))]
        return out

    def _pieces(self, pieces: list[output.Piece], lps: list[dict[str, Any]],
                now: Clock) -> list[Command]:
        out: list[Command] = []
        if not self.job.request.stream:
            for p in pieces:
                self._parts.append(p.content)
                self._thoughts.append(p.thinking)
                self._calls.extend(tools.to_wire(p.tool_calls))
            self._all_lps.extend(lps)
            return out
        self._held.extend(lps)
        for piece in pieces:
            out.append(Emit(self._chunk(piece, self._held or None, now)))
            self._held = []
            self._emitted = True
        return out

    def _done(self, event: RunnerDone, now: Clock) -> list[Command]:
        out = self._pieces(self._pipeline.finish(), [], now)
        job, req = self.job, self.job.request
        metrics = responses.Metrics(
            total_duration=now.mono_ns - job.started_ns, load_duration=job.load_ns,
            prompt_eval_count=event.prompt_eval_count,
            prompt_eval_duration=event.prompt_eval_duration,
            eval_count=event.eval_count, eval_duration=event.eval_duration)
        reason = "stop" if event.done_reason == "cancel" else event.done_reason
        want_context = isinstance(req, GenerateRequest) and not req.raw
        fin = responses.Final(done_reason=reason, metrics=metrics,
                              context=event.context if want_context else None)
        if req.stream:
            content, thought, calls, lps = "", "", None, self._held or None
        else:
            content, thought = "".join(self._parts), "".join(self._thoughts)
            calls, lps = self._calls or None, self._all_lps or None
        if job.chat:
            final = responses.chat_final(req.model, now.created_at, fin, content, lps,
                                         thinking=thought, tool_calls=calls)
        else:
            final = responses.generate_final(req.model, now.created_at, fin, content, lps,
                                             thinking=thought)
        self.phase = Phase.OVER
        return out + [Finish(final)]

    def _chunk(self, piece: output.Piece, lps: list[dict[str, Any]] | None,
               now: Clock) -> dict[str, Any]:
        model = self.job.request.model
        if self.job.chat:
            return responses.chat_chunk(model, now.created_at, piece.content, lps,
                                        thinking=piece.thinking,
                                        tool_calls=tools.to_wire(piece.tool_calls) or None)
        return responses.generate_chunk(model, now.created_at, piece.content, lps,
                                        thinking=piece.thinking)

    def _fail(self, error: PollamaError) -> list[Command]:
        self.phase = Phase.OVER
        return [Fail(error)]
