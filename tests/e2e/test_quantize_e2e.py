"""Quantize at create time against a real ``pollama serve``: a tiny random-weight F16 llama GGUF
(tests/tinygguf.py) quantized by llama.cpp through the API and the CLI's ``-q``, then run; the
errors Ollama gives for a quantized source and an unknown type."""

from __future__ import annotations

import hashlib
import os
import subprocess
import sys
from collections.abc import Iterator
from typing import Any

import httpx
import pytest

from tests import tinygguf
from tests.conftest import Server, child_pids, cmdline, start_server, stop_server

pytestmark = pytest.mark.e2e

ZERO_DIGEST = "0000000000000000000"
NOT_QUANTIZABLE = "quantization is only supported for F16, BF16 and F32 models"
UNSUPPORTED = ("unsupported quantization type Q5_X - supported types are "
               "F32, F16, Q4_K_S, Q4_K_M, Q8_0, Q4_0, Q5_0, Q5_K_S, Q5_K_M, Q6_K, Q3_K_M, Q2_K")


@pytest.fixture(scope="module")
def srv(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    s = start_server(str(tmp_path_factory.mktemp("quantize")))
    yield s
    stop_server(s)


@pytest.fixture(scope="module")
def tiny(tmp_path_factory: pytest.TempPathFactory) -> str:
    return tinygguf.write(str(tmp_path_factory.mktemp("tiny") / "tiny.gguf"))


@pytest.fixture(scope="module")
def http(srv: Server) -> Iterator[httpx.Client]:
    with httpx.Client(base_url=srv.url, timeout=300) as c:
        yield c


def upload(http: httpx.Client, path: str) -> str:
    with open(path, "rb") as f:
        data = f.read()
    digest = "sha256:" + hashlib.sha256(data).hexdigest()
    if http.head(f"/api/blobs/{digest}").status_code != 200:
        r = http.post(f"/api/blobs/{digest}", content=data)
        assert r.status_code == 201, r.text
    return digest


@pytest.fixture(scope="module")
def tiny_digest(http: httpx.Client, tiny: str) -> str:
    return upload(http, tiny)


def create_stream(http: httpx.Client, body: dict[str, Any]) -> tuple[int, list[dict[str, Any]]]:
    import json

    with http.stream("POST", "/api/create", json=body) as r:
        lines = [json.loads(line) for line in r.iter_lines() if line.strip()]
        return r.status_code, lines


def tags(http: httpx.Client) -> dict[str, dict[str, Any]]:
    return {m["name"]: m for m in http.get("/api/tags").json()["models"]}


def assert_runs(http: httpx.Client, model: str) -> None:
    r = http.post("/api/generate", json={"model": model, "prompt": "why is the sky blue",
                                         "stream": False,
                                         "options": {"num_predict": 8, "seed": 1}})
    assert r.status_code == 200, r.text
    assert r.json()["done"] is True and r.json()["eval_count"] >= 1


@pytest.mark.parametrize("quantize, level", [("q8_0", "Q8_0"), ("q4_K_M", "Q4_K_M")])
def test_api_quantize(http: httpx.Client, srv: Server, tiny: str, tiny_digest: str,
                      quantize: str, level: str) -> None:
    name = f"tiny-{quantize.lower()}"
    code, lines = create_stream(http, {"model": name, "files": {"tiny.gguf": tiny_digest},
                                       "quantize": quantize})
    assert code == 200, lines
    assert lines[-1] == {"status": "success"}, lines
    steps = [x for x in lines if x["status"] == f"quantizing F16 model to {level}"]
    assert len(steps) >= 3  # a first line, per-tensor lines, the last one
    size = os.path.getsize(tiny)
    assert all(x["digest"] == ZERO_DIGEST and x["total"] == size for x in steps)
    done = [x["completed"] for x in steps]
    assert done == sorted(done) and done[0] == 0 and done[-1] == size
    statuses = [x["status"] for x in lines]
    after = statuses[statuses.index(steps[-1]["status"]) + len(steps):]
    assert after[0] == "verifying conversion"
    assert after[1].startswith("creating new layer sha256:")
    assert after[-2:] == ["writing manifest", "success"]

    model = tags(http)[f"{name}:latest"]
    assert model["details"]["quantization_level"] == level
    assert model["details"]["family"] == "llama"
    assert model["size"] < size
    new_digest = after[1].removeprefix("creating new layer ")
    show = http.post("/api/show", json={"model": name}).json()
    assert show["details"]["quantization_level"] == level
    assert os.path.exists(os.path.join(srv.models_dir, "blobs",
                                       new_digest.replace(":", "-")))
    assert not [f for f in os.listdir(os.path.join(srv.models_dir, "blobs"))
                if f.startswith(".tmp")]
    assert_runs(http, name)


def test_api_quantize_not_streaming_from_existing_model(http: httpx.Client,
                                                        tiny_digest: str) -> None:
    r = http.post("/api/create", json={"model": "tiny-f16", "files": {"tiny.gguf": tiny_digest},
                                       "stream": False})
    assert r.status_code == 200 and r.json() == {"status": "success"}, r.text
    r = http.post("/api/create", json={"model": "tiny-from-q4s", "from": "tiny-f16",
                                       "quantize": "Q4_K_S", "stream": False})
    assert r.status_code == 200 and r.json() == {"status": "success"}, r.text
    models = tags(http)
    assert models["tiny-from-q4s:latest"]["details"]["quantization_level"] == "Q4_K_S"
    assert models["tiny-f16:latest"]["details"]["quantization_level"] == "F16"
    assert models["tiny-from-q4s:latest"]["size"] < models["tiny-f16:latest"]["size"]
    assert_runs(http, "tiny-from-q4s")


def test_quantize_to_same_type_keeps_the_layer(http: httpx.Client, tiny_digest: str) -> None:
    code, lines = create_stream(http, {"model": "tiny-same", "files": {"m.gguf": tiny_digest},
                                       "quantize": "f16"})
    assert code == 200 and lines[-1] == {"status": "success"}
    assert not any(x["status"].startswith("quantizing") for x in lines)
    assert tags(http)["tiny-same:latest"]["details"]["quantization_level"] == "F16"


@pytest.mark.parametrize("stream", [True, False])
def test_quantized_source_is_refused(http: httpx.Client, smollm2_gguf: str, stream: bool) -> None:
    digest = upload(http, smollm2_gguf)
    r = http.post("/api/create", json={"model": "smol-q", "files": {"smol.gguf": digest},
                                       "quantize": "q4_K_M", "stream": stream})
    assert r.status_code == 400
    assert r.json() == {"error": NOT_QUANTIZABLE}
    assert "smol-q:latest" not in tags(http)


@pytest.mark.parametrize("stream", [True, False])
def test_unknown_type_is_refused(http: httpx.Client, tiny_digest: str, stream: bool) -> None:
    r = http.post("/api/create", json={"model": "tiny-bad", "files": {"m.gguf": tiny_digest},
                                       "quantize": "q5_x", "stream": stream})
    assert r.status_code == 400
    assert r.json() == {"error": UNSUPPORTED}


def cli(srv: Server, *args: str, cwd: str | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "pollama.cli.main", *args], env=srv.env,
                          capture_output=True, text=True, timeout=300, cwd=cwd)


