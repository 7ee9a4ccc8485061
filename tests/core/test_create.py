"""core/create.py: how /api/create assembles a model's layers and config."""

from __future__ import annotations

from pollama.core import gguf_details
from pollama.core import manifest as mf
from pollama.core.create import config_for, is_projector, merge_layers, merge_params


def layer(media_type: str, n: int) -> mf.Layer:
    return mf.Layer(media_type=media_type, digest=f"sha256:{n:064x}", size=n)


MODEL, TEMPLATE, PROMPT, SYSTEM, PARAMS, LICENSE, PROJECTOR = (
    mf.MEDIA_TYPE_MODEL, mf.MEDIA_TYPE_TEMPLATE, mf.MEDIA_TYPE_PROMPT, mf.MEDIA_TYPE_SYSTEM,
    mf.MEDIA_TYPE_PARAMS, mf.MEDIA_TYPE_LICENSE, mf.MEDIA_TYPE_PROJECTOR)


def test_new_layers_replace_the_base_layers_of_their_kind() -> None:
    base = [layer(MODEL, 1), layer(TEMPLATE, 2), layer(SYSTEM, 3), layer(PARAMS, 4)]
    new = [layer(SYSTEM, 13), layer(PARAMS, 14)]
    assert merge_layers(base, new) == (layer(MODEL, 1), layer(TEMPLATE, 2), layer(SYSTEM, 13),
                                       layer(PARAMS, 14))


def test_a_new_template_replaces_the_legacy_prompt_layer_too() -> None:
    assert merge_layers([layer(MODEL, 1), layer(PROMPT, 2)], [layer(TEMPLATE, 12)]) == (
        layer(MODEL, 1), layer(TEMPLATE, 12))


def test_licenses_append_and_duplicates_collapse() -> None:
    base = [layer(MODEL, 1), layer(LICENSE, 2)]
    assert merge_layers(base, [layer(LICENSE, 3), layer(LICENSE, 2)]) == (
        layer(MODEL, 1), layer(LICENSE, 2), layer(LICENSE, 3))


def test_the_model_layer_comes_first() -> None:
    merged = merge_layers([layer(TEMPLATE, 2), layer(MODEL, 1)], [layer(MODEL, 11),
                                                                  layer(PROJECTOR, 5)])
    assert merged == (layer(MODEL, 11), layer(TEMPLATE, 2), layer(PROJECTOR, 5))


def test_merge_params_request_keys_win() -> None:
    base = {"temperature": 0.7, "stop": ["a"]}
    assert merge_params(base, {"stop": ["b"], "num_ctx": 8}) == {
        "temperature": 0.7, "stop": ["b"], "num_ctx": 8}
    assert base == {"temperature": 0.7, "stop": ["a"]}  # not changed in place


def test_config_for_takes_the_gguf_facts() -> None:
    facts = gguf_details.facts({"general.architecture": "llama", "general.file_type": 15,
                                "llama.context_length": 8192, "llama.embedding_length": 576},
                               134_515_008)
    config = config_for(facts, ["sha256:" + "a" * 64])
    assert (config.model_format, config.model_family, config.model_families) == (
        "gguf", "llama", ("llama",))
    assert (config.model_type, config.file_type) == ("134.52M", "Q4_K_M")
    assert (config.context_length, config.embedding_length) == (8192, 576)
    assert config.diff_ids == ("sha256:" + "a" * 64,)
    assert config_for(gguf_details.facts({}, 0), []).model_families == ()


def test_projector_gguf_detection() -> None:
    assert is_projector({"general.architecture": "clip", "clip.has_vision_encoder": True})
    assert is_projector({"general.architecture": "x", "general.type": "mmproj"})
    assert is_projector({"general.architecture": "qwen25vl", "qwen25vl.vision.block_count": 32})
    assert not is_projector({"general.architecture": "llama", "llama.block_count": 30})
    assert not is_projector({"general.architecture": "mllama", "mllama.block_count": 40,
                             "mllama.vision.block_count": 32})
