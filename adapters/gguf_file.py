"""Reading a GGUF file's header for create, pull and memory estimates.

Reads a growing prefix of the file and lets ``core.gguf`` parse it; facts are cached per path
and size, since blobs are immutable. Any unreadable or non-GGUF file becomes ``BadRequest``
with a clear message, never a traceback: a client's file is at fault. Reading a model that is
already in the store, ``stored`` maps the same failures to the server's ``StoreError``.
"""

from __future__ import annotations

import contextlib
import functools
from collections.abc import Collection
import os

from pollama.core import gguf, gguf_details
from pollama.core.errors import BadRequest, StoreError, map_exceptions

FIRST_READ = 4 * 1024 * 1024


def stored(path: str) -> contextlib.AbstractContextManager[None]:
    """Around reads of a stored model's files (``path`` its model blob): missing or damaged,
    they are the server's problem (500), not the client's."""
    return map_exceptions({
        OSError: lambda _: StoreError(f"model file not found: {path}"),
        BadRequest: lambda exc: StoreError(f"model file {path} is damaged: {exc.message}"),
    })


def read_header(path: str,
                keep_arrays: Collection[str] | str = ("tokenizer.ggml.tokens",)) -> gguf.Header:
    size = os.path.getsize(path)
    want = min(FIRST_READ, size)
    with open(path, "rb") as f:
        data = f.read(want)
        while True:
            try:
                return gguf.parse_header(data, complete=len(data) >= size,
                                         keep_arrays=keep_arrays)
            except gguf.Truncated as more:
                data += f.read(min(more.need, size) - len(data))


@functools.lru_cache(maxsize=64)
def _facts(path: str, size: int, mtime: int) -> tuple[gguf_details.ModelFacts, int | None]:
    header = read_header(path)
    tokens = header.kv.get("tokenizer.ggml.tokens")
    vocab = tokens if isinstance(tokens, list) else None
    return (gguf_details.facts(header.kv, header.parameter_count, vocab),
            header.array_len("tokenizer.ggml.tokens"))


def read_facts(path: str) -> gguf_details.ModelFacts:
    return read_facts_and_vocab(path)[0]


def read_facts_and_vocab(path: str) -> tuple[gguf_details.ModelFacts, int | None]:
    st = os.stat(path)  # a missing file is an OSError for the caller to name
    return _facts(path, st.st_size, st.st_mtime_ns)


def read_header_full(path: str, verbose: bool) -> gguf.Header:
    """For /api/show: small arrays always decoded, all of them when ``verbose``.

    Parsed once per (path, size, mtime): a header costs ~100 ms of CPU, and under load
    uncached parses of /api/show took 96% of the server's time (bench/load_test.py)."""
    try:
        st = os.stat(path)
        return _header_full(path, st.st_size, st.st_mtime_ns, verbose)
    except OSError as exc:
        raise BadRequest(f"cannot read model file: {exc.strerror}") from None


@functools.lru_cache(maxsize=8)
def _header_full(path: str, size: int, mtime: int, verbose: bool) -> gguf.Header:
    return read_header(path, gguf.ALL if verbose else gguf.SMALL)

