from __future__ import annotations

import pytest

from pollama.core import requests as rq
from pollama.core.errors import BadRequest


def test_generate_defaults() -> None:
    g = rq.parse_generate({"model": "m", "prompt": "p"})
    assert g.stream is True and g.raw is False and g.context is None and g.keep_alive is None
    assert g.options == {}


def test_null_body_is_empty_struct() -> None:
    assert rq.parse_generate(None).model == ""
    assert rq.parse_chat(None).messages == ()


def test_chat_messages_roles_lowercased() -> None:
    c = rq.parse_chat({"model": "m", "messages": [{"role": "USER", "content": "hi"}]})
    assert c.messages[0].role == "user" and c.messages[0].content == "hi"


@pytest.mark.parametrize(("body", "message"), [
    ({"messages": "x"}, "json: cannot unmarshal string into Go struct field ChatRequest.messages "
                        "of type []api.Message"),
    ({"messages": [1]}, "json: cannot unmarshal number into Go struct field ChatRequest.messages "
                        "of type api.Message"),
    ({"messages": [{"role": "user", "content": 5}]},
     "json: cannot unmarshal number into Go struct field ChatRequest.messages.content of type "
     "string"),
    ({"stream": "yes"}, "json: cannot unmarshal string into Go struct field ChatRequest.stream "
                        "of type bool"),
    ({"options": []}, "json: cannot unmarshal array into Go struct field ChatRequest.options of "
                      "type map[string]interface {}"),
    ({"options": {"temperature": "hot"}}, 'option "temperature" must be of type float32'),
    ({"options": {"num_predict": True}}, 'option "num_predict" must be of type integer'),
    ({"options": {"stop": [1]}}, 'option "stop" must be of type array'),
    ({"think": "lots"}, 'invalid think value: "lots" (must be "high", "medium", "low", "max", '
                        'true, or false)'),
    ({"top_logprobs": 21}, "top_logprobs must be between 0 and 20"),
    ({"keep_alive": True}, "Unsupported type: 'bool'"),
    ({"keep_alive": "5"}, 'time: missing unit in duration "5"'),
    ({"keep_alive": "5x"}, 'time: unknown unit "x" in duration "5x"'),
])
def test_chat_type_errors(body: dict[str, object], message: str) -> None:
    with pytest.raises(BadRequest) as err:
        rq.parse_chat({"model": "m", **body})
    assert err.value.message == message
    assert err.value.status_hint == 400


def test_non_object_body() -> None:
    with pytest.raises(BadRequest, match="cannot unmarshal array into Go value of type "
                                         "api.GenerateRequest"):
        rq.parse_generate([1])


def test_options_ints_truncated_unknown_ignored() -> None:
    g = rq.parse_generate({"model": "m",
                           "options": {"num_predict": 5.7, "bogus": 1, "seed": None}})
    assert g.options == {"num_predict": 5}


@pytest.mark.parametrize(("value", "ns"), [
    (300, 300_000_000_000), (1.5, 1_500_000_000), (-1, rq.FOREVER), ("10m", 600_000_000_000),
    ("1h30m", 5_400_000_000_000), ("-1m", rq.FOREVER), ("0", 0), (0, 0), ("250ms", 250_000_000),
    (None, None),
])
def test_keep_alive(value: object, ns: int | None) -> None:
    assert rq.parse_keep_alive(value) == ns


def test_create_and_pull_accept_legacy_name() -> None:
    assert rq.parse_create({"name": "x", "files": {"a.gguf": "sha256:" + "0" * 64}}).model == "x"
    assert rq.parse_pull({"name": "y"}).model == "y"
    c = rq.parse_create({"model": "x", "license": "MIT", "parameters": {"stop": "a", "zz": 1}})
    assert c.license == ("MIT",) and c.parameters == {"stop": ["a"]}


@pytest.mark.parametrize("fmt", [None, "", "json", {"type": "object"}])
def test_format_ok(fmt: object) -> None:
    rq.check_format(fmt)


@pytest.mark.parametrize("fmt", ["yaml", [1], 3])
def test_format_bad(fmt: object) -> None:
    with pytest.raises(BadRequest, match="invalid format"):
        rq.check_format(fmt)


@pytest.mark.parametrize("body", [
    {"model": "m", "system": "", "template": ""},  # what Ollama's Go client always sends
    {"model": "m", "system": None},
    {"model": "m"},
])
def test_show_empty_system_does_not_override(body: dict[str, object]) -> None:
    # Ollama's GetModelInfo replaces the model's SYSTEM only when ShowRequest.System != "".
    assert rq.parse_show(body).system is None


def test_show_system_override_and_template_ignored() -> None:
    req = rq.parse_show({"name": "m", "system": "be brief", "template": "{{ .Prompt }}"})
    assert req.model == "m" and req.system == "be brief"
    # ShowRequest.Template is deprecated: ignored since v0.2.6, so the request has no such field.
    assert not hasattr(req, "template")


def test_show_system_wrong_type_is_go_error() -> None:
    with pytest.raises(BadRequest) as err:
        rq.parse_show({"model": "m", "system": 1})
    assert err.value.message == ("json: cannot unmarshal number into Go struct field "
                                 "ShowRequest.system of type string")
