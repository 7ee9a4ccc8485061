"""core/jsonrpc_framing.py: the LSP base protocol reader (``Content-Length`` framing), fed
whole, one byte at a time, split at every offset and with trailing data."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from pollama.core.errors import PollamaError
from pollama.core.jsonrpc_framing import NEED_DATA, FramingError, LSPReader, lsp_encode
from tests.codecs import byte_at_a_time, drain, whole


BODIES = [b'{"jsonrpc":"2.0","id":1,"method":"ps"}', b"", b"[]", "{\"é\":\"\r\n\"}".encode(),
          b"Content-Length: 3\r\n\r\nabc"]
STREAM = b"".join(lsp_encode(b) for b in BODIES)


def read_all(data: bytes, step: int, **kw: int) -> list[bytes]:
    reader = LSPReader(**kw)
    out: list[bytes] = []
    for i in range(0, len(data), step):
        reader.receive_data(data[i:i + step])
        out.extend(drain(reader.next_message))
    reader.receive_data(b"")
    out.extend(drain(reader.next_message))
    assert reader.next_message() is None
    return out


def test_lsp_encode() -> None:
    assert lsp_encode(b"{}") == b"Content-Length: 2\r\n\r\n{}"
    assert lsp_encode("é".encode()) == b"Content-Length: 2\r\n\r\n\xc3\xa9"


def test_lsp_whole() -> None:
    r = LSPReader()
    assert whole(r.receive_data, r.next_message, STREAM) == BODIES


def test_lsp_byte_at_a_time() -> None:
    r = LSPReader()
    assert byte_at_a_time(r.receive_data, r.next_message, STREAM) == BODIES


def test_lsp_split_at_every_offset() -> None:
    for cut in range(1, len(STREAM)):  # b"" would be the end of the stream
        r = LSPReader()
        r.receive_data(STREAM[:cut])
        got = drain(r.next_message)
        r.receive_data(STREAM[cut:])
        got += drain(r.next_message)
        assert got == BODIES, cut


def test_lsp_trailing_partial_message_waits() -> None:
    nxt = lsp_encode(b'{"a":1}')
    for cut in range(1, len(nxt)):
        r = LSPReader()
        r.receive_data(STREAM + nxt[:cut])
        assert drain(r.next_message) == BODIES
        assert r.next_message() is NEED_DATA
        r.receive_data(nxt[cut:])
        assert r.next_message() == b'{"a":1}'


def test_lsp_truncated_at_eof_is_an_error() -> None:
    nxt = lsp_encode(b'{"a":1}')
    for cut in range(1, len(nxt)):
        r = LSPReader()
        r.receive_data(nxt[:cut])
        r.receive_data(b"")
        with pytest.raises(FramingError):
            r.next_message()


@pytest.mark.parametrize("head", [
    b"content-length: 2\r\n\r\n",
    b"CONTENT-LENGTH:2\r\n\r\n",
    b"Content-Length: 2 \r\nContent-Type: application/vscode-jsonrpc; charset=utf-8\r\n\r\n",
    b"Content-Type: application/vscode-jsonrpc; charset=utf8\r\nContent-Length: 2\r\n\r\n",
    b"Content-Length: 2\n\n",  # bare LF, leniently
    b"Content-Length: 2\r\n\n",
    b"Content-Length: 2\n\r\n",
    b"X-Whatever: 1\r\nContent-Length: 2\r\nContent-Length: 2\r\n\r\n",
    b"\r\n\r\n\nContent-Length: 2\r\n\r\n",  # blank lines between messages
    b"Content-Length:\t2\r\n\r\n",
])
def test_lsp_tolerated_headers(head: bytes) -> None:
    data = head + b"{}" + lsp_encode(b"[]")
    for step in (1, 2, len(data)):
        assert read_all(data, step) == [b"{}", b"[]"]


@pytest.mark.parametrize("head", [
    b"\r\n\r\n",
    b"Content-Type: application/json\r\n\r\n",
    b"Content-Length: -1\r\n\r\n",
    b"Content-Length: +2\r\n\r\n",
    b"Content-Length: 0x2\r\n\r\n",
    b"Content-Length: 2 2\r\n\r\n",
    b"Content-Length: \r\n\r\n",
    b"Content-Length: \xd9\xa2\r\n\r\n",  # an Arabic-Indic two: not ASCII
    b"Content-Length: " + b"9" * 25 + b"\r\n\r\n",
    b"Content-Length: 2\r\nContent-Length: 3\r\n\r\n",
    b"Content-Length 2\r\n\r\n",
    b'{"jsonrpc":"2.0"}\n\n',
    b"Content-Length: 2\r\nbogus\r\n\r\n",
])
def test_lsp_refused_headers(head: bytes) -> None:
    r = LSPReader()
    r.receive_data(head + b"{}" + lsp_encode(b"{}"))
    with pytest.raises(FramingError):
        r.next_message()
    with pytest.raises(FramingError):  # no resync: the same error again
        r.next_message()


def test_lsp_message_size_limit() -> None:
    r = LSPReader(max_message=10)
    r.receive_data(lsp_encode(b"x" * 10) + lsp_encode(b"x" * 11))
    assert r.next_message() == b"x" * 10
    with pytest.raises(FramingError, match="limit"):
        r.next_message()
    assert isinstance(FramingError("x"), PollamaError)


def test_lsp_header_size_limit() -> None:
    r = LSPReader(max_header=64)
    r.receive_data(b"X-Long: " + b"a" * 100)
    with pytest.raises(FramingError, match="headers"):
        r.next_message()
    r = LSPReader(max_header=64)
    r.receive_data(b"X-Long: " + b"a" * 100 + b"\r\nContent-Length: 2\r\n\r\n{}")
    with pytest.raises(FramingError):
        r.next_message()
    # a header block just under the bound is fine, fed in any pieces
    head = b"X: " + b"a" * 30 + b"\r\nContent-Length: 2\r\n\r\n"
    assert read_all(head + b"{}", 1, max_header=len(head)) == [b"{}"]


def test_lsp_data_after_eof_is_a_bug() -> None:
    r = LSPReader()
    r.receive_data(b"")
    with pytest.raises(RuntimeError):
        r.receive_data(b"x")


def test_lsp_blank_tail_at_eof_is_a_clean_end() -> None:
    assert read_all(lsp_encode(b"{}") + b"\r\n", 3) == [b"{}"]


@given(st.lists(st.binary(max_size=40), max_size=6), st.integers(1, 9))
def test_lsp_round_trip(bodies: list[bytes], step: int) -> None:
    assert read_all(b"".join(lsp_encode(b) for b in bodies), step) == bodies
