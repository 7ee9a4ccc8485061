"""HTTP/1.1 over h11, driven by anyio: the adapter ring around the app (hypercorn's shape).

It moves bytes and h11 events only: a request becomes a ``Request`` whose body is read on
demand, the app returns a ``Response`` whose body is bytes (Content-Length) or an async
iterator (chunked transfer encoding), and the connection is kept alive when h11 allows.

What a hostile or careless client could make it hold is bound by ``core.limits.Limits``: bodies
per route (413) and in flight (503), time to send a request head, body progress, idle keep-alive,
and connections (beyond the bound they wait in the kernel's backlog). ``accept`` failing for lack
of descriptors backs off and retries, as Go's server does, instead of ending the server.

A client that closes its socket is noticed at once, not when the next token is written: once a
request's body has been read, the connection is watched while the app works, and end-of-stream
cancels the app (in the scheduler's queue or in the runner), as Go's request context does.
"""

from __future__ import annotations

import email.utils
import errno
import logging
import re
import secrets
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any

import anyio
import h11
from anyio.abc import SocketStream

from pollama.core import jsonwire
from pollama.core.errors import (BadRequest, ClientDisconnected, PayloadTooLarge, PollamaError,
                                 RequestTimeout, ServerBusy, map_exceptions)
from pollama.core.limits import Limits, too_large

from .streams import CLOSED, RECEIVE_CLOSED

log = logging.getLogger("pollama.http")

MAX_HEADER_BYTES = 64 * 1024
READ_SIZE = 256 * 1024
DRAIN_LIMIT = 1024 * 1024
LINGER_BYTES = 4 * 1024 * 1024  # read and dropped after an early answer, so the client sees it
LINGER_SECONDS = 2.0
# Bodies above this are decoded in a worker thread; smaller ones cost less than the hop.
THREAD_DECODE = 256 * 1024
# JSON values a large body may hold: `[[[[`-style bodies cost ~100 bytes of memory per byte.
MAX_JSON_VALUES = 4_000_000
_ACCEPT_ERRNOS = (errno.EMFILE, errno.ENFILE, errno.ENOBUFS, errno.ENOMEM)


class BodyBudget:
    """Bytes of request bodies held in memory at once, over all connections."""

    def __init__(self, limit: int) -> None:
        self.limit = limit
        self.used = 0

    def take(self, n: int) -> None:
        if self.used + n > self.limit:
            raise ServerBusy("server busy: too many large requests in flight, try again")
        self.used += n

    def give(self, n: int) -> None:
        self.used -= n


def _clean_protocol_message(exc: h11.RemoteProtocolError) -> str:
    """h11's reason without the Python reprs some of its messages carry."""
    text = str(exc)
    if text.startswith("illegal chunk header"):
        return "malformed chunked encoding"
    if "without sending complete message body" in text:
        return "request body ended before its declared length"
    text = re.sub(r"\s*:?\s*(bytearray\(|b'|b\").*$", "", text)
    return text or "malformed HTTP request"


# While a request body arrives: h11's verdict on the bytes, and the body timeout.
_BODY_ERRORS: dict[type[Exception], Callable[[Any], PollamaError]] = {
    h11.RemoteProtocolError: lambda exc: BadRequest(
        f"bad request: {_clean_protocol_message(exc)}"),
    TimeoutError: lambda _: RequestTimeout("request timeout: the body stopped arriving"),
}


