"""The inference runner: one process per loaded model, the only code that imports ``llama_cpp``.

Started by ``adapters.runner_process`` as ``python -m pollama.runners.llama_runner``; it speaks
``core.runner_protocol`` (NDJSON) on stdin/stdout and logs on stderr. The protocol's file
descriptor is a private duplicate of stdout, and fd 1 is pointed at stderr, so nothing llama.cpp
prints can corrupt the protocol stream.

Threads: a reader thread decodes commands; Cancel is handled at once (it only flags an id), the
rest go to a FIFO that the work thread (``Runner.work_loop``), the only one touching the llama
context, drains between decode steps.

Continuous batching (Ollama's OLLAMA_NUM_PARALLEL, llama-server's slots). Load's
``num_parallel`` sequences of ``num_ctx`` positions each share one context of
``num_ctx × num_parallel`` cells, one KV stream per sequence (``_kv_streams``). Every completion
runs in ``runners.batch.BatchDecoder``; each turn of the work loop:

1. takes the messages that arrived and serves those that can be: Tokenize at once; a
   Complete when a slot is free (the slot whose cache shares the longest prefix with the
   prompt, so only the rest is evaluated; ``Done.prompt_cached`` says how much was reused);
   an Embed at once in the spare KV stream (one past the slots, cleared after each input);
   a Load, or a prompt with images, only when no sequence is active, since they use the KV
   cache as llama-cpp-python does (sequence 0 up, then clear it); whatever waits behind one
   of those waits too, so it is not starved;
2. ends cancelled sequences (their slots are free at once; their cache stays for reuse);
3. one ``step()``: one ``llama_decode`` for every active sequence's next token and prompt
   chunks of new ones; then per sampled token: end of generation, detokenize, stops,
   num_predict, logprobs (only when asked), and at a full slot a context shift (the sequence
   restarts on ``num_keep`` + the recent half of its window; its slot still holds the kept
   prefix) or a ``length`` stop. The step's Token and Done messages go out in one write.

What the options mean (sampler settings and their defaults, num_predict, the prompt trim, when
to stop or shift) is decided in ``core.decoding``; this module makes the llama.cpp calls.

With flash attention (the default) a sequence's tokens do not depend on what else is in the
batch, so concurrent requests at temperature 0 give exactly their solo text.
"""

from __future__ import annotations

import codecs
import collections
import contextlib
import os
import queue
import random
import sys
import traceback
import threading
import time
from dataclasses import dataclass, field
from collections.abc import Iterator
from typing import Any, BinaryIO

from pollama.core import decoding, embed, memory
from pollama.core.errors import BadRequest, PollamaError, RunnerProtocolError
from pollama.core.runner_protocol import (SERVER_KINDS, Cancel, Complete, Done, Embed, Embeddings,
                                          Failed, Load, Loaded, RunnerCodec, RunnerMessage,
                                          ServerMessage, Shutdown, Token, Tokenize, Tokens)
from pollama.core.stops import StopMatcher
from pollama.runners.batch import BatchDecoder

_NOTHING = object()  # the work queue had nothing more


def _capacity(llm: Any) -> int:
    """Tokens a sequence may hold. llama.cpp pads its context (to 256), but llama-cpp-python's
    token buffer has the size that was asked for; the smaller one is the real limit."""
    return int(min(llm.n_ctx(), len(llm.input_ids)))


def _usable_cores() -> int:
    try:
        return max(1, len(os.sched_getaffinity(0)))
    except AttributeError:  # not on Linux
        return max(1, os.cpu_count() or 1)


@contextlib.contextmanager
def _kv_streams(n_streams: int) -> Iterator[None]:
    """While a ``Llama`` is built: with several slots, give its context one KV stream per
    sequence (``kv_unified`` off, ``n_seq_max`` = streams) instead of the embedding context's
    one unified cache for 256 sequence ids. ``n_streams`` is the slots plus one spare stream
    (``core.memory.kv_streams``) where embeddings run between decode steps.

    Why: flash attention sums a sequence's cells in cell order, so its logits equal a solo
    run's only while its cells lie in position order (runners/batch.py). In one unified cache
    a trimmed prefix leaves holes that llama.cpp fills with *other* sequences' next tokens,
    below their earlier cells; in a stream of its own a sequence only ever refills its own
    trimmed tail, in order. Each stream also attends over its own cells only. The cost:
    an embedding batch packs one input per decode."""
    if n_streams <= 1:
        yield
        return
    from llama_cpp import _internals

    original = _internals.LlamaContext

    def make(*, model: Any, params: Any, verbose: bool = True) -> Any:
        params.n_seq_max = n_streams
        params.kv_unified = False
        return original(model=model, params=params, verbose=verbose)

    _internals.LlamaContext = make
    try:
        yield
    finally:
        _internals.LlamaContext = original


# A schema's conversion that takes longer than this is abandoned (the schema is refused);
# core.schema_limits bounds the work beforehand, this bounds what that model misses.
_GRAMMAR_SECONDS = 20.0


def _compact_repetition(item_rule: str, min_items: int, max_items: int | None,
                        separator_rule: str | None = None,
                        item_rule_is_literal: bool = False) -> str:
    """Stands in for llama-cpp-python's ``_build_repetition``: ``{m,n}`` for llama.cpp's parser
    to expand (core.json_grammar.repetition) instead of ``n`` nested groups, which that parser
    refuses past about 1000 (and llama-cpp-python then crashes on the null sampler)."""
    from pollama.core import json_grammar

    lo = int(min_items)
    hi = None if max_items is None else int(max_items)
    if separator_rule:  # arrays are built by Converter._array; the library's form elsewhere
        if hi == 0:
            return ""
        if lo == 0 and hi == 1:
            return f"{item_rule}?"
        rest = json_grammar.repetition(f"({separator_rule} {item_rule})", max(lo - 1, 0),
                                       None if hi is None else hi - 1)
        out = f"{item_rule} {rest}".strip()
        return f"({out})?" if lo == 0 else out
    return json_grammar.repetition(item_rule, lo, hi)


