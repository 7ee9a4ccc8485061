"""JSON-RPC over WebSocket (``GET /api/ws``) with the ``websockets`` client, against a real
server and SmolLM2: streaming, multiplexing, cancellation, protocol errors, bad frames, and a
closed socket cancelling its generation."""

from __future__ import annotations

import json
from collections.abc import Iterator
from typing import Any

import httpx
import pytest
from websockets.exceptions import ConnectionClosed
from websockets.sync.client import ClientConnection, connect

from tests import conftest
from tests.conftest import Server, running_server

pytestmark = pytest.mark.e2e

ASK = [{"role": "user", "content": "Say hello."}]
LONG = {"model": "smol", "messages": [{"role": "user", "content": "Tell a very long story."}],
        "options": {"num_predict": 100000, "temperature": 0}}


def ws_url(server: Server) -> str:
    return server.url.replace("http://", "ws://") + "/api/ws"


@pytest.fixture()
def ws(server: Server) -> Iterator[ClientConnection]:
    with connect(ws_url(server), open_timeout=60, max_size=None) as c:
        yield c


def call(ws: ClientConnection, id: Any, method: str, **params: Any) -> None:
    ws.send(json.dumps({"jsonrpc": "2.0", "id": id, "method": method, "params": params}))


def recv(ws: ClientConnection) -> Any:
    return json.loads(ws.recv(timeout=300))


def until_answer(ws: ClientConnection, id: Any) -> tuple[list[Any], dict[str, Any]]:
    """The stream chunks of request ``id`` and its answer (other requests' messages kept
    out)."""
    return conftest.until_answer(lambda: recv(ws), id)


def test_streamed_chat_matches_rest(ws: ClientConnection, server: Server) -> None:
    params = {"model": "smol", "messages": ASK, "options": {"num_predict": 12, "temperature": 0}}
    call(ws, 1, "chat", **params)
    chunks, answer = until_answer(ws, 1)
    assert answer["jsonrpc"] == "2.0" and "error" not in answer
    final = answer["result"]
    assert final["done"] is True and final["eval_count"] > 0
    assert chunks and all(c["done"] is False for c in chunks)
    text = "".join(c["message"]["content"] for c in chunks)
    rest = httpx.post(f"{server.url}/api/chat", timeout=300,
                      json={**params, "stream": False}).json()
    assert text == rest["message"]["content"]
    # stream: false answers with one result and no notifications
    call(ws, 2, "chat", **params, stream=False)
    chunks, answer = until_answer(ws, 2)
    assert chunks == [] and answer["result"]["message"]["content"] == text


def test_non_streaming_methods(ws: ClientConnection) -> None:
    call(ws, "v", "version")
    assert recv(ws)["result"] == {"version": "0.13.0"}
    call(ws, "l", "list")
    names = [m["name"] for m in recv(ws)["result"]["models"]]
    assert "smol:latest" in names
    call(ws, "s", "show", model="smol")
    assert "capabilities" in recv(ws)["result"]
    call(ws, "e", "embed", model="smol", input=["a", "b"])
    assert len(recv(ws)["result"]["embeddings"]) == 2
    call(ws, "n", "show", model="no-such-model")
    err = recv(ws)["error"]
    assert err["code"] == -32000 and err["data"] == {"status": 404}
    assert err["message"] == "model 'no-such-model' not found"


def test_two_requests_multiplexed(ws: ClientConnection) -> None:
    opts = {"num_predict": 16, "temperature": 0}
    call(ws, "a", "chat", model="smol", messages=ASK, options=opts)
    call(ws, 7, "generate", model="smol", prompt="Count to five.", options=opts)
    seen: dict[Any, list[Any]] = {"a": [], 7: []}
    answers: dict[Any, Any] = {}
    while len(answers) < 2:
        msg = recv(ws)
        if msg.get("method") == "stream":
            seen[msg["params"]["id"]].append(msg["params"]["chunk"])
        else:
            answers[msg["id"]] = msg
    assert answers["a"]["result"]["done"] and answers[7]["result"]["done"]
    assert "message" in seen["a"][0] and "response" in seen[7][0]