class Request:
    def __init__(self, conn: _Conn, event: h11.Request) -> None:
        self._conn = conn
        self.id = secrets.token_hex(4)
        self.method = event.method.decode("ascii", "replace")
        self.target = event.target.decode("utf-8", "replace")
        self.headers = [(k.decode("latin-1").lower(), v.decode("latin-1"))
                        for k, v in event.headers]
        self.body_done = False
        self.body_finished = anyio.Event()
        # Set by the app once it knows the route (core.limits); None: streamed to disk.
        self.body_limit: int | None = conn.limits.small_body
        self.held = 0  # bytes of this body counted against the server's BodyBudget

    @property
    def path(self) -> str:
        return self.target.split("?", 1)[0]

    def header(self, name: str) -> str | None:
        for k, v in self.headers:
            if k == name:
                return v
        return None

    def declared_length(self) -> int | None:
        value = self.header("content-length")
        return int(value) if value is not None and value.isdigit() else None

    def check_declared_length(self) -> None:
        """413 before reading a byte when Content-Length already exceeds the route's bound."""
        length = self.declared_length()
        if self.body_limit is not None and length is not None and length > self.body_limit:
            raise too_large(self.body_limit)

    async def body_chunks(self) -> AsyncIterator[bytes]:
        while not self.body_done:
            with map_exceptions(_BODY_ERRORS):
                event = await self._conn.next_event(timeout=self._conn.limits.body_timeout)
            if isinstance(event, h11.Data):
                yield bytes(event.data)
            elif isinstance(event, h11.EndOfMessage):
                self.body_done = True
                self.body_finished.set()
            elif isinstance(event, h11.ConnectionClosed) or event is None:
                raise ClientDisconnected()

    async def read_body(self, limit: int | None = None) -> bytes:
        limit = limit if limit is not None else self.body_limit
        if limit is not None:
            self.check_declared_length()
        parts: list[bytes] = []
        size = 0
        budget = self._conn.budget
        async for chunk in self.body_chunks():
            size += len(chunk)
            if limit is not None and size > limit:
                raise too_large(limit)
            budget.take(len(chunk))
            self.held += len(chunk)
            parts.append(chunk)
        return b"".join(parts)

    async def json(self) -> Any:
        """The body decoded as Ollama's Go decoder would (core.jsonwire), bounded.

        Large bodies are decoded in a worker thread; one that would expand into millions of
        Python objects is refused first (a cheap count of JSON separators).
        """
        body = await self.read_body()
        if len(body) <= THREAD_DECODE:
            return jsonwire.loads_request(body)
        values = body.count(b",") + body.count(b"[") + body.count(b"{") + body.count(b":")
        if values > MAX_JSON_VALUES:
            raise too_large_values()
        return await anyio.to_thread.run_sync(jsonwire.loads_request, body)


def too_large_values() -> PollamaError:
    return PayloadTooLarge(f"request body too large: more than {MAX_JSON_VALUES} JSON values")


@dataclass
class Response:
    status: int
    body: bytes | AsyncIterator[bytes] = b""
    content_type: str | None = "application/json; charset=utf-8"
    headers: list[tuple[str, str]] = field(default_factory=list)
    # Content-Length of an async-iterator body when it is known (a file): sent instead of
    # chunked encoding, and h11 checks the body has exactly that many bytes. For HEAD, the
    # length of what GET would send.
    length: int | None = None
    # A protocol switch (WebSocket): instead of a response, the connection is handed to this
    # with the bytes that followed the request; it owns the socket until it returns.
    upgrade: Callable[[SocketStream, bytes], Awaitable[None]] | None = None
    # Called once when the answer has been sent, or abandoned: with True when the client left
    # first (the app's per-request log line and metrics).
    on_done: Callable[[bool], None] | None = None


App = Callable[[Request], Awaitable[Response]]


