"""The transport-neutral generation service: a native request in, native objects out.

It resolves the model, asks the scheduler for a runner, and drives ``core.generation``'s machine
against it: executing its commands (tokenize, run, stop) and feeding back what the runner said.
It knows no wire format: the native HTTP routes encode what it yields as NDJSON, the OpenAI and
Anthropic routes translate it (core.openai_api, core.anthropic_api) and encode it as SSE.

Errors: a ``PollamaError`` raised before the first object keeps its status; one raised after it
is for the encoder to write as its stream's error (an ``{"error"}`` line for NDJSON).
"""

from __future__ import annotations

import datetime
import logging
import os
import secrets
import time
from collections import deque
from collections.abc import AsyncIterator, Callable, Mapping
from contextlib import AbstractAsyncContextManager
from typing import Any

import anyio

from pollama.core import embed as embed_core
from pollama.core import generation as gen
from pollama.core import gguf_details, memory, prompt, responses, thinking
from pollama.core import options as opts
from pollama.core import scheduler as sched
from pollama.core import show as show_core
from pollama.core.config import Config
from pollama.core.errors import BadRequest, PollamaError
from pollama.core.manifest import MEDIA_TYPE_PROJECTOR
from pollama.core.requests import ChatRequest, GenerateRequest, check_format
from pollama.core.runner_protocol import Done, Embeddings, Failed, RunnerMessage, Token
from pollama.core.timefmt import rfc3339

from . import gguf_file, models
from .metrics import GenerationMeter, Metrics
from .runner_process import RunnerProcess
from .scheduler_driver import RunnerInfo, SchedulerDriver
from .store import Store

log = logging.getLogger("pollama.api")

NOT_FOUND_PULL = 'model "{}" not found, try pulling it first'


def now_utc() -> str:
    return rfc3339(time.time_ns())


def clock() -> gen.Clock:
    return gen.Clock(time.monotonic_ns(), now_utc())


def call_id() -> str:
    """Ollama's tool-call ids: ``call_`` and 8 characters of [a-z0-9]."""
    return "call_" + "".join(secrets.choice("abcdefghijklmnopqrstuvwxyz0123456789")
                             for _ in range(8))


def today() -> str:
    return datetime.date.today().isoformat()


