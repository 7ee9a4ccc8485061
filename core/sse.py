"""Server-Sent Events framing, Sans-IO (shaped like ``ndjson.py``: receive_data/next_event).

The OpenAI- and Anthropic-compatible endpoints stream ``text/event-stream`` (Ollama's
openai/openai.go): ``data: <json>\\n\\n`` per chunk, ``event: <type>\\n`` in front for the
Responses and Messages APIs, and ``data: [DONE]\\n\\n`` at the end of a chat or completions stream.

The reader follows the WHATWG HTML "event stream interpretation" rules: lines end in CRLF, LF or
a lone CR; a leading BOM is dropped; ``:`` lines are comments; ``field:value`` drops one space
after the colon and a line without a colon is a field with an empty value; ``data`` lines join
with ``\\n``; ``id`` (unless it holds NUL) persists across events; ``retry`` takes ASCII digits
only; a blank line dispatches, and a block without ``data`` dispatches nothing. At end of
stream an unfinished event is discarded, as the spec says. Undecodable UTF-8 becomes U+FFFD.

The reader holds at most ``max_event`` bytes of one event (its data so far plus an unfinished
line); more is a protocol error rather than unbounded memory.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Final

from .errors import SSEError
from .jsonwire import go_text
from .ndjson import NEED_DATA, _NeedData

__all__ = ["DONE", "NEED_DATA", "Decoder", "Event", "SSEError", "SSEReader", "comment", "encode"]

DONE: Final = b"data: [DONE]\n\n"

_BOM = b"\xef\xbb\xbf"
_EOL = re.compile(rb"[\r\n]")
_SPLIT = re.compile(r"\r\n|\r|\n")
_SPLIT_BYTES = re.compile(rb"\r\n|\r|\n")
# A retry value longer than this is ignored: no client waits 10^18 ms, and it keeps int()
# away from Python's limit on huge digit strings.
_MAX_RETRY_DIGITS = 18


@dataclass(frozen=True, slots=True, kw_only=True)
class Event:
    """One dispatched event. ``event`` is ``"message"`` when the block named none; ``id`` is
    the stream's last event id (it persists until an ``id:`` line changes it; ``""`` if never
    set); ``retry`` is a ``retry:`` value given in this event's block, else None."""

    data: str
    event: str = "message"
    id: str = ""
    retry: int | None = None

    def __post_init__(self) -> None:
        if self.retry is not None and self.retry < 0:
            raise ValueError(f"retry must be non-negative, not {self.retry}")


def _line_safe(text: str, what: str) -> str:
    if "\r" in text or "\n" in text:
        raise ValueError(f"an SSE {what} cannot contain a line break: {text!r}")
    return text


def encode(data: str | bytes, event: str | None = None, *, id: str | None = None,
           retry: int | None = None) -> bytes:
    """One event: ``event: X`` (if given), ``id:``/``retry:`` (if given), then one ``data:``
    line per line of ``data`` (CRLF, CR and LF all split), then a blank line. A reader gives
    back ``data`` with its line breaks as ``\\n``."""
    out = bytearray()
    if event is not None:
        out += b"event: " + go_text(_line_safe(event, "event name")).encode() + b"\n"
    if id is not None:
        if "\0" in id:
            raise ValueError("an SSE id cannot contain NUL")
        out += b"id: " + go_text(_line_safe(id, "id")).encode() + b"\n"
    if retry is not None:
        if retry < 0:
            raise ValueError(f"retry must be non-negative, not {retry}")
        out += b"retry: %d\n" % retry
    lines: list[bytes]
    if isinstance(data, str):
        lines = [line.encode() for line in _SPLIT.split(go_text(data))]
    else:
        lines = _SPLIT_BYTES.split(bytes(data))
    for line in lines:
        out += b"data: " + line + b"\n"
    out += b"\n"
    return bytes(out)


def comment(text: str = "") -> bytes:
    """A comment line (readers ignore it): a keep-alive that dispatches nothing."""
    return b":" + (b" " + go_text(_line_safe(text, "comment")).encode() if text else b"") + b"\n\n"


class SSEReader:
    """Incremental event-stream reader: ``receive_data(bytes)`` (``b""`` = the peer closed),
    then ``next_event()`` until it says ``NEED_DATA`` (or None at the end of the stream)."""

    def __init__(self, *, max_event: int = 16 * 1024 * 1024) -> None:
        self._buf = bytearray()
        self._max_event = max_event
        self._eof = False
        self._scan_from = 0
        self._started = False  # the BOM check is done
        self._skip_lf = False  # the last line ended in CR at the end of the buffer
        self._data: list[str] = []
        self._data_size = 0
        self._event_type = ""
        self._retry: int | None = None
        self.last_event_id = ""
        self.retry: int | None = None  # the reconnection time in force, from ``retry:`` lines

    def receive_data(self, data: bytes) -> None:
        """Feed bytes; ``b""`` means the peer closed the stream."""
        if not data:
            self._eof = True
            return
        self._buf += data

    def next_event(self) -> Event | _NeedData | None:
        """Return the next ``Event``, ``NEED_DATA``, or ``None`` once the stream has ended (an
        unfinished event at that point is dropped)."""
        while True:
            if self._skip_lf and self._buf:
                if self._buf[0] == 0x0A:
                    del self._buf[0]
                self._skip_lf = False
            if not self._started:
                if len(self._buf) < len(_BOM) and _BOM.startswith(self._buf) and not self._eof:
                    return NEED_DATA
                if self._buf.startswith(_BOM):
                    del self._buf[: len(_BOM)]
                self._started = True
            m = _EOL.search(self._buf, self._scan_from)
            if m is None:
                if len(self._buf) + self._data_size > self._max_event:
                    raise SSEError(f"event larger than {self._max_event} bytes")
                if self._eof:
                    self._buf.clear()
                    self._reset()
                    self._scan_from = 0
                    return None
                self._scan_from = len(self._buf)
                return NEED_DATA
            idx = m.start()
            end = idx + 1
            if self._buf[idx] == 0x0D:
                if end < len(self._buf):
                    if self._buf[end] == 0x0A:
                        end += 1
                else:
                    self._skip_lf = True  # a LF may follow in the next data
            line = bytes(self._buf[:idx])
            del self._buf[:end]
            self._scan_from = 0
            event = self._process(line)
            if event is not None:
                return event

    def _process(self, raw: bytes) -> Event | None:
        if not raw:
            return self._dispatch()
        line = raw.decode("utf-8", "replace")
        if line[0] == ":":
            return None
        name, colon, value = line.partition(":")
        if colon and value[:1] == " ":
            value = value[1:]
        if name == "data":
            self._data_size += len(raw) + 1
            if self._data_size > self._max_event:
                raise SSEError(f"event larger than {self._max_event} bytes")
            self._data.append(value)
        elif name == "event":
            self._event_type = value
        elif name == "id":
            if "\0" not in value:
                self.last_event_id = value
        elif name == "retry":
            if value.isascii() and value.isdigit() and len(value) <= _MAX_RETRY_DIGITS:
                self.retry = self._retry = int(value)
        return None

    def _dispatch(self) -> Event | None:
        if not self._data:
            self._reset()
            return None
        event = Event(data="\n".join(self._data), event=self._event_type or "message",
                      id=self.last_event_id, retry=self._retry)
        self._reset()
        return event

    def _reset(self) -> None:
        self._data = []
        self._data_size = 0
        self._event_type = ""
        self._retry = None


# The name the h11-style API uses elsewhere in the brief for this codec.
Decoder = SSEReader
