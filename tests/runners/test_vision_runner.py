"""runners/vision.py evaluates prompts with images into a real Llama (SmolLM2-135M) through
llama.cpp's mtmd, with the tiny random projector from tests/tinymmproj.py."""

from __future__ import annotations

import os
from collections.abc import Iterator
from typing import Any

import numpy as np
import pytest

from pollama.runners import vision
from tests import tinymmproj

MARKER = "<__media__>"
PROMPT = f"<|im_start|>user\n{MARKER}What is in this image?<|im_end|>\n<|im_start|>assistant\n"
IMAGE_POSITIONS = tinymmproj.n_image_positions()  # 16: a 4x4 grid of 8px patches

png, bmp = tinymmproj.png, tinymmproj.bmp


RED = png(40, 24, lambda x, y: (255, x * 6 % 256, y * 10 % 256))  # not square: padded
BLUE = png(32, 32, lambda x, y: (0, 0, 255) if (x // 4 + y // 4) % 2 else (240, 240, 240))


@pytest.fixture(scope="module")
def mmproj(tmp_path_factory: pytest.TempPathFactory) -> str:
    return tinymmproj.write_mmproj(str(tmp_path_factory.mktemp("mmproj") / "mmproj.gguf"), 576)


@pytest.fixture(scope="module")
def llm(smollm2_gguf: str) -> Iterator[Any]:
    import llama_cpp

    model = llama_cpp.Llama(smollm2_gguf, n_ctx=2048, n_threads=2, verbose=False, seed=1)
    yield model
    model.close()


@pytest.fixture(scope="module")
def projector(llm: Any, mmproj: str) -> Iterator[vision.Projector]:
    with vision.Projector(llm, mmproj, n_threads=2, use_gpu=False) as p:
        yield p


def last_logits(llm: Any) -> np.ndarray:
    import llama_cpp

    ptr = llama_cpp.llama_get_logits_ith(llm._ctx.ctx, -1)
    return np.ctypeslib.as_array(ptr, shape=(llm.n_vocab(),)).copy()


def test_tiny_mmproj_is_small_and_deterministic(tmp_path: Any) -> None:
    a = tinymmproj.write_mmproj(str(tmp_path / "a.gguf"))
    b = tinymmproj.write_mmproj(str(tmp_path / "b.gguf"))
    with open(a, "rb") as fa, open(b, "rb") as fb:
        assert fa.read() == fb.read()
    assert os.path.getsize(a) < 2 * 1024 * 1024
    assert not [f for f in os.listdir(tmp_path) if f.startswith(".tinymm-")]


def test_projector_pairs_with_the_model(projector: vision.Projector) -> None:
    assert projector.supports_vision
    assert projector.marker == MARKER == vision.default_marker()
    assert projector.image_positions(RED) == IMAGE_POSITIONS
    assert projector.image_positions(BLUE) == IMAGE_POSITIONS


def test_projector_of_the_wrong_width_is_refused(llm: Any, tmp_path: Any) -> None:
    path = tinymmproj.write_mmproj(str(tmp_path / "wide.gguf"), 640)
    with pytest.raises(ValueError, match="unable to load projector"):
        vision.Projector(llm, path, n_threads=1, use_gpu=False)


def test_image_prompt_then_generation_continues(llm: Any, projector: vision.Projector) -> None:
    text_only = llm.tokenize(PROMPT.replace(MARKER, "").encode(), add_bos=True, special=True)
    tokens = projector.eval_prompt(llm, PROMPT, [RED], add_bos=True)

    assert tokens.count(vision.PLACEHOLDER) == IMAGE_POSITIONS
    assert llm.n_tokens == len(tokens) > len(text_only)
    assert llm.input_ids[: llm.n_tokens].tolist() == tokens
    # mtmd tokenizes the text around the marker separately; SmolLM2 splits it the same way.
    assert [t for t in tokens if t != vision.PLACEHOLDER] == list(text_only)

    expected_first = int(np.argmax(last_logits(llm)))
    out = []
    for tok in llm.generate(tokens, temp=0.0, top_k=1):  # the whole prompt is cached: no eval
        out.append(tok)
        if len(out) == 6:
            break
    assert out[0] == expected_first
    assert llm.n_tokens == len(tokens) + len(out) - 1
    assert llm.input_ids[: len(tokens)].tolist() == tokens
    assert llm.detokenize(out)


def test_generate_with_reset_false_and_no_tokens(llm: Any, projector: vision.Projector) -> None:
    tokens = projector.eval_prompt(llm, PROMPT, [BLUE], add_bos=True)
    expected_first = int(np.argmax(last_logits(llm)))
    gen = llm.generate([], reset=False, temp=0.0, top_k=1)
    assert next(gen) == expected_first
    gen.close()
    assert llm.input_ids[: len(tokens)].tolist() == tokens


def test_the_image_feeds_the_model(llm: Any, projector: vision.Projector) -> None:
    projector.eval_prompt(llm, PROMPT, [RED], add_bos=True)
    red = last_logits(llm)
    projector.eval_prompt(llm, PROMPT, [BLUE], add_bos=True)
    blue = last_logits(llm)
    assert np.abs(red - blue).max() > 1e-2
    # Again from a context that holds the BLUE prompt: the text before the image is reused,
    # the image and the rest are decoded afresh, and the result is the same as from scratch.
    projector.eval_prompt(llm, PROMPT, [RED], add_bos=True)
    np.testing.assert_allclose(last_logits(llm), red, atol=1e-3)


def test_bmp_is_accepted(llm: Any, projector: vision.Projector) -> None:
    pixel: Pixel = lambda x, y: (255, x * 6 % 256, y * 10 % 256)
    projector.eval_prompt(llm, PROMPT, [png(40, 24, pixel)], add_bos=True)
    from_png = last_logits(llm)
    projector.eval_prompt(llm, PROMPT, [bmp(40, 24, pixel)], add_bos=True)
    np.testing.assert_allclose(last_logits(llm), from_png, atol=1e-3)


def test_prompt_may_end_with_an_image(llm: Any, projector: vision.Projector) -> None:
    logits = []
    for image in (RED, BLUE):
        tokens = projector.eval_prompt(llm, f"Describe this: {MARKER}", [image], add_bos=True)
        assert tokens[-IMAGE_POSITIONS:] == [vision.PLACEHOLDER] * IMAGE_POSITIONS
        assert llm.n_tokens == len(tokens)
        logits.append(last_logits(llm))
        gen = llm.generate(tokens, temp=0.0, top_k=1)
        assert next(gen) == int(np.argmax(logits[-1]))
        gen.close()
    assert np.abs(logits[0] - logits[1]).max() > 1e-2


def test_two_images(llm: Any, projector: vision.Projector) -> None:
    prompt = f"First {MARKER} then {MARKER}, compare."
    tokens = projector.eval_prompt(llm, prompt, [RED, BLUE], add_bos=True)
    assert tokens.count(vision.PLACEHOLDER) == 2 * IMAGE_POSITIONS
    assert llm.n_tokens == len(tokens)


@pytest.mark.parametrize("data", [
    b"not an image",
    b"",
    b"\x89PNG\r\n\x1a\n" + b"\x00" * 64,  # a PNG signature, then garbage
    b"\xff\xd8\xff\xe0" + b"garbage" * 10,  # a JPEG start, then garbage
    b"RIFF\x00\x00\x00\x00WAVEfmt ",  # audio is not an image
])
def test_undecodable_image_is_a_clear_error(llm: Any, projector: vision.Projector,
                                            data: bytes) -> None:
    projector.eval_prompt(llm, PROMPT, [RED], add_bos=True)
    before = (llm.n_tokens, llm.input_ids[: llm.n_tokens].tolist())
    with pytest.raises(ValueError, match="failed to decode image 1"):
        projector.eval_prompt(llm, f"{MARKER}{MARKER}", [BLUE, data], add_bos=True)
    # Bad input is refused before anything is evaluated: the context is as it was.
    assert (llm.n_tokens, llm.input_ids[: llm.n_tokens].tolist()) == before


@pytest.mark.parametrize("prompt, n_images", [
    (f"{MARKER} and {MARKER}", 1),
    ("no marker here", 1),
    (f"{MARKER}", 0),
])
def test_marker_and_image_counts_must_match(llm: Any, projector: vision.Projector,
                                            prompt: str, n_images: int) -> None:
    with pytest.raises(ValueError, match="marks"):
        projector.eval_prompt(llm, prompt, [RED] * n_images, add_bos=True)


def test_prompt_longer_than_the_context(llm: Any, projector: vision.Projector) -> None:
    with pytest.raises(ValueError, match="context holds 2048"):
        projector.eval_prompt(llm, "word " * 2100 + MARKER, [RED], add_bos=True)


def test_closed_projector(llm: Any, mmproj: str) -> None:
    p = vision.Projector(llm, mmproj, n_threads=1, use_gpu=False)
    p.close()
    p.close()
    with pytest.raises(ValueError, match="closed"):
        p.eval_prompt(llm, PROMPT, [RED], add_bos=True)
