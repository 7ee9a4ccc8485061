"""Generation features against SmolLM2 with the official client: structured output and
embeddings (more features join this file as they land)."""

from __future__ import annotations

import json
import math

import httpx
import jsonschema
import ollama
import pytest

from tests.conftest import Server
from tests.schemas import PERSON

pytestmark = pytest.mark.e2e


@pytest.fixture(scope="module")
def client(server: Server) -> ollama.Client:
    return ollama.Client(host=server.url)


def test_format_json_parses(client: ollama.Client) -> None:
    r = client.chat(model="smol", format="json", options={"temperature": 0, "num_predict": 300},
                    messages=[{"role": "user", "content":
                               'Give the capital of France as JSON: {"capital": ...}'}])
    assert r.done_reason == "stop"
    assert json.loads(r.message.content) == {"capital": "Paris"}


@pytest.mark.parametrize("seed", [1, 2, 3])
def test_format_schema_validates(client: ollama.Client, seed: int) -> None:
    r = client.generate(model="smol", format=PERSON, prompt="Invent a person.",
                        options={"temperature": 0.7, "seed": seed, "num_predict": 400})
    assert r.done_reason == "stop"
    jsonschema.validate(json.loads(r.response), PERSON)


@pytest.mark.parametrize("seed", [1, 2, 3, 4])
def test_format_integer_bounds_are_enforced(client: ollama.Client, seed: int) -> None:
    """minimum/maximum on integers (llama-cpp-python's converter ignores them; ours, like
    llama.cpp's C++ one that Ollama uses, does not)."""
    schema = {"type": "object", "required": ["year", "low", "high"],
              "properties": {"year": {"type": "integer", "minimum": 1000, "maximum": 1005},
                             "low": {"type": "integer", "exclusiveMaximum": -3},
                             "high": {"type": "integer", "minimum": 110}}}
    r = client.generate(model="smol", format=schema, prompt="Pick some numbers.",
                        options={"temperature": 1.0, "seed": seed, "num_predict": 60})
    assert r.done_reason == "stop"
    jsonschema.validate(json.loads(r.response), schema)


def test_format_errors(server: Server) -> None:
    r = httpx.post(f"{server.url}/api/generate", json={"model": "smol", "prompt": "x",
                                                       "format": "yaml"})
    assert r.status_code == 400
    assert r.json()["error"] == ('invalid format: "\\"yaml\\""; expected "json" or a valid JSON '
                                 'Schema object')
    r = httpx.post(f"{server.url}/api/generate", timeout=60, json={
        "model": "smol", "prompt": "x", "stream": False, "format": {"type": "nonsense"}})
    assert r.status_code == 400 and r.json()["error"].startswith("invalid format")


def test_embed(client: ollama.Client) -> None:
    r = client.embed(model="smol", input=["The sky is blue.", "The sky is blue.", "Pizza!"])
    vecs = r.embeddings
    assert len(vecs) == 3 and all(len(v) == 576 for v in vecs)
    assert all(abs(math.sqrt(sum(x * x for x in v)) - 1) < 1e-4 for v in vecs)
    assert sum(a * b for a, b in zip(vecs[0], vecs[1])) > 0.9999
    same = sum(a * b for a, b in zip(vecs[0], vecs[1]))
    other = sum(a * b for a, b in zip(vecs[0], vecs[2]))
    assert same > other
    assert r.prompt_eval_count and r.prompt_eval_count > 6
    short = client.embed(model="smol", input="The sky is blue.", dimensions=32).embeddings[0]
    assert len(short) == 32 and abs(math.sqrt(sum(x * x for x in short)) - 1) < 1e-4


def test_embed_batch_matches_single_inputs(client: ollama.Client) -> None:
    """Inputs share one decode (one sequence each); each vector must still be the one the
    input gets on its own: sequences do not attend to each other."""
    texts = ["The sky is blue.", "Pizza is a food from Italy.", "x", "Quantum chromodynamics"]
    batched = client.embed(model="smol", input=texts)
    for text, vec in zip(texts, batched.embeddings):
        alone = client.embed(model="smol", input=text).embeddings[0]
        assert sum(a * b for a, b in zip(vec, alone)) > 0.9999
    singles = sum(client.embed(model="smol", input=t).prompt_eval_count or 0 for t in texts)
    assert batched.prompt_eval_count == singles


def test_embed_then_generate_same_runner(client: ollama.Client) -> None:
    a = client.generate(model="smol", prompt="Say hi.",
                        options={"temperature": 0, "num_predict": 8})
    client.embed(model="smol", input="interleaved")
    b = client.generate(model="smol", prompt="Say hi.",
                        options={"temperature": 0, "num_predict": 8})
    assert a.response == b.response


