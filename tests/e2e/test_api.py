"""End to end: a real ``pollama serve`` with real llama-cpp-python runners on SmolLM2.

Driven with the official ``ollama`` Python client and with raw HTTP.
"""

from __future__ import annotations

import json

import httpx
import ollama
import pytest

from tests.conftest import Server

pytestmark = pytest.mark.e2e

GREEDY = {"temperature": 0, "seed": 42, "num_predict": 24}


@pytest.fixture(scope="module")
def client(server: Server) -> ollama.Client:
    return ollama.Client(host=server.url)


@pytest.fixture(scope="module")
def http(server: Server) -> httpx.Client:
    with httpx.Client(base_url=server.url, timeout=120) as c:
        yield c


def test_root_and_version(http: httpx.Client) -> None:
    r = http.get("/")
    assert r.status_code == 200 and r.text == "Ollama is running"
    assert http.head("/").status_code == 200
    v = http.get("/api/version")
    assert v.headers["content-type"] == "application/json; charset=utf-8"
    assert isinstance(v.json()["version"], str)


def test_list_reports_gguf_details(client: ollama.Client) -> None:
    models = {m.model: m for m in client.list().models}
    smol = models["smol:latest"]
    assert smol.size and smol.size > 98_000_000
    assert smol.details.family == "llama"
    assert smol.details.parameter_size == "134.52M"
    assert smol.details.quantization_level == "Q4_1"
    assert smol.details.format == "gguf"


def test_chat_streaming_with_official_client(client: ollama.Client) -> None:
    chunks = list(client.chat(model="smol", stream=True, options=GREEDY,
                              messages=[{"role": "user", "content": "Why is the sky blue?"}]))
    assert len(chunks) > 2
    assert all(not c.done for c in chunks[:-1])
    final = chunks[-1]
    assert final.done and final.done_reason in ("stop", "length")
    text = "".join(c.message.content or "" for c in chunks)
    assert len(text.split()) >= 3
    assert final.message.content == ""
    assert final.eval_count and 0 < final.eval_count <= 24
    assert final.prompt_eval_count and final.prompt_eval_count > 5
    assert final.total_duration and final.eval_duration and final.prompt_eval_duration
    assert final.total_duration >= final.eval_duration
    assert final.load_duration is not None


def test_chat_non_streaming_matches_streaming(client: ollama.Client) -> None:
    msgs = [{"role": "user", "content": "Name three colors."}]
    streamed = "".join(c.message.content or "" for c in
                       client.chat(model="smol", messages=msgs, options=GREEDY, stream=True))
    whole = client.chat(model="smol", messages=msgs, options=GREEDY, stream=False)
    assert whole.done and whole.message.role == "assistant"
    assert whole.message.content == streamed


def test_generate_deterministic_at_temperature_zero(client: ollama.Client) -> None:
    a = client.generate(model="smol", prompt="Write a haiku about rain.", options=GREEDY)
    b = client.generate(model="smol", prompt="Write a haiku about rain.", options=GREEDY)
    assert a.response and a.response == b.response
    assert a.context and len(a.context) > a.prompt_eval_count - 1
    assert a.done_reason in ("stop", "length")


def test_generate_num_predict_and_length(client: ollama.Client) -> None:
    r = client.generate(model="smol", prompt="Write a long story about a dragon and a knight.",
                        options={"temperature": 0, "num_predict": 5})
    assert r.eval_count == 5
    assert r.done_reason == "length"


def test_generate_stop_sequence(client: ollama.Client) -> None:
    base = client.generate(model="smol", prompt="List the days of the week, one per line.",
                           options={"temperature": 0, "num_predict": 40})
    words = base.response.split()
    assert len(words) > 3
    stop = words[2]
    r = client.generate(model="smol", prompt="List the days of the week, one per line.",
                        options={"temperature": 0, "num_predict": 40, "stop": [stop]})
    assert stop not in r.response
    assert r.response == base.response[: base.response.index(stop)]
    assert r.done_reason == "stop"


def test_generate_raw_and_context(client: ollama.Client) -> None:
    raw = client.generate(model="smol", raw=True, options=GREEDY,
                          prompt="<|im_start|>user\nSay hi<|im_end|>\n<|im_start|>assistant\n")
    assert raw.response
    assert raw.context is None  # omitted in raw mode
    first = client.generate(model="smol", prompt="My name is Ada.", options=GREEDY)
    follow = client.generate(model="smol", prompt="What is my name?", context=first.context,
                             options=GREEDY)
    assert follow.prompt_eval_count > len(first.context)


def test_system_prompt_changes_output(client: ollama.Client) -> None:
    a = client.generate(model="smol", prompt="Who are you?", options=GREEDY)
    b = client.generate(model="smol", prompt="Who are you?", system="You are a pirate named Bob.",
                        options=GREEDY)
    assert a.response != b.response


def test_ndjson_wire_format(http: httpx.Client) -> None:
    body = {"model": "smol", "prompt": "Hello", "options": GREEDY}
    with http.stream("POST", "/api/generate", json=body) as r:
        assert r.status_code == 200
        assert r.headers["content-type"] == "application/x-ndjson"
        lines = [json.loads(line) for line in r.iter_lines() if line]
    assert list(lines[0]) == ["model", "created_at", "response", "done"]
    last = lines[-1]
    assert list(last)[:5] == ["model", "created_at", "response", "done", "done_reason"]
    assert last["response"] == ""
    assert last["created_at"].endswith("Z")
    for key in ("total_duration", "load_duration", "prompt_eval_count", "prompt_eval_duration",
                "eval_count", "eval_duration"):
        assert isinstance(last[key], int) and last[key] > 0, key


