"""Tests for core/modelfile.py, tables after Ollama's parser/parser_test.go."""

from __future__ import annotations

from typing import Any

import pytest
from hypothesis import assume, given, settings
from hypothesis import strategies as st

from pollama.core.errors import BadRequest, PollamaError
from pollama.core.modelfile import (
    INVALID_COMMAND,
    INVALID_ROLE,
    KEYWORDS,
    ROLES,
    Command,
    CreateSpec,
    Modelfile,
    ModelfileError,
    decode_modelfile,
    is_representable,
    parse_modelfile,
    quote_value,
    resolve_path,
)

Pairs = list[tuple[str, str]]


def pairs(text: str | bytes) -> Pairs:
    return [(c.name, c.args) for c in parse_modelfile(text).commands]


def error(text: str | bytes) -> ModelfileError:
    with pytest.raises(ModelfileError) as info:
        parse_modelfile(text)
    return info.value


LLAMA3 = (
    "{{ if .System }}<|start_header_id|>system<|end_header_id|>\n\n{{ .System }}<|eot_id|>"
    "{{ end }}{{ if .Prompt }}<|start_header_id|>user<|end_header_id|>\n\n{{ .Prompt }}"
    "<|eot_id|>{{ end }}<|start_header_id|>assistant<|end_header_id|>\n\n{{ .Response }}<|eot_id|>"
)


# --------------------------------------------------------------------------- TestParseFileFile


def test_parse_file() -> None:
    text = (
        "\nFROM model1\nADAPTER adapter1\nLICENSE MIT\nPARAMETER param1 value1\n"
        f'PARAMETER param2 value2\nTEMPLATE """{LLAMA3}"""    \n'
    )
    assert pairs(text) == [
        ("from", "model1"),
        ("adapter", "adapter1"),
        ("license", "MIT"),
        ("parameter", "param1 value1"),
        ("parameter", "param2 value2"),
        ("template", LLAMA3),
    ]


def test_parse_trim_space() -> None:
    text = (
        '\nFROM "     model 1"\nADAPTER      adapter3\nLICENSE "MIT       "\n'
        "PARAMETER param1        value1\nPARAMETER param2    value2\n"
        f'TEMPLATE """   {LLAMA3}   """    \n'
    )
    assert pairs(text) == [
        ("from", "     model 1"),
        ("adapter", "adapter3"),
        ("license", "MIT       "),
        ("parameter", "param1 value1"),
        ("parameter", "param2 value2"),
        ("template", f"   {LLAMA3}   "),
    ]


def test_draft() -> None:
    m = parse_modelfile("\nFROM base\nDRAFT ./assistant\n")
    assert [(c.name, c.args) for c in m.commands] == [("from", "base"), ("draft", "./assistant")]
    assert "DRAFT ./assistant" in m.to_text()


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ('FROM "FOO  BAR  "', [("from", "FOO  BAR  ")]),
        ('FROM "FOO BAR"\nPARAMETER param1 value1',
         [("from", "FOO BAR"), ("parameter", "param1 value1")]),
        ("FROM     FOOO BAR    ", [("from", "FOOO BAR")]),
        ("FROM /what/is/the path ", [("from", "/what/is/the path")]),
        ("FROM foo", [("from", "foo")]),
        ("FROM /path/to/model", [("from", "/path/to/model")]),
        ("FROM /path/to/model/fp16.bin", [("from", "/path/to/model/fp16.bin")]),
        ("FROM llama3:latest", [("from", "llama3:latest")]),
        ("FROM llama3:7b-instruct-q4_K_M", [("from", "llama3:7b-instruct-q4_K_M")]),
        ("PARAMETER param1 value1\nFROM foo", [("parameter", "param1 value1"), ("from", "foo")]),
        (
            "PARAMETER what the \nFROM lemons make lemonade ",
            [("parameter", "what the"), ("from", "lemons make lemonade")],
        ),
    ],
)
def test_from(text: str, expected: Pairs) -> None:
    assert pairs(text) == expected


@pytest.mark.parametrize("text", ["", "PARAMETER param1 value1", "# only a comment\n", "\n\n  \n"])
def test_missing_from(text: str) -> None:
    e = error(text)
    assert e.message == "no FROM line"
    assert isinstance(e, BadRequest) and e.status_hint == 400


