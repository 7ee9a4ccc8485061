"""End to end: pollama as a registry, and pull/push between real ``pollama serve`` processes.

Server A holds ``smol`` (created from the SmolLM2 GGUF) and is the registry; the others pull from
it and push to it with ``insecure`` (plain http), by the API and by the CLI. An in-test HTTP
proxy in front of A throttles transfers (so a pull can be killed half way and resumed), counts
the bytes it forwards (so the resume is seen to fetch only what was missing) and can corrupt a
blob in transit (which must be rejected with nothing visible in the puller's store).
"""

from __future__ import annotations

import hashlib
import http.server
import json
import os
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Iterator
from typing import Any

import httpx
import pytest

from tests.conftest import Server, running_server, sha256_file, start_server, stop_server

pytestmark = pytest.mark.e2e

SMOL_HEX = "b179c9523d0e6a0f98a330c7562b682750a6f8c8c15e5bc70ea373728110db53"
SMOL_SIZE = 98_362_432


# --- fixtures ------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def registry_a(smollm2_gguf: str) -> Iterator[Server]:
    with running_server("pollama-reg-a-", smollm2_gguf) as srv:
        yield srv


@pytest.fixture(scope="module")
def puller_b(registry_a: Server) -> Iterator[Server]:
    """B: pulls ``smol`` from A in the first test that needs it, then keeps it."""
    with running_server("pollama-reg-b-") as srv:
        yield srv


class Fresh:
    """Empty servers started on demand; all stopped at the end of the test."""

    def __init__(self) -> None:
        self._dirs: list[tempfile.TemporaryDirectory[str]] = []
        self.servers: list[Server] = []

    def start(self) -> tuple[Server, str]:
        d = tempfile.TemporaryDirectory(prefix="pollama-reg-")
        self._dirs.append(d)
        srv = start_server(d.name)
        self.servers.append(srv)
        return srv, d.name

    def close(self) -> None:
        for srv in self.servers:
            if srv.proc.poll() is None:
                stop_server(srv)
        for d in self._dirs:
            d.cleanup()


@pytest.fixture
def fresh() -> Iterator[Fresh]:
    f = Fresh()
    try:
        yield f
    finally:
        f.close()


def a_name(a: Server, tag: str = "latest", model: str = "smol") -> str:
    return f"127.0.0.1:{a.port}/library/{model}:{tag}"


def stream_post(url: str, path: str, body: dict[str, Any]) -> list[dict[str, Any]]:
    with httpx.Client(base_url=url, timeout=300) as c:
        with c.stream("POST", path, json=body) as r:
            assert r.status_code == 200, r.read()
            return [json.loads(line) for line in r.iter_lines() if line.strip()]


def tags(url: str) -> set[str]:
    return {m["name"] for m in httpx.get(url + "/api/tags", timeout=30).json()["models"]}


def blob_files(models_dir: str) -> list[str]:
    try:
        return sorted(os.listdir(os.path.join(models_dir, "blobs")))
    except FileNotFoundError:
        return []


def tree(root: str, skip: tuple[str, ...] = ()) -> dict[str, tuple[int, int]]:
    out = {}
    for dirpath, _dirs, files in os.walk(root):
        for f in files:
            p = os.path.join(dirpath, f)
            if p.endswith(skip):
                continue
            st = os.stat(p)
            out[os.path.relpath(p, root)] = (st.st_size, st.st_mtime_ns)
    return out


def raw_request(port: int, method: str, target: str, body: bytes = b"",
                headers: dict[str, str] | None = None) -> tuple[int, bytes]:
    """A request sent byte for byte (httpx would normalise ``..`` segments away)."""
    hdrs = {"Host": f"127.0.0.1:{port}", "Content-Length": str(len(body)),
            "Connection": "close", **(headers or {})}
    head = f"{method} {target} HTTP/1.1\r\n" + "".join(f"{k}: {v}\r\n" for k, v in hdrs.items())
    with socket.create_connection(("127.0.0.1", port), timeout=30) as s:
        s.sendall(head.encode() + b"\r\n" + body)
        data = b""
        while chunk := s.recv(65536):
            data += chunk
    status = int(data.split(b" ", 2)[1])
    return status, data.split(b"\r\n\r\n", 1)[1]


