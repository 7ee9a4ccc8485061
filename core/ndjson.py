"""Newline-delimited JSON framing, Sans-IO (in the shape of h11's receive_data/next_event).

Used for Ollama's streaming responses (``application/x-ndjson``: one JSON object and ``\\n`` per
chunk) and for the runner protocol. The reader buffers at most ``max_line`` bytes of an unfinished
line; a longer line is a protocol error rather than unbounded memory.
"""

from __future__ import annotations

import json
from typing import Any, Final

from . import jsonwire
from .errors import NDJSONError

__all__ = ["NEED_DATA", "NDJSONReader", "encode"]


class _NeedData:
    def __repr__(self) -> str:
        return "NEED_DATA"


NEED_DATA: Final = _NeedData()


class NDJSONReader:
    def __init__(self, *, max_line: int = 16 * 1024 * 1024) -> None:
        self._buf = bytearray()
        self._max_line = max_line
        self._eof = False
        self._scan_from = 0

    def receive_data(self, data: bytes) -> None:
        """Feed bytes; ``b""`` means the peer closed the stream."""
        if not data:
            self._eof = True
            return
        self._buf += data

    def next_event(self) -> Any:
        """Return the next decoded JSON value, ``NEED_DATA``, or ``None`` at clean EOF.

        Blank lines are skipped. A final line without ``\\n`` at EOF is still decoded.
        """
        while True:
            idx = self._buf.find(b"\n", self._scan_from)
            if idx < 0:
                if len(self._buf) > self._max_line:
                    raise NDJSONError(f"line longer than {self._max_line} bytes")
                self._scan_from = len(self._buf)
                if self._eof:
                    if self._buf.strip():
                        line = bytes(self._buf)
                        self._buf.clear()
                        self._scan_from = 0
                        return _decode(line)
                    return None
                return NEED_DATA
            line = bytes(self._buf[:idx])
            del self._buf[: idx + 1]
            self._scan_from = 0
            if line.strip():
                return _decode(line)


def _decode(line: bytes) -> Any:
    try:
        return json.loads(line)
    except (ValueError, RecursionError) as exc:
        raise NDJSONError(f"invalid NDJSON line: {exc}") from None


def encode(value: Any) -> bytes:
    """One NDJSON line, Go-compatible JSON."""
    return jsonwire.dumps(value) + b"\n"
