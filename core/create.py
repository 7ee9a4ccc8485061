"""How /api/create assembles a model's layers (Ollama's server/create.go CreateHandler), as pure decisions.

From an existing model the base layers are inherited; a new ``template``/``system`` replaces the
old layer; ``parameters`` merge over the base's (request keys win); ``messages`` replace only when
non-empty; licenses append. A GGUF in ``files`` becomes (or replaces) the model layer.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from . import manifest as mf
from .gguf_details import ModelFacts

__all__ = ["config_for", "is_projector", "merge_layers", "merge_params"]

_REPLACED_BY_NEW = (mf.MEDIA_TYPE_MODEL, mf.MEDIA_TYPE_TEMPLATE, mf.MEDIA_TYPE_PROMPT,
                    mf.MEDIA_TYPE_SYSTEM, mf.MEDIA_TYPE_PARAMS, mf.MEDIA_TYPE_MESSAGES,
                    mf.MEDIA_TYPE_ADAPTER, mf.MEDIA_TYPE_PROJECTOR)


def merge_layers(base: Sequence[mf.Layer], new: Sequence[mf.Layer]) -> tuple[mf.Layer, ...]:
    """Base layers, minus those a new layer of the same kind replaces, then the new ones."""
    kinds = {layer.media_type for layer in new}
    if mf.MEDIA_TYPE_TEMPLATE in kinds:
        kinds.add(mf.MEDIA_TYPE_PROMPT)
    kept = [layer for layer in base
            if not (layer.media_type in _REPLACED_BY_NEW and layer.media_type in kinds)]
    out: list[mf.Layer] = []
    seen: set[tuple[str, str]] = set()
    for layer in [*kept, *new]:
        key = (layer.media_type, layer.digest)
        if key not in seen:
            seen.add(key)
            out.append(layer)
    # The model weights first, as Ollama writes them.
    out.sort(key=lambda layer: 0 if layer.media_type == mf.MEDIA_TYPE_MODEL else 1)
    return tuple(out)


def merge_params(base: Mapping[str, Any], new: Mapping[str, Any]) -> dict[str, Any]:
    out = dict(base)
    out.update(new)
    return out


def config_for(facts: ModelFacts, diff_ids: Sequence[str]) -> mf.ConfigV2:
    return mf.ConfigV2(
        model_format="gguf",
        model_family=facts.architecture,
        model_families=(facts.architecture,) if facts.architecture else (),
        model_type=facts.parameter_size,
        file_type=facts.file_type,
        context_length=facts.context_length,
        embedding_length=facts.embedding_length,
        diff_ids=tuple(diff_ids),
    )


def is_projector(kv: Mapping[str, Any]) -> bool:
    """A GGUF that is a vision projector (``mmproj``) rather than a language model: CLIP
    architecture, or a vision encoder with no text blocks (as Ollama tells them apart)."""
    arch = kv.get("general.architecture")
    if arch == "clip" or kv.get("general.type") in ("projector", "mmproj"):
        return True
    return (isinstance(arch, str) and not kv.get(f"{arch}.block_count")
            and bool(kv.get(f"{arch}.vision.block_count")))
