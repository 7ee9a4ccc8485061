"""The REPL session: commands applied, requests built, /show texts, --think words."""

from __future__ import annotations

import pytest

from pollama.core import repl_commands as rc
from pollama.core.repl_session import (Session, go_v, modelfile_with_template, parse_think_flag,
                                       show_text, think_args)


def user(text: str) -> dict[str, str]:
    return {"role": "user", "content": text}


def test_set_system_replaces_a_trailing_system_message_else_appends() -> None:
    s = Session(model="m")
    assert s.apply(rc.SetSystem(text="one")) == "Set system message."
    s.apply(rc.SetSystem(text="two"))
    assert s.messages == [{"role": "system", "content": "two"}]
    s.turn_request(user("hi"))
    s.record_answer("hello")
    s.apply(rc.SetSystem(text="three"))
    assert [m["role"] for m in s.messages] == ["system", "user", "assistant", "system"]
    assert s.system == "three"


def test_clear_keeps_the_system_message() -> None:
    s = Session(model="m")
    s.turn_request(user("hi"))
    s.record_answer("hello")
    assert s.apply(rc.Clear()) == "Cleared session context"
    assert s.messages == []
    s.apply(rc.SetSystem(text="sys"))
    s.turn_request(user("hi"))
    s.apply(rc.Clear())
    assert s.messages == [{"role": "system", "content": "sys"}]


def test_modes_and_options() -> None:
    s = Session(model="m")
    s.apply(rc.SetParameter(name="num_predict", value=8, raw=("8",)))
    s.apply(rc.SetFormat(format="json"))
    s.apply(rc.SetThink(value="high"))
    s.apply(rc.SetVerbose(on=True))
    s.apply(rc.SetWordWrap(on=False))
    s.apply(rc.SetHistory(on=False))
    assert (s.verbose, s.wordwrap, s.history, s.think_explicit) == (True, False, False, True)
    path, body = s.turn_request(user("hi"))
    assert path == "/api/chat"
    assert body == {"model": "m", "messages": [user("hi")], "options": {"num_predict": 8},
                    "format": "json", "think": "high"}
    s.apply(rc.SetFormat(format=""))
    assert "format" not in s.turn_request(user("again"))[1]


def test_chat_carries_the_conversation() -> None:
    s = Session(model="m", keep_alive="10m")
    s.turn_request(user("one"))
    s.record_answer("first", thinking="hmm")
    _, body = s.turn_request(user("two"))
    assert body["messages"] == [user("one"),
                                {"role": "assistant", "content": "first", "thinking": "hmm"},
                                user("two")]
    assert body["keep_alive"] == "10m"


def test_interrupted_empty_answer_keeps_only_the_question() -> None:
    s = Session(model="m")
    s.turn_request(user("one"))
    s.record_answer("")
    assert s.messages == [user("one")]


def test_refused_turn_leaves_no_trace() -> None:
    s = Session(model="m")
    s.turn_request(user("one"))
    s.drop_last_user()
    assert s.messages == []


def test_template_mode_uses_generate_with_context() -> None:
    s = Session(model="m")
    s.apply(rc.SetSystem(text="be brief"))
    assert s.apply(rc.SetTemplate(text="{{ .Prompt }}")) == "Set prompt template."
    path, body = s.turn_request({"role": "user", "content": "hi", "images": ["aW1n"]})
    assert path == "/api/generate"
    assert body == {"model": "m", "prompt": "hi", "template": "{{ .Prompt }}",
                    "system": "be brief", "images": ["aW1n"]}
    s.record_answer("hello", context=[1, 2, 3])
    _, body = s.turn_request(user("more"))
    assert body["context"] == [1, 2, 3]
    s.apply(rc.Clear())
    assert "context" not in s.turn_request(user("fresh"))[1]


def test_one_shot_generate_request() -> None:
    s = Session(model="m", format={"type": "object"}, think=False, keep_alive="0")
    assert s.generate_request("hi") == {"model": "m", "prompt": "hi", "format": {"type": "object"},
                                        "think": False, "keep_alive": "0"}


def test_load_request() -> None:
    assert Session(model="m").load_request() == {"model": "m"}
    assert Session(model="m", think=True, keep_alive="5m").load_request() == {
        "model": "m", "keep_alive": "5m", "think": True}


def test_model_info_turns_thinking_on_unless_the_user_chose() -> None:
    s = Session(model="m")
    s.take_model_info({"capabilities": ["completion", "thinking"],
                       "messages": [user("saved")]})
    assert s.think is True
    assert s.loaded_messages == [user("saved")]
    s.take_model_info({"capabilities": ["completion"]})
    assert s.think is None
    s = Session(model="m", think=False, think_explicit=True)
    s.take_model_info({"capabilities": ["thinking"]})
    assert s.think is False


def test_switch_model_keeps_nothing_of_the_conversation() -> None:
    s = Session(model="a", options={"seed": 1})
    s.apply(rc.SetSystem(text="sys"))
    s.apply(rc.SetTemplate(text="t"))
    s.turn_request(user("hi"))
    s.record_answer("yo", context=[5])
    s.switch_model("b", {"messages": [user("b's own")]})
    assert (s.model, s.messages, s.system, s.template, s.context) == ("b", [], "", None, None)
    assert s.loaded_messages == [user("b's own")]
    assert s.options == {"seed": 1}  # parameters stay, as in Ollama


