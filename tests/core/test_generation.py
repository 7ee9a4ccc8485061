"""core/generation.py: one generation as a Sans-IO machine, driven by a scripted runner.

The scripted runner here stands in for llama-cpp-python only in these unit tests; the same
machine runs against the real runner in tests/e2e.
"""

from __future__ import annotations

from typing import Any

import pytest
from hypothesis import given, settings, strategies as st

from pollama.core import generation as gen
from pollama.core import thinking
from pollama.core.errors import BadRequest
from pollama.core.prompt import ModelPrompting
from pollama.core.requests import parse_chat, parse_generate

from tests.templates import THINK_TEMPLATE, TOOLS_TEMPLATE

CHATML = ("{{- range .Messages }}<|im_start|>{{ .Role }}\n{{ .Content }}<|im_end|>\n"
          "{{ end }}<|im_start|>assistant\n")
NO_THINK = thinking.ThinkSetting(think=None, level="", is_set=False)
THINK_ON = thinking.ThinkSetting(think=True, level="medium", is_set=True)
TAGS = thinking.ThinkingTags(open="<think>", close="</think>")


def at(ms: int) -> gen.Clock:
    return gen.Clock(ms * 1_000_000, f"t{ms}")


def job(body: dict[str, Any], *, chat: bool = True, template: str = CHATML, n_ctx: int = 4096,
        think: thinking.ThinkSetting = NO_THINK, tags: thinking.ThinkingTags | None = None,
        **kw: Any) -> gen.Job:
    body = {"model": "m", **body}
    req = parse_chat(body) if chat else parse_generate(body)
    ids = iter(f"call_{i}" for i in range(100))
    return gen.Job(request=req, prompting=ModelPrompting(go_template=template), think=think,
                   tags=tags, n_ctx=n_ctx, today="2026-01-01", started_ns=0, load_ns=5,
                   new_call_id=lambda: next(ids), **kw)


def script(j: gen.Job, tokens: list[str], *, done: str = "stop",
           counts: dict[str, int] | None = None) -> list[gen.Command]:
    """Run the machine to its end against a scripted runner: each Run produces ``tokens``
    then Done; CountTokens is answered from ``counts`` (by prompt) or one per byte."""
    m = gen.Generation(j)
    out: list[gen.Command] = []
    pending = list(m.start(at(1)))
    clock = 1
    while pending:
        cmd = pending.pop(0)
        out.append(cmd)
        clock += 1
        if isinstance(cmd, gen.CountTokens):
            n = (counts or {}).get(cmd.text, len(cmd.text.encode()))
            pending += m.receive(gen.TokenCount(n), at(clock))
        elif isinstance(cmd, gen.Run):
            produced: list[gen.Command] = []
            for t in tokens:
                produced = m.receive(gen.RunnerToken(t), at(clock))
                if any(isinstance(c, gen.StopRun) for c in produced):
                    break
                pending += produced
                produced = []
            if produced:
                pending += produced
                continue
            pending += m.receive(gen.RunnerDone(done_reason=done, prompt_eval_count=3,
                                                eval_count=len(tokens), eval_duration=7),
                                 at(100))
    assert m.phase is gen.Phase.OVER
    return out


def emitted(cmds: list[gen.Command]) -> list[dict[str, Any]]:
    return [c.obj for c in cmds if isinstance(c, (gen.Emit, gen.Finish))]


def test_generate_streams_chunks_then_final_with_metrics() -> None:
    cmds = script(job({"prompt": "hi"}, chat=False), ["Hel", "lo"])
    runs = [c for c in cmds if isinstance(c, gen.Run)]
    assert runs[0].prompt == "<|im_start|>user\nhi<|im_end|>\n<|im_start|>assistant\n"
    objs = emitted(cmds)
    assert [o["response"] for o in objs] == ["Hel", "lo", ""]
    assert objs[-1]["done"] is True and objs[-1]["done_reason"] == "stop"
    assert objs[-1]["total_duration"] == 100_000_000 and objs[-1]["load_duration"] == 5
    assert objs[-1]["prompt_eval_count"] == 3 and objs[-1]["eval_count"] == 2
    assert isinstance(cmds[-1], gen.Finish)


def test_chat_without_stream_is_one_final_object() -> None:
    cmds = script(job({"messages": [{"role": "user", "content": "hi"}], "stream": False}),
                  ["a", "b", "c"], done="length")
    objs = emitted(cmds)
    assert len(objs) == 1
    assert objs[0]["message"] == {"role": "assistant", "content": "abc"}
    assert objs[0]["done_reason"] == "length"


