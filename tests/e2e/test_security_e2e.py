"""Issue 9's browser-facing and resource findings, replayed against a real ``pollama serve``.

Each test sends what the adversarial review sent (a cross-origin "simple" request, a rebinding
Host, a preflight, a huge body, broken chunking, a client that hangs up while queued) and checks
the answer and that nothing changed on disk.
"""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator

import httpx
import pytest

from tests.conftest import Server, running_server, start_server, stop_server, upload_and_create

pytestmark = pytest.mark.e2e

EVIL = {"Origin": "https://evil.example", "Content-Type": "text/plain"}


def show_system(url: str, model: str = "smol") -> str | None:
    r = httpx.post(f"{url}/api/show", json={"model": model}, timeout=60)
    assert r.status_code == 200, r.text
    return r.json().get("system")


def manifests(server: Server) -> list[str]:
    out = []
    for root, _, files in os.walk(os.path.join(server.models_dir, "manifests")):
        out += [os.path.join(root, f) for f in files]
    return sorted(out)


def test_cross_origin_simple_requests_change_nothing(server: Server) -> None:
    before_system = show_system(server.url)
    before = manifests(server)
    attempts = [
        ("POST", "/api/create", {"model": "smol", "from": "smol", "system": "pwned"}),
        ("POST", "/api/copy", {"source": "smol", "destination": "pwned"}),
        ("POST", "/api/pull", {"model": "127.0.0.1:1/x/y:z", "insecure": True}),
        ("POST", "/api/generate", {"model": "smol", "prompt": "hi",
                                   "options": {"num_predict": 1}}),
        ("DELETE", "/api/delete", {"model": "smol"}),
        ("POST", "/v2/library/pwned/blobs/uploads/", None),
        ("PUT", "/v2/library/pwned/manifests/latest", {"schemaVersion": 2}),
        ("GET", "/api/tags", None),
    ]
    for method, path, body in attempts:
        r = httpx.request(method, server.url + path, headers=EVIL, timeout=60,
                          content=json.dumps(body).encode() if body is not None else None)
        assert r.status_code == 403, (method, path, r.status_code, r.text)
        assert "origin" in r.json()["error"]
        assert "access-control-allow-origin" not in r.headers
    assert show_system(server.url) == before_system
    assert manifests(server) == before


def test_rebinding_host_cannot_read(server: Server) -> None:
    for path in ("/api/tags", "/api/version", "/v2/library/smol/manifests/latest", "/"):
        r = httpx.get(server.url + path, headers={"Host": "attacker.example.com"}, timeout=60)
        assert r.status_code == 403, (path, r.text)
        assert "smol" not in r.text
    r = httpx.get(server.url + "/api/tags", headers={"Host": f"localhost:{server.port}"})
    assert r.status_code == 200


def test_preflight_for_allowed_origins_and_cors_on_answers(server: Server) -> None:
    origin = "http://localhost:5173"
    r = httpx.options(server.url + "/api/chat", headers={
        "Origin": origin, "Access-Control-Request-Method": "POST",
        "Access-Control-Request-Headers": "content-type"})
    assert r.status_code == 204
    assert r.headers["access-control-allow-origin"] == origin
    assert "POST" in r.headers["access-control-allow-methods"]
    r = httpx.get(server.url + "/api/tags", headers={"Origin": origin})
    assert r.status_code == 200 and r.headers["access-control-allow-origin"] == origin
    r = httpx.options(server.url + "/api/chat", headers={"Origin": "https://evil.example"})
    assert r.status_code == 403


def test_bodies_are_bound_per_route(server: Server) -> None:
    big = b'{"model":"smol","x":"' + b"a" * (2 * 1024 * 1024) + b'"}'
    r = httpx.post(server.url + "/api/show", content=big, timeout=120)
    assert r.status_code == 413 and "too large" in r.json()["error"]
    # a large body is fine where images travel: it reaches the handler (model missing ⇒ 404)
    r = httpx.post(server.url + "/api/chat", content=big.replace(b'"smol"', b'"nope"'),
                   timeout=120)
    assert r.status_code == 404, r.text
    assert httpx.get(server.url + "/api/version").status_code == 200


def raw_exchange(server: Server, data: bytes) -> tuple[int, bytes]:
    with socket.create_connection(("127.0.0.1", server.port), timeout=120) as s:
        s.sendall(data)
        out = b""
        while chunk := s.recv(65536):
            out += chunk
    head, _, body = out.partition(b"\r\n\r\n")
    return int(head.split(b" ", 2)[1]), body


def test_garbage_chunked_body_is_a_clean_400(server: Server) -> None:
    status, body = raw_exchange(server, b"POST /api/show HTTP/1.1\r\nHost: 127.0.0.1\r\n"
                                        b"Transfer-Encoding: chunked\r\n\r\nzz\r\n{}\r\n0\r\n\r\n")
    assert status == 400
    error = json.loads(body)["error"]
    assert "chunked" in error and "bytearray" not in error and "internal" not in error
    assert "Traceback" not in server.log()[-4000:]