def json_schema_to_gbnf(schema_text: str, *, checked: bool = False,
                        what: str = "format") -> str:
    """llama-cpp-python's JSON-schema converter, plus what it lacks and llama.cpp's own C++
    converter (which Ollama uses) has: integer ``minimum``/``maximum`` (core.json_grammar),
    repetitions as ``{m,n}``, ``{}``/``true`` as any value, arrays whose ``items`` is ``{}``.

    The schema is checked against core.schema_limits first (unless the caller did, ``checked``);
    the conversion is bounded in grammar size and time. Errors are ``BadRequest`` with
    ``invalid <what>: ...``, or the converter's own exception (see ``_schema_error``)."""
    import json

    from llama_cpp import llama_grammar

    from pollama.core import json_grammar, schema_limits

    schema = json.loads(schema_text)
    if not checked:
        schema_limits.check_format(schema)
    # The library builds repetitions with this module-level function; only this process uses
    # the library's converter, so it is replaced here rather than copied whole.
    llama_grammar._build_repetition = _compact_repetition
    deadline = time.monotonic() + _GRAMMAR_SECONDS

    class Converter(llama_grammar.SchemaConverter):  # type: ignore[misc]
        size = 0

        def _add_rule(self, name: str, rule: str) -> Any:
            self.size += len(name) + len(rule) + 6
            if self.size > schema_limits.MAX_GRAMMAR_BYTES:
                raise BadRequest(f"invalid {what}: the schema's grammar would be over "
                                 f"{schema_limits.MAX_GRAMMAR_BYTES} bytes")
            if time.monotonic() > deadline:
                raise BadRequest(f"invalid {what}: the schema took over "
                                 f"{_GRAMMAR_SECONDS:g} s to convert to a grammar")
            return super()._add_rule(name, rule)

        def visit(self, schema: Any, name: str) -> Any:
            rule = name + "-" if name in llama_grammar.RESERVED_NAMES else name or "root"
            if schema is True or schema == {}:  # any JSON value, as llama.cpp's converter
                return self._add_rule(rule, self._add_primitive(
                    "value", llama_grammar.PRIMITIVE_RULES["value"]))
            if schema is False:
                raise ValueError("a false schema admits no value")
            if isinstance(schema, dict) and schema.get("type") == "integer":
                bounds = json_grammar.integer_bounds(schema)
                if bounds is not None:
                    return self._add_rule(rule, f"({json_grammar.int_range(*bounds)}) space")
            if isinstance(schema, dict) and _is_plain_array(schema):
                return self._array(schema, name, rule)
            return super().visit(schema, name)

        def _array(self, schema: dict[str, Any], name: str, rule: str) -> Any:
            """The library's array branch, without its ``KeyError: 'prefixItems'`` for falsy
            ``items`` and with llama.cpp's repetition (a separator rule, then ``{m,n}``)."""
            items = schema["items"] if schema.get("items") is not None \
                else schema.get("prefixItems")
            prefix = f"{name}{'-' if name else ''}"
            if isinstance(items, list):
                return self._add_rule(rule, '"[" space ' + ' "," space '.join(
                    self.visit(item, f"{prefix}tuple-{i}") for i, item in enumerate(items)
                ) + ' "]" space')
            lo = schema_limits.count(schema.get("minItems")) or 0
            hi = schema_limits.count(schema.get("maxItems"))
            if items in (None, True, {}) and lo == 0 and hi is None:
                return self._add_rule(rule, self._add_primitive(
                    "array", llama_grammar.PRIMITIVE_RULES["array"]))
            item = self.visit({} if items is None else items, f"{prefix}item")
            body = ""
            if hi != 0:
                then = self._add_rule(f"{item}-next", f'"," space {item}')
                # One item or more; an optional list is a rule made optional, not a group:
                # llama.cpp's threshold counts a group's rules times its repetition.
                body = json_grammar.repetition(item, max(lo, 1), hi, then=then)
                if lo == 0:
                    body = self._add_rule(f"{rule}-items", body) + "?"
            return self._add_rule(rule, f'"[" space {body} "]" space'.replace("  ", " "))

    converter = Converter(prop_order={}, allow_fetch=False, dotall=False, raw_pattern=False)
    schema = converter.resolve_refs(schema, "stdin")
    converter.visit(schema, "")
    text = str(converter.format_grammar())
    if len(text) > schema_limits.MAX_GRAMMAR_BYTES:
        raise BadRequest(f"invalid {what}: the schema's grammar would be over "
                         f"{schema_limits.MAX_GRAMMAR_BYTES} bytes")
    return text


def _is_plain_array(schema: dict[str, Any]) -> bool:
    """The schemas the library's converter handles in its array branch (its earlier branches
    take $ref, anyOf/oneOf, type lists, const, enum, objects and allOf first)."""
    kind = schema.get("type")
    if kind not in (None, "array") or not ("items" in schema or "prefixItems" in schema):
        return False
    if any(k in schema for k in ("$ref", "oneOf", "anyOf", "const", "enum")):
        return False
    if kind is None and ("properties" in schema or "allOf" in schema or (
            "additionalProperties" in schema and schema["additionalProperties"] is not True)):
        return False
    return True


def _schema_error(exc: BaseException, what: str = "format") -> PollamaError:
    """A converter failure as the 400 a client sees: plain words, no Python exception names."""
    if isinstance(exc, PollamaError):
        return exc
    if isinstance(exc, RecursionError):
        return BadRequest(f"invalid {what}: the schema is nested too deeply to become a "
                          "grammar")
    if isinstance(exc, MemoryError):
        return BadRequest(f"invalid {what}: the schema is too large to become a grammar")
    detail = str(exc) if isinstance(exc, (AssertionError, ValueError)) else ""
    if len(detail) > 200:
        detail = detail[:197] + "..."
    return BadRequest(f"invalid {what}: " + (
        detail or "the JSON schema could not be converted to a grammar"))