# --- a throttling, counting, corrupting proxy in front of A ---------------------------------


class Proxy:
    def __init__(self, upstream: str) -> None:
        self.upstream = upstream
        self.bytes_per_second: float | None = None  # per connection
        self.corrupt = False
        self.lock = threading.Lock()
        self.blob_bytes = 0  # body bytes forwarded for the model blob (this generation)
        self.generation = 0  # bumped by reset(): stragglers of earlier requests do not count
        proxy = self

        class Handler(http.server.BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, *args: Any) -> None:
                pass

            def do_HEAD(self) -> None:
                self._forward(body=False)

            def do_GET(self) -> None:
                self._forward(body=True)

            def _forward(self, body: bool) -> None:
                generation = proxy.generation
                headers = {k: v for k, v in self.headers.items()
                           if k.lower() not in ("host", "connection")}
                try:
                    with httpx.Client(timeout=60) as c, c.stream(
                            self.command, proxy.upstream + self.path, headers=headers) as r:
                        self.send_response(r.status_code)
                        for k, v in r.headers.items():
                            if k.lower() not in ("transfer-encoding", "connection", "date",
                                                 "server"):
                                self.send_header(k, v)
                        self.end_headers()
                        if not body:
                            return
                        is_blob = SMOL_HEX in self.path
                        first = True
                        started = time.monotonic()
                        sent = 0
                        for chunk in r.iter_raw(64 * 1024):
                            if is_blob and proxy.corrupt and first:
                                chunk = bytes([chunk[0] ^ 0xFF]) + chunk[1:]
                            first = False
                            self.wfile.write(chunk)
                            sent += len(chunk)
                            if is_blob:
                                with proxy.lock:
                                    if generation == proxy.generation:
                                        proxy.blob_bytes += len(chunk)
                            bps = proxy.bytes_per_second
                            if bps:
                                ahead = sent / bps - (time.monotonic() - started)
                                if ahead > 0:
                                    time.sleep(ahead)
                except (BrokenPipeError, ConnectionResetError, httpx.HTTPError):
                    self.close_connection = True

        self.server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.server.daemon_threads = True
        self.port = self.server.server_address[1]
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.thread.start()

    def reset(self) -> None:
        with self.lock:
            self.generation += 1
            self.blob_bytes = 0

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


@pytest.fixture
def proxy(registry_a: Server) -> Iterator[Proxy]:
    p = Proxy(registry_a.url)
    try:
        yield p
    finally:
        p.close()


# --- pollama serves the registry endpoints ---------------------------------------------------