def test_cancelled_completion_reports_stop() -> None:
    objs = emitted(script(job({"prompt": "x"}, chat=False), ["a"], done="cancel"))
    assert objs[-1]["done_reason"] == "stop"


def test_generate_context_only_when_not_raw() -> None:
    m = gen.Generation(job({"prompt": "x"}, chat=False))
    m.start(at(1))
    final = m.receive(gen.RunnerDone(done_reason="stop", context=(1, 2)), at(2))
    assert isinstance(final[-1], gen.Finish) and final[-1].obj["context"] == [1, 2]
    m = gen.Generation(job({"prompt": "x", "raw": True}, chat=False))
    m.start(at(1))
    final = m.receive(gen.RunnerDone(done_reason="stop", context=(1, 2)), at(2))
    assert isinstance(final[-1], gen.Finish) and "context" not in final[-1].obj


def test_thinking_is_split_from_content() -> None:
    j = job({"messages": [{"role": "user", "content": "q"}]}, template=THINK_TEMPLATE,
            think=THINK_ON, tags=TAGS)
    objs = emitted(script(j, ["Let me ", "see</think>", "Answer"]))
    thoughts = "".join(o["message"].get("thinking", "") for o in objs)
    content = "".join(o["message"]["content"] for o in objs)
    assert thoughts == "Let me see" and content == "Answer"


def test_format_after_thinking_restarts_with_the_grammar() -> None:
    j = job({"messages": [{"role": "user", "content": "q"}], "format": "json"},
            template=THINK_TEMPLATE, think=THINK_ON, tags=TAGS)
    cmds = script(j, ["hmm", "</think>", "{\"a\""])
    runs = [c for c in cmds if isinstance(c, gen.Run)]
    assert [r.format for r in runs] == [None, "json"]
    assert runs[1].prompt == runs[0].prompt + "hmm</think>"
    assert any(isinstance(c, gen.StopRun) for c in cmds)
    objs = emitted(cmds)
    assert "".join(o["message"].get("thinking", "") for o in objs) == "hmm"
    # The answer pass (the scripted runner says the same tokens again; no tags this time).
    assert "".join(o["message"]["content"] for o in objs) == "hmm</think>{\"a\""


def test_tool_calls_come_in_their_own_chunk() -> None:
    tools = [{"type": "function", "function": {"name": "get", "parameters": {}}}]
    j = job({"messages": [{"role": "user", "content": "q"}], "tools": tools},
            template=TOOLS_TEMPLATE)
    cmds = script(j, ["<tool_call>\n", '{"name": "get", "arguments": {"x": 1}}', "\n</tool_call>"])
    run = next(c for c in cmds if isinstance(c, gen.Run))
    assert run.tools == tools and run.tool_format is not None and not run.tools_required
    calls = [c for o in emitted(cmds) for c in o["message"].get("tool_calls", [])]
    assert calls == [{"id": "call_0", "function": {"index": 0, "name": "get",
                                                    "arguments": {"x": 1}}}]


def test_tool_choice_required_reaches_the_runner() -> None:
    tools = [{"type": "function", "function": {"name": "get", "parameters": {}}}]
    j = job({"messages": [{"role": "user", "content": "q"}], "tools": tools,
             "tool_choice": "required"}, template=TOOLS_TEMPLATE)
    run = gen.Generation(j).start(at(1))[0]
    assert isinstance(run, gen.Run) and run.tools_required


def test_logprobs_without_text_wait_for_the_next_chunk() -> None:
    m = gen.Generation(job({"prompt": "x", "logprobs": True}, chat=False))
    assert isinstance(m.start(at(1))[0], gen.Run)
    lp1, lp2 = {"token": "a", "logprob": -1.0}, {"token": "b", "logprob": -2.0}
    # A partial stop/tag holds text back: no chunk, the logprob waits.
    m2 = gen.Generation(job({"messages": [{"role": "user", "content": "q"}], "logprobs": True},
                            template=THINK_TEMPLATE, think=THINK_ON, tags=TAGS))
    m2.start(at(1))
    assert m2.receive(gen.RunnerToken("</thi", (lp1,)), at(2)) == []
    out = m2.receive(gen.RunnerToken("nk>x", (lp2,)), at(3))
    assert isinstance(out[0], gen.Emit) and out[0].obj["logprobs"] == [lp1, lp2]
    out = m.receive(gen.RunnerToken("a", (lp1,)), at(2))
    assert isinstance(out[0], gen.Emit) and out[0].obj["logprobs"] == [lp1]


def test_debug_render_only_runs_nothing() -> None:
    cmds = gen.Generation(job({"messages": [{"role": "user", "content": "q"}],
                               "_debug_render_only": True})).start(at(1))
    assert len(cmds) == 1 and isinstance(cmds[0], gen.Finish)
    assert cmds[0].obj["_debug_info"]["rendered_template"].endswith("<|im_start|>assistant\n")


