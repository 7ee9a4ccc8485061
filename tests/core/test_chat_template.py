"""core/chat_template.py: GGUF jinja chat templates rendered in a sandbox, with Hugging Face's
helpers and the date passed in; every failure is our TemplateError."""

from __future__ import annotations

import pytest

from pollama.core import chat_template
from pollama.core.errors import BadRequest, TemplateError


def test_smollm2_template() -> None:
    tmpl = ("{% for message in messages %}{% if loop.first and messages[0]['role'] != 'system' %}"
            "{{ '<|im_start|>system\nYou are a helpful AI assistant named SmolLM, trained by "
            "Hugging Face<|im_end|>\n' }}{% endif %}{{'<|im_start|>' + message['role'] + '\n' + "
            "message['content'] + '<|im_end|>' + '\n'}}{% endfor %}{% if add_generation_prompt %}"
            "{{ '<|im_start|>assistant\n' }}{% endif %}")
    out = chat_template.render(tmpl, [{"role": "user", "content": "Hi"}])
    assert out == ("<|im_start|>system\nYou are a helpful AI assistant named SmolLM, trained by "
                   "Hugging Face<|im_end|>\n<|im_start|>user\nHi<|im_end|>\n"
                   "<|im_start|>assistant\n")


@pytest.mark.parametrize("src", [
    "{% for %}", "{{ raise_exception('nope') }}", "{{ messages[5]['x'] }}",
    "{{ ''.__class__.__mro__ }}", "{{ 1/0 }}",
])
def test_template_errors_are_ours(src: str) -> None:
    with pytest.raises(BadRequest, match="template error"):
        chat_template.render(src, [{"role": "user", "content": "x"}])


def test_context_bos_eos_and_generation_prompt() -> None:
    src = "{{ bos_token }}{% for m in messages %}{{ m.content }}{{ eos_token }}{% endfor %}" \
          "{% if add_generation_prompt %}>{% endif %}"
    messages = [{"role": "user", "content": "a"}, {"role": "assistant", "content": "b"}]
    assert chat_template.render(src, messages, bos_token="<s>", eos_token="</s>") == \
        "<s>a</s>b</s>>"
    assert chat_template.render(src, messages, add_generation_prompt=False) == "ab"


def test_tools_are_defined_only_when_given() -> None:
    src = "{% if tools is defined %}{{ tools | length }} tools{% else %}none{% endif %}"
    assert chat_template.render(src, []) == "none"
    assert chat_template.render(src, [], tools=[]) == "none"
    assert chat_template.render(src, [], tools=[{"type": "function"}] * 2) == "2 tools"


def test_extra_variables_reach_the_template() -> None:
    src = "{% if enable_thinking %}think{% else %}plain{% endif %}"
    assert chat_template.render(src, [], extra={"enable_thinking": True}) == "think"
    assert chat_template.render(src, []) == "plain"


def test_strftime_now_uses_the_date_passed_in() -> None:
    src = "{{ strftime_now('%d %b %Y') }}"
    assert chat_template.render(src, [], today="2024-07-26") == "26 Jul 2024"
    assert chat_template.render(src, [], today="not a date") == "not a date"


def test_tojson_keeps_unicode_and_takes_hf_arguments() -> None:
    messages = [{"role": "user", "content": "é", "n": {"b": 1, "a": 2}}]
    assert chat_template.render("{{ messages[0] | tojson }}", messages) == \
        '{"role": "user", "content": "é", "n": {"b": 1, "a": 2}}'
    assert chat_template.render("{{ messages[0].n | tojson(indent=1, sort_keys=True) }}",
                                messages) == '{\n "a": 2,\n "b": 1\n}'


def test_loop_controls_and_block_trimming() -> None:
    src = ("{% for m in messages %}\n{% if loop.index > 2 %}{% break %}{% endif %}\n"
           "{{ m.content }}{% endfor %}")
    messages = [{"role": "user", "content": str(i)} for i in range(5)]
    assert chat_template.render(src, messages) == "01"


def test_raise_exception_carries_the_templates_message() -> None:
    with pytest.raises(TemplateError) as info:
        chat_template.render("{{ raise_exception('Conversation roles must alternate') }}", [])
    assert info.value.message == "template error: Conversation roles must alternate"
    assert info.value.status_hint == 400


def test_the_sandbox_refuses_changing_values() -> None:
    with pytest.raises(TemplateError):
        chat_template.render("{{ messages.append(1) }}", [])


def test_compiled_templates_are_reused() -> None:
    src = "{{ messages | length }}"
    assert chat_template.compile_template(src) is chat_template.compile_template(src)
