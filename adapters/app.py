"""The native API handlers: parse with core, execute against the store and runners, shape with core.

Error rule (reference §0): before the first byte of a response, a PollamaError becomes its status
and ``{"error": ...}``; once an NDJSON stream has started, it becomes a final ``{"error": ...}``
line. Anything else is a pollama bug: logged with its traceback, reported as a 500.
"""

from __future__ import annotations

import contextlib
import datetime
import logging
import os
import secrets
import time
from collections.abc import AsyncGenerator, AsyncIterator, Awaitable, Callable, Iterator, Mapping
from typing import Any

import anyio

from pollama.core import (access, gguf_details, jsonwire, memory, ndjson, output, prompt,
                          responses, routes, thinking, tools)
from pollama.core import tools as tools_core
from pollama.core import embed as embed_core
from pollama.core import manifest as mf
from pollama.core import show as show_core
from pollama.core import options as opts
from pollama.core import requests as rq
from pollama.core import runner_protocol as rp
from pollama.core import scheduler as sched
from pollama.core.config import Config
from pollama.core.errors import BadRequest, NotFound, PollamaError, StoreError
from pollama.core import library
from pollama.core.names import Name, parse_digest, parse_name_with_scheme
from pollama.core.timefmt import rfc3339

from . import creator, gguf_file, models, registry_client
from .http_server import ClientDisconnected, Request, Response
from .registry_server import RegistryServer
from .runner_process import RunnerProcess
from .scheduler_driver import RunnerInfo, SchedulerDriver
from .store import Store

log = logging.getLogger("pollama.api")

OLLAMA_COMPAT_VERSION = "0.13.0"
FOREVER_NS = 2**63 - 1  # Go's maximum time.Duration: "forever" shows as ~year 2318
NDJSON = "application/x-ndjson"


def now_utc() -> str:
    return rfc3339(time.time_ns())


def local_offset() -> int:
    off = datetime.datetime.now().astimezone().utcoffset()
    return int(off.total_seconds()) if off else 0


def json_response(status: int, value: Any) -> Response:
    return Response(status=status, body=jsonwire.dumps(value))


def error_response(exc: PollamaError) -> Response:
    if exc.status_hint in (404, 405) and exc.message.startswith(("404 page", "405 method")):
        return Response(status=exc.status_hint, body=exc.message.encode(),
                        content_type="text/plain")
    return json_response(exc.status_hint, responses.error_body(exc.message))