class _Conn:
    def __init__(self, stream: SocketStream, limits: Limits, budget: BodyBudget) -> None:
        self.stream = stream
        self.limits = limits
        self.budget = budget
        self.h11 = h11.Connection(h11.SERVER, max_incomplete_event_size=MAX_HEADER_BYTES)
        self.peer_gone = False

    async def _receive(self) -> bytes:
        try:
            return await self.stream.receive(READ_SIZE)
        except RECEIVE_CLOSED:
            return b""

    async def next_event(self, *, timeout: float | None = None) -> h11.Event | None:
        """The next h11 event; ``TimeoutError`` when no byte arrives for ``timeout`` seconds."""
        while True:
            event = self.h11.next_event()
            if event is h11.NEED_DATA:
                if self.h11.they_are_waiting_for_100_continue:
                    # The client holds its body back until told to send it (RFC 9110 §10.1.1).
                    await self.send(h11.InformationalResponse(status_code=100, headers=[]))
                if timeout is None:
                    data = await self._receive()
                else:
                    with anyio.fail_after(timeout):
                        data = await self._receive()
                if not data:
                    self.peer_gone = True
                self.h11.receive_data(data)
                continue
            if event is h11.PAUSED:
                return None
            return event  # type: ignore[return-value]

    async def next_request(self) -> h11.Event | None:
        """Wait for a request head: ``idle_timeout`` for its first byte, then
        ``header_timeout`` for the rest. None when the connection should close."""
        limits = self.limits
        head_deadline: float | None = None
        while True:
            if head_deadline is None and self.h11.trailing_data[0]:
                head_deadline = anyio.current_time() + limits.header_timeout
            event = self.h11.next_event()
            if event is not h11.NEED_DATA:
                return None if event is h11.PAUSED else event  # type: ignore[return-value]
            if head_deadline is None:
                wait = limits.idle_timeout
            else:
                wait = head_deadline - anyio.current_time()
            with anyio.move_on_after(max(wait, 0.0)):
                data = await self._receive()
                if not data:
                    self.peer_gone = True
                self.h11.receive_data(data)
                continue
            return None  # slow or idle: close

    async def send(self, event: h11.Event) -> None:
        data = self.h11.send(event)
        if data:
            with map_exceptions({CLOSED: lambda _: ClientDisconnected()}):
                await self.stream.send(data)

    async def watch(self, request: Request, gone: Callable[[], None]) -> None:
        """While the app works on ``request``: once its body is read, end-of-stream means the
        client left (a half-closed socket counts, as in Go's server). Bytes of a pipelined next
        request end the watch, kept for h11, as Go's background read does."""
        await request.body_finished.wait()
        if self.h11.trailing_data[0]:
            return
        data = await self._receive()
        if not data:
            self.peer_gone = True
            gone()
            return
        self.h11.receive_data(data)


def _headers(resp: Response, *, chunked: bool, length: int,
             request_id: str) -> list[tuple[str, str]]:
    out = list(resp.headers)
    if resp.content_type:
        out.append(("Content-Type", resp.content_type))
    out.append(("Date", email.utils.formatdate(usegmt=True)))
    out.append(("X-Request-Id", request_id))
    if chunked:
        out.append(("Transfer-Encoding", "chunked"))
    else:
        out.append(("Content-Length", str(length)))
    return out


async def _send_response(conn: _Conn, resp: Response, head_only: bool, request_id: str) -> None:
    if isinstance(resp.body, (bytes, bytearray)):
        await conn.send(h11.Response(status_code=resp.status, headers=_headers(
            resp, chunked=False, length=len(resp.body), request_id=request_id)))
        if resp.body and not head_only:
            await conn.send(h11.Data(data=bytes(resp.body)))
        await conn.send(h11.EndOfMessage())
        return
    body = resp.body
    try:
        await conn.send(h11.Response(status_code=resp.status, headers=_headers(
            resp, chunked=resp.length is None, length=resp.length or 0, request_id=request_id)))
        async for chunk in body:
            if chunk and not head_only:
                await conn.send(h11.Data(data=chunk))
        await conn.send(h11.EndOfMessage())
    finally:
        aclose = getattr(body, "aclose", None)
        if aclose is not None:
            with anyio.CancelScope(shield=True):
                await aclose()


async def _serve_one(conn: _Conn, request: Request, app: App) -> bool:
    """Answer one request. True when the connection may carry another."""
    gone = False

    def client_gone() -> None:
        nonlocal gone
        gone = True
        scope.cancel()

    upgrade: Callable[[SocketStream, bytes], Awaitable[None]] | None = None
    response: Response | None = None
    try:
        async with anyio.create_task_group() as tg:
            tg.start_soon(conn.watch, request, client_gone)
            with anyio.CancelScope() as scope:
                try:
                    response = await app(request)
                    upgrade = response.upgrade
                    if upgrade is None:
                        if not request.body_done:
                            await _drain(request, response)
                        await _send_response(conn, response, request.method == "HEAD",
                                             request.id)
                except ClientDisconnected:
                    gone = True
            tg.cancel_scope.cancel()
    finally:
        if response is not None and response.on_done is not None:
            response.on_done(gone)
    conn.budget.give(request.held)
    request.held = 0
    if upgrade is not None and not gone:
        # h11 paused after the upgrade request; what it read beyond it is the new protocol's.
        await upgrade(conn.stream, conn.h11.trailing_data[0])
        return False
    if gone:
        log.info("%s %s: client disconnected, request %s cancelled", request.method,
                 request.path, request.id)
        return False
    if conn.h11.our_state is h11.MUST_CLOSE or conn.h11.their_state is not h11.DONE:
        await _linger(conn)
        return False
    try:
        conn.h11.start_next_cycle()
    except h11.LocalProtocolError:
        return False
    return True