class GenerationService:
    def __init__(self, config: Config, store: Store, driver: SchedulerDriver,
                 inventory: memory.Inventory, metrics: Metrics | None = None) -> None:
        self.config = config
        self.store = store
        self.driver = driver
        self.inventory = inventory
        self.metrics = metrics or Metrics()

    # -- generate / chat ---------------------------------------------------------------------
    async def generate(self, req: GenerateRequest) -> Objects:
        """Native /api/generate objects: chunks then the final one (streaming), or the one
        final object. Checks that need no runner happen before the first ``__anext__``
        returns, so their errors keep their status."""
        started = time.monotonic_ns()
        if not req.model:
            raise PollamaError("model '' not found", status_hint=404)
        check_format(req.format)
        local = await self._resolve(req.model)
        gen.check_generate(req)
        self._check_images(local, bool(req.images))
        return await self._generation(local, req, started)

    async def chat(self, req: ChatRequest, *, relax_thinking: bool = False) -> Objects:
        """Native /api/chat objects, as ``generate`` does. With ``relax_thinking`` a model that
        cannot think ignores ``think`` instead of refusing it (Ollama's /v1/messages)."""
        started = time.monotonic_ns()
        if not req.model:
            raise BadRequest("model is required")
        check_format(req.format)
        local = await self._resolve(req.model)
        self._check_images(local, any(m.images for m in req.messages))
        if req.messages and req.tools:
            text, is_go = await self._template(local)
            show_core.require_tools(text, go=is_go, full_name=local.stored.name.display_full())
        return await self._generation(local, req, started, relax_thinking)

    async def count_tokens(self, req: ChatRequest, *, relax_thinking: bool = False) -> int:
        """Tokens of the prompt a chat request renders (its whole history, no truncation)."""
        started = time.monotonic_ns()
        local = await self._resolve(req.model)
        setting, _ = await self._think(local, req.think, req.model, relax_thinking)
        runner, request_id, _, _, prompting = await self._start(
            local, req.options, req.keep_alive, started)
        try:
            text = gen.chat_prompt(req, prompting, today=today(), think=setting,
                                   family=local.config.model_family)
            return len(await runner.tokenize(text))
        finally:
            self.driver.finished(request_id)

    async def _generation(self, local: models.LocalModel,
                          req: ChatRequest | GenerateRequest, started: int,
                          relax_thinking: bool = False) -> Objects:
        kind = gen.load_only_kind(req)
        if kind is not None:
            return Objects(_one(await self._load_only(local, req, kind)), single=True)
        setting, tags = await self._think(local, req.think, req.model, relax_thinking)
        for key in req.unknown_options:
            log.warning("invalid option provided option=%s", key)
        runner, request_id, load_ns, runtime, prompting = await self._start(
            local, req.options, req.keep_alive, started)
        job = gen.Job(request=req, prompting=prompting, think=setting, tags=tags,
                      n_ctx=runner.loaded.n_ctx if runner.loaded else 0, today=today(),
                      started_ns=started, load_ns=load_ns, runtime=runtime,
                      family=local.config.model_family, new_call_id=call_id)
        meter = self.metrics.generation(local.stored.name.display_shortest(), started)
        return Objects(_drive(gen.Generation(job), runner, meter),
                       lambda: self.driver.finished(request_id), single=gen.single_object(req))

    async def _load_only(self, local: models.LocalModel, req: ChatRequest | GenerateRequest,
                         kind: str) -> dict[str, Any]:
        sched_kind = sched.Kind.UNLOAD if kind == "unload" else sched.Kind.LOAD
        request, info = await self._request(local, opts.merge(local.parameters, req.options),
                                            req.keep_alive, sched_kind)
        await self.driver.acquire(request, info)
        return responses.load_response(req.model, now_utc(),
                                       chat=isinstance(req, ChatRequest), reason=kind)

    # -- embeddings --------------------------------------------------------------------------
    async def embed(self, req: embed_core.EmbedRequest) -> dict[str, Any]:
        """The native /api/embed response."""
        started = time.monotonic_ns()
        if not req.model:
            raise BadRequest("model is required")
        if not req.inputs:
            await self._resolve(req.model, NOT_FOUND_PULL)
            return {"model": req.model, "embeddings": []}
        result, load_ns = await self._embed_on_runner(req.model, req.options, req.keep_alive,
                                                      list(req.inputs), req.truncate)
        vectors = [embed_core.shape(v, req.dimensions) for v in result.embeddings]
        return {
            "model": req.model, "embeddings": vectors,
            "total_duration": time.monotonic_ns() - started, "load_duration": load_ns,
            "prompt_eval_count": result.prompt_eval_count,
        }

    async def embeddings(self, req: embed_core.LegacyEmbedRequest) -> dict[str, Any]:
        """The native /api/embeddings (legacy) response."""
        models.parse_model_name(req.model)
        if not req.prompt:
            await self._resolve(req.model, NOT_FOUND_PULL)
            return {"embedding": []}
        result, _ = await self._embed_on_runner(req.model, req.options, req.keep_alive,
                                                [req.prompt], False, legacy=True)
        return {"embedding": result.embeddings[0]}

    async def _embed_on_runner(self, model: str, options: Mapping[str, Any],
                               keep_alive: int | None, inputs: list[str],
                               truncate: bool, *, legacy: bool = False
                               ) -> tuple[Embeddings, int]:
        """Embed on a runner. /api/embed's limit uses the request's num_ctx (core.embed.fit);
        the legacy /api/embeddings has none but the runner's own context (num_ctx None)."""
        local = await self._resolve(model, NOT_FOUND_PULL)
        started = time.monotonic_ns()
        merged = opts.merge(opts.DEFAULTS, local.parameters, options)
        req, info = await self._request(local, merged, keep_alive, sched.Kind.GENERATE)
        runner = await self.driver.acquire(req, info)
        assert runner is not None
        load_ns = time.monotonic_ns() - started
        try:
            result = await runner.embed(
                inputs, truncate, num_ctx=None if legacy else int(merged.get("num_ctx") or 0))
        finally:
            self.driver.finished(req.id)
        self.metrics.embedded(req.name, result.prompt_eval_count)
        return result, load_ns

    # -- model facts -------------------------------------------------------------------------
    async def _resolve(self, model: str, not_found: str = "model '{}' not found"
                       ) -> models.LocalModel:
        self.metrics.model(model)
        return await anyio.to_thread.run_sync(
            lambda: models.resolve(self.store, model, not_found=not_found))

    @staticmethod
    def _check_images(local: models.LocalModel, has_images: bool) -> None:
        if has_images:
            show_core.require_vision(
                has_projector=bool(local.stored.manifest.layers_of(MEDIA_TYPE_PROJECTOR)),
                full_name=local.stored.name.display_full())

    async def _facts(self, local: models.LocalModel) -> gguf_details.ModelFacts:
        with gguf_file.stored(local.model_path):
            facts, _ = await anyio.to_thread.run_sync(gguf_file.read_facts_and_vocab,
                                                      local.model_path)
        return facts

    async def _template(self, local: models.LocalModel) -> tuple[str | None, bool]:
        """The template prompts are rendered with, and whether it is a Go template."""
        if local.template is not None:
            return local.template, True
        return (await self._facts(local)).chat_template, False

    async def _think(self, local: models.LocalModel, requested: Any, model_name: str,
                     relax: bool = False
                     ) -> tuple[thinking.ThinkSetting, thinking.ThinkingTags | None]:
        text, is_go = await self._template(local)
        tags = thinking.infer_tags(text, is_go=is_go)
        setting = thinking.resolve_think(requested, tags is not None, model_name,
                                         family=local.config.model_family, relax=relax)
        return setting, tags

    # -- runners -----------------------------------------------------------------------------
    async def _request(self, local: models.LocalModel, options: Mapping[str, Any],
                       keep_alive: int | None, kind: sched.Kind
                       ) -> tuple[sched.Request, RunnerInfo]:
        """The scheduler's view of a request: model, load options, keep_alive, and the memory
        a runner for it needs and where it goes (core.memory's estimate and fit)."""
        load, _ = opts.split(options)
        spec = sched.LoadSpec(**opts.load_spec(load, default_num_ctx=self.config.context_length,
                                               ctx_train=local.config.context_length,
                                               vision=bool(local.projector_paths)))
        name = local.stored.name.display_shortest()
        with gguf_file.stored(local.model_path):
            size = self.store.blob_size(local.model_digest)
            projector_bytes = sum(os.path.getsize(p) for p in local.projector_paths)
            facts, n_vocab = await anyio.to_thread.run_sync(
                gguf_file.read_facts_and_vocab, local.model_path)
        shape = memory.shape_from_facts(facts, size, n_vocab=n_vocab)
        parallel, placement = memory.plan(
            shape, self.inventory, num_ctx=spec.num_ctx, num_batch=spec.num_batch,
            num_gpu=spec.num_gpu, projector_bytes=projector_bytes,
            configured_parallel=self.config.num_parallel,
            embedding_only=bool(facts.pooling_type),
            budget=self.driver.state.config.memory_budget)
        req = sched.Request(id=self.driver.new_request_id(), model=local.runner_key, name=name,
                            spec=spec, kind=kind, keep_alive=keep_alive, size=placement.size,
                            size_vram=placement.size_vram, gpu_layers=placement.gpu_layers,
                            num_parallel=parallel, replicas=opts.replicas(load))
        info = RunnerInfo(name=name, digest=local.stored.manifest_digest,
                          details=models.details(local.config), model_path=local.model_path,
                          adapters=local.adapter_paths, projectors=local.projector_paths,
                          flash_attention=self.config.flash_attention)
        return req, info

    async def _start(self, local: models.LocalModel, req_options: Mapping[str, Any],
                     keep_alive: int | None, started: int
                     ) -> tuple[RunnerProcess, int, int, dict[str, Any], prompt.ModelPrompting]:
        """Merge options (defaults < Modelfile < request), wait for the scheduler to give a
        runner slot; the time this took is the request's load_duration."""
        options = opts.merge(opts.DEFAULTS, local.parameters, req_options)
        req, info = await self._request(local, options, keep_alive, sched.Kind.GENERATE)
        runner = await self.driver.acquire(req, info)
        assert runner is not None and runner.loaded is not None
        load_ns = time.monotonic_ns() - started
        _, runtime = opts.split(options)
        prompting = prompt.ModelPrompting(
            chat_template=runner.loaded.chat_template or None, go_template=local.template,
            full_name=local.stored.name.display_full(), system=local.system,
            messages=local.messages, bos_token=runner.loaded.bos_token,
            eos_token=runner.loaded.eos_token)
        return runner, req.id, load_ns, runtime, prompting