def test_v2_serves_manifests_and_blobs_from_the_store(registry_a: Server,
                                                      smollm2_gguf: str) -> None:
    with httpx.Client(base_url=registry_a.url, timeout=60) as c:
        r = c.get("/v2/")
        assert r.status_code == 200 and r.json() == {}
        assert r.headers["docker-distribution-api-version"] == "registry/2.0"
        assert c.head("/v2/").status_code == 200

        r = c.get("/v2/library/smol/manifests/latest",
                  headers={"Accept": "application/vnd.docker.distribution.manifest.v2+json"})
        assert r.status_code == 200, r.text
        assert r.headers["content-type"] == "application/vnd.docker.distribution.manifest.v2+json"
        assert (r.headers["docker-content-digest"]
                == "sha256:" + hashlib.sha256(r.content).hexdigest())
        manifest = r.json()
        assert manifest["schemaVersion"] == 2
        model = [lay for lay in manifest["layers"]
                 if lay["mediaType"] == "application/vnd.ollama.image.model"][0]
        assert model == {"mediaType": "application/vnd.ollama.image.model",
                         "digest": "sha256:" + SMOL_HEX, "size": SMOL_SIZE}
        h = c.head("/v2/library/smol/manifests/latest")
        assert h.status_code == 200 and int(h.headers["content-length"]) == len(r.content)
        # ... by digest too, and case-insensitively by name (Ollama's types/model/name.go)
        by_digest = c.get("/v2/library/smol/manifests/" + r.headers["docker-content-digest"])
        assert by_digest.status_code == 200 and by_digest.content == r.content
        assert c.get("/v2/Library/SMOL/manifests/LATEST").content == r.content

        blob = f"/v2/library/smol/blobs/sha256:{SMOL_HEX}"
        h = c.head(blob)
        assert h.status_code == 200 and int(h.headers["content-length"]) == SMOL_SIZE
        assert h.headers["docker-content-digest"] == "sha256:" + SMOL_HEX
        assert h.headers["accept-ranges"] == "bytes"
        with open(smollm2_gguf, "rb") as f:
            f.seek(1000)
            expected = f.read(4096)
            f.seek(SMOL_SIZE - 10)
            tail = f.read()
        r = c.get(blob, headers={"Range": "bytes=1000-5095"})
        assert r.status_code == 206 and r.content == expected
        assert r.headers["content-range"] == f"bytes 1000-5095/{SMOL_SIZE}"
        r = c.get(blob, headers={"Range": "bytes=-10"})
        assert r.status_code == 206 and r.content == tail
        r = c.get(blob, headers={"Range": f"bytes={SMOL_SIZE}-"})
        assert r.status_code == 416 and r.headers["content-range"] == f"bytes */{SMOL_SIZE}"
        assert r.json()["errors"][0]["code"] == "RANGE_INVALID"
        with c.stream("GET", blob) as r:
            assert r.status_code == 200 and int(r.headers["content-length"]) == SMOL_SIZE
            h = hashlib.sha256()
            for chunk in r.iter_bytes():
                h.update(chunk)
        assert h.hexdigest() == SMOL_HEX


