"""The native API handlers: parse with core, execute against the store and runners, shape with
core.

Error rule (Ollama's api/types.go): before the first byte of a response, a PollamaError becomes its
status and ``{"error": ...}``; once an NDJSON stream has started, it becomes a final
``{"error": ...}`` line. Anything else is a pollama bug: logged with its traceback, reported as a
500.
"""

from __future__ import annotations

import datetime
import logging
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any

import anyio
from anyio.abc import SocketStream

from pollama.core import (access, anthropic_api, gguf_details, jsonwire, library, memory, ndjson,
                          openai_api, responses, routes)
from pollama.core import embed as embed_core
from pollama.core import scheduler as sched
from pollama.core import show as show_core
from pollama.core.config import Config
from pollama.core.errors import BadRequest, ClientDisconnected, NotFound, PollamaError
from pollama.core.names import Name, parse_digest, parse_name_with_scheme
from pollama.core.requests import (parse_chat, parse_copy, parse_create, parse_delete,
                                   parse_generate, parse_pull, parse_show)
from pollama.core.timefmt import rfc3339

from . import creator, gguf_file, models, registry_client, webui, ws_transport
from .compat_routes import CompatRoutes, request_id
from .generation_service import GenerationService, Objects
from .http_server import Request, Response
from .metrics import CLIENT_CLOSED, CONTENT_TYPE, Metrics, RequestRecord
from .registry_server import RegistryServer
from .rpc_session import LocalBackend
from .scheduler_driver import SchedulerDriver
from .store import Store
from .version import OLLAMA_COMPAT_VERSION

log = logging.getLogger("pollama.api")

NDJSON = "application/x-ndjson"


def now_utc() -> str:
    return rfc3339(time.time_ns())


def local_offset() -> int:
    off = datetime.datetime.now().astimezone().utcoffset()
    return int(off.total_seconds()) if off else 0


def json_response(status: int, value: Any) -> Response:
    return Response(status=status, body=jsonwire.dumps(value))


def error_response(exc: PollamaError, dialect: str = "native") -> Response:
    """An error in the shape of the API that was called (core.routes.dialect)."""
    if exc.plain_text:
        return Response(status=exc.status_hint, body=exc.message.encode(),
                        content_type="text/plain")
    status = exc.status_hint
    if dialect == "openai":
        return json_response(status, openai_api.error_body(status, exc.message))
    if dialect == "anthropic":
        return json_response(status, anthropic_api.error_body(status, exc.message, request_id()))
    return json_response(status, responses.error_body(exc.message))