class Objects:
    """The native objects of one request. Iterate it, and always ``aclose`` it: that gives
    the runner slot back even when it was never iterated."""

    def __init__(self, source: AsyncIterator[dict[str, Any]],
                 release: Callable[[], None] = lambda: None, *, single: bool = False) -> None:
        self.single = single  # one JSON object whatever ``stream`` says (core.generation)
        self._source = source
        self._release: Callable[[], None] | None = release

    def __aiter__(self) -> Objects:
        return self

    async def __anext__(self) -> dict[str, Any]:
        return await self._source.__anext__()

    async def first(self) -> dict[str, Any]:
        """The first object. An error before it keeps its status (the encoder has not started
        its response); on any failure the objects are closed."""
        try:
            return await self.__anext__()
        except StopAsyncIteration:
            await self.aclose()
            raise PollamaError("runner stream ended unexpectedly") from None
        except BaseException:
            await self.aclose()
            raise

    async def aclose(self) -> None:
        try:
            with anyio.CancelScope(shield=True):
                aclose = getattr(self._source, "aclose", None)
                if aclose is not None:
                    await aclose()
        finally:
            if self._release is not None:
                release, self._release = self._release, None
                release()


async def _one(obj: dict[str, Any]) -> AsyncIterator[dict[str, Any]]:
    yield obj


