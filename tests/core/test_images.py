"""Images in requests and prompts (Ollama's server/routes.go GenerateHandler): Go's base64 for
``[]byte``, the ``[img-N]`` tags of Ollama's chatPrompt and generate, projector GGUFs, the vision
capability."""

from __future__ import annotations

import base64

import pytest
from hypothesis import given
from hypothesis import strategies as st

from pollama.core import prompt, show
from pollama.core import requests as rq
from pollama.core.errors import BadRequest
from pollama.core.jsonwire import go_base64_decode
from pollama.core.requests import Message

PNG = base64.b64encode(b"\x89PNG fake").decode()


@given(st.binary(max_size=64))
def test_base64_round_trip(data: bytes) -> None:
    text = base64.b64encode(data).decode()
    assert go_base64_decode(text) == data
    assert go_base64_decode(text[:3] + "\r\n" + text[3:]) == data  # Go skips CR and LF


@pytest.mark.parametrize("text, at", [
    # Go's base64.StdEncoding.Decode error offsets
    ("abc", 0), ("a", 0), ("ab=", 3), ("ab=c", 2), ("a===", 1), ("ab==x", 4),
    ("!abc", 0), ("abcd!", 4), ("é", 0), ("abcde", 4),
])
def test_base64_errors_name_the_byte(text: str, at: int) -> None:
    with pytest.raises(BadRequest, match=f"^illegal base64 data at input byte {at}$"):
        go_base64_decode(text)


def test_requests_check_images_as_go_decodes_them() -> None:
    with pytest.raises(BadRequest, match="illegal base64 data at input byte 0"):
        rq.parse_generate({"model": "m", "prompt": "x", "images": ["!!!!"]})
    with pytest.raises(BadRequest, match="illegal base64"):
        rq.parse_chat({"model": "m", "messages": [{"role": "user", "content": "x",
                                                   "images": ["abc"]}]})
    assert rq.parse_generate({"model": "m", "images": [PNG]}).images == (PNG,)


def test_chat_images_become_tags_counted_across_messages() -> None:
    msgs = [Message(role="user", content="first", images=(PNG, PNG)),
            Message(role="assistant", content="ok"),
            Message(role="user", content="see [img] here", images=(PNG,)),
            Message(role="user", content="[img] and", images=(PNG, PNG))]
    tagged = prompt.tag_images(msgs)
    assert [m.content for m in tagged] == [
        "[img-0][img-1]first", "ok", "see [img-2] here", "[img-4][img-3] and"]
    assert len(prompt.images_of(msgs)) == 5
    assert prompt.tag_images([Message(role="user", content="no images")]) == [
        Message(role="user", content="no images")]


def test_generate_puts_each_image_in_a_message_before_the_prompt() -> None:
    req = rq.parse_generate({"model": "m", "prompt": "Describe.", "images": [PNG, PNG]})
    msgs = prompt.generate_messages(req, prompt.ModelPrompting())
    assert [(m.role, m.content) for m in msgs] == [
        ("user", "[img-0]"), ("user", "[img-1]"), ("user", "Describe.")]
    # messages mode merges consecutive user messages, as Ollama's template execution does
    text = prompt.generate_prompt(req, prompt.ModelPrompting(
        go_template="{{ range .Messages }}<{{ .Role }}>{{ .Content }}{{ end }}"),
        today="2026-01-01")
    assert text == "<user>[img-0]\n\n[img-1]\n\nDescribe."


def test_vision_capability_and_modelfile() -> None:
    assert show.capabilities("{{ .Tools }}{{ .Prompt }}", go=True, vision=True) == [
        "completion", "tools", "vision"]
    assert show.capabilities(None, vision=True) == ["completion", "vision"]
    show.require_vision(has_projector=True, full_name="m")
    with pytest.raises(BadRequest, match="does not support vision"):
        show.require_vision(has_projector=False, full_name="m")
    text = show.modelfile_text(show.ModelParts(short_name="m:latest", model_path="/b/model",
                                               projectors=("/b/proj",)))
    assert "FROM /b/model\nFROM /b/proj\n" in text


def test_array_elements_are_checked_as_go_does() -> None:
    """Go names the element that failed and its element type; null elements are zero."""
    with pytest.raises(BadRequest, match="^json: cannot unmarshal number into Go struct field "
                                         "GenerateRequest.images of type api.ImageData$"):
        rq.parse_generate({"model": "m", "images": [PNG, 1]})
    with pytest.raises(BadRequest, match="^json: cannot unmarshal string into Go struct field "
                                         r"GenerateRequest.images of type \[\]api.ImageData$"):
        rq.parse_generate({"model": "m", "images": PNG})
    with pytest.raises(BadRequest, match="^json: cannot unmarshal string into Go struct field "
                                         "GenerateRequest.context of type int$"):
        rq.parse_generate({"model": "m", "context": [1, "2"]})
    with pytest.raises(BadRequest, match="messages.images of type api.ImageData$"):
        rq.parse_chat({"model": "m", "messages": [{"role": "user", "images": [True]}]})
    assert rq.parse_generate(
        {"model": "m", "images": [None], "context": [5, None]}).images == ("",)
    assert rq.parse_generate({"model": "m", "context": [5, None]}).context == (5, 0)


def test_show_text_has_a_projector_section() -> None:
    text = show.show_sections({}, {"family": "llama"}, ["completion", "vision"], "", None, [],
                              projector={"general.architecture": "clip",
                                         "general.parameter_count": 311_890_000,
                                         "clip.vision.embedding_length": 1024,
                                         "clip.vision.projection_dim": 4096})
    assert ("  Capabilities\n    completion\n    vision\n\n  Projector\n"
            "    architecture        clip\n    parameters          311.89M\n"
            "    embedding length    1024\n    dimensions          4096\n") in text


def test_place_images_for_the_runner() -> None:
    text, order = prompt.place_images("a[img-1]b[img-0][img-1]", 2, "<M>")
    assert (text, order) == ("a<M>b<M><M>", [1, 0, 1])
    assert prompt.place_images("no tags", 3, "<M>") == ("no tags", [])
    with pytest.raises(BadRequest, match="^invalid image index: 2$"):
        prompt.place_images("[img-2]", 2, "<M>")