def test_cli_create_quantize(srv: Server, http: httpx.Client, tiny: str,
                             tmp_path: object) -> None:
    d = str(tmp_path)
    os.symlink(tiny, os.path.join(d, "tiny.gguf"))
    with open(os.path.join(d, "Modelfile"), "w") as f:
        f.write("FROM ./tiny.gguf\nPARAMETER temperature 0.5\n")
    r = cli(srv, "create", "tiny-cli", "-f", os.path.join(d, "Modelfile"), "-q", "q4_K_M")
    assert r.returncode == 0, r.stderr
    assert "quantizing F16 model to Q4_K_M" in r.stderr
    assert "100%" in r.stderr  # the progress bar's final state
    assert "verifying conversion" in r.stderr and r.stderr.rstrip().endswith("success")
    model = tags(http)["tiny-cli:latest"]
    assert model["details"]["quantization_level"] == "Q4_K_M"
    assert model["size"] < os.path.getsize(tiny)
    r = cli(srv, "run", "tiny-cli", "why is the sky blue")
    assert r.returncode == 0, r.stderr

    r = cli(srv, "create", "tiny-cli-bad", "--quantize", "q5_x", "-f",
            os.path.join(d, "Modelfile"))
    assert r.returncode != 0
    assert UNSUPPORTED in r.stderr and "Traceback" not in r.stderr


def _quantize_children(server_pid: int) -> list[int]:
    return [c for c in child_pids(server_pid) if b"pollama.runners.quantize" in cmdline(c)]


@pytest.mark.skipif(not os.path.isdir("/proc"), reason="reads /proc")
def test_hang_up_kills_the_quantizer_and_cleans_up(srv: Server, http: httpx.Client,
                                                   tmp_path: object) -> None:
    import json
    import time

    # ~57 MB of F16: a couple of seconds of quantizing on a small machine.
    shape = tinygguf.TinyShape(n_embd=1024, n_ff=2048, n_layer=3, n_head=8, n_head_kv=4)
    big = tinygguf.write(os.path.join(str(tmp_path), "big.gguf"), shape=shape)
    digest = upload(http, big)
    with http.stream("POST", "/api/create", json={"model": "big-q", "files": {"b.gguf": digest},
                                                  "quantize": "q4_K_M"}) as r:
        for line in r.iter_lines():
            if json.loads(line).get("completed"):
                assert _quantize_children(srv.proc.pid)
                break  # hang up mid-quantize
    blobs = os.path.join(srv.models_dir, "blobs")

    def leftovers() -> list[object]:
        return [*_quantize_children(srv.proc.pid),
                *(f for f in os.listdir(blobs) if f.startswith(".tmp"))]

    deadline = time.monotonic() + 10
    while leftovers() and time.monotonic() < deadline:
        time.sleep(0.05)
    assert leftovers() == []
    assert "big-q:latest" not in tags(http)
