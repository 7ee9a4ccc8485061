from __future__ import annotations

import pytest
from hypothesis import example, given
from hypothesis import strategies as st

from pollama.core import sse
from pollama.core.errors import PollamaError
from pollama.core.sse import NEED_DATA, Event, SSEError, SSEReader
from tests.codecs import byte_at_a_time, drain, whole

STREAM = (
    sse.encode('{"a":1}')
    + sse.encode("line1\nline2", event="response.created")
    + sse.comment("keep-alive")
    + b"id: 7\nretry: 1500\ndata: x\n\n"
    + sse.DONE
)
EVENTS = [
    Event(data='{"a":1}'),
    Event(data="line1\nline2", event="response.created"),
    Event(data="x", id="7", retry=1500),
    Event(data="[DONE]", id="7"),
]


def decode_all(data: bytes, **kw: int) -> list[Event]:
    r = SSEReader(**kw)
    r.receive_data(data)
    r.receive_data(b"")
    return drain(r.next_event)


def test_encode_shapes() -> None:
    assert sse.encode("x") == b"data: x\n\n"
    assert sse.encode(b"x", event="e") == b"event: e\ndata: x\n\n"
    assert sse.encode("a\r\nb\rc\nd") == b"data: a\ndata: b\ndata: c\ndata: d\n\n"
    assert sse.encode("") == b"data: \n\n"
    assert sse.encode("x", id="1", retry=5) == b"id: 1\nretry: 5\ndata: x\n\n"
    assert sse.DONE == b"data: [DONE]\n\n"
    assert sse.comment() == b":\n\n"
    assert sse.comment("hi") == b": hi\n\n"
    with pytest.raises(ValueError):
        sse.encode("x", event="a\nb")
    with pytest.raises(ValueError):
        sse.encode("x", id="a\0")


def test_whole() -> None:
    r = SSEReader()
    assert whole(r.receive_data, r.next_event, STREAM) == EVENTS
    assert r.retry == 1500 and r.last_event_id == "7"


def test_byte_at_a_time() -> None:
    r = SSEReader()
    assert byte_at_a_time(r.receive_data, r.next_event, STREAM) == EVENTS


@pytest.mark.parametrize("ending", [b"\n", b"\r\n", b"\r"])
def test_split_at_every_offset(ending: bytes) -> None:
    data = STREAM.replace(b"\n", ending)
    for cut in range(len(data) + 1):
        r = SSEReader()
        r.receive_data(data[:cut])
        got = drain(r.next_event)
        r.receive_data(data[cut:])
        got += drain(r.next_event)
        r.receive_data(b"")
        got += drain(r.next_event)
        assert got == EVENTS, cut


def test_crlf_split_between_cr_and_lf_is_one_line_break() -> None:
    r = SSEReader()
    r.receive_data(b"data: a\r")
    assert drain(r.next_event) == []
    r.receive_data(b"\n\r")
    assert drain(r.next_event) == [Event(data="a")]
    r.receive_data(b"\ndata: b\r\r")
    assert drain(r.next_event) == [Event(data="b")]


def test_whatwg_field_rules() -> None:
    # the spec's own examples: "data:test" and "data: test" are the same; one space is eaten
    assert decode_all(b"data:test\n\ndata: test\n\ndata:  two\n\n") == [
        Event(data="test"), Event(data="test"), Event(data=" two")]
    # a field name without a colon has an empty value; "data" alone adds an empty line
    assert decode_all(b"data\ndata\n\n") == [Event(data="\n")]
    assert decode_all(b"data\n\n") == [Event(data="")]
    # comments and unknown fields are ignored; a block without data dispatches nothing
    assert decode_all(b": c\nfoo: bar\n\nevent: x\n\ndata: y\n\n") == [Event(data="y")]
    # the event type resets after each dispatch; the id persists; NUL ids are ignored
    ids = b"event: e\nid: 1\ndata: a\n\ndata: b\n\nid: 2\0\ndata: c\n\nid\ndata: d\n\n"
    assert decode_all(ids) == [Event(data="a", event="e", id="1"), Event(data="b", id="1"),
                               Event(data="c", id="1"), Event(data="d", id="")]
    # retry takes ASCII digits only
    assert decode_all(b"retry: 1x\ndata: a\n\nretry: \xd9\xa1\ndata: b\n\nretry:10\ndata: c\n\n") \
        == [Event(data="a"), Event(data="b"), Event(data="c", retry=10)]
    # the value keeps further colons
    assert decode_all(b'data: {"a":"b:c"}\n\n') == [Event(data='{"a":"b:c"}')]


