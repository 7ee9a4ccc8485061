"""The OpenAI (``/v1/...``) and Anthropic (``/v1/messages``) front doors.

Each handler translates the request to a native one (core.openai_api, core.openai_responses,
core.anthropic_api), runs it on the same generation service as /api/chat and /api/generate,
and translates the native objects back, as SSE when streaming. Errors answer in the
dialect's own shape; ``App.route`` picks it by the handler's name (core.routes.dialect).
"""

from __future__ import annotations

import secrets
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Iterable
from typing import Any

import anyio

from pollama.core import anthropic_api as an
from pollama.core import embed as embed_core
from pollama.core import jsonwire, sse
from pollama.core import openai_api as oa
from pollama.core import openai_responses as orsp
from pollama.core.errors import PollamaError
from pollama.core.requests import parse_chat, parse_generate

from . import models
from .generation_service import GenerationService, Objects
from .http_server import Request, Response
from .store import Store

SSE = "text/event-stream"
Handler = Callable[[Request, dict[str, str]], Awaitable[Response]]


def _json(status: int, value: Any) -> Response:
    return Response(status=status, body=jsonwire.dumps(value))


def _data(value: Any, event: str | None = None) -> bytes:
    return sse.encode(jsonwire.dumps(value), event=event)


async def _all(first: dict[str, Any], objects: Objects) -> AsyncIterator[dict[str, Any]]:
    yield first
    async for obj in objects:
        yield obj


def sse_response(first: dict[str, Any], objects: Objects,
                 encode: Callable[[dict[str, Any]], Iterable[bytes]],
                 on_error: Callable[[PollamaError], Iterable[bytes]],
                 end: Callable[[], Iterable[bytes]] = lambda: ()) -> Response:
    """An SSE stream of ``encode(native object)`` for each object, then ``end()``; an error
    after the first object becomes ``on_error(error)``'s events."""

    async def body() -> AsyncIterator[bytes]:
        try:
            async for obj in _all(first, objects):
                for data in encode(obj):
                    yield data
            for data in end():
                yield data
        except PollamaError as exc:
            for data in on_error(exc):
                yield data
        finally:
            await objects.aclose()

    return Response(status=200, body=body(), content_type=SSE,
                    headers=[("Cache-Control", "no-cache")])


class CompatRoutes:
    def __init__(self, service: GenerationService, store: Store) -> None:
        self.service = service
        self.store = store

    def handlers(self) -> dict[str, Handler]:
        return {
            "openai_chat": self.chat_completions, "openai_completions": self.completions,
            "openai_embeddings": self.embeddings, "openai_models": self.models,
            "openai_model": self.model, "openai_responses": self.responses,
            "anthropic_messages": self.messages,
            "anthropic_count_tokens": self.count_tokens,
        }

    # -- OpenAI ------------------------------------------------------------------------------
    async def chat_completions(self, request: Request, params: dict[str, str]) -> Response:
        body = await request.json()
        native = oa.chat_request(body)
        req = parse_chat(native)
        objects = await self.service.chat(req)
        cid, created = f"chatcmpl-{secrets.randbelow(999)}", int(time.time())
        first = await objects.first()
        if not req.stream:
            await objects.aclose()
            return _json(200, oa.chat_completion(first, id=cid, created=created))
        stream = oa.ChatStream(cid, created, req.model, include_usage=oa.include_usage(body))
        return sse_response(first, objects,
                            lambda obj: [_data(c) for c in stream.chunk(obj)],
                            lambda exc: [_data(oa.error_body(exc.status_hint, exc.message))],
                            lambda: [sse.DONE])

    async def completions(self, request: Request, params: dict[str, str]) -> Response:
        body = await request.json()
        req = parse_generate(oa.completion_request(body))
        objects = await self.service.generate(req)
        cid, created = f"cmpl-{secrets.randbelow(999)}", int(time.time())
        first = await objects.first()
        if not req.stream:
            await objects.aclose()
            return _json(200, oa.completion(first, id=cid, created=created))
        stream = oa.CompletionStream(cid, created, req.model,
                                     include_usage=oa.include_usage(body))
        return sse_response(first, objects,
                            lambda obj: [_data(c) for c in stream.chunk(obj)],
                            lambda exc: [_data(oa.error_body(exc.status_hint, exc.message))],
                            lambda: [sse.DONE])

    async def embeddings(self, request: Request, params: dict[str, str]) -> Response:
        native, encoding = oa.embedding_request(await request.json())
        result = await self.service.embed(embed_core.parse_embed(native))
        return _json(200, oa.embeddings(result, encoding, str(native.get("model") or "")))

    async def models(self, request: Request, params: dict[str, str]) -> Response:
        def listing() -> list[tuple[str, int]]:
            return [(s.name.display_shortest(), s.modified_ns // 1_000_000_000)
                    for s in self.store.list()]

        entries = await anyio.to_thread.run_sync(listing)
        return _json(200, oa.models_list(entries))

    async def model(self, request: Request, params: dict[str, str]) -> Response:
        name = params["model"]
        local = await anyio.to_thread.run_sync(lambda: models.resolve(self.store, name))
        return _json(200, oa.model_object(name, local.stored.modified_ns // 1_000_000_000))

    async def responses(self, request: Request, params: dict[str, str]) -> Response:
        body = await request.json()
        req = parse_chat(orsp.responses_request(body))
        objects = await self.service.chat(req)
        response_id, created = f"resp_{secrets.token_hex(12)}", int(time.time())
        first = await objects.first()
        if not req.stream:
            await objects.aclose()
            return _json(200, orsp.responses_object(first, id=response_id, created=created,
                                                    request=body, completed_at=int(time.time())))
        stream = orsp.ResponsesStream(response_id, created, req.model, request=body)
        return sse_response(first, objects,
                            lambda obj: [_data(d, event=t) for t, d in
                                         stream.events(obj, now=int(time.time()))],
                            lambda exc: [_data(d, event=t) for t, d in stream.error(exc.message)])

    # -- Anthropic ---------------------------------------------------------------------------
    async def messages(self, request: Request, params: dict[str, str]) -> Response:
        body = await request.json()
        req = parse_chat(an.messages_request(body))
        # As Ollama's /v1/messages: a model that cannot think ignores ``thinking``.
        objects = await self.service.chat(req, relax_thinking=True)
        mid = f"msg_{secrets.token_hex(12)}"
        first = await objects.first()
        if not req.stream:
            await objects.aclose()
            return _json(200, an.message_response(first, id=mid))
        stream = an.MessageStream(mid, req.model, input_tokens=an.estimate_input_tokens(body))

        def encode(obj: dict[str, Any]) -> list[bytes]:
            return [_data(d, event=t) for t, d in stream.events(obj)]

        return sse_response(first, objects, encode,
                            lambda exc: encode({"error": exc.message}))

    async def count_tokens(self, request: Request, params: dict[str, str]) -> Response:
        req = parse_chat(an.count_tokens_request(await request.json()))
        count = await self.service.count_tokens(req, relax_thinking=True)
        return _json(200, an.count_tokens_response(count))


def request_id() -> str:
    return "req_" + secrets.token_hex(12)