def test_expect_100_continue_on_blob_upload(server: Server) -> None:
    with socket.create_connection(("127.0.0.1", server.port), timeout=120) as s:
        s.sendall(b"POST /api/blobs/sha256:" + b"0" * 64 + b" HTTP/1.1\r\nHost: 127.0.0.1\r\n"
                  b"Content-Length: 3\r\nExpect: 100-continue\r\nConnection: close\r\n\r\n")
        assert s.recv(4096).startswith(b"HTTP/1.1 100 ")
        s.sendall(b"abc")
        out = b""
        while chunk := s.recv(65536):
            out += chunk
    assert out.startswith(b"HTTP/1.1 400")  # the digest does not match: nothing stored
    assert b"digest" in out


@pytest.fixture(scope="module")
def keyed(smollm2_gguf: str) -> Iterator[Server]:
    with tempfile.TemporaryDirectory(prefix="pollama-keyed-") as tmp:
        key_file = os.path.join(tmp, "key")
        with open(key_file, "w") as f:
            f.write("k3y-from-file\n")
        srv = start_server(tmp, {"POLLAMA_API_KEY_FILE": key_file,
                                 "POLLAMA_ORIGINS": "https://chat.example.com"})
        try:
            srv.env["POLLAMA_API_KEY_FILE"] = key_file
            upload_and_create(srv.url, smollm2_gguf, "smol",
                              headers={"Authorization": "Bearer k3y-from-file"})
            yield srv
        finally:
            stop_server(srv)


def test_api_key_guards_every_route_but_root(keyed: Server) -> None:
    assert httpx.get(keyed.url + "/").status_code == 200
    assert httpx.head(keyed.url + "/").status_code == 200
    for method, path in (("GET", "/api/tags"), ("GET", "/api/version"), ("GET", "/api/ps"),
                         ("POST", "/api/show"), ("GET", "/v2/"),
                         ("GET", "/v2/library/smol/manifests/latest")):
        r = httpx.request(method, keyed.url + path, json={"model": "smol"})
        assert r.status_code == 401, (method, path)
        assert "www-authenticate" in r.headers
        wrong = httpx.request(method, keyed.url + path, json={"model": "smol"},
                              headers={"Authorization": "Bearer nope"})
        assert wrong.status_code == 401
    good = {"Authorization": "Bearer k3y-from-file"}
    assert httpx.get(keyed.url + "/api/tags", headers=good).json()["models"][0]["name"] == \
        "smol:latest"
    # OCI clients send registry credentials as Basic auth
    r = httpx.get(keyed.url + "/v2/library/smol/manifests/latest", auth=("any", "k3y-from-file"))
    assert r.status_code == 200
    # POLLAMA_ORIGINS extends the default list; others stay out even with the key
    r = httpx.get(keyed.url + "/api/tags", headers={**good, "Origin": "https://chat.example.com"})
    assert r.status_code == 200
    assert r.headers["access-control-allow-origin"] == "https://chat.example.com"
    r = httpx.get(keyed.url + "/api/tags", headers={**good, "Origin": "https://evil.example"})
    assert r.status_code == 403


