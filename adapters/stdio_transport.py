"""JSON-RPC on stdin/stdout for editors: ``pollama stdio``.

Framing is LSP's base protocol (``Content-Length: N\\r\\n\\r\\n<json>``, core.jsonrpc_framing)
by default, or one JSON value per line (``ndjson``). Calls run through an ``rpc_session.Session``
against a backend: the running server on ``POLLAMA_HOST`` when one answers (the bridge: its
loaded models are shared), else an in-process server stack over the same model store
(``--standalone`` forces that). stdout carries protocol messages only; logs go to stderr. EOF on
stdin cancels what is in flight and exits 0; a framing error (the stream cannot be resynced)
exits 1. Either way no runner process is left behind.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Callable
from typing import Any

import anyio
import httpx

from pollama.core import jsonwire, ndjson
from pollama.core import jsonrpc_framing as framing
from pollama.core.config import Config
from pollama.core.errors import FramingError, PollamaError

from .rpc_session import Backend, LocalBackend, RemoteBackend, Session
from .server import stack

log = logging.getLogger("pollama.stdio")

READ_SIZE = 64 * 1024
MAX_MESSAGE = 64 * 1024 * 1024


class _Lines:
    """NDJSON framing: one message per line (blank lines skipped), bounded."""

    def __init__(self, max_message: int) -> None:
        self._buf = bytearray()
        self._max = max_message
        self._eof = False

    def receive_data(self, data: bytes) -> None:
        if not data:
            self._eof = True
        self._buf += data

    def next_message(self) -> bytes | object | None:
        while True:
            i = self._buf.find(b"\n")
            if i < 0:
                if len(self._buf) > self._max:
                    raise FramingError(f"message longer than {self._max} bytes")
                if self._eof:
                    rest, self._buf = bytes(self._buf), bytearray()
                    return rest if rest.strip() else None
                return ndjson.NEED_DATA
            line = bytes(self._buf[:i])
            del self._buf[:i + 1]
            if line.strip():
                return line


def _reader(kind: str) -> Any:
    return framing.LSPReader(max_message=MAX_MESSAGE) if kind == "lsp" else _Lines(MAX_MESSAGE)


def _encoder(kind: str) -> Callable[[Any], bytes]:
    if kind == "lsp":
        return lambda obj: framing.lsp_encode(jsonwire.dumps(obj))
    return lambda obj: jsonwire.dumps(obj) + b"\n"


async def _write_all(fd: int, data: bytes) -> None:
    view = memoryview(data)
    while view:
        n = await anyio.to_thread.run_sync(os.write, fd, view)
        view = view[n:]


async def serve(backend: Backend, kind: str, *, stdin: int = 0, stdout: int = 1) -> int:
    """Speak JSON-RPC on the file descriptors until EOF; the exit status."""
    reader = _reader(kind)
    encode = _encoder(kind)

    async def send(obj: Any) -> None:
        await _write_all(stdout, encode(obj))

    async with anyio.create_task_group() as tg:
        session = Session(backend, send, tg)
        try:
            while True:
                data = await anyio.to_thread.run_sync(os.read, stdin, READ_SIZE)
                reader.receive_data(data)
                while True:
                    message = reader.next_message()
                    if message is ndjson.NEED_DATA or message is None:
                        break
                    assert isinstance(message, (bytes, bytearray))
                    await session.receive(bytes(message))
                if not data:
                    log.info("stdin closed: shutting down")
                    return 0
        except FramingError as exc:
            log.error("stdio framing error: %s", exc.message)
            return 1
        finally:
            tg.cancel_scope.cancel()
    return 0


async def server_answers(client: httpx.AsyncClient) -> bool:
    try:
        r = await client.get("/", timeout=2.0)
    except httpx.HTTPError:
        return False
    return r.status_code == 200


async def run(config: Config, kind: str, *, standalone: bool, base: str,
              headers: dict[str, str]) -> int:
    """Bridge to the server at ``base`` when it answers (unless ``standalone``), else run
    the server stack in process."""
    async with httpx.AsyncClient(base_url=base, headers=headers,
                                 timeout=httpx.Timeout(None, connect=10.0)) as client:
        if not standalone and await server_answers(client):
            log.info("bridging to the pollama server at %s", base)
            return await serve(RemoteBackend(client), kind)
    log.info("no server on %s: running standalone on %s", base, config.models_dir)
    try:
        async with stack(config) as (app, _driver, _tg):
            return await serve(LocalBackend(app.route, "stdio"), kind)
    except PollamaError as exc:
        log.error("%s", exc.message)
        return 1