async def serve_connection(stream: SocketStream, app: App, limits: Limits | None = None,
                           budget: BodyBudget | None = None) -> None:
    limits = limits or Limits()
    conn = _Conn(stream, limits, budget or BodyBudget(limits.bodies_in_flight))
    try:
        while True:
            try:
                event = await conn.next_request()
            except h11.RemoteProtocolError as exc:
                await _protocol_error(conn, exc)
                return
            if not isinstance(event, h11.Request):
                return  # ConnectionClosed, the peer went away, or too slow / idle
            if not await _serve_one(conn, Request(conn, event), app):
                return
    except ClientDisconnected:
        return
    finally:
        with anyio.CancelScope(shield=True):
            await stream.aclose()


async def _drain(request: Request, response: Response) -> None:
    """Read a body the app did not need, so the connection can be reused; close if it is big."""
    if response.status == 413 or (request.declared_length() or 0) > DRAIN_LIMIT:
        response.headers.append(("Connection", "close"))
        return
    size = 0
    try:
        async for chunk in request.body_chunks():
            size += len(chunk)
            if size > DRAIN_LIMIT:
                response.headers.append(("Connection", "close"))
                return
    except (ClientDisconnected, PollamaError):
        response.headers.append(("Connection", "close"))


async def _linger(conn: _Conn) -> None:
    """Before closing with a body still arriving, read and drop some of it: closing a socket
    with unread data resets it, and the client might never see the answer (Go's lingering
    close)."""
    if conn.peer_gone:
        return
    try:
        await conn.stream.send_eof()
    except CLOSED:
        return
    dropped = 0
    with anyio.move_on_after(LINGER_SECONDS):
        while dropped < LINGER_BYTES:
            data = await conn._receive()
            if not data:
                return
            dropped += len(data)


async def _protocol_error(conn: _Conn, exc: h11.RemoteProtocolError) -> None:
    if conn.h11.our_state not in (h11.IDLE, h11.SEND_RESPONSE):
        return
    message = "bad request: " + _clean_protocol_message(exc)
    body = jsonwire.dumps({"error": message})
    try:
        await conn.send(h11.Response(status_code=exc.error_status_hint, headers=[
            ("Content-Type", "application/json; charset=utf-8"),
            ("Content-Length", str(len(body))), ("Connection", "close")]))
        await conn.send(h11.Data(data=body))
        await conn.send(h11.EndOfMessage())
    except (ClientDisconnected, h11.LocalProtocolError):
        return
    await _linger(conn)


async def _accept_loop(listener: Any, handle: Callable[[SocketStream], Awaitable[None]],
                       slots: anyio.Semaphore, tg: anyio.abc.TaskGroup) -> None:
    delay = 0.0
    while True:
        await slots.acquire()
        try:
            stream = await listener.accept()
        except OSError as exc:
            slots.release()
            if exc.errno not in _ACCEPT_ERRNOS:
                log.debug("accept: %s", exc)
                continue
            # Out of descriptors (or memory): wait and retry, as Go's http.Server does.
            delay = min(max(delay * 2, 0.005), 1.0)
            log.warning("accept: %s; retrying in %.0f ms", exc.strerror, delay * 1000)
            await anyio.sleep(delay)
            continue
        delay = 0.0
        tg.start_soon(handle, stream)


async def serve(app: App, host: str, port: int, limits: Limits | None = None, *,
                task_status: anyio.abc.TaskStatus[int] = anyio.TASK_STATUS_IGNORED) -> None:
    limits = limits or Limits()
    listener = await anyio.create_tcp_listener(local_host=host, local_port=port, reuse_port=False)
    bound = listener.extra(anyio.abc.SocketAttribute.local_port)
    slots = anyio.Semaphore(limits.max_connections)
    budget = BodyBudget(limits.bodies_in_flight)

    async def handle(stream: SocketStream) -> None:
        try:
            await serve_connection(stream, app, limits, budget)
        except Exception:  # one broken connection must never take the server down
            log.exception("connection handler failed")
        finally:
            slots.release()

    async with listener, anyio.create_task_group() as tg:
        for one in listener.listeners:
            tg.start_soon(_accept_loop, one, handle, slots, tg)
        task_status.started(bound)