def _event(msg: RunnerMessage) -> gen.Event:
    if isinstance(msg, Token):
        return gen.RunnerToken(msg.text, tuple(msg.logprobs or ()))
    if isinstance(msg, Done):
        return gen.RunnerDone(done_reason=msg.done_reason,
                              prompt_eval_count=msg.prompt_eval_count,
                              prompt_eval_duration=msg.prompt_eval_duration,
                              eval_count=msg.eval_count, eval_duration=msg.eval_duration,
                              context=tuple(msg.context))
    if isinstance(msg, Failed):
        return gen.RunnerFailed(msg.message, msg.status)
    return gen.RunnerFailed(f"unexpected runner message {type(msg).__name__}")


async def _drive(machine: gen.Generation, runner: RunnerProcess, meter: GenerationMeter
                 ) -> AsyncIterator[dict[str, Any]]:
    """Execute the machine's commands against ``runner``; yield what it emits. ``meter``
    hears of the first token and of the final object."""
    pending: deque[gen.Command] = deque()
    run: AbstractAsyncContextManager[AsyncIterator[RunnerMessage]] | None = None
    events: AsyncIterator[RunnerMessage] | None = None

    async def stop() -> None:
        nonlocal run, events
        if run is not None:
            with anyio.CancelScope(shield=True):
                await run.__aexit__(None, None, None)
        run, events = None, None

    try:
        pending.extend(machine.start(clock()))
        while True:
            if not pending:
                if events is None:
                    raise gen.GenerationError(
                        "the generation waits for a runner that is not running")
                try:
                    msg = await events.__anext__()
                except StopAsyncIteration:
                    msg = Failed(id=0, message="runner stream ended unexpectedly")
                if isinstance(msg, Token):
                    meter.token()
                elif isinstance(msg, Done):
                    meter.prompt_cached(msg.prompt_cached)
                pending.extend(machine.receive(_event(msg), clock()))
                continue
            cmd = pending.popleft()
            if isinstance(cmd, gen.CountTokens):
                count = len(await runner.tokenize(cmd.text))
                pending.extend(machine.receive(gen.TokenCount(count), clock()))
            elif isinstance(cmd, gen.Run):
                await stop()
                log.debug("prompt: %r", cmd.prompt)
                run = runner.complete(cmd.prompt, cmd.context, cmd.options, cmd.format,
                                      logprobs=cmd.logprobs, top_logprobs=cmd.top_logprobs,
                                      shift=cmd.shift, tools=cmd.tools,
                                      tool_format=cmd.tool_format,
                                      tools_required=cmd.tools_required, images=cmd.images)
                events = await run.__aenter__()
            elif isinstance(cmd, gen.StopRun):
                await stop()
            elif isinstance(cmd, gen.Emit):
                yield cmd.obj
            elif isinstance(cmd, gen.Finish):
                meter.finished(cmd.obj)
                yield cmd.obj
                return
            elif isinstance(cmd, gen.Fail):
                raise cmd.error
    finally:
        await stop()