def test_legacy_embeddings_unnormalised(client: ollama.Client, server: Server) -> None:
    e = client.embeddings(model="smol", prompt="The sky is blue.").embedding
    assert len(e) == 576 and math.sqrt(sum(x * x for x in e)) > 1.5
    r = httpx.post(f"{server.url}/api/embeddings", json={"model": "smol", "prompt": ""})
    assert r.json() == {"embedding": []}
    r = httpx.post(f"{server.url}/api/embeddings", json={"prompt": "x"})
    assert (r.status_code, r.json()) == (400, {"error": "model is required"})


def test_embed_errors(server: Server) -> None:
    post = lambda body: httpx.post(f"{server.url}/api/embed", json=body, timeout=60)  # noqa: E731
    assert post({"model": "smol", "input": [1, 2]}).json() == {"error": "invalid input type"}
    r = post({"model": "nope", "input": "x"})
    assert (r.status_code, r.json()) == (
        404, {"error": 'model "nope" not found, try pulling it first'})
    assert post({"model": "smol", "input": []}).json() == {"model": "smol", "embeddings": []}
    r = post({"model": "smol", "input": "word " * 5000, "truncate": False})
    assert (r.status_code, r.json()) == (
        400, {"error": "the input length exceeds the context length"})
    assert post({"model": "smol", "input": "word " * 5000}).status_code == 200


def test_logprobs_generate_and_chat(server: Server) -> None:
    body = {"model": "smol", "prompt": "The capital of France is", "raw": True, "stream": False,
            "logprobs": True, "top_logprobs": 3, "options": {"temperature": 0, "num_predict": 5}}
    r = httpx.post(f"{server.url}/api/generate", json=body, timeout=60).json()
    lps = r["logprobs"]
    assert len(lps) == r["eval_count"] == 5
    assert "".join(lp["token"] for lp in lps) == r["response"]
    for lp in lps:
        assert lp["logprob"] <= 0 and bytes(lp["bytes"]).decode() == lp["token"]
        alts = lp["top_logprobs"]
        assert len(alts) == 3 and alts[0]["logprob"] >= alts[1]["logprob"] >= alts[2]["logprob"]
        # greedy: the chosen token is the most likely one
        assert alts[0]["token"] == lp["token"] and abs(alts[0]["logprob"] - lp["logprob"]) < 1e-6
    keys = list(r)
    assert keys.index("logprobs") > keys.index("eval_duration")  # generate: after metrics
    chat = {"model": "smol", "messages": [{"role": "user", "content": "Hi"}], "logprobs": True,
            "options": {"temperature": 0, "num_predict": 4}}
    with httpx.stream("POST", f"{server.url}/api/chat", json=chat, timeout=60) as s:
        chunks = [json.loads(line) for line in s.iter_lines() if line]
    streamed = [lp for c in chunks for lp in c.get("logprobs", [])]
    assert len(streamed) == 4 and all("top_logprobs" not in lp for lp in streamed)
    bad = httpx.post(f"{server.url}/api/generate", json={**body, "top_logprobs": 21})
    assert (bad.status_code, bad.json()) == (
        400, {"error": "top_logprobs must be between 0 and 20"})


CHATML_GO = ("{{- range .Messages }}<|im_start|>{{ .Role }}\n{{ .Content }}<|im_end|>\n"
             "{{ end }}<|im_start|>assistant\n")
FIM_GO = "<fim_prefix>{{ .Prompt }}<fim_suffix>{{ .Suffix }}<fim_middle>"


def test_go_template_renders_prompts(server: Server, client: ollama.Client) -> None:
    client.create(model="gochat", from_="smol", template=CHATML_GO, system="Be brief.")
    info = client.show("gochat")
    assert info.template == CHATML_GO and info.capabilities == ["completion"]
    opts = {"temperature": 0, "num_predict": 12}
    msgs = [{"role": "user", "content": "What is the capital of France?"}]
    via_go = client.chat(model="gochat", messages=msgs, options=opts).message.content
    # The same conversation rendered by hand and sent raw must give the same answer.
    raw = ("<|im_start|>system\nBe brief.<|im_end|>\n<|im_start|>user\n"
           "What is the capital of France?<|im_end|>\n<|im_start|>assistant\n")
    by_hand = client.generate(model="smol", prompt=raw, raw=True, options=opts).response
    assert via_go == by_hand


