"""Manifests and config blobs (Ollama's server/manifest.go)."""

from __future__ import annotations

import json

import pytest
from hypothesis import given, strategies as st

from pollama.core.errors import StoreError
from pollama.core.manifest import (
    MEDIA_TYPE_ADAPTER,
    MEDIA_TYPE_CONFIG,
    MEDIA_TYPE_LICENSE,
    MEDIA_TYPE_MANIFEST,
    MEDIA_TYPE_MESSAGES,
    MEDIA_TYPE_MODEL,
    MEDIA_TYPE_PARAMS,
    MEDIA_TYPE_PROJECTOR,
    MEDIA_TYPE_PROMPT,
    MEDIA_TYPE_SYSTEM,
    MEDIA_TYPE_TEMPLATE,
    ConfigV2,
    Layer,
    Manifest,
    go_json_dumps,
    parse_config,
    parse_manifest,
)

A = "a" * 64
B = "b" * 64
C = "c" * 64
D = "d" * 64

# A real llama3.2:1b-style manifest as Ollama writes it (single line, Go field order).
REAL = (
    b'{"schemaVersion":2,"mediaType":"application/vnd.docker.distribution.manifest.v2+json",'
    b'"config":{"mediaType":"application/vnd.docker.container.image.v1+json",'
    b'"digest":"sha256:' + A.encode() + b'","size":485},'
    b'"layers":[{"mediaType":"application/vnd.ollama.image.model",'
    b'"digest":"sha256:' + B.encode() + b'","size":1321082688},'
    b'{"mediaType":"application/vnd.ollama.image.template",'
    b'"digest":"sha256:' + C.encode() + b'","size":1429},'
    b'{"mediaType":"application/vnd.ollama.image.license",'
    b'"digest":"sha256:' + D.encode() + b'","size":7711}]}'
)


def layer(media_type: str, hex_: str, size: int, **kw: str) -> Layer:
    return Layer(media_type=media_type, digest="sha256:" + hex_, size=size, **kw)


def test_media_type_constants() -> None:
    assert MEDIA_TYPE_MANIFEST == "application/vnd.docker.distribution.manifest.v2+json"
    assert MEDIA_TYPE_CONFIG == "application/vnd.docker.container.image.v1+json"
    suffixes = {
        MEDIA_TYPE_MODEL: "model",
        MEDIA_TYPE_PROJECTOR: "projector",
        MEDIA_TYPE_ADAPTER: "adapter",
        MEDIA_TYPE_TEMPLATE: "template",
        MEDIA_TYPE_PROMPT: "prompt",
        MEDIA_TYPE_SYSTEM: "system",
        MEDIA_TYPE_PARAMS: "params",
        MEDIA_TYPE_MESSAGES: "messages",
        MEDIA_TYPE_LICENSE: "license",
    }
    for const, suffix in suffixes.items():
        assert const == "application/vnd.ollama.image." + suffix


def test_parse_real_manifest_and_byte_exact_rewrite() -> None:
    m = parse_manifest(REAL)
    assert m.config == layer(MEDIA_TYPE_CONFIG, A, 485)
    assert [x.media_type for x in m.layers] == [
        MEDIA_TYPE_MODEL, MEDIA_TYPE_TEMPLATE, MEDIA_TYPE_LICENSE
    ]
    assert m.to_json() == REAL
    assert m.layers_of(MEDIA_TYPE_TEMPLATE) == (layer(MEDIA_TYPE_TEMPLATE, C, 1429),)
    assert m.layers_of(MEDIA_TYPE_SYSTEM) == ()
    assert m.all_digests() == frozenset({A, B, C, D})
    assert m.total_size() == 485 + 1321082688 + 1429 + 7711
    assert m.layers[0].hex == B


def test_to_json_key_order_from_and_go_escapes() -> None:
    m = Manifest(
        config=layer(MEDIA_TYPE_CONFIG, A, 2),
        layers=(
            layer(MEDIA_TYPE_MODEL, B, 10, from_="/root/.ollama/models/blobs/sha256-<x>&y"),
            layer(MEDIA_TYPE_SYSTEM, C, 3),
        ),
    )
    out = m.to_json()
    assert b" " not in out
    assert out.startswith(b'{"schemaVersion":2,"mediaType":"' + MEDIA_TYPE_MANIFEST.encode())
    assert b'"size":10,"from":"/root/.ollama/models/blobs/sha256-\\u003cx\\u003e\\u0026y"}' in out
    assert b'"from"' not in out.split(b"system")[1]
    assert parse_manifest(out) == m
    assert list(json.loads(out)) == ["schemaVersion", "mediaType", "config", "layers"]
    assert list(json.loads(out)["layers"][0]) == ["mediaType", "digest", "size", "from"]