def test_create_request_is_ollamas_new_create_request() -> None:
    s = Session(model="smol")
    assert s.create_request("x") == {"model": "x", "from": "smol", "stream": False}
    s.take_model_info({"messages": [user("old q"), {"role": "assistant", "content": "old a"}]})
    s.apply(rc.SetSystem(text="pirate"))
    s.apply(rc.SetParameter(name="num_predict", value=7, raw=("7",)))
    s.turn_request({"role": "user", "content": "q", "images": ["aW1n"]})
    s.record_answer("a", thinking="t")
    assert s.create_request("saved", parent_model="base") == {
        "model": "saved", "from": "base", "stream": False, "system": "pirate",
        "parameters": {"num_predict": 7},
        "messages": [user("old q"), {"role": "assistant", "content": "old a"},
                     {"role": "system", "content": "pirate"}, user("q"),
                     {"role": "assistant", "content": "a"}]}
    s.apply(rc.SetTemplate(text="{{ .Prompt }}"))
    assert s.create_request("t")["template"] == "{{ .Prompt }}"


def test_show_request_sends_the_session_system() -> None:
    s = Session(model="m")
    assert s.show_request() == {"model": "m"}
    s.apply(rc.SetSystem(text="sys"))
    s.apply(rc.SetParameter(name="seed", value=1, raw=("1",)))
    assert s.show_request() == {"model": "m", "system": "sys", "options": {"seed": 1}}


INFO = {"modelfile": '# Modelfile generated by "pollama show"\n# FROM m\n\nFROM /blobs/x\n'
                     'TEMPLATE "{{ .Prompt }}"\nPARAMETER num_predict 200\n',
        "parameters": 'num_predict                    200\nstop                           "<x>"',
        "template": "{{ .Prompt }}", "system": "model sys",
        "details": {"family": "llama", "parameter_size": "135M", "quantization_level": "Q4_1"},
        "model_info": {"llama.context_length": 2048}, "capabilities": ["completion"]}


def test_show_texts() -> None:
    s = Session(model="m")
    assert show_text(rc.ShowTopic.LICENSE, INFO, s) == (
        "No license was specified for this model.\n", False)
    assert show_text(rc.ShowTopic.LICENSE, {"license": "MIT"}, s) == ("MIT\n", False)
    assert show_text(rc.ShowTopic.SYSTEM, INFO, s) == ("model sys\n\n", False)
    assert show_text(rc.ShowTopic.SYSTEM, {}, s) == (
        "No system message was specified for this model.\n", False)
    assert show_text(rc.ShowTopic.TEMPLATE, INFO, s) == ("{{ .Prompt }}\n", False)
    assert show_text(rc.ShowTopic.TEMPLATE, {}, s) == (
        "No prompt template was specified for this model.\n", False)
    assert show_text(rc.ShowTopic.PARAMETERS, {}, s) == (
        "Model defined parameters:\n  No additional parameters were specified for this model."
        "\n\n", False)
    info, err = show_text(rc.ShowTopic.INFO, INFO, s)
    assert err and "  Model\n" in info and "135M" in info
    s.apply(rc.SetSystem(text="mine"))
    s.apply(rc.SetParameter(name="stop", value=["a", "b"], raw=("a", "b")))
    s.apply(rc.SetParameter(name="temperature", value=0.5, raw=("0.5",)))
    assert show_text(rc.ShowTopic.SYSTEM, INFO, s) == ("mine\n\n", False)
    assert show_text(rc.ShowTopic.PARAMETERS, INFO, s) == ((
        "Model defined parameters:\n"
        "  num_predict                    200\n"
        '  stop                           "<x>"\n'
        "\n"
        "User defined parameters:\n"
        "  stop                           [a b]\n"
        "  temperature                    0.5\n"
        "\n"), False)


def test_show_with_a_session_template() -> None:
    s = Session(model="m")
    s.apply(rc.SetTemplate(text="{{ .System }} {{ .Prompt }}"))
    assert show_text(rc.ShowTopic.TEMPLATE, INFO, s) == ("{{ .System }} {{ .Prompt }}\n", False)
    text, _ = show_text(rc.ShowTopic.MODELFILE, INFO, s)
    assert text.startswith('# Modelfile generated by "pollama show"\n# FROM m\n\nFROM /blobs/x\n')
    assert text.endswith("FROM /blobs/x\nTEMPLATE {{ .System }} {{ .Prompt }}\n"
                         "PARAMETER num_predict 200\n\n")


def test_modelfile_with_template_inserts_after_from() -> None:
    text = modelfile_with_template("FROM x\nADAPTER y\nSYSTEM s\n", "T")
    assert text == 'FROM x\nADAPTER y\nTEMPLATE T\nSYSTEM s\n'
    assert modelfile_with_template("FROB\n", "T") == "FROB\n"  # unparsable: shown as given


def test_go_v() -> None:
    assert [go_v(v) for v in (True, 0.0, 0.7, 8, "s", ["a", "b"])] == [
        "true", "0", "0.7", "8", "s", "[a b]"]


@pytest.mark.parametrize("value, parsed", [
    ("", True), ("true", True), ("false", False), ("high", "high"), ("max", "max")])
def test_parse_think_flag(value: str, parsed: object) -> None:
    assert parse_think_flag(value) == parsed


def test_parse_think_flag_refuses_other_words() -> None:
    with pytest.raises(ValueError, match='invalid value for --think: "maybe"'):
        parse_think_flag("maybe")


@pytest.mark.parametrize("args, expected", [
    (["m", "--think"], ["m", "--think=true"]),
    (["m", "--think", "why?"], ["m", "--think=true", "why?"]),
    (["m", "--think", "high", "why?"], ["m", "--think=high", "why?"]),
    (["m", "--think", "false"], ["m", "--think=false"]),
    (["m", "--think=low"], ["m", "--think=low"]),
    (["m", "--", "--think"], ["m", "--", "--think"]),
])
def test_think_args(args: list[str], expected: list[str]) -> None:
    assert think_args(args) == expected