def _parses(text: str, vocab: Any) -> bool:
    """Whether llama.cpp accepts the grammar. llama-cpp-python adds whatever
    ``llama_sampler_init_grammar`` returns to its sampler chain, and a grammar llama.cpp refuses
    (over its repetition threshold, left-recursive) returns NULL and crashes the process."""
    if vocab is None:
        return True
    import llama_cpp

    sampler = llama_cpp.llama_sampler_init_grammar(vocab, text.encode("utf-8"), b"root")
    if not sampler:
        return False
    llama_cpp.llama_sampler_free(sampler)
    return True


def grammar_for(fmt: Any, vocab: Any = None) -> Any:
    """llama.cpp grammar for Ollama's ``format``: "json" or a JSON schema; None for no format.
    With ``vocab`` (the model's), the grammar is parsed by llama.cpp before it is used."""
    if fmt is None:
        return None
    import json

    from llama_cpp import llama_grammar

    if fmt == "json":
        text = llama_grammar.JSON_GBNF
    else:
        try:
            text = json_schema_to_gbnf(json.dumps(fmt))
        except Exception as exc:  # the schema converter raises many kinds
            raise _schema_error(exc) from None
    if not _parses(text, vocab):
        raise BadRequest("invalid format: llama.cpp refused the grammar made from the "
                         "schema (too many repetitions or rules)")
    return llama_grammar.LlamaGrammar.from_string(text, verbose=False)


def tool_grammar(tools: list[dict[str, Any]] | None, fmt: dict[str, Any] | None,
                 required: bool = False, vocab: Any = None) -> Any:
    """Grammar allowing free text or one well-formed call of a requested tool (core.tools);
    only the call when ``required``. Parameters over core.schema_limits' bounds are a 400; a
    schema the converter cannot handle means no constraint, as before."""
    if not tools or fmt is None:
        return None
    from llama_cpp import llama_grammar

    from pollama.core import schema_limits
    from pollama.core import tools as tc

    schema_limits.check_tools(tools)

    def convert(text: str) -> str:
        return json_schema_to_gbnf(text, checked=True, what="tool parameters")

    try:
        text = tc.tool_call_grammar(tools, tc.ToolFormat.from_json(fmt),
                                    json_schema_to_gbnf=convert,
                                    allow_text=not required, parallel=False)
    except PollamaError:
        raise
    except Exception as exc:  # a client's schema the converter cannot handle: no constraint
        print(f"runner: tool grammar unavailable: {_schema_error(exc, 'tool parameters')}",
              file=sys.stderr, flush=True)
        return None
    if not text:
        return None
    if not _parses(text, vocab):
        print("runner: tool grammar unavailable: llama.cpp refused it", file=sys.stderr,
              flush=True)
        return None
    return llama_grammar.LlamaGrammar.from_string(text, verbose=False)


@dataclass
class _Stream:
    """A completion in the batch loop: what it asked for and what it produced so far."""

    msg: Complete
    tokens: list[int]  # the prompt as first evaluated (after truncation)
    window: list[int]  # what its sequence holds: the prompt (shifted), then generated tokens
    sampling: dict[str, Any]  # _sampler_args
    seed: int
    repeat_last_n: int  # the penalties' window
    budget: int  # tokens it may generate (decoding.Decoding.budget)
    num_keep: int
    shift: bool
    stops: StopMatcher
    utf8: Any
    started: int
    cached: int = 0  # leading prompt tokens the slot's cache already held
    generated: list[int] = field(default_factory=list)
    logprobs: list[dict[str, Any]] = field(default_factory=list)  # not sent yet
    first_token_at: int = 0


def _sampler_args(sampling: decoding.Sampling, grammar: Any) -> dict[str, Any]:
    """``Llama._init_sampler``'s keyword arguments (the chain ``Llama.generate`` builds)."""
    return dict(top_k=sampling.top_k, top_p=sampling.top_p, min_p=sampling.min_p,
                typical_p=sampling.typical_p, temp=sampling.temperature,
                repeat_penalty=sampling.repeat_penalty,
                frequency_penalty=sampling.frequency_penalty,
                presence_penalty=sampling.presence_penalty, grammar=grammar)


def _seed(plan: decoding.Decoding) -> int:
    """The request's seed, or a fresh one."""
    return plan.seed if plan.seed is not None else random.randrange(2**31)


