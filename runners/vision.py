"""Images in a prompt: a text model's projector ("mmproj" GGUF) run through llama.cpp's mtmd.

A ``Projector`` pairs an open ``llama_cpp.Llama`` with its projector. ``eval_prompt`` takes a
prompt in which every image is marked by ``<__media__>`` (mtmd's default marker), plus the
image files (PNG, JPEG, GIF or BMP bytes, decoded by llama.cpp's stb_image), and evaluates it
into the Llama's context: text chunks through ``Llama.eval``, image chunks through mtmd (CLIP
encode, then the embeddings decoded at the next positions).

It leaves the Llama as if ``Llama.eval`` had seen the whole prompt: ``llm.n_tokens`` is the
number of positions evaluated, ``llm.input_ids[:n_tokens]`` holds the text tokens with
``PLACEHOLDER`` (-1) at image positions, the KV cache holds exactly those positions and the
logits of the last one are live. The returned list equals ``llm.input_ids[:n_tokens]``, so:

* ``llm.generate(tokens)`` (reset=True, the default) finds the whole prompt cached and samples
  at once: its prefix check matches every entry, placeholders included.
* ``llm.generate([], reset=False)`` does the same.
* ``llm.generate(tokens, reset=False)`` would append and re-decode the prompt: wrong.
* A list that differs before an image (context shift, truncation) makes ``generate`` decode
  the rest, placeholders included, and llama.cpp rejects -1 as a token: images cannot be
  shifted or truncated token-wise; re-run ``eval_prompt`` instead. No text token equals -1,
  so a later text-only prompt never reuses an image's KV entries.

Only this package imports ``llama_cpp``, lazily, so importing the module costs nothing.
"""

from __future__ import annotations

import ctypes
from collections.abc import Sequence
from typing import Any, Self

# input_ids entry at the positions an image occupies. Never a valid token id.
PLACEHOLDER = -1

# stb_image decodes these (mtmd-helper); anything else would fall through to mtmd's video path,
# which runs ffprobe/ffmpeg on the bytes. Ollama accepts PNG and JPEG (and WebP, which this
# build could only decode through ffmpeg).
_MAGIC = ((b"\x89PNG\r\n\x1a\n", "PNG"), (b"\xff\xd8\xff", "JPEG"), (b"GIF87a", "GIF"),
          (b"GIF89a", "GIF"), (b"BM", "BMP"))
# A directory that does not exist: mtmd then cannot find ffprobe/ffmpeg for a corrupt image.
_NO_FFMPEG_DIR = b"/nonexistent/pollama-no-ffmpeg"


def image_format(data: bytes) -> str | None:
    """"PNG", "JPEG", "GIF" or "BMP" by the file's magic bytes; None for anything else."""
    for magic, name in _MAGIC:
        if data.startswith(magic):
            return name
    return None


def default_marker() -> str:
    """The text that marks an image in a prompt ("<__media__>")."""
    from llama_cpp import mtmd_cpp

    return bytes(mtmd_cpp.mtmd_default_marker()).decode("utf-8")


