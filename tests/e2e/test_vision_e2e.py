"""Images through a multimodal model: SmolLM2 plus a projector (mmproj) layer, served by a
real runner that evaluates image embeddings with llama.cpp's mtmd.

No real small vision model can be fetched here (only PyPI/npm/Debian are reachable), so the
projector is tests/tinymmproj.py's: a real CLIP/LLaVA-style mmproj GGUF, loaded and run by
llama.cpp exactly as a real one is, but with small seeded random weights. What it shows is the
whole path (create, show, prompt tags, projector load, image embeddings in the context, metrics
and errors); it cannot show that the model understands the picture."""

from __future__ import annotations

import base64
import json
import os
from typing import Any

import httpx
import ollama
import pytest

from tests import tinymmproj
from tests.conftest import Server, sha256_file
from tests.e2e.test_cli import pollama

pytestmark = pytest.mark.e2e

POSITIONS = tinymmproj.n_image_positions()  # 16 per image
RED = base64.b64encode(tinymmproj.png(
    40, 24, lambda x, y: (255, x * 6 % 256, y * 10 % 256))).decode()
BLUE = base64.b64encode(tinymmproj.png(
    32, 32, lambda x, y: (0, 0, 255) if (x // 4 + y // 4) % 2 else (240, 240, 240))).decode()
OPTS = {"temperature": 0, "num_predict": 8}


def _upload(c: httpx.Client, path: str) -> str:
    digest = "sha256:" + sha256_file(path)
    if c.head(f"/api/blobs/{digest}").status_code != 200:
        with open(path, "rb") as f:
            assert c.post(f"/api/blobs/{digest}", content=f.read()).status_code == 201
    return digest


@pytest.fixture(scope="module")
def vision_model(server: Server, smollm2_gguf: str,
                 tmp_path_factory: pytest.TempPathFactory) -> str:
    mmproj = tinymmproj.write_mmproj(str(tmp_path_factory.mktemp("mm") / "mmproj.gguf"), 576)
    with httpx.Client(base_url=server.url, timeout=120) as c:
        files = {"smollm2.gguf": _upload(c, smollm2_gguf), "mmproj.gguf": _upload(c, mmproj)}
        r = c.post("/api/create", json={"model": "smolvision", "files": files})
        statuses = [json.loads(line)["status"] for line in r.text.splitlines()]
        assert statuses[-1] == "success", statuses
        # FROM an existing model plus a projector file, as a two-line Modelfile would send it
        r = c.post("/api/create", json={"model": "smolvision2", "from": "smol",
                                        "files": {"mmproj.gguf": files["mmproj.gguf"]},
                                        "stream": False})
        assert r.json() == {"status": "success"}
    return "smolvision"


def test_show_reports_vision(server: Server, vision_model: str) -> None:
    c = ollama.Client(host=server.url)
    for name in (vision_model, "smolvision2"):
        info = c.show(name)
        assert "vision" in (info.capabilities or []) and "completion" in (info.capabilities or [])
        assert (info.modelfile or "").count("\nFROM ") == 2
        raw = httpx.post(f"{server.url}/api/show", json={"model": name}).json()
        assert raw["projector_info"]["general.architecture"] == "clip"
        assert list(raw).index("projector_info") == list(raw).index("model_info") + 1
    assert "vision" not in c.show("smol").capabilities
    layers = httpx.get(f"{server.url}/v2/library/smolvision/manifests/latest").json()["layers"]
    assert "application/vnd.ollama.image.projector" in [x["mediaType"] for x in layers]


def _chat(server: Server, model: str, images: list[str] | None, **extra: object) -> dict:
    msg: dict[str, object] = {"role": "user", "content": "What is in this picture?"}
    if images is not None:
        msg["images"] = images
    r = httpx.post(f"{server.url}/api/chat", timeout=120, json={
        "model": model, "messages": [msg], "stream": False, "options": OPTS, **extra})
    assert r.status_code == 200, r.text
    return r.json()


def test_chat_with_an_image(server: Server, vision_model: str) -> None:
    plain = _chat(server, vision_model, None)
    one = _chat(server, vision_model, [RED])
    two = _chat(server, vision_model, [RED, BLUE])
    assert one["done"] and one["eval_count"] > 0
    # each image fills its positions in the context in place of its [img-N] tag (a few
    # text tokens), so every image adds about POSITIONS to the prompt
    for more, fewer in ((one, plain), (two, one)):
        added = more["prompt_eval_count"] - fewer["prompt_eval_count"]
        assert POSITIONS - 8 <= added <= POSITIONS + 8, (added, POSITIONS)
    debug = httpx.post(f"{server.url}/api/chat", timeout=60, json={
        "model": vision_model, "stream": False, "_debug_render_only": True,
        "messages": [{"role": "user", "content": "Hi", "images": [RED, BLUE]}]}).json()
    assert debug["_debug_info"]["image_count"] == 2
    assert "[img-0][img-1]Hi" in debug["_debug_info"]["rendered_template"]


def test_the_image_reaches_the_model(server: Server, vision_model: str) -> None:
    """Different pictures, same text: the next-token distribution differs."""
    def first_top(images: list[str]) -> list[tuple[str, float]]:
        r = _chat(server, vision_model, images, logprobs=True, top_logprobs=5)
        return [(t["token"], round(t["logprob"], 4)) for t in r["logprobs"][0]["top_logprobs"]]
    assert first_top([RED]) != first_top([BLUE])
    assert first_top([RED]) == first_top([RED])  # and it is deterministic


def test_generate_with_images_and_official_client(server: Server, vision_model: str) -> None:
    c = ollama.Client(host=server.url)
    r = c.generate(model=vision_model, prompt="Describe the image.",
                   images=[base64.b64decode(RED)], options=OPTS)
    assert r.done and r.eval_count
    plain = c.generate(model=vision_model, prompt="Describe the image.", options=OPTS)
    assert (r.prompt_eval_count or 0) > (plain.prompt_eval_count or 0)
    # raw: the caller places the image with its tag
    raw = httpx.post(f"{server.url}/api/generate", timeout=120, json={
        "model": vision_model, "raw": True, "stream": False, "images": [RED], "options": OPTS,
        "prompt": "<|im_start|>user\n[img-0]Describe.<|im_end|>\n<|im_start|>assistant\n"}).json()
    assert raw["done"] and raw["prompt_eval_count"] >= POSITIONS
    # the [img] placeholder in chat content is where the image goes
    chat = c.chat(model=vision_model, options=OPTS, messages=[
        {"role": "user", "content": "Look: [img] and tell me.",
         "images": [base64.b64decode(BLUE)]}])
    assert chat.done


def test_vision_models_get_at_least_2048_positions(server: Server, vision_model: str) -> None:
    r = httpx.post(f"{server.url}/api/generate", timeout=120, json={
        "model": vision_model, "options": {"num_ctx": 512}})
    assert r.status_code == 200
    ps = httpx.get(f"{server.url}/api/ps").json()["models"]
    assert [m["context_length"] for m in ps if m["name"].startswith(vision_model)] == [2048]


def test_image_errors(server: Server, vision_model: str) -> None:
    post = lambda path, body: httpx.post(  # noqa: E731
        f"{server.url}{path}", json=body, timeout=120)
    r = post("/api/chat", {"model": vision_model, "messages": [
        {"role": "user", "content": "x", "images": ["abc"]}]})
    assert (r.status_code, r.json()) == (400, {"error": "illegal base64 data at input byte 0"})
    r = post("/api/generate", {"model": vision_model, "prompt": "x", "stream": False,
                               "images": [base64.b64encode(b"not a picture").decode()]})
    assert r.status_code == 400 and "failed to decode image 0" in r.json()["error"]
    r = post("/api/generate", {"model": vision_model, "raw": True, "prompt": "[img-3]",
                               "images": [RED], "stream": False})
    assert (r.status_code, r.json()) == (400, {"error": "invalid image index: 3"})
    r = post("/api/generate", {"model": "smol", "prompt": "x", "images": [RED]})
    assert r.status_code == 400 and "does not support vision" in r.json()["error"]
    # the runner is still healthy after the errors
    assert _chat(server, vision_model, [RED])["done"]


def test_cli_create_two_froms_and_run_with_an_image_path(server: Server, smollm2_gguf: str,
                                                        tmp_path: Any) -> None:
    """A Modelfile with the model and the projector as two FROM lines; `pollama run` takes
    image paths out of the prompt for a vision model, as `ollama run` does."""
    mmproj = tinymmproj.write_mmproj(str(tmp_path / "mmproj.gguf"), 576)
    (tmp_path / "Modelfile").write_text(
        f"FROM {smollm2_gguf}\nFROM ./mmproj.gguf\n"
        "PARAMETER temperature 0\nPARAMETER num_predict 6\n")
    assert os.path.exists(mmproj)
    r = pollama(server, "create", "vis-cli", "-f", str(tmp_path / "Modelfile"))
    assert r.returncode == 0 and "success" in r.stderr, r.stderr
    shown = pollama(server, "show", "vis-cli")
    assert "  Projector\n    architecture        clip\n" in shown.stdout, shown.stdout
    assert "    dimensions          576\n" in shown.stdout
    image = tmp_path / "red.png"
    image.write_bytes(base64.b64decode(RED))
    with_image = pollama(server, "run", "vis-cli", "--verbose", f"What is this? {image}")
    assert with_image.returncode == 0, with_image.stderr
    assert f"Added image '{image}'" in with_image.stderr
    without = pollama(server, "run", "vis-cli", "--verbose", "What is this?")

    def prompt_tokens(out: str) -> int:
        line = next(x for x in out.splitlines() if x.startswith("prompt eval count:"))
        return int(line.split()[3])
    assert prompt_tokens(with_image.stderr) - prompt_tokens(without.stderr) >= POSITIONS - 8
    # a path that is not a file stays text
    missing = pollama(server, "run", "vis-cli", f"What is {tmp_path}/nothing.png?")
    assert missing.returncode == 0 and "Added image" not in missing.stderr