class Runner:
    def __init__(self, out: BinaryIO) -> None:
        self._out = out
        self._out_lock = threading.Lock()
        self._work: queue.Queue[ServerMessage | None] = queue.Queue()
        self._cancelled: set[int] = set()
        self._cancel_lock = threading.Lock()
        self._llm: Any = None
        self._projector: Any = None  # runners.vision.Projector when the model has one
        self._spare: int | None = None  # the KV stream embeddings use between steps
        self._decoder: BatchDecoder | None = None
        self._slot_ctx = 0  # positions per sequence: the num_ctx each request gets
        self._streams: dict[int, _Stream] = {}  # by decoder handle
        self._waiting: collections.deque[ServerMessage] = collections.deque()

    # -- output -------------------------------------------------------------------------------
    def send(self, msg: RunnerMessage) -> None:
        data = RunnerCodec.send(msg)
        with self._out_lock:
            self._out.write(data)
            self._out.flush()

    # -- input --------------------------------------------------------------------------------
    def read_loop(self, inp: BinaryIO) -> None:
        codec = RunnerCodec(accept=SERVER_KINDS)
        while True:
            data = inp.read1(65536) if hasattr(inp, "read1") else inp.read(65536)
            codec.receive_data(data)
            while True:
                try:
                    msg = codec.next_event()
                except RunnerProtocolError as exc:
                    print(f"runner: protocol error: {exc}", file=sys.stderr, flush=True)
                    self._work.put(None)
                    return
                if msg is None:  # server closed our stdin: exit
                    self._work.put(None)
                    return
                if not isinstance(msg, SERVER_KINDS):
                    break
                if isinstance(msg, Cancel):
                    with self._cancel_lock:
                        self._cancelled.add(msg.target)
                elif isinstance(msg, Shutdown):
                    self._work.put(None)
                    return
                else:
                    self._work.put(msg)

    def _is_cancelled(self, request_id: int) -> bool:
        with self._cancel_lock:
            return request_id in self._cancelled

    def _forget(self, request_id: int) -> None:
        with self._cancel_lock:
            self._cancelled.discard(request_id)

    # -- work ---------------------------------------------------------------------------------
    def send_all(self, msgs: list[RunnerMessage]) -> None:
        """Write several messages with one ``write`` (a batch step's tokens and ends)."""
        if not msgs:
            return
        data = b"".join(RunnerCodec.send(m) for m in msgs)
        with self._out_lock:
            self._out.write(data)
            self._out.flush()

    def work_loop(self) -> None:
        """The batch loop. Each turn: take every message that has arrived, serve the waiting
        ones that can be served, drop cancelled sequences, then one decoder step for all the
        active ones. It blocks only when nothing is active or waiting."""
        while True:
            idle = not self._streams and not self._waiting
            try:
                msg = self._work.get() if idle else self._work.get_nowait()
            except queue.Empty:
                msg = _NOTHING  # type: ignore[assignment]
            while msg is not _NOTHING:
                if msg is None:  # Shutdown, or the server closed our stdin
                    return
                self._waiting.append(msg)
                try:
                    msg = self._work.get_nowait()
                except queue.Empty:
                    msg = _NOTHING  # type: ignore[assignment]
            self._serve_waiting()
            self._drop_cancelled()
            if self._streams:
                self._step()

    def _serve_waiting(self) -> None:
        """Serve waiting messages in order. A completion needs a free slot; an embedding
        batch runs at once in the spare KV stream (several slots). A load, a prompt with
        images, or an embedding batch without a spare stream needs the context to itself
        (they use the KV cache as llama-cpp-python does, sequence 0 upward, and clear it), so
        it waits until the active sequences are done and holds back everything after it but
        Tokenize."""
        blocked = False
        kept: collections.deque[ServerMessage] = collections.deque()
        n_slots = len(self._decoder.slots) if self._decoder is not None else 1
        for msg in self._waiting:
            if isinstance(msg, Tokenize):
                ready = True
            elif isinstance(msg, Complete) and not msg.images:
                ready = self._is_cancelled(msg.id) or (
                    not blocked and len(self._streams) < n_slots)
            elif isinstance(msg, Embed) and self._spare is not None:
                ready = not blocked  # in the spare stream, between steps
            else:
                ready = not blocked and not self._streams
            if ready:
                self._run(msg)
            else:
                blocked = True
                kept.append(msg)
        self._waiting = kept

    def _run(self, msg: ServerMessage) -> None:
        admitted = False
        try:
            if isinstance(msg, Load):
                self._load(msg)
            elif isinstance(msg, Tokenize):
                self._tokenize(msg)
            elif isinstance(msg, Embed):
                if self._spare is not None:
                    self._embed(msg)
                else:
                    self._exclusive(self._embed, msg)
            elif isinstance(msg, Complete):
                if msg.images and not self._is_cancelled(msg.id):
                    self._exclusive(self._complete_solo, msg)
                else:
                    admitted = self._admit(msg)
        except PollamaError as exc:
            self.send(Failed(id=msg.id, message=exc.message, status=exc.status_hint))
        except Exception:  # report, keep serving other requests
            self._internal_error(msg.id)
        finally:
            if not admitted:
                self._forget(msg.id)

    def _internal_error(self, request_id: int) -> None:
        # The details go to the server's log (our stderr), never to the client.
        traceback.print_exc(file=sys.stderr)
        sys.stderr.flush()
        self.send(Failed(id=request_id, message="llama runner: internal error; the server log has "
                         "the details"))

    def _exclusive(self, work: Any, msg: Any) -> None:
        """Run ``work(msg)`` on the whole context (no sequence is active), then forget every
        slot's cache: the work used and cleared the KV cells."""
        llm = self._require_llm()
        try:
            work(msg)
        finally:
            llm.reset()
            _clear_memory(llm)
            if self._decoder is not None:
                self._decoder.reset_cache()

    def _admit(self, msg: Complete) -> bool:
        """Start a completion in a free slot (the one sharing the longest prefix with its
        prompt); False when it ended at once (cancelled, num_predict 0)."""
        llm = self._require_llm()
        decoder = self._decoder
        assert decoder is not None
        request_id = msg.id
        if self._is_cancelled(request_id):
            self.send(Done(id=request_id, done_reason="cancel"))
            return False
        started = time.perf_counter_ns()
        plan = decoding.Decoding.from_options(msg.options)
        decoding.check_context(msg.context, int(llm.n_vocab()))
        n_ctx = self._slot_ctx
        tokens = self._prompt_window(llm, msg, n_ctx, plan.num_keep)
        grammar = self._grammar(llm, msg)
        budget = plan.budget(n_ctx, len(tokens))
        if budget == 0:
            self.send(Done(id=request_id, done_reason="length", prompt_eval_count=len(tokens),
                           prompt_eval_duration=max(1, time.perf_counter_ns() - started),
                           context=tokens))
            return False
        stream = _Stream(
            msg=msg, tokens=tokens, window=list(tokens),
            sampling=_sampler_args(plan.sampling, grammar), seed=_seed(plan),
            repeat_last_n=plan.penalty_window(n_ctx), budget=budget, num_keep=plan.num_keep,
            shift=msg.shift, stops=StopMatcher(list(plan.stop)),
            utf8=codecs.getincrementaldecoder("utf-8")(errors="replace"), started=started)
        handle = self._start(stream)
        stream.cached = decoder.reused(handle)
        return True

    def _start(self, stream: _Stream) -> int:
        decoder = self._decoder
        assert decoder is not None
        self._llm.last_n_tokens_size = stream.repeat_last_n  # read by _init_sampler
        handle = decoder.start(stream.window, stream.sampling, stream.seed)
        self._streams[handle] = stream
        return handle

    def _drop_cancelled(self) -> None:
        msgs: list[RunnerMessage] = []
        for handle, stream in list(self._streams.items()):
            if self._is_cancelled(stream.msg.id):
                self._end(handle, "cancel", time.perf_counter_ns(), msgs)
        self.send_all(msgs)

    def _step(self) -> None:
        """One decode for every active sequence, then each sampled token through its
        sequence's checks; the step's messages go out in one write."""
        import llama_cpp

        decoder = self._decoder
        assert decoder is not None
        llm = self._llm
        msgs: list[RunnerMessage] = []
        try:
            out = decoder.step()
        except Exception:
            traceback.print_exc(file=sys.stderr)
            sys.stderr.flush()
            for handle, stream in list(self._streams.items()):
                decoder.finish(handle, keep_cache=False)
                msgs.append(Failed(id=stream.msg.id, message="llama runner: internal error; "
                                   "the server log has the details"))
                self._forget(stream.msg.id)
            self._streams.clear()
            self.send_all(msgs)
            return
        now = time.perf_counter_ns()
        vocab = llm._model.vocab
        for handle, tok in out:
            stream = self._streams[handle]
            try:
                if not stream.first_token_at:
                    stream.first_token_at = now
                if llama_cpp.llama_vocab_is_eog(vocab, tok):
                    self._end(handle, "stop", now, msgs)
                    continue
                self._advance(handle, stream, tok, now, msgs)
            except Exception:
                traceback.print_exc(file=sys.stderr)
                sys.stderr.flush()
                if handle in decoder.active:
                    decoder.finish(handle, keep_cache=False)
                for h, s in list(self._streams.items()):
                    if s is stream:
                        del self._streams[h]
                msgs.append(Failed(id=stream.msg.id, message="llama runner: internal error; "
                                   "the server log has the details"))
                self._forget(stream.msg.id)
        self.send_all(msgs)

    def _advance(self, handle: int, s: _Stream, tok: int, now: int,
                 msgs: list[RunnerMessage]) -> None:
        decoder = self._decoder
        assert decoder is not None
        llm = self._llm
        s.generated.append(tok)
        s.window.append(tok)
        raw = llm.detokenize([tok])
        if s.msg.logprobs:
            s.logprobs.append(self._logprob(llm, tok, raw, s.msg.top_logprobs,
                                            decoder.logits(handle)))
        piece = s.utf8.decode(raw)
        text = s.stops.feed(piece) if piece else ""
        if text:
            msgs.append(Token(id=s.msg.id, text=text,
                              logprobs=s.logprobs if s.msg.logprobs else None))
            s.logprobs = []
        after = decoding.next_after_token(stopped=s.stops.stopped, generated=len(s.generated),
                                          budget=s.budget, full=decoder.full(handle),
                                          can_shift=s.shift)
        if after is decoding.Next.STOP:
            self._end(handle, "stop", now, msgs)
        elif after is decoding.Next.LENGTH:
            self._end(handle, "length", now, msgs)
        elif after is decoding.Next.SHIFT:
            # The sequence starts again on the shifted window; its slot still holds the kept
            # prefix, so only the rest is evaluated again.
            s.window = decoding.shift(s.window, s.num_keep)
            decoder.finish(handle)
            del self._streams[handle]
            self._start(s)

    def _end(self, handle: int, reason: str, now: int, msgs: list[RunnerMessage]) -> None:
        s = self._streams.pop(handle)
        assert self._decoder is not None
        self._decoder.finish(handle)  # its cells stay for the next prompt sharing its prefix
        request_id = s.msg.id
        if reason != "cancel":
            rest = s.stops.feed(s.utf8.decode(b"", final=True)) + s.stops.flush()
            if rest or s.logprobs:
                msgs.append(Token(id=request_id, text=rest,
                                  logprobs=s.logprobs if s.msg.logprobs else None))
        first = s.first_token_at or now
        msgs.append(Done(
            id=request_id,
            done_reason=reason,
            # As Ollama (numPromptInputs): the whole prompt, cached or not; prompt_cached says
            # how much of it the slot's cache already held.
            prompt_eval_count=len(s.tokens),
            prompt_cached=s.cached,
            prompt_eval_duration=max(1, first - s.started),
            eval_count=len(s.generated),
            eval_duration=max(1, now - first) if s.generated else 0,
            context=s.tokens + s.generated,
        ))
        self._forget(request_id)

    def _load(self, msg: Load) -> None:
        if not os.path.isfile(msg.model_path):
            raise PollamaError(f"model file not found: {msg.model_path}")
        import llama_cpp

        # As Ollama: num_parallel sequences of num_ctx positions each over one KV cache; the
        # embedding context gives min(n_batch, 256) sequence ids, and every generating
        # sequence takes one token of a batch.
        n_slots = max(1, min(msg.num_parallel, msg.num_batch - 1, 255))
        n_streams = memory.kv_streams(n_slots)
        kwargs: dict[str, Any] = {
            "model_path": msg.model_path,
            "n_ctx": msg.num_ctx * n_streams,
            # With a KV stream per sequence, llama.cpp splits a (pooled) batch evenly among the
            # streams and asserts when the batch and the physical batch (ubatch, 512 at most)
            # are not multiples of them (3 streams, 512; 5 streams, 8192 and 512). The batch
            # is rounded up (an embedding input may still be num_batch tokens), the ubatch down.
            "n_batch": -(-msg.num_batch // n_streams) * n_streams,
            "n_ubatch": max(n_streams, min(msg.num_batch, 512) // n_streams * n_streams),
            "n_gpu_layers": msg.num_gpu,
            "verbose": False,
        }
        # num_thread 0 means automatic: every core this process may run on (Ollama uses the
        # physical cores; llama-cpp-python's own default of half of them halves decode speed
        # on small machines).
        threads = msg.num_thread if msg.num_thread > 0 else _usable_cores()
        kwargs["n_threads"] = threads
        kwargs["n_threads_batch"] = threads
        if msg.use_mmap is not None:
            kwargs["use_mmap"] = msg.use_mmap
        if msg.seed >= 0:
            kwargs["seed"] = msg.seed
        # Embeddings are pooled with the model's own pooling; a model without one (a chat
        # model) gets mean pooling. The context serves completions and embeddings alike.
        kwargs["pooling_type"] = self._pooling(msg.model_path, llama_cpp)
        # embedding=True gives the context several sequence slots over one unified KV cache,
        # so one decode can embed a whole batch of inputs; embeddings are then switched off
        # and only turned on around an embedding batch. Completions are unchanged by this
        # (same greedy tokens; tests/e2e check it).
        kwargs["embedding"] = True
        if msg.adapters:
            kwargs["lora_path"] = msg.adapters[0]
        # Flash attention: on unless turned off (Ollama HEAD's "auto"). On CPU it decodes
        # 7-14% faster at num_ctx 2048-4096, and a sequence's logits do not depend on what
        # else shares the batch. In auto mode a backend that refuses it loads without.
        kwargs["flash_attn"] = msg.flash_attention != 0
        try:
            try:
                with _kv_streams(n_streams):
                    self._llm = llama_cpp.Llama(**kwargs)
            except (ValueError, RuntimeError):
                if msg.flash_attention != -1:
                    raise
                kwargs["flash_attn"] = False
                with _kv_streams(n_streams):
                    self._llm = llama_cpp.Llama(**kwargs)
        except (ValueError, RuntimeError) as exc:
            raise PollamaError(f"unable to load model {msg.model_path}: {exc}") from None
        llm = self._llm
        llama_cpp.llama_set_embeddings(llm._ctx.ctx, False)
        if msg.projectors:
            from pollama.runners import vision

            try:
                self._projector = vision.Projector(llm, msg.projectors[0], threads,
                                                   use_gpu=msg.num_gpu != 0)
            except ValueError as exc:
                raise PollamaError(f"unable to load model {msg.model_path}: {exc}") from None
        # Warm up: the first decode allocates compute buffers (seconds at large num_ctx); do it
        # now so it counts as load time, as Ollama's runners do. An encoder-only model (BERT)
        # has no KV memory to decode into: its first embedding allocates them.
        if llm._ctx.memory is not None:
            llm.eval([llm.token_bos() if llm.token_bos() >= 0 else 0])
        llm.reset()
        _clear_memory(llm)
        self._slot_ctx = min(msg.num_ctx, _capacity(llm) // n_streams)
        # The spare stream past the slots, where embeddings run between steps; None when the
        # context has one unified cache (one slot): embeddings then wait for it to be idle.
        self._spare = n_slots if n_streams > n_slots else None
        self._decoder = BatchDecoder(llm, n_slots, self._slot_ctx)
        self.send(Loaded(
            id=msg.id, n_ctx=self._slot_ctx, n_ctx_train=llm._model.n_ctx_train(),
            n_vocab=llm.n_vocab(), n_embd=llm.n_embd(),
            chat_template=str(llm.metadata.get("tokenizer.chat_template", "")),
            bos_token=self._special_text(llm, llm.token_bos()),
            eos_token=self._special_text(llm, llm.token_eos()),
        ))

    @staticmethod
    def _special_text(llm: Any, token: int) -> str:
        if token < 0:
            return ""
        return llm.detokenize([token], special=True).decode("utf-8", errors="replace")

    @staticmethod
    def _pooling(path: str, llama_cpp: Any) -> int:
        from pollama.core import gguf

        with open(path, "rb") as f:
            data = f.read(8 * 1024 * 1024)
        try:
            kv = gguf.parse_header(data).kv
        except (gguf.Truncated, PollamaError):
            return int(llama_cpp.LLAMA_POOLING_TYPE_MEAN)
        arch = kv.get("general.architecture")
        value = kv.get(f"{arch}.pooling_type")
        if isinstance(value, int) and value > 0:
            return value
        return int(llama_cpp.LLAMA_POOLING_TYPE_MEAN)

    def _embed(self, msg: Embed) -> None:
        """Embed every input, packing as many sequences into one decode as fit: the batch
        holds at most ``n_batch`` tokens and ``n_seq_max`` sequences (Ollama batches the
        inputs of one request the same way)."""
        llm = self._require_llm()
        # The specials llama.cpp puts around an input (BOS/CLS before, EOS/SEP after, per the
        # vocab), found by tokenizing nothing with them.
        specials = llm.tokenize(b"", add_bos=True, special=True)
        n_pre = 1 if specials and llm._model.add_bos_token() else 0
        prefix, suffix = specials[:n_pre], specials[n_pre:]
        facts = embed.TokenFacts.from_metadata(
            llm.metadata, n_ctx=self._slot_ctx or _capacity(llm), n_batch=llm.n_batch,
            n_ctx_train=llm._model.n_ctx_train(), added=len(specials))
        seqs: list[list[int]] = []
        for text in msg.inputs:
            # As Ollama's llama-server: special-token text is parsed, the limit is decided on
            # the input's own tokens (core.embed.fit), then the model's specials go around it.
            toks = llm.tokenize(text.encode("utf-8"), add_bos=False, special=True)
            toks = embed.fit(toks, facts, num_ctx=msg.num_ctx, truncate=msg.truncate)
            seqs.append([*prefix, *toks, *suffix] or [max(llm.token_bos(), 0)])
        vectors: list[list[float]] = []
        for group in embed.pack_batches(seqs, llm.n_batch, self._n_seq_max(llm)):
            vectors.extend(self._embed_batch(llm, group, self._spare))
        self.send(Embeddings(id=msg.id, embeddings=vectors,
                             prompt_eval_count=sum(len(t) for t in seqs)))

    @staticmethod
    def _n_seq_max(llm: Any) -> int:
        """Inputs one embedding decode may hold. With a KV stream per sequence (_kv_streams)
        llama.cpp splits a batch of several sequences into ubatches that pool wrongly: one
        input per decode then."""
        if not llm.context_params.kv_unified:
            return 1
        return max(1, int(llm.context_params.n_seq_max))

    @staticmethod
    def _embed_batch(llm: Any, group: list[Any], spare: int | None) -> list[list[float]]:
        """One decode embedding ``group``. In the ``spare`` KV stream (one input) it leaves
        the slots' caches as they are; without one the inputs take sequences 0 and up of an
        idle context, whose whole cache is cleared."""
        import llama_cpp
        import numpy as np

        ctx = llm._ctx.ctx
        n_embd = llm.n_embd()
        first = 0 if spare is None else spare
        ids = range(first, first + len(group))

        def clear() -> None:
            if spare is None:
                llm.reset()  # the cache no longer holds a prompt for generate()'s reuse
                _clear_memory(llm)
            else:
                for seq_id in ids:
                    llm._ctx.kv_cache_seq_rm(seq_id, 0, -1)

        out: list[list[float]] = []
        llama_cpp.llama_set_embeddings(ctx, True)
        try:
            clear()
            llm._batch.reset()
            for seq_id, toks in zip(ids, group):
                llm._batch.add_sequence(toks, seq_id, True)
            llm._ctx.decode(llm._batch)
            for seq_id in ids:
                ptr = llama_cpp.llama_get_embeddings_seq(ctx, seq_id)
                vec = np.ctypeslib.as_array(ptr, shape=(n_embd,)).astype(np.float32)
                if not np.all(np.isfinite(vec)):
                    raise PollamaError("embedding contains NaN or Inf values")
                # float32 values, printed shortest (as Go marshals []float32)
                out.append([float(str(x)) for x in vec])
        finally:
            llama_cpp.llama_set_embeddings(ctx, False)
            llm._batch.reset()
            clear()
        return out

    def _tokenize(self, msg: Tokenize) -> None:
        llm = self._require_llm()
        toks = llm.tokenize(msg.text.encode("utf-8"), add_bos=True, special=True)
        self.send(Tokens(id=msg.id, tokens=list(toks)))

    def _require_llm(self) -> Any:
        if self._llm is None:
            raise PollamaError("runner has no model loaded")
        return self._llm

    @staticmethod
    def _prompt_window(llm: Any, msg: Complete, n_ctx: int, num_keep: int) -> list[int]:
        """``context`` then the tokenized prompt; when that fills ``n_ctx``, the first
        ``num_keep`` tokens (at most half) and the most recent tail. Never empty."""
        text_tokens = llm.tokenize(msg.prompt.encode("utf-8"), add_bos=not msg.context,
                                   special=True)
        tokens = decoding.fit_prompt(list(msg.context or []) + list(text_tokens), n_ctx,
                                     num_keep)
        return tokens or [llm.token_bos()]

    @staticmethod
    def _grammar(llm: Any, msg: Complete) -> Any:
        """The request's ``format`` grammar, else its tool-call grammar, else None."""
        grammar = grammar_for(msg.format, llm._model.vocab)
        if grammar is None:
            grammar = tool_grammar(msg.tools, msg.tool_format, msg.tools_required,
                                   llm._model.vocab)
        return grammar

    def _complete_solo(self, msg: Complete) -> None:
        """A prompt with images, decoded alone with ``llm.generate`` on sequence 0 (vision
        evaluates into the context the way ``Llama.eval`` does); run by ``_exclusive``."""
        import llama_cpp

        llm = self._require_llm()
        request_id = msg.id
        if self._is_cancelled(request_id):
            self.send(Done(id=request_id, done_reason="cancel"))
            return
        start = time.perf_counter_ns()
        plan = decoding.Decoding.from_options(msg.options)
        decoding.check_context(msg.context, int(llm.n_vocab()))
        n_ctx = self._slot_ctx or _capacity(llm)
        tokens = self._eval_with_images(llm, msg) if msg.images else None
        # Image positions cannot be re-evaluated from token ids: no context shift with images.
        shift = msg.shift and tokens is None
        if tokens is None:
            tokens = self._prompt_window(llm, msg, n_ctx, plan.num_keep)
        grammar = self._grammar(llm, msg)
        llm.set_seed(_seed(plan))
        num_predict = plan.budget(n_ctx, len(tokens))
        stops = StopMatcher(list(plan.stop))
        decoder = codecs.getincrementaldecoder("utf-8")(errors="replace")
        llm.last_n_tokens_size = plan.penalty_window(n_ctx)

        generated: list[int] = []
        pending_lp: list[dict[str, Any]] = []
        first_token_at = 0
        done_reason = "stop"
        sampling = {**_sampler_args(plan.sampling, grammar), "reset": True}
        window = list(tokens)  # what the context holds: prompt, then each generated token
        gen = llm.generate(window, **sampling)
        try:
            if num_predict == 0:
                done_reason = "length"
            while num_predict != 0:
                shifted = False
                for tok in gen:
                    if not first_token_at:
                        first_token_at = time.perf_counter_ns()
                    if self._is_cancelled(request_id):
                        done_reason = "cancel"
                        break
                    if llama_cpp.llama_vocab_is_eog(llm._model.vocab, tok):
                        break
                    generated.append(tok)
                    window.append(tok)
                    raw = llm.detokenize([tok])
                    if msg.logprobs:
                        pending_lp.append(self._logprob(llm, tok, raw, msg.top_logprobs,
                                                        self._last_logits(llm)))
                    piece = decoder.decode(raw)
                    out = stops.feed(piece) if piece else ""
                    if out:
                        self.send(Token(id=request_id, text=out,
                                        logprobs=pending_lp if msg.logprobs else None))
                        pending_lp = []
                    after = decoding.next_after_token(
                        stopped=stops.stopped, generated=len(generated), budget=num_predict,
                        full=len(window) >= n_ctx, can_shift=shift)
                    if after is decoding.Next.STOP:
                        break
                    if after is decoding.Next.LENGTH:
                        done_reason = "length"
                        break
                    if after is decoding.Next.SHIFT:
                        window = decoding.shift(window, plan.num_keep)
                        shifted = True
                        break
                if not shifted:
                    break
                gen.close()
                gen = llm.generate(window, **sampling)
        finally:
            gen.close()
        end = time.perf_counter_ns()
        if done_reason != "cancel":
            rest = stops.feed(decoder.decode(b"", final=True)) + stops.flush()
            if rest or pending_lp:
                self.send(Token(id=request_id, text=rest,
                                logprobs=pending_lp if msg.logprobs else None))
        if not first_token_at:
            first_token_at = end
        self.send(Done(
            id=request_id,
            done_reason=done_reason,
            prompt_eval_count=len(tokens),
            prompt_eval_duration=max(1, first_token_at - start),
            eval_count=len(generated),
            eval_duration=max(1, end - first_token_at) if generated else 0,
            context=[t for t in tokens + generated if t >= 0],  # image positions are not tokens
        ))

    def _eval_with_images(self, llm: Any, msg: Complete) -> list[int] | None:
        """Evaluate a prompt whose ``[img-N]`` tags place images (Ollama's server/routes.go
        GenerateHandler) through the projector; returns the prompt as the context now holds it (-1
        at image positions), or None when no tag names an image (the images are then unused, as in
        Ollama)."""
        import base64

        from pollama.core import prompt as prompt_core
        from pollama.runners import vision

        if self._projector is None:
            raise BadRequest("this model does not support images")
        text, indexes = prompt_core.place_images(msg.prompt, len(msg.images),
                                                 vision.default_marker())
        if not indexes:
            return None
        order = [base64.b64decode(msg.images[n]) for n in indexes]
        if msg.context:
            text = (llm.detokenize(list(msg.context), special=True).decode("utf-8", "replace")
                    + text)
        try:
            return list(self._projector.eval_prompt(llm, text, order, add_bos=not msg.context))
        except ValueError as exc:
            raise BadRequest(str(exc)) from None

    @staticmethod
    def _last_logits(llm: Any) -> Any:
        """The logits of the last decoded position (what ``llm.generate`` sampled from)."""
        import llama_cpp
        import numpy as np

        ptr = llama_cpp.llama_get_logits_ith(llm._ctx.ctx, -1)
        return np.ctypeslib.as_array(ptr, shape=(llm.n_vocab(),)).copy()

    @staticmethod
    def _logprob(llm: Any, tok: int, raw: bytes, top: int, raw_logits: Any) -> dict[str, Any]:
        """Log-probability of ``tok`` (and the ``top`` most likely) under the logits the
        sampler just used."""
        import numpy as np

        logits = raw_logits.astype(np.float64)
        m = logits.max()
        logp = logits - (m + np.log(np.exp(logits - m).sum()))

        def entry(t: int, piece: bytes) -> dict[str, Any]:
            return {"token": piece.decode("utf-8", errors="replace"),
                    "logprob": float(logp[t]), "bytes": list(piece)}

        out = entry(tok, raw)
        if top > 0:
            best = np.argpartition(-logp, top)[:top]
            best = best[np.argsort(-logp[best])]
            out["top_logprobs"] = [entry(int(t), llm.detokenize([int(t)])) for t in best]
        return out


def _die_with_parent() -> None:
    """Never outlive the server: the kernel kills us when it dies (PR_SET_PDEATHSIG, Linux),
    and a watchdog thread exits when our parent changes (elsewhere, and as a backstop) even
    while the work thread is inside a long llama.cpp call. The server passes its pid, so a
    server that died before this ran is noticed too."""
    import ctypes
    import signal

    expected = int(os.environ.get("POLLAMA_PARENT_PID") or os.getppid())
    if sys.platform.startswith("linux"):
        try:
            ctypes.CDLL(None, use_errno=True).prctl(1, signal.SIGKILL)  # PR_SET_PDEATHSIG
        except (OSError, AttributeError):
            pass
    # Ctrl-C in a terminal reaches the whole process group: the server shuts us down itself.
    signal.signal(signal.SIGINT, signal.SIG_IGN)

    def watch() -> None:
        while os.getppid() == expected:
            time.sleep(0.5)
        os._exit(1)

    if os.getppid() != expected:
        os._exit(1)
    threading.Thread(target=watch, name="parent-watchdog", daemon=True).start()


def _clear_memory(llm: Any) -> None:
    """Empty the KV cache; an encoder-only model (BERT) has none."""
    if llm._ctx.memory is not None:
        llm._ctx.kv_cache_clear()


def main() -> int:
    _die_with_parent()
    # Keep fd 1 for the protocol only: dup it, then send fd 1 to stderr for C-level prints.
    proto_fd = os.dup(1)
    os.dup2(2, 1)
    out = os.fdopen(proto_fd, "wb", buffering=0)
    runner = Runner(out)  # type: ignore[arg-type]
    reader = threading.Thread(target=runner.read_loop, args=(sys.stdin.buffer,), daemon=True)
    reader.start()
    runner.work_loop()
    return 0


if __name__ == "__main__":
    sys.exit(main())
