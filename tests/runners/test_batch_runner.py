"""The runner's batch loop (runners/llama_runner.py ``Runner.work_loop``) on the real
SmolLM2-135M: concurrent completions on one runner decode together, and each gives the text it
gives alone (greedy, flash attention on); cancellation, prefix reuse, grammars, stops, context
shift, embeddings, tokenize and image prompts between steps leave the other streams unchanged.

The Runner runs in process: its work loop in a thread, messages put on its queue as its reader
thread would, its output parsed from the bytes it writes. Work is bounded by num_predict; there
are no timing assertions.
"""

from __future__ import annotations

import base64
import json
import threading
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

import pytest

from pollama.core import runner_protocol as rp
from pollama.runners.llama_runner import Runner
from tests import tinymmproj

GREEDY: dict[str, Any] = {"temperature": 0, "num_predict": 24}
PROMPTS = ["What is the capital of France?", "Write a haiku about the sea.",
           "List three prime numbers.", "Name a famous painter and one of their paintings."]


def chat(text: str) -> str:
    return f"<|im_start|>user\n{text}<|im_end|>\n<|im_start|>assistant\n"


@dataclass
class Result:
    text: str = ""
    tokens: int = 0  # Token messages
    done: rp.Done | None = None
    failed: rp.Failed | None = None
    other: list[Any] = field(default_factory=list)  # Embeddings, Tokens, Loaded
    logprobs: list[dict[str, Any]] = field(default_factory=list)


class Sink:
    """The runner's protocol output: parses what it writes, per request id."""

    def __init__(self) -> None:
        self.codec = rp.RunnerCodec(accept=rp.RUNNER_KINDS)
        self.results: dict[int, Result] = {}
        self.order: list[tuple[int, str]] = []  # (id, message type) of every message but Token
        self.cond = threading.Condition()
        self.writes = 0

    def write(self, data: bytes) -> int:
        with self.cond:
            self.writes += 1
            self.codec.receive_data(data)
            while isinstance(msg := self.codec.next_event(), rp.RUNNER_KINDS):
                r = self.results.setdefault(msg.id, Result())
                if not isinstance(msg, rp.Token):
                    self.order.append((msg.id, type(msg).__name__))
                if isinstance(msg, rp.Token):
                    r.text += msg.text
                    r.tokens += 1
                    r.logprobs += msg.logprobs or []
                elif isinstance(msg, rp.Done):
                    r.done = msg
                elif isinstance(msg, rp.Failed):
                    r.failed = msg
                else:
                    r.other.append(msg)
            self.cond.notify_all()
        return len(data)

    def flush(self) -> None:
        pass


class Harness:
    def __init__(self, model: str, *, num_ctx: int = 512, num_parallel: int = 4,
                 projectors: list[str] | None = None) -> None:
        self.sink = Sink()
        self.runner = Runner(self.sink)  # type: ignore[arg-type]
        self.thread = threading.Thread(target=self.runner.work_loop, daemon=True)
        self.thread.start()
        self.next_id = 1
        self.put(rp.Load(id=0, model_path=model, num_ctx=num_ctx, num_thread=2,
                         num_parallel=num_parallel, flash_attention=1,
                         projectors=projectors or []))
        loaded = self.wait(0, lambda r: bool(r.other) or r.failed is not None)
        assert loaded.failed is None and isinstance(loaded.other[0], rp.Loaded)
        self.loaded: rp.Loaded = loaded.other[0]

    def new_id(self) -> int:
        self.next_id += 1
        return self.next_id

    def put(self, msg: Any) -> None:
        """As the runner's reader thread routes a message."""
        if isinstance(msg, rp.Cancel):
            with self.runner._cancel_lock:
                self.runner._cancelled.add(msg.target)
        else:
            self.runner._work.put(msg)

    def complete(self, prompt: str, **kw: Any) -> int:
        rid = self.new_id()
        kw.setdefault("options", GREEDY)
        self.put(rp.Complete(id=rid, prompt=prompt, **kw))
        return rid

    def wait(self, rid: int, check: Any = None, timeout: float = 300) -> Result:
        check = check or (lambda r: r.done is not None or r.failed is not None)
        with self.sink.cond:
            ok = self.sink.cond.wait_for(
                lambda: rid in self.sink.results and check(self.sink.results[rid]), timeout)
            assert ok, f"request {rid} did not finish"
            return self.sink.results[rid]

    def run(self, prompt: str, **kw: Any) -> Result:
        return self.wait(self.complete(prompt, **kw))

    def close(self) -> None:
        self.runner._work.put(None)
        self.thread.join(60)


