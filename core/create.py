"""How /api/create assembles a model's layers (Ollama's server/create.go CreateHandler), as pure
decisions.

From an existing model the base layers are inherited; a new ``template``/``system`` replaces the
old layer; ``parameters`` merge over the base's (request keys win); ``messages`` replace only when
non-empty; licenses append. A GGUF in ``files`` becomes (or replaces) the model layer.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from .gguf_details import ModelFacts
from .manifest import (MEDIA_TYPE_ADAPTER, MEDIA_TYPE_MESSAGES, MEDIA_TYPE_MODEL,
                       MEDIA_TYPE_PARAMS, MEDIA_TYPE_PROJECTOR, MEDIA_TYPE_PROMPT,
                       MEDIA_TYPE_SYSTEM, MEDIA_TYPE_TEMPLATE, ConfigV2, Layer)

__all__ = ["config_for", "is_projector", "merge_layers", "merge_params"]

_REPLACED_BY_NEW = (MEDIA_TYPE_MODEL, MEDIA_TYPE_TEMPLATE, MEDIA_TYPE_PROMPT,
                    MEDIA_TYPE_SYSTEM, MEDIA_TYPE_PARAMS, MEDIA_TYPE_MESSAGES,
                    MEDIA_TYPE_ADAPTER, MEDIA_TYPE_PROJECTOR)


def merge_layers(base: Sequence[Layer], new: Sequence[Layer]) -> tuple[Layer, ...]:
    """Base layers, minus those a new layer of the same kind replaces, then the new ones."""
    kinds = {layer.media_type for layer in new}
    if MEDIA_TYPE_TEMPLATE in kinds:
        kinds.add(MEDIA_TYPE_PROMPT)
    kept = [layer for layer in base
            if not (layer.media_type in _REPLACED_BY_NEW and layer.media_type in kinds)]
    out: list[Layer] = []
    seen: set[tuple[str, str]] = set()
    for layer in [*kept, *new]:
        key = (layer.media_type, layer.digest)
        if key not in seen:
            seen.add(key)
            out.append(layer)
    # The model weights first, as Ollama writes them.
    out.sort(key=lambda layer: 0 if layer.media_type == MEDIA_TYPE_MODEL else 1)
    return tuple(out)


def merge_params(base: Mapping[str, Any], new: Mapping[str, Any]) -> dict[str, Any]:
    out = dict(base)
    out.update(new)
    return out


def config_for(facts: ModelFacts, diff_ids: Sequence[str]) -> ConfigV2:
    return ConfigV2(
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
