"""Reading the core's buffering codecs (core/ndjson.py, core/sse.py, core/jsonrpc_framing.py)
the way h11's tests do: fed whole, one byte at a time, or in pieces, then drained."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from pollama.core.ndjson import NEED_DATA


def drain(next_item: Callable[[], object]) -> list[Any]:
    """What ``next_item`` (a reader's ``next_event``/``next_message``) gives until it says
    NEED_DATA or the end (None)."""
    out = []
    while (item := next_item()) is not NEED_DATA and item is not None:
        out.append(item)
    return out


def whole(receive_data: Callable[[bytes], None], next_item: Callable[[], object],
          data: bytes) -> list[Any]:
    """Feed ``data`` in one piece: its items, then NEED_DATA until the input ends, then None
    (and None again)."""
    receive_data(data)
    out = drain(next_item)
    assert next_item() is NEED_DATA
    receive_data(b"")
    assert next_item() is None
    assert next_item() is None
    return out


def byte_at_a_time(receive_data: Callable[[bytes], None], next_item: Callable[[], object],
                   data: bytes) -> list[Any]:
    """Feed ``data`` one byte at a time, draining after each."""
    out = []
    for i in range(len(data)):
        receive_data(data[i:i + 1])
        out += drain(next_item)
    return out