@pytest.fixture(scope="module")
def mmproj(tmp_path_factory: pytest.TempPathFactory) -> str:
    return tinymmproj.write_mmproj(str(tmp_path_factory.mktemp("mmproj") / "mmproj.gguf"), 576)


@pytest.fixture(scope="module")
def h(smollm2_gguf: str, mmproj: str) -> Iterator[Harness]:
    harness = Harness(smollm2_gguf, projectors=[mmproj])
    yield harness
    harness.close()


@pytest.fixture(scope="module")
def alone(h: Harness) -> dict[str, Result]:
    """Each prompt decoded with nothing else on the runner."""
    return {p: h.run(chat(p)) for p in PROMPTS}


def test_loaded_reports_the_per_sequence_context(h: Harness) -> None:
    assert h.loaded.n_ctx == 512
    assert h.runner._decoder is not None and len(h.runner._decoder.slots) == 4


def test_four_concurrent_requests_give_their_solo_text(h: Harness,
                                                       alone: dict[str, Result]) -> None:
    steps_before = h.sink.writes
    ids = [h.complete(chat(p)) for p in PROMPTS]
    got = [h.wait(i) for i in ids]
    for p, r in zip(PROMPTS, got):
        assert r.failed is None and r.done is not None
        assert r.text == alone[p].text
        assert r.done.context == alone[p].done.context  # type: ignore[union-attr]
        assert r.done.eval_count == alone[p].done.eval_count  # type: ignore[union-attr]
    # decoded together: one write per step carries every sequence's token, so there were
    # fewer writes than Token messages
    assert h.sink.writes - steps_before < sum(r.tokens for r in got)


def test_cancelling_one_leaves_the_others_unchanged(h: Harness,
                                                    alone: dict[str, Result]) -> None:
    opts = {"temperature": 0, "num_predict": 200}
    victim = h.complete(chat("Tell me a very long story about a dragon."), options=opts)
    ids = [h.complete(chat(p)) for p in PROMPTS[:3]]
    h.wait(victim, lambda r: r.tokens >= 3)
    h.put(rp.Cancel(id=h.new_id(), target=victim))
    cancelled = h.wait(victim)
    assert cancelled.done is not None and cancelled.done.done_reason == "cancel"
    assert cancelled.done.eval_count < 200
    for p, i in zip(PROMPTS[:3], ids):
        assert h.wait(i).text == alone[p].text


def test_cancel_before_admission(h: Harness) -> None:
    opts = {"temperature": 0, "num_predict": 30}
    busy = [h.complete(chat(p), options=opts) for p in PROMPTS]  # every slot taken
    late = h.new_id()
    h.put(rp.Cancel(id=h.new_id(), target=late))
    h.put(rp.Complete(id=late, prompt=chat("Hello"), options=opts))
    r = h.wait(late)
    assert r.done is not None and r.done.done_reason == "cancel" and r.text == ""
    for i in busy:
        assert h.wait(i).done is not None


SYSTEM = ("<|im_start|>system\nYou are Bob, a careful assistant who answers in one short "
          "sentence and never uses lists.<|im_end|>\n")