def test_v2_rejects_bad_names_and_digests_without_touching_files(registry_a: Server) -> None:
    root = os.path.dirname(registry_a.models_dir)
    parent = os.path.dirname(root)
    secret = os.path.join(root, "secret")
    with open(secret, "w") as f:
        f.write("do not serve")
    before = tree(root, skip=("server.log",))
    port = registry_a.port
    bad_hex = "0" * 64
    cases = [
        ("GET", "/v2/..%2F..%2Fsecret/smol/manifests/latest", 400, "NAME_INVALID"),
        ("GET", "/v2/library/..%2F..%2F..%2Fsecret/manifests/latest", 400, "NAME_INVALID"),
        ("GET", "/v2/library/smol/manifests/..%2F..%2F..%2F..%2Fsecret", 400, "MANIFEST_INVALID"),
        ("GET", "/v2/library/smol/manifests/..", 400, "MANIFEST_INVALID"),
        ("GET", "/v2/library/smol/blobs/sha256:..%2F..%2Fsecret", 400, "DIGEST_INVALID"),
        ("GET", "/v2/library/smol/blobs/..%2F..%2F..%2Fsecret", 400, "DIGEST_INVALID"),
        ("GET", "/v2/library/smol/blobs/sha256:" + "Z" * 64, 400, "DIGEST_INVALID"),
        ("GET", "/v2/library/smol/blobs/sha256:" + bad_hex, 404, "BLOB_UNKNOWN"),
        ("HEAD", "/v2/library/smol/blobs/sha256:" + bad_hex, 404, None),
        ("GET", "/v2/library/nope/manifests/latest", 404, "MANIFEST_UNKNOWN"),
        ("GET", "/v2/library/smol/manifests/sha256:" + bad_hex, 404, "MANIFEST_UNKNOWN"),
        ("PUT", "/v2/..%2Fx/smol/manifests/latest", 400, "NAME_INVALID"),
        ("PUT", "/v2/library/smol/manifests/..%2F..%2Fx", 400, "MANIFEST_INVALID"),
        ("PUT", "/v2/library/smol/blobs/uploads/..%2F..%2Fsecret", 404, "BLOB_UPLOAD_UNKNOWN"),
        ("PATCH", "/v2/library/smol/blobs/uploads/" + "a" * 32, 404, "BLOB_UPLOAD_UNKNOWN"),
        ("POST", "/v2/..%2F..%2Fx/smol/blobs/uploads/", 400, "NAME_INVALID"),
        ("POST", "/v2/library/smol/blobs/uploads/?digest=sha256:..%2Fsecret", 400,
         "DIGEST_INVALID"),
        # literal dot segments change the path's shape: no route matches
        ("GET", "/v2/library/../../../secret/manifests/latest", 404, None),
        ("GET", "/v2/library/smol/blobs/../../../../secret", 404, None),
    ]
    for method, target, status, code in cases:
        got, body = raw_request(port, method, target)
        assert got == status, (method, target, got, body)
        if code is not None:
            assert json.loads(body)["errors"][0]["code"] == code, (target, body)
        assert b"do not serve" not in body

    # A manifest that references a blob the registry lacks is refused; nothing is written.
    manifest = httpx.get(registry_a.url + "/v2/library/smol/manifests/latest").json()
    manifest["layers"].append({"mediaType": "application/vnd.ollama.image.system",
                               "digest": "sha256:" + bad_hex, "size": 3})
    r = httpx.put(registry_a.url + "/v2/library/smol/manifests/broken",
                  content=json.dumps(manifest))
    assert r.status_code == 400
    assert r.json()["errors"][0] == {"code": "MANIFEST_BLOB_UNKNOWN",
                                     "message": f"blob sha256:{bad_hex} unknown to registry",
                                     "detail": {"digest": "sha256:" + bad_hex}}
    r = httpx.put(registry_a.url + "/v2/library/smol/manifests/broken", content=b"{nope")
    assert r.status_code == 400 and r.json()["errors"][0]["code"] == "MANIFEST_INVALID"
    assert "smol:broken" not in tags(registry_a.url)

    # An upload whose bytes do not match its digest is discarded: nothing becomes visible.
    data = b"hello registry"
    good = hashlib.sha256(data).hexdigest()
    with httpx.Client(base_url=registry_a.url, timeout=30) as c:
        r = c.post("/v2/library/smol/blobs/uploads/")
        assert r.status_code == 202 and r.headers["location"].startswith(
            "/v2/library/smol/blobs/uploads/")
        r = c.put(r.headers["location"] + "?digest=sha256%3A" + bad_hex, content=data)
        assert r.status_code == 400 and r.json()["errors"][0]["code"] == "DIGEST_INVALID"
        assert c.head(f"/v2/library/smol/blobs/sha256:{bad_hex}").status_code == 404
        assert c.head(f"/v2/library/smol/blobs/sha256:{good}").status_code == 404
    assert tree(root, skip=("server.log",)) == before
    assert not [f for f in blob_files(registry_a.models_dir) if f.startswith(".tmp")]
    assert open(secret).read() == "do not serve"
    assert not os.path.exists(os.path.join(parent, "x"))
    os.remove(secret)