def test_load_only(http: httpx.Client) -> None:
    r = http.post("/api/generate", json={"model": "smol"})
    assert r.status_code == 200
    body = r.json()
    assert body["done"] is True and body["done_reason"] == "load" and body["response"] == ""
    r = http.post("/api/chat", json={"model": "smol", "messages": []})
    assert r.json()["message"] == {"role": "assistant", "content": ""}
    assert r.json()["done_reason"] == "load"


@pytest.mark.parametrize(
    ("path", "body", "status", "error"),
    [
        ("/api/generate", {"model": "nope"}, 404, "model 'nope' not found"),
        ("/api/chat", {"model": "nope", "messages": [{"role": "user", "content": "x"}]}, 404,
         "model 'nope' not found"),
        ("/api/chat", {"messages": []}, 400, "model is required"),
        ("/api/generate", {}, 404, "model '' not found"),
        ("/api/chat", {"model": "smol", "messages": "hi"}, 400,
         "json: cannot unmarshal string into Go struct field ChatRequest.messages of type "
         "[]api.Message"),
        ("/api/generate", {"model": "smol", "prompt": 3}, 400,
         "json: cannot unmarshal number into Go struct field GenerateRequest.prompt of type "
         "string"),
        ("/api/generate", {"model": "smol", "prompt": "x", "raw": True, "system": "s"}, 400,
         "raw mode does not support template, system, or context"),
        ("/api/generate", {"model": "bad name!", "prompt": "x"}, 400, "invalid model name"),
        ("/api/generate", {"model": "smol", "prompt": "x", "keep_alive": "300"}, 400,
         'time: missing unit in duration "300"'),
    ],
)
def test_errors(http: httpx.Client, path: str, body: dict[str, object], status: int,
                error: str) -> None:
    r = http.post(path, json=body)
    assert r.status_code == status
    assert r.json() == {"error": error}


def test_malformed_bodies(http: httpx.Client) -> None:
    r = http.post("/api/chat", content=b"")
    assert (r.status_code, r.json()) == (400, {"error": "missing request body"})
    r = http.post("/api/chat", content=b"{bad json")
    assert r.status_code == 400
    assert r.json()["error"].startswith("invalid character 'b'")
    r = http.post("/api/generate", content=b"[1,2]")
    assert r.status_code == 400 and "cannot unmarshal array" in r.json()["error"]


def test_unknown_route_and_method(http: httpx.Client) -> None:
    r = http.get("/api/nope")
    assert r.status_code == 404 and r.text == "404 page not found"
    assert http.get("/api/chat").status_code == 405


def test_official_client_errors(client: ollama.Client) -> None:
    with pytest.raises(ollama.ResponseError) as err:
        client.chat(model="missing-model", messages=[{"role": "user", "content": "x"}])
    assert err.value.status_code == 404
    assert "not found" in err.value.error


def test_keep_alive_connection_reuse(server: Server) -> None:
    with httpx.Client(base_url=server.url) as c:
        for _ in range(5):
            assert c.get("/api/version").status_code == 200
        assert c.get("/api/tags").status_code == 200


def test_blob_endpoints(http: httpx.Client) -> None:
    assert http.head("/api/blobs/sha256:xyz").status_code == 400
    missing = "sha256:" + "0" * 64
    r = http.head(f"/api/blobs/{missing}")
    assert r.status_code == 404
    data = b"hello blob"
    import hashlib

    good = "sha256:" + hashlib.sha256(data).hexdigest()
    bad = http.post(f"/api/blobs/{missing}", content=data)
    assert bad.status_code == 400 and bad.json()["error"].startswith("digest mismatch")
    assert http.post(f"/api/blobs/{good}", content=data).status_code == 201
    assert http.head(f"/api/blobs/{good}").status_code == 200
    assert http.post(f"/api/blobs/{good}", content=data).status_code == 200


def test_create_errors(http: httpx.Client) -> None:
    r = http.post("/api/create", json={"model": "x"})
    assert r.status_code == 400
    assert r.json()["error"] == "neither 'from' or 'files' was specified"
    r = http.post("/api/create", json={"model": "x", "from": "does-not-exist"})
    assert r.status_code == 404
    import hashlib

    junk = b"not a gguf file at all"
    digest = "sha256:" + hashlib.sha256(junk).hexdigest()
    http.post(f"/api/blobs/{digest}", content=junk)
    r = http.post("/api/create", json={"model": "junk", "files": {"x.gguf": digest},
                                       "stream": False})
    assert r.status_code == 400 and "GGUF" in r.json()["error"]


def test_create_from_existing_with_system(client: ollama.Client, http: httpx.Client) -> None:
    r = http.post("/api/create", json={"model": "pirate", "from": "smol", "stream": False,
                                       "system": "You are a pirate. Always say Arr.",
                                       "parameters": {"temperature": 0, "num_predict": 16}})
    assert r.status_code == 200, r.text
    plain = client.chat(model="smol", messages=[{"role": "user", "content": "Hello"}],
                        options={"temperature": 0, "num_predict": 16})
    pirate = client.chat(model="pirate", messages=[{"role": "user", "content": "Hello"}])
    assert pirate.eval_count <= 16
    assert pirate.message.content != plain.message.content
    names = {m.model for m in client.list().models}
    assert "pirate:latest" in names


def test_lone_surrogate_in_prompt_is_not_a_500(http: httpx.Client) -> None:
    r = http.post("/api/generate", content=b'{"model": "smol", "prompt": "hi \\ud800", '
                                           b'"stream": false, "options": {"num_predict": 2}}')
    assert r.status_code == 200, r.text
