"""Fuzz target: manifest and config-blob parsing (pollama.core.manifest).

Allowed outcomes for any input: a valid result that re-serialises to an equal value, or
``StoreError``. Run directly for a fuzzing session (atheris if installed, otherwise 10 s of
mutated random input); the same ``one_input`` runs under Hypothesis in
``tests/core/test_fuzz_harnesses.py``.
"""

from __future__ import annotations

import os
import sys
from collections.abc import Callable
from typing import TypeVar

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import _loop  # noqa: E402  (the shared driver next to this file)

from pollama.core.errors import StoreError  # noqa: E402
from pollama.core.manifest import parse_config, parse_manifest  # noqa: E402

T = TypeVar("T")

_A = b"a" * 64
_B = b"0123456789abcdef" * 4

SEEDS = [
    b'{"schemaVersion":2,"mediaType":"application/vnd.docker.distribution.manifest.v2+json",'
    b'"config":{"mediaType":"application/vnd.docker.container.image.v1+json",'
    b'"digest":"sha256:' + _A + b'","size":485},'
    b'"layers":[{"mediaType":"application/vnd.ollama.image.model",'
    b'"digest":"sha256:' + _B + b'","size":1321082688,"from":"x"},'
    b'{"mediaType":"application/vnd.ollama.image.template",'
    b'"digest":"sha256-' + _B.upper() + b'","size":1429}]}',
    b'{"model_format":"gguf","model_family":"llama","model_families":["llama"],'
    b'"model_type":"1.2B","file_type":"Q8_0","context_length":4096,'
    b'"architecture":"amd64","os":"linux","rootfs":{"type":"layers","diff_ids":[]}}',
    b'{"schemaVersion":2,"mediaType":"x","config":null,"layers":null}',
    b"[[[[{}]]]]",
]


def _parsed(parse: Callable[[bytes], T], data: bytes, what: str) -> T | None:
    """``parse(data)``, or None when it raised the StoreError ``invalid <what>...``."""
    try:
        return parse(data)
    except StoreError as exc:
        assert exc.message.startswith(f"invalid {what}"), exc.message
        return None


def one_input(data: bytes) -> None:
    manifest = _parsed(parse_manifest, data, "manifest")
    if manifest is not None:
        again = parse_manifest(manifest.to_json())
        assert again == manifest, (again, manifest)
        assert again.to_json() == manifest.to_json()
        assert manifest.total_size() >= 0
        assert len(manifest.all_digests()) <= len(manifest.layers) + 1
    config = _parsed(parse_config, data, "config")
    if config is not None:
        reparsed = parse_config(config.to_json())
        assert reparsed == config, (reparsed, config)


# JSON's punctuation and a few values; pieces of the seeds put real structure in odd places.
_mutate = _loop.byte_mutator(b'{}[],":-2\xff', (b"-1", b"null", b"1e3", b"\\u0000"), max_edits=6,
                             splice=SEEDS)

HARNESS = _loop.Harness(one_input, _mutate, SEEDS)
random_loop = HARNESS.random_loop

if __name__ == "__main__":
    HARNESS.main()