def test_parameter_missing_value() -> None:
    assert error("\nFROM foo\nPARAMETER param1\n").message == "unexpected EOF: param1"
    assert error("\nFROM foo\nPARAMETER param1").message == "unexpected EOF"


def test_bad_command() -> None:
    e = error("\nFROM foo\nBADCOMMAND param1 value1\n")
    assert e.message == f"(line 3): {INVALID_COMMAND}"
    assert e.line == 3
    assert e.message == (
        '(line 3): command must be one of "from", "license", "template", "system", "adapter", '
        '"draft", "renderer", "parser", "parameter", "message", or "requires"'
    )


@pytest.mark.parametrize(
    ("text", "line"),
    [
        ("FROM foo\nFROM\n", 2),  # keyword followed by newline, not a space
        ("FROM foo\n\n\nSYS-TEM x\n", 4),
        ("1FROM foo", 1),
        ("FROM foo\r\nBAD x\r\n", 2),  # CRLF counts once
        ("FROM foo\n  TEMPLATES x", 2),
    ],
)
def test_bad_command_lines(text: str, line: int) -> None:
    e = error(text)
    assert e.message == f"(line {line}): {INVALID_COMMAND}"
    assert e.line == line


def test_renderer_parser_requires() -> None:
    assert pairs("\nFROM foo\nRENDERER renderer1\nPARSER parser1\nREQUIRES 0.14.0\n") == [
        ("from", "foo"),
        ("renderer", "renderer1"),
        ("parser", "parser1"),
        ("requires", "0.14.0"),
    ]


# --------------------------------------------------------------------------- messages


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        (
            "\nFROM foo\nMESSAGE system You are a file parser. Always parse things.\n",
            [("from", "foo"), ("message", "system You are a file parser. Always parse things.")],
        ),
        (
            "\nFROM foo\nMESSAGE system You are a file parser. Always parse things.",
            [("from", "foo"), ("message", "system You are a file parser. Always parse things.")],
        ),
        (
            "\nFROM foo\nMESSAGE system You are a file parser. Always parse things.\n"
            "MESSAGE user Hey there!\nMESSAGE assistant Hello, I want to parse all the things!\n",
            [
                ("from", "foo"),
                ("message", "system You are a file parser. Always parse things."),
                ("message", "user Hey there!"),
                ("message", "assistant Hello, I want to parse all the things!"),
            ],
        ),
        (
            '\nFROM foo\nMESSAGE system """\n'
            'You are a multiline file parser. Always parse things.\n"""\n\t\t\t',
            [("from", "foo"),
             ("message", "system \nYou are a multiline file parser. Always parse things.\n")],
        ),
    ],
)
def test_messages(text: str, expected: Pairs) -> None:
    assert pairs(text) == expected


@pytest.mark.parametrize("role", ["badguy", "User", "SYSTEM", "tool"])
def test_message_invalid_role(role: str) -> None:
    e = error(f"\nFROM foo\nMESSAGE {role} I'm a bad guy!\n")
    assert e.message == f"(line 3): {INVALID_ROLE}"
    assert e.message == '(line 3): message role must be one of "system", "user", or "assistant"'


@pytest.mark.parametrize("text", ["\nFROM foo\nMESSAGE system\n", "\nFROM foo\nMESSAGE system"])
def test_message_missing_content(text: str) -> None:
    assert error(text).message.startswith("unexpected EOF")


def test_message_role_bad_character() -> None:
    assert error("FROM foo\nMESSAGE user: hi\n").message == "unexpected EOF: user"