class App:
    def __init__(self, config: Config, store: Store, driver: SchedulerDriver,
                 inventory: memory.Inventory, policy: access.Policy | None = None,
                 metrics: Metrics | None = None) -> None:
        self.config = config
        self.policy = policy or access.Policy(origins=config.origins, api_key=config.api_key,
                                              loopback=config.host.is_loopback)
        self.inventory = inventory
        self.store = store
        self.driver = driver
        self.metrics = metrics or driver.metrics
        self.service = GenerationService(config, store, driver, inventory, self.metrics)
        self._handlers: dict[str, Callable[[Request, dict[str, str]], Awaitable[Response]]] = {
            "root": self.root, "version": self.version, "tags": self.tags,
            "generate": self.generate, "chat": self.chat, "blob": self.blob,
            "create": self.create, "pull": self.pull, "ps": self.ps,
            "show": self.show, "copy": self.copy, "delete": self.delete,
            "embed": self.embed, "embeddings": self.embeddings, "push": self.push,
            "websocket": self.websocket, "ui": self.ui, "metrics": self.prometheus,
        }
        self._handlers.update(RegistryServer(store).handlers())  # /v2/: pollama is a registry
        self._handlers.update(CompatRoutes(self.service, store).handlers())  # /v1/

    async def __call__(self, request: Request) -> Response:
        record = self.metrics.begin(request.method, request.path, request.id)
        try:
            decision = access.check(request.method, request.path, request.headers, self.policy)
            if isinstance(decision, access.Deny):
                response = self._deny(request, decision)
            elif isinstance(decision, access.Preflight):
                response = Response(status=204, content_type=None,
                                    headers=list(decision.headers))
            else:
                response = await self.route(request, record)
                response.headers.extend(decision.headers)
        except BaseException:
            # The client left (a cancelled wait, a disconnect) before there was an answer.
            self.metrics.done(record, CLIENT_CLOSED, client_gone=True)
            raise
        response.on_done = lambda gone: self.metrics.done(record, response.status,
                                                          client_gone=gone)
        return response

    def _deny(self, request: Request, decision: access.Deny) -> Response:
        log.warning("%s %s refused (%s): host=%r origin=%r", request.method, request.path,
                    decision.message, request.header("host"), request.header("origin"))
        if decision.status == 401 and request.path.startswith("/v2"):
            resp = json_response(decision.status, {"errors": [
                {"code": "UNAUTHORIZED", "message": decision.message}]})
        else:
            try:
                dialect = routes.dialect(routes.match(request.method, request.target).handler)
            except PollamaError:
                dialect = "native"
            resp = error_response(PollamaError(decision.message, status_hint=decision.status),
                                  dialect)
        resp.headers.extend(decision.headers)
        return resp

    async def route(self, request: Request, record: RequestRecord | None = None) -> Response:
        dialect = "native"
        try:
            match = routes.match(request.method, request.target)
            if record is not None:
                record.route = match.pattern
            dialect = routes.dialect(match.handler)
            request.body_limit = self.config.limits.body_limit(match.handler, request.method)
            request.check_declared_length()
            return await self._handlers[match.handler](request, match.params)
        except ClientDisconnected:
            raise
        except PollamaError as exc:
            if exc.status_hint >= 500:
                log.error("%s %s failed (request %s): %s", request.method, request.path,
                          request.id, exc.message)
            return error_response(exc, dialect)
        except Exception:
            # A pollama bug: its details go to the log, never to the client.
            log.exception("unhandled error in %s %s (request %s)", request.method, request.path,
                          request.id)
            return error_response(PollamaError(
                f"internal error (request id {request.id}); the server log has the details"),
                dialect)

    # -- simple routes -------------------------------------------------------------------------
    async def root(self, request: Request, params: dict[str, str]) -> Response:
        return Response(status=200, body=b"Ollama is running",
                        content_type="text/plain; charset=utf-8")

    async def ui(self, request: Request, params: dict[str, str]) -> Response:
        """The web chat page: one self-contained file that speaks JSON-RPC over /api/ws."""
        return Response(status=200, body=webui.page(), content_type="text/html; charset=utf-8",
                        headers=list(webui.HEADERS))

    async def websocket(self, request: Request, params: dict[str, str]) -> Response:
        """JSON-RPC over WebSocket: the calls run in process against this router."""
        ws, accept = ws_transport.handshake(request.headers, request.target)
        backend = LocalBackend(self.route, request.id)
        limit = self.config.limits.large_body

        async def run(stream: SocketStream, trailing: bytes) -> None:
            log.info("websocket %s opened", request.id)
            try:
                await ws_transport.serve(stream, ws, accept, trailing, backend,
                                         max_message=limit)
            finally:
                log.info("websocket %s closed", request.id)

        return Response(status=101, content_type=None, upgrade=run)

    async def prometheus(self, request: Request, params: dict[str, str]) -> Response:
        """``GET /metrics``: the Prometheus text format (adapters/metrics.py)."""
        return Response(status=200, body=self.metrics.exposition(), content_type=CONTENT_TYPE)

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
            out.append(responses.tag_entry(
                stored.name.display_shortest(), modified_at=rfc3339(stored.modified_ns, offset),
                size=stored.manifest.total_size(), digest=stored.manifest_digest,
                details=models.details(local.config),
                context_length=local.config.context_length or 0,
                embedding_length=local.config.embedding_length or 0))
        return json_response(200, {"models": out})

    async def ps(self, request: Request, params: dict[str, str]) -> Response:
        """Loaded models (Ollama's server/routes.go ListHandler, PsHandler, ShowHandler), newest
        expiry first."""
        now_mono = self.driver.now()
        now_wall = time.time_ns()
        offset = local_offset()
        models_out = []
        cluster = self.driver.cluster
        for r, remaining in sched.by_expiry(self.driver.state.runners, now_mono):
            info = self.driver.info(r.model)
            if info is None:
                continue
            node = None if cluster is None else {"id": r.node,
                                                 "address": cluster.address_of(r.node)}
            models_out.append(responses.ps_entry(
                info.name, size=r.size, digest=info.digest, details=info.details,
                expires_at=rfc3339(now_wall + remaining, offset), size_vram=r.size_vram,
                context_length=r.spec.num_ctx, node=node))
        return json_response(200, {"models": models_out})

    # -- show / copy / delete -----------------------------------------------------------------
    async def show(self, request: Request, params: dict[str, str]) -> Response:
        req = parse_show(await request.json())
        local = await anyio.to_thread.run_sync(lambda: models.resolve(self.store, req.model))

        def facts(path: str) -> show_core.HeaderFacts:
            h = gguf_file.read_header_full(path, req.verbose)
            return show_core.HeaderFacts(kv=h.kv, parameter_count=h.parameter_count, tensors=tuple(
                (t.name, gguf_details.TENSOR_TYPES.get(t.type, str(t.type)), tuple(t.dims))
                for t in h.tensors) if req.verbose else ())

        header = await anyio.to_thread.run_sync(facts, local.model_path)
        projector = await anyio.to_thread.run_sync(facts, local.projector_paths[0]) \
            if local.projector_paths else None
        parts = show_core.ModelParts(
            short_name=local.stored.name.display_shortest(), model_path=local.model_path,
            template=local.template, system=local.system, parameters=local.parameters,
            licenses=local.licenses, messages=local.messages, adapters=local.adapter_paths,
            projectors=local.projector_paths)
        return json_response(200, show_core.show_response(
            parts, request_system=req.system, details=models.details(local.config),
            header=header, projector=projector, verbose=req.verbose,
            modified_at=rfc3339(local.stored.modified_ns, local_offset())))

    async def copy(self, request: Request, params: dict[str, str]) -> Response:
        source, destination = parse_copy(await request.json())
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
        model = parse_delete(await request.json())
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
        req = parse_create(await request.json())
        if not req.model:
            raise BadRequest("model is required")
        name = models.parse_model_name(req.model)
        return await self._progress(creator.create(self.store, name, req), req.stream)

    async def pull(self, request: Request, params: dict[str, str]) -> Response:
        req = parse_pull(await request.json())
        if not req.model:
            raise BadRequest("model is required")
        scheme, name = _registry_name(req.model)
        if scheme is None and library.lookup(name) is not None:
            return await self._progress(creator.pull(self.store, name), req.stream)
        return await self._progress(registry_client.pull(
            self.store, name, scheme=scheme, insecure=req.insecure), req.stream)

    async def push(self, request: Request, params: dict[str, str]) -> Response:
        # PushRequest has PullRequest's fields (model/name, insecure, stream; Ollama's
        # server/images.go PushModel).
        req = parse_pull(await request.json())
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
        return ndjson_response(first, gen, gen.aclose)  # type: ignore[attr-defined]

    # -- inference: the generation service, encoded as NDJSON ------------------------------
    async def generate(self, request: Request, params: dict[str, str]) -> Response:
        req = parse_generate(await request.json())
        return await native_stream(await self.service.generate(req), req.stream)

    async def chat(self, request: Request, params: dict[str, str]) -> Response:
        req = parse_chat(await request.json())
        return await native_stream(await self.service.chat(req), req.stream)

    async def embed(self, request: Request, params: dict[str, str]) -> Response:
        req = embed_core.parse_embed(await request.json())
        return json_response(200, await self.service.embed(req))

    async def embeddings(self, request: Request, params: dict[str, str]) -> Response:
        req = embed_core.parse_embeddings(await request.json())
        return json_response(200, await self.service.embeddings(req))


async def native_stream(objects: Objects, stream: bool) -> Response:
    """Native objects as Ollama sends them: NDJSON lines when streaming (an error after the
    first becomes an ``{"error"}`` line), else the one final object."""
    first = await objects.first()
    if not stream or objects.single:
        await objects.aclose()
        return json_response(200, first)
    return ndjson_response(first, objects, objects.aclose)


def ndjson_response(first: dict[str, Any] | None, rest: AsyncIterator[dict[str, Any]],
                    close: Callable[[], Awaitable[None]]) -> Response:
    """``first`` then ``rest`` as NDJSON lines; an error on the way becomes a last
    ``{"error"}`` line; ``close`` runs however the stream ends."""

    async def body() -> AsyncIterator[bytes]:
        try:
            if first is not None:
                yield ndjson.encode(first)
            async for obj in rest:
                yield ndjson.encode(obj)
        except PollamaError as exc:
            yield ndjson.encode(responses.error_body(exc.message))
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