def test_empty_layers_and_null_layers() -> None:
    m = Manifest(config=layer(MEDIA_TYPE_CONFIG, A, 2), layers=())
    assert m.to_json().endswith(b'"layers":[]}')
    assert parse_manifest(m.to_json()) == m
    null = m.to_json().replace(b'"layers":[]', b'"layers":null')
    assert parse_manifest(null) == m
    assert m.total_size() == 2
    assert m.all_digests() == frozenset({A})


def test_digest_normalised_and_unknown_keys_ignored() -> None:
    data = json.dumps(
        {
            "schemaVersion": 2,
            "mediaType": MEDIA_TYPE_MANIFEST,
            "config": {"mediaType": MEDIA_TYPE_CONFIG, "digest": "sha256-" + A.upper(),
                       "size": 1, "annotations": {}},
            "layers": [{"mediaType": MEDIA_TYPE_MODEL, "digest": "sha256:" + B, "size": 0,
                        "from": "", "name": "blk.0.weight"}],
            "runner": "ollama",
        }
    ).encode()
    m = parse_manifest(data)
    assert m.config.digest == "sha256:" + A
    assert m.layers[0].from_ is None  # "" is Go's omitempty zero value
    assert m.layers[0].name == "blk.0.weight"


def test_go_json_escapes() -> None:
    assert go_json_dumps({"a": "<>&\u2028\u2029\n\t\b\f\x01\x7fé\ud800"}) == (
        '{"a":"\\u003c\\u003e\\u0026\\u2028\\u2029\\n\\t\\b\\f\\u0001\x7fé\ufffd"}'.encode()
    )
    assert go_json_dumps([1, None, True, "x"]) == b'[1,null,true,"x"]'


def _manifest_dict() -> dict[str, object]:
    return json.loads(REAL)  # type: ignore[no-any-return]


def _mutated(path: list[object], value: object) -> bytes:
    d: object = _manifest_dict()
    target = d
    for key in path[:-1]:
        target = target[key]  # type: ignore[index]
    if value is KeyError:
        del target[path[-1]]  # type: ignore[attr-defined]
    else:
        target[path[-1]] = value  # type: ignore[index]
    return json.dumps(d).encode()


INVALID = [
    b"",
    b"{",
    b"null",
    b"[]",
    b'"manifest"',
    b"\xef\xbb\xbf" + REAL,  # BOM: Go rejects it
    REAL + b"x",
    b"[" * 100_000,
    b"1" * 10_000,
    _mutated(["schemaVersion"], 1),
    _mutated(["schemaVersion"], 2.0),
    _mutated(["schemaVersion"], "2"),
    _mutated(["schemaVersion"], True),
    _mutated(["schemaVersion"], KeyError),
    _mutated(["mediaType"], KeyError),
    _mutated(["mediaType"], ""),
    _mutated(["mediaType"], 3),
    _mutated(["mediaType"], "application/vnd.ollama.manifest.list.v2+json"),
    _mutated(["config"], KeyError),
    _mutated(["config"], None),
    _mutated(["config"], []),
    _mutated(["layers"], {}),
    _mutated(["layers"], "x"),
    _mutated(["layers", 0], "x"),
    _mutated(["layers", 0, "digest"], "sha256:" + B[:-1]),
    _mutated(["layers", 0, "digest"], B),
    _mutated(["layers", 0, "digest"], "sha256:../../etc/passwd"),
    _mutated(["layers", 0, "digest"], None),
    _mutated(["layers", 0, "digest"], 5),
    _mutated(["layers", 0, "size"], -1),
    _mutated(["layers", 0, "size"], 1.5),
    _mutated(["layers", 0, "size"], 10.0),
    _mutated(["layers", 0, "size"], "10"),
    _mutated(["layers", 0, "size"], True),
    _mutated(["layers", 0, "size"], 2**63),
    _mutated(["layers", 0, "size"], KeyError),
    _mutated(["layers", 0, "mediaType"], KeyError),
    _mutated(["layers", 0, "mediaType"], ""),
    _mutated(["layers", 0, "mediaType"], ["x"]),
    _mutated(["layers", 0, "from"], 3),
    _mutated(["config", "digest"], "md5:abc"),
    _mutated(["config", "size"], -5),
    REAL.replace(b"485", b"NaN"),
    REAL.replace(b"485", b"Infinity"),
    REAL.replace(b"485", b"4.85e2"),
]


