"""The h11 adapter's bounds, over real loopback sockets: protocol errors are 400s, bodies are
bound (413), slow and idle clients are dropped, 100-continue is answered, and a client that
closes its socket cancels the work it started. No timing assertions: each test waits for an
outcome with a generous deadline."""

from __future__ import annotations

import json
import socket
import threading
from collections.abc import Iterator

import anyio
import httpx
import pytest

from pollama.adapters.http_server import Request, Response, serve
from pollama.core.limits import Limits

CANCELLED: list[str] = []
STARTED = threading.Event()


async def app(request: Request) -> Response:
    if request.path == "/echo":
        return Response(status=200, body=await request.read_body(),
                        content_type="application/octet-stream")
    if request.path == "/json":
        request.body_limit = 1000
        value = await request.json()
        return Response(status=200, body=json.dumps(value).encode())
    if request.path == "/bigjson":
        request.body_limit = 64 * 1024 * 1024
        return Response(status=200, body=json.dumps(await request.json()).encode())
    if request.path == "/wait":
        # Stands for a request queued behind a busy model: it waits until cancelled.
        await request.read_body()
        STARTED.set()
        try:
            await anyio.sleep_forever()
        except anyio.get_cancelled_exc_class():
            CANCELLED.append(request.id)
            raise
    return Response(status=404, body=b"404 page not found", content_type="text/plain")


async def wrapped(request: Request) -> Response:
    from pollama.core.errors import PollamaError
    try:
        return await app(request)
    except PollamaError as exc:
        return Response(status=exc.status_hint, body=json.dumps({"error": exc.message}).encode())


LIMITS = Limits(small_body=1000, header_timeout=1.0, body_timeout=1.0, idle_timeout=2.0)


@pytest.fixture(scope="module")
def addr() -> Iterator[tuple[str, int]]:
    port_box: list[int] = []
    ready = threading.Event()

    async def main() -> None:
        async with anyio.create_task_group() as tg:
            port_box.append(await tg.start(serve, wrapped, "127.0.0.1", 0, LIMITS))
            ready.set()

    threading.Thread(target=lambda: anyio.run(main), daemon=True).start()
    assert ready.wait(10)
    yield "127.0.0.1", port_box[0]


def connect(addr: tuple[str, int]) -> socket.socket:
    return socket.create_connection(addr, timeout=60)


def read_all(s: socket.socket) -> bytes:
    out = b""
    while chunk := s.recv(65536):
        out += chunk
    return out


def status_and_body(data: bytes) -> tuple[int, bytes]:
    head, _, body = data.partition(b"\r\n\r\n")
    return int(head.split(b" ", 2)[1]), body


def test_garbage_chunked_encoding_is_a_400_without_internals(addr: tuple[str, int]) -> None:
    with connect(addr) as s:
        s.sendall(b"POST /echo HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n"
                  b"zz\r\nhello\r\n0\r\n\r\n")
        status, body = status_and_body(read_all(s))
    assert status == 400
    error = json.loads(body)["error"]
    assert "chunked" in error
    assert "bytearray" not in error and "b'" not in error


def test_body_cut_short_is_a_400(addr: tuple[str, int]) -> None:
    with connect(addr) as s:
        s.sendall(b"POST /echo HTTP/1.1\r\nHost: x\r\nContent-Length: 100\r\n\r\nabc")
        s.shutdown(socket.SHUT_WR)
        data = read_all(s)
    # The client is gone (half-closed) before the body ended: nothing to answer, or a 400.
    assert data == b"" or status_and_body(data)[0] == 400


def test_declared_body_over_the_route_bound_is_413_before_reading(addr: tuple[str, int]) -> None:
    with connect(addr) as s:
        s.sendall(b"POST /json HTTP/1.1\r\nHost: x\r\nContent-Length: 50000000\r\n\r\n{")
        status, body = status_and_body(read_all(s))
    assert status == 413
    assert "too large" in json.loads(body)["error"]


def test_chunked_body_over_the_bound_is_413(addr: tuple[str, int]) -> None:
    r = httpx.post(f"http://{addr[0]}:{addr[1]}/json",
                   content=iter([b'{"a":"' + b"x" * 600, b"x" * 600 + b'"}']))
    assert r.status_code == 413
    assert httpx.get(f"http://{addr[0]}:{addr[1]}/json").status_code in (400, 413)


def test_expect_100_continue_is_answered(addr: tuple[str, int]) -> None:
    with connect(addr) as s:
        s.sendall(b"POST /echo HTTP/1.1\r\nHost: x\r\nContent-Length: 5\r\n"
                  b"Expect: 100-continue\r\nConnection: close\r\n\r\n")
        first = s.recv(65536)  # would block forever if the server waited for the body
        assert first.startswith(b"HTTP/1.1 100 ")
        s.sendall(b"hello")
        rest = read_all(s)
    assert status_and_body(rest)[1] == b"hello"


def test_slow_headers_are_dropped(addr: tuple[str, int]) -> None:
    with connect(addr) as s:
        s.sendall(b"POST /echo HTTP/1.1\r\nHost: x\r\n")  # ...and never the rest
        assert read_all(s) == b""  # the server closed the connection


def test_stalled_body_is_a_408(addr: tuple[str, int]) -> None:
    with connect(addr) as s:
        s.sendall(b"POST /echo HTTP/1.1\r\nHost: x\r\nContent-Length: 10\r\n\r\nabc")
        status, _ = status_and_body(read_all(s))
    assert status == 408


def test_idle_keep_alive_connection_is_closed(addr: tuple[str, int]) -> None:
    with connect(addr) as s:
        s.sendall(b"POST /echo HTTP/1.1\r\nHost: x\r\nContent-Length: 2\r\n\r\nok")
        data = read_all(s)  # returns once the idle connection is closed
    assert data.startswith(b"HTTP/1.1 200") and data.endswith(b"ok")


def test_closed_socket_cancels_the_request_it_started(addr: tuple[str, int]) -> None:
    STARTED.clear()
    before = len(CANCELLED)
    s = connect(addr)
    s.sendall(b"POST /wait HTTP/1.1\r\nHost: x\r\nContent-Length: 2\r\n\r\n{}")
    assert STARTED.wait(60)
    s.close()
    for _ in range(600):
        if len(CANCELLED) > before:
            break
        threading.Event().wait(0.1)
    assert len(CANCELLED) == before + 1


def test_large_json_body_with_too_many_values_is_refused(addr: tuple[str, int]) -> None:
    from pollama.adapters import http_server
    body = b"[" + b"[]," * (http_server.MAX_JSON_VALUES // 2 + 10) + b"[]]"
    r = httpx.post(f"http://{addr[0]}:{addr[1]}/bigjson", content=body, timeout=120)
    assert r.status_code == 413
    assert "JSON values" in r.json()["error"]
    ok = httpx.post(f"http://{addr[0]}:{addr[1]}/bigjson", content=b'["' + b"x" * 600_000 + b'"]',
                    timeout=120)
    assert ok.status_code == 200 and len(ok.json()[0]) == 600_000