def test_official_client_and_cli_send_the_key(keyed: Server) -> None:
    import ollama
    client = ollama.Client(host=keyed.url, headers={"Authorization": "Bearer k3y-from-file"})
    r = client.generate(model="smol", prompt="Hi", options={"num_predict": 2})
    assert r.done
    env = {k: v for k, v in keyed.env.items() if k != "POLLAMA_API_KEY"}
    out = subprocess.run([sys.executable, "-m", "pollama.cli.main", "list"], env=env,
                         capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr
    assert "smol:latest" in out.stdout
    env.pop("POLLAMA_API_KEY_FILE")
    out = subprocess.run([sys.executable, "-m", "pollama.cli.main", "list"], env=env,
                         capture_output=True, text=True, timeout=120)
    assert out.returncode != 0 and "unauthorized" in out.stderr
    assert "Traceback" not in out.stderr


def test_openai_and_anthropic_sdks_send_the_key(keyed: Server) -> None:
    import anthropic
    import openai
    ask = [{"role": "user", "content": "Hi"}]
    oa = openai.OpenAI(base_url=keyed.url + "/v1", api_key="k3y-from-file", max_retries=0)
    assert oa.chat.completions.create(model="smol", messages=ask, max_tokens=2).choices
    with pytest.raises(openai.AuthenticationError) as denied:
        openai.OpenAI(base_url=keyed.url + "/v1", api_key="nope", max_retries=0).models.list()
    assert denied.value.message.endswith("unauthorized: a valid API key is required")
    assert denied.value.code == "invalid_api_key"
    # Anthropic's SDK sends its key as x-api-key
    an = anthropic.Anthropic(base_url=keyed.url, api_key="k3y-from-file", max_retries=0)
    assert an.messages.create(model="smol", max_tokens=2,
                              messages=ask).content  # type: ignore[arg-type]
    with pytest.raises(anthropic.AuthenticationError) as refused:
        anthropic.Anthropic(base_url=keyed.url, api_key="nope", max_retries=0).messages.create(
            model="smol", max_tokens=2, messages=ask)  # type: ignore[arg-type]
    assert refused.value.body["error"]["type"] == "authentication_error"  # type: ignore[index]


def test_non_loopback_bind_without_key_warns(smollm2_gguf: str) -> None:
    with tempfile.TemporaryDirectory(prefix="pollama-open-") as tmp:
        srv = start_server(tmp, {"POLLAMA_HOST": "0.0.0.0:0"})
        try:
            r = httpx.get(f"http://127.0.0.1:{srv.port}/api/tags",
                          headers={"Host": "attacker.example.com"})
            assert r.status_code == 200  # as Ollama: no Host guard when bound to all addresses
        finally:
            stop_server(srv)
        assert "without an API key" in srv.log()


@pytest.fixture()
def serial(smollm2_gguf: str) -> Iterator[Server]:
    with running_server("pollama-serial-", smollm2_gguf,
                        {"POLLAMA_NUM_PARALLEL": "1", "POLLAMA_MAX_QUEUE": "1"}) as srv:
        yield srv


def _post_and_vanish(server: Server, body: dict[str, object]) -> socket.socket:
    data = json.dumps(body).encode()
    s = socket.create_connection(("127.0.0.1", server.port), timeout=120)
    s.sendall(b"POST /api/generate HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: "
              b"application/json\r\nContent-Length: " + str(len(data)).encode() + b"\r\n\r\n"
              + data)
    return s


def test_client_gone_while_queued_or_waiting_frees_its_place(serial: Server) -> None:
    long = {"model": "smol", "prompt": "Count to a million.", "stream": False,
            "options": {"num_predict": 100000, "temperature": 0}}
    # A: a stream:false generation that would run for many minutes; its client hangs up.
    a = _post_and_vanish(serial, long)
    # B: queued behind A (the queue holds one); its client hangs up too.
    b = _post_and_vanish(serial, {**long, "options": {"num_predict": 3}})
    with httpx.Client(base_url=serial.url, timeout=600) as c:
        for _ in range(600):
            if c.get("/api/ps").json()["models"]:
                break
            time.sleep(0.1)
        a.close()
        b.close()
        # C must be served: A's generation was cancelled and B left the queue. Were either
        # still held, C would get a 503 (queue full) or wait for 100000 tokens.
        r = c.post("/api/generate", json={"model": "smol", "prompt": "Hi", "stream": False,
                                          "options": {"num_predict": 2}})
        assert r.status_code == 200, r.text
        assert r.json()["done"]
    assert serial.log().count("client disconnected") >= 1


def test_running_out_of_descriptors_does_not_end_the_server(tmp_path: object) -> None:
    """accept() failing with EMFILE used to end `pollama serve` for good."""
    import resource

    tmp = str(tmp_path)
    port_file = os.path.join(tmp, "port")
    env = dict(os.environ, HOME=tmp, POLLAMA_MODELS=os.path.join(tmp, "models"),
               POLLAMA_HOST="127.0.0.1:0")
    log = open(os.path.join(tmp, "server.log"), "wb")

    def low_limit() -> None:  # soft and hard: the server cannot raise it
        resource.setrlimit(resource.RLIMIT_NOFILE, (64, 64))

    proc = subprocess.Popen([sys.executable, "-m", "pollama.cli.main", "serve", "--port-file",
                             port_file], env=env, stdout=log, stderr=log, preexec_fn=low_limit)
    try:
        for _ in range(600):
            if os.path.exists(port_file) and open(port_file).read().strip():
                break
            assert proc.poll() is None
            time.sleep(0.1)
        port = int(open(port_file).read())
        socks = [socket.create_connection(("127.0.0.1", port), timeout=60) for _ in range(120)]
        # Wait until the server has accepted as many as it can and hit the limit.
        for _ in range(600):
            if b"retrying in" in open(os.path.join(tmp, "server.log"), "rb").read():
                break
            time.sleep(0.1)
        assert proc.poll() is None, "the server died"
        for s in socks:
            s.close()
        r = httpx.get(f"http://127.0.0.1:{port}/api/version", timeout=120)
        assert r.status_code == 200
        assert proc.poll() is None
    finally:
        proc.terminate()
        proc.wait(timeout=60)
        log.close()
    assert b"Too many open files" in open(os.path.join(tmp, "server.log"), "rb").read()


def test_failed_pulls_speak_go_not_python(server: Server) -> None:
    """A pull whose registry cannot be reached names the failure as Go's net/http does."""
    cases = [({"model": "127.0-0.1:9/fuzz/smol", "insecure": True}, "no such host"),
             ({"model": f"127.0.0.1:{server.port}/library/smol"}, "tls: ")]
    for body, expected in cases:
        r = httpx.post(server.url + "/api/pull", json={**body, "stream": False}, timeout=120)
        error = r.json()["error"]
        assert expected in error, error
        for leak in ("Errno", "_ssl.c", "SSL:", "Error:"):
            assert leak not in error, error