@pytest.mark.parametrize("data", INVALID)
def test_parse_manifest_invalid(data: bytes) -> None:
    with pytest.raises(StoreError) as info:
        parse_manifest(data)
    assert info.value.message.startswith("invalid manifest")


def test_null_or_missing_layers_read_as_empty() -> None:
    # Go reads both as a nil slice; a manifest with only a config blob is still well formed.
    assert parse_manifest(_mutated(["layers"], None)).layers == ()
    assert parse_manifest(_mutated(["layers"], KeyError)).layers == ()


def test_invalid_utf8_in_strings_becomes_replacement_char() -> None:
    data = REAL.replace(b"image.license", b"image.lic\xffense")
    m = parse_manifest(data)
    assert m.layers[2].media_type == "application/vnd.ollama.image.lic\ufffdense"
    assert parse_manifest(m.to_json()) == m


@pytest.mark.parametrize(
    "kw",
    [
        dict(media_type="", digest="sha256:" + A, size=1),
        dict(media_type="x", digest="sha256-" + A, size=1),
        dict(media_type="x", digest="sha256:" + A.upper(), size=1),
        dict(media_type="x", digest="sha256:" + A, size=-1),
        dict(media_type="x", digest="sha256:" + A, size=True),
        dict(media_type="x", digest="sha256:" + A, size=1, from_=""),
        dict(media_type="x", digest="sha256:" + A, size=1, name=""),
    ],
)
def test_layer_constructor_validates(kw: dict[str, object]) -> None:
    with pytest.raises(StoreError):
        Layer(**kw)  # type: ignore[arg-type]


def test_manifest_constructor_validates_and_repr() -> None:
    cfg = layer(MEDIA_TYPE_CONFIG, A, 1)
    with pytest.raises(StoreError):
        Manifest(config=cfg, layers=[cfg])  # type: ignore[arg-type]
    with pytest.raises(StoreError):
        Manifest(config=cfg, layers=(), media_type="")
    m = Manifest(config=cfg, layers=(layer(MEDIA_TYPE_MODEL, B, 2, from_="x"),))
    assert eval(repr(m), {"Manifest": Manifest, "Layer": Layer}) == m


# ---- config blob --------------------------------------------------------------------------


def test_config_to_json_minimal_and_full() -> None:
    assert ConfigV2().to_json() == (
        b'{"model_format":"","model_family":"","model_families":null,"model_type":"",'
        b'"file_type":"","architecture":"amd64","os":"linux",'
        b'"rootfs":{"type":"layers","diff_ids":[]}}'
    )
    cfg = ConfigV2(
        model_format="gguf",
        model_family="llama",
        model_families=("llama",),
        model_type="1.2B",
        file_type="Q8_0",
        context_length=131072,
        embedding_length=2048,
        diff_ids=("sha256:" + B, "sha256:" + C),
    )
    assert cfg.to_json() == (
        b'{"model_format":"gguf","model_family":"llama","model_families":["llama"],'
        b'"model_type":"1.2B","file_type":"Q8_0","context_length":131072,'
        b'"embedding_length":2048,"architecture":"amd64","os":"linux",'
        b'"rootfs":{"type":"layers","diff_ids":["sha256:' + B.encode() + b'","sha256:'
        + C.encode() + b'"]}}'
    )
    assert parse_config(cfg.to_json()) == cfg
    assert eval(repr(cfg), {"ConfigV2": ConfigV2}) == cfg


def test_config_head_fields_order() -> None:
    cfg = ConfigV2(renderer="qwen3", parser="qwen3", capabilities=("tools",), base_name="b")
    keys = list(json.loads(cfg.to_json()))
    assert keys == [
        "model_format", "model_family", "model_families", "model_type", "file_type",
        "renderer", "parser", "capabilities", "base_name", "architecture", "os", "rootfs",
    ]
    assert parse_config(cfg.to_json()) == cfg