def test_v2_chunked_and_monolithic_uploads(registry_a: Server) -> None:
    data = os.urandom(300_000)
    hex_digest = hashlib.sha256(data).hexdigest()
    with httpx.Client(base_url=registry_a.url, timeout=30) as c:
        loc = c.post("/v2/team/scratch/blobs/uploads/").headers["location"]
        r = c.patch(loc, content=data[:100_000], headers={
            "Content-Range": "0-99999", "Content-Type": "application/octet-stream"})
        assert r.status_code == 202 and r.headers["range"] == "0-99999"
        r = c.patch(loc, content=data[:10], headers={"Content-Range": "5-14"})
        assert r.status_code == 416  # out of order
        assert c.get(loc).status_code == 204
        r = c.put(f"{loc}?digest=sha256:{hex_digest}", content=data[100_000:])
        assert r.status_code == 201, r.text
        assert r.headers["docker-content-digest"] == "sha256:" + hex_digest
        h = c.head(r.headers["location"])
        assert h.status_code == 200 and int(h.headers["content-length"]) == len(data)
        assert c.put(f"{loc}?digest=sha256:{hex_digest}").status_code == 404  # session is gone

        mono = os.urandom(1000)
        mono_hex = hashlib.sha256(mono).hexdigest()
        r = c.post(f"/v2/team/scratch/blobs/uploads/?digest=sha256:{mono_hex}", content=mono)
        assert r.status_code == 201
        assert c.get(f"/v2/x/y/blobs/sha256:{mono_hex}").content == mono
        r = c.post(f"/v2/team/scratch/blobs/uploads/?mount=sha256:{mono_hex}&from=x/y")
        assert r.status_code == 201
        loc = c.post("/v2/team/scratch/blobs/uploads/").headers["location"]
        assert c.delete(loc).status_code == 204
        assert c.get(loc).status_code == 404
    os.remove(os.path.join(registry_a.models_dir, "blobs", "sha256-" + hex_digest))
    os.remove(os.path.join(registry_a.models_dir, "blobs", "sha256-" + mono_hex))


# --- pull ------------------------------------------------------------------------------------


def test_pull_from_another_pollama_over_the_api(registry_a: Server, puller_b: Server) -> None:
    name = a_name(registry_a)
    lines = stream_post(puller_b.url, "/api/pull", {"model": name, "insecure": True})
    statuses = [line["status"] for line in lines]
    assert statuses[0] == "pulling manifest"
    assert statuses[-3:] == ["verifying sha256 digest", "writing manifest", "success"]
    model_lines = [line for line in lines if line["status"] == "pulling " + SMOL_HEX[:12]]
    assert model_lines[0] == {"status": "pulling b179c9523d0e", "digest": "sha256:" + SMOL_HEX,
                              "total": SMOL_SIZE}
    assert model_lines[-1]["completed"] == SMOL_SIZE
    completed = [line.get("completed", 0) for line in model_lines]
    assert completed == sorted(completed)
    assert all("error" not in line for line in lines)

    assert name in tags(puller_b.url)
    blobs = blob_files(puller_b.models_dir)
    assert "sha256-" + SMOL_HEX in blobs
    assert not [f for f in blobs if "partial" in f or f.startswith(".tmp")]
    assert sha256_file(
        os.path.join(puller_b.models_dir, "blobs", "sha256-" + SMOL_HEX)) == SMOL_HEX
    manifest_a = httpx.get(registry_a.url + "/v2/library/smol/manifests/latest").content
    path_b = os.path.join(puller_b.models_dir, "manifests", f"127.0.0.1:{registry_a.port}",
                          "library", "smol", "latest")
    assert open(path_b, "rb").read() == manifest_a

    # Pulling again transfers nothing: every blob is reported complete at once.
    r = httpx.post(puller_b.url + "/api/pull", json={"model": name, "insecure": True,
                                                     "stream": False}, timeout=60)
    assert r.status_code == 200 and r.json() == {"status": "success"}


def test_generate_with_the_pulled_model(registry_a: Server, puller_b: Server) -> None:
    name = a_name(registry_a)
    if name not in tags(puller_b.url):
        stream_post(puller_b.url, "/api/pull", {"model": name, "insecure": True})
    r = httpx.post(puller_b.url + "/api/generate", timeout=300, json={
        "model": name, "prompt": "Say hello.", "stream": False,
        "options": {"temperature": 0, "seed": 1, "num_predict": 12}})
    assert r.status_code == 200, r.text
    out = r.json()
    assert out["done"] and out["response"].strip() and out["eval_count"] > 0
    assert out["model"] == name