def test_prefix_reuse_gives_the_cold_output(h: Harness, smollm2_gguf: str) -> None:
    """A prompt sharing a prefilled prefix with an earlier one evaluates only the rest and
    answers as a cold run. (A prefix that holds *generated* tokens is reused too, but their
    KV was computed one token per decode, which llama.cpp's kernels round differently from
    a prefill, so such a turn may differ from a cold run in a near-tie, as in llama-server.)"""
    first = h.run(SYSTEM + chat("What is the capital of France?"))
    assert first.done is not None
    second_prompt = SYSTEM + chat("What is the largest ocean?")
    warm = h.run(second_prompt)
    assert warm.done is not None
    cold_runner = Harness(smollm2_gguf, num_parallel=1)
    try:
        cold = cold_runner.run(second_prompt)
        # a second turn built on the first's context reuses its whole cache (prompt and
        # generated tokens but the last, which was sampled and never evaluated)
        turn1 = cold_runner.run(chat("My name is Ada. Remember it."))
        assert turn1.done is not None
        turn2 = cold_runner.run(chat("What is my name?"), context=turn1.done.context)
        assert turn2.done is not None and turn2.done.prompt_cached >= len(turn1.done.context) - 1
    finally:
        cold_runner.close()
    assert cold.done is not None and cold.done.prompt_cached == 0
    assert warm.done.prompt_cached > len(SYSTEM) // 8  # the system prompt at least
    assert warm.text == cold.text
    assert warm.done.prompt_eval_count == cold.done.prompt_eval_count  # the whole prompt


def test_grammars_and_stops_hold_per_sequence(h: Harness) -> None:
    schema = {"type": "object", "properties": {"name": {"type": "string"},
                                               "age": {"type": "integer"}},
              "required": ["name", "age"]}
    jobs: list[tuple[str, dict[str, Any]]] = [
        (chat("Describe a person as JSON."), {"format": schema,
                                              "options": {"temperature": 0, "num_predict": 60}}),
        (chat("Give me a JSON list of colors."), {"format": "json",
                                                  "options": {"temperature": 0,
                                                              "num_predict": 40}}),
        (chat("List the days of the week, one per line."),
         {"options": {"temperature": 0, "num_predict": 40, "stop": ["Wednesday"]}}),
        (chat("Count from one to ten in words."),
         {"options": {"temperature": 0, "num_predict": 40}}),
    ]
    solo = [h.run(p, **kw) for p, kw in jobs]
    ids = [h.complete(p, **kw) for p, kw in jobs]
    together = [h.wait(i) for i in ids]
    for s, t in zip(solo, together):
        assert t.text == s.text and t.done is not None and s.done is not None
        assert t.done.done_reason == s.done.done_reason
    person = json.loads(together[0].text)
    assert isinstance(person["name"], str) and isinstance(person["age"], int)
    assert together[1].text.lstrip().startswith(("{", "["))
    assert "Wednesday" not in together[2].text
    assert together[2].done.done_reason == "stop"  # type: ignore[union-attr]


def test_seeded_sampling_per_sequence(h: Harness) -> None:
    opts = {"temperature": 0.9, "seed": 7, "num_predict": 20}
    solo = h.run(chat(PROMPTS[1]), options=opts)
    ids = [h.complete(chat(PROMPTS[1]), options=opts) for _ in range(3)]
    ids.append(h.complete(chat(PROMPTS[0]), options={**opts, "seed": 8}))
    got = [h.wait(i) for i in ids]
    assert [g.text for g in got[:3]] == [solo.text] * 3