class Projector:
    """An mtmd context for ``llm``'s model and the projector at ``mmproj_path``.

    Raises ``ValueError`` when the file cannot be loaded or does not fit the model (mtmd
    checks that the projector's output width is the model's ``n_embd``; the reason is logged
    on stderr). Closed by ``close()`` or, at the latest, when ``llm`` is closed.
    """

    def __init__(self, llm: Any, mmproj_path: str, n_threads: int, *,
                 use_gpu: bool = True) -> None:
        import llama_cpp
        from llama_cpp import _logger, mtmd_cpp

        self._mtmd = mtmd_cpp
        self._ctx: Any = None
        # mtmd and clip log through their own global logger, on stderr by default; send them
        # through llama-cpp-python's callback so verbose=False keeps only errors, like llama's.
        mtmd_cpp.mtmd_helper_log_set(_logger.llama_log_callback, ctypes.c_void_p(0))
        params = mtmd_cpp.mtmd_context_params_default()
        params.use_gpu = bool(use_gpu)
        params.print_timings = False
        params.n_threads = max(1, int(n_threads))
        params.warmup = True  # allocate the encoder's compute buffers now: load time, not TTFT
        ctx = mtmd_cpp.mtmd_init_from_file(mmproj_path.encode("utf-8"), llm._model.model, params)
        if not ctx:
            raise ValueError(f"unable to load projector {mmproj_path}")
        self._ctx = ctx
        self._n_embd = int(llama_cpp.llama_model_n_embd_inp(llm._model.model))
        # The projector must not outlive the model it was opened for.
        llm._stack.callback(self.close)

    # -- lifetime -----------------------------------------------------------------------------
    def close(self) -> None:
        if self._ctx is not None:
            ctx, self._ctx = self._ctx, None
            self._mtmd.mtmd_free(ctx)

    def __enter__(self) -> Self:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def _require(self) -> Any:
        if self._ctx is None:
            raise ValueError("projector is closed")
        return self._ctx

    @property
    def supports_vision(self) -> bool:
        return bool(self._mtmd.mtmd_support_vision(self._require()))

    @property
    def marker(self) -> str:
        return default_marker()

    # -- images -------------------------------------------------------------------------------
    def _bitmap(self, data: bytes, index: int) -> Any:
        m = self._mtmd
        if image_format(data) is None:
            raise ValueError(f"failed to decode image {index}: not a PNG, JPEG, GIF or BMP file")
        opt = m.mtmd_helper_init_opt_default()
        opt.video_params.ffmpeg_bin_dir = _NO_FFMPEG_DIR
        buf = (ctypes.c_uint8 * len(data)).from_buffer_copy(data)
        bitmap = m.mtmd_helper_bitmap_init_from_buf(self._require(), buf, len(data), False, opt)
        if not bitmap:
            raise ValueError(f"failed to decode image {index}")
        if m.mtmd_bitmap_is_audio(bitmap):  # cannot happen after the magic check; be sure
            m.mtmd_bitmap_free(bitmap)
            raise ValueError(f"failed to decode image {index}: not an image")
        return bitmap

    def image_positions(self, image: bytes) -> int:
        """Positions ``image`` takes in the text model (without evaluating anything)."""
        m = self._mtmd
        chunks = self._tokenize(self.marker, [image], add_bos=False)
        try:
            return int(m.mtmd_helper_get_n_pos(chunks))
        finally:
            m.mtmd_input_chunks_free(chunks)

    def _tokenize(self, prompt: str, images: Sequence[bytes], add_bos: bool) -> Any:
        m = self._mtmd
        ctx = self._require()
        marks = prompt.count(self.marker)
        if marks != len(images):
            raise ValueError(f"the prompt marks {marks} image(s) with {self.marker} "
                             f"but {len(images)} image(s) were given")
        bitmaps: list[Any] = []
        try:
            for i, data in enumerate(images):
                bitmaps.append(self._bitmap(data, i))
            text = m.mtmd_input_text()
            raw = prompt.encode("utf-8")
            text.text = raw
            text.text_len = len(raw)
            text.add_special = bool(add_bos)
            text.parse_special = True  # as the runner tokenizes templated prompts
            chunks = m.mtmd_input_chunks_init()
            if not chunks:
                raise MemoryError("mtmd_input_chunks_init failed")
            array = (m.mtmd_bitmap_p_ctypes * max(1, len(bitmaps)))(*bitmaps)
            rc = m.mtmd_tokenize(ctx, chunks, ctypes.byref(text), array, len(bitmaps))
            if rc != 0:
                m.mtmd_input_chunks_free(chunks)
                if rc == 1:  # counted above; mtmd splits on the marker the same way
                    raise ValueError("the number of images does not match the image markers")
                raise ValueError(f"failed to preprocess image (mtmd_tokenize returned {rc})")
            return chunks
        finally:
            for bitmap in bitmaps:
                m.mtmd_bitmap_free(bitmap)

    # -- evaluation ---------------------------------------------------------------------------
    def eval_prompt(self, llm: Any, prompt: str, images: Sequence[bytes],
                    add_bos: bool) -> list[int]:
        """Evaluate ``prompt`` with ``images`` (one per marker, in order) into ``llm``.

        Returns the prompt as ``llm.input_ids[:llm.n_tokens]`` now holds it: text tokens and
        ``PLACEHOLDER`` per image position; its length counts the prompt's positions. A text
        prefix (before the first image) that the context already holds is reused.

        ``ValueError``: undecodable image, marker/image count mismatch, prompt longer than the
        context; these are found before anything is evaluated and leave the Llama untouched.
        ``RuntimeError``: llama.cpp failed to encode or decode; the Llama is then reset (empty
        context), so no half-evaluated prompt can be mistaken for a cached one.
        """
        import llama_cpp

        m = self._mtmd
        ctx = self._require()
        chunks = self._tokenize(prompt, images, add_bos)
        try:
            plan: list[tuple[Any, list[int] | None, int]] = []  # (chunk, text tokens, n_pos)
            n_cells = 0
            for i in range(m.mtmd_input_chunks_size(chunks)):
                chunk = m.mtmd_input_chunks_get(chunks, i)
                n_cells += int(m.mtmd_input_chunk_get_n_tokens(chunk))
                if m.mtmd_input_chunk_get_type(chunk) == m.MTMD_INPUT_CHUNK_TYPE_TEXT:
                    n = ctypes.c_size_t()
                    ptr = m.mtmd_input_chunk_get_tokens_text(chunk, ctypes.byref(n))
                    text_toks = [int(ptr[j]) for j in range(n.value)]
                    plan.append((chunk, text_toks, len(text_toks)))
                else:
                    plan.append((chunk, None, int(m.mtmd_input_chunk_get_n_pos(chunk))))
            tokens: list[int] = []
            for _, chunk_toks, n_pos in plan:
                tokens += chunk_toks if chunk_toks is not None else [PLACEHOLDER] * n_pos
            capacity = int(min(llm.n_ctx(), len(llm.input_ids)))
            if not tokens:
                raise ValueError("empty prompt")
            if max(len(tokens), n_cells) > capacity:
                raise ValueError(f"the prompt takes {max(len(tokens), n_cells)} positions but the "
                                 f"context holds {capacity}")
            n_ubatch = int(llama_cpp.llama_n_ubatch(llm._ctx.ctx))
            for chunk, chunk_toks, _ in plan:
                # Non-causal image decoding (Gemma 3) needs the whole image in one ubatch.
                if (chunk_toks is None and m.mtmd_decode_use_non_causal(ctx, chunk)
                        and int(m.mtmd_input_chunk_get_n_tokens(chunk)) > n_ubatch):
                    raise ValueError(f"an image takes more tokens than num_batch ({n_ubatch})")
            if plan[-1][1] is None and m.mtmd_decode_use_mrope(ctx):
                raise ValueError("this model needs text after the last image")
            try:
                self._eval(llm, plan, tokens)
            except BaseException:
                llm.reset()
                llm._ctx.kv_cache_clear()
                raise
            return tokens
        finally:
            m.mtmd_input_chunks_free(chunks)

    def _reuse_prefix(self, llm: Any, plan: list[tuple[Any, list[int] | None, int]],
                      tokens: list[int]) -> int:
        """Positions at the start of the context that can stay: only text before the first
        image is compared, and at least one position is always decoded (fresh logits)."""
        first = plan[0][1] or []
        cached = llm.input_ids[: llm.n_tokens]
        keep = 0
        for a, b in zip(cached, first):
            if int(a) != b:
                break
            keep += 1
        if keep >= len(tokens):
            keep = len(tokens) - 1
        if keep > 0 and llm._ctx.kv_cache_seq_rm(-1, keep, -1):
            return keep
        return 0

    def _eval(self, llm: Any, plan: list[tuple[Any, list[int] | None, int]],
              tokens: list[int]) -> None:
        import llama_cpp

        m = self._mtmd
        ctx = self._require()
        keep = self._reuse_prefix(llm, plan, tokens)
        if keep:
            llm.n_tokens = keep
        else:
            llm.reset()
            llm._ctx.kv_cache_clear()
        done = 0  # positions of the prompt that are in the context
        for index, (chunk, toks, n_pos) in enumerate(plan):
            last = index == len(plan) - 1
            if toks is not None:
                rest = toks[max(0, keep - done):]
                if rest:
                    llm.eval(rest)  # batches by n_batch, records input_ids, keeps last logits
                done += len(toks)
                continue
            n_past = int(llm.n_tokens)
            new_n_past = llama_cpp.llama_pos(n_past)
            rc = m.mtmd_helper_eval_chunk_single(ctx, llm._ctx.ctx, chunk,
                                                 llama_cpp.llama_pos(n_past),
                                                 llama_cpp.llama_seq_id(0), int(llm.n_batch),
                                                 False, ctypes.byref(new_n_past))
            if rc != 0:
                raise RuntimeError(f"failed to evaluate image (error {rc})")
            end = int(new_n_past.value)
            if end != n_past + n_pos:
                raise RuntimeError(f"image took {end - n_past} positions, expected {n_pos}")
            llm.input_ids[n_past:end] = PLACEHOLDER
            llm.n_tokens = end
            done += n_pos
            if last:
                self._relogit_last_embedding(llm, chunk, end - 1)
        # The last position's logits came from a decode just now: generate() may sample from
        # them without evaluating anything (its exact-prefix fast path checks this flag).
        llm._requires_eval = False

    def _relogit_last_embedding(self, llm: Any, chunk: Any, pos: int) -> None:
        """mtmd decodes image embeddings without output logits; when the prompt ends with an
        image, decode its last embedding again (same position, so the same KV entry) with
        logits. Not for M-RoPE models, whose image positions are 2-D (refused earlier)."""
        import llama_cpp

        m = self._mtmd
        ctx = self._require()
        n_tok = int(m.mtmd_input_chunk_get_n_tokens(chunk))
        embd = m.mtmd_get_output_embd(ctx)  # the chunk just encoded by eval_chunk_single
        if not embd:
            raise RuntimeError("no image embeddings to decode")
        row = ctypes.cast(ctypes.addressof(embd.contents)
                          + (n_tok - 1) * self._n_embd * ctypes.sizeof(ctypes.c_float),
                          ctypes.POINTER(ctypes.c_float))
        if not llm._ctx.kv_cache_seq_rm(-1, pos, -1):
            raise RuntimeError("cannot rewrite the last image position")
        batch = llama_cpp.llama_batch_ext_init(llm._ctx.ctx)
        if not batch:
            raise MemoryError("llama_batch_ext_init failed")
        try:
            idx = llama_cpp.llama_batch_ext_add_embd(
                batch, 0, llama_cpp.llama_embd(row, 1, self._n_embd))
            if idx < 0:
                raise RuntimeError(f"llama_batch_ext_add_embd returned {idx}")
            p = (llama_cpp.llama_pos * 4)(pos, 0, 0, 0)
            llama_cpp.llama_batch_ext_set_pos(batch, idx, p)
            llama_cpp.llama_batch_ext_set_output_logits(batch, idx, True)
            rc = llama_cpp.llama_process(llm._ctx.ctx, llama_cpp.LLAMA_PROCESS_TYPE_DECODE, batch)
            if rc != 0:
                raise RuntimeError(f"failed to decode the last image position (error {rc})")
        finally:
            llama_cpp.llama_batch_ext_free(batch)