@pytest.mark.parametrize(
    ("data", "want"),
    [
        (b"{}", ConfigV2(architecture="", os="")),
        (b'{"model_format":"gguf"}', ConfigV2(model_format="gguf", architecture="", os="")),
        (
            b'{"model_format":5,"model_families":"llama","context_length":"4096",'
            b'"embedding_length":-1,"rootfs":[],"architecture":"arm64","os":"linux"}',
            ConfigV2(architecture="arm64"),
        ),
        (b'{"model_families":["a",1],"context_length":0,"os":"linux","architecture":"amd64"}',
         ConfigV2()),
        (b'{"context_length":2048.0,"os":"linux","architecture":"amd64"}', ConfigV2()),
    ],
)
def test_parse_config_lenient(data: bytes, want: ConfigV2) -> None:
    assert parse_config(data) == want


@pytest.mark.parametrize("data", [b"", b"not json", b"[]", b"null", b"\xff", b"{" * 50_000])
def test_parse_config_invalid(data: bytes) -> None:
    with pytest.raises(StoreError):
        parse_config(data)


@pytest.mark.parametrize(
    "kw",
    [dict(model_format=1), dict(model_families=["a"]), dict(context_length=-1),
     dict(embedding_length=True), dict(diff_ids=("a", 1))],
)
def test_config_constructor_validates(kw: dict[str, object]) -> None:
    with pytest.raises(StoreError):
        ConfigV2(**kw)  # type: ignore[arg-type]


# ---- properties ---------------------------------------------------------------------------

hexes = st.text(alphabet="0123456789abcdef", min_size=64, max_size=64)
texts = st.text(min_size=1, max_size=40)
media_types = st.sampled_from(
    [MEDIA_TYPE_MODEL, MEDIA_TYPE_TEMPLATE, MEDIA_TYPE_PARAMS, MEDIA_TYPE_LICENSE]
) | texts
layers = st.builds(
    Layer,
    media_type=media_types,
    digest=hexes.map(lambda h: "sha256:" + h),
    size=st.integers(min_value=0, max_value=2**63 - 1),
    from_=st.none() | texts,
    name=st.none() | texts,
)
manifests = st.builds(
    Manifest,
    config=layers,
    layers=st.lists(layers, max_size=6).map(tuple),
    media_type=st.just(MEDIA_TYPE_MANIFEST) | texts.filter(lambda t: "list" not in t),
)


@given(manifests)
def test_manifest_round_trip(m: Manifest) -> None:
    data = m.to_json()
    assert parse_manifest(data) == m
    assert parse_manifest(data).to_json() == data
    assert m.all_digests() == {x.hex for x in (m.config, *m.layers)}
    assert m.total_size() == sum(x.size for x in (m.config, *m.layers))


configs = st.builds(
    ConfigV2,
    model_format=st.text(max_size=10),
    model_family=st.text(max_size=10),
    model_families=st.lists(st.text(max_size=10), max_size=3).map(tuple),
    model_type=st.text(max_size=10),
    file_type=st.text(max_size=10),
    renderer=st.text(max_size=10),
    capabilities=st.lists(st.text(max_size=10), max_size=3).map(tuple),
    context_length=st.none() | st.integers(min_value=1, max_value=2**31),
    embedding_length=st.none() | st.integers(min_value=1, max_value=2**31),
    architecture=st.text(max_size=10),
    os=st.text(max_size=10),
    diff_ids=st.lists(hexes.map(lambda h: "sha256:" + h), max_size=3).map(tuple),
)


@given(configs)
def test_config_round_trip(cfg: ConfigV2) -> None:
    assert parse_config(cfg.to_json()) == cfg


@given(st.binary())
def test_parse_manifest_arbitrary_bytes_only_store_error(data: bytes) -> None:
    try:
        m = parse_manifest(data)
    except StoreError:
        return
    assert parse_manifest(m.to_json()) == m


@given(st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(),
    lambda kids: st.lists(kids, max_size=4) | st.dictionaries(
        st.sampled_from(["schemaVersion", "mediaType", "config", "layers", "digest", "size",
                         "from", "name", "x"]), kids, max_size=5),
    max_leaves=20,
))
def test_parse_manifest_arbitrary_json_only_store_error(value: object) -> None:
    for parse in (parse_manifest, parse_config):
        try:
            parse(json.dumps(value).encode())
        except StoreError:
            pass