class App:
    def __init__(self, config: Config, store: Store, driver: SchedulerDriver,
                 inventory: memory.Inventory, policy: access.Policy | None = None) -> None:
        self.config = config
        self.policy = policy or access.Policy(origins=config.origins, api_key=config.api_key,
                                              loopback=config.host.is_loopback)
        self.inventory = inventory
        self.store = store
        self.driver = driver
        self._handlers: dict[str, Callable[[Request, dict[str, str]], Awaitable[Response]]] = {
            "root": self.root, "version": self.version, "tags": self.tags,
            "generate": self.generate, "chat": self.chat, "blob": self.blob,
            "create": self.create, "pull": self.pull, "ps": self.ps,
            "show": self.show, "copy": self.copy, "delete": self.delete,
            "embed": self.embed, "embeddings": self.embeddings, "push": self.push,
        }
        self._handlers.update(RegistryServer(store).handlers())  # /v2/: pollama is a registry

    async def __call__(self, request: Request) -> Response:
        started = time.monotonic()
        decision = access.check(request.method, request.path, request.headers, self.policy)
        if isinstance(decision, access.Deny):
            response = self._deny(request, decision)
        elif isinstance(decision, access.Preflight):
            response = Response(status=204, content_type=None, headers=list(decision.headers))
        else:
            response = await self._route(request)
            response.headers.extend(decision.headers)
        log.info("%s %s -> %s (%.1f ms) id=%s", request.method, request.path, response.status,
                 (time.monotonic() - started) * 1000, request.id)
        return response

    def _deny(self, request: Request, decision: access.Deny) -> Response:
        log.warning("%s %s refused (%s): host=%r origin=%r", request.method, request.path,
                    decision.message, request.header("host"), request.header("origin"))
        if decision.status == 401 and request.path.startswith("/v2"):
            body: Any = {"errors": [{"code": "UNAUTHORIZED", "message": decision.message}]}
        else:
            body = responses.error_body(decision.message)
        resp = json_response(decision.status, body)
        resp.headers.extend(decision.headers)
        return resp

    async def _route(self, request: Request) -> Response:
        try:
            match = routes.match(request.method, request.target)
            request.body_limit = self.config.limits.body_limit(match.handler, request.method)
            request.check_declared_length()
            return await self._handlers[match.handler](request, match.params)
        except ClientDisconnected:
            raise
        except PollamaError as exc:
            if exc.status_hint >= 500:
                log.error("%s %s failed (request %s): %s", request.method, request.path,
                          request.id, exc.message)
            return error_response(exc)
        except Exception:
            # A pollama bug: its details go to the log, never to the client.
            log.exception("unhandled error in %s %s (request %s)", request.method, request.path,
                          request.id)
            return json_response(500, responses.error_body(
                f"internal error (request id {request.id}); the server log has the details"))

    # -- simple routes -------------------------------------------------------------------------
    async def root(self, request: Request, params: dict[str, str]) -> Response:
        return Response(status=200, body=b"Ollama is running", content_type="text/plain; charset=utf-8")

    async def version(self, request: Request, params: dict[str, str]) -> Response:
        return json_response(200, {"version": OLLAMA_COMPAT_VERSION})

    async def tags(self, request: Request, params: dict[str, str]) -> Response:
        offset = local_offset()
        out = []

        def load_all() -> list[tuple[Any, models.LocalModel]]:
            # One thread hop for the whole listing: hops cost more than the reads under load.
            loaded = []
            for stored in self.store.list():
                try:
                    loaded.append((stored, models.load(self.store, stored)))
                except PollamaError:
                    continue
            return loaded

        for stored, local in await anyio.to_thread.run_sync(load_all):
            short = stored.name.display_shortest()
            details = models.details(local.config)
            if local.config.context_length:
                details["context_length"] = local.config.context_length
            if local.config.embedding_length:
                details["embedding_length"] = local.config.embedding_length
            out.append({
                "name": short, "model": short,
                "modified_at": rfc3339(stored.modified_ns, offset),
                "size": stored.manifest.total_size(),
                "digest": stored.manifest_digest,
                "details": details,
            })
        return json_response(200, {"models": out})

    async def ps(self, request: Request, params: dict[str, str]) -> Response:
        """Loaded models (reference §1.11), newest expiry first."""
        now_mono = self.driver.now()
        now_wall = time.time_ns()
        offset = local_offset()
        entries = []
        for r in self.driver.state.runners:
            info = self.driver.info(r.model)
            if info is None:
                continue
            if r.keep_alive == sched.FOREVER and not r.draining:
                expires = now_wall + FOREVER_NS
            elif r.expires_at is not None:
                expires = now_wall + (r.expires_at - now_mono)
            else:  # busy or loading: the countdown has not started
                expires = now_wall + max(r.keep_alive, 0)
            entries.append((expires, {
                "name": info.name, "model": info.name, "size": r.size, "digest": info.digest,
                "details": info.details, "expires_at": rfc3339(expires, offset),
                "size_vram": r.size_vram, "context_length": r.spec.num_ctx,
            }))
        entries.sort(key=lambda e: e[0], reverse=True)
        return json_response(200, {"models": [e[1] for e in entries]})

    # -- show / copy / delete -----------------------------------------------------------------
    async def show(self, request: Request, params: dict[str, str]) -> Response:
        req = rq.parse_show(await request.json())
        local = await anyio.to_thread.run_sync(lambda: models.resolve(self.store, req.model))
        header = await anyio.to_thread.run_sync(gguf_file.read_header_full, local.model_path,
                                                req.verbose)
        system = req.system if req.system is not None else local.system
        facts_template = header.kv.get("tokenizer.chat_template")
        template = local.template if local.template is not None else (
            facts_template if isinstance(facts_template, str) else None)
        parts = show_core.ModelParts(
            short_name=local.stored.name.display_shortest(), model_path=local.model_path,
            template=local.template, system=system, parameters=local.parameters,
            licenses=local.licenses, messages=local.messages, adapters=local.adapter_paths,
            projectors=local.projector_paths)
        out: dict[str, Any] = {}
        if local.licenses:
            out["license"] = "\n".join(local.licenses)
        out["modelfile"] = show_core.modelfile_text(parts)
        if local.parameters:
            out["parameters"] = show_core.parameters_text(local.parameters)
        if template is not None:
            out["template"] = template
        if system:
            out["system"] = system
        out["details"] = models.details(local.config)
        if local.messages:
            out["messages"] = [{"role": m.role, "content": m.content} for m in local.messages]
        out["model_info"] = show_core.model_info(header.kv, header.parameter_count,
                                                 verbose=req.verbose)
        if local.projector_paths:
            proj = await anyio.to_thread.run_sync(gguf_file.read_header_full,
                                                  local.projector_paths[0], req.verbose)
            out["projector_info"] = show_core.model_info(proj.kv, proj.parameter_count,
                                                         verbose=req.verbose)
        if req.verbose:
            out["tensors"] = [{"name": t.name, "type": gguf_details.TENSOR_TYPES.get(t.type, str(t.type)),
                               "shape": list(t.dims)} for t in header.tensors]
        out["capabilities"] = show_core.capabilities(template, go=local.template is not None,
                                                     vision=bool(local.projector_paths))
        out["modified_at"] = rfc3339(local.stored.modified_ns, local_offset())
        return json_response(200, out)

    async def copy(self, request: Request, params: dict[str, str]) -> Response:
        source, destination = rq.parse_copy(await request.json())
        try:
            src = models.parse_model_name(source)
        except BadRequest:
            raise BadRequest(f'source "{source}" is invalid') from None
        try:
            dst = models.parse_model_name(destination)
        except BadRequest:
            raise BadRequest(f'destination "{destination}" is invalid') from None
        try:
            await anyio.to_thread.run_sync(self.store.copy, src, dst)
        except NotFound:
            raise NotFound(f'model "{source}" not found') from None
        return Response(status=200, body=b"", content_type=None)

    async def delete(self, request: Request, params: dict[str, str]) -> Response:
        model = rq.parse_delete(await request.json())
        try:
            name = models.parse_model_name(model)
        except BadRequest:
            raise BadRequest(f'name "{model}" is invalid') from None
        try:
            removed = await anyio.to_thread.run_sync(self.store.delete, name)
        except NotFound:
            raise NotFound(f"model '{model}' not found") from None
        log.info("deleted %s (%d blobs removed)", model, len(removed))
        return Response(status=200, body=b"", content_type=None)

    # -- blobs ---------------------------------------------------------------------------------
    async def blob(self, request: Request, params: dict[str, str]) -> Response:
        raw = params["digest"]
        hex_digest = parse_digest(raw)
        exists = self.store.has_blob(hex_digest)
        if request.method == "HEAD":
            if exists:
                return Response(status=200, content_type=None)
            raise NotFound(f'blob "{raw}" not found')
        if exists:
            return Response(status=200, content_type=None)
        writer = self.store.blob_writer()
        try:
            async for chunk in request.body_chunks():
                writer.write(chunk)
            await anyio.to_thread.run_sync(lambda: writer.commit(hex_digest, shown=raw))
        except BaseException:
            writer.abort()
            raise
        return Response(status=201, content_type=None)

    # -- create / pull: progress streams ------------------------------------------------------
    async def create(self, request: Request, params: dict[str, str]) -> Response:
        req = rq.parse_create(await request.json())
        if not req.model:
            raise BadRequest("model is required")
        name = models.parse_model_name(req.model)
        return await self._progress(creator.create(self.store, name, req), req.stream)

    async def pull(self, request: Request, params: dict[str, str]) -> Response:
        req = rq.parse_pull(await request.json())
        if not req.model:
            raise BadRequest("model is required")
        scheme, name = _registry_name(req.model)
        if scheme is None and library.lookup(name) is not None:
            return await self._progress(creator.pull(self.store, name), req.stream)
        return await self._progress(registry_client.pull(
            self.store, name, scheme=scheme, insecure=req.insecure), req.stream)

    async def push(self, request: Request, params: dict[str, str]) -> Response:
        # PushRequest has PullRequest's fields (model/name, insecure, stream; reference §1.6).
        req = rq.parse_pull(await request.json())
        if not req.model:
            raise BadRequest("model is required")
        scheme, name = _registry_name(req.model)
        return await self._progress(registry_client.push(
            self.store, name, scheme=scheme, insecure=req.insecure), req.stream)

    async def _progress(self, gen: AsyncIterator[dict[str, Any]], stream: bool) -> Response:
        if not stream:
            last: dict[str, Any] = {}
            try:
                async for status in gen:
                    last = status
            finally:
                await gen.aclose()
            return json_response(200, last)
        first = await _first(gen)  # errors before any output keep their status

        async def body() -> AsyncIterator[bytes]:
            try:
                if first is not None:
                    yield ndjson.encode(first)
                async for status in gen:
                    yield ndjson.encode(status)
            except PollamaError as exc:
                yield ndjson.encode(responses.error_body(exc.message))
            finally:
                await gen.aclose()

        return Response(status=200, body=body(), content_type=NDJSON)

    # -- inference -----------------------------------------------------------------------------
    def _prompting(self, local: models.LocalModel, loaded: rp.Loaded) -> prompt.ModelPrompting:
        return prompt.ModelPrompting(
            chat_template=loaded.chat_template or None,
            go_template=local.template,
            full_name=local.stored.name.display_full(),
            system=local.system,
            messages=local.messages,
            bos_token=loaded.bos_token,
            eos_token=loaded.eos_token,
        )

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
        try:
            size = self.store.blob_size(local.model_digest)
            projector_bytes = sum(os.path.getsize(p) for p in local.projector_paths)
            facts, n_vocab = await anyio.to_thread.run_sync(
                gguf_file.read_facts_and_vocab, local.model_path)
        except OSError:
            raise StoreError(f"model file not found: {local.model_path}") from None
        except BadRequest as exc:  # the stored blob is damaged: the server's problem, not the client's
            raise StoreError(f"model file {local.model_path} is damaged: {exc.message}") from None
        shape = memory.shape_from_facts(facts, size, n_vocab=n_vocab)
        estimate = memory.estimate(shape, num_ctx=spec.num_ctx,
                                   num_parallel=self.driver.state.config.num_parallel,
                                   num_batch=spec.num_batch,
                                   projector_bytes=projector_bytes)
        placement = memory.fit(estimate, shape, self.inventory, num_gpu=spec.num_gpu)
        req = sched.Request(id=self.driver.new_request_id(), model=local.runner_key, name=name,
                            spec=spec, kind=kind, keep_alive=keep_alive, size=placement.size,
                            size_vram=placement.size_vram, gpu_layers=placement.gpu_layers)
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
        return runner, req.id, load_ns, runtime, self._prompting(local, runner.loaded)

    async def _facts(self, local: models.LocalModel) -> gguf_details.ModelFacts:
        try:
            facts, _ = await anyio.to_thread.run_sync(gguf_file.read_facts_and_vocab,
                                                      local.model_path)
        except OSError:
            raise StoreError(f"model file not found: {local.model_path}") from None
        except BadRequest as exc:  # a damaged stored blob is the server's problem
            raise StoreError(f"model file {local.model_path} is damaged: {exc.message}") from None
        return facts

    async def _template(self, local: models.LocalModel) -> tuple[str | None, bool]:
        """The template prompts are rendered with, and whether it is a Go template."""
        if local.template is not None:
            return local.template, True
        return (await self._facts(local)).chat_template, False

    async def _think(self, local: models.LocalModel, requested: Any, model_name: str
                     ) -> tuple[thinking.ThinkSetting, thinking.ThinkingTags | None]:
        text, is_go = await self._template(local)
        tags = thinking.infer_tags(text, is_go=is_go)
        setting = thinking.resolve_think(requested, tags is not None, model_name,
                                         family=local.config.model_family)
        return setting, tags

    async def _check_tools(self, local: models.LocalModel, tools: tuple[Any, ...]) -> None:
        if tools:
            text, is_go = await self._template(local)
            show_core.require_tools(text, go=is_go, full_name=local.stored.name.display_full())

    @contextlib.contextmanager
    def _release_on_error(self, rid: int) -> Iterator[None]:
        """Give the runner slot back if preparing the request fails."""
        try:
            yield
        except BaseException:
            self.driver.finished(rid)
            raise

    def _debug_only(self, rid: int, model: str, text: str, *, chat: bool,
                    images: int) -> Response:
        """``_debug_render_only``: answer with the rendered prompt, run nothing."""
        self.driver.finished(rid)
        return json_response(200, responses.debug_render(model, now_utc(), text, chat=chat,
                                                         image_count=images))

    async def generate(self, request: Request, params: dict[str, str]) -> Response:
        started = time.monotonic_ns()
        req = rq.parse_generate(await request.json())
        if not req.model:
            raise NotFound("model '' not found")
        rq.check_format(req.format)
        local = await anyio.to_thread.run_sync(lambda: models.resolve(self.store, req.model))
        if req.raw and (req.template or req.system or req.context):
            raise BadRequest("raw mode does not support template, system, or context")
        self._check_images(local, bool(req.images))
        if not req.prompt and not req.images:
            return await self._load_only(local, req.model, req.options, req.keep_alive, chat=False)
        setting, tags = await self._think(local, req.think, req.model)
        self._log_unknown(req.unknown_options)
        runner, rid, load_ns, runtime, prompting = await self._start(
            local, req.options, req.keep_alive, started)
        with self._release_on_error(rid):
            text = prompt.generate_prompt(req, prompting, today=_today(), think=setting)
        if req.debug_render_only:
            return self._debug_only(rid, req.model, text, chat=False, images=len(req.images))
        parser = thinking.ThinkingParser.for_prompt(tags, text) \
            if tags is not None and setting.enabled and not req.raw else None
        return await self._run(runner, rid, text, runtime, req.model, req.stream, chat=False,
                               started=started, load_ns=load_ns, req=req,
                               pipeline=output.OutputPipeline(thinking=parser),
                               context=list(req.context) if req.context else None,
                               want_context=not req.raw, images=list(req.images))

    async def chat(self, request: Request, params: dict[str, str]) -> Response:
        started = time.monotonic_ns()
        req = rq.parse_chat(await request.json())
        if not req.model:
            raise BadRequest("model is required")
        rq.check_format(req.format)
        local = await anyio.to_thread.run_sync(lambda: models.resolve(self.store, req.model))
        self._check_images(local, any(m.images for m in req.messages))
        if not req.messages:
            return await self._load_only(local, req.model, req.options, req.keep_alive, chat=True)
        await self._check_tools(local, req.tools)
        setting, tags = await self._think(local, req.think, req.model)
        self._log_unknown(req.unknown_options)
        runner, rid, load_ns, runtime, prompting = await self._start(
            local, req.options, req.keep_alive, started)
        with self._release_on_error(rid):
            messages = thinking.strip_previous_thinking(
                prompt.chat_messages(req, prompting), local.config.model_family,
                model_name=req.model)
            text, kept = await self._fit(
                runner, messages,
                lambda msgs: prompt.render(prompt.tag_images(msgs), prompting, today=_today(),
                                           tools=req.tools, think=setting),
                req.truncate)
            fmt = tools.detect(go_template=prompting.go_template,
                               chat_template=prompting.chat_template,
                               bos_token=prompting.bos_token, eos_token=prompting.eos_token) \
                if req.tools else None
        if req.debug_render_only:
            return self._debug_only(rid, req.model, text, chat=True,
                                    images=len(prompt.images_of(kept)))
        think_parser = thinking.ThinkingParser.for_prompt(tags, text) \
            if tags is not None and setting.enabled else None
        tool_parser = tools.ToolCallParser(fmt, tools.tool_names(req.tools), new_id=_call_id) \
            if fmt is not None else None
        return await self._run(runner, rid, text, runtime, req.model, req.stream, chat=True,
                               started=started, load_ns=load_ns, req=req,
                               pipeline=output.OutputPipeline(thinking=think_parser,
                                                              tools=tool_parser),
                               tools=list(req.tools) or None,
                               tool_format=fmt.to_json() if fmt is not None else None,
                               tools_required=req.tool_choice == "required",
                               images=prompt.images_of(kept))

    async def _fit(self, runner: RunnerProcess, messages: list[rq.Message],
                   render: Callable[[list[rq.Message]], str], truncate: bool
                   ) -> tuple[str, list[rq.Message]]:
        """Render the longest history that fits the runner's context (reference §1.2):
        oldest messages go first; system messages and the last message always stay. With
        ``truncate: false`` a prompt that does not fit is an error."""
        assert runner.loaded is not None
        n_ctx = runner.loaded.n_ctx
        text, kept = "", messages
        for kept in prompt.truncation_candidates(messages):
            text = render(kept)
            # Every token covers at least one byte: a short prompt fits without counting.
            if len(text.encode("utf-8")) + 2 <= n_ctx or len(await runner.tokenize(text)) <= n_ctx:
                return text, kept
            if not truncate:
                raise BadRequest("the input length exceeds the context length")
            log.info("prompt does not fit num_ctx %d: dropping the oldest message", n_ctx)
        return text, kept  # even the shortest history is too long: the runner keeps its tail

    @staticmethod
    def _check_images(local: models.LocalModel, has_images: bool) -> None:
        if has_images:
            show_core.require_vision(
                has_projector=bool(local.stored.manifest.layers_of(mf.MEDIA_TYPE_PROJECTOR)),
                full_name=local.stored.name.display_full())

    def _log_unknown(self, keys: tuple[str, ...]) -> None:
        for key in keys:
            log.warning("invalid option provided option=%s", key)

    # -- embeddings ----------------------------------------------------------------------------
    async def _embed_on_runner(self, model: str, options: Mapping[str, Any],
                               keep_alive: int | None, inputs: list[str],
                               truncate: bool) -> tuple[rp.Embeddings, int]:
        local = await anyio.to_thread.run_sync(lambda: models.resolve(
            self.store, model, not_found='model "{}" not found, try pulling it first'))
        started = time.monotonic_ns()
        merged = opts.merge(opts.DEFAULTS, local.parameters, options)
        req, info = await self._request(local, merged, keep_alive, sched.Kind.GENERATE)
        runner = await self.driver.acquire(req, info)
        assert runner is not None
        load_ns = time.monotonic_ns() - started
        try:
            result = await runner.embed(inputs, truncate)
        finally:
            self.driver.finished(req.id)
        return result, load_ns

    async def embed(self, request: Request, params: dict[str, str]) -> Response:
        started = time.monotonic_ns()
        req = embed_core.parse_embed(await request.json())
        if not req.model:
            raise BadRequest("model is required")
        if not req.inputs:
            await anyio.to_thread.run_sync(lambda: models.resolve(
                self.store, req.model, not_found='model "{}" not found, try pulling it first'))
            return json_response(200, {"model": req.model, "embeddings": []})
        result, load_ns = await self._embed_on_runner(req.model, req.options, req.keep_alive,
                                                      list(req.inputs), req.truncate)
        vectors = [embed_core.shape(v, req.dimensions) for v in result.embeddings]
        return json_response(200, {
            "model": req.model, "embeddings": vectors,
            "total_duration": time.monotonic_ns() - started, "load_duration": load_ns,
            "prompt_eval_count": result.prompt_eval_count,
        })

    async def embeddings(self, request: Request, params: dict[str, str]) -> Response:
        req = embed_core.parse_embeddings(await request.json())
        models.parse_model_name(req.model)
        if not req.prompt:
            await anyio.to_thread.run_sync(lambda: models.resolve(
                self.store, req.model, not_found='model "{}" not found, try pulling it first'))
            return json_response(200, {"embedding": []})
        result, _ = await self._embed_on_runner(req.model, req.options, req.keep_alive,
                                                [req.prompt], True)
        return json_response(200, {"embedding": result.embeddings[0]})

    async def _load_only(self, local: models.LocalModel, model: str, options: Mapping[str, Any],
                         keep_alive: int | None, *, chat: bool) -> Response:
        kind = sched.Kind.UNLOAD if keep_alive == 0 else sched.Kind.LOAD
        req, info = await self._request(local, opts.merge(local.parameters, options),
                                        keep_alive, kind)
        await self.driver.acquire(req, info)
        return json_response(200, responses.load_response(model, now_utc(), chat=chat,
                                                          reason=kind.value))

    async def _steps(self, runner: RunnerProcess, text: str, runtime: dict[str, Any],
                     req: rq.GenerateRequest | rq.ChatRequest,
                     pipeline: output.OutputPipeline, context: list[int] | None,
                     tools: list[dict[str, Any]] | None, tool_format: dict[str, Any] | None,
                     tools_required: bool, images: list[str]
                     ) -> AsyncGenerator[tuple[list[output.Piece], list[dict[str, Any]],
                                              rp.Done | None], None]:
        """The completion as ``(pieces, logprobs, done)`` steps, ``done`` set on the last.

        With ``format`` and thinking on, the model first reasons unconstrained; once it
        leaves its reasoning that pass is cancelled (the answer text it began is dropped) and
        a second pass continues the prompt through the closing tag with the grammar applied
        (reference §1.12). The final metrics are the answer pass's.
        """
        fmt = rq.check_format(req.format)
        split = fmt is not None and pipeline.thinking_tags is not None
        raw: list[str] = []
        while True:
            cm = runner.complete(text, context, runtime, None if split else fmt,
                                 logprobs=req.logprobs, top_logprobs=req.top_logprobs,
                                 shift=req.shift, tools=tools, tool_format=tool_format,
                                 tools_required=tools_required, images=images)
            events = await cm.__aenter__()
            restart = False
            try:
                async for msg in events:
                    if isinstance(msg, rp.Token):
                        pieces = pipeline.feed(msg.text)
                        if split:
                            raw.append(msg.text)
                            if pipeline.thinking_done:
                                pieces = [output.Piece(thinking=p.thinking)
                                          for p in pieces if p.thinking]
                                restart = True
                        yield pieces, list(msg.logprobs or ()), None
                        if restart:
                            break
                    elif isinstance(msg, rp.Done):
                        yield pipeline.finish(), [], msg
                        return
                    elif isinstance(msg, rp.Failed):
                        raise PollamaError(msg.message, status_hint=msg.status)
            finally:
                with anyio.CancelScope(shield=True):
                    await cm.__aexit__(None, None, None)
            if not restart:
                raise PollamaError("runner stream ended unexpectedly")
            tags = pipeline.thinking_tags
            assert tags is not None
            text += thinking.through_closing_tag("".join(raw), tags)
            log.debug("reasoning done: answer pass with format, prompt now %r", text)
            pipeline = pipeline.without_thinking()
            split = False

    async def _run(self, runner: RunnerProcess, rid: int, text: str, runtime: dict[str, Any],
                   model: str, stream: bool, *, chat: bool, started: int, load_ns: int,
                   req: rq.GenerateRequest | rq.ChatRequest, pipeline: output.OutputPipeline,
                   context: list[int] | None = None, want_context: bool = False,
                   tools: list[dict[str, Any]] | None = None,
                   tool_format: dict[str, Any] | None = None,
                   tools_required: bool = False, images: list[str] | None = None) -> Response:
        """Run the completion on ``runner`` and answer with NDJSON chunks or one object.

        Runner text goes through ``pipeline`` (thinking, content, tool calls). Errors before
        the first chunk keep their status; later ones end the stream with an error line.
        """
        log.debug("prompt: %r", text)
        steps = self._steps(runner, text, runtime, req, pipeline, context, tools, tool_format,
                            tools_required, list(images or ()))

        async def close() -> None:
            with anyio.CancelScope(shield=True):
                await steps.aclose()
            self.driver.finished(rid)

        def chunk(piece: output.Piece, lps: list[dict[str, Any]] | None) -> dict[str, Any]:
            if chat:
                return responses.chat_chunk(
                    model, now_utc(), piece.content, lps, thinking=piece.thinking,
                    tool_calls=tools_core.to_wire(piece.tool_calls) or None)
            return responses.generate_chunk(model, now_utc(), piece.content, lps,
                                            thinking=piece.thinking)

        def final(done: rp.Done, content: str = "", thought: str = "",
                  calls: list[dict[str, Any]] | None = None,
                  lps: list[dict[str, Any]] | None = None) -> dict[str, Any]:
            metrics = responses.Metrics(
                total_duration=time.monotonic_ns() - started,
                load_duration=load_ns,
                prompt_eval_count=done.prompt_eval_count,
                prompt_eval_duration=done.prompt_eval_duration,
                eval_count=done.eval_count,
                eval_duration=done.eval_duration,
            )
            reason = "stop" if done.done_reason == "cancel" else done.done_reason
            fin = responses.Final(done_reason=reason, metrics=metrics,
                                  context=done.context if want_context else None)
            if chat:
                return responses.chat_final(model, now_utc(), fin, content, lps,
                                            thinking=thought, tool_calls=calls)
            return responses.generate_final(model, now_utc(), fin, content, lps,
                                            thinking=thought)

        try:
            first = await steps.__anext__()
        except BaseException:
            await close()
            raise

        if not stream:
            try:
                parts: list[str] = []
                thoughts: list[str] = []
                calls: list[dict[str, Any]] = []
                all_lps: list[dict[str, Any]] = []
                step = first
                while True:
                    pieces, lps, done = step
                    for p in pieces:
                        parts.append(p.content)
                        thoughts.append(p.thinking)
                        calls.extend(tools_core.to_wire(p.tool_calls))
                    all_lps.extend(lps)
                    if done is not None:
                        return json_response(200, final(done, "".join(parts), "".join(thoughts),
                                                        calls or None, all_lps))
                    step = await steps.__anext__()
            finally:
                await close()

        async def body() -> AsyncIterator[bytes]:
            try:
                step = first
                held: list[dict[str, Any]] = []
                while True:
                    pieces, lps, done = step
                    held.extend(lps)
                    for piece in pieces:
                        yield ndjson.encode(chunk(piece, held or None))
                        held = []
                    if done is not None:
                        yield ndjson.encode(final(done, lps=held or None))
                        return
                    step = await steps.__anext__()
            except PollamaError as exc:
                yield ndjson.encode(responses.error_body(exc.message))
            except StopAsyncIteration:
                yield ndjson.encode(responses.error_body("runner stream ended unexpectedly"))
            finally:
                await close()

        return Response(status=200, body=body(), content_type=NDJSON)


def _registry_name(text: str) -> tuple[str | None, Name]:
    try:
        return parse_name_with_scheme(text)
    except BadRequest:
        raise BadRequest("invalid model name") from None


async def _first(gen: AsyncIterator[dict[str, Any]]) -> dict[str, Any] | None:
    try:
        return await gen.__anext__()
    except StopAsyncIteration:
        return None


def _call_id() -> str:
    """Ollama's tool-call ids: ``call_`` and 8 characters of [a-z0-9]."""
    return "call_" + "".join(secrets.choice("abcdefghijklmnopqrstuvwxyz0123456789")
                             for _ in range(8))


def _today() -> str:
    return datetime.date.today().isoformat()


