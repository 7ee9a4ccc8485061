"""``PUT /v2/.../manifests/<tag>`` stores only manifests that verify, and a model whose manifest
has no model layer is a clear 400, never a 500, for ``/api/show`` and the other readers."""

from __future__ import annotations

import hashlib
import json
import os
from collections.abc import Callable, Iterator
from typing import Any

import httpx
import pytest

from tests.conftest import Server, running_server

pytestmark = pytest.mark.e2e

MODEL = "application/vnd.ollama.image.model"
SYSTEM = "application/vnd.ollama.image.system"


@pytest.fixture(scope="module")
def reg(smollm2_gguf: str) -> Iterator[Server]:
    with running_server("pollama-verify-", smollm2_gguf, system="Be brief.") as srv:
        yield srv


def smol_manifest(srv: Server) -> dict[str, Any]:
    r = httpx.get(srv.url + "/v2/library/smol/manifests/latest", timeout=30)
    assert r.status_code == 200
    return r.json()


def upload(srv: Server, data: bytes) -> str:
    hex_digest = hashlib.sha256(data).hexdigest()
    r = httpx.post(f"{srv.url}/v2/library/x/blobs/uploads/?digest=sha256:{hex_digest}",
                   content=data, timeout=30)
    assert r.status_code == 201, r.text
    return "sha256:" + hex_digest


def put(srv: Server, tag: str, manifest: dict[str, Any]) -> httpx.Response:
    return httpx.put(f"{srv.url}/v2/library/pushed/manifests/{tag}",
                     content=json.dumps(manifest), timeout=30,
                     headers={"Content-Type": manifest["mediaType"]})


def stored(srv: Server, tag: str) -> bool:
    return os.path.exists(os.path.join(srv.models_dir, "manifests", "registry.ollama.ai",
                                       "library", "pushed", tag))


def error_code(r: httpx.Response) -> str:
    body = r.json()
    assert set(body) == {"errors"}, body
    return str(body["errors"][0]["code"])


def test_manifest_without_a_model_layer_is_refused(reg: Server) -> None:
    m = smol_manifest(reg)
    m["layers"] = [x for x in m["layers"] if x["mediaType"] != MODEL]
    assert m["layers"]  # the system layer is left
    r = put(reg, "nomodel", m)
    assert r.status_code == 400, r.text
    assert error_code(r) == "MANIFEST_INVALID"
    assert "model layer" in r.json()["errors"][0]["message"]
    assert not stored(reg, "nomodel")
    r = httpx.post(reg.url + "/api/show", json={"model": "pushed:nomodel"}, timeout=30)
    assert r.status_code == 404


def _model_layer_smaller(reg: Server, m: dict[str, Any]) -> None:
    for layer in m["layers"]:
        if layer["mediaType"] == MODEL:
            layer["size"] -= 1


def _config_larger(reg: Server, m: dict[str, Any]) -> None:
    m["config"]["size"] += 7


def _config_not_json(reg: Server, m: dict[str, Any]) -> None:
    data = b"this is not JSON"
    m["config"] = {"mediaType": m["config"]["mediaType"], "digest": upload(reg, data),
                   "size": len(data)}


@pytest.mark.parametrize("tag, spoil", [("badsize", _model_layer_smaller),
                                        ("badconfig", _config_larger),
                                        ("textconfig", _config_not_json)])
def test_manifest_that_does_not_verify_is_refused(
        reg: Server, tag: str, spoil: Callable[[Server, dict[str, Any]], None]) -> None:
    """A wrong layer size, a wrong config size, a config that is not a config."""
    m = smol_manifest(reg)
    spoil(reg, m)
    r = put(reg, tag, m)
    assert r.status_code == 400, r.text
    assert error_code(r) == "MANIFEST_INVALID"
    assert not stored(reg, tag)


def test_manifest_with_missing_blob_is_refused(reg: Server) -> None:
    m = smol_manifest(reg)
    missing = "sha256:" + "7" * 64
    m["layers"].append({"mediaType": SYSTEM, "digest": missing, "size": 3})
    r = put(reg, "missing", m)
    assert r.status_code == 400, r.text
    assert error_code(r) == "MANIFEST_BLOB_UNKNOWN"
    assert r.json()["errors"][0]["detail"] == {"digest": missing}
    assert not stored(reg, "missing")


def test_verified_manifest_is_stored_and_usable(reg: Server) -> None:
    m = smol_manifest(reg)
    r = put(reg, "good", m)
    assert r.status_code == 201, r.text
    assert stored(reg, "good")
    r = httpx.post(reg.url + "/api/show", json={"model": "pushed:good"}, timeout=30)
    assert r.status_code == 200, r.text


def test_readers_of_a_stored_model_without_a_model_layer_get_a_clear_error(reg: Server) -> None:
    """Such a manifest can still be on disk (written by an older pollama, by hand, or another
    tool); reading it is a 400 naming the problem, never a 500."""
    m = smol_manifest(reg)
    m["layers"] = [x for x in m["layers"] if x["mediaType"] != MODEL]
    path = os.path.join(reg.models_dir, "manifests", "registry.ollama.ai", "library", "hollow",
                        "latest")
    os.makedirs(os.path.dirname(path), exist_ok=True)
    with open(path, "w") as f:
        json.dump(m, f)
    try:
        for route, body in [
            ("/api/show", {"model": "hollow"}),
            ("/api/generate", {"model": "hollow", "prompt": "hi", "stream": False}),
            ("/api/chat", {"model": "hollow", "stream": False,
                           "messages": [{"role": "user", "content": "hi"}]}),
            ("/api/embed", {"model": "hollow", "input": "hi"}),
        ]:
            r = httpx.post(reg.url + route, json=body, timeout=60)
            assert r.status_code == 400, (route, r.status_code, r.text)
            assert r.json() == {"error": "model 'hollow:latest' has no model layer"}, route
        r = httpx.get(reg.url + "/api/tags", timeout=30)
        assert r.status_code == 200
    finally:
        os.remove(path)
