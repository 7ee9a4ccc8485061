"""core/jsonwire.py: JSON on the wire as Go's encoding/json writes and reads it."""

from __future__ import annotations

import json

import pytest
from hypothesis import given
from hypothesis import strategies as st

from pollama.core import jsonwire
from pollama.core.errors import BadRequest


@pytest.mark.parametrize(("body", "message"), [
    (b"", "missing request body"),
    (b"   ", "unexpected end of JSON input"),
    (b"{", "unexpected end of JSON input"),
    (b"x", "invalid character 'x' looking for beginning of value"),
    (b'{"a":1} x', "invalid character 'x' after top-level value"),
    (b"{x", "invalid character 'x' looking for beginning of object key string"),
    (b'{"a" 1}', "invalid character '1' after object key"),
    (b'{"a":1 "b"}', "invalid character '\"' after object key:value pair"),
    (b"[1 2]", "invalid character '2' after array element"),
    (b"NaN", "invalid character 'N' looking for beginning of value"),
    (b'{"a":"\xff"}', "invalid character in request body: not valid UTF-8"),
    (b'{"a": Infinity}', "invalid character 'I' looking for beginning of value"),
    # the innermost open bracket decides the wording; brackets inside strings do not count
    (b'{"a":[1 2]}', "invalid character '2' after array element"),
    (b'[{"a":1 "b"}]', "invalid character '\"' after object key:value pair"),
    (b'{"a":"[" "b"}', "invalid character '\"' after object key:value pair"),
])
def test_json_errors_go_style(body: bytes, message: str) -> None:
    with pytest.raises(BadRequest) as err:
        jsonwire.loads_request(body)
    assert err.value.message == message


def test_jsonwire_dumps() -> None:
    assert jsonwire.dumps({"a": "<é>", "b": [1, 2.5]}) == \
        '{"a":"\\u003cé\\u003e","b":[1,2.5]}'.encode()


def test_lone_surrogates_become_replacement_characters_as_in_go() -> None:
    assert jsonwire.loads_request(b'{"a": "x\\ud800y", "\\udfff": ["\\ud83d"]}') == {
        "a": "x\ufffdy", "\ufffd": ["\ufffd"]}
    assert jsonwire.loads_request(b'{"a": "\\ud83d\\ude00"}') == {"a": "\U0001f600"}
    assert jsonwire.dumps({"a": "x\ud800"}) == '{"a":"x\ufffd"}'.encode()


def test_dumps_escapes_as_go() -> None:
    # Go's HTMLEscape set plus the two JavaScript line terminators; the rest of UTF-8 as is.
    assert jsonwire.dumps("a&b\u2028\u2029ü") == b'"a\\u0026b\\u2028\\u2029\xc3\xbc"'
    assert jsonwire.dumps({"k": [None, True, 1.5, "\n"]}) == b'{"k":[null,true,1.5,"\\n"]}'
    with pytest.raises(ValueError):  # Go cannot marshal NaN either
        jsonwire.dumps(float("nan"))


text = st.text(st.characters(blacklist_categories=("Cs",)))  # no lone surrogates
json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False, allow_infinity=False)
    | text,
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(text, inner, max_size=4),
    max_leaves=12)


@given(json_values)
def test_dumps_reads_back_and_never_shows_html_characters(value: object) -> None:
    data = jsonwire.dumps(value)
    assert not any(c in data for c in b"<>&")
    assert json.loads(data) == value
    assert jsonwire.loads_request(data) == value


def test_go_text_replaces_only_lone_surrogates() -> None:
    assert jsonwire.go_text("a\ud800b\udfff") == "a\ufffdb\ufffd"
    assert jsonwire.go_text("\U0001f600 ok") == "\U0001f600 ok"


def test_go_quote() -> None:
    assert jsonwire.go_quote('a"b\\c') == '"a\\"b\\\\c"'
    assert jsonwire.go_quote("\n\t\r\x01\x7f") == '"\\n\\t\\r\\x01\\x7f"'
    assert jsonwire.go_quote("héllo <x>") == '"héllo <x>"'  # printable text as is
