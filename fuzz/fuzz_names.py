"""Fuzz target: model-name and digest parsing (pollama.core.names).

Allowed outcomes for any input: a valid result, or ``BadRequest``. Run directly for a fuzzing
session (atheris if installed, otherwise 10 s of mutated random input); the same
``one_input`` runs under Hypothesis in ``tests/core/test_fuzz_harnesses.py``.
"""

from __future__ import annotations

import os
import re
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import _loop  # noqa: E402  (the shared driver next to this file)

from pollama.core.errors import BadRequest  # noqa: E402
from pollama.core.names import (  # noqa: E402
    Name,
    blob_filename,
    digest_str,
    parse_digest,
    parse_name_with_scheme,
)

_HOST_RE = re.compile(r"[A-Za-z0-9_][A-Za-z0-9_.:-]{0,349}")
_NS_RE = re.compile(r"[A-Za-z0-9_][A-Za-z0-9_-]{0,79}")
_PART_RE = re.compile(r"[A-Za-z0-9_][A-Za-z0-9_.-]{0,79}")
_SCHEME_RE = re.compile(r"[A-Za-z][A-Za-z0-9+.-]*")

SEEDS = [
    b"llama3.2",
    b"llama3.2:1b",
    b"library/mistral:7b-instruct-q4_K_M",
    b"hf.co/bartowski/Llama-3.2-1B-Instruct-GGUF:IQ3_M",
    b"http://localhost:5000/ns/model:tag",
    b"registry.ollama.ai/library/qwen3:latest",
    b"../../etc/passwd",
    b"sha256:" + b"0123456789abcdef" * 4,
    b"sha256-" + b"ABCDEF0123456789" * 4,
]


def _check_name(text: str) -> None:
    try:
        scheme, name = parse_name_with_scheme(text)
    except BadRequest as exc:
        assert exc.message == "invalid model name", exc.message
        return
    assert scheme is None or _SCHEME_RE.fullmatch(scheme), scheme
    assert _HOST_RE.fullmatch(name.host), name
    assert _NS_RE.fullmatch(name.namespace), name
    assert _PART_RE.fullmatch(name.model), name
    assert _PART_RE.fullmatch(name.tag), name
    for part in name.manifest_parts():
        assert part not in (".", ".."), name
        assert not any(c in part for c in "/\\\x00"), name
    assert parse_name_with_scheme(name.display_full()) == (None, name), name
    assert parse_name_with_scheme(name.display_shortest())[1].equal_fold(name), name
    assert Name.from_manifest_parts(name.manifest_parts()) == name


def _check_digest(text: str) -> None:
    try:
        hex_digest = parse_digest(text)
    except BadRequest as exc:
        assert exc.message == "invalid digest format", exc.message
        return
    assert re.fullmatch(r"[0-9a-f]{64}", hex_digest), hex_digest
    assert parse_digest(digest_str(hex_digest)) == hex_digest
    assert parse_digest(blob_filename(hex_digest)) == hex_digest


def one_input(data: bytes) -> None:
    # surrogateescape keeps every byte string distinct (and feeds lone surrogates in).
    text = data.decode("utf-8", errors="surrogateescape")
    _check_name(text)
    _check_digest(text)


# A name's separators and a few odd bytes; pieces of the seeds bring whole hosts and tags.
_mutate = _loop.byte_mutator(b"/:.@\\-_aZ9\x00\xff", splice=SEEDS)

HARNESS = _loop.Harness(one_input, _mutate, SEEDS, random_share=0.3, max_random=64)
random_loop = HARNESS.random_loop

if __name__ == "__main__":
    HARNESS.main()