def test_bom_dropped_once_even_when_split() -> None:
    data = b"\xef\xbb\xbfdata: a\n\n\xef\xbb\xbfdata: b\n\n"
    assert decode_all(data) == [Event(data="a")]  # a later BOM makes an unknown field name
    r = SSEReader()
    for b in data[:3]:
        r.receive_data(bytes([b]))
        assert r.next_event() is NEED_DATA
    r.receive_data(data[3:])
    assert drain(r.next_event)[0] == Event(data="a")


def test_unfinished_event_dropped_at_eof() -> None:
    assert decode_all(b"data: a\n\ndata: b\n") == [Event(data="a")]
    assert decode_all(b"data: a\n\ndata: b") == [Event(data="a")]
    assert decode_all(b"") == []


def test_invalid_utf8_is_replaced() -> None:
    assert decode_all(b"data: \xff\xfe\n\n") == [Event(data="\ufffd\ufffd")]


def test_multibyte_split_across_reads() -> None:
    data = sse.encode("héllo ✓")
    r = SSEReader()
    got: list[Event] = []
    for i in range(len(data)):
        r.receive_data(data[i:i + 1])
        got += drain(r.next_event)
    assert got == [Event(data="héllo ✓")]


def test_max_event_bounds_an_unfinished_line_and_the_data() -> None:
    r = SSEReader(max_event=16)
    r.receive_data(b"data: " + b"x" * 20)
    with pytest.raises(SSEError):
        r.next_event()
    r = SSEReader(max_event=16)
    r.receive_data(b"data: 12345\n" * 3)
    with pytest.raises(SSEError, match="larger than 16 bytes"):
        drain(r.next_event)
    # many small events are fine
    r = SSEReader(max_event=16)
    r.receive_data(b"data: 12345\n\n" * 100)
    assert len(drain(r.next_event)) == 100


def test_event_repr_is_python() -> None:
    ev = Event(data="a", event="b", id="c", retry=1)
    assert eval(repr(ev)) == ev
    with pytest.raises(ValueError):
        Event(data="x", retry=-1)


def test_decoder_alias() -> None:
    assert sse.Decoder is SSEReader


_names = st.text(st.characters(codec="utf-8", blacklist_characters="\r\n"),
                 min_size=1).filter(lambda s: s != "")


@given(st.lists(st.tuples(st.text(), st.none() | _names), max_size=5),
       st.integers(min_value=1, max_value=9), st.sampled_from([b"\n", b"\r\n", b"\r"]))
def test_round_trip(events: list[tuple[str, str | None]], step: int, ending: bytes) -> None:
    data = b"".join(sse.encode(d, e) for d, e in events).replace(b"\n", ending)
    r = SSEReader()
    got: list[Event] = []
    for i in range(0, len(data), step):
        r.receive_data(data[i:i + step])
        got += drain(r.next_event)
    r.receive_data(b"")
    got += drain(r.next_event)
    want = [Event(data=d.replace("\r\n", "\n").replace("\r", "\n"), event=e or "message")
            for d, e in events]
    assert got == want


@given(st.binary(), st.integers(min_value=1, max_value=64))
@example(b"\r\r\n\n\xef\xbb", 1)
@example(b"retry: " + b"9" * 5000 + b"\ndata: x\n\n", 7)
def test_arbitrary_bytes_only_raise_our_error(data: bytes, step: int) -> None:
    r = SSEReader(max_event=256)
    try:
        for i in range(0, len(data), step):
            r.receive_data(data[i:i + step])
            drain(r.next_event)
        r.receive_data(b"")
        drain(r.next_event)
        assert r.next_event() is None
    except SSEError as exc:
        assert isinstance(exc, PollamaError) and exc.status_hint == 400
