from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from pollama.core import runner_protocol as rp
from pollama.core.ndjson import NEED_DATA

MESSAGES: list[rp.Message] = [
    rp.Load(id=1, model_path="/m.gguf", num_ctx=2048, use_mmap=None),
    rp.Complete(id=2, prompt="hi", context=[1, 2], options={"temperature": 0.0, "stop": ["x"]}),
    rp.Cancel(id=3, target=2),
    rp.Tokenize(id=4, text="abc"),
    rp.Shutdown(id=5),
    rp.Embed(id=6, inputs=["a", "b"], truncate=False, num_ctx=1),
    rp.Embed(id=7, inputs=["a"], num_ctx=None),
    rp.Loaded(id=1, n_ctx=2048, n_ctx_train=8192, n_vocab=49152, n_embd=576,
              chat_template="{{x}}", bos_token="<s>", eos_token="</s>"),
    rp.Token(id=2, text="hé"),
    rp.Done(id=2, done_reason="stop", prompt_eval_count=3, eval_count=4, context=[1, 2, 3]),
    rp.Tokens(id=4, tokens=[7, 8]),
    rp.Failed(id=2, message="boom"),
]


@pytest.mark.parametrize("msg", MESSAGES)
def test_round_trip(msg: rp.Message) -> None:
    assert rp.from_wire(rp.to_wire(msg)) == msg
    assert eval(repr(msg), vars(rp)) == msg  # repr is valid Python


def test_codec_byte_at_a_time_and_sides() -> None:
    data = b"".join(rp.RunnerCodec.send(m) for m in MESSAGES if isinstance(m, rp.RUNNER_KINDS))
    codec = rp.RunnerCodec(accept=rp.RUNNER_KINDS)
    got = []
    for i in range(len(data)):
        codec.receive_data(data[i:i + 1])
        while (ev := codec.next_event()) not in (NEED_DATA, None):
            got.append(ev)
    assert got == [m for m in MESSAGES if isinstance(m, rp.RUNNER_KINDS)]
    codec.receive_data(b"")
    assert codec.next_event() is None
    server_side = rp.RunnerCodec(accept=rp.SERVER_KINDS)
    server_side.receive_data(rp.RunnerCodec.send(rp.Token(id=1, text="x")))
    with pytest.raises(rp.RunnerProtocolError):
        server_side.next_event()


@pytest.mark.parametrize("obj", [
    [], "x", {"type": "nope", "id": 1}, {"type": "token"},
    {"type": "token", "id": "1", "text": ""}, {"type": "done", "id": 1, "done_reason": "weird"},
    {"type": "tokens", "id": 1, "tokens": [True]},
    {"type": "load", "id": 1, "model_path": "m", "num_ctx": "big"},
    {"type": "complete", "id": 1, "prompt": "p", "options": []},
    {"type": "embed", "id": 1, "inputs": ["a"], "num_ctx": True},
    {"type": "embed", "id": 1, "inputs": ["a"], "num_ctx": "1"},
])
def test_invalid_messages(obj: object) -> None:
    with pytest.raises(rp.RunnerProtocolError):
        rp.from_wire(obj)


@given(st.binary())
def test_arbitrary_bytes(data: bytes) -> None:
    codec = rp.RunnerCodec(accept=rp.RUNNER_KINDS)
    codec.receive_data(data)
    codec.receive_data(b"")
    try:
        while codec.next_event() not in (None, NEED_DATA):
            pass
    except rp.RunnerProtocolError:
        pass