# --------------------------------------------------------------------------- quoting


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ('\nFROM foo\nSYSTEM """\nThis is a\nmultiline system.\n"""\n\t\t\t',
         "\nThis is a\nmultiline system.\n"),
        ('\nFROM foo\nSYSTEM """\nThis is a\nmultiline system."""\n\t\t\t',
         "\nThis is a\nmultiline system."),
        ('\nFROM foo\nSYSTEM """This is a\nmultiline system."""\n\t\t\t',
         "This is a\nmultiline system."),
        ('\nFROM foo\nSYSTEM """This is a multiline system."""\n\t\t\t',
         "This is a multiline system."),
        (
            '\nFROM foo\nSYSTEM """\nThis is a multiline system with "quotes".\n"""\n',
            '\nThis is a multiline system with "quotes".\n',
        ),
        ('\nFROM foo\nSYSTEM """"""\n', ""),
        ('\nFROM foo\nSYSTEM ""\n', ""),
        ("\nFROM foo\nSYSTEM \"'\"\n", "'"),
        (
            "\nFROM foo\nSYSTEM \"\"\"''\"'\"\"'\"\"'\"'''''\"\"'\"\"'\"\"\"\n",
            "''\"'\"\"'\"\"'\"'''''\"\"'\"\"'",
        ),
        ('\nFROM foo\nSYSTEM "a\nmulti-line\n  single-quoted value  "\n',
         "a\nmulti-line\n  single-quoted value  "),
        # ends at a line ending in "
        ('\nFROM foo\nSYSTEM "a" b\nstill "value"\n', 'a" b\nstill "value'),
        ("\nFROM foo\nSYSTEM 'single quotes mean nothing'\n", "'single quotes mean nothing'"),
        ("\nFROM foo\nSYSTEM \"crlf\r\nkept\"\r\n", "crlf\r\nkept"),
        ("\nFROM foo\nSYSTEM \t tabs\tinside\t \n", "tabs\tinside"),
        ("\nFROM foo\nSYSTEM \n", ""),  # keyword, space, nothing
    ],
)
def test_quoted(text: str, expected: str) -> None:
    assert pairs(text) == [("from", "foo"), ("system", expected)]


def test_quoted_template_at_eof() -> None:
    assert pairs('\nFROM foo\nTEMPLATE """\n{{ .Prompt }}\n"""') == [
        ("from", "foo"),
        ("template", "\n{{ .Prompt }}\n"),
    ]


@pytest.mark.parametrize(
    "text",
    [
        '\nFROM foo\nSYSTEM """This is a multiline system.""\n\t\t\t',
        '\nFROM foo\nSYSTEM "\n\t\t\t',
        '\nFROM foo\nSYSTEM """\n',
        '\nFROM foo\nSYSTEM """"\n',
        '\nFROM foo\nSYSTEM """""\n',
        '\nFROM foo\nSYSTEM """a""" trailing\n',
        "FROM",
        "FROM foo\nPARAMETER",
        "FROM foo\nMESSAGE user",
    ],
)
def test_unterminated_is_eof(text: str) -> None:
    e = error(text)
    assert e.message == "unexpected EOF"
    assert isinstance(e, PollamaError) and e.status_hint == 400


# --------------------------------------------------------------------------- parameters


@pytest.mark.parametrize(
    ("line", "name", "value"),
    [
        ("numa true", "numa", "true"),
        ("num_ctx 1", "num_ctx", "1"),
        ("num_batch 1", "num_batch", "1"),
        ("num_gqa 1", "num_gqa", "1"),
        ("num_gpu 1", "num_gpu", "1"),
        ("main_gpu 1", "main_gpu", "1"),
        ("use_mmap true", "use_mmap", "true"),
        ("num_thread 1", "num_thread", "1"),
        ("num_keep 1", "num_keep", "1"),
        ("seed 1", "seed", "1"),
        ("num_predict 1", "num_predict", "1"),
        ("top_k 1", "top_k", "1"),
        ("top_p 1.0", "top_p", "1.0"),
        ("min_p 0.05", "min_p", "0.05"),
        ("typical_p 1.0", "typical_p", "1.0"),
        ("repeat_last_n 1", "repeat_last_n", "1"),
        ("temperature 1.0", "temperature", "1.0"),
        ("repeat_penalty 1.0", "repeat_penalty", "1.0"),
        ("presence_penalty 1.0", "presence_penalty", "1.0"),
        ("frequency_penalty 1.0", "frequency_penalty", "1.0"),
        ("penalize_newline true", "penalize_newline", "true"),
        ("stop ### User:", "stop", "### User:"),
        ("stop ### User: ", "stop", "### User:"),
        ('stop "### User:"', "stop", "### User:"),
        ('stop "### User: "', "stop", "### User: "),
        ('stop """### User:"""', "stop", "### User:"),
        ('stop """### User:\n"""', "stop", "### User:\n"),
        ("stop <|endoftext|>", "stop", "<|endoftext|>"),
        ("stop <|eot_id|>", "stop", "<|eot_id|>"),
        ("stop </s>", "stop", "</s>"),
        ("Temperature 1.0", "Temperature", "1.0"),  # names are case-sensitive, kept as written
    ],
)
def test_parameters(line: str, name: str, value: str) -> None:
    m = parse_modelfile(f"FROM foo\nPARAMETER {line}\n")
    assert [(c.name, c.args) for c in m.commands] == [("from", "foo"),
                                                      ("parameter", f"{name} {value}")]
    assert m.commands[1].split() == (name, value)


