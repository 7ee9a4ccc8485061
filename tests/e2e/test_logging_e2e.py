"""The log of a real ``pollama serve``: the startup printout, and one structured line per
request, parsed back from JSON lines (``POLLAMA_LOG_FORMAT=json``) and from the default text."""

from __future__ import annotations

import json
import re
import socket
from collections.abc import Iterator
from typing import Any

import httpx
import pytest

from tests.conftest import Server, running_server, wait_for

pytestmark = pytest.mark.e2e

REQUEST_FIELDS = {"time", "level", "source", "msg", "method", "path", "route", "status",
                  "model", "duration_ms", "prompt_tokens", "tokens", "id", "client_gone"}


def json_lines(server: Server) -> list[dict[str, Any]]:
    """Every line of the log, each of which must be one JSON object."""
    out = []
    for line in server.log().splitlines():
        if line.strip():
            obj = json.loads(line)  # a line that is not JSON fails here
            assert isinstance(obj, dict), line
            out.append(obj)
    return out


def request_lines(server: Server, request_id: str) -> list[dict[str, Any]]:
    return [o for o in json_lines(server) if o["msg"] == "request" and o.get("id") == request_id]


def logged(server: Server, request_id: str) -> dict[str, Any]:
    """The one request line of ``request_id`` (written once the answer has been sent)."""
    wait_for(f"the log line of request {request_id}", lambda: request_lines(server, request_id))
    lines = request_lines(server, request_id)
    assert len(lines) == 1, lines
    return lines[0]


@pytest.fixture(scope="module")
def jsrv(smollm2_gguf: str) -> Iterator[Server]:
    # OLLAMA_DEBUG: Ollama's spelling is read too.
    with running_server("pollama-logs-", smollm2_gguf,
                        {"POLLAMA_LOG_FORMAT": "json", "OLLAMA_DEBUG": "1"}) as s:
        yield s


def test_json_startup_printout(jsrv: Server) -> None:
    lines = json_lines(jsrv)
    [config] = [o for o in lines if o["msg"] == "server config"]
    env = config["env"]
    assert env["POLLAMA_MODELS"] == jsrv.models_dir
    assert env["POLLAMA_LOG_FORMAT"] == "json" and env["POLLAMA_DEBUG"] == "DEBUG"
    assert env["POLLAMA_CONTEXT_LENGTH"] == "2048"
    assert env["POLLAMA_KEEP_ALIVE"] == "5m0s" and isinstance(env["POLLAMA_ORIGINS"], list)
    assert any(o["msg"].startswith(f"Listening on 127.0.0.1:{jsrv.port} (version pollama ")
               and o["msg"].endswith(", Ollama API 0.13.0)") for o in lines)
    assert any(o["msg"] == f"models: {jsrv.models_dir}" for o in lines)
    devices = [o for o in lines if o["msg"] == "inference compute"]
    assert devices and {"id", "library", "name", "total", "available"} <= set(devices[0])
    assert any(o["id"] == "cpu" and o["library"] == "cpu" for o in devices)


def test_one_json_line_per_request_with_its_fields(jsrv: Server) -> None:
    with httpx.Client(base_url=jsrv.url, timeout=300) as c:
        r = c.post("/api/generate", json={"model": "smol", "prompt": "Hi", "stream": False,
                                          "options": {"num_predict": 3}})
        assert r.status_code == 200
        gen = logged(jsrv, r.headers["x-request-id"])
        assert set(gen) == REQUEST_FIELDS
        assert gen["level"] == "INFO" and gen["source"] == "pollama.api"
        assert (gen["method"], gen["path"], gen["route"], gen["status"]) == (
            "POST", "/api/generate", "/api/generate", 200)
        assert gen["model"] == "smol"
        assert gen["tokens"] == r.json()["eval_count"]
        assert gen["prompt_tokens"] == r.json()["prompt_eval_count"]
        assert isinstance(gen["duration_ms"], float) and gen["duration_ms"] > 0
        assert gen["client_gone"] is None

        with c.stream("POST", "/api/chat", json={
                "model": "smol", "messages": [{"role": "user", "content": "Hi"}],
                "options": {"num_predict": 3}}) as r:
            final = [json.loads(x) for x in r.iter_lines() if x.strip()][-1]
        chat = logged(jsrv, r.headers["x-request-id"])
        assert (chat["route"], chat["status"], chat["model"]) == ("/api/chat", 200, "smol")
        assert chat["tokens"] == final["eval_count"]  # counted once the stream was sent

        r = c.get("/api/blobs/sha256:" + "0" * 64)
        line = logged(jsrv, r.headers["x-request-id"])
        assert (line["route"], line["status"]) == ("/api/blobs/:digest", 405)
        assert line["path"] == "/api/blobs/sha256:" + "0" * 64
        assert line["model"] is None and line["tokens"] is None

        r = c.get("/api/tags")
        line = logged(jsrv, r.headers["x-request-id"])
        assert (line["method"], line["route"], line["status"]) == ("GET", "/api/tags", 200)

        r = c.post("/api/chat", json={"model": "missing", "messages": []})
        assert r.status_code == 404
        line = logged(jsrv, r.headers["x-request-id"])
        assert (line["status"], line["model"]) == (404, "missing")

        r = c.get("/x?token=1", headers={"Host": "evil.example"})
        assert r.status_code == 403
        line = logged(jsrv, r.headers["x-request-id"])
        assert (line["route"], line["status"], line["path"]) == ("unmatched", 403, "/x")


