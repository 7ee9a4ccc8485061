from __future__ import annotations

from pollama.core import responses as r


def test_generate_final_wire_order_and_omitempty() -> None:
    fin = r.Final(done_reason="stop", context=[1, 2],
                  metrics=r.Metrics(total_duration=10, load_duration=0, prompt_eval_count=3,
                                    prompt_eval_duration=4, eval_count=5, eval_duration=6))
    out = r.generate_final("m", "t", fin)
    assert list(out) == ["model", "created_at", "response", "done", "done_reason", "context",
                         "total_duration", "prompt_eval_count", "prompt_eval_duration",
                         "eval_count", "eval_duration"]
    assert out["response"] == "" and out["done"] is True


def test_chat_shapes() -> None:
    assert r.chat_chunk("m", "t", "hi") == {
        "model": "m", "created_at": "t", "message": {"role": "assistant", "content": "hi"},
        "done": False}
    fin = r.chat_final("m", "t", r.Final(done_reason="length"), "all")
    assert fin["message"]["content"] == "all" and "context" not in fin
    assert fin["done_reason"] == "length"


def test_load_responses() -> None:
    assert r.load_response("m", "t", chat=False, reason="load") == {
        "model": "m", "created_at": "t", "response": "", "done": True, "done_reason": "load"}
    assert r.load_response("m", "t", chat=True, reason="unload")["message"] == {
        "role": "assistant", "content": ""}