def test_hash_after_value_is_part_of_value() -> None:
    assert pairs("FROM foo # not a comment\nSYSTEM hi # there\n# comment\n"
                 "  # indented comment\n") == [
        ("from", "foo # not a comment"),
        ("system", "hi # there"),
    ]


def test_comments() -> None:
    assert pairs("\n# comment\nFROM foo\n\t") == [("from", "foo")]


def test_hash_inside_quoted_value() -> None:
    assert pairs('FROM foo\nSYSTEM """\n# not a comment\n"""\n') == [
        ("from", "foo"),
        ("system", "\n# not a comment\n"),
    ]


@pytest.mark.parametrize("keyword", ["FROM", "from", "From", "fRoM"])
def test_case_insensitive_keywords(keyword: str) -> None:
    assert parse_modelfile(f"{keyword} foo").commands[0].name == "from"
    assert pairs("from a\nParameter stop x\nsYsTeM s\nmessage user hi\nLicense l\n") == [
        ("from", "a"),
        ("parameter", "stop x"),
        ("system", "s"),
        ("message", "user hi"),
        ("license", "l"),
    ]


def test_tab_separator() -> None:
    assert pairs("FROM\tfoo\nPARAMETER\tstop\tx\n") == [("from", "foo"), ("parameter", "stop x")]


def test_nonprintable_dropped() -> None:
    assert pairs("FROM fo\x00o\x1b\nSYSTEM a\u200bb\n") == [("from", "foo"), ("system", "ab")]


def test_line_numbers() -> None:
    m = parse_modelfile('# c\nFROM a\n\nSYSTEM """\nx\n"""\r\nPARAMETER stop y\rLICENSE z\n')
    assert [c.line for c in m.commands] == [2, 4, 7, 8]


def test_format_parse_file() -> None:
    # TestParseFileFormatParseFile: String() output parses back to the same commands.
    cases = [
        "\nFROM foo\nADAPTER adapter1\nLICENSE MIT\nPARAMETER param1 value1\n"
        "PARAMETER param2 value2\n"
        "TEMPLATE template1\nMESSAGE system You are a file parser. Always parse things.\n"
        "MESSAGE user Hey there!\nMESSAGE assistant Hello, I want to parse all the things!\n",
        '\nFROM foo\nADAPTER adapter1\nLICENSE MIT\nPARAMETER param1 value1\nTEMPLATE template1\n'
        'MESSAGE system """\nYou are a store greeter. Always respond with "Hello!".\n"""\n'
        "MESSAGE user Hey there!\n",
        '\nFROM foo\nADAPTER adapter1\nLICENSE """\nVery long and boring legal text.\n'
        'Blah blah blah.\n'
        '"Oh look, a quote!"\n"""\n\nPARAMETER param1 value1\nTEMPLATE template1\n',
        '\nFROM foo\nSYSTEM ""\n',
    ]
    for text in cases:
        m = parse_modelfile(text)
        assert parse_modelfile(m.to_text()) == m


def test_to_text_format() -> None:
    m = Modelfile(
        commands=(
            Command(name="from", args="llama3.2"),
            Command.param("stop", "<|eot_id|>"),
            Command.param("stop", " spaced"),
            Command(name="template", args='{{ .Prompt }}\n"q"'),
            Command(name="system", args="line1\nline2"),
            Command.msg("user", "hi"),
            Command(name="license", args=""),
        )
    )
    assert m.to_text() == (
        "FROM llama3.2\n"
        "PARAMETER stop <|eot_id|>\n"
        'PARAMETER stop " spaced"\n'
        'TEMPLATE """{{ .Prompt }}\n"q\""""\n'
        'SYSTEM "line1\nline2"\n'
        "MESSAGE user hi\n"
        'LICENSE ""\n'
    )
    assert parse_modelfile(m.to_text()) == m