def test_embedding_and_tokenize_during_decoding(h: Harness, alone: dict[str, Result]) -> None:
    text = "The sky is blue because molecules scatter blue light."
    idle_id = h.new_id()
    h.put(rp.Embed(id=idle_id, inputs=[text]))
    idle = h.wait(idle_id, lambda r: bool(r.other) or r.failed is not None)
    assert isinstance(idle.other[0], rp.Embeddings)

    ids = [h.complete(chat(p)) for p in PROMPTS[:3]]
    h.wait(ids[0], lambda r: r.tokens >= 2)
    tok_id, emb_id = h.new_id(), h.new_id()
    h.put(rp.Tokenize(id=tok_id, text="hello world"))
    h.put(rp.Embed(id=emb_id, inputs=[text]))
    tokens = h.wait(tok_id, lambda r: bool(r.other))
    assert isinstance(tokens.other[0], rp.Tokens) and tokens.other[0].tokens
    during = h.wait(emb_id, lambda r: bool(r.other) or r.failed is not None)
    assert isinstance(during.other[0], rp.Embeddings)
    # served between steps, in the spare KV stream: before the streams ended
    order = list(h.sink.order)
    assert (ids[0], "Done") not in order[:order.index((emb_id, "Embeddings"))]
    assert during.other[0].embeddings == idle.other[0].embeddings
    for p, i in zip(PROMPTS[:3], ids):
        assert h.wait(i).text == alone[p].text
    # several inputs of different lengths: one vector each, as each alone
    many_id = h.new_id()
    inputs = ["short", text, "a somewhat longer input " * 5, "x"]
    h.put(rp.Embed(id=many_id, inputs=inputs))
    many = h.wait(many_id, lambda r: bool(r.other) or r.failed is not None)
    assert many.failed is None and len(many.other[0].embeddings) == 4
    assert max(abs(a - b) for a, b in zip(many.other[0].embeddings[1],
                                          idle.other[0].embeddings[0])) < 1e-5
    # and after the embedding batch cleared the cache, completions are still right
    assert h.run(chat(PROMPTS[3])).text == alone[PROMPTS[3]].text


def test_image_prompt_during_decoding(h: Harness, alone: dict[str, Result]) -> None:
    red = base64.b64encode(tinymmproj.png(32, 32, lambda x, y: (255, 0, 0))).decode()
    prompt = chat("[img-0]What is in this image?")
    opts = {"temperature": 0, "num_predict": 12}
    solo = h.run(prompt, images=[red], options=opts)
    assert solo.failed is None and solo.done is not None and solo.done.eval_count
    ids = [h.complete(chat(p)) for p in PROMPTS[:3]]
    h.wait(ids[0], lambda r: r.tokens >= 2)
    img = h.complete(prompt, images=[red], options=opts)
    assert h.wait(img).text == solo.text
    for p, i in zip(PROMPTS[:3], ids):
        assert h.wait(i).text == alone[p].text


def test_logprobs_per_sequence(h: Harness) -> None:
    opts = {"temperature": 0, "num_predict": 8}
    solo = h.run(chat(PROMPTS[2]), options=opts, logprobs=True, top_logprobs=3)
    ids = [h.complete(chat(p), options=opts, logprobs=i == 0, top_logprobs=3 if i == 0 else 0)
           for i, p in enumerate([PROMPTS[2], PROMPTS[0], PROMPTS[1]])]
    got = [h.wait(i) for i in ids]
    assert len(solo.logprobs) == 8
    assert got[0].logprobs == solo.logprobs
    assert all(len(e["top_logprobs"]) == 3 for e in solo.logprobs)
    assert got[1].logprobs == [] and got[2].logprobs == []


def test_context_shift_and_length_stop_per_sequence(smollm2_gguf: str) -> None:
    small = Harness(smollm2_gguf, num_ctx=256, num_parallel=3)
    try:
        count = ", ".join(str(i) for i in range(1, 20)) + ","
        opts = {"temperature": 0, "num_predict": 320}
        shift_alone = small.run(count, options=opts)
        stop_alone = small.run(count, options=opts, shift=False)
        ids = [small.complete(count, options=opts),
               small.complete(count, options=opts, shift=False),
               small.complete(chat(PROMPTS[0]))]
        shifted, stopped, other = (small.wait(i) for i in ids)
        assert shifted.done is not None and stopped.done is not None
        assert shifted.done.done_reason == "length" and shifted.done.eval_count == 320
        assert shifted.text == shift_alone.text
        assert stopped.done.done_reason == "length"
        assert stopped.done.prompt_eval_count + stopped.done.eval_count <= 256
        assert stopped.text == stop_alone.text
        assert other.done is not None and other.failed is None
    finally:
        small.close()
