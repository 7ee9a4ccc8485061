"""Reading GGUF metadata from a file with the ``gguf`` package, for create and pull.

Returns plain data (key/values, parameter count, vocabulary) for ``core.gguf_details``; any
unreadable or non-GGUF file becomes ``BadRequest`` with a clear message, never a traceback.
"""

from __future__ import annotations

from typing import Any

from pollama.core import gguf_details
from pollama.core.errors import BadRequest

_SKIP_ARRAYS = {"tokenizer.ggml.scores", "tokenizer.ggml.token_type", "tokenizer.ggml.merges"}


def read_facts(path: str) -> gguf_details.ModelFacts:
    with open(path, "rb") as f:
        magic = f.read(4)
    if magic != b"GGUF":
        raise BadRequest("invalid file magic: not a GGUF model file")
    try:
        from gguf import GGUFReader

        reader = GGUFReader(path, "r")
        kv: dict[str, Any] = {}
        for key, field in reader.fields.items():
            if key in _SKIP_ARRAYS or key == "tokenizer.ggml.tokens":
                continue
            try:
                kv[key] = field.contents()
            except Exception:
                continue
        tokens_field = reader.fields.get("tokenizer.ggml.tokens")
        tokens = list(tokens_field.contents()) if tokens_field is not None else None
        params = sum(int(t.n_elements) for t in reader.tensors)
    except BadRequest:
        raise
    except Exception as exc:  # the gguf package raises many kinds on corrupt files
        raise BadRequest(f"invalid GGUF file: {type(exc).__name__}: {exc}") from None
    if "general.architecture" not in kv:
        raise BadRequest("invalid GGUF file: no general.architecture")
    return gguf_details.facts(kv, params, tokens)