def test_pull_errors(registry_a: Server, puller_b: Server) -> None:
    missing = a_name(registry_a, model="nope")
    lines = stream_post(puller_b.url, "/api/pull", {"model": missing, "insecure": True})
    assert lines == [{"status": "pulling manifest"},
                     {"error": "pull model manifest: file does not exist"}]
    r = httpx.post(puller_b.url + "/api/pull", timeout=30,
                   json={"model": missing, "insecure": True, "stream": False})
    assert r.status_code == 500
    assert r.json() == {"error": "pull model manifest: file does not exist"}
    r = httpx.post(puller_b.url + "/api/pull", timeout=30, json={
        "model": f"http://127.0.0.1:{registry_a.port}/library/smol"})
    assert r.status_code == 400 and r.json() == {"error": "insecure protocol http"}
    r = httpx.post(puller_b.url + "/api/pull", timeout=30, json={"model": "a/b/c/d"})
    assert r.status_code == 400 and r.json() == {"error": "invalid model name"}
    # without insecure the client speaks TLS to a plain-http server: a clear transport error
    r = httpx.post(puller_b.url + "/api/pull", timeout=60,
                   json={"model": a_name(registry_a), "stream": False})
    assert r.status_code == 500
    assert r.json()["error"].startswith(
        f'pull model manifest: Get "https://127.0.0.1:{registry_a.port}/v2/library/smol/'
        'manifests/latest": ')


def cli(server: Server, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "pollama.cli.main", *args], env=server.env,
                          capture_output=True, text=True, timeout=300)


def test_pull_with_the_cli(registry_a: Server, fresh: Fresh) -> None:
    c, _ = fresh.start()
    name = a_name(registry_a)
    failed = cli(c, "pull", name)  # no --insecure: https to a plain-http server
    assert failed.returncode != 0 and "pull model manifest" in failed.stderr
    done = cli(c, "pull", "--insecure", name)
    assert done.returncode == 0, done.stderr
    out = done.stdout + done.stderr
    assert "pulling manifest" in out and "success" in out and "writing manifest" in out
    assert name in tags(c.url)
    listed = cli(c, "list")
    assert name in listed.stdout