@pytest.mark.parametrize(
    ("value", "quoted"),
    [
        ("plain", "plain"),
        ("<|eot_id|>", "<|eot_id|>"),
        ("a b", "a b"),
        (" lead", '" lead"'),
        ("trail ", '"trail "'),
        ("\ttab", '"\ttab"'),
        ("two\nlines", '"two\nlines"'),
        ('say "hi"\n', '"""say "hi"\n"""'),
        ('"hi"', '""""hi""""'),
        ("", '""'),
        ('"', '"""""""'),
        ('a"\nb', '"""a"\nb"""'),
    ],
)
def test_quote_value(value: str, quoted: str) -> None:
    assert quote_value(value) == quoted
    assert is_representable(value)
    assert pairs(f"FROM x\nSYSTEM {quoted}\n")[1] == ("system", value)


@pytest.mark.parametrize("value", ['a"\nb"""\nc', 'a""" \nb', "bell\x07", "zero\u200bwidth"])
def test_unrepresentable_values_fall_back_to_ollama(value: str) -> None:
    assert not is_representable(value)
    expected = f'"""{value}"""' if "\n" in value and '"' in value else value
    assert quote_value(value) == expected


# --------------------------------------------------------------------------- encodings


UTF16_TEXT = "FROM bob\nPARAMETER param1 1\nPARAMETER param2 4096\nSYSTEM You are a utf16 file.\n"
UTF16_EXPECTED = [
    ("from", "bob"),
    ("parameter", "param1 1"),
    ("parameter", "param2 4096"),
    ("system", "You are a utf16 file."),
]


@pytest.mark.parametrize(
    "data",
    [
        b"\xff\xfe" + UTF16_TEXT.encode("utf-16-le"),
        b"\xfe\xff" + UTF16_TEXT.encode("utf-16-be"),
        b"\xef\xbb\xbf" + UTF16_TEXT.encode("utf-8"),
        UTF16_TEXT.encode("utf-8"),
    ],
    ids=["utf16le", "utf16be", "utf8bom", "utf8"],
)
def test_utf16_bom(data: bytes) -> None:
    assert pairs(decode_modelfile(data)) == UTF16_EXPECTED
    assert pairs(data) == UTF16_EXPECTED


@pytest.mark.parametrize("encoding", ["utf-8", "utf-16"])  # Python's utf-16 writes a BOM
def test_multibyte(encoding: str) -> None:
    data = "FROM test\n\tSYSTEM 你好👋".encode(encoding)
    assert pairs(data) == [("from", "test"), ("system", "你好👋")]


def test_invalid_utf8_is_replaced() -> None:
    assert decode_modelfile(b"FROM a\xffb") == "FROM a\ufffdb"
    assert pairs(b"FROM a\xffb") == [("from", "a\ufffdb")]
    assert decode_modelfile(b"\xff\xfeA") == "\ufffd"  # odd UTF-16 byte count


# --------------------------------------------------------------------------- create spec


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("FROM test", CreateSpec(from_=("test",))),
        ("FROM test\nTEMPLATE some template\n",
         CreateSpec(from_=("test",), template="some template")),
        (
            "FROM test\nLICENSE single license\nPARAMETER temperature 0.5\nMESSAGE user Hello\n",
            CreateSpec(
                from_=("test",),
                license=("single license",),
                parameters={"temperature": 0.5},
                messages=({"role": "user", "content": "Hello"},),
            ),
        ),
        (
            "FROM test\nPARAMETER temperature 0.5\nPARAMETER top_k 1\nSYSTEM You are a bot.\n"
            "LICENSE license1\nLICENSE license2\nMESSAGE user Hello there!\n"
            "MESSAGE assistant Hi! How are you?\n",
            CreateSpec(
                from_=("test",),
                license=("license1", "license2"),
                system="You are a bot.",
                parameters={"temperature": 0.5, "top_k": 1},
                messages=(
                    {"role": "user", "content": "Hello there!"},
                    {"role": "assistant", "content": "Hi! How are you?"},
                ),
            ),
        ),
        (
            "FROM ./model.gguf\nFROM ./mmproj.gguf\nADAPTER ./lora.gguf\nDRAFT ./draft.gguf\n"
            "RENDERER qwen3-coder\nPARSER qwen3-coder\nREQUIRES v0.14.0\nSYSTEM a\nSYSTEM b\n",
            CreateSpec(
                from_=("./model.gguf", "./mmproj.gguf"),
                adapters=("./lora.gguf",),
                draft=("./draft.gguf",),
                renderer="qwen3-coder",
                parser="qwen3-coder",
                requires="0.14.0",
                system="b",
            ),
        ),
        (
            "FROM x\nPARAMETER stop <|eot_id|>\nPARAMETER num_ctx 4096\nPARAMETER stop </s>\n"
            "PARAMETER use_mmap false\nPARAMETER num_ctx 8192\nPARAMETER stop \"### User: \"\n",
            CreateSpec(
                from_=("x",),
                parameters={
                    "stop": ["<|eot_id|>", "</s>", "### User: "],
                    "num_ctx": 8192,
                    "use_mmap": False,
                },
            ),
        ),
        (
            "FROM x\nPARAMETER mirostat 2\nPARAMETER use_mlock true\nPARAMETER seed 42\n",
            CreateSpec(
                from_=("x",),
                parameters={"seed": 42},
                warnings=("parameter mirostat is deprecated", "parameter use_mlock is deprecated"),
            ),
        ),
        ('FROM x\nSYSTEM ""\n', CreateSpec(from_=("x",), system="")),
    ],
)
def test_create_spec(text: str, expected: CreateSpec) -> None:
    assert parse_modelfile(text).to_create_spec() == expected