def test_debug_lines_are_there(jsrv: Server) -> None:
    r = httpx.get(jsrv.url + "/api/version", timeout=60)
    rid = r.headers["x-request-id"]
    logged(jsrv, rid)
    debug = [o for o in json_lines(jsrv) if o["level"] == "DEBUG"]
    assert any(o["msg"] == "request started" and o.get("id") == rid for o in debug)


@pytest.fixture(scope="module")
def tsrv() -> Iterator[Server]:
    with running_server("pollama-logs-text-", env={"POLLAMA_API_KEY": "not-in-the-log",
                                                   "POLLAMA_KEEP_ALIVE": "1h"}) as s:
        yield s


def kv(line: str) -> dict[str, str]:
    return {m.group(1): json.loads(m.group(2)) if m.group(2).startswith('"') else m.group(2)
            for m in re.finditer(r'(\w+)=("(?:[^"\\]|\\.)*"|\S*)', line)}


def test_text_startup_printout(tsrv: Server) -> None:
    log = tsrv.log()
    assert "not-in-the-log" not in log
    [config] = [kv(x) for x in log.splitlines() if 'msg="server config"' in x]
    env = config["env"]
    assert env.startswith("map[") and f"POLLAMA_MODELS:{tsrv.models_dir} " in env
    assert "POLLAMA_KEEP_ALIVE:1h0m0s " in env and "POLLAMA_API_KEY:(set) " in env
    assert f'msg="Listening on 127.0.0.1:{tsrv.port} (version pollama ' in log
    assert f'msg="models: {tsrv.models_dir}"' in log
    assert 'msg="inference compute" id=cpu library=cpu ' in log


def test_text_request_line(tsrv: Server) -> None:
    r = httpx.get(tsrv.url + "/api/tags", timeout=60)
    assert r.status_code == 401
    rid = r.headers["x-request-id"]
    line = wait_for("the request line", lambda: next(
        (x for x in tsrv.log().splitlines() if f" id={rid}" in x and "msg=request " in x), None))
    fields = kv(line)
    assert (fields["method"], fields["route"], fields["status"]) == ("GET", "/api/tags", "401")
    assert "model" not in fields and float(fields["duration_ms"]) >= 0


def test_a_client_that_leaves_is_logged_as_499(jsrv: Server) -> None:
    """A non-streamed generation whose client hangs up: the app is cancelled before it has an
    answer, and the line says so (status 499, as Ollama answers a cancelled request)."""
    body = json.dumps({"model": "smol", "prompt": "Tell me a long story.", "stream": False,
                       "options": {"num_predict": 1000}}).encode()
    host, port = jsrv.url.removeprefix("http://").split(":")
    with socket.create_connection((host, int(port)), timeout=60) as s:
        s.sendall(b"POST /api/generate HTTP/1.1\r\nHost: localhost\r\n"
                  b"Content-Type: application/json\r\n"
                  b"Content-Length: " + str(len(body)).encode() + b"\r\n\r\n" + body)
        s.shutdown(socket.SHUT_WR)  # a half-closed socket is a client gone, as in Go's server
        assert s.recv(65536) == b""  # no answer: the server closes
    line = wait_for("the cancelled request's line", lambda: next(
        (o for o in json_lines(jsrv) if o["msg"] == "request" and o["status"] == 499), None))
    assert (line["route"], line["model"], line["client_gone"]) == ("/api/generate", "smol", True)
