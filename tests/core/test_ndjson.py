from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from pollama.core import ndjson
from pollama.core.ndjson import NEED_DATA, NDJSONError, NDJSONReader
from tests.codecs import byte_at_a_time, drain, whole

OBJS = [{"a": 1}, {"b": "x\ny"}, [1, 2], "s", {"nested": {"k": [None, True]}}]
STREAM = b"".join(ndjson.encode(o) for o in OBJS)


def test_whole() -> None:
    r = NDJSONReader()
    assert whole(r.receive_data, r.next_event, STREAM) == OBJS


def test_byte_at_a_time() -> None:
    r = NDJSONReader()
    assert byte_at_a_time(r.receive_data, r.next_event, STREAM) == OBJS


def test_trailing_partial_line_waits_then_decodes_at_eof() -> None:
    r = NDJSONReader()
    r.receive_data(STREAM + b'{"tail": 1}')
    assert drain(r.next_event) == OBJS
    assert r.next_event() is NEED_DATA
    r.receive_data(b"")
    assert r.next_event() == {"tail": 1}
    assert r.next_event() is None


def test_blank_lines_skipped() -> None:
    r = NDJSONReader()
    r.receive_data(b'\n\n{"a":1}\n\r\n')
    assert drain(r.next_event) == [{"a": 1}]


def test_bad_line_and_overlong_line() -> None:
    r = NDJSONReader()
    r.receive_data(b"{nope}\n")
    with pytest.raises(NDJSONError):
        r.next_event()
    r = NDJSONReader(max_line=10)
    r.receive_data(b"x" * 11)
    with pytest.raises(NDJSONError):
        r.next_event()


def test_encode_is_go_compatible() -> None:
    assert ndjson.encode({"a": "<b>&"}) == b'{"a":"\\u003cb\\u003e\\u0026"}\n'


@given(st.lists(st.dictionaries(st.text(), st.integers() | st.text()), max_size=5),
       st.integers(min_value=1, max_value=7))
def test_any_split(objs: list[dict[str, object]], step: int) -> None:
    data = b"".join(ndjson.encode(o) for o in objs)
    r = NDJSONReader()
    got: list[object] = []
    for i in range(0, len(data), step):
        r.receive_data(data[i:i + step])
        got.extend(drain(r.next_event))
    assert got == objs


@given(st.binary())
def test_arbitrary_bytes_only_raise_our_error(data: bytes) -> None:
    r = NDJSONReader(max_line=1024)
    r.receive_data(data)
    r.receive_data(b"")
    try:
        while r.next_event() is not None:
            pass
    except NDJSONError:
        pass
