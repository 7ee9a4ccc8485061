"""``pollama stdio`` driven as a subprocess, as an editor would: LSP base-protocol framing,
streaming, errors, cancellation, batches, EOF shutdown with no runner left behind; NDJSON
framing; and the bridge to a running server."""

from __future__ import annotations

import json
import subprocess
import sys
import tempfile
from collections.abc import Iterator
from typing import IO, Any

import pytest

from tests.conftest import Server, alive, runner_pids, until_answer

pytestmark = pytest.mark.e2e

ASK = [{"role": "user", "content": "Say hello."}]


class LSPClient:
    """Content-Length framed JSON-RPC over a subprocess's pipes."""

    def __init__(self, proc: subprocess.Popen[bytes]) -> None:
        self.proc = proc
        assert proc.stdin is not None and proc.stdout is not None
        self.stdin: IO[bytes] = proc.stdin
        self.stdout: IO[bytes] = proc.stdout

    def send_raw(self, body: bytes) -> None:
        self.stdin.write(b"Content-Length: %d\r\n\r\n" % len(body) + body)
        self.stdin.flush()

    def send(self, obj: Any) -> None:
        self.send_raw(json.dumps(obj).encode())

    def call(self, id: Any, method: str, **params: Any) -> None:
        self.send({"jsonrpc": "2.0", "id": id, "method": method, "params": params})

    def recv(self) -> Any:
        length = None
        while True:
            line = self.stdout.readline()
            assert line, "pollama stdio closed its stdout"
            if line in (b"\r\n", b"\n"):
                break
            name, _, value = line.decode().partition(":")
            if name.strip().lower() == "content-length":
                length = int(value)
        assert length is not None
        return json.loads(self.stdout.read(length))

    def until_answer(self, id: Any) -> tuple[list[Any], Any]:
        return until_answer(self.recv, id)


def spawn(server: Server, *args: str, env: dict[str, str] | None = None,
          stderr: IO[bytes] | None = None) -> subprocess.Popen[bytes]:
    return subprocess.Popen([sys.executable, "-m", "pollama.cli.main", "stdio", *args],
                            env=env or server.env, stdin=subprocess.PIPE,
                            stdout=subprocess.PIPE, stderr=stderr or subprocess.DEVNULL)


@pytest.fixture()
def standalone(server: Server) -> Iterator[LSPClient]:
    # The session server's store, with models run in the stdio process itself.
    env = {**server.env, "POLLAMA_HOST": "127.0.0.1:1"}
    proc = spawn(server, "--standalone", env=env)
    client = LSPClient(proc)
    yield client
    if proc.poll() is None:
        proc.kill()
        proc.wait()


def test_lsp_session(standalone: LSPClient) -> None:
    c = standalone
    params = {"model": "smol", "messages": ASK, "options": {"num_predict": 8, "temperature": 0}}
    c.call(1, "chat", **params)
    chunks, answer = c.until_answer(1)
    assert chunks and answer["result"]["done"] is True
    assert "".join(ch["message"]["content"] for ch in chunks)
    pids = runner_pids(c.proc.pid)
    assert pids, "standalone mode runs its own runner"
    c.call(2, "no_such_method")
    assert c.recv()["error"]["code"] == -32601
    c.send_raw(b"{broken")
    assert c.recv()["error"]["code"] == -32700
    c.send([{"jsonrpc": "2.0", "id": "x", "method": "version"},
            {"jsonrpc": "2.0", "id": "y", "method": "list"}])
    batch = c.recv()
    assert {m["id"] for m in batch} == {"x", "y"}
    c.call(3, "chat", model="smol", messages=[{"role": "user", "content": "A long story."}],
           options={"num_predict": 100000})
    first = c.recv()
    assert first["method"] == "stream" and first["params"]["id"] == 3
    c.send({"jsonrpc": "2.0", "method": "$/cancelRequest", "params": {"id": 3}})
    _, answer = c.until_answer(3)
    assert answer["error"]["code"] == -32800
    c.call(4, "generate", model="smol", prompt="Hi", stream=False, options={"num_predict": 2})
    _, answer = c.until_answer(4)
    assert answer["result"]["done"] is True
    # EOF: a clean exit, and the runner it started is gone.
    c.stdin.close()
    assert c.proc.wait(timeout=120) == 0
    for pid in pids:
        assert not alive(pid)


def test_ndjson_framing(server: Server) -> None:
    env = {**server.env, "POLLAMA_HOST": "127.0.0.1:1"}
    proc = spawn(server, "--standalone", "--framing", "ndjson", env=env)
    out, _ = proc.communicate(b'{"jsonrpc":"2.0","id":1,"method":"version"}\n'
                              b'not json\n', timeout=120)
    lines = [json.loads(line) for line in out.splitlines() if line.strip()]
    assert len(lines) == 2  # answers come in the order they are ready, not the calls' order
    assert {"jsonrpc": "2.0", "id": 1, "result": {"version": "0.13.0"}} in lines
    assert [m["error"]["code"] for m in lines if m["id"] is None] == [-32700]
    assert proc.returncode == 0


def test_bridge_to_a_running_server(server: Server) -> None:
    with tempfile.TemporaryFile() as err:
        proc = spawn(server, stderr=err)  # server.env points POLLAMA_HOST at the server
        c = LSPClient(proc)
        c.call(1, "chat", model="smol", messages=ASK, options={"num_predict": 4})
        chunks, answer = c.until_answer(1)
        assert answer["result"]["done"] is True
        c.call(2, "show", model="no-such-model")
        assert c.recv()["error"]["data"] == {"status": 404}
        c.stdin.close()
        assert proc.wait(timeout=60) == 0
        assert runner_pids(proc.pid) == []
        err.seek(0)
        log = err.read().decode()
    assert "bridging" in log