def test_concurrent_pulls_of_the_same_model(registry_a: Server, fresh: Fresh) -> None:
    c, _ = fresh.start()
    name = a_name(registry_a)
    results: list[Any] = []

    def run() -> None:
        try:
            results.append(stream_post(c.url, "/api/pull", {"model": name, "insecure": True}))
        except Exception as exc:  # reported below
            results.append(exc)

    threads = [threading.Thread(target=run) for _ in range(2)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(300)
    assert len(results) == 2
    for lines in results:
        assert isinstance(lines, list) and lines[-1] == {"status": "success"}, lines
    assert sha256_file(os.path.join(c.models_dir, "blobs", "sha256-" + SMOL_HEX)) == SMOL_HEX


# --- push ------------------------------------------------------------------------------------


def test_push_back_under_another_tag(registry_a: Server, puller_b: Server, fresh: Fresh) -> None:
    pulled = a_name(registry_a)
    if pulled not in tags(puller_b.url):
        stream_post(puller_b.url, "/api/pull", {"model": pulled, "insecure": True})
    copy = a_name(registry_a, tag="copy")
    # A variant with a new layer (and so a new config) that A does not have yet.
    r = httpx.post(puller_b.url + "/api/create", timeout=120, json={
        "model": copy, "from": pulled, "system": "You are a terse pirate.", "stream": False})
    assert r.status_code == 200, r.text
    lines = stream_post(puller_b.url, "/api/push", {"model": copy, "insecure": True})
    statuses = [line["status"] for line in lines]
    assert statuses[0] == "retrieving manifest"
    assert statuses[-2:] == ["pushing manifest", "success"]
    pushed = {line["digest"]: line for line in lines if line["status"].startswith("pushing ")
              and "digest" in line}
    assert pushed["sha256:" + SMOL_HEX]["completed"] == SMOL_SIZE  # A had it: not re-sent
    for digest, line in pushed.items():
        assert line["status"] == "pushing " + digest[7:19]
        assert line["completed"] == line["total"]

    # A stores it as its own local model smol:copy, byte-identical to B's manifest.
    assert "smol:copy" in tags(registry_a.url)
    manifest_b = open(os.path.join(puller_b.models_dir, "manifests",
                                   f"127.0.0.1:{registry_a.port}", "library", "smol", "copy"),
                      "rb").read()
    assert httpx.get(registry_a.url + "/v2/library/smol/manifests/copy").content == manifest_b
    show = httpx.post(registry_a.url + "/api/show", json={"model": "smol:copy"}, timeout=60)
    if show.status_code == 200:
        assert show.json().get("system") == "You are a terse pirate."

    # ... and it can be pulled from A like any other model.
    c, _ = fresh.start()
    lines = stream_post(c.url, "/api/pull", {"model": copy, "insecure": True})
    assert lines[-1] == {"status": "success"}
    assert copy in tags(c.url)

    # The CLI pushes too (everything is there already: each layer reported complete).
    done = cli(puller_b, "push", "--insecure", copy)
    assert done.returncode == 0, done.stderr
    assert "success" in done.stdout + done.stderr

    # Pushing a model that does not exist is a 404 before any progress.
    r = httpx.post(puller_b.url + "/api/push", timeout=30,
                   json={"model": a_name(registry_a, tag="missing"), "insecure": True})
    assert r.status_code == 404
    r = httpx.post(puller_b.url + "/api/push", json={}, timeout=30)
    assert r.status_code == 400 and r.json() == {"error": "model is required"}


def test_push_whole_model_to_an_empty_pollama(registry_a: Server, puller_b: Server,
                                              fresh: Fresh) -> None:
    pulled = a_name(registry_a)
    if pulled not in tags(puller_b.url):
        stream_post(puller_b.url, "/api/pull", {"model": pulled, "insecure": True})
    d, _ = fresh.start()
    target = f"127.0.0.1:{d.port}/team/smol:v1"
    r = httpx.post(puller_b.url + "/api/copy", json={"source": pulled, "destination": target},
                   timeout=60)
    assert r.status_code == 200, r.text
    lines = stream_post(puller_b.url, "/api/push", {"model": target, "insecure": True})
    assert lines[-1] == {"status": "success"}, lines[-3:]
    model_lines = [line for line in lines if line.get("digest") == "sha256:" + SMOL_HEX]
    assert model_lines[-1]["completed"] == SMOL_SIZE
    assert "team/smol:v1" in tags(d.url)
    assert sha256_file(os.path.join(d.models_dir, "blobs", "sha256-" + SMOL_HEX)) == SMOL_HEX
    assert not [f for f in blob_files(d.models_dir) if f.startswith(".tmp")]


# --- interruption, resume, corruption --------------------------------------------------------


def test_killed_pull_resumes_from_partial_files(registry_a: Server, proxy: Proxy,
                                                fresh: Fresh) -> None:
    e, tmp = fresh.start()
    name = f"127.0.0.1:{proxy.port}/library/smol:latest"
    proxy.bytes_per_second = 1_000_000  # per range request: 8 ranges, ~8 MB/s in all
    seen = 0
    with httpx.Client(base_url=e.url, timeout=120) as c:
        try:
            with c.stream("POST", "/api/pull", json={"model": name, "insecure": True}) as r:
                for line in r.iter_lines():
                    progress = json.loads(line)
                    if progress.get("digest") == "sha256:" + SMOL_HEX:
                        seen = progress.get("completed", 0)
                        if seen >= 4_000_000:
                            e.proc.send_signal(signal.SIGKILL)
                            break
        except httpx.HTTPError:
            pass
    e.proc.wait(30)
    assert 0 < seen < SMOL_SIZE

    blobs = os.path.join(e.models_dir, "blobs")
    partials = {f: os.path.getsize(os.path.join(blobs, f)) for f in os.listdir(blobs)
                if f.startswith(f"sha256-{SMOL_HEX}-partial-")}
    assert f"sha256-{SMOL_HEX}-partial" in os.listdir(blobs)  # the plan sidecar
    assert "sha256-" + SMOL_HEX not in os.listdir(blobs)
    have = sum(partials.values())
    assert len(partials) == 8 and 0 < have < SMOL_SIZE
    assert name not in tags(registry_a.url)  # sanity: the name lives only on the puller

    # Restart on the same store, lift the throttle, pull again: only the missing bytes move.
    os.remove(os.path.join(tmp, "port"))
    restarted = start_server(tmp)
    fresh.servers.append(restarted)
    proxy.bytes_per_second = None
    proxy.reset()
    lines = stream_post(restarted.url, "/api/pull", {"model": name, "insecure": True})
    assert lines[-1] == {"status": "success"}, lines[-3:]
    assert proxy.blob_bytes == SMOL_SIZE - have
    first = [line for line in lines if line.get("digest") == "sha256:" + SMOL_HEX
             and line.get("completed")][0]
    assert first["completed"] >= have  # progress starts where the partial files left off
    assert f"resuming sha256:{SMOL_HEX} at {have} of {SMOL_SIZE} bytes" in restarted.log()
    assert sha256_file(os.path.join(blobs, "sha256-" + SMOL_HEX)) == SMOL_HEX
    assert not [f for f in os.listdir(blobs) if "partial" in f or f.startswith(".tmp")]
    assert name in tags(restarted.url)


def test_corrupted_blob_in_transit_is_rejected(registry_a: Server, proxy: Proxy,
                                               fresh: Fresh) -> None:
    f, _ = fresh.start()
    name = f"127.0.0.1:{proxy.port}/library/smol:latest"
    proxy.corrupt = True
    lines = stream_post(f.url, "/api/pull", {"model": name, "insecure": True})
    error = lines[-1].get("error", "")
    assert error.startswith(f'digest mismatch, expected "sha256:{SMOL_HEX}", got "sha256:')
    assert "file must be downloaded again" in error
    assert "verifying sha256 digest" not in [line.get("status") for line in lines]
    # Nothing visible: no blob, no partial files, no temp files, no manifest.
    assert blob_files(f.models_dir) == []
    assert tags(f.url) == set()
    assert not os.path.exists(os.path.join(f.models_dir, "manifests", f"127.0.0.1:{proxy.port}"))

    # The same pull through an honest connection then works from scratch.
    proxy.corrupt = False
    lines = stream_post(f.url, "/api/pull", {"model": name, "insecure": True})
    assert lines[-1] == {"status": "success"}
    assert name in tags(f.url)


def test_client_hang_up_stops_the_pull_and_the_next_pull_resumes(registry_a: Server,
                                                                  proxy: Proxy,
                                                                  fresh: Fresh) -> None:
    e, _ = fresh.start()
    name = f"127.0.0.1:{proxy.port}/library/smol:latest"
    proxy.bytes_per_second = 1_000_000
    with httpx.Client(base_url=e.url, timeout=120) as c:
        with c.stream("POST", "/api/pull", json={"model": name, "insecure": True}) as r:
            for line in r.iter_lines():
                if json.loads(line).get("completed", 0) >= 3_000_000:
                    break  # leaving the block closes the connection
    blobs = os.path.join(e.models_dir, "blobs")

    def partial_bytes() -> int:
        return sum(os.path.getsize(os.path.join(blobs, f)) for f in os.listdir(blobs)
                   if f.startswith(f"sha256-{SMOL_HEX}-partial-"))

    # The server notices at its next progress line and cancels the transfer: the partial files
    # stop growing (the throttled proxy would otherwise go on delivering ~8 MB/s).
    deadline = time.monotonic() + 10
    last = -1
    while time.monotonic() < deadline:
        now = partial_bytes()
        if now == last:
            break
        last = now
        time.sleep(0.5)
    assert 0 < last < SMOL_SIZE and partial_bytes() == last
    assert e.proc.poll() is None
    assert "Traceback" not in e.log() and "unhandled" not in e.log()

    proxy.bytes_per_second = None
    proxy.reset()
    lines = stream_post(e.url, "/api/pull", {"model": name, "insecure": True})
    assert lines[-1] == {"status": "success"}
    assert proxy.blob_bytes == SMOL_SIZE - last
    assert sha256_file(os.path.join(blobs, "sha256-" + SMOL_HEX)) == SMOL_HEX
