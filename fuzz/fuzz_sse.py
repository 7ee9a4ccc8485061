"""Fuzz target: the Server-Sent Events reader (pollama.core.sse).

Any bytes, fed whole and in pieces, give events or ``SSEError``, never anything else; the
events are the same however the bytes are split; and re-encoding what was read reads back the
same. Run directly for a session (atheris if installed, otherwise 10 s of mutated random input);
the same ``one_input`` runs under Hypothesis in ``tests/core/test_fuzz_harnesses.py``.
"""

from __future__ import annotations

import os
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import _loop  # noqa: E402  (the shared driver next to this file)

from pollama.core import sse  # noqa: E402
from pollama.core.sse import NEED_DATA, Event, SSEError, SSEReader  # noqa: E402

SEEDS = [
    b'data: {"id":"chatcmpl-1","choices":[]}\n\ndata: [DONE]\n\n',
    b'event: response.created\ndata: {"type":"response.created"}\n\n',
    b"\xef\xbb\xbf: comment\r\nid: 1\r\nretry: 300\r\ndata:a\r\ndata\r\n\r\n",
    b"data: x\rdata: y\r\r",
    b"event\ndata:  spaced\nid: \x00\nfoo: bar\n\n",
]


def _read(data: bytes, step: int, max_event: int = 4096) -> list[Event] | None:
    """Events read from ``data`` fed ``step`` bytes at a time; None if it raised SSEError."""
    reader = SSEReader(max_event=max_event)
    out: list[Event] = []
    try:
        for i in range(0, len(data), step) if data else ():
            reader.receive_data(data[i:i + step])
            while (ev := reader.next_event()) is not NEED_DATA and ev is not None:
                assert isinstance(ev, Event)
                out.append(ev)
        reader.receive_data(b"")
        while (ev := reader.next_event()) is not None:
            assert ev is not NEED_DATA
            assert isinstance(ev, Event)
            out.append(ev)
    except SSEError:
        return None
    return out


def one_input(data: bytes) -> None:
    whole = _read(data, max(1, len(data)))
    for step in (1, 3):
        split = _read(data, step)
        if whole is not None and split is not None:
            assert split == whole, (step, split, whole)
    if not whole:
        return
    again = _read(b"".join(sse.encode(ev.data, ev.event) for ev in whole), 7,
                  max_event=1 << 24)
    assert again is not None
    assert [(e.data, e.event) for e in again] == [(e.data, e.event) for e in whole]


_mutate = _loop.byte_mutator(b"\r\n: datevnirty\x00\xef\xbb\xbf")


HARNESS = _loop.Harness(one_input, _mutate, SEEDS, max_random=64)
random_loop = HARNESS.random_loop

if __name__ == "__main__":
    HARNESS.main()
