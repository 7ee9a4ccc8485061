"""``pollama doctor``: the store check from the command line, on a real store."""

from __future__ import annotations

import hashlib
import json
import os
import subprocess
import sys
from typing import Any

import pytest

from tests.conftest import start_server, stop_server, upload_and_create

pytestmark = pytest.mark.e2e


def doctor(models: str, *args: str) -> subprocess.CompletedProcess[str]:
    env = dict(os.environ)
    env["POLLAMA_MODELS"] = models
    env.pop("OLLAMA_MODELS", None)
    return subprocess.run([sys.executable, "-m", "pollama.cli.main", "doctor", *args], env=env,
                          capture_output=True, text=True, timeout=300)


def snapshot(root: str) -> dict[str, int]:
    out = {}
    for dirpath, dirs, files in os.walk(root):
        for name in files + dirs:
            p = os.path.join(dirpath, name)
            out[os.path.relpath(p, root)] = os.path.getsize(p) if os.path.isfile(p) else -1
    return out


@pytest.fixture()
def store(smollm2_gguf: str, tmp_path: Any) -> Any:
    tmp = str(tmp_path)
    srv = start_server(tmp)
    try:
        upload_and_create(srv.url, smollm2_gguf, "smol")
    finally:
        stop_server(srv)
    return tmp, srv.models_dir


def add_debris(models: str) -> dict[str, int]:
    orphan = b"nobody uses me" * 100
    files = {
        os.path.join("blobs", ".tmp-blob-d0c70r"): b"x" * 2000,
        os.path.join("blobs", "sha256-" + hashlib.sha256(orphan).hexdigest()): orphan,
        os.path.join("tmp", "pollama-pull-d0c", "a.whl"): b"w" * 500,
    }
    for rel, data in files.items():
        path = os.path.join(models, rel)
        os.makedirs(os.path.dirname(path), exist_ok=True)
        with open(path, "wb") as f:
            f.write(data)
    return {rel: len(data) for rel, data in files.items()}


def add_broken_manifest(models: str) -> str:
    path = os.path.join(models, "manifests", "registry.ollama.ai", "library", "smol", "broken")
    with open(os.path.join(os.path.dirname(path), "latest"), "rb") as f:
        m = json.loads(f.read())
    m["layers"].append({"mediaType": "application/vnd.ollama.image.system",
                        "digest": "sha256:" + "5" * 64, "size": 10})
    with open(path, "w") as f:
        json.dump(m, f)
    return path


def test_doctor_dry_run_reports_and_removes_nothing(store: Any) -> None:
    _tmp, models = store
    debris = add_debris(models)
    add_broken_manifest(models)
    before = snapshot(models)
    r = doctor(models, "--dry-run")
    assert r.returncode == 1, r.stdout + r.stderr  # a broken manifest was found
    assert snapshot(models) == before
    assert "would remove 3 items" in r.stdout, r.stdout
    assert "broken manifest smol:broken" in r.stdout and "5555" in r.stdout, r.stdout
    for rel in debris:
        assert rel.split(os.sep)[-1] in r.stdout or "pollama-pull-d0c" in r.stdout


def test_doctor_removes_debris_and_keeps_broken_manifests(store: Any) -> None:
    _tmp, models = store
    debris = add_debris(models)
    broken = add_broken_manifest(models)
    r = doctor(models)
    assert r.returncode == 1, r.stdout + r.stderr
    for rel in debris:
        assert not os.path.exists(os.path.join(models, rel)), rel
    assert os.path.exists(broken)  # reported, never deleted
    assert "removed 3 items" in r.stdout, r.stdout
    os.remove(broken)
    r = doctor(models)
    assert r.returncode == 0, r.stdout + r.stderr
    assert "removed 0 items" in r.stdout, r.stdout


def test_doctor_only_reports_while_a_server_holds_the_store(store: Any) -> None:
    tmp, models = store
    os.remove(os.path.join(tmp, "port"))
    srv = start_server(tmp)
    try:
        debris = add_debris(models)
        before = snapshot(models)
        r = doctor(models)
        assert r.returncode == 0, r.stdout + r.stderr
        assert "in use" in r.stdout, r.stdout
        assert "would remove 3 items" in r.stdout, r.stdout
        assert snapshot(models) == before
        for rel in debris:
            assert os.path.exists(os.path.join(models, rel))
    finally:
        stop_server(srv)
