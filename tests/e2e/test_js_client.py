"""The official `ollama` JavaScript client (npm) against a real `pollama serve`: list, generate,
streamed chat, embed, structured output, show, ps and an error, as a JS app would call them.

Needs Node.js and npm (the machine has both; the npm registry is reachable). The client is
installed once into the test cache at a pinned version."""

from __future__ import annotations

import json
import os
import shutil
import subprocess

import pytest

from tests.conftest import CACHE, Server

pytestmark = pytest.mark.e2e

CLIENT_VERSION = "0.6.4"
PROBE = os.path.join(os.path.dirname(os.path.abspath(__file__)), "js", "probe.mjs")


@pytest.fixture(scope="session")
def js_client_dir() -> str:
    assert shutil.which("node") and shutil.which("npm"), "Node.js and npm are needed"
    where = os.path.join(CACHE, f"js-ollama-{CLIENT_VERSION}")
    marker = os.path.join(where, "node_modules", "ollama", "package.json")
    if not os.path.exists(marker):
        os.makedirs(where, exist_ok=True)
        subprocess.run(["npm", "install", "--no-audit", "--no-fund", "--prefix", where,
                        f"ollama@{CLIENT_VERSION}"], check=True, capture_output=True, timeout=300)
    shutil.copy(PROBE, os.path.join(where, "probe.mjs"))
    return where


def test_official_js_client(server: Server, js_client_dir: str) -> None:
    r = subprocess.run(["node", "probe.mjs", server.url], cwd=js_client_dir,
                       capture_output=True, text=True, timeout=300)
    assert r.returncode == 0, r.stderr
    out = json.loads(r.stdout)
    assert "smol:latest" in out["list"]
    assert out["generate"]["done"] and out["generate"]["eval_count"] == 8
    assert out["generate"]["response"] and out["generate"]["context"] > 8
    assert out["chat_stream"]["text"] and out["chat_stream"]["chunks"] >= 8
    assert out["embed"] == [576, 576]
    assert isinstance(out["format"]["a"], int)
    assert "completion" in out["show"]
    assert "smol:latest" in out["ps"]
    assert out["error"] == {"status": 404, "error": "model 'nope' not found"}
