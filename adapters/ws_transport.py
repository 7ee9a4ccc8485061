"""JSON-RPC over WebSocket at ``GET /api/ws``: wsproto on the socket h11 handed over.

The HTTP server parses the upgrade request with h11 and runs the app's guard (Host, Origin,
API key) like any request; the app accepts the handshake with wsproto
(``initiate_upgrade_connection``, as hypercorn does) and returns a ``Response`` whose
``upgrade`` runs ``serve`` on the raw socket with the bytes h11 read past the request. From then
on every text message is one JSON-RPC message (or batch) for an ``rpc_session.Session``.

Limits: a message (all its frames) is at most ``max_message`` bytes (close 1009); binary
messages are refused (close 1003); pings are answered; a close is answered and ends the
session, cancelling every call it started.
"""

from __future__ import annotations

import logging
from typing import Any

import anyio
from anyio.abc import SocketStream
from wsproto import ConnectionType, WSConnection
from wsproto.connection import ConnectionState
from wsproto.events import (AcceptConnection, BytesMessage, CloseConnection, Ping, Request,
                            TextMessage)
from wsproto.utilities import RemoteProtocolError

from pollama.core import jsonwire
from pollama.core.errors import BadRequest

from .rpc_session import Backend, Session
from .streams import CLOSED, RECEIVE_CLOSED

log = logging.getLogger("pollama.ws")

READ_SIZE = 64 * 1024
CLOSE_NORMAL = 1000
CLOSE_UNSUPPORTED = 1003
CLOSE_PROTOCOL = 1002
CLOSE_TOO_BIG = 1009


def handshake(headers: list[tuple[str, str]], target: str) -> tuple[WSConnection, bytes]:
    """Accept a WebSocket upgrade request: the wsproto connection and the 101 response bytes.
    A request that is not a valid upgrade is a 400."""
    ws = WSConnection(ConnectionType.SERVER)
    try:
        ws.initiate_upgrade_connection(
            [(k.encode("latin-1"), v.encode("latin-1")) for k, v in headers], target)
    except RemoteProtocolError as exc:
        raise BadRequest(f"websocket handshake failed: {exc}") from None
    if not any(isinstance(e, Request) for e in ws.events()):
        raise BadRequest("websocket handshake failed")
    return ws, ws.send(AcceptConnection())


async def serve(stream: SocketStream, ws: WSConnection, accept: bytes, trailing: bytes,
                backend: Backend, *, max_message: int) -> None:
    """Run one WebSocket connection until either side closes it."""
    lock = anyio.Lock()

    async def write(data: bytes) -> None:
        async with lock:
            await stream.send(data)

    async def send(obj: Any) -> None:
        if ws.state is ConnectionState.OPEN:
            await write(ws.send(TextMessage(data=jsonwire.dumps(obj).decode("utf-8"))))

    async def close(code: int, reason: str = "") -> None:
        if ws.state is ConnectionState.OPEN:
            try:
                await write(ws.send(CloseConnection(code=code, reason=reason)))
            except CLOSED:
                pass

    try:
        await write(accept)
    except CLOSED:
        return
    parts: list[str] = []
    size = 0
    async with anyio.create_task_group() as tg:
        session = Session(backend, send, tg)
        data = trailing
        try:
            while True:
                if data:
                    ws.receive_data(data)
                for event in ws.events():
                    if isinstance(event, TextMessage):
                        size += len(event.data)
                        if size > max_message:
                            await close(CLOSE_TOO_BIG, "message too big")
                            return
                        parts.append(event.data)
                        if event.message_finished:
                            text, parts, size = "".join(parts), [], 0
                            await session.receive(text)
                    elif isinstance(event, BytesMessage):
                        await close(CLOSE_UNSUPPORTED, "JSON-RPC messages are text frames")
                        return
                    elif isinstance(event, Ping):
                        await write(ws.send(event.response()))
                    elif isinstance(event, CloseConnection):
                        if ws.state is not ConnectionState.CLOSED:
                            await write(ws.send(event.response()))
                        return
                try:
                    data = await stream.receive(READ_SIZE)
                except RECEIVE_CLOSED:
                    return
        except RemoteProtocolError as exc:
            log.info("websocket protocol error: %s", exc)
            await close(CLOSE_PROTOCOL, "protocol error")
        except CLOSED:
            pass
        finally:
            tg.cancel_scope.cancel()  # a closed connection cancels everything it started
