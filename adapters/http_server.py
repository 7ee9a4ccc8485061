"""HTTP/1.1 over h11, driven by anyio: the adapter ring around the app (hypercorn's shape).

It moves bytes and h11 events only: a request becomes a ``Request`` whose body is read on
demand, the app returns a ``Response`` whose body is bytes (Content-Length) or an async
iterator (chunked transfer encoding), and the connection is kept alive when h11 allows.
A client that goes away mid-stream closes the body iterator, which cancels the work behind it.
"""

from __future__ import annotations

import email.utils
import logging
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass, field

import anyio
import h11
from anyio.abc import SocketStream

from pollama.core.errors import BadRequest

log = logging.getLogger("pollama.http")

MAX_HEADER_BYTES = 64 * 1024
READ_SIZE = 256 * 1024
DRAIN_LIMIT = 1024 * 1024


class ClientDisconnected(Exception):
    pass


class Request:
    def __init__(self, conn: _Conn, event: h11.Request) -> None:
        self._conn = conn
        self.method = event.method.decode("ascii", "replace")
        self.target = event.target.decode("utf-8", "replace")
        self.headers = [(k.decode("latin-1").lower(), v.decode("latin-1"))
                        for k, v in event.headers]
        self.body_done = False

    def header(self, name: str) -> str | None:
        for k, v in self.headers:
            if k == name:
                return v
        return None

    async def body_chunks(self) -> AsyncIterator[bytes]:
        while not self.body_done:
            event = await self._conn.next_event()
            if isinstance(event, h11.Data):
                yield bytes(event.data)
            elif isinstance(event, h11.EndOfMessage):
                self.body_done = True
            elif isinstance(event, h11.ConnectionClosed) or event is None:
                raise ClientDisconnected()

    async def read_body(self, limit: int = 64 * 1024 * 1024) -> bytes:
        parts: list[bytes] = []
        size = 0
        async for chunk in self.body_chunks():
            size += len(chunk)
            if size > limit:
                raise BadRequest("request body too large")
            parts.append(chunk)
        return b"".join(parts)


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


App = Callable[[Request], Awaitable[Response]]


class _Conn:
    def __init__(self, stream: SocketStream) -> None:
        self.stream = stream
        self.h11 = h11.Connection(h11.SERVER, max_incomplete_event_size=MAX_HEADER_BYTES)

    async def next_event(self) -> h11.Event | None:
        while True:
            event = self.h11.next_event()
            if event is h11.NEED_DATA:
                try:
                    data = await self.stream.receive(READ_SIZE)
                except (anyio.EndOfStream, anyio.BrokenResourceError, anyio.ClosedResourceError,
                        OSError):
                    data = b""
                self.h11.receive_data(data)
                continue
            if event is h11.PAUSED:
                return None
            return event  # type: ignore[return-value]

    async def send(self, event: h11.Event) -> None:
        data = self.h11.send(event)
        if data:
            try:
                await self.stream.send(data)
            except (anyio.BrokenResourceError, anyio.ClosedResourceError, OSError):
                raise ClientDisconnected() from None


def _headers(resp: Response, *, chunked: bool, length: int) -> list[tuple[str, str]]:
    out = list(resp.headers)
    if resp.content_type:
        out.append(("Content-Type", resp.content_type))
    out.append(("Date", email.utils.formatdate(usegmt=True)))
    if chunked:
        out.append(("Transfer-Encoding", "chunked"))
    else:
        out.append(("Content-Length", str(length)))
    return out


async def _send_response(conn: _Conn, resp: Response, head_only: bool) -> None:
    if isinstance(resp.body, (bytes, bytearray)):
        await conn.send(h11.Response(status_code=resp.status,
                                     headers=_headers(resp, chunked=False, length=len(resp.body))))
        if resp.body and not head_only:
            await conn.send(h11.Data(data=bytes(resp.body)))
        await conn.send(h11.EndOfMessage())
        return
    body = resp.body
    try:
        await conn.send(h11.Response(status_code=resp.status, headers=_headers(
            resp, chunked=resp.length is None, length=resp.length or 0)))
        async for chunk in body:
            if chunk and not head_only:
                await conn.send(h11.Data(data=chunk))
        await conn.send(h11.EndOfMessage())
    finally:
        aclose = getattr(body, "aclose", None)
        if aclose is not None:
            with anyio.CancelScope(shield=True):
                await aclose()


async def serve_connection(stream: SocketStream, app: App) -> None:
    conn = _Conn(stream)
    try:
        while True:
            try:
                event = await conn.next_event()
            except h11.RemoteProtocolError as exc:
                await _protocol_error(conn, exc)
                return
            if not isinstance(event, h11.Request):
                return  # ConnectionClosed or the peer went away between requests
            request = Request(conn, event)
            try:
                response = await app(request)
            except ClientDisconnected:
                return
            except h11.RemoteProtocolError as exc:
                await _protocol_error(conn, exc)
                return
            if not request.body_done:
                await _drain(request, response)
            try:
                await _send_response(conn, response, head_only=request.method == "HEAD")
            except ClientDisconnected:
                return
            if conn.h11.our_state is h11.MUST_CLOSE or conn.h11.their_state is not h11.DONE:
                return
            try:
                conn.h11.start_next_cycle()
            except h11.LocalProtocolError:
                return
    except ClientDisconnected:
        return
    finally:
        with anyio.CancelScope(shield=True):
            await stream.aclose()


async def _drain(request: Request, response: Response) -> None:
    """Read a body the app did not need, so the connection can be reused; close if it is big."""
    size = 0
    try:
        async for chunk in request.body_chunks():
            size += len(chunk)
            if size > DRAIN_LIMIT:
                response.headers.append(("Connection", "close"))
                return
    except (ClientDisconnected, h11.RemoteProtocolError):
        response.headers.append(("Connection", "close"))


async def _protocol_error(conn: _Conn, exc: h11.RemoteProtocolError) -> None:
    if conn.h11.our_state not in (h11.IDLE, h11.SEND_RESPONSE):
        return
    body = b'{"error":"bad request: ' + str(exc).replace('"', "'").encode() + b'"}'
    try:
        await conn.send(h11.Response(status_code=exc.error_status_hint, headers=[
            ("Content-Type", "application/json; charset=utf-8"),
            ("Content-Length", str(len(body))), ("Connection", "close")]))
        await conn.send(h11.Data(data=body))
        await conn.send(h11.EndOfMessage())
    except (ClientDisconnected, h11.LocalProtocolError):
        pass


async def serve(app: App, host: str, port: int, *,
                task_status: anyio.abc.TaskStatus[int] = anyio.TASK_STATUS_IGNORED) -> None:
    listener = await anyio.create_tcp_listener(local_host=host, local_port=port, reuse_port=False)
    bound = listener.extra(anyio.abc.SocketAttribute.local_port)
    task_status.started(bound)

    async def handle(stream: SocketStream) -> None:
        try:
            await serve_connection(stream, app)
        except Exception:  # one broken connection must never take the server down
            log.exception("connection handler failed")

    await listener.serve(handle)
