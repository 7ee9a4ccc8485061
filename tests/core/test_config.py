"""core/config.py: the host address, the environment, and VARIABLES as the one list (the README
table, ``pollama serve --help`` and the ``server config`` startup line agree with it, and every
variable takes Ollama's spelling too)."""

from __future__ import annotations

import os
import re

import pytest

from pollama.cli.main import ENV_HELP
from pollama.core import config
from pollama.core.errors import BadRequest

README = os.path.join(os.path.dirname(__file__), "..", "..", "README.md")
NAMES = [f"POLLAMA_{v.name}" for v in config.VARIABLES]

# A value for each variable that is not its default, to see that it is read at all.
SAMPLES = {
    "HOST": "0.0.0.0:8080", "MODELS": "/srv/models", "KEEP_ALIVE": "1h",
    "CONTEXT_LENGTH": "8192", "NUM_PARALLEL": "4", "MAX_LOADED_MODELS": "1", "MAX_QUEUE": "7",
    "FLASH_ATTENTION": "0", "DEBUG": "1", "LOG_FORMAT": "json", "TRACE": "/tmp/t.jsonl",
    "ORIGINS": "https://a.example", "API_KEY": "sekrit", "API_KEY_FILE": "/k",
    "MAX_BODY_MB": "2", "MAX_CONNECTIONS": "9", "HEADER_TIMEOUT": "5", "BODY_TIMEOUT": "6",
    "IDLE_TIMEOUT": "7", "NOPRUNE": "1", "NOHISTORY": "1",
    "RAY_ADDRESS": "127.0.0.2:6379", "REPLICAS": "2", "RAY_STREAM_TIMEOUT": "5",
}


def readme_rows() -> dict[str, str]:
    """``| `POLLAMA_X` | default | ...`` rows of the README's configuration table."""
    with open(README, encoding="utf-8") as f:
        text = f.read()
    section = text[text.index("## Configuration"):text.index("## Metrics")]
    return {m.group(1): m.group(2).strip().strip("`")
            for m in re.finditer(r"^\| `(POLLAMA_[A-Z_]+)` \| ([^|]+) \|", section, re.M)}


def test_readme_table_has_every_variable_with_its_default() -> None:
    rows = readme_rows()
    assert list(rows) == NAMES
    for v in config.VARIABLES:
        assert rows[f"POLLAMA_{v.name}"] == v.default, v.name


def test_serve_help_lists_every_variable() -> None:
    listed = re.findall(r"^  (POLLAMA_[A-Z_]+)\s", ENV_HELP, re.M)
    assert listed == NAMES
    for v in config.VARIABLES:
        m = re.search(rf"^  POLLAMA_{v.name}\s.*\(default ([^)]+)\)$", ENV_HELP, re.M)
        if m:
            assert m.group(1) == v.default, v.name


def test_samples_cover_every_variable() -> None:
    assert set(SAMPLES) == {v.name for v in config.VARIABLES}


@pytest.mark.parametrize("name", [v.name for v in config.VARIABLES])
def test_each_variable_is_read_in_both_spellings(name: str) -> None:
    default = config.effective(config.load({}, "/h"))
    ours = config.load({f"POLLAMA_{name}": SAMPLES[name]}, "/h")
    theirs = config.load({f"OLLAMA_{name}": f" '{SAMPLES[name]}' "}, "/h")
    assert ours == theirs
    assert config.effective(ours)[f"POLLAMA_{name}"] != default[f"POLLAMA_{name}"]
    both = config.load({f"POLLAMA_{name}": SAMPLES[name], f"OLLAMA_{name}": "junk"}, "/h")
    assert both == ours


def test_server_config_never_shows_the_key() -> None:
    values = config.effective(config.load({"POLLAMA_API_KEY": "sekrit"}, "/h"))
    assert list(values) == NAMES
    assert "sekrit" not in repr(values)
    assert values["POLLAMA_API_KEY"] == "(set)"
    assert values["POLLAMA_KEEP_ALIVE"] == "5m0s"
    assert values["POLLAMA_HOST"] == "http://127.0.0.1:11434"


@pytest.mark.parametrize("ns,text", [
    (0, "0s"), (1, "1ns"), (1_500, "1.5µs"), (250_000_000, "250ms"), (1_000_000_000, "1s"),
    (90_500_000_000, "1m30.5s"), (300_000_000_000, "5m0s"), (3_600_000_000_000, "1h0m0s"),
    (-1, "forever"),
])
def test_go_duration(ns: int, text: str) -> None:
    assert config.go_duration(ns) == text


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