def test_template_override_and_suffix(server: Server, client: ollama.Client) -> None:
    opts = {"temperature": 0, "num_predict": 8}
    over = client.generate(model="smol", prompt="Hello", template="Q: {{ .Prompt }}\nA:",
                           options=opts).response
    assert over == client.generate(model="smol", prompt="Q: Hello\nA:", raw=True,
                                   options=opts).response
    r = httpx.post(f"{server.url}/api/generate", timeout=60, json={
        "model": "smol", "prompt": "def f(", "suffix": "return x", "stream": False})
    assert (r.status_code, r.json()) == (
        400, {"error": "registry.ollama.ai/library/smol:latest does not support insert"})
    client.create(model="fim", from_="smol", template=FIM_GO)
    assert "insert" in client.show("fim").capabilities
    fim = client.generate(model="fim", prompt="def add(a, b):\n", suffix="\n\nprint(add(1, 2))",
                          options=opts)
    assert fim.done


def test_bad_template_is_400_at_create(server: Server) -> None:
    r = httpx.post(f"{server.url}/api/create", timeout=60, json={
        "model": "broken", "from": "smol", "template": "{{ .Messages "})
    assert r.status_code == 400 and r.json()["error"].startswith("template error:")
    r = httpx.post(f"{server.url}/api/create", timeout=60, json={
        "model": "broken", "from": "smol", "template": "{{ nosuchfunc }}"})
    assert r.status_code == 400 and "not defined" in r.json()["error"]


def test_long_history_is_truncated_keeping_system_and_last(server: Server, client: ollama.Client,
                                                           tmp_path: object) -> None:
    client.create(model="short", from_="smol", parameters={"num_ctx": 256})
    filler = "This sentence is only here to fill the context window with words. " * 6
    msgs = [{"role": "system", "content": "You are Bob."}]
    for i in range(8):
        msgs += [{"role": "user", "content": f"Message {i}. {filler}"},
                 {"role": "assistant", "content": f"Reply {i}. {filler}"}]
    msgs.append({"role": "user", "content": "What is your name?"})
    r = client.chat(model="short", messages=msgs, options={"temperature": 0, "num_predict": 8})
    assert r.done and r.prompt_eval_count <= 256
    rendered = httpx.post(f"{server.url}/api/chat", timeout=60, json={
        "model": "short", "messages": msgs, "_debug_render_only": True}).json()
    text = rendered["_debug_info"]["rendered_template"]
    assert text.startswith("<|im_start|>system\nYou are Bob.<|im_end|>")  # system kept
    assert text.endswith("What is your name?<|im_end|>\n<|im_start|>assistant\n")  # last kept
    assert "Message 0." not in text and "Reply 7." in text  # oldest dropped, newest kept
    assert r.prompt_eval_count > 100
    bad = httpx.post(f"{server.url}/api/chat", timeout=60, json={
        "model": "short", "messages": msgs, "truncate": False, "stream": False})
    assert (bad.status_code, bad.json()) == (
        400, {"error": "the input length exceeds the context length"})


def test_images_on_text_only_model_is_400(server: Server) -> None:
    tiny_png = ("iVBORw0KGgoAAAANSUhEUgAAAAEAAAABCAYAAAAfFcSJAAAADUlEQVR42mNkYPhfDwAChwGA60e6kg"
                "AAAABJRU5ErkJggg==")
    for path, body in (("/api/generate", {"prompt": "What is this?", "images": [tiny_png]}),
                       ("/api/chat", {"messages": [{"role": "user", "content": "What is this?",
                                                    "images": [tiny_png]}]})):
        r = httpx.post(f"{server.url}{path}", json={"model": "smol", "stream": False, **body})
        assert r.status_code == 400
        assert r.json() == {
            "error": "registry.ollama.ai/library/smol:latest does not support vision"}


def test_unknown_options_are_ignored_and_logged(server: Server) -> None:
    r = httpx.post(f"{server.url}/api/generate", timeout=60, json={
        "model": "smol", "prompt": "Hi", "stream": False,
        "options": {"num_predict": 2, "not_an_option": 1}})
    assert r.status_code == 200 and r.json()["eval_count"] <= 2
    assert "invalid option provided option=not_an_option" in server.log()


def test_context_shift(server: Server, client: ollama.Client) -> None:
    # llama.cpp rounds contexts up to a multiple of 256: use exactly 256.
    client.create(model="tinyctx", from_="smol", parameters={"num_ctx": 256})
    opts = {"temperature": 0, "num_predict": 320}
    count = ", ".join(str(i) for i in range(1, 20)) + ","  # the model keeps counting
    shifted = client.generate(model="tinyctx", prompt=count, raw=True, options=opts)
    assert shifted.prompt_eval_count + shifted.eval_count > 256  # generated past num_ctx
    assert shifted.done_reason == "length"
    stopped = httpx.post(f"{server.url}/api/generate", timeout=120, json={
        "model": "tinyctx", "prompt": count, "raw": True, "stream": False, "shift": False,
        "options": opts}).json()
    assert stopped["done_reason"] == "length"
    assert stopped["prompt_eval_count"] + stopped["eval_count"] <= 256