def test_cancel_mid_stream_then_next_request_served(ws: ClientConnection) -> None:
    call(ws, 5, "chat", **LONG)
    first = recv(ws)
    assert first["method"] == "stream" and first["params"]["id"] == 5
    ws.send(json.dumps({"jsonrpc": "2.0", "method": "$/cancelRequest", "params": {"id": 5}}))
    _, answer = until_answer(ws, 5)
    assert answer["error"]["code"] == -32800
    # The generation stopped (with num_predict 100000 this would otherwise run for minutes).
    call(ws, 6, "chat", model="smol", messages=ASK, options={"num_predict": 3})
    _, answer = until_answer(ws, 6)
    assert answer["result"]["eval_count"] <= 3


def test_protocol_errors_keep_the_connection(ws: ClientConnection) -> None:
    ws.send("{not json")
    parse = recv(ws)
    assert parse["id"] is None and parse["error"]["code"] == -32700
    call(ws, 1, "no_such_method")
    assert recv(ws)["error"]["code"] == -32601
    ws.send(json.dumps({"jsonrpc": "2.0", "id": 2, "method": "chat", "params": [1, 2]}))
    assert recv(ws)["error"]["code"] == -32602
    ws.send(json.dumps([{"jsonrpc": "2.0", "id": 3, "method": "version"},
                        {"jsonrpc": "2.0", "id": 4, "method": "nope"}]))
    batch = recv(ws)
    assert isinstance(batch, list) and {m["id"] for m in batch} == {3, 4}
    call(ws, 9, "version")
    assert recv(ws)["result"]["version"]


def test_binary_frame_closes_with_1003(ws: ClientConnection) -> None:
    ws.send(b"\x00\x01")
    with pytest.raises(ConnectionClosed) as closed:
        ws.recv(timeout=60)
    assert closed.value.rcvd is not None and closed.value.rcvd.code == 1003


def test_handshake_guards(server: Server) -> None:
    # A plain GET is not an upgrade: 400; a foreign Origin: 403, as on every route.
    r = httpx.get(f"{server.url}/api/ws")
    assert r.status_code == 400 and "websocket" in r.json()["error"]
    with pytest.raises(Exception):
        connect(ws_url(server), origin="https://evil.example",  # type: ignore[arg-type]
                open_timeout=30)


def test_ping_is_answered(ws: ClientConnection) -> None:
    assert ws.ping(b"hi").wait(timeout=60)


@pytest.fixture()
def own_server(smollm2_gguf: str) -> Iterator[Server]:
    # A 1 MiB message limit (POLLAMA_MAX_BODY_MB) for the size test; one slot for the cancel test.
    with running_server("pollama-ws-", smollm2_gguf,
                        {"POLLAMA_MAX_BODY_MB": "1", "POLLAMA_NUM_PARALLEL": "1"}) as srv:
        yield srv


def test_closed_socket_cancels_its_generation(own_server: Server) -> None:
    with connect(ws_url(own_server), open_timeout=60) as c:
        call(c, 1, "chat", **LONG)
        assert recv(c)["method"] == "stream"
    # One slot (POLLAMA_NUM_PARALLEL 1): this is served only once the closed socket's
    # generation was cancelled; otherwise it waits behind 100000 tokens and times out.
    r = httpx.post(f"{own_server.url}/api/chat", timeout=120, json={
        "model": "smol", "messages": ASK, "stream": False, "options": {"num_predict": 3}})
    assert r.status_code == 200 and r.json()["eval_count"] <= 3


def test_message_over_the_limit_closes_with_1009(own_server: Server) -> None:
    with connect(ws_url(own_server), open_timeout=60, max_size=None) as c:
        big = json.dumps({"jsonrpc": "2.0", "id": 1, "method": "chat",
                          "params": {"model": "smol", "messages": [
                              {"role": "user", "content": "x" * (2 << 20)}]}})
        c.send(big)
        with pytest.raises(ConnectionClosed) as closed:
            c.recv(timeout=60)
    assert closed.value.rcvd is not None and closed.value.rcvd.code == 1009
    # The server goes on serving.
    with connect(ws_url(own_server), open_timeout=60) as c:
        call(c, 2, "version")
        assert recv(c)["result"]["version"]
