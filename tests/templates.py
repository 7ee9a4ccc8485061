"""Templates shared by the core tests, the end-to-end tests and the live fuzzers: Qwen 2.5's
tool-calling templates (both Ollama's library Go template and Qwen's own jinja, read from
tests/core/data/golden_tools/, whose NOTICE.md gives their sources) and a minimal thinking
template. SmolLM2 uses the same ChatML tokens as Qwen, so the Go one serves the test model too."""

from __future__ import annotations

from pathlib import Path

GOLDEN_TOOLS = Path(__file__).parent / "core" / "data" / "golden_tools"


def golden_tools(name: str) -> str:
    """A file of tests/core/data/golden_tools/, byte for byte."""
    return (GOLDEN_TOOLS / name).read_bytes().decode()


QWEN25_GO = golden_tools("qwen2.5.gotmpl")  # Ollama's qwen2.5 template layer
QWEN25_JINJA = golden_tools("Qwen2.5-7B-Instruct.jinja")  # tokenizer.chat_template
TOOLS_TEMPLATE = QWEN25_GO

THINK_TEMPLATE = """{{- range .Messages }}<|im_start|>{{ .Role }}
{{ if .Thinking }}<think>{{ .Thinking }}</think>{{ end }}{{ .Content }}<|im_end|>
{{ end }}<|im_start|>assistant
{{ if .Think }}<think>
{{ end }}"""
