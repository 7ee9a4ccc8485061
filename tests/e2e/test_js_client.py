"""The official `ollama` JavaScript client (npm) against a real `pollama serve`: list, generate,
streamed chat, embed, structured output, show, ps and an error, as a JS app would call them.

Needs Node.js and npm (the machine has both; the npm registry is reachable). The client is
installed once into the test cache at a pinned version."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys

import pytest

from tests.conftest import CACHE, Server

pytestmark = pytest.mark.e2e

CLIENT_VERSION = "0.6.4"
PROBE = os.path.join(os.path.dirname(os.path.abspath(__file__)), "js", "probe.mjs")


def npm_dir(package: str, version: str, probe: str) -> str:
    """``package@version`` installed once into the test cache, with ``probe`` copied beside it."""
    assert shutil.which("node") and shutil.which("npm"), "Node.js and npm are needed"
    where = os.path.join(CACHE, f"js-{package}-{version}")
    marker = os.path.join(where, "node_modules", package, "package.json")
    if not os.path.exists(marker):
        os.makedirs(where, exist_ok=True)
        subprocess.run(["npm", "install", "--no-audit", "--no-fund", "--prefix", where,
                        f"{package}@{version}"], check=True, capture_output=True, timeout=300)
    shutil.copy(probe, os.path.join(where, os.path.basename(probe)))
    return where


@pytest.fixture(scope="session")
def js_client_dir() -> str:
    return npm_dir("ollama", CLIENT_VERSION, PROBE)


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


JSONRPC_VERSION = "8.2.1"
STDIO_PROBE = os.path.join(os.path.dirname(os.path.abspath(__file__)), "js", "stdio_probe.mjs")


@pytest.fixture(scope="session")
def jsonrpc_dir() -> str:
    return npm_dir("vscode-jsonrpc", JSONRPC_VERSION, STDIO_PROBE)


def test_vscode_jsonrpc_over_pollama_stdio(server: Server, jsonrpc_dir: str) -> None:
    """An editor extension's client (vscode-jsonrpc) spawning `pollama stdio` in bridge mode."""
    r = subprocess.run(["node", "stdio_probe.mjs", sys.executable], cwd=jsonrpc_dir,
                       env=server.env, capture_output=True, text=True, timeout=300)
    assert r.returncode == 0, r.stderr
    out = json.loads(r.stdout)
    assert out["version"] == {"version": "0.13.0"}
    assert out["chat"]["done"] is True and out["chat"]["eval_count"] == 8
    assert out["chat"]["streamed"]
    assert out["unknown"] == -32601
    assert out["missing"] == {"code": -32000, "message": "model 'nope' not found",
                              "data": {"status": 404}}
    assert out["cancel"] == -32800
    assert out["exit"] == 0