def test_create_spec_types() -> None:
    spec = parse_modelfile("FROM x\nPARAMETER temperature 1\nPARAMETER top_k 3\n").to_create_spec()
    assert type(spec.parameters["temperature"]) is float
    assert type(spec.parameters["top_k"]) is int


@pytest.mark.parametrize(
    ("line", "message"),
    [
        ("PARAMETER param1 value1", "unknown parameter 'param1'"),
        ("PARAMETER Temperature 0.5", "unknown parameter 'Temperature'"),
        ("PARAMETER temperature hot", "invalid float value [hot]"),
        ("PARAMETER num_ctx 1.5", "invalid int value [1.5]"),
        ("PARAMETER use_mmap maybe", "invalid bool value [maybe]"),
        ("REQUIRES latest", "requires must be a valid semver (e.g. 0.14.0)"),
        ("REQUIRES 0.14.0.1", "requires must be a valid semver (e.g. 0.14.0)"),
        ("REQUIRES 01.2.3", "requires must be a valid semver (e.g. 0.14.0)"),
        ("REQUIRES 1.2-rc1", "requires must be a valid semver (e.g. 0.14.0)"),
    ],
)
def test_create_spec_errors(line: str, message: str) -> None:
    m = parse_modelfile(f"FROM x\n{line}\n")
    with pytest.raises(ModelfileError) as info:
        m.to_create_spec()
    assert info.value.message == message
    assert info.value.status_hint == 400
    assert info.value.line == 2


@pytest.mark.parametrize(
    ("value", "expected"),
    [("0.14.0", "0.14.0"), ("v0.14.0", "0.14.0"), ("1", "1"), ("v1.2", "1.2"),
     ("1.2.3-rc.1+build.5", "1.2.3-rc.1+build.5"), ("0.0.0-0", "0.0.0-0")],
)
def test_requires_semver(value: str, expected: str) -> None:
    assert parse_modelfile(f"FROM x\nREQUIRES {value}").to_create_spec().requires == expected


# --------------------------------------------------------------------------- paths


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        ("/abs/model.gguf", "/abs/model.gguf"),
        ("/abs/../x//y/./z", "/x/y/z"),
        ("//double", "/double"),
        ("~", "/home/u"),
        ("~/", "/home/u"),
        ("~/models/m.gguf", "/home/u/models/m.gguf"),
        ("~bob/m.gguf", "/home/bob/m.gguf"),
        ("~bob", "/home/bob"),
        ("model.gguf", "/work/dir/model.gguf"),
        ("./model.gguf", "/work/dir/model.gguf"),
        ("../up/model.gguf", "/work/up/model.gguf"),
        ("", "/work/dir"),
        (".", "/work/dir"),
    ],
)
def test_resolve_path(value: str, expected: str) -> None:
    assert resolve_path(value, "/work/dir", "/home/u", user_homes={"bob": "/home/bob"}) == expected


def test_resolve_path_relative_dir_and_unknown_user() -> None:
    assert resolve_path("m.gguf", "", "/h") == "m.gguf"
    assert resolve_path("m.gguf", "sub/", "/h") == "sub/m.gguf"
    with pytest.raises(ModelfileError, match="failed to find user 'nobody'"):
        resolve_path("~nobody/x", "/d", "/h")


# --------------------------------------------------------------------------- dataclasses


