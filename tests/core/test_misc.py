"""Small core pieces: time format, routes, config, humanize, options, gguf details, library."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from pollama.core import config, gguf_details, humanize, library, options, routes, timefmt
from pollama.core.errors import BadRequest, MethodNotAllowed, NotFound
from pollama.core.names import parse_name


def test_rfc3339() -> None:
    assert timefmt.rfc3339(0) == "1970-01-01T00:00:00Z"
    assert timefmt.rfc3339(1_500_000_000) == "1970-01-01T00:00:01.5Z"
    assert timefmt.rfc3339(123) == "1970-01-01T00:00:00.000000123Z"
    assert timefmt.rfc3339(0, 3600) == "1970-01-01T01:00:00+01:00"
    assert timefmt.rfc3339(0, -5 * 3600) == "1969-12-31T19:00:00-05:00"


@given(st.integers(0, 4_000_000_000 * 10**9), st.sampled_from([0, 3600, -19800, 34200]))
def test_rfc3339_round_trip(ns: int, offset: int) -> None:
    assert timefmt.parse_rfc3339(timefmt.rfc3339(ns, offset)) == ns


@pytest.mark.parametrize(("method", "path", "handler"), [
    ("GET", "/", "root"), ("HEAD", "/", "root"), ("GET", "/api/version", "version"),
    ("HEAD", "/api/tags", "tags"), ("POST", "/api/chat", "chat"), ("POST", "/api/generate/", "generate"),
    ("HEAD", "/api/blobs/sha256:abc", "blob"), ("POST", "/api/create", "create"),
    ("POST", "/api/pull?x=1", "pull"),
])
def test_routes(method: str, path: str, handler: str) -> None:
    assert routes.match(method, path).handler == handler


def test_route_errors() -> None:
    with pytest.raises(NotFound, match="404 page not found"):
        routes.match("GET", "/api/nope")
    with pytest.raises(MethodNotAllowed):
        routes.match("GET", "/api/chat")
    with pytest.raises(MethodNotAllowed):
        routes.match("POST", "/api/tags")
    assert routes.match("POST", "/api/blobs/x").params == {"digest": "x"}


@pytest.mark.parametrize(("raw", "url"), [
    ("", "http://127.0.0.1:11434"), ("0.0.0.0", "http://0.0.0.0:11434"),
    ("example.com:8080", "http://example.com:8080"), ("http://h", "http://h:80"),
    ("https://h", "https://h:443"), ("http://h:1/prefix/", "http://h:1/prefix"),
    ("[::1]:5000", "http://[::1]:5000"), ('"127.0.0.1:9"', "http://127.0.0.1:9"),
])
def test_parse_host(raw: str, url: str) -> None:
    assert config.parse_host(raw).url == url


@pytest.mark.parametrize("raw", ["ftp://h", "h:99999", "h:x"])
def test_parse_host_bad(raw: str) -> None:
    with pytest.raises(BadRequest):
        config.parse_host(raw)


def test_config_env() -> None:
    cfg = config.load({"POLLAMA_MODELS": "/m", "OLLAMA_KEEP_ALIVE": "10m",
                       "POLLAMA_NUM_PARALLEL": "x", "POLLAMA_CONTEXT_LENGTH": "2048"}, "/home/u")
    assert cfg.models_dir == "/m" and cfg.home_dir == "/home/u/.pollama"
    assert cfg.keep_alive_ns == 600 * 10**9 and cfg.num_parallel == 0  # invalid: auto
    assert cfg.context_length == 2048
    assert config.load({}, "/h").models_dir == "/h/.pollama/models"
    assert config.parse_keep_alive_env("-1") == -1
    assert config.parse_keep_alive_env("30") == 30 * 10**9
    assert config.load({}, "/h").flash_attention == -1
    assert config.load({"OLLAMA_FLASH_ATTENTION": "0"}, "/h").flash_attention == 0
    assert config.load({"POLLAMA_FLASH_ATTENTION": "true", "OLLAMA_FLASH_ATTENTION": "0"},
                       "/h").flash_attention == 1
    assert config.load({"POLLAMA_FLASH_ATTENTION": "auto"}, "/h").flash_attention == -1


@pytest.mark.parametrize(("n", "text"), [
    (0, "0 B"), (999, "999 B"), (1000, "1 KB"), (4_700_000_000, "4.7 GB"), (12_000_000_000, "12 GB"),
    (2_000_000_000, "2 GB"), (98_362_830, "98 MB"), (1_500_000, "1.5 MB"),
])
def test_human_bytes(n: int, text: str) -> None:
    assert humanize.human_bytes(n) == text


@pytest.mark.parametrize(("delta", "text"), [
    (-0.5, "Less than a second ago"), (-1, "1 second ago"), (-30, "30 seconds ago"),
    (-90, "About a minute ago"), (-600, "10 minutes ago"), (-3600, "About an hour ago"),
    (-3 * 86400, "3 days ago"), (-21 * 86400, "3 weeks ago"), (240, "4 minutes from now"),
    (30 * 365 * 86400, "Forever"),
])
def test_human_time(delta: float, text: str) -> None:
    now = 10**18
    assert humanize.human_time(now + int(delta * 1e9), now) == text
    assert humanize.human_time(0, now) == "Never"


def test_table() -> None:
    out = humanize.table(["NAME", "ID"], [["a:latest", "123"], ["bb", "4"]])
    assert out == "NAME        ID\na:latest    123\nbb          4\n"


def test_options_phases_and_merge() -> None:
    merged = options.merge(options.DEFAULTS, {"temperature": 0.1, "num_ctx": 100}, {"temperature": 0})
    load, runtime = options.split(merged)
    assert load["num_ctx"] == 100 and runtime["temperature"] == 0
    spec = options.load_spec(load, default_num_ctx=4096, ctx_train=50)
    assert spec["num_ctx"] == 50
    assert options.load_spec({}, default_num_ctx=2, ctx_train=None)["num_ctx"] == 4
    # vision models get at least 2048 positions, still within the trained context
    assert options.load_spec({"num_ctx": 512}, default_num_ctx=4096, ctx_train=None,
                             vision=True)["num_ctx"] == 2048
    assert options.load_spec({"num_ctx": 512}, default_num_ctx=4096, ctx_train=1024,
                             vision=True)["num_ctx"] == 1024
    assert options.load_spec({"num_ctx": 8192}, default_num_ctx=4096, ctx_train=None,
                             vision=True)["num_ctx"] == 8192


@pytest.mark.parametrize(("name", "raw", "value"), [
    ("temperature", "0.5", 0.5), ("num_ctx", "2048", 2048), ("use_mmap", "false", False),
    ("stop", "<|im_end|>", ["<|im_end|>"]),
])
def test_parse_parameter(name: str, raw: str, value: object) -> None:
    assert options.parse_parameter(name, raw) == value


def test_parse_parameter_errors() -> None:
    with pytest.raises(BadRequest, match="unknown parameter 'bogus'"):
        options.parse_parameter("bogus", "1")
    with pytest.raises(BadRequest, match=r"invalid int value \[x\]"):
        options.parse_parameter("num_ctx", "x")


def test_human_number_and_facts() -> None:
    assert gguf_details.human_number(134_515_008) == "134.52M"
    assert gguf_details.human_number(8_030_261_248) == "8.0B"
    assert gguf_details.human_number(7_000_000_000) == "7B"
    assert gguf_details.human_number(1500) == "2K"
    f = gguf_details.facts({"general.architecture": "llama", "general.file_type": 3,
                            "llama.context_length": 8192, "llama.embedding_length": 576,
                            "tokenizer.ggml.eos_token_id": 1}, 134_515_008, ["<s>", "</s>"])
    assert (f.file_type, f.context_length, f.parameter_size, f.eos_token) == (
        "Q4_1", 8192, "134.52M", "</s>")


def test_library_lookup() -> None:
    for text in ("smollm2", "smollm2:135m", "SmolLM2:latest", "registry.ollama.ai/library/smollm2"):
        assert library.lookup(parse_name(text)) is library.SMOLLM2_135M
    for text in ("smollm2:1.7b", "other", "user/smollm2", "example.com/library/smollm2"):
        assert library.lookup(parse_name(text)) is None


@pytest.mark.parametrize(("name", "raw"), [
    ("num_ctx", " 5"), ("num_ctx", "1_0"), ("num_ctx", "٣"), ("num_ctx", "1.0"),
    ("temperature", "1_0"), ("temperature", " 1 "), ("temperature", "abc"), ("use_mmap", "yes"),
])
def test_parse_parameter_strict_like_go(name: str, raw: str) -> None:
    with pytest.raises(BadRequest):
        options.parse_parameter(name, raw)


@pytest.mark.parametrize(("raw", "value"), [("+5", 5), ("-1", -1), ("007", 7)])
def test_parse_parameter_go_ints(raw: str, value: int) -> None:
    assert options.parse_parameter("num_predict", raw) == value
    assert options.parse_parameter("temperature", "1e-2") == 0.01
