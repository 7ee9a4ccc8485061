"""One JSON-RPC connection (WebSocket or stdio), whatever carries its bytes.

``core.jsonrpc`` decodes messages and says what each needs; this module runs them. A call is
the REST request its method names (``core.jsonrpc.METHODS``), made through a ``Backend``: in
process against the app's router (the WebSocket, ``pollama stdio --standalone``) or over HTTP
to a running server (the stdio bridge). A REST stream becomes ``stream`` notifications and the
last object the result; ``$/cancelRequest`` cancels the call's scope, which closes its REST
exchange (the generation stops as when an HTTP client hangs up); closing the connection cancels
every call it started.
"""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any, Protocol

import anyio
import httpx
from anyio.abc import TaskGroup

from pollama.core import jsonrpc, jsonwire, ndjson
from pollama.core.errors import PollamaError, map_exceptions

from .streams import CLOSED

log = logging.getLogger("pollama.rpc")

MAX_IN_FLIGHT = 64  # calls one connection may have running at once
NDJSON_TYPE = "application/x-ndjson"


@dataclass
class Exchange:
    """A REST answer being received: its status, whether it is an NDJSON stream, its body."""

    status: int
    streaming: bool
    chunks: AsyncIterator[bytes]
    close: Callable[[], Awaitable[None]] = field(default=lambda: _noop())


async def _noop() -> None:
    return None


class Backend(Protocol):
    async def call(self, http_method: str, path: str, body: dict[str, Any]) -> Exchange: ...


Send = Callable[[Any], Awaitable[None]]


class Session:
    """The calls of one connection. ``receive`` takes one transport message (a text frame or a
    framed stdio message); answers go out through ``send`` (one JSON value each)."""

    def __init__(self, backend: Backend, send: Send, tg: TaskGroup) -> None:
        self._backend = backend
        self._send_raw = send
        self._tg = tg
        self._lock = anyio.Lock()
        self._scopes: dict[Any, anyio.CancelScope] = {}

    async def send(self, obj: Any) -> None:
        async with self._lock:  # one message at a time on the transport
            await self._send_raw(obj)

    async def receive(self, data: bytes | str) -> None:
        message = jsonrpc.decode(data)
        batch = jsonrpc.BatchState.for_message(message)
        for item in message.items:
            if isinstance(item, jsonrpc.Reply):
                await self._answer(item.obj, batch)
            elif isinstance(item, jsonrpc.Cancel):
                scope = self._scopes.get(jsonrpc.id_key(item.id))
                if scope is not None:
                    scope.cancel()
            elif isinstance(item, jsonrpc.Call) and not item.notification:
                if len(self._scopes) >= MAX_IN_FLIGHT:
                    await self._answer(jsonrpc.api_error(
                        item.id, 503, f"too many requests in flight on this connection "
                                      f"(at most {MAX_IN_FLIGHT})"), batch)
                    continue
                key = jsonrpc.id_key(item.id)
                if key in self._scopes:
                    await self._answer(jsonrpc.error(
                        item.id, jsonrpc.INVALID_REQUEST,
                        "a request with this id is still in flight"), batch)
                    continue
                scope = anyio.CancelScope()
                self._scopes[key] = scope
                self._tg.start_soon(self._run, item, scope, batch)

    async def _answer(self, obj: dict[str, Any], batch: jsonrpc.BatchState | None) -> None:
        if batch is None:
            await self.send(obj)
            return
        done = batch.add(obj)
        if done is not None:
            await self.send(done)

    async def _run(self, call: jsonrpc.Call, scope: anyio.CancelScope,
                   batch: jsonrpc.BatchState | None) -> None:
        answer: dict[str, Any] | None = None
        try:
            with scope:
                answer = await self._execute(call)
        except PollamaError as exc:
            answer = jsonrpc.api_error(call.id, exc.status_hint, exc.message)
        except Exception:
            log.exception("JSON-RPC %s failed", call.method)
            answer = jsonrpc.error(call.id, jsonrpc.INTERNAL_ERROR, "internal error")
        finally:
            self._scopes.pop(jsonrpc.id_key(call.id), None)
        if answer is None:  # the scope was cancelled: $/cancelRequest
            answer = jsonrpc.cancelled(call.id)
        with anyio.CancelScope(shield=True):
            try:
                await self._answer(answer, batch)
            except CLOSED:
                pass

    async def _execute(self, call: jsonrpc.Call) -> dict[str, Any]:
        route = jsonrpc.METHODS[call.method]
        exchange = await self._backend.call(route.http_method, route.path, call.params)
        try:
            if not exchange.streaming:
                body = b"".join([chunk async for chunk in exchange.chunks])
                return jsonrpc.outcome(call.id, exchange.status, _json_or_text(body))
            reader = ndjson.NDJSONReader()
            last: Any = None
            async for chunk in _then_eof(exchange.chunks):
                reader.receive_data(chunk)
                while (obj := reader.next_event()) not in (ndjson.NEED_DATA, None):
                    if last is not None:
                        await self.send(jsonrpc.stream_notification(call.id, last))
                    last = obj
            return jsonrpc.stream_end(call.id, last)
        finally:
            with anyio.CancelScope(shield=True):
                await exchange.close()


