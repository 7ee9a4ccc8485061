"""`pollama create` from a Hugging Face directory, end to end against a real server: the CLI
uploads the files, the server converts them in a subprocess (``converting model``), the model
runs on a real runner; bad directories are 400s that leave nothing in the store."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from typing import Any

import httpx
import pytest

from tests.conftest import Server, running_server, sha256_file
from tests.hftiny import write_tiny

pytestmark = pytest.mark.e2e


@pytest.fixture(scope="module")
def srv() -> Any:
    with running_server("pollama-hf-") as server:
        yield server


def _cli(server: Server, *args: str, cwd: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "pollama.cli.main", *args], cwd=cwd,
                          env=server.env, capture_output=True, text=True, timeout=600)


def test_create_from_a_directory_with_the_cli(srv: Server, tmp_path: Any) -> None:
    write_tiny(str(tmp_path / "tiny-hf"))
    (tmp_path / "Modelfile").write_text("FROM ./tiny-hf/\nPARAMETER num_predict 8\n")
    done = _cli(srv, "create", "tiny", "-f", "Modelfile", cwd=str(tmp_path))
    assert done.returncode == 0, done.stderr
    assert "converting model" in done.stderr and "success" in done.stderr
    show = httpx.post(f"{srv.url}/api/show", json={"model": "tiny"}, timeout=60).json()
    assert show["model_info"]["general.architecture"] == "llama"
    assert show["details"]["format"] == "gguf" and show["details"]["quantization_level"] == "F16"
    r = httpx.post(f"{srv.url}/api/generate", timeout=300, json={
        "model": "tiny", "prompt": "hello", "raw": True, "stream": False,
        "options": {"temperature": 0}})
    assert r.status_code == 200, r.text
    assert r.json()["eval_count"] > 0


def test_the_api_streams_conversion_progress(srv: Server, tmp_path: Any) -> None:
    files = write_tiny(str(tmp_path / "hf"))
    with httpx.Client(base_url=srv.url, timeout=120) as c:
        digests = _upload_all(c, files)
        with c.stream("POST", "/api/create", json={"model": "tiny2", "files": digests}) as r:
            lines = [json.loads(line) for line in r.iter_lines() if line]
    statuses = [line.get("status") for line in lines]
    assert statuses[0] == "converting model" and statuses[-1] == "success"
    progress = [line for line in lines if line.get("total")]
    assert progress[-1]["completed"] == progress[-1]["total"] == 20


def _upload_all(c: httpx.Client, files: dict[str, str]) -> dict[str, str]:
    """Upload each file as a blob (present already is fine); their digests by name."""
    digests = {}
    for name, path in files.items():
        digest = "sha256:" + sha256_file(path)
        with open(path, "rb") as f:
            assert c.post(f"/api/blobs/{digest}", content=f.read()).status_code in (200, 201)
        digests[name] = digest
    return digests


def _blobs(server: Server) -> set[str]:
    return set(os.listdir(os.path.join(server.models_dir, "blobs")))


def test_a_bad_directory_is_a_400_and_leaves_nothing(srv: Server, tmp_path: Any) -> None:
    files = write_tiny(str(tmp_path / "hf"))
    with open(files["config.json"]) as f:
        config = json.load(f)
    config["intermediate_size"] = 96
    with open(files["config.json"], "w") as f:
        json.dump(config, f)
    with httpx.Client(base_url=srv.url, timeout=120) as c:
        digests = _upload_all(c, files)
        before = _blobs(srv)
        r = c.post("/api/create", json={"model": "bad", "files": digests, "stream": False})
    assert r.status_code == 400
    assert "model.safetensors: tensor 'model.layers.0.mlp.down_proj.weight'" in r.json()["error"]
    assert _blobs(srv) == before  # no half-written GGUF, no temp file
    models = httpx.get(f"{srv.url}/api/tags", timeout=30).json()["models"]
    assert "bad:latest" not in {m["name"] for m in models}


def test_a_directory_without_weights_is_refused_by_the_cli(srv: Server, tmp_path: Any) -> None:
    (tmp_path / "empty").mkdir()
    (tmp_path / "Modelfile").write_text("FROM ./empty\n")
    done = _cli(srv, "create", "x", "-f", "Modelfile", cwd=str(tmp_path))
    assert done.returncode != 0 and "no safetensors or gguf files found" in done.stderr


def test_a_lora_directory_with_its_base_directory(srv: Server, tmp_path: Any) -> None:
    from tests.hftiny import tiny_config, write_lora

    write_tiny(str(tmp_path / "base"))
    write_lora(str(tmp_path / "lora"), tiny_config())
    (tmp_path / "Modelfile").write_text("FROM ./base\nADAPTER ./lora\n")
    done = _cli(srv, "create", "tiny-lora", "-f", "Modelfile", cwd=str(tmp_path))
    assert done.returncode == 0, done.stderr
    assert done.stderr.count("converting model") >= 2  # the model, then the adapter
    manifest_show = httpx.post(f"{srv.url}/api/show", json={"model": "tiny-lora"},
                               timeout=60).json()
    assert "ADAPTER" in manifest_show["modelfile"]

    def answer(model: str) -> str:
        r = httpx.post(f"{srv.url}/api/generate", timeout=300, json={
            "model": model, "prompt": "hello", "raw": True, "stream": False,
            "options": {"temperature": 0, "num_predict": 8}})
        assert r.status_code == 200, r.text
        return str(r.json()["response"])

    (tmp_path / "Modelfile2").write_text("FROM ./base\n")
    assert _cli(srv, "create", "tiny-base", "-f", "Modelfile2", cwd=str(tmp_path)).returncode == 0
    assert answer("tiny-lora") != answer("tiny-base")  # the adapter is applied


def test_a_bert_directory_becomes_an_embedding_model(srv: Server, tmp_path: Any) -> None:
    from tests.hftiny import write_tiny_bert

    write_tiny_bert(str(tmp_path / "bert"))
    (tmp_path / "Modelfile").write_text("FROM ./bert\n")
    done = _cli(srv, "create", "tiny-bert", "-f", "Modelfile", cwd=str(tmp_path))
    assert done.returncode == 0, done.stderr
    r = httpx.post(f"{srv.url}/api/embed", timeout=300, json={
        "model": "tiny-bert", "input": ["hello world", "the cat sat on the mat."]})
    assert r.status_code == 200, r.text
    vectors = r.json()["embeddings"]
    assert len(vectors) == 2 and len(vectors[0]) == 32 and vectors[0] != vectors[1]
    assert abs(sum(x * x for x in vectors[0]) - 1) < 1e-3  # normalized, as Ollama's are
    assert r.json()["prompt_eval_count"] > 0
