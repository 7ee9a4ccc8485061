"""The h11/anyio adapter over a real loopback socket, with a small in-test app."""

from __future__ import annotations

import socket
import threading
from collections.abc import AsyncIterator, Iterator

import anyio
import httpx
import pytest

from pollama.adapters.http_server import Request, Response, serve


async def app(request: Request) -> Response:
    if request.target == "/echo":
        body = await request.read_body()
        return Response(status=200, body=body, content_type="application/octet-stream")
    if request.target == "/stream":
        async def chunks() -> AsyncIterator[bytes]:
            for i in range(3):
                yield f'{{"i":{i}}}\n'.encode()
        return Response(status=200, body=chunks(), content_type="application/x-ndjson")
    if request.target == "/ignore-body":
        return Response(status=200, body=b"ok")
    return Response(status=404, body=b"404 page not found", content_type="text/plain")


@pytest.fixture(scope="module")
def url() -> Iterator[str]:
    port_box: list[int] = []
    ready = threading.Event()

    async def main() -> None:
        async with anyio.create_task_group() as tg:
            port = await tg.start(serve, app, "127.0.0.1", 0)
            port_box.append(port)
            ready.set()

    t = threading.Thread(target=lambda: anyio.run(main), daemon=True)
    t.start()
    assert ready.wait(10)
    yield f"http://127.0.0.1:{port_box[0]}"


def raw(url: str, data: bytes, *, step: int | None = None, half_close: bool = False) -> bytes:
    """Send ``data`` and read until the server closes. Without ``half_close`` the requests
    must end the connection themselves (``Connection: close``, or an error the server closes
    on): a half-closed socket means "client gone", as in Go's server."""
    host, port = url.removeprefix("http://").split(":")
    with socket.create_connection((host, int(port)), timeout=60) as s:
        if step:
            for i in range(0, len(data), step):
                s.sendall(data[i:i + step])
        else:
            s.sendall(data)
        if half_close:
            s.shutdown(socket.SHUT_WR)
        out = b""
        while chunk := s.recv(65536):
            out += chunk
        return out


def test_keep_alive_and_echo(url: str) -> None:
    with httpx.Client(base_url=url) as c:
        for i in range(5):
            r = c.post("/echo", content=f"body {i}".encode())
            assert r.text == f"body {i}"
            assert r.headers["content-length"] == str(len(r.content))


def test_chunked_stream(url: str) -> None:
    with httpx.stream("GET", f"{url}/stream") as r:
        assert r.headers["transfer-encoding"] == "chunked"
        assert list(r.iter_lines()) == ['{"i":0}', '{"i":1}', '{"i":2}']


def test_unread_body_is_drained_and_connection_reused(url: str) -> None:
    with httpx.Client(base_url=url) as c:
        assert c.post("/ignore-body", content=b"x" * 100_000).text == "ok"
        assert c.post("/echo", content=b"after").text == "after"


def test_pipelined_requests_byte_at_a_time(url: str) -> None:
    req = b"POST /echo HTTP/1.1\r\nHost: x\r\nContent-Length: 3\r\n\r\nabc"
    last = req.replace(b"abc", b"xyz").replace(b"Host: x", b"Host: x\r\nConnection: close")
    out = raw(url, req + last, step=1)
    assert out.count(b"HTTP/1.1 200") == 2
    assert out.index(b"abc") < out.index(b"xyz")


def test_malformed_request_gets_400_not_crash(url: str) -> None:
    out = raw(url, b"NOT HTTP AT ALL\r\n\r\n")
    assert out.startswith(b"HTTP/1.1 400")
    assert b'"error"' in out
    # the server is still up
    assert httpx.get(f"{url}/echo").status_code == 200


def test_client_hangup_mid_request(url: str) -> None:
    raw(url, b"POST /echo HTTP/1.1\r\nHost: x\r\nContent-Length: 100\r\n\r\nabc",
        half_close=True)
    assert httpx.post(f"{url}/echo", content=b"ok").text == "ok"
