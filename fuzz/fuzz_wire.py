"""Fuzz target: everything that decodes bytes from a client or a runner.

NDJSON framing, the runner protocol codec, and request bodies (JSON decode plus the
generate/chat/create/pull parsers). Allowed outcomes: a valid result or a ``PollamaError``.
Run directly for a session (atheris if installed, otherwise 10 s of mutated random input).
"""

from __future__ import annotations

import os
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import _loop  # noqa: E402  (the shared driver next to this file)

from pollama.core import jsonwire, ndjson, prompt  # noqa: E402
from pollama.core import requests as rq  # noqa: E402
from pollama.core import runner_protocol as rp  # noqa: E402
from pollama.core.errors import PollamaError  # noqa: E402

SEEDS = [
    b'{"model":"m","prompt":"hi","options":{"temperature":0,"stop":["x"]},"keep_alive":"5m"}',
    b'{"model":"m","messages":[{"role":"user","content":"hi","images":["aGk="]}],"stream":false}',
    b'{"model":"m","files":{"a.gguf":"sha256:' + b"0" * 64 + b'"},"parameters":{"num_ctx":8}}',
    b'{"type":"token","id":1,"text":"x"}\n{"type":"done","id":1,"done_reason":"stop"}\n',
    b'{"type":"complete","id":2,"prompt":"p","context":[1,2],"options":{}}\n',
    b'{"keep_alive":-1,"think":"high","top_logprobs":3,"format":{"type":"object"}}',
]

PARSERS = (rq.parse_generate, rq.parse_chat, rq.parse_create, rq.parse_pull)


def one_input(data: bytes) -> None:
    reader = ndjson.NDJSONReader(max_line=4096)
    reader.receive_data(data)
    reader.receive_data(b"")
    try:
        while reader.next_event() is not None:
            pass
    except PollamaError:
        pass
    for accept in (rp.SERVER_KINDS, rp.RUNNER_KINDS):
        codec = rp.RunnerCodec(accept=accept)
        codec.receive_data(data)
        codec.receive_data(b"")
        try:
            while (msg := codec.next_event()) not in (None, ndjson.NEED_DATA):
                assert isinstance(msg, accept)
                assert rp.from_wire(rp.to_wire(msg)) == msg  # type: ignore[arg-type]
        except PollamaError:
            pass
    try:
        body = jsonwire.loads_request(data)
    except PollamaError:
        return
    for parse in PARSERS:
        try:
            req = parse(body)
        except PollamaError:
            continue
        if isinstance(req, rq.ChatRequest):
            # every image gets exactly one [img-N] tag, numbered in order
            tagged = prompt.tag_images(req.messages)
            text = "".join(m.content for m in tagged)
            n = len(prompt.images_of(req.messages))
            assert all(f"[img-{i}]" in text for i in range(n))
    try:
        rq.check_format(body)
    except PollamaError:
        pass


_mutate = _loop.byte_mutator(b'{}[]":,0123456789abcnulltrue-.\n\\')


HARNESS = _loop.Harness(one_input, _mutate, SEEDS, max_random=64)
random_loop = HARNESS.random_loop

if __name__ == "__main__":
    HARNESS.main()
