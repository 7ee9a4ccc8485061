"""Framing JSON-RPC messages on a byte stream (``pollama stdio``), Sans-IO.

Two framings, one message each:

- LSP's base protocol: ``Content-Length: N\\r\\n`` (other headers allowed), a blank line, then
  N bytes of body. ``lsp_encode`` writes it; ``LSPReader`` reads it
  (``receive_data(bytes)``, ``b""`` = the peer closed; then ``next_message()``).
- NDJSON, one message per line: ``core.ndjson`` (``NDJSONReader``, ``ndjson.encode``) as is;
  hand each value it reads to ``jsonrpc.decode_value`` and answer an ``NDJSONError`` for a bad
  line with ``jsonrpc.parse_error`` (the reader has already dropped the line, so the stream
  goes on). A line longer than its ``max_line`` cannot be skipped: close the stream.

LSP reading, where the spec leaves room:

- Header names are case-insensitive; ``Content-Type`` and unknown headers are accepted and
  ignored (bodies are UTF-8 JSON whatever they say: a body that is not is a parse error for
  ``jsonrpc.decode``, and the stream goes on).
- Header lines end in CRLF as LSP says, but a bare LF is taken as well: hand-written clients
  and ``printf`` tests send it, and the body is counted by length, so nothing is ambiguous.
  Blank lines between messages are skipped.
- ``Content-Length`` is required, ASCII digits only (no sign, no spaces inside), at most
  ``max_message`` (by default the HTTP bound on chat and generate bodies, so a request that
  fits REST fits here); a repeated one must agree. The header block is at most ``max_header``.
- The stream ending inside a message is an error too. After any ``FramingError`` the reader
  cannot find the next message boundary, so it keeps raising the same error: close the stream.
"""

from __future__ import annotations

import re
from typing import Final

from .errors import FramingError
from .limits import Limits
from .ndjson import NEED_DATA, _NeedData

__all__ = ["MAX_HEADER", "MAX_MESSAGE", "NEED_DATA", "FramingError", "LSPReader", "lsp_encode"]

MAX_MESSAGE: Final = Limits().large_body
MAX_HEADER: Final = 8 * 1024
_MAX_DIGITS = 20  # keeps int() away from huge digit strings
_END_OF_HEADERS = re.compile(rb"\n\r?\n")


def lsp_encode(body: bytes) -> bytes:
    """One message in LSP's base protocol."""
    return b"Content-Length: %d\r\n\r\n" % len(body) + body


class LSPReader:
    """Incremental LSP base-protocol reader: ``receive_data(bytes)`` (``b""`` = the peer
    closed), then ``next_message()`` until it says ``NEED_DATA`` (or None at the end)."""

    def __init__(self, *, max_message: int = MAX_MESSAGE, max_header: int = MAX_HEADER) -> None:
        self._buf = bytearray()
        self._max_message = max_message
        self._max_header = max_header
        self._eof = False
        self._length: int | None = None  # the body length, once its headers are read
        self._scan_from = 0  # where the search for the end of the headers resumes
        self._error: FramingError | None = None

    def receive_data(self, data: bytes) -> None:
        """Feed bytes; ``b""`` means the peer closed the stream."""
        if not data:
            self._eof = True
            return
        if self._eof:
            raise RuntimeError("data received after the end of the stream")
        self._buf += data

    def next_message(self) -> bytes | _NeedData | None:
        """Return the next message body, ``NEED_DATA``, or None once the stream has ended
        between messages. Raises ``FramingError`` (and again on every later call)."""
        if self._error is not None:
            raise self._error
        try:
            return self._next()
        except FramingError as exc:
            self._error = exc
            self._buf.clear()
            raise

    def _next(self) -> bytes | _NeedData | None:
        if self._length is None:
            self._skip_blank_lines()
            length = self._read_headers()
            if length is None:
                if self._eof:
                    if self._buf:
                        raise FramingError("the stream ended inside a message's headers")
                    return None
                return NEED_DATA
            self._length = length
        n = self._length
        if len(self._buf) < n:
            if self._eof:
                raise FramingError(f"the stream ended {n - len(self._buf)} bytes short of a "
                                   f"{n}-byte message")
            return NEED_DATA
        body = bytes(self._buf[:n])
        del self._buf[:n]
        self._length = None
        return body

    def _skip_blank_lines(self) -> None:
        i = 0
        buf = self._buf
        while i < len(buf) and buf[i] in b"\r\n":
            i += 1
        if i:
            del buf[:i]
            self._scan_from = 0

    def _read_headers(self) -> int | None:
        """Consume a complete header block and return its Content-Length; None: incomplete."""
        buf = self._buf
        # The block (which starts with a non-blank line) ends at the first empty line.
        m = _END_OF_HEADERS.search(buf, self._scan_from)
        if m is None or m.start() > self._max_header:
            if len(buf) > self._max_header:
                raise FramingError(f"message headers longer than {self._max_header} bytes")
            self._scan_from = max(0, len(buf) - 2)  # "\n\r" may end this piece
            return None
        block = bytes(buf[:m.end()])
        del buf[:m.end()]
        self._scan_from = 0
        return self._content_length(block)

    def _content_length(self, block: bytes) -> int:
        length: int | None = None
        for raw in block.split(b"\n"):
            line = raw[:-1] if raw.endswith(b"\r") else raw
            if not line:
                continue
            name, colon, value = line.partition(b":")
            if not colon:
                raise FramingError(f"not a header line: {_show(line)}")
            if name.strip().lower() != b"content-length":
                continue
            text = value.strip(b" \t")
            if not text or len(text) > _MAX_DIGITS or not (text.isascii() and text.isdigit()):
                raise FramingError(f"invalid Content-Length: {_show(text)}")
            n = int(text)
            if length is not None and n != length:
                raise FramingError("two different Content-Length headers")
            length = n
        if length is None:
            raise FramingError("a message without a Content-Length header")
        if length > self._max_message:
            raise FramingError(f"a {length}-byte message: the limit is {self._max_message} bytes")
        return length


def _show(data: bytes) -> str:
    text = data[:80].decode("ascii", "backslashreplace")
    return repr(text + ("…" if len(data) > 80 else ""))