async def _then_eof(chunks: AsyncIterator[bytes]) -> AsyncIterator[bytes]:
    """The body's bytes, then ``b""``: the end of stream a reader's ``receive_data`` wants."""
    async for chunk in chunks:
        if chunk:
            yield chunk
    yield b""


def _json_or_text(body: bytes) -> Any:
    if not body:
        return {}
    try:
        return jsonwire.loads_request(body)
    except (PollamaError, ValueError):
        return body.decode("utf-8", "replace")


# ---------------------------------------------------------------------------------------------
# Backends


class RemoteBackend:
    """REST calls over HTTP to a running server (the stdio bridge)."""

    def __init__(self, client: httpx.AsyncClient) -> None:
        self._client = client

    async def call(self, http_method: str, path: str, body: dict[str, Any]) -> Exchange:
        request = self._client.build_request(
            http_method, path, content=jsonwire.dumps(body),
            headers={"Content-Type": "application/json"})
        with map_exceptions({httpx.HTTPError: lambda exc: PollamaError(
                f"pollama server unreachable: {exc}", status_hint=502)}):
            response = await self._client.send(request, stream=True)
        streaming = response.headers.get("content-type", "").startswith(NDJSON_TYPE)
        return Exchange(status=response.status_code, streaming=streaming,
                        chunks=response.aiter_raw(), close=response.aclose)


class LocalRequest:
    """A REST request made inside the server: what the app's handlers read of a ``Request``.
    Its body is the call's params, already decoded (and bounded) by core.jsonrpc."""

    def __init__(self, method: str, path: str, body: dict[str, Any], request_id: str) -> None:
        self.id = request_id
        self.method = method
        self.target = path
        self.path = path
        self.headers: list[tuple[str, str]] = [("content-type", "application/json")]
        self.body_limit: int | None = None
        self.body_done = True
        self._body = body

    def header(self, name: str) -> str | None:
        for k, v in self.headers:
            if k == name:
                return v
        return None

    def check_declared_length(self) -> None:
        return None

    async def json(self) -> Any:
        return self._body

    async def body_chunks(self) -> AsyncIterator[bytes]:
        yield jsonwire.dumps(self._body)


class LocalBackend:
    """REST calls routed in process (the WebSocket, and ``pollama stdio --standalone``):
    ``route`` is the app's router behind its Host/Origin/key guard, which the connection has
    already passed."""

    def __init__(self, route: Callable[[Any], Awaitable[Any]], request_id: str) -> None:
        self._route = route
        self._request_id = request_id
        self._n = 0

    async def call(self, http_method: str, path: str, body: dict[str, Any]) -> Exchange:
        self._n += 1
        response = await self._route(LocalRequest(http_method, path, body,
                                                  f"{self._request_id}.{self._n}"))
        content_type = response.content_type or ""
        if isinstance(response.body, (bytes, bytearray)):
            return Exchange(status=response.status, streaming=False,
                            chunks=_once(bytes(response.body)))
        body = response.body
        aclose = getattr(body, "aclose", None)
        return Exchange(status=response.status, streaming=content_type.startswith(NDJSON_TYPE),
                        chunks=body, close=aclose if aclose is not None else _noop)


async def _once(data: bytes) -> AsyncIterator[bytes]:
    yield data