HISTORY = [{"role": "system", "content": "S"}, {"role": "user", "content": "old question"},
           {"role": "assistant", "content": "old answer"}, {"role": "user", "content": "now"}]


def test_truncation_drops_the_oldest_messages_until_it_fits() -> None:
    j = job({"messages": HISTORY}, n_ctx=100)
    cmds = script(j, ["ok"])
    counts = [c for c in cmds if isinstance(c, gen.CountTokens)]
    assert len(counts) >= 1
    run = next(c for c in cmds if isinstance(c, gen.Run))
    assert "S" in run.prompt and "now" in run.prompt and "old question" not in run.prompt
    assert len(run.prompt.encode()) <= 100


def test_truncation_refused_when_truncate_is_false() -> None:
    j = job({"messages": HISTORY, "truncate": False}, n_ctx=30)
    cmds = script(j, ["ok"])
    assert isinstance(cmds[-1], gen.Fail)
    assert isinstance(cmds[-1].error, BadRequest)
    assert cmds[-1].error.message == gen.CONTEXT_EXCEEDED
    assert not any(isinstance(c, gen.Run) for c in cmds)


def test_even_the_shortest_history_too_long_is_run() -> None:
    cmds = script(job({"messages": HISTORY}, n_ctx=5), ["ok"])
    run = next(c for c in cmds if isinstance(c, gen.Run))
    assert "old" not in run.prompt and "now" in run.prompt


def test_runner_failure_keeps_its_status() -> None:
    m = gen.Generation(job({"prompt": "x"}, chat=False))
    m.start(at(1))
    out = m.receive(gen.RunnerFailed("bad image", 400), at(2))
    assert isinstance(out[0], gen.Fail) and out[0].error.status_hint == 400
    assert not m.emitted and m.phase is gen.Phase.OVER


def test_events_out_of_phase_are_adapter_bugs() -> None:
    m = gen.Generation(job({"prompt": "x"}, chat=False))
    with pytest.raises(gen.GenerationError):
        m.receive(gen.RunnerToken("a"), at(1))
    m.start(at(1))
    with pytest.raises(gen.GenerationError):
        m.receive(gen.TokenCount(3), at(2))
    with pytest.raises(gen.GenerationError):
        m.start(at(2))


def test_bad_requests_fail_at_start() -> None:
    for body in ({"prompt": "x", "raw": True, "system": "s"}, {"prompt": "x", "suffix": "y"}):
        out = gen.Generation(job(body, chat=False)).start(at(1))
        assert isinstance(out[0], gen.Fail) and out[0].error.status_hint == 400


@pytest.mark.parametrize("body, chat, kind", [
    ({"messages": []}, True, "load"),
    ({"messages": [], "keep_alive": 0}, True, "unload"),
    ({"messages": [{"role": "user", "content": "x"}], "keep_alive": 0}, True, None),
    ({"prompt": ""}, False, "load"),
    ({"prompt": "", "keep_alive": "0s"}, False, "unload"),
    ({"prompt": "x"}, False, None),
])
def test_load_only_kind(body: dict[str, Any], chat: bool, kind: str | None) -> None:
    req = parse_chat({"model": "m", **body}) if chat else parse_generate({"model": "m", **body})
    assert gen.load_only_kind(req) == kind
    assert gen.single_object(req) == (kind is not None)


@settings(max_examples=200, deadline=None)
@given(tokens=st.lists(st.text(max_size=6), max_size=12), think=st.booleans())
def test_streamed_pieces_add_up_to_the_unstreamed_answer(tokens: list[str], think: bool) -> None:
    """Invariant: whatever the token split, the chunks of a stream concatenate to the one
    object of the same request without streaming."""
    def run(stream: bool) -> tuple[str, str]:
        j = job({"messages": [{"role": "user", "content": "q"}], "stream": stream},
                template=THINK_TEMPLATE, think=THINK_ON if think else NO_THINK,
                tags=TAGS if think else None)
        objs = emitted(script(j, tokens))
        return ("".join(o["message"]["content"] for o in objs),
                "".join(o["message"].get("thinking", "") for o in objs))
    assert run(True) == run(False)


def test_relaxed_thinking_is_ignored_by_models_that_cannot_think() -> None:
    with pytest.raises(BadRequest):
        thinking.resolve_think(True, False, "m")
    assert thinking.resolve_think(True, False, "m", relax=True) == NO_THINK
    assert thinking.resolve_think("high", True, "m", relax=True).level == "high"
