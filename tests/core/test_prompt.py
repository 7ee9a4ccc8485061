from __future__ import annotations

import pytest

from pollama.core import generation, prompt
from pollama.core.errors import BadRequest
from pollama.core.requests import Message, parse_chat, parse_generate

CHATML = ("{% for message in messages %}{{'<|im_start|>' + message['role'] + '\n' + "
          "message['content'] + '<|im_end|>' + '\n'}}{% endfor %}"
          "{% if add_generation_prompt %}{{ '<|im_start|>assistant\n' }}{% endif %}")
MODEL = prompt.ModelPrompting(chat_template=CHATML, system="Be brief.",
                              messages=(Message(role="user", content="u0"),
                                        Message(role="assistant", content="a0")))


def test_chat_prepends_system_and_modelfile_messages() -> None:
    req = parse_chat({"model": "m", "messages": [{"role": "user", "content": "hi"}]})
    text = generation.chat_prompt(req, MODEL, today="x")
    assert text == ("<|im_start|>system\nBe brief.<|im_end|>\n<|im_start|>user\nu0<|im_end|>\n"
                    "<|im_start|>assistant\na0<|im_end|>\n<|im_start|>user\nhi<|im_end|>\n"
                    "<|im_start|>assistant\n")


def test_chat_request_system_suppresses_model_system() -> None:
    req = parse_chat({"model": "m", "messages": [{"role": "system", "content": "S"},
                                                 {"role": "user", "content": "hi"}]})
    assert "Be brief." not in generation.chat_prompt(req, MODEL, today="x")


def test_generate_system_override_and_context_skips_messages() -> None:
    req = parse_generate({"model": "m", "prompt": "p", "system": "Other", "context": [1]})
    text = prompt.generate_prompt(req, MODEL, today="x")
    assert text.startswith("<|im_start|>system\nOther<|im_end|>\n<|im_start|>user\np")
    assert "u0" not in text


def test_raw() -> None:
    req = parse_generate({"model": "m", "prompt": "<raw>", "raw": True})
    assert prompt.generate_prompt(req, MODEL, today="x") == "<raw>"
    with pytest.raises(BadRequest):
        prompt.generate_prompt(parse_generate({"model": "m", "prompt": "p", "raw": True,
                                               "system": "s"}), MODEL, today="x")


def test_no_template_falls_back_to_prompt() -> None:
    req = parse_generate({"model": "m", "prompt": "p"})
    assert prompt.generate_prompt(req, prompt.ModelPrompting(), today="x") == "p"