def test_command_validation() -> None:
    with pytest.raises(ValueError):
        Command(name="model", args="x")
    with pytest.raises(ValueError):
        Command(name="parameter", args="stop")
    with pytest.raises(ValueError):
        Command(name="parameter", args="bad-name x")
    with pytest.raises(ValueError):
        Command(name="message", args="User hi")
    with pytest.raises(ValueError):
        Command(name="from", args="x").split()
    with pytest.raises(TypeError):
        Modelfile(commands=[Command(name="from", args="x")])  # type: ignore[arg-type]


def test_reprs_are_python() -> None:
    m = parse_modelfile('FROM x\nPARAMETER stop "a b "\nMESSAGE user hi\n')
    ns = {"Command": Command, "Modelfile": Modelfile, "CreateSpec": CreateSpec}
    assert eval(repr(m), ns) == m
    spec = m.to_create_spec()
    assert eval(repr(spec), ns) == spec


def test_line_is_not_compared_and_normalized() -> None:
    m = parse_modelfile("\n\nFROM x\n")
    assert m.commands[0].line == 3
    assert m == Modelfile(commands=(Command(name="from", args="x"),))
    assert m.normalized().commands[0].line == 0


# --------------------------------------------------------------------------- properties

_VALUE_CHARS = st.one_of(
    st.sampled_from(list('ab "\'#\t\n\r\\{}<>|:') + ["你", "👋", '"""']),
    st.characters(exclude_categories=["Cs"]),
)
values = st.lists(_VALUE_CHARS, max_size=12).map("".join)
param_names = st.from_regex(r"[A-Za-z0-9_]{0,8}", fullmatch=True)
plain_names = [k for k in KEYWORDS if k not in ("parameter", "message")]

commands = st.one_of(
    st.builds(lambda n, v: Command(name=n, args=v), st.sampled_from(plain_names), values),
    st.builds(Command.param, param_names, values),
    st.builds(Command.msg, st.sampled_from(ROLES), values),
)


@settings(max_examples=500)
@given(st.lists(commands, max_size=8), values)
def test_round_trip(cmds: list[Command], from_value: str) -> None:
    body = [Command(name="from", args=from_value), *cmds]
    assume(all(is_representable(c.split()[1] if c.name in ("parameter", "message") else c.args)
               for c in body))
    m = Modelfile(commands=tuple(body))
    again = parse_modelfile(m.to_text())
    assert [(c.name, c.args) for c in again.commands] == [(c.name, c.args) for c in body]
    assert again == m
    # Also through bytes in every accepted encoding.
    assert parse_modelfile(b"\xff\xfe" + m.to_text().encode("utf-16-le")) == m


_LINES = st.sampled_from(
    ["FROM x", "FROM", "from  y ", "PARAMETER stop a", "PARAMETER num_ctx 4", "MESSAGE user hi",
     'SYSTEM """', '"""', 'SYSTEM "', '"', "# c", "", "  ", "TEMPLATE {{ . }}", "LICENSE a\tb",
     "MESSAGE bad x", "BAD", 'SYSTEM ""', 'x"', 'PARAMETER stop """', "\r"]
)
modelfile_like = st.one_of(
    st.text(),
    st.lists(st.one_of(_LINES, st.text(max_size=5)), max_size=10).map("\n".join),
)


@settings(max_examples=500)
@given(modelfile_like)
def test_any_text_parses_or_errors_and_round_trips(text: str) -> None:
    try:
        m = parse_modelfile(text)
    except ModelfileError:
        return
    assert any(c.name == "from" for c in m.commands)
    for c in m.commands:
        assert is_representable(c.split()[1] if c.name in ("parameter", "message") else c.args)
    assert parse_modelfile(m.to_text()) == m
    try:
        spec: Any = m.to_create_spec()
    except ModelfileError:
        return
    assert isinstance(spec, CreateSpec)


@given(modelfile_like)
def test_crlf_and_lf_line_counts_agree(text: str) -> None:
    text = text.replace("\r", "")
    try:
        lf = parse_modelfile(text)
    except ModelfileError as e:
        with pytest.raises(ModelfileError) as info:
            parse_modelfile(text.replace("\n", "\r\n"))
        assert info.value.line == e.line
        return
    crlf = parse_modelfile(text.replace("\n", "\r\n"))
    assert [c.line for c in crlf.commands] == [c.line for c in lf.commands]
